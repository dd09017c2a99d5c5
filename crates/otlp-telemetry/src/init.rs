//! [`init`]: turns OpenTelemetry on for the whole process.
//!
//! One call builds and installs, in this order:
//! 1. the OTLP exporters (gRPC via tonic, or HTTP/protobuf via reqwest, both driven by a small runtime
//!    of their own; spans encoded by [`otlp_encode`](crate::otlp_encode) straight from the SDK's span data,
//!    metrics by `opentelemetry-otlp`), wrapped so that failures are logged at most once per interval and counted;
//! 2. a tracer provider with a batch span processor (bounded queue, its own thread) and the dynamic
//!    [`RatioSampler`](crate::RatioSampler), parent-based unless configured otherwise;
//! 3. a meter provider with a periodic reader (its own thread) and the [view](crate::views) that
//!    re-buckets otlp-kit's `*.duration` histograms;
//! 4. a `Resource` with `service.name`, `service.version`, `telemetry.sdk.*` and the configured attributes;
//! 5. the global `tracing` subscriber: `EnvFilter` (`RUST_LOG`), fmt output of events to stderr (spans' fields
//!    formatted for it only with `OTEL_CONSOLE_LOG=spans`; `OTEL_CONSOLE_LOG=off` turns it off), and the
//!    `tracing-opentelemetry` layer (which ignores the exporter's own `h2`/`hyper`/`tonic`/`reqwest` spans)
//!    behind head sampling: the sampler decides a root when its `tracing` span is created, and a sampled-out
//!    root and its children never reach the OpenTelemetry layer (no SDK span, fields never visited);
//! 6. the global tracer provider, meter provider and text-map propagator (W3C Trace Context + Baggage), so
//!    the instruments of `otlp-pool`, `otlp-sync`, `otlp-patterns` and any other library flow with no code.
//!
//! ```no_run
//! use otlp_telemetry::TelemetryConfig;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let _telemetry = otlp_telemetry::init(TelemetryConfig::from_env()?.service_name("checkout"))?;
//!     tracing::info!("exported as a span event when inside a span, and printed");
//!     Ok(()) // dropping the guard flushes and shuts down, within a deadline
//! }
//! ```
//!
//! The `EnvFilter` applies to both outputs: a span that `RUST_LOG` filters out is neither printed nor
//! exported (the default filter is `info`, so `debug!`/`trace!` spans of hot paths cost ~2 ns and export
//! nothing unless asked for).
//!
//! `init` never waits for the collector: exporters connect lazily, so a collector that is down only costs
//! a `warn` event per interval; spans beyond the queue size are dropped and memory stays flat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{MeterProviderBuilder, SdkMeterProvider};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::TracerProviderBuilder;

use crate::accounting::{Ledger, SpanCounts};
use crate::config::{Propagator, Protocol, Signal, TelemetryConfig};
use crate::error::TelemetryError;
use crate::guard::{GuardParts, TelemetryGuard};
use crate::head_sampling::HeadSampler;
use crate::report::REPORT_TARGET;
use crate::runtime::ExporterRuntime;
use crate::stack;
use crate::tracer_switch::{self, Installed};

/// Telemetry is on: a guard from `init` is alive. Cleared when that guard has shut down.
static INITIALIZED: AtomicBool = AtomicBool::new(false);
/// Our `tracing` subscriber is the global one (it can be set only once per process).
static SUBSCRIBER_INSTALLED: AtomicBool = AtomicBool::new(false);
/// ... and it has an OpenTelemetry layer, which follows [`tracer_switch`].
static SUBSCRIBER_HAS_OTEL: AtomicBool = AtomicBool::new(false);

/// Targets whose spans and events never reach the OpenTelemetry layer: the exporter's own transport
/// (exporting would otherwise create spans to export, forever) and the SDK itself.
const EXCLUDED_TARGETS: [&str; 8] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    REPORT_TARGET,
];

pub(crate) fn excluded(target: &str) -> bool {
    EXCLUDED_TARGETS.iter().any(|t| {
        target.starts_with(t) && matches!(target.as_bytes().get(t.len()), None | Some(b':' | b'_'))
    })
}

