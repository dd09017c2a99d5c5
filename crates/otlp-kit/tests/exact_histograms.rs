//! Duration histograms are exact: what a worker pool exports for its tasks (count, bucket counts for the
//! boundaries otlp-telemetry's view installs, min, max; sum within 0.1 %) equals recording each duration directly
//! on a histogram of the same provider.
//!
//! The tasks' durations are set with tokio's paused clock (`tokio::time::advance` moves it by exactly that much),
//! so the test knows each value the pool measured: one nanosecond below, on and above every boundary.
//!
//! Here rather than in otlp-patterns so that otlp-patterns' own test builds (loom, miri) need not compile
//! otlp-telemetry and its exporters.
#![cfg(all(feature = "patterns", feature = "telemetry"))]

use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, HistogramDataPoint, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_kit::patterns::WorkerPool;
use otlp_kit::telemetry::{DurationHistogram, LATENCY_BUCKETS_SECONDS, views};

fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporter::default();
    let reader = PeriodicReader::builder(exporter.clone())
        .with_interval(Duration::from_secs(3600))
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_view(views::duration_view(&DurationHistogram::default()))
        .build();
    (provider, exporter)
}

/// One nanosecond below, on and above every boundary, plus values below the first and above the last.
fn durations() -> Vec<Duration> {
    let mut out = vec![Duration::from_nanos(1), Duration::from_nanos(999)];
    for b in LATENCY_BUCKETS_SECONDS {
        let nanos = (b * 1e9).round() as u64;
        for n in [nanos - 1, nanos, nanos + 1] {
            out.push(Duration::from_nanos(n));
        }
    }
    out.push(Duration::from_secs(12));
    out
}

/// The one data point of histogram `name`.
fn point(exporter: &InMemoryMetricExporter, name: &str) -> HistogramDataPoint<f64> {
    let metrics = exporter.get_finished_metrics().unwrap();
    let m = metrics
        .iter()
        .rev()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no histogram {name}"));
    let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
        panic!("{name} is not an f64 histogram");
    };
    let mut points = h.data_points();
    let p = points.next().unwrap_or_else(|| panic!("{name}: no point"));
    assert!(points.next().is_none(), "{name}: one attribute set");
    p.clone()
}

fn assert_same(name: &str, got: &HistogramDataPoint<f64>, want: &HistogramDataPoint<f64>) {
    assert_eq!(
        got.bounds().collect::<Vec<_>>(),
        LATENCY_BUCKETS_SECONDS.to_vec(),
        "{name}: the view's boundaries"
    );
    assert_eq!(got.count(), want.count(), "{name}: count");
    assert_eq!(
        got.bucket_counts().collect::<Vec<_>>(),
        want.bucket_counts().collect::<Vec<_>>(),
        "{name}: bucket counts"
    );
    assert_eq!(got.min(), want.min(), "{name}: min");
    assert_eq!(got.max(), want.max(), "{name}: max");
    let (g, w) = (got.sum(), want.sum());
    assert!(
        (g - w).abs() <= w.abs() * 1e-3,
        "{name}: sum {g} against {w}"
    );
}

#[tokio::test(start_paused = true)]
async fn worker_pool_durations_equal_direct_recording() {
    let (provider, exporter) = provider();
    let meter = provider.meter_with_scope(InstrumentationScope::builder("otlp-patterns").build());
    let reference = provider.meter("otlp-reference");
    let run_ref = reference
        .f64_histogram("reference.run.duration")
        .with_unit("s")
        .build();
    let wait_ref = reference
        .f64_histogram("reference.wait.duration")
        .with_unit("s")
        .build();

    let values = durations();
    // One worker, every task queued at once (no `.await` between the submissions, so the clock does not move):
    // task i waits for the ones before it and runs for exactly its duration.
    let pool = WorkerPool::builder("exact")
        .workers(1)
        .queue(values.len())
        .task_timeout(Duration::MAX)
        .meter(meter)
        .build()
        .unwrap();
    let handles: Vec<_> = values
        .iter()
        .map(|&d| {
            pool.try_submit(async move { tokio::time::advance(d).await })
                .unwrap()
        })
        .collect();
    let mut waited = Duration::ZERO;
    for (d, h) in values.iter().zip(handles) {
        h.await.unwrap();
        run_ref.record(d.as_secs_f64(), &[]);
        wait_ref.record(waited.as_secs_f64(), &[]);
        waited += *d;
    }
    pool.shutdown_now().await;

    provider.force_flush().unwrap();
    assert_eq!(
        point(&exporter, "worker_pool.task.duration").count(),
        values.len() as u64
    );
    assert_same(
        "worker_pool.task.duration",
        &point(&exporter, "worker_pool.task.duration"),
        &point(&exporter, "reference.run.duration"),
    );
    assert_same(
        "worker_pool.task.wait.duration",
        &point(&exporter, "worker_pool.task.wait.duration"),
        &point(&exporter, "reference.wait.duration"),
    );
    provider.shutdown().unwrap();
}
