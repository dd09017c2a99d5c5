//! The per-thread half of a pool: a small stack of idle objects and a little credit of free slots, owned by one
//! thread, so that the common `get`/`put` touches no atomic read-modify-write and no lock.
//!
//! A thread that alternates `get` and `put` (the usual "borrow a buffer, use it, give it back") never leaves this
//! file: `get` pops an object and turns its slot into credit; `put` spends the credit and pushes. Shared state
//! (`shared.rs`) is touched only in batches: when the stack runs dry (refill from overflow), when it is full (spill
//! half to overflow), when credit runs out (reserve a batch of slots) or piles up (release a batch).
//!
//! At most `local_max` slots (credit plus stacked objects) are held by one thread, so an idle thread pins at most
//! that many objects or budget. A thread's cache outlives the thread: it stays with the pool (and is reused by the
//! next thread that gets the same thread id) until the pool is dropped, so no object or counter is lost.
//!
//! Loom builds compile the cache out: a loom model runs its threads on one OS thread, where `thread_local` would
//! hand every model thread the same cache; the models check the shared protocol instead.

use crate::shared::Shared;
use crate::stats::{Counters, StatsCell};
use std::sync::Arc;

#[cfg(not(otlp_loom))]
pub(crate) use cached::{Local, Locals};
#[cfg(otlp_loom)]
pub(crate) use uncached::{Local, Locals};

/// Batch sizes of one pool's caches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most slots (credit + stacked objects) one thread holds; 0 turns the caches off.
    pub(crate) local_max: usize,
    /// Slots or objects moved per trip to shared state.
    pub(crate) batch: usize,
}

#[cfg(not(otlp_loom))]
mod cached {
    use super::*;
    use std::cell::{Cell, RefCell};
    use thread_local::ThreadLocal;

    /// One thread's cache.
    pub(crate) struct Local<T> {
        stack: RefCell<Vec<Box<T>>>,
        credit: Cell<usize>,
        pub(crate) counters: Arc<Counters>,
    }

    /// The caches of every thread that used the pool.
    pub(crate) struct Locals<T: Send> {
        caches: ThreadLocal<Local<T>>,
    }

    impl<T: Send> Locals<T> {
        pub(crate) fn new() -> Self {
            Locals {
                caches: ThreadLocal::new(),
            }
        }

        /// This thread's cache, created (and its counters registered) on first use.
        #[inline]
        pub(crate) fn get(&self, shared: &Shared<T>, stats: &StatsCell) -> &Local<T> {
            match self.caches.get() {
                Some(local) => local,
                None => self.create(shared, stats),
            }
        }

        #[cold]
        fn create(&self, _shared: &Shared<T>, stats: &StatsCell) -> &Local<T> {
            self.caches.get_or(|| Local {
                stack: RefCell::new(Vec::new()),
                credit: Cell::new(0),
                counters: stats.new_block(),
            })
        }
    }

    impl<T> Local<T> {
        /// Takes an idle object: from this thread's stack, else a batch from overflow.
        #[inline]
        pub(crate) fn pop(&self, shared: &Shared<T>, limits: Limits) -> Option<Box<T>> {
            let Ok(mut stack) = self.stack.try_borrow_mut() else {
                // Only reachable if a pool operation re-entered from inside another on this thread, which the pool
                // never does (user code runs outside borrows); stay correct by using the shared path.
                return shared.take_one();
            };
            if let Some(object) = stack.pop() {
                let credit = self.credit.get() + 1;
                if credit >= limits.local_max {
                    // Too many free slots hoarded here: hand a batch back for other threads.
                    shared.release(limits.batch);
                    self.credit.set(credit - limits.batch);
                } else {
                    self.credit.set(credit);
                }
                return Some(object);
            }
            let room = limits.local_max - self.credit.get();
            if room == 0 {
                return shared.take_one();
            }
            if shared.refill(&mut stack, limits.batch.min(room)) == 0 {
                return None;
            }
            // The refilled objects brought their slots; the one handed out leaves its slot here as credit.
            let object = stack.pop();
            self.credit.set(self.credit.get() + 1);
            object
        }

        /// Keeps `object` idle if a slot can be had; gives it back otherwise (the caller drops it).
        #[inline]
        pub(crate) fn push(
            &self,
            shared: &Shared<T>,
            limits: Limits,
            object: Box<T>,
        ) -> Option<Box<T>> {
            let Ok(mut stack) = self.stack.try_borrow_mut() else {
                return shared.put_one(object);
            };
            let credit = self.credit.get();
            if credit > 0 {
                self.credit.set(credit - 1);
                stack.push(object);
                return None;
            }
            if stack.len() >= limits.local_max {
                // Full: move the older half to overflow (with their slots) so other threads can reuse them.
                let keep = limits.local_max / 2;
                let spill = stack.len() - keep;
                shared.spill(stack.drain(..spill));
            }
            let want = limits.batch.min(limits.local_max - stack.len());
            let got = shared.reserve(want);
            if got == 0 {
                return Some(object);
            }
            self.credit.set(got - 1);
            stack.push(object);
            None
        }
    }
}

#[cfg(otlp_loom)]
mod uncached {
    use super::*;

    /// Loom builds: no cache, one shared counter block.
    pub(crate) struct Local<T> {
        pub(crate) counters: Arc<Counters>,
        _marker: std::marker::PhantomData<fn() -> T>,
    }

    /// Loom builds: every thread shares one counter block.
    pub(crate) struct Locals<T: Send> {
        local: std::sync::OnceLock<Local<T>>,
    }

    impl<T: Send> Locals<T> {
        pub(crate) fn new() -> Self {
            Locals {
                local: std::sync::OnceLock::new(),
            }
        }

        pub(crate) fn get(&self, _shared: &Shared<T>, stats: &StatsCell) -> &Local<T> {
            self.local.get_or_init(|| Local {
                counters: stats.new_block(),
                _marker: std::marker::PhantomData,
            })
        }
    }

    impl<T> Local<T> {
        pub(crate) fn pop(&self, shared: &Shared<T>, _limits: Limits) -> Option<Box<T>> {
            shared.take_one()
        }

        pub(crate) fn push(
            &self,
            shared: &Shared<T>,
            _limits: Limits,
            object: Box<T>,
        ) -> Option<Box<T>> {
            shared.put_one(object)
        }
    }
}
