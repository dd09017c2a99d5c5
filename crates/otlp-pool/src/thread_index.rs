//! Small, dense, recycled thread indices: how a thread finds its own block (a pool's per-thread cache, a
//! semaphore's or limiter's counter block) in every owner with one thread-local read.
//!
//! Each thread is given the smallest-numbered free index (a process-wide registry) on first use, kept in a
//! constant-initialised `thread_local!` `Cell` that needs no destructor, so reading it is a single load. Every
//! owner keeps an array of per-thread blocks indexed by it (otlp-pool's `local.rs`, otlp-sync's `sync.rs`), so
//! finding this thread's block is a bounds check and two loads.
//!
//! Indices are recycled: when a thread exits, a second thread-local (the *holder*, which has a destructor) marks
//! the thread's index dead and gives it back, and the next new thread reuses it, together with the blocks the dead
//! thread left in every owner. That hand-over is what makes a block single-writer, and so sound to use without a
//! lock: an index belongs to one live thread at a time, and it passes from one thread to the next through the
//! registry's mutex, so everything the old thread did to its blocks happens before anything the new one does.
//!
//! A thread whose holder has already been destroyed (an owner used from another thread-local's destructor, late
//! in thread exit) never gets an index again: it is marked [`DEAD`] and owners serve it from their shared path.
//!
//! This file is compiled into otlp-pool and, through `#[path]`, into otlp-sync: the two bottom crates do not
//! depend on each other. Each crate gets its own copy of the statics (its own registry), which is all either
//! needs. The module has no `unsafe`.

#![cfg(not(otlp_loom))]

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

/// The index of a thread that has not used an owner yet.
pub(crate) const UNASSIGNED: usize = usize::MAX;
/// The index of a thread whose index was given back (it is exiting): it must use the shared path from now on.
pub(crate) const DEAD: usize = usize::MAX - 1;

thread_local! {
    /// This thread's index, [`UNASSIGNED`] or [`DEAD`]. No destructor, so it is readable until the thread is gone.
    static INDEX: Cell<usize> = const { Cell::new(UNASSIGNED) };
    /// Gives this thread's index back when the thread exits.
    static HOLDER: Holder = const { Holder(Cell::new(UNASSIGNED)) };
}

/// The process-wide set of indices.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new());

/// Indices handed out so far and those given back.
#[derive(Debug)]
struct Registry {
    /// Indices `0..next` were handed out at least once.
    next: usize,
    /// Indices given back, reused first (last in, first out).
    free: Vec<usize>,
    /// Every index given back, in order (tests check that exiting threads give theirs back).
    #[cfg(test)]
    released: Vec<usize>,
}

impl Registry {
    const fn new() -> Self {
        Registry {
            next: 0,
            free: Vec::new(),
            #[cfg(test)]
            released: Vec::new(),
        }
    }

    fn acquire(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            let index = self.next;
            // `DEAD` and `UNASSIGNED` are never handed out (and would take 2^64 - 2 threads to reach).
            self.next = (self.next + 1).min(DEAD - 1);
            index
        })
    }

    fn release(&mut self, index: usize) {
        self.free.push(index);
        #[cfg(test)]
        self.released.push(index);
    }
}

fn registry() -> MutexGuard<'static, Registry> {
    // Poisoning cannot leave the registry half-updated (push and pop do not panic midway): recover.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Owns this thread's index; its destructor gives the index back.
struct Holder(Cell<usize>);

impl Drop for Holder {
    fn drop(&mut self) {
        let index = self.0.replace(UNASSIGNED);
        if index < DEAD {
            // Mark the thread dead *before* giving the index back: an owner used later in this thread's exit (from
            // another thread-local's destructor) must not touch the blocks of `index`, which another thread may
            // own by then. `INDEX` has no destructor, so it is still there.
            INDEX.set(DEAD);
            registry().release(index);
        }
    }
}

/// This thread's index, or [`UNASSIGNED`] / [`DEAD`]. One thread-local load.
#[inline(always)]
pub(crate) fn current() -> usize {
    INDEX.get()
}

/// This thread's index, assigning one on first use; [`DEAD`] once the thread is exiting.
#[cold]
pub(crate) fn current_or_assign() -> usize {
    let index = INDEX.get();
    if index != UNASSIGNED {
        return index;
    }
    // Take the index inside the holder's initialisation, so that an index is only ever handed to a thread whose
    // holder will give it back. `try_with` fails once the holder was destroyed (the thread is exiting).
    let index = HOLDER
        .try_with(|holder| {
            let index = registry().acquire();
            holder.0.set(index);
            index
        })
        .unwrap_or(DEAD);
    INDEX.set(index);
    index
}

/// Whether `index` was ever given back (tests).
#[cfg(test)]
pub(crate) fn was_released(index: usize) -> bool {
    registry().released.contains(&index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_reuses_given_back_indices_first() {
        let mut r = Registry::new();
        assert_eq!((r.acquire(), r.acquire(), r.acquire()), (0, 1, 2));
        r.release(1);
        r.release(0);
        assert_eq!(r.acquire(), 0);
        assert_eq!(r.acquire(), 1);
        assert_eq!(r.acquire(), 3);
    }

    #[test]
    fn a_thread_keeps_its_index_and_gives_it_back_on_exit() {
        let index = std::thread::spawn(|| {
            assert_eq!(current(), UNASSIGNED);
            let index = current_or_assign();
            assert!(index < DEAD);
            assert_eq!(current(), index);
            assert_eq!(current_or_assign(), index);
            index
        })
        .join()
        .unwrap();
        assert!(was_released(index), "index {index} given back at exit");
    }

    #[test]
    fn an_exiting_thread_is_dead_after_giving_its_index_back() {
        struct Late(Cell<usize>);
        impl Drop for Late {
            fn drop(&mut self) {
                // Runs after the holder's destructor (registered later, destroyed first): no index any more.
                assert_eq!(current(), DEAD);
                assert_eq!(current_or_assign(), DEAD);
                self.0.set(0);
            }
        }
        thread_local! {
            static LATE: Late = const { Late(Cell::new(1)) };
        }
        std::thread::spawn(|| {
            LATE.with(|late| assert_eq!(late.0.get(), 1)); // registered first
            current_or_assign();
        })
        .join()
        .unwrap();
    }
}
