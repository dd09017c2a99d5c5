//! Pools follow the global meter provider: one built before `global::set_meter_provider` reports through it like
//! one built after (object, buffer and byte-slice pools alike), and a pool dropped before the export keeps its
//! cumulative counts.
//!
//! One test in this binary: the global provider is process-wide.

use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_pool::{BufferPool, ByteSlicePool, Pool};

/// The last exported value of counter `name` for `pool.name` = `pool`, if exported.
fn gets(metrics: &[ResourceMetrics], name: &str, pool: &str) -> Option<u64> {
    let want = KeyValue::new("pool.name", pool.to_owned());
    let last = metrics.last()?;
    last.scope_metrics()
        .filter(|s| s.scope().name() == "otlp-pool")
        .flat_map(|s| s.metrics())
        .filter(|m| m.name() == name)
        .find_map(|m| match m.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                let mut points = sum
                    .data_points()
                    .filter(|p| p.attributes().any(|kv| *kv == want));
                let value = points.next().map(|p| p.value());
                assert!(points.next().is_none(), "one point per attribute set");
                value
            }
            _ => None,
        })
}

/// The last exported `pool.gets` of `pool`, summed over its size classes, if exported.
fn gets_of_every_class(metrics: &[ResourceMetrics], pool: &str) -> Option<u64> {
    let want = KeyValue::new("pool.name", pool.to_owned());
    metrics
        .last()?
        .scope_metrics()
        .filter(|s| s.scope().name() == "otlp-pool")
        .flat_map(|s| s.metrics())
        .filter(|m| m.name() == "pool.gets")
        .find_map(|m| match m.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                let points: Vec<u64> = sum
                    .data_points()
                    .filter(|p| p.attributes().any(|kv| *kv == want))
                    .map(|p| p.value())
                    .collect();
                (!points.is_empty()).then(|| points.iter().sum())
            }
            _ => None,
        })
}

#[test]
fn pools_built_before_and_after_the_provider_export_and_dropped_ones_keep_their_counts() {
    let early = Pool::builder("early", Vec::<u8>::new).build().unwrap();
    drop(early.get());
    let early_buffers = BufferPool::builder("early.buffers").build().unwrap();
    drop(early_buffers.get());
    let early_slices = ByteSlicePool::builder("early.slices").build().unwrap();
    drop(early_slices.get(100));

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    global::set_meter_provider(provider.clone());

    let late = Pool::builder("late", Vec::<u8>::new).build().unwrap();
    for _ in 0..2 {
        drop(late.get());
    }
    drop(early.get());
    let late_buffers = BufferPool::builder("late.buffers").build().unwrap();
    let late_slices = ByteSlicePool::builder("late.slices").build().unwrap();
    for _ in 0..3 {
        drop(early_buffers.get());
        drop(late_buffers.get());
        drop(early_slices.get(1000));
        drop(late_slices.get(10));
    }
    // Two pools of one name are one series, their counts summed, and one of them is dropped before the export.
    let gone = Pool::builder("gone", Vec::<u8>::new).build().unwrap();
    let twin = Pool::builder("gone", Vec::<u8>::new).build().unwrap();
    for _ in 0..5 {
        drop(gone.get());
    }
    drop(twin.get());
    drop(gone);

    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    assert_eq!(gets(&metrics, "pool.gets", "early"), Some(2));
    assert_eq!(gets(&metrics, "pool.gets", "late"), Some(2));
    assert_eq!(gets(&metrics, "pool.gets", "gone"), Some(6));
    assert_eq!(gets(&metrics, "pool.misses", "gone"), Some(2));
    assert_eq!(gets(&metrics, "pool.gets", "early.buffers"), Some(4));
    assert_eq!(gets(&metrics, "pool.gets", "late.buffers"), Some(3));
    assert_eq!(gets_of_every_class(&metrics, "early.slices"), Some(4));
    assert_eq!(gets_of_every_class(&metrics, "late.slices"), Some(3));

    // Still there at the next export, after the twin is gone too.
    drop(twin);
    exporter.reset();
    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    assert_eq!(gets(&metrics, "pool.gets", "gone"), Some(6));
    assert_eq!(gets(&metrics, "pool.gets", "early"), Some(2));
    provider.shutdown().unwrap();
}
