//! Retained input: each table's recent rows as sealed Arrow batches, dropped by age and
//! size, and scanned by DataFusion with batches outside a query's time range pruned.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, BooleanArray, StringArray, TimestampNanosecondArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use footfall_operators::action::Action;
use footfall_operators::event::{Event, Topic};
use footfall_operators::policy::Packed;
use footfall_operators::time::{Span, Timestamp};

use crate::cache::ChunkScan;
use crate::rows::{BATCH_ROWS, Rows};
use crate::schema::{Table, append, append_action, append_packed};

/// How long and how much each table keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Rows older than this behind the newest are dropped.
    pub age: Span,
    /// Past this many bytes a table drops its oldest batches.
    pub bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            age: Span::from_secs(24 * 3600),
            bytes: 1 << 30,
        }
    }
}

/// A sealed batch and its time range.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Unique in the process: what the rules' cache knows the batch by.
    pub id: u64,
    pub batch: RecordBatch,
    pub min: i64,
    pub max: i64,
    pub bytes: usize,
}

impl Chunk {
    pub(crate) fn new(batch: RecordBatch, time_col: usize) -> Self {
        let (min, max) = time_range(&batch, time_col);
        let bytes = batch.get_array_memory_size();
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Chunk {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            batch,
            min,
            max,
            bytes,
        }
    }
}

fn time_range(batch: &RecordBatch, col: usize) -> (i64, i64) {
    let Some(t) = batch
        .column(col)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
    else {
        return (i64::MIN, i64::MAX);
    };
    let mut range = (i64::MAX, i64::MIN);
    for v in t.iter().flatten() {
        range = (range.0.min(v), range.1.max(v));
    }
    range
}

/// One table's retained rows.
pub struct Retained {
    table: Table,
    retention: Retention,
    schema: SchemaRef,
    time_col: usize,
    open: Rows,
    sealed: Vec<Arc<Chunk>>,
    bytes: usize,
    newest: i64,
}

impl Retained {
    fn new(table: Table, retention: Retention) -> Self {
        let schema = table.schema();
        let time_col = schema
            .index_of(table.time_column())
            .expect("every table has its time column");
        Retained {
            table,
            retention,
            open: Rows::new(schema.clone()),
            schema,
            time_col,
            sealed: Vec::new(),
            bytes: 0,
            newest: i64::MIN,
        }
    }

    fn seal(&mut self) {
        if self.open.is_empty() {
            return;
        }
        // The builders' types are the schema's: a batch always assembles.
        let batch = self.open.finish().expect("rows match their schema");
        let chunk = Chunk::new(batch, self.time_col);
        self.newest = self.newest.max(chunk.max);
        self.bytes += chunk.bytes;
        self.sealed.push(Arc::new(chunk));
    }

    fn after_append(&mut self) {
        if self.open.len() >= BATCH_ROWS {
            self.seal();
            self.expire();
        }
    }

    fn expire(&mut self) {
        let r = self.retention;
        let horizon = self.newest.saturating_sub(r.age.as_nanos());
        let mut drop = 0;
        let mut bytes = self.bytes;
        for c in &self.sealed {
            if c.max >= horizon && bytes <= r.bytes {
                break;
            }
            bytes -= c.bytes;
            drop += 1;
        }
        if drop > 0 {
            self.sealed.drain(..drop);
            self.bytes = bytes;
        }
    }
}

/// Every table's retained rows. Appends come from one writer (a worker, or the offline
/// loader); queries take a [`snapshot`](Self::snapshot).
pub struct Tables {
    tables: BTreeMap<Table, Retained>,
}

impl Tables {
    /// Empty tables keeping `retention`.
    pub fn new(retention: Retention) -> Self {
        Tables {
            tables: Table::ALL
                .iter()
                .map(|t| (*t, Retained::new(*t, retention)))
                .collect(),
        }
    }

    /// Sets `table`'s own retention.
    pub fn set_retention(&mut self, table: Table, retention: Retention) {
        self.get(table).retention = retention;
    }

    fn get(&mut self, t: Table) -> &mut Retained {
        self.tables.get_mut(&t).expect("every table exists")
    }

    /// Adds the rows of `event`, read from `topic`, of customer (or store) `key`.
    pub fn append(&mut self, topic: Topic, key: &str, event: &Event) {
        for t in Table::of_topic(topic) {
            let table = self.get(*t);
            append(*t, &mut table.open, key, event);
            table.after_append();
        }
    }

