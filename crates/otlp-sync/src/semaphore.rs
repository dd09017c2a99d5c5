//! An instrumented async semaphore: [`tokio::sync::Semaphore`] with outcome counters, wait-time histograms and a
//! tracing span around every wait that queued.
//!
//! A [`Semaphore`] limits how many tasks do something at once: API calls, database connections, file I/O,
//! requests to a fragile downstream. Take a [`Permit`] (or an [`OwnedPermit`] for spawned tasks) before the work;
//! dropping it gives the permit back.
//!
//! ```
//! use std::time::Duration;
//! use otlp_sync::Semaphore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Semaphore::new("db-connections", 2)?;
//!
//! let permit = db.acquire().await?; // waits if both permits are taken
//! assert_eq!(db.available(), 1);
//! drop(permit); // gives it back
//!
//! // Shed load instead of queueing forever:
//! let _p = db.acquire_timeout(Duration::from_millis(50)).await?;
//!
//! // Run a closure holding permits (Go's `WithSemaphore`):
//! let rows = db.with_permit(1, || async { 42 }).await?;
//! assert_eq!(rows, 42);
//!
//! let stats = db.stats();
//! assert_eq!(stats.acquired, 3);
//! # Ok(()) }
//! ```
//!
//! A semaphore built with 0 permits is a closed gate: its acquires wait until [`Semaphore::add_permits`] opens it
//! (or [`Semaphore::close`] fails them), for work that must not start before something is ready.
//!
//! ```
//! # use otlp_sync::Semaphore;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let warmed_up = Semaphore::new("warm-up", 0)?;
//! assert!(warmed_up.try_acquire().is_err()); // closed until the cache is loaded
//! warmed_up.add_permits(4)?; // open: 4 at once from now on
//! let _p = warmed_up.acquire().await?;
//! # Ok(()) }
//! ```
//!
//! # Handles
//!
//! `Semaphore` is a cheap handle (one `Arc`): clone it to share it; [`Semaphore::acquire_owned`] works on `&self`
//! and returns an [`OwnedPermit`] that keeps the semaphore alive, for `tokio::spawn`ed tasks. Wrapping it in an
//! `Arc` is not needed.
//!
//! # Fairness and cancel safety
//!
//! Waiters are served first in, first out, as tokio's semaphore does (an acquire that finds permits free takes
//! them only when nobody is queued: tokio hands released permits to the queue first). Every `async` method is
//! cancel-safe: dropping its future while it waits gives back whatever permits had been set aside for it, wakes
//! the next waiter, and counts the acquire as `cancelled`. A cancellation token that is already cancelled makes
//! the acquire fail even if permits are free.
//!
//! # Runtime
//!
//! Waiting needs no particular executor, except that timeouts ([`Semaphore::acquire_timeout`],
//! [`AcquireOptions::timeout`]) sleep on tokio's timer, so they must run inside a tokio runtime with the time
//! driver enabled (tokio panics otherwise). Wait times are measured with [`tokio::time::Instant`], so they follow
//! tokio's paused clock in tests.
//!
//! # Cost
//!
//! An acquire that does not wait costs tokio's `try_acquire` plus a relaxed load and store on a per-thread counter:
//! no clock read, no OpenTelemetry call, no allocation (a thread's first call on a semaphore allocates that
//! thread's counter block, once). Only an acquire that has to queue reads the clock, opens a
//! debug-level `tracing` span and records `semaphore.wait.duration`.
//!
//! # Hold time
//!
//! How long permits are held is what tuning a semaphore needs (the semantic conventions'
//! `db.client.connection.use_time`). It costs two clock reads and a histogram record per permit, so it is opt-in
//! per semaphore: [`SemaphoreBuilder::record_hold_duration`]. Off (the default), acquire and release read no
//! clock.
//!
//! ```
//! # use otlp_sync::Semaphore;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Semaphore::builder("db-connections").permits(8).record_hold_duration(true).build()?;
//! let conn = db.acquire().await?;
//! drop(conn); // records how long it was held in `semaphore.hold.duration`
//! # Ok(()) }
//! ```
//!
//! # Telemetry
//!
//! Attribute `semaphore.name` on every instrument: up-down counters `semaphore.permit.limit`,
//! `semaphore.permit.usage`, `semaphore.acquire.waiting`, counter `semaphore.acquires` (attribute `outcome` = `acquired` | `timeout` | `cancelled` |
//! `closed` | `rejected`) and histogram `semaphore.wait.duration` (seconds, same `outcome`s, only for acquires
//! that waited). Each call counts exactly one outcome, so the outcomes add up to the calls. With
//! [`SemaphoreBuilder::record_hold_duration`], histogram `semaphore.hold.duration` (seconds, `semaphore.name` only):
//! one value per permit guard released, from its acquire to its drop.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{Attributes, Observations, Recorder, Registration, Source};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::counters::{Counters, Gauge};
use crate::error::{AcquireError, AddPermitsError, BuildError, TryAcquireError};
use crate::sync::{AtomicUsize, Ordering};
use crate::telemetry::{
    INSTRUMENTS, SEMAPHORE_ACQUIRES, SEMAPHORE_HOLD, SEMAPHORE_LIMIT, SEMAPHORE_USAGE,
    SEMAPHORE_WAIT, SEMAPHORE_WAITING, names,
};

