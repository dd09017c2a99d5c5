//! Another global `tracing` subscriber already installed: `init` fails with a typed error and installs
//! nothing, and a corrected configuration (`install_tracing_subscriber(false)`) can then succeed.

use opentelemetry::trace::{Span as _, Tracer as _};
use otlp_telemetry::{TelemetryConfig, TelemetryError};

#[test]
fn existing_subscriber_is_a_typed_error_and_init_can_be_retried() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry())
        .expect("first subscriber");

    let config = TelemetryConfig::new()
        .traces(false)
        .metrics(false)
        .fmt_output(false);
    let err = otlp_telemetry::init(config.clone()).unwrap_err();
    assert!(
        matches!(err, TelemetryError::SubscriberAlreadySet(_)),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("install_tracing_subscriber(false)"),
        "{err}"
    );

    // Nothing global was installed by the failed call, so a corrected one succeeds.
    let mut guard = otlp_telemetry::init(config.install_tracing_subscriber(false)).expect("retry");
    // The global tracer provider is ours: spans get real, sampled contexts.
    let mut span = opentelemetry::global::tracer("conflict").start("direct");
    assert!(span.span_context().is_sampled());
    span.end();
    guard.shutdown().unwrap();
}
