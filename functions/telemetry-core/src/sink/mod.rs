//! Where readings and dead letters go: one small trait each, one file per
//! backend in the core (EMF on stdout, local dead-letter files) and in
//! `telemetry-aws` (CloudWatch `PutMetricData`, S3).

pub mod cloudwatch;
pub mod commands;
pub mod dead_letter;
pub mod emf;

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::outcome::Delivery;
use crate::payload::unit::Unit;
use crate::reading::Reading;
use crate::sink::dead_letter::DeadLetter;
use crate::window::Aggregate;

/// A metrics backend.
#[async_trait]
pub trait MetricsSink: Send + Sync {
    /// Delivers valid readings; never fails as a whole, reports per message.
    async fn send(&self, readings: &[Reading]) -> Delivery;

    /// Delivers window aggregates; the delivery's message indexes are
    /// indexes into `aggregates`. EMF has no statistic sets, so by default
    /// an aggregate goes out in the closest form it allows: four metrics,
    /// `<metric>_min`, `_max`, `_sum` and `_count`, at the bucket's start
    /// (their Minimum, Maximum and Sum merge late partials correctly; the
    /// mean is `_sum` / `_count`). The CloudWatch API sink overrides this
    /// with one `StatisticValues` datum per aggregate.
    async fn send_aggregates(&self, aggregates: &[Aggregate]) -> Delivery {
        self.send(&aggregate_readings(aggregates)).await
    }
}

/// The four readings an aggregate becomes where there are no statistic
/// sets; `Reading::message` is the aggregate's index.
pub fn aggregate_readings(aggregates: &[Aggregate]) -> Vec<Reading> {
    let mut readings = Vec::with_capacity(aggregates.len() * 4);
    for (index, aggregate) in aggregates.iter().enumerate() {
        let key = &aggregate.key;
        let stats = &aggregate.stats;
        for (suffix, value, unit) in [
            ("_min", stats.min, key.unit),
            ("_max", stats.max, key.unit),
            ("_sum", stats.sum, key.unit),
            ("_count", stats.count as f64, Unit::Count),
        ] {
            let mut metric = key.metric.clone();
            metric.push_str(suffix);
            readings.push(Reading {
                device: key.device.clone(),
                metric,
                value,
                unit,
                timestamp_ms: key.bucket_start_ms,
                dimensions: Vec::new(),
                high_resolution: false,
                message: index as u32,
            });
        }
    }
    readings
}

/// Error of a dead-letter write; the messages concerned are retried.
#[derive(Debug, thiserror::Error)]
#[error("cannot write dead letters to {destination}: {reason}")]
pub struct DeadLetterError {
    pub destination: String,
    pub reason: String,
}

#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Stores the letters; returns where they went.
    async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError>;
}

/// Every message index that has a reading, sorted and unique.
pub fn all_messages(readings: &[Reading]) -> Vec<u32> {
    let mut messages: Vec<u32> = readings.iter().map(|reading| reading.message).collect();
    messages.sort_unstable();
    messages.dedup();
    messages
}

/// A writer that keeps what it is given, for tests and the local replay.
#[derive(Clone, Default)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("buffer lock"))
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
