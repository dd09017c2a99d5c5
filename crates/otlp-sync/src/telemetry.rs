//! Instrument names, the instrumentation scope and shared telemetry helpers.
//!
//! Every instrument is listed in `docs/metrics.md`. Counters and up-down counters are observable: their callbacks read the
//! same cheap counters as `stats()`. Only waits record a histogram, and releases of semaphores that opted in to
//! `semaphore.hold.duration`.

use opentelemetry::InstrumentationScope;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{HistogramSpec, Kind, Observable, Scope};

/// The instrumentation scope name of every instrument in this crate.
pub const SCOPE: &str = "otlp-sync";

/// Names of the instruments and attributes, for dashboards and tests.
pub mod names {
    /// Up-down counter `{permit}`: the semaphore's total permits.
    pub const SEMAPHORE_PERMIT_LIMIT: &str = "semaphore.permit.limit";
    /// Up-down counter `{permit}`: permits held right now.
    pub const SEMAPHORE_PERMIT_USAGE: &str = "semaphore.permit.usage";
    /// Up-down counter `{acquire}`: acquires waiting right now.
    pub const SEMAPHORE_ACQUIRE_WAITING: &str = "semaphore.acquire.waiting";
    /// Counter `{acquire}` with attribute `outcome`: finished acquire calls.
    pub const SEMAPHORE_ACQUIRES: &str = "semaphore.acquires";
    /// Histogram `s` with attribute `outcome`: how long acquires that had to wait waited.
    pub const SEMAPHORE_WAIT_DURATION: &str = "semaphore.wait.duration";
    /// Histogram `s`: how long permits were held, from acquire to release (only semaphores built with
    /// `record_hold_duration(true)`).
    pub const SEMAPHORE_HOLD_DURATION: &str = "semaphore.hold.duration";
    /// Counter `{decision}` with attribute `outcome`: rate limiter decisions.
    pub const RATE_LIMITER_DECISIONS: &str = "rate_limiter.decisions";
    /// Histogram `s` with attribute `outcome`: how long waits that slept took.
    pub const RATE_LIMITER_WAIT_DURATION: &str = "rate_limiter.wait.duration";
    /// Up-down counter `{key}`: keys held by a keyed rate limiter's bounded key store.
    pub const RATE_LIMITER_KEY_COUNT: &str = "rate_limiter.key.count";
    /// Gauge `s` with attribute `adaptive_limit.estimate`: the latency estimates an adaptive limit works from.
    pub const ADAPTIVE_LIMIT_LATENCY: &str = "adaptive_limit.latency";
    /// Counter `{sample}` with attribute `outcome`: samples reported by adaptive limit permits.
    pub const ADAPTIVE_LIMIT_SAMPLES: &str = "adaptive_limit.samples";
    /// Attribute: which estimate (`sample`, `baseline`).
    pub const ADAPTIVE_LIMIT_ESTIMATE: &str = "adaptive_limit.estimate";
    /// Attribute: the adaptive limit's algorithm (`gradient2`, `aimd`, `vegas`).
    pub const ADAPTIVE_LIMIT_ALGORITHM: &str = "adaptive_limit.algorithm";
    /// Counter `{error}` with attribute `error.type`: round trips to a shared rate limiter's backend that failed.
    pub const RATE_LIMITER_BACKEND_ERRORS: &str = "rate_limiter.backend.errors";
    /// Attribute: where a shared rate limiter keeps its state (`redis`).
    pub const RATE_LIMITER_BACKEND: &str = "rate_limiter.backend";
    /// Attribute: the kind of a failure (`timeout`, `error`).
    pub const ERROR_TYPE: &str = "error.type";
    /// Attribute: the semaphore's name.
    pub const SEMAPHORE_NAME: &str = "semaphore.name";
    /// Attribute: the rate limiter's name.
    pub const RATE_LIMITER_NAME: &str = "rate_limiter.name";
    /// Attribute: how a call ended.
    pub const OUTCOME: &str = "outcome";
}

