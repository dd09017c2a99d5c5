//! A collector that is down (a closed port) over HTTP/protobuf: `init` succeeds, recording never blocks, the
//! span queue stays bounded, and `shutdown` returns within its deadline and reports what was not delivered.

mod collector_down_common;
mod common;

use std::time::Duration;

use collector_down_common::Collector;
use otlp_telemetry::Protocol;

#[test]
fn http_collector_down() {
    let mut guard = collector_down_common::run(
        Protocol::HttpProtobuf,
        Collector::Closed,
        Duration::from_secs(2),
    );
    assert!(guard.shutdown().is_ok());
}
