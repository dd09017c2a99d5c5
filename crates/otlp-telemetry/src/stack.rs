//! [`TracingStack`]: a tracer provider and the `tracing` subscriber [`init`](crate::init()) installs, built by the
//! same code (`EnvFilter`, fmt output to stderr, head sampling at root creation in front of the OpenTelemetry
//! layer, the configured sampler, a batch span processor) around a span exporter of your choice and installed
//! nowhere: for tests, benchmarks and scoped use with `tracing::dispatcher::with_default`. The one difference:
//! `init`'s layers follow the tracer and sampler of the latest `init`, a stack's keep its own.
//!
//! ```
//! use opentelemetry_sdk::trace::InMemorySpanExporter;
//! use otlp_telemetry::{TelemetryConfig, stack::TracingStack};
//!
//! let exporter = InMemorySpanExporter::default();
//! let stack = TracingStack::with_exporter(&TelemetryConfig::new().fmt_output(false), exporter.clone())?;
//! tracing::dispatcher::with_default(stack.dispatch(), || {
//!     let _request = tracing::info_span!("request", url.path = "/orders").entered();
//! });
//! stack.provider().force_flush()?;
//! assert_eq!(exporter.get_finished_spans()?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanExporter, TracerProviderBuilder,
};
use tracing::{Dispatch, Subscriber, span};
use tracing_subscriber::layer::Context;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

use crate::accounting::{CountingProcessor, SpanCounts};
use crate::budget::{BudgetSampler, TraceBudgetHandle};
use crate::config::TelemetryConfig;
use crate::error::TelemetryError;
use crate::head_sampling::{
    HeadSampler, HeadSampling, HeadTracer, PredecidedIds, UnsampledGate, Verdicts, next_key,
};
use crate::report::{ErrorReporter, ReportingSpanExporter};
use crate::sampler::{RatioSampler, RootSampler, TraceRatioHandle};
use crate::tracer_switch::{Installed, TracerSwitch};

/// A tracer provider with the configured sampler and batch span processor, and a `tracing` subscriber over
/// it. See the [module docs](self).
#[derive(Debug)]
pub struct TracingStack {
    provider: SdkTracerProvider,
    dispatch: Dispatch,
    ratio: TraceRatioHandle,
    budget: TraceBudgetHandle,
}

impl TracingStack {
    /// Builds the stack of `config` (sampler, batch span processor settings, log filter, fmt output)
    /// exporting to `exporter`.
    ///
    /// # Errors
    /// [`TelemetryError::Config`] if `config` is invalid.
    pub fn with_exporter<E>(config: &TelemetryConfig, exporter: E) -> Result<Self, TelemetryError>
    where
        E: SpanExporter + 'static,
    {
        config.validate()?;
        let (sampler, ratio, budget) = head_sampler(config)?;
        let counts = SpanCounts::new(config.bsp_max_queue_size, config.bsp_schedule_delay);
        let reporter = ErrorReporter::new("traces", "custom".into(), config.bsp_schedule_delay);
        let ledger = Arc::new(crate::accounting::Ledger::default());
        // A caller's exporter brings its own transport: nothing to run on the exporter runtime.
        let exporter =
            ReportingSpanExporter::new(exporter, reporter, Arc::clone(&counts), ledger, None);
        let provider = provider_builder(&sampler)
            .with_span_processor(batch_processor(config, exporter, counts))
            .build();
        let switch = TracerSwitch::new(Some(Installed {
            tracer: provider.tracer_with_scope(scope()),
            sampler,
        }));
        let dispatch = Dispatch::new(subscriber(config, Some(switch)));
        Ok(TracingStack {
            provider,
            dispatch,
            ratio,
            budget,
        })
    }

    /// The subscriber, to install with `tracing::dispatcher::with_default` or `set_global_default`.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// The tracer provider (flush it, or shut it down, when done).
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Changes the sampling ratio of new root traces, like
    /// [`TelemetryGuard::set_trace_ratio`](crate::TelemetryGuard::set_trace_ratio).
    pub fn trace_ratio_handle(&self) -> TraceRatioHandle {
        self.ratio.clone()
    }

    /// Changes the budget of new root traces a second, like
    /// [`TelemetryGuard::set_trace_budget`](crate::TelemetryGuard::set_trace_budget).
    pub fn trace_budget_handle(&self) -> TraceBudgetHandle {
        self.budget.clone()
    }
}

