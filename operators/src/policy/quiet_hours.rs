//! Step 6, quiet hours: an action due in the customer's local quiet hours (default
//! 21:00–08:00) is held and written when they end; `fired_at` is unchanged.

use chrono::{NaiveTime, TimeZone};
use chrono_tz::Tz;

use crate::local;
use crate::time::Timestamp;

/// Local quiet hours: `[start, end)`, across midnight when `start > end`; none when equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietHours {
    /// Quiet from `start` to `end`, local (`HH:MM`).
    pub fn new(start: (u32, u32), end: (u32, u32)) -> Self {
        let t = |(h, m)| NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN);
        QuietHours {
            start: t(start),
            end: t(end),
        }
    }

    /// When an action due at `at` may be written: `None` if at once, else the end of the
    /// quiet hours `at` falls in (a skipped local time resolves to the transition).
    pub fn release(&self, tz: Tz, at: Timestamp) -> Option<Timestamp> {
        if self.start == self.end {
            return None;
        }
        let local = tz
            .from_utc_datetime(&at.to_datetime().naive_utc())
            .naive_local();
        let (date, time) = (local.date(), local.time());
        let quiet = if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        };
        if !quiet {
            return None;
        }
        let day = if time < self.end {
            date
        } else {
            date.succ_opt()?
        };
        let release = local::at(tz, day, self.end);
        (release > at).then_some(release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn holds_until_the_local_end_across_midnight() {
        let q = QuietHours::new((21, 0), (8, 0));
        let sh = local::zone("Asia/Shanghai").unwrap();
        // 22:30 local → 08:00 local next day.
        assert_eq!(
            q.release(sh, t("2026-11-20T14:30:00Z")),
            Some(t("2026-11-21T00:00:00Z"))
        );
        // 03:00 local → 08:00 the same local day.
        assert_eq!(
            q.release(sh, t("2026-11-20T19:00:00Z")),
            Some(t("2026-11-21T00:00:00Z"))
        );
        // 08:00 and 20:59 local are not quiet; 21:00 is.
        assert_eq!(q.release(sh, t("2026-11-21T00:00:00Z")), None);
        assert_eq!(q.release(sh, t("2026-11-21T12:59:00Z")), None);
        assert!(q.release(sh, t("2026-11-21T13:00:00Z")).is_some());
        assert_eq!(
            QuietHours::new((9, 0), (9, 0)).release(sh, t("2026-11-20T14:30:00Z")),
            None
        );
    }

    #[test]
    fn a_daytime_window_does_not_wrap() {
        let q = QuietHours::new((12, 0), (14, 0));
        let utc = local::zone("UTC").unwrap();
        assert_eq!(
            q.release(utc, t("2026-11-20T13:00:00Z")),
            Some(t("2026-11-20T14:00:00Z"))
        );
        assert_eq!(q.release(utc, t("2026-11-20T15:00:00Z")), None);
    }
}
