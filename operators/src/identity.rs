//! Identity resolution: which customer key an event belongs to, and the merges that
//! `identify` events cause.
//!
//! The customer key is `user_id` when present, else the customer the `anonymous_id` was
//! linked to by an `identify` at or before the event's time, else `anon:<anonymous_id>`.
//! At an `identify`, state kept under `anon:<anonymous_id>` merges into the customer's.
//!
//! An `erase` forgets a customer: their links go, and their keys (and those of the
//! anonymous ids linked to them) are remembered only as 128-bit hashes, so that later
//! records naming them are dropped without the id being kept anywhere.

use rustc_hash::{FxHashMap, FxHashSet};
use xxhash_rust::xxh3::xxh3_128_with_seed;

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
    /// The key belongs to an erased customer: the event must be dropped.
    pub erased: bool,
}

/// The anonymous-id → customer links seen so far.
#[derive(Default)]
pub struct Identity {
    links: FxHashMap<Str, Link>,
    erased: FxHashSet<u128>,
}

/// Seed of the hashes erased keys are remembered by.
const ERASED_SEED: u64 = 0x666f_6f74_6661_6c6c;

/// The hash an erased key is remembered by.
pub fn erased_hash(key: &str) -> u128 {
    xxh3_128_with_seed(key.as_bytes(), ERASED_SEED)
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
            return Resolved {
                key,
                merge: None,
                erased: false,
            };
        }
        if let (EventKind::Identify, Some(user), Some(anon)) =
            (&ev.kind, &ev.user_id, &ev.anonymous_id)
        {
            if self.is_erased(user) {
                return Resolved {
                    key: user.clone(),
                    merge: None,
                    erased: true,
                };
            }
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
                erased: false,
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
        Resolved {
            erased: self.is_erased(&key),
            key,
            merge: None,
        }
    }

    /// Forgets `user_id`: drops its links and returns the keys whose state must be
    /// deleted (the customer's, and `anon:<id>` of each anonymous id linked to it), all
    /// of which are refused from now on.
    pub fn erase(&mut self, user_id: &str) -> Vec<Str> {
        let mut keys = vec![Str::from(user_id)];
        self.links.retain(|a, l| {
            if l.user_id != user_id {
                return true;
            }
            keys.push(anon(a));
            false
        });
        self.erased.extend(keys.iter().map(|k| erased_hash(k)));
        keys
    }

    /// Whether `key` belongs to an erased customer.
    pub fn is_erased(&self, key: &str) -> bool {
        !self.erased.is_empty() && self.erased.contains(&erased_hash(key))
    }

    /// The hashes of erased keys (for checkpoints).
    pub fn erased(&self) -> impl Iterator<Item = u128> + '_ {
        self.erased.iter().copied()
    }

    /// Restores an erased key's hash written by [`erased`](Self::erased).
    pub fn restore_erased(&mut self, hash: u128) {
        self.erased.insert(hash);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn event(kind: EventKind, user: Option<&str>, anon: Option<&str>, secs: i64) -> Event {
        Event {
            message_id: Str::from("m"),
            timestamp: Timestamp::from_secs(secs),
            user_id: user.map(Str::from),
            anonymous_id: anon.map(Str::from),
            channel: None,
            store_id: None,
            kind,
        }
    }

    #[test]
    fn erase_forgets_links_and_refuses_the_customer_from_then_on() {
        let mut id = Identity::default();
        let link = id.resolve(
            Topic::Clickstream,
            &event(EventKind::Identify, Some("u-1"), Some("a-1"), 10),
        );
        assert_eq!(link.merge.map(|m| m.from), Some(Str::from("anon:a-1")));
        id.resolve(
            Topic::Clickstream,
            &event(EventKind::Identify, Some("u-2"), Some("a-2"), 10),
        );

        let keys = id.erase("u-1");
        assert_eq!(keys, vec![Str::from("u-1"), Str::from("anon:a-1")]);
        assert_eq!(id.len(), 1, "u-2's link stays");
        assert!(id.is_erased("u-1") && id.is_erased("anon:a-1") && !id.is_erased("u-2"));

        let by_user = id.resolve(
            Topic::Clickstream,
            &event(EventKind::PageView, Some("u-1"), None, 20),
        );
        assert!(by_user.erased);
        let by_device = id.resolve(
            Topic::Clickstream,
            &event(EventKind::PageView, None, Some("a-1"), 20),
        );
        assert!(by_device.erased && by_device.key == "anon:a-1");
        let relink = id.resolve(
            Topic::Clickstream,
            &event(EventKind::Identify, Some("u-1"), Some("a-9"), 20),
        );
        assert!(relink.erased && relink.merge.is_none());
        assert_eq!(id.len(), 1, "an erased customer is never linked again");
        let other = id.resolve(
            Topic::Clickstream,
            &event(EventKind::PageView, Some("u-2"), None, 20),
        );
        assert!(!other.erased);

        let mut restored = Identity::default();
        for h in id.erased() {
            restored.restore_erased(h);
        }
        assert!(restored.is_erased("u-1") && !restored.is_erased("u-2"));
    }
}
