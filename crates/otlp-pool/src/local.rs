//! The per-thread half of a pool: a hot slot, a small stack of idle objects and a little credit of free slots,
//! owned by one thread, so that the common `get`/`put` touches no atomic read-modify-write and no lock.
//!
//! A thread that alternates `get` and `put` (the usual "borrow a buffer, use it, give it back") never leaves the
//! *hot slot*: one object, or room for one, that the thread keeps in front of its stack (Go's per-P private slot).
//! `get` takes the object out of it and `put` swaps one in: no slot accounting, because the hot slot holds one slot
//! of the budget whether it is full or empty (it is *reserved* on the first `put` that finds a free slot, and kept
//! from then on), and no flag either, because a cache is only reachable from the fast path once its hot slot is
//! reserved. A `put` that finds the hot slot full keeps the newer object there and sends the older one down the
//! slow path. Everything else is the slower path in this file: a stack
//! of idle objects, where `get` pops an object and turns its slot into credit and `put` spends the credit and
//! pushes. Shared state (`shared.rs`) is touched only in batches: when the stack runs dry (refill from overflow),
//! when it is full (spill half to overflow), when credit runs out (reserve a batch of slots) or piles up (release a
//! batch).
//!
//! At most `local_max` slots (the hot slot, credit and stacked objects) are held by one thread, so an idle thread
//! pins at most that many objects or budget; `local_max == 0` turns the caches off (the hot slot is never reserved,
//! so every operation takes the slow path, which then goes to shared state).
//!
//! Finding this thread's cache: every thread that uses a pool gets a small recycled index (`otlp_core::thread_index`), and
//! each pool keeps two arrays of [`SLOTS`] cache pointers indexed by it: every cache (filled on a thread's first
//! use) and the caches whose hot slot is reserved (what the fast path reads: a thread-local load, a bounds check
//! and two loads, measured well ahead of the `thread_local` crate's lookup). A thread beyond the arrays (or one
//! that is exiting) has no cache and takes the shared path, with shared counters. A thread's cache outlives the
//! thread, emptied: a thread's exit (`otlp_core::thread_index::at_exit`, registered on the thread's first use of the
//! cache) moves its idle objects, with their slots, to the shared store and gives its credit and hot slot back to
//! the budget, so no capacity is stranded in dead threads; the empty cache is reused by the next thread that gets
//! the same index, and freed with the pool. Its counters live inside it, registered with the pool's `StatsCell` by
//! address and folded into retired sums before the caches are freed (counts of dead threads stay).
//!
//! Loom builds run this same code: the thread index lives in `loom::thread_local!`s (otlp-core), the cache arrays
//! are loom atomics and every use of a cache is checked to be ordered after the previous thread's
//! ([`OneThreadAtATime`](crate::sync::OneThreadAtATime)); only the number of slots is smaller.

use crate::shared::Shared;
use crate::stats::{Counter, Counters, StatsCell};
use std::sync::Arc;

pub(crate) use cached::{Local, Locals};

/// Batch sizes of one pool's caches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most slots (hot slot + credit + stacked objects) one thread holds; 0 turns the caches off.
    pub(crate) local_max: usize,
    /// Slots or objects moved per trip to shared state.
    pub(crate) batch: usize,
}

/// Threads (by index) that get a cache in each pool; later ones use the shared store. 16 bytes each per pool.
pub(crate) const SLOTS: usize = if cfg!(otlp_loom) {
    4
} else if cfg!(miri) {
    8
} else {
    256
};

mod cached {
    use super::*;
    use crate::sync::{AtomicPtr, OneThreadAtATime, Ordering};
    use otlp_core::thread_index::{self, ThreadExit};
    use std::cell::{Cell, RefCell};
    use std::marker::PhantomData;
    use std::sync::{Mutex, Weak};

    /// One thread's cache. Aligned to its own cache lines so that two threads' caches never share one.
    #[repr(align(128))]
    pub(crate) struct Local<T> {
        /// The hot slot: an idle object, or `None`. Holds a slot of the budget whether full or not once reserved.
        hot: Cell<Option<Box<T>>>,
        /// The hot slot holds a slot (set once, never cleared; the cache is in `Locals::fast` from then on).
        hot_reserved: Cell<bool>,
        stack: RefCell<Vec<Box<T>>>,
        credit: Cell<usize>,
        /// The thread holding `index` asked to hear of its own exit (cleared when the exit empties the cache, so
        /// the next thread with this index asks again).
        registered: Cell<bool>,
        /// The thread index this cache belongs to.
        index: usize,
        /// Checks (in loom builds) that the threads using this cache one after another are ordered.
        user: OneThreadAtATime,
        /// This thread's counters, inline (registered with the pool's `StatsCell` by address): one less pointer
        /// to follow on every operation, which measured ~1.4 ns of a ~6 ns get + put.
        pub(crate) counters: Counters,
    }

