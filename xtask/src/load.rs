//! `cargo xtask load [--quick] [--rounds N] [--seconds S] [--update-docs]`: the demo service (`kit`, in two
//! tracing setups), its twin without otlp-kit (`twin`) and the naive-instrumented variant (`naive`) under an
//! established load generator, one at a time, interleaved over rounds, on this machine's loopback.
//!
//! The server is pinned to one CPU and the generator (and the collector) to the others, for every setup alike, so
//! that the server's figures are the server's: a generator sharing the server's cores measures itself. The
//! simulated downstream answers at once (a yield), so the server's CPU, not a sleep, bounds the rate.
//!
//! 1. Closed loop (fixed connections, as fast as answers come, every request admitted): the highest throughput,
//!    and the server's CPU time per request. The twin's median is the reference rate `R`.
//! 2. Open loop at 0.5×R and 0.8×R (fixed rate, latency measured from each request's scheduled time, i.e. corrected
//!    for coordinated omission): P50/P99/P99.9; bytes allocated per request (counting allocator) at 0.5×R.
//! 3. 3×R, in a new process whose per-client quota is 0.9× the setup's own closed-loop rate (warmed up first, like
//!    every phase): requests over it are shed with 429 and counted; the P99 of the admitted (2xx) requests, timed
//!    from each request's actual send; the peak of alive tokio tasks during the measured run.
//!
//! Every phase prints the rate the generator achieved against the rate it offered, and the CPU the generator and
//! the server used; a phase whose generator fell short (its CPUs were busy, or the server's was not) has
//! its latency left out of the table instead of reported as the server's.
//!
//! Also: start to first 200, resident memory (VmRSS) after the closed-loop phase, alive tasks after the graceful
//! shutdown, whether the generator's count of answers equals the server's own, and the spans dropped at the
//! export queue against those counted live. `oha` is the generator (`cargo install --locked oha`); with only
//! `wrk` (Debian) the closed-loop phase runs and the open-loop phases are skipped, since wrk has no fixed-rate mode.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::service::{self, Rotel, Service, num};
use crate::workspace;

/// One configuration of the service under test: a column of the table.
struct Setup {
    name: &'static str,
    variant: &'static str,
    /// `OTEL_TRACES_SAMPLER` (telemetry of the twin is off, whatever it says).
    sampler: Option<&'static str>,
    header: &'static str,
}

const SETUPS: [Setup; 5] = [
    Setup {
        name: "kit-budget",
        variant: "kit",
        // No OTEL_TRACES_SAMPLER_ARG: otlp-telemetry's default budget.
        sampler: Some("parentbased_rate_limited"),
        header: "kit, span budget (default)",
    },
    Setup {
        name: "kit-all",
        variant: "kit",
        sampler: Some("parentbased_always_on"),
        header: "kit, every request sampled",
    },
    Setup {
        name: "twin",
        variant: "twin",
        sampler: None,
        header: "twin (no otlp-kit, no metrics)",
    },
    Setup {
        name: "naive",
        variant: "naive",
        sampler: Some("parentbased_always_on"),
        header: "naive (twin + per-call metrics, every request sampled)",
    },
    Setup {
        name: "bare",
        variant: "bare",
        sampler: None,
        header: "bare (a fixed body at once: the hyper + axum floor)",
    },
];
const BUDGET: usize = 0;
const ALL: usize = 1;
const TWIN: usize = 2;
const NAIVE: usize = 3;
const BARE: usize = 4;

const CLOSED_CONNECTIONS: usize = 64;
const OPEN_CONNECTIONS: usize = 128;
const OVERLOAD_CONNECTIONS: usize = 256;
const PATH: &str = "/api/orders/42";
/// The latency-percentile plot, beside docs/benchmarks.md.
const PLOT: &str = "service-latency.svg";
/// A phase whose generator achieved less than this share of the rate it offered fell short.
const ACHIEVED_MIN: f64 = 0.95;
/// A CPU busy for at least this share of the time is used up.
const CPU_USED_UP: f64 = 0.9;
/// Every request admitted: the closed loop measures the full route, not the 429 path.
const OPEN_QUOTA: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generator {
    Oha,
    Wrk,
}

/// Who limited a phase that did not reach its offered rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    /// The generator used its CPUs up, or the server had CPU to spare: the latency is the generator's.
    Generator,
    /// The server's CPU was used up: the latency is the server's queueing, as an overload should show.
    Server,
}

/// What one generator run measured.
#[derive(Debug, Clone, Default)]
struct Run {
    rps: f64,
    /// Answers by status class, as the generator saw them.
    answers: u64,
    ok: u64,
    shed: u64,
    /// Requests the generator gave up on (errors, aborted at the deadline).
    errors: u64,
    /// Percentile name (`p50`, `p99`, `p99.9`, ...) → seconds, all answers.
    pct: Vec<(String, f64)>,
    /// Same, answers with a 2xx status only.
    pct_ok: Vec<(String, f64)>,
    /// The fixed rate asked of the generator (open loop).
    offered: Option<f64>,
    /// Share of its CPUs the generator used (1.0 = all of them, all the time).
    generator_cpu: f64,
    /// Share of its CPU the server used.
    server_cpu: f64,
    /// Share of the generator's CPUs that was busy, whoever used it.
    generator_busy: f64,
    /// Share of the server's CPU that was busy, whoever used it.
    server_busy: f64,
    /// Server CPU time per answered request, µs.
    server_us_per_req: f64,
    short: Option<Short>,
}

impl Run {
    fn p(&self, name: &str) -> f64 {
        self.pct
            .iter()
            .find(|(k, _)| k == name)
            .map_or(f64::NAN, |(_, v)| *v)
    }
    fn p_ok(&self, name: &str) -> f64 {
        self.pct_ok
            .iter()
            .find(|(k, _)| k == name)
            .map_or(f64::NAN, |(_, v)| *v)
    }
    /// Achieved rate as a share of the offered one.
    fn achieved(&self) -> Option<f64> {
        self.offered.map(|o| self.rps / o)
    }
    /// The latency of this run is the server's (not a generator that fell behind its schedule).
    fn servers(&self) -> Option<&Run> {
        (self.short != Some(Short::Generator)).then_some(self)
    }
    /// A closed loop measured the server's capacity: the server used its CPU up. Under that, its rate is what
    /// other processes on its CPU, or a generator that could not keep up, left it.
    fn server_bound(&self) -> bool {
        self.server_cpu >= CPU_USED_UP
    }
}

