//! The Fluvio client behind [`Transport`]: connecting, creating or checking topics, one
//! consumer stream per partition, committed offsets, producers and the partitions' ends
//! (for the consumer lag).
//!
//! Offsets: footfall's checkpoint is where a restart resumes (each input partition's
//! next offset is in it), so a stream opens at an absolute offset. The offsets it
//! commits under `transport.consumer_name` (with `-w<index>` when several processes
//! share the pipeline: each reads every partition) are for the cluster's own tools
//! (`fluvio consumer list`): they are committed only once the checkpoint that covers
//! them is written ([`CommitGate`](super::CommitGate)), and never ahead of it. The
//! client commits "the last record a stream delivered"; so to commit offset `n` a
//! short-lived stream of the same consumer name delivers record `n - 1`, commits and
//! flushes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::fluvio::config::{TlsConfig, TlsPaths, TlsPolicy};
use ::fluvio::consumer::{
    ConsumerConfigExtBuilder, ConsumerStream, OffsetManagementStrategy, Record,
};
use ::fluvio::dataplane::link::ErrorCode;
use ::fluvio::metadata::partition::PartitionSpec;
use ::fluvio::metadata::topic::TopicSpec;
use ::fluvio::{
    Fluvio, FluvioClusterConfig, Offset, TopicProducerConfigBuilder, TopicProducerPool,
};
use futures_util::StreamExt;
use tracing::info;

use super::{PartitionStream, Transport, TransportError};
use crate::config::{FluvioTls, TransportConfig};

type Inner = Pin<Box<dyn ConsumerStream<Item = Result<Record, ErrorCode>> + Send>>;

fn err(what: impl std::fmt::Display) -> impl FnOnce(anyhow::Error) -> TransportError {
    move |e| TransportError(format!("{what}: {e:#}"))
}

/// Why TLS to Fluvio is refused in a build without it.
pub const NO_TLS: &str = "transport.fluvio_tls: this footfall was built without TLS for \
     Fluvio; build it with `cargo build --release --features footfall-pipeline/fluvio-tls`, \
     or use fluvio_tls = \"disabled\"";

/// How long a partition's end, read from the cluster, stays good for the lag.
const ENDS_FRESH: Duration = Duration::from_secs(1);

/// A connection to a Fluvio cluster.
pub struct Cluster {
    fluvio: Fluvio,
    endpoint: String,
    consumer: String,
    max_bytes: i32,
    batch_bytes: usize,
    linger: Duration,
    ends: tokio::sync::Mutex<HashMap<(String, u32), (Instant, u64)>>,
    /// Offsets committed so far, per (topic, partition): never committed twice.
    committed: Mutex<HashMap<(String, u32), u64>>,
}

impl Cluster {
    /// Connects to `t.fluvio_endpoint`, plaintext or TLS as `t` says.
    pub async fn connect(t: &TransportConfig) -> Result<Arc<Cluster>, TransportError> {
        if t.fluvio_tls != FluvioTls::Disabled && !cfg!(feature = "fluvio-tls") {
            return Err(TransportError(NO_TLS.into()));
        }
        let tls = match t.fluvio_tls {
            FluvioTls::Disabled => TlsPolicy::Disabled,
            FluvioTls::Anonymous => TlsPolicy::Anonymous,
            FluvioTls::Verified => {
                let file = |p: &Option<std::path::PathBuf>, key: &str| {
                    p.clone().ok_or_else(|| {
                        TransportError(format!(
                            "transport.fluvio_tls = \"verified\" needs transport.{key}"
                        ))
                    })
                };
                TlsPolicy::Verified(TlsConfig::Files(TlsPaths {
                    domain: t
                        .fluvio_tls_domain
                        .clone()
                        .unwrap_or_else(|| host(&t.fluvio_endpoint).to_owned()),
                    key: file(&t.fluvio_tls_key, "fluvio_tls_key")?,
                    cert: file(&t.fluvio_tls_cert, "fluvio_tls_cert")?,
                    ca_cert: file(&t.fluvio_tls_ca_cert, "fluvio_tls_ca_cert")?,
                }))
            }
        };
        let config = FluvioClusterConfig::new(t.fluvio_endpoint.clone()).with_tls(tls);
        let connecting = Fluvio::connect_with_config(&config);
        let fluvio = match tokio::time::timeout(Duration::from_secs(30), connecting).await {
            Ok(r) => r.map_err(err(format!(
                "cannot connect to the Fluvio cluster at {}",
                t.fluvio_endpoint
            )))?,
            Err(_) => {
                return Err(TransportError(format!(
                    "cannot connect to the Fluvio cluster at {}: no answer within 30 s",
                    t.fluvio_endpoint
                )));
            }
        };
        info!(endpoint = %t.fluvio_endpoint, "connected to Fluvio");
        Ok(Arc::new(Cluster {
            fluvio,
            endpoint: t.fluvio_endpoint.clone(),
            // Each process of a shared pipeline reads every partition on its own.
            consumer: match t.worker_count > 1 {
                true => format!("{}-w{}", t.consumer_name, t.worker_index),
                false => t.consumer_name.clone(),
            },
            max_bytes: t.fluvio_max_fetch_bytes.min(i32::MAX as u64) as i32,
            batch_bytes: t.fluvio_batch_bytes as usize,
            linger: Duration::from_millis(t.fluvio_linger_ms),
            ends: tokio::sync::Mutex::new(HashMap::new()),
            committed: Mutex::new(HashMap::new()),
        }))
    }

