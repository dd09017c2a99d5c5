//! [`TelemetryConfig`]: everything [`init`](crate::init()) needs, with the OpenTelemetry spec defaults.
//!
//! Start from [`TelemetryConfig::from_env`] (the standard `OTEL_*` variables, validated) and override in
//! code, or from [`TelemetryConfig::new`] (spec defaults, environment ignored: handy in tests).
//!
//! ```
//! use std::time::Duration;
//! use otlp_telemetry::{Protocol, TelemetryConfig, TraceSampler};
//!
//! let config = TelemetryConfig::new()
//!     .service_name("checkout")
//!     .service_version("1.4.2")
//!     .protocol(Protocol::HttpProtobuf)
//!     .endpoint("http://collector:4318")
//!     .trace_sampler(TraceSampler::ParentBasedTraceIdRatio(0.1))
//!     .metric_export_interval(Duration::from_secs(15));
//! assert!(config.validate().is_ok());
//! ```
//!
//! # Who wins
//! - Exporter settings (endpoint, protocol, headers, timeouts, sampler, batching): the last call wins, so a
//!   builder call made after `from_env()` overrides the environment.
//! - Resource (who this service is): code supplies defaults and the environment overrides them, so that
//!   operators can always rename a service: `OTEL_SERVICE_NAME` > `service.name` in
//!   `OTEL_RESOURCE_ATTRIBUTES` > [`TelemetryConfig::service_name`] > `unknown_service:<executable>`.
//!   Likewise `RUST_LOG` > [`TelemetryConfig::log_filter`].

use std::time::Duration;

use crate::error::ConfigError;
use crate::views::LATENCY_BUCKETS_SECONDS;

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC over tonic (`grpc`), default port 4317. Needs the `grpc` feature (on by default).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`), default port 4318. Needs the `http` feature
    /// (on by default).
    HttpProtobuf,
}

impl Protocol {
    /// The spec's name for it: `grpc` or `http/protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// A signal exported over OTLP, for the per-signal settings (`OTEL_EXPORTER_OTLP_TRACES_*`,
/// `OTEL_EXPORTER_OTLP_METRICS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
}

impl Signal {
    /// `traces` or `metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    /// The path appended to a generic HTTP endpoint: `/v1/traces` or `/v1/metrics`.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

/// Compression of OTLP payloads (`OTEL_EXPORTER_OTLP_COMPRESSION`): the spec's values are `gzip` and
/// `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Uncompressed (the default).
    #[default]
    None,
    /// gzip.
    Gzip,
}

impl Compression {
    /// The spec's name for it: `none` or `gzip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }
}

/// Exporter settings of one signal that override the generic ones (`OTEL_EXPORTER_OTLP_<SIGNAL>_*`).
#[derive(Debug, Clone, Default)]
pub(crate) struct SignalSettings {
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) headers: Option<Vec<(String, String)>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) compression: Option<Compression>,
}

/// The trace sampler (`OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`).
///
/// Every variant is implemented by one sampler over an atomic ratio (always_on = 1.0, always_off = 0.0), so
/// [`TelemetryGuard::set_trace_ratio`](crate::TelemetryGuard::set_trace_ratio) can change it at run time, followed
/// by a span budget (none except for `parentbased_rate_limited`) that
/// [`TelemetryGuard::set_trace_budget`](crate::TelemetryGuard::set_trace_budget) changes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum TraceSampler {
    /// `always_on`: record every trace.
    AlwaysOn,
    /// `always_off`: record nothing.
    AlwaysOff,
    /// `traceidratio`: record this fraction (0.0..=1.0) of traces, decided from the trace id.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default): follow the parent's decision; record every root.
    #[default]
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: follow the parent's decision; record no root.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: follow the parent's decision; record this fraction of roots.
    ParentBasedTraceIdRatio(f64),
    /// `parentbased_rate_limited`: follow the parent's decision; record at most this many new traces a second
    /// (the [span budget](crate::budget), changeable with
    /// [`TelemetryGuard::set_trace_budget`](crate::TelemetryGuard::set_trace_budget)).
    ParentBasedRateLimited(u64),
}

impl TraceSampler {
    /// The ratio of root spans sampled.
    pub fn ratio(self) -> f64 {
        match self {
            TraceSampler::AlwaysOn
            | TraceSampler::ParentBasedAlwaysOn
            | TraceSampler::ParentBasedRateLimited(_) => 1.0,
            TraceSampler::AlwaysOff | TraceSampler::ParentBasedAlwaysOff => 0.0,
            TraceSampler::TraceIdRatio(r) | TraceSampler::ParentBasedTraceIdRatio(r) => r,
        }
    }

