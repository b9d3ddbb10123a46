//! The pipeline file (TOML, path in `PIPELINE_CONFIG`): the metric
//! mappings (`[[mapping]]`) and the warehouse tables (`[[table]]`), parsed
//! and checked once per cold start. See the README for the format.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::FixedOffset;
use compact_str::CompactString;
use serde::Deserialize;

use crate::command::{CommandRule, Condition, SendPolicy, Via};
use crate::invocation::InvocationSettings;
use crate::payload::mapping::{
    unknown_unit_message, FieldSource, Mapping, Mappings, MetricRule, NameSource, PayloadFormat,
    UnitSource,
};
use crate::payload::timestamp::{parse_offset, TimestampFormat};
use crate::payload::topic::{TopicFilter, TopicFilterError};
use crate::payload::unit::Unit;
use crate::warehouse::tables::{
    valid_identifier, ColumnDef, ColumnType, TableDef, DEAD_LETTER_TABLE, MESSAGE_ID_COLUMN,
    MESSAGE_ROW_COLUMN, READINGS_TABLE,
};

/// What the pipeline file declares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineFile {
    /// The CloudWatch namespace (`METRICS_NAMESPACE` overrides it).
    pub namespace: Option<String>,
    pub mappings: Mappings,
    pub tables: Vec<TableDef>,
    /// Commands back to devices (`[[command]]`).
    pub commands: Vec<CommandRule>,
}

impl From<PipelineFile> for InvocationSettings {
    /// The file's mappings and tables, with the other settings at their defaults.
    fn from(file: PipelineFile) -> Self {
        InvocationSettings {
            mappings: file.mappings,
            tables: file.tables,
            commands: file.commands,
            ..InvocationSettings::default()
        }
    }
}

impl PipelineFile {
    pub fn load(path: &Path) -> Result<Self, PipelineFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| PipelineFileError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::parse(&text).map_err(|error| error.in_file(path))
    }

    pub fn parse(text: &str) -> Result<Self, PipelineFileError> {
        let file: ConfigFile = toml::from_str(text).map_err(|error| PipelineFileError::Syntax {
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
            .map(compile_table)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| PipelineFileError::Syntax {
                path: None,
                message,
            })?;
        for (index, table) in tables.iter().enumerate() {
            if tables[..index].iter().any(|other| other.name == table.name) {
                return Err(PipelineFileError::Syntax {
                    path: None,
                    message: format!("table {:?} is declared twice", table.name),
                });
            }
        }
        let commands = file
            .command
            .into_iter()
            .enumerate()
            .map(|(index, spec)| compile_command(index, spec))
            .collect::<Result<Vec<_>, _>>()?;
        for (index, command) in commands.iter().enumerate() {
            if commands[..index]
                .iter()
                .any(|other| other.name == command.name)
            {
                return Err(PipelineFileError::Syntax {
                    path: None,
                    message: format!("command {:?} is declared twice", command.name),
                });
            }
        }
        Ok(PipelineFile {
            namespace: file.namespace,
            mappings: Mappings(mappings),
            tables,
            commands,
        })
    }
}

