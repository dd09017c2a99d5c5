//! The instruments of the three patterns, read back through the SDK's in-memory exporter: names, units,
//! attributes and values.

use std::time::Duration;

use futures::StreamExt;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_patterns::{FanOut, Pipeline, TaskError, WorkerPool};

fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporter::default();
    let reader = PeriodicReader::builder(exporter.clone())
        .with_interval(Duration::from_secs(3600))
        .build();
    (
        SdkMeterProvider::builder().with_reader(reader).build(),
        exporter,
    )
}

fn meter(p: &SdkMeterProvider) -> opentelemetry::metrics::Meter {
    p.meter_with_scope(InstrumentationScope::builder("otlp-patterns").build())
}

fn collect(p: &SdkMeterProvider, e: &InMemoryMetricExporter) -> Vec<ResourceMetrics> {
    p.force_flush().unwrap();
    e.get_finished_metrics().unwrap()
}

fn metric<'a>(all: &'a [ResourceMetrics], name: &str) -> &'a Metric {
    all.iter()
        .rev()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn has(attrs: &mut dyn Iterator<Item = &KeyValue>, want: &[(&str, &str)]) -> bool {
    let attrs: Vec<&KeyValue> = attrs.collect();
    want.iter().all(|(k, v)| {
        attrs
            .iter()
            .any(|kv| kv.key.as_str() == *k && kv.value.as_str() == *v)
    })
}

/// The `outcome` values a counter exports, sorted.
fn outcomes(m: &Metric) -> Vec<String> {
    let AggregatedMetrics::U64(MetricData::Sum(s)) = m.data() else {
        panic!("{} is not a u64 counter", m.name());
    };
    let mut out: Vec<String> = s
        .data_points()
        .filter_map(|p| {
            p.attributes()
                .find(|kv| kv.key.as_str() == "outcome")
                .map(|kv| kv.value.as_str().into_owned())
        })
        .collect();
    out.sort();
    out
}

/// The value of a u64 sum or i64 up-down sum data point with these attributes.
fn u64_point(m: &Metric, want: &[(&str, &str)]) -> u64 {
    match m.data() {
        AggregatedMetrics::U64(MetricData::Sum(s)) => s
            .data_points()
            .find(|p| has(&mut p.attributes(), want))
            .map(|p| p.value()),
        AggregatedMetrics::I64(MetricData::Sum(s)) => {
            assert!(!s.is_monotonic(), "{} is an up-down counter", m.name());
            s.data_points()
                .find(|p| has(&mut p.attributes(), want))
                .map(|p| u64::try_from(p.value()).expect("a count is never negative"))
        }
        other => panic!(
            "{} is not a u64 sum or an i64 up-down sum: {other:?}",
            m.name()
        ),
    }
    .unwrap_or_else(|| panic!("{}: no point with {want:?}", m.name()))
}

fn histogram_count(m: &Metric, want: &[(&str, &str)]) -> u64 {
    assert_eq!(m.unit(), "s", "{}", m.name());
    match m.data() {
        AggregatedMetrics::F64(MetricData::Histogram(h)) => h
            .data_points()
            .filter(|p| has(&mut p.attributes(), want))
            .map(|p| p.count())
            .sum(),
        other => panic!("{} is not an f64 histogram: {other:?}", m.name()),
    }
}