/// One (setup, round) of each phase.
#[derive(Debug, Clone, Default)]
struct Sample {
    closed: Option<Run>,
    half: Option<Run>,
    eight: Option<Run>,
    over: Option<Run>,
    first_200_ms: f64,
    rss_mib: f64,
    bytes_per_req: Option<f64>,
    allocs_per_req: Option<f64>,
    peak_tasks_over: u64,
    /// The per-client quota of the 3×R phase (0.9× the setup's own closed-loop rate).
    quota_over: Option<f64>,
    /// Tasks alive after the graceful shutdown, summed over the setup's processes of the round.
    alive_after: u64,
    /// Generator answers minus server answers, over every phase (0 = every request accounted for).
    unmatched: i64,
    /// Spans ended but never handed to the exporter (at shutdown), per process.
    dropped_spans: Vec<u64>,
    /// Spans counted live in `otel.sdk.processor.span.processed{error.type=queue_full}`, per process.
    dropped_live: Vec<u64>,
}

struct Cfg {
    seconds: u64,
    warmup: u64,
    rounds: usize,
    update_docs: bool,
    quick: bool,
    /// The flags as given (those that change what is measured), for the table's command line.
    flags: String,
}

/// Which CPUs the server and the generator run on.
#[derive(Debug, Clone)]
struct Cpus {
    server: Vec<usize>,
    generator: Vec<usize>,
}

