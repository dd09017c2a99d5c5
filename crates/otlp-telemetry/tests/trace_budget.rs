//! The span budget: at most N new traces a second (on tokio's paused clock), children following their root, a
//! budget changed at run time taking effect at once, and every decision counted exactly in the exported metrics.
//!
//! The metrics go to a global meter provider: one provider for the binary, tests take a lock.

mod common;
mod exported;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
use otlp_sync::TokioClock;
use otlp_telemetry::stack::TracingStack;
use otlp_telemetry::{BudgetSampler, TelemetryConfig, TraceSampler};

use common::{Counted, traced_request};

fn metrics() -> &'static (SdkMeterProvider, InMemoryMetricExporter) {
    static METRICS: OnceLock<(SdkMeterProvider, InMemoryMetricExporter)> = OnceLock::new();
    METRICS.get_or_init(|| {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        global::set_meter_provider(provider.clone());
        otlp_core::instruments::refresh();
        (provider, exporter)
    })
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The exported value of the `u64` counter `name` of `scope` at exactly these attributes (0 if absent).
fn count(scope: &str, name: &str, attrs: &[(&str, &str)]) -> u64 {
    let (provider, exporter) = metrics();
    exporter.reset();
    provider.force_flush().unwrap();
    let m = exporter.get_finished_metrics().unwrap();
    exported::u64_sum(&m, scope, name, attrs).unwrap_or(0)
}

fn budget_decisions(outcome: &str) -> u64 {
    count(
        "otlp-sync",
        "rate_limiter.decisions",
        &[
            (
                "rate_limiter.name",
                otlp_telemetry::budget::BUDGET_LIMITER_NAME,
            ),
            ("outcome", outcome),
        ],
    )
}

fn sampler_decisions(result: &str) -> u64 {
    count(
        "otlp-telemetry",
        "trace.sampler.decisions",
        &[
            ("otel.span.sampling_result", result),
            ("otel.span.parent.origin", "none"),
        ],
    )
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
// The lock only keeps this binary's tests apart; nothing else runs on this runtime.
#[allow(clippy::await_holding_lock)]
async fn at_most_n_traces_a_second_whole_and_changeable_at_run_time() {
    let _serial = serial();
    metrics();
    let (allowed0, throttled0) = (budget_decisions("allowed"), budget_decisions("throttled"));

    let budget = BudgetSampler::with_clock(Some(5), TokioClock).unwrap();
    let handle = budget.handle();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_sampler(Sampler::parent_based(budget))
        .build();
    let tracer = provider.tracer("budget");
    // `n` traces of a root and 2 children; returns how many roots were recorded.
    let traces = |n: usize| {
        exporter.reset();
        for _ in 0..n {
            tracer.in_span("root", |cx| {
                let sampled = cx.span().span_context().is_sampled();
                for _ in 0..2 {
                    // A child follows its root, whatever the budget has left.
                    tracer.in_span("child", |c| {
                        assert_eq!(c.span().span_context().is_sampled(), sampled)
                    });
                }
            });
        }
        let spans = exporter.get_finished_spans().unwrap();
        let roots = spans.iter().filter(|s| s.name == "root").count();
        assert_eq!(spans.len(), roots * 3, "every recorded trace is whole");
        roots
    };

    // A full second's budget at once, then nothing until it refills.
    assert_eq!(traces(20), 5);
    assert_eq!(traces(20), 0);
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(traces(20), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(traces(20), 5);
    // Changed at run time: the next root sees the new budget (which starts full).
    handle.set_per_second(Some(2)).unwrap();
    assert_eq!(handle.per_second(), Some(2));
    assert_eq!(traces(20), 2);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(traces(20), 2);
    handle.set_per_second(Some(0)).unwrap();
    assert_eq!(traces(20), 0);
    handle.set_per_second(None).unwrap();
    assert_eq!(traces(20), 20);
    // Above what the limiter can count: a typed error, and the budget unchanged.
    let err = handle
        .set_per_second(Some(u64::MAX))
        .unwrap_err()
        .to_string();
    assert!(err.contains("trace budget"), "{err}");
    assert_eq!(handle.per_second(), None);

    // Every root the limiter saw is counted: 5+0+1+5+2+2 admitted of 6 × 20 asked.
    assert_eq!(budget_decisions("allowed") - allowed0, 15);
    assert_eq!(budget_decisions("throttled") - throttled0, 6 * 20 - 15);
}

#[test]
fn the_stack_counts_every_root_decision_and_records_whole_traces() {
    let _serial = serial();
    metrics();
    let (sampled0, dropped0) = (
        sampler_decisions("RECORD_AND_SAMPLE"),
        sampler_decisions("DROP"),
    );
    let exporter = InMemorySpanExporter::default();
    let config = TelemetryConfig::new()
        .fmt_output(false)
        .log_filter("trace")
        .trace_sampler(TraceSampler::ParentBasedRateLimited(3));
    let stack = TracingStack::with_exporter(&config, exporter.clone()).unwrap();
    let field = Counted::default();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        for _ in 0..50 {
            traced_request("budget.request", &field);
        }
    });
    stack.provider().force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let roots = spans.iter().filter(|s| s.name == "budget.request").count() as u64;
    // The budget starts full: at least 3 pass; the rest is refilled by the time the loop takes.
    assert!((3..50).contains(&roots), "{roots} roots recorded");
    assert_eq!(
        spans.len() as u64,
        roots * 4,
        "every recorded trace is whole"
    );
    assert_eq!(sampler_decisions("RECORD_AND_SAMPLE") - sampled0, roots);
    assert_eq!(sampler_decisions("DROP") - dropped0, 50 - roots);

    // The budget changed at run time: none, then every root.
    let handle = stack.trace_budget_handle();
    handle.set_per_second(Some(0)).unwrap();
    exporter.reset();
    tracing::dispatcher::with_default(stack.dispatch(), || traced_request("budget.none", &field));
    handle.set_per_second(None).unwrap();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        for _ in 0..10 {
            traced_request("budget.all", &field);
        }
    });
    stack.provider().force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 40);
    assert!(spans.iter().all(|s| s.name != "budget.none"));
    assert_eq!(sampler_decisions("DROP") - dropped0, 50 - roots + 1);
    let _ = stack.provider().shutdown();
}
