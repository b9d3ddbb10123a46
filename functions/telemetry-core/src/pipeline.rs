//! One invocation, end to end: unwrap the envelope, decode and validate
//! every message, hand valid readings to the metrics sink, dead-letter the
//! rest, and answer in the form the trigger understands.

use serde_json::{json, Value};

use crate::deadletter::DeadLetter;
use crate::decode::decode_message;
use crate::envelope::{parse_event, EventKind, HttpRequestInfo, RawMessage};
use crate::mapping::Mappings;
use crate::reading::Reading;
use crate::sink::{DeadLetterSink, MetricsSink};
use crate::validate::validate;

/// Settings the pipeline needs for every event.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub mappings: Mappings,
    /// Shared token a Pub/Sub push subscription appends as `?token=`.
    pub verification_token: Option<String>,
    /// Store every reading at one-second resolution.
    pub high_resolution: bool,
}

/// An event unwrapped, decoded and validated; nothing sent yet.
pub struct DecodedBatch<'e> {
    pub kind: EventKind,
    pub http: Option<HttpRequestInfo>,
    pub messages: Vec<RawMessage<'e>>,
    /// Valid readings; `Reading::message` indexes `messages`.
    pub readings: Vec<Reading>,
    pub dead_letters: Vec<DeadLetter>,
    /// Message indexes behind `dead_letters` (same order).
    pub dead_lettered_messages: Vec<u32>,
    pub rejected_readings: usize,
}

/// The answer for the trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// SQS and Kinesis: the records to retry, and only those.
    BatchItemFailures(Vec<String>),
    /// Pub/Sub push over HTTP.
    Http { status: u16, body: Value },
    /// Other triggers: what was done.
    Summary(Value),
}

impl Response {
    pub fn to_json(&self) -> Value {
        match self {
            Response::BatchItemFailures(ids) => json!({
                "batchItemFailures": ids.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()
            }),
            Response::Http { status, body } => json!({
                "statusCode": status,
                "headers": {"content-type": "application/json"},
                "body": body.to_string(),
            }),
            Response::Summary(summary) => summary.clone(),
        }
    }
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

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for index in 0..a.len().max(b.len()) {
        let x = a.get(index).copied().unwrap_or(0);
        let y = b.get(index).copied().unwrap_or(0);
        difference |= usize::from(x ^ y);
    }
    difference == 0
}

impl Pipeline {
    /// Checks a Pub/Sub push request's token; `Some` is the refusal to send.
    pub fn refuse_http(&self, http: &HttpRequestInfo) -> Option<Response> {
        let refuse = |status: u16, reason: &str| {
            tracing::warn!(status, reason, "refused a Pub/Sub push request");
            Some(Response::Http {
                status,
                body: json!({"error": reason}),
            })
        };
        let Some(expected) = self.verification_token.as_deref().filter(|t| !t.is_empty()) else {
            return refuse(
                403,
                "PUBSUB_VERIFICATION_TOKEN is not set on the function; push requests are refused until it is",
            );
        };
        match http.token.as_deref() {
            None => refuse(401, "missing ?token= verification token"),
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => None,
            Some(_) => refuse(403, "wrong verification token"),
        }
    }

