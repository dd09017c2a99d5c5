//! Concurrency patterns on tokio that lose nothing and leak nothing, with OpenTelemetry metrics and `tracing`
//! spans built in, cheap enough to leave on.
//!
//! * [`WorkerPool`]: `n` long-lived workers serving a bounded queue; backpressure, a default per-task timeout,
//!   panics caught, graceful shutdown with a deadline.
//! * [`FanOut`]: run a function over many items with bounded concurrency; results in input order with every error
//!   kept (or fail-fast), or streamed as they finish.
//! * [`Pipeline`]: stages with their own concurrency joined by bounded queues; order kept by default.
//!
//! Each pattern counts every task or item as exactly one [`Outcome`] (`ok`, `error`, `panic`, `timeout`,
//! `cancelled`, `rejected`), exports those counts through observable OpenTelemetry instruments of scope
//! `otlp-patterns`, and records durations in histograms (see `docs/metrics.md`). A fan-out's concurrency is per
//! call (like `buffer_unordered`); a limit shared by its calls is an instrumented `otlp-sync` semaphore passed in
//! ([`FanOutBuilder::shared_limit`]), which shows up in that crate's metrics too.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use otlp_patterns::WorkerPool;
//!
//! let pool = WorkerPool::builder("mail").workers(2).queue(16).build()?;
//! let handle = pool.submit(async { "sent" }).await?;
//! assert_eq!(handle.await?, "sent");
//! pool.shutdown_now().await;
//! # Ok(())
//! # }
//! ```

mod catch;
mod context;
mod error;
pub mod fan_out;
mod outcome;
pub mod pipeline;
mod queue;
mod roster;
mod sync;
mod task;
mod telemetry;
pub mod worker_pool;

pub use context::current_token;
pub use error::{BuildError, ResizeError, SubmitError, TaskError};
pub use fan_out::{FanOut, FanOutBuilder, FanOutError, FanOutResults, FanOutStats};
pub use outcome::Outcome;
pub use pipeline::{
    DEFAULT_CAPACITY, ErrorPolicy, Pipeline, PipelineBuilder, PipelineError, PipelineRun,
    PipelineStats,
};
pub use task::TaskHandle;
pub use worker_pool::{
    DEFAULT_TASK_TIMEOUT, ShutdownReport, WorkerPool, WorkerPoolBuilder, WorkerPoolStats,
};

/// Internals exposed to the loom model in `tests/loom.rs` only.
#[cfg(otlp_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::outcome::OutcomeCounters;
    pub use crate::queue::{Pop, PushError, Pushed, QueueCore, Taken};
    pub use crate::roster::Roster;
    pub use crate::task::{TaskRun, task_link};
}
