//! Counting what was delivered, so that shutdown can say exactly what was not, and what was dropped, live.
//!
//! The SDK's batch span processor drops a finished span when its bounded queue is full (so memory stays
//! flat while a collector is slow or down) but keeps the count to itself until shutdown. [`CountingProcessor`]
//! counts the spans handed to the processor and keeps its own count of the spans in the processor's queue (the
//! exporter wrapper takes them off when it is handed a batch): a span that would not fit is dropped here,
//! counted at once in `otel.sdk.processor.span.processed` (`error.type` = `queue_full`) and warned about at most
//! once per interval, so the SDK's queue never overflows. Spans of exports that failed are counted with
//! `error.type` = `export_failed`, delivered ones without `error.type`. Once the processor has shut down,
//! ended - exported is exactly the number never handed to the exporter.
//!
//! A [`Ledger`] per signal counts the items (spans, metric data points) whose export succeeded. At its
//! deadline the guard *seals* the ledgers: an export still running is abandoned and every later export
//! fails at once without sending, so the providers finish quickly and the count read at that moment is
//! final: not delivered = spans ended (or data points handed to the exporter) - delivered.
#![cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use otlp_core::instruments::{Attributes, Observations, Registration, Source};

use opentelemetry_sdk::error::OTelSdkError;
use tokio::sync::Notify;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use crate::report::REPORT_TARGET;
use crate::telemetry::{INSTRUMENTS, PROCESSOR_SPANS};

/// Spans handed to the batch processor and to the exporter, and what became of them.
#[derive(Debug)]
pub(crate) struct SpanCounts {
    /// Spans handed to the exporter. Spans ended = `exported` + `queued` + `queue_full`: a span's end is one
    /// atomic operation, not two.
    exported: AtomicU64,
    /// Spans given to the processor and not yet handed to the exporter: never above `capacity`.
    queued: AtomicU64,
    capacity: u64,
    queue_full: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    warnings: Mutex<DropWarnings>,
    warn_interval: Duration,
    /// `[success, queue_full, export_failed]`.
    attrs: [Attributes; 3],
    link: Registration,
}

#[derive(Debug, Default)]
struct DropWarnings {
    last: Option<Instant>,
    /// `queue_full` when the last warning was given.
    reported: u64,
}

impl Source for SpanCounts {
    fn observe(&self, out: &mut Observations<'_>) {
        let values = [&self.delivered, &self.queue_full, &self.failed];
        for (value, attrs) in values.iter().zip(&self.attrs) {
            out.observe(PROCESSOR_SPANS, value.load(Ordering::Relaxed), attrs);
        }
    }
}

impl SpanCounts {
    /// Counts for a processor whose queue holds `capacity` spans, warning about drops at most once per
    /// `warn_interval`; reported through `otel.sdk.processor.span.processed`.
    pub(crate) fn new(capacity: usize, warn_interval: Duration) -> Arc<Self> {
        let kind = KeyValue::new("otel.component.type", "batching_span_processor");
        let error =
            |e: &'static str| Attributes::new(vec![KeyValue::new("error.type", e), kind.clone()]);
        let counts = Arc::new(SpanCounts {
            exported: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            capacity: capacity as u64,
            queue_full: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            warnings: Mutex::new(DropWarnings::default()),
            warn_interval,
            attrs: [
                Attributes::new(vec![kind.clone()]),
                error("queue_full"),
                error("export_failed"),
            ],
            link: INSTRUMENTS.link(None),
        });
        counts.link.add(counts.clone());
        counts
    }

    /// Spans that reached the exporter (successfully exported or not): out of the queue.
    pub(crate) fn add_exported(&self, n: usize) {
        self.exported.fetch_add(n as u64, Ordering::Relaxed);
        self.queued.fetch_sub(n as u64, Ordering::AcqRel);
    }

