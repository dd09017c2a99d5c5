//! The patterns follow the global meter provider: a worker pool, fan-out or pipeline built before
//! `global::set_meter_provider` reports through it like one built after, and a user who installs their own SDK
//! provider (no otlp-telemetry) receives every duration.
//!
//! One test in this binary: the global provider is process-wide.

use std::time::Duration;

use futures::StreamExt;
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_patterns::{FanOut, Pipeline, WorkerPool};

fn find<'a>(all: &'a [ResourceMetrics], name: &str) -> Option<&'a Metric> {
    all.last()?
        .scope_metrics()
        .filter(|s| s.scope().name() == "otlp-patterns")
        .flat_map(|s| s.metrics())
        .find(|m| m.name() == name)
}

fn matches(attrs: &mut dyn Iterator<Item = &KeyValue>, want: &[(&str, &str)]) -> bool {
    let attrs: Vec<&KeyValue> = attrs.collect();
    want.iter().all(|(k, v)| {
        attrs
            .iter()
            .any(|kv| kv.key.as_str() == *k && kv.value.as_str() == *v)
    })
}

/// The counter `name`'s point with these attributes, if exported.
fn counter(all: &[ResourceMetrics], name: &str, want: &[(&str, &str)]) -> Option<u64> {
    match find(all, name)?.data() {
        AggregatedMetrics::U64(MetricData::Sum(s)) => s
            .data_points()
            .find(|p| matches(&mut p.attributes(), want))
            .map(|p| p.value()),
        other => panic!("{name} is not a u64 counter: {other:?}"),
    }
}

/// The up-down counter `name`'s point with these attributes, if exported.
fn up_down(all: &[ResourceMetrics], name: &str, want: &[(&str, &str)]) -> Option<i64> {
    match find(all, name)?.data() {
        AggregatedMetrics::I64(MetricData::Sum(s)) => s
            .data_points()
            .find(|p| matches(&mut p.attributes(), want))
            .map(|p| p.value()),
        other => panic!("{name} is not an i64 up-down counter: {other:?}"),
    }
}

/// How many values histogram `name` holds for these attributes, if exported.
fn durations(all: &[ResourceMetrics], name: &str, want: &[(&str, &str)]) -> Option<u64> {
    match find(all, name)?.data() {
        AggregatedMetrics::F64(MetricData::Histogram(h)) => h
            .data_points()
            .find(|p| matches(&mut p.attributes(), want))
            .map(|p| p.count()),
        other => panic!("{name} is not an f64 histogram: {other:?}"),
    }
}

const TASKS: u32 = 5;

async fn use_pool(pool: &WorkerPool) {
    let mut handles = Vec::new();
    for i in 0..TASKS {
        handles.push(pool.submit(async move { i }).await.unwrap());
    }
    for h in handles {
        h.await.unwrap();
    }
}

async fn use_fan(fan: &FanOut) {
    let out = fan.run(0..TASKS, |i| async move { i }).await;
    assert!(out.all_ok());
}

async fn double(i: u32) -> Result<u32, String> {
    Ok(i * 2)
}

#[tokio::test(start_paused = true)]
async fn owners_built_before_and_after_the_provider_export_every_count_and_duration() {
    let early_pool = WorkerPool::builder("early").workers(2).build().unwrap();
    let early_fan = FanOut::new("early", 2).unwrap();
    let early_pipe = Pipeline::builder("early")
        .stage_fallible("double", 2, double)
        .build()
        .unwrap();

    // The user's own SDK provider, without otlp-telemetry.
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(exporter.clone())
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    global::set_meter_provider(provider.clone());

    let late_pool = WorkerPool::builder("late").workers(2).build().unwrap();
    let late_fan = FanOut::new("late", 2).unwrap();
    let late_pipe = Pipeline::builder("late")
        .stage_fallible("double", 2, double)
        .build()
        .unwrap();

    for pool in [&early_pool, &late_pool] {
        use_pool(pool).await;
    }
    for fan in [&early_fan, &late_fan] {
        use_fan(fan).await;
    }
    for pipe in [&early_pipe, &late_pipe] {
        let out: Vec<_> = pipe.run(futures::stream::iter(0..TASKS)).collect().await;
        assert_eq!(out.len(), TASKS as usize);
    }

    provider.force_flush().unwrap();
    let all = exporter.get_finished_metrics().unwrap();
    let n = u64::from(TASKS);
    for who in ["early", "late"] {
        let pool = [("worker_pool.name", who)];
        assert_eq!(
            counter(
                &all,
                "worker_pool.tasks",
                &[("worker_pool.name", who), ("outcome", "ok")]
            ),
            Some(n),
            "worker pool {who}"
        );
        assert_eq!(
            up_down(&all, "worker_pool.worker.count", &pool),
            Some(2),
            "{who}"
        );
        assert_eq!(
            durations(&all, "worker_pool.task.duration", &pool),
            Some(n),
            "every task's run time, pool {who}"
        );
        assert_eq!(
            durations(&all, "worker_pool.task.wait.duration", &pool),
            Some(n),
            "every task's wait, pool {who}"
        );

        let fan = [("fan_out.name", who)];
        assert_eq!(
            counter(
                &all,
                "fan_out.tasks",
                &[("fan_out.name", who), ("outcome", "ok")]
            ),
            Some(n),
            "fan-out {who}"
        );
        assert_eq!(
            durations(&all, "fan_out.task.duration", &fan),
            Some(n),
            "every item's duration, fan-out {who}"
        );

        let stage = [("pipeline.name", who), ("pipeline.stage.name", "double")];
        assert_eq!(
            counter(
                &all,
                "pipeline.items",
                &[("pipeline.name", who), ("outcome", "ok")]
            ),
            Some(n),
            "pipeline {who}"
        );
        assert_eq!(
            up_down(&all, "pipeline.stage.queue.size", &stage),
            Some(0),
            "{who}"
        );
        assert_eq!(
            durations(&all, "pipeline.stage.duration", &stage),
            Some(n),
            "every stage duration, pipeline {who}"
        );
    }

    // A dropped owner keeps its cumulative counts and the durations it recorded.
    early_pool.shutdown_now().await;
    drop(early_pool);
    drop(early_fan);
    exporter.reset();
    provider.force_flush().unwrap();
    let all = exporter.get_finished_metrics().unwrap();
    assert_eq!(
        counter(
            &all,
            "worker_pool.tasks",
            &[("worker_pool.name", "early"), ("outcome", "ok")]
        ),
        Some(n)
    );
    assert_eq!(
        counter(
            &all,
            "fan_out.tasks",
            &[("fan_out.name", "early"), ("outcome", "ok")]
        ),
        Some(n)
    );
    assert_eq!(
        durations(
            &all,
            "worker_pool.task.duration",
            &[("worker_pool.name", "early")]
        ),
        Some(n)
    );
    late_pool.shutdown_now().await;
    provider.shutdown().unwrap();
}
