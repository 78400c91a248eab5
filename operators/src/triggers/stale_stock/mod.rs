//! stale_stock → `markdowns`, and markdown_offer → `notifications`: price cuts on lots
//! near their best-before, or not selling, and offers to the store's recent buyers.
//!
//! Exactly `triggers.md`: a lot is an `inventory` `stock` record's (store, item, lot);
//! a later record replaces it. A `purchase` at a store reduces that store's lots of
//! each item, earliest `expires_at` first. Each lot follows its category's schedule
//! (or the default): when the clock reaches a step and the lot still has units, one
//! markdown fires, `new_price` = price × (1 − pct/100) rounded half away from zero to
//! the currency's minor unit. A lot without `expires_at` whose item has not sold at
//! the store for `slow_days`, with at least `slow_min_on_hand` units, gets one
//! slow-mover markdown. A markdown of at least `offer_min_pct` makes a `markdown_offer`
//! to each customer who bought the category at the store in the last 30 days, most
//! recent first, at most `offer_max_customers`, once per customer per store per day.
//!
//! Keyed by store. Stock arrives keyed by store, but purchases arrive keyed by
//! customer: the runtime re-keys each purchase at a store into a `sale`
//! ([`Event::sale`]) routed to the store's worker at the purchase's event-time
//! position, the repartition step of a Kafka Streams topology. Steps a lot's
//! schedule had already passed when the lot arrived are not fired: the clock reached
//! them before the lot existed.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use crate::action::{Action, OutputTopic};
use crate::config::{MarkdownStep, StaleStockConfig};
use crate::event::{Event, EventKind, Interest, Str};
use crate::local;
use crate::money::discounted;
use crate::operator::{Context, KeyState, Operator};
use crate::state::{KeyedState, StateImage};
use crate::time::{Span, Timestamp};

/// The markdown trigger's name in actions and metrics.
pub const NAME: &str = "stale_stock";
/// The customer offer's trigger name.
pub const OFFER: &str = "markdown_offer";
const RULE_VERSION: &str = "1";
const CHANNEL: &str = "pricing";
const TEMPLATE: &str = "markdown";
const OFFER_TEMPLATE: &str = "markdown_offer";
const OFFER_CHANNEL: &str = "push";
/// Buyers of a category in this window get offers.
const BUYER_WINDOW: Span = Span::from_secs(30 * 86_400);

/// The operator.
pub struct StaleStock {
    /// Steps by category; the default under "". Each sorted by due time (hours
    /// before expiry, descending).
    schedules: BTreeMap<String, Vec<MarkdownStep>>,
    slow: Span,
    slow_min_on_hand: u64,
    slow_pct: u32,
    offer_min_pct: u32,
    offer_max: usize,
    stores: KeyedState<Shelf>,
}

