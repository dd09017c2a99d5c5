//! Dynamic sampling through the guard, and propagation through real `tracing` spans, after `init`.

use opentelemetry::trace::TraceContextExt as _;
use otlp_telemetry::{TelemetryConfig, TraceSampler, extract_context, inject_context};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

fn root_sampled() -> bool {
    let span = tracing::info_span!("root");
    span.context().span().span_context().is_sampled()
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn set_trace_ratio_takes_effect_and_context_propagates() {
    // No exporter needed: a tracer provider (and its sampler) exists even when traces are not exported.
    let mut guard = otlp_telemetry::init(
        TelemetryConfig::new()
            .traces(false)
            .metrics(false)
            .fmt_output(false)
            .trace_sampler(TraceSampler::ParentBasedAlwaysOn),
    )
    .expect("init");
    assert_eq!(guard.trace_ratio(), Some(1.0));
    assert!((0..100).all(|_| root_sampled()));

    guard.set_trace_ratio(0.0).unwrap();
    assert_eq!(guard.trace_ratio(), Some(0.0));
    assert!((0..100).all(|_| !root_sampled()));

    // Parent-based: a sampled caller is still followed at ratio 0, and the span continues its trace.
    let mut incoming = http::HeaderMap::new();
    incoming.insert("traceparent", PARENT.parse().unwrap());
    // The caller's context is current when the span is created: the head-sampling decision follows it.
    let server = {
        let _caller = extract_context(&incoming).attach();
        tracing::info_span!("server")
    };
    {
        let _entered = server.enter();
        let cx = server.context();
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );

        // inject_context writes the current span (not the caller's) into outgoing headers.
        let mut outgoing = http::HeaderMap::new();
        inject_context(&mut outgoing);
        let traceparent = outgoing["traceparent"].to_str().unwrap().to_owned();
        assert_eq!(
            traceparent,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", sc.span_id())
        );
        assert_ne!(traceparent, PARENT);
    }

    // A handle changes the ratio from another thread.
    let handle = guard.trace_ratio_handle().unwrap();
    std::thread::spawn(move || handle.set_ratio(1.0).unwrap())
        .join()
        .unwrap();
    assert!(root_sampled());

    guard.set_trace_ratio(0.5).unwrap();
    let n = (0..1000).filter(|_| root_sampled()).count();
    // Random trace ids: 500 expected; 350..650 is more than 9 standard deviations wide.
    assert!((350..650).contains(&n), "{n} of 1000 sampled at ratio 0.5");

    // The span budget, on top of the ratio: none, then no budget again.
    guard.set_trace_ratio(1.0).unwrap();
    guard.set_trace_budget(Some(0)).unwrap();
    assert!((0..100).all(|_| !root_sampled()));
    let budget = guard.trace_budget_handle().unwrap();
    assert_eq!(budget.per_second(), Some(0));
    guard.set_trace_budget(None).unwrap();
    assert!((0..100).all(|_| root_sampled()));
    assert!(guard.set_trace_budget(Some(u64::MAX)).is_err());
    assert_eq!(budget.per_second(), None);

    let err = guard.set_trace_ratio(1.5).unwrap_err().to_string();
    assert!(
        err.contains("1.5") && err.contains("between 0.0 and 1.0"),
        "{err}"
    );
    guard.shutdown().unwrap();
}
