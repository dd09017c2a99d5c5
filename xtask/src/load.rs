//! `cargo xtask load [--quick] [--rounds N] [--seconds S] [--update-docs]`: the demo service (`kit`), its twin
//! without otlp-kit (`twin`) and the naive-instrumented variant (`naive`) under an established load generator, one
//! at a time, interleaved over rounds, on this machine's loopback (server and generator share the cores).
//!
//! 1. Closed loop (fixed connections, as fast as answers come): the highest throughput. The twin's median is the
//!    reference rate `R`.
//! 2. Open loop at 0.5×R and 0.8×R (fixed rate, latency measured from each request's scheduled time, i.e. corrected
//!    for coordinated omission): P50/P99/P99.9; bytes allocated per request (counting allocator) at 0.5×R.
//! 3. 3×R: requests over the per-client quota (0.9×R) are shed with 429 and counted; the P99 of the admitted (2xx)
//!    requests; the peak of alive tokio tasks.
//!
//! Also: start to first 200, resident memory (VmRSS) after the closed-loop phase, alive tasks after the graceful
//! shutdown, and whether the generator's count of answers equals the server's own. `oha` is the generator
//! (`cargo install --locked oha`); with only `wrk` (Debian) the closed-loop phase runs and the open-loop phases are
//! skipped, since wrk has no fixed-rate mode.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::service::{self, Rotel, Service, num};
use crate::workspace;

const VARIANTS: [&str; 3] = ["kit", "twin", "naive"];
const CLOSED_CONNECTIONS: usize = 64;
const OPEN_CONNECTIONS: usize = 128;
const OVERLOAD_CONNECTIONS: usize = 256;
const PATH: &str = "/api/orders/42";
/// The latency-percentile plot, beside docs/benchmarks.md.
const PLOT: &str = "service-latency.svg";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generator {
    Oha,
    Wrk,
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
}

/// One (variant, round) of each phase.
#[derive(Debug, Clone, Default)]
struct Sample {
    closed: Option<Run>,
    half: Option<Run>,
    eight: Option<Run>,
    over: Option<Run>,
    first_200_ms: f64,
    rss_mib: f64,
    bytes_per_req: Option<f64>,
    peak_tasks_over: u64,
    alive_after: u64,
    /// Generator answers minus server answers, over every phase (0 = every request accounted for).
    unmatched: i64,
    dropped_spans: Option<u64>,
}

struct Cfg {
    seconds: u64,
    warmup: u64,
    rounds: usize,
    update_docs: bool,
    quick: bool,
}

