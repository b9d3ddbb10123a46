//! The windows function's invocation: the skeleton's read, decode and
//! answer, around a step of its own (fold readings into event-time
//! aggregates, emit the complete ones, hand the rest back as `state`).
//!
//! It orders the skeleton differently for one reason: its state must match
//! Lambda's checkpoint. Dead letters are written *before* anything is
//! emitted, and when they cannot be, the invocation fails whole: Lambda
//! then retries the batch with the state it had, and nothing was emitted
//! twice. Aggregates an output could not take for now stay in the state
//! and are offered again on the next invocation; on the window's final
//! invocation (after which Lambda deletes the state) the invocation fails
//! instead, which Lambda answers by retrying that final invocation, with
//! its state, until it succeeds (AWS: "your Lambda function pauses
//! further processing until a successful invocation"). An answer with
//! `batchItemFailures` there would checkpoint past the window and drop the
//! state holding earlier batches' readings, so none is given.

use std::borrow::Cow;

use serde_json::json;

use crate::envelope::kinesis_window::TumblingWindow;
use crate::envelope::parse_event;
use crate::invocation::metrics::take_valid_readings;
use crate::invocation::{
    answer, dead_letter_whole_event, Invocation, InvocationSettings, Rejected, Rejection,
};
use crate::outcome::{Counts, Delivery, Response, RetryLater};
use crate::reading::Reading;
use crate::sink::dead_letter::DeadLetter;
use crate::sink::{DeadLetterSink, MetricsSink};
use crate::warehouse::{aggregate_rows, batch_id, TableWriter};
use crate::window::state::{decode_state, encode_state, state_bytes};
use crate::window::{Aggregate, Outputs, WindowSettings, Windows};

/// Where aggregates go; at least one.
#[derive(Clone, Copy)]
pub struct WindowOutputs<'a> {
    pub metrics: Option<&'a dyn MetricsSink>,
    pub table: Option<&'a dyn TableWriter>,
}

impl WindowOutputs<'_> {
    fn all(&self) -> Outputs {
        let mut bits = 0;
        if self.metrics.is_some() {
            bits |= Outputs::METRICS;
        }
        if self.table.is_some() {
            bits |= Outputs::TABLE;
        }
        Outputs(bits)
    }
}

/// What a windows invocation did, beyond the common counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub counts: Counts,
    /// Aggregates every output took in this invocation.
    pub aggregates_emitted: usize,
    /// Of those, late partials.
    pub late_aggregates: usize,
    /// Emitted before their bucket was complete: the state ran over its
    /// budget.
    pub emitted_early: usize,
    /// Aggregates an output refused for good: dead-lettered.
    pub aggregates_dead_lettered: usize,
    /// Series the state hands on, and its size in the answer.
    pub series_in_state: usize,
    pub state_bytes: usize,
}

/// One invocation's emission work.
struct Emission<'a, 'o> {
    outputs: WindowOutputs<'o>,
    dead_letters: &'a dyn DeadLetterSink,
    invocation: Invocation<'a>,
    shard: &'a str,
    counts: WindowCounts,
    /// Files or statements of this invocation so far (each table write
    /// gets a name of its own).
    table_writes: usize,
}

