//! An instrumented keyed rate limiter: one GCRA bucket per key (client, tenant, IP), in a key store with a bound,
//! because an unbounded map is a memory leak under hostile keys.
//!
//! ```
//! use otlp_sync::KeyedRateLimiter;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let per_tenant = KeyedRateLimiter::<String>::builder("tenants")
//!     .per_second(50)
//!     .burst(1)
//!     .max_keys(10_000)
//!     .build()?;
//!
//! // Checked by `&str`: a key already stored costs no allocation.
//! assert!(per_tenant.check_key("acme").is_ok());
//! assert!(per_tenant.check_key("acme").is_err()); // acme's burst is spent
//! assert!(per_tenant.check_key("globex").is_ok()); // globex has its own bucket
//! assert_eq!(per_tenant.len(), 2);
//! # Ok(()) }
//! ```
//!
//! # The bounded key store
//!
//! Keys live in a mutex-guarded `HashMap` like governor's default `HashMapStateStore`, each with its GCRA state
//! (governor's algorithm, on a plain number under the lock) plus a "last used" tick. Lookups take any borrowed
//! form of the key (`K: Borrow<Q>`, as `HashMap::get` does), which governor's keyed limiter (`&K` only) cannot: a
//! `String`-keyed limiter checked with the request's `&str` allocates only when a key is new. When a new key arrives and the store holds
//! [`max_keys`](crate::RateLimiterBuilder::max_keys) keys, the least recently used eighth of them is evicted in
//! one pass (amortised O(1) per insert). An evicted key forgets its state: if it comes back it gets a fresh burst.
//! Evictions are counted ([`RateLimiterStats::evicted`](crate::RateLimiterStats)).
//! [`KeyedRateLimiter::retain_recent`] drops the keys whose state is indistinguishable from a fresh one (nothing
//! lost); call it from a periodic task to keep the store small in quiet times.
//!
//! Waits, cost and telemetry are as for [`RateLimiter`](crate::RateLimiter), plus the up-down counter `rate_limiter.key.count`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::{InsufficientCapacity, Quota};
use tokio_util::sync::CancellationToken;

use crate::error::{BuildError, CheckError, WaitError};
use crate::rate_limiter::{Core, Outcome, RateLimiterBuilder, RateLimiterStats};
use crate::semaphore::AcquireOptions;

/// One key's state: its GCRA theoretical arrival time (nanoseconds since the limiter's start; 0 = a fresh key) and
/// when the key was last used (a tick of the store).
struct Entry {
    tat: u64,
    last_used: u64,
}

struct Map<K> {
    entries: HashMap<K, Entry>,
    tick: u64,
}

/// The key store: at most `max_keys` keys; the least recently used go first. Looked up by a borrowed form of the
/// key (`&str` for `String` keys), so a check of a known key allocates nothing; a new key is made owned once.
pub(crate) struct BoundedStore<K> {
    map: Mutex<Map<K>>,
    max_keys: usize,
    evicted: Arc<AtomicU64>,
}

