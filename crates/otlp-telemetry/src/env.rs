//! Reading the standard `OTEL_*` environment variables into a [`TelemetryConfig`].
//!
//! [`TelemetryConfig::from_env`] reads the process environment; [`TelemetryConfig::from_env_vars`] is the
//! same pure function over any list of variables, so tests never mutate the process environment.
//! Unset or empty variables keep the spec defaults; an invalid value is a [`ConfigError`] that names the
//! variable, the value and what would be valid.
//!
//! Every variable read, and the builder method it sets:
//!
//! | variable | values | builder method |
//! |---|---|---|
//! | `OTEL_SDK_DISABLED` | `true` / `false` | `enabled` |
//! | `OTEL_SERVICE_NAME` | any string | (overrides `service_name`) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,key2=value2` (values percent-decoded) | (overrides `resource_attribute`) |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http(s)://host:port[/path]`; `/v1/traces`, `/v1/metrics` appended for a signal sent over HTTP | `endpoint` |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` | full URL, used as is | `traces_endpoint`, `metrics_endpoint` |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` (default) / `http/protobuf` | `protocol` |
//! | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` | `grpc` / `http/protobuf` | `traces_protocol`, `metrics_protocol` |
//! | `OTEL_EXPORTER_OTLP_HEADERS` | `name=value,...` (values percent-decoded) | `header` |
//! | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_METRICS_HEADERS` | `name=value,...`, replacing the generic headers for that signal | `traces_header`, `metrics_header` |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` | milliseconds (default 10 000, capped to the shutdown deadline) | `export_timeout` |
//! | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT` | milliseconds | `traces_export_timeout`, `metrics_export_timeout` |
//! | `OTEL_EXPORTER_OTLP_COMPRESSION` | `gzip` / `none` (default) | `compression` |
//! | `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, `OTEL_EXPORTER_OTLP_METRICS_COMPRESSION` | `gzip` / `none` | `traces_compression`, `metrics_compression` |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`, `parentbased_rate_limited` (the [span budget](crate::budget)) | `trace_sampler` |
//! | `OTEL_TRACES_SAMPLER_ARG` | ratio 0..=1 for the ratio samplers (default 1.0); new traces per second for `parentbased_rate_limited` (an integer up to 4294967295, default 100) | `trace_sampler` |
//! | `OTEL_METRIC_EXPORT_INTERVAL` | milliseconds (default 60 000) | `metric_export_interval` |
//! | `OTEL_BSP_SCHEDULE_DELAY` | milliseconds (default 5 000) | `span_schedule_delay` |
//! | `OTEL_BSP_EXPORT_TIMEOUT` | milliseconds (default 30 000): caps the traces export timeout | `span_export_timeout` |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | positive integers (default 4096, and 2048 or the queue size if smaller) | `span_queue_size`, `span_batch_size` |
//! | `OTEL_TRACES_EXPORTER` | `otlp` / `none` | `traces` |
//! | `OTEL_METRICS_EXPORTER` | comma list of `otlp`, `prometheus` (feature `prometheus`), or `none` | `metrics`, `prometheus` |
//! | `OTEL_EXPORTER_PROMETHEUS_HOST`, `OTEL_EXPORTER_PROMETHEUS_PORT` | where the scrape endpoint listens (default `localhost`, 9464) | `prometheus_address` |
//! | `OTEL_PROPAGATORS` | comma list of `tracecontext`, `baggage`, or `none` | `propagators` |
//! | `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION` | `explicit_bucket_histogram` / `base2_exponential_bucket_histogram` (applied to the `*.duration` views) | `duration_histogram` |
//! | `RUST_LOG` | `tracing` filter directives | (overrides `log_filter`) |
//! | `OTEL_CONSOLE_LOG` (otlp-kit's own) | `events` (default: events on stderr, spans never formatted for it), `spans` (events with the fields of their spans, which are then formatted as each span is created), `off` (no console log) | `fmt_output`, `fmt_span_context` |
//! | `OTEL_SPAN_SOURCE_ATTRIBUTES` (otlp-kit's own) | `true` / `false` (default `false`: spans without thread, code-location and `target` attributes) | `span_source_attributes` |
//!
//! Precedence follows the specification: a per-signal variable wins over the generic one, whichever
//! is set first. A per-signal endpoint is used as is; the generic endpoint gets `/v1/traces` or
//! `/v1/metrics` appended when that signal goes over HTTP. Timeouts are milliseconds.
//! `OTEL_BSP_EXPORT_TIMEOUT` bounds each export of a span batch: the SDK's batch span processor (on its
//! own thread) does not enforce it itself, so the trace exporter's timeout is the smaller of it and the
//! traces export timeout.
//!
//! ```
//! use otlp_telemetry::TelemetryConfig;
//!
//! let config = TelemetryConfig::from_env_vars([
//!     ("OTEL_SERVICE_NAME", "checkout"),
//!     ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
//!     ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
//! ])?;
//! assert_eq!(config.resolved_service_name(), "checkout");
//! assert_eq!(config.resolved_traces_endpoint(), "http://collector:4318/v1/traces");
//!
//! let err = TelemetryConfig::from_env_vars([("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "environment variable OTEL_EXPORTER_OTLP_TIMEOUT has the invalid value \"10s\": \
//!      expected a whole number of milliseconds greater than zero, such as 10000"
//! );
//! # Ok::<(), otlp_telemetry::ConfigError>(())
//! ```

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{
    Compression, DurationHistogram, Propagator, Protocol, TelemetryConfig, TraceSampler,
};
use crate::error::ConfigError;

