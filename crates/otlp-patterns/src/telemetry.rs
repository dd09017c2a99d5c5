//! Instrument plumbing shared by the three patterns: the instrumentation scope, duration histograms in seconds,
//! and observable outcome counters.

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::metrics::{BoundHistogram, Meter};
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::Outcome;
use crate::sync::{AtomicU64, Ordering};

/// The crate's meter: scope `otlp-patterns` with the crate's version, from the global meter provider.
pub(crate) fn default_meter() -> Meter {
    let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    opentelemetry::global::meter_with_scope(scope)
}

/// Bucket boundaries (seconds) for task durations: from 10 µs to 10 s.
const DURATION_BOUNDARIES: [f64; 16] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A histogram named `name` in seconds, bound to `attrs`: a record is then one SDK update without hashing the
/// attributes (~21 ns, against 76–118 ns with an attribute slice).
pub(crate) fn duration_histogram(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    attrs: &[KeyValue],
) -> BoundHistogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(DURATION_BOUNDARIES.to_vec())
        .build()
        .bind(attrs)
}

/// Durations of at least this many nanoseconds (about 18 minutes) bypass the buffer.
const BUFFERED_BELOW_NANOS: u64 = 1 << 40;
/// Sub-buckets per power of two: a buffered duration is replayed within 1/16 (6.25 %) of its value.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Exact buckets for 0..SUB ns, then SUB per power of two from SUB ns up to `BUFFERED_BELOW_NANOS`.
const BUCKETS: usize = (SUB + (40 - SUB_BITS as u64) * SUB) as usize;

/// A lock-free local log-linear histogram of durations in nanoseconds, for the per-task and per-item paths: one
/// relaxed atomic add instead of an OpenTelemetry record (a lock in the SDK, ~21 ns bound). The owner moves the
/// counts into its OTel histogram off the hot path, at each export (from its observable counter's callback) and
/// when dropped, replaying each buffered duration as its bucket's midpoint: no data point is lost, and each keeps
/// its value to within 1/16.
#[derive(Debug)]
pub(crate) struct DurationBuffer {
    buckets: Box<[AtomicU64]>,
}

impl Default for DurationBuffer {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl DurationBuffer {
    /// Buffers `d`; a duration too long for the buffer is recorded in `hist` at once.
    #[inline]
    pub(crate) fn record(&self, d: Duration, hist: &BoundHistogram<f64>) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match self.buckets.get(bucket_of(nanos)) {
            Some(b) if nanos < BUFFERED_BELOW_NANOS => {
                b.fetch_add(1, Ordering::Relaxed);
            }
            _ => hist.record(secs(d)),
        }
    }

    /// Moves every buffered duration into `hist`.
    pub(crate) fn flush(&self, hist: &BoundHistogram<f64>) {
        for (i, b) in self.buckets.iter().enumerate() {
            if b.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let n = b.swap(0, Ordering::Relaxed);
            let value = midpoint_secs(i);
            for _ in 0..n {
                hist.record(value);
            }
        }
    }
}

/// The bucket of a duration of `nanos` ns (below `BUFFERED_BELOW_NANOS`).
#[inline]
fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB {
        return nanos as usize;
    }
    let msb = 63 - nanos.leading_zeros();
    let sub = (nanos >> (msb - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(msb - SUB_BITS) * SUB + sub) as usize
}

/// The middle of bucket `i`, in seconds.
fn midpoint_secs(i: usize) -> f64 {
    let i = i as u64;
    let nanos = if i < SUB {
        i as f64
    } else {
        let shift = (i - SUB) / SUB;
        let sub = (i - SUB) % SUB;
        let low = (SUB + sub) << shift;
        let width = 1u64 << shift;
        low as f64 + (width - 1) as f64 / 2.0
    };
    nanos / 1e9
}

/// The clock that times fan-out items: `quanta` (the TSC, about 12 ns a read, against 30–50 for
/// `Instant::now()`), one process-wide calibrated clock cloned into each owner. Under `cfg(test)` and miri (which
/// cannot run the TSC instructions) it is `tokio::time::Instant`, so unit tests see tokio's paused time.
///
/// Durations timed with it are real elapsed time: they do not follow tokio's paused clock in tests.
#[derive(Debug, Clone)]
pub(crate) struct Stopwatch {
    #[cfg(not(any(test, miri)))]
    clock: quanta::Clock,
}

