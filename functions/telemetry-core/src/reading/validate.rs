//! CloudWatch's limits, checked before anything is sent so that a bad
//! reading is dead-lettered with a reason instead of failing a whole request.

use crate::json::byte_classes::printable_ascii;
use crate::reading::{Reading, DEVICE_DIMENSION};

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_DIMENSION_VALUE_CHARS: usize = 1024;
/// Per metric, including `device`.
pub const MAX_DIMENSIONS: usize = 30;
/// CloudWatch rejects magnitudes above 2^360 and non-zero ones below 2^-360.
pub const MAX_MAGNITUDE: f64 = 2.348_542_582_773_833e108;
pub const MIN_MAGNITUDE: f64 = 4.258_039_285_462_6e-109;
/// Metric data may be up to two weeks old...
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// ...and up to two hours in the future.
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

/// Why a reading cannot become a metric.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidReading {
    #[error("{what} {value:?} is empty")]
    EmptyName { what: &'static str, value: String },
    #[error("{what} {value:?} is {chars} characters long; the limit is {limit}")]
    TooLong {
        what: &'static str,
        value: String,
        chars: usize,
        limit: usize,
    },
    #[error("{what} {value:?} contains a control character")]
    ControlCharacter { what: &'static str, value: String },
    #[error("value of {metric:?} is {value}, which CloudWatch cannot store (finite, |v| <= 2^360, |v| >= 2^-360 or 0)")]
    ValueOutOfRange { metric: String, value: f64 },
    #[error("timestamp {timestamp} of {metric:?} is more than 14 days old as CloudWatch stores it, under {stored_under} (now {now})")]
    TooOld {
        metric: String,
        timestamp: String,
        /// The start of the reading's storage period, which the sinks send.
        stored_under: String,
        now: String,
    },
    #[error("timestamp {timestamp} of {metric:?} is more than 2 hours ahead (now {now})")]
    TooFarAhead {
        metric: String,
        timestamp: String,
        now: String,
    },
    #[error("{count} dimensions on {metric:?}; the limit is {MAX_DIMENSIONS}")]
    TooManyDimensions { metric: String, count: usize },
    #[error("metric name {metric:?} is also a dimension name")]
    NameClash { metric: String },
}

fn check_name(what: &'static str, value: &str, limit: usize) -> Result<(), InvalidReading> {
    // Nearly every name is printable ASCII: then the only blank character
    // is ' ', there are no control characters, and bytes are characters.
    if printable_ascii(value.as_bytes()) {
        if value.bytes().all(|byte| byte == b' ') {
            return Err(InvalidReading::EmptyName {
                what,
                value: value.to_owned(),
            });
        }
        if value.len() > limit {
            return Err(too_long(what, value, value.len(), limit));
        }
        return Ok(());
    }
    if value.trim().is_empty() {
        return Err(InvalidReading::EmptyName {
            what,
            value: value.to_owned(),
        });
    }
    let chars = value.chars().count();
    if chars > limit {
        return Err(too_long(what, value, chars, limit));
    }
    check_printable(what, value)
}

/// A name holds no control character (NUL, BEL, ...).
fn check_printable(what: &'static str, value: &str) -> Result<(), InvalidReading> {
    if printable_ascii(value.as_bytes()) || !value.chars().any(char::is_control) {
        return Ok(());
    }
    Err(InvalidReading::ControlCharacter {
        what,
        value: value.to_owned(),
    })
}

/// The reading's identifiers (device id, metric name) hold no control
/// character: the part of [`validate`] every backend needs, for the
/// warehouse, which has none of CloudWatch's limits.
pub fn check_identifiers(reading: &Reading) -> Result<(), InvalidReading> {
    check_printable("device", &reading.device)?;
    check_printable("metric name", &reading.metric)
}

fn too_long(what: &'static str, value: &str, chars: usize, limit: usize) -> InvalidReading {
    InvalidReading::TooLong {
        what,
        value: value.chars().take(40).collect::<String>() + "...",
        chars,
        limit,
    }
}

/// Checks one reading against CloudWatch's limits at time `now_ms`.
pub fn validate(reading: &Reading, now_ms: i64) -> Result<(), InvalidReading> {
    check_name("metric name", &reading.metric, MAX_NAME_CHARS)?;
    check_name("device", &reading.device, MAX_DIMENSION_VALUE_CHARS)?;
    let metric = || reading.metric.to_string();
    if reading.dimensions.len() + 1 > MAX_DIMENSIONS {
        return Err(InvalidReading::TooManyDimensions {
            metric: metric(),
            count: reading.dimensions.len() + 1,
        });
    }
    if reading.metric == DEVICE_DIMENSION {
        return Err(InvalidReading::NameClash { metric: metric() });
    }
    for (name, value) in &reading.dimensions {
        check_name("dimension name", name, MAX_NAME_CHARS)?;
        check_name("dimension value", value, MAX_DIMENSION_VALUE_CHARS)?;
        if *name == reading.metric {
            return Err(InvalidReading::NameClash { metric: metric() });
        }
    }
    let magnitude = reading.value.abs();
    if !reading.value.is_finite()
        || magnitude > MAX_MAGNITUDE
        || (magnitude != 0.0 && magnitude < MIN_MAGNITUDE)
    {
        return Err(InvalidReading::ValueOutOfRange {
            metric: metric(),
            value: reading.value,
        });
    }
    let render = crate::payload::timestamp::millis_to_rfc3339;
    // The sinks send the start of the reading's minute (or second), which
    // may be past the limit when the reading itself is just inside it.
    let stored_under = reading.storage_period_start_ms();
    if stored_under < now_ms - MAX_AGE_MS {
        return Err(InvalidReading::TooOld {
            metric: metric(),
            timestamp: render(reading.timestamp_ms),
            stored_under: render(stored_under),
            now: render(now_ms),
        });
    }
    if reading.timestamp_ms > now_ms + MAX_AHEAD_MS {
        return Err(InvalidReading::TooFarAhead {
            metric: metric(),
            timestamp: render(reading.timestamp_ms),
            now: render(now_ms),
        });
    }
    Ok(())
}

/// A CloudWatch namespace CloudWatch would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNamespace {
    #[error("METRICS_NAMESPACE {0:?} must be 1 to 255 characters")]
    Length(String),
    #[error("METRICS_NAMESPACE {0:?} must not start with \"AWS/\" (reserved for AWS services)")]
    Reserved(String),
    #[error("METRICS_NAMESPACE {0:?} must not contain ':' or control characters")]
    Characters(String),
}