impl<K: Hash + Eq> BoundedStore<K> {
    pub(crate) fn new(max_keys: usize, evicted: Arc<AtomicU64>) -> Self {
        BoundedStore {
            map: Mutex::new(Map {
                entries: HashMap::new(),
                tick: 0,
            }),
            max_keys: max_keys.max(1),
            evicted,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Map<K>> {
        // The map holds only plain numbers, so it is consistent after a panic elsewhere.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on `key`'s theoretical arrival time (`None` for a fresh key) and stores the new one it returns;
    /// `Err` leaves the time as it was (a new key is stored all the same, as governor's stores do).
    fn measure_and_replace<Q, T, E>(
        &self,
        key: &Q,
        f: impl FnOnce(Option<u64>) -> Result<(T, u64), E>,
    ) -> Result<T, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut guard = self.lock();
        let map = &mut *guard;
        map.tick += 1;
        let tick = map.tick;
        if let Some(e) = map.entries.get_mut(key) {
            e.last_used = tick;
            return apply(&mut e.tat, f);
        }
        if map.entries.len() >= self.max_keys {
            map.evict(self.max_keys, &self.evicted);
        }
        let e = map.entries.entry(key.to_owned()).or_insert(Entry {
            tat: 0,
            last_used: tick,
        });
        apply(&mut e.tat, f)
    }

    /// Drops the keys whose theoretical arrival time is at or below `drop_below` (indistinguishable from fresh).
    fn retain_recent(&self, drop_below: u64) {
        self.lock().entries.retain(|_, e| e.tat > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.lock().entries.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }
}

fn apply<T, E>(tat: &mut u64, f: impl FnOnce(Option<u64>) -> Result<(T, u64), E>) -> Result<T, E> {
    let (out, next) = f((*tat != 0).then_some(*tat))?;
    // 0 means "fresh": a time that would be 0 is stored as 1 ns, as governor's in-memory state does.
    *tat = next.max(1);
    Ok(out)
}

impl<K: Hash + Eq> Map<K> {
    /// Drops the least recently used eighth (at least one) of `max_keys` keys.
    #[cold]
    fn evict(&mut self, max_keys: usize, evicted: &AtomicU64) {
        if self.entries.is_empty() {
            return;
        }
        let batch = (max_keys / 8).clamp(1, self.entries.len());
        let mut ticks: Vec<u64> = self.entries.values().map(|e| e.last_used).collect();
        // `batch - 1 < len`: `batch` is at least 1 and at most the number of entries.
        let cutoff = *ticks.select_nth_unstable(batch - 1).1;
        let before = self.entries.len();
        self.entries.retain(|_, e| e.last_used > cutoff);
        evicted.fetch_add((before - self.entries.len()) as u64, Ordering::Relaxed);
    }
}

impl<K> fmt::Debug for BoundedStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedStore")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// Governor's generic cell rate algorithm (`gcra.rs`) on this store's plain per-key numbers: governor's keyed
/// limiter takes only `&K`, which for `String` keys would cost an allocation per check of a `&str`.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    /// Nanoseconds one cell is worth (the replenish interval).
    t: u64,
    /// Tolerance: what a full burst is worth beyond the first cell, `t * (burst - 1)`.
    tau: u64,
}

impl Gcra {
    fn new(quota: Quota) -> Self {
        let t = u64::try_from(quota.replenish_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let tau = t.saturating_mul(u64::from(quota.burst_size().get() - 1));
        Gcra { t, tau }
    }

    /// The decision on `n` cells at `t0` (nanoseconds since the start) for a key whose theoretical arrival time is
    /// `tat`: the new time if they pass, else how long until they could. The caller has checked `n` against the
    /// burst ([`Gcra::fits`]).
    fn decide(&self, n: NonZeroU32, t0: u64, tat: Option<u64>) -> Result<((), u64), Duration> {
        let additional = self.t.saturating_mul(u64::from(n.get() - 1));
        let tat = tat.unwrap_or(t0);
        let earliest = tat.saturating_add(additional).saturating_sub(self.tau);
        if t0 < earliest {
            Err(Duration::from_nanos(earliest - t0))
        } else {
            Ok((
                (),
                tat.max(t0)
                    .saturating_add(self.t)
                    .saturating_add(additional),
            ))
        }
    }

    /// Whether `n` cells can ever pass at once (at most the burst).
    fn fits(&self, n: NonZeroU32) -> bool {
        self.t.saturating_mul(u64::from(n.get() - 1)) <= self.tau
    }
}

struct KeyedInner<K, C: Clock> {
    store: BoundedStore<K>,
    gcra: Gcra,
    clock: C,
    /// The instant the theoretical arrival times count from.
    start: C::Instant,
    quota: Quota,
    burst: u32,
    max_keys: usize,
    evicted: Arc<AtomicU64>,
    core: Core,
}

impl<K, C> otlp_core::instruments::Source for KeyedInner<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn observe(&self, out: &mut otlp_core::instruments::Observations<'_>) {
        self.core.observe(out, Some(self.store.len()));
    }
}

impl<K: Hash + Eq, C: Clock> KeyedInner<K, C> {
    fn now_nanos(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    /// `Ok(Ok(()))`: the `n` cells pass; `Ok(Err(wait))`: they could in `wait`; `Err`: `n` exceeds the burst.
    fn check_n<Q>(
        &self,
        key: &Q,
        n: NonZeroU32,
    ) -> Result<Result<(), Duration>, InsufficientCapacity>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.gcra.fits(n) {
            return Err(InsufficientCapacity(self.burst));
        }
        let t0 = self.now_nanos();
        Ok(self
            .store
            .measure_and_replace(key, |tat| self.gcra.decide(n, t0, tat)))
    }
}

/// An instrumented keyed rate limiter (one bucket per key, bounded key store); see the [module docs](self).
///
/// Cloning is cheap and gives another handle to the same limiter.
pub struct KeyedRateLimiter<K: Hash + Eq, C: Clock = DefaultClock> {
    inner: Arc<KeyedInner<K, C>>,
}

impl<K: Hash + Eq, C: Clock> Clone for KeyedRateLimiter<K, C> {
    fn clone(&self) -> Self {
        KeyedRateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> KeyedRateLimiter<K, DefaultClock>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A limiter letting `cells` per second through per key, in bursts of up to `cells`. Fails if `cells` is 0.
    pub fn per_second(name: impl Into<String>, cells: u64) -> Result<Self, BuildError> {
        RateLimiterBuilder::new(name.into())
            .per_second(cells)
            .build_keyed()
    }

    /// A limiter with a governor [`Quota`] per key.
    pub fn new(name: impl Into<String>, quota: Quota) -> Result<Self, BuildError> {
        RateLimiterBuilder::new(name.into())
            .quota(quota)
            .build_keyed()
    }

    /// A builder whose [`build`](KeyedRateLimiterBuilder::build) makes a keyed limiter (the key type is inferred
    /// from the limiter's use, or named: `KeyedRateLimiter::<String>::builder(..)`).
    pub fn builder(name: impl Into<String>) -> KeyedRateLimiterBuilder<K, DefaultClock> {
        KeyedRateLimiterBuilder {
            inner: RateLimiterBuilder::new(name.into()),
            _key: PhantomData,
        }
    }
}

/// Builds a [`KeyedRateLimiter`]: `KeyedRateLimiter::builder("name").per_second(10).max_keys(1000).build()`.
///
/// The same settings as [`RateLimiterBuilder`] (which builds a direct limiter), for the bucket of each key.
pub struct KeyedRateLimiterBuilder<K, C = DefaultClock> {
    inner: RateLimiterBuilder<C>,
    _key: PhantomData<fn(K)>,
}

impl<K, C: fmt::Debug> fmt::Debug for KeyedRateLimiterBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyedRateLimiterBuilder")
            .field(&self.inner)
            .finish()
    }
}

impl<K, C: Clock> KeyedRateLimiterBuilder<K, C> {
    fn map<C2>(
        self,
        f: impl FnOnce(RateLimiterBuilder<C>) -> RateLimiterBuilder<C2>,
    ) -> KeyedRateLimiterBuilder<K, C2> {
        KeyedRateLimiterBuilder {
            inner: f(self.inner),
            _key: PhantomData,
        }
    }

