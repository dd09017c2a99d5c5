//! Clocks for the rate limiters.
//!
//! The limiters default to governor's [`DefaultClock`] (quanta: a cheap TSC read). [`TokioClock`] follows tokio's
//! clock instead, so a limiter built with it works under `#[tokio::test(start_paused = true)]`: when tokio's time
//! is paused and advanced, the limiter's idea of "now" moves with it, and waits finish without real sleeping.
//!
//! ```
//! use std::time::Duration;
//! use otlp_sync::{RateLimiter, TokioClock};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RateLimiter::builder("test").per_second(1).clock(TokioClock).build()?;
//! limiter.check()?;
//! assert!(limiter.check().is_err());
//! tokio::time::advance(Duration::from_secs(1)).await;
//! limiter.check()?;
//! # Ok(()) }
//! ```

pub use governor::clock::{Clock, DefaultClock, QuantaClock, ReasonablyRealtime};

/// A governor clock that reads [`tokio::time::Instant::now`], so it follows tokio's paused test clock.
///
/// Outside tests it reads the system's monotonic clock, which costs more than [`DefaultClock`]: use it for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl ReasonablyRealtime for TokioClock {}