    /// Adds the rows of `event` (of customer or store `key`), to the tables its kind
    /// goes to.
    pub fn append_event(&mut self, key: &str, event: &Event) {
        for t in Table::of_kind(&event.kind) {
            let table = self.get(*t);
            append(*t, &mut table.open, key, event);
            table.after_append();
        }
    }

    /// Adds an action written to `topic` (`detail`: a suppression's).
    pub fn append_action(&mut self, topic: &str, action: &Action, detail: Option<&str>) {
        let table = self.get(Table::Actions);
        append_action(&mut table.open, topic, action, detail);
        table.after_append();
    }

    /// Adds a packed action written to `topic` (a suppression's `reason` code and
    /// `detail`).
    pub fn append_packed(
        &mut self,
        topic: &str,
        action: &Packed,
        reason: Option<&str>,
        detail: Option<&str>,
    ) {
        let table = self.get(Table::Actions);
        append_packed(&mut table.open, topic, action, reason, detail);
        table.after_append();
    }

    /// Seals open rows and drops what retention no longer keeps.
    pub fn seal(&mut self) {
        for t in self.tables.values_mut() {
            t.seal();
            t.expire();
        }
    }

    /// Drops every row of customer `key` (an erasure): rows whose `customer_key` (or, in
    /// `actions`, `customer_id`) is `key`.
    pub fn erase(&mut self, key: &str) {
        for t in self.tables.values_mut() {
            t.seal();
            let col = if t.table == Table::Actions {
                "customer_id"
            } else {
                "customer_key"
            };
            let Ok(i) = t.schema.index_of(col) else {
                continue;
            };
            let mut bytes = 0;
            for c in &mut t.sealed {
                if let Some(kept) = without(&c.batch, i, key) {
                    *c = Arc::new(Chunk::new(kept, t.time_col));
                }
                bytes += c.bytes;
            }
            t.sealed.retain(|c| c.batch.num_rows() > 0);
            t.bytes = bytes;
        }
    }

    /// Rows and bytes retained per table (sealed batches).
    pub fn sizes(&self) -> Vec<(Table, usize, usize)> {
        self.tables
            .values()
            .map(|t| {
                let rows = t.sealed.iter().map(|c| c.batch.num_rows()).sum();
                (t.table, rows, t.bytes)
            })
            .collect()
    }

    /// The sealed batches of every table, for queries (call [`seal`](Self::seal) first
    /// to include the latest rows).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.tables
                .values()
                .map(|t| {
                    (
                        t.table,
                        Arc::new(Frozen {
                            schema: t.schema.clone(),
                            time_col: t.time_col,
                            chunks: t.sealed.clone(),
                        }),
                    )
                })
                .collect(),
        )
    }
}

/// `batch` without the rows whose column `col` is `key`; `None` when it has none.
fn without(batch: &RecordBatch, col: usize, key: &str) -> Option<RecordBatch> {
    let c = batch.column(col).as_any().downcast_ref::<StringArray>()?;
    if !c.iter().any(|v| v == Some(key)) {
        return None;
    }
    let keep: BooleanArray = c.iter().map(|v| Some(v != Some(key))).collect();
    filter_record_batch(batch, &keep).ok()
}

/// Frozen tables, several workers' merged.
#[derive(Clone, Default)]
pub struct Snapshot(pub BTreeMap<Table, Arc<Frozen>>);

impl Snapshot {
    /// Adds `other`'s batches (another worker's) to this snapshot's.
    pub fn merge(&mut self, other: Snapshot) {
        for (t, f) in other.0 {
            match self.0.get_mut(&t) {
                Some(mine) => {
                    let mut chunks = mine.chunks.clone();
                    chunks.extend(f.chunks.iter().cloned());
                    *mine = Arc::new(Frozen {
                        schema: mine.schema.clone(),
                        time_col: mine.time_col,
                        chunks,
                    });
                }
                None => {
                    self.0.insert(t, f);
                }
            }
        }
    }

    /// The table provider of `t`.
    pub fn provider(&self, t: Table) -> Arc<Frozen> {
        self.0.get(&t).cloned().unwrap_or_else(|| {
            let schema = t.schema();
            Arc::new(Frozen {
                time_col: schema.index_of(t.time_column()).unwrap_or(0),
                schema,
                chunks: Vec::new(),
            })
        })
    }
}

/// A table's batches at one instant: DataFusion's view of a retained table.
pub struct Frozen {
    pub schema: SchemaRef,
    pub time_col: usize,
    pub chunks: Vec<Arc<Chunk>>,
}

impl fmt::Debug for Frozen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frozen")
            .field("batches", &self.chunks.len())
            .finish()
    }
}