/// Bucket boundaries (seconds) advised for the wait histograms: 10 µs to 10 s. A view can override them.
pub(crate) const WAIT_BOUNDARIES: [f64; 16] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Indices of the scope's observable instruments.
pub(crate) const SEMAPHORE_LIMIT: usize = 0;
pub(crate) const SEMAPHORE_USAGE: usize = 1;
pub(crate) const SEMAPHORE_WAITING: usize = 2;
pub(crate) const SEMAPHORE_ACQUIRES: usize = 3;
pub(crate) const RATE_LIMITER_DECISIONS: usize = 4;
pub(crate) const RATE_LIMITER_KEYS: usize = 5;
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis limiter observes it
pub(crate) const RATE_LIMITER_BACKEND_ERRORS: usize = 6;
pub(crate) const ADAPTIVE_LIMIT_LATENCY: usize = 7;
pub(crate) const ADAPTIVE_LIMIT_SAMPLES: usize = 8;
/// Indices of the scope's histograms.
pub(crate) const SEMAPHORE_WAIT: usize = 0;
pub(crate) const RATE_LIMITER_WAIT: usize = 1;
pub(crate) const SEMAPHORE_HOLD: usize = 2;

static OBSERVABLES: [Observable; 9] = [
    Observable {
        name: names::SEMAPHORE_PERMIT_LIMIT,
        unit: "{permit}",
        description: "Total permits of the semaphore.",
        kind: Kind::UpDownCounter,
    },
    Observable {
        name: names::SEMAPHORE_PERMIT_USAGE,
        unit: "{permit}",
        description: "Permits not free right now (held, or set aside for the front waiter).",
        kind: Kind::UpDownCounter,
    },
    Observable {
        name: names::SEMAPHORE_ACQUIRE_WAITING,
        unit: "{acquire}",
        description: "Acquires waiting for permits right now.",
        kind: Kind::UpDownCounter,
    },
    Observable {
        name: names::SEMAPHORE_ACQUIRES,
        unit: "{acquire}",
        description: "Finished acquire calls, by outcome.",
        kind: Kind::Counter,
    },
    Observable {
        name: names::RATE_LIMITER_DECISIONS,
        unit: "{decision}",
        description: "Rate limiter decisions, by outcome.",
        kind: Kind::Counter,
    },
    Observable {
        name: names::RATE_LIMITER_KEY_COUNT,
        unit: "{key}",
        description: "Keys held by the keyed rate limiter's bounded key store.",
        kind: Kind::UpDownCounter,
    },
    Observable {
        name: names::RATE_LIMITER_BACKEND_ERRORS,
        unit: "{error}",
        description: "Round trips to the rate limiter's backend that failed, by error type.",
        kind: Kind::Counter,
    },
    Observable {
        name: names::ADAPTIVE_LIMIT_LATENCY,
        unit: "s",
        description: "Latency estimates the adaptive limit works from: the last sampled round trip and its baseline.",
        kind: Kind::Gauge,
    },
    Observable {
        name: names::ADAPTIVE_LIMIT_SAMPLES,
        unit: "{sample}",
        description: "Samples reported by adaptive limit permits, by outcome.",
        kind: Kind::Counter,
    },
];

static HISTOGRAMS: [HistogramSpec; 3] = [
    HistogramSpec {
        name: names::SEMAPHORE_WAIT_DURATION,
        unit: "s",
        description: "How long acquires that had to wait waited, by outcome.",
        boundaries: &WAIT_BOUNDARIES,
    },
    HistogramSpec {
        name: names::RATE_LIMITER_WAIT_DURATION,
        unit: "s",
        description: "How long rate limiter waits that slept took, by outcome.",
        boundaries: &WAIT_BOUNDARIES,
    },
    HistogramSpec {
        name: names::SEMAPHORE_HOLD_DURATION,
        unit: "s",
        description: "How long permits were held, from acquire to release.",
        boundaries: &WAIT_BOUNDARIES,
    },
];

/// The `otlp-sync` instrumentation scope: every semaphore, rate limiter and adaptive limit registers with it, and it follows the
/// global meter provider (see `otlp_core::instruments`).
pub(crate) static INSTRUMENTS: Scope =
    Scope::new(SCOPE, env!("CARGO_PKG_VERSION"), &OBSERVABLES, &HISTOGRAMS);

/// The meter of this crate's scope (`otlp-sync` with its version) from the global meter provider.
pub fn default_meter() -> Meter {
    opentelemetry::global::meter_with_scope(
        InstrumentationScope::builder(SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}