    /// Whether a span with a parent follows its parent's decision.
    pub fn is_parent_based(self) -> bool {
        matches!(
            self,
            TraceSampler::ParentBasedAlwaysOn
                | TraceSampler::ParentBasedAlwaysOff
                | TraceSampler::ParentBasedTraceIdRatio(_)
                | TraceSampler::ParentBasedRateLimited(_)
        )
    }

    /// The budget of new traces a second (`None`: no budget).
    pub fn budget(self) -> Option<u64> {
        match self {
            TraceSampler::ParentBasedRateLimited(n) => Some(n),
            _ => None,
        }
    }
}

/// A context propagator (`OTEL_PROPAGATORS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Propagator {
    /// W3C Trace Context: `traceparent` and `tracestate` headers.
    TraceContext,
    /// W3C Baggage: the `baggage` header.
    Baggage,
}

/// How otlp-kit's `*.duration` histograms (unit `s`) are aggregated.
///
/// The SDK's default buckets (0, 5, 10, 25, ... 10 000) are meant for milliseconds; a semaphore wait of
/// 3 µs recorded in seconds would land in the first bucket. See [`crate::views`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DurationHistogram {
    /// Explicit bucket upper bounds, in seconds, strictly increasing. The default is
    /// [`LATENCY_BUCKETS_SECONDS`]: 1 µs to 10 s in 1-2.5-5 steps.
    ExplicitBuckets(Vec<f64>),
    /// Base-2 exponential histogram (`base2_exponential_bucket_histogram`): resolution adapts to the data.
    Exponential {
        /// Maximum number of buckets per sign (the spec default is 160).
        max_size: u32,
        /// Maximum scale, -10..=20 (the spec default is 20).
        max_scale: i8,
    },
}

impl DurationHistogram {
    /// Base-2 exponential histograms with the spec defaults (160 buckets, scale 20).
    pub fn exponential() -> Self {
        DurationHistogram::Exponential {
            max_size: 160,
            max_scale: 20,
        }
    }
}

impl Default for DurationHistogram {
    fn default() -> Self {
        DurationHistogram::ExplicitBuckets(LATENCY_BUCKETS_SECONDS.to_vec())
    }
}

/// The default span export queue (`OTEL_BSP_MAX_QUEUE_SIZE`): finished spans waiting for export, at most.
///
/// The SDK's channel takes the whole queue's memory when the processor starts (about 0.3 KB a span, resident from
/// then on), so the queue is sized for bursts, and the batch for throughput.
pub const DEFAULT_SPAN_QUEUE_SIZE: usize = 4_096;

/// The default span export batch (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`), capped to the queue size.
pub const DEFAULT_SPAN_BATCH_SIZE: usize = 2_048;

/// Configuration for [`init`](crate::init()): a builder whose every method returns the updated config.
///
/// Defaults follow the OpenTelemetry specification: OTLP/gRPC to `http://localhost:4317`, 10 s export
/// timeout (capped to the 5 s shutdown deadline), `parentbased_always_on`, metrics every 60 s, W3C Trace Context +
/// Baggage propagation; spans are exported every 5 s from a queue of [`DEFAULT_SPAN_QUEUE_SIZE`] in batches of up to
/// [`DEFAULT_SPAN_BATCH_SIZE`] (larger than the specification's 2048 and 512: measured in `docs/benchmarks.md`,
/// they keep a sampled service from dropping spans at rates where the specification's drop a fifth of them). Validation happens in
/// [`TelemetryConfig::validate`], which [`init`](crate::init()) calls.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub(crate) enabled: bool,
    pub(crate) service_name: Option<String>,
    pub(crate) env_service_name: Option<String>,
    pub(crate) service_version: Option<String>,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) env_resource_attributes: Vec<(String, String)>,
    pub(crate) protocol: Protocol,
    pub(crate) endpoint: Option<String>,
    pub(crate) traces: SignalSettings,
    pub(crate) metrics: SignalSettings,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) export_timeout: Option<Duration>,
    pub(crate) compression: Compression,
    pub(crate) traces_enabled: bool,
    pub(crate) metrics_enabled: bool,
    pub(crate) prometheus_enabled: bool,
    pub(crate) prometheus_host: String,
    pub(crate) prometheus_port: u16,
    pub(crate) sampler: TraceSampler,
    pub(crate) metric_export_interval: Duration,
    pub(crate) bsp_schedule_delay: Duration,
    pub(crate) bsp_export_timeout: Duration,
    pub(crate) bsp_max_queue_size: usize,
    /// `None`: [`DEFAULT_SPAN_BATCH_SIZE`], or the queue size if smaller.
    pub(crate) bsp_max_export_batch_size: Option<usize>,
    pub(crate) propagators: Vec<Propagator>,
    pub(crate) duration_histogram: DurationHistogram,
    pub(crate) duration_view_scopes: Vec<String>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) install_tracing_subscriber: bool,
    pub(crate) fmt_output: bool,
    pub(crate) fmt_span_context: bool,
    pub(crate) span_source_attributes: bool,
    pub(crate) log_filter: String,
    pub(crate) env_log_filter: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The spec's default `OTEL_EXPORTER_OTLP_TIMEOUT`.
