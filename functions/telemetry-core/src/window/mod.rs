//! Readings -> per-device, per-metric aggregates over **event-time**
//! buckets (the device's timestamp, not when the record reached the
//! stream), carried between invocations in Lambda's tumbling-window
//! `state` ([`state`]) and emitted once a bucket is complete.
//!
//! - A bucket `[start, start + WINDOW_SECONDS)` is complete when its end is
//!   at or before the newest event time seen minus the allowed lateness.
//! - A reading for a bucket that is (or may have been) emitted already is
//!   folded into a separate partial aggregate flagged `late`, emitted at
//!   the end of the same invocation: late readings are never dropped.
//!   "May have been": the bucket closed under this state's watermark, or it
//!   began before Lambda's window did (the previous window's final
//!   invocation emitted everything it held).
//! - On the window's final invocation everything is emitted, complete or
//!   not: Lambda deletes the state after it.

pub mod state;

use std::collections::HashMap;

use compact_str::CompactString;

use crate::payload::unit::Unit;
use crate::reading::Reading;

/// How buckets are cut and closed (`WINDOW_SECONDS`,
/// `ALLOWED_LATENESS_SECONDS`, `WINDOW_STATE_BUDGET_BYTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSettings {
    pub bucket_ms: i64,
    pub allowed_lateness_ms: i64,
    /// Largest `state` the function hands back; past it the oldest buckets
    /// are emitted early (Lambda's limit is 1 MB per shard, and past it
    /// Lambda ends the window itself).
    pub state_budget_bytes: usize,
}

impl Default for WindowSettings {
    fn default() -> Self {
        WindowSettings {
            bucket_ms: 60_000,
            allowed_lateness_ms: 10_000,
            state_budget_bytes: DEFAULT_STATE_BUDGET_BYTES,
        }
    }
}

/// Lambda allows 1 MB of state per shard; the rest is headroom for the
/// answer's other fields.
pub const DEFAULT_STATE_BUDGET_BYTES: usize = 900_000;

/// What one aggregate is about: one device's metric in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub bucket_start_ms: i64,
    pub device: CompactString,
    pub metric: CompactString,
    pub unit: Unit,
    /// A further partial aggregate of a bucket emitted before.
    pub late: bool,
}

/// The running statistics of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    /// Earliest and latest event times folded in, epoch ms.
    pub first_ms: i64,
    pub last_ms: i64,
    /// Outputs that already took this aggregate (bits of [`Outputs`]): a
    /// series that one output took and another did not is kept and offered
    /// again only to the one that did not.
    pub delivered: u8,
}

impl Stats {
    fn of(reading: &Reading) -> Stats {
        Stats {
            count: 1,
            min: reading.value,
            max: reading.value,
            sum: reading.value,
            first_ms: reading.timestamp_ms,
            last_ms: reading.timestamp_ms,
            delivered: 0,
        }
    }

    fn add(&mut self, reading: &Reading) {
        self.count += 1;
        self.min = self.min.min(reading.value);
        self.max = self.max.max(reading.value);
        self.sum += reading.value;
        self.first_ms = self.first_ms.min(reading.timestamp_ms);
        self.last_ms = self.last_ms.max(reading.timestamp_ms);
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// The outputs an aggregate goes to, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outputs(pub u8);

impl Outputs {
    pub const METRICS: u8 = 1;
    pub const TABLE: u8 = 2;

    pub fn has(self, output: u8) -> bool {
        self.0 & output != 0
    }
}

/// One emitted aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub key: SeriesKey,
    pub bucket_end_ms: i64,
    pub stats: Stats,
}

/// The open aggregates of one shard and what is known of its event time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows {
    /// Newest event time seen in this window's state.
    pub watermark_ms: Option<i64>,
    /// Buckets ending at or before this were emitted (complete, or early
    /// when the state ran over its budget).
    pub closed_end_ms: Option<i64>,
    pub series: HashMap<SeriesKey, Stats, foldhash::fast::RandomState>,
}

/// Where an invocation stands in Lambda's window, and its rules.
#[derive(Debug, Clone, Copy)]
pub struct Folding {
    pub settings: WindowSettings,
    /// Start of Lambda's (arrival-time) window; `None` without one.
    pub window_start_ms: Option<i64>,
    /// `closed_end_ms` when the invocation began: late-ness is decided
    /// against what was emitted before it, not during it.
    closed_end_ms: Option<i64>,
}

