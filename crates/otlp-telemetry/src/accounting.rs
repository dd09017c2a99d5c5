//! Counting the spans that never reached the exporter because the export queue was full.
//!
//! The SDK's batch span processor drops a finished span when its bounded queue is full (so memory stays
//! flat while a collector is slow or down) but keeps the count to itself. [`CountingProcessor`] counts the
//! spans handed to the processor, the exporter wrapper counts the spans handed to the exporter; once the
//! processor has shut down, the difference is exactly the number dropped.
#![cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// Spans handed to the batch processor and to the exporter.
#[derive(Debug, Default)]
pub(crate) struct SpanCounts {
    ended: AtomicU64,
    exported: AtomicU64,
}

impl SpanCounts {
    /// Spans that reached the exporter (successfully exported or not).
    pub(crate) fn add_exported(&self, n: usize) {
        self.exported.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Exact once the processor has shut down: spans ended but never handed to the exporter.
    pub(crate) fn dropped(&self) -> u64 {
        let ended = self.ended.load(Ordering::Relaxed);
        ended.saturating_sub(self.exported.load(Ordering::Relaxed))
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
        self.counts.ended.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
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
    fn dropped_is_ended_minus_exported_after_shutdown() {
        let counts = Arc::new(SpanCounts::default());
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
        assert!(
            counts.dropped() > 0,
            "a 4-span queue behind a slow exporter drops"
        );
    }
}
