//! Small, dense, recycled thread indices: how a thread finds its own block (a pool's per-thread cache, a
//! semaphore's or limiter's counter block) in every owner with one thread-local read.
//!
//! Each thread is given the smallest-numbered free index (a process-wide registry) on first use, kept in a
//! constant-initialised thread-local `Cell` that needs no destructor, so reading it is a single load. Every owner
//! keeps an array of per-thread blocks indexed by it ([`PerThread`](crate::PerThread), otlp-pool's per-thread
//! caches), so finding this thread's block is a bounds check and two loads.
//!
//! Indices are recycled: when a thread exits, a second thread-local (the *holder*, which has a destructor) first
//! tells every owner that asked ([`at_exit`]) so that it can hand back what the thread held (a pool's idle objects
//! and free slots), then marks the thread's index dead and gives it back; the next new thread reuses it, together
//! with the (emptied) blocks the dead thread left in every owner. That hand-over is what makes a block
//! single-writer, and so sound to use without a lock: an index belongs to one live thread at a time, and it passes
//! from one thread to the next through the registry's mutex, so everything the old thread did to its blocks
//! happens before anything the new one does.
//!
//! A thread whose holder has already been destroyed (an owner used from another thread-local's destructor, late
//! in thread exit) never gets an index again: it is marked [`DEAD`] and owners serve it from their shared path.
//!
//! ```
//! use otlp_core::thread_index;
//!
//! let index = std::thread::spawn(|| {
//!     assert_eq!(thread_index::current(), thread_index::UNASSIGNED);
//!     thread_index::current_or_assign()
//! })
//! .join()
//! .unwrap();
//! assert!(index < thread_index::DEAD);
//! ```

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Weak;

use crate::sync::{Mutex, lock};

/// The index of a thread that has not asked for one yet.
pub const UNASSIGNED: usize = usize::MAX;
/// The index of a thread that is exiting (its index was given back, or it never got one and no longer can): it
/// must use the owners' shared paths from now on.
pub const DEAD: usize = usize::MAX - 1;

/// An owner that keeps per-thread state by thread index and must hear when a thread gives its index back.
pub trait ThreadExit: Send + Sync {
    /// Called on the exiting thread, which still holds `index` (so the owner's block at `index` is still this
    /// thread's alone), before the index is given back to the next thread. Must not panic.
    fn thread_exit(&self, index: usize);
}

#[cfg(not(otlp_loom))]
std::thread_local! {
    /// This thread's index, [`UNASSIGNED`] or [`DEAD`]. No destructor, so it is readable until the thread is gone.
    static INDEX: Cell<usize> = const { Cell::new(UNASSIGNED) };
    /// Gives this thread's index back when the thread exits.
    static HOLDER: Holder = const { Holder::new() };
}

#[cfg(otlp_loom)]
loom::thread_local! {
    static INDEX: Cell<usize> = Cell::new(UNASSIGNED);
    static HOLDER: Holder = Holder::new();
}

/// The process-wide set of indices.
#[cfg(not(otlp_loom))]
static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new());

#[cfg(otlp_loom)]
loom::lazy_static! {
    static ref REGISTRY: Mutex<Registry> = Mutex::new(Registry::new());
}

/// Indices handed out so far and those given back.
#[derive(Debug)]
struct Registry {
    /// Indices `0..next` were handed out at least once.
    next: usize,
    /// Indices given back, reused smallest first (so the indices in use stay dense, and owners' arrays short).
    free: BinaryHeap<Reverse<usize>>,
}

impl Registry {
    const fn new() -> Self {
        Registry {
            next: 0,
            free: BinaryHeap::new(),
        }
    }

    fn acquire(&mut self) -> usize {
        match self.free.pop() {
            Some(Reverse(index)) => index,
            None => {
                let index = self.next;
                // `DEAD` and `UNASSIGNED` are never handed out (and would take 2^64 - 2 threads to reach).
                self.next = (self.next + 1).min(DEAD - 1);
                index
            }
        }
    }

    fn release(&mut self, index: usize) {
        self.free.push(Reverse(index));
    }
}

/// Owns this thread's index; its destructor tells the owners and gives the index back.
struct Holder {
    index: Cell<usize>,
    /// Owners to tell when this thread exits.
    hooks: RefCell<Vec<Weak<dyn ThreadExit>>>,
    /// Drop hooks of dropped owners when `hooks` reaches this length (amortised: a thread that uses many
    /// short-lived owners keeps a bounded list).
    prune_at: Cell<usize>,
}

impl Holder {
    const fn new() -> Self {
        Holder {
            index: Cell::new(UNASSIGNED),
            hooks: RefCell::new(Vec::new()),
            prune_at: Cell::new(8),
        }
    }
}

impl Holder {
    /// The thread is exiting: tells the owners, marks the thread dead and gives its index back.
    fn exit(&self) {
        let index = self.index.replace(UNASSIGNED);
        if index >= DEAD {
            return;
        }
        // The owners empty this thread's blocks while the index is still ours.
        let hooks = self
            .hooks
            .try_borrow_mut()
            .map(|mut h| std::mem::take(&mut *h));
        for hook in hooks.unwrap_or_default() {
            if let Some(owner) = hook.upgrade() {
                owner.thread_exit(index);
            }
        }
        // Mark the thread dead *before* giving the index back: an owner used later in this thread's exit (from
        // another thread-local's destructor) must not touch the blocks of `index`, which another thread may own
        // by then. `INDEX` has no destructor, so it is still there.
        let _ = INDEX.try_with(|i| i.set(DEAD));
        lock(&REGISTRY).release(index);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Loom runs thread-local destructors outside its execution, where its mutex cannot be taken: its models
        // end each thread with `exit_for_loom`, which runs this same `exit`.
        #[cfg(not(otlp_loom))]
        self.exit();
    }
}

