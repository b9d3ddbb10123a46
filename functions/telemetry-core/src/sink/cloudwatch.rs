//! Planning `PutMetricData` calls without the SDK: readings are folded into
//! as few datums and requests as the API allows. The AWS crate only
//! translates these plans into SDK calls.

use std::collections::HashMap;

use compact_str::CompactString;

use crate::payload::unit::Unit;
use crate::reading::{Reading, DEVICE_DIMENSION};
use crate::window::Aggregate;

/// Datums per `PutMetricData` request.
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
/// Distinct values per datum (`Values`/`Counts`).
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// A request may be 1 MB (read as 1,000,000 bytes, uncompressed: the SDK
/// gzips large bodies, but a user can turn that off). The datum estimates
/// are upper bounds; the rest of the body is the action, version and
/// namespace (at most ~850 bytes).
pub const MAX_REQUEST_BYTES: usize = 1_000_000 - 1_000;

/// One `MetricDatum`: one metric, one set of dimensions, one time bucket,
/// with repeated values folded into counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub metric: CompactString,
    /// `device` first, then the reading's own dimensions.
    pub dimensions: Vec<(CompactString, CompactString)>,
    pub unit: Unit,
    /// Start of the bucket: the minute for standard resolution, the second
    /// for high resolution (CloudWatch keeps no finer detail than that).
    pub timestamp_ms: i64,
    pub high_resolution: bool,
    pub values: Vec<f64>,
    pub counts: Vec<f64>,
    /// A window aggregate sent as one statistic set (`StatisticValues`)
    /// instead of values; `values` and `counts` are then empty.
    pub statistics: Option<StatisticSet>,
}

/// `StatisticValues`: what CloudWatch needs to merge an aggregate with
/// others of the same period (late partials add up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatisticSet {
    pub sample_count: f64,
    pub sum: f64,
    pub minimum: f64,
    pub maximum: f64,
}

impl Datum {
    /// Upper bound of this datum's bytes in the query-protocol body
    /// (`&MetricData.member.N.Values.member.M=17.5` and so on, URL-encoded),
    /// wherever it sits in the request. The planner packs requests by it,
    /// so it must never be below what the SDK sends.
    pub fn estimated_bytes(&self) -> usize {
        // "&MetricData.member." and N (at most 1000: four digits).
        const MEMBER: usize = 19 + 4;
        // "&MetricData.member.N.Values.member." (or ".Counts.member.") and
        // M (at most 150: three digits) and "=".
        const LIST_ENTRY: usize = MEMBER + 15 + 3 + 1;
        // Unit (longest: "Terabits%2FSecond"), timestamp
        // ("2026-11-23T15%3A16%3A00.123Z") and storage resolution, padded.
        const FIXED: usize = 3 * MEMBER + 6 + 40 + 11 + 40 + 19 + 2;
        let name = MEMBER + 12 + 3 * self.metric.len();
        let dimensions: usize = self
            .dimensions
            .iter()
            .map(|(name, value)| {
                // "...Dimensions.member.J.Name=" and "....Value=", J <= 30.
                2 * (MEMBER + 19 + 2) + 6 + 7 + 3 * (name.len() + value.len())
            })
            .sum();
        let numbers: usize = self
            .values
            .iter()
            .chain(&self.counts)
            .map(|&number| LIST_ENTRY + number_text_bound(number))
            .sum();
        // "...StatisticValues.SampleCount=" (the longest of the four).
        let statistics: usize = self.statistics.map_or(0, |set| {
            [set.sample_count, set.sum, set.minimum, set.maximum]
                .iter()
                .map(|&number| MEMBER + 30 + number_text_bound(number))
                .sum()
        });
        FIXED + name + dimensions + numbers + statistics
    }
}

/// Upper bound of a float's text in the request: its shortest round-trip
/// form, plus room for a formatter that writes "1.0" for "1", an exponent
/// sign "+" (URL-encoded as three bytes) or one more exponent digit.
fn number_text_bound(number: f64) -> usize {
    zmij::Buffer::new().format(number).len() + 5
}

/// One `PutMetricData` call and the messages whose readings it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRequest {
    pub datums: Vec<Datum>,
    /// Message indexes (within the batch) to report if this call fails.
    pub messages: Vec<u32>,
}

