//! Duration histograms are exact: what a worker pool exports for its tasks, and a pipeline for its stages (count,
//! bucket counts for the boundaries otlp-telemetry's view installs, min, max; sum within 0.1 %) equals recording
//! each duration directly on a histogram of the same provider: on the plain path (a meter of the pool's own) and on
//! the bound one (the global provider installed with `otlp_telemetry::install_meter_provider`, pools built before
//! and after it).
//!
//! The tasks' durations are set with tokio's paused clock (`tokio::time::advance` moves it by exactly that much),
//! so the test knows each value the pool measured: one nanosecond below, on and above every boundary.
//!
//! Here rather than in otlp-patterns so that otlp-patterns' own test builds (loom, miri) need not compile
//! otlp-telemetry and its exporters.
#![cfg(all(feature = "patterns", feature = "telemetry"))]

use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, HistogramDataPoint, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_kit::patterns::WorkerPool;
use otlp_kit::telemetry::{
    DurationHistogram, LATENCY_BUCKETS_SECONDS, install_meter_provider, views,
};

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

/// The one data point of histogram `name` in the last export.
fn point(exporter: &InMemoryMetricExporter, name: &str) -> HistogramDataPoint<f64> {
    let mut points = points(exporter, name);
    let p = points.pop().unwrap_or_else(|| panic!("{name}: no point"));
    assert!(points.is_empty(), "{name}: one attribute set");
    p
}

/// The data points of histogram `name` in the last export.
fn points(exporter: &InMemoryMetricExporter, name: &str) -> Vec<HistogramDataPoint<f64>> {
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
    h.data_points().cloned().collect()
}

/// The data point of histogram `name` whose `worker_pool.name` is `pool`, in the last export.
fn pool_point(
    exporter: &InMemoryMetricExporter,
    name: &str,
    pool: &str,
) -> HistogramDataPoint<f64> {
    let mut found = points(exporter, name).into_iter().filter(|p| {
        p.attributes()
            .any(|kv| kv.key.as_str() == "worker_pool.name" && kv.value.as_str() == pool)
    });
    let p = found
        .next()
        .unwrap_or_else(|| panic!("{name}: no point of pool {pool}"));
    assert!(found.next().is_none(), "{name}: one point of pool {pool}");
    p
}

/// Reference histograms `<prefix>.run.duration` and `<prefix>.wait.duration`, recorded on directly.
fn references(provider: &SdkMeterProvider, prefix: &str) -> (Histogram<f64>, Histogram<f64>) {
    let reference = provider.meter("otlp-reference");
    let build = |what: &str| {
        reference
            .f64_histogram(format!("{prefix}.{what}.duration"))
            .with_unit("s")
            .build()
    };
    (build("run"), build("wait"))
}

/// Submits a task per duration to a one-worker `pool` (every task queued at once: no `.await` between the
/// submissions, so the clock does not move, and task i waits for the ones before it and runs for exactly its
/// duration); records each run and wait duration on `run_ref` and `wait_ref`.
async fn run_tasks(
    pool: &WorkerPool,
    values: &[Duration],
    run_ref: &Histogram<f64>,
    wait_ref: &Histogram<f64>,
) {
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
    let (run_ref, wait_ref) = references(&provider, "reference");

    let values = durations();
    let pool = WorkerPool::builder("exact")
        .workers(1)
        .queue(values.len())
        .task_timeout(Duration::MAX)
        .meter(meter)
        .build()
        .unwrap();
    run_tasks(&pool, &values, &run_ref, &wait_ref).await;
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

/// The bound path: pools of the process-wide registry, one built before the provider is installed with
/// `install_meter_provider` and one after, each export exactly what direct recording gives; and their cumulative
/// histograms keep being exported after the pools are dropped.
#[tokio::test(start_paused = true)]
async fn bound_worker_pool_durations_equal_direct_recording_before_and_after_install() {
    let (provider, exporter) = provider();
    let (run_ref, wait_ref) = references(&provider, "reference");
    let values = durations();
    let build = |name: &str| {
        WorkerPool::builder(name)
            .workers(1)
            .queue(values.len())
            .task_timeout(Duration::MAX)
            .build()
            .unwrap()
    };
    let early = build("early");
    install_meter_provider(provider.clone());
    let late = build("late");
    // The early pool first, alone: the reference histograms then hold exactly its values.
    run_tasks(&early, &values, &run_ref, &wait_ref).await;
    provider.force_flush().unwrap();
    let want_run = point(&exporter, "reference.run.duration");
    let want_wait = point(&exporter, "reference.wait.duration");
    // The late pool sees the same values (its clock starts when its tasks are queued).
    let (late_run_ref, late_wait_ref) = references(&provider, "reference.late");
    run_tasks(&late, &values, &late_run_ref, &late_wait_ref).await;
    early.shutdown_now().await;
    late.shutdown_now().await;
    provider.force_flush().unwrap();
    for pool in ["early", "late"] {
        assert_same(
            "worker_pool.task.duration",
            &pool_point(&exporter, "worker_pool.task.duration", pool),
            &want_run,
        );
        assert_same(
            "worker_pool.task.wait.duration",
            &pool_point(&exporter, "worker_pool.task.wait.duration", pool),
            &want_wait,
        );
    }

    drop((early, late));
    provider.force_flush().unwrap();
    for pool in ["early", "late"] {
        let run = pool_point(&exporter, "worker_pool.task.duration", pool);
        assert_eq!(
            run.count(),
            values.len() as u64,
            "{pool}: kept once dropped"
        );
        assert_same("worker_pool.task.duration", &run, &want_run);
    }
    provider.shutdown().unwrap();
}

/// The pipeline's stage durations are exact too: one item at a time, each running in the stage for exactly its
/// duration, against the same values recorded directly. (The fan-out times its items with a calibrated TSC clock
/// that tokio's paused clock does not move; its exactness is checked in otlp-patterns' unit tests, where it reads
/// tokio's clock.)
#[tokio::test(start_paused = true)]
async fn pipeline_stage_durations_equal_direct_recording() {
    use futures_util::StreamExt as _;
    use otlp_kit::patterns::Pipeline;

    let (provider, exporter) = provider();
    let meter = provider.meter_with_scope(InstrumentationScope::builder("otlp-patterns").build());
    let (stage_ref, _) = references(&provider, "reference");
    let values = durations();
    let pipeline = Pipeline::builder("exact")
        .stage("advance", 1, |d: Duration| async move {
            tokio::time::advance(d).await;
            d
        })
        .meter(meter)
        .build()
        .unwrap();
    let out: Vec<_> = pipeline
        .run(futures_util::stream::iter(values.clone()))
        .collect()
        .await;
    assert_eq!(out.len(), values.len());
    for d in &values {
        stage_ref.record(d.as_secs_f64(), &[]);
    }

    provider.force_flush().unwrap();
    assert_same(
        "pipeline.stage.duration",
        &point(&exporter, "pipeline.stage.duration"),
        &point(&exporter, "reference.run.duration"),
    );
    provider.shutdown().unwrap();
}
