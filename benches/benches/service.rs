//! A request-shaped composite: what the toolkit costs inside a service, all of it instrumented, against the same
//! request built on the raw crates (no metrics) and on the raw crates with per-request metrics recorded the
//! straightforward way.
//!
//! One request: a rate-limiter check, a semaphore permit (64), a 4 KiB buffer with 512 bytes written into it, a
//! fan-out of 4 sub-calls gathered in order, and one "write" task run on a worker pool (2 workers) and awaited.
//! 1,000 requests run 128 at a time on a 2-worker multi-thread runtime per iteration.
//!
//! * `ours`: `RateLimiter`, `Semaphore`, `BufferPool`, `FanOut`, `WorkerPool`, every one of them exporting its
//!   metrics through an SDK meter provider.
//! * `raw`: governor, `tokio::sync::Semaphore`, `Vec::with_capacity`, `futures::future::join_all`, `tokio::spawn`
//!   per write: nothing measured.
//! * `naive_metrics`: `raw` plus a request counter and a latency histogram recorded per request with attributes
//!   built per call and two clock reads (how instrumentation often starts out).
//!
//! Allocations per request are counted on a current-thread runtime (all threads' allocations, from the
//! difference of two batch sizes) for each variant.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use otlp_benches::{Comparison, CountingAlloc, allocs_per_op_batched, record_allocs, runtime};
use otlp_patterns::{FanOut, WorkerPool};
use otlp_pool::BufferPool;
use otlp_sync::{RateLimiter, Semaphore};
use tokio::runtime::Runtime;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const GROUP: &str = "service_request";
const REQUESTS: u64 = 1_000;
const IN_FLIGHT: usize = 128;
const PERMITS: usize = 64;
const SUB_CALLS: u64 = 4;
const BODY: usize = 512;
/// High enough that no request is throttled: the limiter's cost is its check.
const RATE: NonZeroU32 = NonZeroU32::new(1_000_000_000).unwrap();

/// What a request writes into its buffer (the same bytes in every variant).
fn encode(buf: &mut Vec<u8>, id: u64) {
    buf.extend_from_slice(&id.to_le_bytes());
    buf.resize(BODY, (id & 0xff) as u8);
}

/// A sub-call's answer (ready at once: the cost measured is the plumbing, not the work).
async fn sub_call(id: u64, k: u64) -> u64 {
    black_box(id ^ k)
}

struct Ours {
    limiter: RateLimiter,
    sem: Semaphore,
    buffers: BufferPool,
    fan: FanOut,
    writes: WorkerPool,
}

impl Ours {
    fn new(rt: &Runtime) -> Self {
        let _enter = rt.enter();
        Ours {
            limiter: RateLimiter::per_second("svc", u64::from(RATE.get())).expect("limiter"),
            sem: Semaphore::new("svc", PERMITS).expect("semaphore"),
            buffers: BufferPool::builder("svc")
                .capacity(256)
                .build()
                .expect("buffers"),
            fan: FanOut::new("svc", SUB_CALLS as usize).expect("fan-out"),
            writes: WorkerPool::builder("svc")
                .workers(2)
                .queue(1024)
                .build()
                .expect("worker pool"),
        }
    }

    async fn handle(&self, id: u64) -> u64 {
        let allowed = self.limiter.check().is_ok();
        let _permit = self.sem.acquire().await.expect("open semaphore");
        let mut buf = self.buffers.get();
        encode(&mut buf, id);
        let parts = self.fan.run(0..SUB_CALLS, |k| sub_call(id, k)).await;
        let sum: u64 = parts.into_iter().filter_map(Result::ok).sum();
        let len = buf.len() as u64;
        let write = self
            .writes
            .submit(async move { black_box(sum ^ len) })
            .await
            .expect("open pool");
        write.await.expect("write") + u64::from(allowed)
    }
}

struct Raw {
    limiter: governor::DefaultDirectRateLimiter,
    sem: tokio::sync::Semaphore,
    metrics: Option<(Counter<u64>, Histogram<f64>)>,
}