/// A reading of a [`Stopwatch`].
#[cfg(not(any(test, miri)))]
pub(crate) type Mark = quanta::Instant;
#[cfg(any(test, miri))]
pub(crate) type Mark = tokio::time::Instant;

impl Stopwatch {
    pub(crate) fn new() -> Self {
        #[cfg(not(any(test, miri)))]
        {
            // Calibrating a clock takes a while: once per process, at build time rather than on a first item.
            static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
            Stopwatch {
                clock: CLOCK.get_or_init(quanta::Clock::new).clone(),
            }
        }
        #[cfg(any(test, miri))]
        Stopwatch {}
    }

    #[inline]
    pub(crate) fn now(&self) -> Mark {
        #[cfg(not(any(test, miri)))]
        return self.clock.now();
        #[cfg(any(test, miri))]
        return tokio::time::Instant::now();
    }
}

/// Seconds as `f64`.
#[inline]
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Registers an observable counter `name` (`unit`) reporting one data point per outcome in `outcomes` (the ones
/// the instrument documents: a fan-out item cannot time out, so it exports no `timeout` series), each with `attrs`
/// plus `outcome`. At export, `flush` is called with the owner first (to move its buffered durations into their
/// histograms: the SDK runs every callback before it collects the aggregations, so they are in this export),
/// then `read`; the owner is held weakly so that the callback, which the SDK keeps for the provider's lifetime,
/// does not keep a dropped owner alive.
#[allow(clippy::too_many_arguments)]
pub(crate) fn outcome_counter<S: Send + Sync + 'static>(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    owner: &Arc<S>,
    attrs: &[KeyValue],
    outcomes: &'static [Outcome],
    read: fn(&S) -> [u64; 6],
    flush: fn(&S),
) -> opentelemetry::metrics::ObservableCounter<u64> {
    let weak: Weak<S> = Arc::downgrade(owner);
    let per_outcome: Vec<(usize, Vec<KeyValue>)> = outcomes
        .iter()
        .map(|o| {
            let mut a = attrs.to_vec();
            a.push(KeyValue::new("outcome", o.as_str()));
            (o.index(), a)
        })
        .collect();
    meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |obs| {
            if let Some(owner) = weak.upgrade() {
                flush(&owner);
                let counts = read(&owner);
                for (index, attrs) in &per_outcome {
                    obs.observe(counts[*index], attrs);
                }
            }
        })
        .build()
}

/// Registers an observable up-down counter `name` (`unit`) reading `read(owner)` with `attrs`; the owner is held
/// weakly. For quantities that add up across owners (queue lengths, workers), which semantic conventions model as
/// up-down counters rather than gauges.
pub(crate) fn up_down<S: Send + Sync + 'static>(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    owner: &Arc<S>,
    attrs: Vec<KeyValue>,
    read: impl Fn(&S) -> u64 + Send + Sync + 'static,
) -> opentelemetry::metrics::ObservableUpDownCounter<i64> {
    let weak: Weak<S> = Arc::downgrade(owner);
    meter
        .i64_observable_up_down_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |obs| {
            if let Some(owner) = weak.upgrade() {
                obs.observe(i64::try_from(read(&owner)).unwrap_or(i64::MAX), &attrs);
            }
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_and_midpoints_stay_close() {
        let mut last = 0;
        let mut nanos = 0u64;
        while nanos < BUFFERED_BELOW_NANOS {
            let b = bucket_of(nanos);
            assert!(b < BUCKETS, "{nanos} -> {b}");
            assert!(b >= last, "buckets grow with the value");
            last = b;
            let mid = midpoint_secs(b) * 1e9;
            let err = (mid - nanos as f64).abs();
            assert!(
                err <= nanos as f64 / 16.0 + 0.5,
                "{nanos} ns replayed as {mid}"
            );
            nanos = if cfg!(miri) {
                nanos * 5 + 1
            } else {
                nanos + 1 + nanos / 97
            };
        }
        assert_eq!(bucket_of(BUFFERED_BELOW_NANOS - 1), BUCKETS - 1);
    }
}
