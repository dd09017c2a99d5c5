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
//! Depend on one crate when that is all you need, or on this one and `use otlp_kit::prelude::*;`. `tracing` is
//! re-exported ([`tracing`](crate::tracing)), so spans need no second dependency.
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

/// `tracing`, re-exported so that one dependency is enough to emit spans and events that otlp-telemetry exports:
/// `otlp_kit::tracing::info_span!("checkout")`.
pub use tracing;

/// The types most services use, in one import: the owners, their handles and guards, their errors, and
/// telemetry's `init`.
///
/// Each crate's configuration error is named after its crate here (`PoolBuildError`, `SyncBuildError`,
/// `PatternsBuildError`), since all three are `BuildError` in their own crate.
pub mod prelude {
    #[cfg(feature = "pool")]
    pub use otlp_pool::BuildError as PoolBuildError;
    #[cfg(feature = "pool")]
    pub use otlp_pool::{
        BufferPool, ByteSlice, ByteSlicePool, OwnedPooled, Pool, PoolStats, Pooled, Reset, buffers,
        byte_slices,
    };

    #[cfg(feature = "sync")]
    pub use otlp_sync::BuildError as SyncBuildError;
    #[cfg(feature = "sync")]
    pub use otlp_sync::{
        AcquireError, AcquireOptions, AdaptiveLimit, AdaptivePermit, CancellationToken, CheckError,
        KeyedRateLimiter, OwnedPermit, Permit, Quota, RateLimiter, Semaphore, TryAcquireError,
        WaitError,
    };

    #[cfg(feature = "patterns")]
    pub use otlp_patterns::BuildError as PatternsBuildError;
    #[cfg(feature = "patterns")]
    pub use otlp_patterns::{
        FanOut, FanOutResults, Pipeline, PipelineError, SubmitError, TaskError, TaskHandle,
        WorkerPool, current_token,
    };

    #[cfg(feature = "telemetry")]
    pub use otlp_telemetry::{ConfigError, TelemetryConfig, TelemetryError, TelemetryGuard, init};
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