#[derive(Hash, PartialEq, Eq)]
struct DatumKey<'r> {
    metric: &'r str,
    device: &'r str,
    dimensions: &'r [(CompactString, CompactString)],
    unit: Unit,
    bucket_ms: i64,
    high_resolution: bool,
}

/// Folds readings into datums and packs datums into requests.
pub fn plan_requests(readings: &[Reading]) -> Vec<MetricRequest> {
    // Datum index -> message indexes it carries.
    let mut datums: Vec<Datum> = Vec::new();
    let mut datum_messages: Vec<Vec<u32>> = Vec::new();
    // The open (not yet full) datum of each key.
    let mut open: HashMap<DatumKey<'_>, usize> = HashMap::new();
    for reading in readings {
        let key = DatumKey {
            metric: &reading.metric,
            device: &reading.device,
            dimensions: &reading.dimensions,
            unit: reading.unit,
            bucket_ms: reading.storage_period_start_ms(),
            high_resolution: reading.high_resolution,
        };
        let index = match open.get(&key) {
            Some(&index) => index,
            None => {
                let index = new_datum(reading, key.bucket_ms, &mut datums, &mut datum_messages);
                open.insert(key, index);
                index
            }
        };
        let datum = &mut datums[index];
        let index = match datum.values.iter().position(|v| *v == reading.value) {
            Some(position) => {
                datum.counts[position] += 1.0;
                index
            }
            None if datum.values.len() < MAX_VALUES_PER_DATUM => {
                datum.values.push(reading.value);
                datum.counts.push(1.0);
                index
            }
            None => {
                // Full: open another datum for the same key.
                let bucket_ms = datum.timestamp_ms;
                let fresh = new_datum(reading, bucket_ms, &mut datums, &mut datum_messages);
                datums[fresh].values.push(reading.value);
                datums[fresh].counts.push(1.0);
                let key = DatumKey {
                    metric: &reading.metric,
                    device: &reading.device,
                    dimensions: &reading.dimensions,
                    unit: reading.unit,
                    bucket_ms,
                    high_resolution: reading.high_resolution,
                };
                open.insert(key, fresh);
                fresh
            }
        };
        let messages = &mut datum_messages[index];
        if messages.last() != Some(&reading.message) {
            messages.push(reading.message);
        }
    }
    pack(datums, datum_messages)
}

fn new_datum(
    reading: &Reading,
    bucket_ms: i64,
    datums: &mut Vec<Datum>,
    datum_messages: &mut Vec<Vec<u32>>,
) -> usize {
    let mut dimensions = Vec::with_capacity(1 + reading.dimensions.len());
    dimensions.push((
        CompactString::const_new(DEVICE_DIMENSION),
        reading.device.clone(),
    ));
    dimensions.extend(reading.dimensions.iter().cloned());
    datums.push(Datum {
        metric: reading.metric.clone(),
        dimensions,
        unit: reading.unit,
        timestamp_ms: bucket_ms,
        high_resolution: reading.high_resolution,
        values: Vec::new(),
        counts: Vec::new(),
        statistics: None,
    });
    datum_messages.push(Vec::new());
    datums.len() - 1
}

/// One statistic-set datum per aggregate (device, metric, bucket), packed
/// into as few requests as the API allows; a request's `messages` are
/// indexes into `aggregates`.
pub fn plan_statistic_requests(aggregates: &[Aggregate]) -> Vec<MetricRequest> {
    let datums = aggregates
        .iter()
        .map(|aggregate| Datum {
            metric: aggregate.key.metric.clone(),
            dimensions: vec![(
                CompactString::const_new(DEVICE_DIMENSION),
                aggregate.key.device.clone(),
            )],
            unit: aggregate.key.unit,
            timestamp_ms: aggregate.key.bucket_start_ms,
            high_resolution: false,
            values: Vec::new(),
            counts: Vec::new(),
            statistics: Some(StatisticSet {
                sample_count: aggregate.stats.count as f64,
                sum: aggregate.stats.sum,
                minimum: aggregate.stats.min,
                maximum: aggregate.stats.max,
            }),
        })
        .collect();
    let messages = (0..aggregates.len() as u32)
        .map(|index| vec![index])
        .collect();
    pack(datums, messages)
}

