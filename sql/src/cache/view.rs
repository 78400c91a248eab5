//! Aggregates kept up to date between runs: a grouping whose aggregates are counts and
//! exact sums keeps its groups from one run of a rule to the next. A run adds the rows
//! that entered the window (new batches, rows the time filter now lets in) and subtracts
//! the rows that left it (batches dropped from the table, rows the time filter now
//! excludes), so its cost follows what changed, not what the window holds. With a
//! `HAVING` filter above it, only the groups whose values changed are tested again, and
//! only the groups that pass are emitted.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, new_null_array};
use datafusion::arrow::compute::kernels::boolean::{and, not};
use datafusion::arrow::compute::{cast, filter_record_batch, prep_null_mask_filter};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal, lit};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{
    EquivalenceProperties, PhysicalExpr, conjunction, split_conjunction,
};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
    common::collect,
};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::groups::{Acc, Groups};
use super::plan::{TimeBound, describe, time_bound};
use super::scan::{ChunkScan, read};
use super::store::PartialCache;
use crate::retained::Chunk;

/// What one aggregate of an incremental grouping computes.
#[derive(Clone)]
enum Agg {
    Rows,
    Count(Arc<dyn PhysicalExpr>),
    SumI64(Arc<dyn PhysicalExpr>),
    SumDecimal(Arc<dyn PhysicalExpr>),
}

impl Agg {
    fn acc(&self) -> Acc {
        match self {
            Agg::Rows => Acc::Rows,
            Agg::Count(_) => Acc::Count(Vec::new()),
            Agg::SumI64(_) => Acc::SumI64 {
                sum: Vec::new(),
                n: Vec::new(),
            },
            Agg::SumDecimal(_) => Acc::SumDecimal {
                sum: Vec::new(),
                n: Vec::new(),
            },
        }
    }

    fn arg(&self) -> Option<&Arc<dyn PhysicalExpr>> {
        match self {
            Agg::Rows => None,
            Agg::Count(e) | Agg::SumI64(e) | Agg::SumDecimal(e) => Some(e),
        }
    }
}

/// A bound on the table's time column, in a filter under the aggregate.
#[derive(Clone)]
pub(super) struct Bound {
    /// The comparison, over the scan's rows before projection.
    expr: Arc<dyn PhysicalExpr>,
    /// The same, when it compares the column itself (no cast): batches' time ranges
    /// then tell whether all or none of their rows pass.
    plain: Option<TimeBound>,
}

/// Which rows of a batch a run counts.
enum Selected {
    All,
    Nothing,
    Some(BooleanArray),
}

/// What a grouping keeps between runs.
pub(super) struct View {
    groups: Groups,
    /// The batches the last run counted, and the bounds it counted their rows under.
    chunks: HashMap<u64, Arc<Chunk>>,
    bounds: Vec<Bound>,
    /// Group slots that pass the `HAVING` filter.
    passing: Vec<bool>,
}

impl View {
    /// Live groups that pass the `HAVING` filter.
    #[cfg(test)]
    pub(super) fn passing(&self) -> usize {
        (0..self.groups.slots() as u32)
            .filter(|&g| self.groups.is_live(g) && self.passing[g as usize])
            .count()
    }

    pub(super) fn bytes(&self) -> usize {
        self.groups.bytes() + self.passing.capacity() + self.chunks.capacity() * 24
    }
}