pub(crate) const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const GRPC_DEFAULT_ENDPOINT: &str = "http://localhost:4317";
pub(crate) const HTTP_DEFAULT_ENDPOINT: &str = "http://localhost:4318";

impl TelemetryConfig {
    /// The spec defaults, ignoring the environment. Prefer [`TelemetryConfig::from_env`] in services.
    pub fn new() -> Self {
        TelemetryConfig {
            enabled: true,
            service_name: None,
            env_service_name: None,
            service_version: None,
            resource_attributes: Vec::new(),
            env_resource_attributes: Vec::new(),
            protocol: Protocol::Grpc,
            endpoint: None,
            traces: SignalSettings::default(),
            metrics: SignalSettings::default(),
            headers: Vec::new(),
            export_timeout: None,
            compression: Compression::None,
            traces_enabled: true,
            metrics_enabled: true,
            prometheus_enabled: false,
            prometheus_host: "localhost".to_owned(),
            prometheus_port: 9464,
            sampler: TraceSampler::ParentBasedAlwaysOn,
            metric_export_interval: Duration::from_secs(60),
            bsp_schedule_delay: Duration::from_secs(5),
            bsp_export_timeout: Duration::from_secs(30),
            bsp_max_queue_size: DEFAULT_SPAN_QUEUE_SIZE,
            bsp_max_export_batch_size: None,
            propagators: vec![Propagator::TraceContext, Propagator::Baggage],
            duration_histogram: DurationHistogram::default(),
            duration_view_scopes: Vec::new(),
            shutdown_timeout: Duration::from_secs(5),
            install_tracing_subscriber: true,
            fmt_output: true,
            fmt_span_context: false,
            span_source_attributes: false,
            log_filter: "info".to_owned(),
            env_log_filter: None,
        }
    }

    /// Turns the OpenTelemetry SDK on or off (`OTEL_SDK_DISABLED`). When off, [`init`](crate::init()) still
    /// installs the `tracing` subscriber (logs keep working) but exports nothing.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The `service.name` used when neither `OTEL_SERVICE_NAME` nor `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES` is set.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The `service.version` resource attribute, e.g. `env!("CARGO_PKG_VERSION")`.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// Adds a resource attribute (e.g. `deployment.environment.name`). `OTEL_RESOURCE_ATTRIBUTES` overrides
    /// attributes of the same key.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }

    /// The OTLP transport for both signals (`OTEL_EXPORTER_OTLP_PROTOCOL`), unless one has its own.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The OTLP transport for traces (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`), over the generic one.
    pub fn traces_protocol(mut self, protocol: Protocol) -> Self {
        self.traces.protocol = Some(protocol);
        self
    }

    /// The OTLP transport for metrics (`OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`), over the generic one.
    pub fn metrics_protocol(mut self, protocol: Protocol) -> Self {
        self.metrics.protocol = Some(protocol);
        self
    }

