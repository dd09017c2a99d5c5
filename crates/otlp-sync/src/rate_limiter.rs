//! An instrumented rate limiter: a [`governor`] direct limiter (GCRA) with decision counters, wait-time
//! histograms and a tracing span around every wait that slept.
//!
//! [`RateLimiter::check`] answers at once (allowed, or throttled with a retry-after);
//! [`RateLimiter::until_ready`] waits until the request may pass (Go's `Limiter.Wait(ctx)`), with a timeout
//! ([`RateLimiter::until_ready_timeout`]), a cancellation token ([`RateLimiter::until_ready_cancellable`]) or both
//! ([`RateLimiter::until_n_ready_with`]), and optional jitter so that waiters do not all wake at once.
//!
//! ```
//! use std::time::Duration;
//! use otlp_sync::{CheckError, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 100 requests per second, in bursts of up to 10.
//! let limiter = RateLimiter::builder("search-api").per_second(100).burst(10).build()?;
//!
//! match limiter.check() {
//!     Ok(()) => { /* call the API */ }
//!     Err(CheckError::Throttled { retry_after }) => { /* answer 429 with Retry-After */ let _ = retry_after; }
//!     Err(e) => return Err(e.into()),
//! }
//!
//! // Or wait for a slot, at most 1 s:
//! limiter.until_ready_timeout(Duration::from_secs(1)).await?;
//! assert_eq!(limiter.stats().allowed, 2);
//! # Ok(()) }
//! ```
//!
//! # Waiting
//!
//! Waits sleep on tokio's timer (not governor's `futures-timer` sleep), in a check-then-sleep loop like governor's
//! `until_ready`: there is no FIFO fairness between waiters. A wait with a timeout fails as soon as the limiter says
//! the request cannot pass before the deadline (as Go's `Wait` does), rather than sleeping until then. Every wait is
//! cancel-safe: dropping it takes no cell and counts the call as `cancelled`. With the default clock the limiter
//! follows real time; build it with [`TokioClock`](crate::TokioClock) to test it under tokio's paused clock.
//!
//! Waits sleep on tokio's timer, so they must run inside a tokio runtime with the time driver enabled (tokio panics
//! otherwise); `check` works anywhere.
//!
//! # Cost
//!
//! `check()` costs governor's `check()` plus a relaxed load and store on a per-thread counter. A throttled `check()`
//! also reads the limiter's clock once, to compute `retry_after`. Only waits read tokio's clock, open a
//! debug-level span and record `rate_limiter.wait.duration`.
//!
//! # Telemetry
//!
//! Attribute `rate_limiter.name`: counter `rate_limiter.decisions` (attribute `outcome` = `allowed` | `throttled` |
//! `timeout` | `cancelled`; one per call) and histogram `rate_limiter.wait.duration` (seconds, same outcomes, only
//! for waits that slept). Keyed limiters add the up-down counter `rate_limiter.key.count`.

use std::fmt;
use std::future::poll_fn;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Jitter, NotUntil, Quota};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{Attributes, Observations, Recorder, Registration, Source};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::counters::{Counters, Gauge};
use crate::error::{BuildError, CheckError, WaitError};
use crate::keyed::KeyedRateLimiter;
use crate::semaphore::AcquireOptions;
use crate::telemetry::{
    INSTRUMENTS, RATE_LIMITER_DECISIONS, RATE_LIMITER_KEYS, RATE_LIMITER_WAIT, names,
};

/// How one limiter call ended; the index of its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Outcome {
    Allowed = 0,
    Throttled = 1,
    Timeout = 2,
    Cancelled = 3,
}

const OUTCOMES: [Outcome; 4] = [
    Outcome::Allowed,
    Outcome::Throttled,
    Outcome::Timeout,
    Outcome::Cancelled,
];

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Throttled => "throttled",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Counter index of "this call slept" (a subset of the calls).
const WAITED: usize = 4;
const COUNTERS: usize = 5;

/// A plain snapshot of a rate limiter's counters ([`RateLimiter::stats`], [`KeyedRateLimiter::stats`]).
///
/// Every call ends as exactly one of `allowed`, `throttled`, `timed_out`, `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateLimiterStats {
    /// Calls let through (at once or after waiting).
    pub allowed: u64,
    /// `check` calls said no to, and calls asking more cells than the burst.
    pub throttled: u64,
    /// Waits whose timeout came first (or could not be met).
    pub timed_out: u64,
    /// Waits cancelled by a token or by dropping the future.
    pub cancelled: u64,
    /// Calls that slept (a subset of the above).
    pub waited: u64,
    /// Calls sleeping right now.
    pub waiting: usize,
    /// Keys stored (keyed limiters; 0 for direct ones).
    pub keys: usize,
    /// Keys evicted to keep the key store bounded (keyed limiters; 0 for direct ones).
    pub evicted: u64,
}