/// How one acquire call ended; the index of its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Outcome {
    Acquired = 0,
    Timeout = 1,
    Cancelled = 2,
    Closed = 3,
    Rejected = 4,
}

const OUTCOMES: [Outcome; 5] = [
    Outcome::Acquired,
    Outcome::Timeout,
    Outcome::Cancelled,
    Outcome::Closed,
    Outcome::Rejected,
];

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Acquired => "acquired",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::Closed => "closed",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Counter index of "this acquire had to wait" (not an outcome: it counts a subset of the calls).
const WAITED: usize = 5;
const COUNTERS: usize = 6;

/// A plain snapshot of a semaphore's counters ([`Semaphore::stats`]).
///
/// Every acquire call ends as exactly one of `acquired`, `timed_out`, `cancelled`, `closed`, `rejected`, so
/// [`SemaphoreStats::calls`] is their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SemaphoreStats {
    /// Calls that got their permits (at once or after waiting).
    pub acquired: u64,
    /// Calls whose timeout passed first.
    pub timed_out: u64,
    /// Calls cancelled by a token or by dropping the future while it waited.
    pub cancelled: u64,
    /// Calls that found the semaphore closed (or saw it close while waiting).
    pub closed: u64,
    /// `try_acquire` calls that found no permits free, and calls asking for more permits than the limit.
    pub rejected: u64,
    /// Calls that had to wait (a subset of the above).
    pub waited: u64,
    /// Permits not free right now (`limit - available`): held, or set aside by tokio for the front waiter while
    /// it waits for the rest of what it asked.
    pub in_use: usize,
    /// Calls waiting right now.
    pub waiting: usize,
    /// Total permits.
    pub limit: usize,
    /// Permits free right now.
    pub available: usize,
}

impl SemaphoreStats {
    /// All finished acquire calls: the sum of the outcomes.
    pub fn calls(&self) -> u64 {
        self.acquired + self.timed_out + self.cancelled + self.closed + self.rejected
    }
}

/// Limits on one wait (a semaphore acquire, a rate limiter wait): a timeout, a cancellation token, both or
/// neither.
///
/// ```
/// # use std::time::Duration;
/// # use otlp_sync::{AcquireOptions, Semaphore};
/// # use tokio_util::sync::CancellationToken;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sem = Semaphore::new("files", 4)?;
/// let shutdown = CancellationToken::new();
/// let opts = AcquireOptions::new().timeout(Duration::from_secs(1)).cancel_on(&shutdown);
/// let permit = sem.acquire_owned_with(2, opts).await?;
/// assert_eq!(permit.num_permits(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AcquireOptions<'a> {
    timeout: Option<Duration>,
    cancel: Option<&'a CancellationToken>,
}

