//! Warehouse tables: the built-in `readings` and `dead_letter` tables and
//! the wide tables a mapping file declares (`[[table]]`), and how a message
//! becomes rows of them.

use chrono::FixedOffset;
use serde::Deserialize;

use crate::decode::{for_each_record, DecodeError, PayloadRecord};
use crate::envelope::RawMessage;
use crate::mapping::{FieldSource, PayloadFormat};
use crate::payload::Field;
use crate::timestamp::{parse_offset, TimestampFormat};
use crate::topic::TopicFilter;

/// A column's type, the same in Parquet, Athena and PostgreSQL terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Integer,
    Float,
    Boolean,
    /// Milliseconds since the epoch, UTC.
    Timestamp,
    /// JSON text.
    Json,
}

impl ColumnType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "string" | "text" => ColumnType::String,
            "integer" | "int" | "bigint" => ColumnType::Integer,
            "float" | "double" => ColumnType::Float,
            "boolean" | "bool" => ColumnType::Boolean,
            "timestamp" | "datetime" => ColumnType::Timestamp,
            "json" => ColumnType::Json,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Json => "json",
        }
    }
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Epoch milliseconds.
    Timestamp(i64),
}

/// A declared column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub kind: ColumnType,
    pub source: FieldSource,
    pub timestamp_format: TimestampFormat,
    pub required: bool,
}

/// A declared wide table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: String,
    pub topic: Option<TopicFilter>,
    /// The table applies only to messages where all of these are present.
    pub requires: Vec<FieldSource>,
    pub format: PayloadFormat,
    pub columns: Vec<ColumnDef>,
    /// Whether messages of this table also become `readings` rows.
    pub readings: bool,
}

/// Columns every table ends with, so duplicates of at-least-once delivery
/// can be recognised: the source's message id and the row's position
/// within its message.
pub const MESSAGE_ID_COLUMN: &str = "message_id";
pub const MESSAGE_ROW_COLUMN: &str = "message_row";

pub const READINGS_TABLE: &str = "readings";
pub const DEAD_LETTER_TABLE: &str = "dead_letter";

/// A table's name and column types, for writers.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub table: String,
    pub columns: Vec<(String, ColumnType)>,
}

impl Schema {
    fn with_message_columns(table: &str, columns: Vec<(&str, ColumnType)>) -> Schema {
        let mut columns: Vec<(String, ColumnType)> = columns
            .into_iter()
            .map(|(n, t)| (n.to_owned(), t))
            .collect();
        columns.push((MESSAGE_ID_COLUMN.into(), ColumnType::String));
        columns.push((MESSAGE_ROW_COLUMN.into(), ColumnType::Integer));
        Schema {
            table: table.to_owned(),
            columns,
        }
    }

    /// `readings(timestamp, device, metric, value, unit, dimensions, source,
    /// received_at, message_id, message_row)`.
    pub fn readings() -> Schema {
        Schema::with_message_columns(
            READINGS_TABLE,
            vec![
                ("timestamp", ColumnType::Timestamp),
                ("device", ColumnType::String),
                ("metric", ColumnType::String),
                ("value", ColumnType::Float),
                ("unit", ColumnType::String),
                ("dimensions", ColumnType::Json),
                ("source", ColumnType::String),
                ("received_at", ColumnType::Timestamp),
            ],
        )
    }

    /// `dead_letter(received_at, source, reason, payload, payload_encoding,
    /// message_id, message_row)`.
    pub fn dead_letter() -> Schema {
        Schema::with_message_columns(
            DEAD_LETTER_TABLE,
            vec![
                ("received_at", ColumnType::Timestamp),
                ("source", ColumnType::String),
                ("reason", ColumnType::String),
                ("payload", ColumnType::String),
                ("payload_encoding", ColumnType::String),
            ],
        )
    }

    pub fn of(table: &TableDef) -> Schema {
        Schema::with_message_columns(
            &table.name,
            table
                .columns
                .iter()
                .map(|column| (column.name.as_str(), column.kind))
                .collect(),
        )
    }
}

/// Rows of one table from one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRows {
    pub schema: Schema,
    pub rows: Vec<Vec<Cell>>,
    /// Per row: the index of its message in the batch.
    pub messages: Vec<u32>,
}

