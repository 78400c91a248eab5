//! Delivery policies: every customer-facing action passes these steps, in the spec's
//! order, between its trigger and the `notifications` topic:
//!
//! 1. [`erased`]: an erased customer gets nothing, and no record names them;
//! 2. [`consent`]: the channel's consent must be `true` (re-checked at release);
//! 3. [`holdout`]: the control group is written with `group: "control"`, never sent;
//! 4. [`arbitration`]: one action per customer per epoch-aligned window, by priority;
//! 5. [`frequency_cap`]: per channel and local day / ISO week;
//! 6. [`quiet_hours`]: held until the customer's local quiet hours end;
//! 7. [`dedupe`]: an `action_id` is written once.
//!
//! Every suppression carries a [`Reason`] and a sentence saying why. Purchases credit the
//! latest action of each trigger ([`lift`]).
//!
//! A [`Policy`] owns the customers of one output partition. Actions reach it from every
//! partition worker (a store's worker makes offers for customers anywhere), facts
//! (profiles, purchases, stores, erasures) from the customer's own worker. It applies
//! them in event-time order: each input carries its time, and [`Policy::advance`] says
//! that no input before an instant is still to come. So the outcome does not depend on
//! how the workers' messages interleave.

mod agenda;
pub mod arbitration;
pub mod consent;
mod customer;
pub mod dedupe;
pub mod erased;
pub mod frequency_cap;
pub mod holdout;
pub mod lift;
mod packed;
pub mod quiet_hours;
mod records;
mod snapshot;

use std::collections::BTreeMap;

use chrono_tz::Tz;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::action::Group;
use crate::config::{FrequencyCap, PolicyConfig, parse_hhmm};
use crate::event::Str;
use crate::local;
use crate::state::KeyedState;
use crate::time::{Span, Timestamp};

pub use holdout::{Holdout, holdout_bucket};
pub use lift::Conversion;
pub use packed::Packed;
pub use records::{Fact, Input, Output, Reason, Suppression};

use agenda::Agenda;
use customer::{Customer, Zone};
use dedupe::Seen;
use erased::Erased;
use quiet_hours::QuietHours;

/// The policies' settings, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `false`: actions only get their holdout group and are deduplicated.
    pub enabled: bool,
    /// Step 3.
    pub holdout: Holdout,
    /// Step 4's window.
    pub window: Span,
    /// Priority per trigger.
    pub priority: BTreeMap<String, i32>,
    /// The triggers whose priority the config sets: a rule's header does not change it.
    pub fixed: std::collections::BTreeSet<String>,
    /// Step 5.
    pub caps: Vec<FrequencyCap>,
    /// Step 6.
    pub quiet: QuietHours,
    /// Lift's attribution window.
    pub attribution: Span,
    /// The zone of a customer with neither a profile zone nor a home store's.
    pub default_zone: Tz,
}

impl Settings {
    /// From `[policy]`; `default_timezone` is used when `[policy]` names none.
    pub fn from_config(p: &PolicyConfig, default_timezone: &str) -> Result<Settings, String> {
        let zone_name = p.default_timezone.as_deref().unwrap_or(default_timezone);
        let default_zone = local::zone(zone_name)
            .ok_or_else(|| format!("policy.default_timezone: unknown time zone {zone_name:?}"))?;
        let start = parse_hhmm(&p.quiet_hours_start)
            .map_err(|e| format!("policy.quiet_hours_start: {e}"))?;
        let end =
            parse_hhmm(&p.quiet_hours_end).map_err(|e| format!("policy.quiet_hours_end: {e}"))?;
        if p.holdout_bp > 10_000 {
            return Err(format!(
                "policy.holdout_bp: {} is above 10000",
                p.holdout_bp
            ));
        }
        if let Some((t, bp)) = p.trigger_holdout_bp.iter().find(|(_, bp)| **bp > 10_000) {
            return Err(format!(
                "policy.trigger_holdout_bp.{t}: {bp} is above 10000"
            ));
        }
        if p.arbitration_window_secs == 0 {
            return Err("policy.arbitration_window_secs: must be at least 1".into());
        }
        Ok(Settings {
            enabled: p.enabled,
            holdout: Holdout {
                holdout_bp: p.holdout_bp,
                per_trigger: p.trigger_holdout_bp.clone(),
            },
            window: Span::from_secs(p.arbitration_window_secs as i64),
            priority: p.priority.clone(),
            fixed: p.priority.keys().cloned().collect(),
            caps: p.frequency_caps.clone(),
            quiet: QuietHours::new(start, end),
            attribution: Span::from_secs(i64::from(p.attribution_window_days) * 86_400),
            default_zone,
        })
    }
}

