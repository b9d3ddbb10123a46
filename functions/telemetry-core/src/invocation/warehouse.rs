//! The warehouse function's step: every message becomes rows of `readings`
//! and of the declared tables; each table's rows of the invocation are
//! written together (one file, one statement). Dead letters become rows of
//! the `dead_letter` table through the same writer.

use async_trait::async_trait;

use crate::envelope::RawMessage;
use crate::invocation::{Invocation, InvocationSettings, Rejection, Step};
use crate::outcome::{Counts, Delivery, FailureKind, Response, RetryLater};
use crate::payload::records::DecodeError;
use crate::reading::decode::decode_message;
use crate::reading::validate::check_identifiers;
use crate::reading::Reading;
use crate::warehouse::tables::{rows_of_tables, Cell, Schema, TableRows};
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
                    // A control character in a device id or metric name is a
                    // device's bug, which no backend should be asked to store.
                    for reading in &work.decoded {
                        check_identifiers(reading)
                            .map_err(|error| Rejection::new(error.to_string()))?;
                    }
                }
                // Not telemetry, but some table took it: that is enough.
                Err(_) if !tables.is_empty() => work.decoded.clear(),
                Err(error) => return Err(Rejection::new(error.to_string())),
            }
        }
        // Times no clock could mean are refused before anything is kept.
        let plausible = &self.settings.plausible_times;
        for reading in &work.decoded {
            let what = || format!("the time of reading `{}`", reading.metric);
            plausible
                .check(what, reading.timestamp_ms, now_ms)
                .map_err(Rejection::new)?;
        }
        for (table, rows) in &tables {
            let definition = &self.settings.tables[*table];
            for row in rows {
                for (column, cell) in definition.columns.iter().zip(row) {
                    if let Cell::Timestamp(millis) = cell {
                        let what = || format!("column `{}.{}`", definition.name, column.name);
                        plausible
                            .check(what, *millis, now_ms)
                            .map_err(Rejection::new)?;
                    }
                }
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
            if !invocation.may_start_writes() {
                // Not started, so nothing half-written: retried whole.
                let reason = format!(
                    "table {} not written: the deadline was near",
                    rows.schema.table
                );
                delivery.fail(&rows.messages, reason, FailureKind::Transient);
                continue;
            }
            match self.writer.write(rows, &batch, invocation.now_ms).await {
                Ok(location) => written.push(serde_json::json!({
                    "table": rows.schema.table, "rows": rows.rows.len(), "location": location,
                })),
                Err(error) => {
                    tracing::error!(%error, kind = ?error.kind, "rows not written");
                    delivery.absorb(error.delivery(rows));
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
        let invocation = Invocation::new(request_id, now_ms);
        self.process_warehouse_in(event, invocation, writer).await
    }

    /// [`InvocationSettings::process_warehouse`] within an invocation that
    /// has a deadline.
    pub async fn process_warehouse_in(
        &self,
        event: &[u8],
        invocation: Invocation<'_>,
        writer: &dyn TableWriter,
    ) -> Result<(Response, Counts), RetryLater> {
        let Invocation {
            request_id, now_ms, ..
        } = invocation;
        let step = WarehouseStep {
            settings: self,
            writer,
        };
        let dead_letters = TableDeadLetters {
            writer,
            batch_id: batch_id(request_id, now_ms),
            now_ms,
        };
        self.run(&step, event, invocation, &dead_letters).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::config::pipeline_file::PipelineFile;
    use crate::warehouse::tables::Cell;
    use crate::warehouse::TableWriteError;

    const NOW_MS: i64 = 1_645_938_300_000;

    /// The reference pipeline file's tables, as the function reads it.
    fn settings() -> InvocationSettings {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/reference-pipelines.toml"
        );
        PipelineFile::load(std::path::Path::new(path))
            .unwrap()
            .into()
    }

    /// Keeps what it is given; fails the tables it is told to, as told.
    #[derive(Default)]
    struct MemoryTables {
        written: Mutex<Vec<TableRows>>,
        failing: Vec<(&'static str, FailureKind)>,
    }

    #[async_trait]
    impl TableWriter for MemoryTables {
        async fn write(
            &self,
            rows: &TableRows,
            _batch_id: &str,
            _now_ms: i64,
        ) -> Result<String, TableWriteError> {
            let table = rows.schema.table.as_str();
            if let Some((_, kind)) = self.failing.iter().find(|(name, _)| *name == table) {
                let reason = format!("{table} is failing ({kind:?})");
                return Err(TableWriteError::all(rows, "memory".into(), reason, *kind));
            }
            self.written.lock().unwrap().push(rows.clone());
            Ok(format!("memory:{table}"))
        }
    }

    impl MemoryTables {
        fn table(&self, name: &str) -> Vec<Vec<Cell>> {
            let written = self.written.lock().unwrap();
            written
                .iter()
                .filter(|rows| rows.schema.table == name)
                .flat_map(|rows| rows.rows.clone())
                .collect()
        }
    }

    fn sqs(records: &[(&str, &str)]) -> Vec<u8> {
        let records: Vec<_> = records
            .iter()
            .map(|(id, body)| json!({"messageId": id, "eventSource": "aws:sqs", "body": body}))
            .collect();
        serde_json::to_vec(&json!({ "Records": records })).unwrap()
    }

    /// Reference 000's reading, 002's CO2 line, a tweet and a broken body.
    fn mixed_batch() -> Vec<u8> {
        sqs(&[
            (
                "temp",
                r#"{"timestamp": 1645938060, "device": "temp-sensor-istanbul", "temperature": 17.95}"#,
            ),
            ("co2", "2020-7-13 22:43:23|3500"),
            (
                "tweet",
                r#"{"id": 7, "created_at": "2021-07-26 14:37:33+00:00", "text": "hi"}"#,
            ),
            ("broken", r#"{"device": "d-1", "temperature": "#),
        ])
    }

    #[tokio::test]
    async fn each_message_lands_in_its_tables_and_the_broken_one_in_dead_letters() {
        let tables = MemoryTables::default();
        let (response, counts) = settings()
            .process_warehouse(&mixed_batch(), "req", NOW_MS, &tables)
            .await
            .unwrap();
        assert_eq!(response.batch_item_failures(), Some(&[][..]));
        // A row ends with its message id and its position in the message.
        let temp = tables.table("sensordata");
        assert_eq!(temp.len(), 1);
        assert_eq!(temp[0][1], Cell::Text("temp-sensor-istanbul".into()));
        assert_eq!(temp[0][3..], [Cell::Text("temp".into()), Cell::Int(0)]);
        let co2 = tables.table("co2_emissions");
        assert_eq!(co2.len(), 1);
        assert_eq!(co2[0][1], Cell::Float(3500.0));
        assert_eq!(tables.table("tweets").len(), 1);
        // Readings of the temperature and the CO2 line; the tweet is no telemetry.
        let readings = tables.table("readings");
        let ids: Vec<&Cell> = readings.iter().map(|row| &row[8]).collect();
        assert_eq!(ids, [&Cell::Text("temp".into()), &Cell::Text("co2".into())]);
        let dead = tables.table("dead_letter");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0][5], Cell::Text("broken".into()));
        let Cell::Text(reason) = &dead[0][2] else {
            panic!("a reason")
        };
        assert!(reason.contains("not valid JSON"), "{reason}");
        assert_eq!((counts.readings_accepted, counts.dead_lettered), (2, 1));
    }

    /// The mixed batch loaded while `table` fails as `kind`.
    async fn load_mixed_batch_failing(
        table: &'static str,
        kind: FailureKind,
    ) -> (MemoryTables, Response, Counts) {
        let tables = MemoryTables {
            failing: vec![(table, kind)],
            ..MemoryTables::default()
        };
        let (response, counts) = settings()
            .process_warehouse(&mixed_batch(), "req", NOW_MS, &tables)
            .await
            .unwrap();
        (tables, response, counts)
    }

    #[tokio::test]
    async fn a_transient_table_failure_retries_only_that_tables_messages() {
        let (_, response, counts) =
            load_mixed_batch_failing("co2_emissions", FailureKind::Transient).await;
        assert_eq!(
            response.batch_item_failures(),
            Some(&["co2".to_owned()][..])
        );
        assert_eq!((counts.retried, counts.dead_lettered), (1, 1));
    }

    #[tokio::test]
    async fn a_permanent_table_failure_dead_letters_that_tables_messages() {
        let (tables, response, counts) =
            load_mixed_batch_failing("tweets", FailureKind::Permanent).await;
        assert_eq!(response.batch_item_failures(), Some(&[][..]));
        let dead = tables.table("dead_letter");
        let ids: Vec<&Cell> = dead.iter().map(|row| &row[5]).collect();
        assert_eq!(
            ids,
            [&Cell::Text("broken".into()), &Cell::Text("tweet".into())]
        );
        assert_eq!((counts.retried, counts.dead_lettered), (0, 2));
    }

    #[tokio::test]
    async fn when_dead_letters_cannot_be_written_their_messages_are_retried() {
        let (_, response, counts) =
            load_mixed_batch_failing("dead_letter", FailureKind::Transient).await;
        assert_eq!(
            response.batch_item_failures(),
            Some(&["broken".to_owned()][..])
        );
        assert_eq!((counts.retried, counts.dead_lettered), (1, 0));
    }

    #[tokio::test]
    async fn times_no_clock_could_mean_are_dead_lettered_with_the_limit() {
        let tables = MemoryTables::default();
        let event = sqs(&[
            (
                "unset-clock",
                r#"{"timestamp": -5, "device": "d-1", "temperature": 17.5}"#,
            ),
            (
                "year-5138",
                r#"{"timestamp": 99999999999, "device": "d-1", "temperature": 17.5}"#,
            ),
            (
                "fine",
                r#"{"timestamp": 1645938060, "device": "d-1", "temperature": 17.5}"#,
            ),
        ]);
        let (_, counts) = settings()
            .process_warehouse(&event, "req", NOW_MS, &tables)
            .await
            .unwrap();
        assert_eq!((counts.readings_accepted, counts.dead_lettered), (1, 2));
        let dead = tables.table("dead_letter");
        let reason = |id: &str| match dead.iter().find(|row| row[5] == Cell::Text(id.into())) {
            Some(row) => format!("{:?}", row[2]),
            None => panic!("{id} is not dead-lettered"),
        };
        let early = reason("unset-clock");
        assert!(
            early.contains("1969-12-31T23:59:55") && early.contains("WAREHOUSE_EARLIEST"),
            "{early}"
        );
        let late = reason("year-5138");
        assert!(
            late.contains("5138") && late.contains("WAREHOUSE_MAX_AHEAD_SECONDS"),
            "{late}"
        );
        // The table row of the good message is kept, the others' are not.
        assert_eq!(tables.table("sensordata").len(), 1);
    }

    fn clock_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    /// Takes its time over every table.
    struct SlowTables(MemoryTables);

    #[async_trait]
    impl TableWriter for SlowTables {
        async fn write(
            &self,
            rows: &TableRows,
            batch_id: &str,
            now_ms: i64,
        ) -> Result<String, crate::warehouse::TableWriteError> {
            // Blocking is fine here: the test runtime has nothing else to do.
            std::thread::sleep(std::time::Duration::from_millis(400));
            self.0.write(rows, batch_id, now_ms).await
        }
    }

    #[tokio::test]
    async fn near_its_deadline_an_invocation_starts_no_write_and_reports_the_rest() {
        let tables = SlowTables(MemoryTables::default());
        // Time for the first table's write, not for the next one's.
        let deadline = clock_ms() + crate::invocation::DEADLINE_MARGIN_MS + 300;
        let invocation = Invocation::new("req", NOW_MS).until(Some(deadline));
        let (response, counts) = settings()
            .process_warehouse_in(&mixed_batch(), invocation, &tables)
            .await
            .unwrap();
        // `readings` (temp and co2) was written; sensordata, co2_emissions
        // and tweets were not started: their messages come back.
        assert_eq!(tables.0.table("readings").len(), 2);
        assert!(tables.0.table("sensordata").is_empty());
        let mut retried = response.batch_item_failures().unwrap().to_vec();
        retried.sort();
        // The broken message's dead letter was not written either: retried.
        assert_eq!(retried, ["broken", "co2", "temp", "tweet"]);
        assert_eq!((counts.dead_lettered, counts.retried), (0, 4));
    }

    #[tokio::test]
    async fn past_its_deadline_an_invocation_delivers_nothing_and_loses_nothing() {
        let tables = MemoryTables::default();
        let invocation = Invocation::new("req", NOW_MS).until(Some(clock_ms()));
        let (response, _) = settings()
            .process_warehouse_in(&mixed_batch(), invocation, &tables)
            .await
            .unwrap();
        let mut retried = response.batch_item_failures().unwrap().to_vec();
        retried.sort();
        // Nothing is written, everything comes back, the broken one to be
        // dead-lettered on its next delivery.
        assert_eq!(retried, ["broken", "co2", "temp", "tweet"]);
        assert!(tables.written.lock().unwrap().is_empty());
    }

    /// For any one message through any raw trigger: rows, a dead letter, or
    /// a retry (the invariant of the fuzz targets, under `cargo test`).
    mod nothing_vanishes {
        use proptest::prelude::*;

        use super::*;
        use crate::invocation::hostile::one_message_event;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(384))]
            #[test]
            fn every_message_gives_rows_or_a_dead_letter(event in one_message_event()) {
                let tables = MemoryTables::default();
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let outcome =
                    runtime.block_on(settings().process_warehouse(&event, "req", NOW_MS, &tables));
                let counts = match &outcome {
                    Ok((_, counts)) => counts.clone(),
                    Err(retry) => retry.counts.clone(),
                };
                let dead = tables.table("dead_letter").len();
                let written = tables.written.lock().unwrap();
                let rows: usize = written
                    .iter()
                    .filter(|rows| rows.schema.table != "dead_letter")
                    .map(|rows| rows.rows.len())
                    .sum();
                prop_assert_eq!(dead, counts.dead_lettered);
                let accounted = rows > 0 || dead == 1 || counts.retried == 1;
                let batch = counts.messages != 1
                    && rows + dead + counts.retried >= counts.messages;
                prop_assert!(accounted || batch, "{:?} vanished: {:?}",
                    String::from_utf8_lossy(&event), counts);
            }
        }
    }
}
