//! # otlp-sync
//!
//! An instrumented async [`Semaphore`] (over [`tokio::sync::Semaphore`]) with OpenTelemetry metrics and tracing
//! spans built in, cheap enough to leave on.
//!
//! ```
//! use otlp_sync::Semaphore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sem = Semaphore::new("downstream", 8)?;
//! let _permit = sem.acquire().await?;
//! assert_eq!(sem.stats().in_use, 1);
//! # Ok(()) }
//! ```
//!
//! Instruments come from `opentelemetry::global::meter_with_scope` (scope `otlp-sync`) when an owner is built, or
//! from the meter given to its builder; see [`telemetry::names`] and `docs/metrics.md`.

pub mod clock;
mod counters;
mod error;
pub mod keyed;
pub mod rate_limiter;
pub mod semaphore;
mod sync;
pub mod telemetry;

/// The crate's own atomic protocols, exposed only to the loom models in `tests/loom.rs`.
#[cfg(otlp_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::counters::{Counters, Gauge};
}
#[cfg(feature = "tower")]
pub mod tower;

pub use clock::TokioClock;
pub use error::{
    AcquireError, AddPermitsError, BuildError, CheckError, TryAcquireError, WaitError,
};
pub use governor::{Jitter, Quota};
pub use keyed::KeyedRateLimiter;
pub use rate_limiter::{DEFAULT_MAX_KEYS, RateLimiter, RateLimiterBuilder, RateLimiterStats};
pub use semaphore::{
    AcquireOptions, OwnedPermit, Permit, Semaphore, SemaphoreBuilder, SemaphoreStats,
};
pub use tokio_util::sync::CancellationToken;
