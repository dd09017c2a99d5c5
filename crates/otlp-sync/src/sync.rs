//! The synchronisation primitives the crate's own atomic protocols use: `std` ones normally, `loom` ones under
//! `--cfg otlp_loom` (a cfg name of our own, so that a user's `--cfg loom` does not switch our internals).

#[cfg(not(otlp_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(otlp_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One `T` per thread, each written only by its thread (or by a later thread that reuses a dead thread's id, after
/// that thread is gone), read by anyone: [`thread_local::ThreadLocal`] normally.
#[cfg(not(otlp_loom))]
pub(crate) struct PerThread<T: Send> {
    slots: thread_local::ThreadLocal<T>,
    init: fn() -> T,
}

#[cfg(not(otlp_loom))]
impl<T: Send> PerThread<T> {
    pub(crate) fn new(init: fn() -> T) -> Self {
        PerThread {
            slots: thread_local::ThreadLocal::new(),
            init,
        }
    }

    /// This thread's `T`, created on the thread's first call (the only allocation, once per thread and owner).
    #[inline]
    pub(crate) fn get(&self) -> &T {
        match self.slots.get() {
            Some(t) => t,
            None => self.create(),
        }
    }

    /// The first call on a thread: out of line, so that the hot path keeps a small stack frame.
    #[cold]
    #[inline(never)]
    fn create(&self) -> &T {
        self.slots.get_or(self.init)
    }

    /// Every thread's `T` created so far.
    pub(crate) fn for_each(&self, f: impl FnMut(&T))
    where
        T: Sync,
    {
        self.slots.iter().for_each(f);
    }
}

/// Under loom: one `T` per loom thread, indexed by the thread's index in the execution (deterministic, unlike
/// `ThreadId`'s `Hash`, which includes a per-execution id), created up front.
#[cfg(otlp_loom)]
pub(crate) struct PerThread<T: Send> {
    slots: Vec<T>,
}

#[cfg(otlp_loom)]
impl<T: Send> PerThread<T> {
    /// Loom runs at most this many threads in a model (its default `MAX_THREADS`).
    const MAX_THREADS: usize = 5;

    pub(crate) fn new(init: fn() -> T) -> Self {
        PerThread {
            slots: (0..Self::MAX_THREADS).map(|_| init()).collect(),
        }
    }

    pub(crate) fn get(&self) -> &T {
        let id = format!("{:?}", loom::thread::current().id());
        let index = id
            .chars()
            .filter_map(|c| c.to_digit(10))
            .fold(0usize, |acc, d| acc * 10 + d as usize);
        &self.slots[index % Self::MAX_THREADS]
    }

    pub(crate) fn for_each(&self, f: impl FnMut(&T)) {
        self.slots.iter().for_each(f);
    }
}
