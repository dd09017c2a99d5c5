//! Instrument plumbing shared by the three patterns: the instrumentation scope `otlp-patterns` and its
//! instruments, and the attribute sets of outcome counters.
//!
//! Every worker pool, fan-out and pipeline registers with the scope's process-wide registry
//! (`otlp_core::instruments`), which follows the global meter provider: an owner built before the provider is
//! installed reports through it once it is, and a dropped owner's cumulative counts are kept. Counters and up-down
//! counters are observable instruments whose callbacks read the owners' own counters. Durations are recorded as
//! they happen, each on the histogram of the current provider with the owner's attribute set (built once), so the
//! exported histograms are those of the values measured, whatever the buckets a view chose; they are measured
//! only where a task or an item already ran or waited.

use std::time::Duration;

use opentelemetry::KeyValue;
use otlp_core::instruments::{Attributes, HistogramSpec, Kind, Observable, Observations, Scope};

use crate::Outcome;

/// Indices of the scope's observable instruments.
pub(crate) const WORKER_POOL_WORKERS: usize = 0;
pub(crate) const WORKER_POOL_ACTIVE: usize = 1;
pub(crate) const WORKER_POOL_QUEUE_SIZE: usize = 2;
pub(crate) const WORKER_POOL_QUEUE_CAPACITY: usize = 3;
pub(crate) const WORKER_POOL_TASKS: usize = 4;
pub(crate) const FAN_OUT_TASKS: usize = 5;
pub(crate) const PIPELINE_ITEMS: usize = 6;
pub(crate) const PIPELINE_QUEUE_SIZE: usize = 7;

/// Indices of the scope's histograms.
pub(crate) const WORKER_POOL_RUN: usize = 0;
pub(crate) const WORKER_POOL_WAIT: usize = 1;
pub(crate) const FAN_OUT_RUN: usize = 2;
pub(crate) const PIPELINE_STAGE: usize = 3;

static OBSERVABLES: [Observable; 8] = [
    Observable {
        name: "worker_pool.worker.count",
        unit: "{worker}",
        description: "Workers alive.",
        kind: Kind::UpDownCounter,
    },
    Observable {
        name: "worker_pool.worker.active",
        unit: "{worker}",
        description: "Workers running a task.",
        kind: Kind::UpDownCounter,
    },
    Observable {
        name: "worker_pool.queue.size",
        unit: "{task}",
        description: "Tasks waiting in the queue.",
        kind: Kind::UpDownCounter,
    },
    Observable {
        name: "worker_pool.queue.capacity",
        unit: "{task}",
        description: "Tasks the queue can hold.",
        kind: Kind::UpDownCounter,
    },
    Observable {
        name: "worker_pool.tasks",
        unit: "{task}",
        description: "Tasks submitted, by outcome.",
        kind: Kind::Counter,
    },
    Observable {
        name: "fan_out.tasks",
        unit: "{task}",
        description: "Fan-out items, by outcome.",
        kind: Kind::Counter,
    },
    Observable {
        name: "pipeline.items",
        unit: "{item}",
        description: "Items taken from pipeline inputs, by outcome.",
        kind: Kind::Counter,
    },
    Observable {
        name: "pipeline.stage.queue.size",
        unit: "{item}",
        description: "Items waiting in the queue in front of a stage.",
        kind: Kind::UpDownCounter,
    },
];

/// Bucket boundaries (seconds) advised for the duration histograms: 10 µs to 10 s. A view can override them
/// (otlp-telemetry's does).
const DURATION_BOUNDARIES: [f64; 16] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

static HISTOGRAMS: [HistogramSpec; 4] = [
    HistogramSpec {
        name: "worker_pool.task.duration",
        unit: "s",
        description: "Time tasks ran, until their outcome.",
        boundaries: &DURATION_BOUNDARIES,
    },
    HistogramSpec {
        name: "worker_pool.task.wait.duration",
        unit: "s",
        description: "Time tasks waited in the queue before a worker took them.",
        boundaries: &DURATION_BOUNDARIES,
    },
    HistogramSpec {
        name: "fan_out.task.duration",
        unit: "s",
        description: "Time fan-out items ran (after their permit).",
        boundaries: &DURATION_BOUNDARIES,
    },
    HistogramSpec {
        name: "pipeline.stage.duration",
        unit: "s",
        description: "Time an item spent in a stage's function.",
        boundaries: &DURATION_BOUNDARIES,
    },
];

/// The `otlp-patterns` instrumentation scope (with the crate's version).
pub(crate) static SCOPE: Scope = Scope::new(
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_VERSION"),
    &OBSERVABLES,
    &HISTOGRAMS,
);

/// An owner's attribute set plus `outcome`, one per outcome its counter documents (a fan-out item cannot time
/// out, so it exports no `timeout` series), built once.
#[derive(Debug)]
pub(crate) struct OutcomeAttributes {
    sets: Box<[(usize, Attributes)]>,
}

impl OutcomeAttributes {
    pub(crate) fn new(attrs: &[KeyValue], outcomes: &[Outcome]) -> Self {
        let sets = outcomes
            .iter()
            .map(|o| {
                let mut a = attrs.to_vec();
                a.push(KeyValue::new("outcome", o.as_str()));
                (o.index(), Attributes::new(a))
            })
            .collect();
        OutcomeAttributes { sets }
    }

    /// Reports `counts` (indexed by [`Outcome::index`]) as observable `instrument`, when it is the one being
    /// collected (reading the counts is skipped otherwise).
    pub(crate) fn observe(
        &self,
        out: &mut Observations<'_>,
        instrument: usize,
        counts: impl FnOnce() -> [u64; 6],
    ) {
        if out.current() != instrument {
            return;
        }
        let counts = counts();
        for (index, attrs) in self.sets.iter() {
            out.observe(instrument, counts[*index], attrs);
        }
    }
}

/// The clock that times fan-out items: `quanta` (the TSC, about 12 ns a read, against 30–50 for
/// `Instant::now()`), one process-wide calibrated clock cloned into each owner. Under `cfg(test)` and miri (which
/// cannot run the TSC instructions) it is `tokio::time::Instant`, so unit tests see tokio's paused time.
///
/// Durations timed with it are real elapsed time: they do not follow tokio's paused clock in tests.
#[derive(Debug, Clone)]
pub(crate) struct Stopwatch {
    #[cfg(not(any(test, miri)))]
    clock: quanta::Clock,
}

/// A reading of a [`Stopwatch`].
#[cfg(not(any(test, miri)))]
pub(crate) type Mark = quanta::Instant;
#[cfg(any(test, miri))]
pub(crate) type Mark = tokio::time::Instant;

impl Stopwatch {
    pub(crate) fn new() -> Self {
        #[cfg(not(any(test, miri)))]
        {
            // Calibrating a clock takes a while: once per process, at build time rather than on a first item.
            static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
            Stopwatch {
                clock: CLOCK.get_or_init(quanta::Clock::new).clone(),
            }
        }
        #[cfg(any(test, miri))]
        Stopwatch {}
    }

    #[inline]
    pub(crate) fn now(&self) -> Mark {
        #[cfg(not(any(test, miri)))]
        return self.clock.now();
        #[cfg(any(test, miri))]
        return tokio::time::Instant::now();
    }
}

/// Seconds as `f64`.
#[inline]
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
