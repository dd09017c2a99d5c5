//! A collector that is down (a closed port) over HTTP/protobuf: `init` succeeds, recording never blocks, the span
//! queue stays bounded and the spans it could not hold are counted, and `shutdown` returns within its timeout.
//! Also: a second `init` is an error.

mod collector_down_common;
mod common;

use std::time::Duration;

use otlp_telemetry::Protocol;

#[test]
fn http_collector_down_never_blocks() {
    // Long enough for the few queued spans to fail their export, so that the drop count is exact.
    let mut guard = collector_down_common::run(Protocol::HttpProtobuf, Duration::from_secs(10));
    // 20 000 spans into a 64-span queue whose exports keep failing: most were dropped, and counted.
    let dropped = guard
        .dropped_spans()
        .expect("trace shutdown finished in time");
    assert!(dropped > 0 && dropped <= 20_000, "{dropped}");
    // A second shutdown is a no-op.
    assert!(guard.shutdown().is_ok());
}
