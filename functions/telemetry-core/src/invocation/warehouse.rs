//! The warehouse function's step: every message becomes rows of `readings`
//! and of the declared tables; each table's rows of the invocation are
//! written together (one file, one statement). Dead letters become rows of
//! the `dead_letter` table through the same writer.

use async_trait::async_trait;

use crate::envelope::RawMessage;
use crate::invocation::{Invocation, InvocationSettings, Rejection, Step};
use crate::outcome::{Counts, Delivery, FailureKind, Response, RetryLater};
use crate::reading::decode::{decode_message, DecodeError};
use crate::reading::Reading;
use crate::warehouse::tables::{rows_of_tables, Schema, TableRows};
use crate::warehouse::{batch_id, reading_row, TableDeadLetters, TableWriter};

/// Rows -> a table writer.
pub struct WarehouseStep<'a> {
    pub settings: &'a InvocationSettings,
    pub writer: &'a dyn TableWriter,
}

/// One invocation's rows, by table.
pub struct WarehouseRows {
    readings: TableRows,
    /// One per declared table, in declaration order.
    tables: Vec<TableRows>,
    /// A message's readings while it is decoded (kept for its capacity).
    decoded: Vec<Reading>,
}

#[async_trait]
impl Step for WarehouseStep<'_> {
    type Work = WarehouseRows;

    fn start(&self, _messages: usize) -> WarehouseRows {
        WarehouseRows {
            readings: TableRows::new(Schema::readings()),
            tables: self
                .settings
                .tables
                .iter()
                .map(|table| TableRows::new(Schema::of(table)))
                .collect(),
            decoded: Vec::new(),
        }
    }

    fn take(
        &self,
        work: &mut WarehouseRows,
        message: &RawMessage<'_>,
        index: u32,
        now_ms: i64,
    ) -> Result<(), Rejection> {
        work.decoded.clear();
        let tables = rows_of_tables(&self.settings.tables, message, now_ms)
            .map_err(|error| Rejection::new(error.to_string()))?;
        // Readings too, unless every table that took the message says not.
        let wants_readings = tables
            .iter()
            .all(|(table, _)| self.settings.tables[*table].readings);
        if wants_readings {
            let decoded = decode_message(
                &self.settings.mappings,
                message,
                index,
                now_ms,
                &mut work.decoded,
            );
            match decoded {
                Ok(_) => {
                    if let Some(bad) = work.decoded.iter().find(|r| !r.value.is_finite()) {
                        let error = DecodeError::Invalid {
                            field: bad.metric.to_string(),
                            value: bad.value.to_string(),
                            why: "not a finite number".into(),
                        };
                        return Err(Rejection::new(error.to_string()));
                    }
                }
                // Not telemetry, but some table took it: that is enough.
                Err(_) if !tables.is_empty() => work.decoded.clear(),
                Err(error) => return Err(Rejection::new(error.to_string())),
            }
        }
        for (table, rows) in tables {
            let table = &mut work.tables[table];
            table
                .messages
                .extend(std::iter::repeat_n(index, rows.len()));
            table.rows.extend(rows);
        }
        for (position, reading) in work.decoded.iter().enumerate() {
            work.readings
                .rows
                .push(reading_row(reading, message, position, now_ms));
            work.readings.messages.push(index);
        }
        Ok(())
    }

    fn accepted(&self, work: &WarehouseRows) -> usize {
        work.readings.rows.len()
    }

    async fn deliver(&self, work: &WarehouseRows, invocation: Invocation<'_>) -> Delivery {
        let batch = batch_id(invocation.request_id, invocation.now_ms);
        let mut delivery = Delivery::default();
        let mut written = Vec::new();
        let all = std::iter::once(&work.readings).chain(&work.tables);
        for rows in all.filter(|rows| !rows.is_empty()) {
            match self.writer.write(rows, &batch, invocation.now_ms).await {
                Ok(location) => written.push(serde_json::json!({
                    "table": rows.schema.table, "rows": rows.rows.len(), "location": location,
                })),
                Err(error) => {
                    tracing::error!(%error, kind = ?error.kind, "rows not written");
                    let messages: Vec<u32> = match &error.failed_rows {
                        Some(indexes) => indexes
                            .iter()
                            .filter_map(|i| rows.messages.get(*i).copied())
                            .collect(),
                        None => rows.messages.clone(),
                    };
                    delivery.fail(&messages, error.to_string(), error.kind);
                    let refused: Vec<u32> = error
                        .refused_rows
                        .iter()
                        .filter_map(|i| rows.messages.get(*i).copied())
                        .collect();
                    delivery.fail(&refused, error.to_string(), FailureKind::Permanent);
                }
            }
        }
        tracing::info!(tables = %serde_json::Value::from(written), "written");
        delivery
    }
}

impl InvocationSettings {
    /// Runs one invocation of the warehouse function.
    pub async fn process_warehouse(
        &self,
        event: &[u8],
        request_id: &str,
        now_ms: i64,
        writer: &dyn TableWriter,
    ) -> Result<(Response, Counts), RetryLater> {
        let step = WarehouseStep {
            settings: self,
            writer,
        };
        let dead_letters = TableDeadLetters {
            writer,
            batch_id: batch_id(request_id, now_ms),
            now_ms,
        };
        let invocation = Invocation { request_id, now_ms };
        self.run(&step, event, invocation, &dead_letters).await
    }
}
