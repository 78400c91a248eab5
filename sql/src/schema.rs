//! The tables' columns (`docs/events.md`, "SQL tables") and how an event becomes rows.

use datafusion::arrow::datatypes::SchemaRef;
use footfall_operators::action::Action;
use footfall_operators::event::{Event, EventKind, Item, Topic};
use footfall_operators::policy::Packed;
use rust_decimal::Decimal;

use crate::rows::{Kind, Kind::*, Rows, schema};

/// A retained table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Clickstream,
    Transactions,
    TransactionItems,
    Inventory,
    Stores,
    Weather,
    Profiles,
    Actions,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 8] = [
        Table::Clickstream,
        Table::Transactions,
        Table::TransactionItems,
        Table::Inventory,
        Table::Stores,
        Table::Weather,
        Table::Profiles,
        Table::Actions,
    ];

    /// The table's SQL name.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Clickstream => "clickstream",
            Table::Transactions => "transactions",
            Table::TransactionItems => "transaction_items",
            Table::Inventory => "inventory",
            Table::Stores => "stores",
            Table::Weather => "weather",
            Table::Profiles => "profiles",
            Table::Actions => "actions",
        }
    }

    /// The column retention prunes on.
    pub const fn time_column(self) -> &'static str {
        match self {
            Table::Actions => "fired_at",
            _ => "timestamp",
        }
    }

    /// The table's columns.
    pub fn schema(self) -> SchemaRef {
        schema(self.columns())
    }

    fn columns(self) -> &'static [(&'static str, Kind, bool)] {
        match self {
            Table::Clickstream => &[
                ("message_id", Text, false),
                ("type", Label, false),
                ("timestamp", Time, false),
                ("user_id", Text, true),
                ("anonymous_id", Text, true),
                ("customer_key", Text, false),
                ("channel", Label, true),
                ("store_id", Label, true),
                ("cart_id", Text, true),
                ("currency", Label, true),
                ("value", Money, true),
                ("item_id", Text, true),
                ("item_category", Label, true),
                ("quantity", SmallInt, true),
                ("query", Text, true),
                ("lat", Float, true),
                ("lon", Float, true),
                ("accuracy_m", SmallFloat, true),
            ],
            Table::Transactions => &[
                ("message_id", Text, false),
                ("type", Label, false),
                ("timestamp", Time, false),
                ("user_id", Text, true),
                ("anonymous_id", Text, true),
                ("customer_key", Text, false),
                ("channel", Label, true),
                ("store_id", Label, true),
                ("transaction_id", Text, false),
                ("cart_id", Text, true),
                ("currency", Label, true),
                ("value", Money, true),
                ("tax", Money, true),
                ("shipping", Money, true),
                ("discount", Money, true),
                ("coupon", Text, true),
                ("payment_type", Label, true),
                ("reason", Text, true),
                ("item_count", Int, false),
            ],
            Table::TransactionItems => &[
                ("transaction_id", Text, false),
                ("type", Label, false),
                ("timestamp", Time, false),
                ("customer_key", Text, false),
                ("store_id", Label, true),
                ("currency", Label, true),
                ("item_id", Text, false),
                ("item_name", Text, true),
                ("item_category", Label, true),
                ("price", Money, true),
                ("quantity", Int, false),
            ],
            Table::Inventory => &[
                ("message_id", Text, false),
                ("timestamp", Time, false),
                ("store_id", Label, true),
                ("item_id", Text, false),
                ("item_category", Label, true),
                ("lot_id", Text, false),
                ("on_hand", Int, false),
                ("price", Money, true),
                ("currency", Label, true),
                ("expires_at", Time, true),
            ],
            Table::Stores => &[
                ("message_id", Text, false),
                ("timestamp", Time, false),
                ("store_id", Label, true),
                ("lat", Float, false),
                ("lon", Float, false),
                ("timezone", Label, true),
                ("region", Label, true),
            ],
            Table::Weather => &[
                ("message_id", Text, false),
                ("timestamp", Time, false),
                ("store_id", Label, true),
                ("region", Label, true),
                ("temp_c", Float, false),
                ("condition", Label, false),
            ],
            // Profile changes, one row per `profile` event (the latest per customer is
            // the profile as it stands).
            Table::Profiles => &[
                ("message_id", Text, false),
                ("timestamp", Time, false),
                ("customer_key", Text, false),
                ("birthday", Text, true),
                ("timezone", Label, true),
                ("home_store_id", Label, true),
                ("tier", Label, true),
                ("consent_push", Int, true),
                ("consent_sms", Int, true),
                ("consent_email", Int, true),
            ],
            Table::Actions => &[
                ("action_id", Text, false),
                ("topic", Label, false),
                ("trigger", Label, false),
                ("rule_version", Label, false),
                ("customer_id", Text, true),
                ("anonymous_id", Text, true),
                ("store_id", Label, true),
                ("channel", Label, false),
                ("template", Label, false),
                ("fired_at", Time, false),
                ("emitted_at", Time, true),
                ("group", Label, false),
                ("reason", Text, false),
                ("detail", Text, true),
                ("payload", Text, true),
            ],
        }
    }

    /// The tables an event of `kind` goes to.
    pub fn of_kind(kind: &EventKind) -> &'static [Table] {
        match kind {
            EventKind::Purchase(_) | EventKind::Refund(_) => {
                &[Table::Transactions, Table::TransactionItems]
            }
            EventKind::Profile(_) => &[Table::Profiles],
            EventKind::Stock(_) => &[Table::Inventory],
            EventKind::Store(_) => &[Table::Stores],
            EventKind::Weather(_) => &[Table::Weather],
            EventKind::Erase | EventKind::Sale(_) => &[],
            _ => &[Table::Clickstream],
        }
    }

    /// The tables an input topic's events go to.
    pub fn of_topic(topic: Topic) -> &'static [Table] {
        match topic {
            Topic::Clickstream => &[Table::Clickstream],
            Topic::Transactions => &[Table::Transactions, Table::TransactionItems],
            Topic::Inventory => &[Table::Inventory],
            Topic::Stores => &[Table::Stores],
            Topic::Weather => &[Table::Weather],
            Topic::Customers => &[Table::Profiles],
        }
    }
}

