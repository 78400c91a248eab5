//! abandoned_cart → `notifications`: a cart left idle for `delay` with value in it.
//!
//! Exactly `docs/triggers.md`: contents per `item_id` (removals floor at 0, price from the
//! latest `add_to_cart`), a deadline moved by every cart activity, exit on purchase (by
//! `cart_id`, or by the customer at or after the cart's first activity), `min_value`,
//! a per-customer `cooldown` between `fired_at`s, and a notified cart that re-arms only
//! on new activity.

use compact_str::CompactString;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use crate::action::{Action, OutputTopic};
use crate::event::{CartChange, Event, EventKind, Interest};
use crate::money::deserialize_money_str;
use crate::operator::{Context, KeyState, Operator};
use crate::state::{KeyedState, StateImage};
use crate::time::{Span, Timestamp};

/// The trigger's name in actions and metrics.
pub const NAME: &str = "abandoned_cart";
const RULE_VERSION: &str = "1";

/// `[triggers.abandoned_cart]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AbandonedCartConfig {
    /// Whether the trigger runs.
    pub enabled: bool,
    /// Idle time after the latest cart activity before the cart counts as abandoned.
    pub delay_secs: u64,
    /// The smallest cart value that fires (money, a string).
    #[serde(deserialize_with = "deserialize_money_str")]
    pub min_value: Decimal,
    /// At most one abandoned_cart action per customer within this span (between `fired_at`s).
    pub cooldown_secs: u64,
    /// The channel actions go out on.
    pub channel: String,
    /// The template marketing automation renders.
    pub template: String,
}

impl Default for AbandonedCartConfig {
    fn default() -> Self {
        AbandonedCartConfig {
            enabled: true,
            delay_secs: 1800,
            min_value: Decimal::new(1, 2),
            cooldown_secs: 86_400,
            channel: "push".into(),
            template: "abandoned_cart_reminder".into(),
        }
    }
}

/// The operator.
pub struct AbandonedCart {
    delay: Span,
    cooldown: Span,
    min_value: Decimal,
    channel: String,
    template: String,
    customers: KeyedState<Customer>,
}

/// One customer's carts and cooldown.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Customer {
    carts: Vec<Cart>,
    #[serde(with = "crate::time::nanos::opt")]
    last_fired: Option<Timestamp>,
    anonymous_id: Option<CompactString>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cart {
    /// `cart_id`, or the customer key for the default cart.
    id: CompactString,
    /// Whether `id` is a real `cart_id` (else the default cart, renamed on merge).
    named: bool,
    lines: Vec<Line>,
    currency: Option<CompactString>,
    #[serde(with = "crate::time::nanos")]
    first_activity: Timestamp,
    #[serde(with = "crate::time::nanos")]
    last_activity: Timestamp,
    notified: bool,
    /// The instant its timer is set at, while one is: at or before the deadline (a timer
    /// that fires early re-arms at the deadline).
    #[serde(with = "crate::time::nanos::opt")]
    armed: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    item_id: CompactString,
    #[serde(with = "crate::money::exact")]
    price: Decimal,
    quantity: u64,
}

impl Cart {
    fn value(&self) -> Decimal {
        self.lines
            .iter()
            .map(|l| l.price * Decimal::from(l.quantity))
            .sum()
    }

    fn tag(&self) -> u64 {
        xxh3_64(self.id.as_bytes())
    }

    fn add(&mut self, item_id: &str, price: Option<Decimal>, quantity: u64) {
        match self.lines.iter_mut().find(|l| l.item_id == item_id) {
            Some(line) => {
                line.quantity += quantity;
                if let Some(p) = price {
                    line.price = p;
                }
            }
            None => push_exact(
                &mut self.lines,
                Line {
                    item_id: item_id.into(),
                    price: price.unwrap_or_default(),
                    quantity,
                },
            ),
        }
    }

    fn remove(&mut self, item_id: &str, quantity: u64) {
        if let Some(i) = self.lines.iter().position(|l| l.item_id == item_id) {
            let line = &mut self.lines[i];
            line.quantity = line.quantity.saturating_sub(quantity);
            if line.quantity == 0 {
                self.lines.remove(i);
            }
        }
    }
}

/// Pushes without `Vec`'s growth to 4: a million customers mostly have one cart of a
/// few lines, and spare capacity would be most of their memory.
fn push_exact<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact(1);
    }
    v.push(x);
}