/// The mapping file could not be used; says which entry and field to fix.
#[derive(Debug, thiserror::Error)]
pub enum PipelineFileError {
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

impl PipelineFileError {
    fn in_file(self, file: &Path) -> Self {
        let file = Some(file.display().to_string());
        match self {
            PipelineFileError::Syntax { message, .. } => PipelineFileError::Syntax {
                path: file,
                message,
            },
            PipelineFileError::Field {
                mapping,
                field,
                why,
                ..
            } => PipelineFileError::Field {
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
    table: Vec<TableSpec>,
    /// Commands back to devices.
    #[serde(default)]
    command: Vec<CommandSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandSpec {
    name: String,
    #[serde(default)]
    from: Option<String>,
    when: String,
    topic: String,
    payload: toml::Value,
    #[serde(default)]
    otherwise: Option<toml::Value>,
    #[serde(default)]
    send: Option<String>,
    #[serde(default)]
    via: Option<String>,
}

/// Compiles a `[[command]]`; errors name the command and the field.
fn compile_command(index: usize, spec: CommandSpec) -> Result<CommandRule, PipelineFileError> {
    let name = if spec.name.trim().is_empty() {
        format!("#{}", index + 1)
    } else {
        spec.name.clone()
    };
    let fail = |field: &str, why: String| PipelineFileError::Syntax {
        path: None,
        message: format!("command {name:?}: `{field}`: {why}"),
    };
    let json = |field: &str, value: toml::Value| {
        serde_json::to_value(value).map_err(|error| fail(field, error.to_string()))
    };
    let when = Condition::parse(&spec.when).map_err(|error| fail("when", error.to_string()))?;
    let from = spec
        .from
        .as_deref()
        .map(TopicFilter::new)
        .transpose()
        .map_err(|error| fail("from", error.to_string()))?;
    if spec.topic.trim().is_empty() || spec.topic.contains(['+', '#']) {
        return Err(fail(
            "topic",
            format!(
                "{:?} must be a topic to publish to, such as \"{{device}}/commands\"",
                spec.topic
            ),
        ));
    }
    let send = match spec.send.as_deref() {
        None | Some("on_change") => SendPolicy::OnChange,
        Some("always") => SendPolicy::Always,
        Some(other) => {
            return Err(fail(
                "send",
                format!("{other:?}: expected \"always\" or \"on_change\""),
            ))
        }
    };
    let via = match spec.via.as_deref() {
        None | Some("topic") => Via::Topic,
        Some("shadow") => Via::Shadow,
        Some(other) => {
            return Err(fail(
                "via",
                format!("{other:?}: expected \"topic\" or \"shadow\""),
            ))
        }
    };
    let payload = json("payload", spec.payload)?;
    let otherwise = spec
        .otherwise
        .map(|value| json("otherwise", value))
        .transpose()?;
    if via == Via::Shadow && !payload.is_object() {
        return Err(fail(
            "payload",
            "a shadow's desired state is a table (an object)".into(),
        ));
    }
    Ok(CommandRule {
        name,
        from,
        when,
        topic: spec.topic,
        payload,
        otherwise,
        send,
        via,
    })
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

fn compile_mapping(index: usize, spec: MappingSpec) -> Result<Mapping, PipelineFileError> {
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("#{}", index + 1));
    let fail = |field: &str, why: String| PipelineFileError::Field {
        path: None,
        mapping: name.clone(),
        field: field.to_owned(),
        why,
    };
    let source = |field: &str, text: &str| {
        FieldSource::parse(text).map_err(|why| fail(field, why.to_string()))
    };

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
        .collect::<Result<_, PipelineFileError>>()?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSpec {
    name: String,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    delimiter: Option<String>,
    #[serde(default = "yes")]
    readings: bool,
    #[serde(default)]
    timezone: Option<String>,
    column: Vec<ColumnSpec>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    from: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default = "yes")]
    required: bool,
}

/// Compiles a `[[table]]`; errors name the table and the field.
fn compile_table(spec: TableSpec) -> Result<TableDef, String> {
    let table = spec.name.clone();
    let fail = |field: &str, why: String| format!("table {table:?}: `{field}`: {why}");
    if !valid_identifier(&spec.name)
        || [READINGS_TABLE, DEAD_LETTER_TABLE].contains(&spec.name.as_str())
    {
        return Err(fail(
            "name",
            format!("{:?} must be lower-case letters, digits and _ (at most 63), and not a built-in table", spec.name),
        ));
    }
    let topic = spec
        .topic
        .as_deref()
        .map(TopicFilter::new)
        .transpose()
        .map_err(|error| fail("topic", error.to_string()))?;
    let requires = spec
        .requires
        .iter()
        .map(|text| FieldSource::parse(text).map_err(|why| fail("requires", why.to_string())))
        .collect::<Result<_, _>>()?;
    let delimiter = match spec.delimiter.as_deref() {
        None => '|',
        Some("\\t") => '\t',
        Some(text) if text.chars().count() == 1 => text.chars().next().expect("one char"),
        Some(text) => return Err(fail("delimiter", format!("{text:?} must be one character"))),
    };
    let format = match spec.format.as_deref() {
        None if spec.delimiter.is_some() => PayloadFormat::Delimited(delimiter),
        None | Some("auto") => PayloadFormat::Auto,
        Some("json") => PayloadFormat::Json,
        Some("delimited") => PayloadFormat::Delimited(delimiter),
        Some(other) => {
            return Err(fail(
                "format",
                format!("{other:?}: expected json, delimited or auto"),
            ))
        }
    };
    let offset = match spec.timezone.as_deref() {
        None => FixedOffset::east_opt(0).expect("zero offset"),
        Some(text) => parse_offset(text).ok_or_else(|| {
            fail(
                "timezone",
                format!("{text:?} is not an offset such as +09:00"),
            )
        })?,
    };
    let mut columns = Vec::with_capacity(spec.column.len());
    for column in spec.column {
        let field = format!("column {}", column.name);
        if !valid_identifier(&column.name)
            || [MESSAGE_ID_COLUMN, MESSAGE_ROW_COLUMN].contains(&column.name.as_str())
        {
            return Err(fail(
                &field,
                "names are lower-case letters, digits and _; message_id and message_row are added to every table".into(),
            ));
        }
        if columns.iter().any(|c: &ColumnDef| c.name == column.name) {
            return Err(fail(&field, "appears twice".into()));
        }
        let kind = ColumnType::parse(&column.kind).ok_or_else(|| {
            fail(
                &format!("{field}.type"),
                format!(
                    "{:?}: expected string, integer, float, boolean, timestamp or json",
                    column.kind
                ),
            )
        })?;
        let timestamp_format = match column.format.as_deref() {
            None => TimestampFormat::Auto,
            Some(text) => TimestampFormat::from_name(text, offset).ok_or_else(|| {
                fail(
                    &format!("{field}.format"),
                    format!("{text:?} is not a timestamp format"),
                )
            })?,
        };
        columns.push(ColumnDef {
            name: column.name,
            kind,
            source: FieldSource::parse(&column.from)
                .map_err(|why| fail(&format!("{field}.from"), why.to_string()))?,
            timestamp_format,
            required: column.required,
        });
    }
    if columns.is_empty() {
        return Err(fail("column", "declare at least one column".into()));
    }
    Ok(TableDef {
        name: spec.name,
        topic,
        requires,
        format,
        columns,
        readings: spec.readings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_a_full_mapping() {
        let mappings = PipelineFile::parse(
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
        let co2 = mappings
            .mappings
            .select(Some("co2/pi-1/emissions"))
            .unwrap();
        assert_eq!(co2.format, PayloadFormat::Delimited('|'));
        assert_eq!(co2.device, Some(FieldSource::TopicSegment(1)));
        assert_eq!(co2.metrics[0].unit, UnitSource::Fixed(Unit::Count));
        assert_eq!(co2.dimensions[0].0, "site");
        assert!(mappings.mappings.select(Some("other/topic")).is_none());
        assert!(mappings.mappings.select(None).is_none());
    }

    #[test]
    fn errors_name_the_mapping_and_the_field() {
        let error = PipelineFile::parse(
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
        let error = PipelineFile::parse("[[mapping]]\ndevise = \"/d\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("devise"), "{error}");
        let error = PipelineFile::parse("[[mapping]]\ntopic = \"a/#/b\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("a/#/b"), "{error}");
    }

    #[test]
    fn commands_compile_and_mistakes_name_the_command_and_field() {
        let file = PipelineFile::parse(
            r#"
            [[command]]
            name = "nightlight"
            from = "+/telemetry"
            when = "light < 300"
            topic = "{device}/commands"
            payload = { led_on = true }
            otherwise = { led_on = false }
            [[command]]
            name = "fan"
            when = "temperature > 30"
            topic = "{device}/fan"
            payload = { fan = "on" }
            send = "always"
            via = "shadow"
            "#,
        )
        .unwrap();
        let [light, fan] = &file.commands[..] else {
            panic!("two commands: {:?}", file.commands)
        };
        assert_eq!(light.send, SendPolicy::OnChange, "on_change is the default");
        assert_eq!(light.via, Via::Topic);
        assert_eq!(light.otherwise, Some(serde_json::json!({"led_on": false})));
        assert_eq!((fan.send, fan.via), (SendPolicy::Always, Via::Shadow));
        for (spec, fragments) in [
            ("when = \"light <\"", vec!["\"c\"", "`when`", "expected"]),
            (
                "when = \"a < 1\"\nsend = \"often\"",
                vec!["`send`", "often"],
            ),
            ("when = \"a < 1\"\nvia = \"mail\"", vec!["`via`", "mail"]),
            (
                "when = \"a < 1\"\nfrom = \"a/#/b\"",
                vec!["`from`", "a/#/b"],
            ),
        ] {
            let text = format!(
                "[[command]]\nname = \"c\"\ntopic = \"{{device}}/c\"\npayload = {{ on = true }}\n{spec}\n"
            );
            let error = PipelineFile::parse(&text).unwrap_err().to_string();
            for fragment in fragments {
                assert!(error.contains(fragment), "{spec}: {error}");
            }
        }
    }
}
