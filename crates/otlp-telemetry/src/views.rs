//! Histogram views for latencies: otlp-kit's instruments named `*.duration` with unit `s`.
//!
//! The OpenTelemetry SDK's default histogram buckets (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500,
//! 5000, 7500, 10000) suit milliseconds. The instruments of this workspace record seconds
//! (`semaphore.wait.duration`, `rate_limiter.wait.duration`, `worker_pool.task.duration`,
//! `worker_pool.task.wait.duration`, `fan_out.task.duration`, `pipeline.stage.duration`), so with the
//! defaults every wait from 1 µs to 5 s would fall in one bucket. [`init`](crate::init()) installs
//! [`duration_view`] with [`LATENCY_BUCKETS_SECONDS`] (1 µs to 10 s, 1-2.5-5 per decade), or base-2
//! exponential histograms with
//! [`DurationHistogram::exponential`](crate::DurationHistogram::exponential).
//!
//! The view matches the histograms whose name ends in `.duration` and whose unit is `s` in otlp-kit's
//! instrumentation scopes: `otlp-pool`, `otlp-sync`, `otlp-patterns`, and any other scope named `otlp-*`.
//! Other libraries' histograms keep their own buckets (semantic-convention instruments such as
//! `http.server.request.duration` come with advice of their own), unless their scope is added with
//! [`TelemetryConfig::duration_view_scope`](crate::TelemetryConfig::duration_view_scope). The
//! boundaries are the user's to choose: [`TelemetryConfig::duration_buckets`](crate::TelemetryConfig::duration_buckets)
//! or [`TelemetryConfig::duration_histogram`](crate::TelemetryConfig::duration_histogram).
//!
//! ```
//! use opentelemetry_sdk::metrics::SdkMeterProvider;
//! use otlp_telemetry::{DurationHistogram, views};
//!
//! // init() does this for you; here is how to reuse it with a hand-built provider.
//! let provider = SdkMeterProvider::builder()
//!     .with_view(views::duration_view(&DurationHistogram::default()))
//!     .build();
//! # drop(provider);
//! ```
//!
//! Exemplars: the SDK (0.33) writes an empty exemplar list for every data point (upstream issue
//! open-telemetry/opentelemetry-rust#3369), so none are exported; trace ↔ metric correlation has to go
//! through attributes or time ranges until that lands.

use opentelemetry_sdk::metrics::{Aggregation, Instrument, InstrumentKind, Stream};

use crate::config::DurationHistogram;

/// Bucket upper bounds in seconds for latencies from 1 µs to 10 s: 1, 2.5, 5 per decade.
pub const LATENCY_BUCKETS_SECONDS: [f64; 22] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
];

/// Whether the duration view applies to an instrument with this name, unit and kind (whatever its scope).
pub fn is_duration_instrument(name: &str, unit: &str, kind: InstrumentKind) -> bool {
    kind == InstrumentKind::Histogram && name.ends_with(".duration") && unit == "s"
}

/// Whether an instrumentation scope is otlp-kit's: `otlp-pool`, `otlp-sync`, `otlp-patterns`, any `otlp-*`.
pub fn is_otlp_kit_scope(scope: &str) -> bool {
    scope.starts_with("otlp-")
}

/// A view for `SdkMeterProvider::builder().with_view(..)` that gives otlp-kit's `*.duration` histograms
/// with unit `s` the chosen aggregation; other instruments are left alone.
pub fn duration_view(
    histogram: &DurationHistogram,
) -> impl Fn(&Instrument) -> Option<Stream> + Send + Sync + 'static {
    duration_view_with_scopes(histogram, std::iter::empty::<String>())
}

