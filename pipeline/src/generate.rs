//! Deterministic synthetic retail traffic: the same parameters give the same records.
//!
//! Customers browse in sessions on web, app and mini-program, search, view items, fill
//! carts, sometimes remove items, check out or walk away; some start anonymous and log in
//! (`identify`) part-way; some buy at the POS without a cart id. A small share of records
//! is broken the ways real feeds break (bad money, zero quantities, unknown types,
//! malformed JSON, non-UTF-8 bytes, far-future clocks) and a few are redelivered.
//!
//! Around them, what every trigger needs: stores with coordinates and zones, hourly
//! weather (hot at some stores, rain now and then), stock lots near their best-before
//! and slow movers, location pings near stores, profiles with birthdays (some today,
//! some on 29 February, in several zones), purchase histories months back (repeat
//! buyers who then stop: churn risk) and a few serial refunders.

use footfall_operators::event::{Topic, anon_key};
use footfall_operators::key::partition_for;
use footfall_operators::policy::holdout_bucket;
use footfall_operators::time::{Span, Timestamp};
use serde_json::{Value, json};

use crate::log::{Log, LogError};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Params {
    /// Distinct customers.
    pub customers: u64,
    /// Simulated hours of traffic.
    pub hours: f64,
    /// Seed: same seed, same records.
    pub seed: u64,
    /// Event time of the first session.
    pub start: Timestamp,
    /// Share of records broken on purpose (0.0 to 1.0).
    pub bad_ratio: f64,
    /// Share of records delivered twice.
    pub duplicate_ratio: f64,
}

impl Params {
    /// The default start: 2026-11-20T08:00:00Z.
    pub fn default_start() -> Timestamp {
        Timestamp::from_secs(1_795_161_600)
    }
}

/// One generated record.
pub struct Record {
    /// Its topic.
    pub topic: Topic,
    /// The key it is partitioned by.
    pub key: String,
    /// Event time (for ordering the feed).
    pub ts: Timestamp,
    /// The bytes on the wire.
    pub bytes: Vec<u8>,
}

/// SplitMix64: small, fast, and stable forever (unlike a library's default RNG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const CATEGORIES: [(&str, &[&str]); 6] = [
    (
        "dairy",
        &["Oat milk 1L", "Greek yogurt", "Butter 250g", "Cheddar 200g"],
    ),
    ("bakery", &["Sourdough loaf", "Croissant x4", "Bagels x6"]),
    (
        "beverages",
        &["Cold brew 330ml", "Sparkling water 6x", "Orange juice 1L"],
    ),
    (
        "home",
        &["Umbrella", "Bath towel", "Storage box", "Desk lamp"],
    ),
    (
        "appliances",
        &["Rice cooker", "Air fryer", "Kettle", "Blender"],
    ),
    ("produce", &["Avocado x2", "Bananas 1kg", "Tomatoes 500g"]),
];

struct CatalogItem {
    id: String,
    name: &'static str,
    category: &'static str,
    price_cents: u64,
}

