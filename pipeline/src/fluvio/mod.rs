//! The Fluvio transport: footfall's topics on a Fluvio cluster (`transport.kind =
//! "fluvio"`).
//!
//! - [`client`]: connecting (plaintext or rustls on ring), creating or checking topics,
//!   partition streams, producers, committed offsets, the partitions' ends.
//! - [`Contiguous`]: reading a partition without ever skipping or repeating an offset
//!   (the published client can skip a batch: see `contiguous`).
//! - [`io`]: the runtime's sources and sinks on top.
//! - [`CommitGate`]: offsets committed only once a checkpoint covers them.

pub mod client;
mod commit;
mod contiguous;
pub mod io;

pub use client::Cluster;
pub use commit::CommitGate;
pub use contiguous::{Contiguous, PartitionStream, Transport, TransportError};
