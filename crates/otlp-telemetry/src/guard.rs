//! [`TelemetryGuard`]: keeps telemetry on; flushes and shuts it down, within a deadline, when dropped.
//!
//! ```no_run
//! use std::time::Duration;
//! use otlp_telemetry::TelemetryConfig;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut telemetry = otlp_telemetry::init(
//!     TelemetryConfig::from_env()?.shutdown_timeout(Duration::from_secs(3)),
//! )?;
//!
//! // Dynamic sampling, e.g. from an admin endpoint: keep 5 % of new traces.
//! telemetry.set_trace_ratio(0.05)?;
//!
//! // At the end: flush everything recorded so far, or say what could not be delivered.
//! if let Err(e) = telemetry.shutdown() {
//!     eprintln!("{e}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Shutdown, deadlines and what was lost
//! `shutdown` (and `Drop`) block the calling thread for at most the shutdown timeout: each provider shuts
//! down on a thread of its own and the guard stops waiting at the deadline, because the SDK's
//! `SdkMeterProvider::shutdown_with_timeout` does not enforce its timeout. Shortly before the deadline
//! (a tenth of it, at most 500 ms) the guard abandons exports still running (a collector that accepts
//! connections and never answers) and refuses new ones, so the providers finish their shutdown without
//! waiting for the network, and the report is final: [`ShutdownError`] names each signal with the exact
//! number of spans and data points recorded since `init` that were not delivered (dropped from the full
//! queue, refused, unreachable, or still pending at the deadline). Abandoning an export cancels its
//! request, over either transport. The export timeout by default is never longer than the shutdown
//! deadline ([`TelemetryConfig::export_timeout`](crate::TelemetryConfig::export_timeout)). On a multi-thread tokio runtime
//! the wait goes through `block_in_place`, so other tasks keep running. On a `current_thread` runtime the
//! wait blocks that thread, but nothing it waits for runs there: export happens on the SDK's threads and,
//! for gRPC, on the guard's own background runtime, so everything recorded is still delivered.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::TraceBudgetHandle;
use crate::accounting::{Ledger, SpanCounts};
use crate::error::{ConfigError, ShutdownError, ShutdownFailure, SignalReport};
use crate::runtime::{ExporterRuntime, blocking};
use crate::sampler::TraceRatioHandle;

/// Returned by [`init`](crate::init()); telemetry stays on while it lives.
///
/// Dropping it is the same as calling [`TelemetryGuard::shutdown`], with errors logged through `tracing`.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down at once: keep it alive until the end of main"]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    ratio: Option<TraceRatioHandle>,
    budget: Option<TraceBudgetHandle>,
    runtime: Option<ExporterRuntime>,
    span_counts: Option<Arc<SpanCounts>>,
    trace_ledger: Option<Arc<Ledger>>,
    metric_ledger: Option<Arc<Ledger>>,
    #[cfg(feature = "prometheus")]
    prometheus: Option<crate::prometheus::PrometheusServer>,
    dropped_spans: Option<u64>,
    owns_init: bool,
    shutdown_timeout: Duration,
    shut_down: bool,
}

