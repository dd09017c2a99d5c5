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
//! Variants: `root_unsampled` (a server span with 5 attributes, entered and closed, sampled out),
//! `root_sampled` (the same, recorded and exported to nothing), `child_unsampled` (a child span inside an entered
//! sampled-out root), `request_unsampled` (the root and 3 children).

use std::hint::black_box;

use otlp_benches::server::NoopExporter;
use otlp_benches::spans::{child_span, request, root_span};
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

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "root_unsampled".into());
    let n: u64 = args.next().map_or(1000, |n| n.parse().expect("N"));
    let ratio = if variant.ends_with("_sampled") {
        1.0
    } else {
        0.0
    };
    let config = TelemetryConfig::new()
        .trace_sampler(TraceSampler::ParentBasedTraceIdRatio(ratio))
        .span_queue_size(1 << 16);
    let stack = TracingStack::with_exporter(&config, NoopExporter).expect("stack");
    tracing::dispatcher::with_default(stack.dispatch(), || match variant.as_str() {
        "root_unsampled" | "root_sampled" => (0..n).for_each(|_| root()),
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
