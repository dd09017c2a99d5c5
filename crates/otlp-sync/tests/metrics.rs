//! The exported metrics, through the SDK's in-memory exporter: names, units, attributes and values.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_sync::telemetry::names;
use otlp_sync::{CancellationToken, RateLimiter, Semaphore, TokioClock};

fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporter::default();
    let reader = PeriodicReader::builder(exporter.clone()).build();
    (
        SdkMeterProvider::builder().with_reader(reader).build(),
        exporter,
    )
}

/// One exported data point, flattened.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    scope: String,
    unit: String,
    attrs: BTreeMap<String, String>,
    value: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Sum(u64),
    UpDown(i64),
    Histogram { count: u64, sum: f64 },
    Gauge(f64),
}

fn flatten(metrics: &[ResourceMetrics]) -> BTreeMap<String, Vec<Point>> {
    let mut out: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for rm in metrics {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                let base =
                    |attrs: &mut dyn Iterator<Item = &opentelemetry::KeyValue>, value| Point {
                        scope: sm.scope().name().to_owned(),
                        unit: m.unit().to_owned(),
                        attrs: attrs
                            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                            .collect(),
                        value,
                    };
                let points: Vec<Point> = match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => s
                        .data_points()
                        .map(|p| base(&mut p.attributes(), Value::Sum(p.value())))
                        .collect(),
                    AggregatedMetrics::I64(MetricData::Sum(s)) => {
                        assert!(!s.is_monotonic(), "{} is an up-down counter", m.name());
                        s.data_points()
                            .map(|p| base(&mut p.attributes(), Value::UpDown(p.value())))
                            .collect()
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => g
                        .data_points()
                        .map(|p| base(&mut p.attributes(), Value::Gauge(p.value())))
                        .collect(),
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => h
                        .data_points()
                        .map(|p| {
                            base(
                                &mut p.attributes(),
                                Value::Histogram {
                                    count: p.count(),
                                    sum: p.sum(),
                                },
                            )
                        })
                        .collect(),
                    other => panic!("unexpected aggregation for {}: {other:?}", m.name()),
                };
                // Later exports replace earlier ones (cumulative temporality).
                out.insert(m.name().to_owned(), points);
            }
        }
    }
    out
}

fn export(
    provider: &SdkMeterProvider,
    exporter: &InMemoryMetricExporter,
) -> BTreeMap<String, Vec<Point>> {
    exporter.reset();
    provider.force_flush().unwrap();
    flatten(&exporter.get_finished_metrics().unwrap())
}