impl RateLimiterStats {
    /// All finished calls: the sum of the outcomes.
    pub fn calls(&self) -> u64 {
        self.allowed + self.throttled + self.timed_out + self.cancelled
    }
}

/// What the limiter says when a waiter checks again.
pub(crate) enum Recheck {
    Allowed,
    Wait(Duration),
    Never(WaitError),
}

/// The bookkeeping shared by direct and keyed limiters: counters, telemetry, wait loop.
pub(crate) struct Core {
    pub(crate) name: String,
    pub(crate) jitter: Option<Jitter>,
    counters: Counters<COUNTERS>,
    waiting: Gauge,
    pub(crate) link: Registration,
    name_attrs: Attributes,
    /// `[rate_limiter.name, outcome]` per outcome, built once.
    attrs: [Attributes; 4],
    /// `rate_limiter.wait.duration` with `attrs`, per outcome.
    waits: [Recorder; 4],
}

impl Core {
    /// Builds the core and links it to the scope's instruments (or to `meter`'s); the owner containing it adds
    /// itself with `link.add` once built.
    pub(crate) fn new(meter: Option<Meter>, name: String, jitter: Option<Jitter>) -> Core {
        let name_kv = KeyValue::new(names::RATE_LIMITER_NAME, name.clone());
        let attrs = OUTCOMES.map(|o| {
            Attributes::new(vec![
                name_kv.clone(),
                KeyValue::new(names::OUTCOME, o.as_str()),
            ])
        });
        let link = INSTRUMENTS.link(meter);
        Core {
            name,
            jitter,
            counters: Counters::new(),
            waiting: Gauge::new(),
            waits: std::array::from_fn(|o| link.recorder(RATE_LIMITER_WAIT, &attrs[o])),
            link,
            name_attrs: Attributes::new(vec![name_kv]),
            attrs,
        }
    }

    /// Reports the decisions, and `keys` for a keyed limiter.
    pub(crate) fn observe(&self, out: &mut Observations<'_>, keys: Option<usize>) {
        if out.current() == RATE_LIMITER_DECISIONS {
            let totals = self.counters.snapshot();
            for (o, attrs) in OUTCOMES.iter().zip(&self.attrs) {
                out.observe(RATE_LIMITER_DECISIONS, totals[*o as usize], attrs);
            }
        }
        if let Some(keys) = keys {
            out.observe(RATE_LIMITER_KEYS, keys as u64, &self.name_attrs);
        }
    }

    #[inline]
    pub(crate) fn count(&self, outcome: Outcome) {
        self.counters.incr(outcome as usize);
    }

    /// Counts a throttled `check` and turns governor's answer into our error.
    #[cold]
    pub(crate) fn throttled<P: Reference>(&self, not_until: NotUntil<P>, now: P) -> CheckError {
        self.throttled_for(not_until.wait_time_from(now))
    }

    /// Counts a throttled `check` that may pass after `retry_after`.
    #[cold]
    pub(crate) fn throttled_for(&self, retry_after: Duration) -> CheckError {
        self.count(Outcome::Throttled);
        CheckError::Throttled { retry_after }
    }

    /// Counts a call that asked more cells than the burst.
    #[cold]
    pub(crate) fn insufficient(&self, requested: u32, burst: u32) -> CheckError {
        self.count(Outcome::Throttled);
        CheckError::InsufficientCapacity { requested, burst }
    }

    /// Counts a wait cancelled before it began (already-cancelled token).
    #[cold]
    pub(crate) fn cancelled_early(&self) -> WaitError {
        self.count(Outcome::Cancelled);
        WaitError::Cancelled
    }

