//! One place that picks the synchronisation primitives: `std` normally, `loom` under `--cfg otlp_loom` (a cfg name
//! of our own, so that a user's `--cfg loom` does not switch our internals). The same code runs in both builds;
//! `tests/loom.rs` explores its interleavings.

#[cfg(otlp_loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicU64, Ordering},
};
#[cfg(not(otlp_loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicU64, Ordering},
};

/// Locks `m`, recovering from poisoning: every critical section of this crate leaves its data consistent at each
/// point a panic could unwind from.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
