//! Rules re-run every few seconds over retained tables that mostly did not change: only
//! the batches sealed since the last run are new. This module keeps, per rule, the
//! partial aggregate of every sealed batch, so a run aggregates only the new batches and
//! merges the kept partials.
//!
//! How:
//! - [`ChunkScan`] is the scan of a retained table (or of its tumbling or hopping
//!   windows): it knows which sealed batch ([`Chunk`]) each row comes from.
//! - [`rewrite`] finds every aggregate whose input is filters and projections over such a
//!   scan. An aggregate in one step (`Single`) is split into a partial and a final step,
//!   as a parallel plan is. The partial step runs per batch inside [`CachedPartial`],
//!   which answers from [`PartialCache`] where it can.
//! - A batch's partial aggregate is kept under what computes it: the aggregate's
//!   expressions, the filters and projections, and the batch. A filter on the table's time
//!   column that holds for the whole batch (`timestamp > clock() - INTERVAL '1 hour'` on a
//!   batch inside that hour) is left out of that description: it changes every run with
//!   the clock, yet the batch's rows are the same. A batch the time filter cuts through
//!   is aggregated afresh and not kept.
//! - An aggregate whose description changes every run (one with `clock()` inside it) is
//!   never kept: a description is kept only once two runs in a row used it.
//! - An aggregate whose partials keep more than a quarter of their batches' rows (a
//!   grouping by customer and item, where most groups have one row) gains nothing: the
//!   final step merges nearly as many rows as a fresh run aggregates. Once seen, it is
//!   left in one step, as planned, and nothing of it is kept.
//! - After each run of a rule, what the run did not use (batches that left the window or
//!   the table) is dropped. The cache holds at most its byte budget; past it, batches are
//!   aggregated afresh.
//!
//! The answer is the same as without the cache: the final step merges partial states,
//! exactly as a parallel plan merges its partitions'.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue, Statistics};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, split_conjunction};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream, StatisticsArgs,
    common::collect, displayable,
};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::retained::Chunk;

/// Rows of partial aggregates observed before judging whether they reduce their input.
const DENSE_AFTER_ROWS: u64 = 32_768;

/// Turns a sealed batch into the rows a scan yields (a window function's rows).
pub type Transform = Arc<dyn Fn(&RecordBatch) -> Result<RecordBatch> + Send + Sync>;

/// A scan of sealed batches: each partition reads the batches `i` with
/// `i % partitions == partition`, transformed (for window functions) and projected.
pub struct ChunkScan {
    chunks: Vec<Arc<Chunk>>,
    /// What the transform does, as part of a cache key, and the transform.
    transform: Option<(String, Transform)>,
    /// The rows' schema before projection.
    schema: SchemaRef,
    /// The table's time column in `schema`.
    time_col: usize,
    projection: Option<Vec<usize>>,
    partitions: usize,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for ChunkScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkScan")
            .field("batches", &self.chunks.len())
            .field("projection", &self.projection)
            .finish()
    }
}

impl ChunkScan {
    /// A scan of `chunks` (rows of `schema`, time in column `time_col`) in up to
    /// `partitions` partitions.
    pub fn new(
        chunks: Vec<Arc<Chunk>>,
        transform: Option<(String, Transform)>,
        schema: SchemaRef,
        time_col: usize,
        projection: Option<&Vec<usize>>,
        partitions: usize,
    ) -> Result<Self> {
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        let partitions = partitions.max(1).min(chunks.len().max(1));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(ChunkScan {
            chunks,
            transform,
            schema,
            time_col,
            projection: projection.cloned(),
            partitions,
            properties,
        })
    }

    /// The same scan of `chunk` alone.
    fn only(&self, chunk: &Arc<Chunk>) -> Result<Self> {
        ChunkScan::new(
            vec![chunk.clone()],
            self.transform.clone(),
            self.schema.clone(),
            self.time_col,
            self.projection.as_ref(),
            1,
        )
    }

