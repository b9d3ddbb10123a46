//! SNS: `Records[].Sns.Message` with its message attributes, and the same
//! notification as the body of an SQS message (SNS -> SQS without raw
//! message delivery).

use std::borrow::Cow;

use serde::Deserialize;

use super::records::Record;
use super::{broken, cow_bytes, rfc3339_to_ms, MessageSource, RawMessage};
use crate::json::text::Text;

/// An SNS notification: the `Sns` object of an SNS event, or the body of an
/// SQS message from an SNS subscription without raw message delivery.
#[derive(Deserialize)]
pub(super) struct SnsNotification<'a> {
    #[serde(rename = "Type", borrow, default)]
    pub(super) kind: Option<Text<'a>>,
    #[serde(rename = "MessageId", borrow)]
    pub(super) message_id: Text<'a>,
    #[serde(rename = "TopicArn", borrow, default)]
    pub(super) topic_arn: Option<Text<'a>>,
    #[serde(rename = "Message", borrow)]
    pub(super) message: Text<'a>,
    #[serde(rename = "Timestamp", borrow, default)]
    pub(super) timestamp: Option<Text<'a>>,
    #[serde(rename = "MessageAttributes", borrow, default)]
    pub(super) message_attributes: Option<SnsAttributes<'a>>,
}

#[derive(Deserialize)]
pub(super) struct SnsAttribute<'a> {
    #[serde(rename = "Value", alias = "value", borrow, default)]
    pub(super) value: Option<Text<'a>>,
}

/// SNS `MessageAttributes`: name -> `{"Type": ..., "Value": ...}`.
#[derive(Default)]
pub(super) struct SnsAttributes<'a>(pub(super) Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for SnsAttributes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttributesVisitor;
        impl<'de> serde::de::Visitor<'de> for AttributesVisitor {
            type Value = SnsAttributes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of SNS message attributes")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::new();
                while let Some((name, attribute)) =
                    map.next_entry::<Text<'de>, SnsAttribute<'de>>()?
                {
                    if let Some(value) = attribute.value {
                        pairs.push((name.0, value.0));
                    }
                }
                Ok(SnsAttributes(pairs))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(SnsAttributes::default())
            }
        }
        deserializer.deserialize_any(AttributesVisitor)
    }
}

/// SNS writes `Type` first in its JSON; checking the first key keeps the
/// common case (a device payload) to a few byte comparisons.
pub(super) fn looks_like_sns_notification(body: &str) -> bool {
    body.trim_start()
        .strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with("\"Type\""))
}

pub(super) fn notification_message(
    notification: SnsNotification<'_>,
    source: MessageSource,
) -> RawMessage<'_> {
    let mut message = RawMessage::new(
        source,
        notification.message_id.0,
        cow_bytes(notification.message.0),
    );
    message.received_at_ms = notification.timestamp.and_then(|time| rfc3339_to_ms(&time));
    if let Some(topic_arn) = notification.topic_arn {
        message
            .attributes
            .push((Cow::Borrowed("TopicArn"), topic_arn.0));
    }
    if let Some(attributes) = notification.message_attributes {
        message.attributes.extend(attributes.0);
    }
    message
}

pub(super) fn sns_message(record: Record<'_>) -> RawMessage<'_> {
    match record.sns {
        Some(notification) => notification_message(notification, MessageSource::Sns),
        None => broken(MessageSource::Sns, "", "the SNS record has no `Sns` object"),
    }
}
