//! A partition worker's deterministic core: its operators, its timers, its clock.
//!
//! The runtime feeds it, in event-time order, the events whose resolved key it owns and the
//! pipeline clock's advances; it hands back actions. No tokio, no wall clock, no I/O.

use crate::action::Action;
use crate::event::{Event, Interest, Str};
use crate::operator::{Context, KeyState, Operator};
use crate::reference::Reference;
use crate::state::StateImage;
use crate::time::{Span, Timestamp};
use crate::timer::TimerService;

/// A worker's state in a checkpoint.
#[derive(Default)]
pub struct Snapshot {
    /// The pipeline clock it had seen.
    pub clock: Timestamp,
    /// Pending timers.
    pub timers: Vec<SavedTimer>,
    /// Per operator (by name): its state, encoded when the checkpoint is written.
    pub operators: Vec<(String, Box<dyn StateImage>)>,
    /// When an event last touched each key (for the state TTL).
    pub touched: Vec<(Str, Timestamp)>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<(&str, usize)> = self
            .operators
            .iter()
            .map(|(name, image)| (name.as_str(), image.len()))
            .collect();
        f.debug_struct("Snapshot")
            .field("clock", &self.clock)
            .field("timers", &self.timers.len())
            .field("operator_keys", &keys)
            .field("touched", &self.touched.len())
            .finish()
    }
}

/// A pending timer in a checkpoint: operators are named, not numbered, so a checkpoint
/// survives a change in which triggers are enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTimer {
    /// When it is due.
    pub due: Timestamp,
    /// The operator that set it.
    pub operator: Str,
    /// Its key.
    pub key: Str,
    /// The operator's tag.
    pub tag: u64,
}

/// One key's state across all operators, in transit between workers.
pub type KeyStates = Vec<(u16, KeyState)>;

/// The operators and timers of one partition's keys.
pub struct Worker {
    operators: Vec<Box<dyn Operator>>,
    interests: Vec<Interest>,
    timers: TimerService,
    reference: Reference,
    clock: Timestamp,
    ttl: Span,
    next_sweep: Timestamp,
    evicted: Vec<u64>,
    /// Keys whose state expired since [`take_expired_keys`](Self::take_expired_keys).
    expired: Vec<Str>,
}

/// Restores one `(key, bytes)` row of a snapshot's state.
type RestoreRow<'a> = dyn FnMut(&str, &[u8]) -> Result<(), String> + 'a;

/// The name under which a snapshot carries the worker's [`Reference`] state, beside
/// the operators' (no operator has this name).
pub const REFERENCE: &str = "reference";

/// Timers due before an early export's horizon that [`Worker::export_early`] looks
/// through, at most, for the key's.
const EARLY_TIMERS: usize = 256;

/// The default state TTL: 400 days of pipeline clock.
pub const DEFAULT_STATE_TTL: Span = Span::from_secs(400 * 86_400);

