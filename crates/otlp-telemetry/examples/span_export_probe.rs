//! Sampled requests through `init`'s batch span processor to a real collector, at a set rate: how many spans are
//! dropped for the queue and batch sizes of the environment, and at what memory cost. The figures behind the
//! batch processor's defaults (docs/benchmarks.md, "Tracing").
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_BSP_MAX_QUEUE_SIZE=8192 \
//!     cargo run --release -p otlp-telemetry --example span_export_probe -- <requests per second> <seconds> [threads]
//! ```
//!
//! A request is a server span with 5 attributes and 3 child spans (as in `benches/benches/telemetry.rs`), every
//! one sampled. Each thread paces itself to its share of the rate in 1 ms steps. Prints one line: the settings,
//! spans produced, spans dropped, the process CPU time, and the peak resident set size (`VmHWM`).

use std::time::{Duration, Instant};

use otlp_telemetry::{TelemetryConfig, TraceSampler};

fn request(path: &str) {
    let root = tracing::info_span!(
        "HTTP request",
        otel.name = "GET",
        otel.kind = "server",
        http.request.method = "GET",
        url.path = %path,
        http.route = "/orders/{id}",
        server.address = "shop.example",
        http.response.status_code = tracing::field::Empty,
    );
    let _entered = root.enter();
    for i in 0..3u64 {
        let child = tracing::info_span!("step", step = i);
        let _child = child.enter();
    }
    root.record("http.response.status_code", 200u16);
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rate: u64 = args.first().map_or(Ok(20_000), |a| a.parse())?;
    let seconds: u64 = args.get(1).map_or(Ok(3), |a| a.parse())?;
    let threads: u64 = args.get(2).map_or(Ok(1), |a| a.parse())?;
    let mut guard = otlp_telemetry::init(
        TelemetryConfig::from_env()?
            .service_name("span-export-probe")
            .metrics(false)
            .fmt_output(false)
            .trace_sampler(TraceSampler::ParentBasedAlwaysOn),
    )?;
    let rss_before = status("VmRSS:");
    let per_ms = (rate / threads / 1000).max(1);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut produced = 0u64;
                let mut next = Instant::now();
                while next < end {
                    for _ in 0..per_ms {
                        request("/orders/7");
                    }
                    produced += per_ms;
                    next += Duration::from_millis(1);
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                produced
            })
        })
        .collect();
    let requests: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    let elapsed = start.elapsed();
    let peak = status("VmHWM:");
    let _ = guard.shutdown();
    let spans = requests * 4;
    let dropped = guard.dropped_spans();
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
            Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) * 10)
        });
    println!(
        "queue={} batch={} delay_ms={} rate={} req/s achieved={:.0} req/s spans={spans} dropped={} ({:.1} %) \
         cpu_ms={} rss_before={rss_before} peak_rss={peak}",
        std::env::var("OTEL_BSP_MAX_QUEUE_SIZE").unwrap_or_else(|_| "default".into()),
        std::env::var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").unwrap_or_else(|_| "default".into()),
        std::env::var("OTEL_BSP_SCHEDULE_DELAY").unwrap_or_else(|_| "default".into()),
        rate,
        requests as f64 / elapsed.as_secs_f64(),
        dropped.map_or("?".into(), |d| d.to_string()),
        dropped.map_or(f64::NAN, |d| 100.0 * d as f64 / spans as f64),
        cpu.map_or("?".into(), |c| c.to_string()),
    );
    Ok(())
}