/// Turns telemetry on for the process and returns the guard that turns it off.
///
/// Call it early in `main` (inside or outside a tokio runtime, multi-thread or current-thread), and keep
/// the guard until the end: dropping it flushes and shuts down both providers within
/// [`TelemetryConfig::shutdown_timeout`].
///
/// Once that guard has shut down, `init` may be called again (tests, services that reload their
/// telemetry configuration): new exporters and providers replace the old ones, globally. The `tracing`
/// subscriber, which can be installed only once per process, stays the one the first `init` installed
/// (its log filter and fmt output included); its OpenTelemetry layer follows the new tracer provider.
///
/// # Errors
/// - [`TelemetryError::Config`] if the configuration is invalid (nothing is installed);
/// - [`TelemetryError::AlreadyInitialized`] while the guard of an earlier call is alive;
/// - [`TelemetryError::SubscriberAlreadySet`] if another global `tracing` subscriber exists;
/// - [`TelemetryError::Exporter`] or [`TelemetryError::TransportNotCompiled`] if an exporter cannot be built;
/// - [`TelemetryError::Runtime`] if the gRPC background thread cannot start.
pub fn init(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    config.validate()?;
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(TelemetryError::AlreadyInitialized);
    }
    let result = install(config);
    if result.is_err() {
        // Nothing global was installed: a corrected configuration may try again.
        INITIALIZED.store(false, Ordering::SeqCst);
    }
    result
}

/// Called by the guard once its shutdown is over: telemetry is off, and `init` may run again.
pub(crate) fn release() {
    tracer_switch::global().switch(None);
    INITIALIZED.store(false, Ordering::SeqCst);
}

fn install(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let (mut parts, sampler) = if config.enabled {
        let (sampler, ratio, budget) = stack::head_sampler(&config)?;
        let mut parts = build_providers(&config, &sampler)?;
        parts.ratio = Some(ratio);
        parts.budget = Some(budget);
        (parts, Some(sampler))
    } else {
        (GuardParts::default(), None)
    };

    if config.install_tracing_subscriber && SUBSCRIBER_INSTALLED.load(Ordering::SeqCst) {
        // Installed by an earlier `init`: its layer follows the tracer switched below.
        if parts.tracer_provider.is_some() && !SUBSCRIBER_HAS_OTEL.load(Ordering::SeqCst) {
            tracing::warn!(
                target: REPORT_TARGET,
                "the tracing subscriber was installed by an init with the SDK disabled: tracing spans are \
                 not exported until the process restarts (OpenTelemetry API spans and metrics are)"
            );
        }
    } else if config.install_tracing_subscriber {
        let switch = parts
            .tracer_provider
            .as_ref()
            .map(|_| tracer_switch::global().clone());
        let has_otel = switch.is_some();
        let subscriber = stack::subscriber(&config, switch);
        if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
            discard(&mut parts);
            return Err(TelemetryError::SubscriberAlreadySet(e.to_string()));
        }
        SUBSCRIBER_INSTALLED.store(true, Ordering::SeqCst);
        SUBSCRIBER_HAS_OTEL.store(has_otel, Ordering::SeqCst);
    }
    tracer_switch::global().switch(parts.tracer_provider.as_ref().zip(sampler).map(
        |(tp, sampler)| Installed {
            tracer: tp.tracer_with_scope(stack::scope()),
            sampler,
        },
    ));
    parts.owns_init = true;

    if let Some(tp) = &parts.tracer_provider {
        global::set_tracer_provider(tp.clone());
    }
    if let Some(mp) = &parts.meter_provider {
        // Owners built before now (a library's lazy pool) report through this provider from its first export.
        crate::install_meter_provider(mp.clone());
    }
    let propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = config
        .propagators
        .iter()
        .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
            match p {
                Propagator::TraceContext => Box::new(TraceContextPropagator::new()),
                Propagator::Baggage => Box::new(BaggagePropagator::new()),
            }
        })
        .collect();
    global::set_text_map_propagator(TextMapCompositePropagator::new(propagators));

    tracing::debug!(
        target: REPORT_TARGET,
        enabled = config.enabled,
        traces_protocol = config.resolved_protocol(Signal::Traces).as_str(),
        traces = config.traces_enabled.then(|| config.resolved_traces_endpoint()),
        metrics_protocol = config.resolved_protocol(Signal::Metrics).as_str(),
        metrics = config.metrics_enabled.then(|| config.resolved_metrics_endpoint()),
        "telemetry initialized"
    );

    Ok(TelemetryGuard::new(parts, config.shutdown_timeout))
}