impl Raw {
    fn new(metrics: bool) -> Self {
        let metrics = metrics.then(|| {
            let meter = opentelemetry::global::meter("naive");
            (
                meter.u64_counter("requests").build(),
                meter
                    .f64_histogram("request.duration")
                    .with_unit("s")
                    .build(),
            )
        });
        Raw {
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(RATE)),
            sem: tokio::sync::Semaphore::new(PERMITS),
            metrics,
        }
    }

    async fn handle(&self, id: u64) -> u64 {
        let start = self.metrics.as_ref().map(|_| Instant::now());
        let allowed = self.limiter.check().is_ok();
        let _permit = self.sem.acquire().await.expect("open semaphore");
        let mut buf = Vec::with_capacity(4096);
        encode(&mut buf, id);
        let parts = futures::future::join_all((0..SUB_CALLS).map(|k| sub_call(id, k))).await;
        let sum: u64 = parts.into_iter().sum();
        let len = buf.len() as u64;
        let out = tokio::spawn(async move { black_box(sum ^ len) })
            .await
            .expect("write")
            + u64::from(allowed);
        if let (Some((requests, duration)), Some(start)) = (&self.metrics, start) {
            let attrs = [
                KeyValue::new("route", "/checkout"),
                KeyValue::new("outcome", "ok"),
            ];
            requests.add(1, &attrs);
            duration.record(start.elapsed().as_secs_f64(), &attrs[..1]);
        }
        out
    }
}

/// Runs `n` requests, `IN_FLIGHT` at a time, through `handle`.
async fn serve<'a, F, Fut>(n: u64, handle: F) -> u64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = u64> + 'a,
{
    let mut total = 0u64;
    let mut done = futures::stream::iter(0..n)
        .map(handle)
        .buffer_unordered(IN_FLIGHT);
    while let Some(v) = done.next().await {
        total = total.wrapping_add(v);
    }
    total
}

/// Runs `fut` as a task of `rt` (on a runtime worker thread, as a server's request handling runs).
fn spawned<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async { tokio::spawn(fut).await.expect("serve") })
}

fn benches(c: &mut Criterion) {
    let (provider, _exporter) = otlp_benches::meter_provider();
    otlp_telemetry::install_meter_provider(provider.clone());

    let rt = runtime();
    // 'static, so that the requests can run in a spawned task (a runtime worker thread, as in a server) rather
    // than on the thread that blocks on the runtime: one of each for the process.
    let ours: &'static Ours = Box::leak(Box::new(Ours::new(&rt)));
    let raw: &'static Raw = Box::leak(Box::new(Raw::new(false)));
    let naive: &'static Raw = Box::leak(Box::new(Raw::new(true)));
    Comparison::new(GROUP)
        .slow()
        .throughput(criterion::Throughput::Elements(REQUESTS))
        .function("ours", |b| {
            b.iter(|| spawned(&rt, serve(REQUESTS, |id| ours.handle(id))))
        })
        .function("raw", |b| {
            b.iter(|| spawned(&rt, serve(REQUESTS, |id| raw.handle(id))))
        })
        .function("naive_metrics", |b| {
            b.iter(|| spawned(&rt, serve(REQUESTS, |id| naive.handle(id))))
        })
        .run(c);
    rt.block_on(ours.writes.shutdown_now());

    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ours = Ours::new(&local);
    let per_request = allocs_per_op_batched(REQUESTS, |n| {
        local.block_on(serve(n, |id| ours.handle(id)));
    });
    record_allocs(GROUP, "ours", per_request);
    local.block_on(ours.writes.shutdown_now());
    for (name, variant) in [("raw", raw), ("naive_metrics", naive)] {
        let per_request = allocs_per_op_batched(REQUESTS, |n| {
            local.block_on(serve(n, |id| variant.handle(id)));
        });
        record_allocs(GROUP, name, per_request);
    }
    let _ = provider.shutdown();
}

criterion_group!(service, benches);
criterion_main!(service);
