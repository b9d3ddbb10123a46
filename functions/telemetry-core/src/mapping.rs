//! The declarative mapping file (TOML, path in `PIPELINE_CONFIG`): which
//! topics carry which payload layout, and where device, timestamp, values,
//! units and dimensions are found. See the README for the format.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::FixedOffset;
use compact_str::CompactString;
use serde::Deserialize;

use crate::timestamp::{parse_offset, TimestampFormat};
use crate::topic::{TopicFilter, TopicFilterError};
use crate::unit::Unit;

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

impl FieldSource {
    pub fn parse(text: &str) -> Result<Self, String> {
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
            _ => Err(format!(
                "{text:?} is not a field source; expected a JSON pointer (\"/device\", \"/0\" for a \
                 delimited column), \"topic\", \"topic[1]\", \"attribute:NAME\", \"client_id\", \
                 \"message_id\", \"received_at\" or \"const:VALUE\""
            )),
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

/// A whole pipeline config: metric mappings, tried in file order, and the
/// warehouse tables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mappings {
    pub namespace: Option<String>,
    pub mappings: Vec<Mapping>,
    pub tables: Vec<crate::table::TableDef>,
}

impl Mappings {
    /// The first mapping whose topic filter matches (a mapping without a
    /// filter matches every message).
    pub fn select(&self, topic: Option<&str>) -> Option<&Mapping> {
        self.mappings.iter().find(|mapping| match &mapping.topic {
            None => true,
            Some(filter) => topic.is_some_and(|topic| filter.matches(topic)),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::parse(&text).map_err(|error| error.in_file(path))
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|error| ConfigError::Syntax {
            path: None,
            message: error.to_string(),
        })?;
        let mappings = file
            .mapping
            .into_iter()
            .enumerate()
            .map(|(index, spec)| compile_mapping(index, spec))
            .collect::<Result<_, _>>()?;
        let tables = file
            .table
            .into_iter()
            .map(crate::table::compile_table)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| ConfigError::Syntax {
                path: None,
                message,
            })?;
        for (index, table) in tables.iter().enumerate() {
            if tables[..index].iter().any(|other| other.name == table.name) {
                return Err(ConfigError::Syntax {
                    path: None,
                    message: format!("table {:?} is declared twice", table.name),
                });
            }
        }
        Ok(Mappings {
            namespace: file.namespace,
            mappings,
            tables,
        })
    }
}

/// The mapping file could not be used; says which entry and field to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the pipeline config {path}: {error} (set PIPELINE_CONFIG to a readable TOML file)")]
    Read { path: String, error: std::io::Error },
    #[error("pipeline config{}: {message}", path.as_deref().map(|p| format!(" {p}")).unwrap_or_default())]
    Syntax {
        path: Option<String>,
        message: String,
    },
    #[error("pipeline config{}: mapping {mapping:?}: `{field}`: {why}", path.as_deref().map(|p| format!(" {p}")).unwrap_or_default())]
    Field {
        path: Option<String>,
        mapping: String,
        field: String,
        why: String,
    },
    #[error(transparent)]
    Topic(#[from] TopicFilterError),
}

impl ConfigError {
    fn in_file(self, file: &Path) -> Self {
        let file = Some(file.display().to_string());
        match self {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: file,
                message,
            },
            ConfigError::Field {
                mapping,
                field,
                why,
                ..
            } => ConfigError::Field {
                path: file,
                mapping,
                field,
                why,
            },
            other => other,
        }
    }
}

// ---- file format ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    mapping: Vec<MappingSpec>,
    /// Warehouse tables.
    #[serde(default)]
    table: Vec<crate::table::TableSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    delimiter: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    timestamp_format: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    high_resolution: bool,
    #[serde(default)]
    metric: Vec<MetricSpec>,
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_from: Option<String>,
    value: String,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    unit_from: Option<String>,
    #[serde(default)]
    high_resolution: Option<bool>,
}

