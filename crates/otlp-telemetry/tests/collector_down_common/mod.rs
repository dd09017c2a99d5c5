//! The collector-down scenario shared by the gRPC and HTTP tests (each runs in its own process, since `init`
//! sets globals): `init` succeeds with nothing listening, a second `init` is an error, 20 000 spans go into a
//! 64-span queue without blocking, and `shutdown` returns within its timeout with an error that says what failed.

use std::time::{Duration, Instant};

use otlp_telemetry::{Protocol, TelemetryConfig, TelemetryError, TelemetryGuard};

use crate::common;

/// Runs the scenario over `protocol` with a shutdown timeout of `timeout`; returns the shut-down guard.
pub fn run(protocol: Protocol, timeout: Duration) -> TelemetryGuard {
    let port = common::free_port(); // bound then released: nothing listens there
    let config = TelemetryConfig::new()
        .service_name("collector-down")
        .protocol(protocol)
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
    // The deadline is enforced by the guard; a hang would blow far past it. Generous slack for a loaded machine.
    assert!(
        elapsed < timeout + Duration::from_secs(3),
        "shutdown took {elapsed:?} with a {timeout:?} timeout ({result:?})"
    );
    // Nothing could be delivered, and shutdown says so instead of pretending.
    let err = result.expect_err("export to a closed port fails");
    assert!(!err.failures.is_empty());
    assert!(err.to_string().contains("collector reachable"), "{err}");
    guard
}