/// Like [`duration_view`], and also for the `*.duration` histograms of the given instrumentation scopes
/// (exact names, e.g. your service's own meter).
pub fn duration_view_with_scopes(
    histogram: &DurationHistogram,
    scopes: impl IntoIterator<Item = impl Into<String>>,
) -> impl Fn(&Instrument) -> Option<Stream> + Send + Sync + 'static {
    let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
    let aggregation = match histogram {
        DurationHistogram::ExplicitBuckets(bounds) => Aggregation::ExplicitBucketHistogram {
            boundaries: bounds.clone(),
            record_min_max: true,
        },
        DurationHistogram::Exponential {
            max_size,
            max_scale,
        } => Aggregation::Base2ExponentialHistogram {
            max_size: *max_size,
            max_scale: *max_scale,
            record_min_max: true,
        },
    };
    move |instrument: &Instrument| {
        if !is_duration_instrument(instrument.name(), instrument.unit(), instrument.kind()) {
            return None;
        }
        let scope = instrument.scope().name();
        if !is_otlp_kit_scope(scope) && !scopes.iter().any(|s| s == scope) {
            return None;
        }
        // An invalid aggregation (rejected by TelemetryConfig::validate) falls back to the SDK default.
        Stream::builder()
            .with_aggregation(aggregation.clone())
            .build()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    fn bounds_of(exporter: &InMemoryMetricExporter, name: &str) -> Option<Vec<f64>> {
        let metrics = exporter.get_finished_metrics().ok()?;
        for rm in &metrics {
            for sm in rm.scope_metrics() {
                for m in sm.metrics() {
                    if m.name() != name {
                        continue;
                    }
                    if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                        let dp = h.data_points().next()?;
                        return Some(dp.bounds().collect());
                    }
                }
            }
        }
        None
    }

    #[test]
    fn buckets_cover_1us_to_10s_increasing() {
        assert_eq!(LATENCY_BUCKETS_SECONDS[0], 1e-6);
        assert_eq!(LATENCY_BUCKETS_SECONDS[21], 10.0);
        assert!(LATENCY_BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn applies_to_second_durations_only() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .with_view(duration_view(&DurationHistogram::default()))
            .build();
        let meter = provider.meter("otlp-sync");
        let wait = meter
            .f64_histogram("semaphore.wait.duration")
            .with_unit("s")
            .build();
        let ms = meter
            .f64_histogram("legacy.duration")
            .with_unit("ms")
            .build();
        let other = meter.f64_histogram("payload.size").with_unit("s").build();
        wait.record(0.000_003, &[]);
        ms.record(3.0, &[]);
        other.record(3.0, &[]);
        provider.force_flush().unwrap();
        assert_eq!(
            bounds_of(&exporter, "semaphore.wait.duration").unwrap(),
            LATENCY_BUCKETS_SECONDS.to_vec()
        );
        let default_bounds = bounds_of(&exporter, "legacy.duration").unwrap();
        assert_eq!(default_bounds.first(), Some(&0.0));
        assert_eq!(
            bounds_of(&exporter, "payload.size").unwrap(),
            default_bounds
        );
        provider.shutdown().unwrap();
    }

    #[test]
    fn only_otlp_kit_scopes_are_rebucketed() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .with_view(duration_view(&DurationHistogram::default()))
            .build();
        let ours = [
            ("otlp-pool", "pool.wait.duration"),
            ("otlp-sync", "semaphore.wait.duration"),
            ("otlp-patterns", "worker_pool.task.duration"),
            ("otlp-anything", "future.thing.duration"),
        ];
        for (scope, name) in ours {
            let h = provider
                .meter(scope)
                .f64_histogram(name)
                .with_unit("s")
                .build();
            h.record(0.000_003, &[]);
        }
        // Semantic-convention histograms of other libraries keep the buckets their authors chose.
        let semconv = provider
            .meter("tower-http")
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .build();
        semconv.record(0.2, &[]);
        let lookalike = provider
            .meter("otlpish")
            .f64_histogram("other.duration")
            .with_unit("s")
            .build();
        lookalike.record(0.2, &[]);
        provider.force_flush().unwrap();
        for (_, name) in ours {
            assert_eq!(
                bounds_of(&exporter, name).unwrap(),
                LATENCY_BUCKETS_SECONDS.to_vec(),
                "{name}"
            );
        }
        for name in ["http.server.request.duration", "other.duration"] {
            assert_eq!(
                bounds_of(&exporter, name).unwrap().first(),
                Some(&0.0),
                "{name} keeps the SDK default buckets"
            );
        }
        provider.shutdown().unwrap();
    }

    #[test]
    fn user_buckets_and_user_scopes() {
        let exporter = InMemoryMetricExporter::default();
        let buckets = vec![0.001, 0.01, 0.1];
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .with_view(duration_view_with_scopes(
                &DurationHistogram::ExplicitBuckets(buckets.clone()),
                ["checkout"],
            ))
            .build();
        for (scope, name) in [
            ("otlp-sync", "semaphore.wait.duration"),
            ("checkout", "checkout.step.duration"),
            ("checkout-db", "db.query.duration"),
        ] {
            let h = provider
                .meter(scope)
                .f64_histogram(name)
                .with_unit("s")
                .build();
            h.record(0.005, &[]);
        }
        provider.force_flush().unwrap();
        assert_eq!(
            bounds_of(&exporter, "semaphore.wait.duration").unwrap(),
            buckets
        );
        assert_eq!(
            bounds_of(&exporter, "checkout.step.duration").unwrap(),
            buckets
        );
        // Scopes are matched exactly.
        assert_eq!(
            bounds_of(&exporter, "db.query.duration").unwrap().first(),
            Some(&0.0)
        );
        provider.shutdown().unwrap();
    }

    #[test]
    fn exponential_is_selectable() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .with_view(duration_view(&DurationHistogram::exponential()))
            .build();
        let h = provider
            .meter("otlp-patterns")
            .f64_histogram("fan_out.task.duration")
            .with_unit("s")
            .build();
        h.record(0.01, &[]);
        provider.force_flush().unwrap();
        let metrics = exporter.get_finished_metrics().unwrap();
        let m = metrics
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .find(|m| m.name() == "fan_out.task.duration")
            .unwrap();
        assert!(matches!(
            m.data(),
            AggregatedMetrics::F64(MetricData::ExponentialHistogram(_))
        ));
        provider.shutdown().unwrap();
    }
}
