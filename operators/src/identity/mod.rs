//! Identity resolution: which customer key an event belongs to, and the merges that
//! `identify` events cause.
//!
//! The customer key is `user_id` when present, else the customer the `anonymous_id` was
//! linked to by an `identify` at or before the event's time, else `anon:<anonymous_id>`.
//! At an `identify`, state kept under `anon:<anonymous_id>` merges into the customer's.
//!
//! The graph is typed ([`IdType`]): a customer has at most one `user_id`, one
//! `email_sha256` and one `phone_sha256` (hard ids: a second, different one is refused
//! and counted as a conflict, so two customers never merge through a shared e-mail) and
//! up to [`MAX_ANONYMOUS_IDS`] anonymous ids (soft: the oldest link is dropped).
//! Placeholder values ([`is_junk`]) never link anything and are counted.
//!
//! An `erase` forgets a customer: their links go, and their keys (and those of the
//! anonymous ids linked to them) are remembered only as 128-bit hashes, so that later
//! records naming them are dropped without the id being kept anywhere.

mod ids;

pub use ids::{IdType, MAX_ANONYMOUS_IDS, is_junk};
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

/// The identity graph: anonymous-id → customer links, and each customer's hard ids.
#[derive(Default)]
pub struct Identity {
    links: FxHashMap<Str, Link>,
    erased: FxHashSet<u128>,
    /// Per hard type (e-mail, phone): value → the customer holding it. The only copy
    /// of each value: [`Owned`] says only which types a customer holds.
    hard: [FxHashMap<HardValue, Str>; 2],
    /// Per customer: which hard ids they hold, and their anonymous ids (oldest link
    /// first).
    owned: FxHashMap<Str, Owned>,
    /// Link on any event carrying both a `user_id` and an `anonymous_id`, not only on
    /// `identify`.
    link_any_event: bool,
    junk: [u64; 4],
    conflicts: [u64; 4],
}

/// What a customer holds. Kept small (one entry per customer with a hard id or a
/// link): the hard ids' values are in [`Identity::hard`] only.
#[derive(Default)]
struct Owned {
    /// Bit per hard slot ([`hard_slot`]): the customer holds an id of that type.
    hard: u8,
    /// Oldest first; at most [`MAX_ANONYMOUS_IDS`].
    anons: Vec<Str>,
}

impl Owned {
    /// Adds `anon` as the newest. Room is taken one id at a time: most customers have
    /// one or two devices, where a growing `Vec` would take room for four. (Not room in
    /// the entry itself, as the policies' counts have: most entries are customers with
    /// hard ids only, and every one of them would carry it.)
    fn add(&mut self, anon: Str) {
        if self.anons.len() == self.anons.capacity() {
            self.anons.reserve_exact(1);
        }
        self.anons.push(anon);
    }
}

/// What a customer is known by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identifiers {
    /// The customer key (`user_id`).
    pub user_id: Str,
    /// SHA-256 of their e-mail, if linked.
    pub email_sha256: Option<Str>,
    /// SHA-256 of their phone, if linked.
    pub phone_sha256: Option<Str>,
    /// Anonymous ids linked to them, oldest first, with the instant each link holds from.
    pub anonymous_ids: Vec<(Str, Timestamp)>,
}

/// Seed of the hashes erased keys are remembered by.
const ERASED_SEED: u64 = 0x666f_6f74_6661_6c6c;

/// The hash an erased key is remembered by.
pub fn erased_hash(key: &str) -> u128 {
    xxh3_128_with_seed(key.as_bytes(), ERASED_SEED)
}

/// Where [`Identity::hard`] keeps ids of type `t`; `None` for the other types.
fn hard_slot(t: IdType) -> Option<usize> {
    match t {
        IdType::EmailSha256 => Some(0),
        IdType::PhoneSha256 => Some(1),
        _ => None,
    }
}

struct Link {
    user_id: Str,
    since: Timestamp,
}

/// A hard id's value as the graph keys it. A SHA-256 in lowercase hex, as producers
/// send e-mail and phone hashes, is kept as its 32 bytes: no allocation of its own (64
/// characters do not fit inline) and half the bytes to hash. Anything else is kept as
/// given. Either reads back as the text it came as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HardValue {
    Sha256([u8; 32]),
    Text(Str),
}

