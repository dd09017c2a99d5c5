//! An adaptive concurrency limit: a [`Semaphore`] whose limit follows the downstream's latency and errors
//! (Netflix's `concurrency-limits`: [`Gradient2`] by default, [`Aimd`] and [`Vegas`] available).
//!
//! Acquire a permit before calling the downstream; when the call ends, the permit reports a sample: dropping it
//! (or [`AdaptivePermit::success`]) reports the round-trip time, [`AdaptivePermit::dropped`] reports an overload
//! (an error or a timeout: AIMD and Vegas cut the limit on it), [`AdaptivePermit::ignore`] reports nothing (the
//! call failed for a reason that says nothing about the downstream's load). The algorithm moves the limit between
//! a minimum and a maximum; the semaphore's permits follow it.
//!
//! ```
//! use otlp_sync::adaptive::AdaptiveLimit;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limit = AdaptiveLimit::builder("search-backend").initial_limit(20).min_limit(2).max_limit(200).build()?;
//!
//! let permit = limit.acquire().await?;
//! let ok = true; // ... call the backend ...
//! if ok { permit.success() } else { permit.dropped() }
//! assert!(limit.limit() >= 2);
//! # Ok(()) }
//! ```
//!
//! # When to use it
//!
//! When the right concurrency for a downstream is not known when you deploy (it depends on its hardware, its
//! other callers, its mood), a static [`Semaphore`] is either too small (wasted capacity) or too large (a queue
//! builds up at the downstream and every request gets slow). The adaptive limit finds the knee where latency
//! starts to grow and stays there, following it when it moves.
//!
//! # Cost
//!
//! Acquire and release are the semaphore's, plus a per-thread tick and two relaxed loads. One request in
//! [`AdaptiveLimitBuilder::sample_every`] (16 by default) per thread is timed (two clock reads) and fed to the
//! algorithm, weighted to stand for the requests not timed, under a lock that is only tried (a sample that
//! finds it taken is counted `skipped`). Drops are always reported.
//!
//! # Telemetry
//!
//! The semaphore is named like the limit, so `semaphore.permit.limit` follows the limit and `semaphore.*` show
//! its permits and waits. Besides: `adaptive_limit.latency` (seconds, attribute `adaptive_limit.estimate` =
//! `sample` | `baseline`: the last sampled round trip and the baseline the algorithm compares it with) and
//! `adaptive_limit.samples` (attribute `outcome` = `success` | `dropped` | `ignored` | `skipped`), with
//! `semaphore.name` and `adaptive_limit.algorithm`. See `docs/metrics.md`.

mod algorithm;

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{Attributes, Observations, Registration, Source};

pub use algorithm::{Aimd, Algorithm, Gradient2, Vegas};
use algorithm::{Sample, State};

use crate::counters::Counters;
use crate::error::{AcquireError, BuildError, TryAcquireError};
use crate::semaphore::{AcquireOptions, OwnedPermit, Permit, Semaphore};
use crate::telemetry::{ADAPTIVE_LIMIT_LATENCY, ADAPTIVE_LIMIT_SAMPLES, INSTRUMENTS, names};

/// How a permit's sample ended; the index of its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum SampleOutcome {
    Success = 0,
    Dropped = 1,
    Ignored = 2,
    Skipped = 3,
}

const SAMPLE_OUTCOMES: [SampleOutcome; 4] = [
    SampleOutcome::Success,
    SampleOutcome::Dropped,
    SampleOutcome::Ignored,
    SampleOutcome::Skipped,
];

impl SampleOutcome {
    fn as_str(self) -> &'static str {
        match self {
            SampleOutcome::Success => "success",
            SampleOutcome::Dropped => "dropped",
            SampleOutcome::Ignored => "ignored",
            SampleOutcome::Skipped => "skipped",
        }
    }
}

/// Builds an [`AdaptiveLimit`].
#[derive(Debug)]
pub struct AdaptiveLimitBuilder {
    name: String,
    algorithm: Algorithm,
    initial: usize,
    min: usize,
    max: usize,
    sample_every: u32,
    meter: Option<Meter>,
    hold: bool,
}

impl AdaptiveLimitBuilder {
    /// The algorithm and its parameters (default: [`Gradient2`] with its defaults).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The limit to start from (default 20, clamped into `[min, max]`).
    pub fn initial_limit(mut self, limit: usize) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest limit (default 1, at least 1).
    pub fn min_limit(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The highest limit (default 1000).
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }

