//! One place that picks the synchronisation primitives: `std` normally, `loom` under `cfg(otlp_loom)`.
//!
//! The same code runs in both builds: the loom models in `tests/loom.rs` explore the interleavings of the shared
//! store and budget, the per-thread caches (found through `otlp_core::thread_index`, whose thread-locals are
//! `loom::thread_local!`s in loom builds) and the hand-back of a cache when its thread exits.

#[cfg(otlp_loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicUsize, Ordering},
};
#[cfg(not(otlp_loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicUsize, Ordering},
};

/// Marks state that one thread at a time may use (a per-thread cache): loom builds check, at every use, that the
/// previous use by another thread happens before it (a `loom::cell::UnsafeCell` access); other builds compile it to
/// nothing.
#[derive(Debug)]
pub(crate) struct OneThreadAtATime {
    #[cfg(otlp_loom)]
    cell: loom::cell::UnsafeCell<()>,
}

impl OneThreadAtATime {
    pub(crate) fn new() -> Self {
        OneThreadAtATime {
            #[cfg(otlp_loom)]
            cell: loom::cell::UnsafeCell::new(()),
        }
    }

    /// Records a use by the current thread (loom panics if it races with another thread's).
    #[inline(always)]
    pub(crate) fn enter(&self) {
        #[cfg(otlp_loom)]
        self.cell.with_mut(|_| ());
    }
}

/// Locks `m`, recovering from poisoning: our critical sections only move boxes between vectors, so a panic in
/// another thread cannot leave the protected data half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
