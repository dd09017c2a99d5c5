//! Spans dropped by the batch processor are counted live: behind a collector that accepts a connection and never
//! answers, the queue fills, and the exported `otel.sdk.processor.span.processed{error.type=queue_full}` equals
//! the number of spans dropped while the service still runs (read from a real collector, rotel, which receives the
//! metrics).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use otlp_telemetry::TelemetryConfig;

const QUEUE: usize = 16;
const BATCH: usize = 4;
const DROPPED: u64 = 100;

#[test]
fn spans_dropped_behind_a_silent_collector_are_counted_live() {
    let rotel = common::Rotel::start();
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let traces = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let metrics = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let config = TelemetryConfig::from_env_vars([
        ("OTEL_SERVICE_NAME", "processor-drops"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics.as_str()),
    ])
    .unwrap()
    .span_queue_size(QUEUE)
    .span_batch_size(BATCH)
    // Exports only when a batch is full: the first batch is the one the silent collector holds.
    .span_schedule_delay(Duration::from_secs(600))
    .metric_export_interval(Duration::from_millis(200))
    .shutdown_timeout(Duration::from_secs(3))
    .fmt_output(false);
    let mut guard = otlp_telemetry::init(config).expect("init");

    // One full batch: the processor hands it to the exporter, which connects and waits for an answer forever.
    let (accepted, connection) = std::sync::mpsc::channel();
    let acceptor = std::thread::spawn(move || {
        let _ = accepted.send(silent.accept().map(|(c, _)| c));
    });
    for i in 0..BATCH {
        tracing::info_span!("drops.batch", i).in_scope(|| {});
    }
    let _held = connection
        .recv_timeout(Duration::from_secs(20))
        .expect("the first batch's export connects")
        .expect("accept");
    acceptor.join().unwrap();

    // The queue fills, and everything beyond it is dropped.
    for i in 0..QUEUE as u64 + DROPPED {
        tracing::info_span!("drops.queued", i).in_scope(|| {});
    }

    // Live: exported while the guard is alive, the counter says exactly how many were dropped.
    let name = "otel.sdk.processor.span.processed";
    let start = Instant::now();
    let mut seen = None;
    while start.elapsed() < Duration::from_secs(20) {
        seen = common::last_value(&rotel.output(), name, "Str(queue_full)");
        if seen.is_some_and(|v| v >= DROPPED) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen, Some(DROPPED), "{}", rotel.output());
    let out = rotel.output();
    let block = common::metric_block(&out, name).unwrap();
    assert!(
        block.contains("otel.component.type: Str(batching_span_processor)"),
        "{block}"
    );
    assert!(block.contains("-> Scope name: otlp-telemetry") || out.contains("otlp-telemetry"));

    // The rest is lost at the shutdown deadline, and said so.
    let err = guard.shutdown().expect_err("no span reached a collector");
    let traces = err.signal("traces").expect("traces are reported");
    assert_eq!(
        traces.not_delivered,
        Some(BATCH as u64 + QUEUE as u64 + DROPPED),
        "{err}"
    );
}