impl Worker {
    /// A worker running `operators`.
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        Worker {
            interests: operators.iter().map(|o| o.interest()).collect(),
            evicted: vec![0; operators.len()],
            operators,
            timers: TimerService::default(),
            reference: Reference::default(),
            clock: Timestamp::MIN,
            ttl: DEFAULT_STATE_TTL,
            next_sweep: Timestamp::MIN,
            expired: Vec::new(),
        }
    }

    /// Drops a key's state once no event has touched it for `ttl` of pipeline clock and
    /// it has no timer pending (default [`DEFAULT_STATE_TTL`]).
    pub fn with_state_ttl(mut self, ttl: Span) -> Self {
        self.ttl = ttl;
        self
    }

    /// The event types any of its operators consumes, plus `identify` and `erase` (the
    /// runtime's identity resolution needs them) and what the delivery policies learn
    /// from (`profile`, `purchase`, `store`).
    pub fn interest(&self) -> Interest {
        let runtime = Interest::types(&["identify", "erase", "profile", "purchase", "store"]);
        self.interests.iter().fold(runtime, |i, o| i.union(*o))
    }

    /// The pipeline clock as this worker last saw it.
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// The rows of SQL's live tables this worker's state holds, as of its clock.
    pub fn live(&self) -> crate::live::Live {
        let mut out = crate::live::Live::default();
        for op in &self.operators {
            op.live(self.clock, &mut out);
        }
        out
    }

    /// Applies `event` to the state of `key`. Timers due strictly before the event fire
    /// first, so a timer due at `d` sees exactly the events with `timestamp <= d`.
    pub fn on_event(&mut self, key: &str, event: &Event, out: &mut Vec<Action>) {
        self.fire(event.timestamp, true, out);
        if self.reference.apply(event) {
            // Reference data is not keyed state: no TTL, no owner.
            self.route(key, event, out);
            return;
        }
        if self.timers.touch(key, event.timestamp, self.ttl) {
            self.evict(key);
        }
        self.route(key, event, out);
    }

    /// Fires the timers due before `at`: what an event at `at` would fire first. For
    /// work at an event's place in the order that is not the event itself (a merge, an
    /// erase).
    pub fn fire_before(&mut self, at: Timestamp, out: &mut Vec<Action>) {
        self.fire(at, true, out);
    }

    fn route(&mut self, key: &str, event: &Event, out: &mut Vec<Action>) {
        for (i, op) in self.operators.iter_mut().enumerate() {
            if !self.interests[i].wants(&event.kind) {
                continue;
            }
            let mut ctx = Context::new(
                event.timestamp,
                key,
                i as u16,
                &mut self.timers,
                out,
                &self.reference,
            );
            op.on_event(event, &mut ctx);
        }
    }

    /// Advances the clock to `clock`, firing every timer due at or before it.
    pub fn advance(&mut self, clock: Timestamp, out: &mut Vec<Action>) {
        while !self.advance_some(clock, out, usize::MAX) {}
    }

    /// Like [`advance`](Self::advance), but stops once `out` holds `max` actions, so a
    /// clock jump that fires a million timers is written in bounded chunks. Returns true
    /// when every timer due by `clock` has fired.
    pub fn advance_some(&mut self, clock: Timestamp, out: &mut Vec<Action>, max: usize) -> bool {
        let done = self.fire_some(clock, false, out, max);
        if done {
            self.clock = self.clock.max(clock);
            if self.clock >= self.next_sweep {
                self.sweep();
            }
        }
        done
    }

    /// Drops the state of every key expired at the clock, so idle state leaves memory
    /// (and the next checkpoint) without waiting for an event that may never come.
    fn sweep(&mut self) {
        for key in self.timers.take_expired(self.clock, self.ttl) {
            self.evict(&key);
        }
        // Expiry is also checked whenever a key is touched, so sweeping is only about
        // memory: a few times per TTL, at most daily.
        let every = Span::from_secs((self.ttl.as_nanos() / 8 / 1_000_000_000).clamp(1, 86_400));
        self.next_sweep = self.clock.plus(every);
    }

    /// Drops all of `key`'s state because it expired, counting it per operator.
    fn evict(&mut self, key: &str) {
        let mut sink = Vec::new();
        for (i, op) in self.operators.iter_mut().enumerate() {
            let mut ctx = Context::new(
                self.clock,
                key,
                i as u16,
                &mut self.timers,
                &mut sink,
                &self.reference,
            );
            if op.export(&mut ctx).is_some() {
                self.evicted[i] += 1;
            }
        }
        self.expired.push(Str::from(key));
    }

    /// Keys whose state expired (untouched for the TTL) since the last call, so that
    /// what others keep for them (the delivery policies) expires with it.
    pub fn take_expired_keys(&mut self) -> Vec<Str> {
        std::mem::take(&mut self.expired)
    }

    /// Keys whose state expired since the last call, per operator name.
    pub fn take_evicted(&mut self) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        for (op, n) in self.operators.iter().zip(&mut self.evicted) {
            if *n > 0 {
                out.push((op.name(), std::mem::take(n)));
            }
        }
        out
    }

    fn fire(&mut self, upto: Timestamp, strict: bool, out: &mut Vec<Action>) {
        self.fire_some(upto, strict, out, usize::MAX);
    }

    fn fire_some(
        &mut self,
        upto: Timestamp,
        strict: bool,
        out: &mut Vec<Action>,
        max: usize,
    ) -> bool {
        let mut done = true;
        while let Some(t) = self.timers.pop_due(upto, strict) {
            let op = &mut self.operators[usize::from(t.op)];
            let mut ctx = Context::new(
                t.due,
                t.key.as_str(),
                t.op,
                &mut self.timers,
                out,
                &self.reference,
            );
            op.on_timer(t.tag, &mut ctx);
            if out.len() >= max {
                done = self
                    .timers
                    .next_due()
                    .is_none_or(|d| d > upto || (strict && d == upto));
                break;
            }
        }
        done
    }

    /// Removes all state of `key`, for a merge into another key. Expired state is
    /// dropped, not moved.
    pub fn export(&mut self, key: &str) -> KeyStates {
        if self.timers.expired(key, self.clock, self.ttl) {
            self.evict(key);
            return KeyStates::new();
        }
        let mut sink = Vec::new();
        let mut states = Vec::new();
        for (i, op) in self.operators.iter_mut().enumerate() {
            let mut ctx = Context::new(
                self.clock,
                key,
                i as u16,
                &mut self.timers,
                &mut sink,
                &self.reference,
            );
            if let Some(s) = op.export(&mut ctx) {
                states.push((i as u16, s));
            }
        }
        states
    }

    /// Exports `key`'s state ahead of its turn, when nothing between now and its turn
    /// can change it: the caller knows that none of the work queued before the export
    /// names `key`, and that none of it moves the clock past `until`. Then what stays
    /// to check is that no timer of `key` falls due by `until` and that its state does
    /// not expire by then; `None` (export at its turn) when either may happen.
    pub fn export_early(&mut self, key: &str, until: Timestamp) -> Option<KeyStates> {
        let until = until.max(self.clock);
        if self.timers.expired(key, until, self.ttl)
            || self.timers.due_by(key, until, EARLY_TIMERS) != Some(false)
        {
            return None;
        }
        Some(self.export(key))
    }

    /// Deletes all state of `key` and cancels its timers (an `erase`), and drops every
    /// mention of it in other keys' state. The runtime sends an erase to every worker:
    /// the owner holds the key's state, any worker may hold mentions. Returns whether
    /// any operator held state for it.
    pub fn erase(&mut self, key: &str) -> bool {
        let had = !self.export(key).is_empty();
        self.timers.forget(key);
        for op in &mut self.operators {
            op.forget(key);
        }
        had
    }

    /// Merges exported state into `key`.
    pub fn import(&mut self, key: &str, states: KeyStates, out: &mut Vec<Action>) {
        if self.timers.touch(key, self.clock, self.ttl) {
            self.evict(key);
        }
        for (i, state) in states {
            if let Some(op) = self.operators.get_mut(usize::from(i)) {
                let mut ctx =
                    Context::new(self.clock, key, i, &mut self.timers, out, &self.reference);
                op.import(state, &mut ctx);
            }
        }
    }

    /// Moves the state of `from` into `into`, both owned by this worker.
    pub fn merge(&mut self, from: &str, into: &str, out: &mut Vec<Action>) {
        let states = self.export(from);
        self.import(into, states, out);
    }

    /// Everything this worker holds, for a checkpoint.
    pub fn snapshot(&self) -> Snapshot {
        let names: Vec<&'static str> = self.operators.iter().map(|o| o.name()).collect();
        Snapshot {
            clock: self.clock,
            timers: self
                .timers
                .entries()
                .map(|(due, op, key, tag)| SavedTimer {
                    due: *due,
                    operator: Str::from(names[usize::from(*op)]),
                    key: key.clone(),
                    tag: *tag,
                })
                .collect(),
            operators: self
                .operators
                .iter()
                .map(|op| (op.name().to_owned(), op.snapshot()))
                .chain(
                    (!self.reference.is_empty())
                        .then(|| (REFERENCE.to_owned(), self.reference.snapshot())),
                )
                .collect(),
            touched: self.timers.touched().map(|(k, t)| (k.clone(), t)).collect(),
        }
    }

    /// Restores a snapshot into this (fresh) worker. State of an operator that is no
    /// longer configured is dropped and named in the returned notes.
    pub fn restore(&mut self, snap: Snapshot) -> Result<Vec<String>, String> {
        let mut notes = Vec::new();
        let names: Vec<&'static str> = self.operators.iter().map(|o| o.name()).collect();
        let index = |name: &str| names.iter().position(|n| *n == name);
        let mut timers = Vec::with_capacity(snap.timers.len());
        for t in snap.timers {
            match index(&t.operator) {
                Some(i) => timers.push((t.due, i as u16, t.key, t.tag)),
                None => notes.push(format!("timer of operator {} dropped", t.operator)),
            }
        }
        for (name, keys) in snap.operators {
            let restore: &mut RestoreRow<'_> = if name == REFERENCE {
                &mut |key, bytes| self.reference.restore(key, bytes)
            } else if let Some(i) = index(&name) {
                let op = &mut self.operators[i];
                &mut |key, bytes| op.restore(key, bytes)
            } else {
                notes.push(format!("state of operator {name} dropped: not configured"));
                continue;
            };
            let mut failed = None;
            keys.encode(&mut |key, bytes| {
                if failed.is_none()
                    && let Err(e) = restore(key, bytes)
                {
                    failed = Some(format!("{name} state of key {key:?}: {e}"));
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        for (due, op, key, tag) in timers {
            self.timers.set(op, &key, tag, due);
        }
        for (key, at) in snap.touched {
            self.timers.restore_touched(&key, at);
        }
        self.clock = snap.clock;
        Ok(notes)
    }

    /// Timers pending.
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    /// (operator name, keys with state), per operator.
    pub fn key_counts(&self) -> Vec<(&'static str, usize)> {
        self.operators
            .iter()
            .map(|o| (o.name(), o.key_count()))
            .collect()
    }
}
