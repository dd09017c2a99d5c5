//! otlp-sync against the raw crates it wraps, measured in the same run: `tokio::sync::Semaphore` for the
//! semaphore, a governor direct limiter for `check()`, a governor keyed limiter (its default `HashMap` store) for
//! the keyed limiter (`String` keys; ours checked by `&str`).
//!
//! Ours has its metrics on: the SDK meter provider of `otlp_benches::meter_provider()` (periodic reader every
//! 200 ms, in-memory exporter) is installed as the global provider before our objects are built, so their
//! observable callbacks really run during the measurement.
//!
//! Acquires are polled once with a no-op waker (no executor in the loop): with a free permit an acquire is ready
//! on its first poll, so the rows measure the acquire future itself, ours and tokio's alike.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::Quota;
use otlp_benches::{Comparison, CountingAlloc, allocs_per_op, on_threads, record_allocs};
use otlp_sync::{AdaptiveLimit, KeyedRateLimiter, RateLimiter, Semaphore};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A rate no benchmark loop can reach, so every check is allowed (for ours and governor alike).
const RATE: u32 = 1_000_000_000;
const BURST: u32 = 1_000_000;
const KEYS: u64 = 1024;

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(RATE).unwrap()).allow_burst(NonZeroU32::new(BURST).unwrap())
}

/// Polls `fut` once; it must be ready (a free permit).
#[inline]
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("the benchmarks keep a permit free"),
    }
}

fn op_ours_try(s: &Semaphore) {
    drop(black_box(s.try_acquire().unwrap()));
}

fn op_tokio_try(s: &tokio::sync::Semaphore) {
    drop(black_box(s.try_acquire().unwrap()));
}

// Not inlined, so that `valgrind --tool=callgrind` can count each call's instructions (docs/benchmarks.md).
#[inline(never)]
fn op_ours_acquire(s: &Semaphore) {
    drop(black_box(ready(s.acquire()).unwrap()));
}

#[inline(never)]
fn op_tokio_acquire(s: &tokio::sync::Semaphore) {
    drop(black_box(ready(s.acquire()).unwrap()));
}

fn semaphore(c: &mut Criterion) {
    let ours = Semaphore::new("bench", 2).expect("valid semaphore");
    let tokio = tokio::sync::Semaphore::new(2);

    Comparison::new("sync_sem_try_1t")
        .op("ours", || op_ours_try(&ours))
        .op("tokio", || op_tokio_try(&tokio))
        .run(c);

    Comparison::new("sync_sem_acquire_1t")
        .op("ours", || op_ours_acquire(&ours))
        .op("tokio", || op_tokio_acquire(&tokio))
        .run(c);

    // Two threads on one semaphore with two permits: nobody waits, both fight over tokio's atomics (and ours).
    Comparison::new("sync_sem_acquire_2t")
        .timed("ours", |n| on_threads(&ours, 2, n, op_ours_acquire))
        .timed("tokio", |n| on_threads(&tokio, 2, n, op_tokio_acquire))
        .run(c);

    for _ in 0..1000 {
        op_ours_try(&ours);
        op_ours_acquire(&ours);
    }
    record_allocs(
        "sync_sem_try_1t",
        "ours",
        allocs_per_op(100_000, || op_ours_try(&ours)),
    );
    record_allocs(
        "sync_sem_acquire_1t",
        "ours",
        allocs_per_op(100_000, || op_ours_acquire(&ours)),
    );
}

#[inline(never)]
fn op_adaptive_acquire(l: &AdaptiveLimit) {
    drop(black_box(ready(l.acquire()).unwrap()));
}

/// The adaptive limit's acquire + release (a success sample on drop, timed one request in 16 by default) against
/// our static semaphore's acquire + release.
fn adaptive(c: &mut Criterion) {
    let ours = AdaptiveLimit::builder("bench")
        .initial_limit(2)
        .min_limit(2)
        .build()
        .expect("valid limit");
    let sem = Semaphore::new("bench-static", 2).expect("valid semaphore");
    Comparison::new("sync_adaptive_1t")
        .op("ours", || op_adaptive_acquire(&ours))
        .op("semaphore", || op_ours_acquire(&sem))
        .run(c);
    for _ in 0..1000 {
        op_adaptive_acquire(&ours);
    }
    record_allocs(
        "sync_adaptive_1t",
        "ours",
        allocs_per_op(100_000, || op_adaptive_acquire(&ours)),
    );
}

fn limiter(c: &mut Criterion) {
    let ours = RateLimiter::new("bench", quota()).expect("valid limiter");
    let raw = governor::RateLimiter::direct(quota());
    Comparison::new("sync_limiter_check_1t")
        .op("ours", || black_box(ours.check()).unwrap())
        .op("governor", || black_box(raw.check()).unwrap())
        .run(c);
    for _ in 0..1000 {
        let _ = ours.check();
    }
    record_allocs(
        "sync_limiter_check_1t",
        "ours",
        allocs_per_op(100_000, || ours.check().unwrap()),
    );
}

fn keyed(c: &mut Criterion) {
    // String keys, as a service's client ids are: ours is checked with the request's `&str` (no owned key per
    // check), governor with a `&String` it cannot do without (here prebuilt, so that neither row allocates).
    let keys: Vec<String> = (0..KEYS).map(|k| format!("client-{k}")).collect();
    let ours = KeyedRateLimiter::<String>::new("bench", quota()).expect("valid limiter");
    let raw = governor::RateLimiter::keyed(quota());
    let (mut k_ours, mut k_raw) = (0usize, 0usize);
    Comparison::new("sync_limiter_keyed_1t")
        .op("ours", || {
            k_ours = (k_ours + 1) % keys.len();
            black_box(ours.check_key(keys[k_ours].as_str())).unwrap()
        })
        .op("governor", || {
            k_raw = (k_raw + 1) % keys.len();
            black_box(raw.check_key(&keys[k_raw])).unwrap()
        })
        .run(c);
    // Steady state: every key already in the store.
    for key in &keys {
        ours.check_key(key.as_str()).unwrap();
    }
    let mut k = 0usize;
    let per_op = allocs_per_op(100_000, || {
        k = (k + 1) % keys.len();
        ours.check_key(keys[k].as_str()).unwrap();
    });
    record_allocs("sync_limiter_keyed_1t", "ours", per_op);
}

fn benches(c: &mut Criterion) {
    let (provider, _exporter) = otlp_benches::meter_provider();
    otlp_telemetry::install_meter_provider(provider.clone());
    semaphore(c);
    adaptive(c);
    limiter(c);
    keyed(c);
    let _ = provider.shutdown();
}

criterion_group!(sync, benches);
criterion_main!(sync);
