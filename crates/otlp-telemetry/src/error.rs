//! Typed errors: what went wrong and how to fix it.
//!
//! - [`ConfigError`]: a configuration value (from the environment or from code) is invalid.
//! - [`TelemetryError`]: [`init`](crate::init()) could not turn telemetry on.
//! - [`ShutdownError`]: [`TelemetryGuard::shutdown`](crate::TelemetryGuard::shutdown) could not flush
//!   everything within its deadline.
//!
//! ```
//! use otlp_telemetry::TelemetryConfig;
//!
//! let err = TelemetryConfig::from_env_vars([("OTEL_TRACES_SAMPLER", "sometimes")]).unwrap_err();
//! let msg = err.to_string();
//! assert!(msg.contains("OTEL_TRACES_SAMPLER"));
//! assert!(msg.contains("sometimes"));
//! assert!(msg.contains("parentbased_traceidratio"));
//! ```

use std::fmt;
use std::time::Duration;

/// A configuration value is invalid.
///
/// The message names the setting (an environment variable such as `OTEL_EXPORTER_OTLP_PROTOCOL`, or a
/// builder method such as `TelemetryConfig::trace_sampler`), the rejected value, and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds a value that cannot be used.
    InvalidEnvVar {
        /// The variable, e.g. `OTEL_EXPORTER_OTLP_TIMEOUT`.
        name: String,
        /// The value found.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// A value given in code cannot be used.
    InvalidValue {
        /// The setting, e.g. `TelemetryConfig::bsp_max_queue_size`.
        setting: &'static str,
        /// The value given, rendered with `Debug`.
        value: String,
        /// What would be valid.
        expected: String,
    },
}

impl ConfigError {
    pub(crate) fn env(name: &str, value: &str, expected: impl Into<String>) -> Self {
        ConfigError::InvalidEnvVar {
            name: name.to_owned(),
            value: value.to_owned(),
            expected: expected.into(),
        }
    }

    pub(crate) fn value(
        setting: &'static str,
        value: impl fmt::Debug,
        expected: impl Into<String>,
    ) -> Self {
        ConfigError::InvalidValue {
            setting,
            value: format!("{value:?}"),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidEnvVar {
                name,
                value,
                expected,
            } => write!(
                f,
                "environment variable {name} has the invalid value {value:?}: expected {expected}"
            ),
            ConfigError::InvalidValue {
                setting,
                value,
                expected,
            } => write!(f, "{setting} was given {value}: expected {expected}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// [`init`](crate::init()) could not turn telemetry on.
#[derive(Debug)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The configuration is invalid; nothing was installed.
    Config(ConfigError),
    /// Telemetry is already on: the guard of an earlier `init` is alive. Telemetry is process-global
    /// (global tracer and meter providers, global `tracing` subscriber): shut that guard down (or drop it)
    /// before calling `init` again.
    AlreadyInitialized,
    /// Another global `tracing` subscriber is already installed (by another library or a test harness).
    /// Remove it, or call `TelemetryConfig::install_tracing_subscriber(false)` and compose the layers yourself.
    SubscriberAlreadySet(String),
    /// The requested OTLP transport is not compiled in.
    TransportNotCompiled {
        /// `grpc` or `http/protobuf`.
        protocol: &'static str,
        /// The cargo feature of `otlp-telemetry` that enables it.
        feature: &'static str,
    },
    /// The OTLP exporter for a signal could not be built (for example a malformed endpoint URL).
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The endpoint that was configured.
        endpoint: String,
        /// The exporter's own error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The background thread that drives the gRPC connection could not be started.
    Runtime(std::io::Error),
    /// The Prometheus scrape endpoint (`OTEL_METRICS_EXPORTER=prometheus`) could not listen on its address.
    Prometheus {
        /// `host:port` (`OTEL_EXPORTER_PROMETHEUS_HOST`, `OTEL_EXPORTER_PROMETHEUS_PORT`).
        address: String,
        /// Why: the port is taken, the host does not resolve...
        source: std::io::Error,
    },
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TelemetryError::Config(e) => write!(f, "invalid telemetry configuration: {e}"),
            TelemetryError::AlreadyInitialized => f.write_str(
                "otlp_telemetry::init was already called and its TelemetryGuard is still alive: keep one \
                 guard for the whole process, or shut it down (or drop it) before calling init again",
            ),
            TelemetryError::SubscriberAlreadySet(e) => write!(
                f,
                "a global tracing subscriber is already installed ({e}): remove it, or use \
                 TelemetryConfig::install_tracing_subscriber(false)"
            ),
            TelemetryError::TransportNotCompiled { protocol, feature } => write!(
                f,
                "OTLP protocol {protocol} is not compiled in: enable the `{feature}` feature of otlp-telemetry, \
                 or choose another protocol"
            ),
            TelemetryError::Exporter {
                signal,
                endpoint,
                source,
            } => write!(
                f,
                "could not build the OTLP {signal} exporter for endpoint {endpoint:?}: {source}"
            ),
            TelemetryError::Runtime(e) => write!(
                f,
                "could not start the otlp-telemetry exporter thread: {e}"
            ),
            TelemetryError::Prometheus { address, source } => write!(
                f,
                "could not serve Prometheus metrics on {address}: {source}; set OTEL_EXPORTER_PROMETHEUS_HOST \
                 and OTEL_EXPORTER_PROMETHEUS_PORT (or TelemetryConfig::prometheus_address) to a free address"
            ),
        }
    }
}

impl std::error::Error for TelemetryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TelemetryError::Config(e) => Some(e),
            TelemetryError::Exporter { source, .. } => Some(source),
            TelemetryError::Runtime(e) => Some(e),
            TelemetryError::Prometheus { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for TelemetryError {
    fn from(e: ConfigError) -> Self {
        TelemetryError::Config(e)
    }
}

/// Why one signal could not be flushed and shut down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownFailure {
    /// The provider did not finish within the deadline; data still queued may be lost.
    TimedOut(Duration),
    /// The provider reported an error (for example the collector refused or could not be reached).
    Failed(String),
}

impl fmt::Display for ShutdownFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownFailure::TimedOut(d) => write!(f, "did not finish within {d:?}"),
            ShutdownFailure::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// One signal in a [`ShutdownError`]: how much of it was not delivered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalReport {
    /// `traces` or `metrics`.
    pub signal: &'static str,
    /// Spans (traces) or data points (metrics) recorded since `init` whose export had not succeeded when
    /// shutdown returned: dropped from the full span queue, refused by or undeliverable to the collector,
    /// or still queued or in flight at the deadline. `None` for [`flush`](crate::TelemetryGuard::flush),
    /// which does not count.
    pub not_delivered: Option<u64>,
    /// The provider's own shutdown (or flush) failure, if any.
    pub failure: Option<ShutdownFailure>,
    /// The last export error seen for this signal, e.g. `connection refused`.
    pub last_export_error: Option<String>,
}