impl<'a> AcquireOptions<'a> {
    /// No timeout, no token: wait until the permits are free or the semaphore closes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Give up with [`AcquireError::Timeout`] after `timeout`. A zero timeout fails at once if permits are not
    /// free.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Give up with [`AcquireError::Cancelled`] when `token` is cancelled (at once if it already is).
    pub fn cancel_on(mut self, token: &'a CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    pub(crate) fn timeout_value(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn cancel_token(&self) -> Option<&'a CancellationToken> {
        self.cancel
    }
}

/// What may end a wait besides getting the permits. Each public method picks the smallest implementation, so
/// that its future only carries the state it needs (a plain `acquire` holds no timer and no cancellation future).
trait Limits: Copy {
    type Cancel: Future<Output = ()>;
    type Deadline: Future<Output = ()>;
    fn token(&self) -> Option<&CancellationToken>;
    fn timeout(&self) -> Option<Duration>;
    /// Created only once the acquire has to wait.
    fn cancelled(self) -> Option<Self::Cancel>;
    /// Created only once the acquire has to wait (this reads the clock).
    fn deadline(self) -> Option<Self::Deadline>;
}

/// Wait until the permits come or the semaphore closes.
#[derive(Clone, Copy)]
struct NoLimits;

impl Limits for NoLimits {
    type Cancel = std::future::Pending<()>;
    type Deadline = std::future::Pending<()>;
    fn token(&self) -> Option<&CancellationToken> {
        None
    }
    fn timeout(&self) -> Option<Duration> {
        None
    }
    fn cancelled(self) -> Option<Self::Cancel> {
        None
    }
    fn deadline(self) -> Option<Self::Deadline> {
        None
    }
}

/// Wait at most this long.
#[derive(Clone, Copy)]
struct Timeout(Duration);

impl Limits for Timeout {
    type Cancel = std::future::Pending<()>;
    type Deadline = tokio::time::Sleep;
    fn token(&self) -> Option<&CancellationToken> {
        None
    }
    fn timeout(&self) -> Option<Duration> {
        Some(self.0)
    }
    fn cancelled(self) -> Option<Self::Cancel> {
        None
    }
    fn deadline(self) -> Option<Self::Deadline> {
        Some(tokio::time::sleep(self.0))
    }
}

/// Wait until this token is cancelled.
#[derive(Clone, Copy)]
struct Cancel<'a>(&'a CancellationToken);

impl<'a> Limits for Cancel<'a> {
    type Cancel = tokio_util::sync::WaitForCancellationFuture<'a>;
    type Deadline = std::future::Pending<()>;
    fn token(&self) -> Option<&CancellationToken> {
        Some(self.0)
    }
    fn timeout(&self) -> Option<Duration> {
        None
    }
    fn cancelled(self) -> Option<Self::Cancel> {
        Some(self.0.cancelled())
    }
    fn deadline(self) -> Option<Self::Deadline> {
        None
    }
}

impl<'a> Limits for AcquireOptions<'a> {
    type Cancel = tokio_util::sync::WaitForCancellationFuture<'a>;
    type Deadline = tokio::time::Sleep;
    fn token(&self) -> Option<&CancellationToken> {
        self.cancel
    }
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    fn cancelled(self) -> Option<Self::Cancel> {
        self.cancel.map(CancellationToken::cancelled)
    }
    fn deadline(self) -> Option<Self::Deadline> {
        self.timeout.map(tokio::time::sleep)
    }
}

/// Builds a [`Semaphore`]: `Semaphore::builder("name").permits(8).build()`.
#[derive(Debug)]
pub struct SemaphoreBuilder {
    name: String,
    permits: Option<usize>,
    meter: Option<Meter>,
    hold: bool,
}

impl SemaphoreBuilder {
    /// The number of permits (required). 0 makes a closed gate: acquires wait until
    /// [`Semaphore::add_permits`] opens it (or [`Semaphore::close`] fails them).
    pub fn permits(mut self, permits: usize) -> Self {
        self.permits = Some(permits);
        self
    }

    /// The meter to create instruments from, instead of the global meter provider's `otlp-sync` meter.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Records how long each permit guard ([`Permit`], [`OwnedPermit`]) was held, from its acquire to its drop,
    /// in histogram `semaphore.hold.duration` (default off: then acquire and release read no clock).
    pub fn record_hold_duration(mut self, on: bool) -> Self {
        self.hold = on;
        self
    }

    /// Validates the configuration and builds the semaphore with its instruments.
    pub fn build(self) -> Result<Semaphore, BuildError> {
        let Some(permits) = self.permits else {
            return Err(BuildError::PermitsNotSet { name: self.name });
        };
        if permits > Semaphore::MAX_PERMITS {
            return Err(BuildError::TooManyPermits {
                name: self.name,
                permits,
                max: Semaphore::MAX_PERMITS,
            });
        }
        let name = self.name;
        let inner = Arc::new(Inner {
            sem: tokio::sync::Semaphore::new(permits),
            limit: AtomicUsize::new(permits),
            counters: Counters::new(),
            waiting: Gauge::new(),
            telemetry: Telemetry::new(self.meter, &name),
            hold: self.hold,
            name,
        });
        inner.telemetry.link.add(inner.clone());
        Ok(Semaphore { inner })
    }
}

/// An instrumented async semaphore; see the [module docs](self).
///
/// Cloning is cheap and gives another handle to the same semaphore.
#[derive(Clone)]
pub struct Semaphore {
    inner: Arc<Inner>,
}

struct Inner {
    sem: tokio::sync::Semaphore,
    /// Total permits: the initial ones plus every `add_permits`.
    limit: AtomicUsize,
    counters: Counters<COUNTERS>,
    waiting: Gauge,
    telemetry: Telemetry,
    /// Whether permits record `semaphore.hold.duration`.
    hold: bool,
    name: String,
}