/// The configured sampler, and the handles that change its ratio and its budget.
pub(crate) fn head_sampler(
    config: &TelemetryConfig,
) -> Result<(HeadSampler, TraceRatioHandle, TraceBudgetHandle), TelemetryError> {
    let ratio = RatioSampler::new(config.sampler.ratio());
    let ratio_handle = ratio.handle();
    let budget = BudgetSampler::new(config.sampler.budget())?;
    let budget_handle = budget.handle();
    let root = RootSampler::new(ratio, budget, config.sampler.is_parent_based());
    let sampler = HeadSampler::configured(root, config.sampler.is_parent_based());
    Ok((sampler, ratio_handle, budget_handle))
}

/// A tracer provider builder taking `sampler`'s decisions (the SDK agrees with the ones made at creation).
pub(crate) fn provider_builder(sampler: &HeadSampler) -> TracerProviderBuilder {
    SdkTracerProvider::builder()
        .with_sampler(sampler.sdk_sampler())
        .with_id_generator(PredecidedIds::default())
}

/// The batch span processor of `config` in front of `exporter`, counting what it is given.
pub(crate) fn batch_processor<E: SpanExporter + 'static>(
    config: &TelemetryConfig,
    exporter: E,
    counts: Arc<SpanCounts>,
) -> CountingProcessor<BatchSpanProcessor> {
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(config.bsp_max_queue_size)
        .with_max_export_batch_size(config.resolved_span_batch_size())
        .with_scheduled_delay(config.bsp_schedule_delay)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    CountingProcessor::new(processor, counts)
}

/// The instrumentation scope of the spans made from `tracing` spans.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The `tracing` subscriber of [`init`](crate::init()) and [`TracingStack`]: `EnvFilter` (`RUST_LOG` or the
/// configured filter), fmt output, and (with a switch) the OpenTelemetry layer over the switch's tracer, behind
/// the head-sampling decision of its sampler.
pub(crate) fn subscriber(
    config: &TelemetryConfig,
    switch: Option<TracerSwitch>,
) -> impl Subscriber + Send + Sync + 'static {
    let directives = config
        .env_log_filter
        .as_deref()
        .unwrap_or(&config.log_filter);
    // No per-layer filter anywhere: each would look every span up again on every enter, exit and close to read
    // its filter bit. The fmt layer either sees spans (to print their fields) or is reached by events only,
    // through a subscriber of its own that never has a span: a span's fields are never formatted for a console
    // that would not print them, and events print as they always did, without a span context.
    let console = config.fmt_output.then(fmt_layer);
    let (spans, events) = if config.fmt_span_context {
        (console, None)
    } else {
        (None, console.map(ConsoleEvents::new))
    };
    // The exporter's own targets are kept out of the OpenTelemetry layer by head sampling itself.
    let key = next_key();
    let otel = switch.map(|switch| {
        let layer = tracing_opentelemetry::layer()
            .with_tracer(HeadTracer(switch.clone()))
            .with_tracked_inactivity(false)
            .with_location(config.span_source_attributes)
            .with_threads(config.span_source_attributes)
            .with_target(config.span_source_attributes);
        HeadSampling::new(layer, switch, key)
    });
    // Validated already; an unparsable filter falls back to `info` rather than failing late.
    // Only with head sampling is there a sampled-out trace whose children the gate keeps out.
    let filter = LogFilter::new(directives, otel.as_ref().map(HeadSampling::gate), key);
    Registry::default().with(Layers {
        filter,
        spans,
        otel,
        events,
    })
}

/// The OpenTelemetry layer as the stack has it.
type OtelLayer = HeadSampling<tracing_opentelemetry::OpenTelemetryLayer<Registry, HeadTracer>>;

/// The stack's layers as one: the log filter (asked first whether a span is created at all, for every layer),
/// the console log and head sampling in front of the OpenTelemetry layer. One layer rather than one `Layered`
/// each: every callback passes one level of dispatch, and a span's close finds the registry once.
struct Layers {
    filter: LogFilter,
    spans: Option<FmtLayer<Registry>>,
    otel: Option<OtelLayer>,
    events: Option<ConsoleEvents>,
}

impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layers")
            .field("filter", &self.filter)
            .field("console_spans", &self.spans.is_some())
            .field("opentelemetry", &self.otel.is_some())
            .field("console_events", &self.events.is_some())
            .finish()
    }
}