// Samples are indexed [setup][round], and each round visits the setups in rotated order.
#[allow(clippy::needless_range_loop)]
pub fn run(args: &[String]) -> Result<bool, String> {
    let mut cfg = Cfg {
        seconds: 10,
        warmup: 2,
        rounds: 4,
        update_docs: false,
        quick: false,
        flags: args
            .iter()
            .filter(|a| *a != "--update-docs")
            .map(|a| format!(" {a}"))
            .collect(),
    };
    let mut it = args.iter();
    let mut rounds = None;
    let mut seconds = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => cfg.quick = true,
            "--update-docs" => cfg.update_docs = true,
            "--rounds" => {
                rounds = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|n| *n >= 1)
                        .ok_or("--rounds N, N ≥ 1")?,
                )
            }
            "--seconds" => {
                seconds = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|n| *n >= 1)
                        .ok_or("--seconds S, S ≥ 1")?,
                )
            }
            other => return Err(format!("load: unknown argument {other:?}")),
        }
    }
    if cfg.quick {
        (cfg.seconds, cfg.warmup, cfg.rounds) = (1, 1, 1);
    }
    cfg.rounds = rounds.unwrap_or(cfg.rounds);
    cfg.seconds = seconds.unwrap_or(cfg.seconds);

    let generator = if have("oha") {
        Generator::Oha
    } else if have("wrk") {
        println!(
            "== oha not found (`cargo install --locked oha`): wrk runs the closed-loop phase; open-loop phases skipped"
        );
        Generator::Wrk
    } else {
        return Err("no load generator: install oha (`cargo install --locked oha`) or wrk (`apt-get install wrk`)".into());
    };
    let root = workspace::root();
    println!("== building the demo service");
    let bin = service::build(&root)?;
    let dir = service::scratch(&root, "load")?;

    // From here on this thread, and so the generator and the collector it starts, runs on the generator's CPUs.
    let cpus = match split_cpus().and_then(|c| match c {
        Some(c) => pin_thread(&c.generator).map(|()| Some(c)),
        None => Ok(None),
    }) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "== cannot pin the server and the generator to CPUs ({e}): they share the machine's CPUs"
            );
            None
        }
    };
    match &cpus {
        Some(c) => {
            println!(
                "== server pinned to CPU {:?}, generator and collector to CPU {:?}",
                c.server, c.generator
            );
        }
        None => println!(
            "== one CPU only: server and generator share it, so the latencies below are partly the generator's"
        ),
    }
    if std::env::var_os("OTEL_TRACES_SAMPLER_ARG").is_some() {
        println!(
            "== note: OTEL_TRACES_SAMPLER_ARG is set and applies to the span budget setup (else its default)"
        );
    }

    // All telemetry on for kit and naive: to the user's collector, else to a rotel that discards what it receives.
    let mut env: Vec<(String, String)> = Vec::new();
    let _rotel = if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        println!("== telemetry: to OTEL_EXPORTER_OTLP_ENDPOINT");
        None
    } else if let Some(agent) = service::rotel_agent() {
        let r = Rotel::start_quiet(&agent, &dir)?;
        println!(
            "== telemetry: every exported span and metric to a rotel collector on 127.0.0.1:{} (discarding)",
            r.grpc_port
        );
        env.push((
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{}", r.grpc_port),
        ));
        env.push(("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()));
        Some(r)
    } else {
        println!(
            "== telemetry: no collector (no OTEL_EXPORTER_OTLP_ENDPOINT, no rotel): exports fail and are counted"
        );
        None
    };
    let gen_cpus = cpus.as_ref().map_or(1, |c| c.generator.len());
    let ctx = Ctx {
        g: generator,
        dir: &dir,
        gen_cpus,
        cpus: cpus.as_ref(),
    };
    // The closed loop needs no schedule, only a generator that is not the limit: wrk spends about a third of
    // oha's CPU per request, so it drives that phase when it is installed.
    let closed_gen = if have("wrk") {
        Generator::Wrk
    } else {
        generator
    };
    let closed_ctx = Ctx {
        g: closed_gen,
        ..ctx
    };
    let immediate = ["--downstream-latency-ms".to_owned(), "0".to_owned()];

    let mut samples: Vec<Vec<Sample>> = vec![vec![Sample::default(); cfg.rounds]; SETUPS.len()];
    println!(
        "== phase 1: closed loop, {CLOSED_CONNECTIONS} connections, every request admitted, {} s per run, {} rounds",
        cfg.seconds, cfg.rounds
    );
    for r in 0..cfg.rounds {
        for v in order(r) {
            let mut args = immediate.to_vec();
            args.extend(["--client-rps".to_owned(), OPEN_QUOTA.to_string()]);
            let svc = start(&bin, &SETUPS[v], &args, &env, cpus.as_ref())?;
            let s = &mut samples[v][r];
            s.first_200_ms = svc
                .time_to_first_200(PATH)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
            generate(
                &closed_ctx,
                &svc,
                cfg.warmup,
                None,
                CLOSED_CONNECTIONS,
                true,
            )?;
            let (run, unmatched) = measured(
                &closed_ctx,
                &svc,
                cfg.seconds,
                None,
                CLOSED_CONNECTIONS,
                true,
            )?;
            s.rss_mib = num(&svc.stats()?, "/rss_kib") as f64 / 1024.0;
            s.unmatched += unmatched;
            println!(
                "   round {} {:<10} {:>8.0} req/s  {:.1} µs CPU/req  p99 {:.2} ms  RSS {:.1} MiB  first 200 after {:.1} ms{}",
                r + 1,
                SETUPS[v].name,
                run.rps,
                run.server_us_per_req,
                run.p("p99") * 1e3,
                s.rss_mib,
                s.first_200_ms,
                if run.server_bound() {
                    ""
                } else {
                    ": the server used under 90 % of its CPU, so this rate is left out of the throughput ratios"
                }
            );
            s.closed = Some(run);
            finish(svc, s)?;
        }
    }
    let twin_max = capacity(&samples[TWIN]);
    // With wrk (no fixed-rate mode) phase 2 measures what a closed loop can: bytes per request at 64 connections,
    // and overload as 256 connections sending as fast as answers come, against the same quotas.
    let open = generator == Generator::Oha;
    let at = |x: f64| open.then_some(x * twin_max);
    if twin_max.is_finite() && twin_max > 0.0 {
        // Each setup's quota under overload is 0.9× what it served in the closed loop (the twin's: 0.9×R), as an
        // operator sets a quota from the capacity the service has: so 3×R overloads every setup, and its limiter,
        // not the queue of a saturated CPU, is what should answer the excess.
        let own: Vec<f64> = samples
            .iter()
            .map(|v| {
                let m = capacity(v);
                if m.is_finite() && m > 0.0 {
                    m
                } else {
                    twin_max
                }
            })
            .collect();
        if open {
            println!(
                "== phase 2: open loop at 0.5× and 0.8× the twin's {twin_max:.0} req/s (every request admitted), then \
                 3× with each setup's per-client quota at 0.9× its own closed-loop rate"
            );
        } else {
            println!(
                "== phase 2 (wrk): bytes per request at {CLOSED_CONNECTIONS} connections, overload at \
                 {OVERLOAD_CONNECTIONS} (per-client quota 0.9× each setup's own closed-loop rate)"
            );
        }
        let conns = if open {
            OPEN_CONNECTIONS
        } else {
            CLOSED_CONNECTIONS
        };
        let mut admit_all = immediate.to_vec();
        admit_all.extend(["--client-rps".to_owned(), OPEN_QUOTA.to_string()]);
        for r in 0..cfg.rounds {
            for v in order(r) {
                let s = &mut samples[v][r];
                let svc = start(&bin, &SETUPS[v], &admit_all, &env, cpus.as_ref())?;
                generate(&ctx, &svc, cfg.warmup, at(0.5), conns, true)?;
                svc.admin_post("/admin/alloc-counting", "on")?;
                let before = svc.stats()?;
                let (half, u1) = measured(&ctx, &svc, cfg.seconds, at(0.5), conns, true)?;
                let after = svc.stats()?;
                svc.admin_post("/admin/alloc-counting", "off")?;
                let delta = |p: &str| num(&after, p).saturating_sub(num(&before, p));
                let answered = delta("/answered/total");
                s.bytes_per_req =
                    (answered > 0).then(|| delta("/alloc_bytes") as f64 / answered as f64);
                s.allocs_per_req =
                    (answered > 0).then(|| delta("/alloc_count") as f64 / answered as f64);
                let (eight, u2) = if open {
                    measured(&ctx, &svc, cfg.seconds, at(0.8), OPEN_CONNECTIONS, true)?
                } else {
                    (Run::default(), 0)
                };
                finish(svc, s)?;

                let quota = (0.9 * own[v]).max(1.0);
                s.quota_over = Some(quota);
                let mut limited = immediate.to_vec();
                limited.extend([
                    "--client-rps".to_owned(),
                    (quota as u64).to_string(),
                    "--client-burst".to_owned(),
                    ((0.1 * own[v]).max(1.0) as u64).to_string(),
                ]);
                let svc = start(&bin, &SETUPS[v], &limited, &env, cpus.as_ref())?;
                // Warmed up like the other phases' processes (allocator, pools, the client's bucket, the tracer),
                // and the peak of alive tasks taken over the measured run only.
                generate(&ctx, &svc, cfg.warmup, at(3.0), OVERLOAD_CONNECTIONS, false)?;
                if svc.admin_post("/admin/reset-peak", "")? != 204 {
                    return Err("the service did not reset its peak of alive tasks".into());
                }
                // Latency from each request's actual send: no generator holds a schedule of 3×R on one CPU, and a
                // corrected latency would be its lag, not the server's.
                let (over, u3) = measured(
                    &ctx,
                    &svc,
                    cfg.seconds,
                    at(3.0),
                    OVERLOAD_CONNECTIONS,
                    false,
                )?;
                s.peak_tasks_over = num(&svc.stats()?, "/peak_alive_tasks");
                s.unmatched += u1 + u2 + u3;
                println!(
                    "   round {} {:<10} 0.8×: p99 {:.2} ms  3× (quota {quota:.0}/s): shed {} of {}, admitted p99 {:.2} ms, peak tasks {}  {:.0} B/req",
                    r + 1,
                    SETUPS[v].name,
                    eight.p("p99") * 1e3,
                    over.shed,
                    over.answers,
                    over.p_ok("p99") * 1e3,
                    s.peak_tasks_over,
                    s.bytes_per_req.unwrap_or(f64::NAN)
                );
                (s.half, s.eight, s.over) = if open {
                    (Some(half), Some(eight), Some(over))
                } else {
                    (None, None, Some(over))
                };
                finish(svc, s)?;
            }
        }
    }

    let mut table = render(
        &samples,
        &cfg,
        twin_max,
        (closed_gen, generator),
        cpus.as_ref(),
    );
    println!("\n{table}");
    // Beside the table in docs/ only with --update-docs; a run without it leaves the docs as they are.
    let plot = if cfg.update_docs {
        root.join("docs").join(PLOT)
    } else {
        dir.join(PLOT)
    };
    let drawn = generator == Generator::Oha
        && match plot_latency(&samples, &plot) {
            Ok(()) => {
                println!("latency plot: {}", plot.display());
                true
            }
            Err(e) => {
                println!("latency plot not drawn: {e}");
                false
            }
        };
    if cfg.update_docs {
        if drawn {
            let _ = writeln!(
                table,
                "\n![Latency percentiles of each setup at 0.8×R, corrected for coordinated omission]({PLOT})"
            );
        } else if let Err(e) = std::fs::remove_file(&plot)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            // A plot of an earlier run beside a table without one would show other figures than the table.
            return Err(format!("{}: {e}", plot.display()));
        }
        update_docs(&root.join("docs").join("benchmarks.md"), &table)?;
        println!("docs/benchmarks.md updated");
    }
    // The harness fails only on what must hold on any machine: every request answered, nothing left alive, every
    // dropped span counted live.
    let unmatched: i64 = samples.iter().flatten().map(|s| s.unmatched.abs()).sum();
    let alive: u64 = samples.iter().flatten().map(|s| s.alive_after).sum();
    let uncounted: u64 = samples
        .iter()
        .flatten()
        .map(|s| {
            let d: u64 = s.dropped_spans.iter().sum();
            d.abs_diff(s.dropped_live.iter().sum())
        })
        .sum();
    if unmatched != 0 || alive != 0 || uncounted != 0 {
        println!(
            "FAILED: {unmatched} requests unaccounted for, {alive} tasks alive after shutdown, {uncounted} dropped \
             spans not counted live"
        );
        return Ok(false);
    }
    Ok(true)
}

