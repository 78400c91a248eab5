//! churn_risk → `notifications`: a repeat customer whose BG/NBD P(alive) falls below a
//! threshold.
//!
//! Exactly `triggers.md`: per customer, over `purchase` events, in UTC calendar days as
//! `lifetimes` counts them with `freq="D"`: `x` distinct purchase days after the first,
//! `t_x` whole days from the first purchase day to the last, `T` fractional days from
//! 00:00 UTC of the first purchase day to the clock. With `x ≥ 1`, P(alive) only falls
//! as `T` grows, so the instant it drops below `threshold` is solved in closed form:
//!
//! ```text
//! P < p  ⇔  (α + T) > (α + t_x) · ((1/p − 1) · (b + x − 1) / a)^(1 / (r + x))
//! ```
//!
//! then settled to the first whole second at which P(alive) is below (checked against
//! the formula itself, so floating-point rounding cannot move it). One timer per
//! customer, never polled. A purchase on a new day starts a new episode (and moves the
//! timer); a second purchase the same day changes nothing; one action per episode.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::action::{Action, OutputTopic};
use crate::churn::{BgNbd, Rfm};
use crate::config::ChurnRiskConfig;
use crate::event::{Event, EventKind, Interest, Str};
use crate::operator::{Context, KeyState, Operator};
use crate::state::{KeyedState, StateImage};
use crate::time::Timestamp;

/// The trigger's name in actions and metrics.
pub const NAME: &str = "churn_risk";
const RULE_VERSION: &str = "1";
const TEMPLATE: &str = "churn_winback";
const DAY: i64 = 86_400;
const TAG: u64 = 0;
/// The latest instant a crossing is scheduled at, seconds (year 2255).
const LATEST: i64 = 9_000_000_000;

/// The operator.
pub struct ChurnRisk {
    model: BgNbd,
    threshold: f64,
    channel: String,
    customers: KeyedState<Customer>,
}

/// One customer's purchase days and the current episode.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Customer {
    /// Distinct UTC purchase days (days since 1970-01-01), ascending.
    days: Vec<i64>,
    #[serde(with = "crate::money::exact")]
    total_spend: Decimal,
    currency: Option<Str>,
    #[serde(with = "crate::time::nanos::opt")]
    last_purchase_at: Option<Timestamp>,
    /// The armed crossing, if any.
    #[serde(with = "crate::time::nanos::opt")]
    due: Option<Timestamp>,
    /// This episode's action has fired.
    fired: bool,
    anonymous_id: Option<Str>,
}

impl Customer {
    fn rfm(&self, at: Timestamp) -> Option<Rfm> {
        let (first, last) = (*self.days.first()?, *self.days.last()?);
        Some(Rfm {
            x: (self.days.len() - 1) as f64,
            t_x: (last - first) as f64,
            t: at.since(Timestamp::from_secs(first * DAY)).as_secs_f64() / DAY as f64,
        })
    }
}

impl ChurnRisk {
    /// The trigger as `cfg` sets it up.
    pub fn new(cfg: &ChurnRiskConfig) -> Self {
        ChurnRisk {
            model: BgNbd {
                r: cfg.r,
                alpha: cfg.alpha,
                a: cfg.a,
                b: cfg.b,
            },
            threshold: cfg.threshold,
            channel: cfg.channel.clone(),
            customers: KeyedState::default(),
        }
    }

    /// The first whole second at or after `from` at which P(alive) of a customer with
    /// these purchase days is below the threshold; `from` itself when it already is.
    /// `None` when it never falls (no repeat purchase).
    fn crossing(&self, c: &Customer, from: Timestamp) -> Option<Timestamp> {
        let below = |at: Timestamp| {
            c.rfm(at)
                .is_some_and(|h| h.x >= 1.0 && self.model.p_alive(h) < self.threshold)
        };
        let h = c.rfm(from)?;
        if h.x < 1.0 {
            return None;
        }
        if below(from) {
            return Some(from);
        }
        let BgNbd { r, alpha, a, b } = self.model;
        let k = (1.0 / self.threshold - 1.0) * (b + h.x - 1.0) / a;
        let t_star = (alpha + h.t_x) * k.powf(1.0 / (r + h.x)) - alpha;
        let first = c.days[0] * DAY;
        // `t_star` days after the first day's start, as a whole second; then settled
        // exactly, since P(alive) decreases strictly in T. Beyond the representable
        // range (centuries away) there is nothing to schedule.
        let guess = (t_star * DAY as f64).ceil();
        if !guess.is_finite() || guess > (LATEST - first) as f64 {
            return None;
        }
        let mut s = (first + guess as i64).max(from.as_secs() + 1);
        let secs = Timestamp::from_secs;
        while s > from.as_secs() + 1 && below(secs(s - 1)) {
            s -= 1;
        }
        for _ in 0..8 {
            if below(secs(s)) {
                break;
            }
            s += 1;
        }
        Some(secs(s))
    }

