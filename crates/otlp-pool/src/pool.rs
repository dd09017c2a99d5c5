//! [`Pool<T>`]: a bounded, thread-caching object pool with reset on return and OpenTelemetry metrics.

use crate::builder::PoolBuilder;
use crate::guard::{OwnedPooled, Pooled};
use crate::local::{Limits, Local, Locals};
use crate::metrics::Registration;
use crate::reset::Reset;
use crate::shared::Shared;
use crate::stats::{Counter, PoolStats, StatsCell};
use std::fmt;
use std::sync::Arc;

pub(crate) type Factory<T> = Box<dyn Fn() -> T + Send + Sync>;
pub(crate) type ResetFn<T> = Box<dyn Fn(&mut T) + Send + Sync>;
pub(crate) type RetainFn<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// A pool of reusable `T`s.
///
/// [`get`](Pool::get) hands out a guard that derefs to `T`; dropping the guard resets the object and keeps it for
/// the next `get`, unless the pool already keeps `capacity` idle objects (then it is dropped and counted as a
/// discard). Each thread keeps a small cache of idle objects, so the common get/put touches no lock and no shared
/// atomic; the caches and a shared overflow store share one budget of `capacity` slots, so the pool never keeps
/// more than `capacity` idle objects in all.
///
/// `Pool<T>` is `Send + Sync` when `T: Send`: share it by reference, or in an [`Arc`] to hand out `'static` guards
/// with [`get_owned`](Pool::get_owned).
///
/// ```
/// use otlp_pool::Pool;
///
/// let pool = Pool::builder("requests", || Vec::<u8>::with_capacity(4096))
///     .capacity(64)
///     .reset(|v| v.clear())
///     .build()?;
///
/// let mut buf = pool.get();
/// buf.extend_from_slice(b"payload");
/// assert_eq!(&buf[..], b"payload");
/// drop(buf); // cleared and kept
///
/// let again = pool.get();
/// assert!(again.is_empty());
/// let stats = pool.stats();
/// assert_eq!((stats.gets, stats.misses, stats.puts), (2, 1, 1));
/// # Ok::<(), otlp_pool::BuildError>(())
/// ```
pub struct Pool<T: Send> {
    pub(crate) name: String,
    factory: Factory<T>,
    reset: Option<ResetFn<T>>,
    retain: Option<RetainFn<T>>,
    capacity: usize,
    limits: Limits,
    /// The per-thread caches and the shared store behind them.
    locals: Locals<T>,
    stats: Arc<StatsCell>,
    _metrics: Registration,
}

/// Everything the builder validated, handed to [`Pool::from_parts`].
pub(crate) struct Parts<T> {
    pub(crate) name: String,
    pub(crate) factory: Factory<T>,
    pub(crate) reset: Option<ResetFn<T>>,
    pub(crate) retain: Option<RetainFn<T>>,
    pub(crate) capacity: usize,
    pub(crate) thread_cache: usize,
    pub(crate) prefill: usize,
    pub(crate) meter: Option<opentelemetry::metrics::Meter>,
    pub(crate) attributes: Vec<opentelemetry::KeyValue>,
}

impl<T: Send> Pool<T> {
    /// Starts building a pool named `name` (the `pool.name` of its metrics) whose objects `factory` creates.
    pub fn builder<F>(name: impl Into<String>, factory: F) -> PoolBuilder<T>
    where
        T: 'static,
        F: Fn() -> T + Send + Sync + 'static,
    {
        PoolBuilder::new(name.into(), Box::new(factory))
    }

    /// Starts building a pool of `T::default()` objects reset with [`Reset::reset`]: no closure needed.
    ///
    /// ```
    /// use otlp_pool::Pool;
    /// let pool = Pool::<String>::default_reset("names").capacity(16).build()?;
    /// pool.get().push_str("x");
    /// assert!(pool.get().is_empty());
    /// # Ok::<(), otlp_pool::BuildError>(())
    /// ```
    pub fn default_reset(name: impl Into<String>) -> PoolBuilder<T>
    where
        T: Default + Reset + 'static,
    {
        Self::builder(name, T::default).reset(T::reset)
    }

