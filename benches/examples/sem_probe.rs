//! `Semaphore::try_acquire` + drop against tokio's, outside criterion, for `valgrind --tool=callgrind`
//! (instructions per call, split by function) with a live SDK meter provider, as in `benches/benches/sync.rs`.
//!
//! `cargo run --release -p otlp-benches --example sem_probe -- [ours|tokio|limiter|governor] [calls]`. Per call:
//! `valgrind --tool=callgrind --toggle-collect='*sem_probe*op_*'` gives the loop's instructions; divide by calls.

use std::hint::black_box;
use std::num::NonZeroU32;

use governor::Quota;
use otlp_sync::{RateLimiter, Semaphore};

#[inline(never)]
fn op_ours_try(s: &Semaphore) {
    drop(black_box(s.try_acquire().unwrap()));
}

#[inline(never)]
fn op_tokio_try(s: &tokio::sync::Semaphore) {
    drop(black_box(s.try_acquire().unwrap()));
}

#[inline(never)]
fn op_ours_check(l: &RateLimiter) {
    black_box(l.check()).unwrap();
}

#[inline(never)]
fn op_governor_check(l: &governor::DefaultDirectRateLimiter) {
    black_box(l.check()).unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "ours".into());
    let calls: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let (provider, _exporter) = otlp_benches::meter_provider();
    otlp_telemetry::install_meter_provider(provider.clone());
    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000).unwrap());
    let ours = Semaphore::new("probe", 2).expect("valid semaphore");
    let tokio = tokio::sync::Semaphore::new(2);
    let limiter = RateLimiter::new("probe", quota).expect("valid limiter");
    let governor = governor::RateLimiter::direct(quota);
    for _ in 0..calls {
        match mode.as_str() {
            "ours" => op_ours_try(&ours),
            "tokio" => op_tokio_try(&tokio),
            "limiter" => op_ours_check(&limiter),
            "governor" => op_governor_check(&governor),
            other => panic!("unknown mode {other}"),
        }
    }
    let _ = provider.shutdown();
}
