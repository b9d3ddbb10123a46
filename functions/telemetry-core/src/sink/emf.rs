//! CloudWatch Embedded Metric Format: one JSON document per line on stdout,
//! turned into metrics by Lambda's log pipeline with no API call.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;
use compact_str::CompactString;

use crate::json::writer::{write_f64, write_i64, write_str};
use crate::outcome::{Delivery, FailureKind};
use crate::payload::unit::Unit;
use crate::reading::{Reading, DEVICE_DIMENSION};
use crate::sink::{all_messages, MetricsSink};

/// EMF allows at most 100 metrics per document...
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;
/// ...and at most 100 values per metric.
pub const MAX_VALUES_PER_METRIC: usize = 100;

/// What the readings of one document share: device, dimensions and the
/// period CloudWatch stores their datapoints under.
#[derive(Hash, PartialEq, Eq)]
struct DocumentKey<'r> {
    period_start_ms: i64,
    device: &'r str,
    dimensions: &'r [(CompactString, CompactString)],
}

impl<'r> DocumentKey<'r> {
    fn of(reading: &'r Reading) -> Self {
        DocumentKey {
            period_start_ms: reading.storage_period_start_ms(),
            device: &reading.device,
            dimensions: &reading.dimensions,
        }
    }
}

/// The batch's readings gathered by document key: `order` lists reading
/// indexes with each key's readings together, keys in order of first
/// appearance and readings in batch order within a key. A batch from many
/// devices interleaves them; gathered, a device's minute is one document
/// with value arrays instead of one document per reading.
struct DocumentOrder {
    order: Vec<u32>,
    key_of: Vec<u32>,
}

impl DocumentOrder {
    fn of(readings: &[Reading]) -> Self {
        let mut keys: HashMap<DocumentKey<'_>, u32, foldhash::fast::FixedState> =
            HashMap::with_hasher(foldhash::fast::FixedState::default());
        let mut key_sizes: Vec<u32> = Vec::new();
        let mut key_of = Vec::with_capacity(readings.len());
        for reading in readings {
            let next = key_sizes.len() as u32;
            let key = *keys.entry(DocumentKey::of(reading)).or_insert(next);
            if key == next {
                key_sizes.push(0);
            }
            key_sizes[key as usize] += 1;
            key_of.push(key);
        }
        // A counting sort: each key's readings go to its own run of `order`.
        let mut next_slot = key_sizes;
        let mut start = 0;
        for size in &mut next_slot {
            let run = *size;
            *size = start;
            start += run;
        }
        let mut order = vec![0; readings.len()];
        for (index, &key) in key_of.iter().enumerate() {
            let slot = &mut next_slot[key as usize];
            order[*slot as usize] = index as u32;
            *slot += 1;
        }
        DocumentOrder { order, key_of }
    }
}

/// Whether two readings of one metric name can share its definition
/// (a document declares unit and resolution once per metric).
fn same_definition(a: &Reading, b: &Reading) -> bool {
    a.unit == b.unit && a.high_resolution == b.high_resolution
}

/// Writes readings as EMF lines for one namespace. The parts of every
/// document that depend only on the namespace are written as JSON once,
/// when the encoder is built (at cold start, by the sink).
pub struct EmfEncoder {
    /// From after the timestamp to the `device` dimension's name.
    head: Vec<u8>,
    /// `"device":`
    device_key: Vec<u8>,
}

impl EmfEncoder {
    pub fn new(namespace: &str) -> Self {
        let mut head = b",\"CloudWatchMetrics\":[{\"Namespace\":".to_vec();
        write_str(&mut head, namespace);
        head.extend_from_slice(b",\"Dimensions\":[[");
        write_str(&mut head, DEVICE_DIMENSION);
        let mut device_key = Vec::new();
        write_str(&mut device_key, DEVICE_DIMENSION);
        device_key.push(b':');
        EmfEncoder { head, device_key }
    }

