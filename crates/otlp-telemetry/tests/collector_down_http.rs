//! A collector that is down (a closed port) over HTTP/protobuf: `init` succeeds, recording never blocks, the span
//! queue stays bounded and the spans it could not hold are counted, and `shutdown` returns within its timeout.
//! Also: a second `init` is an error.

mod common;

use std::time::{Duration, Instant};

use otlp_telemetry::{TelemetryConfig, TelemetryError};

#[test]
fn http_collector_down_never_blocks() {
    let port = common::free_port(); // bound then released: nothing listens there
    // Long enough for the few queued spans to fail their export, so that the drop count is exact.
    let timeout = Duration::from_secs(10);
    let config = TelemetryConfig::new()
        .service_name("collector-down")
        .protocol(otlp_telemetry::Protocol::HttpProtobuf)
        .endpoint(format!("http://127.0.0.1:{port}"))
        .export_timeout(Duration::from_millis(500))
        .span_queue_size(64)
        .span_batch_size(16)
        .span_schedule_delay(Duration::from_millis(50))
        .shutdown_timeout(timeout)
        .fmt_output(false);
    let mut guard =
        otlp_telemetry::init(config.clone()).expect("init succeeds with the collector down");

    let again = otlp_telemetry::init(config);
    assert!(
        matches!(again, Err(TelemetryError::AlreadyInitialized)),
        "{again:?}"
    );
    let msg = again.unwrap_err().to_string();
    assert!(msg.contains("already called"), "{msg}");

    // Far more spans than the queue holds: they are dropped, not buffered, and recording does not wait.
    let meter = opentelemetry::global::meter("collector-down");
    let counter = meter.u64_counter("down.requests").build();
    for i in 0..20_000u64 {
        let span = tracing::info_span!("down.request", i);
        let _e = span.enter();
        counter.add(1, &[]);
    }

    let start = Instant::now();
    let result = guard.shutdown();
    let elapsed = start.elapsed();
    // The deadline is enforced by the guard; allow generous slack for a loaded 2-core machine.
    assert!(
        elapsed < timeout + Duration::from_secs(3),
        "shutdown took {elapsed:?} with a {timeout:?} timeout ({result:?})"
    );
    // Nothing could be delivered, and shutdown says so instead of pretending.
    let err = result.expect_err("export to a closed port fails");
    assert!(!err.failures.is_empty());
    assert!(err.to_string().contains("collector reachable"), "{err}");
    // 20 000 spans into a 64-span queue whose exports keep failing: most were dropped, and counted.
    let dropped = guard
        .dropped_spans()
        .expect("trace shutdown finished in time");
    assert!(dropped > 0 && dropped <= 20_000, "{dropped}");
    // A second shutdown is a no-op.
    assert!(guard.shutdown().is_ok());
}
