//! A collector that is down (a closed port) over gRPC: `init` succeeds, recording never blocks, the span
//! queue stays bounded, and `shutdown` returns within its deadline and reports what was not delivered.

mod collector_down_common;
mod common;

use std::time::Duration;

use collector_down_common::Collector;
use otlp_telemetry::Protocol;

#[test]
fn grpc_collector_down() {
    let mut guard =
        collector_down_common::run(Protocol::Grpc, Collector::Closed, Duration::from_secs(2));
    // A second shutdown is a no-op.
    assert!(guard.shutdown().is_ok());
}