/// One store's lots and recent buyers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Shelf {
    lots: BTreeMap<(Str, Str), Lot>,
    /// Timer tag → (item, lot).
    tags: BTreeMap<u64, (Str, Str)>,
    /// Last sale per item.
    last_sale: BTreeMap<Str, i64>,
    /// Per category: customer → when they last bought it (nanos). Pruned to the
    /// window at each markdown; sorted only when offers are made.
    buyers: BTreeMap<Str, BTreeMap<Str, i64>>,
    /// (customer, store-local date) of offers made, for the last couple of days.
    offered: Vec<(Str, i64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Lot {
    category: Option<Str>,
    on_hand: u64,
    #[serde(with = "crate::money::opt_exact")]
    price: Option<Decimal>,
    currency: Option<Str>,
    #[serde(with = "crate::time::nanos::opt")]
    expires_at: Option<Timestamp>,
    #[serde(with = "crate::time::nanos")]
    first_seen: Timestamp,
    /// The next schedule step not yet reached.
    next_step: usize,
    /// The armed timer.
    #[serde(with = "crate::time::nanos::opt")]
    due: Option<Timestamp>,
    slow_fired: bool,
}

fn tag(item: &str, lot: &str) -> u64 {
    let mut b = Vec::with_capacity(item.len() + lot.len() + 1);
    b.extend_from_slice(item.as_bytes());
    b.push(0);
    b.extend_from_slice(lot.as_bytes());
    xxh3_64(&b)
}

/// A step's instant: `hours` before `expires_at`, to the millisecond.
fn step_due(expires_at: Timestamp, hours: f64) -> Timestamp {
    expires_at.minus(Span::from_millis((hours * 3_600_000.0).round() as i64))
}

impl StaleStock {
    /// The trigger as `cfg` sets it up.
    pub fn new(cfg: &StaleStockConfig) -> Self {
        let sorted = |steps: &[MarkdownStep]| {
            let mut s = steps.to_vec();
            s.sort_by(|a, b| b.hours_before_expiry.total_cmp(&a.hours_before_expiry));
            s
        };
        let mut schedules: BTreeMap<String, Vec<MarkdownStep>> = cfg
            .categories
            .iter()
            .map(|(c, steps)| (c.clone(), sorted(steps)))
            .collect();
        schedules.insert(String::new(), sorted(&cfg.schedule));
        StaleStock {
            schedules,
            slow: Span::from_secs(i64::from(cfg.slow_days) * 86_400),
            slow_min_on_hand: cfg.slow_min_on_hand,
            slow_pct: cfg.slow_discount_pct,
            offer_min_pct: cfg.offer_min_pct,
            offer_max: cfg.offer_max_customers as usize,
            stores: KeyedState::default(),
        }
    }

    fn schedule(&self, category: Option<&str>) -> &[MarkdownStep] {
        category
            .and_then(|c| self.schedules.get(c))
            .or_else(|| self.schedules.get(""))
            .map_or(&[], |s| s.as_slice())
    }

    /// When the lot's timer should be: its next schedule step, or the end of its
    /// no-sale period; `None` when nothing is left to fire.
    fn next_due(&self, shelf: &Shelf, item: &str, lot: &Lot) -> Option<Timestamp> {
        match lot.expires_at {
            Some(exp) => self
                .schedule(lot.category.as_deref())
                .get(lot.next_step)
                .map(|s| step_due(exp, s.hours_before_expiry)),
            None if lot.slow_fired => None,
            None => {
                let since = shelf.last_sale.get(item).map_or(lot.first_seen, |t| {
                    lot.first_seen.max(Timestamp::from_nanos(*t))
                });
                Some(since.plus(self.slow))
            }
        }
    }

    /// Re-arms the timer of one lot after its state changed.
    fn rearm(&self, shelf: &mut Shelf, item: &Str, lot_id: &Str, ctx: &mut Context<'_>) {
        let t = tag(item, lot_id);
        let Some(lot) = shelf.lots.get(&(item.clone(), lot_id.clone())) else {
            return;
        };
        // A slow lot whose no-sale period ended without enough units on hand waits for
        // the next sale to start a new period.
        let next = self
            .next_due(shelf, item, lot)
            .filter(|d| lot.expires_at.is_some() || *d > ctx.now());
        let old = lot.due;
        if next == old {
            return;
        }
        if let Some(d) = old {
            ctx.cancel_timer(t, d);
        }
        if let Some(d) = next {
            ctx.set_timer(t, d);
            shelf.tags.insert(t, (item.clone(), lot_id.clone()));
        }
        if let Some(lot) = shelf.lots.get_mut(&(item.clone(), lot_id.clone())) {
            lot.due = next;
        }
    }

    fn on_stock(&mut self, event: &Event, ctx: &mut Context<'_>) {
        let EventKind::Stock(s) = &event.kind else {
            return;
        };
        let now = event.timestamp;
        // Taken out and put back: no copy unless a checkpoint still shares it.
        let mut shelf = self.stores.remove(ctx.key()).unwrap_or_default();
        let k = (s.item_id.clone(), s.lot_id.clone());
        let category = s.item_category.clone();
        let fresh_schedule = |first_seen| {
            let steps = self.schedule(category.as_deref());
            let next_step = match s.expires_at {
                // Steps already behind the clock when the lot arrives are not fired.
                Some(exp) => steps
                    .iter()
                    .position(|st| step_due(exp, st.hours_before_expiry) >= now)
                    .unwrap_or(steps.len()),
                None => 0,
            };
            Lot {
                category: category.clone(),
                on_hand: s.on_hand,
                price: s.price,
                currency: s.currency.clone(),
                expires_at: s.expires_at,
                first_seen,
                next_step,
                due: None,
                slow_fired: false,
            }
        };
        let lot = match shelf.lots.get(&k) {
            // Same lot, same best-before: the schedule goes on.
            Some(old) if old.expires_at == s.expires_at => Lot {
                category: category.clone().or_else(|| old.category.clone()),
                on_hand: s.on_hand,
                price: s.price.or(old.price),
                currency: s.currency.clone().or_else(|| old.currency.clone()),
                ..old.clone()
            },
            Some(old) => {
                if let Some(d) = old.due {
                    ctx.cancel_timer(tag(&k.0, &k.1), d);
                }
                fresh_schedule(old.first_seen)
            }
            None => fresh_schedule(now),
        };
        shelf.lots.insert(k.clone(), lot);
        self.rearm(&mut shelf, &k.0, &k.1, ctx);
        self.stores.insert(ctx.key(), shelf);
    }

    fn on_sale(&mut self, event: &Event, ctx: &mut Context<'_>) {
        let EventKind::Sale(sale) = &event.kind else {
            return;
        };
        let now = event.timestamp;
        let mut shelf = self.stores.remove(ctx.key()).unwrap_or_default();
        let mut touched = Vec::new();
        for item in &sale.items {
            let mut left = u64::from(item.quantity);
            // Earliest best-before first; lots without one last; then by lot id.
            let mut order: Vec<(&(Str, Str), &Lot)> = shelf
                .lots
                .range((item.item_id.clone(), Str::default())..)
                .take_while(|((i, _), _)| *i == item.item_id)
                .collect();
            order
                .sort_by_key(|((_, l), lot)| (lot.expires_at.is_none(), lot.expires_at, l.clone()));
            let keys: Vec<(Str, Str)> = order.into_iter().map(|(k, _)| k.clone()).collect();
            let mut category = item.item_category.clone();
            for k in keys {
                let lot = shelf.lots.get_mut(&k).expect("listed");
                category = category.or_else(|| lot.category.clone());
                let take = left.min(lot.on_hand);
                lot.on_hand -= take;
                left -= take;
                if lot.expires_at.is_none() {
                    touched.push(k);
                }
            }
            let last = shelf
                .last_sale
                .entry(item.item_id.clone())
                .or_insert(i64::MIN);
            *last = (*last).max(now.as_nanos());
            if let Some(c) = category {
                let last = shelf
                    .buyers
                    .entry(c)
                    .or_default()
                    .entry(sale.customer.clone())
                    .or_insert(i64::MIN);
                *last = (*last).max(now.as_nanos());
            }
        }
        // A sale restarts the no-sale period of the item's slow lots.
        for (item, lot) in touched {
            self.rearm(&mut shelf, &item, &lot, ctx);
        }
        self.stores.insert(ctx.key(), shelf);
    }

    fn markdown(
        &self,
        shelf: &mut Shelf,
        (item, lot_id): (&Str, &Str),
        pct: u32,
        ctx: &mut Context<'_>,
    ) {
        let Some(lot) = shelf.lots.get(&(item.clone(), lot_id.clone())) else {
            return;
        };
        // A markdown is a price: a lot without one has nothing to cut.
        let Some(price) = lot.price else {
            return;
        };
        let now = ctx.now();
        let store = ctx.key();
        let new_price = discounted(price, pct, lot.currency.as_deref());
        let why = match lot.expires_at {
            Some(exp) => format!("expires in {}", exp.since(now).human()),
            None => format!("no sale for {}", self.slow.human()),
        };
        let body = json!({
            "store_id": store,
            "item_id": item.as_str(),
            "lot_id": lot_id.as_str(),
            "item_category": lot.category,
            "on_hand": lot.on_hand,
            "price": price.to_string(),
            "new_price": new_price.to_string(),
            "currency": lot.currency,
            "discount_pct": pct,
            "valid_until": lot.expires_at,
        });
        ctx.emit(Action {
            store_id: Some(store.to_owned()),
            channel: CHANNEL.to_owned(),
            template: TEMPLATE.to_owned(),
            reason: format!(
                "lot {lot_id} of {item}: {} on hand, {why}: {pct} % off, {price} → {new_price}",
                lot.on_hand
            ),
            payload: body.clone(),
            ..Action::new(
                NAME,
                RULE_VERSION,
                &format!("{store}/{item}/{lot_id}/{pct}"),
                now,
                OutputTopic::Markdowns,
            )
        });
        if pct < self.offer_min_pct {
            return;
        }
        let Some(category) = lot.category.clone() else {
            return;
        };
        let tz = ctx.reference().zone(store).unwrap_or(Tz::UTC);
        let today = local::day_number(local::date(tz, now));
        shelf.offered.retain(|(_, d)| *d >= today);
        let horizon = now.minus(BUYER_WINDOW).as_nanos();
        for b in shelf.buyers.values_mut() {
            b.retain(|_, t| *t >= horizon);
        }
        // Most recent first; ties by customer key, so offers are deterministic.
        let mut recent: Vec<(i64, &Str)> = shelf
            .buyers
            .get(&category)
            .into_iter()
            .flatten()
            .filter(|(_, t)| **t <= now.as_nanos())
            .map(|(c, t)| (*t, c))
            .collect();
        recent.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let offered_today: std::collections::BTreeSet<&Str> = shelf
            .offered
            .iter()
            .filter(|(_, d)| *d == today)
            .map(|(c, _)| c)
            .collect();
        let buyers: Vec<Str> = recent
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| !offered_today.contains(c))
            .take(self.offer_max)
            .cloned()
            .collect();
        for customer in buyers {
            shelf.offered.push((customer.clone(), today));
            ctx.emit(Action {
                customer_id: Some(customer.to_string()),
                store_id: Some(store.to_owned()),
                channel: OFFER_CHANNEL.to_owned(),
                template: OFFER_TEMPLATE.to_owned(),
                reason: format!(
                    "bought {category} at {store} in the last 30 days; {item} now {pct} % off"
                ),
                payload: body.clone(),
                ..Action::new(
                    OFFER,
                    RULE_VERSION,
                    &format!("{customer}/{store}/{item}/{lot_id}"),
                    now,
                    OutputTopic::Notifications,
                )
            });
        }
    }
}