impl Windows {
    /// The rules for this invocation's readings.
    pub fn folding(&self, settings: WindowSettings, window_start_ms: Option<i64>) -> Folding {
        Folding {
            settings,
            window_start_ms,
            closed_end_ms: self.closed_end_ms,
        }
    }

    /// Folds one valid reading in.
    pub fn fold(&mut self, folding: &Folding, reading: &Reading) {
        let bucket_ms = folding.settings.bucket_ms;
        let bucket_start_ms = reading.timestamp_ms.div_euclid(bucket_ms) * bucket_ms;
        let late = folding
            .window_start_ms
            .is_some_and(|start| bucket_start_ms < start)
            || folding
                .closed_end_ms
                .is_some_and(|closed| bucket_start_ms + bucket_ms <= closed);
        self.watermark_ms = Some(match self.watermark_ms {
            Some(seen) => seen.max(reading.timestamp_ms),
            None => reading.timestamp_ms,
        });
        let key = SeriesKey {
            bucket_start_ms,
            device: reading.device.clone(),
            metric: reading.metric.clone(),
            unit: reading.unit,
            late,
        };
        self.series
            .entry(key)
            .and_modify(|stats| stats.add(reading))
            .or_insert_with(|| Stats::of(reading));
    }

    /// Closes what the watermark has passed and picks the aggregates to
    /// emit now: late partials, complete buckets, and everything on the
    /// window's final invocation. Sorted by bucket, device, metric.
    pub fn due(&mut self, settings: WindowSettings, is_final: bool) -> Vec<Aggregate> {
        if let Some(watermark) = self.watermark_ms {
            self.close_through(watermark - settings.allowed_lateness_ms);
        }
        let closed_end = self.closed_end_ms;
        self.aggregates_where(settings, |key| {
            is_final
                || key.late
                || closed_end.is_some_and(|c| key.bucket_start_ms + settings.bucket_ms <= c)
        })
    }

    /// The oldest bucket still open, emitted early because the state is
    /// over its budget: later readings of it become late partials.
    pub fn close_oldest_bucket(&mut self, settings: WindowSettings) -> Vec<Aggregate> {
        let Some(oldest) = self
            .series
            .iter()
            .filter(|(key, stats)| stats.delivered == 0 && !key.late)
            .map(|(key, _)| key.bucket_start_ms)
            .min()
        else {
            return Vec::new();
        };
        self.close_through(oldest + settings.bucket_ms);
        self.aggregates_where(settings, |key| key.bucket_start_ms == oldest)
    }

    /// Buckets ending at or before `end_ms` are closed (never reopened).
    fn close_through(&mut self, end_ms: i64) {
        self.closed_end_ms = Some(self.closed_end_ms.map_or(end_ms, |c| c.max(end_ms)));
    }

    /// The aggregates of the series `keep` picks, sorted by bucket, device,
    /// metric.
    fn aggregates_where(
        &self,
        settings: WindowSettings,
        keep: impl Fn(&SeriesKey) -> bool,
    ) -> Vec<Aggregate> {
        let mut picked: Vec<Aggregate> = self
            .series
            .iter()
            .filter(|(key, _)| keep(key))
            .map(|(key, stats)| Aggregate {
                key: key.clone(),
                bucket_end_ms: key.bucket_start_ms + settings.bucket_ms,
                stats: *stats,
            })
            .collect();
        picked.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        picked
    }

