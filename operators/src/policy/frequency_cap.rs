//! Step 5, frequency caps: per channel, rules such as at most 1 a day and 3 a week. An
//! action counts against the day and the ISO week (Monday 00:00) of its `fired_at` in
//! the customer's local time zone; only actions that pass count. An action that would
//! exceed any rule is suppressed (`frequency_cap`).

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::config::{CapPeriod, FrequencyCap};
use crate::event::Str;
use crate::local;
use crate::time::Timestamp;

/// Actions counted per (channel, period). A customer capped on one channel has two
/// counts (its day and its week): they sit in the customer's state, not in an allocation
/// of their own (which would take room for four).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts(SmallVec<[Count; 2]>);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Count {
    /// Inline: channel names are short.
    channel: Str,
    week: bool,
    /// Local day number, or ISO week number, since the epoch.
    period: i64,
    n: u32,
}

/// The ISO week (Monday-based) of a local date, numbered since the epoch's week.
pub fn iso_week(d: NaiveDate) -> i64 {
    // 1970-01-01 was a Thursday: day 0 is in the week starting Monday day -3.
    (local::day_number(d) + 3).div_euclid(7)
}

impl Counts {
    fn get(&self, channel: &str, week: bool, period: i64) -> u32 {
        self.0
            .iter()
            .find(|c| c.channel == channel && c.week == week && c.period == period)
            .map_or(0, |c| c.n)
    }

    /// Counts an action on `channel` at `at` if no rule of `caps` would be exceeded;
    /// otherwise says which rule, in words.
    pub fn admit(
        &mut self,
        caps: &[FrequencyCap],
        channel: &str,
        tz: Tz,
        at: Timestamp,
    ) -> Result<(), String> {
        let date = local::date(tz, at);
        let (day, week) = (local::day_number(date), iso_week(date));
        let mut applies = false;
        for cap in caps.iter().filter(|c| c.channel == channel) {
            applies = true;
            let (is_week, period) = match cap.per {
                CapPeriod::Day => (false, day),
                CapPeriod::Week => (true, week),
            };
            let n = self.get(channel, is_week, period);
            if n >= cap.max {
                let span = match cap.per {
                    CapPeriod::Day => format!("local day {date}"),
                    CapPeriod::Week => format!("the ISO week of {date}"),
                };
                return Err(format!(
                    "{channel} cap {}/{} reached: {n} already sent in {span} ({tz})",
                    cap.max,
                    if is_week { "week" } else { "day" },
                ));
            }
        }
        if !applies {
            return Ok(());
        }
        // Periods more than two weeks behind this action can no longer matter.
        self.0.retain(|c| {
            let now = if c.week { week } else { day };
            now - c.period <= if c.week { 2 } else { 14 }
        });
        for (is_week, period) in [(false, day), (true, week)] {
            match self
                .0
                .iter_mut()
                .find(|c| c.channel == channel && c.week == is_week && c.period == period)
            {
                Some(c) => c.n += 1,
                None => self.0.push(Count {
                    channel: Str::from(channel),
                    week: is_week,
                    period,
                    n: 1,
                }),
            }
        }
        Ok(())
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Vec<FrequencyCap> {
        vec![
            FrequencyCap {
                channel: "push".into(),
                max: 1,
                per: CapPeriod::Day,
            },
            FrequencyCap {
                channel: "push".into(),
                max: 3,
                per: CapPeriod::Week,
            },
        ]
    }

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn one_a_day_resets_at_local_midnight_in_utc_plus_8() {
        let tz = local::zone("Asia/Shanghai").unwrap();
        let mut c = Counts::default();
        // 23:30 local on the 20th, then 23:50 the same local day: capped.
        assert!(
            c.admit(&caps(), "push", tz, t("2026-11-20T15:30:00Z"))
                .is_ok()
        );
        let refused = c.admit(&caps(), "push", tz, t("2026-11-20T15:50:00Z"));
        assert!(refused.unwrap_err().contains("cap 1/day"));
        // 00:10 local on the 21st is still the 20th in UTC, but a new local day.
        assert!(
            c.admit(&caps(), "push", tz, t("2026-11-20T16:10:00Z"))
                .is_ok()
        );
    }

    #[test]
    fn one_a_day_resets_at_local_midnight_in_utc_minus_5() {
        let tz = local::zone("America/Bogota").unwrap();
        let mut c = Counts::default();
        // 22:00 local on the 20th is 03:00 UTC on the 21st.
        assert!(
            c.admit(&caps(), "push", tz, t("2026-11-21T03:00:00Z"))
                .is_ok()
        );
        // 23:59 local, still the 20th locally, though UTC's 21st started long ago.
        assert!(
            c.admit(&caps(), "push", tz, t("2026-11-21T04:59:00Z"))
                .is_err()
        );
        // 00:01 local on the 21st.
        assert!(
            c.admit(&caps(), "push", tz, t("2026-11-21T05:01:00Z"))
                .is_ok()
        );
    }

    #[test]
    fn the_strictest_rule_wins_and_weeks_start_on_monday() {
        let tz = local::zone("UTC").unwrap();
        let mut c = Counts::default();
        // Thursday to Saturday: 3 sent, Sunday refused by the week rule.
        for day in ["2026-11-19", "2026-11-20", "2026-11-21"] {
            assert!(
                c.admit(&caps(), "push", tz, t(&format!("{day}T10:00:00Z")))
                    .is_ok()
            );
        }
        let sunday = c.admit(&caps(), "push", tz, t("2026-11-22T10:00:00Z"));
        assert!(sunday.unwrap_err().contains("cap 3/week"));
        // Monday: a new ISO week.
        assert!(
            c.admit(&caps(), "push", tz, t("2026-11-23T10:00:00Z"))
                .is_ok()
        );
        // Other channels have no rule here.
        for _ in 0..5 {
            assert!(
                c.admit(&caps(), "email", tz, t("2026-11-23T10:00:00Z"))
                    .is_ok()
            );
        }
    }
}