    fn emit(&self, c: &Customer, at: Timestamp, ctx: &mut Context<'_>) {
        let Some(h) = c.rfm(at) else {
            return;
        };
        let p = self.model.p_alive(h);
        let key = ctx.key();
        let spend = c.total_spend.normalize();
        ctx.emit(Action {
            customer_id: Some(key.to_owned()),
            anonymous_id: c.anonymous_id.as_ref().map(|a| a.to_string()),
            channel: self.channel.clone(),
            template: TEMPLATE.to_owned(),
            reason: format!(
                "P(alive) {p:.4} fell below {}: {} repeat purchase day{} over {} days, none for {:.1} days",
                self.threshold,
                h.x,
                if h.x == 1.0 { "" } else { "s" },
                h.t_x,
                h.t - h.t_x
            ),
            payload: json!({
                "p_alive": (p * 1e4).round() / 1e4,
                "x": h.x as u64,
                "t_x": h.t_x as u64,
                "T": h.t,
                "last_purchase_at": c.last_purchase_at,
                "total_spend": spend.to_string(),
                "currency": c.currency,
            }),
            ..Action::new(NAME, RULE_VERSION, key, at, OutputTopic::Notifications)
        });
    }

    /// Arms (or fires) the current episode of the customer of `ctx` at `ctx.now()`.
    fn schedule(&mut self, ctx: &mut Context<'_>) {
        let now = ctx.now();
        let Some(mut c) = self.customers.remove(ctx.key()) else {
            return;
        };
        let at = if c.fired {
            None
        } else {
            self.crossing(&c, now)
        };
        if let Some(d) = c.due.take() {
            ctx.cancel_timer(TAG, d);
        }
        match at {
            Some(at) if at <= now => {
                self.emit(&c, now, ctx);
                c.fired = true;
            }
            Some(at) => {
                ctx.set_timer(TAG, at);
                c.due = Some(at);
            }
            None => {}
        }
        self.customers.insert(ctx.key(), c);
    }
}

impl Operator for ChurnRisk {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interest(&self) -> Interest {
        Interest::types(&["purchase"])
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context<'_>) {
        let EventKind::Purchase(tx) = &event.kind else {
            return;
        };
        let t = event.timestamp;
        let day = t.as_secs().div_euclid(DAY);
        let c = self.customers.get_or_default(ctx.key());
        c.total_spend += tx.value.unwrap_or_default();
        if tx.currency.is_some() {
            c.currency.clone_from(&tx.currency);
        }
        if event.anonymous_id.is_some() {
            c.anonymous_id.clone_from(&event.anonymous_id);
        }
        c.last_purchase_at = Some(c.last_purchase_at.map_or(t, |l| l.max(t)));
        match c.days.binary_search(&day) {
            // A second purchase the same day changes nothing.
            Ok(_) => {}
            Err(i) => {
                c.days.insert(i, day);
                c.fired = false;
                self.schedule(ctx);
            }
        }
    }

    fn on_timer(&mut self, _tag: u64, ctx: &mut Context<'_>) {
        let now = ctx.now();
        let Some(c) = self.customers.get_mut(ctx.key()) else {
            return;
        };
        if c.due != Some(now) || c.fired {
            return;
        }
        c.due = None;
        c.fired = true;
        let c = c.clone();
        self.emit(&c, now, ctx);
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
        let before = into.days.clone();
        into.days.extend(from.days);
        into.days.sort_unstable();
        into.days.dedup();
        into.total_spend += from.total_spend;
        into.last_purchase_at = into.last_purchase_at.max(from.last_purchase_at);
        if into.currency.is_none() {
            into.currency = from.currency;
        }
        if into.anonymous_id.is_none() {
            into.anonymous_id = from.anonymous_id;
        }
        if into.days != before {
            into.fired = false;
        }
        self.schedule(ctx);
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

    fn live(&self, now: Timestamp, out: &mut crate::live::Live) {
        for (key, c) in self.customers.iter() {
            out.rfm.push(crate::live::RfmRow {
                customer_key: key.clone(),
                recency_days: c
                    .last_purchase_at
                    .map(|t| now.since(t).as_secs_f64().div_euclid(DAY as f64) as i64),
                frequency: c.days.len() as u32,
                monetary: c.total_spend,
                currency: c.currency.clone(),
                last_purchase_at: c.last_purchase_at,
                p_alive: c.rfm(now).map(|h| self.model.p_alive(h)),
            });
        }
    }
}

#[cfg(test)]
mod tests;
