//! An action as the policies carry it: its text in one allocation and its payload
//! already encoded.
//!
//! An action waits in its arbitration window, and perhaps for quiet hours, long after its
//! trigger made it. An [`Action`] is a tree of a dozen allocations (its payload many
//! more), cold by the time it is written, and freed by another thread than made it.
//! Packed on the worker that made it, while it is fresh, it is one buffer: writing it
//! later reads that buffer and nothing else, and the record is byte for byte the one the
//! action itself would give.

use serde::{Deserialize, Serialize};

use crate::action::{Action, Group, OutputTopic};
use crate::time::Timestamp;

/// The texts of a packed action, in buffer order.
#[derive(Clone, Copy)]
enum Part {
    ActionId,
    Trigger,
    RuleVersion,
    CustomerId,
    AnonymousId,
    StoreId,
    Channel,
    Template,
    Reason,
    Payload,
}
const PARTS: usize = 10;

/// A customer-facing action on its way through the policies.
#[derive(Clone, PartialEq)]
pub struct Packed {
    /// Every text, one after the other; the payload as JSON.
    text: Box<str>,
    /// Where each part ends in `text`.
    ends: [u32; PARTS],
    /// Which of the optional parts (customer, device, store) are present: bit per part.
    present: u16,
    /// Event time at which the action became due.
    pub fired_at: Timestamp,
    /// Wall-clock time of the write; set by the sink.
    pub emitted_at: Option<Timestamp>,
    /// Treatment or control.
    pub group: Group,
    /// Where it goes.
    pub topic: OutputTopic,
}

impl Packed {
    /// Packs `a`, encoding its payload.
    pub fn new(a: &Action) -> Packed {
        let optional = [&a.customer_id, &a.anonymous_id, &a.store_id];
        let known: usize = [&a.action_id, &a.trigger, &a.rule_version, &a.channel]
            .into_iter()
            .chain([&a.template, &a.reason])
            .map(String::len)
            .chain(optional.into_iter().flatten().map(|s| s.len()))
            .sum();
        // Room for the payload too, most of the time: growing copies the lot.
        let mut text = Vec::with_capacity(known + 256);
        let mut ends = [0u32; PARTS];
        let mut present = 0u16;
        let mut put = |text: &mut Vec<u8>, part: Part, s: Option<&str>| {
            if let Some(s) = s {
                text.extend_from_slice(s.as_bytes());
                present |= 1 << part as u16;
            }
            ends[part as usize] = text.len() as u32;
        };
        put(&mut text, Part::ActionId, Some(&a.action_id));
        put(&mut text, Part::Trigger, Some(&a.trigger));
        put(&mut text, Part::RuleVersion, Some(&a.rule_version));
        put(&mut text, Part::CustomerId, a.customer_id.as_deref());
        put(&mut text, Part::AnonymousId, a.anonymous_id.as_deref());
        put(&mut text, Part::StoreId, a.store_id.as_deref());
        put(&mut text, Part::Channel, Some(&a.channel));
        put(&mut text, Part::Template, Some(&a.template));
        put(&mut text, Part::Reason, Some(&a.reason));
        // The payload's JSON goes straight after the texts, with no buffer of its own.
        let texts = text.len();
        if sonic_rs::to_writer(&mut text, &a.payload).is_err() {
            // A JSON value always encodes; should it not, the payload reads `null`.
            text.truncate(texts);
            text.extend_from_slice(b"null");
        }
        let text = String::from_utf8(text).unwrap_or_else(|e| {
            // The texts are `str`s and the encoder writes UTF-8; should that not hold,
            // the payload reads `null` rather than half a character.
            let mut b = e.into_bytes();
            b.truncate(texts);
            b.extend_from_slice(b"null");
            String::from_utf8(b).unwrap_or_default()
        });
        ends[Part::Payload as usize] = text.len() as u32;
        present |= 1 << Part::Payload as u16;
        Packed {
            text: text.into_boxed_str(),
            ends,
            present,
            fired_at: a.fired_at,
            emitted_at: a.emitted_at,
            group: a.group,
            topic: a.topic,
        }
    }

    /// The action again (for what needs the whole of it: a checkpoint, a report's samples).
    pub fn unpack(&self) -> Action {
        let own = |p: Part| self.opt(p).map(str::to_owned);
        Action {
            action_id: self.action_id().to_owned(),
            trigger: self.trigger().to_owned(),
            rule_version: self.rule_version().to_owned(),
            customer_id: own(Part::CustomerId),
            anonymous_id: own(Part::AnonymousId),
            store_id: own(Part::StoreId),
            channel: self.channel().to_owned(),
            template: self.template().to_owned(),
            fired_at: self.fired_at,
            emitted_at: self.emitted_at,
            group: self.group,
            reason: self.reason().to_owned(),
            payload: serde_json::from_str(self.payload_json()).unwrap_or_default(),
            topic: self.topic,
            route: crate::event::Str::default(),
        }
    }