/// A setup's closed-loop rate: the median over the rounds in which its server used its CPU up, else over all.
fn capacity(rounds: &[Sample]) -> f64 {
    let rate = |bound: bool| {
        rounds
            .iter()
            .filter_map(|s| s.closed.as_ref())
            .filter(|r| !bound || r.server_bound())
            .map(|r| r.rps)
            .collect::<Vec<_>>()
    };
    let bound = rate(true);
    if bound.is_empty() {
        median(&rate(false))
    } else {
        median(&bound)
    }
}

/// Whether `program` is on the PATH (wrk has no `--version` that exits 0).
fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Round `r` runs the setups in rotated order, so drift on the machine does not always hit the same one.
fn order(r: usize) -> Vec<usize> {
    (0..SETUPS.len()).map(|i| (i + r) % SETUPS.len()).collect()
}

/// The CPUs this process may use, split: the first for the server, the rest for the generator. `None` with one.
fn split_cpus() -> Result<Option<Cpus>, String> {
    // SAFETY: `cpu_set_t` is plain data for which all zeroes is the empty set; `sched_getaffinity` writes at most
    // `size_of::<cpu_set_t>()` bytes into it, and pid 0 means the calling thread.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(format!(
                "sched_getaffinity: {}",
                std::io::Error::last_os_error()
            ));
        }
        set
    };
    // SAFETY: `CPU_ISSET` reads the set initialised above; `CPU_SETSIZE` bounds the index.
    let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    Ok((allowed.len() >= 2).then(|| Cpus {
        server: allowed[..1].to_vec(),
        generator: allowed[1..].to_vec(),
    }))
}

