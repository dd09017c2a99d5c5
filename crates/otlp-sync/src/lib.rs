//! # otlp-sync
//!
//! Concurrency limits with OpenTelemetry metrics and `tracing` spans built in, cheap enough to leave on:
//!
//! * [`Semaphore`]: an instrumented [`tokio::sync::Semaphore`] (Go's `x/sync/semaphore`): `acquire`,
//!   `acquire_many`, `try_acquire`, `acquire_timeout`, cancellation by [`CancellationToken`], owned permits for
//!   spawned tasks, [`Semaphore::with_permit`], `close`, `add_permits`, `stats`. See [`semaphore`].
//! * [`RateLimiter`]: an instrumented [`governor`] GCRA limiter: `check`, `check_n`, `until_ready` with timeout,
//!   cancellation and jitter. See [`rate_limiter`].
//! * [`KeyedRateLimiter`]: one bucket per key, in a key store with a bound. See [`keyed`].
//! * [`AdaptiveLimit`]: a concurrency limit that follows the downstream's latency and errors (Gradient2, AIMD,
//!   Vegas) over a [`Semaphore`]. See [`adaptive`].
//! * Feature `redis`: `RedisRateLimiter`, direct and keyed: one quota for a
//!   whole fleet, GCRA evaluated in Redis (module `redis_limiter`).
//! * Feature `tower`: `ConcurrencyLimitLayer` and `RateLimitLayer`, so axum, tonic and hyper users get these
//!   metrics with one layer (module `tower`).
//!
//! ```
//! use std::time::Duration;
//! use otlp_sync::{RateLimiter, Semaphore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Semaphore::new("db", 8)?;
//! let api = RateLimiter::per_second("partner-api", 50)?;
//!
//! let _conn = db.acquire_timeout(Duration::from_secs(1)).await?;
//! api.until_ready().await;
//! // ... call the partner API while holding a database connection slot ...
//! assert_eq!(db.stats().in_use, 1);
//! # Ok(()) }
//! ```
//!
//! # Cost and telemetry
//!
//! Calls that do not wait add a relaxed load and store on a per-thread counter to the wrapped crate's own cost: no
//! clock read, no OpenTelemetry call, no allocation. Counters and up-down counters are observable instruments whose
//! callbacks read those counters (the same ones `stats()` returns); only calls that waited read the clock, record a
//! `*.wait.duration` histogram and open a debug-level span. Instruments come from
//! `opentelemetry::global::meter_with_scope` (scope `otlp-sync` with this crate's version) when an owner is built,
//! or from the meter given to its builder; see [`telemetry::names`] and `docs/metrics.md`.
//!
//! Every call ends as exactly one outcome, so the outcome counters add up to the calls. Errors are typed enums
//! whose messages say what was wrong and how to fix it; bad configuration is an error at build, never a panic.

pub mod adaptive;
pub mod clock;
mod counters;
mod error;
pub mod keyed;
pub mod rate_limiter;
#[cfg(feature = "redis")]
pub mod redis_limiter;
pub mod semaphore;
mod sync;
pub mod telemetry;

/// The crate's own atomic protocols, exposed only to the loom models in `tests/loom.rs`.
#[cfg(otlp_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::counters::Gauge;
}
#[cfg(feature = "tower")]
pub mod tower;

pub use adaptive::{AdaptiveLimit, AdaptivePermit, OwnedAdaptivePermit};
pub use clock::TokioClock;
pub use error::{
    AcquireError, AddPermitsError, BuildError, CheckError, TryAcquireError, WaitError,
};
pub use governor::{Jitter, Quota};
pub use keyed::{KeyedRateLimiter, KeyedRateLimiterBuilder};
pub use rate_limiter::{DEFAULT_MAX_KEYS, RateLimiter, RateLimiterBuilder, RateLimiterStats};
pub use semaphore::{
    AcquireOptions, OwnedPermit, Permit, Semaphore, SemaphoreBuilder, SemaphoreStats,
};
pub use tokio_util::sync::CancellationToken;