/// Throws away what `build_providers` made when a later step fails.
fn discard(parts: &mut GuardParts) {
    // Nothing was recorded yet; shut down in the background so a failing init returns at once.
    let tp = parts.tracer_provider.take();
    let mp = parts.meter_provider.take();
    let rt = parts.runtime.take();
    let _ = std::thread::Builder::new()
        .name("otlp-telemetry-discard".into())
        .spawn(move || {
            if let Some(tp) = tp {
                let _ = tp.shutdown();
            }
            if let Some(mp) = mp {
                let _ = mp.shutdown();
            }
            drop(rt);
        });
}

fn build_providers(
    config: &TelemetryConfig,
    sampler: &HeadSampler,
) -> Result<GuardParts, TelemetryError> {
    let mut parts = GuardParts::default();
    let resource = build_resource(config);
    if cfg!(any(feature = "grpc", feature = "http"))
        && (config.traces_enabled || config.metrics_enabled)
    {
        parts.runtime = Some(ExporterRuntime::start().map_err(TelemetryError::Runtime)?);
    }

    // A tracer provider exists even when traces are not exported, so that trace context still propagates
    // from incoming to outgoing requests.
    let mut tp = stack::provider_builder(sampler).with_resource(resource.clone());
    if config.traces_enabled {
        let counts = SpanCounts::new(config.bsp_max_queue_size, config.bsp_schedule_delay);
        let ledger = Arc::new(Ledger::default());
        tp = export::with_span_export(
            tp,
            config,
            parts.runtime.as_ref(),
            Arc::clone(&counts),
            Arc::clone(&ledger),
        )?;
        parts.span_counts = Some(counts);
        parts.trace_ledger = Some(ledger);
    }
    parts.tracer_provider = Some(tp.build());

    if config.metrics_enabled || config.prometheus_enabled {
        match meter_provider(config, resource, &mut parts) {
            Ok(mp) => parts.meter_provider = Some(mp),
            Err(e) => {
                discard(&mut parts);
                return Err(e);
            }
        }
    }
    Ok(parts)
}

/// The meter provider with its readers: OTLP's periodic one, the Prometheus scrape's, or both.
fn meter_provider(
    config: &TelemetryConfig,
    resource: Resource,
    parts: &mut GuardParts,
) -> Result<SdkMeterProvider, TelemetryError> {
    let mut mp = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_view(crate::views::duration_view_with_scopes(
            &config.duration_histogram,
            config.duration_view_scopes.iter().cloned(),
        ));
    if config.metrics_enabled {
        let ledger = Arc::new(Ledger::default());
        mp = export::with_metric_export(mp, config, parts.runtime.as_ref(), Arc::clone(&ledger))?;
        parts.metric_ledger = Some(ledger);
    }
    #[cfg(feature = "prometheus")]
    if config.prometheus_enabled {
        let (reader, server) =
            crate::prometheus::start(&config.prometheus_host, config.prometheus_port)?;
        mp = mp.with_reader(reader);
        parts.prometheus = Some(server);
    }
    Ok(mp.build())
}

fn build_resource(config: &TelemetryConfig) -> Resource {
    let kv = |(k, v): &(String, String)| KeyValue::new(k.clone(), v.clone());
    let mut b = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(config.resource_attributes.iter().map(kv));
    if let Some(version) = &config.service_version {
        b = b.with_attribute(KeyValue::new("service.version", version.clone()));
    }
    b.with_attributes(config.env_resource_attributes.iter().map(kv))
        .with_service_name(config.resolved_service_name())
        .build()
}