    /// The outcome of one export of `n` spans.
    pub(crate) fn add_export_result(&self, n: usize, ok: bool) {
        let counter = if ok { &self.delivered } else { &self.failed };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Takes a place in the queue for one span; `false` (the span is dropped, counted and maybe warned about)
    /// when the queue is full.
    fn admit(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::AcqRel) < self.capacity {
            return true;
        }
        self.queued.fetch_sub(1, Ordering::AcqRel);
        let total = self.queue_full.fetch_add(1, Ordering::Relaxed) + 1;
        self.warn(total);
        false
    }

    /// Warns about dropped spans, at most once per interval (a thread that finds another warning skips).
    #[cold]
    fn warn(&self, total: u64) {
        let Ok(mut w) = self.warnings.try_lock() else {
            return;
        };
        let now = Instant::now();
        if w.last
            .is_some_and(|t| now.duration_since(t) < self.warn_interval)
        {
            return;
        }
        let since = total - std::mem::replace(&mut w.reported, total);
        w.last = Some(now);
        drop(w);
        tracing::warn!(
            target: REPORT_TARGET,
            dropped = since,
            dropped_total = total,
            queue_size = self.capacity,
            "the span export queue is full: spans are dropped (counted in otel.sdk.processor.span.processed \
             with error.type=queue_full); lower the sampling ratio or set a span budget, raise \
             OTEL_BSP_MAX_QUEUE_SIZE, or check that the collector keeps up (warned at most once per {:?})",
            self.warn_interval
        );
    }

    /// Spans dropped because the queue was full, so far.
    pub(crate) fn queue_full(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
    }

    /// Spans handed to the processor.
    pub(crate) fn ended(&self) -> u64 {
        self.exported.load(Ordering::Relaxed) + self.dropped()
    }

    /// Exact once the processor has shut down: spans ended but never handed to the exporter.
    pub(crate) fn dropped(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed) + self.queued.load(Ordering::Acquire)
    }
}

/// What became of one signal's exports.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Items handed to the exporter (for spans, see also [`SpanCounts`]).
    handed: AtomicU64,
    in_flight: AtomicU64,
    sealed_flag: AtomicBool,
    state: Mutex<LedgerState>,
    sealed: Notify,
}

#[derive(Debug, Default)]
struct LedgerState {
    sealed: bool,
    delivered: u64,
    last_error: Option<String>,
}

/// The ledger's final word, read when it is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settled {
    pub(crate) handed: u64,
    pub(crate) delivered: u64,
    pub(crate) last_error: Option<String>,
}

impl Ledger {
    fn state(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one export of `items` items: refused once sealed, abandoned (and counted as not delivered)
    /// if the ledger is sealed while it runs.
    pub(crate) async fn export<F>(&self, items: u64, export: F) -> Result<(), OTelSdkError>
    where
        F: Future<Output = Result<(), OTelSdkError>>,
    {
        self.handed.fetch_add(items, Ordering::Relaxed);
        let mut sealed = pin!(self.sealed.notified());
        // Registered before the flag is checked, so a seal in between still wakes us.
        sealed.as_mut().enable();
        if self.sealed_flag.load(Ordering::Acquire) {
            return Err(OTelSdkError::InternalFailure(
                "not sent: telemetry shutdown reached its deadline".into(),
            ));
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut export = pin!(export);
        let result = std::future::poll_fn(|cx| {
            // The seal first: once it is set the export is never polled again (its runtime may be gone).
            if sealed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(OTelSdkError::InternalFailure(
                    "abandoned: telemetry shutdown reached its deadline".into(),
                )));
            }
            export.as_mut().poll(cx)
        })
        .await;
        let mut st = self.state();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        match &result {
            Ok(()) if !st.sealed => st.delivered += items,
            Ok(()) => {}
            // The collector's own error says more than our abandoning the export does.
            Err(_) if st.sealed && st.last_error.is_some() => {}
            Err(e) => st.last_error = Some(e.to_string()),
        }
        result
    }

