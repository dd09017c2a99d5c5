//! Shared helpers for the benchmarks in `benches/benches/`.
//!
//! * [`CountingAlloc`]: a global allocator that counts allocations, so a bench can show how many heap
//!   allocations one operation makes in steady state (`#[global_allocator] static A: CountingAlloc = CountingAlloc;`).
//! * [`allocs_per_op`]: runs a closure `n` times and returns allocations per call; [`allocs_per_op_batched`] does
//!   the same for work that spreads over threads.
//! * [`runtime`]: the 2-worker multi-thread tokio runtime the async rows run on.
//! * [`record_allocs`]: writes that figure where `cargo xtask bench` reads it for its table.
//! * [`record_rounds`]: writes the per-round mean times a bench timed itself, ours and its baseline interleaved in
//!   the same window, for a paired row of `benches/goals.json`.
//! * [`on_threads`]: runs an operation on several threads started together, for `iter_custom` rows.
//! * [`meter_provider`]: an SDK `MeterProvider` with an in-memory exporter and a manual reader, so "metrics on"
//!   rows pay for real SDK instruments without a network.
//! * [`Comparison`]: a criterion group whose functions (ours and its baselines) are measured in interleaved
//!   rounds, so that drift on a shared machine hits every function alike and `cargo xtask bench` can show each
//!   ratio's spread.
//! * [`server`]: one HTTP request through a tower service that answers at once, for `ServerTraceLayer`.

pub mod server;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkId, Criterion, SamplingMode, Throughput};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Allocations made by this thread. Const-initialised with no destructor, so the allocator can touch it at
    /// any time without allocating.
    static THREAD_ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let _ = THREAD_ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// A global allocator that counts every allocation (and reallocation) made by the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting is a side effect on an
// atomic and does not touch the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees that `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees about `ptr`, `layout` and `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations counted so far by [`CountingAlloc`] (0 when it is not the global allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations counted so far on this thread.
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS
        .try_with(std::cell::Cell::get)
        .unwrap_or(0)
}

/// Runs `f` `n` times on this thread and returns the allocations *this thread* made per call. Warm the code up
/// first so that the figure is the steady state. Other threads (an SDK's export thread, say) are not counted: for
/// work that spreads over threads, compare [`allocations`] before and after instead.
pub fn allocs_per_op(n: u64, mut f: impl FnMut()) -> f64 {
    let before = thread_allocations();
    for _ in 0..n {
        f();
    }
    (thread_allocations() - before) as f64 / n.max(1) as f64
}

/// Where the benches write their side results (allocation counts) for `cargo xtask bench`.
///
/// `OTLP_BENCH_OUT` when set (xtask sets it), else `target/otlp-bench` in the workspace.
pub fn out_dir() -> PathBuf {
    std::env::var_os("OTLP_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/otlp-bench"))
}

/// Records that one operation of `group`/`name` makes `per_op` heap allocations in steady state.
///
/// `cargo xtask bench` shows it in the rows of `benches/goals.json` whose `kind` is `"allocs"`.
pub fn record_allocs(group: &str, name: &str, per_op: f64) {
    let dir = out_dir().join("allocs");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return;
    }
    let file = dir.join(format!("{group}__{name}.txt"));
    if let Err(e) = std::fs::write(&file, format!("{per_op}\n")) {
        eprintln!("cannot write {}: {e}", file.display());
    }
    println!("allocations per op: {group}/{name} = {per_op:.3}");
}

/// Records the mean time (ns) of one operation of `group`/`name` in each round that the bench timed itself, for a
/// row of `benches/goals.json` marked `"paired": true` (one line a round, in round order).
///
/// For operations whose time swings more from one of criterion's windows to the next than between the sides
/// compared (a network round trip on a loaded machine): the bench interleaves ours and its baseline decision by
/// decision within each round's window, so each round's ratio compares them under the same load.
pub fn record_rounds(group: &str, name: &str, means_ns: &[f64]) {
    let dir = out_dir().join("rounds");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return;
    }
    let file = dir.join(format!("{group}__{name}.txt"));
    let text: String = means_ns.iter().map(|m| format!("{m}\n")).collect();
    if let Err(e) = std::fs::write(&file, text) {
        eprintln!("cannot write {}: {e}", file.display());
    }
}

/// An SDK meter provider whose metrics go to an in-memory exporter through a manual reader: real SDK instruments,
/// no background thread, no network. Install it with `opentelemetry::global::set_meter_provider` before building
/// the instrumented objects of a "metrics on" row.
pub fn meter_provider() -> (
    opentelemetry_sdk::metrics::SdkMeterProvider,
    opentelemetry_sdk::metrics::InMemoryMetricExporter,
) {
    let exporter = opentelemetry_sdk::metrics::InMemoryMetricExporter::default();
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter.clone())
        .with_interval(std::time::Duration::from_millis(200))
        .build();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .build();
    (provider, exporter)
}

/// Runs `op` `iters` times on each of `threads` threads, started together behind a barrier; returns the wall time
/// from the start to the last thread's end (so criterion's figure is the time per op per thread). For
/// `Bencher::iter_custom`.
pub fn on_threads<P: Sync>(target: &P, threads: usize, iters: u64, op: fn(&P)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op(target);
                }
            });
        }
        barrier.wait();
        // The scope's end joins the threads, so the elapsed time below covers all of them.
        Instant::now()
    })
    .elapsed()
}