impl InvocationSettings {
    /// Runs one invocation of the windows function.
    pub async fn process_windows(
        &self,
        settings: WindowSettings,
        event: &[u8],
        invocation: Invocation<'_>,
        outputs: WindowOutputs<'_>,
        dead_letters: &dyn DeadLetterSink,
    ) -> Result<(Response, WindowCounts), RetryLater> {
        let Invocation {
            request_id, now_ms, ..
        } = invocation;
        let envelope = match parse_event(event) {
            Ok(envelope) => envelope,
            Err(error) => {
                return dead_letter_whole_event(event, &error, invocation, dead_letters)
                    .await
                    .map(|(_, counts)| {
                        // A tumbling window's answer must carry a state, or
                        // Lambda counts the invocation as failed.
                        let response = Response::Window { state: json!({}) };
                        let counts = WindowCounts {
                            counts,
                            ..WindowCounts::default()
                        };
                        (response, counts)
                    });
            }
        };
        if let Some(http) = &envelope.http {
            if let Some(refusal) = self.refuse_http(http) {
                return Ok((refusal, WindowCounts::default()));
            }
        }
        let messages = envelope.messages;
        let window = envelope.window;
        let mut rejected = Rejected::default();

        // The state Lambda carried, or a fresh one when it is not ours.
        let (mut windows, state_letter) =
            match window.as_ref().map(|w| decode_state(w.state.as_ref())) {
                None => (Windows::default(), None),
                Some(Ok(windows)) => (windows, None),
                Some(Err(error)) => {
                    let reason = format!("{error}; the window starts afresh");
                    tracing::warn!(%reason, "dead-lettering the window state");
                    (
                        Windows::default(),
                        Some(state_dead_letter(
                            window.as_ref(),
                            request_id,
                            reason,
                            now_ms,
                        )),
                    )
                }
            };

        // Decode and fold.
        let folding = windows.folding(settings, window.as_ref().map(|w| w.start_ms));
        let mut readings: Vec<Reading> = Vec::with_capacity(16);
        let mut accepted = 0;
        for (index, message) in messages.iter().enumerate() {
            let index = index as u32;
            readings.clear();
            let taken = match &message.problem {
                Some(problem) => Err(Rejection::new(problem.clone())),
                None => take_valid_readings(self, &mut readings, message, index, now_ms),
            };
            for reading in &readings {
                windows.fold(&folding, reading);
            }
            accepted += readings.len();
            if let Err(rejection) = taken {
                rejected.add(message, index, rejection, invocation);
            }
        }
        let mut counts = Counts {
            messages: messages.len(),
            readings_accepted: accepted,
            readings_rejected: rejected.readings,
            ..Counts::default()
        };

        // Dead letters first: if they cannot be written, nothing has been
        // emitted yet and the whole batch is retried with the state it had.
        let mut letters = std::mem::take(&mut rejected.letters);
        letters.extend(state_letter);
        if !letters.is_empty() {
            if !invocation.may_start_writes() {
                return Err(retry_all(
                    counts,
                    "dead letters not written: the deadline was near".into(),
                ));
            }
            if let Err(error) = dead_letters.write(&letters).await {
                tracing::error!(%error, "dead letters not written; the batch will be retried");
                return Err(retry_all(counts, error.to_string()));
            }
            counts.dead_lettered = letters.len();
        }

        let is_final = window.as_ref().is_none_or(|w| w.is_final);
        let shard = window
            .as_ref()
            .and_then(|w| w.shard_id.as_deref())
            .unwrap_or("no-shard");
        let mut emission = Emission {
            outputs,
            dead_letters,
            invocation,
            shard,
            counts: WindowCounts {
                counts,
                ..WindowCounts::default()
            },
            table_writes: 0,
        };
        let due = windows.due(settings, is_final);
        emission.emit(&mut windows, &due, false).await;
        let mut state = encode_state(&windows);
        let mut bytes = state_bytes(&state);
        while !is_final && bytes > settings.state_budget_bytes {
            let early = windows.close_oldest_bucket(settings);
            if early.is_empty() {
                break;
            }
            tracing::warn!(
                series = early.len(),
                budget = settings.state_budget_bytes,
                "the window state is over its budget: emitting its oldest bucket early"
            );
            emission.emit(&mut windows, &early, true).await;
            state = encode_state(&windows);
            bytes = state_bytes(&state);
        }
        let mut counts = emission.counts;
        counts.series_in_state = windows.series.len();
        counts.state_bytes = bytes;
        let undelivered = !windows.series.is_empty() && is_final;
        let over_budget = !is_final && counts.state_bytes > settings.state_budget_bytes;
        if undelivered || over_budget {
            let reason = if undelivered {
                format!(
                    "{} aggregates were not delivered on the window's final invocation",
                    windows.series.len()
                )
            } else {
                format!(
                    "the window state ({} bytes) is over its budget with aggregates not delivered",
                    counts.state_bytes
                )
            };
            tracing::error!(%reason, "the invocation fails so that Lambda retries it");
            return Err(retry_all(counts.counts, reason));
        }
        tracing::info!(
            trigger = envelope.kind.as_str(),
            messages = counts.counts.messages,
            readings_accepted = counts.counts.readings_accepted,
            readings_rejected = counts.counts.readings_rejected,
            dead_lettered = counts.counts.dead_lettered,
            aggregates_emitted = counts.aggregates_emitted,
            late_aggregates = counts.late_aggregates,
            emitted_early = counts.emitted_early,
            series_in_state = counts.series_in_state,
            state_bytes = counts.state_bytes,
            is_final,
            "processed"
        );
        match window {
            Some(_) => Ok((Response::Window { state }, counts)),
            // No tumbling window: every batch is emitted whole (a failure
            // above retried it whole), and the trigger gets its usual answer.
            None => answer(envelope.kind, &messages, &[], None, counts.counts.clone())
                .map(|(response, _)| (response, counts)),
        }
    }
}

