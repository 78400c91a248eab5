//! The live state tables: `customers` (purchase figures, P(alive), consent), `carts`
//! (open carts) and `lots` (stock lots), built from the state the workers and policy
//! tasks hold when a query asks for them, not retained like the input tables.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::datasource::TableProvider;
use footfall_operators::live::{ConsentRow, Live, RfmRow};

use crate::rows::{Kind, Rows, schema};

/// The live tables, by name.
pub const NAMES: [&str; 3] = ["customers", "carts", "lots"];

/// Whether `sql` may read a live table: any of their names as a word. (A false
/// positive only costs a fresh copy of the state.)
pub fn mentioned(sql: &str) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| NAMES.iter().any(|n| w.eq_ignore_ascii_case(n)))
}

/// The schema of live table `name`.
pub fn table_schema(name: &str) -> SchemaRef {
    use Kind::*;
    match name {
        "customers" => schema(&[
            ("customer_key", Text, false),
            ("recency_days", Int, true),
            ("frequency", SmallInt, false),
            ("monetary", Money, true),
            ("currency", Label, true),
            ("last_purchase_at", Time, true),
            ("p_alive", Float, true),
            ("consent_push", Bool, true),
            ("consent_sms", Bool, true),
            ("consent_email", Bool, true),
            ("timezone", Text, true),
            ("home_store", Text, true),
        ]),
        "carts" => schema(&[
            ("customer_key", Text, false),
            ("anonymous_id", Text, true),
            ("cart_id", Text, false),
            ("currency", Label, true),
            ("value", Money, false),
            ("items", Int, false),
            ("lines", SmallInt, false),
            ("first_activity_at", Time, false),
            ("last_activity_at", Time, false),
            ("reminded", Bool, false),
        ]),
        "lots" => schema(&[
            ("store_id", Label, false),
            ("item_id", Text, false),
            ("lot_id", Text, false),
            ("category", Label, true),
            ("on_hand", Int, false),
            ("price", Money, true),
            ("currency", Label, true),
            ("expires_at", Time, true),
            ("first_seen_at", Time, false),
            ("markdowns", SmallInt, false),
            ("next_markdown_at", Time, true),
        ]),
        other => unreachable!("{other} is not a live table"),
    }
}

/// The live tables as batches: one each, empty when the state has no rows (or none was
/// taken: an offline query without a checkpoint).
#[derive(Clone, Debug)]
pub struct LiveTables(pub Vec<(&'static str, RecordBatch)>);

impl LiveTables {
    /// Tables with no rows.
    pub fn empty() -> Self {
        LiveTables::build(&Live::default()).expect("empty tables build")
    }

    /// The tables of `live` (every worker's and its policies' rows together).
    pub fn build(live: &Live) -> Result<Self, ArrowError> {
        Ok(LiveTables(vec![
            ("customers", customers(&live.rfm, &live.consent)?),
            ("carts", carts(live)?),
            ("lots", lots(live)?),
        ]))
    }

    /// Each table as a DataFusion table.
    pub fn providers(&self) -> Vec<(&'static str, Arc<dyn TableProvider>)> {
        self.0
            .iter()
            .map(|(name, batch)| {
                let t = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])
                    .expect("a batch matches its own schema");
                (*name, Arc::new(t) as Arc<dyn TableProvider>)
            })
            .collect()
    }
}

/// One row per customer with purchase figures or delivery settings (a full join).
fn customers(rfm: &[RfmRow], consent: &[ConsentRow]) -> Result<RecordBatch, ArrowError> {
    let mut by_key: HashMap<&str, (Option<&RfmRow>, Option<&ConsentRow>)> = HashMap::new();
    for r in rfm {
        by_key.entry(r.customer_key.as_str()).or_default().0 = Some(r);
    }
    for c in consent {
        by_key.entry(c.customer_key.as_str()).or_default().1 = Some(c);
    }
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort_unstable();
    let mut rows = Rows::new(table_schema("customers"));
    for key in keys {
        let (r, c) = by_key[key];
        rows.text(Some(key))
            .int(r.and_then(|r| r.recency_days))
            .int(Some(r.map_or(0, |r| i64::from(r.frequency))))
            .money(r.map(|r| r.monetary))
            .text(r.and_then(|r| r.currency.as_deref()))
            .time(r.and_then(|r| r.last_purchase_at))
            .float(r.and_then(|r| r.p_alive))
            .bool(c.and_then(|c| c.push))
            .bool(c.and_then(|c| c.sms))
            .bool(c.and_then(|c| c.email))
            .text(c.and_then(|c| c.timezone.as_deref()))
            .text(c.and_then(|c| c.home_store.as_deref()))
            .end();
    }
    rows.finish()
}

fn carts(live: &Live) -> Result<RecordBatch, ArrowError> {
    let mut rows = Rows::new(table_schema("carts"));
    for c in &live.carts {
        rows.text(Some(&c.customer_key))
            .text(c.anonymous_id.as_deref())
            .text(Some(&c.cart_id))
            .text(c.currency.as_deref())
            .money(Some(c.value))
            .int(Some(c.items as i64))
            .int(Some(i64::from(c.lines)))
            .time(Some(c.first_activity_at))
            .time(Some(c.last_activity_at))
            .bool(Some(c.reminded))
            .end();
    }
    rows.finish()
}

fn lots(live: &Live) -> Result<RecordBatch, ArrowError> {
    let mut rows = Rows::new(table_schema("lots"));
    for l in &live.lots {
        rows.text(Some(&l.store_id))
            .text(Some(&l.item_id))
            .text(Some(&l.lot_id))
            .text(l.category.as_deref())
            .int(Some(l.on_hand as i64))
            .money(l.price)
            .text(l.currency.as_deref())
            .time(l.expires_at)
            .time(Some(l.first_seen_at))
            .int(Some(i64::from(l.markdowns)))
            .time(l.next_markdown_at)
            .end();
    }
    rows.finish()
}