impl tracing_subscriber::Layer<Registry> for Layers {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        if let Some(spans) = &self.spans {
            spans.on_register_dispatch(subscriber);
        }
        if let Some(otel) = &self.otel {
            otel.on_register_dispatch(subscriber);
        }
    }

    fn on_layer(&mut self, subscriber: &mut Registry) {
        if let Some(spans) = &mut self.spans {
            spans.on_layer(subscriber);
        }
        if let Some(otel) = &mut self.otel {
            otel.on_layer(subscriber);
        }
    }

    // The other layers are interested in whatever the filter lets through.
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.filter.register_callsite(metadata)
    }

    #[inline]
    fn enabled(&self, metadata: &tracing::Metadata<'_>, ctx: Context<'_, Registry>) -> bool {
        self.filter.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        tracing_subscriber::Layer::<Registry>::max_level_hint(&self.filter.filter)
    }

    #[inline]
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(spans) = &self.spans {
            spans.on_new_span(attrs, id, ctx.clone());
        }
        if let Some(otel) = &self.otel {
            otel.on_new_span(attrs, id, ctx.clone());
        }
        self.filter.on_new_span(attrs, id, ctx);
    }

    #[inline]
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, Registry>) {
        if let Some(spans) = &self.spans {
            spans.on_record(id, values, ctx.clone());
        }
        if let Some(otel) = &self.otel {
            otel.on_record(id, values, ctx.clone());
        }
        self.filter.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(spans) = &self.spans {
            spans.on_follows_from(id, follows, ctx.clone());
        }
        if let Some(otel) = &self.otel {
            otel.on_follows_from(id, follows, ctx);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, Registry>) {
        if let Some(spans) = &self.spans {
            spans.on_event(event, ctx.clone());
        }
        if let Some(otel) = &self.otel {
            otel.on_event(event, ctx.clone());
        }
        if let Some(events) = &self.events {
            events.on_event(event, ctx);
        }
    }

    #[inline]
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(spans) = &self.spans {
            spans.on_enter(id, ctx.clone());
        }
        if let Some(otel) = &self.otel {
            otel.on_enter(id, ctx.clone());
        }
        self.filter.on_enter(id, ctx);
    }

    #[inline]
    fn on_exit(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(spans) = &self.spans {
            spans.on_exit(id, ctx.clone());
        }
        if let Some(otel) = &self.otel {
            otel.on_exit(id, ctx.clone());
        }
        self.filter.on_exit(id, ctx);
    }

    #[inline]
    fn on_close(&self, id: span::Id, ctx: Context<'_, Registry>) {
        if let Some(spans) = &self.spans {
            spans.on_close(id.clone(), ctx.clone());
        }
        if let Some(otel) = &self.otel {
            otel.on_close(id.clone(), ctx.clone());
        }
        self.filter.on_close(id, ctx);
    }

    // SAFETY: each pointer returned is to `self` or comes from a layer `self` owns, valid as long as `self`.
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: the layers live as long as `self`.
        unsafe {
            self.otel
                .as_ref()
                .and_then(|otel| otel.downcast_raw(id))
                .or_else(|| self.spans.as_ref().and_then(|spans| spans.downcast_raw(id)))
                .or_else(|| self.filter.downcast_raw(id))
        }
    }
}

type FmtLayer<S> = tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    fn() -> std::io::Stderr,
>;

/// The console log: events (and spans, when it prints them) on stderr.
fn fmt_layer<S>() -> FmtLayer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().with_writer(std::io::stderr as fn() -> std::io::Stderr)
}

/// The console log of events only: the fmt layer over a registry of its own, which never sees a span, so that it
/// prints each event without a span context and costs nothing on spans.
struct ConsoleEvents(tracing_subscriber::layer::Layered<FmtLayer<Registry>, Registry>);

impl ConsoleEvents {
    fn new(fmt: FmtLayer<Registry>) -> Self {
        ConsoleEvents(fmt.with_subscriber(Registry::default()))
    }
}

impl std::fmt::Debug for ConsoleEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleEvents")
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for ConsoleEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if self.0.event_enabled(event) {
            self.0.event(event);
        }
    }
}

/// `EnvFilter` as the global log filter, minus its span callbacks when no directive can need them, with the
/// [`UnsampledGate`] of head sampling.
///
/// `EnvFilter` tracks spans (a lock and a map lookup on every span's creation, enter, exit and close) for its
/// span-scoped directives only (`target[span{field=value}]=level`, always written with `[`); with none, those
/// callbacks find nothing to do, and skipping them is the same filter at less cost per span.
#[derive(Debug)]
struct LogFilter {
    filter: EnvFilter,
    spans: bool,
    gate: Option<UnsampledGate>,
    /// The stack's key, for [`Verdicts`].
    key: u64,
}

