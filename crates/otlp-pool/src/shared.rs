//! The cross-thread half of a pool: a budget of idle slots and an overflow store.
//!
//! The invariant that bounds memory: every idle object holds one *slot*, and there are `capacity` slots. A slot is
//! in exactly one place at any time:
//!
//! * `free`: the atomic budget nobody holds;
//! * held by a thread's cache (`local.rs`), either as credit (a free slot it may fill without touching shared
//!   state) or by an idle object on its stack;
//! * held by an idle object in `overflow`.
//!
//! So `free + Σ credit + Σ stack + overflow = capacity` at rest, and the idle objects never exceed `capacity`. Slots
//! move between places in batches, which is what keeps the common path free of atomics. This file is what the
//! loom models in `tests/loom.rs` explore.

use crate::sync::{AtomicUsize, Mutex, Ordering, lock};

/// The shared store and slot budget of one pool.
pub(crate) struct Shared<T> {
    free: AtomicUsize,
    overflow: Mutex<Vec<Box<T>>>,
}

impl<T> Shared<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Shared {
            free: AtomicUsize::new(capacity),
            overflow: Mutex::new(Vec::new()),
        }
    }

    /// Takes up to `want` slots from the free budget; returns how many it got (0 when the pool is full).
    pub(crate) fn reserve(&self, want: usize) -> usize {
        // Relaxed is enough: the budget guards no other memory (the objects travel under the overflow lock or stay
        // on the owning thread); only the count itself must never be over-drawn, which the CAS guarantees.
        let mut free = self.free.load(Ordering::Relaxed);
        loop {
            let take = free.min(want);
            if take == 0 {
                return 0;
            }
            match self.free.compare_exchange_weak(
                free,
                free - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(actual) => free = actual,
            }
        }
    }

    /// Gives `n` slots back to the free budget.
    pub(crate) fn release(&self, n: usize) {
        if n > 0 {
            self.free.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Moves idle objects (with the slots they hold) into the overflow store.
    pub(crate) fn spill(&self, objects: impl Iterator<Item = Box<T>>) {
        lock(&self.overflow).extend(objects);
    }

    /// Moves up to `max` idle objects (with their slots) from the overflow store onto `stack`; returns how many.
    pub(crate) fn refill(&self, stack: &mut Vec<Box<T>>, max: usize) -> usize {
        let mut overflow = lock(&self.overflow);
        let n = overflow.len().min(max);
        let from = overflow.len() - n;
        stack.extend(overflow.drain(from..));
        n
    }

    /// Takes one idle object for a user: it stops being idle, so its slot goes back to the budget.
    pub(crate) fn take_one(&self) -> Option<Box<T>> {
        let object = lock(&self.overflow).pop();
        if object.is_some() {
            self.release(1);
        }
        object
    }

    /// Keeps `object` idle in the overflow store if a slot is free; gives it back otherwise (the caller drops it,
    /// outside any lock, since dropping runs user code).
    pub(crate) fn put_one(&self, object: Box<T>) -> Option<Box<T>> {
        if self.reserve(1) == 1 {
            lock(&self.overflow).push(object);
            None
        } else {
            Some(object)
        }
    }

    /// Objects in the overflow store (idle, not in any thread's cache).
    #[cfg(all(test, not(otlp_loom)))]
    pub(crate) fn overflow_len(&self) -> usize {
        lock(&self.overflow).len()
    }

    /// Slots nobody holds.
    #[cfg(all(test, not(otlp_loom)))]
    pub(crate) fn free_slots(&self) -> usize {
        self.free.load(Ordering::Relaxed)
    }
}