    /// Time one request in `n` per thread (default 16, rounded up to a power of two; 1 = every request). Fewer
    /// samples make acquire + release cheaper; each sample is weighted to stand for `n` requests, so the limit
    /// moves as fast per request, with more noise.
    pub fn sample_every(mut self, n: u32) -> Self {
        self.sample_every = n;
        self
    }

    /// The meter to create instruments from, instead of the global meter provider's `otlp-sync` meter.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Records how long each permit was held in `semaphore.hold.duration`, as
    /// [`SemaphoreBuilder::record_hold_duration`](crate::SemaphoreBuilder::record_hold_duration) does: an
    /// adaptive permit holds a permit of the limit's semaphore (default off).
    pub fn record_hold_duration(mut self, on: bool) -> Self {
        self.hold = on;
        self
    }

    /// Validates the configuration and builds the limit with its semaphore and instruments.
    pub fn build(self) -> Result<AdaptiveLimit, BuildError> {
        let bad = |what: &'static str| BuildError::InvalidAdaptiveLimit {
            name: self.name.clone(),
            what,
        };
        if self.min == 0 {
            return Err(bad("min_limit must be at least 1"));
        }
        if self.max < self.min {
            return Err(bad("max_limit must be at least min_limit"));
        }
        if self.max > Semaphore::MAX_PERMITS {
            return Err(bad("max_limit is above Semaphore::MAX_PERMITS"));
        }
        if self.sample_every == 0 || self.sample_every > 1 << 16 {
            return Err(bad("sample_every must be between 1 and 65536"));
        }
        if let Some(what) = self.algorithm.invalid() {
            return Err(bad(what));
        }
        let initial = self.initial.clamp(self.min, self.max);
        let mut sem = Semaphore::builder(self.name.clone())
            .permits(initial)
            .record_hold_duration(self.hold);
        if let Some(meter) = &self.meter {
            sem = sem.meter(meter.clone());
        }
        let sem = sem.build()?;
        let sample_every = self.sample_every.next_power_of_two();
        let algorithm = self.algorithm;
        let inner = Arc::new(Inner {
            sem,
            target: AtomicUsize::new(initial),
            state: Mutex::new(State::new(algorithm, initial, self.min, self.max)),
            sample_mask: sample_every - 1,
            counters: Counters::new(),
            sample_rtt: AtomicU64::new(0f64.to_bits()),
            baseline_rtt: AtomicU64::new(0f64.to_bits()),
            telemetry: Telemetry::new(self.meter, &self.name, algorithm.name()),
            min: self.min,
            max: self.max,
            algorithm,
        });
        inner.telemetry.link.add(inner.clone());
        Ok(AdaptiveLimit { inner })
    }
}

/// A concurrency limit that follows the downstream; see the [module docs](self).
///
/// Cloning is cheap and gives another handle to the same limit.
#[derive(Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

struct Inner {
    sem: Semaphore,
    /// The limit the algorithm asks for; the semaphore's limit follows (at once when it grows, as held permits
    /// come back when it shrinks).
    target: AtomicUsize,
    state: Mutex<State>,
    sample_mask: u32,
    counters: Counters<4>,
    sample_rtt: AtomicU64,
    baseline_rtt: AtomicU64,
    telemetry: Telemetry,
    min: usize,
    max: usize,
    algorithm: Algorithm,
}

struct Telemetry {
    link: Registration,
    /// `[semaphore.name, adaptive_limit.algorithm, adaptive_limit.estimate]`: sample, baseline.
    latency: [Attributes; 2],
    /// `[semaphore.name, adaptive_limit.algorithm, outcome]` per sample outcome.
    samples: [Attributes; 4],
}

impl Telemetry {
    fn new(meter: Option<Meter>, name: &str, algorithm: &'static str) -> Self {
        let owner = [
            KeyValue::new(names::SEMAPHORE_NAME, name.to_owned()),
            KeyValue::new(names::ADAPTIVE_LIMIT_ALGORITHM, algorithm),
        ];
        let with = |k: &'static str, v: &'static str| {
            let mut a = owner.to_vec();
            a.push(KeyValue::new(k, v));
            Attributes::new(a)
        };
        Telemetry {
            link: INSTRUMENTS.link(meter),
            latency: ["sample", "baseline"].map(|e| with(names::ADAPTIVE_LIMIT_ESTIMATE, e)),
            samples: SAMPLE_OUTCOMES.map(|o| with(names::OUTCOME, o.as_str())),
        }
    }
}