    /// The endpoint connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The partition count of every topic on the cluster.
    pub async fn topics(&self) -> Result<HashMap<String, u32>, TransportError> {
        let admin = self.fluvio.admin().await;
        let topics = admin
            .all::<TopicSpec>()
            .await
            .map_err(err("listing Fluvio topics"))?;
        Ok(topics
            .into_iter()
            .map(|t| (t.name, t.spec.partitions()))
            .collect())
    }

    /// `topic`'s partition count, if it exists.
    pub async fn partitions(&self, topic: &str) -> Result<Option<u32>, TransportError> {
        Ok(self.topics().await?.get(topic).copied())
    }

    /// Creates those of `names` that are missing, with `partitions` partitions and
    /// `replication` replicas, and waits until each has its partitions. Returns every
    /// topic's partition count (an existing topic keeps its own).
    pub async fn ensure_topics(
        &self,
        names: &[&str],
        partitions: u32,
        replication: u32,
    ) -> Result<HashMap<String, u32>, TransportError> {
        let existing = self.topics().await?;
        let admin = self.fluvio.admin().await;
        for name in names.iter().filter(|n| !existing.contains_key(**n)) {
            let spec = TopicSpec::new_computed(partitions, replication, None);
            match admin.create(name.to_string(), false, spec).await {
                Ok(()) => info!(
                    topic = name,
                    partitions, replication, "created Fluvio topic"
                ),
                // Another worker created it meanwhile.
                Err(e) if format!("{e:#}").contains("already exists") => {}
                Err(e) => {
                    return Err(TransportError(format!(
                        "creating Fluvio topic `{name}` ({partitions} partitions, replication {replication}): {e:#}"
                    )));
                }
            }
        }
        // A new topic's partitions take a moment to get a leader.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.ready_partitions().await?;
            let topics = self.topics().await?;
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| {
                    let want = topics.get(*n).copied().unwrap_or(u32::MAX);
                    (0..want.min(1 << 16)).any(|p| !ready.contains(&(n.to_string(), p)))
                        || want == u32::MAX
                })
                .collect();
            if missing.is_empty() {
                return Ok(topics);
            }
            if Instant::now() > deadline {
                return Err(TransportError(format!(
                    "Fluvio topics without ready partitions after 30 s: {}",
                    missing.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The offsets committed under this pipeline's consumer name: each partition's next
    /// offset to read.
    pub async fn committed(&self) -> Result<HashMap<(String, u32), u64>, TransportError> {
        let all = self
            .fluvio
            .consumer_offsets()
            .await
            .map_err(err("listing Fluvio consumer offsets"))?;
        Ok(all
            .into_iter()
            .filter(|o| o.consumer_id == self.consumer && o.offset >= 0)
            .map(|o| ((o.topic, o.partition), o.offset as u64 + 1))
            .collect())
    }

    /// Deletes `topic` (and its records), if it exists.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), TransportError> {
        if self.partitions(topic).await?.is_none() {
            return Ok(());
        }
        let admin = self.fluvio.admin().await;
        admin
            .delete::<TopicSpec>(topic.to_owned())
            .await
            .map_err(err(format!("deleting Fluvio topic `{topic}`")))?;
        // Deletion is asynchronous on the cluster: the topic, then its partitions go.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.partitions(topic).await?.is_some() || self.has_partitions(topic).await? {
            if Instant::now() > deadline {
                return Err(TransportError(format!(
                    "Fluvio topic `{topic}` still exists 30 s after deleting it"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Whether any partition object of `topic` is left.
    async fn has_partitions(&self, topic: &str) -> Result<bool, TransportError> {
        let admin = self.fluvio.admin().await;
        let parts = admin
            .all::<PartitionSpec>()
            .await
            .map_err(err("listing Fluvio partitions"))?;
        Ok(parts
            .iter()
            .any(|p| p.name.rsplit_once('-').is_some_and(|(t, _)| t == topic)))
    }

    /// Every partition with a leader.
    async fn ready_partitions(
        &self,
    ) -> Result<std::collections::HashSet<(String, u32)>, TransportError> {
        let admin = self.fluvio.admin().await;
        let parts = admin
            .all::<PartitionSpec>()
            .await
            .map_err(err("listing Fluvio partitions"))?;
        let mut out = std::collections::HashSet::new();
        for p in parts {
            // Partition objects are named `<topic>-<partition>`.
            let Some((topic, index)) = p.name.rsplit_once('-') else {
                continue;
            };
            let Ok(index) = index.parse::<u32>() else {
                continue;
            };
            if p.spec.leader < 0 {
                continue;
            }
            out.insert((topic.to_owned(), index));
        }
        Ok(out)
    }

    /// Where `topic`/`partition` ends, as found at most [`ENDS_FRESH`] ago: for the
    /// consumer lag.
    pub async fn end(&self, topic: &str, partition: u32) -> Result<u64, TransportError> {
        let key = (topic.to_owned(), partition);
        let mut ends = self.ends.lock().await;
        if let Some((at, end)) = ends.get(&key)
            && at.elapsed() < ENDS_FRESH
        {
            return Ok(*end);
        }
        let end = self.end_now(topic, partition).await?;
        ends.insert(key, (Instant::now(), end));
        Ok(end)
    }

    /// Where `topic`/`partition` ends now: the offset after its last record. (The
    /// cluster's partition status lags behind the partition; the partition's leader
    /// does not: its last record says.)
    pub async fn end_now(&self, topic: &str, partition: u32) -> Result<u64, TransportError> {
        let mut s = self
            .stream(topic, partition, Offset::from_end(1), false, false)
            .await?;
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Some(Ok(r))) => Ok(r.offset() as u64 + 1),
            Ok(None) => Ok(0),
            Ok(Some(Err(e))) => Err(TransportError(format!(
                "reading where {topic}/{partition} ends: {e:?}"
            ))),
            Err(_) => Err(TransportError(format!(
                "reading where {topic}/{partition} ends: no answer within 10 s"
            ))),
        }
    }

    /// A producer that writes every record to `topic`/`partition`.
    pub async fn producer(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<TopicProducerPool, TransportError> {
        let config = TopicProducerConfigBuilder::default()
            .batch_size(self.batch_bytes)
            .linger(self.linger)
            .set_specific_partitioner(partition)
            .build()
            .map_err(|e| TransportError(format!("producer settings: {e}")))?;
        self.fluvio
            .topic_producer_with_config(topic, config)
            .await
            .map_err(err(format!(
                "opening a producer for Fluvio topic `{topic}`"
            )))
    }

    /// A stream of `topic`/`partition` from `offset`; `consumer` names it for commits.
    async fn stream(
        &self,
        topic: &str,
        partition: u32,
        start: Offset,
        consumer: bool,
        continuous: bool,
    ) -> Result<Inner, TransportError> {
        let offset = format!("{start:?}");
        let mut b = ConsumerConfigExtBuilder::default();
        b.topic(topic.to_owned())
            .partition(partition)
            .offset_start(start)
            .max_bytes(self.max_bytes)
            .disable_continuous(!continuous);
        if consumer {
            b.offset_consumer(self.consumer.clone())
                .offset_strategy(OffsetManagementStrategy::Manual);
        }
        let config = b
            .build()
            .map_err(|e| TransportError(format!("consumer settings: {e}")))?;
        let s = self
            .fluvio
            .consumer_with_config(config)
            .await
            .map_err(err(format!(
                "opening Fluvio topic `{topic}` partition {partition} at {offset}"
            )))?;
        Ok(Box::pin(s))
    }
}

impl Transport for Arc<Cluster> {
    type Stream = Stream;

    async fn open(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        finite: bool,
    ) -> Result<Stream, TransportError> {
        let start = absolute(offset)?;
        Ok(Stream(
            self.stream(topic, partition, start, false, !finite).await?,
        ))
    }

    async fn commit(&self, topic: &str, partition: u32, next: u64) -> Result<(), TransportError> {
        let key = (topic.to_owned(), partition);
        let done = self
            .committed
            .lock()
            .map(|c| c.get(&key).copied())
            .unwrap_or(None);
        if next == 0 || done.is_some_and(|d| d >= next) {
            return Ok(());
        }
        let mut s = self
            .stream(topic, partition, absolute(next - 1)?, true, false)
            .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
                Ok(Some(Ok(r))) if r.offset() as u64 + 1 >= next => break,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(TransportError(format!("{e:?}"))),
                Ok(None) | Err(_) => {
                    return Err(TransportError(format!(
                        "committing {topic}/{partition} at {next}: record {} not delivered",
                        next - 1
                    )));
                }
            }
        }
        s.offset_commit()
            .await
            .map_err(|e| TransportError(format!("committing {topic}/{partition}: {e:?}")))?;
        s.offset_flush().await.map_err(|e| {
            TransportError(format!("flushing the commit of {topic}/{partition}: {e:?}"))
        })?;
        if let Ok(mut c) = self.committed.lock() {
            c.insert(key, next);
        }
        Ok(())
    }
}

/// One partition's records as the client delivers them.
pub struct Stream(Inner);

impl PartitionStream for Stream {
    async fn next(&mut self) -> Option<Result<(u64, Vec<u8>), TransportError>> {
        let r = self.0.next().await?;
        Some(
            r.map(|r| (r.offset() as u64, r.value().to_vec()))
                .map_err(|e| TransportError(format!("{e:?}"))),
        )
    }
}

fn absolute(offset: u64) -> Result<Offset, TransportError> {
    Offset::absolute(offset as i64).map_err(|e| TransportError(format!("offset {offset}: {e}")))
}

/// The host part of `host:port`.
fn host(endpoint: &str) -> &str {
    endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h)
}
