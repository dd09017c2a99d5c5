//! [`ByteSlicePool`]: byte buffers in power-of-two size classes.
//!
//! One pool per class (64 B, 128 B, ... 64 KiB by default). `get(len)` takes from the smallest class whose size
//! is at least `len`, so a 100-byte request gets a 128-byte buffer and never pins a 64 KiB one. A `len` above the
//! largest class is a plain allocation that is never kept (counted as a get and a miss of the largest class).
//!
//! A buffer remembers the class it was got from, and every count about it lands on that class, so each class keeps
//! `gets = puts + discards + detached + in use`. On return it is kept only if it still fits that class (capacity
//! from the class size up to twice it, and never above the largest class); one that grew past its class or shrank
//! below it is dropped and counted as a discard of its class. Moving it to the class it grew into would put an
//! object in a class that never handed it out.
//!
//! ```
//! use otlp_pool::ByteSlicePool;
//!
//! let pool = ByteSlicePool::builder("frames").classes(64, 64 * 1024).build()?;
//! let mut frame = pool.get(100);
//! assert!(frame.capacity() >= 100);
//! assert_eq!(frame.size_class(), Some(128));
//! frame.extend_from_slice(&[0u8; 100]);
//! drop(frame);
//! assert_eq!(pool.class_stats(128).map(|s| s.idle), Some(1));
//! # Ok::<(), otlp_pool::BuildError>(())
//! ```

use crate::error::BuildError;
use crate::pool::Pool;
use crate::stats::PoolStats;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// Default smallest size class, in bytes.
pub const DEFAULT_MIN_CLASS: usize = 64;
/// Default largest size class, in bytes.
pub const DEFAULT_MAX_CLASS: usize = 64 * 1024;
const MAX_CLASS_LIMIT: usize = 1 << 30;

/// Byte buffers in power-of-two size classes.
pub struct ByteSlicePool {
    name: String,
    min_shift: u32,
    classes: Vec<Pool<Vec<u8>>>,
}

/// `ceil(log2(n))`, with 0 and 1 both in class 2^0.
fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

impl ByteSlicePool {
    /// Starts building a byte-slice pool named `name`.
    pub fn builder(name: impl Into<String>) -> ByteSlicePoolBuilder {
        ByteSlicePoolBuilder {
            name: name.into(),
            min: DEFAULT_MIN_CLASS,
            max: DEFAULT_MAX_CLASS,
            capacity_per_class: None,
            meter: None,
        }
    }

    fn max_shift(&self) -> u32 {
        self.min_shift + self.classes.len() as u32 - 1
    }

    fn largest(&self) -> &Pool<Vec<u8>> {
        &self.classes[self.classes.len() - 1]
    }

    /// An empty buffer with capacity of at least `len` bytes, from the smallest class that fits. A `len` above the
    /// largest class gets a fresh allocation that will not be kept.
    #[inline]
    pub fn get(&self, len: usize) -> ByteSlice<'_> {
        let shift = ceil_log2(len).max(self.min_shift);
        let (buffer, class) = match self.classes.get((shift - self.min_shift) as usize) {
            Some(class) => (class.take_boxed(), shift - self.min_shift),
            None => {
                self.largest().count_unpooled();
                (
                    Box::new(Vec::with_capacity(len)),
                    self.classes.len() as u32 - 1,
                )
            }
        };
        ByteSlice {
            buffer: Some(buffer),
            class,
            pool: self,
        }
    }

    /// Whether a buffer of `capacity` bytes may be kept by class `class`: it serves every get of that class and
    /// pins at most twice the class size, never more than the largest class.
    fn fits(&self, class: u32, capacity: usize) -> bool {
        let size = 1usize << (self.min_shift + class);
        capacity >= size && capacity / 2 < size && capacity <= 1usize << self.max_shift()
    }

    /// Returns a buffer to the class it was got from if it still fits it; otherwise drops it, counted as a discard
    /// of that class.
    // The box is the pool's storage unit (kept across reuses), not an extra allocation per get.
    #[allow(clippy::box_collection)]
    fn give_back(&self, class: u32, buffer: Box<Vec<u8>>) {
        let pool = &self.classes[class as usize];
        if self.fits(class, buffer.capacity()) {
            pool.put(buffer);
        } else {
            pool.count_discard();
        }
    }

    /// The class sizes, smallest first.
    pub fn class_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.classes.len()).map(|i| 1usize << (self.min_shift as usize + i))
    }

    /// Statistics of the class of exactly `size` bytes, if there is one.
    pub fn class_stats(&self, size: usize) -> Option<PoolStats> {
        if !size.is_power_of_two() {
            return None;
        }
        let shift = size.trailing_zeros();
        let index = shift.checked_sub(self.min_shift)?;
        self.classes.get(index as usize).map(Pool::stats)
    }

    /// Statistics of all classes added together.
    pub fn stats(&self) -> PoolStats {
        let mut total = PoolStats::default();
        for class in &self.classes {
            total.merge(&class.stats());
        }
        total
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for ByteSlicePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteSlicePool")
            .field("name", &self.name)
            .field("classes", &self.class_sizes().collect::<Vec<_>>())
            .field("stats", &self.stats())
            .finish()
    }
}

