//! What the policies take in and give out: facts, inputs, suppressions and their reasons.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::lift::Conversion;
use super::packed::Packed;
use crate::event::{Event, EventKind, Str};
use crate::time::Timestamp;

/// Why an action was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The channel's consent is not `true`.
    NoConsent,
    /// Another action of the customer won the arbitration window.
    Arbitration,
    /// A frequency cap of the channel was reached.
    FrequencyCap,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 3] = [Reason::NoConsent, Reason::Arbitration, Reason::FrequencyCap];

    /// The reason code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NoConsent => "no_consent",
            Reason::Arbitration => "arbitration",
            Reason::FrequencyCap => "frequency_cap",
        }
    }
}

/// An action the policies stopped: a record on the `suppressions` topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Suppression {
    /// The action as it would have been written.
    pub action: Packed,
    /// The reason code.
    pub reason: Reason,
    /// Why, in words.
    pub detail: String,
    /// Event time at which it was stopped.
    pub at: Timestamp,
}

impl Suppression {
    /// Why it was stopped: reason code, detail, when.
    fn stopped(&self) -> Option<(&str, &str, Timestamp)> {
        Some((self.reason.as_str(), &self.detail, self.at))
    }

    /// Appends the record to `buf`: the bytes its `Serialize` gives, with the payload
    /// the action was packed with.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let record = self.action.record::<()>(self.stopped(), None);
        super::packed::with_payload(buf, &record, self.action.payload_json());
    }
}

impl Serialize for Suppression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let payload: serde_json::Value =
            serde_json::from_str(self.action.payload_json()).unwrap_or_default();
        self.action
            .record(self.stopped(), Some(payload))
            .serialize(s)
    }
}

/// What the policies learn from a customer's own events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A `profile`: consent changes, time zone, home store (`None`: unchanged).
    Profile {
        /// The customer key.
        key: Str,
        /// Channels whose consent the profile states.
        consent: super::consent::Consent,
        /// IANA zone.
        timezone: Option<Str>,
        /// Home store.
        home_store: Option<Str>,
    },
    /// A `store`: its time zone.
    Store {
        /// The store.
        store_id: Str,
        /// IANA zone.
        timezone: Option<Str>,
    },
    /// A `purchase`, for attribution.
    Purchase {
        /// The customer key.
        key: Str,
        /// The order.
        transaction_id: Str,
        /// Total paid.
        value: Decimal,
        /// ISO 4217 code.
        currency: Option<Str>,
    },
    /// An `erase`.
    Erase {
        /// The customer key (or one of their anonymous keys).
        key: Str,
    },
    /// The customer's state expired: no event touched it for the state TTL.
    Expire {
        /// The customer key.
        key: Str,
    },
}

impl Fact {
    /// The fact `event`, resolved to `key`, carries for the policies, if any.
    pub fn of(key: &str, event: &Event) -> Option<Fact> {
        match &event.kind {
            EventKind::Profile(p) => Some(Fact::Profile {
                key: Str::from(key),
                consent: p
                    .consent
                    .as_ref()
                    .map(|c| c.iter().map(|(k, v)| (k, *v)).collect())
                    .unwrap_or_default(),
                timezone: p.timezone.clone(),
                home_store: p.home_store_id.clone(),
            }),
            EventKind::Store(s) => Some(Fact::Store {
                store_id: event.store_id.clone().unwrap_or_default(),
                timezone: s.timezone.clone(),
            }),
            EventKind::Purchase(tx) => Some(Fact::Purchase {
                key: Str::from(key),
                transaction_id: tx.transaction_id.clone(),
                value: tx.value.unwrap_or_default(),
                currency: tx.currency.clone(),
            }),
            _ => None,
        }
    }

    /// The customer it is about, if any.
    pub fn customer(&self) -> Option<&str> {
        match self {
            Fact::Profile { key, .. }
            | Fact::Purchase { key, .. }
            | Fact::Erase { key }
            | Fact::Expire { key } => Some(key),
            Fact::Store { .. } => None,
        }
    }
}

/// One input of a [`Policy`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A fact, at its event's time.
    Fact(Timestamp, Fact),
    /// A customer-facing action, at its `fired_at`, packed by the worker that made it.
    Action(Packed),
    /// SQL rules' priorities as their running versions give them, applied at once;
    /// a trigger `[policy.priority]` names keeps the config's.
    Priorities(std::collections::BTreeMap<String, i32>),
}

/// What the policies decided since the last call.
#[derive(Debug, Default)]
pub struct Output {
    /// Actions to write to `notifications` (treatment and control).
    pub written: Vec<Packed>,
    /// Actions stopped, to write to `suppressions`.
    pub suppressed: Vec<Suppression>,
    /// Purchases credited to actions, to write to `conversions`.
    pub conversions: Vec<Conversion>,
    /// Actions of erased customers, dropped without a record.
    pub erased: u64,
    /// Actions whose `action_id` was already written.
    pub duplicates: u64,
}

impl Output {
    /// Whether there is nothing to write or count.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
            && self.suppressed.is_empty()
            && self.conversions.is_empty()
            && self.erased == 0
            && self.duplicates == 0
    }
}