type Task = (&'static str, Box<dyn FnOnce() -> OTelSdkResult + Send>);

/// How each signal's provider ended: `None` when it finished cleanly.
type Outcomes = Vec<(&'static str, Option<ShutdownFailure>)>;

/// What [`init`](crate::init()) hands to the guard.
#[derive(Debug, Default)]
pub(crate) struct GuardParts {
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    pub(crate) meter_provider: Option<SdkMeterProvider>,
    pub(crate) ratio: Option<TraceRatioHandle>,
    pub(crate) budget: Option<TraceBudgetHandle>,
    pub(crate) runtime: Option<ExporterRuntime>,
    pub(crate) span_counts: Option<Arc<SpanCounts>>,
    pub(crate) trace_ledger: Option<Arc<Ledger>>,
    pub(crate) metric_ledger: Option<Arc<Ledger>>,
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<crate::prometheus::PrometheusServer>,
    /// Made by `init`, whose "telemetry is on" flag this guard clears when it has shut down.
    pub(crate) owns_init: bool,
}

impl TelemetryGuard {
    pub(crate) fn new(parts: GuardParts, shutdown_timeout: Duration) -> Self {
        TelemetryGuard {
            tracer_provider: parts.tracer_provider,
            meter_provider: parts.meter_provider,
            ratio: parts.ratio,
            budget: parts.budget,
            runtime: parts.runtime,
            span_counts: parts.span_counts,
            trace_ledger: parts.trace_ledger,
            metric_ledger: parts.metric_ledger,
            #[cfg(feature = "prometheus")]
            prometheus: parts.prometheus,
            dropped_spans: None,
            owns_init: parts.owns_init,
            shutdown_timeout,
            shut_down: false,
        }
    }

    /// Changes the ratio of new root traces that are recorded (0.0..=1.0) while the service runs. With a
    /// parent-based sampler (the default), spans with a parent keep following their parent's decision.
    ///
    /// Without an SDK (`OTEL_SDK_DISABLED=true`) the ratio is validated and ignored.
    pub fn set_trace_ratio(&self, ratio: f64) -> Result<(), ConfigError> {
        match &self.ratio {
            Some(handle) => handle.set_ratio(ratio),
            None => crate::RatioSampler::new(0.0).handle().set_ratio(ratio),
        }
    }

    /// Sets the span budget: at most `per_second` new traces recorded a second (`None`: no budget, the default
    /// except for `parentbased_rate_limited`; `Some(0)`: no new trace), on top of the ratio. Children follow their
    /// root, so a trace is never cut in half. Takes effect for the next root; a new budget starts full. Without an
    /// SDK (`OTEL_SDK_DISABLED=true`) the budget is validated and ignored.
    ///
    /// # Errors
    /// [`ConfigError::InvalidValue`] if `per_second` is above `u32::MAX`; the budget is unchanged.
    pub fn set_trace_budget(&self, per_second: Option<u64>) -> Result<(), ConfigError> {
        match &self.budget {
            Some(handle) => handle.set_per_second(per_second),
            None => crate::BudgetSampler::new(per_second).map(drop),
        }
    }

    /// A cloneable handle that changes the span budget, for code that does not own the guard; `None` when the
    /// SDK is disabled.
    pub fn trace_budget_handle(&self) -> Option<TraceBudgetHandle> {
        self.budget.clone()
    }

    /// The current ratio of new root traces recorded, or `None` when the SDK is disabled.
    pub fn trace_ratio(&self) -> Option<f64> {
        self.ratio.as_ref().map(TraceRatioHandle::ratio)
    }

    /// A cloneable handle that changes the sampling ratio, for code that does not own the guard (an admin
    /// endpoint, a config watcher). `None` when the SDK is disabled.
    pub fn trace_ratio_handle(&self) -> Option<TraceRatioHandle> {
        self.ratio.clone()
    }

    /// The tracer provider, e.g. to create OpenTelemetry tracers directly. `None` when disabled.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.tracer_provider.as_ref()
    }

    /// The meter provider. `None` when disabled or when metrics are not exported.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter_provider.as_ref()
    }

    /// Where the Prometheus scrape endpoint listens (`http://<addr>/metrics`), with the port it bound when 0 was
    /// asked. `None` when it is not on (`OTEL_METRICS_EXPORTER` without `prometheus`, the SDK disabled, or the
    /// `prometheus` feature off) or after shutdown.
    pub fn prometheus_addr(&self) -> Option<std::net::SocketAddr> {
        #[cfg(feature = "prometheus")]
        if !self.shut_down {
            return self.prometheus.as_ref().map(|p| p.addr());
        }
        None
    }

    /// Exports everything recorded so far without shutting down (for example before a serverless
    /// function freezes), waiting at most the shutdown timeout.
    pub fn flush(&self) -> Result<(), ShutdownError> {
        let mut tasks: Vec<Task> = Vec::new();
        if let Some(tp) = self.tracer_provider.clone() {
            tasks.push(("traces", Box::new(move || tp.force_flush())));
        }
        if let Some(mp) = self.meter_provider.clone() {
            tasks.push(("metrics", Box::new(move || mp.force_flush())));
        }
        let outcomes = run_with_deadline(tasks, self.shutdown_timeout, || {});
        let signals: Vec<SignalReport> = outcomes
            .into_iter()
            .filter_map(|(signal, failure)| {
                failure.map(|f| SignalReport {
                    signal,
                    not_delivered: None,
                    failure: Some(f),
                    last_export_error: None,
                })
            })
            .collect();
        if signals.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { signals })
        }
    }

    /// Flushes and shuts down both providers, waiting at most the shutdown timeout, and reports what could
    /// not be delivered: each signal with the exact number of spans or data points recorded since `init`
    /// whose export had not succeeded by then. Spans and data points recorded before the call are exported
    /// if the collector is reachable. Calling it again does nothing and returns `Ok(())`.
    pub fn shutdown(&mut self) -> Result<(), ShutdownError> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let timeout = self.shutdown_timeout;
        let mut tasks: Vec<Task> = Vec::new();
        if let Some(tp) = self.tracer_provider.clone() {
            tasks.push((
                "traces",
                Box::new(move || tp.shutdown_with_timeout(timeout)),
            ));
        }
        if let Some(mp) = self.meter_provider.clone() {
            tasks.push((
                "metrics",
                Box::new(move || mp.shutdown_with_timeout(timeout)),
            ));
        }
        let ledgers: Vec<Arc<Ledger>> = [&self.trace_ledger, &self.metric_ledger]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let outcomes = run_with_deadline(tasks, timeout, move || {
            for ledger in &ledgers {
                ledger.seal();
            }
        });
        if let Some(rt) = &mut self.runtime {
            rt.stop();
        }
        #[cfg(feature = "prometheus")]
        if let Some(server) = &mut self.prometheus {
            server.stop();
        }
        let failure_of = |signal: &str| {
            outcomes
                .iter()
                .find(|(s, _)| *s == signal)
                .and_then(|(_, f)| f.clone())
        };
        let mut signals = Vec::new();
        // Sealing again is a no-op that returns the final counts.
        match (&self.trace_ledger, &self.span_counts) {
            (Some(ledger), Some(counts)) => {
                let settled = ledger.seal();
                signals.push(SignalReport {
                    signal: "traces",
                    not_delivered: Some(counts.ended().saturating_sub(settled.delivered)),
                    failure: failure_of("traces"),
                    last_export_error: settled.last_error,
                });
            }
            _ => signals.extend(failure_of("traces").map(|f| SignalReport {
                signal: "traces",
                not_delivered: None,
                failure: Some(f),
                last_export_error: None,
            })),
        }
        if let Some(ledger) = &self.metric_ledger {
            let settled = ledger.seal();
            signals.push(SignalReport {
                signal: "metrics",
                not_delivered: Some(settled.handed.saturating_sub(settled.delivered)),
                failure: failure_of("metrics"),
                last_export_error: settled.last_error,
            });
        }
        let traces_timed_out = matches!(failure_of("traces"), Some(ShutdownFailure::TimedOut(_)));
        if let (Some(counts), false) = (&self.span_counts, traces_timed_out) {
            let dropped = counts.dropped();
            self.dropped_spans = Some(dropped);
            if dropped > 0 {
                tracing::warn!(
                    target: crate::report::REPORT_TARGET,
                    dropped_spans = dropped,
                    "spans were dropped because the export queue was full: raise OTEL_BSP_MAX_QUEUE_SIZE, \
                     lower the sampling ratio, or check that the collector keeps up"
                );
            }
        }
        if self.owns_init {
            crate::init::release();
        }
        // A provider that failed without losing anything (e.g. an exporter's own shutdown) still counts.
        signals.retain(|r| r.failure.is_some() || r.not_delivered.is_some_and(|n| n > 0));
        if signals.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { signals })
        }
    }

    /// After a [`shutdown`](Self::shutdown) (or drop) whose trace side finished in time: how many
    /// finished spans never reached the exporter because the bounded export queue was full. `None` before
    /// shutdown, when traces are not exported, or when the trace shutdown hit the deadline (then the
    /// count is not known exactly).
    pub fn dropped_spans(&self) -> Option<u64> {
        self.dropped_spans
    }

    /// Spans dropped because the export queue was full, as counted live (the value exported as
    /// `otel.sdk.processor.span.processed` with `error.type` = `queue_full`). After shutdown it equals
    /// [`dropped_spans`](Self::dropped_spans) when every drop was seen as it happened. `None` when traces are
    /// not exported.
    pub fn spans_dropped_live(&self) -> Option<u64> {
        self.span_counts.as_ref().map(|c| c.queue_full())
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(target: crate::report::REPORT_TARGET, error = %e, "telemetry shutdown");
        }
    }
}