impl AbandonedCart {
    /// Builds the operator from its config.
    pub fn new(cfg: &AbandonedCartConfig) -> Self {
        AbandonedCart {
            delay: Span::from_secs(cfg.delay_secs as i64),
            cooldown: Span::from_secs(cfg.cooldown_secs as i64),
            min_value: cfg.min_value,
            channel: cfg.channel.clone(),
            template: cfg.template.clone(),
            customers: KeyedState::default(),
        }
    }

    /// Cart activity on `cart_id` (or the default cart): applies `change` and moves the deadline.
    fn activity(
        &mut self,
        cart_id: Option<&str>,
        change: Option<(&CartChange, bool)>,
        event: &Event,
        ctx: &mut Context<'_>,
    ) {
        let key = ctx.key();
        let ts = event.timestamp;
        let id = cart_id.unwrap_or(key);
        let is_add = matches!(change, Some((_, true)));
        // Only an add opens a cart; viewing or removing from nothing is no cart.
        // One lookup on the hot path (the customer exists); an insert only for a first add.
        if !self.customers.contains_key(key) {
            if !is_add {
                return;
            }
            self.customers.insert(key, Customer::default());
        }
        let Some(customer) = self.customers.get_mut(key) else {
            return;
        };
        if !is_add && !customer.carts.iter().any(|c| c.id == id) {
            return;
        }
        if let Some(a) = &event.anonymous_id
            && customer.anonymous_id.as_deref() != Some(a.as_str())
        {
            customer.anonymous_id = Some(a.clone());
        }
        let idx = match customer.carts.iter().position(|c| c.id == id) {
            Some(i) => i,
            None => {
                push_exact(
                    &mut customer.carts,
                    Cart {
                        id: id.into(),
                        named: cart_id.is_some(),
                        lines: Vec::new(),
                        currency: None,
                        first_activity: ts,
                        last_activity: ts,
                        notified: false,
                        armed: None,
                    },
                );
                customer.carts.len() - 1
            }
        };
        let cart = &mut customer.carts[idx];
        if let Some((change, is_add)) = change {
            if let Some(c) = &change.currency {
                cart.currency = Some(c.clone());
            }
            for item in &change.items {
                if is_add {
                    cart.add(&item.item_id, item.price, u64::from(item.quantity));
                } else {
                    cart.remove(&item.item_id, u64::from(item.quantity));
                }
            }
        }
        cart.first_activity = cart.first_activity.min(ts);
        cart.last_activity = cart.last_activity.max(ts);
        cart.notified = false;
        // Deadlines only move later. A timer already armed earlier stays: when it fires it
        // re-arms at the current deadline, which saves a timer move on every activity.
        if cart.armed.is_none() {
            let due = cart.last_activity.plus(self.delay);
            ctx.set_timer(cart.tag(), due);
            cart.armed = Some(due);
        }
    }

    fn purchase(&mut self, cart_id: Option<&str>, ts: Timestamp, ctx: &mut Context<'_>) {
        let Some(customer) = self.customers.get_mut(ctx.key()) else {
            return;
        };
        customer.carts.retain(|cart| {
            let exits = match cart_id {
                Some(id) => cart.id == id,
                None => cart.first_activity <= ts,
            };
            if let (true, Some(due)) = (exits, cart.armed) {
                ctx.cancel_timer(cart.tag(), due);
            }
            !exits
        });
        if customer.carts.is_empty() && customer.last_fired.is_none() {
            self.customers.remove(ctx.key());
        }
    }
}

impl Operator for AbandonedCart {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interest(&self) -> Interest {
        Interest::types(&[
            "add_to_cart",
            "remove_from_cart",
            "view_cart",
            "begin_checkout",
            "purchase",
        ])
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context<'_>) {
        match &event.kind {
            EventKind::AddToCart(c) => {
                self.activity(c.cart_id.as_deref(), Some((c, true)), event, ctx)
            }
            EventKind::RemoveFromCart(c) => {
                self.activity(c.cart_id.as_deref(), Some((c, false)), event, ctx)
            }
            EventKind::ViewCart { cart_id } | EventKind::BeginCheckout { cart_id } => {
                self.activity(cart_id.as_deref(), None, event, ctx)
            }
            EventKind::Purchase(tx) => self.purchase(tx.cart_id.as_deref(), event.timestamp, ctx),
            _ => {}
        }
    }