    pub(crate) fn from_parts(parts: Parts<T>) -> Self
    where
        T: 'static,
    {
        let local_max = parts.thread_cache.min(parts.capacity / 4);
        let limits = Limits {
            local_max,
            batch: (local_max / 2).max(1),
        };
        let stats = Arc::new(StatsCell::new(parts.capacity));
        let shared = Shared::new(parts.capacity);
        let prefill = shared.reserve(parts.prefill);
        shared.spill((0..prefill).map(|_| Box::new((parts.factory)())));
        stats.add_prefilled(prefill as u64);
        let locals = Locals::new(&stats, shared);
        let registration = Registration::new(parts.meter, &stats, parts.attributes);
        Pool {
            name: parts.name,
            factory: parts.factory,
            reset: parts.reset,
            retain: parts.retain,
            capacity: parts.capacity,
            limits,
            locals,
            stats,
            _metrics: registration,
        }
    }

    /// The pool's name (the `pool.name` attribute of its metrics).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most idle objects the pool keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> PoolStats {
        self._metrics.follow();
        self.stats.snapshot()
    }

    /// Takes an idle object, or creates one with the factory. Never blocks.
    #[inline]
    pub fn get(&self) -> Pooled<'_, T> {
        Pooled::new(self, self.take_or_create())
    }

    /// Takes an idle object if there is one; never creates, never allocates. A `None` is not counted as a get.
    #[inline]
    pub fn try_get(&self) -> Option<Pooled<'_, T>> {
        Some(Pooled::new(self, self.take()?))
    }

    /// Like [`get`](Pool::get), but the guard holds the pool by `Arc`, so it is `'static` and can move into a
    /// spawned task.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use otlp_pool::Pool;
    ///
    /// let pool = Arc::new(Pool::<Vec<u8>>::default_reset("owned").build()?);
    /// let mut buf = pool.get_owned();
    /// std::thread::spawn(move || buf.push(1)).join().unwrap();
    /// assert_eq!(pool.stats().puts, 1);
    /// # Ok::<(), otlp_pool::BuildError>(())
    /// ```
    #[inline]
    pub fn get_owned(self: &Arc<Self>) -> OwnedPooled<T> {
        OwnedPooled::new(self.clone(), self.take_or_create())
    }

    /// This thread's cache, if it has one (created on first use).
    fn local(&self) -> Option<&Local<T>> {
        self.locals.slow()
    }

    #[inline]
    fn count(&self, local: Option<&Local<T>>, counter: Counter) {
        self.locals.bump(local, counter);
    }

    /// Takes an idle object: this thread's hot slot (the fast path), else its stack or the shared store.
    #[inline(always)]
    fn take(&self) -> Option<Box<T>> {
        if let Some(local) = self.locals.fast()
            && let Some(object) = local.take_hot()
        {
            local.counters.bump(Counter::Gets);
            return Some(object);
        }
        self.take_slow()
    }

    /// Counts a get if it finds an object (the caller counts a get that creates one).
    #[inline(never)]
    fn take_slow(&self) -> Option<Box<T>> {
        let local = self.local();
        let object = match local {
            Some(local) => local.pop(self.locals.shared(), self.limits),
            None => self.locals.shared().take_one(),
        };
        if object.is_some() {
            self.count(local, Counter::Gets);
        }
        object
    }

    #[inline(always)]
    fn take_or_create(&self) -> Box<T> {
        match self.take() {
            Some(object) => object,
            None => self.create(),
        }
    }

    /// A miss: counts a get and a miss, and creates an object with the factory.
    #[inline(never)]
    fn create(&self) -> Box<T> {
        let local = self.local();
        self.count(local, Counter::Gets);
        self.count(local, Counter::Misses);
        Box::new((self.factory)())
    }

    /// Returns an object: checks it may be kept, resets it, and keeps it if a slot is free.
    #[inline(always)]
    pub(crate) fn put(&self, mut object: Box<T>) {
        if self.retain.is_some() {
            return self.put_checked(object);
        }
        self.reset(&mut object);
        self.keep(object);
    }

    /// Runs the user's reset. If it panics, the unwinding drops the object: it is counted as discarded, so that
    /// gets still equal puts + discards + objects in use.
    #[inline(always)]
    fn reset(&self, object: &mut T) {
        if let Some(reset) = &self.reset {
            let discarded_if_unwinding = DiscardOnUnwind(self);
            reset(object);
            std::mem::forget(discarded_if_unwinding);
        }
    }

    /// `put` for a pool with a retain check (out of line, to keep the common `put` small enough to inline).
    #[inline(never)]
    fn put_checked(&self, mut object: Box<T>) {
        if let Some(retain) = &self.retain
            && !retain(&object)
        {
            self.count(self.local(), Counter::Discards);
            return drop(object);
        }
        self.reset(&mut object);
        self.keep(object);
    }

    /// Keeps a returned object (already checked and reset) if a slot is free: this thread's hot slot first.
    #[inline(always)]
    fn keep(&self, mut object: Box<T>) {
        // Looked up after the user's code ran: no reference to the cache is held across it.
        if let Some(local) = self.locals.fast() {
            match local.swap_hot(object) {
                None => return local.counters.bump(Counter::Puts),
                // The hot slot was full: the object that was there takes the slow path (same count).
                Some(previous) => object = previous,
            }
        }
        self.put_slow(object);
    }

    #[inline(never)]
    fn put_slow(&self, object: Box<T>) {
        let local = self.local();
        let rejected = match local {
            Some(local) => self.locals.push(local, self.limits, object),
            None => self.locals.shared().put_one(object),
        };
        match rejected {
            None => self.count(local, Counter::Puts),
            Some(object) => {
                self.count(local, Counter::Discards);
                // Dropped after the cache and the shared store were let go: `T`'s `Drop` is user code.
                drop(object);
            }
        }
    }

    /// Counts an object taken out for good.
    pub(crate) fn count_detached(&self) {
        self.count(self.local(), Counter::Detached);
    }

    /// Counts a get that no pooled object could serve (an oversized byte slice): a get and a miss.
    pub(crate) fn count_unpooled(&self) {
        let local = self.local();
        self.count(local, Counter::Gets);
        self.count(local, Counter::Misses);
    }

    /// Counts a return that the pool will not keep and never saw (an oversized or shrunk byte slice).
    pub(crate) fn count_discard(&self) {
        self.count(self.local(), Counter::Discards);
    }

    /// Takes an object as `get` does, without a guard (for guards of pools built on this one).
    #[inline]
    pub(crate) fn take_boxed(&self) -> Box<T> {
        self.take_or_create()
    }

    /// Idle objects in the shared overflow store and slots nobody holds: tests check the slot budget with them.
    #[cfg(all(test, not(otlp_loom)))]
    pub(crate) fn shared_state(&self) -> (usize, usize) {
        let shared = self.locals.shared();
        (shared.overflow_len(), shared.free_slots())
    }
}

