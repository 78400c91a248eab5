//! The pieces of the Fluvio transport that do not depend on the client: which
//! partitions a worker reads, reading a partition without ever skipping an offset, and
//! committing offsets only once a checkpoint covers them.
//!
//! The client plugs in through [`Transport`] and [`PartitionStream`]: one stream per
//! partition (`consumer_with_config` with an `offset_consumer` name and
//! `OffsetManagementStrategy::Manual` in the `fluvio` crate), whose `offset_commit` and
//! `offset_flush` are [`PartitionStream::commit`] and [`PartitionStream::flush`]. The
//! runtime does not use these yet: `transport.kind = "fluvio"` is refused until the
//! client is wired in.

mod assign;
mod commit;
mod contiguous;

pub use assign::Assignment;
pub use commit::CommitGate;
pub use contiguous::{Contiguous, PartitionStream, Transport, TransportError};
