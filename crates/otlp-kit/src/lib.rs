//! otlp-kit: the concurrency tools every production service needs, with OpenTelemetry traces and metrics built in
//! and exported over OTLP, cheap enough to leave on.
//!
//! This facade re-exports the workspace's crates, one feature each (all on by default):
//!
//! | feature | module | crate |
//! |---|---|---|
//! | `pool` | [`pool`] | `otlp-pool`: object, buffer and size-classed byte-slice pools |
//! | `sync` | [`sync`] | `otlp-sync`: instrumented semaphore and rate limiters |
//! | `patterns` | [`patterns`] | `otlp-patterns`: worker pool, fan-out/fan-in, pipeline |
//! | `telemetry` | [`telemetry`] | `otlp-telemetry`: OTLP exporters, tracing bridge, propagation |
//! | `tower` | | the tower layers of `sync` and `telemetry` |
//!
//! Depend on one crate when that is all you need, or on this one and `use otlp_kit::prelude::*;`.
//!
//! ```
//! use otlp_kit::prelude::*;
//!
//! let pool = Pool::<Vec<u8>>::default_reset("scratch").capacity(16).build()?;
//! pool.get().extend_from_slice(b"hello");
//! assert_eq!(pool.stats().puts, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "pool")]
#[doc(inline)]
pub use otlp_pool as pool;

#[cfg(feature = "sync")]
#[doc(inline)]
pub use otlp_sync as sync;

#[cfg(feature = "patterns")]
#[doc(inline)]
pub use otlp_patterns as patterns;

#[cfg(feature = "telemetry")]
#[doc(inline)]
pub use otlp_telemetry as telemetry;

/// The types most services use, in one import.
pub mod prelude {
    #[cfg(feature = "pool")]
    pub use otlp_pool::{BufferPool, ByteSlicePool, Pool, PoolStats, Reset, buffers, byte_slices};

    #[cfg(feature = "sync")]
    pub use otlp_sync::{CancellationToken, KeyedRateLimiter, Quota, RateLimiter, Semaphore};

    #[cfg(feature = "patterns")]
    pub use otlp_patterns::{FanOut, Pipeline, TaskError, WorkerPool};

    #[cfg(feature = "telemetry")]
    pub use otlp_telemetry::{TelemetryConfig, TelemetryGuard};
}

// The README's examples are compiled and run as doc tests, so its quick start works as written.
#[cfg(all(
    doctest,
    feature = "pool",
    feature = "sync",
    feature = "patterns",
    feature = "telemetry"
))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
