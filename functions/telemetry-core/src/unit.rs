//! CloudWatch's standard units: the only values `PutMetricData` and EMF accept.

use std::fmt;

/// One of CloudWatch's standard units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Unit {
    Seconds,
    Microseconds,
    Milliseconds,
    Bytes,
    Kilobytes,
    Megabytes,
    Gigabytes,
    Terabytes,
    Bits,
    Kilobits,
    Megabits,
    Gigabits,
    Terabits,
    Percent,
    Count,
    BytesPerSecond,
    KilobytesPerSecond,
    MegabytesPerSecond,
    GigabytesPerSecond,
    TerabytesPerSecond,
    BitsPerSecond,
    KilobitsPerSecond,
    MegabitsPerSecond,
    GigabitsPerSecond,
    TerabitsPerSecond,
    CountPerSecond,
    #[default]
    None,
}

const ALL: [Unit; 27] = [
    Unit::Seconds,
    Unit::Microseconds,
    Unit::Milliseconds,
    Unit::Bytes,
    Unit::Kilobytes,
    Unit::Megabytes,
    Unit::Gigabytes,
    Unit::Terabytes,
    Unit::Bits,
    Unit::Kilobits,
    Unit::Megabits,
    Unit::Gigabits,
    Unit::Terabits,
    Unit::Percent,
    Unit::Count,
    Unit::BytesPerSecond,
    Unit::KilobytesPerSecond,
    Unit::MegabytesPerSecond,
    Unit::GigabytesPerSecond,
    Unit::TerabytesPerSecond,
    Unit::BitsPerSecond,
    Unit::KilobitsPerSecond,
    Unit::MegabitsPerSecond,
    Unit::GigabitsPerSecond,
    Unit::TerabitsPerSecond,
    Unit::CountPerSecond,
    Unit::None,
];

impl Unit {
    /// The exact spelling CloudWatch uses on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Microseconds => "Microseconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
            Unit::Kilobytes => "Kilobytes",
            Unit::Megabytes => "Megabytes",
            Unit::Gigabytes => "Gigabytes",
            Unit::Terabytes => "Terabytes",
            Unit::Bits => "Bits",
            Unit::Kilobits => "Kilobits",
            Unit::Megabits => "Megabits",
            Unit::Gigabits => "Gigabits",
            Unit::Terabits => "Terabits",
            Unit::Percent => "Percent",
            Unit::Count => "Count",
            Unit::BytesPerSecond => "Bytes/Second",
            Unit::KilobytesPerSecond => "Kilobytes/Second",
            Unit::MegabytesPerSecond => "Megabytes/Second",
            Unit::GigabytesPerSecond => "Gigabytes/Second",
            Unit::TerabytesPerSecond => "Terabytes/Second",
            Unit::BitsPerSecond => "Bits/Second",
            Unit::KilobitsPerSecond => "Kilobits/Second",
            Unit::MegabitsPerSecond => "Megabits/Second",
            Unit::GigabitsPerSecond => "Gigabits/Second",
            Unit::TerabitsPerSecond => "Terabits/Second",
            Unit::CountPerSecond => "Count/Second",
            Unit::None => "None",
        }
    }

    /// Parses a unit name, ignoring ASCII case and surrounding whitespace
    /// (devices write "percent" as often as "Percent").
    pub fn parse(text: &str) -> Option<Unit> {
        let text = text.trim();
        // Devices mostly send the exact name: a `match` (length first, then
        // the bytes) finds it without walking the list.
        let exact = match text {
            "Seconds" => Some(Unit::Seconds),
            "Microseconds" => Some(Unit::Microseconds),
            "Milliseconds" => Some(Unit::Milliseconds),
            "Bytes" => Some(Unit::Bytes),
            "Kilobytes" => Some(Unit::Kilobytes),
            "Megabytes" => Some(Unit::Megabytes),
            "Gigabytes" => Some(Unit::Gigabytes),
            "Terabytes" => Some(Unit::Terabytes),
            "Bits" => Some(Unit::Bits),
            "Kilobits" => Some(Unit::Kilobits),
            "Megabits" => Some(Unit::Megabits),
            "Gigabits" => Some(Unit::Gigabits),
            "Terabits" => Some(Unit::Terabits),
            "Percent" => Some(Unit::Percent),
            "Count" => Some(Unit::Count),
            "Bytes/Second" => Some(Unit::BytesPerSecond),
            "Kilobytes/Second" => Some(Unit::KilobytesPerSecond),
            "Megabytes/Second" => Some(Unit::MegabytesPerSecond),
            "Gigabytes/Second" => Some(Unit::GigabytesPerSecond),
            "Terabytes/Second" => Some(Unit::TerabytesPerSecond),
            "Bits/Second" => Some(Unit::BitsPerSecond),
            "Kilobits/Second" => Some(Unit::KilobitsPerSecond),
            "Megabits/Second" => Some(Unit::MegabitsPerSecond),
            "Gigabits/Second" => Some(Unit::GigabitsPerSecond),
            "Terabits/Second" => Some(Unit::TerabitsPerSecond),
            "Count/Second" => Some(Unit::CountPerSecond),
            "None" => Some(Unit::None),
            _ => None,
        };
        exact.or_else(|| {
            ALL.iter()
                .copied()
                .find(|unit| unit.as_str().eq_ignore_ascii_case(text))
        })
    }

    /// Every unit, for error messages and documentation.
    pub fn all() -> &'static [Unit] {
        &ALL
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_from_its_own_name() {
        for unit in Unit::all() {
            assert_eq!(Unit::parse(unit.as_str()), Some(*unit));
        }
    }

    #[test]
    fn parsing_ignores_case_and_whitespace_but_not_unknown_names() {
        assert_eq!(Unit::parse(" percent "), Some(Unit::Percent));
        assert_eq!(Unit::parse("bytes/second"), Some(Unit::BytesPerSecond));
        assert_eq!(Unit::parse("Celsius"), None);
        assert_eq!(Unit::parse(""), None);
    }
}
