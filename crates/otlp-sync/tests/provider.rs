//! Semaphores, rate limiters, adaptive limits and Redis rate limiters follow the global meter provider: built
//! before `global::set_meter_provider` they report through it like those built after, and one dropped before the
//! export keeps its cumulative counts.
//!
//! One test in this binary: the global provider is process-wide.

use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_sync::adaptive::AdaptiveLimit;
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

/// Whether an `f64` gauge point of `name` with at least these attributes was exported last.
fn gauge_exported(metrics: &[ResourceMetrics], name: &str, attrs: &[(&str, &str)]) -> bool {
    let Some(last) = metrics.last() else {
        return false;
    };
    last.scope_metrics()
        .filter(|s| s.scope().name() == "otlp-sync")
        .flat_map(|s| s.metrics())
        .filter(|m| m.name() == name)
        .any(|m| match m.data() {
            AggregatedMetrics::F64(MetricData::Gauge(g)) => g.data_points().any(|p| {
                attrs.iter().all(|(k, v)| {
                    p.attributes()
                        .any(|a| a.key.as_str() == *k && a.value.as_str() == *v)
                })
            }),
            _ => false,
        })
}

fn adaptive(name: &str) -> AdaptiveLimit {
    AdaptiveLimit::builder(name)
        .sample_every(1)
        .record_hold_duration(true)
        .build()
        .unwrap()
}

/// A Redis limiter whose server is away (a closed loopback port): each check fails open and counts a backend
/// error, through the same counters a decision by Redis goes through.
#[cfg(feature = "redis")]
mod fleet {
    use std::time::Duration;

    use otlp_sync::Quota;
    use otlp_sync::redis_limiter::{RedisRateLimiter, Unavailable};

    pub fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    pub fn limiter(rt: &tokio::runtime::Runtime, name: &str, port: u16) -> RedisRateLimiter {
        let _in = rt.enter();
        RedisRateLimiter::builder(name, Quota::per_second(100.try_into().unwrap()))
            .url(format!("redis://127.0.0.1:{port}/"))
            .timeout(Duration::from_millis(200))
            .on_unavailable(Unavailable::FailOpen)
            .build()
            .unwrap()
    }

    pub fn check(rt: &tokio::runtime::Runtime, limiter: &RedisRateLimiter) {
        rt.block_on(limiter.check()).unwrap();
    }
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
    let early_adaptive = adaptive("early-adaptive");
    drop(early_adaptive.try_acquire().unwrap());
    #[cfg(feature = "redis")]
    let (rt, port) = (
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        fleet::closed_port(),
    );
    #[cfg(feature = "redis")]
    let early_redis = fleet::limiter(&rt, "early-redis", port);

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
    let late_adaptive = adaptive("late-adaptive");
    drop(late_adaptive.try_acquire().unwrap());
    drop(early_adaptive.try_acquire().unwrap());
    #[cfg(feature = "redis")]
    {
        let late_redis = fleet::limiter(&rt, "late-redis", port);
        fleet::check(&rt, &early_redis);
        fleet::check(&rt, &late_redis);
    }

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

    for name in ["early-adaptive", "late-adaptive"] {
        assert_eq!(
            acquired(name),
            Some(if name == "early-adaptive" { 2 } else { 1 })
        );
        let samples = count(
            &m,
            "adaptive_limit.samples",
            &[
                ("semaphore.name", name),
                ("adaptive_limit.algorithm", "gradient2"),
                ("outcome", "success"),
            ],
        );
        assert_eq!(samples, Some(if name == "early-adaptive" { 2 } else { 1 }));
        assert!(
            gauge_exported(
                &m,
                "adaptive_limit.latency",
                &[
                    ("semaphore.name", name),
                    ("adaptive_limit.estimate", "sample")
                ]
            ),
            "{name}: adaptive_limit.latency"
        );
    }
    #[cfg(feature = "redis")]
    for name in ["early-redis", "late-redis"] {
        let redis = |metric, outcome: (&'static str, &'static str)| {
            count(
                &m,
                metric,
                &[
                    ("rate_limiter.name", name),
                    ("rate_limiter.backend", "redis"),
                    outcome,
                ],
            )
        };
        assert_eq!(
            redis("rate_limiter.decisions", ("outcome", "failed_open")),
            Some(1),
            "{name}"
        );
        assert_eq!(
            redis("rate_limiter.backend.errors", ("error.type", "error")),
            Some(1),
            "{name}"
        );
    }

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