/// How long before the deadline the guard stops waiting for the network: long enough for the providers
/// to finish once exports fail at once, short enough not to cut a healthy shutdown.
fn grace(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_millis(500))
}

/// Runs each task on its own thread and waits until all are done or the deadline passes; `at_cutoff` runs
/// once, [`grace`] before the deadline, if some task is still running then.
fn run_with_deadline(
    tasks: Vec<Task>,
    timeout: Duration,
    at_cutoff: impl FnOnce() + Send,
) -> Outcomes {
    blocking(move || {
        let mut outcomes: Outcomes = Vec::new();
        let (tx, rx) = mpsc::channel();
        let mut pending = Vec::new();
        for (signal, task) in tasks {
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("otlp-telemetry-{signal}-shutdown"))
                .spawn(move || {
                    let result = task();
                    let _ = tx.send((signal, result));
                });
            match spawned {
                Ok(_) => pending.push(signal),
                Err(e) => outcomes.push((
                    signal,
                    Some(ShutdownFailure::Failed(format!(
                        "could not start a thread: {e}"
                    ))),
                )),
            }
        }
        drop(tx);
        let start = Instant::now();
        let deadline = start + timeout;
        let mut cutoff = Some((deadline - grace(timeout), at_cutoff));
        while !pending.is_empty() {
            let now = Instant::now();
            let until = cutoff.as_ref().map_or(deadline, |(c, _)| *c);
            match rx.recv_timeout(until.saturating_duration_since(now)) {
                Ok((signal, result)) => {
                    pending.retain(|s| *s != signal);
                    outcomes.push((
                        signal,
                        result.err().map(|e| ShutdownFailure::Failed(e.to_string())),
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => match cutoff.take() {
                    Some((_, f)) => f(),
                    None => break,
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        outcomes.extend(
            pending
                .into_iter()
                .map(|s| (s, Some(ShutdownFailure::TimedOut(timeout)))),
        );
        outcomes
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;

    #[test]
    fn deadline_is_enforced_failures_are_named_and_the_cutoff_runs_before_the_deadline() {
        let tasks: Vec<Task> = vec![
            ("traces", Box::new(|| Ok(()))),
            (
                "metrics",
                Box::new(|| Err(OTelSdkError::InternalFailure("refused".into()))),
            ),
        ];
        let mut outcomes = run_with_deadline(tasks, Duration::from_secs(60), || {
            panic!("no cutoff when every task finishes")
        });
        outcomes.sort_by_key(|(s, _)| *s);
        assert_eq!(
            outcomes,
            vec![
                (
                    "metrics",
                    Some(ShutdownFailure::Failed("Operation failed: refused".into()))
                ),
                ("traces", None),
            ]
        );

        // A task that ends only when the cutoff releases it finishes in time.
        let (release, wait) = mpsc::channel::<()>();
        let tasks: Vec<Task> = vec![(
            "metrics",
            Box::new(move || {
                let _ = wait.recv();
                Ok(())
            }),
        )];
        let outcomes = run_with_deadline(tasks, Duration::from_millis(200), move || {
            let _ = release.send(());
        });
        assert_eq!(outcomes, vec![("metrics", None)]);

        let (_keep, hang) = mpsc::channel::<()>();
        let tasks: Vec<Task> = vec![(
            "traces",
            Box::new(move || {
                // Blocks until the test ends and drops `_keep`.
                let _ = hang.recv();
                Ok(())
            }),
        )];
        let outcomes = run_with_deadline(tasks, Duration::from_millis(50), || {});
        assert_eq!(
            outcomes,
            vec![(
                "traces",
                Some(ShutdownFailure::TimedOut(Duration::from_millis(50)))
            )]
        );
    }

    #[test]
    fn guard_is_send_sync_and_disabled_guard_is_a_no_op() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TelemetryGuard>();
        assert_send_sync::<TraceRatioHandle>();
        let mut g = TelemetryGuard::new(GuardParts::default(), Duration::from_secs(1));
        assert!(g.set_trace_ratio(0.5).is_ok());
        assert!(g.set_trace_ratio(5.0).is_err());
        assert_eq!(g.trace_ratio(), None);
        assert!(g.flush().is_ok());
        assert!(g.shutdown().is_ok());
        assert!(g.shutdown().is_ok());
        assert_eq!(g.dropped_spans(), None);
    }
}