    /// The whole `until_*_ready` protocol of the direct and keyed limiters: an already-cancelled token fails at
    /// once, `n = 0` passes, `check` decides at once or says how long to wait, and the wait loop re-checks with it.
    pub(crate) async fn until_ready(
        &self,
        n: u32,
        burst: u32,
        opts: AcquireOptions<'_>,
        check: impl Fn(NonZeroU32) -> Result<Result<(), Duration>, governor::InsufficientCapacity>,
    ) -> Result<(), WaitError> {
        if opts
            .cancel_token()
            .is_some_and(CancellationToken::is_cancelled)
        {
            return Err(self.cancelled_early());
        }
        let Some(nz) = NonZeroU32::new(n) else {
            self.count(Outcome::Allowed);
            return Ok(());
        };
        let insufficient = || WaitError::InsufficientCapacity {
            requested: n,
            burst,
        };
        match check(nz) {
            Ok(Ok(())) => {
                self.count(Outcome::Allowed);
                Ok(())
            }
            Ok(Err(first)) => {
                self.wait(first, n, opts, || match check(nz) {
                    Ok(Ok(())) => Recheck::Allowed,
                    Ok(Err(wait)) => Recheck::Wait(wait),
                    Err(_) => Recheck::Never(insufficient()),
                })
                .await
            }
            Err(_) => {
                self.insufficient(n, burst);
                Err(insufficient())
            }
        }
    }

    pub(crate) fn stats(&self) -> RateLimiterStats {
        self.link.follow();
        let c = self.counters.snapshot();
        RateLimiterStats {
            allowed: c[Outcome::Allowed as usize],
            throttled: c[Outcome::Throttled as usize],
            timed_out: c[Outcome::Timeout as usize],
            cancelled: c[Outcome::Cancelled as usize],
            waited: c[WAITED],
            waiting: self.waiting.get(),
            keys: 0,
            evicted: 0,
        }
    }

