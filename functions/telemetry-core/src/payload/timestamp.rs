//! Device timestamps: epoch seconds or milliseconds, RFC 3339, strftime patterns.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};

/// How a timestamp field is written by the device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TimestampFormat {
    /// Numbers are epoch seconds below 1e11 and epoch milliseconds above;
    /// strings are tried as a number, RFC 3339, then common date-time layouts.
    #[default]
    Auto,
    EpochSeconds,
    EpochMillis,
    Rfc3339,
    /// A `strftime` pattern such as `%Y-%m-%d %H:%M:%S`; date parts need not
    /// be zero-padded. Without an offset in the pattern, `offset` applies.
    Pattern {
        pattern: String,
        offset: FixedOffset,
    },
}

/// Layouts tried by [`TimestampFormat::Auto`] for strings without an offset.
const NAIVE_LAYOUTS: [&str; 4] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
];

/// Above this, an epoch number is taken as milliseconds (1e11 s is the year 5138).
const MILLIS_THRESHOLD: f64 = 1e11;

impl TimestampFormat {
    /// Parses the name used in mapping files: `auto`, `epoch_s`, `epoch_ms`,
    /// `rfc3339`, or any pattern containing `%`.
    pub fn from_name(name: &str, offset: FixedOffset) -> Option<Self> {
        Some(match name {
            "auto" => TimestampFormat::Auto,
            "epoch_s" | "epoch_seconds" | "unix" => TimestampFormat::EpochSeconds,
            "epoch_ms" | "epoch_millis" | "unix_ms" => TimestampFormat::EpochMillis,
            "rfc3339" | "iso8601" => TimestampFormat::Rfc3339,
            pattern if pattern.contains('%') => TimestampFormat::Pattern {
                pattern: pattern.to_owned(),
                offset,
            },
            _ => return None,
        })
    }

    /// Milliseconds since the epoch from a numeric field.
    pub fn from_number(&self, number: f64) -> Option<i64> {
        if !number.is_finite() {
            return None;
        }
        let millis = match self {
            TimestampFormat::EpochMillis => number,
            TimestampFormat::EpochSeconds => number * 1000.0,
            TimestampFormat::Auto if number.abs() >= MILLIS_THRESHOLD => number,
            TimestampFormat::Auto => number * 1000.0,
            TimestampFormat::Rfc3339 | TimestampFormat::Pattern { .. } => return None,
        };
        // Beyond ±2^53 ms we are far outside any date CloudWatch accepts.
        (millis.abs() < 9.0e15).then_some(millis.round() as i64)
    }

    /// Milliseconds since the epoch from a text field.
    pub fn from_text(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        match self {
            TimestampFormat::Auto => {
                if let Ok(number) = text.parse::<f64>() {
                    return self.from_number(number);
                }
                if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
                    return Some(parsed.timestamp_millis());
                }
                // Python's str(datetime): "2021-07-26 14:37:33+00:00".
                if let Ok(parsed) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
                    return Some(parsed.timestamp_millis());
                }
                NAIVE_LAYOUTS.iter().find_map(|layout| {
                    NaiveDateTime::parse_from_str(text, layout)
                        .ok()
                        .map(|naive| naive.and_utc().timestamp_millis())
                })
            }
            TimestampFormat::EpochSeconds | TimestampFormat::EpochMillis => {
                self.from_number(text.parse().ok()?)
            }
            TimestampFormat::Rfc3339 => DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|parsed| parsed.timestamp_millis()),
            TimestampFormat::Pattern { pattern, offset } => {
                if let Ok(with_offset) = DateTime::parse_from_str(text, pattern) {
                    return Some(with_offset.timestamp_millis());
                }
                let naive = NaiveDateTime::parse_from_str(text, pattern).ok()?;
                offset
                    .from_local_datetime(&naive)
                    .single()
                    .map(|local| local.timestamp_millis())
            }
        }
    }
}

/// Parses an offset written as `Z`, `UTC`, `+09:00` or `-0530`.
pub fn parse_offset(text: &str) -> Option<FixedOffset> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// RFC 3339 text (millisecond precision, `Z`) for logs and dead letters.
pub fn millis_to_rfc3339(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| millis.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> FixedOffset {
        FixedOffset::east_opt(0).unwrap()
    }

    #[test]
    fn auto_tells_seconds_from_milliseconds() {
        let auto = TimestampFormat::Auto;
        assert_eq!(auto.from_number(1645938060.0), Some(1_645_938_060_000));
        assert_eq!(auto.from_number(1645938060123.0), Some(1_645_938_060_123));
        assert_eq!(auto.from_number(1645938060.5), Some(1_645_938_060_500));
        assert_eq!(auto.from_number(f64::NAN), None);
    }

    #[test]
    fn auto_reads_text_forms() {
        let auto = TimestampFormat::Auto;
        assert_eq!(auto.from_text("1645938060"), Some(1_645_938_060_000));
        assert_eq!(
            auto.from_text("2022-02-27T05:01:00Z"),
            Some(1_645_938_060_000)
        );
        assert_eq!(
            auto.from_text("2022-02-27T14:01:00+09:00"),
            Some(1_645_938_060_000)
        );
        // Reference 002: date parts are not zero-padded.
        assert_eq!(
            auto.from_text("2020-7-13 22:43:23"),
            Some(1_594_680_203_000)
        );
        assert_eq!(auto.from_text("yesterday"), None);
        // Reference 001: Python's str() of a tweet's created_at.
        assert_eq!(
            auto.from_text("2021-07-26 14:37:33+00:00"),
            Some(1_627_310_253_000)
        );
    }

    #[test]
    fn patterns_apply_their_offset() {
        let kst = parse_offset("+09:00").unwrap();
        let format = TimestampFormat::from_name("%Y-%m-%d %H:%M:%S", kst).unwrap();
        assert_eq!(
            format.from_text("2020-7-14 07:43:23"),
            Some(1_594_680_203_000)
        );
        let format = TimestampFormat::from_name("%d/%m/%Y %H:%M", utc()).unwrap();
        assert_eq!(
            format.from_text("13/07/2020 22:43"),
            Some(1_594_680_180_000)
        );
        assert_eq!(format.from_text("2020-07-13"), None);
    }

    #[test]
    fn names_and_offsets_parse() {
        assert_eq!(
            TimestampFormat::from_name("epoch_ms", utc()),
            Some(TimestampFormat::EpochMillis)
        );
        assert_eq!(TimestampFormat::from_name("weekly", utc()), None);
        assert_eq!(parse_offset("-0530").unwrap().local_minus_utc(), -19800);
        assert_eq!(parse_offset("Z").unwrap().local_minus_utc(), 0);
        assert_eq!(parse_offset("+9"), None);
        assert_eq!(TimestampFormat::EpochSeconds.from_text("12"), Some(12_000));
        assert_eq!(TimestampFormat::Rfc3339.from_number(1.0), None);
    }

    #[test]
    fn renders_rfc3339() {
        assert_eq!(
            millis_to_rfc3339(1_645_938_060_000),
            "2022-02-27T05:01:00.000Z"
        );
    }
}