/// Building OTLP exporters; without any transport feature, enabling a signal is a typed error.
#[cfg(any(feature = "grpc", feature = "http"))]
mod export {
    use super::*;
    use crate::config::Compression;
    use crate::report::{ErrorReporter, ReportingMetricExporter, ReportingSpanExporter};
    use opentelemetry_sdk::metrics::PeriodicReader;

    pub(super) fn with_span_export(
        tp: TracerProviderBuilder,
        config: &TelemetryConfig,
        runtime: Option<&ExporterRuntime>,
        counts: Arc<SpanCounts>,
        ledger: Arc<Ledger>,
    ) -> Result<TracerProviderBuilder, TelemetryError> {
        let endpoint = config.resolved_traces_endpoint();
        let exporter = span_exporter(config, &endpoint, runtime)?;
        let reporter = ErrorReporter::new("traces", endpoint, config.bsp_schedule_delay);
        let handle = runtime.map(|rt| rt.handle().clone());
        let exporter =
            ReportingSpanExporter::new(exporter, reporter, Arc::clone(&counts), ledger, handle);
        Ok(tp.with_span_processor(stack::batch_processor(config, exporter, counts)))
    }

    pub(super) fn with_metric_export(
        mp: MeterProviderBuilder,
        config: &TelemetryConfig,
        runtime: Option<&ExporterRuntime>,
        ledger: Arc<Ledger>,
    ) -> Result<MeterProviderBuilder, TelemetryError> {
        let endpoint = config.resolved_metrics_endpoint();
        let exporter = metric_exporter(config, &endpoint, runtime)?;
        let reporter = ErrorReporter::new("metrics", endpoint, config.metric_export_interval);
        let reader = PeriodicReader::builder(ReportingMetricExporter::new(
            exporter,
            reporter,
            ledger,
            runtime.map(|rt| rt.handle().clone()),
        ))
        .with_interval(config.metric_export_interval)
        .build();
        Ok(mp.with_reader(reader))
    }