    /// The waiting path, entered after a first check said "not before `first_wait`". Sleeps on tokio's timer and
    /// checks again until allowed, timed out or cancelled.
    pub(crate) async fn wait(
        &self,
        first_wait: Duration,
        cells: u32,
        opts: AcquireOptions<'_>,
        mut recheck: impl FnMut() -> Recheck,
    ) -> Result<(), WaitError> {
        let start = tokio::time::Instant::now();
        let timeout = opts.timeout_value();
        // `None`: no timeout, or one so far away that it cannot be represented.
        let deadline = timeout.and_then(|t| start.checked_add(t));
        let too_late = |now: tokio::time::Instant, wait: Duration| {
            deadline.is_some_and(|d| now.checked_add(wait).is_none_or(|wake| wake > d))
        };
        if too_late(start, first_wait) {
            self.count(Outcome::Timeout);
            return Err(WaitError::Timeout {
                timeout: timeout.unwrap_or_default(),
            });
        }
        let span = tracing::debug_span!(
            "otlp_sync.rate_limiter.wait",
            rate_limiter.name = %self.name,
            cells,
            first_wait_s = first_wait.as_secs_f64(),
        );
        async move {
            let mut guard = WaitGuard::new(self, start);
            let mut wait = first_wait;
            loop {
                let wait_j = match self.jitter {
                    Some(j) => j + wait,
                    None => wait,
                };
                let now = tokio::time::Instant::now();
                let mut wake = now
                    .checked_add(wait_j)
                    .unwrap_or(now + Duration::from_secs(86_400 * 365));
                if let Some(d) = deadline {
                    wake = wake.min(d);
                }
                if !sleep_until_or_cancel(wake, opts.cancel_token()).await {
                    guard.outcome = Outcome::Cancelled;
                    return Err(WaitError::Cancelled);
                }
                match recheck() {
                    Recheck::Allowed => {
                        guard.outcome = Outcome::Allowed;
                        return Ok(());
                    }
                    Recheck::Wait(next) => {
                        if too_late(tokio::time::Instant::now(), next) {
                            guard.outcome = Outcome::Timeout;
                            return Err(WaitError::Timeout {
                                timeout: timeout.unwrap_or_default(),
                            });
                        }
                        wait = next;
                    }
                    Recheck::Never(e) => {
                        guard.outcome = Outcome::Throttled;
                        return Err(e);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("jitter", &self.jitter)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Sleeps until `wake`; returns `false` if `token` was cancelled first (checked before the sleep too).
async fn sleep_until_or_cancel(
    wake: tokio::time::Instant,
    token: Option<&CancellationToken>,
) -> bool {
    let mut sleep = pin!(tokio::time::sleep_until(wake));
    let mut cancelled = pin!(token.map(|t| t.cancelled()));
    poll_fn(|cx| {
        if let Some(c) = cancelled.as_mut().as_pin_mut()
            && c.poll(cx).is_ready()
        {
            return Poll::Ready(false);
        }
        sleep.as_mut().poll(cx).map(|()| true)
    })
    .await
}

/// Notes one sleeping call: `waiting` while it lives; on drop its outcome (`cancelled` if dropped early) and the
/// time it took.
struct WaitGuard<'a> {
    core: &'a Core,
    start: tokio::time::Instant,
    outcome: Outcome,
}

impl<'a> WaitGuard<'a> {
    fn new(core: &'a Core, start: tokio::time::Instant) -> Self {
        core.waiting.incr();
        core.counters.incr(WAITED);
        WaitGuard {
            core,
            start,
            outcome: Outcome::Cancelled,
        }
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let core = self.core;
        core.waiting.decr();
        core.count(self.outcome);
        // This call slept: cheap enough to catch up with a provider installed since.
        core.link.follow();
        core.waits[self.outcome as usize].record(self.start.elapsed().as_secs_f64());
    }
}

/// How many cells per period, what burst: validated into a governor [`Quota`].
#[derive(Debug, Clone, Copy)]
enum Rate {
    Unset,
    Cells { cells: u64, period: Duration },
    Quota(Quota),
}

/// Builds a [`RateLimiter`] or a [`KeyedRateLimiter`]:
/// `RateLimiter::builder("name").per_second(100).burst(10).build()`.
#[derive(Debug)]
pub struct RateLimiterBuilder<C = DefaultClock> {
    name: String,
    rate: Rate,
    burst: Option<u64>,
    jitter: Option<Jitter>,
    meter: Option<Meter>,
    clock: C,
    max_keys: usize,
}

/// The default bound on a keyed limiter's key store.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl RateLimiterBuilder<DefaultClock> {
    pub(crate) fn new(name: String) -> Self {
        RateLimiterBuilder {
            name,
            rate: Rate::Unset,
            burst: None,
            jitter: None,
            meter: None,
            clock: DefaultClock::default(),
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl<C: Clock> RateLimiterBuilder<C> {
    /// `cells` per second, in bursts of up to `cells` unless [`burst`](Self::burst) says otherwise.
    pub fn per_second(self, cells: u64) -> Self {
        self.per_period(cells, Duration::from_secs(1))
    }

    /// `cells` per minute, in bursts of up to `cells` unless [`burst`](Self::burst) says otherwise.
    pub fn per_minute(self, cells: u64) -> Self {
        self.per_period(cells, Duration::from_secs(60))
    }

    /// `cells` every `period` (replenished evenly: one every `period / cells`), in bursts of up to `cells` unless
    /// [`burst`](Self::burst) says otherwise.
    pub fn per_period(mut self, cells: u64, period: Duration) -> Self {
        self.rate = Rate::Cells { cells, period };
        self
    }

    /// A governor [`Quota`] as is (its burst too, unless [`burst`](Self::burst) overrides it).
    pub fn quota(mut self, quota: Quota) -> Self {
        self.rate = Rate::Quota(quota);
        self
    }

    /// The most cells that may pass at once after a quiet spell.
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Adds a random delay from `jitter` to every sleep of a wait, so waiters do not wake in lockstep.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// The meter to create instruments from, instead of the global meter provider's `otlp-sync` meter.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// The bound on a keyed limiter's key store (default [`DEFAULT_MAX_KEYS`]); ignored by direct limiters.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The clock the limiter reads, e.g. [`TokioClock`](crate::TokioClock) for tests with a paused clock.
    pub fn clock<C2: Clock>(self, clock: C2) -> RateLimiterBuilder<C2> {
        RateLimiterBuilder {
            name: self.name,
            rate: self.rate,
            burst: self.burst,
            jitter: self.jitter,
            meter: self.meter,
            clock,
            max_keys: self.max_keys,
        }
    }

    /// Validates rate and burst into a quota.
    fn quota_checked(&self) -> Result<Quota, BuildError> {
        let name = || self.name.clone();
        let burst = match self.burst {
            None => None,
            Some(b) => Some(
                nonzero(b, "burst", &self.name)?
                    .ok_or_else(|| BuildError::ZeroBurst { name: name() })?,
            ),
        };
        let quota = match self.rate {
            Rate::Unset => return Err(BuildError::ZeroRate { name: name() }),
            Rate::Quota(q) => q,
            Rate::Cells { cells, period } => {
                let cells_nz = nonzero(cells, "rate", &self.name)?
                    .ok_or_else(|| BuildError::ZeroRate { name: name() })?;
                if period.is_zero() {
                    return Err(BuildError::ZeroRate { name: name() });
                }
                let interval = period / cells_nz.get();
                Quota::with_period(interval)
                    .ok_or(BuildError::TooLarge {
                        name: name(),
                        what: "rate (cells per period)",
                        value: cells,
                    })?
                    .allow_burst(cells_nz)
            }
        };
        Ok(match burst {
            Some(b) => quota.allow_burst(b),
            None => quota,
        })
    }

    pub(crate) fn parts(self) -> Result<(Quota, BuilderParts<C>), BuildError> {
        let quota = self.quota_checked()?;
        if self.max_keys == 0 {
            return Err(BuildError::ZeroMaxKeys { name: self.name });
        }
        Ok((
            quota,
            BuilderParts {
                name: self.name,
                jitter: self.jitter,
                meter: self.meter,
                clock: self.clock,
                max_keys: self.max_keys,
            },
        ))
    }

    /// Validates the configuration and builds a direct (one bucket) limiter.
    pub fn build(self) -> Result<RateLimiter<C>, BuildError>
    where
        C: Send + Sync + 'static,
        C::Instant: Send + Sync,
    {
        let (quota, parts) = self.parts()?;
        let BuilderParts {
            name,
            jitter,
            meter,
            clock,
            ..
        } = parts;
        let inner = Arc::new(DirectInner {
            limiter: governor::RateLimiter::direct_with_clock(quota, clock),
            burst: quota.burst_size().get(),
            quota,
            core: Core::new(meter, name, jitter),
        });
        inner.core.link.add(inner.clone());
        Ok(RateLimiter { inner })
    }

    /// Validates the configuration and builds a keyed limiter: one bucket per key, in a key store bounded by
    /// [`max_keys`](Self::max_keys).
    pub fn build_keyed<K>(self) -> Result<KeyedRateLimiter<K, C>, BuildError>
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
        C::Instant: Send + Sync,
    {
        KeyedRateLimiter::from_builder(self)
    }
}

/// A validated builder, taken apart.
pub(crate) struct BuilderParts<C> {
    pub(crate) name: String,
    pub(crate) jitter: Option<Jitter>,
    pub(crate) meter: Option<Meter>,
    pub(crate) clock: C,
    pub(crate) max_keys: usize,
}

/// `value` as a non-zero `u32` (`None` for 0), or a `TooLarge` error.
fn nonzero(value: u64, what: &'static str, name: &str) -> Result<Option<NonZeroU32>, BuildError> {
    let v = u32::try_from(value).map_err(|_| BuildError::TooLarge {
        name: name.to_owned(),
        what,
        value,
    })?;
    Ok(NonZeroU32::new(v))
}

type DirectLimiter<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

impl<C> Source for DirectInner<C>
where
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn observe(&self, out: &mut Observations<'_>) {
        self.core.observe(out, None);
    }
}

struct DirectInner<C: Clock> {
    limiter: DirectLimiter<C>,
    quota: Quota,
    burst: u32,
    core: Core,
}

/// An instrumented direct rate limiter (one bucket for all callers); see the [module docs](self).
///
/// Cloning is cheap and gives another handle to the same limiter. `C` is the clock (governor's quanta clock by
/// default; [`TokioClock`](crate::TokioClock) for tests).
pub struct RateLimiter<C: Clock = DefaultClock> {
    inner: Arc<DirectInner<C>>,
}

impl<C: Clock> Clone for RateLimiter<C> {
    fn clone(&self) -> Self {
        RateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl RateLimiter<DefaultClock> {
    /// A limiter letting `cells` per second through, in bursts of up to `cells`. Fails if `cells` is 0.
    pub fn per_second(name: impl Into<String>, cells: u64) -> Result<Self, BuildError> {
        RateLimiter::builder(name).per_second(cells).build()
    }

    /// A limiter with a governor [`Quota`] (rate and burst).
    pub fn new(name: impl Into<String>, quota: Quota) -> Result<Self, BuildError> {
        RateLimiter::builder(name).quota(quota).build()
    }

    /// A builder, for the burst, jitter, meter or clock.
    pub fn builder(name: impl Into<String>) -> RateLimiterBuilder<DefaultClock> {
        RateLimiterBuilder::new(name.into())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.inner.core.name
    }

    /// The quota (rate and burst).
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// Lets one cell through if the rate allows it now; never waits.
    #[inline]
    pub fn check(&self) -> Result<(), CheckError> {
        let inner = &*self.inner;
        match inner.limiter.check() {
            Ok(()) => {
                inner.core.count(Outcome::Allowed);
                Ok(())
            }
            Err(not_until) => Err(inner.core.throttled(not_until, inner.limiter.clock().now())),
        }
    }

    /// [`RateLimiter::check`] answering only yes or no, for a caller that never waits: a refusal is counted as
    /// throttled like `check`'s, but no retry-after is computed for it (no second clock read).
    ///
    /// ```
    /// let limiter = otlp_sync::RateLimiter::per_second("admissions", 1)?;
    /// assert!(limiter.allows());
    /// assert!(!limiter.allows());
    /// let stats = limiter.stats();
    /// assert_eq!((stats.allowed, stats.throttled), (1, 1));
    /// # Ok::<(), otlp_sync::BuildError>(())
    /// ```
    #[inline]
    pub fn allows(&self) -> bool {
        let inner = &*self.inner;
        let ok = inner.limiter.check().is_ok();
        inner.core.count(if ok {
            Outcome::Allowed
        } else {
            Outcome::Throttled
        });
        ok
    }

    /// The fast path of [`RateLimiter::until_ready`]: `true` (counted as allowed) if a cell passes now, `false`
    /// (nothing counted) if the caller must wait.
    #[cfg(feature = "tower")]
    pub(crate) fn check_now(&self) -> bool {
        let inner = &*self.inner;
        let ok = inner.limiter.check().is_ok();
        if ok {
            inner.core.count(Outcome::Allowed);
        }
        ok
    }

    /// Lets `n` cells through at once if the rate allows all of them now (0 cells always pass); never waits.
    pub fn check_n(&self, n: u32) -> Result<(), CheckError> {
        let inner = &*self.inner;
        let Some(nz) = NonZeroU32::new(n) else {
            inner.core.count(Outcome::Allowed);
            return Ok(());
        };
        match inner.limiter.check_n(nz) {
            Ok(Ok(())) => {
                inner.core.count(Outcome::Allowed);
                Ok(())
            }
            Ok(Err(not_until)) => Err(inner.core.throttled(not_until, inner.limiter.clock().now())),
            Err(_) => Err(inner.core.insufficient(n, inner.burst)),
        }
    }

    /// Waits until one cell may pass (Go's `Wait`). Cancel-safe.
    pub async fn until_ready(&self) {
        // Without a timeout or token, and with one cell (never above the burst), the wait can only succeed.
        let _ = self.until_n_ready_with(1, AcquireOptions::new()).await;
    }

    /// Waits until `n` cells may pass at once. Fails if `n` is above the burst. Cancel-safe.
    pub async fn until_n_ready(&self, n: u32) -> Result<(), WaitError> {
        self.until_n_ready_with(n, AcquireOptions::new()).await
    }

    /// Waits at most `timeout` for one cell; fails at once if the limiter says it cannot pass in time.
    pub async fn until_ready_timeout(&self, timeout: Duration) -> Result<(), WaitError> {
        self.until_n_ready_with(1, AcquireOptions::new().timeout(timeout))
            .await
    }

    /// Waits for one cell until `token` is cancelled (fails at once if it already is).
    pub async fn until_ready_cancellable(
        &self,
        token: &CancellationToken,
    ) -> Result<(), WaitError> {
        self.until_n_ready_with(1, AcquireOptions::new().cancel_on(token))
            .await
    }

    /// Waits until `n` cells may pass, within the limits of `opts` (timeout, cancellation). Cancel-safe.
    pub async fn until_n_ready_with(
        &self,
        n: u32,
        opts: AcquireOptions<'_>,
    ) -> Result<(), WaitError> {
        let inner = &*self.inner;
        let clock = inner.limiter.clock();
        inner
            .core
            .until_ready(n, inner.burst, opts, |nz| {
                inner
                    .limiter
                    .check_n(nz)
                    .map(|r| r.map_err(|nu| nu.wait_time_from(clock.now())))
            })
            .await
    }

    /// A snapshot of the counters (the same ones the metrics export).
    pub fn stats(&self) -> RateLimiterStats {
        self.inner.core.stats()
    }
}

impl<C: Clock> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.core.name)
            .field("quota", &self.inner.quota)
            .field("jitter", &self.inner.core.jitter)
            .finish()
    }
}
