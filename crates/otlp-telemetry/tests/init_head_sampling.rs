//! Head sampling in the stack `init` installs: a sampled-out root and its children export nothing and never reach
//! the OpenTelemetry layer (whose field visitor is the only code here that formats a `Debug` field), a sampled
//! trace is exported whole, `set_trace_ratio` switches between the two, and a second `init` after shutdown brings
//! its own sampler along with its tracer.

mod common;

use std::time::Duration;

use common::{Counted, FORMATTED_PER_TRACED_REQUEST, traced_request as request};

use otlp_telemetry::{TelemetryConfig, TraceSampler};

fn config(service: &str, endpoint: &str, sampler: TraceSampler) -> TelemetryConfig {
    TelemetryConfig::from_env_vars([
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
    ])
    .unwrap()
    .metrics(false)
    .fmt_output(false)
    .log_filter("trace")
    .trace_sampler(sampler)
    .shutdown_timeout(Duration::from_secs(15))
}

#[test]
fn sampled_out_traces_skip_the_otel_layer_through_init_and_reinit() {
    let rotel = common::Rotel::start();
    let endpoint = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let field = Counted::default();

    let mut first = otlp_telemetry::init(config(
        "head-first",
        &endpoint,
        TraceSampler::ParentBasedTraceIdRatio(0.0),
    ))
    .expect("init");
    for _ in 0..20 {
        request("head.first.unsampled", &field);
    }
    assert_eq!(
        field.take(),
        0,
        "the OpenTelemetry layer visited a sampled-out trace"
    );
    first.set_trace_ratio(1.0).unwrap();
    request("head.first.sampled", &field);
    assert_eq!(field.take(), FORMATTED_PER_TRACED_REQUEST);
    first.set_trace_ratio(0.0).unwrap();
    request("head.first.unsampled", &field);
    assert_eq!(field.take(), 0);
    first.shutdown().expect("first shutdown delivers");

    // Between shutdown and the next init nothing is recorded, nor visited.
    request("head.between", &field);
    assert_eq!(field.take(), 0);

    // The second init brings its own sampler: every root is recorded, although the first ended at ratio 0.
    let mut second = otlp_telemetry::init(config(
        "head-second",
        &endpoint,
        TraceSampler::ParentBasedAlwaysOn,
    ))
    .expect("init again");
    request("head.second.sampled", &field);
    assert_eq!(field.take(), FORMATTED_PER_TRACED_REQUEST);
    second.set_trace_ratio(0.0).unwrap();
    for _ in 0..20 {
        request("head.second.unsampled", &field);
    }
    assert_eq!(field.take(), 0);
    second.shutdown().expect("second shutdown delivers");
    assert_eq!(second.dropped_spans(), Some(0));

    let out = rotel.wait_for(
        &[
            "head.first.sampled",
            "head.second.sampled",
            "-> service.name: Str(head-second)",
        ],
        Duration::from_secs(15),
    );
    let spans = common::spans(&out);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(
        !out.contains("unsampled") && !out.contains("head.between"),
        "{names:?}"
    );
    // Two whole traces: each root with its 3 children, in the root's trace.
    assert_eq!(spans.len(), 8, "{names:?}");
    for root in spans.iter().filter(|s| s.name.ends_with(".sampled")) {
        let children = spans
            .iter()
            .filter(|s| s.name == "step" && s.parent_id == root.id)
            .inspect(|s| assert_eq!(s.trace_id, root.trace_id))
            .count();
        assert_eq!(children, 3, "{spans:#?}");
    }
}
