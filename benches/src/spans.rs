//! The request the tracing benches trace (`benches/benches/telemetry.rs`, `examples/span_probe.rs`): a server span
//! with 5 attributes, as `ServerTraceLayer` opens it (the request's strings recorded as `&str`, as it records them,
//! not formatted), and 3 child spans, each entered and closed.

use std::hint::black_box;

/// The server span of a request for `path`, not entered.
#[inline]
pub fn root_span(path: &str) -> tracing::Span {
    tracing::info_span!(
        "HTTP request",
        otel.name = "GET",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = "GET",
        url.path = path,
        http.route = "/orders/{id}",
        server.address = "shop.example",
        http.response.status_code = tracing::field::Empty,
    )
}

/// One request: the server span entered, 3 child spans inside it, the status recorded.
#[inline]
pub fn request(path: &str) {
    let root = root_span(path);
    let _entered = root.enter();
    for i in 0..3u64 {
        let child = tracing::info_span!("step", step = i);
        let _child = child.enter();
        black_box(i);
    }
    root.record("http.response.status_code", 200u16);
}

/// One child span, entered and closed (inside whatever span is current).
#[inline]
pub fn child_span() {
    let child = tracing::info_span!("step", step = 1u64);
    let _child = child.enter();
    black_box(&child);
}