impl Operator for StaleStock {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interest(&self) -> Interest {
        // Stores feed the reference state (a store's zone dates its offers).
        Interest::types(&["stock", "sale", "store"])
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context<'_>) {
        match &event.kind {
            EventKind::Stock(_) => self.on_stock(event, ctx),
            EventKind::Sale(_) => self.on_sale(event, ctx),
            _ => {}
        }
    }

    fn on_timer(&mut self, tag: u64, ctx: &mut Context<'_>) {
        let now = ctx.now();
        let Some(mut shelf) = self.stores.remove(ctx.key()) else {
            return;
        };
        let Some((item, lot_id)) = shelf.tags.get(&tag).cloned() else {
            self.stores.insert(ctx.key(), shelf);
            return;
        };
        let k = (item.clone(), lot_id.clone());
        match shelf.lots.get(&k) {
            Some(lot) if lot.due == Some(now) => {}
            _ => {
                self.stores.insert(ctx.key(), shelf);
                return;
            }
        }
        let lot = shelf.lots.get_mut(&k).expect("just checked");
        lot.due = None;
        match lot.expires_at {
            Some(exp) => {
                // Every step due by now (several when steps share an instant).
                let steps = self.schedule(lot.category.as_deref()).to_vec();
                while let Some(lot) = shelf.lots.get_mut(&k) {
                    let Some(step) = steps.get(lot.next_step) else {
                        break;
                    };
                    if step_due(exp, step.hours_before_expiry) > now {
                        break;
                    }
                    lot.next_step += 1;
                    if lot.on_hand > 0 {
                        self.markdown(&mut shelf, (&item, &lot_id), step.discount_pct, ctx);
                    }
                }
            }
            None => {
                if lot.on_hand >= self.slow_min_on_hand {
                    lot.slow_fired = true;
                    self.markdown(&mut shelf, (&item, &lot_id), self.slow_pct, ctx);
                }
            }
        }
        shelf.tags.remove(&tag);
        self.rearm(&mut shelf, &item, &lot_id, ctx);
        self.stores.insert(ctx.key(), shelf);
    }

