//! Errors of pool construction.

use std::fmt;

/// A pool could not be built because its configuration was invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The pool name was empty.
    EmptyName,
    /// `capacity(0)`: a pool that can keep no idle object would only add overhead.
    ZeroCapacity,
    /// `prefill(n)` asked for more objects than the pool may keep idle.
    PrefillExceedsCapacity {
        /// The requested prefill.
        prefill: usize,
        /// The configured capacity.
        capacity: usize,
    },
    /// A buffer pool's initial buffer capacity was above its maximum retained capacity, so every buffer would be
    /// dropped on return.
    InitialExceedsRetained {
        /// The configured initial capacity, in bytes.
        initial: usize,
        /// The configured maximum retained capacity, in bytes.
        max_retained: usize,
    },
    /// A size class bound was not a power of two, or the smallest class was above the largest.
    InvalidSizeClasses {
        /// The configured smallest class, in bytes.
        min: usize,
        /// The configured largest class, in bytes.
        max: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::EmptyName => f.write_str(
                "pool name is empty: give every pool a name, it becomes the `pool.name` attribute of its metrics",
            ),
            BuildError::ZeroCapacity => f.write_str(
                "pool capacity is 0: a pool must be allowed to keep at least one idle object (use capacity >= 1)",
            ),
            BuildError::PrefillExceedsCapacity { prefill, capacity } => write!(
                f,
                "prefill of {prefill} objects exceeds the capacity of {capacity}: lower prefill or raise capacity"
            ),
            BuildError::InitialExceedsRetained { initial, max_retained } => write!(
                f,
                "initial buffer capacity {initial} B is above the maximum retained capacity {max_retained} B, so no \
                 buffer would ever be reused: raise max_retained_capacity or lower initial_capacity"
            ),
            BuildError::InvalidSizeClasses { min, max } => write!(
                f,
                "invalid size classes {min}..={max} bytes: both bounds must be powers of two with 1 <= min <= max <= 1 GiB"
            ),
        }
    }
}

impl std::error::Error for BuildError {}