fn compile_mapping(index: usize, spec: MappingSpec) -> Result<Mapping, ConfigError> {
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("#{}", index + 1));
    let fail = |field: &str, why: String| ConfigError::Field {
        path: None,
        mapping: name.clone(),
        field: field.to_owned(),
        why,
    };
    let source = |field: &str, text: &str| FieldSource::parse(text).map_err(|why| fail(field, why));

    let topic = spec.topic.as_deref().map(TopicFilter::new).transpose()?;
    let delimiter = match spec.delimiter.as_deref() {
        None => '|',
        Some(text) => {
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                (Some('\\'), Some('t')) => '\t',
                _ => return Err(fail("delimiter", format!("{text:?} must be one character"))),
            }
        }
    };
    let format = match spec.format.as_deref() {
        None if spec.delimiter.is_some() => PayloadFormat::Delimited(delimiter),
        None | Some("auto") => PayloadFormat::Auto,
        Some("json") => PayloadFormat::Json,
        Some("delimited") | Some("text") => PayloadFormat::Delimited(delimiter),
        Some(other) => {
            return Err(fail(
                "format",
                format!("{other:?} is not a format; expected \"json\", \"delimited\" or \"auto\""),
            ))
        }
    };
    let offset = match spec.timezone.as_deref() {
        None => FixedOffset::east_opt(0).expect("zero offset"),
        Some(text) => parse_offset(text).ok_or_else(|| {
            fail(
                "timezone",
                format!("{text:?} is not an offset; write \"+09:00\", \"-0530\" or \"UTC\""),
            )
        })?,
    };
    let timestamp_format = match spec.timestamp_format.as_deref() {
        None => TimestampFormat::Auto,
        Some(text) => TimestampFormat::from_name(text, offset).ok_or_else(|| {
            fail(
                "timestamp_format",
                format!("{text:?} is not a format; expected \"auto\", \"epoch_s\", \"epoch_ms\", \"rfc3339\" or a strftime pattern such as \"%Y-%m-%d %H:%M:%S\""),
            )
        })?,
    };
    let device = spec
        .device
        .as_deref()
        .map(|t| source("device", t))
        .transpose()?;
    let timestamp = spec
        .timestamp
        .as_deref()
        .map(|t| source("timestamp", t))
        .transpose()?;

    let mut metrics = Vec::with_capacity(spec.metric.len());
    for (position, metric) in spec.metric.into_iter().enumerate() {
        let label = format!("metric[{position}]");
        let name = match (metric.name, metric.name_from) {
            (Some(fixed), None) if !fixed.trim().is_empty() => NameSource::Fixed(fixed.into()),
            (None, Some(from)) => NameSource::From(source(&format!("{label}.name_from"), &from)?),
            _ => {
                return Err(fail(
                    &label,
                    "give exactly one of `name` (a fixed, non-empty name) or `name_from` (a field source)".into(),
                ))
            }
        };
        let unit = match (metric.unit, metric.unit_from) {
            (None, None) => UnitSource::Fixed(Unit::None),
            (Some(fixed), None) => UnitSource::Fixed(
                Unit::parse(&fixed)
                    .ok_or_else(|| fail(&format!("{label}.unit"), unknown_unit_message(&fixed)))?,
            ),
            (None, Some(from)) => UnitSource::From(source(&format!("{label}.unit_from"), &from)?),
            (Some(_), Some(_)) => {
                return Err(fail(&label, "give `unit` or `unit_from`, not both".into()))
            }
        };
        metrics.push(MetricRule {
            name,
            value: source(&format!("{label}.value"), &metric.value)?,
            unit,
            high_resolution: metric.high_resolution.unwrap_or(spec.high_resolution),
        });
    }
    let dimensions = spec
        .dimensions
        .iter()
        .map(|(dimension, text)| {
            Ok((
                CompactString::from(dimension.as_str()),
                source(&format!("dimensions.{dimension}"), text)?,
            ))
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok(Mapping {
        name,
        topic,
        format,
        device,
        timestamp,
        timestamp_format,
        metrics,
        dimensions,
        high_resolution: spec.high_resolution,
    })
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
        let error = FieldSource::parse("device").unwrap_err();
        assert!(error.contains("\"device\""), "{error}");
    }

    #[test]
    fn compiles_a_full_mapping() {
        let mappings = Mappings::parse(
            r#"
            namespace = "Lab"
            [[mapping]]
            name = "co2"
            topic = "co2/+/emissions"
            format = "delimited"
            timestamp = "/0"
            timestamp_format = "%Y-%m-%d %H:%M:%S"
            timezone = "+09:00"
            device = "topic[1]"
            [[mapping.metric]]
            name = "emissions"
            value = "/1"
            unit = "Count"
            [mapping.dimensions]
            site = "const:seoul"
            "#,
        )
        .unwrap();
        assert_eq!(mappings.namespace.as_deref(), Some("Lab"));
        let co2 = mappings.select(Some("co2/pi-1/emissions")).unwrap();
        assert_eq!(co2.format, PayloadFormat::Delimited('|'));
        assert_eq!(co2.device, Some(FieldSource::TopicSegment(1)));
        assert_eq!(co2.metrics[0].unit, UnitSource::Fixed(Unit::Count));
        assert_eq!(co2.dimensions[0].0, "site");
        assert!(mappings.select(Some("other/topic")).is_none());
        assert!(mappings.select(None).is_none());
    }

    #[test]
    fn errors_name_the_mapping_and_the_field() {
        let error = Mappings::parse(
            "[[mapping]]\nname = \"m\"\n[[mapping.metric]]\nname = \"t\"\nvalue = \"/t\"\nunit = \"Celsius\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("\"m\"")
                && error.contains("metric[0].unit")
                && error.contains("Celsius"),
            "{error}"
        );
        let error = Mappings::parse("[[mapping]]\ndevise = \"/d\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("devise"), "{error}");
        let error = Mappings::parse("[[mapping]]\ntopic = \"a/#/b\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("a/#/b"), "{error}");
    }
}