    #[cfg(feature = "grpc")]
    fn header_map(config: &TelemetryConfig, signal: Signal) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in config.resolved_headers(signal) {
            // Validated by TelemetryConfig::validate.
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                map.append(n, v);
            }
        }
        map
    }

    #[cfg(feature = "http")]
    fn http_headers(
        config: &TelemetryConfig,
        signal: Signal,
    ) -> std::collections::HashMap<String, String> {
        config.resolved_headers(signal).iter().cloned().collect()
    }

    /// The HTTP client of one signal's exporter: its requests run on the exporter runtime.
    #[cfg(feature = "http")]
    fn http_client(
        config: &TelemetryConfig,
        signal: Signal,
        endpoint: &str,
        runtime: Option<&ExporterRuntime>,
    ) -> Result<crate::http_client::RuntimeHttpClient, TelemetryError> {
        let error = |message: String| TelemetryError::Exporter {
            signal: signal.as_str(),
            endpoint: endpoint.to_owned(),
            source: opentelemetry_otlp::ExporterBuildError::InternalFailure(message),
        };
        let runtime = runtime.ok_or_else(|| error("the exporter runtime is not running".into()))?;
        crate::http_client::RuntimeHttpClient::new(
            config.resolved_export_timeout(signal),
            runtime.handle().clone(),
        )
        .map_err(|e| error(format!("could not build the HTTP client: {e}")))
    }

    /// Applies the signal's compression; `None` leaves the exporter uncompressed.
    fn compressed<B>(
        builder: B,
        config: &TelemetryConfig,
        signal: Signal,
        with: impl FnOnce(B, opentelemetry_otlp::Compression) -> B,
    ) -> B {
        match config.resolved_compression(signal) {
            Compression::None => builder,
            Compression::Gzip => with(builder, opentelemetry_otlp::Compression::Gzip),
        }
    }

    /// Builds an OTLP exporter of either signal: the span and metric exporter builders have the same methods but
    /// no common trait, so one macro spells the chain once for both.
    macro_rules! otlp_exporter {
        ($exporter:ident, $signal:expr, $config:expr, $endpoint:expr, $runtime:expr) => {{
            #[allow(unused_imports)]
            use opentelemetry_otlp::WithExportConfig as _;
            let (config, endpoint): (&TelemetryConfig, &str) = ($config, $endpoint);
            let signal: Signal = $signal;
            #[cfg_attr(not(feature = "grpc"), allow(unused_variables))]
            let runtime: Option<&ExporterRuntime> = $runtime;
            let built = match config.resolved_protocol(signal) {
                #[cfg(feature = "grpc")]
                Protocol::Grpc => {
                    use opentelemetry_otlp::WithTonicConfig as _;
                    let _entered = runtime.map(|rt| rt.handle().enter());
                    let builder = opentelemetry_otlp::$exporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint)
                        .with_timeout(config.resolved_export_timeout(signal))
                        .with_metadata(tonic::metadata::MetadataMap::from_headers(header_map(
                            config, signal,
                        )));
                    compressed(builder, config, signal, |b, c| b.with_compression(c)).build()
                }
                #[cfg(feature = "http")]
                Protocol::HttpProtobuf => {
                    use opentelemetry_otlp::WithHttpConfig as _;
                    let client = http_client(config, signal, endpoint, runtime)?;
                    let builder = opentelemetry_otlp::$exporter::builder()
                        .with_http()
                        .with_http_client(client)
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(endpoint)
                        .with_timeout(config.resolved_export_timeout(signal))
                        .with_headers(http_headers(config, signal));
                    compressed(builder, config, signal, |b, c| b.with_compression(c)).build()
                }
                #[allow(unreachable_patterns)]
                other => return Err(not_compiled(other)),
            };
            built.map_err(|source| TelemetryError::Exporter {
                signal: signal.as_str(),
                endpoint: endpoint.to_owned(),
                source,
            })
        }};
    }

    /// Our own OTLP span exporter ([`crate::span_export`]): the same settings as `opentelemetry-otlp`'s, at a
    /// fraction of its cost per span (docs/benchmarks.md); `opentelemetry-otlp`'s for gRPC over TLS.
    pub(super) fn span_exporter(
        config: &TelemetryConfig,
        endpoint: &str,
        runtime: Option<&ExporterRuntime>,
    ) -> Result<crate::span_export::AnySpanExporter, TelemetryError> {
        use crate::span_export::{AnySpanExporter, OtlpSpanExporter, Transport};
        let signal = Signal::Traces;
        #[cfg_attr(not(feature = "grpc"), allow(unused_variables))]
        let error = |message: String| TelemetryError::Exporter {
            signal: signal.as_str(),
            endpoint: endpoint.to_owned(),
            source: opentelemetry_otlp::ExporterBuildError::InvalidConfiguration(message),
        };
        let gzip = config.resolved_compression(signal) == Compression::Gzip;
        let transport = match config.resolved_protocol(signal) {
            #[cfg(feature = "grpc")]
            Protocol::Grpc => {
                let _entered = runtime.map(|rt| rt.handle().enter());
                let target = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                    .map_err(|e| error(format!("invalid endpoint: {e}")))?;
                if target.uri().scheme_str() == Some("https") {
                    // TLS is configured through opentelemetry-otlp's features: its own exporter keeps it.
                    drop(_entered);
                    return otlp_exporter!(SpanExporter, signal, config, endpoint, runtime)
                        .map(AnySpanExporter::Otlp);
                }
                let channel = target
                    .timeout(config.resolved_export_timeout(signal))
                    .connect_with_connector_lazy(crate::span_export::grpc::QuickAckConnector);
                let mut client = tonic::client::Grpc::new(channel);
                if gzip {
                    client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                let mut metadata =
                    tonic::metadata::MetadataMap::from_headers(header_map(config, signal));
                metadata.insert(
                    "user-agent",
                    tonic::metadata::MetadataValue::from_static(USER_AGENT),
                );
                Transport::Grpc { client, metadata }
            }
            #[cfg(feature = "http")]
            Protocol::HttpProtobuf => {
                let uri = endpoint
                    .parse::<http::Uri>()
                    .map_err(|e| error(format!("invalid endpoint: {e}")))?;
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    http::header::USER_AGENT,
                    http::HeaderValue::from_static(USER_AGENT),
                );
                for (name, value) in http_headers(config, signal) {
                    // Validated by TelemetryConfig::validate.
                    if let (Ok(n), Ok(v)) = (
                        http::HeaderName::from_bytes(name.as_bytes()),
                        http::HeaderValue::from_str(&value),
                    ) {
                        headers.append(n, v);
                    }
                }
                let client = http_client(config, signal, endpoint, runtime)?;
                Transport::Http {
                    client,
                    uri,
                    headers,
                    gzip,
                }
            }
            #[allow(unreachable_patterns)]
            other => return Err(not_compiled(other)),
        };
        Ok(AnySpanExporter::Ours(OtlpSpanExporter::new(transport)))
    }

    /// As `opentelemetry-otlp` sends it.
    const USER_AGENT: &str = "OTel-OTLP-Exporter-Rust/0.33";

    fn metric_exporter(
        config: &TelemetryConfig,
        endpoint: &str,
        runtime: Option<&ExporterRuntime>,
    ) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
        otlp_exporter!(MetricExporter, Signal::Metrics, config, endpoint, runtime)
    }
}

