//! birthday → `notifications`: a greeting at a local time of day, once a year.
//!
//! Exactly `triggers.md`: from `customers` profiles with a `birthday`; the time zone is
//! the profile's `timezone`, else its home store's (from the `stores` reference state),
//! else `default_timezone`. Due at `send_at_local`, `days_before` days before the
//! birthday; a 29 February birthday falls on 28 February (or 1 March) in common years.
//! At most one per customer per birthday year (the year is part of the `action_id`
//! key). A profile that arrives after this year's instant but on the same local date
//! fires at once; later than that, it waits for next year. Local times that a
//! daylight-saving change skips or repeats resolve to the first valid instant
//! ([`local::instant`]).
//!
//! State per customer: the birthday, the zone inputs, the last year greeted and the
//! armed instant. A profile update recomputes the instant and moves the timer. The zone
//! is re-resolved when the timer fires, so a home store whose record arrived after the
//! profile still sets the local time.

use chrono::{Datelike, NaiveDate, NaiveTime};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::action::{Action, OutputTopic};
use crate::config::{BirthdayConfig, LeapDay, parse_hhmm};
use crate::event::{Event, EventKind, Interest, Str};
use crate::local;
use crate::operator::{Context, KeyState, Operator};
use crate::state::{KeyedState, StateImage};
use crate::time::Timestamp;

/// The trigger's name in actions and metrics.
pub const NAME: &str = "birthday";
const RULE_VERSION: &str = "1";
const TEMPLATE: &str = "birthday_greeting";
const TAG: u64 = 0;

/// The operator.
pub struct Birthday {
    send_at: NaiveTime,
    days_before: u32,
    leap_day: LeapDay,
    default_zone: Tz,
    channel: String,
    customers: KeyedState<Customer>,
}

/// One customer's birthday and schedule.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Customer {
    /// (month, day).
    birthday: Option<(u32, u32)>,
    timezone: Option<Str>,
    home_store: Option<Str>,
    /// The last birthday year greeted.
    last_year: Option<i32>,
    /// The armed instant and the birthday year it greets.
    #[serde(with = "crate::time::nanos::opt")]
    due: Option<Timestamp>,
    due_year: i32,
}

/// `MM-DD` of `YYYY-MM-DD` or `--MM-DD` (the decoder has checked the form).
fn month_day(b: &str) -> Option<(u32, u32)> {
    let md = b.get(b.len().checked_sub(5)?..)?;
    let (m, d) = md.split_once('-')?;
    let (m, d) = (m.parse().ok()?, d.parse().ok()?);
    NaiveDate::from_ymd_opt(2000, m, d).map(|_| (m, d))
}

impl Birthday {
    /// The trigger as `cfg` sets it up (a bad `send_at_local` or zone falls back to the
    /// defaults; config validation reports them before a run).
    pub fn new(cfg: &BirthdayConfig) -> Self {
        let (h, m) = parse_hhmm(&cfg.send_at_local).unwrap_or((9, 0));
        Birthday {
            send_at: NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN),
            days_before: cfg.days_before,
            leap_day: cfg.leap_day,
            default_zone: local::zone(&cfg.default_timezone).unwrap_or(Tz::UTC),
            channel: cfg.channel.clone(),
            customers: KeyedState::default(),
        }
    }

    fn zone(&self, c: &Customer, ctx: &Context<'_>) -> Tz {
        c.timezone
            .as_deref()
            .and_then(local::zone)
            .or_else(|| {
                c.home_store
                    .as_deref()
                    .and_then(|s| ctx.reference().zone(s))
            })
            .unwrap_or(self.default_zone)
    }

    /// The local date the greeting for birthday year `year` is sent on.
    fn send_date(&self, (m, d): (u32, u32), year: i32) -> Option<NaiveDate> {
        let birthday = match NaiveDate::from_ymd_opt(year, m, d) {
            Some(b) => b,
            // 29 February in a common year.
            None => match self.leap_day {
                LeapDay::Feb28 => NaiveDate::from_ymd_opt(year, 2, 28)?,
                LeapDay::Mar1 => NaiveDate::from_ymd_opt(year, 3, 1)?,
            },
        };
        birthday.checked_sub_days(chrono::Days::new(u64::from(self.days_before)))
    }

    /// Fires what is due now and arms the next greeting of the customer of `ctx`.
    /// `same_day`: a profile just arrived, so this year's greeting, if its instant has
    /// passed earlier on today's local date, fires at once.
    fn schedule(&mut self, ctx: &mut Context<'_>, same_day: bool) {
        let now = ctx.now();
        let Some(c) = self.customers.get(ctx.key()) else {
            return;
        };
        let mut c = c.clone();
        if let Some(d) = c.due.take() {
            ctx.cancel_timer(TAG, d);
        }
        if let Some(md) = c.birthday {
            let tz = self.zone(&c, ctx);
            let today = local::date(tz, now);
            // The send date is on or before the birthday: its year is today's or later.
            let first = today.year();
            for year in first..=first + 1 + (self.days_before / 365) as i32 {
                if c.last_year.is_some_and(|l| l >= year) {
                    continue;
                }
                let Some(date) = self.send_date(md, year) else {
                    continue;
                };
                let at = local::at(tz, date, self.send_at);
                if at >= now {
                    ctx.set_timer(TAG, at);
                    c.due = Some(at);
                    c.due_year = year;
                    break;
                }
                if same_day && date == today {
                    self.emit(&c, year, now, tz, ctx);
                    c.last_year = Some(year);
                }
            }
        }
        self.customers.insert(ctx.key(), c);
    }

    fn emit(&self, c: &Customer, year: i32, at: Timestamp, tz: Tz, ctx: &mut Context<'_>) {
        let Some((m, d)) = c.birthday else {
            return;
        };
        let key = ctx.key();
        let days = match self.days_before {
            0 => "today".to_owned(),
            1 => "in 1 day".to_owned(),
            n => format!("in {n} days"),
        };
        ctx.emit(Action {
            customer_id: Some(key.to_owned()),
            store_id: c.home_store.as_ref().map(|s| s.to_string()),
            channel: self.channel.clone(),
            template: TEMPLATE.to_owned(),
            reason: format!(
                "birthday {m:02}-{d:02} {days}, {} local in {}",
                self.send_at.format("%H:%M"),
                tz.name()
            ),
            payload: json!({
                "birthday": format!("{m:02}-{d:02}"),
                "year": year,
                "days_before": self.days_before,
                "timezone": tz.name(),
                "local_send_at": self.send_at.format("%H:%M").to_string(),
            }),
            ..Action::new(
                NAME,
                RULE_VERSION,
                &format!("{key}/{year}"),
                at,
                OutputTopic::Notifications,
            )
        });
    }
}

