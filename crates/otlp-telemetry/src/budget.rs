//! A span budget: a sampler that records at most N new traces a second (Jaeger's rate-limiting sampler), on
//! otlp-sync's [`RateLimiter`], with a budget that can change while the service runs.
//!
//! [`init`](crate::init()) puts it behind the ratio of [`RatioSampler`](crate::RatioSampler): a root is recorded
//! when the ratio picks it and the budget has room, and, parent-based, its children follow it, so a trace is never
//! cut in half. Select it with `OTEL_TRACES_SAMPLER=parentbased_rate_limited` and
//! `OTEL_TRACES_SAMPLER_ARG=<traces per second>` (or [`TraceSampler::ParentBasedRateLimited`](crate::TraceSampler)),
//! change it with [`TelemetryGuard::set_trace_budget`](crate::TelemetryGuard::set_trace_budget). Up to a second's
//! budget may pass at once (the limiter's burst is the rate), then roots are admitted as the budget refills.
//!
//! The limiter reports like any otlp-sync limiter (`rate_limiter.decisions` with
//! `rate_limiter.name` = `otlp_telemetry.trace_budget`: `allowed` roots were recorded, `throttled` ones were not).
//!
//! ```
//! use opentelemetry::trace::{Tracer as _, TracerProvider as _};
//! use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
//! use otlp_telemetry::BudgetSampler;
//!
//! let budget = BudgetSampler::new(Some(100))?;
//! let handle = budget.handle();
//! let provider = SdkTracerProvider::builder()
//!     .with_sampler(Sampler::parent_based(budget))
//!     .build();
//! provider.tracer("example").in_span("request", |_| {});
//!
//! handle.set_per_second(Some(10))?; // e.g. from an admin endpoint, while serving
//! assert_eq!(handle.per_second(), Some(10));
//! # Ok::<(), otlp_telemetry::ConfigError>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use opentelemetry::trace::{Link, SpanKind, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingResult, ShouldSample};
use otlp_sync::RateLimiter;
use otlp_sync::clock::{Clock, DefaultClock};

use crate::error::ConfigError;
use crate::sampler::decided;

/// The `rate_limiter.name` of the budget's limiter.
pub const BUDGET_LIMITER_NAME: &str = "otlp_telemetry.trace_budget";

/// A `ShouldSample` that records at most a budget of new traces a second; see the [module docs](self).
///
/// `C` is the limiter's clock: governor's default, or [`otlp_sync::TokioClock`] for tests on tokio's paused clock.
pub struct BudgetSampler<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
}

/// Changes the budget of the [`BudgetSampler`] it came from. Cheap to clone; `Send + Sync`.
pub struct TraceBudgetHandle<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
}

enum Budget<C: Clock> {
    Unlimited,
    Nothing,
    Limited(u64, RateLimiter<C>),
}

struct Inner<C: Clock> {
    budget: RwLock<Budget<C>>,
    /// The budget is [`Budget::Unlimited`]: roots are admitted without the lock.
    unlimited: AtomicBool,
    clock: C,
}

impl BudgetSampler<DefaultClock> {
    /// A sampler recording at most `per_second` new traces a second (`None`: no budget, every trace; `Some(0)`: no
    /// new trace).
    ///
    /// # Errors
    /// [`ConfigError::InvalidValue`] if `per_second` is above `u32::MAX` (what the limiter can count).
    pub fn new(per_second: Option<u64>) -> Result<Self, ConfigError> {
        BudgetSampler::with_clock(per_second, DefaultClock::default())
    }
}

impl<C> BudgetSampler<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// [`BudgetSampler::new`] with the limiter reading `clock`.
    ///
    /// # Errors
    /// As [`BudgetSampler::new`].
    pub fn with_clock(per_second: Option<u64>, clock: C) -> Result<Self, ConfigError> {
        let inner = Arc::new(Inner {
            budget: RwLock::new(Budget::Unlimited),
            unlimited: AtomicBool::new(true),
            clock,
        });
        let handle = TraceBudgetHandle {
            inner: Arc::clone(&inner),
        };
        handle.set_per_second(per_second)?;
        Ok(BudgetSampler { inner })
    }

    /// A handle that changes this sampler's budget.
    pub fn handle(&self) -> TraceBudgetHandle<C> {
        TraceBudgetHandle {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Takes one new trace out of the budget if there is room.
    pub(crate) fn admit(&self) -> bool {
        if self.inner.unlimited.load(Ordering::Relaxed) {
            return true;
        }
        match &*self.inner.budget.read().unwrap_or_else(|p| p.into_inner()) {
            Budget::Unlimited => true,
            Budget::Nothing => false,
            // Yes or no: the retry-after a refusal would compute is of no use to a sampler.
            Budget::Limited(_, limiter) => limiter.allows(),
        }
    }
}

impl<C> TraceBudgetHandle<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// Sets the budget of new traces a second (`None`: no budget; `Some(0)`: no new trace). Takes effect for the
    /// next root; a new budget starts full (up to a second's worth may pass at once).
    ///
    /// # Errors
    /// [`ConfigError::InvalidValue`] if `per_second` is above `u32::MAX`; the budget is unchanged.
    pub fn set_per_second(&self, per_second: Option<u64>) -> Result<(), ConfigError> {
        let budget = match per_second {
            None => Budget::Unlimited,
            Some(0) => Budget::Nothing,
            Some(n) => {
                let limiter = RateLimiter::builder(BUDGET_LIMITER_NAME)
                    .per_second(n)
                    .clock(self.inner.clock.clone())
                    .build()
                    .map_err(|e| {
                        ConfigError::value(
                            "trace budget",
                            n,
                            format!("a number of traces per second up to {} ({e})", u32::MAX),
                        )
                    })?;
                Budget::Limited(n, limiter)
            }
        };
        let mut current = self.inner.budget.write().unwrap_or_else(|p| p.into_inner());
        self.inner
            .unlimited
            .store(matches!(budget, Budget::Unlimited), Ordering::Relaxed);
        *current = budget;
        Ok(())
    }

    /// The current budget of new traces a second (`None`: no budget).
    pub fn per_second(&self) -> Option<u64> {
        self.inner.per_second()
    }
}

impl<C: Clock> Inner<C> {
    fn per_second(&self) -> Option<u64> {
        match &*self.budget.read().unwrap_or_else(|p| p.into_inner()) {
            Budget::Unlimited => None,
            Budget::Nothing => Some(0),
            Budget::Limited(n, _) => Some(*n),
        }
    }
}

impl<C> ShouldSample for BudgetSampler<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        decided(self.admit(), parent_context)
    }
}

impl<C: Clock> Clone for BudgetSampler<C> {
    fn clone(&self) -> Self {
        BudgetSampler {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Clock> Clone for TraceBudgetHandle<C> {
    fn clone(&self) -> Self {
        TraceBudgetHandle {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Clock> fmt::Debug for BudgetSampler<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetSampler")
            .field("per_second", &self.inner.per_second())
            .finish()
    }
}

impl<C: Clock> fmt::Debug for TraceBudgetHandle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceBudgetHandle")
            .field("per_second", &self.inner.per_second())
            .finish()
    }
}