/// An agenda entry, applied at its instant.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Entry {
    Fact(Fact),
    /// A fact of a late event, at the event's time, applied where its worker's clock
    /// stood when it arrived (its place in the agenda).
    LateFact(Timestamp, Fact),
    Action(Packed),
    /// Decide a customer's arbitration window.
    Close {
        customer: Str,
        window: i64,
    },
    /// Write an action held for quiet hours.
    Release(Packed),
}

impl Entry {
    /// The customer it is about, if any.
    fn customer(&self) -> Option<&str> {
        match self {
            Entry::Action(a) | Entry::Release(a) => a.customer_id(),
            Entry::Close { customer, .. } => Some(customer),
            Entry::Fact(f) | Entry::LateFact(_, f) => f.customer(),
        }
    }
}

/// Due entries per agenda queue whose customers [`Policy::touch`] reads ahead.
const TOUCH: usize = 64;

/// Order of the agenda: (instant, rank, source worker, sequence). At one instant,
/// windows ending there are decided first, then facts apply, then actions due then
/// arrive, then held actions are released (after the facts that may withdraw consent).
type Order = (Timestamp, u8, u32, u64);
const CLOSE: u8 = 0;
const FACT: u8 = 1;
const ACTION: u8 = 2;
const RELEASE: u8 = 3;

/// The delivery policies of one output partition's customers.
pub struct Policy {
    settings: Settings,
    customers: KeyedState<Customer>,
    /// Each store's zone.
    stores: FxHashMap<Str, Zone>,
    erased: Erased,
    agenda: Agenda,
    windows: FxHashMap<(Str, i64), arbitration::Held>,
    seen: Seen,
    /// Actions in `windows` and releases in `agenda`: what [`held`](Self::held) reports.
    held: usize,
    /// Inputs before it have been applied; windows ending at or before it are decided.
    frontier: Timestamp,
    next: u64,
}

impl Policy {
    /// Policies with `settings`.
    pub fn new(settings: Settings) -> Self {
        Policy {
            settings,
            customers: KeyedState::default(),
            stores: FxHashMap::default(),
            erased: Erased::default(),
            agenda: Agenda::default(),
            windows: FxHashMap::default(),
            seen: Seen::default(),
            held: 0,
            frontier: Timestamp::MIN,
            next: 0,
        }
    }

    /// Each customer's consent, zone and home store: rows of SQL's `customers` table.
    pub fn live(&self) -> crate::live::Live {
        let mut out = crate::live::Live::default();
        for (key, c) in self.customers.iter() {
            let given = |ch: &str| c.consent.get(ch);
            out.consent.push(crate::live::ConsentRow {
                customer_key: key.clone(),
                push: given("push"),
                sms: given("sms"),
                email: given("email"),
                timezone: c.zone.name().map(Str::from),
                home_store: c.home_store.clone(),
            });
        }
        out
    }

    /// Takes in `input`, the `seq`-th from worker `from`, made before that worker's
    /// clock passed the input's time; it waits for [`advance`](Self::advance).
    pub fn push(&mut self, from: u32, seq: u64, input: Input, out: &mut Output) {
        self.push_arrived(from, seq, Timestamp::MIN, input, out);
    }

