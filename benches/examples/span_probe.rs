//! Runs N spans of the tracing benches (`otlp_benches::spans`) through `TracingStack` (the layers `init`
//! installs), for counting instructions per span with callgrind: the inclusive count of the function each
//! iteration calls (`root`, `child`, `traced_request`, never inlined) over N.
//!
//! ```text
//! cargo build --release -p otlp-benches --example span_probe
//! valgrind --tool=callgrind --separate-threads=yes target/release/examples/span_probe root_unsampled 11000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>-01 | grep span_probe::root
//! ```
//!
//! Variants: `root_unsampled` (a server span with 5 attributes, entered and closed, sampled out by the ratio),
//! `root_over_budget` (the same, sampled out by a span budget of one trace a second, as `init`'s default sampler
//! does at full load),
//! `root_sampled` (the same, recorded and exported to nothing), `child_unsampled` (a child span inside an entered
//! sampled-out root), `request_unsampled` (the root and 3 children). With `SPAN_SOURCE_ATTRIBUTES` set in the
//! environment, spans carry the thread and code-location attributes (`span_source_attributes(true)`); with
//! `SPAN_PROBE_ENCODE` set, the exporter encodes each batch as an OTLP request (`otlp_encode`) instead of
//! dropping it.

use std::hint::black_box;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use otlp_benches::server::NoopExporter;
use otlp_benches::spans::{child_span, request, root_span};
use otlp_telemetry::otlp_encode::encode_trace_request;
use otlp_telemetry::stack::TracingStack;
use otlp_telemetry::{TelemetryConfig, TraceSampler};

#[inline(never)]
fn child() {
    child_span();
}

#[inline(never)]
fn root() {
    drop(root_span(black_box("/orders/7")).entered());
}

#[inline(never)]
fn traced_request() {
    request(black_box("/orders/7"));
}

/// Encodes each batch as the OTLP exporters do, then drops the bytes.
#[derive(Debug, Default)]
struct EncodingExporter(std::sync::Mutex<Vec<u8>>);

impl SpanExporter for EncodingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut buf = self.0.lock().expect("buffer");
        buf.clear();
        encode_trace_request(&Resource::builder_empty().build(), &batch, &mut buf);
        black_box(&*buf);
        Ok(())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "root_unsampled".into());
    let n: u64 = args.next().map_or(1000, |n| n.parse().expect("N"));
    let sampler = if variant.ends_with("_sampled") {
        TraceSampler::ParentBasedTraceIdRatio(1.0)
    } else if variant == "root_over_budget" {
        // One root a second: the first is recorded, every other one refused by the budget.
        TraceSampler::ParentBasedRateLimited(1)
    } else {
        TraceSampler::ParentBasedTraceIdRatio(0.0)
    };
    let config = TelemetryConfig::new()
        .trace_sampler(sampler)
        .span_queue_size(1 << 16)
        .span_source_attributes(std::env::var_os("SPAN_SOURCE_ATTRIBUTES").is_some());
    let stack = if std::env::var_os("SPAN_PROBE_ENCODE").is_some() {
        TracingStack::with_exporter(&config, EncodingExporter::default())
    } else {
        TracingStack::with_exporter(&config, NoopExporter)
    }
    .expect("stack");
    tracing::dispatcher::with_default(stack.dispatch(), || match variant.as_str() {
        "root_unsampled" | "root_sampled" | "root_over_budget" => (0..n).for_each(|_| root()),
        "request_unsampled" => (0..n).for_each(|_| traced_request()),
        "child_unsampled" => {
            let root = root_span("/orders/7");
            let _entered = root.enter();
            (0..n).for_each(|_| child());
        }
        other => panic!("unknown variant {other}"),
    });
    let _ = stack.provider().shutdown();
}