impl Emission<'_, '_> {
    /// Offers `due` to every output that has not taken it yet; what an
    /// output refuses for good is dead-lettered (and so counts as taken);
    /// the rest stays in `windows` for the next invocation.
    async fn emit(&mut self, windows: &mut Windows, due: &[Aggregate], early: bool) {
        if due.is_empty() {
            return;
        }
        if !self.invocation.may_start_writes() {
            tracing::warn!("the deadline is near; aggregates stay in the state");
            return;
        }
        let all = self.outputs.all();
        // Per aggregate: the outputs that took it, before (as the state
        // remembers) or now; a dead-lettered refusal counts as taken.
        let mut taken: Vec<u8> = due
            .iter()
            .map(|aggregate| aggregate.stats.delivered)
            .collect();
        let mut refused: Vec<(usize, u8, String)> = Vec::new();
        if let Some(metrics) = self.outputs.metrics {
            let owed = owed_by(&taken, Outputs::METRICS);
            if !owed.is_empty() {
                let delivery = metrics.send_aggregates(&subset(due, &owed)).await;
                self.counts.counts.api_calls += delivery.api_calls;
                settle(delivery, &owed, Outputs::METRICS, &mut taken, &mut refused);
            }
        }
        if let Some(table) = self.outputs.table {
            let owed = owed_by(&taken, Outputs::TABLE);
            if !owed.is_empty() {
                let rows = aggregate_rows(&subset(due, &owed));
                self.table_writes += 1;
                let name = format!(
                    "{}-{}",
                    batch_id(self.invocation.request_id, self.invocation.now_ms),
                    self.table_writes
                );
                let delivery = match table.write(&rows, &name, self.invocation.now_ms).await {
                    Ok(_) => Delivery::default(),
                    Err(error) => {
                        tracing::error!(%error, "window aggregates not written");
                        error.delivery(&rows)
                    }
                };
                settle(delivery, &owed, Outputs::TABLE, &mut taken, &mut refused);
            }
        }
        if !refused.is_empty() {
            let letters: Vec<DeadLetter> = refused
                .iter()
                .map(|(index, _, reason)| {
                    aggregate_dead_letter(&due[*index], self.shard, self.invocation, reason.clone())
                })
                .collect();
            match self.dead_letters.write(&letters).await {
                Ok(_) => {
                    self.counts.aggregates_dead_lettered += letters.len();
                    for (index, output, _) in &refused {
                        taken[*index] |= output;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "refused aggregates not dead-lettered; they stay in the state")
                }
            }
        }
        for (aggregate, outputs) in due.iter().zip(&taken) {
            windows.delivered(&aggregate.key, *outputs, all);
            if *outputs & all.0 == all.0 {
                self.counts.aggregates_emitted += 1;
                self.counts.late_aggregates += usize::from(aggregate.key.late);
                self.counts.emitted_early += usize::from(early);
            }
        }
    }
}

/// Indexes of the aggregates `output` has not taken yet.
fn owed_by(taken: &[u8], output: u8) -> Vec<usize> {
    (0..taken.len())
        .filter(|&index| taken[index] & output == 0)
        .collect()
}

/// The aggregates of `due` at `owed`: `due` itself when all are owed (the
/// usual case: every output takes a new aggregate at once).
fn subset<'d>(due: &'d [Aggregate], owed: &[usize]) -> Cow<'d, [Aggregate]> {
    if owed.len() == due.len() {
        Cow::Borrowed(due)
    } else {
        Cow::Owned(owed.iter().map(|&index| due[index].clone()).collect())
    }
}

