//! The pools' OpenTelemetry metrics, read through the SDK's in-memory exporter after a known sequence of
//! operations: instrument names, units, the `otlp-pool` scope, `pool.name` / `pool.size_class` attributes, values.
//!
//! This file installs the global meter provider, so it is its own test binary (one process, one provider).

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_pool::{ByteSlicePool, Pool};

#[derive(Debug, PartialEq)]
struct Point {
    scope: String,
    name: String,
    unit: String,
    kind: &'static str,
    attributes: Vec<KeyValue>,
    value: u64,
}

fn points(metrics: &[ResourceMetrics]) -> Vec<Point> {
    let mut out = Vec::new();
    // The last export holds the cumulative values.
    let Some(last) = metrics.last() else {
        return out;
    };
    for scope in last.scope_metrics() {
        for metric in scope.metrics() {
            let mut push = |kind, attributes: Vec<KeyValue>, value| {
                out.push(Point {
                    scope: scope.scope().name().to_owned(),
                    name: metric.name().to_owned(),
                    unit: metric.unit().to_owned(),
                    kind,
                    attributes,
                    value,
                })
            };
            match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    assert!(
                        sum.is_monotonic(),
                        "{} must be a monotonic counter",
                        metric.name()
                    );
                    for p in sum.data_points() {
                        push("counter", p.attributes().cloned().collect(), p.value());
                    }
                }
                AggregatedMetrics::I64(MetricData::Sum(sum)) => {
                    assert!(
                        !sum.is_monotonic(),
                        "{} must be an up-down counter",
                        metric.name()
                    );
                    for p in sum.data_points() {
                        let value = u64::try_from(p.value()).expect("a count is never negative");
                        push("up_down", p.attributes().cloned().collect(), value);
                    }
                }
                _ => panic!("{} has an unexpected kind", metric.name()),
            }
        }
    }
    out
}

fn value(points: &[Point], name: &str, attributes: &[KeyValue]) -> Option<u64> {
    points
        .iter()
        .find(|p| {
            p.name == name
                && p.attributes.len() == attributes.len()
                && attributes.iter().all(|a| p.attributes.contains(a))
        })
        .map(|p| p.value)
}

#[test]
fn pool_metrics_reach_the_exporter() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());

    // A known sequence: 3 misses, 3 returns of which 1 is discarded (capacity 2), 1 reuse, 1 detach.
    let pool = Pool::builder("orders", Vec::<u8>::new)
        .capacity(2)
        .reset(Vec::clear)
        .build()
        .unwrap();
    let held: Vec<_> = (0..3).map(|_| pool.get()).collect();
    drop(held);
    let reused = pool.get();
    let _kept: Vec<u8> = reused.detach();

    let slices = ByteSlicePool::builder("frames")
        .classes(64, 1024)
        .build()
        .unwrap();
    drop(slices.get(100)); // class 128: one miss, one put
    drop(slices.get(100)); // class 128: one reuse, one put
    drop(slices.get(5000)); // above the largest class: miss + discard on class 1024

    // A second pool with its own name: the points must stay apart.
    let other = Pool::builder("invoices", Vec::<u8>::new).build().unwrap();
    drop(other.get());

    provider.force_flush().unwrap();
    let points = points(&exporter.get_finished_metrics().unwrap());

    let orders = [KeyValue::new("pool.name", "orders")];
    assert_eq!(value(&points, "pool.gets", &orders), Some(4));
    assert_eq!(value(&points, "pool.misses", &orders), Some(3));
    assert_eq!(value(&points, "pool.puts", &orders), Some(2));
    assert_eq!(value(&points, "pool.discards", &orders), Some(1));
    assert_eq!(value(&points, "pool.idle", &orders), Some(1));
    assert_eq!(
        pool.stats().idle,
        1,
        "stats() and the metrics read the same counters"
    );

    let invoices = [KeyValue::new("pool.name", "invoices")];
    assert_eq!(value(&points, "pool.gets", &invoices), Some(1));
    assert_eq!(value(&points, "pool.idle", &invoices), Some(1));

    let class = |size: i64| {
        [
            KeyValue::new("pool.name", "frames"),
            KeyValue::new("pool.size_class", size),
        ]
    };
    assert_eq!(value(&points, "pool.gets", &class(128)), Some(2));
    assert_eq!(value(&points, "pool.misses", &class(128)), Some(1));
    assert_eq!(value(&points, "pool.puts", &class(128)), Some(2));
    assert_eq!(value(&points, "pool.idle", &class(128)), Some(1));
    assert_eq!(value(&points, "pool.misses", &class(1024)), Some(1));
    assert_eq!(value(&points, "pool.discards", &class(1024)), Some(1));
    assert_eq!(value(&points, "pool.gets", &class(64)), Some(0));

    for p in &points {
        assert_eq!(p.scope, "otlp-pool");
        let (kind, unit) = match p.name.as_str() {
            "pool.gets" | "pool.misses" => ("counter", "{get}"),
            "pool.puts" | "pool.discards" => ("counter", "{object}"),
            "pool.idle" => ("up_down", "{object}"),
            other => panic!("unexpected instrument {other}"),
        };
        assert_eq!((p.kind, p.unit.as_str()), (kind, unit), "{}", p.name);
        assert!(p.attributes.iter().any(|a| a.key.as_str() == "pool.name"));
    }

    // A dropped pool keeps its cumulative counts; its idle objects are gone with it.
    drop(other);
    exporter.reset();
    provider.force_flush().unwrap();
    let after = crate::points(&exporter.get_finished_metrics().unwrap());
    assert_eq!(value(&after, "pool.gets", &invoices), Some(1));
    assert_eq!(value(&after, "pool.idle", &invoices), None);
    assert_eq!(value(&after, "pool.gets", &orders), Some(4));
    provider.shutdown().unwrap();
}
