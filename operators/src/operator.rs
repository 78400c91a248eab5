//! The one trait every operator implements, and the context it works through.

use std::any::Any;

use crate::action::Action;
use crate::event::{Event, Interest};
use crate::reference::Reference;
use crate::state::StateImage;
use crate::time::Timestamp;
use crate::timer::TimerService;

/// One key's state, moved between workers when an `identify` merges two keys.
pub type KeyState = Box<dyn Any + Send>;

/// What an operator may touch: the clock, its key, its timers and the action collector.
///
/// Operators never read a wall clock, spawn tasks or do I/O; everything arrives here.
pub struct Context<'a> {
    now: Timestamp,
    key: &'a str,
    op: u16,
    timers: &'a mut TimerService,
    out: &'a mut Vec<Action>,
    reference: &'a Reference,
}

impl<'a> Context<'a> {
    /// A context for operator number `op` acting on `key` at `now`.
    pub fn new(
        now: Timestamp,
        key: &'a str,
        op: u16,
        timers: &'a mut TimerService,
        out: &'a mut Vec<Action>,
        reference: &'a Reference,
    ) -> Self {
        Context {
            now,
            key,
            op,
            timers,
            out,
            reference,
        }
    }

    /// Stores and their weather, as this worker knows them.
    pub fn reference(&self) -> &'a Reference {
        self.reference
    }

    /// Event time: the event's `timestamp`, or the due instant of the timer being fired.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The customer (or store) key this call is about.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// Sets this key's timer `tag` at `due`. The operator remembers `due`: it names the
    /// timer when moving or cancelling it.
    pub fn set_timer(&mut self, tag: u64, due: Timestamp) {
        self.timers.set(self.op, self.key, tag, due);
    }

    /// Cancels this key's timer `tag` that was set at `due`.
    pub fn cancel_timer(&mut self, tag: u64, due: Timestamp) {
        self.timers.cancel(self.op, self.key, tag, due);
    }

    /// Moves this key's timer `tag` from `from` (if armed) to `to`.
    pub fn move_timer(&mut self, tag: u64, from: Option<Timestamp>, to: Timestamp) {
        if let Some(f) = from {
            if f == to {
                return;
            }
            self.cancel_timer(tag, f);
        }
        self.set_timer(tag, to);
    }

    /// Emits an action, routed to the output partition of this context's key.
    pub fn emit(&mut self, mut action: Action) {
        action.route = crate::event::Str::from(self.key);
        self.out.push(action);
    }
}

/// A keyed, event-time operator: a trigger or a stateful building block.
///
/// The runtime calls it in event-time order per key: `on_event` for each event whose
/// resolved key it owns, `on_timer` when the pipeline clock reaches a timer it set.
pub trait Operator: Send {
    /// A stable name, used in metrics and logs.
    fn name(&self) -> &'static str;

    /// The event types `on_event` acts on; others are not routed to it at all.
    fn interest(&self) -> Interest {
        Interest::ALL
    }

    /// Applies one event to the state of `ctx.key()`.
    fn on_event(&mut self, event: &Event, ctx: &mut Context<'_>);

    /// A timer this operator set for `ctx.key()` is due at `ctx.now()`.
    fn on_timer(&mut self, tag: u64, ctx: &mut Context<'_>);

    /// Removes and returns all state of `ctx.key()` (cancelling its timers), so an identity
    /// merge can move it to the surviving key, possibly on another worker.
    fn export(&mut self, ctx: &mut Context<'_>) -> Option<KeyState>;

    /// Drops every mention of erased customer `customer` from other keys' state (a
    /// store's list of recent buyers, say). Called on every worker at an `erase`, after
    /// the customer's own state was exported and dropped by its owner.
    fn forget(&mut self, _customer: &str) {}

    /// Merges state exported from another key into `ctx.key()` (re-arming its timers).
    fn import(&mut self, state: KeyState, ctx: &mut Context<'_>);

    /// A frozen view of every key's state for a checkpoint, cheap to take (the worker
    /// pauses for it) and encoded later off the hot path: see [`KeyedState`]. Timers are
    /// not part of it: the worker checkpoints the timer service.
    ///
    /// [`KeyedState`]: crate::state::KeyedState
    fn snapshot(&self) -> Box<dyn StateImage>;

    /// Restores one key's state as [`snapshot`](Self::snapshot)'s image encoded it,
    /// without setting timers (the worker restores those).
    fn restore(&mut self, key: &str, bytes: &[u8]) -> Result<(), String>;

    /// How many keys hold state.
    fn key_count(&self) -> usize;

    /// Adds the rows of its state that SQL's live tables show, as of `now`. Most
    /// operators have none.
    fn live(&self, _now: Timestamp, _out: &mut crate::live::Live) {}
}