    /// Encodes readings as EMF lines appended to `out`; returns the number
    /// of documents written. Readings of one device and dimensions in one
    /// storage period share a document, wherever they sit in the batch;
    /// repeated metric names become value arrays.
    pub fn encode(&self, readings: &[Reading], out: &mut Vec<u8>) -> usize {
        let gathered = DocumentOrder::of(readings);
        let mut documents = 0;
        let mut metrics = DocumentMetrics::default();
        let mut document_head = 0;
        for &index in &gathered.order {
            let index = index as usize;
            let reading = &readings[index];
            if metrics.len() > 0 && gathered.key_of[index] != gathered.key_of[document_head] {
                write_document(self, &readings[document_head], readings, &mut metrics, out);
                documents += 1;
            }
            if metrics.len() == 0 {
                document_head = index;
            }
            match metrics.find(readings, &reading.metric) {
                Some(slot)
                    if slot.values.len() < MAX_VALUES_PER_METRIC
                        && same_definition(&readings[slot.first], reading) =>
                {
                    slot.values.push(reading.value)
                }
                found => {
                    if found.is_some() || metrics.len() == MAX_METRICS_PER_DOCUMENT {
                        write_document(self, &readings[document_head], readings, &mut metrics, out);
                        documents += 1;
                        document_head = index;
                    }
                    metrics.push(index, reading.value);
                }
            }
        }
        if metrics.len() > 0 {
            write_document(self, &readings[document_head], readings, &mut metrics, out);
            documents += 1;
        }
        documents
    }
}

/// The metrics of the document being gathered: the index of each metric's
/// first reading and the values gathered under it. Value lists are kept
/// from one document to the next, so a batch allocates them once rather
/// than once per document.
#[derive(Default)]
struct DocumentMetrics {
    slots: Vec<MetricSlot>,
    len: usize,
}

#[derive(Default)]
struct MetricSlot {
    first: usize,
    values: Vec<f64>,
    /// Where the metric's name was written as JSON in the output, to be
    /// copied rather than escaped again when it is written a second time.
    name_json: std::ops::Range<usize>,
}

impl DocumentMetrics {
    fn len(&self) -> usize {
        self.len
    }

    fn in_use(&mut self) -> &mut [MetricSlot] {
        &mut self.slots[..self.len]
    }

    /// The slot of `metric`, if it is in the document.
    fn find(&mut self, readings: &[Reading], metric: &str) -> Option<&mut MetricSlot> {
        self.slots[..self.len]
            .iter_mut()
            .find(|slot| readings[slot.first].metric == metric)
    }

    fn push(&mut self, first: usize, value: f64) {
        if self.len == self.slots.len() {
            self.slots.push(MetricSlot::default());
        }
        let slot = &mut self.slots[self.len];
        slot.first = first;
        slot.values.clear();
        slot.values.push(value);
        self.len += 1;
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// The function's own counts of an invocation as one EMF document in
/// `<namespace>/Pipeline`, dimension `function`.
pub fn encode_pipeline_counts(
    namespace: &str,
    function: &str,
    counts: &crate::outcome::Counts,
    timestamp_ms: i64,
    out: &mut Vec<u8>,
) {
    let metrics = [
        ("Messages", counts.messages),
        ("ReadingsAccepted", counts.readings_accepted),
        ("ReadingsRejected", counts.readings_rejected),
        ("MessagesDeadLettered", counts.dead_lettered),
        ("MessagesRetried", counts.retried),
    ];
    encode_counts(namespace, function, &metrics, timestamp_ms, out);
}

/// Named counts as one EMF document (unit `Count`), dimension `function`.
pub fn encode_counts(
    namespace: &str,
    function: &str,
    metrics: &[(&str, usize)],
    timestamp_ms: i64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"_aws\":{\"Timestamp\":");
    write_i64(out, timestamp_ms);
    out.extend_from_slice(b",\"CloudWatchMetrics\":[{\"Namespace\":");
    write_str(out, namespace);
    out.extend_from_slice(b",\"Dimensions\":[[\"function\"]],\"Metrics\":[");
    for (position, (name, _)) in metrics.iter().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Name\":");
        write_str(out, name);
        out.extend_from_slice(b",\"Unit\":\"Count\"}");
    }
    out.extend_from_slice(b"]}]},\"function\":");
    write_str(out, function);
    for (name, value) in metrics {
        out.push(b',');
        write_str(out, name);
        out.push(b':');
        write_i64(out, *value as i64);
    }
    out.extend_from_slice(b"}\n");
}

