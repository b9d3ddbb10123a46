//! EventBridge: the device message is the event's `detail`; `id` and
//! `time` are the message id and the time it was received.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::{raw_string, rfc3339_to_ms, Envelope, EventKind, MessageSource, RawMessage};

/// The message of an event with a `detail-type` and a `detail`.
pub(super) fn event<'a>(
    id: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    detail: &'a RawValue,
) -> Envelope<'a> {
    let mut message = RawMessage::new(
        MessageSource::EventBridge,
        id.map(raw_string).unwrap_or(Cow::Borrowed("")),
        Cow::Borrowed(detail.get().as_bytes()),
    );
    message.received_at_ms = time.map(raw_string).and_then(|time| rfc3339_to_ms(&time));
    Envelope {
        kind: EventKind::EventBridge,
        messages: vec![message],
        http: None,
        window: None,
    }
}
