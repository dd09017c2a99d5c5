//! The synchronisation primitives of our own protocols (the queue's close/drain state, the outcome counters, a
//! task's link to its handle): `std` ones normally, `loom` ones under `--cfg otlp_loom` so that `tests/loom.rs`
//! can explore their interleavings.
//!
//! The cfg name is our own so that a user's `--cfg loom` does not switch our internals (nor tokio's under ours).

#[cfg(otlp_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(otlp_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(otlp_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(otlp_loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Locks `m`, recovering the guard if a panic poisoned it: our state stays consistent across a panic because
/// every critical section is a handful of infallible field updates.
pub(crate) fn lock<T>(m: &Mutex<T>) -> crate::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(otlp_loom)]
pub(crate) use loom::sync::MutexGuard;
#[cfg(not(otlp_loom))]
pub(crate) use std::sync::MutexGuard;
