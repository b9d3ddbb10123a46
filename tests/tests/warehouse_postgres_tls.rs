//! telemetry-warehouse on a PostgreSQL server that refuses connections
//! without TLS (as RDS for PostgreSQL 15+ does): the URL's `sslmode` and
//! `sslrootcert` choose what is checked, and a refusal says why.

use e2e_tests::{PostgresServer, Sample, TestCertificates};
use serde_json::json;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::warehouse::tables::{Schema, TableRows};
use telemetry_core::warehouse::TableWriter;
use telemetry_warehouse::postgres::PostgresTables;

const NOW_MS: i64 = 1_645_938_300_000;

#[tokio::test(flavor = "multi_thread")]
async fn rows_reach_a_tls_only_server_as_each_sslmode_allows() {
    let directory = std::env::temp_dir().join(format!("iotpipe-tls-{}", std::process::id()));
    let certificates = TestCertificates::generate(&directory);
    let server = PostgresServer::start_tls_only(&certificates);
    let (port, ca, other_ca) = (
        server.port,
        certificates.ca.display(),
        certificates.other_ca.display(),
    );
    let sample = Sample::load("sqs--temp.json");
    let event = &sample.bytes;
    let warehouse = InvocationSettings::default();

    let accepted = [
        // The certificate's chain and name checked.
        format!(
            "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
        ),
        // The chain checked; the certificate does not name 127.0.0.1.
        format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={ca}"),
        // libpq's `require` with a root certificate is `verify-ca`.
        format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require&sslrootcert={ca}"),
        // Encrypted, unchecked: `require`, and the default (`prefer`).
        format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require"),
        format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=10"),
    ];
    for (attempt, url) in accepted.iter().enumerate() {
        let writer = PostgresTables::from_url(url).unwrap();
        let (response, _) = warehouse
            .process_warehouse(event, &format!("tls-{attempt}"), NOW_MS, &writer)
            .await
            .unwrap();
        assert_eq!(
            response.to_json(),
            json!({"batchItemFailures": []}),
            "{url}"
        );
    }
    // Redeliveries of one message: its rows once, written over TLS.
    assert_eq!(
        server.psql("SELECT count(*) FROM readings"),
        sample.metrics().len().to_string()
    );

    let refused = [
        (
            format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
            "no encryption",
        ),
        (
            format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"),
            "certificate not valid for name \"127.0.0.1\"",
        ),
        (
            format!("postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={other_ca}"),
            "UnknownIssuer",
        ),
        (
            format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={other_ca}"),
            "UnknownIssuer",
        ),
    ];
    for (url, reason) in &refused {
        let writer = PostgresTables::from_url(url).unwrap();
        let error = writer
            .write(&TableRows::new(Schema::readings()), "refused", NOW_MS)
            .await
            .expect_err(url);
        let message = error.to_string();
        assert!(
            message.contains("cannot connect") && message.contains(reason),
            "{url}: {message}"
        );
        // The message names the server, never the password.
        assert!(message.contains(&format!(":{port}/postgres")), "{message}");
    }
    // And through the pipeline, a refused connection is a retry, not a loss.
    let writer = PostgresTables::from_url(&refused[0].0).unwrap();
    let (response, _) = warehouse
        .process_warehouse(event, "refused", NOW_MS, &writer)
        .await
        .unwrap();
    assert_ne!(response.to_json(), json!({"batchItemFailures": []}));
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn a_password_never_reaches_an_error_message() {
    let error = PostgresTables::from_url(
        "postgres://iot:hunter2@db.example:5432/iot?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
    )
    .err()
    .expect("the root certificate file is missing")
    .to_string();
    assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    let setting = telemetry_warehouse::WarehouseConfig::from_lookup(|name| {
        (name == "WAREHOUSE_URL")
            .then(|| "postgres://iot:hunter2@db.example/iot?sslmode=verify".to_owned())
    })
    .unwrap_err()
    .to_string();
    assert!(
        setting.contains("sslmode") && !setting.contains("hunter2"),
        "{setting}"
    );
}