/// The scan's rows of `c` under `bounds`: every row, none, or those a mask selects;
/// `rows` is `c` as the scan reads it, made once when needed.
fn select(
    bounds: &[Bound],
    c: &Chunk,
    rows: &mut dyn FnMut() -> Result<RecordBatch>,
) -> Result<Selected> {
    if bounds
        .iter()
        .all(|b| b.plain.as_ref().is_some_and(|p| p.holds(c)))
    {
        return Ok(Selected::All);
    }
    if bounds
        .iter()
        .any(|b| b.plain.as_ref().is_some_and(|p| p.excludes(c)))
    {
        return Ok(Selected::Nothing);
    }
    let rows = rows()?;
    let mut mask: Option<BooleanArray> = None;
    for b in bounds {
        let m = b.expr.evaluate(&rows)?.into_array(rows.num_rows())?;
        let Some(m) = m.as_any().downcast_ref::<BooleanArray>() else {
            return datafusion::common::internal_err!("a time bound is not a boolean");
        };
        let m = match m.null_count() {
            0 => m.clone(),
            _ => prep_null_mask_filter(m),
        };
        mask = Some(match mask {
            None => m,
            Some(x) => and(&x, &m)?,
        });
    }
    Ok(match mask {
        None => Selected::All,
        Some(m) if m.true_count() == m.len() => Selected::All,
        Some(m) if m.true_count() == 0 => Selected::Nothing,
        Some(m) => Selected::Some(m),
    })
}

/// The rows of `rows` that `a` selects and `b` does not.
fn minus(rows: &RecordBatch, a: &Selected, b: &Selected) -> Result<Option<RecordBatch>> {
    let mask = match (a, b) {
        (Selected::Nothing, _) | (_, Selected::All) => return Ok(None),
        (Selected::All, Selected::Nothing) => return Ok(Some(rows.clone())),
        (Selected::All, Selected::Some(m)) => not(m)?,
        (Selected::Some(m), Selected::Nothing) => m.clone(),
        (Selected::Some(x), Selected::Some(y)) => and(x, &not(y)?)?,
    };
    if mask.true_count() == 0 {
        return Ok(None);
    }
    Ok(Some(filter_record_batch(rows, &mask)?))
}

/// Whether `a` and `b` select the same rows of any batch they both call all or nothing.
fn same(a: &Selected, b: &Selected) -> bool {
    matches!(
        (a, b),
        (Selected::All, Selected::All) | (Selected::Nothing, Selected::Nothing)
    )
}

/// `agg` (with `having`, the filter right above it, if any) kept up to date between
/// runs in `cache`'s part `space`; `None` when it cannot be.
pub(super) fn incremental(
    node: &Arc<dyn ExecutionPlan>,
    having: Option<&Arc<dyn PhysicalExpr>>,
    cache: &Arc<PartialCache>,
    space: &str,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(agg) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let group = agg.group_expr();
    if *agg.mode() != AggregateMode::Single
        || agg.limit_options().is_some()
        || !group.is_single()
        || group.expr().is_empty()
        || agg.filter_expr().iter().any(Option::is_some)
        || agg.input().output_partitioning().partition_count() != 1
    {
        return Ok(None);
    }
    let input = agg.input_schema();
    let mut aggs = Vec::new();
    for a in agg.aggr_expr() {
        let args = a.expressions();
        if a.is_distinct() || !a.order_bys().is_empty() || args.len() != 1 {
            return Ok(None);
        }
        let arg = args[0].clone();
        let counted_rows = arg
            .downcast_ref::<Literal>()
            .is_some_and(|l| !l.value().is_null());
        aggs.push(match (a.fun().name(), arg.data_type(&input)?) {
            ("count", _) if counted_rows => Agg::Rows,
            ("count", _) => Agg::Count(arg),
            ("sum", DataType::Int64) if *a.field().data_type() == DataType::Int64 => {
                Agg::SumI64(arg)
            }
            ("sum", DataType::Decimal128(..))
                if matches!(a.field().data_type(), DataType::Decimal128(..)) =>
            {
                Agg::SumDecimal(arg)
            }
            _ => return Ok(None),
        });
    }
    let Some((scan, bounds)) = bounded(agg.input()) else {
        return Ok(None);
    };
    let Some(mut key) = describe(node.clone()) else {
        return Ok(None);
    };
    if let Some(h) = having {
        key.push_str(&format!("HAVING {h}"));
    }
    let keys = group
        .expr()
        .iter()
        .map(|(e, _)| e.data_type(&input))
        .collect::<Result<Vec<_>>>()?;
    let schema = agg.schema();
    let properties = Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Final,
        Boundedness::Bounded,
    ));
    Ok(Some(Arc::new(Incremental(Arc::new(Inner {
        agg: node.clone(),
        body: agg.input().clone(),
        chunks: scan.chunks.clone(),
        scan: ChunkScan::new(
            Vec::new(),
            scan.transform.clone(),
            scan.schema.clone(),
            scan.time_col,
            scan.projection.as_ref(),
            1,
        )?,
        bounds,
        group: group.expr().iter().map(|(e, _)| e.clone()).collect(),
        keys,
        aggs,
        having: having.cloned(),
        schema,
        key: Arc::from(key.as_str()),
        cache: cache.clone(),
        space: space.to_string(),
        properties,
    })))))
}

