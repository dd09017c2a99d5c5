//! Tower layers (feature `tower`): add the instrumented [`Semaphore`](crate::Semaphore) or
//! [`RateLimiter`](crate::RateLimiter) to an axum, tonic or hyper stack with one layer and get its metrics.
//!
//! * [`ConcurrencyLimitLayer`]: at most N requests in the inner service at once. `poll_ready` waits for a permit
//!   (backpressure) or, with [`ConcurrencyLimitLayer::timeout`], gives up with an [`AcquireError`](crate::AcquireError)
//!   (`Timeout`) so the caller can shed the request.
//! * [`AdaptiveLimitLayer`]: an [`AdaptiveLimit`](crate::adaptive::AdaptiveLimit) in front of the service: each
//!   response reports its latency (`Ok`) or a drop (`Err`), and the limit follows the service.
//! * [`RateLimitLayer`]: at most the limiter's rate. `poll_ready` waits for a cell or, with
//!   [`RateLimitLayer::timeout`], gives up with a [`WaitError`](crate::WaitError) (a zero timeout sheds at once with
//!   a [`CheckError`](crate::CheckError) carrying `retry_after`).
//!
//! Errors are boxed (`tower::BoxError`); downcast them to tell our errors from the inner service's.
//!
//! The limit is never skipped: a `call` that comes without a successful `poll_ready` (a breach of tower's contract,
//! on which tower's own layers panic) takes a permit or a cell if one is free at once, and otherwise fails with
//! [`NotReady`] without calling the inner service.
//!
//! ```
//! use std::time::Duration;
//! use otlp_sync::tower::{ConcurrencyLimitLayer, RateLimitLayer};
//! use otlp_sync::{RateLimiter, Semaphore};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(RateLimiter::per_second("api", 100)?).timeout(Duration::from_secs(1)))
//!     .layer(ConcurrencyLimitLayer::new(Semaphore::new("api", 16)?).timeout(Duration::from_millis(100)))
//!     .service(service_fn(|req: u32| async move { Ok::<_, tower::BoxError>(req * 2) }));
//! assert_eq!(svc.oneshot(21).await?, 42);
//! # Ok(()) }
//! ```

mod adaptive;
mod concurrency_limit;
mod rate_limit;

pub use adaptive::{AdaptiveLimitFuture, AdaptiveLimitLayer, AdaptiveLimitService};
pub use concurrency_limit::{ConcurrencyLimit, ConcurrencyLimitFuture, ConcurrencyLimitLayer};
pub use rate_limit::RateLimitFuture;
pub use rate_limit::{RateLimit, RateLimitLayer};

/// The error type of the services: ours (`AcquireError`, `CheckError`, `WaitError`, [`NotReady`]) or the inner
/// service's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `call` came without a successful `poll_ready` and the limit could not be taken right then, so the request was
/// refused without reaching the inner service (the limit is never skipped).
///
/// A service that was not made ready takes its permit or cell in `call` if one is free at once; only when none is
/// does the request fail with this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotReady {
    /// [`ConcurrencyLimit`] had no permit free (counted as a `rejected` acquire).
    ConcurrencyLimit,
    /// [`RateLimit`] had no cell free (counted as a `throttled` decision).
    RateLimit,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            NotReady::ConcurrencyLimit => "the concurrency limit had no permit free",
            NotReady::RateLimit => "the rate limit had no cell free",
        };
        write!(
            f,
            "`call` came without a successful `poll_ready` and {what}, so the request was refused; call \
             `poll_ready` first (`ServiceExt::ready` or `oneshot` do)"
        )
    }
}

impl std::error::Error for NotReady {}