    /// Records what `outputs` took of `aggregate`; forgets the series once
    /// every output of `all` has it.
    pub fn delivered(&mut self, key: &SeriesKey, outputs: u8, all: Outputs) {
        if let Some(stats) = self.series.get_mut(key) {
            stats.delivered |= outputs;
            if stats.delivered & all.0 == all.0 {
                self.series.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const T0: i64 = 1_606_000_000_000 / MINUTE * MINUTE;

    fn settings() -> WindowSettings {
        WindowSettings {
            bucket_ms: MINUTE,
            allowed_lateness_ms: 5_000,
            ..WindowSettings::default()
        }
    }

    fn fold_all(windows: &mut Windows, window_start: Option<i64>, readings: &[Reading]) {
        let folding = windows.folding(settings(), window_start);
        for reading in readings {
            windows.fold(&folding, reading);
        }
    }

    #[test]
    fn a_bucket_waits_for_the_allowed_lateness_then_closes() {
        let mut windows = Windows::default();
        let readings = [
            Reading::sample("d", "t", 20.0, T0 + 1_000),
            Reading::sample("d", "t", 25.0, T0 + 59_000),
            Reading::sample("d", "t", 21.0, T0 + MINUTE + 4_000),
        ];
        fold_all(&mut windows, None, &readings);
        // Newest event T0+64s, lateness 5s: bucket 0 ends at T0+60s > 59s.
        assert!(windows.due(settings(), false).is_empty());
        fold_all(
            &mut windows,
            None,
            &[Reading::sample("d", "t", 22.0, T0 + MINUTE + 5_000)],
        );
        let due = windows.due(settings(), false);
        assert_eq!(due.len(), 1);
        let stats = due[0].stats;
        assert_eq!(
            (stats.count, stats.min, stats.max, stats.sum),
            (2, 20.0, 25.0, 45.0)
        );
        assert_eq!((stats.first_ms, stats.last_ms), (T0 + 1_000, T0 + 59_000));
        assert!(!due[0].key.late);
    }

    #[test]
    fn a_reading_for_an_emitted_bucket_becomes_a_late_partial() {
        let mut windows = Windows::default();
        fold_all(
            &mut windows,
            None,
            &[
                Reading::sample("d", "t", 20.0, T0 + 1_000),
                Reading::sample("d", "t", 20.0, T0 + 2 * MINUTE),
            ],
        );
        let due = windows.due(settings(), false);
        assert_eq!(due.len(), 1);
        windows.delivered(&due[0].key, 3, Outputs(3));
        fold_all(
            &mut windows,
            None,
            &[Reading::sample("d", "t", 30.0, T0 + 30_000)],
        );
        let due = windows.due(settings(), false);
        assert_eq!(due.len(), 1);
        assert!(due[0].key.late);
        assert_eq!(due[0].key.bucket_start_ms, T0);
        assert_eq!(due[0].stats.max, 30.0);
    }

    #[test]
    fn buckets_before_lambdas_window_are_late_and_the_final_invocation_emits_all() {
        let mut windows = Windows::default();
        fold_all(
            &mut windows,
            Some(T0 + MINUTE),
            &[
                Reading::sample("d", "t", 1.0, T0 + 59_000),
                Reading::sample("d", "t", 2.0, T0 + MINUTE + 1_000),
            ],
        );
        let due = windows.due(settings(), false);
        assert_eq!(due.len(), 1);
        assert!(due[0].key.late);
        let due = windows.due(settings(), true);
        assert_eq!(
            due.len(),
            2,
            "the final invocation emits the open bucket too"
        );
    }

    #[test]
    fn a_series_is_forgotten_only_when_every_output_took_it() {
        let mut windows = Windows::default();
        fold_all(&mut windows, None, &[Reading::sample("d", "t", 1.0, T0)]);
        let key = windows.due(settings(), true)[0].key.clone();
        windows.delivered(&key, Outputs::METRICS, Outputs(3));
        assert_eq!(windows.series[&key].delivered, Outputs::METRICS);
        windows.delivered(&key, Outputs::TABLE, Outputs(3));
        assert!(windows.series.is_empty());
    }

    #[test]
    fn closing_the_oldest_bucket_early_makes_its_later_readings_late() {
        let mut windows = Windows::default();
        fold_all(
            &mut windows,
            None,
            &[
                Reading::sample("a", "t", 1.0, T0),
                Reading::sample("b", "t", 1.0, T0 + MINUTE),
            ],
        );
        let early = windows.close_oldest_bucket(settings());
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].key.device, "a");
        windows.delivered(&early[0].key, 3, Outputs(3));
        fold_all(
            &mut windows,
            None,
            &[Reading::sample("a", "t", 2.0, T0 + 1)],
        );
        assert!(windows
            .series
            .keys()
            .any(|key| key.device == "a" && key.late));
    }
}