/// Records what one output did with the aggregates at `owed` (its
/// `delivery` counts positions within them): taken, refused for good (to
/// be dead-lettered), or left for the next invocation.
fn settle(
    mut delivery: Delivery,
    owed: &[usize],
    output: u8,
    taken: &mut [u8],
    refused: &mut Vec<(usize, u8, String)>,
) {
    delivery.settle();
    let name = if output == Outputs::METRICS {
        "metrics"
    } else {
        "table"
    };
    for (position, &index) in owed.iter().enumerate() {
        let position = position as u32;
        if delivery.retry.binary_search(&position).is_ok() {
            continue;
        }
        match delivery
            .refused
            .binary_search_by_key(&position, |(p, _)| *p)
        {
            Ok(at) => refused.push((index, output, format!("{name}: {}", delivery.refused[at].1))),
            Err(_) => taken[index] |= output,
        }
    }
}

/// The whole invocation fails: Lambda retries the batch with its state.
fn retry_all(mut counts: Counts, reason: String) -> RetryLater {
    counts.retried = counts.messages;
    RetryLater {
        failed: counts.messages,
        messages: counts.messages,
        reason,
        counts,
    }
}

/// A state that was not ours, kept whole with the reason.
fn state_dead_letter(
    window: Option<&TumblingWindow>,
    request_id: &str,
    reason: String,
    now_ms: i64,
) -> DeadLetter {
    let state = window
        .and_then(|w| w.state.as_ref())
        .map(|state| state.to_string())
        .unwrap_or_default();
    let shard = window
        .and_then(|w| w.shard_id.as_deref())
        .unwrap_or("no-shard");
    DeadLetter {
        source: "window-state".into(),
        message_id: format!("state-{shard}-{request_id}"),
        ..DeadLetter::whole_event(state.as_bytes(), request_id, reason, now_ms)
    }
}