impl TableRows {
    pub fn new(schema: Schema) -> Self {
        TableRows {
            schema,
            rows: Vec::new(),
            messages: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Why a table or column definition is wrong.
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

// ---- file format --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableSpec {
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
pub(crate) fn compile_table(spec: TableSpec) -> Result<TableDef, String> {
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
        .map(|text| FieldSource::parse(text).map_err(|why| fail("requires", why)))
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
                .map_err(|why| fail(&format!("{field}.from"), why))?,
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

// ---- rows ---------------------------------------------------------------------

/// A column value could not be converted.
fn column_error(table: &TableDef, column: &ColumnDef, field: &Field<'_>, why: &str) -> DecodeError {
    DecodeError::Invalid {
        field: format!("{}.{} ({})", table.name, column.name, column.source),
        value: field.describe(),
        why: why.to_owned(),
    }
}

fn cell(
    table: &TableDef,
    column: &ColumnDef,
    field: Option<Field<'static>>,
) -> Result<Cell, DecodeError> {
    let Some(field) = field else {
        return if column.required {
            Err(DecodeError::Missing {
                field: format!("{}.{} ({})", table.name, column.name, column.source),
            })
        } else {
            Ok(Cell::Null)
        };
    };
    let fail = |why: &str| column_error(table, column, &field, why);
    Ok(match column.kind {
        ColumnType::String => Cell::Text(field.as_text().unwrap_or_default().into_owned()),
        ColumnType::Json => Cell::Text(match &field {
            Field::Text(text) => serde_json::to_string(text.as_ref()).unwrap_or_default(),
            other => other.as_text().unwrap_or_default().into_owned(),
        }),
        ColumnType::Integer => match &field {
            Field::Int(integer) => Cell::Int(*integer),
            Field::Text(text) => {
                Cell::Int(text.trim().parse().map_err(|_| fail("not an integer"))?)
            }
            Field::Number(number) if number.fract() == 0.0 && number.abs() < 9.0e15 => {
                Cell::Int(*number as i64)
            }
            Field::Bool(flag) => Cell::Int(i64::from(*flag)),
            _ => return Err(fail("not an integer")),
        },
        ColumnType::Float => {
            let value = field.as_number().ok_or_else(|| fail("not a number"))?;
            if !value.is_finite() {
                return Err(fail("not a finite number"));
            }
            Cell::Float(value)
        }
        ColumnType::Boolean => match &field {
            Field::Bool(flag) => Cell::Bool(*flag),
            Field::Int(0) => Cell::Bool(false),
            Field::Int(1) => Cell::Bool(true),
            Field::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Cell::Bool(true),
                "false" | "0" | "no" | "off" => Cell::Bool(false),
                _ => return Err(fail("not a boolean")),
            },
            _ => return Err(fail("not a boolean")),
        },
        ColumnType::Timestamp => {
            let millis = match &field {
                Field::Int(integer) => column.timestamp_format.from_number(*integer as f64),
                Field::Number(number) => column.timestamp_format.from_number(*number),
                Field::Text(text) => column.timestamp_format.from_text(text),
                _ => None,
            };
            Cell::Timestamp(millis.ok_or_else(|| fail("not a timestamp in the column's format"))?)
        }
    })
}

fn applies(table: &TableDef, record: &PayloadRecord<'_, '_>) -> bool {
    let topic_matches = match &table.topic {
        None => true,
        Some(filter) => record.topic().is_some_and(|topic| filter.matches(topic)),
    };
    topic_matches
        && table
            .requires
            .iter()
            .all(|source| record.get(source).is_some())
}

/// The rows `message` gives `table` (none when the table does not apply),
/// each ending with the message id and the row's position.
pub fn table_rows(
    table: &TableDef,
    message: &RawMessage<'_>,
    now_ms: i64,
) -> Result<Vec<Vec<Cell>>, DecodeError> {
    let mut rows = Vec::new();
    for_each_record(message, table.format, now_ms, &mut |record| {
        if !applies(table, record) {
            return Ok(());
        }
        let mut row = Vec::with_capacity(table.columns.len() + 2);
        for column in &table.columns {
            row.push(cell(table, column, record.get(&column.source))?);
        }
        row.push(Cell::Text(message.id.to_string()));
        row.push(Cell::Int(rows.len() as i64));
        rows.push(row);
        Ok(())
    })
    .or_else(|error| match error {
        // A payload this table cannot parse at all is not its payload.
        DecodeError::Json(_) | DecodeError::NotText | DecodeError::Empty if !rows.is_empty() => {
            Err(error)
        }
        DecodeError::Json(_) | DecodeError::NotText | DecodeError::Empty => Ok(()),
        other => Err(other),
    })?;
    Ok(rows)
}
