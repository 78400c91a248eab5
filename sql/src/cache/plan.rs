//! The plan rewrite: aggregates over retained batches, their partial step per batch.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, split_conjunction};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream, common::collect, displayable,
};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::scan::ChunkScan;
use super::store::PartialCache;
use super::view::incremental;
use crate::retained::Chunk;

/// Makes the aggregates of `plan` that read sealed batches use `cache`'s part `space`.
pub fn rewrite(
    plan: Arc<dyn ExecutionPlan>,
    cache: &Arc<PartialCache>,
    space: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_down(|node| {
        // A grouping with a `HAVING` filter right above it: only what passes is emitted.
        if let Some(f) = node.downcast_ref::<FilterExec>()
            && let Some(view) = incremental(f.input(), Some(f.predicate()), cache, space)?
        {
            let new = node.clone().replace_children(
                vec![view],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?;
            return Ok(Transformed::new(new, true, TreeNodeRecursion::Jump));
        }
        if let Some(view) = incremental(&node, None, cache, space)? {
            return Ok(Transformed::new(view, true, TreeNodeRecursion::Jump));
        }
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
#[derive(Clone, Copy)]
pub(super) struct TimeBound {
    op: Operator,
    value: i64,
}

impl TimeBound {
    /// Whether no row of `c` passes.
    pub(super) fn excludes(&self, c: &Chunk) -> bool {
        match self.op {
            Operator::Gt => c.max <= self.value,
            Operator::GtEq => c.max < self.value,
            Operator::Lt => c.min >= self.value,
            Operator::LtEq => c.min > self.value,
            _ => false,
        }
    }

    /// Whether every row of `chunk` passes.
    pub(super) fn holds(&self, c: &Chunk) -> bool {
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
pub(super) fn time_bound(
    e: &Arc<dyn PhysicalExpr>,
    input: &Arc<dyn ExecutionPlan>,
) -> Option<TimeBound> {
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
pub(super) fn describe(part: Arc<dyn ExecutionPlan>) -> Option<String> {
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

    // The partial aggregate runs inside, per batch: no child to the planner.
    leaf_plan!();

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
