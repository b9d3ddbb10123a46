//! AWS IoT Core topic rule, Lambda action: the rule's `SELECT` output, one
//! object (the event itself) or an array of them. Messages are named by
//! their content, so a redelivered event keeps its ids.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::{content_id, Envelope, EnvelopeError, EventKind, MessageSource, RawMessage};

/// A rule output object: the device payload itself, byte for byte.
pub(super) fn rule_output(event: &[u8]) -> Envelope<'_> {
    Envelope {
        kind: EventKind::IotRule,
        messages: vec![RawMessage::new(
            MessageSource::IotRule,
            Cow::Owned(content_id(event)),
            Cow::Borrowed(event),
        )],
        http: None,
        window: None,
    }
}

pub(super) fn parse_iot_batch(event: &str) -> Result<Envelope<'_>, EnvelopeError> {
    let items: Vec<&RawValue> = serde_json::from_str(event).map_err(EnvelopeError::NotJson)?;
    let messages = items
        .into_iter()
        .map(|item| {
            let payload = item.get().as_bytes();
            RawMessage::new(
                MessageSource::IotRule,
                Cow::Owned(content_id(payload)),
                Cow::Borrowed(payload),
            )
        })
        .collect();
    Ok(Envelope {
        kind: EventKind::IotRule,
        messages,
        http: None,
        window: None,
    })
}