    /// Unwraps and decodes an event whose envelope could be read.
    pub fn decode<'e>(
        &self,
        kind: EventKind,
        http: Option<HttpRequestInfo>,
        messages: Vec<RawMessage<'e>>,
        request_id: &str,
        now_ms: i64,
    ) -> DecodedBatch<'e> {
        let mut batch = DecodedBatch {
            kind,
            http,
            readings: Vec::with_capacity(messages.len() * 2),
            messages: Vec::new(),
            dead_letters: Vec::new(),
            dead_lettered_messages: Vec::new(),
            rejected_readings: 0,
        };
        for (index, message) in messages.iter().enumerate() {
            let index = index as u32;
            if let Some(problem) = &message.problem {
                batch.reject(message, index, problem.clone(), request_id, now_ms);
                continue;
            }
            let start = batch.readings.len();
            match decode_message(&self.mappings, message, index, now_ms, &mut batch.readings) {
                Err(error) => batch.reject(message, index, error.to_string(), request_id, now_ms),
                Ok(_) => {
                    let mut reasons = Vec::new();
                    let mut kept = start;
                    for position in start..batch.readings.len() {
                        if self.high_resolution {
                            batch.readings[position].high_resolution = true;
                        }
                        match validate(&batch.readings[position], now_ms) {
                            Ok(()) => {
                                batch.readings.swap(kept, position);
                                kept += 1;
                            }
                            Err(invalid) => reasons.push(invalid.to_string()),
                        }
                    }
                    batch.readings.truncate(kept);
                    if !reasons.is_empty() {
                        batch.rejected_readings += reasons.len();
                        // The message is kept whole in the dead letter, even
                        // when some of its readings were delivered.
                        let reason = reasons.join("; ");
                        batch.reject(message, index, reason, request_id, now_ms);
                    }
                }
            }
        }
        batch.messages = messages;
        batch
    }

    /// Runs one invocation of the metrics function.
    pub async fn process_metrics(
        &self,
        event: &[u8],
        request_id: &str,
        now_ms: i64,
        metrics: &dyn MetricsSink,
        dead_letters: &dyn DeadLetterSink,
    ) -> Result<(Response, Counts), RetryLater> {
        let envelope = match parse_event(event) {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = format!("unreadable event: {error}");
                tracing::warn!(%reason, "dead-lettering the whole event");
                let letter = DeadLetter::whole_event(event, request_id, reason.clone(), now_ms);
                let written = dead_letters
                    .write(&[letter])
                    .await
                    .map_err(|e| e.to_string());
                return unreadable_event_outcome(reason, written);
            }
        };
        if let Some(http) = &envelope.http {
            if let Some(refusal) = self.refuse_http(http) {
                return Ok((refusal, Counts::default()));
            }
        }
        let batch = self.decode(
            envelope.kind,
            envelope.http,
            envelope.messages,
            request_id,
            now_ms,
        );
        let delivery = if batch.readings.is_empty() {
            Default::default()
        } else {
            metrics.send(&batch.readings).await
        };
        let mut failed = delivery.failed_messages.clone();
        let mut reason = delivery.error.clone();
        let mut dead_lettered = batch.dead_letters.len();
        if !batch.dead_letters.is_empty() {
            match dead_letters.write(&batch.dead_letters).await {
                Ok(location) => {
                    for (letter, _) in batch.dead_letters.iter().zip(&batch.dead_lettered_messages)
                    {
                        tracing::warn!(
                            message_id = %letter.message_id,
                            source = %letter.source,
                            reason = %letter.reason,
                            location = %location,
                            "dead-lettered"
                        );
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "dead letters not written; their messages will be retried");
                    failed.extend(&batch.dead_lettered_messages);
                    reason = Some(error.to_string());
                    dead_lettered = 0;
                }
            }
        }
        failed.sort_unstable();
        failed.dedup();
        let counts = Counts {
            messages: batch.messages.len(),
            readings_accepted: batch.readings.len(),
            readings_rejected: batch.rejected_readings,
            dead_lettered,
            retried: failed.len(),
            api_calls: delivery.api_calls,
        };
        finish(&batch, failed, reason, counts)
    }
}

/// The answer for an event that could not be unwrapped, once it was (or
/// could not be) dead-lettered whole: done, or retried.
pub fn unreadable_event_outcome(
    reason: String,
    written: Result<String, String>,
) -> Result<(Response, Counts), RetryLater> {
    match written {
        Ok(location) => Ok((
            Response::Summary(
                json!({"dead_lettered": 1, "reason": reason, "dead_letters": location}),
            ),
            Counts {
                messages: 1,
                dead_lettered: 1,
                ..Counts::default()
            },
        )),
        Err(error) => Err(RetryLater {
            failed: 1,
            messages: 1,
            reason: error,
            counts: Counts {
                messages: 1,
                retried: 1,
                ..Counts::default()
            },
        }),
    }
}

/// Turns the per-message outcome into the trigger's answer.
pub fn finish(
    batch: &DecodedBatch<'_>,
    failed: Vec<u32>,
    reason: Option<String>,
    counts: Counts,
) -> Result<(Response, Counts), RetryLater> {
    tracing::info!(
        trigger = batch.kind.as_str(),
        messages = counts.messages,
        readings_accepted = counts.readings_accepted,
        readings_rejected = counts.readings_rejected,
        dead_lettered = counts.dead_lettered,
        retried = counts.retried,
        api_calls = counts.api_calls,
        "processed"
    );
    let summary = || {
        json!({
            "messages": counts.messages,
            "readings_accepted": counts.readings_accepted,
            "readings_rejected": counts.readings_rejected,
            "dead_lettered": counts.dead_lettered,
            "retried": counts.retried,
        })
    };
    if batch.kind.reports_batch_item_failures() {
        let ids = failed
            .iter()
            .filter_map(|index| batch.messages.get(*index as usize))
            .map(|message| message.id.to_string())
            .collect();
        return Ok((Response::BatchItemFailures(ids), counts));
    }
    if batch.kind == EventKind::PubSubHttp {
        // Pub/Sub redelivers on any status but 102, 200, 201, 202 and 204.
        let status = if failed.is_empty() { 200 } else { 503 };
        let mut body = summary();
        if let Some(reason) = reason.filter(|_| !failed.is_empty()) {
            body["error"] = json!(reason);
        }
        return Ok((Response::Http { status, body }, counts));
    }
    if !failed.is_empty() {
        return Err(RetryLater {
            failed: failed.len(),
            messages: counts.messages,
            reason: reason.unwrap_or_else(|| "delivery failed".into()),
            counts,
        });
    }
    Ok((Response::Summary(summary()), counts))
}

impl DecodedBatch<'_> {
    fn reject(
        &mut self,
        message: &RawMessage<'_>,
        index: u32,
        reason: String,
        request_id: &str,
        now_ms: i64,
    ) {
        self.dead_letters
            .push(DeadLetter::new(message, request_id, reason, now_ms));
        self.dead_lettered_messages.push(index);
    }
}
