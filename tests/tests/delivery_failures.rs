//! Nothing lost: what the function answers when a sink fails.

use async_trait::async_trait;
use e2e_tests::{repo_root, sqs_event, CapturedDeadLetters, Sample};
use serde_json::json;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::outcome::{Delivery, FailureKind};
use telemetry_core::reading::Reading;
use telemetry_core::sink::MetricsSink;

/// Fails the readings of every message whose payload names `bad_device`.
struct FailingFor {
    bad_device: &'static str,
}

#[async_trait]
impl MetricsSink for FailingFor {
    async fn send(&self, readings: &[Reading]) -> Delivery {
        let mut failed: Vec<u32> = readings
            .iter()
            .filter(|reading| reading.device == self.bad_device)
            .map(|reading| reading.message)
            .collect();
        failed.dedup();
        Delivery {
            retry: failed,
            error: Some("simulated throttling".into()),
            api_calls: 1,
            ..Delivery::default()
        }
    }
}

/// Refuses for good the readings of every message whose payload names
/// `bad_device`, as CloudWatch does a request it finds invalid.
struct RefusingFor {
    bad_device: &'static str,
}

#[async_trait]
impl MetricsSink for RefusingFor {
    async fn send(&self, readings: &[Reading]) -> Delivery {
        let mut refused: Vec<u32> = readings
            .iter()
            .filter(|reading| reading.device == self.bad_device)
            .map(|reading| reading.message)
            .collect();
        refused.dedup();
        Delivery::failed(
            &refused,
            "InvalidParameterValue: simulated".into(),
            FailureKind::Permanent,
        )
    }
}

const NOW_MS: i64 = 1_645_938_300_000;

#[tokio::test]
async fn one_bad_record_and_one_sink_failure_report_only_the_failed_record() {
    let event = sqs_event(&[
        (
            "good",
            r#"{"timestamp": 1645938060, "device": "ok-sensor", "temperature": 17.9}"#,
        ),
        (
            "bad",
            r#"{"timestamp": 1645938060, "device": "ok-sensor", "temperature": "hot"}"#,
        ),
        (
            "throttled",
            r#"{"timestamp": 1645938061, "device": "unlucky", "temperature": 18.0}"#,
        ),
    ]);
    let dead = CapturedDeadLetters::default();
    let (response, counts) = InvocationSettings::default()
        .process_metrics(
            &event,
            "r",
            NOW_MS,
            &FailingFor {
                bad_device: "unlucky",
            },
            &dead,
        )
        .await
        .unwrap();
    assert_eq!(
        response.to_json(),
        json!({"batchItemFailures": [{"itemIdentifier": "throttled"}]})
    );
    let letters = dead.letters.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message_id, "bad");
    assert!(
        letters[0].reason.contains("no numeric field"),
        "{}",
        letters[0].reason
    );
    assert_eq!(counts.retried, 1);
}

#[tokio::test]
async fn dead_letters_that_cannot_be_written_are_retried_instead() {
    let event = sqs_event(&[
        ("bad", "not a reading"),
        ("good", r#"{"device": "d", "t": 1}"#),
    ]);
    let dead = CapturedDeadLetters {
        fail: true,
        ..Default::default()
    };
    let (response, _) = InvocationSettings::default()
        .process_metrics(
            &event,
            "r",
            NOW_MS,
            &FailingFor { bad_device: "none" },
            &dead,
        )
        .await
        .unwrap();
    assert_eq!(
        response.to_json(),
        json!({"batchItemFailures": [{"itemIdentifier": "bad"}]})
    );
}

#[tokio::test]
async fn asynchronous_triggers_fail_the_invocation_so_lambda_retries() {
    let event = std::fs::read(repo_root().join("events/iot-rule--temp.json")).unwrap();
    let dead = CapturedDeadLetters::default();
    let error = InvocationSettings::default()
        .process_metrics(
            &event,
            "r",
            NOW_MS,
            &FailingFor {
                bad_device: "temp-sensor-istanbul",
            },
            &dead,
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("simulated throttling"),
        "{error}"
    );
}

#[tokio::test]
async fn pubsub_push_over_http_answers_503_so_pubsub_redelivers() {
    let event = std::fs::read(repo_root().join("events/pubsub-http--temp.json")).unwrap();
    let pipeline = InvocationSettings {
        verification_token: Some("sample-token".into()),
        ..InvocationSettings::default()
    };
    let dead = CapturedDeadLetters::default();
    let (response, _) = pipeline
        .process_metrics(
            &event,
            "r",
            NOW_MS,
            &FailingFor {
                bad_device: "temp-sensor-istanbul",
            },
            &dead,
        )
        .await
        .unwrap();
    assert_eq!(response.to_json()["statusCode"], 503);
}

#[tokio::test]
async fn kinesis_reports_sequence_numbers() {
    let sample = Sample::load("kinesis--temp.json");
    let sequence_number = sample.records()[0]["kinesis"]["sequenceNumber"]
        .as_str()
        .expect("a Kinesis record");
    let dead = CapturedDeadLetters::default();
    let (response, _) = InvocationSettings::default()
        .process_metrics(
            &sample.bytes,
            "r",
            NOW_MS,
            &FailingFor {
                bad_device: "temp-sensor-istanbul",
            },
            &dead,
        )
        .await
        .unwrap();
    assert_eq!(
        response.to_json(),
        json!({"batchItemFailures": [{"itemIdentifier": sequence_number}]})
    );
}

#[tokio::test]
async fn a_permanent_sink_failure_is_dead_lettered_not_retried() {
    let event = sqs_event(&[
        (
            "good",
            r#"{"timestamp": 1645938060, "device": "ok-sensor", "temperature": 17.9}"#,
        ),
        (
            "refused",
            r#"{"timestamp": 1645938061, "device": "refused-sensor", "temperature": 18.0}"#,
        ),
    ]);
    let dead = CapturedDeadLetters::default();
    let (response, counts) = InvocationSettings::default()
        .process_metrics(
            &event,
            "req",
            NOW_MS,
            &RefusingFor {
                bad_device: "refused-sensor",
            },
            &dead,
        )
        .await
        .unwrap();
    // Nothing to retry: a refused request would be refused again.
    assert_eq!(response.to_json(), json!({"batchItemFailures": []}));
    let letters = dead.letters.lock().unwrap().clone();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].message_id, "refused");
    assert!(
        letters[0].reason.contains("InvalidParameterValue"),
        "{}",
        letters[0].reason
    );
    assert_eq!((counts.dead_lettered, counts.retried), (1, 0));

    // The same refusal through a trigger without batch answers is not an
    // invocation error either: the message is dead-lettered, not retried.
    let dead = CapturedDeadLetters::default();
    let rule_event =
        br#"{"timestamp": 1645938061, "device": "refused-sensor", "temperature": 18.0}"#;
    let outcome = InvocationSettings::default()
        .process_metrics(
            rule_event,
            "req",
            NOW_MS,
            &RefusingFor {
                bad_device: "refused-sensor",
            },
            &dead,
        )
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(dead.letters.lock().unwrap().len(), 1);
}
