//! No span lost unseen, for both ways a span can be lost: every span whose export failed is counted, while the
//! service runs, in `otel.sdk.processor.span.processed` with `error.type` = `export_failed` (delivered ones
//! without `error.type`); and a full queue is warned about at most once per interval, however many spans it
//! drops meanwhile.
//!
//! The warning test re-runs its own binary as a child process (with `OTLP_SPAN_OUTCOMES_CHILD` set) so that the
//! console's stderr can be read.

mod exported;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::global;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use otlp_telemetry::stack::TracingStack;
use otlp_telemetry::{TelemetryConfig, TraceSampler};

const PROCESSED: &str = "otel.sdk.processor.span.processed";
const CHILD: &str = "OTLP_SPAN_OUTCOMES_CHILD";
const WARNING: &str = "the span export queue is full";

/// An exporter whose exports fail while `failing` is set, like a collector that refuses them.
#[derive(Debug, Clone)]
struct Refusing {
    failing: Arc<AtomicBool>,
}

impl SpanExporter for Refusing {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        if self.failing.load(Ordering::Relaxed) {
            Err(OTelSdkError::InternalFailure("refused by the test".into()))
        } else {
            Ok(())
        }
    }
}

/// The exported value of `otel.sdk.processor.span.processed` at exactly these attributes (0 if absent).
fn processed(
    provider: &SdkMeterProvider,
    exporter: &InMemoryMetricExporter,
    error: Option<&str>,
) -> u64 {
    exporter.reset();
    provider.force_flush().unwrap();
    let mut attrs = vec![("otel.component.type", "batching_span_processor")];
    attrs.extend(error.map(|e| ("error.type", e)));
    let metrics = exporter.get_finished_metrics().unwrap();
    exported::u64_sum(&metrics, "otlp-telemetry", PROCESSED, &attrs).unwrap_or(0)
}

#[test]
fn spans_of_failed_exports_are_counted_live_apart_from_delivered_ones() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let exporter = InMemoryMetricExporter::default();
    let meters = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(exporter.clone())
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    global::set_meter_provider(meters.clone());
    otlp_core::instruments::refresh();

    let failing = Arc::new(AtomicBool::new(true));
    let config = TelemetryConfig::new()
        .fmt_output(false)
        .log_filter("info")
        .trace_sampler(TraceSampler::AlwaysOn)
        .span_queue_size(64)
        .span_batch_size(4);
    let stack = TracingStack::with_exporter(
        &config,
        Refusing {
            failing: failing.clone(),
        },
    )
    .unwrap();
    let spans = |n: usize| {
        tracing::dispatcher::with_default(stack.dispatch(), || {
            for i in 0..n {
                tracing::info_span!("outcome", i).in_scope(|| {});
            }
        });
        // The flush reports the export's failure; what matters here is what was counted.
        let _ = stack.provider().force_flush();
    };

    spans(10);
    // Counted while the stack runs (no shutdown yet): each span of a refused export, and none delivered.
    assert_eq!(processed(&meters, &exporter, Some("export_failed")), 10);
    assert_eq!(processed(&meters, &exporter, None), 0);
    assert_eq!(processed(&meters, &exporter, Some("queue_full")), 0);

    failing.store(false, Ordering::Relaxed);
    spans(7);
    assert_eq!(processed(&meters, &exporter, None), 7);
    assert_eq!(processed(&meters, &exporter, Some("export_failed")), 10);

    failing.store(true, Ordering::Relaxed);
    spans(3);
    assert_eq!(processed(&meters, &exporter, Some("export_failed")), 13);
    assert_eq!(processed(&meters, &exporter, None), 7);
    let _ = stack.provider().shutdown();
    meters.shutdown().unwrap();
}

/// An exporter whose first export waits until the test lets it go: a collector too slow for the load.
#[derive(Debug)]
struct Stalled {
    entered: Mutex<Option<Sender<()>>>,
    release: Mutex<Receiver<()>>,
}

impl SpanExporter for Stalled {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        let entered = self.entered.lock().unwrap().take();
        if let Some(entered) = entered {
            entered.send(()).unwrap();
            // The processor's export thread waits here while the test fills the queue.
            let _ = self.release.lock().unwrap().recv();
        }
        Ok(())
    }
}

/// In the child: one stalled export, a full queue of 2, then `DROPPED` spans that do not fit, all within one
/// warning interval (the schedule delay, an hour here).
const DROPPED: usize = 50;

fn fill_a_stalled_queue() {
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let config = TelemetryConfig::new()
        .fmt_output(true)
        .log_filter("info")
        .trace_sampler(TraceSampler::AlwaysOn)
        .span_queue_size(2)
        .span_batch_size(1)
        .span_schedule_delay(Duration::from_secs(3600));
    let stack = TracingStack::with_exporter(
        &config,
        Stalled {
            entered: Mutex::new(Some(entered_tx)),
            release: Mutex::new(release_rx),
        },
    )
    .unwrap();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        tracing::info_span!("first").in_scope(|| {});
        entered
            .recv_timeout(Duration::from_secs(30))
            .expect("the first span's export starts");
        for i in 0..2 + DROPPED {
            tracing::info_span!("queued", i).in_scope(|| {});
        }
    });
    release.send(()).unwrap();
    let _ = stack.provider().force_flush();
    let _ = stack.provider().shutdown();
}

#[test]
fn a_full_queue_is_warned_about_once_per_interval_however_many_spans_it_drops() {
    if std::env::var_os(CHILD).is_some() {
        fill_a_stalled_queue();
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_full_queue_is_warned_about_once_per_interval_however_many_spans_it_drops",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_CONSOLE_LOG")
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(WARNING)).collect();
    assert_eq!(
        warnings.len(),
        1,
        "{DROPPED} spans dropped within one interval: one warning\n{stderr}"
    );
    // The warning comes with the first drop, and says where the drops are counted.
    assert!(
        warnings[0].contains("dropped=1") && warnings[0].contains("dropped_total=1"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("error.type=queue_full"),
        "{}",
        warnings[0]
    );
}
