//! `cargo xtask demo [--seconds N]`: see it work. Builds and starts the demo service on 127.0.0.1, sends it
//! traffic for a few seconds (well-behaved clients, one noisy client over its quota, some ingest batches), prints a
//! line a second read from the owners' `stats()`, then stops it with SIGTERM and shows what the shutdown did.
//! Telemetry goes to `OTEL_EXPORTER_OTLP_ENDPOINT` when set, else to a rotel collector started here when rotel is
//! installed (with a summary of what it received), else nowhere (one line says so).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::service::{self, Client, Rotel, Service, num};
use crate::workspace;

const INGEST: &str = "A-1,2,150\nB-2,1,990\nC-3,0,100\nnot a record\nD-4,5,20\n";

pub fn run(args: &[String]) -> Result<bool, String> {
    let mut seconds = 5u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|s| *s > 0)
                    .ok_or("--seconds needs a whole number of seconds, at least 1")?;
            }
            other => {
                return Err(format!(
                    "demo: unknown argument {other:?} (try --seconds N)"
                ));
            }
        }
    }
    let root = workspace::root();
    println!("== building the demo service");
    let bin = service::build(&root)?;

    // Telemetry: the user's collector, else rotel, else off.
    let dir = service::scratch(&root, "demo")?;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut rotel = None;
    if let Ok(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        println!("== telemetry: to {endpoint} (OTEL_EXPORTER_OTLP_ENDPOINT)");
    } else if let Some(agent) = service::rotel_agent() {
        let r = Rotel::start(&agent, &dir)?;
        println!(
            "== telemetry: to a rotel collector started on 127.0.0.1:{} (1% of traces sampled; stopped at the end)",
            r.grpc_port
        );
        env.push((
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{}", r.grpc_port),
        ));
        env.push(("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()));
        env.push(("OTEL_METRIC_EXPORT_INTERVAL".into(), "1000".into()));
        if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
            env.push((
                "OTEL_TRACES_SAMPLER".into(),
                "parentbased_traceidratio".into(),
            ));
            env.push(("OTEL_TRACES_SAMPLER_ARG".into(), "0.01".into()));
        }
        rotel = Some(r);
    } else {
        println!(
            "== telemetry: off (no OTEL_EXPORTER_OTLP_ENDPOINT and no rotel: `pip install rotel` to see it exported)"
        );
        env.push(("OTEL_SDK_DISABLED".into(), "true".into()));
    }

    let svc_args: Vec<String> = ["--client-rps", "100", "--client-burst", "20"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let svc = Service::start(&bin, &svc_args, &env)?;
    let first = svc
        .time_to_first_200("/api/orders/1")
        .ok_or("the service never answered 200")?;
    println!(
        "== otlp-demo listening on http://{} (first 200 after {:.1} ms); {seconds} s of traffic",
        svc.addr,
        first.as_secs_f64() * 1e3
    );

    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let sent = Arc::new(AtomicU64::new(1)); // the first-200 probe
    // Four well-behaved senders (64 clients, 25 requests/s each), one noisy client at 400/s over its 100/s quota.
    let senders: Vec<_> = (0..5)
        .map(|t| {
            let (stop, latencies, sent, addr) =
                (stop.clone(), latencies.clone(), sent.clone(), svc.addr);
            std::thread::spawn(move || sender(t, addr, &stop, &latencies, &sent))
        })
        .collect();

    let mut prev = svc.stats()?;
    let start = Instant::now();
    for s in 1..=seconds {
        let next = start + Duration::from_secs(s);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = svc.stats()?;
        let mut lat = std::mem::take(&mut *latencies.lock().map_err(|_| "poisoned")?);
        println!("{}", line(s, &prev, &now, &mut lat));
        prev = now;
    }
    stop.store(true, Ordering::Relaxed);
    let mut errors = 0;
    for s in senders {
        errors += s.join().unwrap_or(1);
    }
    let sent = sent.load(Ordering::Relaxed);

    println!(
        "== SIGTERM: stop accepting, finish in-flight requests, drain the worker pool, flush telemetry"
    );
    let report = svc.stop()?;
    let answered = num(&report, "/answered/total");
    let alive = num(&report, "/alive_tasks_after_shutdown");
    println!(
        "   answered {answered} of {sent} requests sent ({errors} client errors); {alive} tokio tasks alive after \
         shutdown; worker pool: {} audit events completed, {} rejected when full, {} cancelled at the deadline; \
         telemetry shutdown: {}",
        num(&report, "/owners/worker_pool/completed"),
        num(&report, "/owners/worker_pool/rejected"),
        num(&report, "/owners/worker_pool/cancelled"),
        report
            .get("telemetry_shutdown")
            .and_then(Value::as_str)
            .unwrap_or("off"),
    );
    if let Some(rotel) = rotel {
        summarize(&rotel);
    }
    Ok(answered == sent && alive == 0 && errors == 0)
}

/// One sender thread: paced requests on one keep-alive connection; returns its count of failed requests.
fn sender(
    t: usize,
    addr: std::net::SocketAddr,
    stop: &AtomicBool,
    lat: &Mutex<Vec<u32>>,
    sent: &AtomicU64,
) -> u64 {
    let noisy = t == 4;
    let interval = Duration::from_micros(if noisy { 2500 } else { 625 });
    let mut client = None;
    let (mut i, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let due = start + interval * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        i += 1;
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(addr) {
                Ok(c) => client.insert(c),
                Err(_) => {
                    errors += 1;
                    continue;
                }
            },
        };
        let id = (t as u64) * 1_000_000 + i;
        let client_id = if noisy {
            "noisy".to_owned()
        } else {
            format!("client-{}", (id % 16) + 16 * t as u64)
        };
        let began = Instant::now();
        sent.fetch_add(1, Ordering::Relaxed);
        let r = if !noisy && i % 20 == 0 {
            c.request(
                "POST",
                "/api/ingest",
                &[("x-client-id", &client_id)],
                INGEST,
            )
        } else {
            c.request(
                "GET",
                &format!("/api/orders/{id}"),
                &[("x-client-id", &client_id)],
                "",
            )
        };
        match r {
            Ok(_) => {
                if let Ok(mut l) = lat.lock() {
                    l.push(began.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
            }
            Err(_) => {
                errors += 1;
                client = None;
            }
        }
    }
    errors
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1e3
}

/// One line of the console view, from two `/admin/stats` snapshots a second apart.
fn line(s: u64, prev: &Value, now: &Value, lat: &mut [u32]) -> String {
    lat.sort_unstable();
    let d = |p: &str| num(now, p).saturating_sub(num(prev, p));
    let gets = d("/owners/buffer_pool/gets");
    let reuse = if gets == 0 {
        0.0
    } else {
        100.0 * d("/owners/buffer_pool/reuses") as f64 / gets as f64
    };
    let decisions = d("/owners/rate_limiter/allowed") + d("/owners/rate_limiter/throttled");
    let throttled = if decisions == 0 {
        0.0
    } else {
        100.0 * d("/owners/rate_limiter/throttled") as f64 / decisions as f64
    };
    format!(
        "  {s:>2}s {:>6} req/s  p50 {:>5.2} ms  p99 {:>5.2} ms  buffer reuse {reuse:>5.1}%  permits {} in use, {} \
         waiting  audit queue {} ({} workers)  throttled {throttled:>4.1}%",
        d("/answered/total"),
        pct(lat, 0.50),
        pct(lat, 0.99),
        num(now, "/owners/semaphore/in_use"),
        num(now, "/owners/semaphore/waiting"),
        num(now, "/owners/worker_pool/queued"),
        num(now, "/owners/worker_pool/workers"),
    )
}

/// What rotel received: spans, traces, and the metric names with their data points.
fn summarize(rotel: &Rotel) {
    // The final export arrives just after the service exits; give the collector a moment to print it.
    let mut out = rotel.output();
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        let again = rotel.output();
        if again.len() == out.len() && out.contains("Metric #") {
            break;
        }
        out = again;
    }
    let spans = out
        .lines()
        .filter(|l| l.trim_start().starts_with("Span #"))
        .count();
    let mut traces: Vec<&str> = out
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("Trace ID")
                .map(|r| r.trim_start_matches([' ', ':']).trim())
        })
        .collect();
    traces.sort_unstable();
    traces.dedup();
    let mut metrics: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-> Name: "))
        .collect();
    metrics.sort_unstable();
    metrics.dedup();
    println!(
        "== rotel received {spans} spans in {} traces and {} metrics: {}",
        traces.len(),
        metrics.len(),
        metrics.join(", ")
    );
    println!("   (its full output: {})", rotel.out.display());
}
