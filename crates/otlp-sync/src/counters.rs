//! Per-thread event counters: the only bookkeeping on the fast paths.
//!
//! Each owner (a semaphore, a rate limiter) holds one cache-line-padded block of `N` `AtomicU64`s per thread that
//! touched it (`PerThread`, indexed by the thread's recycled index). A block has one writer at a time, its thread,
//! so a bump is a relaxed load and a relaxed store: no locked instruction, no shared cache line. Threads beyond the
//! per-owner blocks share one more block and bump it with atomic adds. Readers (`stats()`, the OpenTelemetry
//! callbacks) sum the blocks with relaxed loads.
//!
//! The protocol: a block is written only by the thread that owns it (a dead thread's index, and with it its
//! blocks, goes to a later thread only after the first has exited, through a mutex that orders the two), so no add
//! is lost; the shared block takes atomic adds; blocks are
//! never reset or freed while the owner lives, so a sum read after all adds have happened-before it is exact, and
//! successive sums read by one thread never go backwards (each block only grows, and coherence orders a thread's
//! loads of one atomic). Counts of threads that have exited stay in their blocks. `tests/loom.rs` checks this.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, AtomicUsize, Ordering, PerThread};

/// `N` counters, one block per thread.
pub struct Counters<const N: usize> {
    blocks: PerThread<CachePadded<[AtomicU64; N]>>,
    /// For threads without a block of their own.
    shared: CachePadded<[AtomicU64; N]>,
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Counters::new()
    }
}

impl<const N: usize> Counters<N> {
    /// Counters at zero.
    pub fn new() -> Self {
        Counters {
            blocks: PerThread::new(zeros),
            shared: zeros(),
        }
    }

    /// Adds `n` to counter `which` (an index below `N`; others are ignored) in this thread's block.
    #[inline]
    pub fn add(&self, which: usize, n: u64) {
        match self.blocks.get() {
            Some(block) => {
                if let Some(counter) = block.get(which) {
                    // Only this thread writes this block: load + store is an atomic add here, without a locked
                    // instruction.
                    counter.store(
                        counter.load(Ordering::Relaxed).wrapping_add(n),
                        Ordering::Relaxed,
                    );
                }
            }
            None => self.add_shared(which, n),
        }
    }

    #[cold]
    #[inline(never)]
    fn add_shared(&self, which: usize, n: u64) {
        if let Some(counter) = self.shared.get(which) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds one to counter `which`.
    #[inline]
    pub fn incr(&self, which: usize) {
        self.add(which, 1);
    }

    /// The current totals of all counters.
    pub fn snapshot(&self) -> [u64; N] {
        let mut out = [0u64; N];
        let mut sum = |block: &[AtomicU64; N]| {
            for (total, c) in out.iter_mut().zip(block.iter()) {
                *total = total.wrapping_add(c.load(Ordering::Relaxed));
            }
        };
        self.blocks.for_each(|block| sum(block));
        sum(&self.shared);
        out
    }
}

fn zeros<const N: usize>() -> CachePadded<[AtomicU64; N]> {
    CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0)))
}

impl<const N: usize> std::fmt::Debug for Counters<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("totals", &self.snapshot())
            .finish()
    }
}

/// A gauge of how many are in some state right now (waiters): incremented and decremented on paths that already
/// wait, so one shared atomic is cheap enough.
pub struct Gauge(CachePadded<AtomicUsize>);

impl Default for Gauge {
    fn default() -> Self {
        Gauge::new()
    }
}

impl Gauge {
    /// A gauge at zero.
    pub fn new() -> Self {
        Gauge(CachePadded::new(AtomicUsize::new(0)))
    }

    /// One more.
    #[inline]
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer.
    #[inline]
    pub fn decr(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gauge").field(&self.get()).finish()
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;

    #[test]
    fn sums_across_threads() {
        let threads = if cfg!(miri) { 2 } else { 4 };
        let per_thread = if cfg!(miri) { 20 } else { 10_000 };
        let c = std::sync::Arc::new(Counters::<3>::new());
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
        // More live threads than per-owner blocks: the extra ones share the atomic block.
        let threads = crate::sync::OWN_BLOCKS + 3;
        let c = std::sync::Arc::new(Counters::<2>::new());
        let all_started = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (c, all_started) = (c.clone(), all_started.clone());
                std::thread::spawn(move || {
                    // Keep every thread alive until all have an index, so that none is recycled.
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
    }

    #[test]
    fn counting_from_an_exiting_thread_is_not_lost() {
        struct Late(std::sync::Arc<Counters<1>>);
        impl Drop for Late {
            fn drop(&mut self) {
                // Runs after the thread gave its index back: the shared block takes the count.
                self.0.incr(0);
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
        }
        let c = std::sync::Arc::new(Counters::<1>::new());
        let c2 = c.clone();
        std::thread::spawn(move || {
            LATE.with(|l| *l.borrow_mut() = Some(Late(c2.clone()))); // registered before the index holder
            c2.incr(0);
        })
        .join()
        .unwrap();
        assert_eq!(c.snapshot(), [2]);
    }

    #[test]
    fn out_of_range_index_is_ignored() {
        let c = Counters::<1>::new();
        c.incr(5);
        assert_eq!(c.snapshot(), [0]);
    }

    #[test]
    fn gauge_up_and_down() {
        let g = Gauge::new();
        g.incr();
        g.incr();
        g.decr();
        assert_eq!(g.get(), 1);
    }
}