    /// The scan's own part of a cache key; `None` when its rows are not a function of
    /// each batch alone.
    fn describe(&self) -> String {
        format!(
            "ChunkScan transform={} projection={:?}",
            self.transform.as_ref().map_or("none", |t| t.0.as_str()),
            self.projection
        )
    }

    fn mine(&self, partition: usize) -> impl Iterator<Item = &Arc<Chunk>> {
        let n = self.partitions;
        self.chunks
            .iter()
            .enumerate()
            .filter(move |(i, _)| i % n == partition)
            .map(|(_, c)| c)
    }
}

/// The rows of one batch, as a scan with `transform` and `projection` yields them.
fn read(
    chunk: &Chunk,
    transform: Option<&(String, Transform)>,
    projection: &Option<Vec<usize>>,
) -> Result<RecordBatch> {
    let rows = match transform {
        Some((_, f)) => f(&chunk.batch)?,
        None => chunk.batch.clone(),
    };
    Ok(match projection {
        Some(p) => rows.project(p)?,
        None => rows,
    })
}

impl DisplayAs for ChunkScan {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ChunkScan: batches={}, partitions={}, projection={:?}",
            self.chunks.len(),
            self.partitions,
            self.projection
        )
    }
}

impl ExecutionPlan for ChunkScan {
    fn name(&self) -> &'static str {
        "ChunkScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(&self, partition: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        // Batches are read (windows assigned) as the stream is polled, in its task.
        let chunks: Vec<Arc<Chunk>> = self.mine(partition).cloned().collect();
        let (transform, projection) = (self.transform.clone(), self.projection.clone());
        let rows = stream::iter(chunks).map(move |c| read(&c, transform.as_ref(), &projection));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.properties.eq_properties.schema().clone(),
            rows,
        )))
    }

    fn statistics_from_inputs(
        &self,
        _: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let chunks: Vec<&Arc<Chunk>> = match args.partition() {
            Some(p) => self.mine(p).collect(),
            None => self.chunks.iter().collect(),
        };
        let rows: usize = chunks.iter().map(|c| c.batch.num_rows()).sum();
        let bytes: usize = chunks.iter().map(|c| c.bytes).sum();
        let schema = self.properties.eq_properties.schema();
        let mut s = Statistics::new_unknown(schema);
        // A window function may yield more rows than the batch holds (hop).
        s.num_rows = match self.transform {
            None => Precision::Exact(rows),
            Some(_) => Precision::Inexact(rows),
        };
        s.total_byte_size =
            Precision::Inexact(bytes * schema.fields().len() / self.schema.fields().len().max(1));
        Ok(Arc::new(s))
    }
}

/// Partial aggregates of sealed batches, kept between runs of each rule.
pub struct PartialCache {
    budget: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    spaces: HashMap<String, Space>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// One rule's part of the cache.
#[derive(Default)]
struct Space {
    entries: HashMap<(Arc<str>, u64), Entry>,
    /// Descriptions the last run used, and this run.
    used_before: HashSet<Arc<str>>,
    used_now: HashSet<Arc<str>>,
    /// Rows in and out of each description's partial aggregates so far.
    reduced: HashMap<Arc<str>, (u64, u64)>,
    /// Descriptions whose partials barely reduce their batches: not worth keeping.
    dense: HashSet<Arc<str>>,
}

struct Entry {
    batches: Vec<RecordBatch>,
    bytes: usize,
    touched: bool,
}

/// What the cache holds and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Batches answered from the cache.
    pub hits: u64,
    /// Batches aggregated afresh.
    pub misses: u64,
    /// Bytes of partial aggregates held.
    pub bytes: usize,
}

