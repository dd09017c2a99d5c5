//! The synchronisation primitives the crate's own atomic protocols use: `std` ones normally, `loom` ones under
//! `--cfg otlp_loom` (a cfg name of our own, so that a user's `--cfg loom` does not switch our internals).

#[cfg(not(otlp_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(otlp_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Runs `f` with this thread's shard slot (`usize::MAX` until the thread first takes a shard).
#[cfg(not(otlp_loom))]
#[inline]
pub(crate) fn with_shard_slot<R>(f: impl FnOnce(&std::cell::Cell<usize>) -> R) -> R {
    std::thread_local! {
        static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    SLOT.with(f)
}

/// Runs `f` with this (loom) thread's shard slot (`usize::MAX` until the thread first takes a shard).
#[cfg(otlp_loom)]
#[inline]
pub(crate) fn with_shard_slot<R>(f: impl FnOnce(&std::cell::Cell<usize>) -> R) -> R {
    loom::thread_local! {
        static SLOT: std::cell::Cell<usize> = std::cell::Cell::new(usize::MAX);
    }
    SLOT.with(f)
}