impl SignalReport {
    /// `spans` or `data points`.
    pub fn unit(&self) -> &'static str {
        if self.signal == "traces" {
            "spans"
        } else {
            "data points"
        }
    }
}

impl fmt::Display for SignalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.signal)?;
        let mut details = Vec::new();
        match self.not_delivered {
            Some(n) => write!(f, "{n} {} not delivered", self.unit())?,
            None => f.write_str("not flushed")?,
        }
        if let Some(e) = &self.last_export_error {
            details.push(format!("last export error: {e}"));
        }
        match &self.failure {
            Some(ShutdownFailure::TimedOut(d)) => {
                details.push(format!("did not finish within {d:?}"))
            }
            // A failed export is already named above; the provider's own message adds nothing to it.
            Some(ShutdownFailure::Failed(e)) if self.last_export_error.is_none() => {
                details.push(e.clone())
            }
            _ => {}
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join("; "))?;
        }
        Ok(())
    }
}

/// [`TelemetryGuard::shutdown`](crate::TelemetryGuard::shutdown) (or
/// [`flush`](crate::TelemetryGuard::flush)) could not deliver everything: each signal concerned, with the
/// exact number of spans or data points not delivered. Shutdown still completed as far as it could within
/// its deadline: the guard is finished either way.
///
/// ```text
/// telemetry shutdown incomplete: traces: 20000 spans not delivered (last export error: ...);
/// metrics: 2 data points not delivered (last export error: ...) (is the collector reachable at the
/// configured endpoint?)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownError {
    /// Each signal that lost data or whose provider failed, `traces` first.
    pub signals: Vec<SignalReport>,
}

impl ShutdownError {
    /// The report of one signal (`traces` or `metrics`), if it is in the error.
    pub fn signal(&self, signal: &str) -> Option<&SignalReport> {
        self.signals.iter().find(|s| s.signal == signal)
    }
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("telemetry shutdown incomplete")?;
        for (i, report) in self.signals.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{report}")?;
        }
        f.write_str(" (is the collector reachable at the configured endpoint?)")
    }
}

impl std::error::Error for ShutdownError {}