// Samples are indexed [variant][round], and each round visits the variants in rotated order.
#[allow(clippy::needless_range_loop)]
pub fn run(args: &[String]) -> Result<bool, String> {
    let mut cfg = Cfg {
        seconds: 10,
        warmup: 2,
        rounds: 4,
        update_docs: false,
        quick: false,
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

    // All telemetry on for kit and naive: to the user's collector, else to a rotel that discards what it receives.
    let mut env: Vec<(String, String)> = Vec::new();
    let _rotel = if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        println!("== telemetry: to OTEL_EXPORTER_OTLP_ENDPOINT");
        None
    } else if let Some(agent) = service::rotel_agent() {
        let r = Rotel::start_quiet(&agent, &dir)?;
        println!(
            "== telemetry: every span and metric to a rotel collector on 127.0.0.1:{} (discarding)",
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

    let mut samples: Vec<Vec<Sample>> = vec![vec![Sample::default(); cfg.rounds]; VARIANTS.len()];
    println!(
        "== phase 1: closed loop, {CLOSED_CONNECTIONS} connections, {} s per run, {} rounds",
        cfg.seconds, cfg.rounds
    );
    for r in 0..cfg.rounds {
        for v in order(r) {
            let svc = start(&bin, VARIANTS[v], &[], &env)?;
            let s = &mut samples[v][r];
            s.first_200_ms = svc
                .time_to_first_200(PATH)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
            generate(generator, &svc, cfg.warmup, None, CLOSED_CONNECTIONS, &dir)?;
            let (run, unmatched) =
                measured(generator, &svc, cfg.seconds, None, CLOSED_CONNECTIONS, &dir)?;
            s.rss_mib = num(&svc.stats()?, "/rss_kib") as f64 / 1024.0;
            s.unmatched += unmatched;
            println!(
                "   round {} {:<5} {:>8.0} req/s  p99 {:.2} ms  RSS {:.1} MiB  first 200 after {:.1} ms",
                r + 1,
                VARIANTS[v],
                run.rps,
                run.p("p99") * 1e3,
                s.rss_mib,
                s.first_200_ms
            );
            s.closed = Some(run);
            finish(svc, s)?;
        }
    }
    let twin_max = median(
        &samples[1]
            .iter()
            .filter_map(|s| s.closed.as_ref().map(|c| c.rps))
            .collect::<Vec<_>>(),
    );
    // With wrk (no fixed-rate mode) phase 2 measures what a closed loop can: bytes per request at 64 connections,
    // and overload as 256 connections sending as fast as answers come, against the same 0.9×R quota.
    let open = generator == Generator::Oha;
    let at = |x: f64| open.then_some(x * twin_max);
    if twin_max.is_finite() && twin_max > 0.0 {
        let quota = (0.9 * twin_max).max(1.0) as u64;
        let burst = (0.1 * twin_max).max(1.0) as u64;
        if open {
            println!(
                "== phase 2: open loop at 0.5×, 0.8× and 3× the twin's {twin_max:.0} req/s (per-client quota {quota}/s)"
            );
        } else {
            println!(
                "== phase 2 (wrk): bytes per request at {CLOSED_CONNECTIONS} connections, overload at {OVERLOAD_CONNECTIONS} (per-client quota {quota}/s)"
            );
        }
        let args = [
            "--client-rps".to_owned(),
            quota.to_string(),
            "--client-burst".to_owned(),
            burst.to_string(),
        ];
        for r in 0..cfg.rounds {
            for v in order(r) {
                let svc = start(&bin, VARIANTS[v], &args, &env)?;
                let s = &mut samples[v][r];
                generate(
                    generator,
                    &svc,
                    cfg.warmup,
                    at(0.5),
                    if open {
                        OPEN_CONNECTIONS
                    } else {
                        CLOSED_CONNECTIONS
                    },
                    &dir,
                )?;
                svc.admin_post("/admin/alloc-counting", "on")?;
                let before = svc.stats()?;
                let (half, u1) = measured(
                    generator,
                    &svc,
                    cfg.seconds,
                    at(0.5),
                    if open {
                        OPEN_CONNECTIONS
                    } else {
                        CLOSED_CONNECTIONS
                    },
                    &dir,
                )?;
                let after = svc.stats()?;
                svc.admin_post("/admin/alloc-counting", "off")?;
                let answered =
                    num(&after, "/answered/total").saturating_sub(num(&before, "/answered/total"));
                let bytes =
                    num(&after, "/alloc_bytes").saturating_sub(num(&before, "/alloc_bytes"));
                s.bytes_per_req = (answered > 0).then(|| bytes as f64 / answered as f64);
                let (eight, u2) = if open {
                    measured(
                        generator,
                        &svc,
                        cfg.seconds,
                        at(0.8),
                        OPEN_CONNECTIONS,
                        &dir,
                    )?
                } else {
                    (Run::default(), 0)
                };
                svc.admin_post("/admin/reset-peak", "")?;
                let (over, u3) = measured(
                    generator,
                    &svc,
                    cfg.seconds,
                    at(3.0),
                    OVERLOAD_CONNECTIONS,
                    &dir,
                )?;
                s.peak_tasks_over = num(&svc.stats()?, "/peak_alive_tasks");
                s.unmatched += u1 + u2 + u3;
                println!(
                    "   round {} {:<5} 0.8×: p99 {:.2} ms  3×: shed {} of {}, admitted p99 {:.2} ms, peak tasks {}  {:.0} B/req",
                    r + 1,
                    VARIANTS[v],
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

    let mut table = render(&samples, &cfg, twin_max, generator);
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
                "\n![Latency percentiles of kit, twin and naive at 0.8×R, corrected for coordinated omission]({PLOT})"
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
    // The harness fails only on what must hold on any machine: every request answered, nothing left alive.
    let unmatched: i64 = samples.iter().flatten().map(|s| s.unmatched.abs()).sum();
    let alive: u64 = samples.iter().flatten().map(|s| s.alive_after).sum();
    if unmatched != 0 || alive != 0 {
        println!(
            "FAILED: {unmatched} requests unaccounted for, {alive} tasks alive after shutdown"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Whether `program` is on the PATH (wrk has no `--version` that exits 0).
fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Round `r` runs the variants in rotated order, so drift on the machine does not always hit the same one.
fn order(r: usize) -> Vec<usize> {
    (0..VARIANTS.len())
        .map(|i| (i + r) % VARIANTS.len())
        .collect()
}

fn start(
    bin: &Path,
    variant: &str,
    extra: &[String],
    env: &[(String, String)],
) -> Result<Service, String> {
    let mut args = vec!["--variant".to_owned(), variant.to_owned()];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
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
    Service::start(bin, &args, &env)
}

fn finish(svc: Service, s: &mut Sample) -> Result<(), String> {
    let report = svc.stop()?;
    s.alive_after = num(&report, "/alive_tasks_after_shutdown");
    s.dropped_spans = report.get("dropped_spans").and_then(Value::as_u64);
    Ok(())
}

/// A run whose answers are compared with the server's own count; returns the run and generator − server answers.
fn measured(
    g: Generator,
    svc: &Service,
    secs: u64,
    rate: Option<f64>,
    conns: usize,
    dir: &Path,
) -> Result<(Run, i64), String> {
    let before = num(&svc.stats()?, "/answered/total");
    let run = generate(g, svc, secs, rate, conns, dir)?;
    let after = num(&svc.stats()?, "/answered/total");
    let server = after.saturating_sub(before) as i64;
    let mut unmatched = run.answers as i64 - server;
    // wrk stops at its deadline without waiting for the requests in flight (at most one per connection) and does
    // not count them, though the server answers them; oha (`-w`) waits, so its count must match exactly.
    if g == Generator::Wrk && (0..=conns as i64).contains(&-unmatched) {
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

fn generate(
    g: Generator,
    svc: &Service,
    secs: u64,
    rate: Option<f64>,
    conns: usize,
    dir: &Path,
) -> Result<Run, String> {
    let url = format!("http://{}{PATH}", svc.addr);
    match g {
        Generator::Oha => {
            let out = dir.join("oha.json");
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
                cmd.args(["-q", &format!("{q:.0}"), "--latency-correction"]);
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
                    "2",
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

/// Ratio of medians kit/other for `f`.
fn ratio(samples: &[Vec<Sample>], other: usize, f: impl Fn(&Sample) -> Option<f64> + Copy) -> f64 {
    let m = |i: usize| median(&samples[i].iter().filter_map(f).collect::<Vec<_>>());
    m(0) / m(other)
}

fn render(samples: &[Vec<Sample>], cfg: &Cfg, twin_max: f64, g: Generator) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Command: `cargo xtask load{}` ({} rounds, {} s per phase, generator {}; server and generator share the \
         machine's 2 cores). Each cell: median (min–max) over the rounds. Reference rate R = the twin's closed-loop \
         median, {twin_max:.0} req/s.\n",
        if cfg.quick { " --quick" } else { "" },
        cfg.rounds,
        cfg.seconds,
        if g == Generator::Oha {
            "oha (open loop with latency correction)"
        } else {
            "wrk (closed loop only)"
        },
    );
    let _ = writeln!(
        t,
        "| measure | kit (otlp-kit, all telemetry on) | twin (no otlp-kit, no metrics) | naive (twin + per-call metrics) |"
    );
    let _ = writeln!(t, "|---|---|---|---|");
    type F = fn(&Sample) -> Option<f64>;
    let rows: [(&str, F, usize); 13] = [
        (
            "closed loop, req/s",
            |s| s.closed.as_ref().map(|r| r.rps),
            0,
        ),
        (
            "0.5×R P50 ms",
            |s| s.half.as_ref().map(|r| r.p("p50") * 1e3),
            2,
        ),
        (
            "0.5×R P99 ms",
            |s| s.half.as_ref().map(|r| r.p("p99") * 1e3),
            2,
        ),
        (
            "0.8×R P50 ms",
            |s| s.eight.as_ref().map(|r| r.p("p50") * 1e3),
            2,
        ),
        (
            "0.8×R P99 ms",
            |s| s.eight.as_ref().map(|r| r.p("p99") * 1e3),
            2,
        ),
        (
            "0.8×R P99.9 ms",
            |s| s.eight.as_ref().map(|r| r.p("p99.9") * 1e3),
            2,
        ),
        (
            "3×R shed (429/503) %",
            |s| {
                s.over
                    .as_ref()
                    .map(|r| 100.0 * r.shed as f64 / r.answers.max(1) as f64)
            },
            1,
        ),
        (
            "3×R admitted P99 ms",
            |s| s.over.as_ref().map(|r| r.p_ok("p99") * 1e3),
            2,
        ),
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
        ("start to first 200, ms", |s| Some(s.first_200_ms), 1),
        ("VmRSS after closed loop, MiB", |s| Some(s.rss_mib), 1),
        (
            "alive tasks after shutdown",
            |s| Some(s.alive_after as f64),
            0,
        ),
    ];
    for (name, f, d) in rows {
        let _ = writeln!(
            t,
            "| {name} | {} | {} | {} |",
            spread(&samples[0], f, d),
            spread(&samples[1], f, d),
            spread(&samples[2], f, d)
        );
    }
    let unmatched: Vec<String> = samples
        .iter()
        .map(|v| v.iter().map(|s| s.unmatched).sum::<i64>().to_string())
        .collect();
    let _ = writeln!(
        t,
        "| answers unaccounted for (generator − server) | {} | {} | {} |",
        unmatched[0], unmatched[1], unmatched[2]
    );
    let dropped = samples[0]
        .iter()
        .filter_map(|s| s.dropped_spans)
        .sum::<u64>();
    let _ = writeln!(
        t,
        "| spans dropped (export queue full), all runs | {dropped} | - | {} |",
        samples[2]
            .iter()
            .filter_map(|s| s.dropped_spans)
            .sum::<u64>()
    );

    let closed: F = |s| s.closed.as_ref().map(|r| r.rps);
    let bytes: F = |s| s.bytes_per_req;
    let p99_8: F = |s| s.eight.as_ref().map(|r| r.p("p99") * 1e3);
    let p99_unloaded: F = |s| s.half.as_ref().map(|r| r.p("p99") * 1e3);
    let p99_over: F = |s| s.over.as_ref().map(|r| r.p_ok("p99") * 1e3);
    let first: F = |s| Some(s.first_200_ms);
    let rss: F = |s| Some(s.rss_mib);
    let m = |f: F| median(&samples[0].iter().filter_map(f).collect::<Vec<_>>());
    let goal = |ok: bool| if ok { "yes" } else { "no" };
    let _ = writeln!(t, "\n| goal (kit) | measured | met? |\n|---|---|---|");
    let r_twin = ratio(samples, 1, closed);
    let r_naive = ratio(samples, 2, closed);
    let r_bytes = ratio(samples, 1, bytes);
    let _ = writeln!(
        t,
        "| throughput ≥ 0.9× twin | {r_twin:.2}× | {} |",
        goal(r_twin >= 0.9)
    );
    let _ = writeln!(
        t,
        "| throughput ≥ 1.0× naive | {r_naive:.2}× | {} |",
        goal(r_naive >= 1.0)
    );
    let _ = writeln!(
        t,
        "| bytes/request ≤ 0.25× twin | {r_bytes:.2}× | {} |",
        goal(r_bytes <= 0.25)
    );
    let _ = writeln!(
        t,
        "| P99 ≤ 4 ms at 0.8×R | {:.2} ms | {} |",
        m(p99_8),
        goal(m(p99_8) <= 4.0)
    );
    let _ = writeln!(
        t,
        "| 3×R admitted P99 ≤ 4× unloaded (0.5×R) P99 | {:.2} ms vs {:.2} ms | {} |",
        m(p99_over),
        4.0 * m(p99_unloaded),
        goal(m(p99_over) <= 4.0 * m(p99_unloaded))
    );
    let _ = writeln!(
        t,
        "| start to first 200 ≤ 20 ms | {:.1} ms | {} |",
        m(first),
        goal(m(first) <= 20.0)
    );
    let _ = writeln!(
        t,
        "| VmRSS ≤ 15 MB | {:.1} MiB | {} |",
        m(rss),
        goal(m(rss) * 1.048_576 <= 15.0)
    );
    let alive: u64 = samples[0].iter().map(|s| s.alive_after).sum();
    let _ = writeln!(
        t,
        "| 0 alive tasks after shutdown | {alive} | {} |",
        goal(alive == 0)
    );
    let _ = writeln!(
        t,
        "| 0 requests unanswered | {} | {} |",
        unmatched[0],
        goal(unmatched[0] == "0")
    );
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
                            .filter_map(|s| s.eight.as_ref().map(|r| r.p(k) * 1e3))
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
    let colors = [RED, BLUE, GREEN];
    for (i, (name, ys)) in VARIANTS.iter().zip(&series).enumerate() {
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
            .label(*name)
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