    /// The collector's base URL for both signals (`OTEL_EXPORTER_OTLP_ENDPOINT`). For a signal sent over
    /// HTTP, `/v1/traces` or `/v1/metrics` is appended; over gRPC it is used as is.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The full URL for traces (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), used as is, over the generic one.
    pub fn traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.traces.endpoint = Some(url.into());
        self
    }

    /// The full URL for metrics (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), used as is, over the generic one.
    pub fn metrics_endpoint(mut self, url: impl Into<String>) -> Self {
        self.metrics.endpoint = Some(url.into());
        self
    }

    /// Adds a header (HTTP) or metadata entry (gRPC) sent with every export, e.g. an API key
    /// (`OTEL_EXPORTER_OTLP_HEADERS`). A signal with headers of its own does not get these.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header sent with trace exports only (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`); trace exports
    /// then no longer get the generic [`header`](Self::header)s.
    pub fn traces_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.traces
            .headers
            .get_or_insert_with(Vec::new)
            .push((name.into(), value.into()));
        self
    }

    /// Adds a header sent with metric exports only (`OTEL_EXPORTER_OTLP_METRICS_HEADERS`); metric exports
    /// then no longer get the generic [`header`](Self::header)s.
    pub fn metrics_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metrics
            .headers
            .get_or_insert_with(Vec::new)
            .push((name.into(), value.into()));
        self
    }

    /// How long one export (with its retries) may take (`OTEL_EXPORTER_OTLP_TIMEOUT`), unless a signal has
    /// its own. The default is the spec's 10 s, but never more than the
    /// [shutdown deadline](Self::shutdown_timeout), so that a collector that is down or silent cannot hold
    /// an export past the end of shutdown.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = Some(timeout);
        self
    }

    /// The export timeout of traces (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`), over the generic one.
    pub fn traces_export_timeout(mut self, timeout: Duration) -> Self {
        self.traces.timeout = Some(timeout);
        self
    }

    /// The export timeout of metrics (`OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`), over the generic one.
    pub fn metrics_export_timeout(mut self, timeout: Duration) -> Self {
        self.metrics.timeout = Some(timeout);
        self
    }

    /// The longest a batch of spans may take to export (`OTEL_BSP_EXPORT_TIMEOUT`, default 30 s): the
    /// trace exporter's timeout is the smaller of this and the traces export timeout.
    pub fn span_export_timeout(mut self, timeout: Duration) -> Self {
        self.bsp_export_timeout = timeout;
        self
    }

    /// Payload compression for both signals (`OTEL_EXPORTER_OTLP_COMPRESSION`), unless one has its own.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Payload compression of traces (`OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`), over the generic one.
    pub fn traces_compression(mut self, compression: Compression) -> Self {
        self.traces.compression = Some(compression);
        self
    }

    /// Payload compression of metrics (`OTEL_EXPORTER_OTLP_METRICS_COMPRESSION`), over the generic one.
    pub fn metrics_compression(mut self, compression: Compression) -> Self {
        self.metrics.compression = Some(compression);
        self
    }

    /// Exports traces or not (`OTEL_TRACES_EXPORTER=otlp|none`).
    pub fn traces(mut self, enabled: bool) -> Self {
        self.traces_enabled = enabled;
        self
    }

    /// Exports metrics over OTLP or not (`OTEL_METRICS_EXPORTER=otlp|none`).
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics_enabled = enabled;
        self
    }

    /// Serves the metrics for a Prometheus scrape or not (`OTEL_METRICS_EXPORTER=prometheus`, or
    /// `otlp,prometheus` for both), at [`prometheus_address`](Self::prometheus_address)`/metrics`. Needs the
    /// `prometheus` feature: without it, [`init`](crate::init()) refuses the configuration and says so.
    pub fn prometheus(mut self, enabled: bool) -> Self {
        self.prometheus_enabled = enabled;
        self
    }

    /// Where the Prometheus scrape endpoint listens (`OTEL_EXPORTER_PROMETHEUS_HOST`, default `localhost`, and
    /// `OTEL_EXPORTER_PROMETHEUS_PORT`, default 9464; port 0 takes any free port, which
    /// [`TelemetryGuard::prometheus_addr`](crate::TelemetryGuard::prometheus_addr) tells).
    pub fn prometheus_address(mut self, host: impl Into<String>, port: u16) -> Self {
        self.prometheus_host = host.into();
        self.prometheus_port = port;
        self
    }

    /// The trace sampler; its ratio can be changed later with
    /// [`TelemetryGuard::set_trace_ratio`](crate::TelemetryGuard::set_trace_ratio).
    pub fn trace_sampler(mut self, sampler: TraceSampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// How often metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s).
    pub fn metric_export_interval(mut self, interval: Duration) -> Self {
        self.metric_export_interval = interval;
        self
    }

    /// How long finished spans wait before being exported (`OTEL_BSP_SCHEDULE_DELAY`, default 5 s).
    pub fn span_schedule_delay(mut self, delay: Duration) -> Self {
        self.bsp_schedule_delay = delay;
        self
    }

    /// How many finished spans may wait for export (`OTEL_BSP_MAX_QUEUE_SIZE`, default
    /// [`DEFAULT_SPAN_QUEUE_SIZE`]). When the
    /// queue is full (collector down or slow), new spans are dropped: memory stays flat and nothing blocks.
    pub fn span_queue_size(mut self, size: usize) -> Self {
        self.bsp_max_queue_size = size;
        self
    }

    /// How many spans go in one export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default
    /// [`DEFAULT_SPAN_BATCH_SIZE`] or the queue size if smaller; when set, at most the queue size).
    pub fn span_batch_size(mut self, size: usize) -> Self {
        self.bsp_max_export_batch_size = Some(size);
        self
    }

    /// The export batch size in effect: the one set, or the default capped to the queue size.
    pub(crate) fn resolved_span_batch_size(&self) -> usize {
        self.bsp_max_export_batch_size
            .unwrap_or(DEFAULT_SPAN_BATCH_SIZE.min(self.bsp_max_queue_size))
    }

    /// The propagators installed globally (`OTEL_PROPAGATORS`); empty means none.
    pub fn propagators(mut self, propagators: impl IntoIterator<Item = Propagator>) -> Self {
        self.propagators = propagators.into_iter().collect();
        self
    }

    /// How otlp-kit's `*.duration` histograms with unit `s` are aggregated (see [`crate::views`]).
    pub fn duration_histogram(mut self, histogram: DurationHistogram) -> Self {
        self.duration_histogram = histogram;
        self
    }

    /// The bucket upper bounds, in seconds (finite, strictly increasing), of otlp-kit's `*.duration`
    /// histograms: a shorthand for [`duration_histogram`](Self::duration_histogram) with
    /// [`DurationHistogram::ExplicitBuckets`]. The default is [`LATENCY_BUCKETS_SECONDS`].
    ///
    /// ```
    /// let config = otlp_telemetry::TelemetryConfig::new().duration_buckets([0.001, 0.01, 0.1, 1.0]);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn duration_buckets(mut self, bounds: impl IntoIterator<Item = f64>) -> Self {
        self.duration_histogram = DurationHistogram::ExplicitBuckets(bounds.into_iter().collect());
        self
    }

    /// Applies the duration view to the `*.duration` histograms (unit `s`) of one more instrumentation
    /// scope, matched exactly, e.g. your service's own meter. otlp-kit's scopes (`otlp-*`) always get it;
    /// other libraries' histograms keep their own buckets.
    pub fn duration_view_scope(mut self, scope: impl Into<String>) -> Self {
        self.duration_view_scopes.push(scope.into());
        self
    }

    /// The deadline for [`TelemetryGuard::shutdown`](crate::TelemetryGuard::shutdown) and for dropping the
    /// guard (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Installs the global `tracing` subscriber (default `true`): `EnvFilter` + fmt output + OpenTelemetry
    /// layer. With `false`, only the OpenTelemetry providers and propagator are set; `tracing` spans are
    /// then not exported unless you add a `tracing_opentelemetry` layer yourself.
    pub fn install_tracing_subscriber(mut self, install: bool) -> Self {
        self.install_tracing_subscriber = install;
        self
    }

    /// Writes `tracing` events to stderr in the human-readable fmt format (default `true`;
    /// `OTEL_CONSOLE_LOG=off` turns it off).
    pub fn fmt_output(mut self, on: bool) -> Self {
        self.fmt_output = on;
        self
    }

    /// Prints each event with the fields of the spans it is in (default `false`; `OTEL_CONSOLE_LOG=spans`).
    ///
    /// The fmt layer can only format a span's fields when the span is created, whether or not an event inside
    /// it is ever printed: with `false` it does not see spans at all, so spans cost it nothing and events are
    /// printed with their own fields only.
    pub fn fmt_span_context(mut self, on: bool) -> Self {
        self.fmt_span_context = on;
        self
    }

    /// Adds to every exported span where it was created: `thread.id`, `thread.name`, `code.file.path`,
    /// `code.module.name`, `code.line.number` and `target` (the `tracing` target, the module path unless the span
    /// names another) (default `false`; `OTEL_SPAN_SOURCE_ATTRIBUTES=true`).
    ///
    /// Off by default: they add a noticeable share to each sampled span's cost (`thread.name` allocates a
    /// `String` per span), for facts a trace rarely needs (the span's name and its parent already say what it
    /// is); see "Tracing" in docs/benchmarks.md. [`ServerTraceLayer`](crate::tower::ServerTraceLayer)'s
    /// server span never carries code attributes: they would name otlp-telemetry, not your service (its
    /// `target`, with this on, is `otlp_telemetry::tower`, the target its log filter directives name).
    pub fn span_source_attributes(mut self, on: bool) -> Self {
        self.span_source_attributes = on;
        self
    }

    /// The `tracing` filter directives used when `RUST_LOG` is not set (default `info`).
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = directives.into();
        self
    }

    /// The effective `service.name`: see the precedence rules in the [module docs](self).
    pub fn resolved_service_name(&self) -> String {
        if let Some(name) = &self.env_service_name {
            return name.clone();
        }
        if let Some((_, v)) = self
            .env_resource_attributes
            .iter()
            .rev()
            .find(|(k, _)| k == "service.name")
        {
            return v.clone();
        }
        if let Some(name) = &self.service_name {
            return name.clone();
        }
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        format!("unknown_service:{exe}")
    }

    pub(crate) fn signal(&self, signal: Signal) -> &SignalSettings {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
        }
    }

    /// The transport of `signal`: its own protocol, else the generic one.
    pub fn resolved_protocol(&self, signal: Signal) -> Protocol {
        self.signal(signal).protocol.unwrap_or(self.protocol)
    }

    /// The URL `signal` is sent to: its own endpoint as is; else the generic endpoint, with `/v1/traces` or
    /// `/v1/metrics` appended when the signal goes over HTTP; else the default of its protocol.
    pub fn resolved_endpoint(&self, signal: Signal) -> String {
        if let Some(url) = &self.signal(signal).endpoint {
            return url.clone();
        }
        match self.resolved_protocol(signal) {
            Protocol::Grpc => self
                .endpoint
                .clone()
                .unwrap_or_else(|| GRPC_DEFAULT_ENDPOINT.to_owned()),
            Protocol::HttpProtobuf => {
                let base = self.endpoint.as_deref().unwrap_or(HTTP_DEFAULT_ENDPOINT);
                format!("{}{}", base.trim_end_matches('/'), signal.http_path())
            }
        }
    }

    /// The headers sent with `signal`'s exports: its own if it has any, else the generic ones.
    pub fn resolved_headers(&self, signal: Signal) -> &[(String, String)] {
        self.signal(signal)
            .headers
            .as_deref()
            .unwrap_or(&self.headers)
    }

    /// The timeout of one export of `signal`: its own, else the generic one, else 10 s capped to the
    /// shutdown deadline; for traces, at most the span export timeout (`OTEL_BSP_EXPORT_TIMEOUT`) too.
    pub fn resolved_export_timeout(&self, signal: Signal) -> Duration {
        let timeout = self
            .signal(signal)
            .timeout
            .or(self.export_timeout)
            .unwrap_or_else(|| DEFAULT_EXPORT_TIMEOUT.min(self.shutdown_timeout));
        match signal {
            Signal::Traces => timeout.min(self.bsp_export_timeout),
            Signal::Metrics => timeout,
        }
    }

    /// The payload compression of `signal`: its own, else the generic one.
    pub fn resolved_compression(&self, signal: Signal) -> Compression {
        self.signal(signal).compression.unwrap_or(self.compression)
    }

    /// The URL the trace exporter sends to: [`resolved_endpoint`](Self::resolved_endpoint) of traces.
    pub fn resolved_traces_endpoint(&self) -> String {
        self.resolved_endpoint(Signal::Traces)
    }

    /// The URL the metric exporter sends to: [`resolved_endpoint`](Self::resolved_endpoint) of metrics.
    pub fn resolved_metrics_endpoint(&self) -> String {
        self.resolved_endpoint(Signal::Metrics)
    }

    /// Checks every value; [`init`](crate::init()) calls this first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.prometheus_enabled && !cfg!(feature = "prometheus") {
            return Err(ConfigError::value(
                "TelemetryConfig::prometheus",
                true,
                "false, or build otlp-telemetry with its `prometheus` feature (the Prometheus exporter is not \
                 compiled in)",
            ));
        }
        let ratio = self.sampler.ratio();
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConfigError::value(
                "TelemetryConfig::trace_sampler",
                self.sampler,
                "a ratio between 0.0 and 1.0",
            ));
        }
        if self
            .sampler
            .budget()
            .is_some_and(|n| n > u64::from(u32::MAX))
        {
            return Err(ConfigError::value(
                "TelemetryConfig::trace_sampler",
                self.sampler,
                format!("a budget of traces per second up to {}", u32::MAX),
            ));
        }
        let positive = [
            (
                "TelemetryConfig::export_timeout",
                self.export_timeout.unwrap_or(DEFAULT_EXPORT_TIMEOUT),
            ),
            (
                "TelemetryConfig::traces_export_timeout",
                self.resolved_export_timeout(Signal::Traces),
            ),
            (
                "TelemetryConfig::metrics_export_timeout",
                self.resolved_export_timeout(Signal::Metrics),
            ),
            (
                "TelemetryConfig::metric_export_interval",
                self.metric_export_interval,
            ),
            (
                "TelemetryConfig::span_schedule_delay",
                self.bsp_schedule_delay,
            ),
            ("TelemetryConfig::shutdown_timeout", self.shutdown_timeout),
        ];
        for (setting, d) in positive {
            if d.is_zero() {
                return Err(ConfigError::value(
                    setting,
                    d,
                    "a duration greater than zero",
                ));
            }
        }
        if self.bsp_max_queue_size == 0 {
            return Err(ConfigError::value(
                "TelemetryConfig::span_queue_size",
                self.bsp_max_queue_size,
                "at least 1",
            ));
        }
        let batch = self.resolved_span_batch_size();
        if batch == 0 || batch > self.bsp_max_queue_size {
            return Err(ConfigError::value(
                "TelemetryConfig::span_batch_size",
                batch,
                format!(
                    "between 1 and the span queue size ({})",
                    self.bsp_max_queue_size
                ),
            ));
        }
        for url in [
            &self.endpoint,
            &self.traces.endpoint,
            &self.metrics.endpoint,
        ]
        .into_iter()
        .flatten()
        {
            if !is_http_url(url) {
                return Err(ConfigError::value(
                    "TelemetryConfig::endpoint",
                    url,
                    "an absolute http:// or https:// URL such as http://localhost:4317",
                ));
            }
        }
        let signal_headers = [&self.traces.headers, &self.metrics.headers];
        for (name, value) in self
            .headers
            .iter()
            .chain(signal_headers.into_iter().flatten().flatten())
        {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                return Err(ConfigError::value(
                    "TelemetryConfig::header",
                    (name, value),
                    "a valid HTTP header name and a value of visible ASCII characters",
                ));
            }
        }
        match &self.duration_histogram {
            DurationHistogram::ExplicitBuckets(bounds) => {
                let ok = !bounds.is_empty()
                    && bounds.iter().all(|b| b.is_finite())
                    && bounds.windows(2).all(|w| w[0] < w[1]);
                if !ok {
                    return Err(ConfigError::value(
                        "TelemetryConfig::duration_histogram",
                        bounds,
                        "a non-empty list of finite, strictly increasing bucket bounds in seconds",
                    ));
                }
            }
            DurationHistogram::Exponential {
                max_size,
                max_scale,
            } => {
                if *max_size < 2 || !(-10..=20).contains(max_scale) {
                    return Err(ConfigError::value(
                        "TelemetryConfig::duration_histogram",
                        &self.duration_histogram,
                        "max_size of at least 2 and max_scale between -10 and 20",
                    ));
                }
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            return Err(ConfigError::value(
                "TelemetryConfig::log_filter",
                &self.log_filter,
                format!("tracing filter directives such as `info,my_crate=debug` ({e})"),
            ));
        }
        Ok(())
    }
}