impl HardValue {
    fn new(value: &str) -> HardValue {
        let mut bytes = [0u8; 32];
        let lower_hex = value.len() == 64 && !value.bytes().any(|b| b.is_ascii_uppercase());
        if lower_hex && hex::decode_to_slice(value, &mut bytes).is_ok() {
            HardValue::Sha256(bytes)
        } else {
            HardValue::Text(Str::from(value))
        }
    }

    /// The value as it came.
    fn text(&self) -> Str {
        match self {
            HardValue::Sha256(bytes) => {
                let mut text = [0u8; 64];
                // 32 bytes always fit 64 hex digits, which are ASCII.
                let _ = hex::encode_to_slice(bytes, &mut text);
                Str::from(std::str::from_utf8(&text).unwrap_or_default())
            }
            HardValue::Text(s) => s.clone(),
        }
    }
}

/// How the key of a device not linked to a customer begins.
pub const ANON_PREFIX: &str = "anon:";

/// `anon:<anonymous_id>`, inline when short.
fn anon(anonymous_id: &str) -> Str {
    let mut k = Str::with_capacity(5 + anonymous_id.len());
    k.push_str(ANON_PREFIX);
    k.push_str(anonymous_id);
    k
}

impl Identity {
    /// Also links on every event that carries both a `user_id` and an `anonymous_id`
    /// (a purchase from a logged-in app), not only on `identify`.
    pub fn with_link_any_event(mut self, on: bool) -> Self {
        self.link_any_event = on;
        self
    }

