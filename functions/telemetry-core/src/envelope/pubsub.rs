//! Google Pub/Sub push: `{"message": {"data", "attributes", "messageId",
//! "publishTime"}, "subscription"}`, as the invocation's event or as the
//! body of an HTTP request (see `http`).

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;

use serde_json::value::RawValue;

use super::{
    cow_bytes, rfc3339_to_ms, Envelope, EnvelopeError, EventKind, MessageSource, RawMessage,
};
use crate::json::text::{Text, TextPairs};

/// Google Pub/Sub push: `{"message": {...}, "subscription": "..."}`.
#[derive(Deserialize)]
pub(super) struct PubSubPushEnvelope<'a> {
    #[serde(borrow)]
    pub(super) message: PubSubMessage<'a>,
    #[serde(borrow, default)]
    #[allow(dead_code)] // part of the documented shape; only its presence matters
    pub(super) subscription: Option<Text<'a>>,
}

#[derive(Deserialize)]
pub(super) struct PubSubMessage<'a> {
    #[serde(borrow, default)]
    pub(super) data: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) attributes: Option<TextPairs<'a>>,
    // Pub/Sub sends both spellings of these two; either may be alone.
    #[serde(rename = "messageId", borrow, default)]
    pub(super) message_id: Option<Text<'a>>,
    #[serde(rename = "message_id", borrow, default)]
    pub(super) message_id_snake: Option<Text<'a>>,
    #[serde(rename = "publishTime", borrow, default)]
    pub(super) publish_time: Option<Text<'a>>,
    #[serde(rename = "publish_time", borrow, default)]
    pub(super) publish_time_snake: Option<Text<'a>>,
}

/// A push envelope passed as the invocation's event: its `message`.
pub(super) fn parse_push(message: &RawValue) -> Result<Envelope<'_>, EnvelopeError> {
    let message: PubSubMessage<'_> =
        serde_json::from_str(message.get()).map_err(|error| EnvelopeError::InvalidField {
            field: "message",
            why: error.to_string(),
        })?;
    Ok(Envelope {
        kind: EventKind::PubSubPush,
        messages: vec![pubsub_message(message)],
        http: None,
        window: None,
    })
}

pub(super) fn pubsub_message(message: PubSubMessage<'_>) -> RawMessage<'_> {
    let id = message
        .message_id
        .or(message.message_id_snake)
        .map(Text::into_cow)
        .unwrap_or_default();
    let data = message.data.map(Text::into_cow).unwrap_or_default();
    let mut raw = match base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) {
        Ok(decoded) => RawMessage::new(MessageSource::PubSub, id, Cow::Owned(decoded)),
        Err(error) => {
            let mut raw = RawMessage::new(MessageSource::PubSub, id, cow_bytes(data));
            raw.problem = Some(format!("field `message.data` is not valid base64: {error}"));
            raw
        }
    };
    raw.received_at_ms = message
        .publish_time
        .or(message.publish_time_snake)
        .and_then(|time| rfc3339_to_ms(&time));
    raw.attributes = message.attributes.unwrap_or_default().0;
    // Cloud IoT Core style attributes carry the topic folder.
    raw.topic = raw
        .attribute("subFolder")
        .filter(|folder| !folder.is_empty())
        .map(|folder| Cow::Owned(folder.to_owned()));
    raw
}
