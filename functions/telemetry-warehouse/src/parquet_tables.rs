//! Parquet objects in a store: `<table>/date=YYYY-MM-DD/part-<batch>.parquet`,
//! one file per table per invocation.

use async_trait::async_trait;
use telemetry_core::outcome::FailureKind;
use telemetry_core::warehouse::tables::TableRows;
use telemetry_core::warehouse::{object_key, ObjectStore, TableWriteError, TableWriter};

pub struct ParquetTables<S> {
    pub store: S,
}

#[async_trait]
impl<S: ObjectStore> TableWriter for ParquetTables<S> {
    async fn write(
        &self,
        rows: &TableRows,
        batch_id: &str,
        now_ms: i64,
    ) -> Result<String, TableWriteError> {
        let fail =
            |reason: String, kind| TableWriteError::all(rows, self.store.describe(), reason, kind);
        // Rows the Parquet writer refuses are refused the same way again.
        let bytes = crate::parquet_file::encode(rows)
            .map_err(|error| fail(error.to_string(), FailureKind::Permanent))?;
        let key = object_key(&rows.schema.table, batch_id, now_ms, "parquet");
        self.store
            .put(&key, bytes)
            .await
            .map_err(|error| fail(error.reason, error.kind))
    }
}
