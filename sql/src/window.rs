//! Window table functions, in the style of Flink and RisingWave:
//!
//! - `tumble(table, time_col, size)`: each row in the one window of `size` that holds it;
//! - `hop(table, time_col, slide, size)`: each row once per window of `size`, starting
//!   every `slide`, that holds it;
//! - `session(table, time_col, key_col, gap)`: each row in its key's session, which ends
//!   when the key is quiet for `gap`.
//!
//! Each adds `window_start` and `window_end` (UTC timestamps) to the table's columns.
//! Sizes are intervals (`INTERVAL '5 minutes'`) or strings (`'5m'`, `'1 hour'`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::cache::{ChunkScan, Transform};
use crate::retained::{Frozen, Snapshot, memory_scan};
use crate::rows::utc;
use crate::schema::Table;

/// Which window a table function assigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tumble,
    Hop,
    Session,
}

impl Kind {
    /// The function's SQL name.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Tumble => "tumble",
            Kind::Hop => "hop",
            Kind::Session => "session",
        }
    }
}

/// A window table function over a snapshot's tables.
#[derive(Debug)]
pub struct WindowFn {
    kind: Kind,
    tables: Arc<Snapshot>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl WindowFn {
    /// `kind` over `tables`.
    pub fn new(kind: Kind, tables: Arc<Snapshot>) -> Self {
        WindowFn { kind, tables }
    }
}

#[derive(Clone, Copy, Debug)]
enum Assign {
    Tumble { size: i64 },
    Hop { slide: i64, size: i64 },
    Session { key: usize, gap: i64 },
}

impl TableFunctionImpl for WindowFn {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let name = self.kind.name();
        let usage = match self.kind {
            Kind::Tumble => "tumble(table, time_col, size)",
            Kind::Hop => "hop(table, time_col, slide, size)",
            Kind::Session => "session(table, time_col, key_col, gap)",
        };
        let want = if self.kind == Kind::Tumble { 3 } else { 4 };
        if exprs.len() != want {
            return plan_err!("{name} takes {want} arguments: {usage}");
        }
        let table_name = ident(&exprs[0])
            .ok_or_else(|| DataFusionError::Plan(format!("{usage}: table must be a name")))?;
        let table = Table::ALL
            .into_iter()
            .find(|t| t.name() == table_name)
            .ok_or_else(|| {
                DataFusionError::Plan(format!("{name}: no table named {table_name:?}"))
            })?;
        let base = self.tables.provider(table);
        let column = |e: &Expr, what: &str| -> Result<usize> {
            let c = ident(e).ok_or_else(|| {
                DataFusionError::Plan(format!("{usage}: {what} must be a column name"))
            })?;
            base.schema.index_of(&c).map_err(|_| {
                DataFusionError::Plan(format!("{name}: {table_name} has no column {c:?}"))
            })
        };
        let time = column(&exprs[1], "time_col")?;
        if !matches!(base.schema.field(time).data_type(), DataType::Timestamp(..)) {
            return plan_err!(
                "{name}: {table_name}.{} is not a timestamp",
                base.schema.field(time).name()
            );
        }
        let assign = match self.kind {
            Kind::Tumble => Assign::Tumble {
                size: span(&exprs[2], name)?,
            },
            Kind::Hop => {
                let (slide, size) = (span(&exprs[2], name)?, span(&exprs[3], name)?);
                if size % slide != 0 {
                    return plan_err!("hop: size must be a multiple of slide");
                }
                Assign::Hop { slide, size }
            }
            Kind::Session => Assign::Session {
                key: column(&exprs[2], "key_col")?,
                gap: span(&exprs[3], name)?,
            },
        };
        let mut fields: Vec<Field> = base
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for n in ["window_start", "window_end"] {
            if base.schema.index_of(n).is_ok() {
                return plan_err!("{name}: {table_name} already has a column {n}");
            }
            fields.push(Field::new(n, utc(), false));
        }
        Ok(Arc::new(Windowed {
            base,
            time,
            assign,
            schema: Arc::new(Schema::new(fields)),
        }))
    }
}

fn ident(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
        _ => None,
    }
}

/// A size argument in nanoseconds.
fn span(e: &Expr, name: &str) -> Result<i64> {
    let nanos = match e {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Some(i64::from(v.days) * 86_400_000_000_000 + v.nanoseconds)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(i64::from(v.days) * 86_400_000_000_000 + i64::from(v.milliseconds) * 1_000_000)
        }
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => crate::duration::parse(s).ok(),
        _ => None,
    };
    match nanos {
        Some(n) if n > 0 => Ok(n),
        _ => plan_err!(
            "{name}: a size is a positive interval of fixed length, such as INTERVAL '5 minutes' or '5m'"
        ),
    }
}

