//! One place that picks the synchronisation primitives: `std` normally, `loom` under `cfg(otlp_loom)`.
//!
//! The loom models in `tests/loom.rs` then explore every interleaving of the shared (cross-thread) protocol.
//! The per-thread cache is not part of that protocol (it is only ever touched by its own thread), so loom builds
//! compile it out; see `local.rs`.

#[cfg(otlp_loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicUsize, Ordering},
};
#[cfg(not(otlp_loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicUsize, Ordering},
};

/// Locks `m`, recovering from poisoning: our critical sections only move boxes between vectors, so a panic in
/// another thread cannot leave the protected data half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