/// Loom models: what a thread's exit does (tell the owners, give the index back), run at the end of a model
/// thread, since loom runs thread-local destructors where the registry's loom mutex cannot be taken.
#[cfg(otlp_loom)]
#[doc(hidden)]
pub fn exit_for_loom() {
    let _ = HOLDER.try_with(Holder::exit);
}

/// This thread's index, or [`UNASSIGNED`] / [`DEAD`]. One thread-local load.
#[inline(always)]
pub fn current() -> usize {
    INDEX.try_with(Cell::get).unwrap_or(DEAD)
}

/// This thread's index, assigning one on first use; [`DEAD`] once the thread is exiting.
#[cold]
pub fn current_or_assign() -> usize {
    let index = current();
    if index != UNASSIGNED {
        return index;
    }
    // Take the index inside the holder's initialisation, so that an index is only ever handed to a thread whose
    // holder will give it back. `try_with` fails once the holder was destroyed (the thread is exiting).
    let index = HOLDER
        .try_with(|holder| {
            let index = lock(&REGISTRY).acquire();
            holder.index.set(index);
            index
        })
        .unwrap_or(DEAD);
    let _ = INDEX.try_with(|i| i.set(index));
    index
}

/// Asks for `owner.thread_exit(index)` when this thread exits, before its index goes to another thread. Returns
/// `false` (and registers nothing) if this thread has no index (call [`current_or_assign`] first) or is exiting.
///
/// Call it once per owner and thread index (owners remember whether the thread at an index registered).
pub fn at_exit(owner: Weak<dyn ThreadExit>) -> bool {
    if current() >= DEAD {
        return false;
    }
    HOLDER
        .try_with(|holder| {
            let Ok(mut hooks) = holder.hooks.try_borrow_mut() else {
                return false;
            };
            if hooks.len() >= holder.prune_at.get() {
                hooks.retain(|hook| hook.strong_count() > 0);
                holder.prune_at.set((hooks.len() * 2).max(8));
            }
            hooks.push(owner);
            true
        })
        .unwrap_or(false)
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn registry_reuses_the_smallest_given_back_index_first() {
        let _serial = crate::serial();
        let mut r = Registry::new();
        assert_eq!((r.acquire(), r.acquire(), r.acquire()), (0, 1, 2));
        r.release(0);
        r.release(2);
        r.release(1);
        assert_eq!(r.acquire(), 0);
        assert_eq!(r.acquire(), 1);
        assert_eq!(r.acquire(), 2);
        assert_eq!(r.acquire(), 3);
    }

    #[test]
    fn a_thread_keeps_its_index_and_gives_it_back_on_exit() {
        let _serial = crate::serial();
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
        assert!(
            lock(&REGISTRY).free.iter().any(|&Reverse(i)| i == index),
            "index {index} given back at exit"
        );
    }

    struct Seen(AtomicUsize, AtomicUsize);

    impl ThreadExit for Seen {
        fn thread_exit(&self, index: usize) {
            // The exiting thread still holds its index while owners are told.
            assert_eq!(current(), index);
            self.0.store(index, Ordering::Relaxed);
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn owners_hear_of_a_thread_exit_while_it_holds_its_index() {
        let _serial = crate::serial();
        let seen = Arc::new(Seen(AtomicUsize::new(UNASSIGNED), AtomicUsize::new(0)));
        let dropped = Arc::new(Seen(AtomicUsize::new(UNASSIGNED), AtomicUsize::new(0)));
        let hook: Arc<dyn ThreadExit> = seen.clone();
        let gone: Arc<dyn ThreadExit> = dropped.clone();
        let (hook, gone) = (Arc::downgrade(&hook), Arc::downgrade(&gone));
        drop(dropped);
        let index = std::thread::spawn(move || {
            assert!(!at_exit(hook.clone()), "no index yet");
            let index = current_or_assign();
            assert!(at_exit(hook));
            assert!(at_exit(gone)); // its owner is gone: never called
            index
        })
        .join()
        .unwrap();
        assert_eq!(seen.0.load(Ordering::Relaxed), index);
        assert_eq!(seen.1.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn hooks_of_dropped_owners_are_pruned() {
        let _serial = crate::serial();
        std::thread::spawn(|| {
            current_or_assign();
            for _ in 0..100 {
                let owner: Arc<dyn ThreadExit> =
                    Arc::new(Seen(AtomicUsize::new(0), AtomicUsize::new(0)));
                assert!(at_exit(Arc::downgrade(&owner)));
            }
            HOLDER.with(|h| assert!(h.hooks.borrow().len() <= 16, "{}", h.hooks.borrow().len()));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_exiting_thread_is_dead_after_giving_its_index_back() {
        let _serial = crate::serial();
        struct Late(Cell<usize>);
        impl Drop for Late {
            fn drop(&mut self) {
                // Runs after the holder's destructor (registered later, destroyed first): no index any more.
                assert_eq!(current(), DEAD);
                assert_eq!(current_or_assign(), DEAD);
                self.0.set(0);
            }
        }
        std::thread_local! {
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