    /// `cells` per second per key, in bursts of up to `cells` unless [`burst`](Self::burst) says otherwise.
    pub fn per_second(self, cells: u64) -> Self {
        self.map(|b| b.per_second(cells))
    }

    /// `cells` per minute per key, in bursts of up to `cells` unless [`burst`](Self::burst) says otherwise.
    pub fn per_minute(self, cells: u64) -> Self {
        self.map(|b| b.per_minute(cells))
    }

    /// `cells` every `period` per key (one every `period / cells`), in bursts of up to `cells` unless
    /// [`burst`](Self::burst) says otherwise.
    pub fn per_period(self, cells: u64, period: Duration) -> Self {
        self.map(|b| b.per_period(cells, period))
    }

    /// A governor [`Quota`] per key, as is (its burst too, unless [`burst`](Self::burst) overrides it).
    pub fn quota(self, quota: Quota) -> Self {
        self.map(|b| b.quota(quota))
    }

    /// The most cells a key may pass at once after a quiet spell.
    pub fn burst(self, burst: u64) -> Self {
        self.map(|b| b.burst(burst))
    }

    /// Adds a random delay from `jitter` to every sleep of a wait.
    pub fn jitter(self, jitter: governor::Jitter) -> Self {
        self.map(|b| b.jitter(jitter))
    }

    /// The meter to create instruments from, instead of the global meter provider's `otlp-sync` meter.
    pub fn meter(self, meter: opentelemetry::metrics::Meter) -> Self {
        self.map(|b| b.meter(meter))
    }

    /// The bound on the key store (default [`DEFAULT_MAX_KEYS`](crate::DEFAULT_MAX_KEYS)); 0 is an error.
    pub fn max_keys(self, max_keys: usize) -> Self {
        self.map(|b| b.max_keys(max_keys))
    }