    /// Takes in `input`, the `seq`-th from worker `from`, made when that worker's clock
    /// stood at `arrived`. Input of a late event (older than `arrived`) takes its place
    /// at `arrived`, as the worker applied the event there: where it goes among other
    /// workers' input then does not depend on when its message came. Input older than
    /// what was already applied applies at once; the rest waits for
    /// [`advance`](Self::advance).
    pub fn push_arrived(
        &mut self,
        from: u32,
        seq: u64,
        arrived: Timestamp,
        input: Input,
        out: &mut Output,
    ) {
        if let Input::Fact(_, Fact::Erase { key }) = &input {
            // Nothing about an erased customer may wait for its turn (or sit in a
            // checkpoint meanwhile): they get nothing, ever, whatever was due before.
            return self.erase(key, out);
        }
        let (at, rank, entry) = match input {
            Input::Fact(at, f) => (at, FACT, Entry::Fact(f)),
            Input::Action(a) => (a.fired_at, ACTION, Entry::Action(a)),
            Input::Priorities(p) => {
                for (trigger, priority) in p {
                    if !self.settings.fixed.contains(&trigger) {
                        self.settings.priority.insert(trigger, priority);
                    }
                }
                return;
            }
        };
        let entry = match entry {
            Entry::Fact(f) if at < arrived => Entry::LateFact(at, f),
            e => e,
        };
        let place = at.max(arrived);
        if place < self.frontier {
            self.apply(at, entry, out);
        } else {
            self.agenda.insert((place, rank, from, seq), entry);
        }
    }

    /// Every worker has sent all its input before `to`: applies it, decides the windows
    /// that end by `to` and releases held actions due before it.
    pub fn advance(&mut self, to: Timestamp, out: &mut Output) {
        self.run(to, false, out);
    }

    /// No more input will come and the clock stands at `to`: applies everything due at
    /// or before it.
    pub fn finish(&mut self, to: Timestamp, out: &mut Output) {
        self.run(to, true, out);
    }

    fn run(&mut self, to: Timestamp, inclusive: bool, out: &mut Output) {
        let due = |&(at, rank, ..): &Order| {
            if rank == CLOSE || inclusive {
                at <= to
            } else {
                at < to
            }
        };
        self.touch(&due);
        while let Some(((at, ..), entry)) = self.agenda.pop_if(due) {
            if matches!(entry, Entry::Release(_)) {
                self.held -= 1;
            }
            self.apply(at, entry, out);
        }
        self.frontier = self.frontier.max(to);
    }

    /// Reads ahead the state of the customers whose input is due, and whether due
    /// actions were written before, before applying any of it. These lookups do not
    /// depend on one another, so the processor overlaps their cache misses; applying the
    /// input one by one then finds them in cache, where it would wait for each miss in
    /// turn.
    fn touch(&self, due: &impl Fn(&Order) -> bool) {
        let mut sum = 0u64;
        self.agenda.visit_due(due, TOUCH, |e| {
            if let Entry::Action(a) = e {
                sum += u64::from(self.seen.contains(a.action_id()));
            }
            if let Some(c) = e.customer().and_then(|k| self.customers.get(k)) {
                sum += u64::from(c.consent.bits());
            }
        });
        std::hint::black_box(sum);
    }

    fn schedule(&mut self, at: Timestamp, rank: u8, entry: Entry, out: &mut Output) {
        if at < self.frontier || (rank == CLOSE && at <= self.frontier) {
            self.apply(at, entry, out);
            return;
        }
        self.next += 1;
        if matches!(entry, Entry::Release(_)) {
            self.held += 1;
        }
        self.agenda.insert((at, rank, u32::MAX, self.next), entry);
    }