/// Writes the gathered metrics as one document; `head` is its first
/// reading, whose key (device, dimensions, period) all its readings share.
fn write_document(
    encoder: &EmfEncoder,
    head: &Reading,
    readings: &[Reading],
    metrics: &mut DocumentMetrics,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"_aws\":{\"Timestamp\":");
    write_i64(out, head.storage_period_start_ms());
    out.extend_from_slice(&encoder.head);
    for (name, _) in &head.dimensions {
        out.push(b',');
        write_str(out, name);
    }
    out.extend_from_slice(b"]],\"Metrics\":[");
    for (position, slot) in metrics.in_use().iter_mut().enumerate() {
        let reading = &readings[slot.first];
        if position > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Name\":");
        let name_start = out.len();
        write_str(out, &reading.metric);
        slot.name_json = name_start..out.len();
        // EMF's default unit is None: leaving it out saves 14 bytes of
        // log ingestion per unitless metric.
        if reading.unit != Unit::None {
            out.extend_from_slice(b",\"Unit\":\"");
            out.extend_from_slice(reading.unit.as_str().as_bytes());
            out.push(b'"');
        }
        if reading.high_resolution {
            out.extend_from_slice(b",\"StorageResolution\":1");
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}]},");
    out.extend_from_slice(&encoder.device_key);
    write_str(out, &head.device);
    for (name, value) in &head.dimensions {
        out.push(b',');
        write_str(out, name);
        out.push(b':');
        write_str(out, value);
    }
    for slot in metrics.in_use() {
        out.push(b',');
        out.extend_from_within(slot.name_json.clone());
        out.push(b':');
        if let [single] = slot.values.as_slice() {
            write_f64(out, *single);
        } else {
            out.push(b'[');
            for (position, value) in slot.values.iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                write_f64(out, *value);
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b"}\n");
    metrics.clear();
}

// ---- the sink ----------------------------------------------------------------

/// The EMF buffer capacity kept between invocations: a full SQS batch of
/// readings that share no document (each its own device or minute: about
/// 2.5 MB of EMF).
const EMF_BUFFER_KEPT: usize = 4 << 20;

/// EMF lines to a writer (stdout in Lambda), one write per batch.
pub struct EmfSink {
    encoder: EmfEncoder,
    writer: Mutex<Box<dyn Write + Send>>,
    /// Reused across invocations: after the first, encoding touches no new pages.
    buffer: Mutex<Vec<u8>>,
}

impl EmfSink {
    pub fn stdout(namespace: &str) -> Self {
        Self::new(namespace, Box::new(std::io::stdout()))
    }