struct Telemetry {
    link: Registration,
    name: Attributes,
    /// `[semaphore.name, outcome]` per outcome, built once.
    attrs: [Attributes; 5],
    /// `semaphore.hold.duration` with `name`.
    hold: Recorder,
    /// `semaphore.wait.duration` with `attrs`, per outcome.
    waits: [Recorder; 5],
}

impl Telemetry {
    fn new(meter: Option<Meter>, name: &str) -> Self {
        let name_kv = KeyValue::new(names::SEMAPHORE_NAME, name.to_owned());
        let attrs = OUTCOMES.map(|o| {
            Attributes::new(vec![
                name_kv.clone(),
                KeyValue::new(names::OUTCOME, o.as_str()),
            ])
        });
        let link = INSTRUMENTS.link(meter);
        let name = Attributes::new(vec![name_kv]);
        Telemetry {
            hold: link.recorder(SEMAPHORE_HOLD, &name),
            waits: std::array::from_fn(|o| link.recorder(SEMAPHORE_WAIT, &attrs[o])),
            link,
            name,
            attrs,
        }
    }
}

impl Source for Inner {
    fn observe(&self, out: &mut Observations<'_>) {
        let t = &self.telemetry;
        out.observe(SEMAPHORE_LIMIT, self.limit() as u64, &t.name);
        out.observe(SEMAPHORE_USAGE, self.in_use() as u64, &t.name);
        out.observe(SEMAPHORE_WAITING, self.waiting.get() as u64, &t.name);
        if out.current() == SEMAPHORE_ACQUIRES {
            let totals = self.counters.snapshot();
            for (o, attrs) in OUTCOMES.iter().zip(&t.attrs) {
                out.observe(SEMAPHORE_ACQUIRES, totals[*o as usize], attrs);
            }
        }
    }
}

impl Inner {
    fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    fn in_use(&self) -> usize {
        self.limit().saturating_sub(self.sem.available_permits())
    }

    #[inline]
    fn count(&self, outcome: Outcome) {
        self.counters.incr(outcome as usize);
    }

    /// When a permit taken now started being held, if this semaphore records hold times.
    #[inline]
    fn held_since(&self) -> Option<tokio::time::Instant> {
        if self.hold {
            Some(tokio::time::Instant::now())
        } else {
            None
        }
    }

    #[cold]
    fn record_hold(&self, since: tokio::time::Instant) {
        let t = &self.telemetry;
        t.hold.record(since.elapsed().as_secs_f64());
    }

    /// Counts the outcome of a `try_acquire`: one bump whatever the outcome, made before the result is inspected
    /// rather than inside the `Ok` arm, the placement that keeps `try_acquire` close to raw tokio (see
    /// docs/benchmarks.md).
    #[inline]
    fn count_try<T>(&self, taken: &Result<T, tokio::sync::TryAcquireError>) {
        let outcome = match taken {
            Ok(_) => Outcome::Acquired,
            Err(tokio::sync::TryAcquireError::NoPermits) => Outcome::Rejected,
            Err(tokio::sync::TryAcquireError::Closed) => Outcome::Closed,
        };
        self.count(outcome);
    }

    /// Turns a tokio permit taken from this semaphore into ours: as [`Semaphore::own`], without the `Arc` clone.
    /// Built from `Inner`, so that the fast paths keep one pointer live rather than the handle and its state.
    #[inline]
    fn borrowed(&self, permit: tokio::sync::SemaphorePermit<'_>) -> Permit<'_> {
        let permits = permit.num_permits();
        std::mem::forget(permit);
        Permit {
            inner: self,
            permits,
            since: self.held_since(),
        }
    }

    #[cold]
    #[inline(never)]
    fn try_failed(&self, n: u32, e: tokio::sync::TryAcquireError) -> TryAcquireError {
        match e {
            tokio::sync::TryAcquireError::Closed => TryAcquireError::Closed,
            tokio::sync::TryAcquireError::NoPermits => match self.hopeless(n) {
                Some(AcquireError::TooManyPermits { requested, limit }) => {
                    TryAcquireError::TooManyPermits { requested, limit }
                }
                _ => TryAcquireError::NoPermits,
            },
        }
    }

    /// The error for asking `n` permits when none could be given right now, or `None` when waiting could help.
    /// A semaphore without permits is a closed gate: its waiters wait for `add_permits`, as tokio's do.
    fn hopeless(&self, n: u32) -> Option<AcquireError> {
        let limit = self.limit();
        if limit > 0 && n as usize > limit {
            Some(AcquireError::TooManyPermits {
                requested: n,
                limit,
            })
        } else {
            None
        }
    }
}

/// Notes one waiting acquire: counts it in `waiting` while it lives, and on drop counts its outcome (`cancelled`
/// if it was dropped before finishing) and records how long it waited.
struct WaitGuard<'a> {
    inner: &'a Inner,
    start: tokio::time::Instant,
    outcome: Outcome,
}

