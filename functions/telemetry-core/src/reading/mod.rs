//! A reading: one value of one metric of one device at one time.

pub mod decode;
pub mod validate;

use compact_str::CompactString;

use crate::payload::unit::Unit;

/// One telemetry value, ready for validation and the sinks. Strings are
/// `CompactString`: device ids and metric names up to 24 bytes stay inline.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device: CompactString,
    pub metric: CompactString,
    pub value: f64,
    pub unit: Unit,
    /// Epoch milliseconds: the device's own time when it sent one.
    pub timestamp_ms: i64,
    /// Dimensions beyond `device`, in declaration order.
    pub dimensions: Vec<(CompactString, CompactString)>,
    /// One-second storage resolution in CloudWatch (costs more).
    pub high_resolution: bool,
    /// Index of the message this reading came from, within its batch.
    pub message: u32,
}

/// The dimension every reading carries.
pub const DEVICE_DIMENSION: &str = "device";

impl Reading {
    /// Start of the period CloudWatch stores this reading's datapoint under:
    /// its minute, or its second for high resolution (CloudWatch keeps no
    /// finer detail). Both metrics sinks send readings under it, so a
    /// period's readings travel together and arrive as the same datapoint
    /// whichever sink carries them.
    pub fn storage_period_start_ms(&self) -> i64 {
        let width = if self.high_resolution { 1_000 } else { 60_000 };
        self.timestamp_ms.div_euclid(width) * width
    }
}

#[cfg(test)]
impl Reading {
    /// A plain reading for tests: no unit, no dimensions, message 0.
    pub(crate) fn sample(device: &str, metric: &str, value: f64, timestamp_ms: i64) -> Reading {
        Reading {
            device: device.into(),
            metric: metric.into(),
            value,
            unit: Unit::None,
            timestamp_ms,
            dimensions: vec![],
            high_resolution: false,
            message: 0,
        }
    }
}