/// Allocations per operation of work that spreads over threads (all threads counted): runs `batch(n)` once to
/// warm up, then `batch(n)` and `batch(2n)`, and divides the difference of the two counts by `n`, so that fixed
/// costs of a batch cancel out.
pub fn allocs_per_op_batched(n: u64, mut batch: impl FnMut(u64)) -> f64 {
    batch(n);
    let a = allocations();
    batch(n);
    let b = allocations();
    batch(2 * n);
    let c = allocations();
    ((c - b) as f64 - (b - a) as f64) / n.max(1) as f64
}

/// The runtime of the async rows: multi-thread with 2 workers (one per core of the reference machine), timers on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// How many rounds each comparison runs and how long each function is measured per round.
///
/// From the environment (`cargo xtask bench` sets it): `OTLP_BENCH_ROUNDS` (default 5, at least 1) and
/// `OTLP_BENCH_QUICK=1` for shorter measurements (0.2 s warm-up and 0.5 s measured per function and round,
/// instead of 0.5 s and 1 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rounds {
    /// Rounds per comparison.
    pub rounds: usize,
    /// Warm-up of each function in each round.
    pub warm_up: Duration,
    /// Measurement of each function in each round.
    pub measurement: Duration,
}

impl Rounds {
    /// The settings of this run, read from the environment.
    pub fn from_env() -> Self {
        let rounds = std::env::var("OTLP_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(5);
        let quick = std::env::var("OTLP_BENCH_QUICK").is_ok_and(|v| v == "1");
        let (warm_up, measurement) = if quick {
            (Duration::from_millis(200), Duration::from_millis(500))
        } else {
            (Duration::from_millis(500), Duration::from_secs(1))
        };
        Rounds {
            rounds,
            warm_up,
            measurement,
        }
    }
}

type BenchFn<'a> = Box<dyn FnMut(&mut Bencher<'_, WallTime>) + 'a>;

/// A comparison: ours and its baselines in one criterion group, measured in interleaved rounds.
///
/// Round `r` measures every function once, as `<group>/<function>/round<r>`; odd rounds run the functions in
/// reverse order (ours, b1, b2, then b2, b1, ours...), so that no function always follows the same neighbour.
/// Pairing the functions round by round gives one ratio per round; `cargo xtask bench` reports their spread and
/// checks a goal against the worst.
///
/// ```no_run
/// # use criterion::Criterion;
/// # let mut c = Criterion::default();
/// otlp_benches::Comparison::new("sum")
///     .function("ours", |b| b.iter(|| (0..100u64).sum::<u64>()))
///     .function("fold", |b| b.iter(|| (0..100u64).fold(0, |a, x| a + x)))
///     .run(&mut c);
/// ```
pub struct Comparison<'a> {
    group: String,
    functions: Vec<(String, BenchFn<'a>)>,
    throughput: Option<Throughput>,
    slow: bool,
}

impl std::fmt::Debug for Comparison<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comparison")
            .field("group", &self.group)
            .field(
                "functions",
                &self.functions.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("throughput", &self.throughput)
            .field("slow", &self.slow)
            .finish()
    }
}

impl<'a> Comparison<'a> {
    /// A comparison measured as criterion group `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Comparison {
            group: group.into(),
            functions: Vec::new(),
            throughput: None,
            slow: false,
        }
    }

    /// Adds a function (ours first, then the baselines).
    pub fn function(
        mut self,
        name: impl Into<String>,
        f: impl FnMut(&mut Bencher<'_, WallTime>) + 'a,
    ) -> Self {
        self.functions.push((name.into(), Box::new(f)));
        self
    }

    /// Reports throughput (elements per iteration) next to the times.
    pub fn throughput(mut self, t: Throughput) -> Self {
        self.throughput = Some(t);
        self
    }

    /// For iterations of a millisecond or more: 10 samples of equal iteration counts (criterion's flat
    /// sampling), so that a round fits its measurement time.
    pub fn slow(mut self) -> Self {
        self.slow = true;
        self
    }

    /// Runs the rounds of [`Rounds::from_env`].
    pub fn run(self, c: &mut Criterion) {
        self.run_with(c, Rounds::from_env());
    }

    /// Runs `rounds.rounds` rounds, each function warmed up and measured for the given times in each.
    pub fn run_with(mut self, c: &mut Criterion, rounds: Rounds) {
        let mut g = c.benchmark_group(&self.group);
        g.warm_up_time(rounds.warm_up)
            .measurement_time(rounds.measurement)
            // The figure used is the mean; fewer bootstrap resamples keep the analysis short between rounds.
            .nresamples(10_000);
        if self.slow {
            g.sample_size(10).sampling_mode(SamplingMode::Flat);
        } else {
            g.sample_size(50);
        }
        if let Some(t) = self.throughput.take() {
            g.throughput(t);
        }
        for r in 0..rounds.rounds {
            let order: Vec<usize> = if r % 2 == 0 {
                (0..self.functions.len()).collect()
            } else {
                (0..self.functions.len()).rev().collect()
            };
            for i in order {
                let (name, f) = &mut self.functions[i];
                g.bench_function(BenchmarkId::new(name.as_str(), format!("round{r}")), |b| {
                    f(b)
                });
            }
        }
        g.finish();
    }
}
