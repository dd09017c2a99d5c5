//! The tower layer opens a server span whose parent comes from the request headers.
#![cfg(feature = "tower")]

use std::cell::Cell;
use std::convert::Infallible;

use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use otlp_telemetry::tower::ServerTraceLayer;
use tower::{ServiceBuilder, ServiceExt as _};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

thread_local! {
    /// Extractions by the global propagator on this thread (each test runs on its own thread).
    static EXTRACTS: Cell<usize> = const { Cell::new(0) };
}

/// W3C Trace Context, counting extractions. Every test installs it, so that whichever test sets the global
/// propagator last, the others still extract.
#[derive(Debug)]
struct Counting(TraceContextPropagator);

impl TextMapPropagator for Counting {
    fn inject_context(&self, cx: &opentelemetry::Context, injector: &mut dyn Injector) {
        self.0.inject_context(cx, injector);
    }

    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        extractor: &dyn Extractor,
    ) -> opentelemetry::Context {
        EXTRACTS.set(EXTRACTS.get() + 1);
        self.0.extract_with_context(cx, extractor)
    }

    fn fields(&self) -> FieldIter<'_> {
        self.0.fields()
    }
}

fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(Counting(TraceContextPropagator::new()));
}

#[tokio::test(flavor = "current_thread")]
async fn server_span_continues_the_callers_trace() {
    install_propagator();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);

    let service = ServiceBuilder::new()
        .layer(ServerTraceLayer::new())
        .service_fn(|req: http::Request<()>| async move {
            // The handler runs inside the server span.
            let cx = tracing::Span::current().context();
            let trace_id = cx.span().span_context().trace_id();
            let status = if req.uri().path() == "/fail" {
                503
            } else {
                200
            };
            let mut res = http::Response::new(trace_id);
            *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(res)
        });

    let req = http::Request::get("/orders/7")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(())
        .unwrap();
    let res = service.clone().oneshot(req).await.unwrap();
    let caller_trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert_eq!(
        *res.body(),
        caller_trace,
        "the handler saw the caller's trace"
    );

    let fail = http::Request::get("/fail").body(()).unwrap();
    let res = service.oneshot(fail).await.unwrap();
    assert_eq!(res.status(), 503);

    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = &spans[0];
    assert_eq!(server.name, "GET");
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.span_context.trace_id(), caller_trace);
    assert_eq!(
        server.parent_span_id,
        SpanId::from_hex("00f067aa0ba902b7").unwrap()
    );
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(server, "url.path").as_deref(), Some("/orders/7"));
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));

    // Without headers the server span is a new root; a 5xx marks it as an error.
    let failed = &spans[1];
    assert_eq!(failed.parent_span_id, SpanId::INVALID);
    assert_ne!(failed.span_context.trace_id(), caller_trace);
    assert_eq!(
        attr(failed, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert!(
        matches!(failed.status, opentelemetry::trace::Status::Error { .. }),
        "{:?}",
        failed.status
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_sampled_out_request_extracts_only_what_it_carries_and_still_propagates() {
    install_propagator();
    let exporter = InMemorySpanExporter::default();
    let config = otlp_telemetry::TelemetryConfig::new()
        .trace_sampler(otlp_telemetry::TraceSampler::ParentBasedTraceIdRatio(0.0))
        .fmt_output(false);
    let stack = otlp_telemetry::stack::TracingStack::with_exporter(&config, exporter.clone())
        .expect("stack");
    let _default = tracing::dispatcher::set_default(stack.dispatch());

    // The handler calls downstream: the traceparent it would send.
    let service = ServiceBuilder::new()
        .layer(ServerTraceLayer::new())
        .service_fn(|_req: http::Request<()>| async move {
            let mut outgoing = http::HeaderMap::new();
            otlp_telemetry::inject_context(&mut outgoing);
            let traceparent = outgoing
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok::<_, Infallible>(http::Response::new(traceparent))
        });

    // No propagation header: nothing to extract, and the new (sampled-out) trace still propagates, unsampled.
    EXTRACTS.set(0);
    let plain = http::Request::get("/orders/7")
        .header("host", "shop.example")
        .header("user-agent", "test")
        .body(())
        .unwrap();
    let res = service.clone().oneshot(plain).await.unwrap();
    assert_eq!(
        EXTRACTS.get(),
        0,
        "a request without traceparent is not parsed"
    );
    let sent = res.into_body().expect("a sampled-out trace propagates");
    assert!(sent.ends_with("-00"), "flagged as not sampled: {sent}");

    // A caller's unsampled trace is extracted once and continued, unsampled.
    let caller = http::Request::get("/orders/8")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )
        .body(())
        .unwrap();
    let res = service.oneshot(caller).await.unwrap();
    assert_eq!(EXTRACTS.get(), 1);
    let sent = res.into_body().expect("the caller's trace propagates");
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-00"),
        "{sent}"
    );

    stack.provider().force_flush().unwrap();
    assert!(exporter.get_finished_spans().unwrap().is_empty());
}
