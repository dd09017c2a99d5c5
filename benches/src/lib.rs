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
//! * [`Comparison`]: ours and its baselines measured in interleaved rounds, so that drift on a shared machine hits
//!   every function alike and `cargo xtask bench` can show each ratio's spread: either as criterion functions, one
//!   window each per round, or paired (functions added with [`Comparison::op`] or [`Comparison::timed`]), the
//!   functions alternating slice by slice within one window per round.
//! * [`server`]: one HTTP request through a tower service that answers at once, for `ServerTraceLayer`.

pub mod server;
pub mod spans;

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
/// no background thread, no network. Install it as a user of otlp-telemetry would, with
/// `otlp_telemetry::install_meter_provider` (owners' durations then take bound histograms), before building the
/// instrumented objects of a "metrics on" row; `opentelemetry::global::set_meter_provider` measures the plain path.
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

/// Runs an operation `n` times and returns the time it took (criterion's `iter_custom` routine).
type TimerFn<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// How a function of a [`Comparison`] is measured.
enum Side<'a> {
    /// By criterion, in a window of its own per round.
    Criterion(BenchFn<'a>),
    /// By the comparison, in slices alternating with the other functions' within each round's window.
    Timed(TimerFn<'a>),
}

/// A paired round's slice of one function lasts at least this long (operations are batched up to it), so that the
/// clock's cost and resolution do not count, while a round still alternates the functions many times.
const SLICE: Duration = Duration::from_millis(5);

/// A paired round makes at least this many passes (each function's slice twice per pass), however long they take:
/// ten slices of each function, as criterion's ten samples of a slow row, so that a round of operations that take
/// tens of milliseconds still averages enough of them.
const MIN_PASSES: u32 = 5;

/// A comparison: ours and its baselines, measured in interleaved rounds.
///
/// Functions added with [`function`](Self::function) are criterion's: round `r` measures every function once, in
/// a window of its own, as `<group>/<function>/round<r>`; odd rounds run the functions in reverse order (ours, b1,
/// b2, then b2, b1, ours...), so that no function always follows the same neighbour. Pairing the functions round
/// by round gives one ratio per round; `cargo xtask bench` reports their spread and checks a goal against the worst.
///
/// Functions added with [`op`](Self::op) or [`timed`](Self::timed) are *paired*: each round is one window in which
/// the functions take turns, slice by slice (at least 5 ms of operations each, one operation if it takes longer),
/// in the order ours, b1, b2, b2, b1, ours..., for as long as the criterion windows of all of them would have
/// lasted, and at least five such passes (ten slices of each function). Each function's mean time per operation in
/// each round is written with [`record_rounds`] (rows marked `"paired": true` in `benches/goals.json`) and
/// printed. Load that comes and goes within a second then falls on every side of a round alike, where criterion's
/// windows, a second apart, each see their own.
/// A comparison is all criterion or all paired. The paired rounds honour the bench binary's name filter (a
/// substring of the group's name) and run each function once when the binary runs as a test.
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
    functions: Vec<(String, Side<'a>)>,
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

    /// Adds a function measured by criterion (ours first, then the baselines).
    pub fn function(
        mut self,
        name: impl Into<String>,
        f: impl FnMut(&mut Bencher<'_, WallTime>) + 'a,
    ) -> Self {
        self.functions
            .push((name.into(), Side::Criterion(Box::new(f))));
        self
    }

    /// Adds a paired function whose operation is `op` (what `Bencher::iter` would run), ours first.
    pub fn op<R>(self, name: impl Into<String>, mut op: impl FnMut() -> R + 'a) -> Self {
        self.timed(name, move |n| {
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(op());
            }
            start.elapsed()
        })
    }

    /// Adds a paired function timed by `timer(n)`, which runs `n` operations and returns the time they took (what
    /// `Bencher::iter_custom` would run), ours first.
    pub fn timed(
        mut self,
        name: impl Into<String>,
        timer: impl FnMut(u64) -> Duration + 'a,
    ) -> Self {
        self.functions
            .push((name.into(), Side::Timed(Box::new(timer))));
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
        let timed = self
            .functions
            .iter()
            .filter(|(_, f)| matches!(f, Side::Timed(_)))
            .count();
        if timed > 0 {
            assert_eq!(
                timed,
                self.functions.len(),
                "{}: a comparison is all criterion functions or all paired ones",
                self.group
            );
            self.run_paired(rounds, &BenchArgs::from_env());
            return;
        }
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
                let (name, Side::Criterion(f)) = &mut self.functions[i] else {
                    continue;
                };
                g.bench_function(BenchmarkId::new(name.as_str(), format!("round{r}")), |b| {
                    f(b)
                });
            }
        }
        g.finish();
    }

    /// The paired rounds: see the type's docs. Returns each function's mean time per operation (ns) per round.
    fn run_paired(mut self, rounds: Rounds, args: &BenchArgs) -> Vec<Vec<f64>> {
        let n = self.functions.len();
        if !args.selects(&self.group) || n == 0 {
            return Vec::new();
        }
        let names: Vec<String> = self
            .functions
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let mut timers: Vec<&mut TimerFn<'a>> = self
            .functions
            .iter_mut()
            .filter_map(|(_, f)| match f {
                Side::Timed(t) => Some(t),
                Side::Criterion(_) => None,
            })
            .collect();
        if args.test {
            for t in &mut timers {
                t(1);
            }
            println!("Testing {} (paired) ... Success", self.group);
            return Vec::new();
        }
        // Operations per slice: doubled until a slice lasts `SLICE` (this is also the first warm-up).
        let batch: Vec<u64> = timers
            .iter_mut()
            .map(|t| {
                let mut k = 1u64;
                while t(k) < SLICE && k < 1 << 40 {
                    k *= 2;
                }
                k
            })
            .collect();
        // Forward then backward: each function precedes and follows each other one equally often.
        let order: Vec<usize> = (0..n).chain((0..n).rev()).collect();
        let window = |d: Duration| d * u32::try_from(n).unwrap_or(u32::MAX);
        let mut means = vec![Vec::with_capacity(rounds.rounds); n];
        for r in 0..rounds.rounds {
            let start = Instant::now();
            while start.elapsed() < window(rounds.warm_up) {
                for &i in &order {
                    timers[i](batch[i]);
                }
            }
            let (mut time, mut ops) = (vec![Duration::ZERO; n], vec![0u64; n]);
            let start = Instant::now();
            let mut passes = 0;
            while passes < MIN_PASSES || start.elapsed() < window(rounds.measurement) {
                for &i in &order {
                    time[i] += timers[i](batch[i]);
                    ops[i] += batch[i];
                }
                passes += 1;
            }
            let line: Vec<String> = (0..n)
                .map(|i| {
                    let mean = time[i].as_nanos() as f64 / ops[i].max(1) as f64;
                    means[i].push(mean);
                    let ratio = if i == 0 {
                        String::new()
                    } else {
                        format!(" ({}/{} {:.3})", names[0], names[i], means[0][r] / mean)
                    };
                    format!("{} {}{ratio}", names[i], human_ns(mean))
                })
                .collect();
            println!(
                "{} paired round {r}: {} [{passes} passes]",
                self.group,
                line.join(", ")
            );
        }
        for (name, means) in names.iter().zip(&means) {
            record_rounds(&self.group, name, means);
        }
        means
    }
}

