//! One request's tracing through the stack `otlp_telemetry::init` installs (`TracingStack`: `EnvFilter` at
//! `info`, the fmt layer, the OpenTelemetry layer, the configured sampler, a batch span processor), exporting to
//! an exporter that drops what it is given.
//!
//! A request is a server span with 5 attributes (as `ServerTraceLayer` opens it) and 3 child spans, each entered
//! and closed. Variants: `no_subscriber` (no `tracing` subscriber at all: the floor), `unsampled` (the root is
//! sampled out: ratio 0), `sampled` (every span recorded and exported).
//!
//! The machine these run on is shared: the other rows are timed in CPU time of the bench thread
//! (`CLOCK_THREAD_CPUTIME_ID`), which other processes' load does not inflate. The sampled rows are timed in CPU
//! time of the whole process (`CLOCK_PROCESS_CPUTIME_ID`), so the batch
//! processor's thread (export included) is paid for, and every batch of requests is flushed before the clock
//! stops, in chunks smaller than the export queue so that nothing is dropped (a dropped span would be cheaper).
//!
//! Groups (each an `otlp_benches::Comparison`: interleaved rounds, `<group>/<function>/round<r>`, which
//! `cargo xtask bench` reads against `benches/goals.json`):
//! * `telemetry_request`: the whole request;
//! * `telemetry_root_span`: the server span alone;
//! * `telemetry_child_span`: one child span, inside an entered root;
//! * `telemetry_server_layer`: one request (a path, two headers, no `traceparent`) through `ServerTraceLayer`
//!   over a service that answers at once, sampled out (`unsampled`), against the service alone (`no_layer`);
//! * `telemetry_span_export`: the export of one batch of 2048 sampled spans (512 requests recorded through
//!   `TracingStack`), from the `SpanData` the batch processor hands over to the bytes of an OTLP
//!   `ExportTraceServiceRequest` (what goes over gRPC or HTTP/protobuf, uncompressed), the spans freed as the
//!   exporter frees them, in thread CPU time per batch: `otlp_encode` (`otlp_telemetry::otlp_encode`, what `init`
//!   installs) against `opentelemetry_otlp` (`opentelemetry-proto`'s conversion into its structures, prost's
//!   encoding, both freed: `opentelemetry-otlp`'s path);
//! * `telemetry_root_span_otlp`: the sampled server span as in `telemetry_root_span`, its export included
//!   (process CPU time), to an exporter that encodes each batch into OTLP bytes with `otlp_encode` and drops them
//!   (`otlp_encode`: everything but the network) against `NoopExporter` (`noop_exporter`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData, SpanExporter};
use otlp_benches::Comparison;
use otlp_benches::server::{Answer, NoopExporter, install_default_propagator, serve};
use otlp_benches::spans::{child_span, request, root_span};
use otlp_telemetry::otlp_encode::encode_trace_request;
use otlp_telemetry::stack::TracingStack;
use otlp_telemetry::tower::ServerTraceLayer;
use otlp_telemetry::{TelemetryConfig, TraceSampler};
use prost::Message as _;
use tower_layer::Layer as _;

/// The export queue of the stack; batches of requests are flushed before they could fill it.
const QUEUE: usize = 2048;

fn stack(ratio: f64) -> TracingStack {
    let config = TelemetryConfig::new()
        .trace_sampler(TraceSampler::ParentBasedTraceIdRatio(ratio))
        .span_queue_size(QUEUE);
    TracingStack::with_exporter(&config, NoopExporter).expect("stack")
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time used so far by every thread of the process.
fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time used so far by this thread.
fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Runs `op` `iters` times inside `stack`, flushing every `per_flush` ops, and returns the process CPU time.
fn sampled_cpu(stack: &TracingStack, iters: u64, per_flush: u64, op: impl Fn()) -> Duration {
    stack.provider().force_flush().expect("flush");
    let start = process_cpu();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let mut done = 0;
        while done < iters {
            let n = per_flush.min(iters - done);
            for _ in 0..n {
                op();
            }
            stack.provider().force_flush().expect("flush");
            done += n;
        }
    });
    process_cpu() - start
}

fn thread_time(stack: Option<&TracingStack>, iters: u64, op: impl Fn()) -> Duration {
    let run = || {
        let start = thread_cpu();
        for _ in 0..iters {
            op();
        }
        thread_cpu() - start
    };
    match stack {
        Some(s) => tracing::dispatcher::with_default(s.dispatch(), run),
        None => run(),
    }
}

/// Encodes each batch as `init`'s exporter does, then drops the bytes instead of sending them.
#[derive(Debug)]
struct EncodingExporter(Resource);

impl SpanExporter for EncodingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut buf = Vec::new();
        encode_trace_request(&self.0, &batch, &mut buf);
        drop(batch);
        black_box(buf);
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0 = resource.clone();
    }
}

/// The spans of the default export batch, as the batch processor hands them to the exporter.
const EXPORT_BATCH: usize = 2048;

