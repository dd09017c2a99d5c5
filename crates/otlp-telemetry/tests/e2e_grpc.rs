//! End to end over OTLP/gRPC against a real collector (rotel), from a current-thread tokio runtime: the
//! shutdown runs on the runtime thread, which must not deadlock the gRPC connection.

mod common;
mod e2e;

use otlp_telemetry::{Protocol, TelemetryConfig};

#[tokio::test(flavor = "current_thread")]
async fn spans_and_metrics_arrive_over_grpc() {
    let rotel = common::Rotel::start();
    let config = TelemetryConfig::from_env_vars([
        ("OTEL_SERVICE_NAME", "e2e-grpc"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{}", rotel.grpc_port),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ])
    .unwrap();
    assert_eq!(config.clone().protocol(Protocol::Grpc).validate(), Ok(()));
    e2e::run(&rotel, config, "e2e-grpc", e2e::End::Shutdown).await;
}
