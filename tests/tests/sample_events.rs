//! Table-driven: every file in events/ goes through the metrics pipeline and
//! must produce exactly the metrics, dead letters and response written in
//! events/expected/<same name> (see tools/make_events.py).

use std::path::Path;

use e2e_tests::{parse_emf, repo_root, CapturedDeadLetters, EmittedMetric};
use serde_json::Value;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::sink::emf::EmfSink;
use telemetry_core::sink::SharedBuffer;

const SAMPLE_TOKEN: &str = "sample-token";

fn expected_metrics(expected: &Value) -> Vec<EmittedMetric> {
    expected["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| EmittedMetric {
            device: m["device"].as_str().unwrap().to_owned(),
            metric: m["metric"].as_str().unwrap().to_owned(),
            value: m["value"].as_f64().unwrap(),
            unit: m["unit"].as_str().unwrap().to_owned(),
            timestamp_ms: m["timestamp_ms"].as_i64().unwrap(),
            dimensions: m["dimensions"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            namespace: "IoT/Telemetry".into(),
        })
        .collect()
}

fn sorted(mut metrics: Vec<EmittedMetric>) -> Vec<EmittedMetric> {
    metrics.sort_by(|a, b| {
        (&a.device, &a.metric, a.timestamp_ms)
            .cmp(&(&b.device, &b.metric, b.timestamp_ms))
            .then(a.value.total_cmp(&b.value))
    });
    metrics
}

/// Every key of `expected` is in `actual` with the same value.
fn assert_subset(expected: &Value, actual: &Value, file: &str) {
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(
            &actual[key], value,
            "{file}: response field {key:?} in {actual}"
        );
    }
}

async fn check(event_path: &Path) {
    let file = event_path.file_name().unwrap().to_str().unwrap().to_owned();
    let expected_path = repo_root().join("events/expected").join(&file);
    let expected: Value =
        serde_json::from_slice(&std::fs::read(&expected_path).unwrap_or_else(|_| {
            panic!("{file} has no expectation at {}", expected_path.display())
        }))
        .unwrap();
    let now_ms = chrono::DateTime::parse_from_rfc3339(expected["now"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let pipeline = InvocationSettings {
        verification_token: Some(SAMPLE_TOKEN.into()),
        ..InvocationSettings::default()
    };
    let output = SharedBuffer::default();
    let emf = EmfSink::new("IoT/Telemetry", Box::new(output.clone()));
    let dead = CapturedDeadLetters::default();
    let event = std::fs::read(event_path).unwrap();

    let (response, counts) = pipeline
        .process_metrics(&event, "test-request", now_ms, &emf, &dead)
        .await
        .unwrap_or_else(|error| panic!("{file}: {error}"));

    assert_eq!(
        sorted(parse_emf(&output.take())),
        sorted(expected_metrics(&expected)),
        "{file}: metrics"
    );
    let letters = dead.letters.lock().unwrap().clone();
    let expected_letters = expected["dead_letters"].as_array().unwrap();
    assert_eq!(
        letters.len(),
        expected_letters.len(),
        "{file}: dead letters {letters:#?}"
    );
    for wanted in expected_letters {
        let id = wanted["message_id"].as_str().unwrap();
        let reason = wanted["reason"].as_str().unwrap();
        let letter = letters
            .iter()
            .find(|l| l.message_id == id)
            .unwrap_or_else(|| panic!("{file}: no dead letter for message {id:?}: {letters:#?}"));
        assert!(
            letter.reason.contains(reason),
            "{file}: reason {:?} lacks {reason:?}",
            letter.reason
        );
        assert!(
            !letter.payload.is_empty(),
            "{file}: dead letter keeps the payload"
        );
        assert_eq!(letter.request_id, "test-request");
    }
    assert_eq!(counts.dead_lettered, letters.len());
    let mut response = response.to_json();
    if let Some(body) = response.get("body").and_then(Value::as_str) {
        response["body"] = serde_json::from_str(body).unwrap();
    }
    assert_subset(&expected["response"], &response, &file);
}

#[tokio::test]
async fn every_sample_event_produces_its_expected_metrics() {
    let events = repo_root().join("events");
    let mut files: Vec<_> = std::fs::read_dir(&events)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 39,
        "events/ holds every trigger x payload: {}",
        files.len()
    );
    for file in &files {
        check(file).await;
    }
}

#[test]
fn every_expectation_has_its_event() {
    for entry in std::fs::read_dir(repo_root().join("events/expected")).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            repo_root().join("events").join(&name).exists(),
            "{name:?} has no event"
        );
    }
}
