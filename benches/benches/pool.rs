//! otlp-pool against its baselines, measured in the same run:
//! `object-pool` 0.6 (the pool baseline), `lockfree-object-pool`, and plain allocation.
//!
//! Every pooled object is a `Vec<u8>` with capacity 4096, reset by `clear()`.

use criterion::{Criterion, criterion_group, criterion_main};
use otlp_benches::{Comparison, CountingAlloc, allocs_per_op, on_threads, record_allocs};
use otlp_pool::{ByteSlicePool, Pool};
use std::hint::black_box;
use std::sync::Arc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const SIZE: usize = 4096;

fn ours() -> Pool<Vec<u8>> {
    Pool::builder("bench", || Vec::with_capacity(SIZE))
        .capacity(1024)
        .reset(Vec::clear)
        .build()
        .expect("valid pool")
}

fn object_pool() -> object_pool::Pool<Vec<u8>> {
    object_pool::Pool::new(1024, || Vec::with_capacity(SIZE))
}

fn lockfree() -> lockfree_object_pool::LinearObjectPool<Vec<u8>> {
    lockfree_object_pool::LinearObjectPool::new(|| Vec::with_capacity(SIZE), |v| v.clear())
}

/// One get + write + put, the unit every row measures.
#[inline]
fn use_buffer(buf: &mut Vec<u8>) {
    buf.push(1);
    black_box(&buf);
}

fn op_ours(pool: &Pool<Vec<u8>>) {
    let mut b = pool.get();
    use_buffer(&mut b);
}

fn op_object_pool(pool: &object_pool::Pool<Vec<u8>>) {
    let mut b = pool.pull(|| Vec::with_capacity(SIZE));
    b.clear(); // object-pool has no reset hook: the user clears.
    use_buffer(&mut b);
}

fn op_lockfree(pool: &lockfree_object_pool::LinearObjectPool<Vec<u8>>) {
    let mut b = pool.pull();
    use_buffer(&mut b);
}

fn op_alloc() {
    let mut b = Vec::with_capacity(SIZE);
    use_buffer(&mut b);
}

fn one_thread(c: &mut Criterion) {
    let (p, o, l) = (ours(), object_pool(), lockfree());
    Comparison::new("pool_get_put_1t")
        .op("ours", || op_ours(&p))
        .op("object-pool", || op_object_pool(&o))
        .op("lockfree-object-pool", || op_lockfree(&l))
        .op("alloc", op_alloc)
        .run(c);

    for _ in 0..1000 {
        op_ours(&p);
    }
    record_allocs(
        "pool_get_put_1t",
        "ours",
        allocs_per_op(100_000, || op_ours(&p)),
    );
}

fn two_threads(c: &mut Criterion) {
    let (p, o, l) = (ours(), object_pool(), lockfree());
    Comparison::new("pool_get_put_2t")
        .timed("ours", |n| on_threads(&p, 2, n, op_ours))
        .timed("object-pool", |n| on_threads(&o, 2, n, op_object_pool))
        .timed("lockfree-object-pool", |n| {
            on_threads(&l, 2, n, op_lockfree)
        })
        .timed("alloc", |n| on_threads(&(), 2, n, |_| op_alloc()))
        .run(c);
}

fn byte_slices(c: &mut Criterion) {
    let pool = ByteSlicePool::builder("bench").build().expect("valid pool");
    for len in [64usize, 1500, 16 * 1024, 64 * 1024] {
        Comparison::new(format!("pool_byte_slice_{len}"))
            .op("ours", || {
                let mut s = pool.get(black_box(len));
                s.push(1);
                black_box(&s);
            })
            .op("alloc", || {
                let mut s = Vec::<u8>::with_capacity(black_box(len));
                s.push(1);
                black_box(&s);
            })
            .run(c);
    }
}

/// The same pool with its metrics exported through an SDK meter provider (periodic reader every 200 ms, so the
/// callbacks really run during the measurement) and with a meter that has no reader.
fn metrics_on_off(c: &mut Criterion) {
    let (provider, _exporter) = otlp_benches::meter_provider();
    let on = Arc::new(
        Pool::builder("bench.on", || Vec::with_capacity(SIZE))
            .reset(Vec::clear)
            .meter(opentelemetry::metrics::MeterProvider::meter(
                &provider,
                "otlp-pool",
            ))
            .build()
            .expect("valid pool"),
    );
    let silent = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    let off = Pool::builder("bench.off", || Vec::with_capacity(SIZE))
        .reset(Vec::clear)
        .meter(opentelemetry::metrics::MeterProvider::meter(
            &silent,
            "otlp-pool",
        ))
        .build()
        .expect("valid pool");
    Comparison::new("pool_metrics")
        .op("metrics_on", || op_ours(&on))
        .op("metrics_off", || op_ours(&off))
        .run(c);
    let _ = provider.shutdown();
}

criterion_group!(
    benches,
    one_thread,
    two_threads,
    byte_slices,
    metrics_on_off
);
criterion_main!(benches);
