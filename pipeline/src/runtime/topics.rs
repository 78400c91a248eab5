//! Where the topics live: the embedded log, or a Fluvio cluster. The runtime reads and
//! writes through these, whichever it is.

use std::sync::Arc;

use crate::fluvio::Cluster;
use crate::fluvio::io::{FluvioReader, read_to_end};
use crate::log::{Batch, EndTracker, Log, LogError, PartitionReader};

/// The transport of one run.
#[derive(Clone)]
pub enum Topics {
    /// The embedded log.
    Log(Log),
    /// A Fluvio cluster.
    Fluvio(Arc<Cluster>),
}

impl Topics {
    /// The partition count of `topic`, if it exists.
    pub async fn partitions(&self, topic: &str) -> Result<Option<u32>, LogError> {
        match self {
            Topics::Log(log) => log.partitions(topic),
            Topics::Fluvio(c) => Ok(c.partitions(topic).await?),
        }
    }

    /// Creates those of `names` that are missing with `partitions` partitions.
    pub async fn create(
        &self,
        names: &[&str],
        partitions: u32,
        replication: u32,
    ) -> Result<(), LogError> {
        match self {
            Topics::Log(log) => {
                for t in names {
                    log.create_topic(t, partitions)?;
                }
            }
            Topics::Fluvio(c) => {
                c.ensure_topics(names, partitions, replication).await?;
            }
        }
        Ok(())
    }

    /// A reader of `topic`/`partition` from `offset`; `finite` (replay): it reports the
    /// end of the partition rather than waiting there.
    pub fn reader(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        finite: bool,
    ) -> Result<Reader, LogError> {
        Ok(match self {
            Topics::Log(log) => Reader::Log(log.reader(topic, partition, offset)?),
            Topics::Fluvio(c) => Reader::Fluvio(FluvioReader::new(
                c.clone(),
                topic,
                partition,
                offset,
                finite,
            )),
        })
    }

    /// Follows where `topic`/`partition` ends, for the consumer lag.
    pub fn end(&self, topic: &str, partition: u32) -> End {
        match self {
            Topics::Log(log) => End::Log(EndTracker::new(log, topic, partition)),
            Topics::Fluvio(c) => End::Fluvio(c.clone(), topic.to_owned(), partition),
        }
    }

    /// About how many records `topic`/`partition` holds: a size hint (0: unknown).
    pub fn records_hint(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        match self {
            // Records are a few hundred bytes.
            Topics::Log(log) => Ok(log.stored_bytes(topic, partition)? / 256),
            // Not worth a round trip per partition at start.
            Topics::Fluvio(_) => Ok(0),
        }
    }

    /// Calls `each` with every record of `topic`/`partition` from `from` to its end, or
    /// until it returns false.
    pub async fn read_to_end(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        mut each: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), LogError> {
        match self {
            Topics::Log(log) => {
                let mut reader = log.reader(topic, partition, from)?;
                let mut batch = Batch::default();
                while reader.poll(&mut batch, 4096, 8 << 20)? > 0 {
                    for (offset, b) in batch.iter() {
                        if !each(offset, b) {
                            return Ok(());
                        }
                    }
                }
            }
            Topics::Fluvio(c) => read_to_end(c, topic, partition, from, each).await,
        }
        Ok(())
    }
}

/// Reads one partition forward.
pub enum Reader {
    /// From the embedded log.
    Log(PartitionReader),
    /// From Fluvio.
    Fluvio(FluvioReader),
}

impl Reader {
    /// The offset of the next record.
    pub fn position(&self) -> u64 {
        match self {
            Reader::Log(r) => r.position(),
            Reader::Fluvio(r) => r.position(),
        }
    }

    /// The next records into `batch`; 0: none now.
    pub async fn poll(
        &mut self,
        batch: &mut Batch,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<usize, LogError> {
        match self {
            Reader::Log(r) => r.poll(batch, max_records, max_bytes),
            Reader::Fluvio(r) => Ok(r.poll(batch, max_records, max_bytes).await),
        }
    }
}

/// Where a partition ends.
pub enum End {
    /// An embedded log partition's end, followed incrementally.
    Log(EndTracker),
    /// A Fluvio partition's high watermark.
    Fluvio(Arc<Cluster>, String, u32),
}

impl End {
    /// The offset after the partition's last record.
    pub async fn end(&mut self) -> Result<u64, LogError> {
        match self {
            End::Log(t) => t.end(),
            End::Fluvio(c, topic, p) => Ok(c.end(topic, *p).await?),
        }
    }
}