/// Endpoint, protocol, headers, timeout and compression of one signal.
const TRACES_VARS: [&str; 5] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
];
const METRICS_VARS: [&str; 5] = [
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
];

const SAMPLERS: &str = "one of always_on, always_off, traceidratio, parentbased_always_on, \
                        parentbased_always_off, parentbased_traceidratio, parentbased_rate_limited";

/// The span budget of `parentbased_rate_limited` without `OTEL_TRACES_SAMPLER_ARG`, in new traces a second.
pub const DEFAULT_TRACE_BUDGET: u64 = 100;

impl TelemetryConfig {
    /// Reads the standard `OTEL_*` variables (and `RUST_LOG`) from the process environment.
    ///
    /// Variables whose name or value is not valid Unicode are ignored. See the [module docs](mod@crate::env)
    /// for the list.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(std::env::vars_os().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            let v = v.into_string().ok()?;
            (k.starts_with("OTEL_") || k == "RUST_LOG").then_some((k, v))
        }))
    }

    /// Like [`TelemetryConfig::from_env`], over the given variables instead of the process environment.
    pub fn from_env_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let get = |name: &'static str| vars.get(name).map(|v| (name, v.trim()));
        let mut c = TelemetryConfig::new();

        if let Some((n, v)) = get("OTEL_SDK_DISABLED") {
            c.enabled = !parse_bool(n, v)?;
        }
        if let Some((_, v)) = get("OTEL_SERVICE_NAME") {
            c.env_service_name = Some(v.to_owned());
        }
        if let Some((n, v)) = get("OTEL_RESOURCE_ATTRIBUTES") {
            c.env_resource_attributes = parse_pairs(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_EXPORTER_OTLP_PROTOCOL") {
            c.protocol = parse_protocol(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            c.endpoint = Some(parse_endpoint(n, v)?);
        }
        if let Some((n, v)) = get("OTEL_EXPORTER_OTLP_HEADERS") {
            c.headers = parse_headers(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_EXPORTER_OTLP_TIMEOUT") {
            c.export_timeout = Some(parse_millis(n, v)?);
        }
        if let Some((n, v)) = get("OTEL_EXPORTER_OTLP_COMPRESSION") {
            c.compression = parse_compression(n, v)?;
        }
        // Per-signal variables win over the generic ones, whatever their order.
        for (names, settings) in [(TRACES_VARS, &mut c.traces), (METRICS_VARS, &mut c.metrics)] {
            let [endpoint, protocol, headers, timeout, compression] = names;
            if let Some((n, v)) = get(endpoint) {
                settings.endpoint = Some(parse_endpoint(n, v)?);
            }
            if let Some((n, v)) = get(protocol) {
                settings.protocol = Some(parse_protocol(n, v)?);
            }
            if let Some((n, v)) = get(headers) {
                settings.headers = Some(parse_headers(n, v)?);
            }
            if let Some((n, v)) = get(timeout) {
                settings.timeout = Some(parse_millis(n, v)?);
            }
            if let Some((n, v)) = get(compression) {
                settings.compression = Some(parse_compression(n, v)?);
            }
        }
        if let Some((n, v)) = get("OTEL_TRACES_EXPORTER") {
            c.traces_enabled = parse_exporter(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_METRICS_EXPORTER") {
            (c.metrics_enabled, c.prometheus_enabled) = parse_metrics_exporters(n, v)?;
        }
        if let Some((_, v)) = get("OTEL_EXPORTER_PROMETHEUS_HOST") {
            c.prometheus_host = v.to_owned();
        }
        if let Some((n, v)) = get("OTEL_EXPORTER_PROMETHEUS_PORT") {
            c.prometheus_port = v
                .parse()
                .map_err(|_| ConfigError::env(n, v, "a port number, 0 to 65535, such as 9464"))?;
        }
        let ratio = get("OTEL_TRACES_SAMPLER_ARG").map(|(n, v)| (n, v, parse_ratio(n, v)));
        let sampler = get("OTEL_TRACES_SAMPLER");
        if let Some((_, "parentbased_rate_limited")) = sampler {
            let budget = match get("OTEL_TRACES_SAMPLER_ARG") {
                Some((n, v)) => parse_budget(n, v)?,
                None => DEFAULT_TRACE_BUDGET,
            };
            c.sampler = TraceSampler::ParentBasedRateLimited(budget);
        } else if let Some((n, v)) = sampler {
            let needs_ratio = matches!(v, "traceidratio" | "parentbased_traceidratio");
            let r = match (needs_ratio, ratio) {
                (true, Some((_, _, r))) => r?,
                // The argument of a sampler that takes none is ignored, as the spec says.
                _ => 1.0,
            };
            c.sampler = match v {
                "always_on" => TraceSampler::AlwaysOn,
                "always_off" => TraceSampler::AlwaysOff,
                "traceidratio" => TraceSampler::TraceIdRatio(r),
                "parentbased_always_on" => TraceSampler::ParentBasedAlwaysOn,
                "parentbased_always_off" => TraceSampler::ParentBasedAlwaysOff,
                "parentbased_traceidratio" => TraceSampler::ParentBasedTraceIdRatio(r),
                _ => return Err(ConfigError::env(n, v, SAMPLERS)),
            };
        } else if let Some((n, v, Err(_))) = ratio {
            // Without OTEL_TRACES_SAMPLER the argument is unused, but a malformed one is still a mistake.
            return Err(ConfigError::env(
                n,
                v,
                "a ratio between 0.0 and 1.0, such as 0.25",
            ));
        }
        if let Some((n, v)) = get("OTEL_METRIC_EXPORT_INTERVAL") {
            c.metric_export_interval = parse_millis(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_BSP_SCHEDULE_DELAY") {
            c.bsp_schedule_delay = parse_millis(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_BSP_EXPORT_TIMEOUT") {
            c.bsp_export_timeout = parse_millis(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_BSP_MAX_QUEUE_SIZE") {
            c.bsp_max_queue_size = parse_count(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            c.bsp_max_export_batch_size = Some(parse_count(n, v)?);
        }
        if c.resolved_span_batch_size() > c.bsp_max_queue_size {
            let v = c.resolved_span_batch_size().to_string();
            return Err(ConfigError::env(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &v,
                format!("at most OTEL_BSP_MAX_QUEUE_SIZE ({})", c.bsp_max_queue_size),
            ));
        }
        if let Some((n, v)) = get("OTEL_PROPAGATORS") {
            c.propagators = parse_propagators(n, v)?;
        }
        if let Some((n, v)) = get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION") {
            c.duration_histogram = match v {
                "explicit_bucket_histogram" => DurationHistogram::default(),
                "base2_exponential_bucket_histogram" => DurationHistogram::exponential(),
                _ => {
                    return Err(ConfigError::env(
                        n,
                        v,
                        "explicit_bucket_histogram or base2_exponential_bucket_histogram",
                    ));
                }
            };
        }
        if let Some((n, v)) = get("OTEL_CONSOLE_LOG") {
            (c.fmt_output, c.fmt_span_context) = match v {
                "events" => (true, false),
                "spans" => (true, true),
                "off" => (false, false),
                _ => return Err(ConfigError::env(n, v, "one of events, spans, off")),
            };
        }
        if let Some((n, v)) = get("OTEL_SPAN_SOURCE_ATTRIBUTES") {
            c.span_source_attributes = parse_bool(n, v)?;
        }
        if let Some((n, v)) = get("RUST_LOG") {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(v) {
                return Err(ConfigError::env(
                    n,
                    v,
                    format!("tracing filter directives such as `info,my_crate=debug` ({e})"),
                ));
            }
            c.env_log_filter = Some(v.to_owned());
        }
        Ok(c)
    }
}

fn parse_protocol(name: &str, v: &str) -> Result<Protocol, ConfigError> {
    match v {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Err(ConfigError::env(
            name,
            v,
            "grpc or http/protobuf (http/json is not supported)",
        )),
        _ => Err(ConfigError::env(name, v, "grpc or http/protobuf")),
    }
}

fn parse_endpoint(name: &str, v: &str) -> Result<String, ConfigError> {
    if crate::config::is_http_url(v) {
        Ok(v.to_owned())
    } else {
        Err(ConfigError::env(
            name,
            v,
            "an absolute http:// or https:// URL such as http://localhost:4317",
        ))
    }
}

fn parse_headers(name: &str, v: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let headers = parse_pairs(name, v)?;
    for (key, value) in &headers {
        if http::HeaderName::from_bytes(key.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            return Err(ConfigError::env(
                name,
                v,
                format!(
                    "name=value pairs with valid HTTP header names and values (bad entry: {key:?})"
                ),
            ));
        }
    }
    Ok(headers)
}

fn parse_compression(name: &str, v: &str) -> Result<Compression, ConfigError> {
    match v {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        _ => Err(ConfigError::env(
            name,
            v,
            "gzip or none (the values the OpenTelemetry specification defines)",
        )),
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ConfigError::env(name, v, "true or false"))
    }
}

fn parse_millis(name: &str, v: &str) -> Result<Duration, ConfigError> {
    match v.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(ConfigError::env(
            name,
            v,
            "a whole number of milliseconds greater than zero, such as 10000",
        )),
    }
}

fn parse_count(name: &str, v: &str) -> Result<usize, ConfigError> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::env(
            name,
            v,
            "a whole number greater than zero, such as 2048",
        )),
    }
}