    type Slots<T> = [AtomicPtr<Local<T>>; SLOTS];

    /// The caches of every thread that used the pool, by thread index.
    pub(crate) struct Locals<T: Send> {
        /// Shared with the exit hooks of the threads that use the pool (held weakly there).
        inner: Arc<Inner<T>>,
        /// What a thread registers to hear of its exit: `inner`, weakly.
        hook: Weak<dyn ThreadExit>,
    }

    pub(crate) struct Inner<T: Send> {
        /// Caches whose hot slot is reserved (null until then): what the fast path reads. Inline, so that the fast
        /// path follows one pointer (the `Arc`'s) to reach it, as it would a boxed array.
        fast: Slots<T>,
        /// Every cache (null until the thread with that index first uses the pool). Each pointer comes from
        /// `Box::into_raw` and is freed in `drop`; `fast[i]` is null or equal to `all[i]`.
        all: Slots<T>,
        /// The shared store and slot budget (here, so that a thread's exit can give its cache back to it).
        shared: Shared<T>,
        /// Counters of the threads without a cache (shared by them, so bumped with read-modify-writes).
        shared_counters: Arc<Counters>,
        /// Where the caches' counters are registered; told before the caches are freed.
        stats: Arc<StatsCell>,
        /// `Inner` owns `Local<T>`s (for drop check), and is `Send + Sync` exactly when `T: Send`, like a
        /// `Mutex<Local<T>>`: each `Local` is only ever used by one thread at a time (see `fast`).
        _owns: PhantomData<Mutex<Local<T>>>,
    }