/// Appends the rows `event` (of customer or store `key`) makes in `table`.
pub fn append(table: Table, rows: &mut Rows, key: &str, e: &Event) {
    let id = Some(e.message_id.as_str());
    let ts = Some(e.timestamp);
    let store = e.store_id.as_deref();
    let envelope = |r: &mut Rows| {
        r.text(id)
            .text(Some(e.kind.type_name()))
            .time(ts)
            .text(e.user_id.as_deref())
            .text(e.anonymous_id.as_deref())
            .text(Some(key))
            .text(e.channel.as_deref())
            .text(store);
    };
    match (table, &e.kind) {
        (Table::Clickstream, k) => {
            envelope(rows);
            let (cart, currency, items) = match k {
                EventKind::AddToCart(c) | EventKind::RemoveFromCart(c) => {
                    (c.cart_id.as_deref(), c.currency.as_deref(), &c.items[..])
                }
                EventKind::ViewItem { items } => (None, None, &items[..]),
                EventKind::ViewCart { cart_id } | EventKind::BeginCheckout { cart_id } => {
                    (cart_id.as_deref(), None, &[][..])
                }
                _ => (None, None, &[][..]),
            };
            let value = match k {
                EventKind::AddToCart(_) | EventKind::RemoveFromCart(_) => value_of(items),
                _ => None,
            };
            let first = items.first();
            rows.text(cart)
                .text(currency)
                .money(value)
                .text(first.map(|i| i.item_id.as_str()))
                .text(first.and_then(|i| i.item_category.as_deref()))
                .int((!items.is_empty()).then(|| quantity(items)));
            let (query, lat, lon, acc) = match k {
                EventKind::Search { query } => (query.as_deref(), None, None, None),
                EventKind::Location {
                    lat,
                    lon,
                    accuracy_m,
                } => (None, Some(*lat), Some(*lon), *accuracy_m),
                _ => (None, None, None, None),
            };
            rows.text(query).float(lat).float(lon).float(acc);
            rows.end();
        }
        (Table::Transactions, EventKind::Purchase(t) | EventKind::Refund(t)) => {
            envelope(rows);
            rows.text(Some(&t.transaction_id))
                .text(t.cart_id.as_deref())
                .text(t.currency.as_deref())
                .money(t.value)
                .money(t.tax)
                .money(t.shipping)
                .money(t.discount)
                .text(t.coupon.as_deref())
                .text(t.payment_type.as_deref())
                .text(t.reason.as_deref())
                .int(Some(quantity(&t.items)));
            rows.end();
        }
        (Table::TransactionItems, EventKind::Purchase(t) | EventKind::Refund(t)) => {
            for i in &t.items {
                rows.text(Some(&t.transaction_id))
                    .text(Some(e.kind.type_name()))
                    .time(ts)
                    .text(Some(key))
                    .text(store)
                    .text(t.currency.as_deref())
                    .text(Some(&i.item_id))
                    .text(i.item_name.as_deref())
                    .text(i.item_category.as_deref())
                    .money(i.price)
                    .int(Some(i64::from(i.quantity)));
                rows.end();
            }
        }
        (Table::Inventory, EventKind::Stock(l)) => {
            rows.text(id)
                .time(ts)
                .text(store)
                .text(Some(&l.item_id))
                .text(l.item_category.as_deref())
                .text(Some(&l.lot_id))
                .int(Some(l.on_hand.min(i64::MAX as u64) as i64))
                .money(l.price)
                .text(l.currency.as_deref())
                .time(l.expires_at);
            rows.end();
        }
        (Table::Stores, EventKind::Store(s)) => {
            rows.text(id)
                .time(ts)
                .text(store)
                .float(Some(s.lat))
                .float(Some(s.lon))
                .text(s.timezone.as_deref())
                .text(s.region.as_deref());
            rows.end();
        }
        (Table::Weather, EventKind::Weather(w)) => {
            rows.text(id)
                .time(ts)
                .text(store)
                .text(w.region.as_deref())
                .float(Some(w.temp_c))
                .text(Some(&w.condition));
            rows.end();
        }
        (Table::Profiles, EventKind::Profile(p)) => {
            let consent = |c: &str| {
                p.consent
                    .as_ref()
                    .and_then(|m| m.get(c))
                    .map(|v| i64::from(*v))
            };
            rows.text(id)
                .time(ts)
                .text(Some(key))
                .text(p.birthday.as_deref())
                .text(p.timezone.as_deref())
                .text(p.home_store_id.as_deref())
                .text(p.tier.as_deref())
                .int(consent("push"))
                .int(consent("sms"))
                .int(consent("email"));
            rows.end();
        }
        _ => {}
    }
}

