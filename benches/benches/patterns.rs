//! otlp-patterns against hand-rolled baselines, measured in the same run.
//!
//! * Worker pool, 100k no-op and 100k tiny (~1 µs busy) tasks submitted from one task, each awaited through its
//!   handle: `ours` (`WorkerPool`, 2 workers) vs `mpsc_workers` (a bounded tokio mpsc of boxed jobs, 2 worker
//!   loops sharing the receiver, a oneshot reply per task) vs `spawn_per_task` (`tokio::spawn` + await).
//! * Fan-out over 10k items, concurrency 16, results in input order: `ours` (`FanOut::run`) vs
//!   `futures::stream::buffered` and `buffer_unordered`.
//! * A 3-stage pipeline over 10k items: `ours` (`Pipeline`, ordered) vs `hand_channels` (three spawned stage tasks
//!   joined by bounded tokio mpsc channels).
//!
//! Ours has its metrics on: the SDK meter provider of `otlp_benches::meter_provider()` is installed as the global
//! provider before our objects are built. Allocations per submitted task / item are counted with `CountingAlloc`
//! on a current-thread runtime (nothing else allocating) and recorded for the `allocs` rows.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use otlp_benches::{Comparison, CountingAlloc, allocs_per_op_batched, record_allocs, runtime};
use otlp_patterns::{FanOut, Pipeline, WorkerPool};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const TASKS: u64 = 100_000;
const ITEMS: u64 = 10_000;
const WORKERS: usize = 2;
const QUEUE: usize = 1024;
const FAN_K: usize = 16;

/// About 1 µs of work that the optimiser cannot remove.
#[inline(never)]
fn tiny_work(i: u64) -> u64 {
    let start = Instant::now();
    let mut x = i;
    while start.elapsed() < Duration::from_micros(1) {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

// ---------------------------------------------------------------- hand-rolled worker pool (the baseline)

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

struct MpscWorkers {
    tx: Option<mpsc::Sender<Job>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl MpscWorkers {
    fn new(rt: &Runtime, n: usize, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(capacity);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let workers = (0..n)
            .map(|_| {
                let rx = rx.clone();
                rt.spawn(async move {
                    loop {
                        let job = rx.lock().await.recv().await;
                        match job {
                            Some(job) => job.await,
                            None => break,
                        }
                    }
                })
            })
            .collect();
        MpscWorkers {
            tx: Some(tx),
            workers,
        }
    }

    async fn submit<F, T>(&self, fut: F) -> oneshot::Receiver<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::pin(async move {
            let _ = tx.send(fut.await);
        });
        if let Some(sender) = &self.tx {
            let _ = sender.send(job).await;
        }
        rx
    }

    fn shutdown(mut self, rt: &Runtime) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = rt.block_on(w);
        }
    }
}

// ---------------------------------------------------------------- worker pool groups

/// Awaits every task's result, in submission order, and sums them.
async fn sum_all<H, E>(handles: Vec<H>) -> u64
where
    H: Future<Output = Result<u64, E>>,
    E: std::fmt::Debug,
{
    let mut sum = 0u64;
    for h in handles {
        sum = sum.wrapping_add(h.await.expect("ok"));
    }
    sum
}

fn pool_group(c: &mut Criterion, group: &str, tiny: bool) {
    let rt = runtime();
    let _enter = rt.enter();
    let ours = Arc::new(
        WorkerPool::builder(group)
            .workers(WORKERS)
            .queue(QUEUE)
            .build()
            .expect("pool"),
    );
    let base = Arc::new(MpscWorkers::new(&rt, WORKERS, QUEUE));
    let work = move |i: u64| if tiny { tiny_work(i) } else { i };

    Comparison::new(group)
        .op("ours", || {
            let pool = ours.clone();
            rt.block_on(rt.spawn(async move {
                let mut handles = Vec::with_capacity(TASKS as usize);
                for i in 0..TASKS {
                    handles.push(pool.submit(async move { work(i) }).await.expect("open"));
                }
                sum_all(handles).await
            }))
            .expect("join")
        })
        .op("mpsc_workers", || {
            let pool = base.clone();
            rt.block_on(rt.spawn(async move {
                let mut handles = Vec::with_capacity(TASKS as usize);
                for i in 0..TASKS {
                    handles.push(pool.submit(async move { work(i) }).await);
                }
                sum_all(handles).await
            }))
            .expect("join")
        })
        .op("spawn_per_task", || {
            rt.block_on(rt.spawn(async move {
                let mut handles = Vec::with_capacity(TASKS as usize);
                for i in 0..TASKS {
                    handles.push(tokio::spawn(async move { work(i) }));
                }
                sum_all(handles).await
            }))
            .expect("join")
        })
        .run(c);
    rt.block_on(ours.shutdown_now());
    if let Ok(base) = Arc::try_unwrap(base) {
        base.shutdown(&rt);
    }
}

fn worker_pool(c: &mut Criterion) {
    pool_group(c, "patterns_pool_noop", false);
    pool_group(c, "patterns_pool_tiny", true);
}

