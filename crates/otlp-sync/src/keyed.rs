//! An instrumented keyed rate limiter: one governor bucket per key (client, tenant, IP), in a key store with a
//! bound, because an unbounded map is a memory leak under hostile keys.
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
//! assert!(per_tenant.check_key(&"acme".to_string()).is_ok());
//! assert!(per_tenant.check_key(&"acme".to_string()).is_err()); // acme's burst is spent
//! assert!(per_tenant.check_key(&"globex".to_string()).is_ok()); // globex has its own bucket
//! assert_eq!(per_tenant.len(), 2);
//! # Ok(()) }
//! ```
//!
//! # The bounded key store
//!
//! Keys live in a mutex-guarded `HashMap` like governor's default `HashMapStateStore`, each with governor's
//! `InMemoryState`, plus a "last used" tick. When a new key arrives and the store holds
//! [`max_keys`](crate::RateLimiterBuilder::max_keys) keys, the least recently used eighth of them is evicted in
//! one pass (amortised O(1) per insert). An evicted key forgets its state: if it comes back it gets a fresh burst.
//! Evictions are counted ([`RateLimiterStats::evicted`](crate::RateLimiterStats)).
//! [`KeyedRateLimiter::retain_recent`] drops the keys whose state is indistinguishable from a fresh one (nothing
//! lost); call it from a periodic task to keep the store small in quiet times.
//!
//! Waits, cost and telemetry are as for [`RateLimiter`](crate::RateLimiter), plus the up-down counter `rate_limiter.key.count`.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use tokio_util::sync::CancellationToken;

use crate::error::{BuildError, CheckError, WaitError};
use crate::rate_limiter::{Core, Outcome, RateLimiterBuilder, RateLimiterStats};
use crate::semaphore::AcquireOptions;

/// One key's state: governor's GCRA state and when the key was last used (a tick of the store).
struct Entry {
    state: InMemoryState,
    last_used: u64,
}

struct Map<K> {
    entries: HashMap<K, Entry>,
    tick: u64,
}