    fn apply(&mut self, at: Timestamp, entry: Entry, out: &mut Output) {
        match entry {
            Entry::Fact(f) => self.learn(at, f, out),
            Entry::LateFact(at, f) => self.learn(at, f, out),
            Entry::Action(a) => self.offer(a, out),
            Entry::Close { customer, window } => self.close(at, &customer, window, out),
            Entry::Release(a) => self.release(at, a, out),
        }
    }

    fn learn(&mut self, at: Timestamp, fact: Fact, out: &mut Output) {
        match fact {
            Fact::Profile {
                key,
                consent,
                timezone,
                home_store,
            } => {
                if self.erased.contains(&key) {
                    return;
                }
                let c = self.customers.get_or_default(&key);
                consent::update(&mut c.consent, &consent);
                if let Some(tz) = timezone {
                    c.zone = Zone::new(tz);
                }
                if home_store.is_some() {
                    c.home_store = home_store;
                }
            }
            Fact::Store { store_id, timezone } => {
                if let Some(tz) = timezone {
                    self.stores.insert(store_id, Zone::new(tz));
                }
            }
            Fact::Purchase {
                key,
                transaction_id,
                value,
                currency,
            } => {
                // Most purchases follow no action: look before taking the customer to
                // change (which copies it while a checkpoint still shares it).
                let touched = self
                    .customers
                    .get(&key)
                    .and_then(Customer::latest)
                    .is_some_and(|l| !l.is_empty());
                if touched && let Some(c) = self.customers.get_mut(&key) {
                    let purchase = lift::Purchase {
                        customer: &key,
                        transaction_id: &transaction_id,
                        at,
                        value,
                        currency: currency.as_deref(),
                    };
                    c.latest_mut().attribute(
                        &purchase,
                        self.settings.attribution,
                        &mut out.conversions,
                    );
                }
            }
            Fact::Erase { key } => self.erase(&key, out),
            // Consent, zone, caps and attribution go with the rest of the key's state.
            Fact::Expire { key } => {
                self.customers.remove(&key);
            }
        }
    }

    /// Forgets `key` and drops everything of theirs, waiting or held, unrecorded.
    fn erase(&mut self, key: &str, out: &mut Output) {
        self.erased.insert(key);
        self.customers.remove(key);
        self.windows.retain(|(k, _), held| {
            if *k != key {
                return true;
            }
            out.erased += held.len() as u64;
            self.held -= held.len();
            false
        });
        self.agenda.retain(|e| {
            // An erase applies at once (see `push_arrived`): none waits here.
            let names = e.customer() == Some(key);
            if names && matches!(e, Entry::Action(_) | Entry::Release(_)) {
                out.erased += 1;
            }
            if names && matches!(e, Entry::Release(_)) {
                self.held -= 1;
            }
            !names
        });
    }

    fn customer_key(a: &Packed) -> Str {
        Str::from(a.customer_id().unwrap_or(""))
    }

    fn suppress(
        &mut self,
        action: Packed,
        reason: Reason,
        detail: String,
        at: Timestamp,
        out: &mut Output,
    ) {
        out.suppressed.push(Suppression {
            action,
            reason,
            detail,
            at,
        });
    }

    /// Steps 1–4 for an action that has just become due.
    fn offer(&mut self, mut a: Packed, out: &mut Output) {
        let key = Self::customer_key(&a);
        if self.erased.contains(&key) {
            out.erased += 1;
            return;
        }
        if self.seen.contains(a.action_id()) {
            out.duplicates += 1;
            return;
        }
        a.group = self.settings.holdout.group(a.trigger(), &key);
        if !self.settings.enabled {
            return self.write(a, out);
        }
        let at = a.fired_at;
        if let Err(why) = consent::check(self.customers.get(&key).map(|c| &c.consent), a.channel())
        {
            return self.suppress(a, Reason::NoConsent, why, at, out);
        }
        if a.group == Group::Control {
            return self.write(a, out);
        }
        let w = arbitration::window(at, self.settings.window);
        let end = arbitration::end(w, self.settings.window);
        if end <= self.frontier {
            // Late: its window was decided without it; it is decided alone.
            return self.admit(a, at, out);
        }
        let held = self.windows.entry((key.clone(), w)).or_default();
        held.push(a);
        self.held += 1;
        if held.len() == 1 {
            self.schedule(
                end,
                CLOSE,
                Entry::Close {
                    customer: key,
                    window: w,
                },
                out,
            );
        }
    }