fn recorded_batch() -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let config = TelemetryConfig::new()
        .fmt_output(false)
        .trace_sampler(TraceSampler::ParentBasedAlwaysOn)
        .span_queue_size(2 * EXPORT_BATCH);
    let stack = TracingStack::with_exporter(&config, exporter.clone()).expect("stack");
    tracing::dispatcher::with_default(stack.dispatch(), || {
        for _ in 0..EXPORT_BATCH / 4 {
            request("/orders/7");
        }
    });
    stack.provider().force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.len(), EXPORT_BATCH);
    let _ = stack.provider().shutdown();
    spans
}

/// `n` exports of a fresh copy of `batch` (copied off the clock), in thread CPU time.
fn export_time(n: u64, batch: &[SpanData], export: impl Fn(Vec<SpanData>)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let copy = batch.to_vec();
        let start = thread_cpu();
        export(copy);
        total += thread_cpu() - start;
    }
    total
}

fn span_export(c: &mut Criterion) {
    let sampled = stack(1.0);
    let config = TelemetryConfig::new()
        .trace_sampler(TraceSampler::ParentBasedTraceIdRatio(1.0))
        .span_queue_size(QUEUE);
    let encoding =
        TracingStack::with_exporter(&config, EncodingExporter(Resource::builder_empty().build()))
            .expect("stack");
    let root = || drop(root_span(black_box("/orders/7")).entered());
    Comparison::new("telemetry_root_span_otlp")
        .function("otlp_encode", |b| {
            b.iter_custom(|n| sampled_cpu(&encoding, n, (QUEUE / 4) as u64, root))
        })
        .function("noop_exporter", |b| {
            b.iter_custom(|n| sampled_cpu(&sampled, n, (QUEUE / 4) as u64, root))
        })
        .run(c);
    let _ = encoding.provider().shutdown();
    let _ = sampled.provider().shutdown();

    let batch = recorded_batch();
    let resource = Resource::builder().with_service_name("checkout").build();
    let attributes = ResourceAttributesWithSchema::from(&resource);
    Comparison::new("telemetry_span_export")
        .timed("otlp_encode", |n| {
            export_time(n, &batch, |spans| {
                let mut buf = Vec::new();
                encode_trace_request(&resource, &spans, &mut buf);
                drop(spans);
                black_box(buf);
            })
        })
        .timed("opentelemetry_otlp", |n| {
            export_time(n, &batch, |spans| {
                let request = ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(spans, &attributes),
                };
                let buf = request.encode_to_vec();
                drop(request);
                black_box(buf);
            })
        })
        .run(c);
}

fn benches(c: &mut Criterion) {
    let unsampled = stack(0.0);
    let sampled = stack(1.0);
    // 4 spans per request; a quarter of the queue per flush leaves room for the exporter to lag.
    let requests_per_flush = (QUEUE / 4 / 4) as u64;

    Comparison::new("telemetry_request")
        .function("unsampled", |b| {
            b.iter_custom(|n| thread_time(Some(&unsampled), n, || request(black_box("/orders/7"))))
        })
        .function("sampled", |b| {
            b.iter_custom(|n| {
                sampled_cpu(&sampled, n, requests_per_flush, || {
                    request(black_box("/orders/7"))
                })
            })
        })
        .function("no_subscriber", |b| {
            b.iter_custom(|n| thread_time(None, n, || request(black_box("/orders/7"))))
        })
        .run(c);

    let root = || drop(root_span(black_box("/orders/7")).entered());
    Comparison::new("telemetry_root_span")
        .function("unsampled", |b| {
            b.iter_custom(|n| thread_time(Some(&unsampled), n, root))
        })
        .function("sampled", |b| {
            b.iter_custom(|n| sampled_cpu(&sampled, n, (QUEUE / 4) as u64, root))
        })
        .function("no_subscriber", |b| {
            b.iter_custom(|n| thread_time(None, n, root))
        })
        .run(c);

    let in_root = |stack: Option<&TracingStack>, n: u64| {
        let run = || {
            let root = root_span("/orders/7");
            let _entered = root.enter();
            let start = thread_cpu();
            for _ in 0..n {
                child_span();
            }
            thread_cpu() - start
        };
        match stack {
            Some(s) => tracing::dispatcher::with_default(s.dispatch(), run),
            None => run(),
        }
    };
    Comparison::new("telemetry_child_span")
        .function("unsampled", |b| {
            b.iter_custom(|n| in_root(Some(&unsampled), n))
        })
        .function("no_subscriber", |b| b.iter_custom(|n| in_root(None, n)))
        .run(c);

    install_default_propagator();
    let layered = ServerTraceLayer::new().layer(Answer);
    Comparison::new("telemetry_server_layer")
        .function("unsampled", |b| {
            b.iter_custom(|n| thread_time(Some(&unsampled), n, || serve(&mut layered.clone(), 1)))
        })
        .function("no_layer", |b| {
            b.iter_custom(|n| thread_time(None, n, || serve(&mut Answer, 1)))
        })
        .run(c);

    let _ = unsampled.provider().shutdown();
    let _ = sampled.provider().shutdown();

    span_export(c);
}

criterion_group!(telemetry, benches);
criterion_main!(telemetry);
