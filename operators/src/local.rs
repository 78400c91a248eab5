//! Local calendars: IANA time zones, local dates and local times of day resolved to
//! instants, with daylight-saving gaps and overlaps resolved to the first valid instant.

use chrono::{Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;

use crate::time::Timestamp;

/// The zone named `name` (`Asia/Shanghai`, `UTC`), if the bundled database knows it.
pub fn zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// The local calendar date of `at` in `tz`.
pub fn date(tz: Tz, at: Timestamp) -> NaiveDate {
    tz.from_utc_datetime(&at.to_datetime().naive_utc())
        .date_naive()
}

/// The first instant whose local time in `tz` is at or after `local`.
///
/// An ordinary local time is one instant. In an overlap (clocks set back) it is the
/// earlier of the two; in a gap (clocks set forward) no instant has that local time and
/// the first valid one is the transition itself, e.g. 03:00 local for a 02:30 that the
/// spring change skipped.
pub fn instant(tz: Tz, local: NaiveDateTime) -> Timestamp {
    let mut probe = local;
    // Gaps are at most a few hours and every real transition falls on a whole minute, so
    // walking forward a minute at a time meets the first valid local time exactly.
    for _ in 0..(48 * 60) {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return at_utc(t.naive_utc()),
            LocalResult::Ambiguous(earlier, _) => return at_utc(earlier.naive_utc()),
            LocalResult::None => {
                probe = probe
                    .checked_add_signed(chrono::TimeDelta::minutes(1))
                    .unwrap_or(probe);
                // Seconds within the skipped minute do not survive the walk: the first
                // valid instant is a whole minute.
                probe = probe.with_second(0).unwrap_or(probe);
            }
        }
    }
    at_utc(local)
}

/// `date` at `time` local in `tz`, resolved as [`instant`] does.
pub fn at(tz: Tz, date: NaiveDate, time: NaiveTime) -> Timestamp {
    instant(tz, date.and_time(time))
}

fn at_utc(t: NaiveDateTime) -> Timestamp {
    let utc = t.and_utc();
    Timestamp::from_nanos(
        utc.timestamp()
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(utc.timestamp_subsec_nanos())),
    )
}

/// The ordinal of `d` counted in days since 1970-01-01 (UTC calendar days).
pub fn day_number(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce()) - 719_163
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn gaps_resolve_to_the_transition_and_overlaps_to_the_earlier_instant() {
        let ny = zone("America/New_York").unwrap();
        // 2026-03-08 02:00 EST → 03:00 EDT: 02:30 does not exist; 03:00 EDT = 07:00Z.
        assert_eq!(
            instant(ny, dt("2026-03-08 02:30")),
            t("2026-03-08T07:00:00Z")
        );
        // 2026-11-01 02:00 EDT → 01:00 EST: 01:30 happens twice; the first is EDT.
        assert_eq!(
            instant(ny, dt("2026-11-01 01:30")),
            t("2026-11-01T05:30:00Z")
        );
        assert_eq!(
            instant(ny, dt("2026-07-01 09:00")),
            t("2026-07-01T13:00:00Z")
        );
        let sh = zone("Asia/Shanghai").unwrap();
        assert_eq!(
            instant(sh, dt("2026-11-20 09:00")),
            t("2026-11-20T01:00:00Z")
        );
        assert_eq!(
            date(sh, t("2026-11-20T16:30:00Z")),
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
        );
        assert!(zone("Mars/Olympus").is_none());
        assert_eq!(day_number(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
    }
}