    /// The clock the limiter reads, e.g. [`TokioClock`](crate::TokioClock) for tests with a paused clock.
    pub fn clock<C2: Clock>(self, clock: C2) -> KeyedRateLimiterBuilder<K, C2> {
        self.map(|b| b.clock(clock))
    }

    /// Validates the configuration and builds the keyed limiter.
    pub fn build(self) -> Result<KeyedRateLimiter<K, C>, BuildError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
        C::Instant: Send + Sync,
    {
        KeyedRateLimiter::from_builder(self.inner)
    }
}

impl<K, C> KeyedRateLimiter<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    pub(crate) fn from_builder(builder: RateLimiterBuilder<C>) -> Result<Self, BuildError> {
        let (quota, parts) = builder.parts()?;
        let evicted = Arc::new(AtomicU64::new(0));
        let store = BoundedStore::new(parts.max_keys, Arc::clone(&evicted));
        let max_keys = parts.max_keys;
        let clock = parts.clock;
        let start = clock.now();
        let inner = Arc::new(KeyedInner {
            store,
            gcra: Gcra::new(quota),
            clock,
            start,
            quota,
            burst: quota.burst_size().get(),
            max_keys,
            evicted,
            core: Core::new(parts.meter, parts.name, parts.jitter),
        });
        inner.core.link.add(inner.clone());
        Ok(KeyedRateLimiter { inner })
    }
}

impl<K: Hash + Eq, C: Clock> KeyedRateLimiter<K, C> {
    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.inner.core.name
    }

    /// The quota (rate and burst) of each key.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// The bound on the key store.
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// Lets one cell through for `key` if its rate allows it now; never waits.
    ///
    /// `key` may be any borrowed form of the key type, as `HashMap::get` takes (`&str` for `String` keys): a key
    /// already in the store costs no allocation, a new one is made owned once.
    #[inline]
    pub fn check_key<Q>(&self, key: &Q) -> Result<(), CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_key_nz(key, NonZeroU32::MIN)
    }

    /// Lets `n` cells through for `key` at once if its rate allows all of them now (0 cells always pass).
    pub fn check_key_n<Q>(&self, key: &Q, n: u32) -> Result<(), CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let Some(nz) = NonZeroU32::new(n) else {
            self.inner.core.count(Outcome::Allowed);
            return Ok(());
        };
        self.check_key_nz(key, nz)
    }

    #[inline]
    fn check_key_nz<Q>(&self, key: &Q, n: NonZeroU32) -> Result<(), CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let inner = &*self.inner;
        match inner.check_n(key, n) {
            Ok(Ok(())) => {
                inner.core.count(Outcome::Allowed);
                Ok(())
            }
            Ok(Err(retry_after)) => Err(inner.core.throttled_for(retry_after)),
            Err(_) => Err(inner.core.insufficient(n.get(), inner.burst)),
        }
    }

    /// Waits until one cell may pass for `key`. Cancel-safe.
    pub async fn until_key_ready<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // One cell never exceeds the burst and there is no timeout or token: the wait can only succeed.
        let _ = self
            .until_key_n_ready_with(key, 1, AcquireOptions::new())
            .await;
    }

    /// Waits until `n` cells may pass for `key`. Fails if `n` is above the burst. Cancel-safe.
    pub async fn until_key_n_ready<Q>(&self, key: &Q, n: u32) -> Result<(), WaitError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.until_key_n_ready_with(key, n, AcquireOptions::new())
            .await
    }

    /// Waits at most `timeout` for one cell for `key`; fails at once if it cannot pass in time.
    pub async fn until_key_ready_timeout<Q>(
        &self,
        key: &Q,
        timeout: Duration,
    ) -> Result<(), WaitError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.until_key_n_ready_with(key, 1, AcquireOptions::new().timeout(timeout))
            .await
    }

    /// Waits for one cell for `key` until `token` is cancelled (fails at once if it already is).
    pub async fn until_key_ready_cancellable<Q>(
        &self,
        key: &Q,
        token: &CancellationToken,
    ) -> Result<(), WaitError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.until_key_n_ready_with(key, 1, AcquireOptions::new().cancel_on(token))
            .await
    }

    /// Waits until `n` cells may pass for `key`, within the limits of `opts`. Cancel-safe.
    pub async fn until_key_n_ready_with<Q>(
        &self,
        key: &Q,
        n: u32,
        opts: AcquireOptions<'_>,
    ) -> Result<(), WaitError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let inner = &*self.inner;
        inner
            .core
            .until_ready(n, inner.burst, opts, |nz| inner.check_n(key, nz))
            .await
    }

    /// Drops the keys whose state is indistinguishable from a fresh one (they would get a full burst anyway).
    pub fn retain_recent(&self) {
        let inner = &*self.inner;
        inner
            .store
            .retain_recent(inner.now_nanos().saturating_sub(inner.gcra.t));
    }

    /// Shrinks the key store's capacity to its length.
    pub fn shrink_to_fit(&self) {
        self.inner.store.shrink_to_fit();
    }

    /// Keys stored right now.
    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.inner.store.is_empty()
    }

    /// A snapshot of the counters (the same ones the metrics export), with the key count and evictions.
    pub fn stats(&self) -> RateLimiterStats {
        let mut stats = self.inner.core.stats();
        stats.keys = self.len();
        stats.evicted = self.inner.evicted.load(Ordering::Relaxed);
        stats
    }
}

