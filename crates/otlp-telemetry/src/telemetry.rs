//! otlp-telemetry's own instruments, in the provider-following registry of `otlp_core::instruments` (so they
//! report through whichever meter provider is installed, and a dropped owner's counts are kept).

use otlp_core::instruments::{Kind, Observable, Scope};

/// `trace.sampler.decisions`: decisions of the configured sampler, by result and parent origin.
pub(crate) const SAMPLER_DECISIONS: usize = 0;

/// `otel.sdk.processor.span.processed`: spans the batch processor is done with, by `error.type`.
pub(crate) const PROCESSOR_SPANS: usize = 1;

static OBSERVABLES: [Observable; 2] = [
    Observable {
        name: "trace.sampler.decisions",
        unit: "{decision}",
        description: "Decisions of the configured trace sampler (with a parent-based sampler: one per new \
                      trace), by sampling result and parent origin.",
        kind: Kind::Counter,
    },
    Observable {
        name: "otel.sdk.processor.span.processed",
        unit: "{span}",
        description: "Spans the batch span processor is done with: delivered, or failed by error.type \
                      (queue_full: dropped at once; export_failed: in an export that failed).",
        kind: Kind::Counter,
    },
];

/// The `otlp-telemetry` instrumentation scope.
pub(crate) static INSTRUMENTS: Scope = Scope::new(
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_VERSION"),
    &OBSERVABLES,
    &[],
);
