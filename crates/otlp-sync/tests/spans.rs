//! Tracing spans: a debug-level span covers every wait that queued or slept, and nothing else opens one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use otlp_sync::{RateLimiter, Semaphore, TokioClock};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records the name and level of every span created.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, Level)>>>);

impl Spans {
    fn take(&self) -> Vec<(String, Level)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut spans = self.0.lock().unwrap();
        spans.push((span.metadata().name().to_owned(), *span.metadata().level()));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(start_paused = true)]
async fn only_waits_open_a_debug_span() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(spans.clone());

    let s = Semaphore::new("spans", 1).unwrap();
    let held = s.acquire().await.unwrap();
    let _ = s.try_acquire();
    assert!(spans.take().is_empty(), "the fast path opens no span");

    let _ = s.acquire_timeout(Duration::from_millis(10)).await;
    drop(held);
    assert_eq!(
        spans.take(),
        vec![("otlp_sync.semaphore.wait".to_owned(), Level::DEBUG)]
    );

    let l = RateLimiter::builder("spans")
        .per_second(1)
        .clock(TokioClock)
        .build()
        .unwrap();
    l.until_ready().await;
    let _ = l.check();
    assert!(
        spans.take().is_empty(),
        "a cell that is free at once opens no span"
    );
    l.until_ready().await;
    assert_eq!(
        spans.take(),
        vec![("otlp_sync.rate_limiter.wait".to_owned(), Level::DEBUG)]
    );
}
