//! How a task (or an item) ended, and cheap counters of outcomes.
//!
//! Every task submitted to a [`WorkerPool`](crate::WorkerPool), every item given to a [`FanOut`](crate::FanOut)
//! or a [`Pipeline`](crate::Pipeline) ends up counted as exactly one [`Outcome`], so that
//! `submitted = ok + error + panic + timeout + cancelled + rejected` always holds once the work is over.

use crate::sync::{AtomicU64, Ordering};

/// How one task or item ended. Its [`as_str`](Outcome::as_str) is the `outcome` attribute of the
/// `worker_pool.tasks`, `fan_out.tasks` and `pipeline.items` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// It ran to completion and returned `Ok`.
    Ok,
    /// It ran to completion and returned `Err`.
    Error,
    /// It panicked; the panic was caught.
    Panic,
    /// It did not finish before its deadline.
    Timeout,
    /// It was cancelled (shutdown, a cancelled token, fail-fast, or its owner was dropped) before it finished.
    Cancelled,
    /// It was never accepted (queue full or closed).
    Rejected,
}

impl Outcome {
    /// Every outcome, in the order of the counters.
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Panic,
        Outcome::Timeout,
        Outcome::Cancelled,
        Outcome::Rejected,
    ];

    /// The outcomes a fan-out item or a pipeline item can have (they have no deadline and no queue to reject).
    pub(crate) const ITEM: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Panic,
        Outcome::Cancelled,
    ];

    /// The value of the `outcome` metric attribute: `ok`, `error`, `panic`, `timeout`, `cancelled` or `rejected`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Panic => "panic",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One relaxed atomic counter per [`Outcome`]. Padded to its own cache lines so that shards written by
/// different threads do not share a line.
#[derive(Debug)]
#[repr(align(128))]
#[doc(hidden)]
pub struct OutcomeCounters {
    counts: [AtomicU64; 6],
}

impl Default for OutcomeCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl OutcomeCounters {
    /// All counters at zero.
    pub fn new() -> Self {
        Self {
            counts: [
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
            ],
        }
    }

    /// Counts `n` more of `outcome`.
    #[inline]
    pub fn add(&self, outcome: Outcome, n: u64) {
        self.counts[outcome.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// The count of `outcome` so far.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counts[outcome.index()].load(Ordering::Relaxed)
    }

    /// The counts of every outcome, in [`Outcome::ALL`] order.
    pub fn snapshot(&self) -> [u64; 6] {
        Outcome::ALL.map(|o| self.get(o))
    }
}

/// Sums the snapshots of several counter sets.
pub(crate) fn sum<'a>(sets: impl IntoIterator<Item = &'a OutcomeCounters>) -> [u64; 6] {
    let mut total = [0u64; 6];
    for set in sets {
        for (t, v) in total.iter_mut().zip(set.snapshot()) {
            *t = t.wrapping_add(v);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_sum() {
        let a = OutcomeCounters::new();
        let b = OutcomeCounters::new();
        a.add(Outcome::Ok, 2);
        b.add(Outcome::Ok, 1);
        b.add(Outcome::Rejected, 3);
        assert_eq!(sum([&a, &b]), [3, 0, 0, 0, 0, 3]);
        assert_eq!(
            Outcome::ALL.map(Outcome::as_str),
            ["ok", "error", "panic", "timeout", "cancelled", "rejected"]
        );
    }
}
