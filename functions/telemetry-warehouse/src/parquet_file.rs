//! One table's rows -> one Parquet file in memory (Snappy, every column
//! optional, timestamps as `TIMESTAMP(MILLIS, UTC)`), readable as-is by
//! DuckDB, Athena and Spark.

use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use telemetry_core::warehouse::tables::{Cell, ColumnType, Schema, TableRows};

/// The Parquet schema of a table (names are validated identifiers).
pub fn message_type(schema: &Schema) -> String {
    let mut text = format!("message {} {{\n", schema.table);
    for (name, kind) in &schema.columns {
        let column = match kind {
            ColumnType::String | ColumnType::Json => format!("optional binary {name} (STRING);"),
            ColumnType::Integer => format!("optional int64 {name};"),
            ColumnType::Float => format!("optional double {name};"),
            ColumnType::Boolean => format!("optional boolean {name};"),
            ColumnType::Timestamp => format!("optional int64 {name} (TIMESTAMP(MILLIS,true));"),
        };
        text.push_str("  ");
        text.push_str(&column);
        text.push('\n');
    }
    text.push('}');
    text
}

/// Encodes the rows as one Parquet file with one row group.
pub fn encode(rows: &TableRows) -> Result<Vec<u8>, ParquetError> {
    let schema = Arc::new(parse_message_type(&message_type(&rows.schema))?);
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by("iotpipe telemetry-warehouse".into())
            .build(),
    );
    let mut writer = SerializedFileWriter::new(
        Vec::with_capacity(rows.rows.len() * 64 + 1024),
        schema,
        properties,
    )?;
    let mut group = writer.next_row_group()?;
    let mut index = 0;
    let mut levels: Vec<i16> = Vec::with_capacity(rows.rows.len());
    while let Some(mut column) = group.next_column()? {
        let kind = rows.schema.columns[index].1;
        levels.clear();
        levels.extend(
            rows.rows
                .iter()
                .map(|row| i16::from(row[index] != Cell::Null)),
        );
        match kind {
            ColumnType::String | ColumnType::Json => {
                let values: Vec<ByteArray> = rows
                    .rows
                    .iter()
                    .filter_map(|row| match &row[index] {
                        Cell::Text(text) => Some(ByteArray::from(text.as_bytes().to_vec())),
                        _ => None,
                    })
                    .collect();
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, Some(&levels), None)?;
            }
            ColumnType::Integer | ColumnType::Timestamp => {
                let values: Vec<i64> = rows
                    .rows
                    .iter()
                    .filter_map(|row| match &row[index] {
                        Cell::Int(value) | Cell::Timestamp(value) => Some(*value),
                        _ => None,
                    })
                    .collect();
                column
                    .typed::<Int64Type>()
                    .write_batch(&values, Some(&levels), None)?;
            }
            ColumnType::Float => {
                let values: Vec<f64> = rows
                    .rows
                    .iter()
                    .filter_map(|row| match &row[index] {
                        Cell::Float(value) => Some(*value),
                        _ => None,
                    })
                    .collect();
                column
                    .typed::<DoubleType>()
                    .write_batch(&values, Some(&levels), None)?;
            }
            ColumnType::Boolean => {
                let values: Vec<bool> = rows
                    .rows
                    .iter()
                    .filter_map(|row| match &row[index] {
                        Cell::Bool(value) => Some(*value),
                        _ => None,
                    })
                    .collect();
                column
                    .typed::<BoolType>()
                    .write_batch(&values, Some(&levels), None)?;
            }
        }
        column.close()?;
        index += 1;
    }
    group.close()?;
    writer.into_inner()
}
