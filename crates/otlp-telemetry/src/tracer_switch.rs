//! The tracer and head sampler behind a `tracing` layer, switched by each [`init`](crate::init()) and by shutdown.
//!
//! The global `tracing` subscriber can be set only once per process, so when `init` runs again after a
//! shutdown (tests, services that reload their telemetry) its OpenTelemetry layer, and the head-sampling
//! decision in front of it, must follow the new tracer provider and sampler. A [`TracerSwitch`] holds both:
//! [`global`] is the one behind the subscriber `init` installs; a [`TracingStack`](crate::stack::TracingStack)
//! has one of its own, never switched, so that both run the same code.
//!
//! Reading the current state costs one load of a rarely written atomic plus a thread-local lookup: each
//! thread caches the state with the generation it belongs to, and refreshes it under the lock only when the
//! generation changed. Generations are unique across switches, so one cache serves them all.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::head_sampling::HeadSampler;

/// What a switch hands the layers: the tracer of the current provider and the sampler that decides roots.
#[derive(Debug)]
pub(crate) struct Installed {
    pub(crate) tracer: SdkTracer,
    pub(crate) sampler: HeadSampler,
}

/// The next generation handed out, by any switch; 0 is never one, so an empty cache is always stale.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CACHE: RefCell<(u64, Option<Arc<Installed>>)> = const { RefCell::new((0, None)) };
}

#[derive(Debug)]
struct Inner {
    current: RwLock<(u64, Option<Arc<Installed>>)>,
    generation: AtomicU64,
}

/// A switchable [`Installed`] state, shared by the layers of one subscriber. See the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct TracerSwitch(Arc<Inner>);

impl TracerSwitch {
    pub(crate) fn new(installed: Option<Installed>) -> Self {
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        TracerSwitch(Arc::new(Inner {
            current: RwLock::new((generation, installed.map(Arc::new))),
            generation: AtomicU64::new(generation),
        }))
    }

    /// Makes `installed` (or, with `None`, nothing: every new root is sampled out) the current state.
    pub(crate) fn switch(&self, installed: Option<Installed>) {
        let mut current = self.0.current.write().unwrap_or_else(|p| p.into_inner());
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        *current = (generation, installed.map(Arc::new));
        self.0.generation.store(generation, Ordering::Release);
    }

    fn load(&self) -> (u64, Option<Arc<Installed>>) {
        self.0
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Calls `f` with the current state.
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&Installed>) -> R) -> R {
        let generation = self.0.generation.load(Ordering::Acquire);
        let mut f = Some(f);
        let done = CACHE.try_with(|cache| {
            // Fails only when `f` itself reads a switch (nested): then the lock answers.
            if let Ok(mut c) = cache.try_borrow_mut()
                && c.0 != generation
            {
                *c = self.load();
            }
            let c = cache.try_borrow().ok()?;
            if c.0 != generation {
                return None;
            }
            let f = f.take()?;
            Some(f(c.1.as_deref()))
        });
        if let Ok(Some(r)) = done {
            return r;
        }
        // Thread teardown, a nested call, or a switch between the load and the refresh. `f` is still there:
        // it is taken only when it runs.
        let (_, current) = self.load();
        match f.take() {
            Some(f) => f(current.as_deref()),
            None => unreachable!("`f` ran and returned through the cache"),
        }
    }
}

/// The switch behind the subscriber [`init`](crate::init()) installs.
pub(crate) fn global() -> &'static TracerSwitch {
    static GLOBAL: OnceLock<TracerSwitch> = OnceLock::new();
    GLOBAL.get_or_init(|| TracerSwitch::new(None))
}

/// A tracer whose spans are never sampled, exported or even recorded: for a root decided as sampled just
/// before its switch was turned off.
pub(crate) fn off() -> SdkTracer {
    static OFF: OnceLock<SdkTracerProvider> = OnceLock::new();
    OFF.get_or_init(|| {
        SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build()
    })
    .tracer("otlp-telemetry-off")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _};
    use opentelemetry_sdk::trace::InMemorySpanExporter;

    fn installed(provider: &SdkTracerProvider) -> Installed {
        Installed {
            tracer: provider.tracer("t"),
            sampler: HeadSampler::new(Box::new(Sampler::AlwaysOn), true),
        }
    }

    #[test]
    fn follows_the_last_switch_on_every_thread() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let switch = TracerSwitch::new(None);
        let sampled = {
            let switch = switch.clone();
            move || {
                switch.with(|i| i.is_some_and(|i| i.tracer.start("s").span_context().is_sampled()))
            }
        };
        assert!(!sampled());
        switch.switch(Some(installed(&provider)));
        assert!(sampled());
        let s = sampled.clone();
        assert!(std::thread::spawn(s).join().unwrap());
        // Another switch read on this thread does not confuse the cache.
        let other = TracerSwitch::new(None);
        assert!(other.with(|i| i.is_none()));
        assert!(sampled());
        switch.switch(None);
        assert!(!sampled());
        let s = sampled.clone();
        assert!(!std::thread::spawn(s).join().unwrap());
        // Nested reads (the cache is borrowed) still see the current state.
        switch.switch(Some(installed(&provider)));
        assert!(switch.with(|outer| outer.is_some() && other.with(|i| i.is_none())));
        assert!(switch.with(|_| sampled()));
        assert_eq!(exporter.get_finished_spans().unwrap().len(), 4);
    }
}