fn parse_budget(name: &str, v: &str) -> Result<u64, ConfigError> {
    match v.parse::<u64>() {
        Ok(n) if n <= u64::from(u32::MAX) => Ok(n),
        _ => Err(ConfigError::env(
            name,
            v,
            "a whole number of new traces per second for parentbased_rate_limited, such as 100",
        )),
    }
}

fn parse_ratio(name: &str, v: &str) -> Result<f64, ConfigError> {
    match v.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(ConfigError::env(
            name,
            v,
            "a ratio between 0.0 and 1.0, such as 0.25",
        )),
    }
}

fn parse_exporter(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "otlp" => Ok(true),
        "none" => Ok(false),
        _ => Err(ConfigError::env(
            name,
            v,
            "otlp or none (other exporters are not supported)",
        )),
    }
}

/// `OTEL_METRICS_EXPORTER`: (OTLP, Prometheus).
fn parse_metrics_exporters(name: &str, v: &str) -> Result<(bool, bool), ConfigError> {
    let (mut otlp, mut prometheus) = (false, false);
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "otlp" => otlp = true,
            "prometheus" => prometheus = true,
            "none" => {}
            _ => {
                return Err(ConfigError::env(
                    name,
                    v,
                    "a comma list of otlp, prometheus, or none (other exporters are not supported)",
                ));
            }
        }
    }
    Ok((otlp, prometheus))
}

