//! The scan of retained batches: which batch each row comes from.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream, StatisticsArgs,
};
use futures_util::{StreamExt, stream};

use crate::retained::Chunk;

/// Turns a sealed batch into the rows a scan yields (a window function's rows).
pub type Transform = Arc<dyn Fn(&RecordBatch) -> Result<RecordBatch> + Send + Sync>;

/// A scan of sealed batches: each partition reads the batches `i` with
/// `i % partitions == partition`, transformed (for window functions) and projected.
pub struct ChunkScan {
    pub(super) chunks: Vec<Arc<Chunk>>,
    /// What the transform does, as part of a cache key, and the transform.
    pub(super) transform: Option<(String, Transform)>,
    /// The rows' schema before projection.
    pub(super) schema: SchemaRef,
    /// The table's time column in `schema`.
    pub(super) time_col: usize,
    pub(super) projection: Option<Vec<usize>>,
    pub(super) partitions: usize,
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
    pub(super) fn only(&self, chunk: &Arc<Chunk>) -> Result<Self> {
        ChunkScan::new(
            vec![chunk.clone()],
            self.transform.clone(),
            self.schema.clone(),
            self.time_col,
            self.projection.as_ref(),
            1,
        )
    }

    /// The scan's own part of a cache key: its transform and projection.
    pub(super) fn describe(&self) -> String {
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
pub(super) fn read(
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

    leaf_plan!();

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
