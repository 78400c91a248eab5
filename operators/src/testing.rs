//! A harness for operator tests written as event sequences → expected actions.
//!
//! It resolves identities and drives a [`Worker`] exactly as the runtime does, minus the
//! runtime: events are applied in the order given and `advance` moves the clock.

use crate::action::Action;
use crate::decode::decode;
use crate::event::Topic;
use crate::identity::Identity;
use crate::operator::Operator;
use crate::time::{Span, Timestamp};
use crate::worker::{DEFAULT_STATE_TTL, Worker};

/// `"10:00:00"` on 2026-11-20 UTC, or a full RFC 3339 instant.
pub fn at(s: &str) -> Timestamp {
    let full = if s.contains('T') {
        s.to_owned()
    } else {
        format!("2026-11-20T{s}Z")
    };
    Timestamp::parse_rfc3339(&full).expect("test timestamp")
}

/// An event script against one worker.
pub struct Script {
    worker: Worker,
    identity: Identity,
    out: Vec<Action>,
    seq: u64,
    ttl: Span,
}

impl Script {
    /// A script over `operators`, everyone in treatment.
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        Script {
            worker: Worker::new(operators),
            identity: Identity::default(),
            out: Vec::new(),
            seq: 0,
            ttl: DEFAULT_STATE_TTL,
        }
    }

    /// The same script with a state TTL other than the default.
    pub fn with_state_ttl(mut self, ttl: Span) -> Self {
        self.ttl = ttl;
        self.worker = self.worker.with_state_ttl(ttl);
        self
    }

    /// The worker, for inspecting its state.
    pub fn worker(&mut self) -> &mut Worker {
        &mut self.worker
    }

    /// An `erase` of `user` at `time`, applied as the runtime applies it.
    pub fn erase(&mut self, user: &str, time: &str) {
        self.worker.advance(at(time), &mut self.out);
        for key in self.identity.erase(user) {
            self.worker.erase(&key);
        }
    }

    /// Feeds one record of `topic`: `fields` is the JSON object's inside, minus the envelope.
    pub fn feed(&mut self, topic: Topic, ids: &str, time: &str, fields: &str) {
        self.seq += 1;
        let sep = if fields.is_empty() { "" } else { "," };
        let json = format!(
            r#"{{"message_id":"m{}","timestamp":"{}",{ids}{sep}{fields}}}"#,
            self.seq,
            at(time)
        );
        let ev = decode(topic, json.as_bytes(), at(time)).expect("test record decodes");
        let resolved = self.identity.resolve(topic, &ev);
        if resolved.erased {
            return;
        }
        if let Some(m) = &resolved.merge {
            self.worker.merge(&m.from, &m.into, &mut self.out);
        }
        self.worker.on_event(&resolved.key, &ev, &mut self.out);
        if let (Some(sale), Some(store)) = (ev.sale(&resolved.key), &ev.store_id) {
            self.worker.on_event(store, &sale, &mut self.out);
        }
    }

    /// A clickstream event of member `user`.
    pub fn click(&mut self, user: &str, time: &str, fields: &str) {
        self.feed(
            Topic::Clickstream,
            &format!(r#""user_id":"{user}""#),
            time,
            fields,
        );
    }

    /// A clickstream event of device `anon`.
    pub fn anon_click(&mut self, anon: &str, time: &str, fields: &str) {
        self.feed(
            Topic::Clickstream,
            &format!(r#""anonymous_id":"{anon}""#),
            time,
            fields,
        );
    }

    /// An `identify` linking `anon` to `user`.
    pub fn identify(&mut self, anon: &str, user: &str, time: &str) {
        let ids = format!(r#""anonymous_id":"{anon}","user_id":"{user}""#);
        self.feed(Topic::Clickstream, &ids, time, r#""type":"identify""#);
    }

    /// A `purchase` by `user`, with extra fields such as `"cart_id":"c1"`.
    pub fn purchase(&mut self, user: &str, time: &str, fields: &str) {
        self.seq += 1;
        let mut f = format!(r#""type":"purchase","transaction_id":"o{}""#, self.seq);
        if !fields.is_empty() {
            f = format!("{f},{fields}");
        }
        self.feed(
            Topic::Transactions,
            &format!(r#""user_id":"{user}""#),
            time,
            &f,
        );
    }

    /// Checkpoints the worker and restores it into a fresh one built by `operators`, as a
    /// restart from a checkpoint would.
    pub fn restart(&mut self, operators: Vec<Box<dyn Operator>>) {
        let snap = self.worker.snapshot();
        let mut fresh = Worker::new(operators).with_state_ttl(self.ttl);
        let notes = fresh.restore(snap).expect("snapshot restores");
        assert!(notes.is_empty(), "{notes:?}");
        self.worker = fresh;
    }

    /// Advances the pipeline clock.
    pub fn advance(&mut self, time: &str) {
        self.worker.advance(at(time), &mut self.out);
    }

    /// The identity graph.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Every action so far.
    pub fn actions(&self) -> &[Action] {
        &self.out
    }

    /// The one action so far.
    pub fn only_action(&self) -> &Action {
        assert_eq!(
            self.out.len(),
            1,
            "expected one action, got {:#?}",
            self.out
        );
        &self.out[0]
    }
}
