//! The dashboard against real parts: a real Prometheus (Debian's `prometheus` package; `.ci/run` installs it)
//! scrapes the demo service's scrape endpoint every second while a short load runs; then every panel query of
//! docs/dashboards/otlp-kit.json, its template variables filled in, is evaluated through Prometheus's HTTP API,
//! and each must return a series with a finite value. The request rate the rate-limiter panel shows agrees with
//! the rate the load generator measured (within 10 %), and the decisions counter equals the requests sent and the
//! service's own count.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Service, request};

/// The job name Prometheus gives the demo's series (`$job`).
const JOB: &str = "otlp-demo";
/// `$__rate_interval` for a 1 s scrape interval (Grafana's rule: four scrape intervals, plus one).
const RATE_INTERVAL: &str = "5s";

/// A Prometheus of our own on a free loopback port, killed by PID on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {JOB}\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prometheus runs (apt-get install -y prometheus; .ci/run installs it)");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = prometheus.query("up", None).ok();
            if up.is_some_and(|r| values(&r).contains(&1.0)) {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never scraped {target}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET /api/v1/query`: the result vector (each element `{"metric": .., "value": [t, "v"]}`).
    fn query(&self, promql: &str, at: Option<f64>) -> Result<Vec<Value>, String> {
        let mut path = format!("/api/v1/query?query={}", encode(promql));
        if let Some(t) = at {
            path.push_str(&format!("&time={t:.3}"));
        }
        let mut s = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            self.addr
        )
        .map_err(|e| e.to_string())?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // Prometheus answers with chunked encoding at times: the JSON is the part between the outer braces.
        let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
        let v: Value = serde_json::from_str(json).map_err(|e| format!("{e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{promql}: {v}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding for a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The sample values of a result vector.
fn values(result: &[Value]) -> Vec<f64> {
    result
        .iter()
        .filter_map(|r| r["value"][1].as_str()?.parse().ok())
        .collect()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The panel queries of the committed dashboard, with the template variables filled in.
fn panel_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/dashboards/otlp-kit.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect(path)).unwrap();
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(variables.contains(&"job".to_owned()), "{variables:?}");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", RATE_INTERVAL);
            for v in &variables {
                let value = if v == "job" { JOB } else { ".*" };
                expr = expr.replace(&format!("${v}"), value);
            }
            assert!(!expr.contains('$'), "a variable left unfilled: {expr}");
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    assert!(out.len() >= 12, "{} panel queries", out.len());
    out
}

const INGEST: &str = "A-1,2,150\nB-2,0,300\nnot a record\n\n,1,5\nC-3,1,1000\n";

#[test]
fn every_panel_shows_data_that_agrees_with_the_service() {
    let queries = panel_queries();
    // Few downstream permits and a low per-client rate, so that acquires wait and some requests are throttled.
    let service = Service::start(
        &[
            "--prometheus",
            "127.0.0.1:0",
            "--downstream-permits",
            "2",
            "--downstream-latency-ms",
            "2",
            "--client-rps",
            "100",
        ],
        &[
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("RUST_LOG", "warn"),
        ],
    );
    let scrape = service
        .prometheus
        .expect("the demo prints its scrape endpoint");
    let prometheus = Prometheus::start(scrape);

    // The load: 4 clients for 10 s, each order request's completion time kept; every 10th request an ingest.
    let load = Duration::from_secs(10);
    let orders: Arc<Mutex<Vec<f64>>> = Arc::default();
    let start = Instant::now();
    std::thread::scope(|s| {
        for client in 0..4 {
            let (orders, addr) = (Arc::clone(&orders), service.addr);
            s.spawn(move || {
                let id = format!("client-{client}");
                let mut n = 0u64;
                while start.elapsed() < load {
                    n += 1;
                    let answer = if n.is_multiple_of(10) {
                        request(addr, "POST", "/api/ingest", &[], INGEST)
                    } else {
                        let a = request(
                            addr,
                            "GET",
                            &format!("/api/orders/{n}"),
                            &[("x-client-id", &id)],
                            "",
                        );
                        orders.lock().unwrap().push(now());
                        a
                    };
                    let answer = answer.expect("every request is answered");
                    assert!(
                        [200, 429, 503].contains(&answer.status),
                        "{}: {}",
                        answer.status,
                        answer.body
                    );
                }
            });
        }
    });
    let end = now();
    let orders = orders.lock().unwrap().clone();

    // Two scrapes after the last request, so the counters' last values are in.
    std::thread::sleep(Duration::from_millis(2500));
    let decisions = values(
        &prometheus
            .query(
                &format!("sum(rate_limiter_decisions_total{{job=\"{JOB}\", rate_limiter_name=\"demo.clients\"}})"),
                None,
            )
            .unwrap(),
    );
    assert_eq!(
        decisions,
        vec![orders.len() as f64],
        "every order request is one rate-limiter decision"
    );

    let mut empty = Vec::new();
    for (title, expr) in &queries {
        // At the end of the load, so that the rate windows cover it.
        let result = prometheus.query(expr, Some(end)).unwrap();
        if !values(&result).iter().any(|v| v.is_finite()) {
            empty.push(format!("{title}: {expr} -> {result:?}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );

    // The rate-limiter panel's request rate against the load generator's, over the same window.
    let (title, expr) = queries
        .iter()
        .find(|(t, _)| t.starts_with("Allowed and throttled"))
        .expect("the rate-limiter panel");
    let at = end - 1.0;
    let shown: f64 = values(&prometheus.query(&format!("sum({expr})"), Some(at)).unwrap())
        .iter()
        .sum();
    let window: f64 = RATE_INTERVAL.trim_end_matches('s').parse().unwrap();
    let measured = orders
        .iter()
        .filter(|t| **t > at - window && **t <= at)
        .count() as f64
        / window;
    assert!(
        (shown - measured).abs() <= 0.1 * measured,
        "{title}: Prometheus shows {shown:.1}/s, the load generator measured {measured:.1}/s"
    );

    // And the service's own counters (its owners' `stats()`) say the same.
    let report = service.stop();
    let own = &report["owners"]["rate_limiter"];
    assert_eq!(
        own["allowed"].as_u64().unwrap() + own["throttled"].as_u64().unwrap(),
        orders.len() as u64,
        "{report}"
    );
    assert_eq!(report["alive_tasks_after_shutdown"], 0, "{report}");
}
