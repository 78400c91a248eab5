//! Identity resolution: which customer key an event belongs to, and the merges that
//! `identify` events cause.
//!
//! The customer key is `user_id` when present, else the customer the `anonymous_id` was
//! linked to by an `identify` at or before the event's time, else `anon:<anonymous_id>`.
//! At an `identify`, state kept under `anon:<anonymous_id>` merges into the customer's.

use rustc_hash::FxHashMap;

use crate::event::{Event, EventKind, Str, Topic};
use crate::time::Timestamp;

/// A merge of one key's state into another's, caused by an `identify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    /// The anonymous key whose state moves (`anon:<anonymous_id>`).
    pub from: Str,
    /// The surviving customer key.
    pub into: Str,
}

/// Where an event goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The key that owns the event's effect on state.
    pub key: Str,
    /// A merge to perform before the event is applied.
    pub merge: Option<Merge>,
}

/// The anonymous-id → customer links seen so far.
#[derive(Default)]
pub struct Identity {
    links: FxHashMap<Str, Link>,
}

struct Link {
    user_id: Str,
    since: Timestamp,
}

/// `anon:<anonymous_id>`, inline when short.
fn anon(anonymous_id: &str) -> Str {
    let mut k = Str::with_capacity(5 + anonymous_id.len());
    k.push_str("anon:");
    k.push_str(anonymous_id);
    k
}

impl Identity {
    /// Resolves the key of an event of `topic`; an `identify` also records its link.
    pub fn resolve(&mut self, topic: Topic, ev: &Event) -> Resolved {
        if topic.keyed_by_store() {
            let key = match (&ev.store_id, &ev.kind) {
                (Some(s), _) => s.clone(),
                (None, EventKind::Weather(w)) => w.region.clone().unwrap_or_default(),
                (None, _) => Str::default(),
            };
            return Resolved { key, merge: None };
        }
        if let (EventKind::Identify, Some(user), Some(anon)) =
            (&ev.kind, &ev.user_id, &ev.anonymous_id)
        {
            let fresh = match self.links.get_mut(anon) {
                Some(link) if link.user_id == *user => {
                    link.since = link.since.min(ev.timestamp);
                    false
                }
                Some(link) => {
                    // Re-linked to another customer from here on; what was merged stays.
                    link.user_id.clone_from(user);
                    link.since = ev.timestamp;
                    false
                }
                None => {
                    self.links.insert(
                        anon.clone(),
                        Link {
                            user_id: user.clone(),
                            since: ev.timestamp,
                        },
                    );
                    true
                }
            };
            return Resolved {
                key: user.clone(),
                merge: fresh.then(|| Merge {
                    from: self::anon(anon),
                    into: user.clone(),
                }),
            };
        }
        let key = match (&ev.user_id, &ev.anonymous_id) {
            (Some(u), _) => u.clone(),
            (None, Some(a)) => match self.links.get(a) {
                Some(link) if ev.timestamp >= link.since => link.user_id.clone(),
                _ => self::anon(a),
            },
            (None, None) => Str::default(),
        };
        Resolved { key, merge: None }
    }

    /// Every link as `(anonymous_id, user_id, since)` (for checkpoints).
    pub fn links(&self) -> impl Iterator<Item = (&Str, &Str, Timestamp)> {
        self.links.iter().map(|(a, l)| (a, &l.user_id, l.since))
    }

    /// Restores a link written by [`links`](Self::links).
    pub fn restore_link(&mut self, anonymous_id: Str, user_id: Str, since: Timestamp) {
        self.links.insert(anonymous_id, Link { user_id, since });
    }

    /// How many anonymous ids are linked.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether no anonymous id is linked.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}