    fn export(&mut self, ctx: &mut Context<'_>) -> Option<KeyState> {
        let shelf = self.stores.remove(ctx.key())?;
        for ((item, lot_id), lot) in &shelf.lots {
            if let Some(d) = lot.due {
                ctx.cancel_timer(tag(item, lot_id), d);
            }
        }
        Some(Box::new(shelf))
    }

    fn forget(&mut self, customer: &str) {
        let keys: Vec<Str> = self
            .stores
            .iter()
            .filter(|(_, s)| {
                s.offered.iter().any(|(c, _)| c == customer)
                    || s.buyers
                        .values()
                        .any(|b| b.iter().any(|(c, _)| c == customer))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(s) = self.stores.get_mut(&k) {
                s.offered.retain(|(c, _)| c != customer);
                for b in s.buyers.values_mut() {
                    b.remove(customer);
                }
            }
        }
    }

    fn import(&mut self, state: KeyState, ctx: &mut Context<'_>) {
        let Ok(shelf) = state.downcast::<Shelf>() else {
            return;
        };
        if self.stores.contains_key(ctx.key()) {
            return;
        }
        for ((item, lot_id), lot) in &shelf.lots {
            if let Some(d) = lot.due {
                ctx.set_timer(tag(item, lot_id), d);
            }
        }
        self.stores.insert(ctx.key(), *shelf);
    }

    fn snapshot(&self) -> Box<dyn StateImage> {
        self.stores.image()
    }

    fn restore(&mut self, key: &str, bytes: &[u8]) -> Result<(), String> {
        self.stores.restore(key, bytes)
    }

    fn key_count(&self) -> usize {
        self.stores.len()
    }

    fn live(&self, _now: Timestamp, out: &mut crate::live::Live) {
        for (store, shelf) in self.stores.iter() {
            for ((item, lot_id), lot) in &shelf.lots {
                out.lots.push(crate::live::LotRow {
                    store_id: store.clone(),
                    item_id: item.clone(),
                    lot_id: lot_id.clone(),
                    category: lot.category.clone(),
                    on_hand: lot.on_hand,
                    price: lot.price,
                    currency: lot.currency.clone(),
                    expires_at: lot.expires_at,
                    first_seen_at: lot.first_seen,
                    markdowns: lot.next_step as u32,
                    next_markdown_at: lot.due,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
