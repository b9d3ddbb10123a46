//! telemetry-warehouse on a real PostgreSQL server started by the test:
//! tables created, rows idempotent on redelivery, hostile values stored as
//! data, and per-record retries when one table cannot be written.

use base64::Engine;
use e2e_tests::{repo_root, sqs_event, PostgresServer, Sample};
use serde_json::json;
use telemetry_core::config::pipeline_file::PipelineFile;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::warehouse::tables::{Cell, Schema, TableRows};
use telemetry_core::warehouse::TableWriter;
use telemetry_warehouse::postgres::PostgresTables;

const NOW_MS: i64 = 1_645_938_300_000;

fn warehouse() -> InvocationSettings {
    PipelineFile::load(&repo_root().join("config/reference-pipelines.toml"))
        .unwrap()
        .into()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_tables_are_created_idempotent_and_injection_proof() {
    let server = PostgresServer::start();
    let writer = PostgresTables::from_url(&server.url).unwrap();
    let sample = Sample::load("malformed--sqs-mixed-batch.json");
    let rejected = sample.warehouse_dead_letters().len();
    // Every record the warehouse takes carries one reading.
    let readings = sample.records().len() - rejected;

    // The same SQS batch delivered twice: no duplicate rows.
    for request in ["first", "redelivered"] {
        let (response, _) = warehouse()
            .process_warehouse(&sample.bytes, request, NOW_MS, &writer)
            .await
            .unwrap();
        assert_eq!(response.to_json(), json!({"batchItemFailures": []}));
    }
    assert_eq!(
        server.psql("SELECT count(*) FROM readings"),
        readings.to_string()
    );
    assert_eq!(server.psql("SELECT count(*) FROM sensordata"), "1");
    assert_eq!(server.psql("SELECT count(*) FROM co2_emissions"), "1");
    assert_eq!(
        server.psql("SELECT count(*) FROM dead_letter"),
        rejected.to_string()
    );
    assert_eq!(
        server.psql("SELECT to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), device, temperature FROM sensordata"),
        "2022-02-27 05:01:00|temp-sensor-istanbul|17.95215062408679"
    );
    assert_eq!(
        server.psql("SELECT to_char(date_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), emissions FROM co2_emissions"),
        "2020-07-13 22:43:23|3500"
    );
    assert_eq!(server.psql("SELECT data_type FROM information_schema.columns WHERE table_name = 'readings' AND column_name = 'dimensions'"), "jsonb");

    // Hostile device names are values, never SQL.
    let hostile = json!({"Records": [
        {"messageId": "h-1", "eventSource": "aws:sqs", "body": r#"{"device": "x'); DROP TABLE readings;--", "temperature": 2.5, "timestamp": 1645938060}"#},
        {"messageId": "h-2", "eventSource": "aws:sqs", "body": r#"{"device": "../../etc", "temperature": 1.5, "timestamp": 1645938060}"#},
    ]})
    .to_string();
    warehouse()
        .process_warehouse(hostile.as_bytes(), "hostile", NOW_MS, &writer)
        .await
        .unwrap();
    assert_eq!(
        server.psql("SELECT count(*) FROM readings WHERE device = 'x''); DROP TABLE readings;--'"),
        "1"
    );
    assert_eq!(
        server.psql("SELECT count(*) FROM sensordata WHERE device = '../../etc'"),
        "1"
    );
    assert_eq!(
        server.psql("SELECT count(*) FROM readings"),
        (readings + 2).to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_record_and_one_refused_table_dead_letter_exactly_their_records() {
    let server = PostgresServer::start();
    // A `tweets` table someone created with another shape: inserts into it fail.
    server.psql("CREATE TABLE tweets (tweet text)");
    let writer = PostgresTables::from_url(&server.url).unwrap();
    let tweet =
        std::fs::read_to_string(repo_root().join("events/pubsub-push--tweet.json")).unwrap();
    let tweet: serde_json::Value = serde_json::from_str(&tweet).unwrap();
    let tweet_text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(tweet["message"]["data"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let event = json!({"Records": [
        {"messageId": "good", "eventSource": "aws:sqs", "body": r#"{"device": "d-1", "temperature": 20.5, "timestamp": 1645938060}"#},
        {"messageId": "bad", "eventSource": "aws:sqs", "body": "{\"device\": \"d-1\", \"temperature\": "},
        {"messageId": "tweet", "eventSource": "aws:sqs", "body": tweet_text},
    ]})
    .to_string();
    let (response, _) = warehouse()
        .process_warehouse(event.as_bytes(), "mixed", NOW_MS, &writer)
        .await
        .unwrap();
    // The table refuses the tweet's rows for good (SQLSTATE 42703): the
    // message is dead-lettered with the database's words, not retried.
    assert_eq!(response.to_json(), json!({"batchItemFailures": []}));
    assert_eq!(server.psql("SELECT message_id FROM readings"), "good");
    assert_eq!(
        server.psql("SELECT message_id FROM dead_letter ORDER BY message_id"),
        "bad\ntweet"
    );
    let reason = server.psql("SELECT reason FROM dead_letter WHERE message_id = 'tweet'");
    assert!(
        reason.contains("column \"id\" of relation \"tweets\" does not exist"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_statement_reports_what_the_database_said() {
    let server = PostgresServer::start();
    // A `readings` table someone created with another shape.
    server.psql("CREATE TABLE readings (reading text)");
    let writer = PostgresTables::from_url(&server.url).unwrap();
    let mut rows = TableRows::new(Schema::readings());
    rows.rows.push(vec![
        Cell::Timestamp(NOW_MS),
        Cell::Text("d-1".into()),
        Cell::Text("temperature".into()),
        Cell::Float(17.5),
        Cell::Text("None".into()),
        Cell::Text("{}".into()),
        Cell::Text("sqs".into()),
        Cell::Timestamp(NOW_MS),
        Cell::Text("m-1".into()),
        Cell::Int(0),
    ]);
    rows.messages.push(0);
    let error = writer
        .write(&rows, "wrong-shape", NOW_MS)
        .await
        .expect_err("the table has other columns");
    // Refused for good, and not split row by row: the statement is wrong.
    assert_eq!(error.refused_rows, [0]);
    assert!(
        error
            .to_string()
            .contains("column \"timestamp\" of relation \"readings\" does not exist"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_database_refuses_never_holds_back_its_batch() {
    let server = PostgresServer::start();
    let writer = PostgresTables::from_url(&server.url).unwrap();
    let body = |device: &str, value: f64| {
        json!({"timestamp": 1645938060, "device": device, "cpu": value}).to_string()
    };
    let first = sqs_event(&[("first", body("d-0", 1.0))]);
    warehouse()
        .process_warehouse(&first, "first", NOW_MS, &writer)
        .await
        .unwrap();
    // A rule of the user's own that some rows break (SQLSTATE 23514).
    server.psql("ALTER TABLE readings ADD CONSTRAINT sane_cpu CHECK (value < 1000)");
    let mut records: Vec<(String, String)> = (1..=10)
        .map(|n| (format!("good-{n}"), body(&format!("d-{n}"), f64::from(n))))
        .collect();
    // A NUL in a device id is refused by the warehouse itself (a control
    // character in an identifier); one in a declared table's text column
    // (reference 001's tweets) is found before PostgreSQL's insert.
    records.insert(3, ("nul".into(), body("bad\u{0}id", 2.0)));
    records.insert(7, ("too-big".into(), body("d-x", 5000.0)));
    let tweet = json!({"id": 1419657712345678849u64, "created_at": "2021-07-26 14:37:33", "text": "a\u{0}b"});
    records.insert(9, ("nul-tweet".into(), tweet.to_string()));
    let (response, counts) = warehouse()
        .process_warehouse(&sqs_event(&records), "second", NOW_MS, &writer)
        .await
        .unwrap();
    // Only the three records are dead-lettered; the ten others are written.
    assert_eq!(response.to_json(), json!({"batchItemFailures": []}));
    assert_eq!(counts.dead_lettered, 3);
    assert_eq!(
        server.psql("SELECT count(*) FROM readings WHERE message_id LIKE 'good-%'"),
        "10"
    );
    assert_eq!(
        server.psql("SELECT message_id FROM dead_letter ORDER BY message_id"),
        "nul\nnul-tweet\ntoo-big"
    );
    let reasons = server.psql("SELECT reason FROM dead_letter ORDER BY message_id");
    assert!(
        reasons.contains("control character")
            && reasons.contains("NUL byte")
            && reasons.contains("sane_cpu"),
        "{reasons}"
    );
}
