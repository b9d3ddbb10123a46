//! One invocation of the warehouse function: every message becomes rows of
//! `readings`, of the declared wide tables, or of `dead_letter`; each table's
//! rows of the invocation are written together (one file, one statement).

use std::path::PathBuf;

use async_trait::async_trait;
use base64::Engine;
use serde_json::json;

use crate::decode::{decode_message, DecodeError};
use crate::envelope::{parse_event, RawMessage};
use crate::pipeline::{
    finish, unreadable_event_outcome, Counts, DecodedBatch, Pipeline, Response, RetryLater,
};
use crate::reading::Reading;
use crate::table::{table_rows, Cell, Schema, TableRows};

/// A table write failed; the rows' messages are retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot write table {table} to {destination}: {reason}")]
pub struct TableWriteError {
    pub table: String,
    pub destination: String,
    pub reason: String,
    /// Indexes of the rows that failed; `None` when all did.
    pub failed_rows: Option<Vec<usize>>,
}

/// A warehouse backend: writes one table's rows of one invocation.
#[async_trait]
pub trait TableWriter: Send + Sync {
    /// Returns where the rows went.
    async fn write(
        &self,
        rows: &TableRows,
        batch_id: &str,
        now_ms: i64,
    ) -> Result<String, TableWriteError>;
}

/// Where Parquet objects are stored (a local directory, an S3 prefix).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` at `key` (a relative, `/`-separated path) atomically.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<String, String>;
    fn describe(&self) -> String;
}

/// A local directory: files are written to a temporary name and renamed, so
/// readers never see half a file.
#[derive(Debug, Clone)]
pub struct LocalDirectory {
    pub root: PathBuf,
}

#[async_trait]
impl ObjectStore for LocalDirectory {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<String, String> {
        let path = self.root.join(key);
        let parent = path.parent().ok_or("key has no directory")?;
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let temporary = parent.join(format!(".tmp-{}", std::process::id()));
        std::fs::write(&temporary, &bytes).map_err(|e| format!("{}: {e}", temporary.display()))?;
        std::fs::rename(&temporary, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path.display().to_string())
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// `<table>/date=YYYY-MM-DD/part-<batch id>.<extension>`: Hive-style
/// partitions by the day the batch was written, which DuckDB, Athena
/// (partition projection) and Spark read as they are.
pub fn object_key(table: &str, batch_id: &str, now_ms: i64, extension: &str) -> String {
    let day = crate::timestamp::millis_to_rfc3339(now_ms);
    format!("{table}/date={}/part-{batch_id}.{extension}", &day[..10])
}

/// A name for one invocation's files: time first (they sort), then the
/// request id reduced to safe characters.
pub fn batch_id(request_id: &str, now_ms: i64) -> String {
    let safe: String = request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    format!("{now_ms}-{safe}")
}

/// The warehouse function's logic.
#[derive(Debug, Clone, Default)]
pub struct Warehouse {
    /// Mappings for readings, declared tables, and the Pub/Sub token.
    pub pipeline: Pipeline,
}

/// A message's rows of declared tables: (table index, rows).
type MessageTables = Vec<(usize, Vec<Vec<Cell>>)>;

struct Rejection {
    message: u32,
    reason: String,
}

impl Warehouse {
    pub async fn process(
        &self,
        event: &[u8],
        request_id: &str,
        now_ms: i64,
        writer: &dyn TableWriter,
    ) -> Result<(Response, Counts), RetryLater> {
        let batch = batch_id(request_id, now_ms);
        let envelope = match parse_event(event) {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = format!("unreadable event: {error}");
                let mut dead = TableRows::new(Schema::dead_letter());
                dead.rows.push(dead_letter_row(
                    &format!("event-{request_id}"),
                    "unknown",
                    now_ms,
                    &reason,
                    event,
                ));
                dead.messages.push(0);
                tracing::warn!(%reason, "dead-lettering the whole event");
                let written = writer
                    .write(&dead, &batch, now_ms)
                    .await
                    .map_err(|e| e.to_string());
                return unreadable_event_outcome(reason, written);
            }
        };
        if let Some(http) = &envelope.http {
            if let Some(refusal) = self.pipeline.refuse_http(http) {
                return Ok((refusal, Counts::default()));
            }
        }

        let tables = &self.pipeline.mappings.tables;
        let mut readings = TableRows::new(Schema::readings());
        let mut wide: Vec<TableRows> = tables
            .iter()
            .map(|t| TableRows::new(Schema::of(t)))
            .collect();
        let mut rejections = Vec::new();
        let mut decoded = Vec::new();
        for (index, message) in envelope.messages.iter().enumerate() {
            let index = index as u32;
            if let Some(problem) = &message.problem {
                rejections.push(Rejection {
                    message: index,
                    reason: problem.clone(),
                });
                continue;
            }
            match self.rows_of(message, index, now_ms, &mut decoded) {
                Ok(message_tables) => {
                    for (table, rows) in message_tables {
                        for row in rows {
                            wide[table].rows.push(row);
                            wide[table].messages.push(index);
                        }
                    }
                    for (position, reading) in decoded.drain(..).enumerate() {
                        readings
                            .rows
                            .push(reading_row(&reading, message, position, now_ms));
                        readings.messages.push(index);
                    }
                }
                Err(error) => {
                    decoded.clear();
                    rejections.push(Rejection {
                        message: index,
                        reason: error.to_string(),
                    });
                }
            }
        }