/// Runs the calling thread (and so every process it starts from now on) on `cpus` only.
fn pin_thread(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: as in `split_cpus`: an all-zero `cpu_set_t` is the empty set, `CPU_SET` writes within it for any
    // index below `CPU_SETSIZE` (the CPUs came from `sched_getaffinity`), and pid 0 is the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!(
            "sched_setaffinity {cpus:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// CPU seconds used by the children of this process that have been waited for.
fn children_cpu_secs() -> f64 {
    // SAFETY: `rusage` is plain data (all zeroes valid) that `getrusage` fills in.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Busy and total time of each CPU so far (jiffies, from /proc/stat), indexed by CPU number; empty without /proc.
fn cpu_times() -> Vec<(u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    let mut times = Vec::new();
    for line in stat.lines() {
        let Some((cpu, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some(Ok(n)) = cpu.strip_prefix("cpu").map(str::parse::<usize>) else {
            continue;
        };
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let f: Vec<u64> = rest
            .split_whitespace()
            .take(8)
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() == 8 {
            let total: u64 = f.iter().sum();
            times.resize(times.len().max(n + 1), (0, 0));
            times[n] = (total - f[3] - f[4], total);
        }
    }
    times
}

/// The share of `cpus`' time that was busy between two [`cpu_times`]; NaN when unknown.
fn busy_share(before: &[(u64, u64)], after: &[(u64, u64)], cpus: &[usize]) -> f64 {
    let (mut busy, mut total) = (0, 0);
    for &c in cpus {
        if let (Some(b), Some(a)) = (before.get(c), after.get(c)) {
            busy += a.0.saturating_sub(b.0);
            total += a.1.saturating_sub(b.1);
        }
    }
    if total == 0 {
        f64::NAN
    } else {
        busy as f64 / total as f64
    }
}

/// Starts a setup's service on the server's CPU (it inherits this thread's affinity when spawned, so its runtime
/// sizes itself for one CPU, as a service given one core would).
fn start(
    bin: &Path,
    setup: &Setup,
    extra: &[String],
    env: &[(String, String)],
    cpus: Option<&Cpus>,
) -> Result<Service, String> {
    let mut args = vec!["--variant".to_owned(), setup.variant.to_owned()];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    if let Some(s) = setup.sampler {
        env.push(("OTEL_TRACES_SAMPLER".into(), s.into()));
    }
    if !env.iter().any(|(k, _)| k == "OTEL_EXPORTER_OTLP_ENDPOINT")
        && std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
    {
        // No collector: point at a closed port rather than at a real default one.
        let port = service::free_port().unwrap_or(9);
        env.push((
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{port}"),
        ));
    }
    let Some(cpus) = cpus else {
        return Service::start(bin, &args, &env);
    };
    pin_thread(&cpus.server)?;
    let svc = Service::start(bin, &args, &env);
    pin_thread(&cpus.generator)?;
    svc
}

fn finish(svc: Service, s: &mut Sample) -> Result<(), String> {
    let report = svc.stop()?;
    s.alive_after += num(&report, "/alive_tasks_after_shutdown");
    if let Some(d) = report.get("dropped_spans").and_then(Value::as_u64) {
        s.dropped_spans.push(d);
        s.dropped_live.push(num(&report, "/spans_dropped_live"));
    }
    Ok(())
}

/// How a run is generated.
struct Ctx<'a> {
    g: Generator,
    dir: &'a Path,
    /// CPUs the generator may use.
    gen_cpus: usize,
    cpus: Option<&'a Cpus>,
}

/// A run whose answers are compared with the server's own count; returns the run and generator − server answers.
/// Also what each side's CPU did, and whether the generator reached the rate it offered.
fn measured(
    ctx: &Ctx<'_>,
    svc: &Service,
    secs: u64,
    rate: Option<f64>,
    conns: usize,
    corrected: bool,
) -> Result<(Run, i64), String> {
    let before = svc.stats()?;
    let (cpu0, busy0, t0) = (children_cpu_secs(), cpu_times(), Instant::now());
    let mut run = generate(ctx, svc, secs, rate, conns, corrected)?;
    let (cpu1, busy1, wall) = (children_cpu_secs(), cpu_times(), t0.elapsed().as_secs_f64());
    let after = svc.stats()?;
    let delta = |p: &str| num(&after, p).saturating_sub(num(&before, p));
    let server = delta("/answered/total");
    run.offered = rate;
    run.generator_cpu = (cpu1 - cpu0) / (wall * ctx.gen_cpus as f64);
    run.server_cpu = delta("/cpu_ms") as f64 / 1e3 / wall;
    run.server_us_per_req = delta("/cpu_ms") as f64 * 1e3 / server.max(1) as f64;
    // How busy each side's CPUs were, whoever used them (on a shared machine, not only the generator and server).
    (run.generator_busy, run.server_busy) = match ctx.cpus {
        Some(c) => (
            busy_share(&busy0, &busy1, &c.generator),
            busy_share(&busy0, &busy1, &c.server),
        ),
        None => (run.generator_cpu, run.server_cpu),
    };
    if let Some(achieved) = run.achieved() {
        // Uncorrected latency runs from each request's actual send: the server's, whatever the generator held.
        if achieved < ACHIEVED_MIN && corrected {
            run.short = Some(
                if run.generator_busy >= CPU_USED_UP || run.server_busy < CPU_USED_UP {
                    Short::Generator
                } else {
                    Short::Server
                },
            );
        }
        println!(
            "     offered {:.0} req/s, achieved {:.0} ({:.0} %); generator used {:.0} % of its {} CPU (busy {:.0} %), \
             server {:.0} % of its 1 (busy {:.0} %){}",
            rate.unwrap_or(0.0),
            run.rps,
            100.0 * achieved,
            100.0 * run.generator_cpu,
            ctx.gen_cpus,
            100.0 * run.generator_busy,
            100.0 * run.server_cpu,
            100.0 * run.server_busy,
            match run.short {
                Some(Short::Generator) =>
                    ": the GENERATOR fell short, this phase's latency is left out of the table",
                Some(Short::Server) => ": the server is saturated",
                None => "",
            }
        );
    }
    let server = server as i64;
    let mut unmatched = run.answers as i64 - server;
    // wrk stops at its deadline without waiting for the requests in flight (at most one per connection) and does
    // not count them, though the server answers them; oha (`-w`) waits, so its count must match exactly.
    if ctx.g == Generator::Wrk && (0..=conns as i64).contains(&-unmatched) {
        unmatched = 0;
    }
    if unmatched != 0 || run.errors != 0 {
        println!(
            "   ! generator saw {} answers and {} errors, the server answered {server}",
            run.answers, run.errors
        );
    }
    Ok((run, unmatched))
}

/// `corrected`: at a fixed rate, latency from each request's scheduled send (corrected for coordinated omission).
fn generate(
    ctx: &Ctx<'_>,
    svc: &Service,
    secs: u64,
    rate: Option<f64>,
    conns: usize,
    corrected: bool,
) -> Result<Run, String> {
    let url = format!("http://{}{PATH}", svc.addr);
    match ctx.g {
        Generator::Oha => {
            let out = ctx.dir.join("oha.json");
            let mut cmd = Command::new("oha");
            cmd.args([
                "-z",
                &format!("{secs}s"),
                "-c",
                &conns.to_string(),
                "-w",
                "--no-tui",
            ])
            .args([
                "--output-format",
                "json",
                "--stats-success-breakdown",
                "-H",
                "x-client-id: load",
            ])
            .arg("-o")
            .arg(&out);
            if let Some(q) = rate {
                cmd.args(["-q", &format!("{q:.0}")]);
                if corrected {
                    cmd.arg("--latency-correction");
                }
            }
            let status = cmd.arg(&url).status().map_err(|e| format!("oha: {e}"))?;
            if !status.success() {
                return Err(format!("oha exited with {status}"));
            }
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(&out).map_err(|e| e.to_string())?)
                    .map_err(|e| format!("oha JSON: {e}"))?;
            Ok(parse_oha(&json))
        }
        Generator::Wrk => {
            let out = Command::new("wrk")
                .args([
                    "-t",
                    &ctx.gen_cpus.to_string(),
                    "-c",
                    &conns.to_string(),
                    "-d",
                    &format!("{secs}s"),
                    "--latency",
                ])
                .args(["-H", "x-client-id: load", &url])
                .output()
                .map_err(|e| format!("wrk: {e}"))?;
            Ok(parse_wrk(&String::from_utf8_lossy(&out.stdout)))
        }
    }
}

fn parse_oha(json: &Value) -> Run {
    let dist = |key: &str| -> Vec<(String, f64)> {
        json.get(key)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut run = Run {
        rps: json
            .pointer("/summary/requestsPerSec")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        pct: dist("latencyPercentiles"),
        pct_ok: dist("latencyPercentilesSuccessful"),
        ..Run::default()
    };
    if let Some(codes) = json
        .get("statusCodeDistribution")
        .and_then(Value::as_object)
    {
        for (code, n) in codes {
            let n = n.as_u64().unwrap_or(0);
            run.answers += n;
            match code.as_str() {
                c if c.starts_with('2') => run.ok += n,
                "429" | "503" => run.shed += n,
                _ => {}
            }
        }
    }
    run.errors = json
        .get("errorDistribution")
        .and_then(Value::as_object)
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    // oha's requestsPerSec counts errors too; throughput is answers per second.
    if let Some(total) = json
        .pointer("/summary/total")
        .and_then(Value::as_f64)
        .filter(|t| *t > 0.0)
    {
        run.rps = run.answers as f64 / total;
    }
    run
}

fn parse_wrk(out: &str) -> Run {
    let mut run = Run::default();
    let secs = |v: &str| -> f64 {
        let v = v.trim();
        let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = n.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            _ => f64::NAN,
        }
    };
    let mut non2xx = 0;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non2xx = v.trim().parse().unwrap_or(0);
        } else if t.contains(" requests in ") {
            run.answers = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some((p, v)) = t.split_once('%') {
            if let Ok(p) = p.trim().parse::<f64>() {
                run.pct.push((format!("p{p}"), secs(v)));
            }
        } else if t.starts_with("Socket errors:") {
            run.errors = t
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    run.ok = run.answers.saturating_sub(non2xx);
    run.shed = non2xx;
    run
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `median (min–max)` of `f` over a variant's rounds.
fn spread(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>, digits: usize) -> String {
    let v: Vec<f64> = samples
        .iter()
        .filter_map(&f)
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return "-".into();
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    if v.len() == 1 {
        format!("{:.*}", digits, v[0])
    } else {
        format!(
            "{:.*} ({:.*}–{:.*})",
            digits,
            median(&v),
            digits,
            lo,
            digits,
            hi
        )
    }
}

/// Ratio of medians `a`/`b` for `f`.
fn ratio(
    samples: &[Vec<Sample>],
    a: usize,
    b: usize,
    f: impl Fn(&Sample) -> Option<f64> + Copy,
) -> f64 {
    let m = |i: usize| median(&samples[i].iter().filter_map(f).collect::<Vec<_>>());
    m(a) / m(b)
}

/// Ratios `a`/`b` of `f` round by round, over the rounds where both have a value: (median, min, max). The setups
/// of a round run back to back, so a pair sees the same machine, while drift over the rounds (others' work on a
/// shared machine) moves the medians of all rounds apart.
fn paired(
    samples: &[Vec<Sample>],
    a: usize,
    b: usize,
    f: impl Fn(&Sample) -> Option<f64>,
) -> Option<(f64, f64, f64)> {
    let r: Vec<f64> = samples[a]
        .iter()
        .zip(&samples[b])
        .filter_map(|(x, y)| Some(f(x)? / f(y)?))
        .filter(|r| r.is_finite())
        .collect();
    let (lo, hi) = r
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(*x), h.max(*x))
        });
    (!r.is_empty()).then(|| (median(&r), lo, hi))
}

/// A latency cell: rounds whose generator fell short are left out, and said so.
fn latency(samples: &[Sample], phase: fn(&Sample) -> Option<&Run>, f: fn(&Run) -> f64) -> String {
    let ran = samples.iter().filter(|s| phase(s).is_some()).count();
    let short = samples
        .iter()
        .filter(|s| phase(s).is_some_and(|r| r.servers().is_none()))
        .count();
    let cell = spread(
        samples,
        |s| phase(s).and_then(Run::servers).map(|r| f(r) * 1e3),
        2,
    );
    match short {
        0 => cell,
        n if n == ran => format!("generator fell short ({n} of {ran})"),
        n => format!("{cell} (generator short in {n} of {ran} left out)"),
    }
}

fn render(
    samples: &[Vec<Sample>],
    cfg: &Cfg,
    twin_max: f64,
    (closed, g): (Generator, Generator),
    cpus: Option<&Cpus>,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Command: `cargo xtask load{}` ({} rounds, {} s per phase; closed loop: {}, other phases: {}; {}). Each \
         cell: median (min–max) \
         over the rounds. Reference rate R = the twin's closed-loop median (over the rounds its server used its CPU up), {twin_max:.0} req/s. A phase's latency \
         is left out where the generator achieved under {:.0} % of the rate it offered while its CPU was busy \
         or the server's was not (busy by any process: on a shared machine others take CPU too). Throughput goals \
         compare the closed-loop rates round by round (setups of a round run back to back), over the rounds in which \
         both servers used at least {:.0} % of their CPU.\n",
        cfg.flags,
        cfg.rounds,
        cfg.seconds,
        if closed == Generator::Wrk {
            "wrk"
        } else {
            "oha"
        },
        if g == Generator::Oha {
            "oha (open loop, latency corrected for coordinated omission at 0.5×R and 0.8×R)"
        } else {
            "wrk (closed loop only)"
        },
        match cpus {
            Some(c) => format!(
                "server pinned to CPU {:?}, generator and collector to CPU {:?}",
                c.server, c.generator
            ),
            None => "server and generator share one CPU".to_owned(),
        },
        100.0 * ACHIEVED_MIN,
        100.0 * CPU_USED_UP,
    );
    let _ = write!(t, "| measure |");
    for s in &SETUPS {
        let _ = write!(t, " {} |", s.header);
    }
    let _ = writeln!(t, "\n|---|{}", "---|".repeat(SETUPS.len()));
    let row = |t: &mut String, name: &str, cell: &dyn Fn(&[Sample]) -> String| {
        let _ = write!(t, "| {name} |");
        for v in samples {
            let _ = write!(t, " {} |", cell(v));
        }
        let _ = writeln!(t);
    };
    type F = fn(&Sample) -> Option<f64>;
    type P = fn(&Sample) -> Option<&Run>;
    let half: P = |s| s.half.as_ref();
    let eight: P = |s| s.eight.as_ref();
    let over: P = |s| s.over.as_ref();
    let num_rows: [(&str, F, usize); 5] = [
        (
            "closed loop, req/s",
            |s| s.closed.as_ref().map(|r| r.rps),
            0,
        ),
        (
            "closed loop, server CPU per request, µs",
            |s| s.closed.as_ref().map(|r| r.server_us_per_req),
            1,
        ),
        (
            "closed loop, server CPU used, % of its CPU",
            |s| s.closed.as_ref().map(|r| 100.0 * r.server_cpu),
            0,
        ),
        (
            "closed loop, server's CPU busy (any process), %",
            |s| s.closed.as_ref().map(|r| 100.0 * r.server_busy),
            0,
        ),
        (
            "closed loop, generator CPU used, % of its CPUs",
            |s| s.closed.as_ref().map(|r| 100.0 * r.generator_cpu),
            0,
        ),
    ];
    for (name, f, d) in num_rows {
        row(&mut t, name, &|v| spread(v, f, d));
    }
    let achieved = |p: P| {
        move |v: &[Sample]| spread(v, |s| p(s).and_then(Run::achieved).map(|a| 100.0 * a), 0)
    };
    type L = fn(&Run) -> f64;
    type Lats = &'static [(&'static str, L)];
    let phases: [(&str, P, Lats); 3] = [
        (
            "0.5×R",
            half,
            &[("P50", |r| r.p("p50")), ("P99", |r| r.p("p99"))],
        ),
        (
            "0.8×R",
            eight,
            &[
                ("P50", |r| r.p("p50")),
                ("P99", |r| r.p("p99")),
                ("P99.9", |r| r.p("p99.9")),
            ],
        ),
        ("3×R", over, &[]),
    ];
    for (phase, p, lats) in phases {
        row(
            &mut t,
            &format!("{phase} achieved, % of offered"),
            &achieved(p),
        );
        for &(name, f) in lats {
            row(&mut t, &format!("{phase} {name} ms"), &|v| latency(v, p, f));
        }
    }
    row(
        &mut t,
        "3×R per-client quota (0.9× own closed loop), req/s",
        &|v| spread(v, |s| s.quota_over, 0),
    );
    row(&mut t, "3×R shed (429/503) %", &|v| {
        spread(
            v,
            |s| {
                s.over
                    .as_ref()
                    .map(|r| 100.0 * r.shed as f64 / r.answers.max(1) as f64)
            },
            1,
        )
    });
    row(
        &mut t,
        "3×R admitted P99 ms (from each request's send)",
        &|v| latency(v, over, |r| r.p_ok("p99")),
    );
    let rest: [(&str, F, usize); 6] = [
        (
            "3×R peak alive tokio tasks",
            |s| s.over.as_ref().map(|_| s.peak_tasks_over as f64),
            0,
        ),
        (
            "bytes allocated per request (0.5×R)",
            |s| s.bytes_per_req,
            0,
        ),
        ("allocations per request (0.5×R)", |s| s.allocs_per_req, 1),
        ("start to first 200, ms", |s| Some(s.first_200_ms), 1),
        ("VmRSS after closed loop, MiB", |s| Some(s.rss_mib), 1),
        (
            "alive tasks after shutdown",
            |s| Some(s.alive_after as f64),
            0,
        ),
    ];
    for (name, f, d) in rest {
        row(&mut t, name, &|v| spread(v, f, d));
    }
    let unmatched = |v: &[Sample]| v.iter().map(|s| s.unmatched).sum::<i64>();
    row(
        &mut t,
        "answers unaccounted for (generator − server)",
        &|v| unmatched(v).to_string(),
    );
    let traced = |v: &[Sample]| v.iter().any(|s| !s.dropped_spans.is_empty());
    let dropped = |v: &[Sample]| v.iter().flat_map(|s| &s.dropped_spans).sum::<u64>();
    let live = |v: &[Sample]| v.iter().flat_map(|s| &s.dropped_live).sum::<u64>();
    type Count = fn(&[Sample]) -> u64;
    let counts: [(&str, Count); 2] = [
        (
            "spans dropped at the export queue (at shutdown: ended − exported), all runs",
            dropped,
        ),
        (
            "spans dropped counted live (otel.sdk.processor.span.processed, error.type=queue_full), all runs",
            live,
        ),
    ];
    for (name, count) in counts {
        row(&mut t, name, &|v| {
            if traced(v) {
                count(v).to_string()
            } else {
                "-".into()
            }
        });
    }

    let rps: F = |s| s.closed.as_ref().map(|r| r.rps);
    let cpu: F = |s| s.closed.as_ref().map(|r| r.server_us_per_req);
    let bytes: F = |s| s.bytes_per_req;
    let p99_8: F = |s| {
        s.eight
            .as_ref()
            .and_then(Run::servers)
            .map(|r| r.p("p99") * 1e3)
    };
    let p99_unloaded: F = |s| {
        s.half
            .as_ref()
            .and_then(Run::servers)
            .map(|r| r.p("p99") * 1e3)
    };
    let p99_over: F = |s| {
        s.over
            .as_ref()
            .and_then(Run::servers)
            .map(|r| r.p_ok("p99") * 1e3)
    };
    let first: F = |s| Some(s.first_200_ms);
    let rss: F = |s| Some(s.rss_mib);
    let m = |v: usize, f: F| median(&samples[v].iter().filter_map(f).collect::<Vec<_>>());
    let yes = |ok: bool| if ok { "yes" } else { "no" };
    // Throughput as a rate, paired round by round over the rounds where both servers used their CPU up (else
    // over all rounds), and as the inverse ratio of server CPU per request (steadier on a busy machine).
    let bound: F = |s| {
        s.closed
            .as_ref()
            .filter(|r| r.server_bound())
            .map(|r| r.rps)
    };
    let speed = |v: usize, other: usize| {
        let (r, every) = match paired(samples, v, other, bound) {
            Some(r) => (r, true),
            None => (
                paired(samples, v, other, rps).unwrap_or((f64::NAN, f64::NAN, f64::NAN)),
                false,
            ),
        };
        (r, every, ratio(samples, other, v, cpu))
    };
    let _ = writeln!(
        t,
        "\n| goal | {} | met? | {} | met? |\n|---|---|---|---|---|",
        SETUPS[BUDGET].header, SETUPS[ALL].header
    );
    // A cell is (measured, met); `None` where the goal is not this setup's.
    let goal = |t: &mut String, name: &str, cell: &dyn Fn(usize) -> Option<(String, bool)>| {
        let _ = write!(t, "| {name} |");
        for v in [BUDGET, ALL] {
            let _ = match cell(v) {
                Some((m, ok)) => write!(t, " {m} | {} |", yes(ok)),
                None => write!(t, " - | - |"),
            };
        }
        let _ = writeln!(t);
    };
    let thr = |other: usize, min: f64| {
        move |v: usize| {
            let ((r, lo, hi), bound, c) = speed(v, other);
            let rounds = if bound {
                "by round"
            } else {
                "by round, no round with both servers' CPU used up"
            };
            Some((
                format!("{r:.2}× ({lo:.2}–{hi:.2} {rounds}; CPU per request: {c:.2}×)"),
                r >= min,
            ))
        }
    };
    goal(&mut t, "throughput ≥ 0.9× twin", &thr(TWIN, 0.9));
    goal(&mut t, "throughput ≥ 1.0× naive", &thr(NAIVE, 1.0));
    // Issue 14's goals: the rate against the twin's, and what became of the spans the export queue dropped (none
    // under the budget; every one counted live with every request sampled).
    let spans = |only: usize, min: f64| {
        move |v: usize| {
            (v == only).then(|| {
                let ((r, _, _), _, _) = speed(v, TWIN);
                let (d, l) = (dropped(&samples[v]), live(&samples[v]));
                let ok = r >= min && if v == BUDGET { d == 0 } else { d == l };
                (format!("{r:.2}×, {d} dropped, {l} counted live"), ok)
            })
        }
    };
    goal(
        &mut t,
        "span budget: ≥ 0.93× twin at the highest load, 0 spans dropped",
        &spans(BUDGET, 0.93),
    );
    goal(
        &mut t,
        "every request sampled: ≥ 0.85× twin, every dropped span counted",
        &spans(ALL, 0.85),
    );
    goal(&mut t, "bytes/request ≤ 0.25× twin", &|v| {
        let r = ratio(samples, v, TWIN, bytes);
        // What no variant can go under: hyper and axum alone.
        let floor = ratio(samples, BARE, TWIN, bytes);
        Some((
            format!("{r:.2}× (the hyper + axum floor alone: {floor:.2}×)"),
            r <= 0.25,
        ))
    });
    goal(&mut t, "P99 ≤ 4 ms at 0.8×R", &|v| {
        let p = m(v, p99_8);
        if p.is_nan() {
            return Some(("not measured: the generator fell short".to_owned(), false));
        }
        Some((format!("{p:.2} ms"), p <= 4.0))
    });
    goal(
        &mut t,
        "3×R admitted P99 ≤ 4× unloaded (0.5×R) P99",
        &|v| {
            let (o, u) = (m(v, p99_over), 4.0 * m(v, p99_unloaded));
            if o.is_nan() || u.is_nan() {
                return Some(("not measured: the generator fell short".to_owned(), false));
            }
            Some((format!("{o:.2} ms vs {u:.2} ms"), o <= u))
        },
    );
    goal(&mut t, "start to first 200 ≤ 20 ms", &|v| {
        let f = m(v, first);
        Some((format!("{f:.1} ms"), f <= 20.0))
    });
    goal(&mut t, "VmRSS ≤ 15 MB", &|v| {
        let r = m(v, rss);
        Some((format!("{r:.1} MiB"), r * 1.048_576 <= 15.0))
    });
    goal(&mut t, "0 alive tasks after shutdown", &|v| {
        let a: u64 = samples[v].iter().map(|s| s.alive_after).sum();
        Some((a.to_string(), a == 0))
    });
    goal(&mut t, "0 requests unanswered", &|v| {
        let u = unmatched(&samples[v]);
        Some((u.to_string(), u == 0))
    });
    t
}

