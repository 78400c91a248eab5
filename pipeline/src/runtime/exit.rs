//! A process that exits after its run does not free its state at the clean stop.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when a run whose process exits after it ([`super::RunOptions::exiting`]) begins
/// its clean stop: state dropped from then on is left to the system (see [`release`]).
static EXITING: AtomicBool = AtomicBool::new(false);

/// Marks whether the process is on its way out (at a run's clean stop).
pub(super) fn set(exiting: bool) {
    EXITING.store(exiting, Ordering::Relaxed);
}

/// Frees `state`, or, once the process is on its way out, leaves it to the system, which
/// takes the memory back whole at exit. Freeing a large state allocation by allocation
/// holds up the stop: on `footfall bench`, the final checkpoint's copy of the policies'
/// state, the workers' state and the identity graph take a tenth of a second to free.
/// Only state goes here: writers and sinks are dropped, so that their files are synced.
pub(crate) fn release<T>(state: T) {
    if EXITING.load(Ordering::Relaxed) {
        std::mem::forget(state);
    } else {
        drop(state);
    }
}
