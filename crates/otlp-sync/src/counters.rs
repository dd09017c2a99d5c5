//! Sharded event counters: the only bookkeeping on the fast paths.
//!
//! Each owner (a semaphore, a rate limiter) holds `S` cache-line-padded shards of `N` `AtomicU64`s. A thread picks
//! its shard once (round-robin, remembered in a thread-local) and bumps it with one relaxed `fetch_add`, so
//! threads do not fight over one cache line. Readers (`stats()`, the OpenTelemetry callbacks) sum the shards.
//!
//! The protocol: every add lands in exactly one shard and shards are never reset, so a sum read after all adds
//! have happened-before it is exact, and successive sums read by one thread never go backwards (each shard only
//! grows, and coherence orders a thread's loads of one atomic). `tests/loom.rs` checks both.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, AtomicUsize, Ordering, shard_slot};

/// The most shards an owner gets; more would only cost memory.
const MAX_SHARDS: usize = 64;

/// `N` sharded counters.
pub struct Counters<const N: usize> {
    shards: Box<[CachePadded<[AtomicU64; N]>]>,
    mask: usize,
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Counters::new()
    }
}

impl<const N: usize> Counters<N> {
    /// Counters with one shard per two hardware threads' worth of slots (rounded to a power of two).
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self::with_shards(threads.saturating_mul(2))
    }

    /// Counters with `shards` shards, rounded up to a power of two and capped at 64.
    pub fn with_shards(shards: usize) -> Self {
        let shards = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let shards: Box<[CachePadded<[AtomicU64; N]>]> = (0..shards)
            .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        let mask = shards.len() - 1;
        Counters { shards, mask }
    }

    /// Adds `n` to counter `which` (an index below `N`) in this thread's shard.
    #[inline]
    pub fn add(&self, which: usize, n: u64) {
        let shard = &self.shards[shard_slot() & self.mask];
        if let Some(counter) = shard.get(which) {
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
        for shard in self.shards.iter() {
            for (total, c) in out.iter_mut().zip(shard.iter()) {
                *total = total.wrapping_add(c.load(Ordering::Relaxed));
            }
        }
        out
    }
}

impl<const N: usize> std::fmt::Debug for Counters<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("shards", &self.shards.len())
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
        let c = std::sync::Arc::new(Counters::<3>::with_shards(2));
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
    fn out_of_range_index_is_ignored() {
        let c = Counters::<1>::with_shards(1);
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
