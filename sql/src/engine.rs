//! Read-only queries over a snapshot of the retained tables.
//!
//! Every query gets its own DataFusion session: the snapshot's tables, the window table
//! functions, footfall's scalar functions and `clock()`. What a query may do is fixed
//! here, whatever its SQL says: DDL, DML (`INSERT`, `COPY`), statements (`SET`, ...)
//! are refused; no object store, file or URL is registered, so no file is ever read or
//! written; memory is capped by a pool and time by a timeout.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::collect;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use footfall_operators::time::Timestamp;

use crate::cache::{self, PartialCache};
use crate::live::LiveTables;
use crate::retained::Snapshot;
use crate::schema::Table;
use crate::udf;
use crate::window::{Kind, WindowFn};

/// Limits on one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Memory the query's operators may hold (sorts, joins, aggregates).
    pub memory_bytes: usize,
    /// Wall time from planning to the last row.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a query gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is wrong, or asks for what footfall never allows.
    #[error("{0}")]
    Refused(String),
    /// The query ran over its time limit.
    #[error("the query ran over its {0:?} limit and was cancelled")]
    Timeout(Duration),
    /// The query failed while running (memory limit included).
    #[error("{0}")]
    Failed(String),
}

impl QueryError {
    fn from_df(e: DataFusionError) -> Self {
        // Where DataFusion knows the place in the SQL, say it as its parser does.
        let at = e
            .diagnostic()
            .and_then(|d| d.span)
            .filter(|s| s.start.line > 0)
            .map(|s| format!(" at Line: {}, Column: {}", s.start.line, s.start.column));
        match (QueryError::classify(e), at) {
            (QueryError::Refused(m), Some(at)) if !m.contains("Line: ") => {
                QueryError::Refused(format!("{m}{at}"))
            }
            (q, _) => q,
        }
    }

    fn classify(e: DataFusionError) -> Self {
        // The pool's refusal may come wrapped (in an Arrow or shared error).
        if e.iter()
            .any(|x| matches!(x, DataFusionError::ResourcesExhausted(_)))
            || e.to_string().contains("Resources exhausted")
        {
            return QueryError::Failed(format!(
                "the query needs more memory than its limit: {}",
                e.strip_backtrace()
            ));
        }
        match e {
            DataFusionError::ResourcesExhausted(m) => {
                QueryError::Failed(format!("the query needs more memory than its limit: {m}"))
            }
            e @ (DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)) => QueryError::Refused(e.to_string()),
            DataFusionError::Diagnostic(_, inner) => QueryError::classify(*inner),
            DataFusionError::Context(c, inner) => match QueryError::classify(*inner) {
                QueryError::Refused(m) => QueryError::Refused(format!("{c}: {m}")),
                QueryError::Failed(m) => QueryError::Failed(format!("{c}: {m}")),
                t => t,
            },
            e => QueryError::Failed(e.to_string()),
        }
    }
}

/// What a query returned.
#[derive(Debug)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Answer {
    /// Rows in the answer.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Queries over one snapshot.
pub struct Engine {
    tables: Arc<Snapshot>,
    live: Option<LiveTables>,
    limits: Limits,
    clock: Option<Timestamp>,
    partitions: usize,
    cache: Option<(Arc<PartialCache>, String)>,
}

