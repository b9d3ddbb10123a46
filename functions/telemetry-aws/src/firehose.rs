//! Warehouse rows to an Amazon Data Firehose stream as JSON lines
//! (`{"table": ..., <column>: <value>, ...}`), with `PutRecordBatch` at its
//! limits (500 records, 4 MiB per call) and only the records the service
//! marks as failed sent again.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use serde_json::{Map, Value};
use telemetry_core::outcome::FailureKind;
use telemetry_core::payload::timestamp::millis_to_rfc3339;
use telemetry_core::warehouse::tables::{Cell, TableRows};
use telemetry_core::warehouse::{TableWriteError, TableWriter};

use crate::retry::{error_chain, failure_kind};

pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// Firehose's limit for one record.
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

#[derive(Clone, Debug)]
pub struct FirehoseTables {
    client: Client,
    stream: String,
    max_attempts: u32,
}

impl FirehoseTables {
    pub fn new(sdk: &SdkConfig, stream: impl Into<String>, max_attempts: u32) -> Self {
        FirehoseTables {
            client: Client::new(sdk),
            stream: stream.into(),
            max_attempts: max_attempts.max(1),
        }
    }
}

/// A row as one JSON line.
pub fn row_json(rows: &TableRows, row: &[Cell]) -> Vec<u8> {
    let mut object = Map::with_capacity(row.len() + 1);
    object.insert("table".into(), Value::from(rows.schema.table.as_str()));
    for ((name, _), cell) in rows.schema.columns.iter().zip(row) {
        let value = match cell {
            Cell::Null => Value::Null,
            Cell::Text(text) => Value::from(text.as_str()),
            Cell::Int(value) => Value::from(*value),
            Cell::Float(value) => Value::from(*value),
            Cell::Bool(value) => Value::from(*value),
            Cell::Timestamp(millis) => Value::from(millis_to_rfc3339(*millis)),
        };
        object.insert(name.clone(), value);
    }
    let mut line = serde_json::to_vec(&Value::Object(object)).expect("JSON values serialise");
    line.push(b'\n');
    line
}

/// Groups record indexes into calls within the count and size limits.
pub fn plan_calls(sizes: &[usize], pending: &[usize]) -> Vec<Vec<usize>> {
    let mut calls = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for &index in pending {
        let size = sizes[index];
        if !current.is_empty()
            && (current.len() == MAX_RECORDS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL)
        {
            calls.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(index);
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

#[async_trait]
impl TableWriter for FirehoseTables {
    async fn write(
        &self,
        rows: &TableRows,
        _batch_id: &str,
        _now_ms: i64,
    ) -> Result<String, TableWriteError> {
        let records: Vec<Vec<u8>> = rows.rows.iter().map(|row| row_json(rows, row)).collect();
        let sizes: Vec<usize> = records.iter().map(Vec::len).collect();
        // Records over Firehose's limit can never be delivered: report them.
        let refused: Vec<usize> = (0..records.len())
            .filter(|i| sizes[*i] > MAX_RECORD_BYTES)
            .collect();
        let mut failed: Vec<usize> = Vec::new();
        let mut kind = FailureKind::Transient;
        let mut pending: Vec<usize> = (0..records.len())
            .filter(|i| sizes[*i] <= MAX_RECORD_BYTES)
            .collect();
        let mut last_error = String::new();
        for attempt in 0..self.max_attempts {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
            }
            let mut retry = Vec::new();
            for call in plan_calls(&sizes, &pending) {
                let batch: Vec<Record> = call
                    .iter()
                    .map(|i| {
                        Record::builder()
                            .data(Blob::new(records[*i].clone()))
                            .build()
                            .expect("data is set")
                    })
                    .collect();
                match self
                    .client
                    .put_record_batch()
                    .delivery_stream_name(&self.stream)
                    .set_records(Some(batch))
                    .send()
                    .await
                {
                    Ok(output) if output.failed_put_count() == 0 => {}
                    Ok(output) if output.request_responses().len() != call.len() => {
                        last_error = format!(
                            "{} answers for {} records",
                            output.request_responses().len(),
                            call.len()
                        );
                        retry.extend(call);
                    }
                    Ok(output) => {
                        for (index, response) in call.iter().zip(output.request_responses()) {
                            if let Some(code) = response.error_code() {
                                last_error = format!(
                                    "{code}: {}",
                                    response.error_message().unwrap_or_default()
                                );
                                retry.push(*index);
                            }
                        }
                    }
                    Err(error) => {
                        last_error = error_chain(&error);
                        match failure_kind(&error) {
                            FailureKind::Transient => retry.extend(call),
                            // Refused for good: the same call would fail again.
                            FailureKind::Permanent => {
                                kind = FailureKind::Permanent;
                                failed.extend(call);
                            }
                        }
                    }
                }
            }
            pending = retry;
        }
        failed.extend(pending);
        if failed.is_empty() && refused.is_empty() {
            Ok(format!(
                "firehose://{} ({} records)",
                self.stream,
                records.len()
            ))
        } else {
            failed.sort_unstable();
            Err(TableWriteError {
                table: rows.schema.table.clone(),
                destination: format!("firehose://{}", self.stream),
                reason: format!(
                    "{} of {} records not delivered: {}",
                    failed.len() + refused.len(),
                    records.len(),
                    if last_error.is_empty() {
                        format!("records over Firehose's {MAX_RECORD_BYTES} bytes")
                    } else {
                        last_error
                    }
                ),
                kind,
                failed_rows: Some(failed),
                refused_rows: refused,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_respect_count_and_size_limits() {
        let sizes = vec![100; 1200];
        let pending: Vec<usize> = (0..1200).collect();
        let calls = plan_calls(&sizes, &pending);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        let big = vec![900 * 1024; 10];
        let calls = plan_calls(&big, &(0..10).collect::<Vec<_>>());
        assert!(calls
            .iter()
            .all(|c| c.len() * 900 * 1024 <= MAX_BYTES_PER_CALL));
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 10);
    }
}