impl PartialCache {
    /// A cache of at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        PartialCache {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, space: &str, key: &Arc<str>, chunk: u64) -> Option<Vec<RecordBatch>> {
        let mut s = self.state();
        let sp = s.spaces.entry(space.to_string()).or_default();
        sp.used_now.insert(key.clone());
        let found = sp.entries.get_mut(&(key.clone(), chunk)).map(|e| {
            e.touched = true;
            e.batches.clone()
        });
        match found {
            Some(_) => s.hits += 1,
            None => s.misses += 1,
        }
        found
    }

    fn put(&self, space: &str, key: &Arc<str>, chunk: u64, batches: &[RecordBatch]) {
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let mut s = self.state();
        if s.bytes + bytes > self.budget {
            return;
        }
        let Some(sp) = s.spaces.get_mut(space) else {
            return;
        };
        // Only a description the previous run used too is worth keeping.
        if !sp.used_before.contains(key) || sp.dense.contains(key) {
            return;
        }
        let old = sp.entries.insert(
            (key.clone(), chunk),
            Entry {
                batches: batches.to_vec(),
                bytes,
                touched: true,
            },
        );
        s.bytes = s.bytes + bytes - old.map_or(0, |e| e.bytes);
    }

    /// Notes that a partial aggregate of `key` turned a batch of `rows` rows into `out`.
    /// Past a quarter of their input, partials are not worth keeping: the final step
    /// merges nearly as many rows as a fresh run aggregates, and holding them costs
    /// about what the batches do.
    fn reduced(&self, space: &str, key: &Arc<str>, rows: usize, out: usize) {
        let mut s = self.state();
        let Some(sp) = s.spaces.get_mut(space) else {
            return;
        };
        let r = sp.reduced.entry(key.clone()).or_default();
        r.0 += rows as u64;
        r.1 += out as u64;
        if r.0 >= DENSE_AFTER_ROWS && r.1 * 4 > r.0 {
            sp.dense.insert(key.clone());
            let mut freed = 0;
            sp.entries.retain(|(k, _), e| {
                let keep = k != key;
                if !keep {
                    freed += e.bytes;
                }
                keep
            });
            s.bytes -= freed;
        }
    }

    fn is_dense(&self, space: &str, key: &str) -> bool {
        self.state()
            .spaces
            .get(space)
            .is_some_and(|sp| sp.dense.contains(key))
    }

    /// Ends a run of rule `space`: drops what the run did not use.
    pub fn finish(&self, space: &str) {
        let mut s = self.state();
        let Some(sp) = s.spaces.get_mut(space) else {
            return;
        };
        let mut freed = 0;
        sp.entries.retain(|_, e| {
            let keep = std::mem::take(&mut e.touched);
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        sp.used_before = std::mem::take(&mut sp.used_now);
        s.bytes -= freed;
    }

    /// Drops the parts of rules `keep` does not name (rules removed or renamed).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut s = self.state();
        let mut freed = 0;
        s.spaces.retain(|name, sp| {
            let k = keep(name);
            if !k {
                freed += sp.entries.values().map(|e| e.bytes).sum::<usize>();
            }
            k
        });
        s.bytes -= freed;
    }

    /// What the cache holds and did so far.
    pub fn stats(&self) -> CacheStats {
        let s = self.state();
        CacheStats {
            hits: s.hits,
            misses: s.misses,
            bytes: s.bytes,
        }
    }
}

/// Makes the aggregates of `plan` that read sealed batches use `cache`'s part `space`.
pub fn rewrite(
    plan: Arc<dyn ExecutionPlan>,
    cache: &Arc<PartialCache>,
    space: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_down(|node| {
        let Some(agg) = node.downcast_ref::<AggregateExec>() else {
            return Ok(Transformed::no(node));
        };
        match cached(agg, cache, space)? {
            Some(new) => Ok(Transformed::new(new, true, TreeNodeRecursion::Jump)),
            None => Ok(Transformed::no(node)),
        }
    })
    .map(|t| t.data)
}