/// The only statements a query may be.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl Engine {
    /// Queries over `tables` within `limits`.
    pub fn new(tables: Snapshot, limits: Limits) -> Self {
        Engine {
            tables: Arc::new(tables),
            live: None,
            limits,
            clock: None,
            partitions: 2,
            cache: None,
        }
    }

    /// Runs queries in `n` partitions (default 2, one per core of a small box). Rules
    /// run in one: no repartitioning of their group keys, and a core left to the
    /// pipeline; an ad-hoc query uses both for its answer's latency.
    pub fn with_partitions(mut self, n: usize) -> Self {
        self.partitions = n.max(1);
        self
    }

    /// The live state tables (`customers`, `carts`, `lots`) hold `live`'s rows; without
    /// it they are empty.
    pub fn with_live(mut self, live: LiveTables) -> Self {
        self.live = Some(live);
        self
    }

    /// Aggregates keep their partial states per sealed batch in `cache`, under `space`
    /// (a rule's name): a rule that runs again aggregates only the batches new since.
    pub fn with_cache(mut self, cache: Arc<PartialCache>, space: &str) -> Self {
        self.cache = Some((cache, space.to_string()));
        self
    }

    /// `clock()` in queries returns `at` (the pipeline clock a rule runs at); without
    /// one it is the newest time in the tables.
    pub fn with_clock(mut self, at: Timestamp) -> Self {
        self.clock = Some(at);
        self
    }

    fn newest(&self) -> Timestamp {
        let max = self
            .tables
            .0
            .iter()
            .filter(|(t, _)| **t != Table::Actions)
            .flat_map(|(_, f)| f.chunks.iter().map(|c| c.max))
            .max()
            .unwrap_or(0);
        Timestamp::from_nanos(max)
    }

    /// A session with the tables and functions, and nothing else.
    pub fn context(&self) -> Result<SessionContext, QueryError> {
        let mut config = SessionConfig::new()
            .with_target_partitions(self.partitions)
            .with_information_schema(false);
        config.options_mut().sql_parser.collect_spans = true;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(QueryError::from_df)?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for t in Table::ALL {
            ctx.register_table(t.name(), self.tables.provider(t))
                .map_err(QueryError::from_df)?;
        }
        let live = match &self.live {
            Some(l) => l.providers(),
            None => LiveTables::empty().providers(),
        };
        for (name, t) in live {
            ctx.register_table(name, t).map_err(QueryError::from_df)?;
        }
        for f in udf::all() {
            ctx.register_udf(f);
        }
        let at = self.clock.unwrap_or_else(|| self.newest());
        ctx.register_udf(ScalarUDF::from(Clock::new(at)));
        for k in [Kind::Tumble, Kind::Hop, Kind::Session] {
            ctx.register_udtf(k.name(), Arc::new(WindowFn::new(k, self.tables.clone())));
        }
        Ok(ctx)
    }

    /// Plans `sql` without running it: the check `footfall rules validate` makes.
    pub async fn plan(&self, sql: &str) -> Result<LogicalPlan, QueryError> {
        let ctx = self.context()?;
        let df = ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(QueryError::from_df)?;
        let plan = df.logical_plan().clone();
        ctx.state()
            .create_physical_plan(&plan)
            .await
            .map_err(QueryError::from_df)?;
        Ok(plan)
    }

    /// Runs `sql`.
    pub async fn query(&self, sql: &str) -> Result<Answer, QueryError> {
        let limit = self.limits.timeout;
        let run = async {
            let ctx = self.context()?;
            let df = ctx
                .sql_with_options(sql, read_only())
                .await
                .map_err(QueryError::from_df)?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = match &self.cache {
                None => df.collect().await,
                Some((cache, space)) => {
                    let task = Arc::new(df.task_ctx());
                    match df.create_physical_plan().await {
                        Ok(plan) => match cache::rewrite(plan, cache, space) {
                            Ok(plan) => collect(plan, task).await,
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
            }
            .map_err(QueryError::from_df)?;
            Ok(Answer { schema, batches })
        };
        let answer = tokio::time::timeout(limit, run)
            .await
            .map_err(|_| QueryError::Timeout(limit));
        if let Some((cache, space)) = &self.cache {
            cache.finish(space);
        }
        answer?
    }
}

/// `clock()`: the instant a query runs at, in event time. Immutable within a query, so
/// filters on it fold to constants and prune batches.
#[derive(Debug)]
struct Clock {
    signature: Signature,
    at: i64,
}

impl Clock {
    fn new(at: Timestamp) -> Self {
        Clock {
            signature: Signature::nullary(Volatility::Immutable),
            at: at.as_nanos(),
        }
    }
}

impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Clock {}

impl Hash for Clock {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.at.hash(state);
    }
}

impl ScalarUDFImpl for Clock {
    fn name(&self) -> &str {
        "clock"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Nanosecond,
            Some("UTC".into()),
        ))
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
            Some(self.at),
            Some("UTC".into()),
        )))
    }
}
