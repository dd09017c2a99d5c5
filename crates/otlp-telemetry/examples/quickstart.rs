//! Turn OpenTelemetry on in three lines, then export one span and one counter.
//!
//! ```text
//! # Any OTLP collector; for example rotel (pip install rotel) printing what it receives:
//! rotel-agent start --exporter blackhole --debug-log traces --debug-log metrics &
//! cargo run -p otlp-telemetry --example quickstart
//! # Other collectors, protocols or names: the standard variables, e.g.
//! OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
//! OTEL_SERVICE_NAME=demo cargo run -p otlp-telemetry --example quickstart
//! ```

use otlp_telemetry::TelemetryConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The three lines: read OTEL_* (validated), name the service, install everything.
    let config = TelemetryConfig::from_env()?.service_name("quickstart");
    let mut telemetry = otlp_telemetry::init(config)?;

    // One span (any `tracing` span is exported when it closes), with an attribute and an event.
    tracing::info_span!("quickstart.work", items = 3).in_scope(|| tracing::info!("doing the work"));

    // One counter, through the global meter provider that `init` installed.
    let meter = opentelemetry::global::meter("quickstart");
    meter.u64_counter("quickstart.items").build().add(3, &[]);

    // Dropping the guard would do the same; calling it explicitly reports what was not delivered.
    telemetry.shutdown()?;
    Ok(())
}
