//! The collector-down scenarios shared by the gRPC and HTTP tests (each runs in its own process, since `init`
//! sets globals): `init` succeeds with no collector, a second `init` is an error, 20 000 spans go into a
//! 64-span queue without blocking, and `shutdown` returns within its deadline with a report that names each
//! signal and exactly how much of it was not delivered.
#![allow(dead_code)] // each test binary uses one of the collectors

use std::net::TcpListener;
use std::time::{Duration, Instant};

use otlp_telemetry::{Protocol, TelemetryConfig, TelemetryError, TelemetryGuard};

use crate::common;

/// What is at the endpoint.
#[derive(Debug)]
pub enum Collector {
    /// A closed port: connections are refused at once.
    Closed,
    /// A listener that accepts connections (the kernel completes the handshake) and never answers.
    Silent,
}

pub const SPANS: u64 = 20_000;

/// Data points of otlp-telemetry's own instruments per collection: `trace.sampler.decisions` (sampled, dropped)
/// and `otel.sdk.processor.span.processed` (delivered, queue_full, export_failed).
pub const OWN_POINTS: u64 = 5;

/// Runs the scenario over `protocol` with a shutdown deadline of `deadline`; returns the shut-down guard.
pub fn run(protocol: Protocol, collector: Collector, deadline: Duration) -> TelemetryGuard {
    // Kept open until the end for `Silent`; never accepted from, so nothing ever answers.
    let (port, _listener) = match collector {
        Collector::Closed => (common::free_port(), None),
        Collector::Silent => {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            (l.local_addr().expect("local addr").port(), Some(l))
        }
    };
    // The default export timeout: it must not exceed the shutdown deadline.
    let config = TelemetryConfig::new()
        .service_name("collector-down")
        .protocol(protocol)
        .endpoint(format!("http://127.0.0.1:{port}"))
        .span_queue_size(64)
        .span_batch_size(16)
        .span_schedule_delay(Duration::from_millis(50))
        .shutdown_timeout(deadline)
        .fmt_output(false);
    let mut guard =
        otlp_telemetry::init(config.clone()).expect("init succeeds with the collector down");

    let again = otlp_telemetry::init(config);
    assert!(
        matches!(again, Err(TelemetryError::AlreadyInitialized)),
        "{again:?}"
    );
    let msg = again.unwrap_err().to_string();
    assert!(msg.contains("already"), "{msg}");

    // Far more spans than the queue holds: they are dropped, not buffered, and recording does not wait.
    // One counter series and one histogram series: two data points per collection, plus otlp-telemetry's own
    // (one collection, at shutdown: the export interval is 60 s).
    let meter = opentelemetry::global::meter("collector-down");
    let counter = meter.u64_counter("down.requests").build();
    let latency = meter
        .f64_histogram("down.request.duration")
        .with_unit("s")
        .build();
    for i in 0..SPANS {
        let span = tracing::info_span!("down.request", i);
        let _e = span.enter();
        counter.add(1, &[]);
        latency.record(0.001, &[]);
    }

    let start = Instant::now();
    let result = guard.shutdown();
    let elapsed = start.elapsed();
    // The deadline is the guard's promise; a little slack for a loaded machine.
    assert!(
        elapsed <= deadline + Duration::from_millis(1500),
        "shutdown took {elapsed:?} with a {deadline:?} deadline ({result:?})"
    );
    // Nothing could be delivered, and the report says exactly how much, per signal.
    let err = result.expect_err("nothing reached a collector");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("traces: {SPANS} spans not delivered")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "metrics: {} data points not delivered",
            2 + OWN_POINTS
        )),
        "{msg}"
    );
    assert!(msg.contains("collector reachable"), "{msg}");
    let traces = err.signal("traces").expect("traces are reported");
    assert_eq!(traces.not_delivered, Some(SPANS), "{msg}");
    assert!(traces.last_export_error.is_some(), "{msg}");
    let metrics = err.signal("metrics").expect("metrics are reported");
    assert_eq!(metrics.not_delivered, Some(2 + OWN_POINTS), "{msg}");
    assert!(metrics.last_export_error.is_some(), "{msg}");
    eprintln!("shutdown took {elapsed:?}: {msg}");
    guard
}
