//! Semaphores and rate limiters follow the global meter provider: built before `global::set_meter_provider` they
//! report through it like those built after, and one dropped before the export keeps its cumulative counts.
//!
//! One test in this binary: the global provider is process-wide.

use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_sync::{KeyedRateLimiter, RateLimiter, Semaphore};

/// The last exported value of the `u64` counter `name` at exactly these attributes.
fn count(metrics: &[ResourceMetrics], name: &str, attrs: &[(&str, &str)]) -> Option<u64> {
    let want: Vec<KeyValue> = attrs
        .iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
        .collect();
    let last = metrics.last()?;
    last.scope_metrics()
        .filter(|s| s.scope().name() == "otlp-sync")
        .flat_map(|s| s.metrics())
        .filter(|m| m.name() == name)
        .find_map(|m| match m.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                let mut points = sum.data_points().filter(|p| {
                    p.attributes().count() == want.len()
                        && want.iter().all(|kv| p.attributes().any(|a| a == kv))
                });
                let value = points.next().map(|p| p.value());
                assert!(points.next().is_none(), "one point per attribute set");
                value
            }
            _ => None,
        })
}

#[test]
fn owners_built_before_and_after_the_provider_export_and_dropped_ones_keep_their_counts() {
    let early_sem = Semaphore::new("early", 2).unwrap();
    let early_lim = RateLimiter::builder("early")
        .per_second(1000)
        .burst(100)
        .build()
        .unwrap();
    drop(early_sem.try_acquire().unwrap());
    early_lim.check().unwrap();

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    global::set_meter_provider(provider.clone());

    let late_sem = Semaphore::new("late", 1).unwrap();
    let keyed = KeyedRateLimiter::<String>::builder("keys")
        .per_second(1000)
        .burst(100)
        .build()
        .unwrap();
    drop(late_sem.try_acquire().unwrap());
    drop(early_sem.try_acquire().unwrap());
    early_lim.check().unwrap();
    keyed.check_key("a").unwrap();
    let gone = Semaphore::new("gone", 1).unwrap();
    for _ in 0..3 {
        drop(gone.try_acquire().unwrap());
    }
    drop(gone);

    provider.force_flush().unwrap();
    let m = exporter.get_finished_metrics().unwrap();
    let acquired = |name| {
        count(
            &m,
            "semaphore.acquires",
            &[("semaphore.name", name), ("outcome", "acquired")],
        )
    };
    assert_eq!(acquired("early"), Some(2));
    assert_eq!(acquired("late"), Some(1));
    assert_eq!(acquired("gone"), Some(3));
    let allowed = |name| {
        count(
            &m,
            "rate_limiter.decisions",
            &[("rate_limiter.name", name), ("outcome", "allowed")],
        )
    };
    assert_eq!(allowed("early"), Some(2));
    assert_eq!(allowed("keys"), Some(1));

    drop((early_lim, keyed));
    exporter.reset();
    provider.force_flush().unwrap();
    let m = exporter.get_finished_metrics().unwrap();
    assert_eq!(
        count(
            &m,
            "rate_limiter.decisions",
            &[("rate_limiter.name", "keys"), ("outcome", "allowed")]
        ),
        Some(1)
    );
    assert_eq!(
        count(
            &m,
            "semaphore.acquires",
            &[("semaphore.name", "gone"), ("outcome", "acquired")]
        ),
        Some(3)
    );
    provider.shutdown().unwrap();
}