    fn null_slots<T>() -> Slots<T> {
        std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut()))
    }

    impl<T: Send> Locals<T> {
        pub(crate) fn new(stats: &Arc<StatsCell>, shared: Shared<T>) -> Self
        where
            T: 'static,
        {
            let inner = Arc::new(Inner {
                fast: null_slots(),
                all: null_slots(),
                shared,
                shared_counters: stats.new_block(),
                stats: stats.clone(),
                _owns: PhantomData,
            });
            let hook: Arc<dyn ThreadExit> = inner.clone();
            Locals {
                hook: Arc::downgrade(&hook),
                inner,
            }
        }

        /// The shared store and slot budget.
        #[inline(always)]
        pub(crate) fn shared(&self) -> &Shared<T> {
            &self.inner.shared
        }

        /// This thread's cache if its hot slot is reserved: the fast path, a thread-local load, a bounds check
        /// and two loads.
        #[inline(always)]
        pub(crate) fn fast(&self) -> Option<&Local<T>> {
            // `UNASSIGNED` and `DEAD` are out of bounds too.
            let local = self
                .inner
                .fast
                .get(thread_index::current())?
                .load(Ordering::Relaxed);
            // SAFETY: see `deref`.
            unsafe { deref(local) }
        }

        /// This thread's cache, created (and its counters registered) on first use; `None` for a thread without
        /// one (beyond [`SLOTS`], or exiting).
        #[inline(never)]
        pub(crate) fn slow(&self) -> Option<&Local<T>> {
            let index = thread_index::current_or_assign();
            let slot = self.inner.all.get(index)?;
            let mut local = slot.load(Ordering::Relaxed);
            if local.is_null() {
                local = Box::into_raw(Box::new(Local {
                    hot: Cell::new(None),
                    hot_reserved: Cell::new(false),
                    stack: RefCell::new(Vec::new()),
                    credit: Cell::new(0),
                    registered: Cell::new(false),
                    index,
                    user: OneThreadAtATime::new(),
                    counters: Counters::default(),
                }));
                // SAFETY: `local` is the live allocation just made; it stays at this address until `drop`, which
                // retires its counters (`StatsCell::retire_borrowed`) before freeing it.
                unsafe { self.inner.stats.register(&(*local).counters) };
                // Relaxed: only the thread holding `index` reads the slot, and an index passes from one thread
                // to the next through the registry's mutex (see `deref`).
                slot.store(local, Ordering::Relaxed);
            }
            // SAFETY: see `deref`.
            let local = unsafe { deref(local) }?;
            if !local.registered.get() {
                // Whatever this thread leaves in the cache must go back to the pool when it exits; a thread that
                // cannot be told (it is exiting) uses the shared path instead.
                if !thread_index::at_exit(self.hook.clone()) {
                    return None;
                }
                local.registered.set(true);
            }
            Some(local)
        }

        /// Counts `counter` for this thread: in its cache's block, or in the shared one if it has no cache.
        #[inline]
        pub(crate) fn bump(&self, local: Option<&Local<T>>, counter: Counter) {
            match local {
                Some(local) => local.counters.bump(counter),
                None => self.inner.shared_counters.bump_shared(counter),
            }
        }

        /// Keeps `object` in `local` if a slot can be had; gives it back otherwise (the caller drops it).
        pub(crate) fn push(
            &self,
            local: &Local<T>,
            limits: Limits,
            object: Box<T>,
        ) -> Option<Box<T>> {
            let was_reserved = local.hot_reserved.get();
            let rejected = local.push(&self.inner.shared, limits, object);
            if !was_reserved && local.hot_reserved.get() {
                // From now on the fast path serves this thread.
                self.inner.fast[local.index]
                    .store(local as *const Local<T> as *mut Local<T>, Ordering::Relaxed);
            }
            rejected
        }
    }

    impl<T: Send> ThreadExit for Inner<T> {
        /// Empties the exiting thread's cache into the shared store: its idle objects (with their slots) to
        /// overflow, its credit and reserved hot slot to the budget; the fast path stops serving the index until
        /// the next thread holding it reserves a hot slot again.
        fn thread_exit(&self, index: usize) {
            let Some(slot) = self.all.get(index) else {
                return;
            };
            // SAFETY: `thread_exit` runs on the thread that holds `index` (`ThreadExit`'s contract), so this is the
            // `deref` of `all[index]` by its holder.
            let Some(local) = (unsafe { deref(slot.load(Ordering::Relaxed)) }) else {
                return;
            };
            self.fast[index].store(std::ptr::null_mut(), Ordering::Relaxed);
            local.give_back(&self.shared);
        }
    }

    /// # Safety
    /// `local` must be null or a pointer read from `Locals::fast[i]` or `Locals::all[i]` (of a `Locals` borrowed for
    /// `'a`) by the thread that holds index `i`.
    #[inline(always)]
    unsafe fn deref<'a, T>(local: *mut Local<T>) -> Option<&'a Local<T>> {
        // SAFETY: a non-null pointer in `fast` or `all` came from `Box::into_raw` in `Locals::slow` and is freed only
        // in `Locals::drop`, which needs `&mut`, so it is valid while the `Locals` is borrowed. `Local` is not `Sync`,
        // but only the thread that holds index `i` dereferences the pointers at `i`: an index belongs to one live
        // thread at a time, and passes to the next thread through the registry's mutex after the old one stopped
        // using it (`thread_index.rs`), so all accesses to one `Local` are ordered (`user` checks it under loom).
        let local = unsafe { local.as_ref() }?;
        local.user.enter();
        Some(local)
    }

    impl<T: Send> Drop for Inner<T> {
        fn drop(&mut self) {
            // Keep the counts, and stop `StatsCell::snapshot` reading the blocks we are about to free.
            self.stats.retire_borrowed();
            for slot in &self.all {
                // `&mut self`: no other thread holds the pool, so this load sees every store.
                let local = slot.load(Ordering::Relaxed);
                if !local.is_null() {
                    // SAFETY: from `Box::into_raw` in `slow`, freed only here, once (`&mut self`: nobody else can be
                    // using it; `fast` holds copies of these pointers, never freed on their own).
                    drop(unsafe { Box::from_raw(local) });
                }
            }
        }
    }

    impl<T> Local<T> {
        /// Gives everything this cache holds back to the shared store (its thread is exiting): idle objects with
        /// their slots to overflow, credit and a free reserved hot slot to the budget. No user code runs.
        fn give_back(&self, shared: &Shared<T>) {
            let Ok(mut stack) = self.stack.try_borrow_mut() else {
                // Only borrowed inside `pop`/`push` on this thread, which do not run while it exits.
                return;
            };
            let hot = self.hot.take();
            let free_hot = self.hot_reserved.replace(false) && hot.is_none();
            shared.release(self.credit.replace(0) + usize::from(free_hot));
            shared.spill(hot.into_iter().chain(stack.drain(..)));
            self.registered.set(false);
        }

        /// Takes the object in the hot slot, if any. The slot stays reserved (now free).
        #[inline(always)]
        pub(crate) fn take_hot(&self) -> Option<Box<T>> {
            self.hot.take()
        }

        /// Puts `object` in the hot slot, which must be reserved (this cache came from `Locals::fast`); gives back
        /// the object that was there, if any, for the slow path.
        #[inline(always)]
        pub(crate) fn swap_hot(&self, object: Box<T>) -> Option<Box<T>> {
            self.hot.replace(Some(object))
        }

        /// Takes an idle object when the hot slot is empty: from this thread's stack, else a batch from overflow.
        pub(crate) fn pop(&self, shared: &Shared<T>, limits: Limits) -> Option<Box<T>> {
            if limits.local_max == 0 {
                return shared.take_one();
            }
            if let Some(object) = self.hot.take() {
                return Some(object);
            }
            let Ok(mut stack) = self.stack.try_borrow_mut() else {
                // Only reachable if a pool operation re-entered from inside another on this thread, which the pool
                // never does (user code runs outside borrows); stay correct by using the shared path.
                return shared.take_one();
            };
            // Slots for credit and stack: the hot slot holds one of `local_max` once reserved.
            let max = limits.local_max - usize::from(self.hot_reserved.get());
            if let Some(object) = stack.pop() {
                let credit = self.credit.get() + 1;
                if credit >= max {
                    // Too many free slots hoarded here: hand a batch back for other threads.
                    let release = limits.batch.min(credit);
                    shared.release(release);
                    self.credit.set(credit - release);
                } else {
                    self.credit.set(credit);
                }
                return Some(object);
            }
            let room = max.saturating_sub(self.credit.get());
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

        /// Keeps `object` idle if a slot can be had: in the hot slot if it is empty (reserving it first if need be),
        /// else on the stack. Gives it back otherwise (the caller drops it).
        fn push(&self, shared: &Shared<T>, limits: Limits, object: Box<T>) -> Option<Box<T>> {
            if limits.local_max == 0 {
                return shared.put_one(object);
            }
            let reserved = self.hot_reserved.get();
            if reserved {
                let Some(hot) = self.hot.take() else {
                    self.hot.set(Some(object));
                    return None;
                };
                self.hot.set(Some(hot));
            }
            let Ok(mut stack) = self.stack.try_borrow_mut() else {
                return shared.put_one(object);
            };
            // Credit + stack may hold `local_max - 1` slots once the hot slot holds its one; an object about to
            // reserve the hot slot needs that one too.
            let max = limits.local_max - 1;
            let room = max + usize::from(!reserved);
            if self.credit.get() == 0 {
                if room == 0 {
                    // `local_max == 1` and the hot slot holds that one slot: the object can only go to overflow.
                    drop(stack);
                    return shared.put_one(object);
                }
                if stack.len() >= room {
                    // Full: move the older half to overflow (with their slots) so other threads can reuse them.
                    let spill = stack.len() - max / 2;
                    shared.spill(stack.drain(..spill));
                }
                let got = shared.reserve(limits.batch.min(room - stack.len()));
                if got == 0 {
                    return Some(object);
                }
                self.credit.set(got);
            }
            self.credit.set(self.credit.get() - 1);
            if reserved {
                // The hot slot is full: the object goes on the stack.
                stack.push(object);
            } else {
                self.hot_reserved.set(true);
                self.hot.set(Some(object));
            }
            None
        }
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use crate::Pool;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier, OnceLock, Weak};

    fn vec_pool(capacity: usize, thread_cache: usize) -> Pool<Vec<u8>> {
        Pool::builder("local", || Vec::with_capacity(8))
            .capacity(capacity)
            .thread_cache(thread_cache)
            .reset(Vec::clear)
            .build()
            .unwrap()
    }

    fn assert_counts_add_up(pool: &Pool<Vec<u8>>) {
        let s = pool.stats();
        assert_eq!(s.gets, s.puts + s.discards + s.detached, "{s:?}");
        assert!(s.idle <= s.capacity, "{s:?}");
        let (overflow, free) = pool.shared_state();
        assert!(overflow + free <= pool.capacity(), "{overflow} + {free}");
    }

    #[test]
    fn threads_beyond_the_slots_use_the_shared_store() {
        // More threads alive at once than there are cache slots: the last ones (or any, if other tests hold
        // indices) have no cache and go through the shared store with shared counters.
        let threads = super::SLOTS + 2;
        let rounds = if cfg!(miri) { 3 } else { 20 };
        let pool = vec_pool(64, 4);
        let barrier = Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..rounds {
                        let mut a = pool.get();
                        a.push(1);
                        let b = pool.try_get();
                        drop(a);
                        drop(b);
                    }
                });
            }
        });
        let s = pool.stats();
        assert!(s.gets >= (threads * rounds) as u64);
        assert_counts_add_up(&pool);
    }

    #[test]
    fn a_cache_outlives_its_thread() {
        let pool = vec_pool(64, 8);
        // Sequential threads: each leaves objects in its cache; a later thread may inherit that cache with the
        // recycled index. Nothing is lost or counted twice either way.
        for _ in 0..if cfg!(miri) { 4 } else { 20 } {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let held: Vec<_> = (0..3).map(|_| pool.get()).collect();
                    drop(held);
                    assert!(pool.get().is_empty(), "reset ran");
                });
            });
        }
        let s = pool.stats();
        assert!(s.reuses() > 0, "{s:?}");
        assert_counts_add_up(&pool);
        // Every idle object can still be taken, from any thread.
        let drained = std::thread::scope(|s| {
            s.spawn(|| {
                std::iter::from_fn(|| pool.try_get())
                    .collect::<Vec<_>>()
                    .len()
            })
            .join()
            .unwrap()
        });
        assert!(drained as u64 <= s.idle);
    }

    #[test]
    fn a_pool_used_while_the_thread_exits_still_counts_everything() {
        // A thread-local destroyed after this thread's index was given back returns its object through the
        // shared store: the pool must not touch the cache that index now belongs to.
        static POOL: OnceLock<Arc<Pool<Vec<u8>>>> = OnceLock::new();
        let pool = POOL.get_or_init(|| Arc::new(vec_pool(16, 4)));
        struct Late(std::cell::RefCell<Option<crate::OwnedPooled<Vec<u8>>>>);
        impl Drop for Late {
            fn drop(&mut self) {
                let pool = POOL.get().unwrap();
                drop(self.0.borrow_mut().take()); // a put
                drop(pool.get()); // a get and a put
            }
        }
        thread_local! {
            static LATE: Late = const { Late(std::cell::RefCell::new(None)) };
        }
        let before = pool.stats();
        std::thread::spawn(|| {
            let pool = POOL.get().unwrap();
            // Registered before the pool's thread index holder, so destroyed after it.
            LATE.with(|late| *late.0.borrow_mut() = Some(pool.get_owned()));
            drop(pool.get());
        })
        .join()
        .unwrap();
        let s = pool.stats();
        assert_eq!(s.gets - before.gets, 3, "{s:?}");
        assert_eq!(
            (s.puts + s.discards) - (before.puts + before.discards),
            3,
            "{s:?}"
        );
        assert_counts_add_up(pool);
    }

    #[test]
    fn reset_may_use_the_same_pool() {
        // Re-entrant use from user code on the same pool and thread: no borrow is held while it runs.
        let me: Arc<OnceLock<Weak<Pool<Vec<u8>>>>> = Arc::default();
        let inner = AtomicBool::new(false);
        let pool = {
            let me = me.clone();
            Arc::new(
                Pool::builder("self", Vec::<u8>::new)
                    .capacity(8)
                    .thread_cache(2)
                    .reset(move |v: &mut Vec<u8>| {
                        v.clear();
                        if let Some(pool) = me.get().and_then(Weak::upgrade)
                            && !inner.swap(true, Ordering::Relaxed)
                        {
                            let held: Vec<_> = (0..3).map(|_| pool.get()).collect();
                            drop(held);
                            inner.store(false, Ordering::Relaxed);
                        }
                    })
                    .build()
                    .unwrap(),
            )
        };
        me.set(Arc::downgrade(&pool)).unwrap();
        for _ in 0..4 {
            let a = pool.get();
            let b = pool.get();
            drop(a);
            drop(b);
        }
        assert_counts_add_up(&pool);
    }

    #[test]
    fn one_slot_caches_keep_the_bound() {
        // `local_max == 1`: the hot slot is the whole cache.
        let pool = vec_pool(4, 1);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for i in 0..if cfg!(miri) { 10 } else { 500 } {
                        let held: Vec<_> = (0..i % 4).map(|_| pool.get()).collect();
                        drop(held);
                    }
                });
            }
        });
        assert_counts_add_up(&pool);
    }
}