/// The latency-percentile curves at 0.8×R (median over rounds per percentile), one line per variant, as SVG.
fn plot_latency(samples: &[Vec<Sample>], path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    crate::fonts::register()?;
    let keys = [
        "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99",
    ];
    let series: Vec<Vec<f64>> = samples
        .iter()
        .map(|v| {
            keys.iter()
                .map(|k| {
                    median(
                        &v.iter()
                            .filter_map(|s| {
                                s.eight
                                    .as_ref()
                                    .and_then(Run::servers)
                                    .map(|r| r.p(k) * 1e3)
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .collect()
        })
        .collect();
    let top = series
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max)
        * 1.1;
    if top <= 0.0 {
        return Err("no open-loop data".into());
    }
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "otlp-demo latency at 0.8× the twin's max rate (corrected for coordinated omission)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..(keys.len() - 1) as f64, 0f64..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(keys.len())
        .x_label_formatter(&|x| {
            keys.get(x.round() as usize)
                .map_or(String::new(), |k| (*k).to_owned())
        })
        .x_desc("percentile")
        .y_desc("latency, ms")
        .draw()
        .map_err(|e| e.to_string())?;
    let colors = [RED, MAGENTA, BLUE, GREEN, BLACK];
    for (i, (setup, ys)) in SETUPS.iter().zip(&series).enumerate() {
        let name = setup.name;
        let color = colors[i];
        chart
            .draw_series(LineSeries::new(
                ys.iter()
                    .enumerate()
                    .filter(|(_, y)| y.is_finite())
                    .map(|(x, y)| (x as f64, *y)),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Replaces the text between the service-table markers of docs/benchmarks.md.
fn update_docs(path: &Path, table: &str) -> Result<(), String> {
    let (start, end) = ("<!-- service-table:start -->", "<!-- service-table:end -->");
    let doc = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
        return Err(format!("{} has no {start} … {end} markers", path.display()));
    };
    let new = format!("{}{start}\n{table}{}", &doc[..a], &doc[b..]);
    std::fs::write(path, new).map_err(|e| e.to_string())
}
