//! Checkpoints: a consistent snapshot of the whole pipeline at one point of its input.
//!
//! The sequencer is the one place every input record passes in order, so a checkpoint
//! is taken there, between two source messages, as an aligned barrier: the sequencer
//! records its own state (per input partition the next offset to read, its watermark,
//! the `message_id` dedupe window and the offsets of events it still holds; the
//! identity links; the clock) and the output topics' end offsets, then sends a barrier
//! to every partition worker behind all the work before it. Each worker writes out the
//! actions it holds and answers with its state (operator state per key, timers, clock).
//! Nothing after the barrier is in any of it.
//!
//! Storage: one Arrow IPC file per component (`sequencer.arrow`, `worker-N.arrow`) with
//! one schema, `(section, key, value)`, written through `object_store`, then
//! `manifest.json` last: a checkpoint without its manifest, or whose files do not match
//! it, is never loaded, and the next older complete one is used instead.

mod files;
mod format;
mod reshard;
mod store;

pub use format::{CheckpointData, SectionSize, SequencerState, SourceState, section_sizes};
pub use reshard::{Resharded, reshard};
pub use store::{CheckpointError, CheckpointInfo, Found, Manifest, Store, Written};
