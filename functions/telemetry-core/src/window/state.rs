//! The tumbling window's `state`, compact: Lambda keeps at most 1 MB per
//! shard, and a JSON object per series would hold ~100 bytes each (10,000
//! devices x 4 metrics = 4 MB).
//!
//! The state is `{"format": "telemetry-windows/1", "series": N, "data":
//! "<base64>"}`; `data` is a deflated, column-wise binary form: device and
//! metric names once each in dictionaries, then one column per field
//! (bucket starts as deltas, indexes and counts as varints, event times as
//! offsets from the bucket start, and the three floats split into byte
//! planes, so their sign/exponent bytes compress away). Everything decoded
//! is checked: a state from anything else, or a corrupted one, is an
//! error naming what is wrong, never a panic.

use std::io::{Read, Write};

use base64::Engine;
use compact_str::CompactString;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use crate::payload::unit::Unit;
use crate::window::{SeriesKey, Stats, Windows};

/// The `format` of the states this version writes and reads.
pub const STATE_FORMAT: &str = "telemetry-windows/1";

/// Largest inflated state taken (a corrupted or hostile `data` must not
/// inflate without bound): 40x Lambda's 1 MB limit.
const MAX_INFLATED_BYTES: u64 = 40 << 20;

/// A `state` that is not one of ours, or is damaged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("the window state is not a telemetry-windows state (format {found}; expected {STATE_FORMAT})")]
    Foreign { found: String },
    #[error("the window state's data is not base64: {0}")]
    NotBase64(String),
    #[error("the window state's data does not inflate: {0}")]
    NotDeflate(String),
    #[error("the window state's data is damaged: {0}")]
    Damaged(&'static str),
}

/// Reads a `state` back. `None`, `null` and `{}` are the start of a window.
pub fn decode_state(state: Option<&Value>) -> Result<Windows, StateError> {
    let object = match state {
        None | Some(Value::Null) => return Ok(Windows::default()),
        Some(Value::Object(object)) if object.is_empty() => return Ok(Windows::default()),
        Some(Value::Object(object)) => object,
        Some(other) => {
            return Err(StateError::Foreign {
                found: format!("a JSON {}", json_kind(other)),
            })
        }
    };
    match object.get("format") {
        Some(Value::String(format)) if format == STATE_FORMAT => {}
        Some(other) => {
            return Err(StateError::Foreign {
                found: other.to_string(),
            })
        }
        None => {
            let keys: Vec<&str> = object.keys().map(String::as_str).take(5).collect();
            return Err(StateError::Foreign {
                found: format!("missing; the state's keys are {keys:?}"),
            });
        }
    }
    let Some(Value::String(data)) = object.get("data") else {
        return Err(StateError::Damaged("no \"data\" string"));
    };
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|error| StateError::NotBase64(error.to_string()))?;
    let mut bytes = Vec::with_capacity(deflated.len() * 4);
    DeflateDecoder::new(deflated.as_slice())
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| StateError::NotDeflate(error.to_string()))?;
    if bytes.len() as u64 > MAX_INFLATED_BYTES {
        return Err(StateError::Damaged("inflates past 40 MB"));
    }
    read_columns(&bytes)
}

/// The `state` to hand back to Lambda.
pub fn encode_state(windows: &Windows) -> Value {
    let bytes = write_columns(windows);
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(bytes.len() / 2), Compression::new(6));
    // Writing to a Vec cannot fail.
    let deflated = encoder
        .write_all(&bytes)
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    json!({
        "format": STATE_FORMAT,
        "series": windows.series.len(),
        "data": base64::engine::general_purpose::STANDARD.encode(deflated),
    })
}

