//! Instrument plumbing shared by the three patterns: the instrumentation scope, duration histograms in seconds,
//! and observable outcome counters.

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::Outcome;

/// The crate's meter: scope `otlp-patterns` with the crate's version, from the global meter provider.
pub(crate) fn default_meter() -> Meter {
    let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    opentelemetry::global::meter_with_scope(scope)
}

/// Bucket boundaries (seconds) for task durations: from 10 µs to 10 s.
const DURATION_BOUNDARIES: [f64; 16] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A histogram named `name` in seconds.
pub(crate) fn duration_histogram(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(DURATION_BOUNDARIES.to_vec())
        .build()
}

/// Seconds as `f64`.
#[inline]
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Registers an observable counter `name` (`unit`) reporting one data point per outcome, each with `attrs` plus
/// `outcome`. `read` is called at export with the owner; the owner is held weakly so that the callback, which
/// the SDK keeps for the provider's lifetime, does not keep a dropped owner alive.
pub(crate) fn outcome_counter<S: Send + Sync + 'static>(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    owner: &Arc<S>,
    attrs: &[KeyValue],
    read: fn(&S) -> [u64; 6],
) -> opentelemetry::metrics::ObservableCounter<u64> {
    let weak: Weak<S> = Arc::downgrade(owner);
    let per_outcome: Vec<Vec<KeyValue>> = Outcome::ALL
        .iter()
        .map(|o| {
            let mut a = attrs.to_vec();
            a.push(KeyValue::new("outcome", o.as_str()));
            a
        })
        .collect();
    meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |obs| {
            if let Some(owner) = weak.upgrade() {
                for (value, attrs) in read(&owner).iter().zip(&per_outcome) {
                    obs.observe(*value, attrs);
                }
            }
        })
        .build()
}

/// Registers an observable gauge `name` (`unit`) reading `read(owner)` with `attrs`; the owner is held weakly.
pub(crate) fn gauge<S: Send + Sync + 'static>(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    owner: &Arc<S>,
    attrs: Vec<KeyValue>,
    read: impl Fn(&S) -> u64 + Send + Sync + 'static,
) -> opentelemetry::metrics::ObservableGauge<u64> {
    let weak: Weak<S> = Arc::downgrade(owner);
    meter
        .u64_observable_gauge(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |obs| {
            if let Some(owner) = weak.upgrade() {
                obs.observe(read(&owner), &attrs);
            }
        })
        .build()
}