    pub fn new(namespace: &str, writer: Box<dyn Write + Send>) -> Self {
        EmfSink {
            encoder: EmfEncoder::new(namespace),
            writer: Mutex::new(writer),
            buffer: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl MetricsSink for EmfSink {
    async fn send(&self, readings: &[Reading]) -> Delivery {
        let mut buffer = match self.buffer.lock() {
            Ok(buffer) => buffer,
            Err(poisoned) => poisoned.into_inner(),
        };
        buffer.clear();
        self.encoder.encode(readings, &mut buffer);
        let mut writer = match self.writer.lock() {
            Ok(writer) => writer,
            Err(poisoned) => poisoned.into_inner(),
        };
        let written = writer.write_all(&buffer).and_then(|()| writer.flush());
        // Keep a batch's worth of capacity, not the largest batch ever seen.
        // Shrinking rather than dropping: a batch that outgrew the limit
        // (10,000 readings with long names reach it by doubling) would
        // otherwise grow its buffer again, on fresh pages, every time.
        if buffer.capacity() > EMF_BUFFER_KEPT {
            buffer.clear();
            buffer.shrink_to(EMF_BUFFER_KEPT);
        }
        match written {
            Ok(()) => Delivery::default(),
            // stdout is the Lambda log: a write that failed may pass.
            Err(error) => Delivery::failed(
                &all_messages(readings),
                format!("cannot write EMF to stdout: {error}"),
                FailureKind::Transient,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use serde_json::{json, Value};

    fn encode(namespace: &str, readings: &[Reading], out: &mut Vec<u8>) -> usize {
        EmfEncoder::new(namespace).encode(readings, out)
    }

    fn reading(device: &str, metric: &str, value: f64, timestamp_ms: i64) -> Reading {
        Reading {
            unit: Unit::Percent,
            ..Reading::sample(device, metric, value, timestamp_ms)
        }
    }

    fn lines(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn writes_a_valid_emf_document() {
        let mut with_site = reading("pi \"1\"", "cpu usage (pi)", 42.0, 1_000);
        with_site.dimensions.push(("site".into(), "lab".into()));
        with_site.high_resolution = true;
        let mut out = Vec::new();
        assert_eq!(encode("IoT/Telemetry", &[with_site], &mut out), 1);
        assert_eq!(
            lines(&out)[0],
            json!({
                "_aws": {"Timestamp": 1000, "CloudWatchMetrics": [{
                    "Namespace": "IoT/Telemetry",
                    "Dimensions": [["device", "site"]],
                    "Metrics": [{"Name": "cpu usage (pi)", "Unit": "Percent", "StorageResolution": 1}]
                }]},
                "device": "pi \"1\"", "site": "lab", "cpu usage (pi)": 42.0
            })
        );
    }

    #[test]
    fn names_needing_escapes_read_back_alike_in_the_header_and_as_keys() {
        let readings = vec![
            reading("d\\1", "temp \"c\"\n", 1.5, 1_000),
            reading("d\\1", "ü", 2.5, 1_000),
        ];
        let mut out = Vec::new();
        assert_eq!(encode("IoT/\"T\"", &readings, &mut out), 1);
        let doc = &lines(&out)[0];
        let header = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(header["Namespace"], "IoT/\"T\"");
        assert_eq!(header["Dimensions"], json!([["device"]]));
        assert_eq!(doc["device"], "d\\1");
        for (position, (name, value)) in [("temp \"c\"\n", 1.5), ("ü", 2.5)].into_iter().enumerate()
        {
            assert_eq!(header["Metrics"][position]["Name"], name);
            assert_eq!(doc[name], value);
        }
    }

    #[test]
    fn a_unitless_metric_leaves_its_unit_to_the_emf_default() {
        let mut unitless = reading("a", "temperature", 17.95, 1_000);
        unitless.unit = Unit::None;
        let mut out = Vec::new();
        encode(
            "N",
            &[unitless, reading("a", "humidity", 40.0, 1_000)],
            &mut out,
        );
        let metrics = &lines(&out)[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert_eq!(metrics[0], json!({"Name": "temperature"}));
        assert_eq!(metrics[1], json!({"Name": "humidity", "Unit": "Percent"}));
    }

    #[test]
    fn gathers_each_device_minute_of_an_interleaved_batch_into_one_document() {
        let readings = vec![
            reading("a", "t", 1.0, 60_000),
            reading("b", "t", 4.0, 61_000),
            reading("a", "h", 2.0, 70_000),
            reading("a", "t", 3.0, 119_999),
            reading("b", "t", 5.0, 120_000),
            reading("a", "t", 6.0, 125_000),
        ];
        let mut out = Vec::new();
        assert_eq!(encode("N", &readings, &mut out), 4);
        let docs = lines(&out);
        let summary: Vec<(&str, i64)> = docs
            .iter()
            .map(|doc| {
                (
                    doc["device"].as_str().unwrap(),
                    doc["_aws"]["Timestamp"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [("a", 60_000), ("b", 60_000), ("b", 120_000), ("a", 120_000)]
        );
        assert_eq!(docs[0]["t"], json!([1.0, 3.0]));
        assert_eq!(docs[0]["h"], json!(2.0));
        assert_eq!(docs[3]["t"], json!(6.0));
    }

    /// The README's example, the bench's reference 000 batch: 10,000
    /// readings of 100 devices, one a second each, over 100 seconds from a
    /// minute's start.
    #[test]
    fn a_batch_of_100_devices_over_two_minutes_is_200_documents() {
        let readings: Vec<Reading> = (0..10_000)
            .map(|i| {
                let timestamp_ms = 1_645_938_000_000 + (i / 100) * 1_000;
                reading(
                    &format!("temp-sensor-{:03}", i % 100),
                    "temperature",
                    17.0,
                    timestamp_ms,
                )
            })
            .collect();
        let mut out = Vec::new();
        assert_eq!(encode("IoT/Telemetry", &readings, &mut out), 200);
    }

    #[test]
    fn high_resolution_readings_share_a_document_only_within_their_second() {
        let mut readings = vec![
            reading("a", "light", 1.0, 61_200),
            reading("a", "light", 2.0, 61_900),
            reading("a", "light", 3.0, 62_000),
        ];
        for reading in &mut readings {
            reading.high_resolution = true;
        }
        let mut out = Vec::new();
        assert_eq!(encode("N", &readings, &mut out), 2);
        let docs = lines(&out);
        assert_eq!(docs[0]["_aws"]["Timestamp"], 61_000);
        assert_eq!(docs[0]["light"], json!([1.0, 2.0]));
        assert_eq!(docs[1]["_aws"]["Timestamp"], 62_000);
    }

    #[test]
    fn a_metric_name_seen_with_another_unit_starts_another_document() {
        let mut in_fahrenheit = reading("a", "t", 64.0, 1_000);
        in_fahrenheit.unit = Unit::None;
        let readings = [reading("a", "t", 18.0, 1_000), in_fahrenheit];
        let mut out = Vec::new();
        assert_eq!(encode("N", &readings, &mut out), 2);
        let docs = lines(&out);
        assert_eq!(
            docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Percent"
        );
        assert_eq!(
            docs[1]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            Value::Null
        );
        assert_eq!((&docs[0]["t"], &docs[1]["t"]), (&json!(18.0), &json!(64.0)));
    }

    /// Every reading of a mixed batch comes back once, under its device,
    /// dimensions, metric and storage period, in documents within EMF's
    /// limits, and no two documents share a key they could have shared.
    /// Batches of up to 3,000 readings from 7 devices, 3 metrics (one of
    /// them high resolution) over 200 s, a quarter with a `site` dimension.
    fn mixed_batches() -> impl Strategy<Value = Vec<Reading>> {
        let spec = (
            0..7u8,
            0..3usize,
            0..200_000i64,
            proptest::bool::weighted(0.25),
        );
        proptest::collection::vec(spec, 1..3_000).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (device, metric, offset_ms, with_site))| {
                    let mut reading = reading(
                        &format!("device-{device}"),
                        ["t", "h", "p"][metric],
                        i as f64,
                        1_700_000_000_000 + offset_ms,
                    );
                    reading.high_resolution = reading.metric == "p";
                    if with_site {
                        reading.dimensions.push(("site".into(), "lab".into()));
                    }
                    reading
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn every_reading_of_a_mixed_batch_is_written_once_under_its_period(readings in mixed_batches()) {
        let mut out = Vec::new();
        let documents = encode("N", &readings, &mut out);
        let docs = lines(&out);
        assert_eq!(docs.len(), documents);

        type Key = (String, Option<String>, String, i64);
        let key_of = |r: &Reading| -> Key {
            (
                r.device.to_string(),
                r.dimensions.first().map(|(_, v)| v.to_string()),
                r.metric.to_string(),
                r.storage_period_start_ms(),
            )
        };
        let mut expected: Vec<(Key, u64)> = readings
            .iter()
            .map(|r| (key_of(r), r.value.to_bits()))
            .collect();
        let mut written: Vec<(Key, u64)> = Vec::new();
        let mut document_keys = std::collections::HashSet::new();
        for doc in &docs {
            let timestamp = doc["_aws"]["Timestamp"].as_i64().unwrap();
            let device = doc["device"].as_str().unwrap().to_owned();
            let site = doc["site"].as_str().map(str::to_owned);
            let definitions = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap();
            assert!(definitions.len() <= MAX_METRICS_PER_DOCUMENT);
            let mut full = false;
            for definition in definitions {
                let name = definition["Name"].as_str().unwrap();
                let values = match &doc[name] {
                    Value::Array(values) => values.clone(),
                    value => vec![value.clone()],
                };
                assert!(values.len() <= MAX_VALUES_PER_METRIC);
                full |= values.len() == MAX_VALUES_PER_METRIC;
                for value in values {
                    let key = (device.clone(), site.clone(), name.to_owned(), timestamp);
                    written.push((key, value.as_f64().unwrap().to_bits()));
                }
            }
            if !full {
                assert!(
                    document_keys.insert((device, site, timestamp)),
                    "a document that was not full was split: {doc}"
                );
            }
        }
        expected.sort();
        written.sort();
        assert_eq!(written, expected);
    }
    }

    #[test]
    fn pipeline_counts_are_one_emf_document() {
        let counts = crate::outcome::Counts {
            messages: 3,
            readings_accepted: 5,
            readings_rejected: 1,
            dead_lettered: 1,
            retried: 0,
            api_calls: 0,
        };
        let mut out = Vec::new();
        encode_pipeline_counts(
            "IoT/Telemetry/Pipeline",
            "telemetry-metrics",
            &counts,
            7,
            &mut out,
        );
        let doc = &lines(&out)[0];
        assert_eq!(doc["function"], "telemetry-metrics");
        assert_eq!(doc["ReadingsAccepted"], 5);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "IoT/Telemetry/Pipeline"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn respects_the_100_metric_and_100_value_limits() {
        let many_metrics: Vec<Reading> = (0..250)
            .map(|i| reading("a", &format!("m{i}"), 1.0, 0))
            .collect();
        let mut out = Vec::new();
        assert_eq!(encode("N", &many_metrics, &mut out), 3);
        for doc in lines(&out) {
            let defined = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len();
            assert!(defined <= MAX_METRICS_PER_DOCUMENT);
        }
        let many_values: Vec<Reading> = (0..250).map(|i| reading("a", "t", i as f64, 0)).collect();
        let mut out = Vec::new();
        assert_eq!(encode("N", &many_values, &mut out), 3);
        let total: usize = lines(&out)
            .iter()
            .map(|d| d["t"].as_array().unwrap().len())
            .sum();
        assert_eq!(total, 250);
    }

    /// Readings that share no document (each its own device): the most
    /// EMF a batch can take.
    fn readings(count: usize) -> Vec<Reading> {
        (0..count)
            .map(|index| Reading {
                unit: Unit::Percent,
                message: index as u32,
                ..Reading::sample(
                    &format!("raspberrypi-{index:05}"),
                    &format!("cpu usage (raspberrypi-{:03})", index % 100),
                    index as f64,
                    1_645_938_062_000,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_emf_buffer_keeps_a_full_batch_of_capacity_between_invocations() {
        let sink = EmfSink::new("IoT/Telemetry", Box::new(std::io::sink()));
        let capacity = || sink.buffer.lock().unwrap().capacity();
        // More than the kept capacity: shrunk to it, not dropped.
        assert!(sink.send(&readings(30_000)).await.error.is_none());
        let kept = capacity();
        assert!(
            (EMF_BUFFER_KEPT..2 * EMF_BUFFER_KEPT).contains(&kept),
            "{kept}"
        );
        // A full batch then fits without growing.
        assert!(sink.send(&readings(10_000)).await.error.is_none());
        assert_eq!(capacity(), kept);
    }
}