pub(crate) fn is_http_url(url: &str) -> bool {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            matches!(uri.scheme_str(), Some("http") | Some("https")) && uri.authority().is_some()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_the_spec() {
        let c = TelemetryConfig::new();
        c.validate().unwrap();
        assert_eq!(c.resolved_traces_endpoint(), "http://localhost:4317");
        let c = c.protocol(Protocol::HttpProtobuf);
        assert_eq!(
            c.resolved_traces_endpoint(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            c.resolved_metrics_endpoint(),
            "http://localhost:4318/v1/metrics"
        );
    }

    #[test]
    fn http_endpoint_gets_signal_paths_and_signal_endpoints_are_used_as_is() {
        let c = TelemetryConfig::new()
            .protocol(Protocol::HttpProtobuf)
            .endpoint("http://c:4318/")
            .metrics_endpoint("http://m:9/custom");
        assert_eq!(c.resolved_traces_endpoint(), "http://c:4318/v1/traces");
        assert_eq!(c.resolved_metrics_endpoint(), "http://m:9/custom");
    }

    #[test]
    fn default_export_timeout_never_exceeds_the_shutdown_deadline() {
        for signal in [Signal::Traces, Signal::Metrics] {
            let c = TelemetryConfig::new();
            assert_eq!(c.resolved_export_timeout(signal), Duration::from_secs(5));
            assert!(c.resolved_export_timeout(signal) <= c.shutdown_timeout);
            let c = c.shutdown_timeout(Duration::from_millis(1500));
            assert_eq!(
                c.resolved_export_timeout(signal),
                Duration::from_millis(1500)
            );
            let c = c.shutdown_timeout(Duration::from_secs(30));
            assert_eq!(c.resolved_export_timeout(signal), Duration::from_secs(10));
            // An explicit value is the user's choice.
            let c = c.export_timeout(Duration::from_secs(20));
            assert_eq!(c.resolved_export_timeout(signal), Duration::from_secs(20));
        }
    }

    #[test]
    fn per_signal_settings_win_over_generic_ones() {
        let c = TelemetryConfig::new()
            .endpoint("http://c:4317")
            .metrics_protocol(Protocol::HttpProtobuf)
            .header("k", "generic")
            .traces_header("k", "traces")
            .export_timeout(Duration::from_secs(3))
            .metrics_export_timeout(Duration::from_secs(4))
            .span_export_timeout(Duration::from_secs(2))
            .compression(Compression::Gzip)
            .traces_compression(Compression::None);
        // gRPC uses the generic endpoint as is; HTTP appends the signal's path.
        assert_eq!(c.resolved_protocol(Signal::Traces), Protocol::Grpc);
        assert_eq!(c.resolved_endpoint(Signal::Traces), "http://c:4317");
        assert_eq!(c.resolved_protocol(Signal::Metrics), Protocol::HttpProtobuf);
        assert_eq!(
            c.resolved_endpoint(Signal::Metrics),
            "http://c:4317/v1/metrics"
        );
        assert_eq!(
            c.resolved_headers(Signal::Traces),
            &[("k".to_owned(), "traces".to_owned())]
        );
        assert_eq!(
            c.resolved_headers(Signal::Metrics),
            &[("k".to_owned(), "generic".to_owned())]
        );
        // The span export timeout caps the traces timeout.
        assert_eq!(
            c.resolved_export_timeout(Signal::Traces),
            Duration::from_secs(2)
        );
        assert_eq!(
            c.resolved_export_timeout(Signal::Metrics),
            Duration::from_secs(4)
        );
        assert_eq!(c.resolved_compression(Signal::Traces), Compression::None);
        assert_eq!(c.resolved_compression(Signal::Metrics), Compression::Gzip);
        c.validate().unwrap();
        let err = c.traces_header("bad header", "x").validate().unwrap_err();
        assert!(err.to_string().contains("header"), "{err}");
    }

    #[test]
    fn service_name_precedence() {
        let mut c = TelemetryConfig::new().service_name("code");
        assert_eq!(c.resolved_service_name(), "code");
        c.env_resource_attributes
            .push(("service.name".into(), "attrs".into()));
        assert_eq!(c.resolved_service_name(), "attrs");
        c.env_service_name = Some("env".into());
        assert_eq!(c.resolved_service_name(), "env");
        assert!(
            TelemetryConfig::new()
                .resolved_service_name()
                .starts_with("unknown_service:")
        );
    }

    #[test]
    fn validation_names_the_setting() {
        let err = TelemetryConfig::new()
            .trace_sampler(TraceSampler::TraceIdRatio(1.5))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("trace_sampler"), "{err}");
        let err = TelemetryConfig::new()
            .span_queue_size(10)
            .span_batch_size(20)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("span_batch_size"), "{err}");
        let err = TelemetryConfig::new()
            .endpoint("localhost:4317")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
        let err = TelemetryConfig::new()
            .duration_histogram(DurationHistogram::ExplicitBuckets(vec![1.0, 0.5]))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("increasing"), "{err}");
        assert!(
            TelemetryConfig::new()
                .trace_sampler(TraceSampler::TraceIdRatio(f64::NAN))
                .validate()
                .is_err()
        );
        assert!(
            TelemetryConfig::new()
                .export_timeout(Duration::ZERO)
                .validate()
                .is_err()
        );
    }
}
