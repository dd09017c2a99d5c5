//! OpenTelemetry for a Rust service in three lines: OTLP traces and metrics, `tracing` integration,
//! dynamic sampling, latency histogram views and W3C context propagation.
//!
//! ```no_run
//! use otlp_telemetry::TelemetryConfig;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = TelemetryConfig::from_env()?.service_name("checkout");
//!     let _telemetry = otlp_telemetry::init(config)?;
//!     // ... the service: `tracing` spans become OTLP spans, and every OpenTelemetry instrument
//!     // (otlp-pool, otlp-sync, otlp-patterns, your own) is exported every 60 s.
//!     Ok(()) // the guard flushes and shuts down on drop, within a deadline
//! }
//! ```
//!
//! Point it at a collector with the standard variables, e.g.
//! `OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317` (gRPC, the default) or
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318`; each
//! signal may have its own endpoint, protocol, headers, timeout and compression
//! (`OTEL_EXPORTER_OTLP_TRACES_*`, `OTEL_EXPORTER_OTLP_METRICS_*`). Every variable read is in the table
//! of [`env`](mod@env).
//!
//! # What is where
//! - [`config`]: [`TelemetryConfig`], the builder, and its spec defaults; [`env`](mod@env): the `OTEL_*` variables.
//! - [`init()`]: installs everything; [`TelemetryGuard`]: shutdown, flush and run-time sampling control.
//! - [`meter_install`]: [`install_meter_provider`], for a meter provider of your own that otlp-kit's owners
//!   record on as cheaply as on `init`'s.
//! - [`sampler`]: [`RatioSampler`], the parent-based trace-id ratio sampler behind
//!   [`TelemetryGuard::set_trace_ratio`].
//! - [`budget`]: [`BudgetSampler`], the span budget (at most N new traces a second) behind
//!   [`TelemetryGuard::set_trace_budget`].
//! - [`stack`]: [`stack::TracingStack`], a provider and the subscriber `init` installs (the same code, head
//!   sampling at root creation included), around an exporter of yours and installed nowhere (tests, benchmarks).
//! - [`views`]: bucket boundaries from 1 µs to 10 s (or your own) for otlp-kit's `*.duration` histograms
//!   in seconds; other libraries' histograms keep theirs.
//! - [`propagation`]: [`inject_context`] / [`extract_context`] over `http::HeaderMap`;
//!   `tower` (feature `tower`): a server layer that continues the caller's trace.
//! - [`error`]: typed errors whose messages say what to fix.
//!
//! # Reliability
//! - A collector that is down never blocks or slows the application: spans go to a bounded queue
//!   (dropped when full, counted at once in `otel.sdk.processor.span.processed` with `error.type` = `queue_full`
//!   and warned about at most once per interval; in total: [`TelemetryGuard::dropped_spans`]), export runs on the SDK's own
//!   threads, failures are logged at most once per export interval (target `otlp_telemetry::export`), and
//!   shutdown returns within its timeout, saying how many spans and data points were not delivered.
//! - No blocking call on a tokio worker thread; works outside a runtime and from multi-thread and
//!   current-thread runtimes (gRPC connections and HTTP requests run on a small runtime of their own).
//!
//! # Features
//! - `grpc` (default): OTLP/gRPC via tonic. `http` (default): OTLP/HTTP protobuf via reqwest.
//!   Both with gzip compression (`OTEL_EXPORTER_OTLP_COMPRESSION=gzip`).
//! - `tower`: `tower::ServerTraceLayer`, a server layer that continues the caller's trace.
//!
//! TLS (`https://` endpoints) needs a TLS feature of `opentelemetry-otlp` (`tls-ring` for gRPC,
//! `reqwest-rustls` for HTTP) enabled in the application.

mod accounting;
pub mod budget;
pub mod config;
pub mod env;
pub mod error;
pub mod guard;
mod head_sampling;
mod http_client;
pub mod init;
pub mod meter_install;
pub mod otlp_encode;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod propagation;
mod report;
mod runtime;
pub mod sampler;
mod span_export;
pub mod stack;
mod telemetry;
#[cfg(feature = "tower")]
pub mod tower;
mod tracer_switch;
pub mod views;

pub use budget::{BudgetSampler, TraceBudgetHandle};
pub use config::{
    Compression, DEFAULT_SPAN_BATCH_SIZE, DEFAULT_SPAN_QUEUE_SIZE, DurationHistogram, Propagator,
    Protocol, Signal, TelemetryConfig, TraceSampler,
};
pub use error::{ConfigError, ShutdownError, ShutdownFailure, SignalReport, TelemetryError};
pub use guard::TelemetryGuard;
pub use init::init;
pub use meter_install::install_meter_provider;
pub use propagation::{
    HeaderExtractor, HeaderInjector, current_context, extract_context, inject_context,
    inject_context_from,
};
pub use sampler::{RatioSampler, TraceRatioHandle};
pub use views::LATENCY_BUCKETS_SECONDS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_sync_and_debug() {
        fn check<T: Send + Sync + std::fmt::Debug>() {}
        check::<TelemetryConfig>();
        check::<TelemetryGuard>();
        check::<TelemetryError>();
        check::<ConfigError>();
        check::<ShutdownError>();
        check::<RatioSampler>();
        check::<TraceRatioHandle>();
        check::<BudgetSampler>();
        check::<TraceBudgetHandle>();
        check::<Protocol>();
        check::<TraceSampler>();
        check::<DurationHistogram>();
        check::<Propagator>();
        check::<Signal>();
        check::<Compression>();
        check::<stack::TracingStack>();
        #[cfg(feature = "tower")]
        {
            check::<tower::ServerTraceLayer>();
            check::<tower::ServerTrace<()>>();
        }
    }
}