/// `agg` with its partial step per batch and cached; `None` when it cannot be.
fn cached(
    agg: &AggregateExec,
    cache: &Arc<PartialCache>,
    space: &str,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if agg.limit_options().is_some() {
        return Ok(None);
    }
    let Some((scan, filters)) = chain(agg.input()) else {
        return Ok(None);
    };
    let partial = |input: Arc<dyn ExecutionPlan>| -> Result<Arc<AggregateExec>> {
        Ok(Arc::new(AggregateExec::try_new(
            AggregateMode::Partial,
            agg.group_expr().clone(),
            agg.aggr_expr().to_vec(),
            agg.filter_expr().to_vec(),
            input,
            agg.input_schema(),
        )?))
    };
    let (part, last) = match agg.mode() {
        AggregateMode::Partial => (partial(agg.input().clone())?, None),
        AggregateMode::Single => (partial(agg.input().clone())?, Some(AggregateMode::Final)),
        AggregateMode::SinglePartitioned => (
            partial(agg.input().clone())?,
            Some(AggregateMode::FinalPartitioned),
        ),
        AggregateMode::Final | AggregateMode::FinalPartitioned | AggregateMode::PartialReduce => {
            return Ok(None);
        }
    };
    let Some(described) = describe(part.clone()) else {
        return Ok(None);
    };
    if cache.is_dense(space, &described) {
        // Kept as planned: in one step.
        return Ok(None);
    }
    let keys: Vec<Option<Arc<str>>> = scan
        .chunks
        .iter()
        .map(|c| {
            filters
                .iter()
                .all(|f| f.holds(c))
                .then(|| Arc::from(described.as_str()))
        })
        .collect();
    let node: Arc<dyn ExecutionPlan> = Arc::new(CachedPartial {
        partial: part.clone(),
        chunks: scan.chunks.clone(),
        partitions: scan.partitions,
        keys,
        cache: cache.clone(),
        space: space.to_string(),
    });
    Ok(Some(match last {
        None => node,
        Some(mode) => Arc::new(AggregateExec::try_new(
            mode,
            part.group_expr().as_final(),
            part.aggr_expr().to_vec(),
            part.filter_expr().to_vec(),
            node,
            agg.input_schema(),
        )?),
    }))
}

/// A comparison of the table's time column with a literal, in a filter under the
/// aggregate: `col op value`.
struct TimeBound {
    op: Operator,
    value: i64,
}

impl TimeBound {
    /// Whether every row of `chunk` passes.
    fn holds(&self, c: &Chunk) -> bool {
        match self.op {
            Operator::Gt => c.min > self.value,
            Operator::GtEq => c.min >= self.value,
            Operator::Lt => c.max < self.value,
            Operator::LtEq => c.max <= self.value,
            _ => false,
        }
    }
}

/// The scan under `plan` when `plan` is filters and projections (and cooperative
/// yielding) over a [`ChunkScan`], and the time bounds of those filters.
fn chain(plan: &Arc<dyn ExecutionPlan>) -> Option<(&ChunkScan, Vec<TimeBound>)> {
    let mut bounds = Vec::new();
    let mut at = plan;
    loop {
        if let Some(s) = at.downcast_ref::<ChunkScan>() {
            return Some((s, bounds));
        }
        if let Some(f) = at.downcast_ref::<FilterExec>() {
            for c in split_conjunction(f.predicate()) {
                if let Some(b) = time_bound(c, f.input()) {
                    bounds.push(b);
                }
            }
            at = f.input();
        } else if let Some(p) = at.downcast_ref::<ProjectionExec>() {
            at = p.input();
        } else if let Some(c) = at.downcast_ref::<CooperativeExec>() {
            at = c.input();
        } else {
            return None;
        }
    }
}

