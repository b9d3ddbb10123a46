//! The declarative mapping file (TOML, path in `PIPELINE_CONFIG`): which
//! topics carry which payload layout, and where device, timestamp, values,
//! units and dimensions are found. See the README for the format.

use std::fmt;

use compact_str::CompactString;

use crate::payload::timestamp::TimestampFormat;
use crate::payload::topic::TopicFilter;
use crate::payload::unit::Unit;

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSource {
    /// RFC 6901 JSON pointer into the payload; for delimited text, `/N` is column N.
    Pointer(String),
    /// The whole MQTT topic.
    Topic,
    /// One topic segment, 0-based; negative counts from the end.
    TopicSegment(i32),
    /// A message attribute (Pub/Sub attributes, SNS message attributes).
    Attribute(String),
    /// The MQTT client id, as an IoT rule's `clientid() AS client_id` adds it.
    ClientId,
    /// The id the source gave the message.
    MessageId,
    /// When the rule or the trigger received the message (epoch ms).
    ReceivedAt,
    Constant(String),
}

/// Text that names no field source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a field source; expected a JSON pointer (\"/device\", \"/0\" for a \
     delimited column), \"topic\", \"topic[1]\", \"attribute:NAME\", \"client_id\", \
     \"message_id\", \"received_at\" or \"const:VALUE\""
)]
pub struct NotAFieldSource(pub String);

impl FieldSource {
    pub fn parse(text: &str) -> Result<Self, NotAFieldSource> {
        let text = text.trim();
        if text.starts_with('/') {
            return Ok(FieldSource::Pointer(text.to_owned()));
        }
        if let Some(constant) = text.strip_prefix("const:") {
            return Ok(FieldSource::Constant(constant.to_owned()));
        }
        if let Some(name) = text.strip_prefix("attribute:") {
            if !name.is_empty() {
                return Ok(FieldSource::Attribute(name.to_owned()));
            }
        }
        if let Some(index) = text
            .strip_prefix("topic[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            if let Ok(index) = index.trim().parse() {
                return Ok(FieldSource::TopicSegment(index));
            }
        }
        match text {
            "topic" => Ok(FieldSource::Topic),
            "client_id" => Ok(FieldSource::ClientId),
            "message_id" => Ok(FieldSource::MessageId),
            "received_at" => Ok(FieldSource::ReceivedAt),
            _ => Err(NotAFieldSource(text.to_owned())),
        }
    }
}

impl fmt::Display for FieldSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldSource::Pointer(pointer) => f.write_str(pointer),
            FieldSource::Topic => f.write_str("topic"),
            FieldSource::TopicSegment(index) => write!(f, "topic[{index}]"),
            FieldSource::Attribute(name) => write!(f, "attribute:{name}"),
            FieldSource::ClientId => f.write_str("client_id"),
            FieldSource::MessageId => f.write_str("message_id"),
            FieldSource::ReceivedAt => f.write_str("received_at"),
            FieldSource::Constant(value) => write!(f, "const:{value}"),
        }
    }
}

/// How the payload is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// JSON when it parses as JSON, delimited text otherwise.
    Auto,
    Json,
    Delimited(char),
}

/// A metric name, fixed or read from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSource {
    Fixed(CompactString),
    From(FieldSource),
}

/// A unit, fixed or read from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitSource {
    Fixed(Unit),
    From(FieldSource),
}

/// One metric a mapping extracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRule {
    pub name: NameSource,
    pub value: FieldSource,
    pub unit: UnitSource,
    pub high_resolution: bool,
}

/// A compiled `[[mapping]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub name: String,
    pub topic: Option<TopicFilter>,
    pub format: PayloadFormat,
    pub device: Option<FieldSource>,
    pub timestamp: Option<FieldSource>,
    pub timestamp_format: TimestampFormat,
    /// Empty: every numeric field becomes a metric.
    pub metrics: Vec<MetricRule>,
    pub dimensions: Vec<(CompactString, FieldSource)>,
    pub high_resolution: bool,
}

/// The `[[mapping]]` entries of the pipeline file, tried in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mappings(pub Vec<Mapping>);

impl Mappings {
    /// The first mapping whose topic filter matches (a mapping without a
    /// filter matches every message).
    pub fn select(&self, topic: Option<&str>) -> Option<&Mapping> {
        self.0.iter().find(|mapping| match &mapping.topic {
            None => true,
            Some(filter) => topic.is_some_and(|topic| filter.matches(topic)),
        })
    }
}

/// "… is not a CloudWatch unit; expected one of …", for config and payload errors.
pub fn unknown_unit_message(text: &str) -> String {
    let names: Vec<&str> = Unit::all().iter().map(|unit| unit.as_str()).collect();
    format!(
        "{text:?} is not a CloudWatch unit; expected one of {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sources_parse_and_display_round_trip() {
        for text in [
            "/device",
            "/0",
            "topic",
            "topic[1]",
            "topic[-2]",
            "attribute:deviceId",
            "client_id",
            "message_id",
            "const:lab",
        ] {
            assert_eq!(FieldSource::parse(text).unwrap().to_string(), text);
        }
        let error = FieldSource::parse("device").unwrap_err().to_string();
        assert!(error.contains("\"device\""), "{error}");
    }
}