/// The value of `metric` at the point whose attributes include all of `attrs`.
fn value(all: &BTreeMap<String, Vec<Point>>, metric: &str, attrs: &[(&str, &str)]) -> Value {
    let points = all
        .get(metric)
        .unwrap_or_else(|| panic!("{metric} not exported; got {:?}", all.keys()));
    let matching: Vec<&Point> = points
        .iter()
        .filter(|p| {
            attrs
                .iter()
                .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(matching.len(), 1, "{metric} {attrs:?}: {points:?}");
    matching[0].value.clone()
}

#[tokio::test(start_paused = true)]
async fn semaphore_metrics() {
    let (provider, exporter) = provider();
    let s = Semaphore::builder("db")
        .permits(2)
        .meter(provider.meter("otlp-sync"))
        .build()
        .unwrap();
    let held = s.acquire_many(2).await.unwrap();
    let _ = s.try_acquire(); // rejected
    let _ = s.acquire_timeout(Duration::from_secs(3)).await; // waits 3 s, times out
    let token = CancellationToken::new();
    let waiter = {
        let (s, token) = (s.clone(), token.clone());
        tokio::spawn(async move { s.acquire_cancellable(&token).await.map(|_| ()) })
    };
    while s.stats().waiting == 0 {
        tokio::task::yield_now().await;
    }
    let during = export(&provider, &exporter);
    assert_eq!(
        value(
            &during,
            names::SEMAPHORE_ACQUIRE_WAITING,
            &[("semaphore.name", "db")]
        ),
        Value::UpDown(1)
    );
    assert_eq!(
        value(
            &during,
            names::SEMAPHORE_PERMIT_USAGE,
            &[("semaphore.name", "db")]
        ),
        Value::UpDown(2)
    );
    assert_eq!(
        value(
            &during,
            names::SEMAPHORE_PERMIT_LIMIT,
            &[("semaphore.name", "db")]
        ),
        Value::UpDown(2)
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    token.cancel();
    assert!(waiter.await.unwrap().is_err());
    drop(held);
    s.close();
    let _ = s.acquire().await; // closed

    let m = export(&provider, &exporter);
    let acquires = |outcome| {
        value(
            &m,
            names::SEMAPHORE_ACQUIRES,
            &[("semaphore.name", "db"), ("outcome", outcome)],
        )
    };
    assert_eq!(acquires("acquired"), Value::Sum(1));
    assert_eq!(acquires("rejected"), Value::Sum(1));
    assert_eq!(acquires("timeout"), Value::Sum(1));
    assert_eq!(acquires("cancelled"), Value::Sum(1));
    assert_eq!(acquires("closed"), Value::Sum(1));
    assert_eq!(
        value(&m, names::SEMAPHORE_ACQUIRE_WAITING, &[]),
        Value::UpDown(0)
    );
    assert_eq!(
        value(&m, names::SEMAPHORE_PERMIT_USAGE, &[]),
        Value::UpDown(0)
    );

    // Only the two acquires that waited are in the histogram, each with its outcome and exact paused-clock time.
    let wait = |outcome| {
        value(
            &m,
            names::SEMAPHORE_WAIT_DURATION,
            &[("semaphore.name", "db"), ("outcome", outcome)],
        )
    };
    assert_eq!(wait("timeout"), Value::Histogram { count: 1, sum: 3.0 });
    assert_eq!(wait("cancelled"), Value::Histogram { count: 1, sum: 1.0 });
    assert_eq!(
        m[names::SEMAPHORE_WAIT_DURATION].len(),
        2,
        "no histogram point for acquires that did not wait"
    );

    let p = &m[names::SEMAPHORE_ACQUIRES][0];
    assert_eq!(
        (p.scope.as_str(), p.unit.as_str()),
        ("otlp-sync", "{acquire}")
    );
    assert_eq!(m[names::SEMAPHORE_WAIT_DURATION][0].unit, "s");
    assert_eq!(m[names::SEMAPHORE_PERMIT_LIMIT][0].unit, "{permit}");
    assert_eq!(m[names::SEMAPHORE_ACQUIRE_WAITING][0].unit, "{acquire}");

    // Once the semaphore is gone its callbacks report nothing (no leak of its state through the provider).
    drop(s);
    let after = export(&provider, &exporter);
    assert!(
        after
            .get(names::SEMAPHORE_ACQUIRE_WAITING)
            .is_none_or(|points| points.is_empty()),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_metrics() {
    let (provider, exporter) = provider();
    let l = RateLimiter::builder("api")
        .per_second(1)
        .clock(TokioClock)
        .meter(provider.meter("otlp-sync"))
        .build()
        .unwrap();
    l.check().unwrap();
    assert!(l.check().is_err());
    l.until_ready().await; // sleeps 1 s
    assert!(
        l.until_ready_timeout(Duration::from_millis(1))
            .await
            .is_err()
    ); // fails fast, no sleep
    let token = CancellationToken::new();
    token.cancel();
    assert!(l.until_ready_cancellable(&token).await.is_err());

    let k = RateLimiter::builder("tenants")
        .per_second(1)
        .clock(TokioClock)
        .meter(provider.meter("otlp-sync"))
        .build_keyed::<u32>()
        .unwrap();
    for key in 0..3 {
        k.check_key(&key).unwrap();
    }

    let m = export(&provider, &exporter);
    let decisions = |name, outcome| {
        value(
            &m,
            names::RATE_LIMITER_DECISIONS,
            &[("rate_limiter.name", name), ("outcome", outcome)],
        )
    };
    assert_eq!(decisions("api", "allowed"), Value::Sum(2));
    assert_eq!(decisions("api", "throttled"), Value::Sum(1));
    assert_eq!(decisions("api", "timeout"), Value::Sum(1));
    assert_eq!(decisions("api", "cancelled"), Value::Sum(1));
    assert_eq!(decisions("tenants", "allowed"), Value::Sum(3));
    assert_eq!(
        value(
            &m,
            names::RATE_LIMITER_KEY_COUNT,
            &[("rate_limiter.name", "tenants")]
        ),
        Value::UpDown(3)
    );
    assert_eq!(
        value(
            &m,
            names::RATE_LIMITER_WAIT_DURATION,
            &[("rate_limiter.name", "api"), ("outcome", "allowed")]
        ),
        Value::Histogram { count: 1, sum: 1.0 }
    );
    assert_eq!(
        m[names::RATE_LIMITER_WAIT_DURATION].len(),
        1,
        "only the wait that slept is recorded"
    );
    assert_eq!(m[names::RATE_LIMITER_DECISIONS][0].unit, "{decision}");
    assert_eq!(m[names::RATE_LIMITER_KEY_COUNT][0].unit, "{key}");
}

#[tokio::test]
async fn default_instruments_come_from_the_global_provider_with_the_crate_scope() {
    let (provider, exporter) = provider();
    opentelemetry::global::set_meter_provider(provider.clone());
    let s = Semaphore::new("global", 1).unwrap();
    drop(s.acquire().await.unwrap());
    exporter.reset();
    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    let scope = metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .find(|sm| sm.metrics().any(|m| m.name() == names::SEMAPHORE_ACQUIRES))
        .map(|sm| sm.scope().clone())
        .expect("semaphore metrics exported through the global provider");
    assert_eq!(scope.name(), "otlp-sync");
    assert_eq!(scope.version(), Some(env!("CARGO_PKG_VERSION")));
}

/// The `semaphore.hold.duration` points of `all`, by `semaphore.name`.
fn holds(all: &BTreeMap<String, Vec<Point>>) -> BTreeMap<String, Value> {
    all.get(names::SEMAPHORE_HOLD_DURATION)
        .into_iter()
        .flatten()
        .map(|p| {
            assert_eq!(p.unit, "s");
            assert_eq!(
                p.attrs.keys().collect::<Vec<_>>(),
                ["semaphore.name"],
                "{p:?}"
            );
            (p.attrs["semaphore.name"].clone(), p.value.clone())
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn hold_duration_is_recorded_once_per_release_when_turned_on() {
    let (provider, exporter) = provider();
    let meter = provider.meter("otlp-sync");
    let on = Semaphore::builder("held")
        .permits(2)
        .record_hold_duration(true)
        .meter(meter.clone())
        .build()
        .unwrap();
    let off = Semaphore::builder("not-held")
        .permits(2)
        .meter(meter.clone())
        .build()
        .unwrap();
    let adaptive = otlp_sync::adaptive::AdaptiveLimit::builder("adaptive")
        .initial_limit(2)
        .record_hold_duration(true)
        .meter(meter)
        .build()
        .unwrap();

    let borrowed = on.acquire().await.unwrap();
    let owned = on.try_acquire_owned().unwrap();
    let off_borrowed = off.acquire().await.unwrap();
    let off_owned = off.try_acquire_owned().unwrap();
    let a = adaptive.acquire().await.unwrap();
    let b = adaptive.try_acquire_owned().unwrap();
    tokio::time::advance(Duration::from_millis(250)).await;
    drop(borrowed);
    drop(off_borrowed);
    a.dropped();
    tokio::time::advance(Duration::from_millis(750)).await;
    drop(owned);
    drop(off_owned);
    drop(b);
    let m = export(&provider, &exporter);
    assert_eq!(
        holds(&m),
        BTreeMap::from([
            (
                "held".into(),
                Value::Histogram {
                    count: 2,
                    sum: 1.25
                }
            ),
            (
                "adaptive".into(),
                Value::Histogram {
                    count: 2,
                    sum: 1.25
                }
            ),
        ]),
        "one value per release, none for the semaphore that did not turn it on"
    );

    // A permit that had to wait is held from when it was granted, not from when it was asked for.
    let both = on.acquire_many(2).await.unwrap();
    let waiter = {
        let on = on.clone();
        tokio::spawn(async move {
            let p = on.acquire_owned().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(p);
        })
    };
    while on.stats().waiting == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::advance(Duration::from_millis(500)).await;
    drop(both);
    waiter.await.unwrap();
    let m = export(&provider, &exporter);
    assert_eq!(
        holds(&m)["held"],
        Value::Histogram {
            count: 4,
            sum: 3.75
        }
    );
    // Exports do not record again.
    let again = export(&provider, &exporter);
    assert_eq!(holds(&again), holds(&m));
}

#[tokio::test(start_paused = true)]
async fn hold_duration_is_not_exported_when_off() {
    let (provider, exporter) = provider();
    let meter = provider.meter("otlp-sync");
    let s = Semaphore::builder("quiet")
        .permits(1)
        .meter(meter.clone())
        .build()
        .unwrap();
    let l = otlp_sync::adaptive::AdaptiveLimit::builder("quiet-adaptive")
        .meter(meter)
        .build()
        .unwrap();
    for _ in 0..3 {
        let p = s.acquire().await.unwrap();
        let o = s.clone();
        let a = l.acquire().await.unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        drop((p, a));
        drop(o.acquire_owned().await.unwrap());
    }
    let m = export(&provider, &exporter);
    assert!(m.contains_key(names::SEMAPHORE_ACQUIRES), "{:?}", m.keys());
    assert_eq!(holds(&m), BTreeMap::new());
}
