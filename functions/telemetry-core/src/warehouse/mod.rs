//! Payload -> rows: the tables (`tables`), the rows readings and dead
//! letters become, and the trait every warehouse backend implements (one
//! table's rows of one invocation at a time: one file, one statement).

pub mod tables;

use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::json;

use crate::envelope::{push_hex, RawMessage};
use crate::outcome::{Delivery, FailureKind};
use crate::payload::timestamp::TimestampFormat;
use crate::reading::Reading;
use crate::sink::dead_letter::DeadLetter;
use crate::sink::{DeadLetterError, DeadLetterSink};
use crate::warehouse::tables::{Cell, Schema, TableRows};
use crate::window::Aggregate;

/// A table write failed: the rows' messages are retried when the failure
/// is transient, dead-lettered with the reason when it is permanent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot write table {table} to {destination}: {reason}")]
pub struct TableWriteError {
    pub table: String,
    pub destination: String,
    /// The backend's error with its causes (drivers' and SDKs' errors are
    /// rendered here, at the boundary, with their whole chain).
    pub reason: String,
    /// How the rows of `failed_rows` failed.
    pub kind: FailureKind,
    /// Indexes of the rows that failed; `None` when all did.
    pub failed_rows: Option<Vec<usize>>,
    /// Rows the backend can never take (a record over its size limit),
    /// whatever `kind` says of the others: dead-lettered.
    pub refused_rows: Vec<usize>,
}

impl TableWriteError {
    /// Every row of `rows` failed.
    pub fn all(rows: &TableRows, destination: String, reason: String, kind: FailureKind) -> Self {
        TableWriteError {
            table: rows.schema.table.clone(),
            destination,
            reason,
            kind,
            failed_rows: None,
            refused_rows: Vec::new(),
        }
    }
}

impl TableWriteError {
    /// Some rows refused for good, each with the backend's reason (`refused`:
    /// row index, why), the others written: only the refused rows' messages
    /// are dead-lettered.
    pub fn refused(
        rows: &TableRows,
        destination: String,
        refused: Vec<(usize, String)>,
        written: u64,
    ) -> Self {
        let reasons: Vec<String> = refused
            .iter()
            .map(|(index, why)| format!("row {index}: {why}"))
            .collect();
        TableWriteError {
            reason: format!(
                "{} of {} rows refused ({written} written): {}",
                refused.len(),
                rows.rows.len(),
                reasons.join("; ")
            ),
            failed_rows: Some(Vec::new()),
            refused_rows: refused.into_iter().map(|(index, _)| index).collect(),
            ..TableWriteError::all(rows, destination, String::new(), FailureKind::Permanent)
        }
    }
}

impl TableWriteError {
    /// The failure per message of `rows` (`TableRows::messages`): the
    /// failed rows' messages retried or refused as `kind` says, the refused
    /// rows' messages refused.
    pub fn delivery(&self, rows: &TableRows) -> Delivery {
        let messages_of = |indexes: &[usize]| -> Vec<u32> {
            indexes
                .iter()
                .filter_map(|index| rows.messages.get(*index).copied())
                .collect()
        };
        let failed = match &self.failed_rows {
            Some(indexes) => messages_of(indexes),
            None => rows.messages.clone(),
        };
        let mut delivery = Delivery::failed(&failed, self.to_string(), self.kind);
        delivery.fail(
            &messages_of(&self.refused_rows),
            self.to_string(),
            FailureKind::Permanent,
        );
        delivery
    }
}

/// An object store could not take an object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct StoreError {
    pub reason: String,
    pub kind: FailureKind,
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

/// The times a warehouse row may carry. Devices with an unset clock send
/// `-5` (1969) or `99999999999` (year 5138); stored, they poison every
/// time-partitioned query, so they are dead-lettered instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlausibleTimes {
    /// `WAREHOUSE_EARLIEST`, epoch ms (default 2000-01-01T00:00:00Z).
    pub earliest_ms: i64,
    /// `WAREHOUSE_MAX_AHEAD_SECONDS`, in ms (default one day).
    pub max_ahead_ms: i64,
}

impl Default for PlausibleTimes {
    fn default() -> Self {
        PlausibleTimes {
            earliest_ms: 946_684_800_000,
            max_ahead_ms: 24 * 3600 * 1000,
        }
    }
}

impl PlausibleTimes {
    /// Why `millis` (`what` names it: a reading's time, a column) cannot be
    /// stored, if it cannot. `what` is only called on a failure: this runs
    /// per reading and per cell, and a valid time costs no allocation.
    pub fn check(
        &self,
        what: impl FnOnce() -> String,
        millis: i64,
        now_ms: i64,
    ) -> Result<(), String> {
        let shown = crate::payload::timestamp::millis_to_rfc3339;
        if millis < self.earliest_ms {
            let what = what();
            return Err(format!(
                "{what} = {} is before {}, the earliest time the warehouse takes \
                 (a device clock that was never set? WAREHOUSE_EARLIEST moves the limit)",
                shown(millis),
                shown(self.earliest_ms)
            ));
        }
        if millis > now_ms.saturating_add(self.max_ahead_ms) {
            let what = what();
            return Err(format!(
                "{what} = {} is more than {} s ahead of the function's clock ({}; \
                 WAREHOUSE_MAX_AHEAD_SECONDS moves the limit)",
                shown(millis),
                self.max_ahead_ms / 1000,
                shown(now_ms)
            ));
        }
        Ok(())
    }
}