impl Source for Inner {
    fn observe(&self, out: &mut Observations<'_>) {
        let t = &self.telemetry;
        let (sample, baseline) = self.estimates();
        out.observe_f64(ADAPTIVE_LIMIT_LATENCY, sample, &t.latency[0]);
        out.observe_f64(ADAPTIVE_LIMIT_LATENCY, baseline, &t.latency[1]);
        if out.current() == ADAPTIVE_LIMIT_SAMPLES {
            let totals = self.counters.snapshot();
            for (o, attrs) in SAMPLE_OUTCOMES.iter().zip(&t.samples) {
                out.observe(ADAPTIVE_LIMIT_SAMPLES, totals[*o as usize], attrs);
            }
        }
    }
}

thread_local! {
    /// Per-thread request tick: one request in `sample_every` is timed.
    static TICK: Cell<u32> = const { Cell::new(0) };
}

/// What a permit remembers of its request, to report a sample.
#[derive(Debug, Clone, Copy)]
struct Start {
    /// `Some` for a timed request.
    at: Option<tokio::time::Instant>,
    inflight: usize,
}

impl Inner {
    /// Decides whether this request is timed; reads the clock only if so.
    #[inline]
    fn start(&self) -> Start {
        let tick = TICK.with(|t| {
            let v = t.get();
            t.set(v.wrapping_add(1));
            v
        });
        if tick & self.sample_mask == 0 {
            self.start_timed()
        } else {
            Start {
                at: None,
                inflight: 0,
            }
        }
    }

    #[cold]
    fn start_timed(&self) -> Start {
        Start {
            at: Some(tokio::time::Instant::now()),
            inflight: self.sem.limit().saturating_sub(self.sem.available()),
        }
    }

    /// Gives a permit back, or retires it if the limit was cut below the permits held.
    #[inline]
    fn give_back(&self, permit: Permit<'_>) {
        let target = self.target.load(Ordering::Relaxed);
        if self.sem.limit() > target {
            self.sem.retire(permit, target);
        }
    }

    #[inline]
    fn give_back_owned(&self, permit: OwnedPermit) {
        let target = self.target.load(Ordering::Relaxed);
        if self.sem.limit() > target {
            self.sem.retire_owned(permit, target);
        }
    }

    /// Moves the semaphore's limit towards the target: grows at once, shrinks by the permits free now (held ones
    /// retire as they come back). Called with the state locked.
    fn resize(&self) {
        let target = self.target.load(Ordering::Relaxed);
        let limit = self.sem.limit();
        if target > limit {
            // Below MAX_PERMITS: `max` was checked at build.
            let _ = self.sem.add_permits(target - limit);
        } else if target < limit {
            self.sem.forget_permits(limit - target);
        }
    }

    /// Reports how a permit's request ended (called after its permit went back).
    fn finish(&self, start: Start, outcome: SampleOutcome) {
        // A drop's time says nothing of the downstream's latency (a fast error would pull the baseline down).
        let rtt = match outcome {
            SampleOutcome::Success => start.at.map(|at| at.elapsed()),
            _ => None,
        };
        let report = match outcome {
            SampleOutcome::Dropped => true,
            SampleOutcome::Success => rtt.is_some(),
            _ => false,
        };
        if !report {
            if outcome == SampleOutcome::Ignored {
                self.counters.incr(outcome as usize);
            }
            return;
        }
        let inflight = if start.at.is_some() {
            start.inflight
        } else {
            self.sem.limit().saturating_sub(self.sem.available()) + 1
        };
        let Ok(mut state) = self.state.try_lock() else {
            self.counters.incr(SampleOutcome::Skipped as usize);
            return;
        };
        self.counters.incr(outcome as usize);
        let weight = if rtt.is_some() {
            self.sample_mask + 1
        } else {
            1
        };
        let limit = state.update(Sample {
            rtt,
            inflight,
            dropped: outcome == SampleOutcome::Dropped,
            weight,
        });
        let est = state.estimates();
        self.sample_rtt
            .store(est.sample.to_bits(), Ordering::Relaxed);
        self.baseline_rtt
            .store(est.baseline.to_bits(), Ordering::Relaxed);
        self.target.store(limit, Ordering::Relaxed);
        self.resize();
    }

    fn estimates(&self) -> (f64, f64) {
        (
            f64::from_bits(self.sample_rtt.load(Ordering::Relaxed)),
            f64::from_bits(self.baseline_rtt.load(Ordering::Relaxed)),
        )
    }
}

