//! Which worker slots of a pool have a live worker, and how many workers are wanted: the part of
//! [`WorkerPool::resize`](crate::WorkerPool::resize) that must never put two workers in one slot (they would share
//! its counters) nor leave a wanted slot empty.
//!
//! The wanted count is an atomic that every worker reads before each task (one load; it is almost always below
//! its index, so the lock is not touched). A worker at or above it takes the lock, reads it again, and only then
//! frees its slot and exits; `resize` stores the new count and starts workers in the free slots below it under the
//! same lock. So a shrink followed at once by a grow either keeps the worker (it read the new count) or starts a
//! new one in the slot it freed, never both and never neither. `tests/loom.rs` checks this.

use crate::sync::{AtomicUsize, Mutex, Ordering, lock};

/// The slots of a pool's workers; see the module docs.
#[derive(Debug)]
#[doc(hidden)]
pub struct Roster {
    /// Workers wanted: those with an index at or above it retire.
    target: AtomicUsize,
    /// Which slots have a live worker (or one about to start).
    running: Mutex<Vec<bool>>,
}

impl Roster {
    /// `max` empty slots and a target of 0: call [`resize`](Self::resize) to get the first workers' slots.
    pub fn new(max: usize) -> Self {
        Roster {
            target: AtomicUsize::new(0),
            running: Mutex::new(vec![false; max]),
        }
    }

    /// The number of slots.
    pub fn max(&self) -> usize {
        lock(&self.running).len()
    }

    /// Workers wanted now.
    pub fn target(&self) -> usize {
        self.target.load(Ordering::SeqCst)
    }

    /// Sets the target to `n` (at most [`max`](Self::max)) and returns the previous one and the free slots below
    /// `n`, now marked live: the caller starts a worker in each (or gives the slot back with
    /// [`vacate`](Self::vacate)).
    pub fn resize(&self, n: usize) -> (usize, Vec<usize>) {
        let mut running = lock(&self.running);
        let n = n.min(running.len());
        // SeqCst: a worker that still reads the old target has not yet passed its check, and will check again.
        let before = self.target.swap(n, Ordering::SeqCst);
        let mut start = Vec::new();
        for (index, live) in running.iter_mut().enumerate().take(n) {
            if !*live {
                *live = true;
                start.push(index);
            }
        }
        (before, start)
    }

    /// Whether the worker in slot `index` must exit now; if so its slot is free from now on.
    pub fn retire(&self, index: usize) -> bool {
        if index < self.target.load(Ordering::SeqCst) {
            return false;
        }
        let mut running = lock(&self.running);
        if index < self.target.load(Ordering::SeqCst) {
            return false;
        }
        if let Some(live) = running.get_mut(index) {
            *live = false;
        }
        true
    }

    /// Frees slot `index` whose worker could not be started.
    pub fn vacate(&self, index: usize) {
        if let Some(live) = lock(&self.running).get_mut(index) {
            *live = false;
        }
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;

    #[test]
    fn grow_shrink_and_retire() {
        let r = Roster::new(3);
        assert_eq!(r.resize(2), (0, vec![0, 1]));
        assert!(!r.retire(1));
        assert_eq!(r.resize(1), (2, vec![]));
        assert!(!r.retire(0));
        assert!(r.retire(1));
        // Slot 1 is free again: growing starts a worker there, and only there.
        assert_eq!(r.resize(3), (1, vec![1, 2]));
        assert_eq!(r.resize(9), (3, vec![]), "capped at max");
        assert_eq!(r.target(), 3);
        r.vacate(2);
        assert_eq!(r.resize(3), (3, vec![2]));
    }
}
