//! return_abuse → `alerts`: a customer whose refunds in a sliding window reach a count.
//!
//! Exactly `triggers.md`: at each `refund` at `t`, the customer's refunds with timestamps
//! in (t − `window`, t] are counted; at `min_refunds` or more, and no return_abuse alert
//! for them within `cooldown` (between `fired_at`s), one alert fires at `t` with the
//! count, the refunds' summed `value` and `window_start`.
//!
//! State per customer: the refunds of the last window (timestamp, value), oldest first,
//! and when the last alert fired. Events reach an operator in event-time order, so a
//! refund older than the window behind the newest can be dropped; a late refund (one
//! older than the clock on arrival) is counted against the refunds still kept.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::action::{Action, OutputTopic};
use crate::config::ReturnAbuseConfig;
use crate::event::{Event, EventKind, Interest};
use crate::operator::{Context, KeyState, Operator};
use crate::state::{KeyedState, StateImage};
use crate::time::{Span, Timestamp};

/// The trigger's name in actions and metrics.
pub const NAME: &str = "return_abuse";
const RULE_VERSION: &str = "1";
/// Alerts go to risk teams, not to the customer: no consumer channel.
const CHANNEL: &str = "ops";
const TEMPLATE: &str = "return_abuse_alert";

/// The operator.
pub struct ReturnAbuse {
    window: Span,
    min_refunds: usize,
    cooldown: Span,
    customers: KeyedState<Customer>,
}

/// One customer's recent refunds and last alert.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Customer {
    /// Refunds of the last window, by timestamp.
    refunds: Vec<Refund>,
    #[serde(with = "crate::time::nanos::opt")]
    last_fired: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Refund {
    #[serde(with = "crate::time::nanos")]
    at: Timestamp,
    #[serde(with = "crate::money::exact")]
    value: Decimal,
}

impl ReturnAbuse {
    /// The trigger as `cfg` sets it up.
    pub fn new(cfg: &ReturnAbuseConfig) -> Self {
        let day = 86_400;
        ReturnAbuse {
            window: Span::from_secs(i64::from(cfg.window_days) * day),
            min_refunds: cfg.min_refunds.max(1) as usize,
            cooldown: Span::from_secs(i64::from(cfg.cooldown_days) * day),
            customers: KeyedState::default(),
        }
    }
}

impl Operator for ReturnAbuse {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interest(&self) -> Interest {
        Interest::types(&["refund"])
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context<'_>) {
        let EventKind::Refund(tx) = &event.kind else {
            return;
        };
        let t = event.timestamp;
        let key = ctx.key();
        let c = self.customers.get_or_default(key);
        let i = c.refunds.partition_point(|r| r.at <= t);
        c.refunds.insert(
            i,
            Refund {
                at: t,
                value: tx.value.unwrap_or_default(),
            },
        );
        // Nothing older than a window behind the newest refund can count again.
        let newest = c.refunds.last().map_or(t, |r| r.at);
        let keep_from = c
            .refunds
            .partition_point(|r| newest.since(r.at) >= self.window);
        c.refunds.drain(..keep_from);

        let window_start = t.minus(self.window);
        let counted = c
            .refunds
            .iter()
            .filter(|r| r.at > window_start && r.at <= t);
        let (count, value) =
            counted.fold((0usize, Decimal::ZERO), |(n, v), r| (n + 1, v + r.value));
        if count < self.min_refunds {
            return;
        }
        if c.last_fired
            .is_some_and(|last| t.since(last) < self.cooldown)
        {
            return;
        }
        c.last_fired = Some(t);
        let reason = format!(
            "{count} refunds worth {value} within {} (threshold {})",
            self.window.human(),
            self.min_refunds
        );
        ctx.emit(Action {
            customer_id: Some(key.to_owned()),
            anonymous_id: event.anonymous_id.as_ref().map(|a| a.to_string()),
            store_id: event.store_id.as_ref().map(|s| s.to_string()),
            channel: CHANNEL.to_owned(),
            template: TEMPLATE.to_owned(),
            reason,
            payload: json!({
                "refunds": count,
                "refund_value": value.to_string(),
                "window_start": window_start,
                "transaction_id": tx.transaction_id.as_str(),
            }),
            ..Action::new(NAME, RULE_VERSION, key, t, OutputTopic::Alerts)
        });
    }

    fn on_timer(&mut self, _tag: u64, _ctx: &mut Context<'_>) {}

    fn export(&mut self, ctx: &mut Context<'_>) -> Option<KeyState> {
        let customer = self.customers.remove(ctx.key())?;
        Some(Box::new(customer))
    }

    fn import(&mut self, state: KeyState, ctx: &mut Context<'_>) {
        let Ok(from) = state.downcast::<Customer>() else {
            return;
        };
        let into = self.customers.get_or_default(ctx.key());
        into.last_fired = into.last_fired.max(from.last_fired);
        into.refunds.extend(from.refunds);
        into.refunds.sort_by_key(|r| r.at);
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