    /// `value` as an id of type `t`, or `None` (counted) if it is a placeholder.
    fn valid<'a>(&mut self, t: IdType, value: Option<&'a Str>) -> Option<&'a Str> {
        let v = value?;
        if is_junk(v) {
            self.junk[t as usize] += 1;
            return None;
        }
        Some(v)
    }

    /// Resolves the key of an event of `topic`; an `identify` also records its link.
    pub fn resolve(&mut self, topic: Topic, ev: &Event) -> Resolved {
        if topic.keyed_by_store() {
            return Self::unlinked(topic, ev);
        }
        let user = self.valid(IdType::UserId, ev.user_id.as_ref());
        let anon = self.valid(IdType::AnonymousId, ev.anonymous_id.as_ref());
        if let (EventKind::Profile(p), Some(user)) = (&ev.kind, user)
            && !self.is_erased(user)
        {
            for (t, v) in [
                (IdType::EmailSha256, p.email_sha256.as_ref()),
                (IdType::PhoneSha256, p.phone_sha256.as_ref()),
            ] {
                if let Some(v) = self.valid(t, v) {
                    self.link_hard(t, v, user);
                }
            }
        }
        let links = matches!(ev.kind, EventKind::Identify) || self.link_any_event;
        if let (true, Some(user), Some(anon)) = (links, user, anon) {
            if self.is_erased(user) {
                return Resolved {
                    key: user.clone(),
                    merge: None,
                    erased: true,
                };
            }
            let fresh = self.link(anon, user, ev.timestamp);
            return Resolved {
                key: user.clone(),
                merge: fresh.then(|| Merge {
                    from: self::anon(anon),
                    into: user.clone(),
                }),
                erased: false,
            };
        }
        let key = match (user, anon) {
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

    /// The key of an event taken at its word, without the graph: its store (or weather
    /// region), else its `user_id`, else its device. No link, merge, erasure or check
    /// of placeholder ids: the baseline that `footfall bench --policy-cost` measures
    /// the graph against.
    pub fn unlinked(topic: Topic, ev: &Event) -> Resolved {
        let key = if topic.keyed_by_store() {
            match (&ev.store_id, &ev.kind) {
                (Some(s), _) => s.clone(),
                (None, EventKind::Weather(w)) => w.region.clone().unwrap_or_default(),
                (None, _) => Str::default(),
            }
        } else {
            match (&ev.user_id, &ev.anonymous_id) {
                (Some(u), _) if !u.is_empty() => u.clone(),
                (_, Some(a)) if !a.is_empty() => self::anon(a),
                _ => Str::default(),
            }
        };
        Resolved {
            key,
            merge: None,
            erased: false,
        }
    }

    /// Links `anon` to `user` from `at` on; true if the anonymous id was new (its
    /// state merges into the customer's).
    fn link(&mut self, anon: &Str, user: &Str, at: Timestamp) -> bool {
        let fresh = match self.links.get_mut(anon) {
            Some(link) if link.user_id == *user => {
                link.since = link.since.min(at);
                return false;
            }
            Some(link) => {
                // A shared device, re-linked to another customer from here on; what
                // was merged stays.
                let before = std::mem::replace(&mut link.user_id, user.clone());
                link.since = at;
                if let Some(o) = self.owned.get_mut(&before) {
                    o.anons.retain(|a| a != anon);
                }
                false
            }
            None => {
                self.links.insert(
                    anon.clone(),
                    Link {
                        user_id: user.clone(),
                        since: at,
                    },
                );
                true
            }
        };
        let owned = self.owned.entry(user.clone()).or_default();
        owned.add(anon.clone());
        if owned.anons.len() > MAX_ANONYMOUS_IDS {
            let oldest = owned.anons.remove(0);
            self.links.remove(&oldest);
        }
        fresh
    }

    /// Gives `user` the hard id `value` of type `t`, unless another customer holds it
    /// or `user` already has a different one: then the link is refused and counted.
    fn link_hard(&mut self, t: IdType, value: &Str, user: &Str) {
        let Some(i) = hard_slot(t) else { return };
        let value = HardValue::new(value);
        match self.hard[i].get(&value) {
            Some(holder) if holder == user => return,
            Some(_) => {
                self.conflicts[t as usize] += 1;
                return;
            }
            None => {}
        }
        // No one holds `value`: if `user` holds an id of this type, it is another one.
        let owned = self.owned.entry(user.clone()).or_default();
        if owned.hard & (1 << i) != 0 {
            self.conflicts[t as usize] += 1;
            return;
        }
        owned.hard |= 1 << i;
        self.hard[i].insert(value, user.clone());
    }

    /// Placeholder ids seen and conflicting links refused since the last call, per type.
    pub fn take_counts(&mut self) -> Vec<(IdType, u64, u64)> {
        let mut out = Vec::new();
        for t in IdType::ALL {
            let (j, c) = (
                std::mem::take(&mut self.junk[t as usize]),
                std::mem::take(&mut self.conflicts[t as usize]),
            );
            if j > 0 || c > 0 {
                out.push((t, j, c));
            }
        }
        out
    }

    /// What `id` is known by: a customer key, an anonymous id, or a hard id's value.
    pub fn show(&self, id: &str) -> Option<Identifiers> {
        let user: Str = if self.owned.contains_key(id) {
            Str::from(id)
        } else if let Some(l) = self.links.get(id) {
            l.user_id.clone()
        } else {
            [IdType::EmailSha256, IdType::PhoneSha256]
                .into_iter()
                .find_map(|t| self.hard[hard_slot(t)?].get(&HardValue::new(id)).cloned())?
        };
        let owned = self.owned.get(&user)?;
        // The values are kept once, by value: finding a customer's takes a scan, which
        // only this rare question pays.
        let held = |t: IdType| {
            let i = hard_slot(t)?;
            if owned.hard & (1 << i) == 0 {
                return None;
            }
            self.hard[i]
                .iter()
                .find_map(|(v, u)| (*u == user).then(|| v.text()))
        };
        Some(Identifiers {
            email_sha256: held(IdType::EmailSha256),
            phone_sha256: held(IdType::PhoneSha256),
            anonymous_ids: owned
                .anons
                .iter()
                .filter_map(|a| self.links.get(a).map(|l| (a.clone(), l.since)))
                .collect(),
            user_id: user,
        })
    }

    /// Every hard id as `(type, value, customer)` (for checkpoints).
    pub fn hard_ids(&self) -> impl Iterator<Item = (IdType, Str, &Str)> {
        [IdType::EmailSha256, IdType::PhoneSha256]
            .into_iter()
            .zip(&self.hard)
            .flat_map(|(t, m)| m.iter().map(move |(v, u)| (t, v.text(), u)))
    }

    /// Restores a hard id written by [`hard_ids`](Self::hard_ids).
    pub fn restore_hard(&mut self, t: IdType, value: Str, user: Str) {
        let Some(i) = hard_slot(t) else { return };
        self.owned.entry(user.clone()).or_default().hard |= 1 << i;
        self.hard[i].insert(HardValue::new(&value), user);
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
        self.owned.remove(user_id);
        self.hard
            .iter_mut()
            .for_each(|m| m.retain(|_, u| u != user_id));
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

    /// Restores a link written by [`links`](Self::links). Restore links oldest first:
    /// that is the order a customer's anonymous ids are dropped in.
    pub fn restore_link(&mut self, anonymous_id: Str, user_id: Str, since: Timestamp) {
        self.owned
            .entry(user_id.clone())
            .or_default()
            .add(anonymous_id.clone());
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
mod graph_tests;