/// `e` as a bound on the table's time column (of `input`'s rows).
fn time_bound(e: &Arc<dyn PhysicalExpr>, input: &Arc<dyn ExecutionPlan>) -> Option<TimeBound> {
    let b = e.downcast_ref::<BinaryExpr>()?;
    let (col, op, lit) = match (column(b.left()), literal(b.right())) {
        (Some(c), Some(v)) => (c, *b.op(), v),
        _ => (column(b.right())?, b.op().swap()?, literal(b.left())?),
    };
    if !matches!(
        op,
        Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq
    ) || !is_time(input, col)
    {
        return None;
    }
    Some(TimeBound { op, value: lit })
}

fn column(e: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    if let Some(c) = e.downcast_ref::<Column>() {
        return Some(c.index());
    }
    column(e.downcast_ref::<CastExpr>()?.expr())
}

fn literal(e: &Arc<dyn PhysicalExpr>) -> Option<i64> {
    match e.downcast_ref::<Literal>()?.value() {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => n.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(n), _) => n.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(n), _) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// Whether column `i` of `plan`'s rows is the scanned table's time column, unchanged.
fn is_time(plan: &Arc<dyn ExecutionPlan>, i: usize) -> bool {
    if let Some(s) = plan.downcast_ref::<ChunkScan>() {
        let i = s.projection.as_ref().map_or(Some(i), |p| p.get(i).copied());
        return i == Some(s.time_col);
    }
    if let Some(f) = plan.downcast_ref::<FilterExec>() {
        return match f.projection() {
            Some(p) => p.get(i).is_some_and(|j| is_time(f.input(), *j)),
            None => is_time(f.input(), i),
        };
    }
    if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
        return p
            .expr()
            .get(i)
            .and_then(|e| e.expr.downcast_ref::<Column>())
            .is_some_and(|c| is_time(p.input(), c.index()));
    }
    if let Some(c) = plan.downcast_ref::<CooperativeExec>() {
        return is_time(c.input(), i);
    }
    false
}

/// What the partial aggregate `part` computes from a batch, except the bounds on the
/// table's time column (which hold for every batch this description is used for): every node's
/// name, display and expressions, literals included. `None` for a node whose result
/// may depend on more than its input (a dynamic filter).
fn describe(part: Arc<dyn ExecutionPlan>) -> Option<String> {
    let mut out = String::new();
    let mut node = part;
    loop {
        if let Some(s) = node.downcast_ref::<ChunkScan>() {
            out.push_str(&s.describe());
            return Some(out);
        }
        out.push_str(node.name());
        out.push_str(" {");
        if let Some(f) = node.downcast_ref::<FilterExec>() {
            // The time bounds are left out: they hold for the batches this is used for.
            for c in split_conjunction(f.predicate()) {
                if time_bound(c, f.input()).is_none() {
                    out.push_str(&format!("{c}; "));
                }
            }
            out.push_str(&format!("projection={:?}", f.projection()));
        } else {
            out.push_str(&displayable(node.as_ref()).one_line().to_string());
            node.apply_expressions(&mut |e| {
                out.push_str(&format!("; {e}"));
                Ok(TreeNodeRecursion::Continue)
            })
            .ok()?;
        }
        out.push_str("}\n");
        if out.contains("DynamicFilter") {
            return None;
        }
        let next = node.children().first().map(|c| Arc::clone(c))?;
        node = next;
    }
}

/// The partial step of an aggregate, run per sealed batch and answered from the cache
/// where it can be.
struct CachedPartial {
    /// The partial aggregate over the whole scan.
    partial: Arc<AggregateExec>,
    chunks: Vec<Arc<Chunk>>,
    partitions: usize,
    /// Each batch's key in the cache; `None`: aggregated afresh and not kept.
    keys: Vec<Option<Arc<str>>>,
    cache: Arc<PartialCache>,
    space: String,
}

impl fmt::Debug for CachedPartial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedPartial")
            .field("batches", &self.chunks.len())
            .finish()
    }
}

