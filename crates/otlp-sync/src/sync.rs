//! The synchronisation primitives the crate's own atomic protocols use: `std` ones normally, `loom` ones under
//! `--cfg otlp_loom` (a cfg name of our own, so that a user's `--cfg loom` does not switch our internals).

#[cfg(not(otlp_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(otlp_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many threads get a block of their own in each owner; threads with a higher index (or exiting ones) share
/// one block updated with atomic adds. 64 slots of 16 bytes (1 KiB) per owner; blocks are created on a thread's first
/// use.
#[cfg(not(otlp_loom))]
pub(crate) const OWN_BLOCKS: usize = 64;

/// One `T` per thread (for the first [`OWN_BLOCKS`] thread indices), each written only by its thread (or by a later
/// thread that reuses a dead thread's index, after that thread is gone: see `thread_index.rs`), read by anyone.
#[cfg(not(otlp_loom))]
pub(crate) struct PerThread<T> {
    /// Inline in the owner (which lives in an `Arc`): one load less than a boxed slice on every bump.
    slots: [std::sync::OnceLock<Box<T>>; OWN_BLOCKS],
    init: fn() -> T,
}

#[cfg(not(otlp_loom))]
impl<T> PerThread<T> {
    pub(crate) fn new(init: fn() -> T) -> Self {
        PerThread {
            slots: std::array::from_fn(|_| std::sync::OnceLock::new()),
            init,
        }
    }

    /// This thread's `T`, created on the thread's first call (the only allocation, once per thread and owner);
    /// `None` for a thread without a block of its own.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        match self
            .slots
            .get(crate::thread_index::current())
            .and_then(|s| s.get())
        {
            Some(t) => Some(t),
            None => self.create(),
        }
    }

    /// The first call on a thread: out of line, so that the hot path keeps a small stack frame.
    #[cold]
    #[inline(never)]
    fn create(&self) -> Option<&T> {
        let slot = self.slots.get(crate::thread_index::current_or_assign())?;
        Some(slot.get_or_init(|| Box::new((self.init)())))
    }

    /// Every thread's `T` created so far.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&T)) {
        self.slots.iter().filter_map(|s| s.get()).for_each(|t| f(t));
    }
}

/// Under loom: one `T` per loom thread, indexed by the thread's index in the execution (deterministic, unlike
/// `ThreadId`'s `Hash`, which includes a per-execution id), created up front.
#[cfg(otlp_loom)]
pub(crate) struct PerThread<T> {
    slots: Vec<T>,
}

#[cfg(otlp_loom)]
impl<T> PerThread<T> {
    /// Loom runs at most this many threads in a model (its default `MAX_THREADS`).
    const MAX_THREADS: usize = 5;

    pub(crate) fn new(init: fn() -> T) -> Self {
        PerThread {
            slots: (0..Self::MAX_THREADS).map(|_| init()).collect(),
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        let id = format!("{:?}", loom::thread::current().id());
        let index = id
            .chars()
            .filter_map(|c| c.to_digit(10))
            .fold(0usize, |acc, d| acc * 10 + d as usize);
        self.slots.get(index % Self::MAX_THREADS)
    }

    pub(crate) fn for_each(&self, f: impl FnMut(&T)) {
        self.slots.iter().for_each(f);
    }
}