/// A table with windows assigned.
#[derive(Clone, Debug)]
struct Windowed {
    base: Arc<Frozen>,
    time: usize,
    assign: Assign,
    schema: SchemaRef,
}

impl Windowed {
    fn windows(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let t = times(batch, self.time)?;
        let (rows, start): (Vec<u32>, Vec<i64>) = match self.assign {
            Assign::Tumble { size } => (0..t.len() as u32)
                .map(|i| (i, floor(t.value(i as usize), size)))
                .unzip(),
            Assign::Hop { slide, size } => {
                let mut rows = Vec::with_capacity(t.len() * (size / slide) as usize);
                let mut start = Vec::with_capacity(rows.capacity());
                for i in 0..t.len() {
                    let v = t.value(i);
                    let mut s = floor(v, slide);
                    while s > v - size {
                        rows.push(i as u32);
                        start.push(s);
                        s -= slide;
                    }
                }
                (rows, start)
            }
            Assign::Session { .. } => unreachable!("sessions are assigned over the whole table"),
        };
        let size = match self.assign {
            Assign::Tumble { size } | Assign::Hop { size, .. } => size,
            Assign::Session { .. } => 0,
        };
        let end: Vec<i64> = start.iter().map(|s| s + size).collect();
        let taken = if matches!(self.assign, Assign::Tumble { .. }) {
            batch.clone()
        } else {
            take_record_batch(batch, &UInt32Array::from(rows))?
        };
        self.with_windows(taken, start, end)
    }

    fn sessions(&self, batches: &[RecordBatch]) -> Result<RecordBatch> {
        let Assign::Session { key, gap } = self.assign else {
            unreachable!("called for sessions")
        };
        let all = concat_batches(&self.base.schema, batches)?;
        let t = times(&all, self.time)?;
        let k = cast(all.column(key), &DataType::Utf8)?;
        let k = k
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let mut order: Vec<u32> = (0..all.num_rows() as u32)
            .filter(|i| !k.is_null(*i as usize))
            .collect();
        order.sort_by(|a, b| {
            let (a, b) = (*a as usize, *b as usize);
            k.value(a).cmp(k.value(b)).then(t.value(a).cmp(&t.value(b)))
        });
        let mut start = vec![0i64; order.len()];
        let mut end = vec![0i64; order.len()];
        let mut first = 0;
        for j in 0..=order.len() {
            let boundary = j == order.len() || {
                let (prev, cur) = (order[j.max(1) - 1] as usize, order[j] as usize);
                j == 0 || k.value(prev) != k.value(cur) || t.value(cur) - t.value(prev) > gap
            };
            if boundary && j > first {
                let s = t.value(order[first] as usize);
                let e = t.value(order[j - 1] as usize) + gap;
                start[first..j].fill(s);
                end[first..j].fill(e);
            }
            if boundary {
                first = j;
            }
        }
        let taken = take_record_batch(&all, &UInt32Array::from(order))?;
        self.with_windows(taken, start, end)
    }

    fn with_windows(
        &self,
        batch: RecordBatch,
        start: Vec<i64>,
        end: Vec<i64>,
    ) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        for v in [start, end] {
            cols.push(Arc::new(
                TimestampNanosecondArray::from(v).with_data_type(utc()),
            ));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

fn floor(v: i64, size: i64) -> i64 {
    v - v.rem_euclid(size)
}

fn times(batch: &RecordBatch, col: usize) -> Result<TimestampNanosecondArray> {
    let c = cast(
        batch.column(col),
        &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
    )?;
    let t = c
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .expect("cast to nanoseconds")
        .clone();
    if t.null_count() > 0 {
        // Rows without a time have no window.
        return Err(DataFusionError::Execution(
            "window functions need a time column without nulls".into(),
        ));
    }
    Ok(t)
}

#[async_trait]
impl TableProvider for Windowed {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let out = match self.assign {
            // A session depends on its neighbours: no row may be pruned.
            Assign::Session { .. } => {
                let all: Vec<RecordBatch> = self
                    .base
                    .pruned(&[])
                    .iter()
                    .map(|c| c.batch.clone())
                    .collect();
                if all.is_empty() {
                    Vec::new()
                } else {
                    vec![self.sessions(&all)?]
                }
            }
            // Tumbling and hopping windows are a function of each batch: assigned as
            // the scan reads it.
            _ => {
                let me = self.clone();
                let transform: Transform = Arc::new(move |b| me.windows(b));
                let time = self
                    .schema
                    .index_of(self.base.time_name())
                    .unwrap_or(usize::MAX);
                return Ok(Arc::new(ChunkScan::new(
                    self.base.pruned(filters),
                    Some((
                        format!("{:?} on column {}", self.assign, self.time),
                        transform,
                    )),
                    self.schema.clone(),
                    time,
                    projection,
                    state.config().target_partitions(),
                )?));
            }
        };
        memory_scan(out, &self.schema, projection, state)
    }
}