/// The bytes `state` takes in Lambda's answer.
pub fn state_bytes(state: &Value) -> usize {
    state.to_string().len()
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

const MAGIC: &[u8; 4] = b"TWS1";

fn write_columns(windows: &Windows) -> Vec<u8> {
    let mut series: Vec<(&SeriesKey, &Stats)> = windows.series.iter().collect();
    series.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut devices: Vec<&str> = series.iter().map(|(key, _)| key.device.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    let mut metrics: Vec<(&str, Unit)> = series
        .iter()
        .map(|(key, _)| (key.metric.as_str(), key.unit))
        .collect();
    metrics.sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.1.as_str().cmp(b.1.as_str())));
    metrics.dedup();

    let mut out = Vec::with_capacity(64 + series.len() * 48);
    out.extend_from_slice(MAGIC);
    write_optional(&mut out, windows.watermark_ms);
    write_optional(&mut out, windows.closed_end_ms);
    write_varint(&mut out, devices.len() as u64);
    for device in &devices {
        write_text(&mut out, device);
    }
    write_varint(&mut out, metrics.len() as u64);
    for (metric, unit) in &metrics {
        write_text(&mut out, metric);
        out.push(unit_index(*unit));
    }
    write_varint(&mut out, series.len() as u64);
    let mut previous_bucket = 0i64;
    for (key, _) in &series {
        write_varint(
            &mut out,
            zigzag(key.bucket_start_ms.wrapping_sub(previous_bucket)),
        );
        previous_bucket = key.bucket_start_ms;
    }
    for (key, _) in &series {
        let device = devices.binary_search(&key.device.as_str()).unwrap_or(0);
        write_varint(&mut out, device as u64);
    }
    for (key, _) in &series {
        let metric = metrics
            .iter()
            .position(|(m, u)| *m == key.metric && *u == key.unit)
            .unwrap_or(0);
        write_varint(&mut out, metric as u64);
    }
    for (key, stats) in &series {
        out.push(u8::from(key.late) | (stats.delivered << 1));
    }
    for (_, stats) in &series {
        write_varint(&mut out, stats.count);
    }
    for (key, stats) in &series {
        write_varint(
            &mut out,
            zigzag(stats.first_ms.wrapping_sub(key.bucket_start_ms)),
        );
    }
    for (_, stats) in &series {
        write_varint(&mut out, zigzag(stats.last_ms.wrapping_sub(stats.first_ms)));
    }
    for field in [|s: &Stats| s.min, |s: &Stats| s.max, |s: &Stats| s.sum] {
        for plane in 0..8 {
            for (_, stats) in &series {
                out.push(field(stats).to_bits().to_be_bytes()[plane]);
            }
        }
    }
    out
}

fn read_columns(bytes: &[u8]) -> Result<Windows, StateError> {
    let mut input = Input { bytes, at: 0 };
    if input.take(4)? != MAGIC {
        return Err(StateError::Damaged(
            "does not start with the format's marker",
        ));
    }
    let watermark_ms = input.optional()?;
    let closed_end_ms = input.optional()?;
    let devices = (0..input.length()?)
        .map(|_| input.text())
        .collect::<Result<Vec<_>, _>>()?;
    let metric_count = input.length()?;
    let mut metrics = Vec::with_capacity(metric_count);
    for _ in 0..metric_count {
        let name = input.text()?;
        let unit = *Unit::all()
            .get(input.byte()? as usize)
            .ok_or(StateError::Damaged("unknown unit"))?;
        metrics.push((name, unit));
    }
    let count = input.length()?;
    let mut buckets = Vec::with_capacity(count);
    let mut previous = 0i64;
    for _ in 0..count {
        previous = previous.wrapping_add(unzigzag(input.varint()?));
        buckets.push(previous);
    }
    let mut keys = Vec::with_capacity(count);
    let device_of: Vec<usize> = (0..count)
        .map(|_| input.index(devices.len()))
        .collect::<Result<_, _>>()?;
    let metric_of: Vec<usize> = (0..count)
        .map(|_| input.index(metrics.len()))
        .collect::<Result<_, _>>()?;
    let flags = input.take(count)?.to_vec();
    for position in 0..count {
        let (metric, unit) = &metrics[metric_of[position]];
        keys.push(SeriesKey {
            bucket_start_ms: buckets[position],
            device: devices[device_of[position]].clone(),
            metric: metric.clone(),
            unit: *unit,
            late: flags[position] & 1 == 1,
        });
    }
    let counts: Vec<u64> = (0..count)
        .map(|_| input.varint())
        .collect::<Result<_, _>>()?;
    let firsts: Vec<i64> = (0..count)
        .map(|position| Ok(buckets[position].wrapping_add(unzigzag(input.varint()?))))
        .collect::<Result<_, StateError>>()?;
    let lasts: Vec<i64> = (0..count)
        .map(|position| Ok(firsts[position].wrapping_add(unzigzag(input.varint()?))))
        .collect::<Result<_, StateError>>()?;
    let mut floats = [vec![0u64; count], vec![0u64; count], vec![0u64; count]];
    for column in &mut floats {
        for plane in 0..8 {
            for (value, byte) in column.iter_mut().zip(input.take(count)?) {
                *value |= u64::from(*byte) << (8 * (7 - plane));
            }
        }
    }
    if input.at != bytes.len() {
        return Err(StateError::Damaged("trailing bytes"));
    }
    let mut windows = Windows {
        watermark_ms,
        closed_end_ms,
        ..Windows::default()
    };
    windows.series.reserve(count);
    for (position, key) in keys.into_iter().enumerate() {
        let stats = Stats {
            count: counts[position],
            min: f64::from_bits(floats[0][position]),
            max: f64::from_bits(floats[1][position]),
            sum: f64::from_bits(floats[2][position]),
            first_ms: firsts[position],
            last_ms: lasts[position],
            delivered: flags[position] >> 1,
        };
        if stats.count == 0
            || stats.min.is_nan()
            || stats.max.is_nan()
            || stats.min > stats.max
            || !stats.sum.is_finite()
        {
            return Err(StateError::Damaged("a series with impossible statistics"));
        }
        if windows.series.insert(key, stats).is_some() {
            return Err(StateError::Damaged("a series appears twice"));
        }
    }
    Ok(windows)
}

