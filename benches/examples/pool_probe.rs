//! The `patterns_pool_noop` workload outside criterion, with the runtime's own counters: for profiling
//! (`perf stat`, `valgrind --tool=callgrind`) and for seeing where the time goes, one iteration per line.
//!
//! `cargo run --release -p otlp-benches --example pool_probe -- [MODES] [iterations]`, MODES a comma-separated
//! list of `ours`, `mpsc`, `spawn` (the worker pool against its baselines, 100k tasks; default `ours,mpsc`) and
//! `fanout`, `buffered`, `unordered` (`FanOut::run` against `futures`' `buffered` and `buffer_unordered`,
//! concurrency 16, 100k items, driven by `block_on` as in `patterns_fanout_noop`), run in turn in every iteration
//! (interleaved). Instructions per task or item: callgrind's total of a 3-iteration run minus a 1-iteration run of
//! one mode, over 200k.
//!
//! Per iteration and mode: wall time, the CPU time of the process's threads, the time they waited for a CPU while
//! runnable (high when the machine is loaded), voluntary context switches, and per runtime worker thread its parks
//! and busy time (busy but not on a CPU: preempted or blocked). The SDK meter provider is installed with
//! `otlp_telemetry::install_meter_provider` (durations take bound histograms); `OTLP_PROBE_PLAIN_METER=1` installs
//! it with `global::set_meter_provider` (the plain `Histogram::record`), `OTLP_PROBE_NO_METER=1` installs none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use otlp_patterns::{FanOut, WorkerPool};
use tokio::sync::{mpsc, oneshot};

const TASKS: u64 = 100_000;
const FAN_K: usize = 16;

/// CPU time of the process's live threads (the first field of each thread's schedstat, in ns).
fn cpu_time() -> Duration {
    schedstat(0)
}

/// Time the process's live threads waited for a CPU while runnable (the second field of schedstat).
fn runqueue_wait() -> Duration {
    schedstat(1)
}

fn schedstat(field: usize) -> Duration {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .nth(field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// Voluntary context switches (a thread blocked: futex, park) of the process's live threads.
fn voluntary_switches() -> u64 {
    let mut n = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            n += status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    n
}

type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn main() {
    let mut args = std::env::args().skip(1);
    let modes: Vec<String> = args
        .next()
        .unwrap_or_else(|| "ours,mpsc".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let iterations: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20);
    // OTLP_PROBE_NO_METER=1: no SDK provider (the pool's instruments are no-ops, no export thread).
    let metered = std::env::var_os("OTLP_PROBE_NO_METER").is_none();
    let (provider, _exporter) = otlp_benches::meter_provider();
    if metered {
        if std::env::var_os("OTLP_PROBE_PLAIN_METER").is_some() {
            opentelemetry::global::set_meter_provider(provider.clone());
        } else {
            otlp_telemetry::install_meter_provider(provider.clone());
        }
    }
    let rt = otlp_benches::runtime();
    let _enter = rt.enter();
    let pool = Arc::new(
        WorkerPool::builder("probe")
            .workers(2)
            .queue(1024)
            .build()
            .expect("pool"),
    );
    let fan = FanOut::builder("probe")
        .concurrency(FAN_K)
        .build()
        .expect("fan-out");
    let (tx, rx) = mpsc::channel::<Job>(1024);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..2 {
        let rx = rx.clone();
        rt.spawn(async move {
            loop {
                let job = rx.lock().await.recv().await;
                match job {
                    Some(job) => job.await,
                    None => break,
                }
            }
        });
    }
    let m = rt.metrics();
    println!(
        "iter mode wall_ms cpu_ms runqueue_wait_ms vcsw parks[0] parks[1] busy_ms[0] busy_ms[1]"
    );
    for (it, which) in (0..iterations).flat_map(|it| modes.iter().map(move |m| (it, m))) {
        let parks0: Vec<u64> = (0..2).map(|w| m.worker_park_count(w)).collect();
        let busy0: Vec<Duration> = (0..2).map(|w| m.worker_total_busy_duration(w)).collect();
        let (cpu0, rq0, sw0, t0) = (
            cpu_time(),
            runqueue_wait(),
            voluntary_switches(),
            Instant::now(),
        );
        let pool = pool.clone();
        let tx = tx.clone();
        let mode = which.clone();
        let work = |i: u64| async move { std::hint::black_box(i) };
        let stream = || futures::stream::iter(0..TASKS).map(work);
        let count = |n: u64, _| async move { n + 1 };
        let sum = match mode.as_str() {
            "fanout" => Some(rt.block_on(fan.run(0..TASKS, work)).len() as u64),
            "buffered" => Some(rt.block_on(stream().buffered(FAN_K).fold(0, count))),
            "unordered" => Some(rt.block_on(stream().buffer_unordered(FAN_K).fold(0, count))),
            _ => None,
        };
        let sum = sum.unwrap_or_else(|| {
            rt.block_on(rt.spawn(async move {
                let mut sum = 0u64;
                match mode.as_str() {
                    "ours" => {
                        let mut handles = Vec::with_capacity(TASKS as usize);
                        for i in 0..TASKS {
                            handles.push(pool.submit(async move { i }).await.unwrap());
                        }
                        for h in handles {
                            sum = sum.wrapping_add(h.await.unwrap());
                        }
                    }
                    "mpsc" => {
                        let mut handles = Vec::with_capacity(TASKS as usize);
                        for i in 0..TASKS {
                            let (otx, orx) = oneshot::channel();
                            let job: Job = Box::pin(async move {
                                let _ = otx.send(i);
                            });
                            let _ = tx.send(job).await;
                            handles.push(orx);
                        }
                        for h in handles {
                            sum = sum.wrapping_add(h.await.unwrap());
                        }
                    }
                    _ => {
                        let mut handles = Vec::with_capacity(TASKS as usize);
                        for i in 0..TASKS {
                            handles.push(tokio::spawn(async move { i }));
                        }
                        for h in handles {
                            sum = sum.wrapping_add(h.await.unwrap());
                        }
                    }
                }
                sum
            }))
            .unwrap()
        });
        let wall = t0.elapsed();

        let cpu = cpu_time() - cpu0;
        let rq = runqueue_wait() - rq0;
        let sw = voluntary_switches() - sw0;
        let parks: Vec<u64> = (0..2).map(|w| m.worker_park_count(w) - parks0[w]).collect();
        let busy: Vec<f64> = (0..2)
            .map(|w| (m.worker_total_busy_duration(w) - busy0[w]).as_secs_f64() * 1e3)
            .collect();
        std::hint::black_box(sum);
        println!(
            "{it} {which} {:.1} {:.1} {:.1} {sw} {} {} {:.1} {:.1}",
            wall.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            rq.as_secs_f64() * 1e3,
            parks[0],
            parks[1],
            busy[0],
            busy[1]
        );
    }
    drop(tx);
    rt.block_on(pool.shutdown_now());
    let _ = provider.shutdown();
}
