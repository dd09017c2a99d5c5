//! End to end over OTLP/HTTP protobuf against a real collector (rotel), from a multi-thread tokio runtime;
//! the guard is simply dropped, which must deliver everything too.

mod common;
mod e2e;

use otlp_telemetry::TelemetryConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_arrive_over_http_protobuf() {
    let rotel = common::Rotel::start();
    let config = TelemetryConfig::from_env_vars([
        ("OTEL_SERVICE_NAME", "e2e-http"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{}", rotel.http_port),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ])
    .unwrap();
    e2e::run(&rotel, config, "e2e-http", e2e::End::Drop).await;
}
