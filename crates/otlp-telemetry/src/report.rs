//! Export failures reported through `tracing`, at most once per interval per signal (no log storms).
//!
//! The exporters are wrapped so that a failed export is logged as a `warn` event with target
//! `otlp_telemetry::export`, naming the signal, the endpoint, the error, and how many further failures
//! were suppressed since the previous report. A success after failures is logged once at `info`.
#![cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::accounting::{Ledger, SpanCounts};
use crate::runtime::in_runtime;
use tokio::runtime::Handle;

/// The `tracing` target of export reports.
pub(crate) const REPORT_TARGET: &str = "otlp_telemetry::export";

#[derive(Debug, Default)]
struct State {
    last_report: Option<Instant>,
    suppressed: u64,
    failing: bool,
}

/// Rate-limits export failure reports for one signal.
#[derive(Debug)]
pub(crate) struct ErrorReporter {
    signal: &'static str,
    endpoint: String,
    interval: Duration,
    state: Mutex<State>,
}

impl ErrorReporter {
    pub(crate) fn new(signal: &'static str, endpoint: String, interval: Duration) -> Self {
        ErrorReporter {
            signal,
            endpoint,
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Records one export result; returns whether a report was emitted (for tests).
    pub(crate) fn record(&self, result: &OTelSdkResult) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if st.failing {
                    st.failing = false;
                    st.last_report = None;
                    let suppressed = std::mem::take(&mut st.suppressed);
                    drop(st);
                    tracing::info!(
                        target: REPORT_TARGET,
                        signal = self.signal,
                        endpoint = %self.endpoint,
                        suppressed_failures = suppressed,
                        "OTLP export recovered"
                    );
                    return true;
                }
                false
            }
            Err(error) => {
                st.failing = true;
                let due = st.last_report.is_none_or(|t| t.elapsed() >= self.interval);
                if !due {
                    st.suppressed += 1;
                    return false;
                }
                st.last_report = Some(Instant::now());
                let suppressed = std::mem::take(&mut st.suppressed);
                drop(st);
                tracing::warn!(
                    target: REPORT_TARGET,
                    signal = self.signal,
                    endpoint = %self.endpoint,
                    %error,
                    suppressed_failures = suppressed,
                    "OTLP export failed; data is dropped until the collector is reachable \
                     (reported at most once per {:?})",
                    self.interval
                );
                true
            }
        }
    }
}

/// A span exporter that reports failures through [`ErrorReporter`].
#[derive(Debug)]
pub(crate) struct ReportingSpanExporter<E> {
    inner: E,
    reporter: Arc<ErrorReporter>,
    counts: Arc<SpanCounts>,
    ledger: Arc<Ledger>,
    runtime: Option<Handle>,
}

impl<E> ReportingSpanExporter<E> {
    pub(crate) fn new(
        inner: E,
        reporter: ErrorReporter,
        counts: Arc<SpanCounts>,
        ledger: Arc<Ledger>,
        runtime: Option<Handle>,
    ) -> Self {
        ReportingSpanExporter {
            inner,
            reporter: Arc::new(reporter),
            counts,
            ledger,
            runtime,
        }
    }
}

impl<E: SpanExporter> SpanExporter for ReportingSpanExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.counts.add_exported(n);
        let export = in_runtime(self.runtime.clone(), self.inner.export(batch));
        let result = self.ledger.export(n as u64, export).await;
        self.counts.add_export_result(n, result.is_ok());
        self.reporter.record(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A metric exporter that reports failures through [`ErrorReporter`].
#[derive(Debug)]
pub(crate) struct ReportingMetricExporter<E> {
    inner: E,
    reporter: Arc<ErrorReporter>,
    ledger: Arc<Ledger>,
    runtime: Option<Handle>,
}

impl<E> ReportingMetricExporter<E> {
    pub(crate) fn new(
        inner: E,
        reporter: ErrorReporter,
        ledger: Arc<Ledger>,
        runtime: Option<Handle>,
    ) -> Self {
        ReportingMetricExporter {
            inner,
            reporter: Arc::new(reporter),
            ledger,
            runtime,
        }
    }
}

/// The number of data points in one export.
pub(crate) fn data_points(metrics: &ResourceMetrics) -> u64 {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    fn count<T>(data: &MetricData<T>) -> usize {
        match data {
            MetricData::Gauge(g) => g.data_points().count(),
            MetricData::Sum(s) => s.data_points().count(),
            MetricData::Histogram(h) => h.data_points().count(),
            MetricData::ExponentialHistogram(h) => h.data_points().count(),
        }
    }
    metrics
        .scope_metrics()
        .flat_map(|sm| sm.metrics())
        .map(|m| match m.data() {
            AggregatedMetrics::F64(d) => count(d),
            AggregatedMetrics::U64(d) => count(d),
            AggregatedMetrics::I64(d) => count(d),
        } as u64)
        .sum()
}

impl<E: PushMetricExporter> PushMetricExporter for ReportingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let n = data_points(metrics);
        let export = in_runtime(self.runtime.clone(), self.inner.export(metrics));
        let result = self.ledger.export(n, export).await;
        self.reporter.record(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;

    #[test]
    fn reports_first_failure_then_suppresses_until_the_interval_passes() {
        let r = ErrorReporter::new("traces", "http://x".into(), Duration::from_secs(3600));
        let err: OTelSdkResult = Err(OTelSdkError::InternalFailure("refused".into()));
        assert!(r.record(&err));
        for _ in 0..1000 {
            assert!(!r.record(&err));
        }
        assert_eq!(r.state.lock().unwrap().suppressed, 1000);
        // Recovery is reported once, and the next failure is reported at once.
        assert!(r.record(&Ok(())));
        assert!(!r.record(&Ok(())));
        assert!(r.record(&err));
    }

    #[test]
    fn reports_again_after_the_interval() {
        let r = ErrorReporter::new("metrics", "http://x".into(), Duration::ZERO);
        let err: OTelSdkResult = Err(OTelSdkError::InternalFailure("refused".into()));
        assert!(r.record(&err));
        assert!(r.record(&err));
    }
}