    fn part(&self, p: Part) -> &str {
        let i = p as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn opt(&self, p: Part) -> Option<&str> {
        (self.present & (1 << p as u16) != 0).then(|| self.part(p))
    }

    /// Deterministic id (see [`action_id`](crate::action::action_id)).
    pub fn action_id(&self) -> &str {
        self.part(Part::ActionId)
    }

    /// The trigger (or SQL rule) that fired.
    pub fn trigger(&self) -> &str {
        self.part(Part::Trigger)
    }

    /// The version of the trigger's rule.
    pub fn rule_version(&self) -> &str {
        self.part(Part::RuleVersion)
    }

    /// The customer key.
    pub fn customer_id(&self) -> Option<&str> {
        self.opt(Part::CustomerId)
    }

    /// The customer's latest anonymous id, where known.
    pub fn anonymous_id(&self) -> Option<&str> {
        self.opt(Part::AnonymousId)
    }

    /// The store, for store-bound actions.
    pub fn store_id(&self) -> Option<&str> {
        self.opt(Part::StoreId)
    }

    /// `push`, `sms`, `email`, ...
    pub fn channel(&self) -> &str {
        self.part(Part::Channel)
    }

    /// The template marketing automation renders.
    pub fn template(&self) -> &str {
        self.part(Part::Template)
    }

    /// Why it fired, in words.
    pub fn reason(&self) -> &str {
        self.part(Part::Reason)
    }

    /// Trigger-specific details, as JSON.
    pub fn payload_json(&self) -> &str {
        self.part(Part::Payload)
    }

    /// Appends the action's record to `buf`: the bytes its [`Action`] encodes to.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        with_payload(buf, &self.record::<()>(None, None), self.payload_json());
    }

    /// Its record: a notification's, or with `stopped` (reason code, detail, when) a
    /// suppression's; without `payload`, all but the payload.
    pub(super) fn record<'a, P>(
        &'a self,
        stopped: Option<(&'a str, &'a str, Timestamp)>,
        payload: Option<P>,
    ) -> Record<'a, P> {
        Record {
            action_id: self.action_id(),
            trigger: self.trigger(),
            rule_version: self.rule_version(),
            customer_id: self.customer_id(),
            anonymous_id: self.anonymous_id(),
            store_id: self.store_id(),
            channel: self.channel(),
            template: self.template(),
            fired_at: self.fired_at,
            emitted_at: self.emitted_at,
            group: self.group,
            reason: stopped.map_or(self.reason(), |(code, ..)| code),
            detail: stopped.map(|(_, detail, _)| detail),
            suppressed_at: stopped.map(|(.., at)| at),
            action_reason: stopped.map(|_| self.reason()),
            payload,
        }
    }
}

/// An action's record, in the order of `docs/events.md`; a suppression's adds why it
/// was stopped before the payload.
#[derive(Serialize)]
pub(super) struct Record<'a, P> {
    action_id: &'a str,
    trigger: &'a str,
    rule_version: &'a str,
    customer_id: Option<&'a str>,
    anonymous_id: Option<&'a str>,
    store_id: Option<&'a str>,
    channel: &'a str,
    template: &'a str,
    fired_at: Timestamp,
    emitted_at: Option<Timestamp>,
    group: Group,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<P>,
}

/// Appends `record`'s JSON with `"payload":<payload>` as its last field.
pub(super) fn with_payload<T: Serialize>(buf: &mut Vec<u8>, record: &T, payload: &str) {
    // Structs of strings and instants always encode.
    let _ = sonic_rs::to_writer(&mut *buf, record);
    if buf.last() == Some(&b'}') {
        buf.pop();
    }
    buf.extend_from_slice(b",\"payload\":");
    buf.extend_from_slice(payload.as_bytes());
    buf.push(b'}');
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.unpack().fmt(f)
    }
}

/// In a checkpoint a packed action is the action.
impl Serialize for Packed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.unpack().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Action::deserialize(d).map(|a| Packed::new(&a))
    }
}

impl From<Action> for Packed {
    fn from(a: Action) -> Packed {
        Packed::new(&a)
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::{Reason, Suppression};
    use super::*;

    fn full() -> Action {
        let at = Timestamp::parse_rfc3339("2026-11-20T10:45:00Z").unwrap();
        Action {
            customer_id: Some("m-1001".into()),
            anonymous_id: Some("dev-\"7f3a\"".into()),
            channel: "push".into(),
            template: "abandoned_cart_reminder".into(),
            emitted_at: Some(at),
            group: Group::Control,
            reason: "cart cart-88 idle 30m, value 25.80 CNY \u{1f}é".into(),
            payload: serde_json::json!({
                "cart_id": "cart-88",
                "items": [{"item_id": "sku-123", "price": "12.90", "quantity": 2}],
                "value": "25.80"
            }),
            ..Action::new(
                "abandoned_cart",
                "1",
                "m-1001",
                at,
                OutputTopic::Notifications,
            )
        }
    }

    #[test]
    fn a_packed_action_encodes_and_unpacks_to_the_action_itself() {
        let bare = Action::new(
            "birthday",
            "2",
            "m-2",
            Timestamp::from_secs(1),
            OutputTopic::Notifications,
        );
        for a in [full(), bare] {
            let p = Packed::new(&a);
            assert_eq!(p.unpack(), a);
            let mut buf = Vec::new();
            p.encode(&mut buf);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                serde_json::to_string(&a).unwrap()
            );
            assert_eq!(
                (p.action_id(), p.trigger(), p.customer_id()),
                (
                    a.action_id.as_str(),
                    a.trigger.as_str(),
                    a.customer_id.as_deref()
                )
            );
            // A checkpoint's JSON of a packed action is the action's.
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, serde_json::to_string(&a).unwrap());
            assert_eq!(serde_json::from_str::<Packed>(&json).unwrap(), p);
        }
    }

    #[test]
    fn a_packed_suppression_encodes_as_its_record() {
        let s = Suppression {
            action: Packed::new(&full()),
            reason: Reason::Arbitration,
            detail: "birthday (priority 5) won".into(),
            at: Timestamp::from_secs(7),
        };
        let mut buf = Vec::new();
        s.encode(&mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            serde_json::to_string(&s).unwrap()
        );
    }
}
