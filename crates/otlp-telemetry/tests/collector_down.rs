//! A collector that is down (a closed port) over gRPC: `init` succeeds, recording never blocks, the span
//! queue stays bounded, and `shutdown` returns within its timeout. Also: a second `init` is an error.

mod collector_down_common;
mod common;

use std::time::Duration;

use otlp_telemetry::Protocol;

#[test]
fn grpc_collector_down_never_blocks_and_init_twice_is_an_error() {
    let mut guard = collector_down_common::run(Protocol::Grpc, Duration::from_secs(2));
    // A second shutdown is a no-op.
    assert!(guard.shutdown().is_ok());
}
