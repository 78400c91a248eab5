//! Event time: nanoseconds since the Unix epoch, parsed from and written as RFC 3339.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// An instant of event time (or pipeline clock), in nanoseconds since the Unix epoch, UTC.
///
/// Ordered, copyable and cheap: the runtime compares millions of these a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// A span of event time in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(i64);

impl Span {
    /// A span of whole seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Span(secs.saturating_mul(1_000_000_000))
    }

    /// A span of milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Span(ms.saturating_mul(1_000_000))
    }

    /// The span in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// The span in (fractional) seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// A compact human form: `30m`, `1h30m`, `45s`, `2d`.
    pub fn human(self) -> String {
        let mut secs = self.0 / 1_000_000_000;
        if secs == 0 {
            return format!("{}ms", self.0 / 1_000_000);
        }
        let mut out = String::new();
        for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= len {
                out.push_str(&format!("{}{unit}", secs / len));
                secs %= len;
            }
        }
        out
    }
}

impl Timestamp {
    /// The earliest representable instant; the clock before any input.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest representable instant.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// From nanoseconds since the epoch.
    pub const fn from_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (floor).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    /// Seconds since the epoch as a float, for metrics only.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// The wall clock now. Only the runtime calls this; operators get time from their context.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX))
    }

    /// Parses RFC 3339 with an offset (`2026-11-20T10:15:00Z`, `2026-11-20T18:15:00+08:00`).
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|e| format!("{e}"))?;
        dt.timestamp_nanos_opt().map(Timestamp).ok_or_else(|| {
            let side = if dt.timestamp() > 0 {
                "after 2262"
            } else {
                "before 1677"
            };
            format!("out of range ({side})")
        })
    }

    /// `self + span`, saturating.
    pub const fn plus(self, span: Span) -> Self {
        Timestamp(self.0.saturating_add(span.0))
    }

    /// `self - span`, saturating.
    pub const fn minus(self, span: Span) -> Self {
        Timestamp(self.0.saturating_sub(span.0))
    }

    /// The span from `earlier` to `self`.
    pub const fn since(self, earlier: Timestamp) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }

    /// As a chrono UTC date-time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with `Z`, fractional seconds only when present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Timestamp::MIN => f.write_str("-inf"),
            Timestamp::MAX => f.write_str("+inf"),
            _ => f.write_str(
                &self
                    .to_datetime()
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serde for timestamps in checkpointed state: integer nanoseconds, compact and exact
/// (`#[serde(with = "crate::time::nanos")]`).
pub mod nanos {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the nanoseconds.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.0)
    }

    /// Reads the nanoseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        i64::deserialize(d).map(Timestamp)
    }

    /// The same for an optional timestamp.
    pub mod opt {
        use super::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes the nanoseconds, if any.
        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(&t.0),
                None => s.serialize_none(),
            }
        }

        /// Reads the nanoseconds, if any.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<i64>::deserialize(d).map(|o| o.map(Timestamp))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_writes_utc() {
        let a = Timestamp::parse_rfc3339("2026-11-20T18:15:00+08:00").unwrap();
        let b = Timestamp::parse_rfc3339("2026-11-20T10:15:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2026-11-20T10:15:00Z");
        let c = Timestamp::parse_rfc3339("2026-11-20T10:15:00.012Z").unwrap();
        assert_eq!(c.to_string(), "2026-11-20T10:15:00.012Z");
    }

    #[test]
    fn rejects_missing_offset_and_garbage() {
        assert!(Timestamp::parse_rfc3339("2026-11-20T10:15:00").is_err());
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert!(Timestamp::parse_rfc3339("2026-02-30T10:15:00Z").is_err());
    }

    #[test]
    fn human_spans() {
        assert_eq!(Span::from_secs(1800).human(), "30m");
        assert_eq!(Span::from_secs(5400).human(), "1h30m");
        assert_eq!(Span::from_secs(86_400).human(), "1d");
    }
}