impl<'a> WaitGuard<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.waiting.incr();
        inner.counters.incr(WAITED);
        WaitGuard {
            inner,
            start: tokio::time::Instant::now(),
            outcome: Outcome::Cancelled,
        }
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let inner = self.inner;
        inner.waiting.decr();
        inner.count(self.outcome);
        let waited = self.start.elapsed().as_secs_f64();
        let t = &inner.telemetry;
        // This acquire waited: cheap enough to catch up with a provider installed since.
        t.link.follow();
        t.waits[self.outcome as usize].record(waited);
    }
}

impl Semaphore {
    /// The most permits a semaphore can hold (tokio's limit).
    pub const MAX_PERMITS: usize = tokio::sync::Semaphore::MAX_PERMITS;

    /// A semaphore named `name` (the `semaphore.name` attribute) with `permits` permits, instrumented through the
    /// global meter provider. Fails if `permits` is above [`Semaphore::MAX_PERMITS`]. With 0 permits it is a closed
    /// gate: acquires wait until [`Semaphore::add_permits`] opens it.
    pub fn new(name: impl Into<String>, permits: usize) -> Result<Semaphore, BuildError> {
        Semaphore::builder(name).permits(permits).build()
    }

    /// A builder, to set a meter as well.
    pub fn builder(name: impl Into<String>) -> SemaphoreBuilder {
        SemaphoreBuilder {
            name: name.into(),
            permits: None,
            meter: None,
            hold: false,
        }
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Waits for one permit. Cancel-safe. Fails only if the semaphore is closed.
    pub async fn acquire(&self) -> Result<Permit<'_>, AcquireError> {
        self.acquire_limited(1, NoLimits).await
    }