/// An aggregate an output refused for good, as JSON with the reason.
fn aggregate_dead_letter(
    aggregate: &Aggregate,
    shard: &str,
    invocation: Invocation<'_>,
    reason: String,
) -> DeadLetter {
    let key = &aggregate.key;
    let stats = &aggregate.stats;
    let payload = json!({
        "window_start": key.bucket_start_ms,
        "window_end": aggregate.bucket_end_ms,
        "device": key.device.as_str(),
        "metric": key.metric.as_str(),
        "unit": key.unit.as_str(),
        "count": stats.count,
        "min": stats.min,
        "max": stats.max,
        "sum": stats.sum,
        "late": key.late,
        "first_event_ms": stats.first_ms,
        "last_event_ms": stats.last_ms,
    })
    .to_string();
    DeadLetter {
        source: "window-aggregate".into(),
        message_id: format!(
            "aggregate-{shard}-{}-{}-{}",
            key.bucket_start_ms, key.device, key.metric
        ),
        ..DeadLetter::whole_event(
            payload.as_bytes(),
            invocation.request_id,
            reason,
            invocation.now_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use base64::Engine;
    use serde_json::Value;

    use super::*;
    use crate::outcome::{Delivery, FailureKind};
    use crate::sink::DeadLetterError;
    use crate::warehouse::tables::{Cell, TableRows};
    use crate::warehouse::TableWriteError;

    const MINUTE: i64 = 60_000;
    const T0: i64 = 1_606_000_000_000 / MINUTE * MINUTE;

    /// Keeps the aggregates; the first `failures` calls fail as `kind`.
    #[derive(Default)]
    struct Metrics {
        sent: Mutex<Vec<Aggregate>>,
        failures: Mutex<usize>,
        kind: Option<FailureKind>,
    }

    impl Metrics {
        /// Fails its first call as `kind`, then takes everything.
        fn failing_once(kind: FailureKind) -> Metrics {
            Metrics {
                failures: Mutex::new(1),
                kind: Some(kind),
                ..Metrics::default()
            }
        }
    }

    #[async_trait]
    impl MetricsSink for Metrics {
        async fn send(&self, _: &[Reading]) -> Delivery {
            unreachable!("the windows function sends aggregates")
        }
        async fn send_aggregates(&self, aggregates: &[Aggregate]) -> Delivery {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                let all: Vec<u32> = (0..aggregates.len() as u32).collect();
                return Delivery::failed(&all, "refused".into(), self.kind.unwrap());
            }
            self.sent.lock().unwrap().extend_from_slice(aggregates);
            Delivery::default()
        }
    }

    #[derive(Default)]
    struct Tables(Mutex<Vec<TableRows>>);

    impl Tables {
        /// Rows written over all calls.
        fn rows(&self) -> usize {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|rows| rows.rows.len())
                .sum()
        }
    }

    #[async_trait]
    impl TableWriter for Tables {
        async fn write(
            &self,
            rows: &TableRows,
            _: &str,
            _: i64,
        ) -> Result<String, TableWriteError> {
            self.0.lock().unwrap().push(rows.clone());
            Ok("memory".into())
        }
    }

    #[derive(Default)]
    struct Letters {
        written: Mutex<Vec<DeadLetter>>,
        broken: bool,
    }

    #[async_trait]
    impl DeadLetterSink for Letters {
        async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError> {
            if self.broken {
                return Err(DeadLetterError {
                    destination: "memory".into(),
                    reason: "the disk is full".into(),
                });
            }
            self.written.lock().unwrap().extend_from_slice(letters);
            Ok("memory".into())
        }
    }

    /// A Kinesis tumbling-window event of reference 000's readings
    /// `(device, temperature, event time)`.
    fn event(readings: &[(&str, f64, i64)], state: &Value, is_final: bool) -> Vec<u8> {
        let records: Vec<Value> = readings
            .iter()
            .enumerate()
            .map(|(index, (device, temperature, at))| {
                let payload = json!({"timestamp": *at as f64 / 1000.0, "device": device, "temperature": temperature});
                json!({
                    "eventSource": "aws:kinesis",
                    "kinesis": {
                        "sequenceNumber": format!("{}", 1000 + index),
                        "partitionKey": device,
                        "data": base64::engine::general_purpose::STANDARD.encode(payload.to_string()),
                        "approximateArrivalTimestamp": (*at as f64) / 1000.0 + 1.0,
                    }
                })
            })
            .collect();
        serde_json::to_vec(&json!({
            "Records": records,
            "window": {"start": "2020-11-21T23:00:00Z", "end": "2020-11-22T00:00:00Z"},
            "state": state,
            "shardId": "shardId-000000000000",
            "isFinalInvokeForWindow": is_final,
            "isWindowTerminatedEarly": false,
        }))
        .unwrap()
    }

    fn settings() -> WindowSettings {
        WindowSettings {
            bucket_ms: MINUTE,
            allowed_lateness_ms: 5_000,
            ..WindowSettings::default()
        }
    }

    async fn invoke(
        event: &[u8],
        metrics: &Metrics,
        tables: &Tables,
        letters: &Letters,
    ) -> Result<(Response, WindowCounts), RetryLater> {
        let outputs = WindowOutputs {
            metrics: Some(metrics),
            table: Some(tables),
        };
        InvocationSettings::default()
            .process_windows(
                settings(),
                event,
                Invocation::new("req", T0 + 10 * MINUTE),
                outputs,
                letters,
            )
            .await
    }

    fn state_of(response: &Response) -> Value {
        match response {
            Response::Window { state } => state.clone(),
            other => panic!("not a window answer: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_window_sequence_emits_what_an_independent_fold_computes() {
        // Three invocations of one window: out of order within a bucket,
        // a late reading after its bucket went out, then the final one.
        let batches: [&[(&str, f64, i64)]; 3] = [
            &[
                ("a", 20.0, T0 + 5_000),
                ("b", 30.0, T0 + 1_000),
                ("a", 25.5, T0 + 2_000),
            ],
            &[
                ("a", 21.0, T0 + MINUTE + 9_000),
                ("b", 29.0, T0 + 59_000),
                ("a", 19.0, T0 + MINUTE + 30_000),
            ],
            &[("b", 31.0, T0 + 40_000), ("a", 22.0, T0 + MINUTE + 50_000)],
        ];
        let (metrics, tables, letters) =
            (Metrics::default(), Tables::default(), Letters::default());
        let mut state = json!({});
        for (position, batch) in batches.iter().enumerate() {
            let is_final = position == batches.len() - 1;
            let (response, counts) =
                invoke(&event(batch, &state, is_final), &metrics, &tables, &letters)
                    .await
                    .unwrap();
            state = state_of(&response);
            assert_eq!(counts.counts.dead_lettered, 0);
            if is_final {
                assert_eq!(counts.series_in_state, 0);
            }
        }
        // Merge what went out per (device, bucket), late partials included.
        let mut emitted: BTreeMap<(String, i64), (u64, f64, f64, f64)> = BTreeMap::new();
        let sent = metrics.sent.lock().unwrap();
        for aggregate in sent.iter() {
            let entry = emitted
                .entry((
                    aggregate.key.device.to_string(),
                    aggregate.key.bucket_start_ms,
                ))
                .or_insert((0, f64::INFINITY, f64::NEG_INFINITY, 0.0));
            entry.0 += aggregate.stats.count;
            entry.1 = entry.1.min(aggregate.stats.min);
            entry.2 = entry.2.max(aggregate.stats.max);
            entry.3 += aggregate.stats.sum;
        }
        let mut expected: BTreeMap<(String, i64), (u64, f64, f64, f64)> = BTreeMap::new();
        for (device, value, at) in batches.iter().flat_map(|batch| batch.iter()) {
            let entry = expected
                .entry((device.to_string(), at.div_euclid(MINUTE) * MINUTE))
                .or_insert((0, f64::INFINITY, f64::NEG_INFINITY, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.min(*value);
            entry.2 = entry.2.max(*value);
            entry.3 += value;
        }
        assert_eq!(emitted, expected);
        // b's reading at T0+40s came after bucket T0 closed: a late partial.
        let late: Vec<&Aggregate> = sent.iter().filter(|a| a.key.late).collect();
        assert_eq!(late.len(), 1);
        assert_eq!(
            (late[0].key.device.as_str(), late[0].stats.max),
            ("b", 31.0)
        );
        // The table got the same aggregates, one row each.
        assert_eq!(tables.rows(), sent.len());
        let late_column = tables
            .0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.rows.clone())
            .filter(|row| row[10] == Cell::Bool(true))
            .count();
        assert_eq!(late_column, 1);
    }

    #[tokio::test]
    async fn a_foreign_state_is_dead_lettered_and_the_window_starts_afresh() {
        let (metrics, tables, letters) =
            (Metrics::default(), Tables::default(), Letters::default());
        let aws_example = json!({"1": 282, "2": 715});
        let (response, counts) = invoke(
            &event(&[("a", 1.0, T0)], &aws_example, false),
            &metrics,
            &tables,
            &letters,
        )
        .await
        .unwrap();
        let letters = letters.written.lock().unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].source, "window-state");
        assert!(
            letters[0].reason.contains("not a telemetry-windows state"),
            "{}",
            letters[0].reason
        );
        assert_eq!(letters[0].payload, aws_example.to_string());
        assert_eq!(counts.counts.readings_accepted, 1);
        assert_eq!(counts.series_in_state, 1);
        let answer = response.to_json();
        assert_eq!(answer["batchItemFailures"], json!([]));
        assert_eq!(
            answer["state"]["format"],
            json!(crate::window::state::STATE_FORMAT)
        );
    }

    #[tokio::test]
    async fn an_output_that_fails_for_now_gets_the_aggregate_on_the_next_invocation_only() {
        let metrics = Metrics::failing_once(FailureKind::Transient);
        let (tables, letters) = (Tables::default(), Letters::default());
        let first = event(
            &[("a", 1.0, T0), ("a", 2.0, T0 + 2 * MINUTE)],
            &json!({}),
            false,
        );
        let (response, counts) = invoke(&first, &metrics, &tables, &letters).await.unwrap();
        assert_eq!(
            counts.aggregates_emitted, 0,
            "the metrics output did not take it"
        );
        assert_eq!(counts.series_in_state, 2);
        let second = event(&[], &state_of(&response), false);
        let (_, counts) = invoke(&second, &metrics, &tables, &letters).await.unwrap();
        assert_eq!(counts.aggregates_emitted, 1);
        assert_eq!(metrics.sent.lock().unwrap().len(), 1);
        assert_eq!(
            tables.rows(),
            1,
            "the table took it the first time, and only then"
        );
    }

    #[tokio::test]
    async fn what_an_output_refuses_for_good_is_dead_lettered_with_its_numbers() {
        let metrics = Metrics::failing_once(FailureKind::Permanent);
        let (tables, letters) = (Tables::default(), Letters::default());
        let (_, counts) = invoke(
            &event(&[("a", 4.5, T0)], &json!({}), true),
            &metrics,
            &tables,
            &letters,
        )
        .await
        .unwrap();
        assert_eq!(counts.aggregates_dead_lettered, 1);
        assert_eq!(counts.series_in_state, 0);
        let letters = letters.written.lock().unwrap();
        assert_eq!(letters[0].source, "window-aggregate");
        let payload: Value = serde_json::from_str(&letters[0].payload).unwrap();
        assert_eq!(
            (payload["device"].clone(), payload["max"].clone()),
            (json!("a"), json!(4.5))
        );
    }

    #[tokio::test]
    async fn the_final_invocation_fails_whole_when_an_aggregate_is_not_delivered() {
        let metrics = Metrics::failing_once(FailureKind::Transient);
        let (tables, letters) = (Tables::default(), Letters::default());
        let error = invoke(
            &event(&[("a", 1.0, T0)], &json!({}), true),
            &metrics,
            &tables,
            &letters,
        )
        .await
        .unwrap_err();
        assert!(
            error.reason.contains("final invocation"),
            "{}",
            error.reason
        );
        assert_eq!(error.failed, 1);
    }

    #[tokio::test]
    async fn unwritable_dead_letters_fail_the_invocation_before_anything_is_emitted() {
        let (metrics, tables) = (Metrics::default(), Tables::default());
        let letters = Letters {
            broken: true,
            ..Letters::default()
        };
        let batch = event(&[("a", 1.0, T0), ("", 2.0, T0)], &json!({}), true);
        let error = invoke(&batch, &metrics, &tables, &letters)
            .await
            .unwrap_err();
        assert!(
            error.reason.contains("the disk is full"),
            "{}",
            error.reason
        );
        assert!(metrics.sent.lock().unwrap().is_empty());
        assert!(tables.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_state_over_its_budget_emits_its_oldest_buckets_early() {
        let (metrics, tables, letters) =
            (Metrics::default(), Tables::default(), Letters::default());
        let readings: Vec<(String, f64, i64)> = (0..300)
            .map(|i| {
                (
                    format!("device-{i}"),
                    i as f64 * 1.37,
                    T0 + (i as i64 % 3) * MINUTE,
                )
            })
            .collect();
        let borrowed: Vec<(&str, f64, i64)> = readings
            .iter()
            .map(|(d, v, t)| (d.as_str(), *v, *t))
            .collect();
        let outputs = WindowOutputs {
            metrics: Some(&metrics),
            table: Some(&tables),
        };
        // Lateness so large that no bucket is complete: only the budget
        // makes anything go out.
        let tight = WindowSettings {
            allowed_lateness_ms: 10 * MINUTE,
            state_budget_bytes: 2_000,
            ..settings()
        };
        let (response, counts) = InvocationSettings::default()
            .process_windows(
                tight,
                &event(&borrowed, &json!({}), false),
                Invocation::new("req", T0 + 10 * MINUTE),
                outputs,
                &letters,
            )
            .await
            .unwrap();
        assert!(counts.emitted_early > 0);
        assert!(counts.state_bytes <= 2_000, "{}", counts.state_bytes);
        assert_eq!(counts.emitted_early + counts.series_in_state, 300);
        // The oldest bucket went first.
        let sent = metrics.sent.lock().unwrap();
        assert!(sent
            .iter()
            .all(|a| a.key.bucket_start_ms <= sent.last().unwrap().key.bucket_start_ms));
        assert!(state_bytes(&state_of(&response)) <= 2_000);
    }
}
