//! The console log pays only for what it prints: by default the fmt layer never sees spans, so their fields are not
//! formatted for it; `OTEL_CONSOLE_LOG=spans` prints events with their spans' fields (formatted as each span is
//! created), and `OTEL_CONSOLE_LOG=off` turns the console log off, without code.

mod common;

use common::Counted;
use opentelemetry_sdk::trace::InMemorySpanExporter;
use otlp_telemetry::stack::TracingStack;
use otlp_telemetry::{ConfigError, TelemetryConfig, TraceSampler};

/// Formattings of a span field over 10 sampled-out requests of a root and 2 children (the OpenTelemetry layer never
/// sees them, so only the fmt layer could format the field), each with an event that is printed.
fn formatted(console: Option<&str>) -> usize {
    let vars: Vec<(&str, &str)> = console
        .map(|v| ("OTEL_CONSOLE_LOG", v))
        .into_iter()
        .collect();
    let config = TelemetryConfig::from_env_vars(vars)
        .unwrap()
        .trace_sampler(TraceSampler::ParentBasedAlwaysOff);
    let stack = TracingStack::with_exporter(&config, InMemorySpanExporter::default()).unwrap();
    let field = Counted::default();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        for _ in 0..10 {
            let root = tracing::info_span!("console.request", body = ?field);
            let _root = root.enter();
            for i in 0..2 {
                let child = tracing::info_span!("console.step", step = i, detail = ?field);
                let _child = child.enter();
                tracing::info!(step = i, "printed on the console");
            }
        }
    });
    field.take()
}

#[test]
fn span_fields_are_formatted_only_for_a_console_that_prints_them() {
    assert_eq!(formatted(None), 0, "default: events only");
    assert_eq!(formatted(Some("events")), 0);
    assert_eq!(formatted(Some("off")), 0);
    // The root's field, once, when it is created; the children of a sampled-out trace are never created.
    assert_eq!(formatted(Some("spans")), 10);
    assert!(matches!(
        TelemetryConfig::from_env_vars([("OTEL_CONSOLE_LOG", "loud")]),
        Err(ConfigError::InvalidEnvVar { .. })
    ));
}
