//! [`BufferPool`]: a pool of `Vec<u8>` byte buffers that refuses to pin buffers that grew too large.
//!
//! A buffer that once held a 50 MiB response would, in a plain pool, keep 50 MiB alive for ever. A `BufferPool`
//! drops any returned buffer whose capacity went above `max_retained_capacity` (counted as a discard), and clears
//! the others.
//!
//! ```
//! use otlp_pool::BufferPool;
//!
//! let pool = BufferPool::builder("http-bodies")
//!     .initial_capacity(4096)
//!     .max_retained_capacity(64 * 1024)
//!     .build()?;
//! let mut body = pool.get();
//! body.extend_from_slice(b"{\"ok\":true}");
//! drop(body);
//! assert_eq!(pool.stats().puts, 1);
//!
//! let mut huge = pool.get();
//! huge.resize(1 << 20, 0); // grew to 1 MiB
//! drop(huge);
//! assert_eq!(pool.stats().discards, 1); // not kept
//! # Ok::<(), otlp_pool::BuildError>(())
//! ```

use crate::builder::{DEFAULT_CAPACITY, DEFAULT_THREAD_CACHE};
use crate::error::BuildError;
use crate::guard::{OwnedPooled, Pooled};
use crate::pool::Pool;
use crate::stats::PoolStats;
use opentelemetry::metrics::Meter;
use std::fmt;
use std::sync::Arc;

/// Default capacity of a new buffer.
pub const DEFAULT_INITIAL_CAPACITY: usize = 4096;
/// Default largest capacity a returned buffer may have and still be kept.
pub const DEFAULT_MAX_RETAINED_CAPACITY: usize = 64 * 1024;

/// A pool of byte buffers (`Vec<u8>`), cleared on return and dropped if they grew past a limit.
pub struct BufferPool {
    pool: Arc<Pool<Vec<u8>>>,
    max_retained: usize,
}

impl BufferPool {
    /// Starts building a buffer pool named `name`.
    pub fn builder(name: impl Into<String>) -> BufferPoolBuilder {
        BufferPoolBuilder {
            name: name.into(),
            capacity: DEFAULT_CAPACITY,
            thread_cache: DEFAULT_THREAD_CACHE,
            initial: DEFAULT_INITIAL_CAPACITY,
            max_retained: DEFAULT_MAX_RETAINED_CAPACITY,
            prefill: 0,
            meter: None,
        }
    }

    /// An empty buffer with capacity of at least the pool's initial capacity.
    #[inline]
    pub fn get(&self) -> Pooled<'_, Vec<u8>> {
        self.pool.get()
    }

    /// Like [`get`](BufferPool::get), but `'static` (holds the pool by `Arc`).
    #[inline]
    pub fn get_owned(&self) -> OwnedPooled<Vec<u8>> {
        self.pool.get_owned()
    }

    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        self.pool.name()
    }

    /// The largest capacity a returned buffer may have and still be kept.
    pub fn max_retained_capacity(&self) -> usize {
        self.max_retained
    }

    /// The underlying generic pool.
    pub fn pool(&self) -> &Arc<Pool<Vec<u8>>> {
        &self.pool
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("pool", &self.pool)
            .field("max_retained", &self.max_retained)
            .finish()
    }
}

/// Builds a [`BufferPool`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BufferPoolBuilder {
    name: String,
    capacity: usize,
    thread_cache: usize,
    initial: usize,
    max_retained: usize,
    prefill: usize,
    meter: Option<Meter>,
}

impl BufferPoolBuilder {
    /// The most idle buffers kept (default 1024).
    pub fn capacity(mut self, max_idle: usize) -> Self {
        self.capacity = max_idle;
        self
    }

    /// Capacity of a newly created buffer (default 4 KiB).
    pub fn initial_capacity(mut self, bytes: usize) -> Self {
        self.initial = bytes;
        self
    }

    /// A returned buffer with more capacity than this is dropped instead of kept (default 64 KiB).
    pub fn max_retained_capacity(mut self, bytes: usize) -> Self {
        self.max_retained = bytes;
        self
    }

    /// Buffers created up front.
    pub fn prefill(mut self, n: usize) -> Self {
        self.prefill = n;
        self
    }

    /// Slots per thread cache (see [`PoolBuilder::thread_cache`](crate::PoolBuilder::thread_cache)).
    pub fn thread_cache(mut self, slots: usize) -> Self {
        self.thread_cache = slots;
        self
    }

    /// Reports metrics through `meter` instead of the global one.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Checks the configuration and builds the pool.
    ///
    /// # Errors
    /// Those of [`PoolBuilder::build`](crate::PoolBuilder::build), and [`BuildError::InitialExceedsRetained`].
    pub fn build(self) -> Result<BufferPool, BuildError> {
        if self.initial > self.max_retained {
            return Err(BuildError::InitialExceedsRetained {
                initial: self.initial,
                max_retained: self.max_retained,
            });
        }
        let (initial, max_retained) = (self.initial, self.max_retained);
        let mut builder = Pool::builder(self.name, move || Vec::with_capacity(initial))
            .capacity(self.capacity)
            .thread_cache(self.thread_cache)
            .prefill(self.prefill)
            .retain(move |buffer: &Vec<u8>| buffer.capacity() <= max_retained)
            .reset(Vec::clear);
        if let Some(meter) = self.meter {
            builder = builder.meter(meter);
        }
        Ok(BufferPool {
            pool: Arc::new(builder.build()?),
            max_retained,
        })
    }
}