/// Checks a namespace as CloudWatch does: 1-255 characters, no `:`, not `AWS/`.
pub fn validate_namespace(namespace: &str) -> Result<(), InvalidNamespace> {
    if namespace.trim().is_empty() || namespace.chars().count() > MAX_NAME_CHARS {
        return Err(InvalidNamespace::Length(namespace.to_owned()));
    }
    if namespace.starts_with("AWS/") {
        return Err(InvalidNamespace::Reserved(namespace.to_owned()));
    }
    if namespace.contains(':') || namespace.chars().any(char::is_control) {
        return Err(InvalidNamespace::Characters(namespace.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_645_938_100_000;

    fn reading(metric: &str, value: f64, timestamp_ms: i64) -> Reading {
        Reading::sample("temp-sensor-istanbul", metric, value, timestamp_ms)
    }

    #[test]
    fn accepts_a_normal_reading() {
        assert_eq!(
            validate(&reading("temperature", 17.95, NOW - 40_000), NOW),
            Ok(())
        );
        assert_eq!(validate(&reading("zero", 0.0, NOW), NOW), Ok(()));
        // The oldest minute still inside the limit, and its last reading.
        let oldest_minute = (NOW - MAX_AGE_MS).div_euclid(60_000) * 60_000 + 60_000;
        for timestamp_ms in [oldest_minute, oldest_minute + 59_999] {
            assert_eq!(validate(&reading("t", 1.0, timestamp_ms), NOW), Ok(()));
        }
    }

    #[test]
    fn rejects_each_limit_with_a_reason() {
        let cases = [
            (reading("", 1.0, NOW), "empty"),
            (reading(&"m".repeat(256), 1.0, NOW), "256 characters"),
            (reading("t", f64::NAN, NOW), "NaN"),
            (reading("t", f64::INFINITY, NOW), "inf"),
            (reading("t", 1e200, NOW), "cannot store"),
            (reading("t", 1e-200, NOW), "cannot store"),
            (reading("t", 1.0, NOW - MAX_AGE_MS - 1), "14 days"),
            // Inside the limit itself, but not the minute it is stored under.
            (reading("t", 1.0, NOW - MAX_AGE_MS + 1), "14 days"),
            (reading("t", 1.0, NOW + MAX_AHEAD_MS + 1), "2 hours"),
            (reading("device", 1.0, NOW), "dimension"),
            (reading("a\nb", 1.0, NOW), "control"),
        ];
        for (reading, expected) in cases {
            let error = validate(&reading, NOW).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
        }
        let mut many = reading("t", 1.0, NOW);
        many.dimensions = (0..30)
            .map(|i| (format!("d{i}").into(), "v".into()))
            .collect();
        assert!(validate(&many, NOW)
            .unwrap_err()
            .to_string()
            .contains("31 dimensions"));
    }

    /// The one-pass check against the plain definition, on names built
    /// from the characters each rule looks at.
    #[test]
    fn name_checks_match_their_definition() {
        fn by_definition(value: &str, limit: usize) -> &'static str {
            if value.trim().is_empty() {
                "empty"
            } else if value.chars().count() > limit {
                "too long"
            } else if value.chars().any(char::is_control) {
                "control"
            } else {
                "ok"
            }
        }
        let pieces = [
            "a", " ", "\t", "\n", "\u{b}", "\u{c}", "\r", "\u{1}", "\u{7f}", "é", "\u{3000}",
            "\u{85}", "温度", "-",
        ];
        let mut names = vec![String::new()];
        for first in pieces {
            for second in pieces {
                for third in pieces {
                    names.push(format!("{first}{second}{third}"));
                }
            }
        }
        names.push("x".repeat(300));
        names.push("é".repeat(200));
        for name in &names {
            for limit in [2, 3, 255] {
                let ours = match check_name("metric name", name, limit) {
                    Ok(()) => "ok",
                    Err(InvalidReading::EmptyName { .. }) => "empty",
                    Err(InvalidReading::TooLong { .. }) => "too long",
                    Err(InvalidReading::ControlCharacter { .. }) => "control",
                    Err(other) => panic!("{other}"),
                };
                assert_eq!(ours, by_definition(name, limit), "{name:?} limit {limit}");
            }
        }
    }

    #[test]
    fn namespaces() {
        assert!(validate_namespace("IoT/Telemetry").is_ok());
        assert!(validate_namespace("AWS/EC2").is_err());
        assert!(validate_namespace("").is_err());
        assert!(validate_namespace("a:b").is_err());
    }
}