    /// Waits for `n` permits at once. Cancel-safe. Fails if the semaphore is closed or `n` is above the limit.
    pub async fn acquire_many(&self, n: u32) -> Result<Permit<'_>, AcquireError> {
        self.acquire_limited(n, NoLimits).await
    }

    /// Waits at most `timeout` for one permit. Cancel-safe.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_>, AcquireError> {
        self.acquire_limited(1, Timeout(timeout)).await
    }

    /// Waits at most `timeout` for `n` permits. Cancel-safe.
    pub async fn acquire_many_timeout(
        &self,
        n: u32,
        timeout: Duration,
    ) -> Result<Permit<'_>, AcquireError> {
        self.acquire_limited(n, Timeout(timeout)).await
    }

    /// Waits for one permit until `token` is cancelled (Go's `Acquire(ctx, 1)`). Fails at once if it already is.
    pub async fn acquire_cancellable(
        &self,
        token: &CancellationToken,
    ) -> Result<Permit<'_>, AcquireError> {
        self.acquire_limited(1, Cancel(token)).await
    }

    /// Waits for `n` permits until `token` is cancelled (Go's `Acquire(ctx, n)`).
    pub async fn acquire_many_cancellable(
        &self,
        n: u32,
        token: &CancellationToken,
    ) -> Result<Permit<'_>, AcquireError> {
        self.acquire_limited(n, Cancel(token)).await
    }

    /// Waits for `n` permits within the limits of `opts` (timeout, cancellation). Cancel-safe.
    pub async fn acquire_with(
        &self,
        n: u32,
        opts: AcquireOptions<'_>,
    ) -> Result<Permit<'_>, AcquireError> {
        self.acquire_limited(n, opts).await
    }

    async fn acquire_limited<L: Limits>(
        &self,
        n: u32,
        limits: L,
    ) -> Result<Permit<'_>, AcquireError> {
        let inner = &*self.inner;
        if limits.token().is_some_and(CancellationToken::is_cancelled) {
            inner.count(Outcome::Cancelled);
            return Err(AcquireError::Cancelled);
        }
        match inner.sem.try_acquire_many(n) {
            Ok(permit) => {
                inner.count(Outcome::Acquired);
                Ok(inner.borrowed(permit))
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                inner.count(Outcome::Closed);
                Err(AcquireError::Closed)
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let permit = self.wait(n, limits, || inner.sem.acquire_many(n)).await?;
                Ok(inner.borrowed(permit))
            }
        }
    }

    /// Waits for one permit that keeps the semaphore alive, for spawned tasks. Cancel-safe.
    pub async fn acquire_owned(&self) -> Result<OwnedPermit, AcquireError> {
        self.acquire_owned_limited(1, NoLimits).await
    }

    /// Waits for `n` permits that keep the semaphore alive. Cancel-safe.
    pub async fn acquire_many_owned(&self, n: u32) -> Result<OwnedPermit, AcquireError> {
        self.acquire_owned_limited(n, NoLimits).await
    }

    /// Waits for `n` owned permits within the limits of `opts`. Cancel-safe.
    pub async fn acquire_owned_with(
        &self,
        n: u32,
        opts: AcquireOptions<'_>,
    ) -> Result<OwnedPermit, AcquireError> {
        self.acquire_owned_limited(n, opts).await
    }

    async fn acquire_owned_limited<L: Limits>(
        &self,
        n: u32,
        limits: L,
    ) -> Result<OwnedPermit, AcquireError> {
        let inner = &*self.inner;
        if limits.token().is_some_and(CancellationToken::is_cancelled) {
            inner.count(Outcome::Cancelled);
            return Err(AcquireError::Cancelled);
        }
        match inner.sem.try_acquire_many(n) {
            Ok(permit) => {
                inner.count(Outcome::Acquired);
                Ok(self.own(permit))
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                inner.count(Outcome::Closed);
                Err(AcquireError::Closed)
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let permit = self.wait(n, limits, || inner.sem.acquire_many(n)).await?;
                Ok(self.own(permit))
            }
        }
    }

    /// The fast path of [`Semaphore::acquire_owned`]: `None` (and nothing counted) if it would have to wait.
    #[cfg(feature = "tower")]
    pub(crate) fn acquire_owned_now(&self) -> Option<Result<OwnedPermit, AcquireError>> {
        let inner = &*self.inner;
        match inner.sem.try_acquire() {
            Ok(permit) => {
                inner.count(Outcome::Acquired);
                Some(Ok(self.own(permit)))
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                inner.count(Outcome::Closed);
                Some(Err(AcquireError::Closed))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => None,
        }
    }

    /// Takes one permit if one is free right now, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, TryAcquireError> {
        // tokio's one-permit call, not `try_acquire_many(1)`: its permit count is a constant.
        let inner = &*self.inner;
        let taken = inner.sem.try_acquire();
        inner.count_try(&taken);
        match taken {
            Ok(permit) => Ok(inner.borrowed(permit)),
            Err(e) => Err(inner.try_failed(1, e)),
        }
    }

    /// Takes `n` permits if they are free right now, without waiting.
    #[inline]
    pub fn try_acquire_many(&self, n: u32) -> Result<Permit<'_>, TryAcquireError> {
        let inner = &*self.inner;
        let taken = inner.sem.try_acquire_many(n);
        inner.count_try(&taken);
        match taken {
            Ok(permit) => Ok(inner.borrowed(permit)),
            Err(e) => Err(inner.try_failed(n, e)),
        }
    }

    /// Takes one owned permit if one is free right now.
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, TryAcquireError> {
        self.try_acquire_many_owned(1)
    }

    /// Takes `n` owned permits if they are free right now.
    #[inline]
    pub fn try_acquire_many_owned(&self, n: u32) -> Result<OwnedPermit, TryAcquireError> {
        let inner = &*self.inner;
        let taken = inner.sem.try_acquire_many(n);
        inner.count_try(&taken);
        match taken {
            Ok(permit) => Ok(self.own(permit)),
            Err(e) => Err(inner.try_failed(n, e)),
        }
    }

    /// Turns a borrowed tokio permit into an owned one: tokio's permit is forgotten and [`OwnedPermit`] gives the
    /// permits back to the same tokio semaphore on drop (exactly what tokio's own permit drop does). This keeps
    /// the tokio semaphore inline in our state, one pointer away on every call, instead of behind a second `Arc`.
    #[inline]
    fn own(&self, permit: tokio::sync::SemaphorePermit<'_>) -> OwnedPermit {
        let permits = permit.num_permits();
        std::mem::forget(permit);
        OwnedPermit {
            since: self.inner.held_since(),
            inner: Arc::clone(&self.inner),
            permits,
        }
    }

    /// Runs `f` while holding `n` permits and returns its result (Go's `WithSemaphore`). The permits are given back
    /// when the future finishes or is dropped.
    ///
    /// ```
    /// # use otlp_sync::Semaphore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sem = Semaphore::new("api", 3)?;
    /// let body = sem.with_permit(2, || async { "response" }).await?;
    /// assert_eq!(body, "response");
    /// assert_eq!(sem.available(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn with_permit<F, Fut, T>(&self, n: u32, f: F) -> Result<T, AcquireError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let _permit = self.acquire_many(n).await?;
        Ok(f().await)
    }

    /// The waiting path: the only one that reads the clock, opens a span and records the histogram.
    async fn wait<L, P, F, Fut>(&self, n: u32, limits: L, acquire: F) -> Result<P, AcquireError>
    where
        L: Limits,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<P, tokio::sync::AcquireError>>,
    {
        let inner = &*self.inner;
        if let Some(err) = inner.hopeless(n) {
            inner.count(Outcome::Rejected);
            return Err(err);
        }
        let timeout = limits.timeout();
        if timeout == Some(Duration::ZERO) {
            inner.count(Outcome::Timeout);
            return Err(AcquireError::Timeout {
                timeout: Duration::ZERO,
            });
        }
        let span = tracing::debug_span!(
            "otlp_sync.semaphore.wait",
            semaphore.name = %inner.name,
            permits = n,
            available = inner.sem.available_permits(),
        );
        async move {
            let mut guard = WaitGuard::new(inner);
            let mut acquire = pin!(acquire());
            let mut cancelled = pin!(limits.cancelled());
            let mut deadline = pin!(limits.deadline());
            let (outcome, result) = poll_fn(|cx| {
                if let Some(c) = cancelled.as_mut().as_pin_mut()
                    && c.poll(cx).is_ready()
                {
                    return Poll::Ready((Outcome::Cancelled, Err(AcquireError::Cancelled)));
                }
                match acquire.as_mut().poll(cx) {
                    Poll::Ready(Ok(p)) => return Poll::Ready((Outcome::Acquired, Ok(p))),
                    Poll::Ready(Err(_)) => {
                        return Poll::Ready((Outcome::Closed, Err(AcquireError::Closed)));
                    }
                    Poll::Pending => {}
                }
                if let Some(d) = deadline.as_mut().as_pin_mut()
                    && d.poll(cx).is_ready()
                {
                    let timeout = timeout.unwrap_or_default();
                    return Poll::Ready((Outcome::Timeout, Err(AcquireError::Timeout { timeout })));
                }
                Poll::Pending
            })
            .await;
            guard.outcome = outcome;
            result
        }
        .instrument(span)
        .await
    }

    /// Closes the semaphore: waiting and future acquires fail with `Closed`; permits already held stay valid.
    pub fn close(&self) {
        self.inner.sem.close();
    }

    /// Whether [`Semaphore::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.sem.is_closed()
    }

    /// Raises the limit by `n` permits (waking waiters). Fails if the limit would pass
    /// [`Semaphore::MAX_PERMITS`].
    pub fn add_permits(&self, n: usize) -> Result<(), AddPermitsError> {
        let inner = &*self.inner;
        inner
            .limit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |limit| {
                limit
                    .checked_add(n)
                    .filter(|l| *l <= Semaphore::MAX_PERMITS)
            })
            .map_err(|limit| AddPermitsError {
                limit,
                added: n,
                max: Semaphore::MAX_PERMITS,
            })?;
        inner.sem.add_permits(n);
        Ok(())
    }

    /// Lowers the limit by up to `n` permits, taken from those free right now (held permits are not touched);
    /// returns how many were removed. [`AdaptiveLimit`](crate::adaptive::AdaptiveLimit) shrinks its semaphore
    /// with it.
    pub fn forget_permits(&self, n: usize) -> usize {
        let inner = &*self.inner;
        let forgotten = inner.sem.forget_permits(n);
        inner.limit.fetch_sub(forgotten, Ordering::Relaxed);
        forgotten
    }

    /// Gives `permit` (taken from this semaphore) back, or removes it from the limit if the limit is above
    /// `target`: a limit cut below the permits held lands as they come back, even while waiters would take
    /// every permit given back. Returns whether it was removed.
    pub(crate) fn retire(&self, mut permit: Permit<'_>, target: usize) -> bool {
        let n = permit.num_permits();
        if self.claim_retire(n, target) {
            permit.permits = 0;
            true
        } else {
            false
        }
    }

    /// [`Semaphore::retire`] for an owned permit (of this semaphore).
    pub(crate) fn retire_owned(&self, mut permit: OwnedPermit, target: usize) -> bool {
        let n = permit.permits;
        if Arc::ptr_eq(&permit.inner, &self.inner) && self.claim_retire(n, target) {
            permit.permits = 0;
            true
        } else {
            false
        }
    }

    fn claim_retire(&self, n: usize, target: usize) -> bool {
        self.inner
            .limit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |limit| {
                (limit >= target.saturating_add(n)).then(|| limit - n)
            })
            .is_ok()
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        self.inner.sem.available_permits()
    }

    /// Acquires waiting for permits right now (one relaxed load: cheap enough to ask before each hand-over, as
    /// otlp-patterns' fan-out does to decide whether to keep a permit or give it back).
    pub fn waiting(&self) -> usize {
        self.inner.waiting.get()
    }

    /// Total permits (initial plus added).
    pub fn limit(&self) -> usize {
        self.inner.limit()
    }

    /// A snapshot of the counters (the same ones the metrics export).
    pub fn stats(&self) -> SemaphoreStats {
        let inner = &*self.inner;
        inner.telemetry.link.follow();
        let c = inner.counters.snapshot();
        let limit = inner.limit();
        let available = inner.sem.available_permits();
        SemaphoreStats {
            acquired: c[Outcome::Acquired as usize],
            timed_out: c[Outcome::Timeout as usize],
            cancelled: c[Outcome::Cancelled as usize],
            closed: c[Outcome::Closed as usize],
            rejected: c[Outcome::Rejected as usize],
            waited: c[WAITED],
            in_use: limit.saturating_sub(available),
            waiting: inner.waiting.get(),
            limit,
            available,
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.inner.name)
            .field("limit", &self.limit())
            .field("available", &self.available())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Permits borrowed from a [`Semaphore`], given back on drop.
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct Permit<'a> {
    inner: &'a Inner,
    permits: usize,
    /// When it was acquired, if its semaphore records hold times.
    since: Option<tokio::time::Instant>,
}