fn catalog(rng: &mut Rng) -> Vec<CatalogItem> {
    let mut items = Vec::new();
    for (ci, (cat, names)) in CATEGORIES.iter().enumerate() {
        for (ni, name) in names.iter().enumerate() {
            for variant in 0..8 {
                let base = if *cat == "appliances" { 19_900 } else { 390 };
                items.push(CatalogItem {
                    id: format!("sku-{ci}{ni}{variant:02}"),
                    name,
                    category: cat,
                    price_cents: base + rng.below(base * 2),
                });
            }
        }
    }
    items
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

const CHANNELS: [&str; 3] = ["web", "app", "mini_program"];
const STORES: [&str; 8] = [
    "st-01", "st-02", "st-03", "st-04", "st-05", "st-06", "st-07", "st-08",
];
const ZONES: [&str; 4] = ["Asia/Shanghai", "Europe/London", "America/New_York", "UTC"];

/// The stores: (latitude, longitude, zone, region, typical temperature °C).
const SITES: [(f64, f64, &str, &str, f64); 8] = [
    (31.2304, 121.4737, "Asia/Shanghai", "east", 31.0),
    (31.2222, 121.4581, "Asia/Shanghai", "east", 30.5),
    (31.1940, 121.4380, "Asia/Shanghai", "east", 29.0),
    (39.9042, 116.4074, "Asia/Shanghai", "north", 12.0),
    (22.5431, 114.0579, "Asia/Shanghai", "south", 27.0),
    (30.5728, 104.0668, "Asia/Shanghai", "west", 18.0),
    (51.5072, -0.1276, "Europe/London", "uk", 9.0),
    (40.7128, -74.0060, "America/New_York", "us", 6.0),
];

const CONDITIONS: [&str; 5] = ["clear", "clouds", "rain", "fog", "storm"];

/// Reference data and stock: stores (a day before everything), hourly weather per
/// store over the span, perishable lots expiring within it and slow movers that have
/// not sold for weeks.
fn stores_weather_stock(feed: &mut Feed, items: &[CatalogItem], p: &Params, span_secs: u64) {
    let history = p.start.minus(Span::from_secs(HISTORY_DAYS as i64 * 86_400));
    for (i, (lat, lon, tz, region, _)) in SITES.iter().enumerate() {
        let id = STORES[i];
        let ts = history.minus(Span::from_secs(86_400));
        let v = json!({"message_id": format!("s-{id}"), "type": "store", "timestamp": ts.to_string(),
            "store_id": id, "lat": lat, "lon": lon, "timezone": tz, "region": region});
        feed.push(Topic::Stores, id.to_owned(), ts, v);
    }
    let hours = span_secs.div_ceil(3600);
    for h in 0..=hours {
        let ts = p.start.plus(Span::from_secs(h as i64 * 3600));
        for (i, (.., base)) in SITES.iter().enumerate() {
            let id = STORES[i];
            let temp = base + (feed.rng.below(60) as f64 - 20.0) / 10.0;
            let condition = match feed.rng.chance(0.2) {
                true => *feed.rng.pick(&CONDITIONS[2..]),
                false => *feed.rng.pick(&CONDITIONS[..2]),
            };
            let v = json!({"message_id": format!("w-{id}-{h}"), "type": "weather", "timestamp": ts.to_string(),
                "store_id": id, "temp_c": temp, "condition": condition});
            feed.push(Topic::Weather, id.to_owned(), ts, v);
        }
    }
    let perishable: Vec<&CatalogItem> = items
        .iter()
        .filter(|it| matches!(it.category, "dairy" | "bakery" | "produce"))
        .collect();
    let slow: Vec<&CatalogItem> = items.iter().filter(|it| it.category == "home").collect();
    for (i, id) in STORES.iter().enumerate() {
        for l in 0..8 {
            let it = *feed.rng.pick(&perishable);
            let ts = p.start.minus(Span::from_secs(3600));
            let expires = p.start.plus(Span::from_secs(
                2 * 3600 + feed.rng.below(span_secs + 6 * 3600) as i64,
            ));
            let v = json!({"message_id": format!("i-{id}-{l}"), "type": "stock", "timestamp": ts.to_string(),
                "store_id": id, "item_id": it.id, "item_category": it.category, "lot_id": format!("lot-{i}{l:02}"),
                "on_hand": 5 + feed.rng.below(30), "price": money(it.price_cents), "currency": "CNY",
                "expires_at": expires.to_string()});
            feed.push(Topic::Inventory, (*id).to_owned(), ts, v);
        }
        // A slow mover on the shelf for three weeks without a sale.
        let it = *feed.rng.pick(&slow);
        let ts = p.start.minus(Span::from_secs(21 * 86_400));
        let v = json!({"message_id": format!("i-{id}-slow"), "type": "stock", "timestamp": ts.to_string(),
            "store_id": id, "item_id": it.id, "item_category": it.category, "lot_id": format!("lot-{i}-s"),
            "on_hand": 12 + feed.rng.below(20), "price": money(it.price_cents), "currency": "CNY"});
        feed.push(Topic::Inventory, (*id).to_owned(), ts, v);
    }
}

/// How far back purchase histories reach, days.
pub const HISTORY_DAYS: u64 = 150;

/// Records being generated, with their arrival order.
struct Feed {
    rng: Rng,
    out: Vec<(Timestamp, u64, Record)>,
    seq: u64,
    /// Begins every message, transaction and cart id: two runs with another seed or
    /// start (a later day of the same customers) name none the same, as real feeds do
    /// not. A reused transaction id would be the same purchase, a reused message id a
    /// redelivery.
    run: String,
}

/// The id prefix of the run with `seed` from `start`.
fn run_tag(seed: u64, start: Timestamp) -> String {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ start.as_nanos() as u64;
    format!("{:06x}", (mixed ^ (mixed >> 29)) & 0xff_ffff)
}

impl Feed {
    fn push(&mut self, topic: Topic, key: String, ts: Timestamp, mut v: Value) {
        self.seq += 1;
        for field in ["message_id", "transaction_id", "cart_id"] {
            if let Some(Value::String(id)) = v.get_mut(field) {
                *id = format!("{}-{id}", self.run);
            }
        }
        // Arrival jitter within the allowed lateness: feeds are never perfectly ordered.
        let arrival = ts.plus(Span::from_millis(self.rng.below(3000) as i64));
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        let record = Record {
            topic,
            key,
            ts,
            bytes,
        };
        self.out.push((arrival, self.seq, record));
    }
}

const REFUND_REASONS: [&str; 3] = ["changed_mind", "damaged", "wrong_size"];

/// A `refund` of `transaction_id`, `cents` back.
fn refund(
    message_id: String,
    ts: Timestamp,
    user: &str,
    transaction_id: String,
    cents: u64,
    reason: &str,
) -> Value {
    json!({"message_id": message_id, "type": "refund", "timestamp": ts.to_string(),
        "user_id": user, "transaction_id": transaction_id, "channel": "pos",
        "currency": "CNY", "value": money(cents), "reason": reason})
}

/// Names the cart on a cart event, when the session has a cart id.
fn with_cart(v: &mut Value, cart_id: &Option<String>) {
    if let Some(id) = cart_id {
        v["cart_id"] = json!(id);
    }
}

/// Builds the feed: every record, ordered by event time with small arrival jitter.
pub fn generate(p: &Params) -> Vec<Record> {
    let mut rng = Rng(p.seed ^ 0x00F0_0F4A_11CE);
    let items = catalog(&mut rng);
    let span_secs = (p.hours * 3600.0).max(60.0) as u64;
    let mut feed = Feed {
        rng,
        out: Vec::new(),
        seq: 0,
        run: run_tag(p.seed, p.start),
    };
    stores_weather_stock(&mut feed, &items, p, span_secs);

    for c in 0..p.customers {
        let user = format!("m-{c:07}");
        let device = format!("dev-{:08x}", feed.rng.next() as u32);
        // Most customers have a profile (consent per channel, zone, home store); some
        // of those give their birthday.
        if feed.rng.chance(0.9) {
            // Before the purchase history: consent is on record for everything after.
            let ts = p.start.minus(Span::from_secs(
                ((HISTORY_DAYS + 1) * 86_400 - feed.rng.below(86_400)) as i64,
            ));
            let mut v = json!({"message_id": format!("p-{c}"), "type": "profile", "timestamp": ts.to_string(),
                "user_id": user, "timezone": feed.rng.pick(&ZONES),
                "home_store_id": feed.rng.pick(&STORES), "tier": feed.rng.pick(&["bronze", "silver", "gold"]),
                "consent": {"push": feed.rng.chance(0.8), "sms": feed.rng.chance(0.4), "email": feed.rng.chance(0.6)}});
            if feed.rng.chance(0.7) {
                // Stands in for SHA-256 of the address: 64 hex digits, one per customer.
                let hash: String = (0..4)
                    .map(|_| format!("{:016x}", feed.rng.next()))
                    .collect();
                v["email_sha256"] = json!(hash);
            }
            if feed.rng.chance(0.33) {
                let year = 1960 + feed.rng.below(45);
                let start = p.start.to_datetime();
                v["birthday"] = json!(match feed.rng.below(100) {
                    // Some today (their greeting falls in the feed), some on 29 February.
                    0..=9 => format!("{year}-{}", start.format("%m-%d")),
                    10..=14 => "2000-02-29".to_owned(),
                    _ => format!(
                        "{year}-{:02}-{:02}",
                        1 + feed.rng.below(12),
                        1 + feed.rng.below(28)
                    ),
                });
            }
            feed.push(Topic::Customers, user.clone(), ts, v);
        }
        // A purchase history months back for some: repeat buyers who then stop come up
        // as churn risks.
        if feed.rng.chance(0.25) {
            let first = feed.rng.below(HISTORY_DAYS - 20);
            let mut day = first;
            for k in 0..(1 + feed.rng.below(3)) {
                let ts = p.start.minus(Span::from_secs(
                    ((HISTORY_DAYS - day) * 86_400 - feed.rng.below(40_000)) as i64,
                ));
                let it = &items[feed.rng.below(items.len() as u64) as usize];
                let v = json!({"message_id": format!("h-{c}-{k}"), "type": "purchase",
                    "timestamp": ts.to_string(), "user_id": user, "transaction_id": format!("oh-{c}-{k}"),
                    "channel": "pos", "store_id": feed.rng.pick(&STORES), "currency": "CNY",
                    "value": money(it.price_cents), "items": [{"item_id": it.id, "item_category": it.category,
                    "price": money(it.price_cents), "quantity": 1}]});
                feed.push(Topic::Transactions, user.clone(), ts, v);
                day = (day + 1 + feed.rng.below(20)).min(HISTORY_DAYS - 1);
            }
        }
        // A few serial refunders: return_abuse's alerts.
        let serial_refunder = feed.rng.chance(0.007);
        let sessions = 1 + feed.rng.below(3);
        let mut identified = false;
        for s in 0..sessions {
            let mut ts = p
                .start
                .plus(Span::from_secs(feed.rng.below(span_secs) as i64));
            let channel = *feed.rng.pick(&CHANNELS);
            // Some sessions start anonymous; of those, some log in part-way.
            let anonymous = !identified && feed.rng.chance(0.35);
            let logs_in = anonymous && feed.rng.chance(0.6);
            let mut logged_in = !anonymous;
            let cart_id = feed.rng.chance(0.7).then(|| format!("cart-{c}-{s}"));
            let mut n = 0u32;
            let mut next = |rng: &mut Rng, ts: &mut Timestamp, ty: &str, logged_in: bool| {
                n += 1;
                *ts = ts.plus(Span::from_secs(5 + rng.below(90) as i64));
                let mut v = json!({"message_id": format!("c-{c}-{s}-{n}"), "type": ty,
                    "timestamp": ts.to_string(), "anonymous_id": device, "channel": channel,
                    "session_id": format!("s-{c}-{s}")});
                if logged_in {
                    v["user_id"] = json!(user);
                }
                v
            };
            let key = |logged_in: bool| {
                if logged_in {
                    user.clone()
                } else {
                    anon_key(&device)
                }
            };
            let v = next(&mut feed.rng, &mut ts, "page_view", logged_in);
            feed.push(Topic::Clickstream, key(logged_in), ts, v);
            // The app reports where the customer is: often near a store.
            if channel == "app" && feed.rng.chance(0.5) {
                let (lat, lon, ..) = SITES[feed.rng.below(SITES.len() as u64) as usize];
                let jitter = |rng: &mut Rng| (rng.below(600) as f64 - 300.0) / 111_000.0;
                let mut v = next(&mut feed.rng, &mut ts, "location", logged_in);
                v["lat"] = json!(lat + jitter(&mut feed.rng));
                v["lon"] = json!(lon + jitter(&mut feed.rng));
                v["accuracy_m"] = json!(10 + feed.rng.below(40));
                feed.push(Topic::Clickstream, key(logged_in), ts, v);
            }
            if feed.rng.chance(0.5) {
                let mut v = next(&mut feed.rng, &mut ts, "search", logged_in);
                v["query"] = json!(feed.rng.pick(&CATEGORIES).0);
                feed.push(Topic::Clickstream, key(logged_in), ts, v);
            }
            let mut cart: Vec<(usize, u64)> = Vec::new();
            for _ in 0..(1 + feed.rng.below(4)) {
                let it = feed.rng.below(items.len() as u64) as usize;
                let mut v = next(&mut feed.rng, &mut ts, "view_item", logged_in);
                v["items"] = json!([{"item_id": items[it].id, "item_name": items[it].name,
                    "item_category": items[it].category, "price": money(items[it].price_cents)}]);
                feed.push(Topic::Clickstream, key(logged_in), ts, v);
                if feed.rng.chance(0.45) {
                    let q = 1 + feed.rng.below(3);
                    let mut v = next(&mut feed.rng, &mut ts, "add_to_cart", logged_in);
                    v["currency"] = json!("CNY");
                    with_cart(&mut v, &cart_id);
                    v["items"] = json!([{"item_id": items[it].id, "item_name": items[it].name,
                        "item_category": items[it].category, "price": money(items[it].price_cents), "quantity": q}]);
                    feed.push(Topic::Clickstream, key(logged_in), ts, v);
                    cart.push((it, q));
                }
            }
            if logs_in {
                let mut v = next(&mut feed.rng, &mut ts, "identify", true);
                v["user_id"] = json!(user);
                feed.push(Topic::Clickstream, user.clone(), ts, v);
                logged_in = true;
                identified = true;
            }
            if cart.is_empty() {
                continue;
            }
            if feed.rng.chance(0.12) {
                let (it, q) = cart[0];
                let mut v = next(&mut feed.rng, &mut ts, "remove_from_cart", logged_in);
                with_cart(&mut v, &cart_id);
                v["items"] = json!([{"item_id": items[it].id, "quantity": q}]);
                feed.push(Topic::Clickstream, key(logged_in), ts, v);
                cart.remove(0);
            }
            let mut v = next(&mut feed.rng, &mut ts, "view_cart", logged_in);
            with_cart(&mut v, &cart_id);
            feed.push(Topic::Clickstream, key(logged_in), ts, v);
            // About half the carts are bought, online or later at a store.
            let bought = !cart.is_empty() && feed.rng.chance(0.5);
            if !bought && logged_in && !cart.is_empty() {
                // A left cart is sometimes bought after all, a few hours to a day later:
                // more often by customers who got the reminder (treatment) than by the
                // held-out control group, so the lift report has a real effect to find.
                let reminded = holdout_bucket(&user) >= DEMO_HOLDOUT_BP;
                if feed.rng.chance(if reminded { 0.35 } else { 0.08 }) {
                    let back =
                        ts.plus(Span::from_secs(3 * 3600 + feed.rng.below(24 * 3600) as i64));
                    let total: u64 = cart.iter().map(|(it, q)| items[*it].price_cents * q).sum();
                    let mut v = json!({"message_id": format!("tr-{c}-{s}"), "type": "purchase",
                        "timestamp": back.to_string(), "user_id": user, "transaction_id": format!("or-{c}-{s}"),
                        "channel": channel, "currency": "CNY", "value": money(total),
                        "items": cart.iter().map(|(it, q)| json!({"item_id": items[*it].id,
                            "item_category": items[*it].category, "price": money(items[*it].price_cents), "quantity": q})).collect::<Vec<_>>()});
                    with_cart(&mut v, &cart_id);
                    feed.push(Topic::Transactions, user.clone(), back, v);
                }
            }
            if bought {
                let mut v = next(&mut feed.rng, &mut ts, "begin_checkout", logged_in);
                with_cart(&mut v, &cart_id);
                feed.push(Topic::Clickstream, key(logged_in), ts, v);
                if logged_in && feed.rng.chance(0.8) {
                    let at_pos = feed.rng.chance(0.25);
                    ts = ts.plus(Span::from_secs(
                        30 + feed.rng.below(if at_pos { 1200 } else { 300 }) as i64,
                    ));
                    let total: u64 = cart.iter().map(|(it, q)| items[*it].price_cents * q).sum();
                    let mut v = json!({"message_id": format!("t-{c}-{s}"), "type": "purchase",
                        "timestamp": ts.to_string(), "user_id": user, "transaction_id": format!("o-{c}-{s}"),
                        "currency": "CNY", "value": money(total), "payment_type": feed.rng.pick(&["card", "wallet", "cash"]),
                        "items": cart.iter().map(|(it, q)| json!({"item_id": items[*it].id,
                            "item_category": items[*it].category, "price": money(items[*it].price_cents), "quantity": q})).collect::<Vec<_>>()});
                    if at_pos {
                        v["channel"] = json!("pos");
                        v["store_id"] = json!(feed.rng.pick(&STORES));
                    } else {
                        v["channel"] = json!(channel);
                        with_cart(&mut v, &cart_id);
                    }
                    feed.push(Topic::Transactions, user.clone(), ts, v);
                    // Now and then an order comes back.
                    if feed.rng.chance(0.03) {
                        let back = ts.plus(Span::from_secs(600 + feed.rng.below(3600) as i64));
                        let reason = *feed.rng.pick(&REFUND_REASONS);
                        feed.push(
                            Topic::Transactions,
                            user.clone(),
                            back,
                            refund(
                                format!("r-{c}-{s}"),
                                back,
                                &user,
                                format!("o-{c}-{s}"),
                                total,
                                reason,
                            ),
                        );
                    }
                }
            }
        }
        if serial_refunder {
            for k in 0..(3 + feed.rng.below(2)) {
                let ts = p
                    .start
                    .plus(Span::from_secs(feed.rng.below(span_secs) as i64));
                let cents = 500 + feed.rng.below(20_000);
                let reason = *feed.rng.pick(&REFUND_REASONS);
                feed.push(
                    Topic::Transactions,
                    user.clone(),
                    ts,
                    refund(
                        format!("rs-{c}-{k}"),
                        ts,
                        &user,
                        format!("o-{c}-x{k}"),
                        cents,
                        reason,
                    ),
                );
            }
        }
    }
    feed.out.sort_by_key(|(arrival, seq, _)| (*arrival, *seq));
    let mut records: Vec<Record> = feed.out.into_iter().map(|(_, _, r)| r).collect();
    spoil(&mut records, p, &mut feed.rng);
    records
}

/// The control share the demo's customers respond as: the default `policy.holdout_bp`.
const DEMO_HOLDOUT_BP: u16 = 500;

/// The memory workload: every customer opens one cart (two items) within `hours` and
/// leaves it, so the state holds one open cart per customer at the end.
pub fn open_carts(customers: u64, hours: f64, seed: u64, start: Timestamp) -> Vec<Record> {
    let mut rng = Rng(seed ^ 0xCA27);
    let items = catalog(&mut rng);
    let span_ms = ((hours * 3_600_000.0) as u64).max(1);
    let mut out: Vec<Record> = (0..customers)
        .map(|c| {
            let user = format!("m-{c:07}");
            let ts = start.plus(Span::from_millis(rng.below(span_ms) as i64));
            let (a, b) = (&items[rng.below(items.len() as u64) as usize], &items[rng.below(items.len() as u64) as usize]);
            let v = json!({"message_id": format!("oc-{c}"), "type": "add_to_cart", "timestamp": ts.to_string(),
                "user_id": user, "channel": "app", "cart_id": format!("cart-{c}"), "currency": "CNY",
                "items": [{"item_id": a.id, "price": money(a.price_cents), "quantity": 1},
                          {"item_id": b.id, "price": money(b.price_cents), "quantity": 2}]});
            Record { topic: Topic::Clickstream, key: user, ts, bytes: serde_json::to_vec(&v).unwrap_or_default() }
        })
        .collect();
    out.sort_by_key(|r| r.ts);
    out
}

/// Breaks a share of records and redelivers another share, deterministically.
fn spoil(records: &mut Vec<Record>, p: &Params, rng: &mut Rng) {
    let n = records.len();
    let bad = (n as f64 * p.bad_ratio).round() as usize;
    for k in 0..bad {
        let i = rng.below(n as u64) as usize;
        let r = &mut records[i];
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        r.bytes = match k % 7 {
            0 => text.replacen('}', "", 1).into_bytes(),
            1 if text.contains("\"price\":\"") => {
                let at = text.find("\"price\":\"").map_or(0, |a| a + 9);
                let end = text[at..].find('"').map_or(at, |e| at + e);
                let broken = text[at..end].replace('.', ",");
                format!("{}{}{}", &text[..at], broken, &text[end..]).into_bytes()
            }
            2 if text.contains("\"quantity\":") => {
                let at = text.find("\"quantity\":").map_or(0, |a| a + 11);
                let end = text[at..].find(['}', ',']).map_or(at, |e| at + e);
                format!("{}0{}", &text[..at], &text[end..]).into_bytes()
            }
            3 => text
                .replacen("\"type\":\"", "\"type\":\"x_", 1)
                .into_bytes(),
            4 => match text.find("\"timestamp\":\"") {
                // A device with its clock set decades ahead.
                Some(at) => format!("{}2099{}", &text[..at + 13], &text[at + 17..]).into_bytes(),
                None => text.into_bytes(),
            },
            5 => {
                let mut b = text.into_bytes();
                b.insert(b.len() / 2, 0xff);
                b
            }
            _ => text
                .replacen("\"message_id\"", "\"msg_id\"", 1)
                .into_bytes(),
        };
    }
    let dups = (n as f64 * p.duplicate_ratio).round() as usize;
    for _ in 0..dups {
        let i = rng.below(n as u64) as usize;
        let r = &records[i];
        let copy = Record {
            topic: r.topic,
            key: r.key.clone(),
            ts: r.ts,
            bytes: r.bytes.clone(),
        };
        let at = (i + 1 + rng.below(20) as usize).min(records.len());
        records.insert(at, copy);
    }
}

/// Appends records to their topics (created with `partitions` if missing), each to the
/// partition of its key. Returns how many were written.
pub fn write(log: &Log, partitions: u32, records: &[Record]) -> Result<u64, LogError> {
    let mut writers = Vec::new();
    for t in Topic::ALL {
        let n = log.create_topic(t.name(), partitions)?;
        let ws = (0..n)
            .map(|p| log.writer(t.name(), p))
            .collect::<Result<Vec<_>, _>>()?;
        writers.push(ws);
    }
    for r in records {
        let ti = Topic::ALL.iter().position(|&t| t == r.topic).unwrap_or(0);
        let ws = &mut writers[ti];
        let p = partition_for(&r.key, ws.len() as u32) as usize;
        ws[p].append(&r.bytes)?;
    }
    for ws in &mut writers {
        for w in ws {
            w.sync()?;
        }
    }
    Ok(records.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seed: u64) -> Params {
        Params {
            customers: 800,
            hours: 2.0,
            seed,
            start: Params::default_start(),
            bad_ratio: 0.01,
            duplicate_ratio: 0.01,
        }
    }

    #[test]
    fn same_seed_same_records() {
        let a = generate(&params(7));
        let b = generate(&params(7));
        let c = generate(&params(8));
        assert!(a.len() > 2000);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.bytes == y.bytes && x.key == y.key)
        );
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&c).any(|(x, y)| x.bytes != y.bytes));
    }

    #[test]
    fn the_feed_has_what_the_demo_needs() {
        let recs = generate(&params(1));
        let text = |r: &Record| String::from_utf8_lossy(&r.bytes).into_owned();
        let has = |s: &str| recs.iter().any(|r| text(r).contains(s));
        for ty in [
            "\"add_to_cart\"",
            "\"identify\"",
            "\"purchase\"",
            "\"remove_from_cart\"",
            "\"profile\"",
            "\"location\"",
            "\"stock\"",
            "\"store\"",
            "\"weather\"",
            "\"refund\"",
            "-02-29\"",
        ] {
            assert!(has(ty), "no {ty}");
        }
        assert!(recs.iter().any(|r| std::str::from_utf8(&r.bytes).is_err()));
    }
}