/// A time in ns, in a readable unit.
fn human_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// What the bench binary was asked for, as far as paired comparisons care: criterion's name filter and whether it
/// runs as a test (`cargo test --benches`: no `--bench` flag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct BenchArgs {
    filter: Option<String>,
    test: bool,
}

impl BenchArgs {
    fn from_env() -> Self {
        Self::parse(std::env::args().skip(1))
    }

    fn parse(args: impl IntoIterator<Item = String>) -> Self {
        // criterion's options that take a value: their value is not the filter.
        const VALUED: [&str; 14] = [
            "--color",
            "-c",
            "--save-baseline",
            "-s",
            "--baseline",
            "-b",
            "--baseline-lenient",
            "--load-baseline",
            "--profile-time",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--significance-level",
        ];
        let (mut filter, mut bench, mut skip) = (None, false, false);
        for arg in args {
            if skip {
                skip = false;
            } else if arg == "--bench" {
                bench = true;
            } else if VALUED.contains(&arg.as_str()) {
                skip = true;
            } else if !arg.starts_with('-') && filter.is_none() {
                filter = Some(arg);
            }
        }
        BenchArgs {
            filter,
            test: !bench,
        }
    }

    /// Whether `group` is selected: no filter, or the filter is part of the group's name or names one of its
    /// functions (`group/...`).
    fn selects(&self, group: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| {
            group.contains(f)
                || f.strip_prefix(group)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_args_find_the_filter_and_the_mode() {
        let args = |a: &[&str]| BenchArgs::parse(a.iter().map(|s| s.to_string()));
        let a = args(&["--bench", "--noplot", "patterns_pool_noop"]);
        assert_eq!(a.filter.as_deref(), Some("patterns_pool_noop"));
        assert!(!a.test);
        assert!(a.selects("patterns_pool_noop"));
        assert!(!a.selects("patterns_fanout_noop"));
        assert!(args(&["--bench", "pool"]).selects("patterns_pool_tiny"));
        assert!(args(&["--bench", "pool_metrics/metrics_on"]).selects("pool_metrics"));
        let a = args(&["--bench", "--profile-time", "5", "--sample-size", "10"]);
        assert_eq!(a.filter, None);
        assert!(a.selects("anything"));
        assert!(args(&[]).test, "no --bench: run as a test");
    }

    /// Paired rounds alternate the functions within each round and report each one's own mean per operation.
    #[test]
    fn paired_rounds_alternate_and_report_each_side() {
        let log = std::cell::RefCell::new(Vec::new());
        // Each side reports a fixed time per operation, so the means are exact whatever the machine does.
        let side = |name: char, ns: u64| {
            let log = &log;
            move |n: u64| {
                log.borrow_mut().push(name);
                Duration::from_nanos(ns * n)
            }
        };
        let rounds = Rounds {
            rounds: 3,
            warm_up: Duration::ZERO,
            measurement: Duration::ZERO,
        };
        let means = Comparison::new("paired_test")
            .timed("a", side('a', 100))
            .timed("b", side('b', 400))
            .run_paired(rounds, &BenchArgs::parse(["--bench".to_string()]));
        assert_eq!(means, vec![vec![100.0; 3], vec![400.0; 3]]);
        // Calibration, then a b b a per pass (forward and backward: no side always first).
        let log = log.borrow();
        let measured: String = log.iter().rev().take(4).collect();
        assert_eq!(measured, "abba");
        let filtered = Comparison::new("paired_test")
            .timed("a", Duration::from_nanos)
            .run_paired(
                rounds,
                &BenchArgs::parse(["--bench".to_string(), "other".to_string()]),
            );
        assert!(filtered.is_empty(), "filtered out: not run");
    }
}
