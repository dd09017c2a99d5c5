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

mod counters;
mod error;
pub mod semaphore;
mod sync;
pub mod telemetry;

pub use error::{
    AcquireError, AddPermitsError, BuildError, CheckError, TryAcquireError, WaitError,
};
pub use semaphore::{
    AcquireOptions, OwnedPermit, Permit, Semaphore, SemaphoreBuilder, SemaphoreStats,
};
pub use tokio_util::sync::CancellationToken;