/// Counts a discard when dropped: armed around a user's reset, forgotten when the reset returns.
struct DiscardOnUnwind<'a, T: Send>(&'a Pool<T>);

impl<T: Send> Drop for DiscardOnUnwind<'_, T> {
    fn drop(&mut self) {
        self.0.count(self.0.local(), Counter::Discards);
    }
}

impl<T: Send> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("thread_cache", &self.limits.local_max)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;
    use crate::BuildError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn vec_pool(capacity: usize, thread_cache: usize) -> Pool<Vec<u8>> {
        Pool::builder("test", || Vec::with_capacity(16))
            .capacity(capacity)
            .thread_cache(thread_cache)
            .reset(Vec::clear)
            .build()
            .unwrap()
    }

    /// The slot budget: free slots + idle objects never exceed capacity, whatever the mix of operations.
    fn assert_budget(pool: &Pool<Vec<u8>>) {
        let (overflow, free) = pool.shared_state();
        let stats = pool.stats();
        assert!(stats.idle <= stats.capacity, "{stats:?}");
        assert!(
            overflow + free <= pool.capacity(),
            "overflow {overflow} + free {free}"
        );
    }

    #[test]
    fn reuses_after_return_and_counts() {
        let pool = vec_pool(8, 32);
        let mut a = pool.get();
        a.push(1);
        let a_ptr: *const Vec<u8> = &*a;
        drop(a);
        let b = pool.get();
        assert!(b.is_empty(), "reset ran");
        assert_eq!(&*b as *const Vec<u8>, a_ptr, "same object reused");
        drop(b);
        let s = pool.stats();
        assert_eq!(
            (s.gets, s.misses, s.puts, s.discards, s.idle),
            (2, 1, 2, 0, 1)
        );
        assert_budget(&pool);
    }

    #[test]
    fn keeps_at_most_capacity_idle() {
        for thread_cache in [0, 1, 2, 32] {
            let pool = vec_pool(4, thread_cache);
            let held: Vec<_> = (0..10).map(|_| pool.get()).collect();
            drop(held);
            let s = pool.stats();
            assert_eq!(s.misses, 10);
            assert_eq!(s.puts, 4, "thread_cache {thread_cache}: {s:?}");
            assert_eq!(s.discards, 6);
            assert_eq!(s.idle, 4);
            assert_budget(&pool);
            // Every kept object can be taken again without creating one.
            let again: Vec<_> = std::iter::from_fn(|| pool.try_get()).collect();
            assert_eq!(again.len(), 4);
        }
    }

    #[test]
    fn batches_move_between_threads() {
        let pool = vec_pool(64, 8);
        // Fill from this thread, drain from another: the objects travel through the overflow store.
        drop((0..40).map(|_| pool.get()).collect::<Vec<_>>());
        let idle = pool.stats().idle;
        assert!(idle > 0 && idle <= 40);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut got = 0;
                let mut held = Vec::new();
                while let Some(obj) = pool.try_get() {
                    held.push(obj);
                    got += 1;
                }
                // This thread sees all objects but the few still cached by the filling thread.
                assert!(got + 8 >= idle, "got {got} of {idle}");
            });
        });
        assert_budget(&pool);
    }

    #[test]
    fn counts_outlive_the_pool() {
        // A metrics callback may still hold the stats after the pool (and its per-thread caches, which hold the
        // counters) is gone: the counts are kept, not lost or read from freed memory.
        let pool = vec_pool(8, 4);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| drop((pool.get(), pool.get())));
            }
        });
        drop(pool.get());
        let stats = pool.stats.clone();
        let before = stats.snapshot();
        drop(pool);
        let after = stats.snapshot();
        assert_eq!(before, after);
        assert_eq!((after.gets, after.puts + after.discards), (5, 5));
    }

    #[test]
    fn try_get_never_creates() {
        let pool = vec_pool(4, 32);
        assert!(pool.try_get().is_none());
        assert_eq!(pool.stats().gets, 0);
        drop(pool.get());
        assert!(pool.try_get().is_some());
        assert_eq!(pool.stats().misses, 1);
    }

    #[test]
    fn detach_takes_out_for_good() {
        let pool = vec_pool(4, 32);
        let mut v = pool.get().detach();
        v.push(7);
        let s = pool.stats();
        assert_eq!((s.gets, s.detached, s.puts, s.idle), (1, 1, 0, 0));
    }

    #[test]
    fn prefill_makes_first_gets_reuses() {
        let pool = Pool::builder("p", Vec::<u8>::new)
            .capacity(4)
            .prefill(3)
            .build()
            .unwrap();
        assert_eq!(pool.stats().idle, 3);
        let held: Vec<_> = (0..4).map(|_| pool.get()).collect();
        assert_eq!(pool.stats().misses, 1);
        drop(held);
        assert_eq!(pool.stats().idle, 4);
    }

    #[test]
    fn retain_refuses_and_counts() {
        let pool = Pool::builder("r", Vec::<u8>::new)
            .retain(|v| v.capacity() <= 8)
            .build()
            .unwrap();
        let mut big = pool.get();
        big.reserve(100);
        drop(big);
        assert_eq!(pool.stats().discards, 1);
        assert_eq!(pool.stats().idle, 0);
    }

    #[test]
    fn reset_runs_on_every_return() {
        let resets = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = resets.clone();
        let pool = Pool::builder("c", || 0u32)
            .reset(move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .unwrap();
        for _ in 0..5 {
            drop(pool.get());
        }
        assert_eq!(resets.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_panicking_reset_counts_the_object_as_discarded() {
        let pool = Pool::builder("p", Vec::<u8>::new)
            .reset(|v: &mut Vec<u8>| {
                assert!(v.is_empty(), "reset refuses a dirty buffer");
            })
            .build()
            .unwrap();
        let mut dirty = pool.get();
        dirty.push(1);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(dirty)));
        assert!(panicked.is_err());
        drop(pool.get());
        let s = pool.stats();
        assert_eq!((s.gets, s.puts, s.discards), (2, 1, 1), "{s:?}");
        assert_eq!(s.idle, 1);
    }

    #[test]
    fn reentrant_use_from_reset_is_fine() {
        // A reset that uses the pool again must not deadlock or panic: no borrow is held while user code runs.
        let pool = std::sync::Arc::new(
            Pool::builder("re", Vec::<u8>::new)
                .capacity(8)
                .build()
                .unwrap(),
        );
        let weak = std::sync::Arc::downgrade(&pool);
        let outer = Pool::builder("outer", Vec::<u8>::new)
            .reset(move |v| {
                if let Some(p) = weak.upgrade() {
                    let mut inner = p.get();
                    inner.extend_from_slice(v);
                }
                v.clear();
            })
            .build()
            .unwrap();
        let mut v = outer.get();
        v.push(1);
        drop(v);
        assert_eq!(pool.stats().puts, 1);
        assert_eq!(outer.stats().puts, 1);
    }

    #[test]
    fn invalid_configuration_is_a_typed_error() {
        let err = Pool::builder("", Vec::<u8>::new).build().unwrap_err();
        assert_eq!(err, BuildError::EmptyName);
        let err = Pool::builder("x", Vec::<u8>::new)
            .capacity(0)
            .build()
            .unwrap_err();
        assert_eq!(err, BuildError::ZeroCapacity);
        let err = Pool::builder("x", Vec::<u8>::new)
            .capacity(2)
            .prefill(3)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::PrefillExceedsCapacity {
                prefill: 3,
                capacity: 2
            }
        );
        assert!(err.to_string().contains("lower prefill or raise capacity"));
    }

    #[test]
    fn pools_and_guards_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Pool<Vec<u8>>>();
        send_sync::<Pooled<'static, Vec<u8>>>();
        send_sync::<OwnedPooled<Vec<u8>>>();
        send_sync::<crate::BufferPool>();
        send_sync::<crate::ByteSlicePool>();
        send_sync::<crate::ByteSlice<'static>>();
    }

    #[test]
    fn concurrent_use_keeps_the_budget() {
        let pool = vec_pool(16, 8);
        let rounds = if cfg!(miri) { 20 } else { 2_000 };
        std::thread::scope(|s| {
            for t in 0..3 {
                let pool = &pool;
                s.spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..rounds {
                        if (i + t) % 3 == 0 {
                            held.push(pool.get());
                        } else {
                            held.pop();
                            drop(pool.get());
                        }
                    }
                });
            }
        });
        let s = pool.stats();
        assert_eq!(s.gets, s.misses + s.reuses());
        assert_eq!(s.gets, s.puts + s.discards, "every get came back: {s:?}");
        assert_budget(&pool);
        // Every idle object is really there.
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let drained: Vec<_> = std::iter::from_fn(|| pool.try_get()).collect();
                assert!(drained.len() as u64 <= s.idle);
            });
        });
    }
}
