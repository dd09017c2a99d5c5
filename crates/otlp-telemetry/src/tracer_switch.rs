//! The tracer behind the installed `tracing` layer, switched by each [`init`](crate::init()) and by shutdown.
//!
//! The global `tracing` subscriber can be set only once per process, so when `init` runs again after a
//! shutdown (tests, services that reload their telemetry) its OpenTelemetry layer must follow the new
//! tracer provider. [`CurrentTracer`] is that layer's tracer: it builds each span with the tracer last
//! installed by [`switch`], or, after shutdown, with a tracer that samples nothing.
//!
//! Reading the current tracer costs one load of a rarely written atomic plus a thread-local lookup: each
//! thread caches a clone of the tracer with the generation it belongs to, and refreshes it under the lock
//! only when the generation changed.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use opentelemetry::Context;
use opentelemetry::trace::{SpanBuilder, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span};

static CURRENT: RwLock<Option<SdkTracer>> = RwLock::new(None);
/// Bumped after every change of `CURRENT`; starts at 1 so that an empty cache (0) is always stale.
static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CACHE: RefCell<(u64, Option<SdkTracer>)> = const { RefCell::new((0, None)) };
}

/// Makes `tracer` (or, with `None`, a tracer that records nothing) the one behind the `tracing` layer.
pub(crate) fn switch(tracer: Option<SdkTracer>) {
    let mut current = CURRENT.write().unwrap_or_else(|p| p.into_inner());
    *current = tracer;
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

fn load() -> SdkTracer {
    CURRENT
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(off)
}

/// A tracer whose spans are never sampled, exported or even recorded.
fn off() -> SdkTracer {
    static OFF: OnceLock<SdkTracerProvider> = OnceLock::new();
    OFF.get_or_init(|| {
        SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build()
    })
    .tracer("otlp-telemetry-off")
}

/// The tracer of the `tracing` layer installed by `init`: whichever [`switch`] installed last.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CurrentTracer;

impl Tracer for CurrentTracer {
    type Span = Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Span {
        let generation = GENERATION.load(Ordering::Acquire);
        let mut builder = Some(builder);
        let built = CACHE.try_with(|cache| {
            // Fails only for a span started while this thread's cache is borrowed (a nested span).
            if let Ok(mut c) = cache.try_borrow_mut()
                && c.0 != generation
            {
                *c = (generation, Some(load()));
            }
            let c = cache.try_borrow().ok()?;
            let tracer = c.1.as_ref().filter(|_| c.0 == generation)?;
            let builder = builder.take()?;
            Some(tracer.build_with_context(builder, parent_cx))
        });
        if let Ok(Some(span)) = built {
            return span;
        }
        // Thread teardown or a stale nested cache: ask the lock. `builder` is still there (it is taken only
        // when a span is built), the default only satisfies the type.
        let builder = builder.unwrap_or_else(|| SpanBuilder::from_name(""));
        load().build_with_context(builder, parent_cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::Span as _;
    use opentelemetry_sdk::trace::InMemorySpanExporter;

    #[test]
    fn follows_the_last_switch_on_every_thread() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let sampled = || CurrentTracer.start("s").span_context().is_sampled();
        switch(None);
        assert!(!sampled());
        switch(Some(provider.tracer("t")));
        assert!(sampled());
        assert!(std::thread::spawn(sampled).join().unwrap());
        switch(None);
        assert!(!sampled());
        assert!(!std::thread::spawn(sampled).join().unwrap());
        assert_eq!(exporter.get_finished_spans().unwrap().len(), 2);
    }
}