    fn on_timer(&mut self, tag: u64, ctx: &mut Context<'_>) {
        let due = ctx.now();
        let key = ctx.key();
        let Some(customer) = self.customers.get_mut(key) else {
            return;
        };
        let Some(idx) = customer.carts.iter().position(|c| c.tag() == tag) else {
            return;
        };
        let cart = &mut customer.carts[idx];
        if cart.armed != Some(due) {
            return;
        }
        cart.armed = None;
        let deadline = cart.last_activity.plus(self.delay);
        if deadline > due {
            ctx.set_timer(cart.tag(), deadline);
            cart.armed = Some(deadline);
            return;
        }
        if cart.lines.is_empty() {
            customer.carts.remove(idx);
            if customer.carts.is_empty() && customer.last_fired.is_none() {
                self.customers.remove(key);
            }
            return;
        }
        let value = cart.value();
        if value < self.min_value {
            return;
        }
        if customer
            .last_fired
            .is_some_and(|last| due.since(last) < self.cooldown)
        {
            return;
        }
        cart.notified = true;
        customer.last_fired = Some(due);
        let currency = cart.currency.as_deref();
        let items: Vec<_> = cart
            .lines
            .iter()
            .map(|l| json!({"item_id": l.item_id.as_str(), "price": l.price.to_string(), "quantity": l.quantity}))
            .collect();
        let reason = format!(
            "cart {} idle {}, value {}{}",
            cart.id,
            self.delay.human(),
            value,
            currency.map(|c| format!(" {c}")).unwrap_or_default()
        );
        let action = Action {
            customer_id: Some(key.to_owned()),
            anonymous_id: customer.anonymous_id.as_ref().map(|a| a.to_string()),
            channel: self.channel.clone(),
            template: self.template.clone(),
            reason,
            payload: json!({
                "cart_id": cart.id.as_str(),
                "value": value.to_string(),
                "currency": currency,
                "items": items,
                "last_activity_at": cart.last_activity,
            }),
            ..Action::new(
                NAME,
                RULE_VERSION,
                &cart.id,
                due,
                OutputTopic::Notifications,
            )
        };
        ctx.emit(action);
    }

    fn export(&mut self, ctx: &mut Context<'_>) -> Option<KeyState> {
        let mut customer = self.customers.remove(ctx.key())?;
        for cart in &mut customer.carts {
            if let Some(due) = cart.armed.take() {
                ctx.cancel_timer(cart.tag(), due);
            }
        }
        Some(Box::new(customer))
    }

    fn import(&mut self, state: KeyState, ctx: &mut Context<'_>) {
        let Ok(from) = state.downcast::<Customer>() else {
            return;
        };
        let key = ctx.key();
        let into = self.customers.get_or_default(key);
        into.last_fired = into.last_fired.max(from.last_fired);
        if from.anonymous_id.is_some() {
            into.anonymous_id = from.anonymous_id;
        }
        for mut cart in from.carts {
            if !cart.named {
                cart.id = key.into();
            }
            match into.carts.iter_mut().find(|c| c.id == cart.id) {
                Some(existing) => {
                    let newer = cart.last_activity > existing.last_activity;
                    for line in cart.lines {
                        let price = newer.then_some(line.price);
                        existing.add(&line.item_id, price, line.quantity);
                    }
                    if newer && cart.currency.is_some() {
                        existing.currency = cart.currency;
                    }
                    existing.first_activity = existing.first_activity.min(cart.first_activity);
                    existing.last_activity = existing.last_activity.max(cart.last_activity);
                    existing.notified &= cart.notified;
                }
                None => into.carts.push(cart),
            }
        }
        for cart in into.carts.iter_mut().filter(|c| !c.notified) {
            let due = cart.last_activity.plus(self.delay);
            ctx.move_timer(cart.tag(), cart.armed, due);
            cart.armed = Some(due);
        }
    }

    fn snapshot(&self) -> Box<dyn StateImage> {
        self.customers.image()
    }

    fn restore(&mut self, key: &str, bytes: &[u8]) -> Result<(), String> {
        self.customers.restore(key, bytes)
    }

    fn key_count(&self) -> usize {
        self.customers.len()
    }

    fn live(&self, _now: Timestamp, out: &mut crate::live::Live) {
        for (key, c) in self.customers.iter() {
            for cart in c.carts.iter().filter(|c| !c.lines.is_empty()) {
                out.carts.push(crate::live::CartRow {
                    customer_key: key.clone(),
                    anonymous_id: c.anonymous_id.clone(),
                    cart_id: cart.id.clone(),
                    currency: cart.currency.clone(),
                    value: cart.value(),
                    items: cart.lines.iter().map(|l| l.quantity).sum(),
                    lines: cart.lines.len() as u32,
                    first_activity_at: cart.first_activity,
                    last_activity_at: cart.last_activity,
                    reminded: cart.notified,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
