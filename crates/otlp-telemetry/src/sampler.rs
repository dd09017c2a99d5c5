//! Dynamic sampling: a trace-id ratio sampler whose ratio can change while the service runs.
//!
//! [`RatioSampler`] makes the same decision as the SDK's `TraceIdRatioBased` sampler, but reads its ratio
//! from an atomic that a [`TraceRatioHandle`] (or
//! [`TelemetryGuard::set_trace_ratio`](crate::TelemetryGuard::set_trace_ratio)) updates. [`init`](crate::init())
//! wraps it in the SDK's parent-based sampler for the `parentbased_*` samplers, so the ratio decides only
//! for root spans and children follow their parent: a trace is never cut in half.
//!
//! ```
//! use opentelemetry::trace::{Tracer as _, TracerProvider as _};
//! use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
//! use otlp_telemetry::RatioSampler;
//!
//! let sampler = RatioSampler::new(1.0);
//! let handle = sampler.handle();
//! let provider = SdkTracerProvider::builder()
//!     .with_sampler(Sampler::parent_based(sampler))
//!     .build();
//! let tracer = provider.tracer("example");
//!
//! handle.set_ratio(0.0)?; // e.g. from an admin endpoint, while serving
//! tracer.in_span("dropped", |cx| {
//!     use opentelemetry::trace::TraceContextExt as _;
//!     assert!(!cx.span().span_context().is_sampled());
//! });
//! # Ok::<(), otlp_telemetry::ConfigError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::{Link, SpanKind, TraceContextExt as _, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use otlp_core::Counters;
use otlp_core::instruments::{Attributes, Observations, Registration, Source};

use crate::budget::BudgetSampler;
use crate::error::ConfigError;
use crate::telemetry::{INSTRUMENTS, SAMPLER_DECISIONS};

/// A `ShouldSample` that samples a fraction of traces, chosen from the trace id, with a ratio that can
/// change at run time through its [`TraceRatioHandle`].
#[derive(Debug, Clone)]
pub struct RatioSampler {
    ratio: Arc<AtomicU64>,
}

/// Changes the ratio of the [`RatioSampler`] it came from. Cheap to clone; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct TraceRatioHandle {
    ratio: Arc<AtomicU64>,
}

fn check_ratio(ratio: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(ConfigError::value(
            "trace ratio",
            ratio,
            "a ratio between 0.0 and 1.0 (0 records no new trace, 1 records every trace)",
        ))
    }
}

impl RatioSampler {
    /// A sampler recording `ratio` of traces; values outside 0.0..=1.0 (or NaN) are clamped into range.
    pub fn new(ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        RatioSampler {
            ratio: Arc::new(AtomicU64::new(ratio.to_bits())),
        }
    }

    /// A handle that changes this sampler's ratio.
    pub fn handle(&self) -> TraceRatioHandle {
        TraceRatioHandle {
            ratio: Arc::clone(&self.ratio),
        }
    }

    /// The current ratio.
    pub fn ratio(&self) -> f64 {
        f64::from_bits(self.ratio.load(Ordering::Relaxed))
    }
}

impl TraceRatioHandle {
    /// Sets the ratio of new root traces to record, 0.0..=1.0. Takes effect for the next span started.
    pub fn set_ratio(&self, ratio: f64) -> Result<(), ConfigError> {
        let ratio = check_ratio(ratio)?;
        self.ratio.store(ratio.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// The current ratio.
    pub fn ratio(&self) -> f64 {
        f64::from_bits(self.ratio.load(Ordering::Relaxed))
    }
}

/// The SDK's `TraceIdRatioBased` rule: compare the low 63 bits of the trace id with `ratio * 2^63`.
fn sampled(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    (u64::from_be_bytes(low) >> 1) < bound
}

impl ShouldSample for RatioSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        decided(sampled(self.ratio(), trace_id), parent_context)
    }
}

/// A sampler's answer: sampled or dropped, keeping the parent's trace state.
pub(crate) fn decided(sampled: bool, parent_context: Option<&Context>) -> SamplingResult {
    SamplingResult {
        decision: if sampled {
            SamplingDecision::RecordAndSample
        } else {
            SamplingDecision::Drop
        },
        attributes: Vec::new(),
        trace_state: match parent_context {
            Some(cx) => cx.span().span_context().trace_state().clone(),
            None => TraceState::default(),
        },
    }
}

/// The sampler `init` asks about new traces: the ratio, then the span budget; its decisions are counted
/// (`trace.sampler.decisions`).
#[derive(Debug, Clone)]
pub(crate) struct RootSampler {
    ratio: RatioSampler,
    budget: BudgetSampler,
    counts: Arc<DecisionCounts>,
}

/// Results × parent origins: `[sampled, dropped]` × `[none, local, remote]`.
const DECISIONS: usize = 6;

struct DecisionCounts {
    counters: Counters<DECISIONS>,
    attrs: [Attributes; DECISIONS],
    /// The parent origins the sampler can see (reported, zeros included).
    origins: usize,
    link: Registration,
}

impl fmt::Debug for DecisionCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionCounts")
            .field("counts", &self.counters.snapshot())
            .finish()
    }
}

impl Source for DecisionCounts {
    fn observe(&self, out: &mut Observations<'_>) {
        let counts = self.counters.snapshot();
        for (i, (count, attrs)) in counts.iter().zip(&self.attrs).enumerate() {
            if i % 3 < self.origins {
                out.observe(SAMPLER_DECISIONS, *count, attrs);
            }
        }
    }
}

