//! Live state as rows: what SQL's `customers`, `carts` and `lots` tables show. Each
//! operator whose state has a table adds its rows through [`Operator::live`]; the
//! delivery policies add each customer's consent through [`Policy::live`].
//!
//! [`Operator::live`]: crate::operator::Operator::live
//! [`Policy::live`]: crate::policy::Policy::live
//!
//! A field is the column of the same name; the README's SQL section describes each.
#![allow(missing_docs)]

use rust_decimal::Decimal;

use crate::event::Str;
use crate::time::Timestamp;

/// An open cart (abandoned_cart's state).
#[derive(Clone, Debug, PartialEq)]
pub struct CartRow {
    pub customer_key: Str,
    pub anonymous_id: Option<Str>,
    pub cart_id: Str,
    pub currency: Option<Str>,
    /// Sum of price × quantity over the lines.
    pub value: Decimal,
    /// Units over all lines.
    pub items: u64,
    pub lines: u32,
    pub first_activity_at: Timestamp,
    pub last_activity_at: Timestamp,
    /// The abandoned-cart reminder for this cart has fired.
    pub reminded: bool,
}

/// A stock lot (stale_stock's state).
#[derive(Clone, Debug, PartialEq)]
pub struct LotRow {
    pub store_id: Str,
    pub item_id: Str,
    pub lot_id: Str,
    pub category: Option<Str>,
    pub on_hand: u64,
    pub price: Option<Decimal>,
    pub currency: Option<Str>,
    pub expires_at: Option<Timestamp>,
    pub first_seen_at: Timestamp,
    /// Markdown steps of its schedule already fired.
    pub markdowns: u32,
    /// The next markdown's instant, if one is scheduled.
    pub next_markdown_at: Option<Timestamp>,
}

/// A customer's purchase figures (churn_risk's state) at the clock.
#[derive(Clone, Debug, PartialEq)]
pub struct RfmRow {
    pub customer_key: Str,
    /// Whole days since the last purchase.
    pub recency_days: Option<i64>,
    /// Distinct purchase days.
    pub frequency: u32,
    /// Total spend (purchases less refunds).
    pub monetary: Decimal,
    pub currency: Option<Str>,
    pub last_purchase_at: Option<Timestamp>,
    /// BG/NBD probability that the customer is still active; none before a purchase.
    pub p_alive: Option<f64>,
}

/// A customer's delivery settings (the policies' state).
#[derive(Clone, Debug, PartialEq)]
pub struct ConsentRow {
    pub customer_key: Str,
    /// Consent per channel as the latest profile left it (`None`: never given).
    pub push: Option<bool>,
    pub sms: Option<bool>,
    pub email: Option<bool>,
    pub timezone: Option<Str>,
    pub home_store: Option<Str>,
}

/// Live rows of one worker (or of the policies it applies).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    pub carts: Vec<CartRow>,
    pub lots: Vec<LotRow>,
    pub rfm: Vec<RfmRow>,
    pub consent: Vec<ConsentRow>,
}

impl Live {
    /// Adds `other`'s rows.
    pub fn extend(&mut self, other: Live) {
        self.carts.extend(other.carts);
        self.lots.extend(other.lots);
        self.rfm.extend(other.rfm);
        self.consent.extend(other.consent);
    }
}