impl Frozen {
    pub(crate) fn time_name(&self) -> &str {
        self.schema.field(self.time_col).name()
    }

    /// The batches whose time range may meet `filters`.
    pub fn pruned(&self, filters: &[Expr]) -> Vec<Arc<Chunk>> {
        let (lo, hi) = bounds(self.time_name(), filters);
        self.chunks
            .iter()
            .filter(|c| c.max >= lo && c.min <= hi)
            .cloned()
            .collect()
    }
}

/// The `[lo, hi]` nanosecond range `filters` allow on column `col` (comparisons of it
/// with timestamp literals; anything else allows everything).
fn bounds(col: &str, filters: &[Expr]) -> (i64, i64) {
    let mut range = (i64::MIN, i64::MAX);
    for f in filters {
        narrow(col, f, &mut range);
    }
    range
}

fn narrow(col: &str, e: &Expr, range: &mut (i64, i64)) {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        if let Expr::Between(b) = e
            && !b.negated
            && is_col(&b.expr, col)
            && let (Some(lo), Some(hi)) = (nanos(&b.low), nanos(&b.high))
        {
            range.0 = range.0.max(lo);
            range.1 = range.1.min(hi);
        }
        return;
    };
    if *op == Operator::And {
        narrow(col, left, range);
        narrow(col, right, range);
        return;
    }
    let (op, v) = if is_col(left, col) {
        (*op, nanos(right))
    } else if is_col(right, col) {
        match op.swap() {
            Some(op) => (op, nanos(left)),
            None => return,
        }
    } else {
        return;
    };
    let Some(v) = v else { return };
    match op {
        Operator::Gt | Operator::GtEq => range.0 = range.0.max(v),
        Operator::Lt | Operator::LtEq => range.1 = range.1.min(v),
        Operator::Eq => {
            range.0 = range.0.max(v);
            range.1 = range.1.min(v);
        }
        _ => {}
    }
}

fn is_col(e: &Expr, name: &str) -> bool {
    match e {
        Expr::Column(c) => c.name == name,
        Expr::Cast(c) => is_col(&c.expr, name),
        _ => false,
    }
}

fn nanos(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => n.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(n), _) => n.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(n), _) => n.checked_mul(1_000_000_000),
        ScalarValue::Utf8(Some(s)) => Timestamp::parse_rfc3339(s).ok().map(|t| t.as_nanos()),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for Frozen {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Batches are pruned by time; rows are still filtered by the plan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(ChunkScan::new(
            self.pruned(filters),
            None,
            self.schema.clone(),
            self.time_col,
            projection,
            state.config().target_partitions(),
        )?))
    }
}

/// A scan of `batches` (of `schema`), spread over the session's partitions for a
/// parallel plan.
pub fn memory_scan(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
    state: &dyn Session,
) -> Result<Arc<dyn ExecutionPlan>> {
    let n = state
        .config()
        .target_partitions()
        .max(1)
        .min(batches.len().max(1));
    let mut parts = vec![Vec::new(); n];
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % n].push(b);
    }
    Ok(MemorySourceConfig::try_new_exec(
        &parts,
        schema.clone(),
        projection.cloned(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn an_erasure_drops_the_customer_s_rows_everywhere() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/slt/events.jsonl"
        ))
        .unwrap();
        let mut t = Tables::new(Retention::default());
        for k in crate::load::events(&text).unwrap() {
            t.append(k.topic, &k.key, &k.event);
        }
        let rows = |t: &Tables, table: Table| {
            t.sizes()
                .into_iter()
                .find(|(x, ..)| *x == table)
                .map_or(0, |s| s.1)
        };
        t.seal();
        assert_eq!(rows(&t, Table::Clickstream), 9);
        t.erase("m-1");
        assert_eq!(rows(&t, Table::Clickstream), 4, "m-1 had 5 of 9");
        assert_eq!(rows(&t, Table::Transactions), 0);
        assert_eq!(rows(&t, Table::Profiles), 0);
        assert_eq!(rows(&t, Table::Stores), 2, "stores are nobody's");
    }

    #[test]
    fn time_filters_bound_the_scan() {
        let t = |s: &str| ScalarValue::TimestampNanosecond(Some(s.parse().unwrap()), None);
        let f = col("timestamp")
            .gt_eq(lit(t("100")))
            .and(lit(t("200")).gt(col("timestamp")));
        assert_eq!(bounds("timestamp", &[f]), (100, 200));
        assert_eq!(
            bounds("timestamp", &[col("value").gt(lit(3))]),
            (i64::MIN, i64::MAX)
        );
    }
}
