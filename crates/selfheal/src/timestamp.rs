//! A wall-clock time in a record or a view: compared and sorted as time, RFC 3339 only at the
//! serde edge (and in [`std::fmt::Display`]). Its own module, below both the journal and the
//! evidence the journal stores, so each can use it without an import cycle.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// A wall-clock time. Written with milliseconds, as the journal always has, or with nanoseconds
/// when the time has a finer part (Docker's times have), so whatever time is read is written
/// back the same, to the nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    pub const fn new(at: SystemTime) -> Self {
        Self(at)
    }

    /// `at` cut to the millisecond: the watchdog's own times have always been written so.
    pub fn millis(at: SystemTime) -> Self {
        let nanos = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() % 1_000_000);
        Self(at - Duration::from_nanos(nanos.into()))
    }

    pub const fn system_time(self) -> SystemTime {
        self.0
    }

    /// An RFC 3339 time, `Z` or with a numeric offset (Docker writes its health log in the
    /// daemon's local time: `2026-01-01T10:00:00.123456789+02:00`). humantime reads `Z` only,
    /// and ignores an offset after a fraction of a second, so the offset is applied here.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let n = b.len();
        let offset = (n >= 25)
            .then(|| (b[n - 6], &b[n - 5..n - 3], b[n - 3], &b[n - 2..]))
            .filter(|(sign, h, colon, m)| {
                matches!(sign, b'+' | b'-')
                    && *colon == b':'
                    && h.iter().chain(m.iter()).all(u8::is_ascii_digit)
            });
        let Some((sign, h, _, m)) = offset else {
            return humantime::parse_rfc3339_weak(text).ok().map(Self);
        };
        let local = humantime::parse_rfc3339_weak(&format!("{}Z", &text[..n - 6])).ok()?;
        let digits = |d: &[u8]| u64::from(d[0] - b'0') * 10 + u64::from(d[1] - b'0');
        let (h, m) = (digits(h), digits(m));
        if h > 23 || m > 59 {
            return None;
        }
        let offset = Duration::from_secs(h * 3600 + m * 60);
        let utc = if sign == b'+' {
            local.checked_sub(offset)
        } else {
            local.checked_add(offset)
        };
        utc.map(Self)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(at: SystemTime) -> Self {
        Self(at)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nanos = self
            .0
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // `pad`: the CLI's table aligns this column with a width.
        if nanos.is_multiple_of(1_000_000) {
            f.pad(&humantime::format_rfc3339_millis(self.0).to_string())
        } else {
            f.pad(&humantime::format_rfc3339_nanos(self.0).to_string())
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

/// Reads an optional time tolerantly (`#[serde(default, deserialize_with = ...)]`): a time that
/// is missing, `null`, empty or unreadable (Docker's zero time `0001-01-01T00:00:00Z`, a peer's
/// or an older version's odd value) is `None`, and the record around it still loads.
pub fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(text)) => Timestamp::parse(&text),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn offsets_are_applied_and_nanoseconds_kept() {
        let p = |t: &str| Timestamp::parse(t).map(|t| t.to_string());
        assert_eq!(
            p("2026-01-01T10:00:00.123456789+02:00").as_deref(),
            Some("2026-01-01T08:00:00.123456789Z")
        );
        assert_eq!(
            p("2026-01-01T10:00:00-05:30").as_deref(),
            Some("2026-01-01T15:30:00.000Z")
        );
        assert_eq!(
            p("2026-01-01T10:00:00.5+00:00").as_deref(),
            Some("2026-01-01T10:00:00.500Z")
        );
        // Docker's log times: nine digits, written back the same.
        let docker = "2026-01-01T00:00:01.000000001Z";
        assert_eq!(p(docker).as_deref(), Some(docker));
        assert_eq!(
            p("2026-01-01T00:00:01.5Z").as_deref(),
            Some("2026-01-01T00:00:01.500Z")
        );
        for odd in [
            "",
            "yesterday",
            "0001-01-01T00:00:00Z",
            "2026-01-01T10:00:00+25:00",
        ] {
            assert_eq!(p(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn millis_cuts_the_finer_part() {
        let t = utc("2026-01-01T00:00:01.123456789Z");
        assert_eq!(Timestamp::millis(t).to_string(), "2026-01-01T00:00:01.123Z");
    }

    #[test]
    fn a_lenient_time_is_none_when_unreadable() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "lenient")]
            at: Option<Timestamp>,
        }
        let at = |json: &str| serde_json::from_str::<T>(json).unwrap().at;
        assert_eq!(at("{}"), None);
        assert_eq!(at(r#"{"at": null}"#), None);
        assert_eq!(at(r#"{"at": ""}"#), None);
        assert_eq!(at(r#"{"at": 12}"#), None);
        assert_eq!(at(r#"{"at": "0001-01-01T00:00:00Z"}"#), None);
        assert_eq!(
            at(r#"{"at": "2026-01-01T00:00:01Z"}"#),
            Some(Timestamp::new(utc("2026-01-01T00:00:01Z")))
        );
    }
}