impl LogFilter {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        let interest =
            tracing_subscriber::Layer::<Registry>::register_callsite(&self.filter, metadata);
        match self.gate {
            Some(gate) => gate.interest(metadata, interest),
            None => interest,
        }
    }

    #[inline]
    fn enabled(&self, metadata: &tracing::Metadata<'_>, ctx: Context<'_, Registry>) -> bool {
        if !self.gate.is_none_or(|gate| gate.allows(metadata, &ctx)) {
            return false;
        }
        let ask = || tracing_subscriber::Layer::<Registry>::enabled(&self.filter, metadata, ctx);
        // Without span-scoped directives the answer about a span depends on its callsite alone.
        if metadata.is_span() && !self.spans {
            Verdicts::filter(self.key, metadata, ask)
        } else {
            ask()
        }
    }

    #[inline]
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, Registry>) {
        if self.spans {
            self.filter.on_new_span(attrs, id, ctx);
        }
    }

    #[inline]
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, Registry>) {
        if self.spans {
            self.filter.on_record(id, values, ctx);
        }
    }

    #[inline]
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if self.spans {
            self.filter.on_enter(id, ctx);
        }
    }

    #[inline]
    fn on_exit(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if self.spans {
            self.filter.on_exit(id, ctx);
        }
    }

    #[inline]
    fn on_close(&self, id: span::Id, ctx: Context<'_, Registry>) {
        if self.spans {
            tracing_subscriber::Layer::<Registry>::on_close(&self.filter, id, ctx);
        }
    }

    /// # Safety
    /// As `Layer::downcast_raw`.
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: the filter lives as long as `self`.
        unsafe { tracing_subscriber::Layer::<Registry>::downcast_raw(&self.filter, id) }
    }

    fn new(directives: &str, gate: Option<UnsampledGate>, key: u64) -> Self {
        let (filter, spans) = match EnvFilter::try_new(directives) {
            Ok(filter) => (filter, directives.contains('[')),
            Err(_) => (EnvFilter::new("info"), false),
        };
        LogFilter {
            filter,
            spans,
            gate,
            key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TraceSampler;
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use tracing::Level;

    fn debug_enabled_in_and_out_of_a_request(
        directives: &str,
        sampler: TraceSampler,
    ) -> (bool, bool) {
        let config = TelemetryConfig::new()
            .fmt_output(false)
            .log_filter(directives)
            .trace_sampler(sampler);
        let stack = TracingStack::with_exporter(&config, InMemorySpanExporter::default()).unwrap();
        tracing::dispatcher::with_default(stack.dispatch(), || {
            let outside = tracing::enabled!(Level::DEBUG);
            let request = tracing::info_span!("request");
            let _request = request.enter();
            (outside, tracing::enabled!(Level::DEBUG))
        })
    }

    /// The gate makes the spans the log filter enables be asked about each time, and leaves the rest cached:
    /// a span the filter disables costs nothing more, and events are as the filter says.
    #[test]
    fn spans_the_filter_disables_stay_disabled_for_good() {
        let config = TelemetryConfig::new().fmt_output(false).log_filter("info");
        let stack = TracingStack::with_exporter(&config, InMemorySpanExporter::default()).unwrap();
        let interest = |meta| stack.dispatch().register_callsite(meta);
        use tracing::callsite::Callsite as _;
        use tracing::metadata::Kind;
        let debug =
            tracing::callsite!(name: "hot", kind: Kind::SPAN, level: Level::DEBUG, fields: [])
                .metadata();
        let info =
            tracing::callsite!(name: "request", kind: Kind::SPAN, level: Level::INFO, fields: [])
                .metadata();
        assert!(interest(debug).is_never());
        assert!(interest(info).is_sometimes());
    }

    /// Each stack keeps its own log filter's answers about a callsite, on a thread that runs both.
    #[test]
    fn stacks_with_different_filters_answer_for_themselves() {
        let stack = |directives: &str| {
            let config = TelemetryConfig::new()
                .fmt_output(false)
                .log_filter(directives);
            TracingStack::with_exporter(&config, InMemorySpanExporter::default()).unwrap()
        };
        let (info, warn) = (stack("info"), stack("warn"));
        let span = || !tracing::info_span!("request").is_disabled();
        for _ in 0..3 {
            assert!(tracing::dispatcher::with_default(info.dispatch(), span));
            assert!(!tracing::dispatcher::with_default(warn.dispatch(), span));
        }
    }

    /// A span-scoped directive still sees the spans it is scoped to (its callbacks run), sampled or not.
    #[test]
    fn span_scoped_directives_still_apply() {
        for sampler in [
            TraceSampler::ParentBasedAlwaysOn,
            TraceSampler::ParentBasedAlwaysOff,
        ] {
            assert_eq!(
                debug_enabled_in_and_out_of_a_request("info,[request]=debug", sampler),
                (false, true),
                "{sampler:?}"
            );
            assert_eq!(
                debug_enabled_in_and_out_of_a_request("info", sampler),
                (false, false)
            );
            assert_eq!(
                debug_enabled_in_and_out_of_a_request("debug", sampler),
                (true, true)
            );
        }
    }
}
