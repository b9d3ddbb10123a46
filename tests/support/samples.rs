//! The sample events in events/ and what events/expected/ says each one
//! produces (tools/make_events.py writes both), so that a test takes a
//! sample's message ids and counts from there instead of copying them.

use serde_json::Value;

use crate::repo_root;

/// The reason of the dead letters only CloudWatch's age limit causes: the
/// warehouse keeps readings of any age.
const CLOUDWATCH_AGE_LIMIT: &str = "more than 14 days old";

/// One sample event and its expectation.
pub struct Sample {
    /// The event as a trigger delivers it.
    pub bytes: Vec<u8>,
    /// The same, parsed.
    pub event: Value,
    /// `events/expected/<file>`: `now`, `metrics`, `dead_letters` (each a
    /// `message_id` and a part of its `reason`) and `response`, as the
    /// metrics function produces them.
    pub expected: Value,
}

impl Sample {
    /// `events/<file>` and `events/expected/<file>`.
    pub fn load(file: &str) -> Sample {
        let read = |path: std::path::PathBuf| {
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let bytes = read(repo_root().join("events").join(file));
        let event = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let expected =
            serde_json::from_slice(&read(repo_root().join("events/expected").join(file)))
                .unwrap_or_else(|e| panic!("events/expected/{file}: {e}"));
        Sample {
            bytes,
            event,
            expected,
        }
    }

    /// The metrics the metrics function emits for the sample, one a reading.
    pub fn metrics(&self) -> &[Value] {
        self.expected["metrics"].as_array().expect("metrics")
    }

    /// The metrics named `metric`.
    pub fn metrics_named(&self, metric: &str) -> usize {
        self.metrics()
            .iter()
            .filter(|m| m["metric"] == metric)
            .count()
    }

    /// The metrics function's dead letters: (message id, part of the reason).
    pub fn dead_letters(&self) -> Vec<(&str, &str)> {
        self.expected["dead_letters"]
            .as_array()
            .expect("dead_letters")
            .iter()
            .map(|letter| {
                (
                    letter["message_id"].as_str().expect("message_id"),
                    letter["reason"].as_str().expect("reason"),
                )
            })
            .collect()
    }

    /// The warehouse function's dead letters: the metrics function's, less
    /// those only CloudWatch's age limit causes.
    pub fn warehouse_dead_letters(&self) -> Vec<(&str, &str)> {
        self.dead_letters()
            .into_iter()
            .filter(|(_, reason)| !reason.contains(CLOUDWATCH_AGE_LIMIT))
            .collect()
    }

    /// The records of a batch event (SQS, SNS, Kinesis).
    pub fn records(&self) -> &[Value] {
        self.event["Records"].as_array().expect("a batch event")
    }

    /// The body of the SQS record `message_id`.
    pub fn sqs_body(&self, message_id: &str) -> &str {
        self.records()
            .iter()
            .find(|record| record["messageId"] == message_id)
            .and_then(|record| record["body"].as_str())
            .unwrap_or_else(|| panic!("no SQS record {message_id:?}"))
    }
}
