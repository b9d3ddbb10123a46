//! Hostile input through the function binaries, for every trigger: each
//! hostile payload ends as a dead letter (its raw bytes and a reason that
//! names what is wrong) in both telemetry-metrics (local dead letters) and
//! telemetry-warehouse (the `dead_letter` table of a local Parquet
//! warehouse), while the good record beside it in the same batch is
//! processed; payloads that are only unusual (device ids with `/`, `..`,
//! quotes or SQL) are data, written as they are, and never become paths.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use e2e_tests::runtime::{Function, LocalRuntime};
use e2e_tests::triggers::TRIGGERS;
use e2e_tests::{duckdb_query, scratch_dir};
use serde_json::{json, Value};

/// A hostile payload and what the dead letter's reason must say, for the
/// metrics function and the warehouse (which checks different things).
struct Case {
    name: &'static str,
    payload: Vec<u8>,
    metrics_reason: &'static str,
    warehouse_reason: &'static str,
}

fn cases(now_s: i64) -> Vec<Case> {
    let case = |name, payload: String, metrics_reason, warehouse_reason| Case {
        name,
        payload: payload.into_bytes(),
        metrics_reason,
        warehouse_reason,
    };
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!(
        r#"{{"device": "t-9", "temperature": 1, "pad": "{}"}}"#,
        "x".repeat(10 << 20)
    );
    vec![
        Case {
            name: "invalid UTF-8",
            payload: b"\xff\xfe{\"temperature\": 1}".to_vec(),
            metrics_reason: "neither JSON nor UTF-8",
            warehouse_reason: "neither JSON nor UTF-8",
        },
        case(
            "truncated JSON",
            r#"{"device": "t-9", "temperature": 21.5"#.into(),
            "not valid JSON",
            "not valid JSON",
        ),
        // Read as an array whose element is not a device object (nothing
        // parses it deeper than that).
        case(
            "10,000 deep",
            deep,
            "an array payload must hold objects",
            "an array payload must hold objects",
        ),
        case(
            "10 MB",
            huge,
            "above the 1048576-byte limit",
            "above the 1048576-byte limit",
        ),
        case(
            "NaN",
            r#"{"device": "t-9", "temperature": NaN}"#.into(),
            "not valid JSON",
            "not valid JSON",
        ),
        case(
            "1e400",
            r#"{"device": "t-9", "temperature": 1e400}"#.into(),
            "out of range",
            "out of range",
        ),
        case(
            "number with junk",
            r#"{"name": "cpu", "unit": "Percent", "value": "12abc"}"#.into(),
            "is not a number",
            "is not a number",
        ),
        case(
            "negative timestamp",
            format!(r#"{{"device": "t-9", "timestamp": -5, "temperature": {now_s}}}"#),
            "more than 14 days old",
            "before 2000-01-01",
        ),
        case(
            "far-future timestamp",
            r#"{"device": "t-9", "timestamp": 99999999999, "temperature": 1}"#.into(),
            "ahead",
            "ahead",
        ),
        case(
            "unknown unit",
            r#"{"name": "cpu", "unit": "Parsecs", "value": "1"}"#.into(),
            "\"Parsecs\": expected one of",
            "\"Parsecs\": expected one of",
        ),
        case(
            "empty device id",
            r#"{"device": "", "temperature": 1}"#.into(),
            "device id is empty",
            "device id is empty",
        ),
        case(
            "NUL in device id",
            r#"{"device": "a\u0000b", "temperature": 1}"#.into(),
            "control character",
            "control character",
        ),
        case(
            "control character in device id",
            r#"{"device": "a\u0007b", "temperature": 1}"#.into(),
            "control character",
            "control character",
        ),
        case(
            "key twice",
            r#"{"device": "t-9", "temperature": 1, "temperature": 99}"#.into(),
            "appears twice",
            "appears twice",
        ),
        case(
            "base64 that is not base64",
            r#"{"data": "not base64!!", "topic": "devices/t-9/text"}"#.into(),
            "not valid base64",
            "not valid base64",
        ),
    ]
}

/// Dead letters written so far by the metrics function: (payload, reason).
fn metrics_dead_letters(directory: &Path) -> Vec<(Vec<u8>, String)> {
    let mut letters = Vec::new();
    for entry in std::fs::read_dir(directory).into_iter().flatten().flatten() {
        let content = std::fs::read_to_string(entry.path()).unwrap();
        for line in content.lines() {
            let letter: Value = serde_json::from_str(line).unwrap();
            let payload = letter["payload"].as_str().unwrap_or_default();
            let bytes = if letter["payload_encoding"] == "base64" {
                base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .unwrap()
            } else {
                payload.as_bytes().to_vec()
            };
            letters.push((bytes, letter["reason"].as_str().unwrap().to_owned()));
        }
    }
    letters
}

#[test]
fn every_hostile_payload_is_dead_lettered_with_its_reason_from_every_trigger() {
    let scratch = scratch_dir("hostile-inputs");
    let dead_letters = scratch.join("dead-letters");
    let warehouse = scratch.join("warehouse");
    let metrics_runtime = LocalRuntime::start();
    let _metrics = Function::start_binary(
        "telemetry-metrics",
        &metrics_runtime,
        &[("DEAD_LETTER_URL", dead_letters.display().to_string())],
    );
    let warehouse_runtime = LocalRuntime::start();
    let _warehouse = Function::start_binary(
        "telemetry-warehouse",
        &warehouse_runtime,
        &[("WAREHOUSE_URL", warehouse.display().to_string())],
    );
    let now_s = Utc::now().timestamp();
    let good = json!({"device": "good-1", "timestamp": now_s, "temperature": 20.5}).to_string();
    let mut expected_warehouse = Vec::new();
    let mut good_sent = 0;
    for case in cases(now_s) {
        for trigger in &TRIGGERS {
            let is_text = std::str::from_utf8(&case.payload).is_ok();
            // Lambda takes only JSON events, so these triggers carry only
            // payloads that are JSON objects.
            let is_object =
                serde_json::from_slice::<Value>(&case.payload).is_ok_and(|value| value.is_object());
            if (!is_text && !trigger.binary)
                || (trigger.objects_only && !is_object)
                || (case.name == "10 MB" && trigger.objects_only)
            {
                continue; // the trigger cannot carry it
            }
            let id = format!("{}-{}", trigger.name, case.name.replace(' ', "_"));
            let good_id = format!("{id}-good");
            let mut messages = vec![(id.as_str(), case.payload.as_slice())];
            if trigger.batches {
                messages.push((good_id.as_str(), good.as_bytes()));
                good_sent += 1;
            }
            let event = trigger.event(&messages);
            let answer = metrics_runtime
                .invoke(&event, Duration::from_secs(60))
                .unwrap_or_else(|error| panic!("{id}: the metrics function failed: {error}"));
            if let Some(failures) = answer.get("batchItemFailures") {
                assert_eq!(failures, &json!([]), "{id}: nothing to retry: {answer}");
            }
            let letters = metrics_dead_letters(&dead_letters);
            let letter = letters
                .iter()
                .find(|(payload, _)| payload == &case.payload)
                .unwrap_or_else(|| {
                    let seen: Vec<(String, &String)> = letters
                        .iter()
                        .map(|(payload, reason)| {
                            (
                                String::from_utf8_lossy(&payload[..payload.len().min(200)])
                                    .into_owned(),
                                reason,
                            )
                        })
                        .collect();
                    panic!(
                        "{id}: no dead letter holds the payload; answer {answer}, letters {seen:?}"
                    )
                });
            assert!(
                letter.1.contains(case.metrics_reason),
                "{id}: the reason {:?} does not say {:?}",
                letter.1,
                case.metrics_reason
            );
            std::fs::remove_dir_all(&dead_letters).unwrap();

            let answer = warehouse_runtime
                .invoke(&event, Duration::from_secs(60))
                .unwrap_or_else(|error| panic!("{id}: the warehouse failed: {error}"));
            if let Some(failures) = answer.get("batchItemFailures") {
                assert_eq!(failures, &json!([]), "{id}: nothing to retry: {answer}");
            }
            expected_warehouse.push((id, case.warehouse_reason, case.payload.len()));
        }
    }
    assert!(
        expected_warehouse.len() >= 60,
        "{}",
        expected_warehouse.len()
    );

    // The warehouse kept each hostile payload as a dead letter with its
    // reason, and every good record beside one as a row.
    let dead = duckdb_query(&format!(
        "SELECT message_id, reason FROM read_parquet('{}/dead_letter/**/*.parquet')",
        warehouse.display()
    ));
    for (id, reason, _) in &expected_warehouse {
        // A topic rule's event has no message id (the function derives
        // one from the content); the others keep theirs.
        let found = dead.iter().any(|row| {
            let row_reason = row["reason"].as_str().unwrap_or_default();
            (id.starts_with("iot-rule") || row["message_id"].as_str() == Some(id.as_str()))
                && row_reason.contains(reason)
        });
        assert!(found, "{id}: no dead letter of it says {reason:?}");
    }
    assert!(
        dead.len() >= expected_warehouse.len(),
        "{} dead letters",
        dead.len()
    );
    let rows = duckdb_query(&format!(
        "SELECT count(*) AS n FROM read_parquet('{}/readings/**/*.parquet') WHERE device = 'good-1'",
        warehouse.display()
    ));
    assert_eq!(
        rows[0]["n"], good_sent as u64,
        "every good record beside a hostile one"
    );
}

/// telemetry-warehouse on a Lambda Runtime API of its own, writing Parquet
/// under `<scratch>/warehouse`.
fn local_warehouse(scratch: &Path) -> (LocalRuntime, Function, std::path::PathBuf) {
    let warehouse = scratch.join("warehouse");
    let runtime = LocalRuntime::start();
    let function = Function::start_binary(
        "telemetry-warehouse",
        &runtime,
        &[("WAREHOUSE_URL", warehouse.display().to_string())],
    );
    (runtime, function, warehouse)
}

/// Device ids that look like paths, quotes or SQL are data: accepted as
/// they are by both functions, and no file lands outside the warehouse.
#[test]
fn unusual_device_ids_are_data_and_never_paths() {
    let scratch = scratch_dir("hostile-device-ids");
    let (runtime, _warehouse, warehouse) = local_warehouse(&scratch);
    let now_s = Utc::now().timestamp();
    let devices = [
        "../../etc/passwd",
        "a/b/c",
        "..",
        "quote\"d'",
        "x'); DROP TABLE readings;--",
        "spaces and ünïcode",
    ];
    let bodies: Vec<(String, String)> = devices
        .iter()
        .enumerate()
        .map(|(index, device)| {
            (
                format!("m-{index}"),
                json!({"device": device, "timestamp": now_s, "temperature": index}).to_string(),
            )
        })
        .collect();
    let answer = runtime
        .invoke(&e2e_tests::sqs_event(&bodies), Duration::from_secs(60))
        .unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let rows = duckdb_query(&format!(
        "SELECT device FROM read_parquet('{}/readings/**/*.parquet') ORDER BY value",
        warehouse.display()
    ));
    let written: Vec<&str> = rows
        .iter()
        .map(|row| row["device"].as_str().unwrap())
        .collect();
    assert_eq!(written, devices);
    // Only the warehouse's own table directories exist, inside it.
    let mut entries: Vec<String> = std::fs::read_dir(&warehouse)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["readings"]);
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        1,
        "nothing written beside the warehouse"
    );
}