    /// Stops every export now and later; returns the final counts. Idempotent.
    pub(crate) fn seal(&self) -> Settled {
        let mut st = self.state();
        st.sealed = true;
        self.sealed_flag.store(true, Ordering::Release);
        self.sealed.notify_waiters();
        if st.last_error.is_none() && self.in_flight.load(Ordering::Acquire) > 0 {
            // An export was still waiting for the collector (it is abandoned on its next poll).
            st.last_error =
                Some("an export was still waiting for the collector at the deadline".into());
        }
        Settled {
            handed: self.handed.load(Ordering::Relaxed),
            delivered: st.delivered,
            last_error: st.last_error.clone(),
        }
    }
}

/// Wraps a span processor to count the spans it is given.
#[derive(Debug)]
pub(crate) struct CountingProcessor<P> {
    inner: P,
    counts: Arc<SpanCounts>,
}

impl<P> CountingProcessor<P> {
    pub(crate) fn new(inner: P, counts: Arc<SpanCounts>) -> Self {
        CountingProcessor { inner, counts }
    }
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.counts.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{
        BatchConfigBuilder, BatchSpanProcessor, InMemorySpanExporter, SdkTracerProvider,
        SpanExporter,
    };

    /// An exporter that counts what it is given, like the reporting wrapper does.
    #[derive(Debug)]
    struct Counting(InMemorySpanExporter, Arc<SpanCounts>);

    impl SpanExporter for Counting {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.1.add_exported(batch.len());
            // Slow enough that the tiny queue overflows.
            std::thread::sleep(Duration::from_millis(20));
            self.0.export(batch).await
        }
    }

    #[test]
    fn sealing_abandons_running_exports_refuses_new_ones_and_counts_exactly() {
        let ledger = Arc::new(Ledger::default());
        futures_executor_block_on(ledger.export(3, async { Ok(()) })).unwrap();
        let failed = ledger.export(4, async {
            Err(OTelSdkError::InternalFailure("connection refused".into()))
        });
        assert!(futures_executor_block_on(failed).is_err());
        // An export that never finishes (a silent collector) is abandoned by the seal.
        let l = Arc::clone(&ledger);
        let stuck = std::thread::spawn(move || {
            futures_executor_block_on(l.export(5, std::future::pending()))
        });
        while ledger.in_flight.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        let settled = ledger.seal();
        assert!(stuck.join().unwrap().is_err());
        assert_eq!(settled.handed, 12);
        assert_eq!(settled.delivered, 3);
        assert_eq!(
            settled.last_error.as_deref(),
            Some("Operation failed: connection refused")
        );
        // After the seal nothing is sent, and a late success would not count.
        let mut ran = false;
        let refused = ledger.export(6, async {
            ran = true;
            Ok(())
        });
        assert!(futures_executor_block_on(refused).is_err());
        assert!(!ran);
        assert_eq!(ledger.seal().handed - ledger.seal().delivered, 15);
    }

    /// A minimal executor: the ledger's futures only need a waker that unparks the thread.
    fn futures_executor_block_on<F: Future>(f: F) -> F::Output {
        use std::task::{Context as TaskContext, Wake, Waker};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = TaskContext::from_waker(&waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    #[test]
    fn dropped_is_ended_minus_exported_after_shutdown() {
        let counts = SpanCounts::new(4, Duration::from_secs(60));
        let exporter = InMemorySpanExporter::default();
        let bsp = BatchSpanProcessor::builder(Counting(exporter.clone(), counts.clone()))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(4)
                    .with_max_export_batch_size(2)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor::new(bsp, counts.clone()))
            .build();
        let tracer = provider.tracer("t");
        for _ in 0..500 {
            tracer.in_span("s", |_| {});
        }
        provider.shutdown().unwrap();
        let exported = exporter.get_finished_spans().unwrap().len() as u64;
        assert_eq!(counts.dropped() + exported, 500);
        // Every drop was a full queue, counted when it happened.
        assert_eq!(counts.queue_full(), counts.dropped());
        assert!(
            counts.dropped() > 0,
            "a 4-span queue behind a slow exporter drops"
        );
    }
}
