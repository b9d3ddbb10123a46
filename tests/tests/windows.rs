//! The real `telemetry-windows` binary on the window sequence of
//! `events/windows/` (moved to today's clock, since CloudWatch takes
//! nothing older than two weeks): each answer's state handed to the next
//! invocation as Lambda does, statistic sets read back from a real moto
//! server, `window_aggregates` read back from Parquet with DuckDB, both
//! compared with what tools/make_window_events.py worked out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_smithy_types::DateTime;
use base64::Engine;
use e2e_tests::runtime::{Function, LocalRuntime};
use e2e_tests::{duckdb_query, repo_root, scratch_dir, sdk_config, MotoServer};
use serde_json::{json, Value};

const WINDOW_START_S: i64 = 1_645_938_000; // events/windows' Lambda window

/// The sequence's events, every time in them moved by `shift_s` seconds.
fn shifted_sequence(shift_s: i64) -> Vec<Value> {
    let dir = repo_root().join("events/windows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "events/windows holds a sequence");
    let b64 = base64::engine::general_purpose::STANDARD;
    let shift_time = |text: &str| {
        let time = chrono::DateTime::parse_from_rfc3339(text).unwrap();
        (time + chrono::Duration::seconds(shift_s))
            .to_utc()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    files
        .iter()
        .map(|file| {
            let mut event: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            for record in event["Records"].as_array_mut().unwrap() {
                let kinesis = &mut record["kinesis"];
                let mut payload: Value =
                    serde_json::from_slice(&b64.decode(kinesis["data"].as_str().unwrap()).unwrap())
                        .unwrap();
                payload["timestamp"] = json!(payload["timestamp"].as_i64().unwrap() + shift_s);
                kinesis["data"] = json!(b64.encode(serde_json::to_vec_pretty(&payload).unwrap()));
                let arrival = kinesis["approximateArrivalTimestamp"].as_f64().unwrap();
                kinesis["approximateArrivalTimestamp"] = json!(arrival + shift_s as f64);
            }
            for end in ["start", "end"] {
                let moved = shift_time(event["window"][end].as_str().unwrap());
                event["window"][end] = json!(moved);
            }
            event
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_sequence_through_the_binary_matches_the_independent_totals() {
    let expected: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("events/windows/expected/sequence.json")).unwrap(),
    )
    .unwrap();
    // Today, ten minutes back, on a five-minute boundary (the sequence's
    // Lambda window is five minutes and its buckets one).
    let now_s = chrono::Utc::now().timestamp();
    let start_s = (now_s - 600).div_euclid(300) * 300;
    let shift_s = start_s - WINDOW_START_S;

    let moto = MotoServer::start();
    let sdk = sdk_config(&moto.endpoint).await;
    let warehouse = scratch_dir("windows-warehouse");
    let letters = scratch_dir("windows-dead-letters");
    let runtime = LocalRuntime::start();
    let mut env = moto.env();
    env.extend([
        ("METRICS_SINK", "cloudwatch".to_owned()),
        ("METRICS_NAMESPACE", "IoT/Windows".to_owned()),
        ("WAREHOUSE_URL", warehouse.display().to_string()),
        ("DEAD_LETTER_URL", letters.display().to_string()),
        ("WINDOW_SECONDS", "60".to_owned()),
        ("ALLOWED_LATENESS_SECONDS", "10".to_owned()),
    ]);
    let _function = Function::start_binary("telemetry-windows", &runtime, &env);

    let mut state = json!({});
    let sequence = shifted_sequence(shift_s);
    for (index, mut event) in sequence.into_iter().enumerate() {
        event["state"] = state.clone();
        let answer = runtime
            .invoke(
                &serde_json::to_vec(&event).unwrap(),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|error| panic!("invocation {index} failed: {error}"));
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
        state = answer["state"].clone();
        assert_eq!(state["format"], json!("telemetry-windows/1"), "{answer}");
    }
    assert_eq!(
        state["series"],
        json!(0),
        "the final invocation emitted everything"
    );

    // The warehouse: late partials merged per device and minute.
    let pattern = warehouse.join("window_aggregates/**/*.parquet");
    let rows = duckdb_query(&format!(
        "SELECT device, epoch_ms(window_start) AS start, sum(count)::BIGINT AS count, min(min) AS min, \
         max(max) AS max, sum(sum) AS sum, bool_or(late) AS late \
         FROM read_parquet('{}', hive_partitioning = true) WHERE metric = 'temperature' \
         GROUP BY 1, 2 ORDER BY 1, 2",
        pattern.display()
    ));
    let expected_rows = expected["aggregates"].as_array().unwrap();
    assert_eq!(rows.len(), expected_rows.len(), "{rows:?}");
    let mut by_device: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    for (row, want) in rows.iter().zip(expected_rows) {
        let start = want["window_start"].as_i64().unwrap() + shift_s * 1000;
        assert_eq!(row["device"], want["device"]);
        assert_eq!(row["start"].as_i64().unwrap(), start);
        assert_eq!(row["count"], want["count"], "{row} vs {want}");
        assert_eq!(row["min"], want["min"], "{row} vs {want}");
        assert_eq!(row["max"], want["max"], "{row} vs {want}");
        let (sum, want_sum) = (row["sum"].as_f64().unwrap(), want["sum"].as_f64().unwrap());
        assert!(
            (sum - want_sum).abs() < 1e-9 * want_sum.abs(),
            "{row} vs {want}"
        );
        assert_eq!(row["late"], want["has_late_partial"], "{row} vs {want}");
        by_device
            .entry(want["device"].as_str().unwrap().to_owned())
            .or_default()
            .push((start, want.clone()));
    }

    // CloudWatch: one statistic set per device and minute (plus the late
    // partials), merged by CloudWatch itself.
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    for (device, minutes) in &by_device {
        let stats = cloudwatch
            .get_metric_statistics()
            .namespace("IoT/Windows")
            .metric_name("temperature")
            .dimensions(Dimension::builder().name("device").value(device).build())
            .start_time(DateTime::from_secs(start_s - 600))
            .end_time(DateTime::from_secs(start_s + 600))
            .period(60)
            .statistics(Statistic::Maximum)
            .statistics(Statistic::SampleCount)
            .send()
            .await
            .unwrap();
        let mut points: Vec<(i64, f64, f64)> = stats
            .datapoints()
            .iter()
            .map(|point| {
                (
                    point.timestamp().unwrap().to_millis().unwrap(),
                    point.maximum().unwrap(),
                    point.sample_count().unwrap(),
                )
            })
            .collect();
        points.sort_by_key(|point| point.0);
        let wanted: Vec<(i64, f64, f64)> = minutes
            .iter()
            .map(|(start, want)| {
                (
                    *start,
                    want["max"].as_f64().unwrap(),
                    want["count"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(points, wanted, "{device}");
    }
}

#[test]
fn aws_documented_example_is_answered_with_a_state_and_its_parts_dead_lettered() {
    // The Lambda developer guide's KinesisTimeWindowEvent: a foreign
    // `state` ({"1": 282, "2": 715}) and a record that is not telemetry.
    let letters = scratch_dir("windows-aws-example");
    let runtime = LocalRuntime::start();
    let _function = Function::start_binary(
        "telemetry-windows",
        &runtime,
        &[
            ("WINDOW_OUTPUTS", "metrics".to_owned()),
            ("DEAD_LETTER_URL", letters.display().to_string()),
        ],
    );
    let event = json!({
        "Records": [{
            "kinesis": {
                "kinesisSchemaVersion": "1.0", "partitionKey": "1",
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                "approximateArrivalTimestamp": 1607497475.000
            },
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-kinesis-role",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream"
        }],
        "window": {"start": "2020-12-09T07:04:00Z", "end": "2020-12-09T07:06:00Z"},
        "state": {"1": 282, "2": 715},
        "shardId": "shardId-000000000006",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream",
        "isFinalInvokeForWindow": false,
        "isWindowTerminatedEarly": false
    });
    let answer = runtime
        .invoke(
            &serde_json::to_vec(&event).unwrap(),
            Duration::from_secs(30),
        )
        .expect("answered, not failed");
    assert_eq!(answer["batchItemFailures"], json!([]));
    assert_eq!(answer["state"]["format"], json!("telemetry-windows/1"));
    assert_eq!(answer["state"]["series"], json!(0));
    let mut written = String::new();
    for entry in walk(&letters) {
        written.push_str(&std::fs::read_to_string(entry).unwrap());
    }
    let letters: Vec<Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let state_letter = letters
        .iter()
        .find(|l| l["source"] == "window-state")
        .unwrap();
    assert!(state_letter["reason"]
        .as_str()
        .unwrap()
        .contains("not a telemetry-windows state"));
    assert_eq!(state_letter["payload"], json!(r#"{"1":282,"2":715}"#));
    let record_letter = letters.iter().find(|l| l["source"] == "kinesis").unwrap();
    assert_eq!(record_letter["payload"], json!("Hello, this is a test."));
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
