//! Every part of a span reaches a real collector (rotel) through `init`'s OTLP span exporter, over both
//! transports: attributes of each type, events, links, status, resource and instrumentation scope.

mod common;

use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{InstrumentationScope, KeyValue, Value, global};
use otlp_telemetry::{TelemetryConfig, TraceSampler};

fn emit(tag: &str) {
    let tracer = global::tracer_with_scope(
        InstrumentationScope::builder("fields-scope")
            .with_version("4.5.6")
            .with_attributes([KeyValue::new("scope.attr", "s")])
            .build(),
    );
    let linked = tracer.start(format!("{tag}.linked"));
    let linked_cx = linked.span_context().clone();
    drop(linked);
    let mut span = tracer
        .span_builder(format!("{tag}.span"))
        .with_kind(SpanKind::Client)
        .with_links(vec![opentelemetry::trace::Link::with_context(linked_cx)])
        .start(&tracer);
    span.set_attribute(KeyValue::new("str", "text"));
    span.set_attribute(KeyValue::new("int", 42i64));
    span.set_attribute(KeyValue::new("float", 0.5));
    span.set_attribute(KeyValue::new("flag", true));
    span.set_attribute(KeyValue::new("list", Value::Array(vec![1i64, 2, 3].into())));
    span.add_event(
        "retrying",
        vec![
            KeyValue::new("attempt", 2i64),
            KeyValue::new("why", "timeout"),
        ],
    );
    span.set_status(Status::error(format!("{tag} failed")));
    let cx = opentelemetry::Context::current_with_span(span);
    // A child through the same tracer: its parent is the span above.
    tracer.start_with_context(format!("{tag}.child"), &cx).end();
    cx.span().end();
}

fn check(out: &str, tag: &str) {
    let spans = common::spans(out);
    let span = spans
        .iter()
        .find(|s| s.name == format!("{tag}.span"))
        .unwrap_or_else(|| panic!("{tag}.span missing in {out}"));
    let child = spans
        .iter()
        .find(|s| s.name == format!("{tag}.child"))
        .expect("child");
    assert_eq!(child.parent_id, span.id);
    assert_eq!(child.trace_id, span.trace_id);
    assert_eq!(span.kind, "SPAN_KIND_CLIENT", "{span:?}");
    for a in [
        "str: Str(text)",
        "int: Int(42)",
        "float: Double(0.5)",
        "flag: Bool(true)",
    ] {
        assert!(span.attributes.contains(&a.to_owned()), "{a} in {span:?}");
    }
    // The parts that the span parser does not split out, from the span's own block.
    let start = out
        .find(&format!("Name           : {tag}.span"))
        .unwrap_or_else(|| out.find(&format!("{tag}.span")).expect("span block"));
    let block = &out[start..];
    let block = &block[..block.find("Span #").unwrap_or(block.len())];
    for needle in [
        "list",
        "retrying",
        "attempt: Int(2)",
        "why: Str(timeout)",
        &format!("{tag} failed"),
        "STATUS_CODE_ERROR",
    ] {
        assert!(block.contains(needle), "{needle} in {block}");
    }
    let linked = spans
        .iter()
        .find(|s| s.name == format!("{tag}.linked"))
        .expect("linked span");
    assert!(
        block.contains(&linked.id),
        "link to {} in {block}",
        linked.id
    );
    // Resource and scope.
    assert!(out.contains("-> service.name: Str(span-fields)"));
    assert!(out.contains("-> deployment.environment.name: Str(e2e)"));
    assert!(out.contains("fields-scope"), "scope name");
    assert!(out.contains("4.5.6"), "scope version");
    assert!(out.contains("scope.attr: Str(s)"), "scope attribute");
}

#[test]
fn spans_arrive_whole_over_grpc_and_over_gzipped_http() {
    let rotel = common::Rotel::start();
    let runs = [
        (
            "grpc",
            format!("http://127.0.0.1:{}", rotel.grpc_port),
            "none",
        ),
        (
            "http/protobuf",
            format!("http://127.0.0.1:{}", rotel.http_port),
            "gzip",
        ),
    ];
    for (protocol, endpoint, compression) in runs {
        let tag = protocol.replace('/', "_");
        let config = TelemetryConfig::from_env_vars([
            ("OTEL_SERVICE_NAME", "span-fields"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", compression),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-test=fields"),
        ])
        .expect("valid variables")
        .resource_attribute("deployment.environment.name", "e2e")
        .trace_sampler(TraceSampler::ParentBasedAlwaysOn)
        .metrics(false)
        .fmt_output(false)
        .shutdown_timeout(Duration::from_secs(15));
        let mut guard = otlp_telemetry::init(config).expect("init");
        emit(&tag);
        guard.shutdown().expect("delivered");
        assert_eq!(guard.dropped_spans(), Some(0));
        let out = rotel.wait_for(
            &[
                &format!("{tag}.span"),
                &format!("{tag}.child"),
                &format!("{tag}.linked"),
            ],
            Duration::from_secs(15),
        );
        check(&out, &tag);
    }
}