fn pack(datums: Vec<Datum>, datum_messages: Vec<Vec<u32>>) -> Vec<MetricRequest> {
    let mut requests = Vec::new();
    let mut current = MetricRequest {
        datums: Vec::new(),
        messages: Vec::new(),
    };
    let mut current_bytes = 0;
    for (datum, messages) in datums.into_iter().zip(datum_messages) {
        let bytes = datum.estimated_bytes();
        if !current.datums.is_empty()
            && (current.datums.len() == MAX_DATUMS_PER_REQUEST
                || current_bytes + bytes > MAX_REQUEST_BYTES)
        {
            requests.push(finish(std::mem::replace(
                &mut current,
                MetricRequest {
                    datums: Vec::new(),
                    messages: Vec::new(),
                },
            )));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.datums.push(datum);
        current.messages.extend(messages);
    }
    if !current.datums.is_empty() {
        requests.push(finish(current));
    }
    requests
}

fn finish(mut request: MetricRequest) -> MetricRequest {
    request.messages.sort_unstable();
    request.messages.dedup();
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(device: &str, metric: &str, value: f64, timestamp_ms: i64, message: u32) -> Reading {
        Reading {
            message,
            ..Reading::sample(device, metric, value, timestamp_ms)
        }
    }

    #[test]
    fn folds_one_minute_of_one_metric_into_one_datum() {
        // 60 readings, one per second, 3 distinct values.
        let readings: Vec<Reading> = (0..60)
            .map(|s| {
                reading(
                    "d",
                    "t",
                    (s % 3) as f64,
                    1_645_938_000_000 + s * 1000,
                    s as u32,
                )
            })
            .collect();
        let requests = plan_requests(&readings);
        assert_eq!(requests.len(), 1);
        let datum = &requests[0].datums[0];
        assert_eq!(requests[0].datums.len(), 1);
        assert_eq!(datum.values, vec![0.0, 1.0, 2.0]);
        assert_eq!(datum.counts, vec![20.0, 20.0, 20.0]);
        assert_eq!(datum.timestamp_ms, 1_645_938_000_000);
        assert_eq!(datum.dimensions[0].1, "d");
        assert_eq!(requests[0].messages.len(), 60);
    }

    #[test]
    fn high_resolution_buckets_by_second() {
        let mut a = reading("d", "t", 1.0, 1_000, 0);
        let mut b = reading("d", "t", 1.0, 2_500, 1);
        a.high_resolution = true;
        b.high_resolution = true;
        let requests = plan_requests(&[a, b]);
        assert_eq!(requests[0].datums.len(), 2);
        assert_eq!(requests[0].datums[1].timestamp_ms, 2_000);
    }

    #[test]
    fn splits_at_150_values_and_1000_datums() {
        let readings: Vec<Reading> = (0..400)
            .map(|i| reading("d", "t", i as f64, 0, i))
            .collect();
        let requests = plan_requests(&readings);
        let sizes: Vec<usize> = requests[0].datums.iter().map(|d| d.values.len()).collect();
        assert_eq!(sizes, vec![150, 150, 100]);

        // 100 devices x 20 metrics = 2000 distinct datums -> 2 requests.
        let readings: Vec<Reading> = (0..2000)
            .map(|i| {
                reading(
                    &format!("dev-{}", i / 20),
                    &format!("m{}", i % 20),
                    1.0,
                    0,
                    i,
                )
            })
            .collect();
        let requests = plan_requests(&readings);
        assert_eq!(requests.len(), 2);
        assert!(requests
            .iter()
            .all(|r| r.datums.len() <= MAX_DATUMS_PER_REQUEST));
        let total: f64 = requests
            .iter()
            .flat_map(|r| &r.datums)
            .flat_map(|d| &d.counts)
            .sum();
        assert_eq!(total, 2000.0);
    }

    #[test]
    fn stays_under_the_request_size_limit() {
        let readings: Vec<Reading> = (0..150_000)
            .map(|i| {
                reading(
                    &format!("device-{}", i % 1000),
                    "temperature",
                    i as f64,
                    0,
                    i,
                )
            })
            .collect();
        for request in plan_requests(&readings) {
            let bytes: usize = request.datums.iter().map(Datum::estimated_bytes).sum();
            assert!(bytes <= MAX_REQUEST_BYTES);
        }
    }
}
