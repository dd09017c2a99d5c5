//! Per-thread event counters: the only bookkeeping on the owners' fast paths.
//!
//! A [`CounterBlock`] is `N` `AtomicU64`s with one writer at a time: its thread bumps it with a relaxed load and a
//! relaxed store ([`CounterBlock::add_owned`]): no locked instruction, no shared cache line. A block that several
//! threads write takes atomic adds ([`CounterBlock::add_shared`]). Readers sum blocks with relaxed loads.
//!
//! [`Counters`] puts one (cache-line padded) block per thread in a [`PerThread`], plus one shared block for the
//! threads without one (beyond its slots, or exiting). otlp-pool keeps its blocks inside its per-thread caches
//! instead, next to what the same operations touch.
//!
//! The protocol: a block is written only by the thread that owns it (a dead thread's index, and with it its
//! blocks, goes to a later thread only after the first has exited, through a mutex that orders the two), so no add
//! is lost; the shared block takes atomic adds; blocks are never reset or freed while the owner lives, so a sum
//! read after all adds have happened-before it is exact, and successive sums read by one thread never go backwards
//! (each block only grows, and coherence orders a thread's loads of one atomic). Counts of threads that have exited
//! stay in their blocks. `tests/loom.rs` checks this.

use std::fmt;

use crate::per_thread::PerThread;
use crate::sync::{AtomicU64, Ordering};

/// How many threads get a block of their own in a [`Counters`] by default: 64 slots of 8 bytes (the blocks
/// themselves are created on a thread's first use).
pub const OWN_BLOCKS: usize = 64;

/// `N` counters written by one thread at a time, read by any.
pub struct CounterBlock<const N: usize> {
    cells: [AtomicU64; N],
}

impl<const N: usize> Default for CounterBlock<N> {
    fn default() -> Self {
        CounterBlock::new()
    }
}