/// Where Parquet objects are stored (a local directory, an S3 prefix).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` at `key` (a relative, `/`-separated path) atomically.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<String, StoreError>;
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
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<String, StoreError> {
        // A full disk or a directory being replaced may pass: transient.
        let failed = |path: &std::path::Path, error: std::io::Error| StoreError {
            reason: format!("{}: {error}", path.display()),
            kind: FailureKind::Transient,
        };
        let path = self.root.join(key);
        let parent = path.parent().ok_or_else(|| StoreError {
            reason: format!("object key {key:?} has no directory"),
            kind: FailureKind::Permanent,
        })?;
        std::fs::create_dir_all(parent).map_err(|e| failed(parent, e))?;
        let temporary = parent.join(format!(".tmp-{}", std::process::id()));
        std::fs::write(&temporary, &bytes).map_err(|e| failed(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| failed(&path, e))?;
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
    let day = crate::payload::timestamp::millis_to_rfc3339(now_ms);
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

pub(crate) fn reading_row(
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

/// Window aggregates as rows of `window_aggregates`; a row's message is
/// its aggregate's index. `message_id` is a digest of the aggregate, so the
/// same aggregate emitted twice (a retried invocation) has the same id and
/// can be told apart from a late partial.
pub fn aggregate_rows(aggregates: &[Aggregate]) -> TableRows {
    use sha2::Digest;
    let mut rows = TableRows::new(Schema::window_aggregates());
    rows.rows.reserve(aggregates.len());
    for (index, aggregate) in aggregates.iter().enumerate() {
        let key = &aggregate.key;
        let stats = &aggregate.stats;
        let mut digest = sha2::Sha256::new();
        for part in [key.device.as_bytes(), b"\0", key.metric.as_bytes(), b"\0"] {
            digest.update(part);
        }
        for number in [
            key.bucket_start_ms as u64,
            u64::from(key.late),
            stats.count,
            stats.first_ms as u64,
            stats.last_ms as u64,
            stats.sum.to_bits(),
            stats.min.to_bits(),
            stats.max.to_bits(),
        ] {
            digest.update(number.to_le_bytes());
        }
        let mut id = String::with_capacity(24);
        push_hex(&mut id, &digest.finalize()[..12]);
        rows.rows.push(vec![
            Cell::Timestamp(key.bucket_start_ms),
            Cell::Timestamp(aggregate.bucket_end_ms),
            Cell::Text(key.device.to_string()),
            Cell::Text(key.metric.to_string()),
            Cell::Text(key.unit.as_str().to_owned()),
            Cell::Int(stats.count as i64),
            Cell::Float(stats.min),
            Cell::Float(stats.max),
            Cell::Float(stats.mean()),
            Cell::Float(stats.sum),
            Cell::Bool(key.late),
            Cell::Timestamp(stats.first_ms),
            Cell::Timestamp(stats.last_ms),
            Cell::Text(id),
            Cell::Int(0),
        ]);
        rows.messages.push(index as u32);
    }
    rows
}

/// A dead letter as a row of the `dead_letter` table. The payload keeps
/// the dead letter's encoding (UTF-8 text, or base64 when it is not text).
fn dead_letter_row(letter: &DeadLetter) -> Vec<Cell> {
    let time = |text: &str| TimestampFormat::Rfc3339.from_text(text);
    let received_at_ms = letter
        .received_at
        .as_deref()
        .and_then(time)
        .or_else(|| time(&letter.rejected_at))
        .unwrap_or_default();
    vec![
        Cell::Timestamp(received_at_ms),
        Cell::Text(letter.source.clone()),
        Cell::Text(letter.reason.clone()),
        Cell::Text(letter.payload.clone()),
        Cell::Text(letter.payload_encoding.clone()),
        Cell::Text(letter.message_id.clone()),
        Cell::Int(0),
    ]
}

/// Dead letters as rows of the warehouse's own `dead_letter` table,
/// written by the same backend as the other tables.
pub struct TableDeadLetters<'w> {
    pub writer: &'w dyn TableWriter,
    pub batch_id: String,
    pub now_ms: i64,
}

#[async_trait]
impl DeadLetterSink for TableDeadLetters<'_> {
    async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError> {
        let mut rows = TableRows::new(Schema::dead_letter());
        for (index, letter) in letters.iter().enumerate() {
            rows.rows.push(dead_letter_row(letter));
            rows.messages.push(index as u32);
        }
        self.writer
            .write(&rows, &self.batch_id, self.now_ms)
            .await
            .map_err(|error| DeadLetterError {
                destination: error.destination.clone(),
                reason: error.to_string(),
            })
    }
}