impl RootSampler {
    /// `parent_based`: only roots ask (the parent origin is always `none`, the only one reported).
    pub(crate) fn new(ratio: RatioSampler, budget: BudgetSampler, parent_based: bool) -> Self {
        let attrs = std::array::from_fn(|i| {
            let result = if i < 3 { "RECORD_AND_SAMPLE" } else { "DROP" };
            let origin = ["none", "local", "remote"][i % 3];
            Attributes::new(vec![
                KeyValue::new("otel.span.sampling_result", result),
                KeyValue::new("otel.span.parent.origin", origin),
            ])
        });
        let counts = Arc::new(DecisionCounts {
            counters: Counters::new(),
            attrs,
            origins: if parent_based { 1 } else { 3 },
            link: INSTRUMENTS.link(None),
        });
        counts.link.add(counts.clone());
        RootSampler {
            ratio,
            budget,
            counts,
        }
    }
}

impl ShouldSample for RootSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let origin = parent_context.map_or(0, |cx| {
            let span = cx.span();
            let sc = span.span_context();
            match (sc.is_valid(), sc.is_remote()) {
                (false, _) => 0,
                (true, false) => 1,
                (true, true) => 2,
            }
        });
        let ratio = sampled(self.ratio.ratio(), trace_id);
        decided(self.admit(ratio, origin), parent_context)
    }
}

impl RootSampler {
    /// The decision for a new trace with no parent, as `should_sample` would answer it: the trace id if sampled.
    /// `new_id` draws one only when the ratio needs it, or for a sampled trace.
    pub(crate) fn sample_new(&self, new_id: impl Fn() -> TraceId) -> Option<TraceId> {
        let ratio = self.ratio.ratio();
        let (by_ratio, trace_id) = if ratio >= 1.0 {
            (true, None)
        } else if ratio <= 0.0 {
            (false, None)
        } else {
            let trace_id = new_id();
            (sampled(ratio, trace_id), Some(trace_id))
        };
        self.admit(by_ratio, 0)
            .then(|| trace_id.unwrap_or_else(new_id))
    }

    /// The ratio's decision through the budget, counted with the parent's `origin`.
    fn admit(&self, ratio_sampled: bool, origin: usize) -> bool {
        let sampled = ratio_sampled && self.budget.admit();
        self.counts
            .counters
            .incr(usize::from(!sampled) * 3 + origin);
        sampled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceFlags, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};

    fn provider(sampler: RatioSampler) -> (SdkTracerProvider, InMemorySpanExporter) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(Sampler::parent_based(sampler))
            .build();
        (provider, exporter)
    }

    #[test]
    fn ratio_changes_take_effect_on_the_next_span() {
        let sampler = RatioSampler::new(1.0);
        let handle = sampler.handle();
        let (provider, exporter) = provider(sampler);
        let tracer = provider.tracer("t");

        for _ in 0..100 {
            tracer.in_span("on", |_| {});
        }
        assert_eq!(exporter.get_finished_spans().unwrap().len(), 100);

        handle.set_ratio(0.0).unwrap();
        exporter.reset();
        for _ in 0..100 {
            tracer.in_span("off", |_| {});
        }
        assert_eq!(exporter.get_finished_spans().unwrap().len(), 0);

        handle.set_ratio(0.5).unwrap();
        for _ in 0..1000 {
            tracer.in_span("half", |_| {});
        }
        let n = exporter.get_finished_spans().unwrap().len();
        // Random trace ids: 500 expected, and 350..650 is more than 9 standard deviations wide.
        assert!((350..650).contains(&n), "{n} of 1000 sampled at ratio 0.5");
    }

    #[test]
    fn children_follow_a_sampled_remote_parent_even_at_ratio_zero() {
        let sampler = RatioSampler::new(0.0);
        let (provider, exporter) = provider(sampler);
        let tracer = provider.tracer("t");
        let parent = SpanContext::new(
            TraceId::from(7u128),
            opentelemetry::trace::SpanId::from(9u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(parent);
        let _span = tracer.start_with_context("child", &cx);
        drop(_span);
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].parent_span_id,
            opentelemetry::trace::SpanId::from(9u64)
        );
    }

    #[test]
    fn invalid_ratios_are_errors_not_panics() {
        let h = RatioSampler::new(2.0).handle();
        assert_eq!(h.ratio(), 1.0);
        assert!(h.set_ratio(-0.1).is_err());
        assert!(h.set_ratio(f64::NAN).is_err());
        let msg = h.set_ratio(1.5).unwrap_err().to_string();
        assert!(
            msg.contains("1.5") && msg.contains("between 0.0 and 1.0"),
            "{msg}"
        );
        assert_eq!(RatioSampler::new(f64::NAN).ratio(), 0.0);
    }

    #[test]
    fn same_decision_as_the_sdk_ratio_sampler() {
        let ours = RatioSampler::new(0.3);
        let sdk = Sampler::TraceIdRatioBased(0.3);
        for i in 0..2000u128 {
            let id = TraceId::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
            let a = ours
                .should_sample(None, id, "x", &SpanKind::Internal, &[], &[])
                .decision;
            let b = sdk
                .should_sample(None, id, "x", &SpanKind::Internal, &[], &[])
                .decision;
            assert_eq!(a, b);
        }
    }
}