/// A plain snapshot of an adaptive limit ([`AdaptiveLimit::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct AdaptiveLimitStats {
    /// The limit the algorithm asks for now.
    pub limit: usize,
    /// The semaphore's permits now (above `limit` while permits held past a cut have not come back).
    pub permits: usize,
    /// Permits held now.
    pub in_use: usize,
    /// Samples fed to the algorithm as successes.
    pub success: u64,
    /// Samples fed to the algorithm as drops.
    pub dropped: u64,
    /// Permits released with [`AdaptivePermit::ignore`].
    pub ignored: u64,
    /// Timed samples not fed because another thread held the algorithm's lock.
    pub skipped: u64,
    /// The last sampled round trip (seconds; 0 until one is).
    pub sample_rtt: f64,
    /// The baseline the algorithm compares samples with (seconds).
    pub baseline_rtt: f64,
}

impl AdaptiveLimit {
    /// A limit named `name` (the semaphore's `semaphore.name`) with [`Gradient2`], initial limit 20, between 1 and
    /// 1000.
    pub fn new(name: impl Into<String>) -> Result<AdaptiveLimit, BuildError> {
        AdaptiveLimit::builder(name).build()
    }

    /// A builder for the algorithm, the bounds, the sampling and the meter.
    pub fn builder(name: impl Into<String>) -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder {
            name: name.into(),
            algorithm: Algorithm::default(),
            initial: 20,
            min: 1,
            max: 1000,
            sample_every: 16,
            meter: None,
            hold: false,
        }
    }

    /// The limit the algorithm asks for now.
    pub fn limit(&self) -> usize {
        self.inner.target.load(Ordering::Relaxed)
    }

    /// The lowest and highest limit.
    pub fn bounds(&self) -> (usize, usize) {
        (self.inner.min, self.inner.max)
    }

    /// The semaphore under the limit (its `stats()`, `waiting()`, `close()`). Permits taken from it directly
    /// report no samples.
    pub fn semaphore(&self) -> &Semaphore {
        &self.inner.sem
    }

    /// Waits for a permit. Cancel-safe. Fails only if the semaphore is closed.
    pub async fn acquire(&self) -> Result<AdaptivePermit<'_>, AcquireError> {
        let permit = self.inner.sem.acquire().await?;
        Ok(self.wrap(permit))
    }

    /// Waits for a permit within the limits of `opts` (timeout, cancellation). Cancel-safe.
    pub async fn acquire_with(
        &self,
        opts: AcquireOptions<'_>,
    ) -> Result<AdaptivePermit<'_>, AcquireError> {
        let permit = self.inner.sem.acquire_with(1, opts).await?;
        Ok(self.wrap(permit))
    }

    /// Takes a permit if one is free right now.
    #[inline]
    pub fn try_acquire(&self) -> Result<AdaptivePermit<'_>, TryAcquireError> {
        let permit = self.inner.sem.try_acquire()?;
        Ok(self.wrap(permit))
    }

    /// Waits for a permit that keeps the limit alive, for spawned tasks. Cancel-safe.
    pub async fn acquire_owned(&self) -> Result<OwnedAdaptivePermit, AcquireError> {
        self.acquire_owned_with(AcquireOptions::new()).await
    }

    /// Waits for an owned permit within the limits of `opts`. Cancel-safe.
    pub async fn acquire_owned_with(
        &self,
        opts: AcquireOptions<'_>,
    ) -> Result<OwnedAdaptivePermit, AcquireError> {
        let permit = self.inner.sem.acquire_owned_with(1, opts).await?;
        Ok(self.wrap_owned(permit))
    }

    /// Takes an owned permit if one is free right now.
    pub fn try_acquire_owned(&self) -> Result<OwnedAdaptivePermit, TryAcquireError> {
        let permit = self.inner.sem.try_acquire_owned()?;
        Ok(self.wrap_owned(permit))
    }

    #[inline]
    fn wrap<'a>(&'a self, permit: Permit<'a>) -> AdaptivePermit<'a> {
        AdaptivePermit {
            inner: &self.inner,
            permit: Some(permit),
            start: self.inner.start(),
        }
    }

    pub(crate) fn wrap_owned(&self, permit: OwnedPermit) -> OwnedAdaptivePermit {
        OwnedAdaptivePermit {
            inner: Arc::clone(&self.inner),
            permit: Some(permit),
            start: self.inner.start(),
        }
    }

    /// A snapshot of the limit, its permits and its sample counters.
    pub fn stats(&self) -> AdaptiveLimitStats {
        let inner = &*self.inner;
        let c = inner.counters.snapshot();
        let (sample_rtt, baseline_rtt) = inner.estimates();
        let sem = inner.sem.stats();
        AdaptiveLimitStats {
            limit: self.limit(),
            permits: sem.limit,
            in_use: sem.in_use,
            success: c[SampleOutcome::Success as usize],
            dropped: c[SampleOutcome::Dropped as usize],
            ignored: c[SampleOutcome::Ignored as usize],
            skipped: c[SampleOutcome::Skipped as usize],
            sample_rtt,
            baseline_rtt,
        }
    }
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.inner.sem.name())
            .field("algorithm", &self.inner.algorithm)
            .field("limit", &self.limit())
            .field("bounds", &self.bounds())
            .finish()
    }
}

