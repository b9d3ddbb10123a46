//! CloudWatch's standard units: the only values `PutMetricData` and EMF accept.

use std::fmt;

/// Declares the units once: the enum, the list of all of them, their wire
/// names and the exact-name lookup all come from this table.
macro_rules! units {
    ($($(#[$attribute:meta])* $variant:ident => $name:literal,)+) => {
        /// One of CloudWatch's standard units.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub enum Unit {
            $($(#[$attribute])* $variant,)+
        }

        const ALL: &[Unit] = &[$(Unit::$variant,)+];

        impl Unit {
            /// The exact spelling CloudWatch uses on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Unit::$variant => $name,)+
                }
            }

            /// The unit spelled exactly `name`: a `match` (length first,
            /// then the bytes) rather than a walk over the list.
            fn from_exact_name(name: &str) -> Option<Unit> {
                match name {
                    $($name => Some(Unit::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

units! {
    Seconds => "Seconds",
    Microseconds => "Microseconds",
    Milliseconds => "Milliseconds",
    Bytes => "Bytes",
    Kilobytes => "Kilobytes",
    Megabytes => "Megabytes",
    Gigabytes => "Gigabytes",
    Terabytes => "Terabytes",
    Bits => "Bits",
    Kilobits => "Kilobits",
    Megabits => "Megabits",
    Gigabits => "Gigabits",
    Terabits => "Terabits",
    Percent => "Percent",
    Count => "Count",
    BytesPerSecond => "Bytes/Second",
    KilobytesPerSecond => "Kilobytes/Second",
    MegabytesPerSecond => "Megabytes/Second",
    GigabytesPerSecond => "Gigabytes/Second",
    TerabytesPerSecond => "Terabytes/Second",
    BitsPerSecond => "Bits/Second",
    KilobitsPerSecond => "Kilobits/Second",
    MegabitsPerSecond => "Megabits/Second",
    GigabitsPerSecond => "Gigabits/Second",
    TerabitsPerSecond => "Terabits/Second",
    CountPerSecond => "Count/Second",
    #[default]
    None => "None",
}

impl Unit {
    /// Parses a unit name, ignoring ASCII case and surrounding whitespace
    /// (devices write "percent" as often as "Percent").
    pub fn parse(text: &str) -> Option<Unit> {
        let text = text.trim();
        // Devices mostly send the exact name.
        let exact = Unit::from_exact_name(text);
        exact.or_else(|| {
            ALL.iter()
                .copied()
                .find(|unit| unit.as_str().eq_ignore_ascii_case(text))
        })
    }

    /// Every unit, for error messages and documentation.
    pub fn all() -> &'static [Unit] {
        ALL
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
            assert_eq!(Unit::from_exact_name(unit.as_str()), Some(*unit));
        }
        assert_eq!(Unit::all().len(), 27);
        assert_eq!(Unit::default(), Unit::None);
    }

    #[test]
    fn parsing_ignores_case_and_whitespace_but_not_unknown_names() {
        assert_eq!(Unit::parse(" percent "), Some(Unit::Percent));
        assert_eq!(Unit::parse("bytes/second"), Some(Unit::BytesPerSecond));
        assert_eq!(Unit::parse("Celsius"), None);
        assert_eq!(Unit::parse(""), None);
    }
}