/// Appends a packed action written to `topic`; a suppression's `reason` code replaces
/// the action's and its `detail` follows (the same row [`append_action`] makes).
pub fn append_packed(
    rows: &mut Rows,
    topic: &str,
    a: &Packed,
    reason: Option<&str>,
    detail: Option<&str>,
) {
    let payload = Some(a.payload_json()).filter(|p| *p != "null");
    rows.text(Some(a.action_id()))
        .text(Some(topic))
        .text(Some(a.trigger()))
        .text(Some(a.rule_version()))
        .text(a.customer_id())
        .text(a.anonymous_id())
        .text(a.store_id())
        .text(Some(a.channel()))
        .text(Some(a.template()))
        .time(Some(a.fired_at))
        .time(a.emitted_at)
        .text(Some(a.group.as_str()))
        .text(Some(reason.unwrap_or(a.reason())))
        .text(detail)
        .text(payload);
    rows.end();
}

/// Appends an action written to `topic` (`detail` for suppressions).
pub fn append_action(rows: &mut Rows, topic: &str, a: &Action, detail: Option<&str>) {
    append_packed(rows, topic, &Packed::new(a), None, detail);
}

fn value_of(items: &[Item]) -> Option<Decimal> {
    let mut sum = Decimal::ZERO;
    for i in items {
        sum += i.price? * Decimal::from(i.quantity);
    }
    Some(sum)
}

fn quantity(items: &[Item]) -> i64 {
    items.iter().map(|i| i64::from(i.quantity)).sum()
}