/// A permit of an [`AdaptiveLimit`]. Dropping it reports a success; see [`AdaptivePermit::dropped`] and
/// [`AdaptivePermit::ignore`] for the other endings.
#[must_use = "the permit is given back, and its sample reported, as soon as it is dropped"]
pub struct AdaptivePermit<'a> {
    inner: &'a Arc<Inner>,
    permit: Option<Permit<'a>>,
    start: Start,
}

/// An [`AdaptivePermit`] that keeps its limit alive (`'static`, for spawned tasks).
#[must_use = "the permit is given back, and its sample reported, as soon as it is dropped"]
pub struct OwnedAdaptivePermit {
    inner: Arc<Inner>,
    permit: Option<OwnedPermit>,
    start: Start,
}

macro_rules! permit_endings {
    ($ty:ty, $give_back:ident) => {
        impl $ty {
            /// The request succeeded: report its round-trip time (the same as dropping the permit).
            pub fn success(mut self) {
                self.end(SampleOutcome::Success);
            }

            /// The request failed because the downstream is overloaded (an error, a timeout, a rejection):
            /// AIMD and Vegas cut the limit.
            pub fn dropped(mut self) {
                self.end(SampleOutcome::Dropped);
            }

            /// The request ended in a way that says nothing of the downstream's load (a bad request, a
            /// cancellation): report nothing.
            pub fn ignore(mut self) {
                self.end(SampleOutcome::Ignored);
            }

            fn end(&mut self, outcome: SampleOutcome) {
                if let Some(permit) = self.permit.take() {
                    self.inner.$give_back(permit);
                    self.inner.finish(self.start, outcome);
                }
            }
        }

        impl Drop for $ty {
            #[inline]
            fn drop(&mut self) {
                if self.start.at.is_none() {
                    // Not timed: only give the permit back.
                    if let Some(permit) = self.permit.take() {
                        self.inner.$give_back(permit);
                    }
                } else {
                    self.end(SampleOutcome::Success);
                }
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("timed", &self.start.at.is_some())
                    .finish()
            }
        }
    };
}

permit_endings!(AdaptivePermit<'_>, give_back);
permit_endings!(OwnedAdaptivePermit, give_back_owned);

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;

    #[test]
    fn bad_configuration_is_a_typed_error() {
        let e = AdaptiveLimit::builder("x")
            .min_limit(0)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("min_limit"), "{e}");
        let e = AdaptiveLimit::builder("x")
            .min_limit(10)
            .max_limit(5)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("max_limit"), "{e}");
        let e = AdaptiveLimit::builder("x")
            .algorithm(Algorithm::Aimd(Aimd {
                backoff_ratio: 1.5,
                ..Aimd::default()
            }))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("backoff_ratio"), "{e}");
    }

    #[test]
    fn a_cut_below_the_held_permits_lands_as_they_come_back() {
        let l = AdaptiveLimit::builder("cut")
            .initial_limit(4)
            .algorithm(Algorithm::Aimd(Aimd {
                backoff_ratio: 0.5,
                ..Aimd::default()
            }))
            .build()
            .unwrap();
        let held: Vec<_> = (0..4).map(|_| l.try_acquire_owned().unwrap()).collect();
        let mut held = held.into_iter();
        held.next().unwrap().dropped(); // 4 -> 2, with 3 still held
        assert_eq!(l.limit(), 2);
        assert_eq!(l.semaphore().limit(), 3);
        drop(held.next()); // the semaphore gives no more than the target
        assert_eq!(l.semaphore().limit(), 2);
        assert!(l.try_acquire().is_err());
        drop(held);
        assert_eq!(l.semaphore().available(), 2);
        assert_eq!(l.stats().dropped, 1);
    }
}
