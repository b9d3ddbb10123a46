//! An SQS event as a library (serde_json, sonic-rs) reads it into the
//! fields our scanner reads, for the bench and `examples/compare_envelopes.rs`
//! that decide whether the scanner is still worth its code.

use std::borrow::Cow;

use serde::Deserialize;
use telemetry_core::envelope::{MessageSource, RawMessage};
use telemetry_core::invocation::metrics::MetricsStep;
use telemetry_core::invocation::{Invocation, Step};

/// An SQS event as a library reads it: the fields the scanner reads.
#[derive(Deserialize)]
pub struct SqsEvent<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<SqsRecord<'a>>,
}

#[derive(Deserialize)]
struct SqsRecord<'a> {
    #[serde(rename = "messageId", borrow)]
    message_id: Cow<'a, str>,
    #[serde(borrow)]
    body: Cow<'a, str>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Cow<'a, str>,
    #[serde(borrow)]
    attributes: SqsAttributes<'a>,
}

#[derive(Deserialize)]
struct SqsAttributes<'a> {
    #[serde(rename = "SentTimestamp", borrow)]
    sent_timestamp: Cow<'a, str>,
}

pub fn library_messages(event: SqsEvent<'_>) -> Vec<RawMessage<'_>> {
    event
        .records
        .into_iter()
        .map(|record| {
            assert_eq!(record.event_source, "aws:sqs");
            let body = match record.body {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            };
            let mut message = RawMessage::new(MessageSource::Sqs, record.message_id, body);
            message.received_at_ms = record.attributes.sent_timestamp.parse().ok();
            message
        })
        .collect()
}

/// Decode, validation and EMF, as the handler does them, on messages a
/// library read; returns the readings accepted.
pub fn rest_of_handler(
    step: &MetricsStep<'_>,
    runtime: &tokio::runtime::Runtime,
    messages: Vec<RawMessage<'_>>,
) -> usize {
    const NOW_MS: i64 = 1_645_938_300_000;
    let invocation = Invocation::new("library-envelope", NOW_MS);
    let mut readings = step.start(messages.len());
    for (index, message) in messages.iter().enumerate() {
        step.take(&mut readings, message, index as u32, NOW_MS)
            .expect("every generated message is valid");
    }
    runtime.block_on(step.deliver(&readings, invocation));
    step.accepted(&readings)
}