impl Permit<'_> {
    /// How many permits this guard holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        // Gives back permits taken from this semaphore, as tokio's permit drop does (a no-op for none, as after
        // `retire`), then records the hold time.
        self.inner.sem.add_permits(self.permits);
        if let Some(since) = self.since {
            self.inner.record_hold(since);
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("permits", &self.num_permits())
            .finish()
    }
}

/// Permits that keep their [`Semaphore`] alive (`'static`, for spawned tasks), given back on drop.
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct OwnedPermit {
    inner: Arc<Inner>,
    permits: usize,
    /// When it was acquired, if its semaphore records hold times.
    since: Option<tokio::time::Instant>,
}

impl OwnedPermit {
    /// How many permits this guard holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if self.permits > 0 {
            // Gives back permits taken from this semaphore: the total never passes the limit.
            self.inner.sem.add_permits(self.permits);
        }
        if let Some(since) = self.since {
            self.inner.record_hold(since);
        }
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("permits", &self.num_permits())
            .finish()
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn threads_share_permits_and_counts_add_up() {
        let (threads, rounds) = if cfg!(miri) { (2, 10) } else { (4, 1_000) };
        let s = Semaphore::new("threads", 2).unwrap();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut got = 0u64;
                    for _ in 0..rounds {
                        if let Ok(p) = s.try_acquire() {
                            assert!(s.stats().in_use <= 2);
                            got += p.num_permits() as u64;
                        }
                    }
                    got
                })
            })
            .collect();
        let acquired: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let st = s.stats();
        assert_eq!(st.acquired, acquired);
        assert_eq!(st.calls(), threads * rounds);
        assert_eq!((st.in_use, st.available), (0, 2));
    }

    #[test]
    fn dropped_waiter_gives_back_partial_permits() {
        rt().block_on(async {
            let s = Semaphore::new("drop", 2).unwrap();
            let one = s.acquire().await.unwrap();
            let mut waiter = Box::pin(s.acquire_many(2));
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            assert!(waiter.as_mut().poll(&mut cx).is_pending());
            drop(one); // the waiter now holds 1 of its 2 permits
            drop(waiter);
            assert_eq!(s.available(), 2);
            let st = s.stats();
            assert_eq!(
                (st.acquired, st.cancelled, st.waiting, st.waited),
                (1, 1, 0, 1)
            );
        });
    }

    #[test]
    fn owned_permit_outlives_the_handle() {
        rt().block_on(async {
            // With a meter of its own the instruments hold the semaphore weakly (the global registry keeps a
            // dropped one until its next sweep, to export its last counts).
            let s = Semaphore::builder("owned")
                .permits(1)
                .meter(opentelemetry::global::meter("test"))
                .build()
                .unwrap();
            let weak = Arc::downgrade(&s.inner);
            let p = s.acquire_owned().await.unwrap();
            drop(s);
            assert_eq!(p.num_permits(), 1);
            drop(p);
            assert!(
                weak.upgrade().is_none(),
                "no reference cycle through the instruments"
            );
        });
    }
}