impl Operator for Birthday {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interest(&self) -> Interest {
        // Stores only for the reference state: a home store's time zone.
        Interest::types(&["profile", "store"])
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context<'_>) {
        let EventKind::Profile(p) = &event.kind else {
            return;
        };
        let c = self.customers.get_or_default(ctx.key());
        if let Some(b) = &p.birthday {
            c.birthday = month_day(b);
        }
        if p.timezone.is_some() {
            c.timezone.clone_from(&p.timezone);
        }
        if p.home_store_id.is_some() {
            c.home_store.clone_from(&p.home_store_id);
        }
        if c.birthday.is_none() && c.due.is_none() {
            // Nothing to schedule and nothing to remember yet beyond the zone inputs,
            // which a later profile with a birthday may need.
            return;
        }
        self.schedule(ctx, true);
    }

    fn on_timer(&mut self, _tag: u64, ctx: &mut Context<'_>) {
        let now = ctx.now();
        let Some(c) = self.customers.get(ctx.key()) else {
            return;
        };
        if c.due != Some(now) {
            return;
        }
        let (mut c, year) = (c.clone(), c.due_year);
        c.due = None;
        let tz = self.zone(&c, ctx);
        // The zone may have become known since the timer was set (a home store's
        // record arriving after the profile): greet at the local time it gives.
        let at = c
            .birthday
            .and_then(|md| self.send_date(md, year))
            .map(|d| local::at(tz, d, self.send_at));
        match at {
            Some(at) if at > now => {
                ctx.set_timer(TAG, at);
                c.due = Some(at);
            }
            _ => {
                self.emit(&c, year, now, tz, ctx);
                c.last_year = Some(year);
                self.customers.insert(ctx.key(), c);
                self.schedule(ctx, false);
                return;
            }
        }
        self.customers.insert(ctx.key(), c);
    }

    fn export(&mut self, ctx: &mut Context<'_>) -> Option<KeyState> {
        let c = self.customers.remove(ctx.key())?;
        if let Some(d) = c.due {
            ctx.cancel_timer(TAG, d);
        }
        Some(Box::new(c))
    }

    fn import(&mut self, state: KeyState, ctx: &mut Context<'_>) {
        let Ok(from) = state.downcast::<Customer>() else {
            return;
        };
        let into = self.customers.get_or_default(ctx.key());
        into.birthday = into.birthday.or(from.birthday);
        into.timezone = into.timezone.take().or(from.timezone);
        into.home_store = into.home_store.take().or(from.home_store);
        into.last_year = into.last_year.max(from.last_year);
        self.schedule(ctx, false);
    }

    fn snapshot(&self) -> Box<dyn StateImage> {
        self.customers.image()
    }

    fn restore(&mut self, key: &str, bytes: &[u8]) -> Result<(), String> {
        self.customers.restore(key, bytes)
    }

    fn key_count(&self) -> usize {
        self.customers.len()
    }
}

#[cfg(test)]
mod tests;
