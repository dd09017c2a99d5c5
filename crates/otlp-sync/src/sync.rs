//! The synchronisation primitives the crate's own atomic protocols use: `std` ones normally, `loom` ones under
//! `--cfg otlp_loom` (a cfg name of our own, so that a user's `--cfg loom` does not switch our internals).

#[cfg(not(otlp_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(otlp_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Hands out shard slots to threads round-robin. Any value is correct; it only spreads the load.
#[cfg(not(otlp_loom))]
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// This thread's shard slot: assigned round-robin on first use, then remembered in a thread-local.
#[cfg(not(otlp_loom))]
#[inline]
pub(crate) fn shard_slot() -> usize {
    std::thread_local! {
        static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    SLOT.with(|slot| {
        let s = slot.get();
        if s != usize::MAX {
            s
        } else {
            let s = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            slot.set(s);
            s
        }
    })
}

/// This loom thread's shard slot: its index within the execution (`ThreadId`'s `Debug` form, `ThreadId(n)`), so
/// that every execution of a model is deterministic. (`ThreadId`'s `Hash` includes a per-execution id, and a
/// process-wide counter would differ between executions: either breaks loom's replay.)
#[cfg(otlp_loom)]
pub(crate) fn shard_slot() -> usize {
    let id = format!("{:?}", loom::thread::current().id());
    id.chars()
        .filter_map(|c| c.to_digit(10))
        .fold(0usize, |acc, d| acc * 10 + d as usize)
}