        let mut dead = TableRows::new(Schema::dead_letter());
        for rejection in &rejections {
            let message = &envelope.messages[rejection.message as usize];
            tracing::warn!(message_id = %message.id, source = message.source.as_str(), reason = %rejection.reason, "dead-lettered");
            dead.rows.push(dead_letter_row(
                &message.id,
                message.source.as_str(),
                message.received_at_ms.unwrap_or(now_ms),
                &rejection.reason,
                &message.payload.bytes(),
            ));
            dead.messages.push(rejection.message);
        }

        let mut failed: Vec<u32> = Vec::new();
        let mut reason = None;
        let mut written = Vec::new();
        let mut dead_lettered = rejections.len();
        let all = std::iter::once(&readings)
            .chain(wide.iter())
            .chain(std::iter::once(&dead));
        for rows in all.filter(|rows| !rows.is_empty()) {
            match writer.write(rows, &batch, now_ms).await {
                Ok(location) => written.push(json!({"table": rows.schema.table, "rows": rows.rows.len(), "location": location})),
                Err(error) => {
                    tracing::error!(%error, "rows not written; their messages will be retried");
                    match &error.failed_rows {
                        Some(indexes) => failed.extend(indexes.iter().filter_map(|i| rows.messages.get(*i))),
                        None => failed.extend(&rows.messages),
                    }
                    if rows.schema.table == crate::table::DEAD_LETTER_TABLE {
                        dead_lettered = 0;
                    }
                    reason = Some(error.to_string());
                }
            }
        }
        failed.sort_unstable();
        failed.dedup();
        tracing::info!(tables = %serde_json::Value::from(written), "written");
        let counts = Counts {
            messages: envelope.messages.len(),
            readings_accepted: readings.rows.len(),
            readings_rejected: 0,
            dead_lettered,
            retried: failed.len(),
            api_calls: 0,
        };
        let batch_view = DecodedBatch {
            kind: envelope.kind,
            http: envelope.http,
            messages: envelope.messages,
            readings: Vec::new(),
            dead_letters: Vec::new(),
            dead_lettered_messages: Vec::new(),
            rejected_readings: 0,
        };
        finish(&batch_view, failed, reason, counts)
    }

    /// The wide-table rows of one message, and its readings into `readings`.
    /// Errors mean the message is dead-lettered whole.
    fn rows_of(
        &self,
        message: &RawMessage<'_>,
        index: u32,
        now_ms: i64,
        readings: &mut Vec<Reading>,
    ) -> Result<MessageTables, DecodeError> {
        let mut tables = Vec::new();
        let mut wants_readings = true;
        for (position, table) in self.pipeline.mappings.tables.iter().enumerate() {
            let rows = table_rows(table, message, now_ms)?;
            if !rows.is_empty() {
                wants_readings &= table.readings;
                tables.push((position, rows));
            }
        }
        if wants_readings {
            match decode_message(&self.pipeline.mappings, message, index, now_ms, readings) {
                Ok(_) => {
                    if let Some(bad) = readings.iter().find(|r| !r.value.is_finite()) {
                        return Err(DecodeError::Invalid {
                            field: bad.metric.to_string(),
                            value: bad.value.to_string(),
                            why: "not a finite number".into(),
                        });
                    }
                }
                // Not telemetry, but some table took it: that is enough.
                Err(_) if !tables.is_empty() => readings.clear(),
                Err(error) => return Err(error),
            }
        }
        Ok(tables)
    }
}

fn reading_row(
    reading: &Reading,
    message: &RawMessage<'_>,
    position: usize,
    now_ms: i64,
) -> Vec<Cell> {
    let dimensions: serde_json::Map<String, serde_json::Value> = reading
        .dimensions
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value.as_str())))
        .collect();
    vec![
        Cell::Timestamp(reading.timestamp_ms),
        Cell::Text(reading.device.to_string()),
        Cell::Text(reading.metric.to_string()),
        Cell::Float(reading.value),
        Cell::Text(reading.unit.as_str().to_owned()),
        Cell::Text(serde_json::Value::Object(dimensions).to_string()),
        Cell::Text(message.source.as_str().to_owned()),
        Cell::Timestamp(message.received_at_ms.unwrap_or(now_ms)),
        Cell::Text(message.id.to_string()),
        Cell::Int(position as i64),
    ]
}

fn dead_letter_row(
    message_id: &str,
    source: &str,
    received_at_ms: i64,
    reason: &str,
    payload: &[u8],
) -> Vec<Cell> {
    let (payload, encoding) = match std::str::from_utf8(payload) {
        Ok(text) => (text.to_owned(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(payload),
            "base64",
        ),
    };
    vec![
        Cell::Timestamp(received_at_ms),
        Cell::Text(source.to_owned()),
        Cell::Text(reason.to_owned()),
        Cell::Text(payload),
        Cell::Text(encoding.to_owned()),
        Cell::Text(message_id.to_owned()),
        Cell::Int(0),
    ]
}