impl<const N: usize> CounterBlock<N> {
    /// A block at zero.
    pub fn new() -> Self {
        CounterBlock {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Adds `n` to counter `which` (an index below `N`; others are ignored). Only for the block's one writer
    /// (its thread): a relaxed load and store, which another writer could interleave with and lose an add.
    #[inline(always)]
    pub fn add_owned(&self, which: usize, n: u64) {
        if let Some(cell) = self.cells.get(which) {
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    /// Adds `n` to counter `which` of a block that several threads write: an atomic add.
    #[inline]
    pub fn add_shared(&self, which: usize, n: u64) {
        if let Some(cell) = self.cells.get(which) {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The current value of counter `which` (0 for an index out of range).
    pub fn get(&self, which: usize) -> u64 {
        self.cells
            .get(which)
            .map_or(0, |cell| cell.load(Ordering::Relaxed))
    }

    /// Adds this block's counters to `totals`.
    pub fn add_to(&self, totals: &mut [u64; N]) {
        for (total, cell) in totals.iter_mut().zip(&self.cells) {
            *total = total.wrapping_add(cell.load(Ordering::Relaxed));
        }
    }

    /// The block's current values.
    pub fn snapshot(&self) -> [u64; N] {
        let mut totals = [0; N];
        self.add_to(&mut totals);
        totals
    }
}

impl<const N: usize> fmt::Debug for CounterBlock<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CounterBlock")
            .field(&self.snapshot())
            .finish()
    }
}

/// Keeps a block on cache lines of its own, so that two threads' blocks never share one.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded<T>(T);

/// `N` counters, one block per thread (for the first `SLOTS` thread indices) plus one shared block.
///
/// ```
/// use otlp_core::Counters;
/// use std::sync::Arc;
///
/// const HITS: usize = 0;
/// let counters: Arc<Counters<2>> = Arc::new(Counters::new());
/// let c = counters.clone();
/// std::thread::spawn(move || c.incr(HITS)).join().unwrap();
/// counters.add(HITS, 2);
/// assert_eq!(counters.snapshot(), [3, 0]);
/// ```
pub struct Counters<const N: usize, const SLOTS: usize = OWN_BLOCKS> {
    blocks: PerThread<Padded<CounterBlock<N>>, SLOTS>,
    /// For threads without a block of their own.
    shared: Padded<CounterBlock<N>>,
}

impl<const N: usize, const SLOTS: usize> Default for Counters<N, SLOTS> {
    fn default() -> Self {
        Counters::new()
    }
}

impl<const N: usize, const SLOTS: usize> Counters<N, SLOTS> {
    /// Counters at zero.
    pub fn new() -> Self {
        Counters {
            blocks: PerThread::new(Padded::default),
            shared: Padded::default(),
        }
    }

    /// Adds `n` to counter `which` (an index below `N`; others are ignored) in this thread's block.
    #[inline]
    pub fn add(&self, which: usize, n: u64) {
        match self.blocks.get() {
            Some(block) => block.0.add_owned(which, n),
            None => self.add_shared(which, n),
        }
    }

    #[cold]
    #[inline(never)]
    fn add_shared(&self, which: usize, n: u64) {
        self.shared.0.add_shared(which, n);
    }

    /// Adds one to counter `which`.
    #[inline]
    pub fn incr(&self, which: usize) {
        self.add(which, 1);
    }

    /// The current totals of all counters.
    pub fn snapshot(&self) -> [u64; N] {
        let mut totals = [0u64; N];
        self.blocks.for_each(|block| block.0.add_to(&mut totals));
        self.shared.0.add_to(&mut totals);
        totals
    }
}

impl<const N: usize, const SLOTS: usize> fmt::Debug for Counters<N, SLOTS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counters")
            .field("totals", &self.snapshot())
            .finish()
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn sums_across_threads() {
        let _serial = crate::serial();
        let threads = if cfg!(miri) { 2 } else { 4 };
        let per_thread = if cfg!(miri) { 20 } else { 10_000 };
        let c = Arc::new(Counters::<3>::new());
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..per_thread {
                        c.incr(t % 3);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let total: u64 = c.snapshot().iter().sum();
        assert_eq!(total, threads as u64 * per_thread);
    }

    #[test]
    fn threads_without_a_block_of_their_own_are_counted() {
        let _serial = crate::serial();
        // More live threads than blocks: the extra ones share the atomic block.
        const SLOTS: usize = 2;
        let threads = SLOTS + 3;
        let c = Arc::new(Counters::<2, SLOTS>::new());
        let all_started = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (c, all_started) = (c.clone(), all_started.clone());
                std::thread::spawn(move || {
                    // Keep every thread alive until all have an index, so that none is recycled.
                    crate::thread_index::current_or_assign();
                    all_started.wait();
                    c.incr(1);
                    c.add(1, 2);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.snapshot(), [0, 3 * threads as u64]);
        assert!(c.shared.0.get(1) > 0, "some thread had no block of its own");
    }

    #[test]
    fn counting_from_an_exiting_thread_is_not_lost() {
        let _serial = crate::serial();
        struct Late(Arc<Counters<1>>);
        impl Drop for Late {
            fn drop(&mut self) {
                // Runs after the thread gave its index back: the shared block takes the count.
                self.0.incr(0);
            }
        }
        std::thread_local! {
            static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
        }
        let c = Arc::new(Counters::<1>::new());
        let c2 = c.clone();
        std::thread::spawn(move || {
            LATE.with(|l| *l.borrow_mut() = Some(Late(c2.clone()))); // registered before the index holder
            c2.incr(0);
        })
        .join()
        .unwrap();
        assert_eq!(c.snapshot(), [2]);
        assert_eq!(c.shared.0.get(0), 1);
    }

    #[test]
    fn out_of_range_index_is_ignored() {
        let _serial = crate::serial();
        let c = Counters::<1>::new();
        c.incr(5);
        assert_eq!(c.snapshot(), [0]);
        let block = CounterBlock::<1>::new();
        block.add_owned(1, 1);
        block.add_shared(1, 1);
        assert_eq!((block.snapshot(), block.get(1)), ([0], 0));
    }

    #[test]
    fn owners_are_send_and_sync() {
        let _serial = crate::serial();
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Counters<3>>();
        send_sync::<CounterBlock<3>>();
        send_sync::<PerThread<std::sync::atomic::AtomicU64, 4>>();
    }
}