/// A governor key store with at most `max_keys` keys; the least recently used go first.
pub(crate) struct BoundedStore<K> {
    map: Mutex<Map<K>>,
    max_keys: usize,
    evicted: Arc<AtomicU64>,
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
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
        // The map holds only atomics and plain numbers, so it is consistent after a panic elsewhere.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone> Map<K> {
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

/// Reads a state's theoretical arrival time without changing it.
fn tat(state: &InMemoryState) -> Option<Nanos> {
    match state.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>) {
        Ok(()) => None,
        Err(tat) => tat,
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut guard = self.lock();
        let map = &mut *guard;
        map.tick += 1;
        let tick = map.tick;
        if let Some(e) = map.entries.get_mut(key) {
            e.last_used = tick;
            return e.state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if map.entries.len() >= self.max_keys {
            map.evict(self.max_keys, &self.evicted);
        }
        let e = map.entries.entry(key.clone()).or_insert_with(|| Entry {
            state: InMemoryState::default(),
            last_used: tick,
        });
        e.state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.lock()
            .entries
            .retain(|_, e| tat(&e.state).is_some_and(|t| t.as_u64() > drop_below.as_u64()));
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

impl<K> fmt::Debug for BoundedStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedStore")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

type KeyedLimiter<K, C> =
    governor::RateLimiter<K, BoundedStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct KeyedInner<K: Hash + Eq + Clone, C: Clock> {
    limiter: KeyedLimiter<K, C>,
    quota: Quota,
    burst: u32,
    max_keys: usize,
    evicted: Arc<AtomicU64>,
    core: Core,
}

/// An instrumented keyed rate limiter (one bucket per key, bounded key store); see the [module docs](self).
///
/// Cloning is cheap and gives another handle to the same limiter.
pub struct KeyedRateLimiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    inner: Arc<KeyedInner<K, C>>,
}

impl<K: Hash + Eq + Clone, C: Clock> Clone for KeyedRateLimiter<K, C> {
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
        let inner = Arc::new_cyclic(|weak: &Weak<KeyedInner<K, C>>| KeyedInner {
            limiter: governor::RateLimiter::new(quota, store, parts.clock),
            quota,
            burst: quota.burst_size().get(),
            max_keys,
            evicted,
            core: Core::new(
                &parts.meter,
                parts.name,
                parts.jitter,
                weak,
                |i: &KeyedInner<K, C>| &i.core,
                Some(|i: &KeyedInner<K, C>| i.limiter.len()),
            ),
        });
        Ok(KeyedRateLimiter { inner })
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedRateLimiter<K, C> {
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
    #[inline]
    pub fn check_key(&self, key: &K) -> Result<(), CheckError> {
        let inner = &*self.inner;
        match inner.limiter.check_key(key) {
            Ok(()) => {
                inner.core.count(Outcome::Allowed);
                Ok(())
            }
            Err(not_until) => Err(inner.core.throttled(not_until, inner.limiter.clock().now())),
        }
    }

    /// Lets `n` cells through for `key` at once if its rate allows all of them now (0 cells always pass).
    pub fn check_key_n(&self, key: &K, n: u32) -> Result<(), CheckError> {
        let inner = &*self.inner;
        let Some(nz) = NonZeroU32::new(n) else {
            inner.core.count(Outcome::Allowed);
            return Ok(());
        };
        match inner.limiter.check_key_n(key, nz) {
            Ok(Ok(())) => {
                inner.core.count(Outcome::Allowed);
                Ok(())
            }
            Ok(Err(not_until)) => Err(inner.core.throttled(not_until, inner.limiter.clock().now())),
            Err(_) => Err(inner.core.insufficient(n, inner.burst)),
        }
    }

    /// Waits until one cell may pass for `key`. Cancel-safe.
    pub async fn until_key_ready(&self, key: &K) {
        // One cell never exceeds the burst and there is no timeout or token: the wait can only succeed.
        let _ = self
            .until_key_n_ready_with(key, 1, AcquireOptions::new())
            .await;
    }

    /// Waits until `n` cells may pass for `key`. Fails if `n` is above the burst. Cancel-safe.
    pub async fn until_key_n_ready(&self, key: &K, n: u32) -> Result<(), WaitError> {
        self.until_key_n_ready_with(key, n, AcquireOptions::new())
            .await
    }

    /// Waits at most `timeout` for one cell for `key`; fails at once if it cannot pass in time.
    pub async fn until_key_ready_timeout(
        &self,
        key: &K,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        self.until_key_n_ready_with(key, 1, AcquireOptions::new().timeout(timeout))
            .await
    }

    /// Waits for one cell for `key` until `token` is cancelled (fails at once if it already is).
    pub async fn until_key_ready_cancellable(
        &self,
        key: &K,
        token: &CancellationToken,
    ) -> Result<(), WaitError> {
        self.until_key_n_ready_with(key, 1, AcquireOptions::new().cancel_on(token))
            .await
    }

    /// Waits until `n` cells may pass for `key`, within the limits of `opts`. Cancel-safe.
    pub async fn until_key_n_ready_with(
        &self,
        key: &K,
        n: u32,
        opts: AcquireOptions<'_>,
    ) -> Result<(), WaitError> {
        let inner = &*self.inner;
        let clock = inner.limiter.clock();
        inner
            .core
            .until_ready(
                n,
                inner.burst,
                opts,
                || clock.now(),
                |nz| inner.limiter.check_key_n(key, nz),
            )
            .await
    }

    /// Drops the keys whose state is indistinguishable from a fresh one (they would get a full burst anyway).
    pub fn retain_recent(&self) {
        self.inner.limiter.retain_recent();
    }

    /// Shrinks the key store's capacity to its length.
    pub fn shrink_to_fit(&self) {
        self.inner.limiter.shrink_to_fit();
    }

    /// Keys stored right now.
    pub fn len(&self) -> usize {
        self.inner.limiter.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.inner.limiter.is_empty()
    }

    /// A snapshot of the counters (the same ones the metrics export), with the key count and evictions.
    pub fn stats(&self) -> RateLimiterStats {
        let mut stats = self.inner.core.stats();
        stats.keys = self.len();
        stats.evicted = self.inner.evicted.load(Ordering::Relaxed);
        stats
    }
}

impl<K: Hash + Eq + Clone, C: Clock> fmt::Debug for KeyedRateLimiter<K, C> {
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

    #[test]
    fn store_stays_bounded_and_evicts_least_recently_used() {
        let evicted = Arc::new(AtomicU64::new(0));
        let store = BoundedStore::<u32>::new(8, Arc::clone(&evicted));
        let touch = |k: u32| {
            let _ = store.measure_and_replace(&k, |_| Ok::<_, ()>(((), Nanos::from(1u64))));
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
        let _ = store.measure_and_replace(&1, |_| Ok::<_, ()>(((), Nanos::from(10u64))));
        let _ = store.measure_and_replace(&2, |_| Ok::<_, ()>(((), Nanos::from(1000u64))));
        store.retain_recent(Nanos::from(100u64));
        assert_eq!(store.len(), 1);
        assert!(!store.is_empty());
        store.shrink_to_fit();
    }
}
