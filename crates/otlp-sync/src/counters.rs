//! The owners' bookkeeping: per-thread event counters ([`Counters`], from `otlp-core`, where they are loom-checked)
//! and a gauge of how many are in some state right now.

use crossbeam_utils::CachePadded;

pub(crate) use otlp_core::Counters;

use crate::sync::{AtomicUsize, Ordering};

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
    fn gauge_up_and_down() {
        let g = Gauge::new();
        g.incr();
        g.incr();
        g.decr();
        assert_eq!(g.get(), 1);
    }
}
