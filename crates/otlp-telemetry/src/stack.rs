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
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

use crate::accounting::{CountingProcessor, SpanCounts};
use crate::budget::{BudgetSampler, TraceBudgetHandle};
use crate::config::TelemetryConfig;
use crate::error::TelemetryError;
use crate::head_sampling::{HeadSampler, HeadSampling, HeadTracer, PredecidedIds, UnsampledGate};
use crate::init::excluded;
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
    let sampler = HeadSampler::new(Box::new(root), config.sampler.is_parent_based());
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
        .with_max_export_batch_size(config.bsp_max_export_batch_size)
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
    // Validated already; an unparsable filter falls back to `info` rather than failing late.
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // Without span context the fmt layer sees events only: a span's fields are never formatted for a console
    // that would not print them.
    let spans = config.fmt_span_context;
    let fmt = config.fmt_output.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
                spans || meta.is_event()
            }))
    });
    // Only with head sampling is there a sampled-out trace whose children the gate keeps out.
    let gate = switch.is_some().then_some(UnsampledGate);
    let otel = switch.map(|switch| {
        let layer = tracing_opentelemetry::layer()
            .with_tracer(HeadTracer(switch.clone()))
            .with_tracked_inactivity(false);
        HeadSampling::new(layer, switch).with_filter(tracing_subscriber::filter::filter_fn(
            |meta| !excluded(meta.target()),
        ))
    });
    Registry::default()
        .with(filter)
        .with(fmt)
        .with(otel)
        .with(gate)
}
