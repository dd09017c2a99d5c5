//! [`PoolBuilder`]: validated configuration for a [`Pool`].

use crate::error::BuildError;
use crate::pool::{Factory, Parts, Pool, ResetFn, RetainFn};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use std::fmt;

/// Default most idle objects a pool keeps.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Default most slots one thread's cache holds (further capped at a quarter of the capacity).
pub const DEFAULT_THREAD_CACHE: usize = 32;

/// Builds a [`Pool`]. Made by [`Pool::builder`] or [`Pool::default_reset`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder<T> {
    name: String,
    factory: Factory<T>,
    reset: Option<ResetFn<T>>,
    retain: Option<RetainFn<T>>,
    capacity: usize,
    thread_cache: usize,
    prefill: usize,
    meter: Option<Meter>,
    attributes: Vec<KeyValue>,
}

impl<T: Send + 'static> PoolBuilder<T> {
    pub(crate) fn new(name: String, factory: Factory<T>) -> Self {
        PoolBuilder {
            name,
            factory,
            reset: None,
            retain: None,
            capacity: DEFAULT_CAPACITY,
            thread_cache: DEFAULT_THREAD_CACHE,
            prefill: 0,
            meter: None,
            attributes: Vec::new(),
        }
    }

    /// The most idle objects the pool keeps (default 1024). Returns beyond it are dropped and counted as discards.
    pub fn capacity(mut self, max_idle: usize) -> Self {
        self.capacity = max_idle;
        self
    }

    /// Runs on every object as it comes back, before it is kept (e.g. `Vec::clear`). Keep the allocation. If it
    /// panics, the object is dropped and counted as a discard, and the panic goes on to the code that dropped the
    /// guard.
    pub fn reset<F>(mut self, reset: F) -> Self
    where
        F: Fn(&mut T) + Send + Sync + 'static,
    {
        self.reset = Some(Box::new(reset));
        self
    }

    /// Decides, before the reset, whether a returned object may be kept; `false` drops it (counted as a discard).
    /// Use it to refuse objects that grew too large to be worth pinning in memory.
    pub fn retain<F>(mut self, retain: F) -> Self
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.retain = Some(Box::new(retain));
        self
    }

    /// Creates `n` objects up front (at most `capacity`), so the first gets are reuses.
    pub fn prefill(mut self, n: usize) -> Self {
        self.prefill = n;
        self
    }

    /// The most slots one thread's cache holds (default 32, capped at a quarter of the capacity; 0 turns the
    /// per-thread caches off, so every operation goes through the shared store).
    pub fn thread_cache(mut self, slots: usize) -> Self {
        self.thread_cache = slots;
        self
    }

    /// Reports metrics through `meter` instead of `opentelemetry::global::meter_with_scope("otlp-pool")`.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Extra attributes on every data point of this pool (after `pool.name`).
    pub(crate) fn attribute(mut self, attribute: KeyValue) -> Self {
        self.attributes.push(attribute);
        self
    }

    /// Checks the configuration and builds the pool.
    ///
    /// # Errors
    /// [`BuildError::EmptyName`], [`BuildError::ZeroCapacity`], [`BuildError::PrefillExceedsCapacity`].
    pub fn build(self) -> Result<Pool<T>, BuildError> {
        if self.name.is_empty() {
            return Err(BuildError::EmptyName);
        }
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if self.prefill > self.capacity {
            return Err(BuildError::PrefillExceedsCapacity {
                prefill: self.prefill,
                capacity: self.capacity,
            });
        }
        let mut attributes = vec![KeyValue::new("pool.name", self.name.clone())];
        attributes.extend(self.attributes);
        Ok(Pool::from_parts(Parts {
            name: self.name,
            factory: self.factory,
            reset: self.reset,
            retain: self.retain,
            capacity: self.capacity,
            thread_cache: self.thread_cache,
            prefill: self.prefill,
            meter: self.meter,
            attributes,
        }))
    }
}

impl<T> fmt::Debug for PoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("thread_cache", &self.thread_cache)
            .field("prefill", &self.prefill)
            .field("reset", &self.reset.is_some())
            .field("retain", &self.retain.is_some())
            .field("meter", &self.meter.is_some())
            .finish()
    }
}