/// The scan under `plan` (filters and projections over a [`ChunkScan`]) and the bounds
/// its filters put on the table's time column.
fn bounded(plan: &Arc<dyn ExecutionPlan>) -> Option<(&ChunkScan, Vec<Bound>)> {
    let mut found = Vec::new();
    let mut at = plan;
    loop {
        if let Some(s) = at.downcast_ref::<ChunkScan>() {
            let time = Column::new(s.schema.field(s.time_col).name(), s.time_col);
            let mut bounds = Vec::new();
            for (e, plain) in found {
                let expr = onto(e, &time).ok()?;
                bounds.push(Bound { expr, plain });
            }
            return Some((s, bounds));
        }
        if let Some(f) = at.downcast_ref::<FilterExec>() {
            for c in split_conjunction(f.predicate()) {
                if let Some(b) = time_bound(c, f.input()) {
                    let bare = c.downcast_ref::<BinaryExpr>().is_some_and(|b| {
                        b.left().downcast_ref::<Column>().is_some()
                            || b.right().downcast_ref::<Column>().is_some()
                    });
                    found.push((c.clone(), bare.then_some(b)));
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

/// `e` (a comparison of one column, the time column) over the scan's rows.
fn onto(e: Arc<dyn PhysicalExpr>, time: &Column) -> Result<Arc<dyn PhysicalExpr>> {
    e.transform(|x| match x.downcast_ref::<Column>() {
        Some(_) => Ok(Transformed::yes(
            Arc::new(time.clone()) as Arc<dyn PhysicalExpr>
        )),
        None => Ok(Transformed::no(x)),
    })
    .map(|t| t.data)
}

/// `plan` without its filters' bounds on the time column, over `leaf` instead of its
/// scan.
fn strip(
    plan: &Arc<dyn ExecutionPlan>,
    leaf: &Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.downcast_ref::<ChunkScan>().is_some() {
        return Ok(leaf.clone());
    }
    let child = strip(plan.children()[0], leaf)?;
    if let Some(f) = plan.downcast_ref::<FilterExec>() {
        let rest: Vec<Arc<dyn PhysicalExpr>> = split_conjunction(f.predicate())
            .into_iter()
            .filter(|c| time_bound(c, f.input()).is_none())
            .cloned()
            .collect();
        let predicate = if rest.is_empty() {
            lit(ScalarValue::Boolean(Some(true)))
        } else {
            conjunction(rest)
        };
        return Ok(Arc::new(
            FilterExecBuilder::from(f)
                .with_input(child)
                .with_predicate(predicate)
                .build()?,
        ));
    }
    plan.clone().replace_children(
        vec![child],
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

struct Inner {
    /// The aggregate as planned: what runs when nothing is kept.
    agg: Arc<dyn ExecutionPlan>,
    /// The filters and projections under it, over the scan.
    body: Arc<dyn ExecutionPlan>,
    /// This run's batches, and a scan like its own, of none.
    chunks: Vec<Arc<Chunk>>,
    scan: ChunkScan,
    /// This run's bounds on the time column.
    bounds: Vec<Bound>,
    group: Vec<Arc<dyn PhysicalExpr>>,
    keys: Vec<DataType>,
    aggs: Vec<Agg>,
    having: Option<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    key: Arc<str>,
    cache: Arc<PartialCache>,
    space: String,
    properties: Arc<PlanProperties>,
}

impl Inner {
    async fn run(&self, ctx: Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
        let (kept, keep) = self.cache.take_view(&self.space, &self.key);
        let mut view = match kept {
            Some(v) => v,
            None if keep => View {
                groups: Groups::new(&self.keys, self.aggs.iter().map(Agg::acc).collect())?,
                chunks: HashMap::new(),
                bounds: Vec::new(),
                passing: Vec::new(),
            },
            // Not seen in the last run (or too large to keep): as planned.
            None => return collect(self.agg.execute(0, ctx)?).await,
        };
        let (added, removed, reused) = self.deltas(&view)?;
        let changed = added.len() + removed.len();
        let mut touched = Vec::new();
        for (rows, sign) in [(added, 1), (removed, -1)] {
            for b in self.body_over(rows, ctx.clone()).await? {
                let keys = eval(&self.group, &b)?;
                let args = self
                    .aggs
                    .iter()
                    .map(|a| {
                        a.arg()
                            .map(|e| e.evaluate(&b)?.into_array(b.num_rows()))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()?;
                view.groups.apply(&keys, &args, sign, &mut touched)?;
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let dropped = view.groups.drop_empty(&touched)?;
        view.passing.resize(view.groups.slots(), false);
        for g in dropped {
            view.passing[g as usize] = false;
        }
        touched.retain(|&g| view.groups.is_live(g));
        self.test_having(&mut view, &touched)?;
        let out = self.emit(&view)?;
        view.groups.shrink();
        view.passing.shrink_to_fit();
        view.chunks = self.chunks.iter().map(|c| (c.id, c.clone())).collect();
        view.bounds = self.bounds.clone();
        self.cache
            .put_view(&self.space, &self.key, view, reused, changed);
        Ok(out)
    }

    /// Reads `c` as the scan does, before projection, once, when first asked.
    fn reader<'a>(&'a self, c: &'a Chunk) -> impl FnMut() -> Result<RecordBatch> + 'a {
        let mut rows: Option<RecordBatch> = None;
        move || {
            let r = match &rows {
                Some(r) => r.clone(),
                None => read(c, self.scan.transform.as_ref(), &None)?,
            };
            rows = Some(r.clone());
            Ok(r)
        }
    }

    /// The rows that entered the window since the last run, those that left it, and
    /// how many batches are unchanged: as the scan reads them, before projection.
    fn deltas(&self, view: &View) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>, usize)> {
        let (mut added, mut removed, mut reused) = (Vec::new(), Vec::new(), 0);
        let mut now = HashSet::new();
        for c in &self.chunks {
            now.insert(c.id);
            let mut read_once = self.reader(c);
            let new = select(&self.bounds, c, &mut read_once)?;
            let old = match view.chunks.contains_key(&c.id) {
                true => select(&view.bounds, c, &mut read_once)?,
                false => Selected::Nothing,
            };
            if same(&new, &old) {
                reused += matches!(new, Selected::All) as usize;
                continue;
            }
            let rows = read_once()?;
            added.extend(minus(&rows, &new, &old)?);
            removed.extend(minus(&rows, &old, &new)?);
        }
        for (id, c) in &view.chunks {
            if now.contains(id) {
                continue;
            }
            let mut read_once = self.reader(c);
            let old = select(&view.bounds, c, &mut read_once)?;
            if !matches!(old, Selected::Nothing) {
                let rows = read_once()?;
                removed.extend(minus(&rows, &old, &Selected::Nothing)?);
            }
        }
        Ok((added, removed, reused))
    }

    /// The filters and projections (without the time bounds) over `rows`.
    async fn body_over(
        &self,
        rows: Vec<RecordBatch>,
        ctx: Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let chunks = rows
            .into_iter()
            .map(|b| Arc::new(Chunk::new(b, self.scan.time_col)))
            .collect();
        let leaf: Arc<dyn ExecutionPlan> = Arc::new(ChunkScan::new(
            chunks,
            None,
            self.scan.schema.clone(),
            self.scan.time_col,
            self.scan.projection.as_ref(),
            1,
        )?);
        collect(strip(&self.body, &leaf)?.execute(0, ctx)?).await
    }

    /// Tests the `HAVING` filter again on `touched`, the live groups whose values changed.
    fn test_having(&self, view: &mut View, touched: &[u32]) -> Result<()> {
        let Some(having) = &self.having else {
            return Ok(());
        };
        if touched.is_empty() {
            return Ok(());
        }
        // A filter on the aggregates alone needs no keys.
        let n = self.group.len();
        let keyless = collect_columns(having).iter().all(|c| c.index() >= n);
        let batch = if keyless {
            let fields: Vec<Field> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            let mut cols: Vec<ArrayRef> = self.keys_as_schema(None, touched.len())?;
            cols.extend(self.values(view, touched));
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?
        } else {
            self.batch(view, touched)?
        };
        let pass = having.evaluate(&batch)?.into_array(batch.num_rows())?;
        let Some(pass) = pass.as_any().downcast_ref::<BooleanArray>() else {
            return datafusion::common::internal_err!("HAVING is not a boolean");
        };
        for (i, &g) in touched.iter().enumerate() {
            view.passing[g as usize] = pass.is_valid(i) && pass.value(i);
        }
        Ok(())
    }

    /// The key columns of `groups` (null columns of `rows` rows without a view).
    fn keys_as_schema(&self, kept: Option<(&View, &[u32])>, rows: usize) -> Result<Vec<ArrayRef>> {
        let Some((view, groups)) = kept else {
            return Ok(self.schema.fields()[..self.group.len()]
                .iter()
                .map(|f| new_null_array(f.data_type(), rows))
                .collect());
        };
        let cols = view.groups.keys(groups)?;
        cols.into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| match c.data_type() == f.data_type() {
                true => Ok(c),
                false => Ok(cast(&c, f.data_type())?),
            })
            .collect()
    }

    fn values(&self, view: &View, groups: &[u32]) -> Vec<ArrayRef> {
        let n = self.group.len();
        (0..self.aggs.len())
            .map(|i| {
                view.groups
                    .values(i, groups, self.schema.field(n + i).data_type())
            })
            .collect()
    }

    /// The aggregate's rows for `groups`.
    fn batch(&self, view: &View, groups: &[u32]) -> Result<RecordBatch> {
        let mut cols = self.keys_as_schema(Some((view, groups)), groups.len())?;
        cols.extend(self.values(view, groups));
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    /// The groups that pass (every live group without a `HAVING` filter).
    fn emit(&self, view: &View) -> Result<Vec<RecordBatch>> {
        let out: Vec<u32> = (0..view.groups.slots() as u32)
            .filter(|&g| {
                view.groups.is_live(g) && (self.having.is_none() || view.passing[g as usize])
            })
            .collect();
        if out.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![self.batch(view, &out)?])
    }
}

fn eval(exprs: &[Arc<dyn PhysicalExpr>], b: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(b)?.into_array(b.num_rows()))
        .collect()
}

/// A grouping kept up to date between runs (see the module's documentation).
struct Incremental(Arc<Inner>);

impl fmt::Debug for Incremental {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incremental")
            .field("batches", &self.0.chunks.len())
            .finish()
    }
}

impl DisplayAs for Incremental {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "IncrementalAggregate: batches={}, having={}",
            self.0.chunks.len(),
            self.0.having.is_some()
        )
    }
}

impl ExecutionPlan for Incremental {
    fn name(&self) -> &'static str {
        "IncrementalAggregate"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.0.properties
    }

    // The aggregate and its input run inside.
    leaf_plan!();

    fn execute(&self, _: usize, ctx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let inner = self.0.clone();
        let batches = stream::once(async move { inner.run(ctx).await })
            .map_ok(|v| stream::iter(v.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.0.schema.clone(),
            batches.boxed(),
        )))
    }
}