impl DisplayAs for CachedPartial {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CachedPartial: batches={}, cacheable={}",
            self.chunks.len(),
            self.keys.iter().filter(|k| k.is_some()).count()
        )
    }
}

/// `plan` over `chunk` alone: its scan replaced.
fn over(plan: &Arc<dyn ExecutionPlan>, chunk: &Arc<Chunk>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(s) = plan.downcast_ref::<ChunkScan>() {
        return Ok(Arc::new(s.only(chunk)?));
    }
    let children = plan
        .children()
        .into_iter()
        .map(|c| over(c, chunk))
        .collect::<Result<Vec<_>>>()?;
    plan.clone().replace_children(
        children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

impl ExecutionPlan for CachedPartial {
    fn name(&self) -> &'static str {
        "CachedPartial"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.partial.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // The partial aggregate runs inside, per batch: no child to the planner.
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let n = self.partitions;
        let mine: Vec<(Arc<Chunk>, Option<Arc<str>>)> = self
            .chunks
            .iter()
            .zip(&self.keys)
            .enumerate()
            .filter(|(i, _)| i % n == partition)
            .map(|(_, (c, k))| (c.clone(), k.clone()))
            .collect();
        let partial: Arc<dyn ExecutionPlan> = self.partial.clone();
        let cache = self.cache.clone();
        let space = self.space.clone();
        let batches = stream::iter(mine)
            .then(move |(chunk, key)| {
                let (partial, cache, space, ctx) =
                    (partial.clone(), cache.clone(), space.clone(), ctx.clone());
                async move {
                    match &key {
                        Some(k) => {
                            if let Some(kept) = cache.get(&space, k, chunk.id) {
                                return Ok(kept);
                            }
                        }
                        None => cache.state().misses += 1,
                    }
                    let out = collect(over(&partial, &chunk)?.execute(0, ctx)?).await?;
                    if let Some(k) = &key {
                        let rows = out.iter().map(RecordBatch::num_rows).sum();
                        cache.reduced(&space, k, chunk.batch.num_rows(), rows);
                        cache.put(&space, k, chunk.id, &out);
                    }
                    Ok::<_, datafusion::error::DataFusionError>(out)
                }
            })
            .map_ok(|v| stream::iter(v.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.partial.schema(),
            batches,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, Limits};
    use crate::retained::{Retention, Tables};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use footfall_operators::event::{CartChange, Event, EventKind, Item, Topic};
    use footfall_operators::time::{Span, Timestamp};
    use rust_decimal::Decimal;

    /// `n` clickstream events, one every 50 ms from `from`: few customers and items, so
    /// groups repeat.
    fn fill(t: &mut Tables, from: i64, n: i64, seed: &mut u64) -> i64 {
        let mut at = from;
        for i in 0..n {
            let x = {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed
            };
            let customer = x % 300;
            let items = vec![Item {
                item_id: format!("sku-{}", (x >> 20) % 40).into(),
                item_name: None,
                item_category: None,
                price: Some(Decimal::new(((x >> 8) % 5_000) as i64 + 100, 2)),
                quantity: 1,
            }];
            let kind = match x % 10 {
                0..=5 => EventKind::ViewItem { items },
                6 | 7 => EventKind::AddToCart(CartChange {
                    cart_id: None,
                    currency: Some("CNY".into()),
                    items,
                }),
                _ => EventKind::PageView,
            };
            let e = Event {
                message_id: format!("c-{from}-{i}").into(),
                timestamp: Timestamp::from_nanos(at),
                user_id: Some(format!("m-{customer}").into()),
                anonymous_id: None,
                channel: Some("app".into()),
                store_id: Some(["st-1", "st-2", "st-3"][(x >> 30) as usize % 3].into()),
                kind,
            };
            t.append(Topic::Clickstream, &format!("m-{customer}"), &e);
            at += 50_000_000;
        }
        t.seal();
        at
    }

    fn rows(batches: &[RecordBatch]) -> Vec<String> {
        let text = pretty_format_batches(batches).unwrap().to_string();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    #[tokio::test]
    async fn cached_partials_give_the_same_answers_as_a_fresh_run() {
        let rule = |name: &str| {
            let path = format!("{}/../deploy/rules/{name}.sql", env!("CARGO_MANIFEST_DIR"));
            crate::rules::Rule::load(std::path::Path::new(&path))
                .unwrap()
                .sql
        };
        let queries = [
            ("browse", rule("browse_abandonment")),
            // store_footfall_anomaly's windows (uniform data has no anomaly to find).
            (
                "anomaly",
                "SELECT store_id, window_start, window_end, count(*) AS events \
                 FROM tumble(clickstream, \"timestamp\", INTERVAL '15 minutes') \
                 WHERE store_id IS NOT NULL AND timestamp > clock() - INTERVAL '24 hours' \
                 AND timestamp <= clock() GROUP BY store_id, window_start, window_end"
                    .to_string(),
            ),
            // The clock inside the aggregate: its description changes every run.
            (
                "clock_inside",
                "SELECT customer_key, sum(CASE WHEN timestamp > clock() - INTERVAL '10 minutes' \
                 THEN value ELSE 0 END) AS recent, count(*) AS n FROM clickstream \
                 WHERE timestamp <= clock() GROUP BY customer_key HAVING count(*) > 2"
                    .to_string(),
            ),
            (
                "hop",
                "SELECT store_id, window_start, count(*) AS n, sum(value) AS v \
                 FROM hop(clickstream, \"timestamp\", INTERVAL '5 minutes', INTERVAL '15 minutes') \
                 WHERE timestamp > clock() - INTERVAL '30 minutes' GROUP BY store_id, window_start"
                    .to_string(),
            ),
        ];
        // Little retention by size, so old batches leave the table between runs.
        let mut t = Tables::new(Retention {
            age: Span::from_secs(86_400),
            bytes: 12 << 20,
        });
        let cache = Arc::new(PartialCache::new(usize::MAX));
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut at = fill(&mut t, 1_700_000_000_000_000_000, 100_000, &mut seed);
        let mut last = CacheStats::default();
        for run in 0..4 {
            let clock = Timestamp::from_nanos(at);
            for (name, sql) in &queries {
                let fresh = Engine::new(t.snapshot(), Limits::default())
                    .with_clock(clock)
                    .with_partitions(1)
                    .query(sql)
                    .await
                    .unwrap();
                let cached = Engine::new(t.snapshot(), Limits::default())
                    .with_clock(clock)
                    .with_partitions(1)
                    .with_cache(cache.clone(), name)
                    .query(sql)
                    .await
                    .unwrap();
                assert_eq!(
                    rows(&cached.batches),
                    rows(&fresh.batches),
                    "{name}, run {run}"
                );
                assert!(fresh.rows() > 0, "{name} finds something to compare");
            }
            let now = cache.stats();
            if run >= 2 {
                assert!(
                    now.hits >= last.hits + 10,
                    "run {run}: the unchanged batches come from the cache: {now:?}"
                );
            }
            last = now;
            at = fill(&mut t, at, 9_000, &mut seed);
        }
        // The query with the clock inside its aggregate kept nothing, nor browse
        // abandonment, whose partials (per customer and item) barely reduce their
        // batches; the windows hold what their last run used.
        let s = cache.state();
        let sizes: HashMap<&str, (usize, usize)> = s
            .spaces
            .iter()
            .map(|(k, sp)| (k.as_str(), (sp.entries.len(), sp.dense.len())))
            .collect();
        assert_eq!(sizes["clock_inside"].0, 0, "{sizes:?}");
        assert_eq!(sizes["browse"], (0, 1), "{sizes:?}");
        assert!(sizes["anomaly"].0 > 0 && sizes["hop"].0 > 0, "{sizes:?}");
    }
}