/// A byte buffer from a [`ByteSlicePool`]; derefs to `Vec<u8>` and goes back to its size class on drop.
pub struct ByteSlice<'a> {
    // `None` only after `detach`. Boxed because pools store boxes (see `give_back`).
    #[allow(clippy::box_collection)]
    buffer: Option<Box<Vec<u8>>>,
    /// Index of the class the buffer was got from (the largest for an oversize get): its counts all land there.
    class: u32,
    pool: &'a ByteSlicePool,
}

impl ByteSlice<'_> {
    /// The size class this buffer would return to now: the class it was got from, if its capacity still fits it
    /// (at least the class size, below twice it, not above the largest class); `None` if it will be dropped on
    /// return (it grew past its class, shrank below it, or was never a class's).
    pub fn size_class(&self) -> Option<usize> {
        self.pool
            .fits(self.class, self.capacity())
            .then(|| 1usize << (self.pool.min_shift + self.class))
    }

    /// Takes the buffer out of the pool for good (counted as detached from the class it was got from).
    pub fn detach(mut self) -> Vec<u8> {
        self.pool.classes[self.class as usize].count_detached();
        self.buffer.take().map(|b| *b).unwrap_or_default()
    }
}

impl Deref for ByteSlice<'_> {
    type Target = Vec<u8>;

    #[inline]
    fn deref(&self) -> &Vec<u8> {
        self.buffer
            .as_deref()
            .expect("a byte slice holds its buffer until detach or drop")
    }
}

impl DerefMut for ByteSlice<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        self.buffer
            .as_deref_mut()
            .expect("a byte slice holds its buffer until detach or drop")
    }
}

impl Drop for ByteSlice<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(self.class, buffer);
        }
    }
}

impl fmt::Debug for ByteSlice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteSlice")
            .field("pool", &self.pool.name)
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Builds a [`ByteSlicePool`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ByteSlicePoolBuilder {
    name: String,
    min: usize,
    max: usize,
    capacity_per_class: Option<usize>,
    meter: Option<Meter>,
}

impl ByteSlicePoolBuilder {
    /// Smallest and largest class, in bytes; both powers of two (default 64 B to 64 KiB).
    pub fn classes(mut self, min: usize, max: usize) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// The most idle buffers kept per class. By default about 4 MiB per class, between 16 and 1024 buffers.
    pub fn capacity_per_class(mut self, max_idle: usize) -> Self {
        self.capacity_per_class = Some(max_idle);
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
    /// [`BuildError::InvalidSizeClasses`] unless both bounds are powers of two with `min <= max <= 1 GiB`;
    /// [`BuildError::EmptyName`]; [`BuildError::ZeroCapacity`].
    pub fn build(self) -> Result<ByteSlicePool, BuildError> {
        let (min, max) = (self.min, self.max);
        if !min.is_power_of_two() || !max.is_power_of_two() || min > max || max > MAX_CLASS_LIMIT {
            return Err(BuildError::InvalidSizeClasses { min, max });
        }
        let (min_shift, max_shift) = (min.trailing_zeros(), max.trailing_zeros());
        let classes = (min_shift..=max_shift)
            .map(|shift| {
                let size = 1usize << shift;
                let capacity = self
                    .capacity_per_class
                    .unwrap_or_else(|| ((4 << 20) / size).clamp(16, 1024));
                let mut builder =
                    Pool::builder(self.name.clone(), move || Vec::with_capacity(size))
                        .capacity(capacity)
                        .reset(Vec::clear)
                        .attribute(KeyValue::new("pool.size_class", size as i64));
                if let Some(meter) = &self.meter {
                    builder = builder.meter(meter.clone());
                }
                builder.build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ByteSlicePool {
            name: self.name,
            min_shift,
            classes,
        })
    }
}