    /// Step 4: the window `w` of `customer` ended at `at`.
    fn close(&mut self, at: Timestamp, customer: &Str, w: i64, out: &mut Output) {
        let Some(actions) = self.windows.remove(&(customer.clone(), w)) else {
            return;
        };
        self.held -= actions.len();
        let Some((winner, losers)) = arbitration::decide(actions, &self.settings.priority) else {
            return;
        };
        let p = arbitration::priority(&self.settings.priority, winner.trigger());
        let start = arbitration::end(w - 1, self.settings.window);
        for loser in losers {
            let why = format!(
                "{} (priority {p}, action {}) won the arbitration window {}–{} over {} (priority {})",
                winner.trigger(),
                winner.action_id(),
                start,
                at,
                loser.trigger(),
                arbitration::priority(&self.settings.priority, loser.trigger()),
            );
            self.suppress(loser, Reason::Arbitration, why, at, out);
        }
        self.admit(winner, at, out);
    }

    /// Steps 5 and 6 for an arbitration winner decided at `at`.
    fn admit(&mut self, a: Packed, at: Timestamp, out: &mut Output) {
        let key = Self::customer_key(&a);
        let c = self.customers.get_or_default(&key);
        let tz = zone_of(Some(c), &self.stores, self.settings.default_zone);
        if let Err(why) = c
            .caps_mut()
            .admit(&self.settings.caps, a.channel(), tz, a.fired_at)
        {
            return self.suppress(a, Reason::FrequencyCap, why, at, out);
        }
        match self.settings.quiet.release(tz, a.fired_at) {
            Some(release) if release > at => {
                self.schedule(release, RELEASE, Entry::Release(a), out)
            }
            _ => self.write(a, out),
        }
    }

    /// Step 6's end: a held action is due; erasure and consent are checked again.
    fn release(&mut self, at: Timestamp, a: Packed, out: &mut Output) {
        let key = Self::customer_key(&a);
        if self.erased.contains(&key) {
            out.erased += 1;
            return;
        }
        if let Err(why) = consent::check(self.customers.get(&key).map(|c| &c.consent), a.channel())
        {
            let why = format!("{why} when quiet hours ended (held since {})", a.fired_at);
            return self.suppress(a, Reason::NoConsent, why, at, out);
        }
        self.write(a, out);
    }

    /// Step 7, then out.
    fn write(&mut self, a: Packed, out: &mut Output) {
        if !self.seen.insert(a.action_id(), a.fired_at) {
            out.duplicates += 1;
            return;
        }
        if let Some(c) = a.customer_id() {
            self.customers.get_or_default(c).latest_mut().record(&a);
        }
        out.written.push(a);
    }

    /// The customer's zone: their profile's, else their home store's, else the default.
    pub fn zone(&self, key: &str) -> Tz {
        zone_of(
            self.customers.get(key),
            &self.stores,
            self.settings.default_zone,
        )
    }

    /// Actions held for arbitration or quiet hours.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Customers with policy state.
    pub fn customers(&self) -> usize {
        self.customers.len()
    }
}

/// The zone of customer `c`: their profile's, else their home store's, else `default`.
fn zone_of(c: Option<&Customer>, stores: &FxHashMap<Str, Zone>, default: Tz) -> Tz {
    c.and_then(|c| c.zone.tz())
        .or_else(|| {
            c.and_then(|c| c.home_store.as_ref())
                .and_then(|s| stores.get(s))
                .and_then(Zone::tz)
        })
        .unwrap_or(default)
}

#[cfg(test)]
mod tests;
