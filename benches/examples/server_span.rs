//! Runs N requests through `ServerTraceLayer` over a service that answers at once, for counting instructions
//! per request with callgrind (two runs with different N; the difference over the difference in N):
//!
//! ```text
//! cargo build --release -p otlp-benches --example server_span
//! valgrind --tool=callgrind target/release/examples/server_span unsampled 1000
//! valgrind --tool=callgrind target/release/examples/server_span unsampled 5000
//! ```
//!
//! Variants: `unsampled` (`init`'s stack, every root sampled out), `sampled` (every root recorded and exported
//! to nothing), `no_layer` (the service alone, no subscriber).

use otlp_benches::server::{Answer, NoopExporter, install_default_propagator, serve};
use otlp_telemetry::stack::TracingStack;
use otlp_telemetry::tower::ServerTraceLayer;
use otlp_telemetry::{TelemetryConfig, TraceSampler};
use tower_layer::Layer as _;

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "unsampled".into());
    let n: u64 = args.next().map_or(1000, |n| n.parse().expect("N"));
    let ratio = match variant.as_str() {
        "unsampled" => 0.0,
        "sampled" => 1.0,
        "no_layer" => return serve(&mut Answer, n),
        other => panic!("unknown variant {other}: unsampled, sampled or no_layer"),
    };
    let config = TelemetryConfig::new()
        .trace_sampler(TraceSampler::ParentBasedTraceIdRatio(ratio))
        .span_queue_size(1 << 16);
    let stack = TracingStack::with_exporter(&config, NoopExporter).expect("stack");
    install_default_propagator();
    let mut service = ServerTraceLayer::new().layer(Answer);
    tracing::dispatcher::with_default(stack.dispatch(), || serve(&mut service, n));
    let _ = stack.provider().shutdown();
}
