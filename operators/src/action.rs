//! Output records: actions (`notifications`, `markdowns`, `alerts`) and dead letters.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::Timestamp;

/// An output topic footfall writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum OutputTopic {
    /// Customer-facing actions.
    #[default]
    Notifications,
    /// Price actions on a store's item.
    Markdowns,
    /// Risk and health findings.
    Alerts,
    /// Input records that could not be used.
    Deadletter,
    /// Customer-facing actions the delivery policies stopped, with the reason.
    Suppressions,
    /// Purchases credited to actions (lift).
    Conversions,
}

impl OutputTopic {
    /// Every output topic.
    pub const ALL: [OutputTopic; 6] = [
        OutputTopic::Notifications,
        OutputTopic::Markdowns,
        OutputTopic::Alerts,
        OutputTopic::Deadletter,
        OutputTopic::Suppressions,
        OutputTopic::Conversions,
    ];

    /// The topic's name.
    pub const fn name(self) -> &'static str {
        match self {
            OutputTopic::Notifications => "notifications",
            OutputTopic::Markdowns => "markdowns",
            OutputTopic::Alerts => "alerts",
            OutputTopic::Deadletter => "deadletter",
            OutputTopic::Suppressions => "suppressions",
            OutputTopic::Conversions => "conversions",
        }
    }
}

impl fmt::Display for OutputTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Treatment (sent) or control (held out for lift, written but never sent).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Sent.
    #[default]
    Treatment,
    /// Held out.
    Control,
}

impl Group {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Treatment => "treatment",
            Group::Control => "control",
        }
    }
}

/// One action record, serialized in the field order of `docs/events.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Deterministic: see [`action_id`].
    pub action_id: String,
    /// The trigger (or SQL rule) that fired.
    pub trigger: String,
    /// The version of the trigger's rule.
    pub rule_version: String,
    /// The customer key.
    pub customer_id: Option<String>,
    /// The customer's latest anonymous id, where known.
    pub anonymous_id: Option<String>,
    /// The store, for store-bound actions.
    pub store_id: Option<String>,
    /// `push`, `sms`, `email`, ...
    pub channel: String,
    /// The template marketing automation renders.
    pub template: String,
    /// Event time at which the action became due.
    pub fired_at: Timestamp,
    /// Wall-clock time of the write; set by the sink.
    pub emitted_at: Option<Timestamp>,
    /// Treatment or control.
    pub group: Group,
    /// Why it fired, in words.
    pub reason: String,
    /// Trigger-specific details.
    pub payload: serde_json::Value,
    /// Where it goes.
    #[serde(skip)]
    pub topic: OutputTopic,
    /// The key of the state that produced it, which picks its output partition: one
    /// writer per output partition, so replays write every partition in the same
    /// order. Set by [`Context::emit`](crate::operator::Context::emit).
    #[serde(skip)]
    pub route: crate::event::Str,
}

impl Action {
    /// An action of `trigger` due at `fired_at`, its id from (`trigger`, `rule_version`,
    /// `key`, `fired_at`), in the treatment group until the holdout says otherwise. The
    /// trigger fills in who, where, why and what: `Action { reason, .., ..Action::new(..) }`.
    pub fn new(
        trigger: &str,
        rule_version: &str,
        key: &str,
        fired_at: Timestamp,
        topic: OutputTopic,
    ) -> Action {
        Action {
            action_id: action_id(trigger, rule_version, key, fired_at),
            trigger: trigger.to_owned(),
            rule_version: rule_version.to_owned(),
            customer_id: None,
            anonymous_id: None,
            store_id: None,
            channel: String::new(),
            template: String::new(),
            fired_at,
            emitted_at: None,
            group: Group::Treatment,
            reason: String::new(),
            payload: serde_json::Value::Null,
            topic,
            route: crate::event::Str::default(),
        }
    }
}

/// `action_id`: 32 lowercase hex characters, the first 16 bytes of SHA-256 over
/// (`trigger`, `rule_version`, key, due instant). Replays yield the same ids.
pub fn action_id(trigger: &str, rule_version: &str, key: &str, due: Timestamp) -> String {
    let mut h = Sha256::new();
    for part in [trigger.as_bytes(), rule_version.as_bytes(), key.as_bytes()] {
        h.update(part);
        h.update([0x1f]);
    }
    h.update(due.as_nanos().to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A dead-letter record: the input that could not be used, where it was, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: u32,
    /// Source offset.
    pub offset: u64,
    /// The bounded reason (`invalid_money`, ...).
    pub reason: &'static str,
    /// What exactly is wrong.
    pub error: String,
    /// The original bytes, when they are UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The original bytes in base64, when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// Wall-clock time footfall read the record.
    pub received_at: Timestamp,
}

impl DeadLetter {
    /// Builds the record, keeping the raw bytes as text or base64.
    pub fn new(
        topic: &str,
        partition: u32,
        offset: u64,
        reason: &'static str,
        error: String,
        raw: &[u8],
        received_at: Timestamp,
    ) -> Self {
        let (raw, raw_base64) = match std::str::from_utf8(raw) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(raw)),
            ),
        };
        DeadLetter {
            topic: topic.to_owned(),
            partition,
            offset,
            reason,
            error,
            raw,
            raw_base64,
            received_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_are_stable_hex() {
        let t = Timestamp::from_secs(1_700_000_000);
        let a = action_id("abandoned_cart", "1", "cart-88", t);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(a, action_id("abandoned_cart", "1", "cart-88", t));
        assert_ne!(a, action_id("abandoned_cart", "1", "cart-89", t));
        assert_ne!(a, action_id("abandoned_cart", "2", "cart-88", t));
    }

    #[test]
    fn non_utf8_raw_goes_to_base64() {
        let d = DeadLetter::new(
            "clickstream",
            0,
            7,
            "not_utf8",
            "x".into(),
            b"\xff\x00",
            Timestamp::from_secs(0),
        );
        assert_eq!(d.raw, None);
        assert_eq!(d.raw_base64.as_deref(), Some("/wA="));
    }
}