#[cfg(not(any(feature = "grpc", feature = "http")))]
mod export {
    use super::*;

    pub(super) fn with_span_export(
        _tp: TracerProviderBuilder,
        config: &TelemetryConfig,
        _runtime: Option<&ExporterRuntime>,
        _counts: Arc<SpanCounts>,
        _ledger: Arc<Ledger>,
    ) -> Result<TracerProviderBuilder, TelemetryError> {
        Err(not_compiled(config.resolved_protocol(Signal::Traces)))
    }

    pub(super) fn with_metric_export(
        _mp: MeterProviderBuilder,
        config: &TelemetryConfig,
        _runtime: Option<&ExporterRuntime>,
        _ledger: Arc<Ledger>,
    ) -> Result<MeterProviderBuilder, TelemetryError> {
        Err(not_compiled(config.resolved_protocol(Signal::Metrics)))
    }
}

#[allow(dead_code)]
fn not_compiled(protocol: Protocol) -> TelemetryError {
    TelemetryError::TransportNotCompiled {
        protocol: protocol.as_str(),
        feature: match protocol {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(feature = "grpc", feature = "http"))]
    #[test]
    fn spans_go_through_our_encoder_except_grpc_over_tls() {
        use crate::span_export::AnySpanExporter;
        let rt = ExporterRuntime::start().unwrap();
        let exporter = |protocol, endpoint: &str| {
            let config = TelemetryConfig::new()
                .protocol(protocol)
                .endpoint(endpoint.to_owned());
            let endpoint = config.resolved_traces_endpoint();
            export::span_exporter(&config, &endpoint, Some(&rt))
        };
        for (protocol, endpoint) in [
            (Protocol::Grpc, "http://127.0.0.1:4317"),
            (Protocol::HttpProtobuf, "http://127.0.0.1:4318"),
            (Protocol::HttpProtobuf, "https://127.0.0.1:4318"),
        ] {
            assert!(
                matches!(exporter(protocol, endpoint), Ok(AnySpanExporter::Ours(_))),
                "{endpoint}"
            );
        }
        // TLS for gRPC comes with opentelemetry-otlp's features, so its exporter takes over: without them (here),
        // it refuses the endpoint when built.
        match exporter(Protocol::Grpc, "https://127.0.0.1:4317") {
            Err(TelemetryError::Exporter { source, .. }) => {
                assert!(source.to_string().contains("tls-ring"), "{source}")
            }
            other => panic!("expected opentelemetry-otlp's TLS error, got {other:?}"),
        }
    }

    #[test]
    fn exporter_transport_targets_are_excluded_from_the_otel_layer() {
        for t in [
            "h2",
            "h2::proto",
            "hyper_util::client",
            "tonic::transport",
            "reqwest::connect",
            "opentelemetry_sdk",
            "opentelemetry_otlp::exporter",
            "otlp_telemetry::export",
        ] {
            assert!(excluded(t), "{t}");
        }
        for t in [
            "my_app",
            "h2o_service",
            "otlp_pool",
            "towering",
            "app::tonic",
            "otlp_telemetry::tower",
        ] {
            assert!(!excluded(t), "{t}");
        }
    }
}