impl<K: Hash + Eq, C: Clock> fmt::Debug for KeyedRateLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("name", &self.inner.core.name)
            .field("quota", &self.inner.quota)
            .field("max_keys", &self.inner.max_keys)
            .field("keys", &self.len())
            .finish()
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn store_stays_bounded_and_evicts_least_recently_used() {
        let evicted = Arc::new(AtomicU64::new(0));
        let store = BoundedStore::<u32>::new(8, Arc::clone(&evicted));
        let touch = |k: u32| {
            let _ = store.measure_and_replace(&k, |_| Ok::<_, ()>(((), 1)));
        };
        for k in 0..8 {
            touch(k);
        }
        touch(0); // 0 becomes the most recently used
        touch(100); // full: evicts one (8 / 8), the least recently used: 1
        assert_eq!(store.len(), 8);
        assert_eq!(evicted.load(Ordering::Relaxed), 1);
        let keys: Vec<u32> = store.lock().entries.keys().copied().collect();
        assert!(keys.contains(&0) && keys.contains(&100) && !keys.contains(&1));
        for k in 200..300 {
            touch(k);
            assert!(store.len() <= 8);
        }
    }

    #[test]
    fn retain_recent_drops_old_states() {
        let store = BoundedStore::<u32>::new(8, Arc::new(AtomicU64::new(0)));
        let _ = store.measure_and_replace(&1, |_| Ok::<_, ()>(((), 10)));
        let _ = store.measure_and_replace(&2, |_| Ok::<_, ()>(((), 1000)));
        store.retain_recent(100);
        assert_eq!(store.len(), 1);
        assert!(!store.is_empty());
        store.shrink_to_fit();
    }

    /// The store's GCRA decides as governor's keyed limiter does, step for step, on the same clock: same
    /// allowed/throttled answers, same retry-after, same "never" for more cells than the burst.
    // Not under miri: the builder starts from governor's default clock, whose CPU probe (inline assembly) miri
    // cannot run, before `.clock(..)` replaces it.
    #[cfg(not(miri))]
    #[test]
    fn decisions_match_governors_keyed_limiter() {
        let (runs, steps) = (20, 400);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for run in 0..runs {
            let quota = Quota::with_period(Duration::from_millis(1 + next() % 50))
                .unwrap()
                .allow_burst(NonZeroU32::new(1 + (next() % 5) as u32).unwrap());
            let clock = FakeRelativeClock::default();
            let ours = crate::RateLimiterBuilder::new(format!("gcra-{run}"))
                .quota(quota)
                .clock(clock.clone())
                .build_keyed::<String>()
                .unwrap();
            let theirs = governor::RateLimiter::hashmap_with_clock(quota, clock.clone());
            for _ in 0..steps {
                clock.advance(Duration::from_micros(next() % 30_000));
                let key = format!("k{}", next() % 3);
                let n = NonZeroU32::new(1 + (next() % 6) as u32).unwrap();
                let want = match theirs.check_key_n(&key, n) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(nu)) => Err(CheckError::Throttled {
                        retry_after: nu.wait_time_from(clock.now()),
                    }),
                    Err(_) => Err(CheckError::InsufficientCapacity {
                        requested: n.get(),
                        burst: quota.burst_size().get(),
                    }),
                };
                assert_eq!(ours.check_key_n(key.as_str(), n.get()), want, "run {run}");
            }
        }
    }
}
