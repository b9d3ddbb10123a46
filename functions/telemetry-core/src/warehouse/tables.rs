//! Warehouse tables: the built-in `readings` and `dead_letter` tables and
//! the wide tables a mapping file declares (`[[table]]`), and how a message
//! becomes rows of them.

use crate::envelope::RawMessage;
use crate::payload::fields::Field;
use crate::payload::mapping::{FieldSource, PayloadFormat};
use crate::payload::records::{for_each_record, DecodeError, PayloadRecord};
use crate::payload::timestamp::TimestampFormat;
use crate::payload::topic::TopicFilter;

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
    pub(crate) fn parse(text: &str) -> Option<Self> {
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
pub const WINDOW_AGGREGATES_TABLE: &str = "window_aggregates";

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

    /// `window_aggregates(window_start, window_end, device, metric, unit,
    /// count, min, max, mean, sum, late, first_event_at, last_event_at,
    /// message_id, message_row)`: one row per device, metric and
    /// event-time bucket, and one more per late partial (`late`).
    pub fn window_aggregates() -> Schema {
        Schema::with_message_columns(
            WINDOW_AGGREGATES_TABLE,
            vec![
                ("window_start", ColumnType::Timestamp),
                ("window_end", ColumnType::Timestamp),
                ("device", ColumnType::String),
                ("metric", ColumnType::String),
                ("unit", ColumnType::String),
                ("count", ColumnType::Integer),
                ("min", ColumnType::Float),
                ("max", ColumnType::Float),
                ("mean", ColumnType::Float),
                ("sum", ColumnType::Float),
                ("late", ColumnType::Boolean),
                ("first_event_at", ColumnType::Timestamp),
                ("last_event_at", ColumnType::Timestamp),
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

/// A message's rows of one table: (the table's index, its rows).
pub type TableRowsOf = (usize, Vec<Vec<Cell>>);

/// The rows `message` gives each table of `tables` that applies to it, as
/// (table index, rows), each row ending with the message id and the row's
/// position. The payload is walked once per distinct table format (one walk
/// for every JSON table, one per delimiter), not once per table.
pub fn rows_of_tables(
    tables: &[TableDef],
    message: &RawMessage<'_>,
    now_ms: i64,
) -> Result<Vec<TableRowsOf>, DecodeError> {
    let mut rows: Vec<Vec<Vec<Cell>>> = vec![Vec::new(); tables.len()];
    let mut formats: Vec<PayloadFormat> = Vec::new();
    for table in tables {
        if !formats.contains(&table.format) {
            formats.push(table.format);
        }
    }
    for format in formats {
        let walked = for_each_record(message, format, now_ms, &mut |record| {
            for (index, table) in tables.iter().enumerate() {
                if table.format != format || !applies(table, record) {
                    continue;
                }
                let mut row = Vec::with_capacity(table.columns.len() + 2);
                for column in &table.columns {
                    row.push(cell(table, column, record.get(&column.source))?);
                }
                row.push(Cell::Text(message.id.to_string()));
                row.push(Cell::Int(rows[index].len() as i64));
                rows[index].push(row);
            }
            Ok(())
        });
        let some_rows = tables
            .iter()
            .zip(&rows)
            .any(|(table, rows)| table.format == format && !rows.is_empty());
        match walked {
            Ok(()) => {}
            // A payload these tables cannot parse at all is not their payload.
            Err(DecodeError::Json(_) | DecodeError::NotText | DecodeError::Empty) if !some_rows => {
            }
            Err(error) => return Err(error),
        }
    }
    Ok(rows
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::config::pipeline_file::PipelineFile;
    use crate::envelope::MessageSource;

    fn tables(toml: &str) -> Vec<TableDef> {
        PipelineFile::parse(toml).unwrap().tables
    }

    fn message(payload: &str) -> RawMessage<'_> {
        RawMessage::new(
            MessageSource::Sqs,
            Cow::Borrowed("m-1"),
            Cow::Borrowed(payload.as_bytes()),
        )
    }

    const TWO_FORMATS: &str = r#"
        [[table]]
        name = "json_rows"
        requires = ["/v"]
        [[table.column]]
        name = "v"
        type = "float"
        from = "/v"
        [[table]]
        name = "text_rows"
        format = "delimited"
        delimiter = ";"
        [[table.column]]
        name = "when"
        type = "timestamp"
        from = "/0"
        format = "rfc3339"
        [[table.column]]
        name = "v"
        type = "integer"
        from = "/1"
    "#;

    #[test]
    fn each_table_takes_the_records_of_its_format() {
        let tables = tables(TWO_FORMATS);
        let json = rows_of_tables(&tables, &message(r#"[{"v": 1.5}, {"v": 2}, {"w": 3}]"#), 0);
        let cells = |rows: &[Vec<Cell>]| rows.iter().map(|row| row[0].clone()).collect::<Vec<_>>();
        let json = json.unwrap();
        assert_eq!(json.len(), 1);
        assert_eq!(json[0].0, 0);
        assert_eq!(cells(&json[0].1), [Cell::Float(1.5), Cell::Float(2.0)]);
        // Positions count the table's own rows, then the message id.
        assert_eq!(json[0].1[1][1..], [Cell::Text("m-1".into()), Cell::Int(1)]);

        let text = rows_of_tables(&tables, &message("2022-02-27T05:01:00Z; 42"), 0).unwrap();
        assert_eq!(text.len(), 1);
        assert_eq!(text[0].0, 1);
        assert_eq!(
            text[0].1[0][..2],
            [Cell::Timestamp(1_645_938_060_000), Cell::Int(42)]
        );
    }

    #[test]
    fn a_payload_no_table_can_read_makes_no_rows_and_a_bad_column_names_itself() {
        let tables = tables(TWO_FORMATS);
        assert!(rows_of_tables(&tables, &message("{not json"), 0)
            .unwrap()
            .is_empty());
        let error = rows_of_tables(&tables, &message(r#"{"v": "warm"}"#), 0).unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("json_rows.v") && error.contains("warm"),
            "{error}"
        );
    }
}
