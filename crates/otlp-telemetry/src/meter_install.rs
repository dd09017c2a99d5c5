//! Installing an SDK meter provider so that otlp-kit's owners record their durations through bound histograms.
//!
//! otlp-kit's owners (worker pools, fan-outs, pipelines, semaphores, limiters) record each duration with an
//! attribute set built once per owner. Through the plain `Histogram::record`, the SDK hashes that set on every
//! record to find its data point; a bound histogram (opentelemetry's `Histogram::bind`, on for this crate's SDK)
//! finds it once. Owners' crates use the OpenTelemetry API alone, so they cannot know whether a provider's
//! `bind` works (the API's default drops every record): this crate tells them, for the SDK provider it installs.
//!
//! [`init`](crate::init()) installs its provider this way. A service that builds its own [`SdkMeterProvider`]
//! installs it with [`install_meter_provider`] to get the same; one installed with
//! `opentelemetry::global::set_meter_provider` works as well, through the plain path.
//!
//! ```
//! use opentelemetry_sdk::metrics::SdkMeterProvider;
//!
//! let provider = SdkMeterProvider::builder().build();
//! otlp_telemetry::install_meter_provider(provider.clone());
//! // ... owners built before or after record through `provider`; shut it down at the end:
//! provider.shutdown().unwrap();
//! ```

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Histogram};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use otlp_core::instruments::{Binder, BoundRecord};

/// Installs `provider` as the global meter provider (`opentelemetry::global::set_meter_provider`), has otlp-kit's
/// owners record their durations on it through bound histograms, and makes owners built earlier report through it
/// at once.
///
/// What is exported is the same as through the plain path; only the cost of a record changes (see
/// docs/benchmarks.md). Keep a clone of `provider` to flush and shut it down.
pub fn install_meter_provider(provider: SdkMeterProvider) {
    otlp_core::instruments::install(provider, Arc::new(SdkBinder));
}

/// Binds the SDK's histograms: its instruments resolve an attribute set's data point once, in `bind`.
#[derive(Debug)]
struct SdkBinder;

impl Binder for SdkBinder {
    fn bind(&self, histogram: &Histogram<f64>, attrs: &[KeyValue]) -> Box<dyn BoundRecord> {
        Box::new(Bound(histogram.bind(attrs)))
    }
}

#[derive(Debug)]
struct Bound(BoundHistogram<f64>);

impl BoundRecord for Bound {
    #[inline]
    fn record(&self, value: f64) {
        self.0.record(value);
    }
}
