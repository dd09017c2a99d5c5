//! Per-signal `OTEL_EXPORTER_OTLP_*` variables against a real collector (rotel): traces over gRPC to their
//! own endpoint, metrics over HTTP/protobuf to the generic endpoint (with `/v1/metrics` appended), both
//! gzip-compressed.

mod common;

use std::time::Duration;

use otlp_telemetry::TelemetryConfig;

#[test]
fn per_signal_protocol_endpoint_and_compression_reach_the_collector() {
    let rotel = common::Rotel::start();
    let grpc = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let http = format!("http://127.0.0.1:{}", rotel.http_port);
    let config = TelemetryConfig::from_env_vars([
        ("OTEL_SERVICE_NAME", "per-signal"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &http),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &grpc),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-signal=traces"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "4000"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "3000"),
    ])
    .expect("valid variables")
    .fmt_output(false)
    .shutdown_timeout(Duration::from_secs(15));
    let mut guard = otlp_telemetry::init(config).expect("init");

    tracing::info_span!("per.signal.span").in_scope(|| {});
    opentelemetry::global::meter("per-signal")
        .u64_counter("per.signal.count")
        .build()
        .add(3, &[]);
    guard.shutdown().expect("both signals delivered");

    let out = rotel.wait_for(
        &["per.signal.span", "-> Name: per.signal.count"],
        Duration::from_secs(15),
    );
    let count = common::metric_block(&out, "per.signal.count").expect("counter");
    assert!(count.contains("Value: 3"), "{count}");
}
