//! `OTEL_SDK_DISABLED=true`: `init` still installs logging, exports nothing, and the guard is a no-op.

use opentelemetry::trace::TraceContextExt as _;
use otlp_telemetry::TelemetryConfig;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[test]
fn disabled_sdk_installs_no_providers_and_shuts_down_at_once() {
    let config = TelemetryConfig::from_env_vars([
        ("OTEL_SDK_DISABLED", "true"),
        // Would fail to connect if anything tried to export.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
    ])
    .unwrap()
    .fmt_output(false);
    let mut guard = otlp_telemetry::init(config).expect("init");
    assert!(guard.tracer_provider().is_none());
    assert!(guard.meter_provider().is_none());
    assert_eq!(guard.trace_ratio(), None);
    assert!(guard.set_trace_ratio(0.5).is_ok());

    let span = tracing::info_span!("not exported");
    assert!(!span.context().span().span_context().is_valid());
    drop(span);

    // No-op meter: recording is harmless.
    opentelemetry::global::meter("disabled")
        .u64_counter("disabled.count")
        .build()
        .add(1, &[]);
    assert!(guard.flush().is_ok());
    assert!(guard.shutdown().is_ok());
}
