//! Command-line flags (`otlp-demo --help`).

use std::net::SocketAddr;
use std::time::Duration;

/// Which implementation serves the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Every part through the otlp-kit facade, telemetry on.
    Kit,
    /// The same routes written the usual way, with none of otlp-kit and no metrics.
    Twin,
    /// The twin plus the usual instrumentation: a counter and a histogram per request, attributes built per call.
    Naive,
    /// The floor under every variant: the same routes answering a fixed body at once, no state, no telemetry
    /// (what hyper and axum cost by themselves).
    Bare,
}

impl Variant {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Kit => "kit",
            Variant::Twin => "twin",
            Variant::Naive => "naive",
            Variant::Bare => "bare",
        }
    }
}

/// The service's configuration.
#[derive(Debug, Clone)]
pub struct Args {
    /// `--variant kit|twin|naive|bare` (default `kit`).
    pub variant: Variant,
    /// `--addr` (default `127.0.0.1:8080`; port 0 picks a free one, printed on the `listening` line).
    pub addr: SocketAddr,
    /// `--downstream-latency-ms`: the simulated downstream's latency (default 1).
    pub downstream_latency: Duration,
    /// `--downstream-permits`: at most this many downstream calls at once (default 64).
    pub downstream_permits: usize,
    /// `--queue-timeout-ms`: longest wait for a downstream permit before answering 503 (default 50).
    pub queue_timeout: Duration,
    /// `--client-rps`: each client's sustained rate (`x-client-id`), beyond which it gets 429 (default 1000).
    pub client_rps: u64,
    /// `--client-burst`: each client's burst (default = `client-rps`).
    pub client_burst: Option<u64>,
    /// `--workers`: worker-pool workers for audit events (default 2).
    pub workers: usize,
    /// `--audit-queue`: worker-pool queue capacity (default 1024); a full queue drops the audit event (counted).
    pub audit_queue: usize,
    /// `--shutdown-deadline-ms`: how long the worker pool may drain on shutdown (default 2000).
    pub shutdown_deadline: Duration,
    /// `--count-allocs`: count allocations from the start (needs the `count-alloc` feature).
    pub count_allocs: bool,
    /// `--runtime-threads`: tokio worker threads (default: tokio's, one per core).
    pub runtime_threads: Option<usize>,
    /// `--prometheus HOST:PORT`: also serve the metrics for a Prometheus scrape there (kit and naive variants).
    pub prometheus: Option<SocketAddr>,
}

const HELP: &str = "\
otlp-demo: an HTTP service on otlp-kit, its twin without otlp-kit, and a naive-instrumented variant

USAGE: otlp-demo [FLAGS]

  --variant kit|twin|naive|bare  which implementation serves the routes (default kit; bare answers a
                               fixed body at once: the floor of hyper and axum)
  --addr HOST:PORT             where to listen (default 127.0.0.1:8080; port 0 = any free port)
  --downstream-latency-ms N    latency of the simulated downstream (default 1)
  --downstream-permits N       downstream calls at once (default 64)
  --queue-timeout-ms N         longest wait for a downstream permit before 503 (default 50)
  --client-rps N               requests per second per x-client-id before 429 (default 1000)
  --client-burst N             burst per client (default = client-rps)
  --workers N                  audit worker-pool workers (default 2)
  --audit-queue N              audit queue capacity (default 1024)
  --shutdown-deadline-ms N     worker-pool drain deadline on SIGINT/SIGTERM (default 2000)
  --runtime-threads N          tokio worker threads (default: one per core)
  --prometheus HOST:PORT       also serve metrics for a Prometheus scrape at http://HOST:PORT/metrics
                               (port 0 = any free port, printed on a `prometheus` line)
  --count-allocs               count allocated bytes (build with --features count-alloc)

Routes: GET /api/orders/{id}, POST /api/ingest, GET /admin/stats, POST /admin/reset-peak,\nPOST /admin/alloc-counting (body on|off).
Telemetry (kit and naive) comes from the OTEL_* variables; OTEL_SDK_DISABLED=true turns it off.
";

impl Args {
    /// Parses `std::env::args`; `Err` carries the message to print (help included for `--help`).
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            variant: Variant::Kit,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            downstream_latency: Duration::from_millis(1),
            downstream_permits: 64,
            queue_timeout: Duration::from_millis(50),
            client_rps: 1000,
            client_burst: None,
            workers: 2,
            audit_queue: 1024,
            shutdown_deadline: Duration::from_millis(2000),
            count_allocs: false,
            runtime_threads: None,
            prometheus: None,
        };
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Err(HELP.to_owned());
            }
            if flag == "--count-allocs" {
                a.count_allocs = true;
                continue;
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value; see --help"))?;
            let num = |v: &str| -> Result<u64, String> {
                v.parse::<u64>()
                    .map_err(|e| format!("{flag} {v:?}: not a whole number ({e}); see --help"))
            };
            let positive = |v: &str| -> Result<u64, String> {
                match num(v)? {
                    0 => Err(format!("{flag} must be at least 1; see --help")),
                    n => Ok(n),
                }
            };
            match flag.as_str() {
                "--variant" => {
                    a.variant = match value.as_str() {
                        "kit" => Variant::Kit,
                        "twin" => Variant::Twin,
                        "naive" => Variant::Naive,
                        "bare" => Variant::Bare,
                        v => {
                            return Err(format!(
                                "--variant {v:?}: expected kit, twin, naive or bare"
                            ));
                        }
                    }
                }
                "--addr" => {
                    a.addr = value
                        .parse()
                        .map_err(|e| format!("--addr {value:?}: not HOST:PORT ({e})"))?
                }
                "--downstream-latency-ms" => {
                    a.downstream_latency = Duration::from_millis(num(&value)?)
                }
                "--downstream-permits" => a.downstream_permits = positive(&value)? as usize,
                "--queue-timeout-ms" => a.queue_timeout = Duration::from_millis(num(&value)?),
                "--client-rps" => a.client_rps = positive(&value)?,
                "--client-burst" => a.client_burst = Some(positive(&value)?),
                "--workers" => a.workers = positive(&value)? as usize,
                "--audit-queue" => a.audit_queue = positive(&value)? as usize,
                "--shutdown-deadline-ms" => {
                    a.shutdown_deadline = Duration::from_millis(num(&value)?)
                }
                "--runtime-threads" => a.runtime_threads = Some(positive(&value)? as usize),
                "--prometheus" => {
                    a.prometheus = Some(
                        value
                            .parse()
                            .map_err(|e| format!("--prometheus {value:?}: not HOST:PORT ({e})"))?,
                    )
                }
                other => return Err(format!("unknown flag {other:?}; see --help")),
            }
        }
        if a.count_allocs && !cfg!(feature = "count-alloc") {
            return Err("--count-allocs needs a build with `--features count-alloc`".to_owned());
        }
        Ok(a)
    }

    /// The per-client burst.
    pub fn burst(&self) -> u64 {
        self.client_burst.unwrap_or(self.client_rps)
    }
}