fn parse_propagators(name: &str, v: &str) -> Result<Vec<Propagator>, ConfigError> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "tracecontext" => out.push(Propagator::TraceContext),
            "baggage" => out.push(Propagator::Baggage),
            "none" => {}
            _ => {
                return Err(ConfigError::env(
                    name,
                    v,
                    format!(
                        "a comma-separated list of tracecontext, baggage or none ({item:?} is not supported)"
                    ),
                ));
            }
        }
    }
    if v.split(',').any(|s| s.trim() == "none") {
        out.clear();
    }
    out.dedup();
    Ok(out)
}

/// `key=value,key2=value2`, values percent-decoded (W3C Baggage octet format, as the spec asks).
fn parse_pairs(name: &str, v: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            ConfigError::env(
                name,
                v,
                format!("comma-separated key=value pairs (bad entry: {item:?})"),
            )
        };
        let (key, value) = item.split_once('=').ok_or_else(bad)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad());
        }
        let value = percent_decode(value.trim()).ok_or_else(bad)?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        TelemetryConfig::from_env_vars(vars.iter().copied())
    }

    fn err(vars: &[(&str, &str)]) -> String {
        cfg(vars).unwrap_err().to_string()
    }

    #[test]
    fn metrics_exporters_are_a_list_and_the_prometheus_address_has_defaults() {
        let c = TelemetryConfig::from_env_vars([("OTEL_METRICS_EXPORTER", "otlp, prometheus")])
            .unwrap();
        assert!(c.metrics_enabled && c.prometheus_enabled);
        assert_eq!(
            (c.prometheus_host.as_str(), c.prometheus_port),
            ("localhost", 9464)
        );
        let c = TelemetryConfig::from_env_vars([
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", "9100"),
        ])
        .unwrap();
        assert!(!c.metrics_enabled && c.prometheus_enabled);
        assert_eq!(
            (c.prometheus_host.as_str(), c.prometheus_port),
            ("0.0.0.0", 9100)
        );
        let c = TelemetryConfig::from_env_vars([("OTEL_METRICS_EXPORTER", "none")]).unwrap();
        assert!(!c.metrics_enabled && !c.prometheus_enabled);
    }

    #[test]
    fn empty_environment_gives_spec_defaults() {
        let c = cfg(&[]).unwrap();
        assert!(c.enabled);
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.export_timeout, None);
        assert_eq!(
            c.resolved_export_timeout(crate::Signal::Traces),
            Duration::from_secs(5)
        );
        assert_eq!(c.sampler, TraceSampler::ParentBasedAlwaysOn);
        assert_eq!(c.metric_export_interval, Duration::from_secs(60));
        assert_eq!(c.bsp_schedule_delay, Duration::from_secs(5));
        assert_eq!(c.bsp_export_timeout, Duration::from_secs(30));
        assert_eq!(c.bsp_max_queue_size, 4_096);
        assert_eq!(c.resolved_span_batch_size(), 2048);
        assert_eq!(
            c.propagators,
            vec![Propagator::TraceContext, Propagator::Baggage]
        );
        assert_eq!(c.resolved_traces_endpoint(), "http://localhost:4317");
        c.validate().unwrap();
    }

    #[test]
    fn every_variable_is_read() {
        let c = cfg(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_SERVICE_NAME", "svc"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod, team=a%20b",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/x"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://m:2/y"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret,x-team=t"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "3000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_PROPAGATORS", "tracecontext"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "base2_exponential_bucket_histogram",
            ),
            ("RUST_LOG", "warn,my_crate=debug"),
            ("UNRELATED", "ignored"),
        ])
        .unwrap();
        assert!(!c.enabled);
        assert_eq!(c.resolved_service_name(), "svc");
        assert_eq!(
            c.env_resource_attributes,
            vec![
                ("deployment.environment.name".into(), "prod".into()),
                ("team".into(), "a b".into())
            ]
        );
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.resolved_traces_endpoint(), "http://t:1/x");
        assert_eq!(c.resolved_metrics_endpoint(), "https://m:2/y");
        assert_eq!(
            c.headers,
            vec![
                ("api-key".into(), "s=cret".into()),
                ("x-team".into(), "t".into())
            ]
        );
        assert_eq!(c.export_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(c.sampler, TraceSampler::ParentBasedTraceIdRatio(0.25));
        assert_eq!(c.metric_export_interval, Duration::from_secs(1));
        assert_eq!(c.bsp_schedule_delay, Duration::from_millis(200));
        assert_eq!(c.bsp_export_timeout, Duration::from_secs(3));
        assert_eq!(c.bsp_max_queue_size, 100);
        assert_eq!(c.bsp_max_export_batch_size, Some(10));
        assert!(!c.traces_enabled);
        assert!(c.metrics_enabled);
        assert_eq!(c.propagators, vec![Propagator::TraceContext]);
        assert_eq!(c.duration_histogram, DurationHistogram::exponential());
        assert_eq!(c.env_log_filter.as_deref(), Some("warn,my_crate=debug"));
        c.validate().unwrap();
    }

    /// A queue set below the default batch size, with no batch size set, exports in batches of the queue size
    /// rather than failing validation; a batch size set above the queue is still an error.
    #[test]
    fn default_batch_follows_a_smaller_queue() {
        let c = TelemetryConfig::from_env_vars([("OTEL_BSP_MAX_QUEUE_SIZE", "100")]).unwrap();
        assert_eq!(c.resolved_span_batch_size(), 100);
        c.validate().unwrap();
        let c = TelemetryConfig::new().span_queue_size(100);
        assert_eq!(c.resolved_span_batch_size(), 100);
        c.validate().unwrap();
        assert!(
            TelemetryConfig::new()
                .span_queue_size(100)
                .span_batch_size(101)
                .validate()
                .is_err()
        );
        assert!(
            TelemetryConfig::from_env_vars([
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "101")
            ])
            .is_err()
        );
    }

    #[test]
    fn per_signal_variables_win_over_generic_ones() {
        use crate::config::Signal::{Metrics, Traces};
        // Generic values first in the list: order does not matter, the per-signal ones win.
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "k=generic"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=traces,t=1"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "4000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "6000"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "5000"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ])
        .unwrap();
        assert_eq!(c.resolved_protocol(Traces), Protocol::Grpc);
        assert_eq!(c.resolved_protocol(Metrics), Protocol::HttpProtobuf);
        // The generic endpoint: as is for gRPC, with the signal's path for HTTP.
        assert_eq!(c.resolved_endpoint(Traces), "http://c:4317");
        assert_eq!(c.resolved_endpoint(Metrics), "http://c:4317/v1/metrics");
        assert_eq!(
            c.resolved_headers(Traces),
            &[("k".into(), "traces".into()), ("t".into(), "1".into())]
        );
        assert_eq!(
            c.resolved_headers(Metrics),
            &[("k".into(), "generic".into())]
        );
        // Milliseconds; the span export timeout (5 s) caps the traces timeout (6 s).
        assert_eq!(c.resolved_export_timeout(Traces), Duration::from_secs(5));
        assert_eq!(c.resolved_export_timeout(Metrics), Duration::from_secs(4));
        assert_eq!(c.resolved_compression(Traces), Compression::None);
        assert_eq!(c.resolved_compression(Metrics), Compression::Gzip);
        c.validate().unwrap();

        // A per-signal endpoint is used as is, even over HTTP.
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/custom"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4317"),
        ])
        .unwrap();
        assert_eq!(c.resolved_endpoint(Traces), "http://t:4318/custom");
        assert_eq!(c.resolved_endpoint(Metrics), "http://m:4317");
        // Unset generic values: each signal's protocol picks its own default endpoint.
        let c = cfg(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")]).unwrap();
        assert_eq!(
            c.resolved_endpoint(Traces),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(c.resolved_endpoint(Metrics), "http://localhost:4317");
    }

    #[test]
    fn generic_http_endpoint_gets_signal_paths() {
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
        ])
        .unwrap();
        assert_eq!(c.resolved_traces_endpoint(), "http://c:4318/v1/traces");
        assert_eq!(c.resolved_metrics_endpoint(), "http://c:4318/v1/metrics");
    }

    #[test]
    fn samplers() {
        let s = |name: &str, arg: Option<&str>| {
            let mut v = vec![("OTEL_TRACES_SAMPLER", name)];
            if let Some(a) = arg {
                v.push(("OTEL_TRACES_SAMPLER_ARG", a));
            }
            cfg(&v).map(|c| c.sampler)
        };
        assert_eq!(s("always_on", None), Ok(TraceSampler::AlwaysOn));
        assert_eq!(s("always_off", Some("junk")), Ok(TraceSampler::AlwaysOff));
        assert_eq!(s("traceidratio", None), Ok(TraceSampler::TraceIdRatio(1.0)));
        assert_eq!(
            s("traceidratio", Some("0.5")),
            Ok(TraceSampler::TraceIdRatio(0.5))
        );
        assert_eq!(
            s("parentbased_always_on", None),
            Ok(TraceSampler::ParentBasedAlwaysOn)
        );
        assert_eq!(
            s("parentbased_always_off", None),
            Ok(TraceSampler::ParentBasedAlwaysOff)
        );
        assert_eq!(
            s("parentbased_traceidratio", Some("0")),
            Ok(TraceSampler::ParentBasedTraceIdRatio(0.0))
        );
        assert_eq!(
            s("parentbased_rate_limited", Some("250")),
            Ok(TraceSampler::ParentBasedRateLimited(250))
        );
        assert_eq!(
            s("parentbased_rate_limited", None),
            Ok(TraceSampler::ParentBasedRateLimited(DEFAULT_TRACE_BUDGET))
        );
        for bad in ["0.5", "-1", "lots", "4294967296"] {
            let err = s("parentbased_rate_limited", Some(bad))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("OTEL_TRACES_SAMPLER_ARG")
                    && err.contains(bad)
                    && err.contains("per second"),
                "{err}"
            );
        }
    }

    #[test]
    fn invalid_values_name_variable_value_and_what_is_valid() {
        /// Variables, then what the message must contain: the name, the quoted value, what is valid.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("OTEL_SDK_DISABLED", "yes")],
                "OTEL_SDK_DISABLED",
                "\"yes\"",
                "true or false",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "\"http/json\"",
                "grpc or http/protobuf",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "udp")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "\"udp\"",
                "grpc or http/protobuf",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "\"localhost:4317\"",
                "http://",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "\"ftp://x\"",
                "http://",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
                "OTEL_EXPORTER_OTLP_HEADERS",
                "\"novalue\"",
                "key=value",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_HEADERS", "bad header=1")],
                "OTEL_EXPORTER_OTLP_HEADERS",
                "\"bad header=1\"",
                "valid HTTP header names",
            ),
            (
                &[("OTEL_RESOURCE_ATTRIBUTES", "a=%zz")],
                "OTEL_RESOURCE_ATTRIBUTES",
                "\"a=%zz\"",
                "key=value",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")],
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "\"zstd\"",
                "gzip or none",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "brotli")],
                "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
                "\"brotli\"",
                "gzip or none",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "\"http/json\"",
                "grpc or http/protobuf",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "m:4317")],
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "\"m:4317\"",
                "http://",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad header=1")],
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "\"bad header=1\"",
                "valid HTTP header names",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2s")],
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                "\"2s\"",
                "milliseconds",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TIMEOUT", "-5")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "\"-5\"",
                "milliseconds",
            ),
            (
                &[("OTEL_METRIC_EXPORT_INTERVAL", "0")],
                "OTEL_METRIC_EXPORT_INTERVAL",
                "\"0\"",
                "greater than zero",
            ),
            (
                &[("OTEL_BSP_SCHEDULE_DELAY", "5s")],
                "OTEL_BSP_SCHEDULE_DELAY",
                "\"5s\"",
                "milliseconds",
            ),
            (
                &[("OTEL_BSP_EXPORT_TIMEOUT", "x")],
                "OTEL_BSP_EXPORT_TIMEOUT",
                "\"x\"",
                "milliseconds",
            ),
            (
                &[("OTEL_BSP_MAX_QUEUE_SIZE", "lots")],
                "OTEL_BSP_MAX_QUEUE_SIZE",
                "\"lots\"",
                "whole number",
            ),
            (
                &[
                    ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
                    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
                ],
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "\"20\"",
                "at most OTEL_BSP_MAX_QUEUE_SIZE (10)",
            ),
            (
                &[("OTEL_TRACES_SAMPLER", "jaeger_remote")],
                "OTEL_TRACES_SAMPLER",
                "\"jaeger_remote\"",
                "parentbased_traceidratio",
            ),
            (
                &[
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
                "\"1.5\"",
                "between 0.0 and 1.0",
            ),
            (
                &[("OTEL_TRACES_SAMPLER_ARG", "half")],
                "OTEL_TRACES_SAMPLER_ARG",
                "\"half\"",
                "between 0.0 and 1.0",
            ),
            (
                &[("OTEL_TRACES_EXPORTER", "console")],
                "OTEL_TRACES_EXPORTER",
                "\"console\"",
                "otlp or none",
            ),
            (
                &[("OTEL_METRICS_EXPORTER", "otlp,console")],
                "OTEL_METRICS_EXPORTER",
                "\"otlp,console\"",
                "otlp, prometheus, or none",
            ),
            (
                &[("OTEL_EXPORTER_PROMETHEUS_PORT", "http")],
                "OTEL_EXPORTER_PROMETHEUS_PORT",
                "\"http\"",
                "a port number",
            ),
            (
                &[("OTEL_PROPAGATORS", "tracecontext,b3")],
                "OTEL_PROPAGATORS",
                "\"tracecontext,b3\"",
                "\"b3\" is not supported",
            ),
            (
                &[(
                    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                    "summary",
                )],
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "\"summary\"",
                "base2_exponential_bucket_histogram",
            ),
            (
                &[("RUST_LOG", "info,[[[")],
                "RUST_LOG",
                "\"info,[[[\"",
                "filter directives",
            ),
        ];
        for (vars, name, value, expected) in cases {
            let msg = err(vars);
            assert!(msg.contains(name), "{msg} should name {name}");
            assert!(msg.contains(value), "{msg} should quote {value}");
            assert!(msg.contains(expected), "{msg} should say {expected}");
        }
    }

    #[test]
    fn empty_values_count_as_unset_and_none_disables_propagation() {
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", ""),
            ("OTEL_SERVICE_NAME", "  "),
            ("OTEL_PROPAGATORS", "tracecontext,none"),
        ])
        .unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert!(c.env_service_name.is_none());
        assert!(c.propagators.is_empty());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc").as_deref(), Some("a b,c"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%g0"), None);
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }
}
