//! The warehouse's MySQL/MariaDB backend against a real MariaDB (Debian's
//! `mariadb-server`, started on a free loopback port): reference 002's
//! `co2_emissions`, idempotent redelivery, hostile values as data, a
//! table of another shape, and a TLS-only server.

use e2e_tests::{repo_root, sqs_event, MariadbServer, Sample, TestCertificates, MARIADB_PASSWORD};
use serde_json::json;
use telemetry_core::config::pipeline_file::PipelineFile;
use telemetry_core::invocation::InvocationSettings;
use telemetry_warehouse::mysql::MysqlTables;

const NOW_MS: i64 = 1_645_938_300_000;

fn reference_pipelines() -> InvocationSettings {
    PipelineFile::load(&repo_root().join("config/reference-pipelines.toml"))
        .unwrap()
        .into()
}

#[tokio::test(flavor = "multi_thread")]
async fn reference_002_lands_in_co2_emissions_once_with_its_local_time() {
    let server = MariadbServer::start();
    let writer = MysqlTables::from_url(&server.url).unwrap();
    // Reference 002's Raspberry Pi writes its local (Korean) time: the
    // mapping says so, and DATETIME keeps UTC, as Grafana reads it.
    let reference = std::fs::read_to_string(repo_root().join("config/reference-pipelines.toml"))
        .unwrap()
        .replace(
            "delimiter = \"|\"\nrequires = [\"/1\"]",
            "delimiter = \"|\"\nrequires = [\"/1\"]\ntimezone = \"+09:00\"",
        );
    let settings: InvocationSettings = PipelineFile::parse(&reference).unwrap().into();
    let sample = Sample::load("sqs--co2.json");
    for request in ["first", "redelivered"] {
        let (response, _) = settings
            .process_warehouse(&sample.bytes, request, NOW_MS, &writer)
            .await
            .unwrap();
        assert_eq!(
            response.to_json(),
            json!({"batchItemFailures": []}),
            "{request}"
        );
    }
    // "2022-2-27 5:3:23|3500" at +09:00.
    assert_eq!(
        server.sql("SELECT date_time, emissions FROM co2_emissions"),
        "2022-02-26 20:03:23.000\t3500"
    );
    assert_eq!(
        server.sql("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_NAME = 'co2_emissions' AND COLUMN_NAME IN ('date_time', 'emissions') ORDER BY COLUMN_NAME"),
        "datetime\ndouble"
    );
    assert_eq!(
        server.sql("SELECT count(*) FROM readings"),
        sample.metrics().len().to_string()
    );
    // Nothing was dead-lettered, so no dead_letter table was needed.
    assert_eq!(
        server
            .sql("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'dead_letter'"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_are_stored_as_data_and_a_table_of_another_shape_fails_only_its_messages() {
    let server = MariadbServer::start();
    // A `sensordata` someone made with a text temperature and no message key.
    server.sql("CREATE TABLE sensordata (`timestamp` DATETIME, device VARCHAR(64), temperature VARCHAR(8))");
    let writer = MysqlTables::from_url(&server.url).unwrap();
    let event = sqs_event(&[
        (
            "injection",
            r#"{"device": "x'); DROP TABLE readings; --", "cpu": 1}"#,
        ),
        ("traversal", r#"{"device": "../../etc/passwd", "cpu": 2}"#),
        ("unicode", r#"{"device": "température-😀", "cpu": 3}"#),
        (
            "temp",
            r#"{"timestamp": 1645938060, "device": "temp-sensor-istanbul", "temperature": 17.9}"#,
        ),
    ]);
    let (response, counts) = reference_pipelines()
        .process_warehouse(&event, "hostile", NOW_MS, &writer)
        .await
        .unwrap();
    // The table refuses the temperature for good: dead-lettered, not retried.
    assert_eq!(response.to_json(), json!({"batchItemFailures": []}));
    assert_eq!(counts.dead_lettered, 1);
    assert_eq!(
        server.sql("SELECT device FROM readings WHERE metric = 'cpu' ORDER BY message_id"),
        "x'); DROP TABLE readings; --\n../../etc/passwd\ntempérature-😀"
    );
    let reason = server.sql("SELECT reason FROM dead_letter WHERE message_id = 'temp'");
    assert!(
        reason.contains("sensordata")
            && reason.contains("temperature")
            && reason.contains("varchar"),
        "{reason}"
    );
    assert_eq!(server.sql("SELECT count(*) FROM sensordata"), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_only_server_takes_verify_ca_and_refuses_the_rest() {
    let certificates = TestCertificates::generate(
        &std::env::temp_dir().join(format!("iotpipe-mariadb-certs-{}", std::process::id())),
    );
    let server = MariadbServer::start_tls_only(&certificates);
    let sample = Sample::load("sqs--temp.json");
    let ca = certificates.ca.display().to_string();
    let with = |query: String| format!("{}?{query}", server.url);
    // The certificate names localhost: reach the server by that name (over
    // TCP, not the socket mysql_async would otherwise switch to).
    let by_name = |query: String| {
        format!(
            "mysql://iot:{MARIADB_PASSWORD}@localhost:{}/iot?prefer_socket=false&{query}",
            server.port
        )
    };
    for (accepted, url) in [
        (
            "VERIFY_CA",
            by_name(format!("ssl-mode=VERIFY_CA&ssl-ca={ca}")),
        ),
        (
            "VERIFY_IDENTITY",
            by_name(format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")),
        ),
        ("REQUIRED", with("ssl-mode=REQUIRED".to_owned())),
        ("PREFERRED", server.url.clone()),
    ] {
        let writer = MysqlTables::from_url(&url).unwrap();
        let direct = telemetry_core::warehouse::TableWriter::write(
            &writer,
            &telemetry_core::warehouse::tables::TableRows::new(
                telemetry_core::warehouse::tables::Schema::readings(),
            ),
            "probe",
            NOW_MS,
        )
        .await;
        assert!(direct.is_ok(), "{accepted}: {direct:?}");
        let (response, _) = reference_pipelines()
            .process_warehouse(&sample.bytes, &format!("tls {accepted}"), NOW_MS, &writer)
            .await
            .unwrap();
        assert_eq!(
            response.to_json(),
            json!({"batchItemFailures": []}),
            "{accepted}"
        );
    }
    assert_eq!(
        server.sql("SELECT count(DISTINCT message_id) FROM readings"),
        "1",
        "four deliveries of one message are one row"
    );
    let refused = [
        "ssl-mode=DISABLED".to_owned(),
        // The certificate names localhost, not 127.0.0.1.
        format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"),
        format!(
            "ssl-mode=VERIFY_CA&ssl-ca={}",
            certificates.other_ca.display()
        ),
    ];
    for query in refused {
        let writer = MysqlTables::from_url(&with(query.clone())).unwrap();
        let (response, _) = reference_pipelines()
            .process_warehouse(&sample.bytes, "refused", NOW_MS, &writer)
            .await
            .unwrap();
        let failures = response.batch_item_failures().unwrap().len();
        assert_eq!(failures, 1, "{query}: retried, not written");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_never_reaches_a_message() {
    // Nothing listens there: the connection fails, transiently.
    let port = e2e_tests::free_port();
    let url = format!("mysql://iot:{MARIADB_PASSWORD}@127.0.0.1:{port}/iot");
    let writer = MysqlTables::from_url(&url).unwrap();
    let sample = Sample::load("sqs--temp.json");
    let (response, _) = reference_pipelines()
        .process_warehouse(&sample.bytes, "down", NOW_MS, &writer)
        .await
        .unwrap();
    let answer = response.to_json().to_string();
    assert!(answer.contains("itemIdentifier"), "{answer}");
    let error = telemetry_warehouse::WarehouseConfig::from_lookup(|name| {
        (name == "WAREHOUSE_URL").then(|| format!("{url}?ssl-mode=MAYBE"))
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("MAYBE") && !error.contains(MARIADB_PASSWORD),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_server_refuses_never_holds_back_its_batch() {
    let server = MariadbServer::start();
    let writer = MysqlTables::from_url(&server.url).unwrap();
    let body = |device: &str, value: f64| {
        json!({"timestamp": 1645938060, "device": device, "cpu": value}).to_string()
    };
    let first = body("d-0", 1.0);
    reference_pipelines()
        .process_warehouse(&sqs_event(&[("first", &first)]), "first", NOW_MS, &writer)
        .await
        .unwrap();
    // A rule of the user's own that one row breaks.
    server.sql("ALTER TABLE readings ADD CONSTRAINT sane_cpu CHECK (value < 1000)");
    let bodies: Vec<(String, String)> = (1..=10)
        .map(|n| (format!("good-{n}"), body(&format!("d-{n}"), f64::from(n))))
        .chain([("too-big".to_owned(), body("d-x", 5000.0))])
        .collect();
    let (response, counts) = reference_pipelines()
        .process_warehouse(&sqs_event(&bodies), "second", NOW_MS, &writer)
        .await
        .unwrap();
    assert_eq!(response.to_json(), json!({"batchItemFailures": []}));
    assert_eq!(counts.dead_lettered, 1);
    assert_eq!(
        server.sql("SELECT count(*) FROM readings WHERE message_id LIKE 'good-%'"),
        "10"
    );
    let reason = server.sql("SELECT reason FROM dead_letter WHERE message_id = 'too-big'");
    assert!(reason.contains("sane_cpu"), "{reason}");
}