#[tokio::test(start_paused = true)]
async fn worker_pool_instruments() {
    let (p, e) = provider();
    let pool = WorkerPool::builder("wp")
        .workers(2)
        .queue(5)
        .meter(meter(&p))
        .task_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let ok = pool
        .submit_fallible(async { Ok::<_, String>(1) })
        .await
        .unwrap();
    let err = pool
        .submit_fallible(async { Err::<u32, _>("x".to_string()) })
        .await
        .unwrap();
    let panic = pool.submit_fallible(async { panic!("p") }).await.unwrap();
    let slow = pool
        .submit_fallible(async { std::future::pending::<Result<u32, String>>().await })
        .await
        .unwrap();
    assert!(ok.await.is_ok());
    assert!(err.await.is_err());
    let _: Result<u32, TaskError<String>> = panic.await;
    assert_eq!(slow.await, Err(TaskError::TimedOut));
    let all = collect(&p, &e);
    let name = [("worker_pool.name", "wp")];
    assert_eq!(
        u64_point(metric(&all, "worker_pool.worker.count"), &name),
        2
    );
    assert_eq!(
        u64_point(metric(&all, "worker_pool.worker.active"), &name),
        0
    );
    assert_eq!(u64_point(metric(&all, "worker_pool.queue.size"), &name), 0);
    assert_eq!(
        u64_point(metric(&all, "worker_pool.queue.capacity"), &name),
        5
    );
    let tasks = metric(&all, "worker_pool.tasks");
    assert_eq!(tasks.unit(), "{task}");
    for (outcome, n) in [
        ("ok", 1),
        ("error", 1),
        ("panic", 1),
        ("timeout", 1),
        ("cancelled", 0),
        ("rejected", 0),
    ] {
        assert_eq!(
            u64_point(tasks, &[("worker_pool.name", "wp"), ("outcome", outcome)]),
            n,
            "{outcome}"
        );
    }
    assert_eq!(
        histogram_count(metric(&all, "worker_pool.task.duration"), &name),
        4
    );
    assert_eq!(
        histogram_count(metric(&all, "worker_pool.task.wait.duration"), &name),
        4
    );
    pool.shutdown_now().await;
    let all = collect(&p, &e);
    assert_eq!(
        u64_point(metric(&all, "worker_pool.worker.count"), &name),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn fan_out_instruments() {
    let (p, e) = provider();
    let limit = otlp_sync::Semaphore::builder("fo")
        .permits(2)
        .meter(meter(&p))
        .build()
        .unwrap();
    let fan = FanOut::builder("fo")
        .concurrency(2)
        .shared_limit(limit.clone())
        .meter(meter(&p))
        .build()
        .unwrap();
    let r = fan
        .run_fallible(
            0..5u32,
            |i| async move { if i == 2 { Err(i) } else { Ok(i) } },
        )
        .await;
    assert_eq!(r.len(), 5);
    let all = collect(&p, &e);
    let tasks = metric(&all, "fan_out.tasks");
    assert_eq!(
        outcomes(tasks),
        ["cancelled", "error", "ok", "panic"],
        "a fan-out item cannot time out or be rejected: no such series"
    );
    assert_eq!(
        u64_point(tasks, &[("fan_out.name", "fo"), ("outcome", "ok")]),
        4
    );
    assert_eq!(
        u64_point(tasks, &[("fan_out.name", "fo"), ("outcome", "error")]),
        1
    );
    assert_eq!(
        histogram_count(
            metric(&all, "fan_out.task.duration"),
            &[("fan_out.name", "fo")]
        ),
        5
    );
    // The shared otlp-sync semaphore bounding it reports under its own name. It counts permits taken, not items:
    // these items finish on their first poll, so the run hands one permit from each item to the next.
    let acquires = metric(&all, "semaphore.acquires");
    assert_eq!(
        u64_point(
            acquires,
            &[("semaphore.name", "fo"), ("outcome", "acquired")]
        ),
        1
    );
    assert_eq!(limit.available(), 2, "the permit was given back");
}

#[tokio::test(start_paused = true)]
async fn pipeline_instruments() {
    let (p, e) = provider();
    let pipe = Pipeline::builder("pl")
        .stage_fallible("parse", 2, |i: u32| async move {
            if i == 1 { Err(i) } else { Ok(i) }
        })
        .stage("store", 1, |i| async move { i })
        .error_policy(otlp_patterns::ErrorPolicy::Skip)
        .meter(meter(&p))
        .build()
        .unwrap();
    let out: Vec<_> = pipe.run(futures::stream::iter(0..4u32)).collect().await;
    assert_eq!(out.len(), 3);
    let all = collect(&p, &e);
    let items = metric(&all, "pipeline.items");
    assert_eq!(
        outcomes(items),
        ["cancelled", "error", "ok", "panic"],
        "a pipeline item cannot time out or be rejected: no such series"
    );
    assert_eq!(
        u64_point(items, &[("pipeline.name", "pl"), ("outcome", "ok")]),
        3
    );
    assert_eq!(
        u64_point(items, &[("pipeline.name", "pl"), ("outcome", "error")]),
        1
    );
    let d = metric(&all, "pipeline.stage.duration");
    assert_eq!(
        histogram_count(
            d,
            &[("pipeline.name", "pl"), ("pipeline.stage.name", "parse")]
        ),
        4
    );
    assert_eq!(
        histogram_count(
            d,
            &[("pipeline.name", "pl"), ("pipeline.stage.name", "store")]
        ),
        3
    );
    let q = metric(&all, "pipeline.stage.queue.size");
    assert_eq!(
        u64_point(
            q,
            &[("pipeline.name", "pl"), ("pipeline.stage.name", "store")]
        ),
        0
    );
}
