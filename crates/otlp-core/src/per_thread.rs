//! [`PerThread`]: one `T` per thread, found by the thread's recycled index (see [`thread_index`](crate::thread_index)).
//!
//! Slot `i` is written only by the thread that holds index `i` (it creates its `T` there on first use), so finding
//! this thread's `T` is a thread-local load, a bounds check and one atomic load, with no lock and no
//! read-modify-write. Readers ([`PerThread::for_each`]) see every `T` created so far. A `T` stays in its slot when
//! its thread exits and is reused by the next thread given the same index; all are freed with the `PerThread`.

use std::fmt;
use std::marker::PhantomData;

use crate::sync::{AtomicPtr, Ordering};
use crate::thread_index;

/// One `T` per thread for the first `SLOTS` thread indices; threads with a higher index (or exiting ones) get
/// `None` and use the owner's shared path.
///
/// ```
/// use otlp_core::PerThread;
/// use std::cell::Cell;
///
/// let seen: PerThread<std::sync::atomic::AtomicU32, 8> = PerThread::new(Default::default);
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| seen.get().map(|n| n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
///     }
/// });
/// let mut total = 0;
/// seen.for_each(|n| total += n.load(std::sync::atomic::Ordering::Relaxed));
/// assert_eq!(total, 2);
/// # let _ = Cell::new(0);
/// ```
pub struct PerThread<T, const SLOTS: usize> {
    /// Null, or a pointer from `Box::into_raw` stored by the thread holding that index, freed in `drop`.
    slots: [AtomicPtr<T>; SLOTS],
    init: fn() -> T,
    /// Owns `T`s (drop check); `Sync` only if `T` may be shared (readers get `&T` from any thread) and sent (a
    /// `T` created on one thread is dropped on whichever drops the owner): like `(Mutex<T>, T)`.
    _owns: PhantomData<(std::sync::Mutex<T>, T)>,
}

impl<T, const SLOTS: usize> PerThread<T, SLOTS> {
    /// No `T`s yet; each thread's is made with `init` on its first [`get`](PerThread::get).
    pub fn new(init: fn() -> T) -> Self {
        PerThread {
            slots: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            init,
            _owns: PhantomData,
        }
    }

    /// This thread's `T`, created on the thread's first call (the only allocation, once per thread index and
    /// owner); `None` for a thread without a slot of its own.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        if let Some(slot) = self.slots.get(thread_index::current()) {
            // Relaxed: only the thread holding this index stores to the slot, and an index passes between threads
            // through the registry's mutex, which orders the previous holder's store before this load.
            let t = slot.load(Ordering::Relaxed);
            if !t.is_null() {
                // SAFETY: non-null slots hold a live `Box` (freed only in `drop`, which needs `&mut self`).
                return Some(unsafe { &*t });
            }
        }
        self.create()
    }

    /// The first call on a thread: out of line, so that the hot path keeps a small stack frame.
    #[cold]
    #[inline(never)]
    fn create(&self) -> Option<&T> {
        let slot = self.slots.get(thread_index::current_or_assign())?;
        let mut t = slot.load(Ordering::Relaxed);
        if t.is_null() {
            t = Box::into_raw(Box::new((self.init)()));
            // Release: `for_each` on another thread reads the `T` after an acquire load of the pointer.
            slot.store(t, Ordering::Release);
        }
        // SAFETY: as in `get`.
        Some(unsafe { &*t })
    }

    /// Every thread's `T` created so far.
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        for slot in &self.slots {
            let t = slot.load(Ordering::Acquire);
            if !t.is_null() {
                // SAFETY: as in `get`; the acquire load pairs with `create`'s release store, so the `T` is
                // initialised. Other threads only ever get `&T` (and `PerThread` is `Sync` only if `T` is).
                f(unsafe { &*t });
            }
        }
    }
}

impl<T, const SLOTS: usize> Drop for PerThread<T, SLOTS> {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            let t = slot.swap(std::ptr::null_mut(), Ordering::Relaxed);
            if !t.is_null() {
                // SAFETY: from `Box::into_raw` in `create`, freed only here (`&mut self`: no `&T` is alive).
                drop(unsafe { Box::from_raw(t) });
            }
        }
    }
}

impl<T: fmt::Debug, const SLOTS: usize> fmt::Debug for PerThread<T, SLOTS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        self.for_each(|t| {
            list.entry(t);
        });
        list.finish()
    }
}
