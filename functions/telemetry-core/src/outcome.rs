//! What an invocation did and the answer it owes its trigger, shared by the
//! invocation skeleton and the sinks that report to it.

use aws_lambda_events::sqs::SqsBatchResponse;
use aws_lambda_events::streams::KinesisEventResponse;
use serde_json::{json, Value};

/// The answer for the trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// SQS: the message ids to retry, and only those.
    SqsBatchItemFailures(Vec<String>),
    /// Kinesis: the sequence numbers to retry, and only those.
    KinesisBatchItemFailures(Vec<String>),
    /// Pub/Sub push over HTTP (function URL).
    Http { status: u16, body: Value },
    /// Other triggers: what was done.
    Summary(Value),
    /// Kinesis with a tumbling window: the state for the window's next
    /// invocation (an answer without one counts as a failed invocation).
    /// The windows function never checkpoints part of a batch (see
    /// `invocation::windows`), so its `batchItemFailures` list is empty.
    Window { state: Value },
}

impl Response {
    /// The answer as the Lambda service expects it back.
    pub fn to_json(&self) -> Value {
        match self {
            Response::SqsBatchItemFailures(ids) => {
                let mut response = SqsBatchResponse::default();
                response.set_failures(ids.iter().cloned());
                to_value(&response)
            }
            Response::KinesisBatchItemFailures(ids) => {
                let mut response = KinesisEventResponse::default();
                response.set_failures(ids.iter().cloned());
                to_value(&response)
            }
            // A function URL's response; `LambdaFunctionUrlResponse` would
            // add empty `cookies` and `isBase64Encoded` for nothing.
            Response::Http { status, body } => json!({
                "statusCode": status,
                "headers": {"content-type": "application/json"},
                "body": body.to_string(),
            }),
            Response::Summary(summary) => summary.clone(),
            Response::Window { state } => json!({"state": state, "batchItemFailures": []}),
        }
    }

    /// The ids the trigger is asked to redeliver, for SQS and Kinesis.
    pub fn batch_item_failures(&self) -> Option<&[String]> {
        match self {
            Response::SqsBatchItemFailures(ids) | Response::KinesisBatchItemFailures(ids) => {
                Some(ids)
            }
            _ => None,
        }
    }
}

/// The batch responses hold only strings: serialising them cannot fail.
fn to_value(response: &impl serde::Serialize) -> Value {
    serde_json::to_value(response).expect("a batch response serialises")
}

/// The invocation must fail so that the trigger retries it (asynchronous
/// invocations: IoT rule, SNS, EventBridge, direct Pub/Sub push).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {messages} messages were not delivered and will be retried: {reason}")]
pub struct RetryLater {
    pub failed: usize,
    pub messages: usize,
    pub reason: String,
    pub counts: Counts,
}

impl RetryLater {
    /// The `errorType` Lambda records for the failed invocation.
    pub const ERROR_TYPE: &'static str = "Telemetry.NotDelivered";
}

/// An error and its causes on one line, for logs and dead letters:
/// drivers' and SDKs' errors often say only "db error" or "service error"
/// at the top and leave what the server said to a cause.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Counts for the log and the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub messages: usize,
    pub readings_accepted: usize,
    pub readings_rejected: usize,
    pub dead_lettered: usize,
    pub retried: usize,
    pub api_calls: u32,
}

/// Whether a failed write is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttling, 5xx, timeouts, a lost connection: may pass; retried.
    Transient,
    /// Validation, access denied, a 4xx that fails the same way again:
    /// dead-lettered with its reason.
    Permanent,
}

/// What a backend did with one invocation's work, per message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    /// Messages to redeliver: the backend failed in a way that may pass
    /// (throttling, 5xx, timeouts, a lost connection).
    pub retry: Vec<u32>,
    /// Messages the backend refused for good (validation, access denied, a
    /// 4xx that would fail the same way again), with the reason: they are
    /// dead-lettered, not retried.
    pub refused: Vec<(u32, String)>,
    /// The last error seen, for the log and the trigger's answer.
    pub error: Option<String>,
    /// API calls made (EMF: zero).
    pub api_calls: u32,
}

impl Delivery {
    /// Every message of `messages` failed with `error`, transiently or not.
    pub fn failed(messages: &[u32], error: String, kind: FailureKind) -> Self {
        let mut delivery = Delivery::default();
        delivery.fail(messages, error, kind);
        delivery
    }

    /// Records that `messages` failed with `error`.
    pub fn fail(&mut self, messages: &[u32], error: String, kind: FailureKind) {
        if kind == FailureKind::Transient {
            self.retry.extend_from_slice(messages);
        } else {
            self.refused
                .extend(messages.iter().map(|&message| (message, error.clone())));
        }
        self.error = Some(error);
    }

    /// Adds what `other` reports (another backend's part of the work).
    pub fn absorb(&mut self, other: Delivery) {
        self.retry.extend(other.retry);
        self.refused.extend(other.refused);
        self.error = other.error.or(self.error.take());
        self.api_calls += other.api_calls;
    }

    /// Sorts and de-duplicates the message lists (a message whose readings
    /// went out in several requests may fail in more than one).
    pub fn settle(&mut self) {
        self.retry.sort_unstable();
        self.retry.dedup();
        self.refused.sort_by_key(|(message, _)| *message);
        self.refused.dedup_by_key(|(message, _)| *message);
        // A message to retry is not also dead-lettered: it will come back.
        self.refused
            .retain(|(message, _)| self.retry.binary_search(message).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_answers_have_the_shape_lambda_reads() {
        let ids = vec!["a".to_owned(), "b".to_owned()];
        let expected =
            json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]});
        assert_eq!(
            Response::SqsBatchItemFailures(ids.clone()).to_json(),
            expected
        );
        assert_eq!(Response::KinesisBatchItemFailures(ids).to_json(), expected);
        assert_eq!(
            Response::SqsBatchItemFailures(Vec::new()).to_json(),
            json!({"batchItemFailures": []})
        );
    }

    #[test]
    fn a_message_to_retry_is_not_also_refused() {
        let mut delivery = Delivery::default();
        delivery.fail(&[3, 1], "throttled".into(), FailureKind::Transient);
        delivery.fail(&[1, 2, 2], "bad request".into(), FailureKind::Permanent);
        delivery.settle();
        assert_eq!(delivery.retry, vec![1, 3]);
        assert_eq!(delivery.refused, vec![(2, "bad request".to_owned())]);
        assert_eq!(delivery.error.as_deref(), Some("bad request"));
    }
}
