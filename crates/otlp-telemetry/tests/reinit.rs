//! `init` again after `shutdown` (tests, services that reload their telemetry): the second configuration
//! takes over, `tracing` spans included, while a second `init` with a live guard stays a typed error.

mod common;

use std::time::Duration;

use otlp_telemetry::{TelemetryConfig, TelemetryError};

fn config(service: &str, protocol: &str, endpoint: String) -> TelemetryConfig {
    TelemetryConfig::from_env_vars([
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
    ])
    .unwrap()
    .fmt_output(false)
    .shutdown_timeout(Duration::from_secs(15))
}

#[test]
fn init_after_shutdown_takes_over_and_init_while_live_is_an_error() {
    let rotel = common::Rotel::start();
    let grpc = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let http = format!("http://127.0.0.1:{}", rotel.http_port);

    let mut first =
        otlp_telemetry::init(config("reinit-first", "grpc", grpc.clone())).expect("init");
    tracing::info_span!("reinit.first.span").in_scope(|| {});
    let again = otlp_telemetry::init(config("reinit-twice", "grpc", grpc));
    assert!(
        matches!(again, Err(TelemetryError::AlreadyInitialized)),
        "{again:?}"
    );
    first.shutdown().expect("first shutdown delivers");
    // After shutdown, and before the next init, spans go nowhere.
    tracing::info_span!("reinit.between.span").in_scope(|| {});

    // Another service name and another transport: everything follows the second configuration.
    let mut second = otlp_telemetry::init(config("reinit-second", "http/protobuf", http.clone()))
        .expect("init again");
    let live = otlp_telemetry::init(config("reinit-third", "http/protobuf", http));
    assert!(
        matches!(live, Err(TelemetryError::AlreadyInitialized)),
        "{live:?}"
    );
    tracing::info_span!("reinit.second.span").in_scope(|| {});
    opentelemetry::global::meter("reinit")
        .u64_counter("reinit.second.count")
        .build()
        .add(5, &[]);
    second.shutdown().expect("second shutdown delivers");
    assert_eq!(second.dropped_spans(), Some(0));

    let out = rotel.wait_for(
        &[
            "reinit.first.span",
            "reinit.second.span",
            "-> Name: reinit.second.count",
            "-> service.name: Str(reinit-first)",
            "-> service.name: Str(reinit-second)",
        ],
        Duration::from_secs(15),
    );
    assert!(!out.contains("reinit.between.span"), "{out}");
    assert!(!out.contains("reinit-twice") && !out.contains("reinit-third"));
    let spans = common::spans(&out);
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.name.starts_with("reinit."))
            .count(),
        2,
        "{spans:#?}"
    );
}