fn unit_index(unit: Unit) -> u8 {
    Unit::all().iter().position(|u| *u == unit).unwrap_or(0) as u8
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_optional(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        Some(value) => {
            out.push(1);
            write_varint(out, zigzag(value));
        }
        None => out.push(0),
    }
}

fn write_text(out: &mut Vec<u8>, text: &str) {
    write_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// A bounds-checked reader over the inflated bytes.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], StateError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(StateError::Damaged("ends early"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, StateError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(StateError::Damaged("a number longer than 64 bits"))
    }

    /// A count of things that follow, each at least one byte long (so a
    /// damaged count cannot ask for more memory than the input holds).
    fn length(&mut self) -> Result<usize, StateError> {
        let length = self.varint()?;
        if length > (self.bytes.len() - self.at) as u64 {
            return Err(StateError::Damaged("a count larger than the data"));
        }
        Ok(length as usize)
    }

    fn index(&mut self, below: usize) -> Result<usize, StateError> {
        let index = self.varint()?;
        if index >= below as u64 {
            return Err(StateError::Damaged("an index past its dictionary"));
        }
        Ok(index as usize)
    }

    fn optional(&mut self) -> Result<Option<i64>, StateError> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(unzigzag(self.varint()?))),
            _ => Err(StateError::Damaged("a bad optional marker")),
        }
    }

    fn text(&mut self) -> Result<CompactString, StateError> {
        let length = self.length()?;
        let bytes = self.take(length)?;
        std::str::from_utf8(bytes)
            .map(CompactString::from)
            .map_err(|_| StateError::Damaged("a name that is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::reading::Reading;
    use crate::window::WindowSettings;

    fn windows_of(readings: &[Reading]) -> Windows {
        let mut windows = Windows::default();
        let folding = windows.folding(WindowSettings::default(), None);
        for reading in readings {
            windows.fold(&folding, reading);
        }
        windows
    }

    #[test]
    fn a_state_reads_back_as_it_was_written() {
        let mut readings: Vec<Reading> = (0..500)
            .map(|i| {
                Reading::sample(
                    &format!("sensor-{}", i % 37),
                    ["temperature", "humidity"][i % 2],
                    20.0 + (i as f64) * 0.37 - 90.0,
                    1_606_000_000_000 + (i as i64) * 917,
                )
            })
            .collect();
        readings[3].unit = Unit::Percent;
        let mut windows = windows_of(&readings);
        windows.closed_end_ms = Some(1_606_000_030_000);
        let key = windows.series.keys().next().unwrap().clone();
        windows.series.get_mut(&key).unwrap().delivered = 1;
        let state = encode_state(&windows);
        assert_eq!(decode_state(Some(&state)).unwrap(), windows);
    }

    #[test]
    fn the_start_of_a_window_is_an_empty_state() {
        for state in [None, Some(Value::Null), Some(json!({}))] {
            assert_eq!(decode_state(state.as_ref()).unwrap(), Windows::default());
        }
        let empty = encode_state(&Windows::default());
        assert_eq!(decode_state(Some(&empty)).unwrap(), Windows::default());
    }

    #[test]
    fn aws_documented_example_state_is_refused_as_foreign() {
        let error = decode_state(Some(&json!({"1": 282, "2": 715}))).unwrap_err();
        assert!(
            error.to_string().contains("not a telemetry-windows state"),
            "{error}"
        );
        assert!(error.to_string().contains("[\"1\", \"2\"]"), "{error}");
        let error = decode_state(Some(&json!("text"))).unwrap_err();
        assert!(error.to_string().contains("a JSON string"), "{error}");
    }

    #[test]
    fn damaged_data_is_an_error_not_a_panic() {
        let mut state = encode_state(&windows_of(&[Reading::sample("d", "t", 1.0, 0)]));
        state["data"] = json!("!!!");
        assert!(matches!(
            decode_state(Some(&state)),
            Err(StateError::NotBase64(_))
        ));
        state["data"] = json!("AAAA");
        assert!(decode_state(Some(&state)).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_as_data_are_an_error_or_a_state(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let deflated = {
                let mut encoder = DeflateEncoder::new(Vec::new(), Compression::fast());
                encoder.write_all(&bytes).unwrap();
                encoder.finish().unwrap()
            };
            for data in [&bytes, &deflated] {
                let state = json!({
                    "format": STATE_FORMAT,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                });
                let _ = decode_state(Some(&state));
            }
        }

        #[test]
        fn truncated_or_flipped_columns_never_panic(cut in 0usize..400, flip in 0usize..400) {
            let windows = windows_of(&[
                Reading::sample("a", "t", 1.5, 1_000),
                Reading::sample("b", "h", -2.0, 70_000),
            ]);
            let mut bytes = write_columns(&windows);
            if flip < bytes.len() {
                bytes[flip] ^= 0x5a;
            }
            bytes.truncate(cut.min(bytes.len()));
            let _ = read_columns(&bytes);
        }
    }
}
