//! A collector that accepts connections and never answers, over HTTP/protobuf: `shutdown` still returns
//! within its deadline and reports exactly what was not delivered.

mod collector_down_common;
mod common;

use std::time::Duration;

use collector_down_common::Collector;
use otlp_telemetry::Protocol;

#[test]
fn http_collector_silent() {
    let mut guard = collector_down_common::run(
        Protocol::HttpProtobuf,
        Collector::Silent,
        Duration::from_secs(2),
    );
    assert!(guard.shutdown().is_ok());
}
