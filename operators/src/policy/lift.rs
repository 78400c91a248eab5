//! Lift: a `purchase` by a customer within `attribution_window` after their latest
//! written action of trigger X (treatment or control) counts one conversion of X in that
//! action's group, with its `value`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smallvec::SmallVec;

use super::Packed;
use crate::action::Group;
use crate::event::Str;
use crate::time::{Span, Timestamp};

/// A customer's latest written action per trigger. Most customers were sent one
/// trigger's actions: its touch sits in the customer's state, not in an allocation of its
/// own (which would take room for four).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latest(SmallVec<[Touch; 1]>);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Touch {
    /// Inline: trigger names are short.
    trigger: Str,
    action_id: String,
    group: Group,
    #[serde(with = "crate::time::nanos")]
    fired_at: Timestamp,
}

/// One purchase credited to one action: a record on the `conversions` topic.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conversion {
    /// Deterministic: from the action and the transaction.
    pub conversion_id: String,
    /// The action credited.
    pub action_id: String,
    /// Its trigger.
    pub trigger: String,
    /// Its group.
    pub group: Group,
    /// The customer key.
    pub customer_id: String,
    /// When the action was due.
    pub fired_at: Timestamp,
    /// The purchase.
    pub transaction_id: String,
    /// When it was made.
    pub purchased_at: Timestamp,
    /// What was paid.
    pub value: Decimal,
    /// ISO 4217 code.
    pub currency: Option<String>,
}

/// A purchase, as the policies see it.
pub struct Purchase<'a> {
    /// The customer key.
    pub customer: &'a str,
    /// The order.
    pub transaction_id: &'a str,
    /// When.
    pub at: Timestamp,
    /// Total paid.
    pub value: Decimal,
    /// ISO 4217 code.
    pub currency: Option<&'a str>,
}

impl Latest {
    /// Remembers `action` as the latest of its trigger.
    pub fn record(&mut self, action: &Packed) {
        match self.0.iter_mut().find(|t| t.trigger == action.trigger()) {
            Some(t) if t.fired_at <= action.fired_at => {
                // In place: the id's buffer is reused.
                t.action_id.clear();
                t.action_id.push_str(action.action_id());
                t.group = action.group;
                t.fired_at = action.fired_at;
            }
            Some(_) => {}
            None => self.0.push(Touch {
                trigger: Str::from(action.trigger()),
                action_id: action.action_id().to_owned(),
                group: action.group,
                fired_at: action.fired_at,
            }),
        }
    }

    /// The conversions `purchase` makes: one per trigger whose latest action was due
    /// within `window` before it (strictly before, at most `window` before).
    pub fn attribute(&mut self, purchase: &Purchase<'_>, window: Span, out: &mut Vec<Conversion>) {
        self.0.retain(|t| purchase.at <= t.fired_at.plus(window));
        for t in &self.0 {
            if t.fired_at < purchase.at {
                out.push(Conversion {
                    conversion_id: conversion_id(&t.action_id, purchase.transaction_id),
                    action_id: t.action_id.clone(),
                    trigger: t.trigger.to_string(),
                    group: t.group,
                    customer_id: purchase.customer.to_owned(),
                    fired_at: t.fired_at,
                    transaction_id: purchase.transaction_id.to_owned(),
                    purchased_at: purchase.at,
                    value: purchase.value,
                    currency: purchase.currency.map(str::to_owned),
                });
            }
        }
    }

    /// Whether no action is remembered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn conversion_id(action_id: &str, transaction_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(action_id.as_bytes());
    h.update([0x1f]);
    h.update(transaction_id.as_bytes());
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, OutputTopic};

    fn action(trigger: &str, secs: i64, group: Group) -> Packed {
        Packed::new(&Action {
            group,
            ..Action::new(
                trigger,
                "1",
                "m-1",
                Timestamp::from_secs(secs),
                OutputTopic::Notifications,
            )
        })
    }

    fn buy(secs: i64) -> Purchase<'static> {
        Purchase {
            customer: "m-1",
            transaction_id: "o-1",
            at: Timestamp::from_secs(secs),
            value: Decimal::new(2580, 2),
            currency: Some("CNY"),
        }
    }

    #[test]
    fn a_purchase_credits_the_latest_action_of_each_trigger_within_the_window() {
        let week = Span::from_secs(7 * 86_400);
        let mut l = Latest::default();
        l.record(&action("abandoned_cart", 1000, Group::Treatment));
        l.record(&action("abandoned_cart", 2000, Group::Treatment));
        l.record(&action("birthday", 1500, Group::Control));
        let mut out = Vec::new();
        l.attribute(&buy(2000), week, &mut out);
        assert_eq!(
            out.len(),
            1,
            "a purchase at the action's instant is not after it"
        );
        assert_eq!(
            (out[0].trigger.as_str(), out[0].group),
            ("birthday", Group::Control)
        );
        out.clear();
        l.attribute(&buy(2001), week, &mut out);
        assert_eq!(out.len(), 2);
        let cart = out.iter().find(|c| c.trigger == "abandoned_cart").unwrap();
        assert_eq!(cart.fired_at, Timestamp::from_secs(2000), "the latest one");
        assert_eq!(cart.value.to_string(), "25.80");
        out.clear();
        l.attribute(&buy(2000 + 7 * 86_400), week, &mut out);
        assert_eq!(
            out.len(),
            1,
            "exactly a week after the cart action still counts"
        );
        out.clear();
        l.attribute(&buy(2001 + 7 * 86_400), week, &mut out);
        assert!(out.is_empty() && l.is_empty());
    }
}