/// Allocations per submitted task (submit + run + await) and per `execute`, in steady state.
fn worker_pool_allocs(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pool = rt.block_on(async {
        WorkerPool::builder("allocs")
            .workers(WORKERS)
            .queue(QUEUE)
            .build()
            .expect("pool")
    });
    let mut handles = Vec::with_capacity(40_000);
    let submit = allocs_per_op_batched(10_000, |n| {
        rt.block_on(async {
            for i in 0..n {
                handles.push(pool.submit(async move { i }).await.expect("open"));
            }
            for h in handles.drain(..) {
                black_box(h.await.expect("ok"));
            }
        })
    });
    record_allocs("patterns_pool_submit", "ours", submit);
    let execute = allocs_per_op_batched(10_000, |n| {
        rt.block_on(async {
            for i in 0..n {
                pool.execute(async move {
                    black_box(i);
                })
                .await
                .expect("open");
            }
            // Let the workers finish the queue.
            while pool.stats().queued + pool.stats().active > 0 {
                tokio::task::yield_now().await;
            }
        })
    });
    record_allocs("patterns_pool_execute", "ours", execute);
    rt.block_on(pool.shutdown_now());
}

// ---------------------------------------------------------------- fan-out

fn fan_out_group(c: &mut Criterion, group: &str, tiny: bool) {
    let rt = runtime();
    let fan = FanOut::builder(group)
        .concurrency(FAN_K)
        .build()
        .expect("fan-out");
    let work = move |i: u64| async move { if tiny { tiny_work(i) } else { black_box(i) } };
    Comparison::new(group)
        .op("ours", || {
            rt.block_on(async { fan.run(0..ITEMS, work).await.len() })
        })
        .op("buffered", || {
            rt.block_on(async {
                futures::stream::iter(0..ITEMS)
                    .map(work)
                    .buffered(FAN_K)
                    .collect::<Vec<_>>()
                    .await
                    .len()
            })
        })
        .op("buffer_unordered", || {
            rt.block_on(async {
                futures::stream::iter(0..ITEMS)
                    .map(work)
                    .buffer_unordered(FAN_K)
                    .collect::<Vec<_>>()
                    .await
                    .len()
            })
        })
        .run(c);

    if !tiny {
        let local = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let per_item = allocs_per_op_batched(ITEMS, |n| {
            local.block_on(async { black_box(fan.run(0..n, |i| async move { i }).await.len()) });
        });
        record_allocs(group, "ours", per_item);
    }
}

fn fan_out(c: &mut Criterion) {
    fan_out_group(c, "patterns_fanout_noop", false);
    fan_out_group(c, "patterns_fanout_tiny", true);
}

// ---------------------------------------------------------------- pipeline

fn pipeline(c: &mut Criterion) {
    let group = "patterns_pipeline_3";
    let rt = runtime();
    let capacity = 16;
    let ours = Pipeline::builder(group)
        .stage("parse", 1, |i: u64| async move { i + 1 })
        .stage("enrich", 1, |i| async move { i * 2 })
        .stage("store", 1, |i| async move { black_box(i) })
        .capacity(capacity)
        .build()
        .expect("pipeline");
    Comparison::new(group)
        .op("ours", || {
            rt.block_on(async {
                let mut out = ours.run(futures::stream::iter(0..ITEMS));
                let mut n = 0u64;
                while let Some(r) = out.next().await {
                    n = n.wrapping_add(r.expect("ok"));
                }
                n
            })
        })
        .op("hand_channels", || {
            rt.block_on(async {
                let (tx0, mut rx0) = mpsc::channel::<u64>(capacity);
                let (tx1, mut rx1) = mpsc::channel::<u64>(capacity);
                let (tx2, mut rx2) = mpsc::channel::<u64>(capacity);
                let feed = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        if tx0.send(i).await.is_err() {
                            break;
                        }
                    }
                });
                let s1 = tokio::spawn(async move {
                    while let Some(i) = rx0.recv().await {
                        if tx1.send(i + 1).await.is_err() {
                            break;
                        }
                    }
                });
                let s2 = tokio::spawn(async move {
                    while let Some(i) = rx1.recv().await {
                        if tx2.send(i * 2).await.is_err() {
                            break;
                        }
                    }
                });
                let mut n = 0u64;
                while let Some(i) = rx2.recv().await {
                    n = n.wrapping_add(black_box(i));
                }
                for t in [feed, s1, s2] {
                    let _ = t.await;
                }
                n
            })
        })
        .run(c);

    let local = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let per_item = allocs_per_op_batched(ITEMS, |n| {
        local.block_on(async {
            let mut out = ours.run(futures::stream::iter(0..n));
            while out.next().await.is_some() {}
        })
    });
    record_allocs(group, "ours", per_item);
}

fn benches(c: &mut Criterion) {
    let (provider, _exporter) = otlp_benches::meter_provider();
    otlp_telemetry::install_meter_provider(provider.clone());
    worker_pool_allocs(c);
    worker_pool(c);
    fan_out(c);
    pipeline(c);
    let _ = provider.shutdown();
}

criterion_group!(patterns, benches);
criterion_main!(patterns);