/// An SQS batch of nothing but hostile records, and a batch where two
/// records share a message id (one good, one bad): nothing is retried,
/// every bad record is a dead letter, the good one is a row.
#[test]
fn a_batch_of_only_bad_records_and_repeated_message_ids() {
    let scratch = scratch_dir("hostile-batches");
    let (runtime, _warehouse, warehouse) = local_warehouse(&scratch);
    let now_s = Utc::now().timestamp();
    let bad: Vec<(String, String)> = cases(now_s)
        .into_iter()
        .filter(|case| case.payload.len() < 1 << 20)
        .filter_map(|case| String::from_utf8(case.payload).ok())
        .enumerate()
        .map(|(index, body)| (format!("bad-{index}"), body))
        .collect();
    let answer = runtime
        .invoke(&e2e_tests::sqs_event(&bad), Duration::from_secs(60))
        .unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");

    let good = json!({"device": "twin", "timestamp": now_s, "temperature": 1.5}).to_string();
    let twins = [
        ("same-id".to_owned(), good),
        (
            "same-id".to_owned(),
            r#"{"device": "", "temperature": 2}"#.to_owned(),
        ),
    ];
    let answer = runtime
        .invoke(&e2e_tests::sqs_event(&twins), Duration::from_secs(60))
        .unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");

    let dead = duckdb_query(&format!(
        "SELECT message_id, reason FROM read_parquet('{}/dead_letter/**/*.parquet') ORDER BY message_id",
        warehouse.display()
    ));
    let bad_ids: Vec<&str> = dead
        .iter()
        .filter_map(|row| row["message_id"].as_str())
        .filter(|id| id.starts_with("bad-"))
        .collect();
    assert_eq!(bad_ids.len(), bad.len(), "every bad record: {dead:?}");
    assert!(
        dead.iter().any(|row| row["message_id"] == "same-id"
            && row["reason"]
                .as_str()
                .unwrap()
                .contains("device id is empty")),
        "{dead:?}"
    );
    let rows = duckdb_query(&format!(
        "SELECT count(*) AS n FROM read_parquet('{}/readings/**/*.parquet') WHERE device = 'twin'",
        warehouse.display()
    ));
    assert_eq!(rows[0]["n"], 1, "the good twin is written once");
}
