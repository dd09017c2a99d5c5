//! The dashboard against real parts: a real Prometheus (Debian's `prometheus` package; `.ci/run` installs it)
//! scrapes the demo service's scrape endpoint every second while a short load runs; then every panel query of
//! docs/dashboards/otlp-kit.json, its template variables filled in, is evaluated through Prometheus's HTTP API,
//! and each must return a series with a finite value. The scrapes behind the rate-limiter panel's request rate
//! agree with the rate the load generator measured between them (within 10 %), the panel shows their increase
//! extrapolated over no more than its window, and the decisions counter equals the requests sent and the service's
//! own count.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otlp_testkit::{Prometheus, values};
use serde_json::Value;
use support::{Service, request};

/// The job name Prometheus gives the demo's series (`$job`).
const JOB: &str = "otlp-demo";
/// `$__rate_interval` for a 1 s scrape interval (Grafana's rule: four scrape intervals, plus one).
const RATE_INTERVAL: &str = "5s";

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
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path(), JOB, scrape)
        .expect("prometheus runs (apt-get install -y prometheus; .ci/run installs it)");

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

    // The rate-limiter panel's request rate against the load generator's. Prometheus computes it from the scrapes
    // inside the window: the increase between the first and the last, over the time between them, extrapolated
    // towards the window's edges. Scrapes on a loaded machine come late or not at all, and the load's rate varies
    // over the window, so the generator's rate is taken over the same scrapes' interval, and the panel's value is
    // checked to be that increase extrapolated over no more than the window.
    let (title, expr) = queries
        .iter()
        .find(|(t, _)| t.starts_with("Allowed and throttled"))
        .expect("the rate-limiter panel");
    let at = end - 1.0;
    let shown: f64 = values(&prometheus.query(&format!("sum({expr})"), Some(at)).unwrap())
        .iter()
        .sum();
    let window: f64 = RATE_INTERVAL.trim_end_matches('s').parse().unwrap();
    let samples = prometheus
        .query(
            &format!(
                "rate_limiter_decisions_total{{job=\"{JOB}\", rate_limiter_name=\"demo.clients\", \
                 outcome=~\"allowed|throttled\"}}[{RATE_INTERVAL}]"
            ),
            Some(at),
        )
        .unwrap();
    let series: Vec<Vec<(f64, f64)>> = samples
        .iter()
        .map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap(),
                        p[1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    let first = series.iter().map(|s| s[0].0).fold(f64::INFINITY, f64::min);
    let last = series.iter().map(|s| s[s.len() - 1].0).fold(0.0, f64::max);
    // A series that appears inside the window (its first decision of that outcome) was 0 before.
    let increase: f64 = series
        .iter()
        .map(|s| s[s.len() - 1].1 - if s[0].0 > first { 0.0 } else { s[0].1 })
        .sum();
    let span = last - first;
    assert!(span >= 1.0, "{title}: scrapes {samples:?}");
    let scraped = increase / span;
    let measured = orders.iter().filter(|t| **t > first && **t <= last).count() as f64 / span;
    eprintln!(
        "{title}: scrapes {first:.3}..{last:.3}: {scraped:.1}/s; load generator {measured:.1}/s; panel {shown:.1}/s"
    );
    assert!(
        (scraped - measured).abs() <= 0.1 * measured,
        "{title}: the scrapes at {first:.3}..{last:.3} show {scraped:.1}/s, the load generator measured \
         {measured:.1}/s"
    );
    assert!(
        shown >= increase / window * 0.999 && shown <= scraped * 1.001,
        "{title}: Prometheus shows {shown:.1}/s for an increase of {increase} over {span:.3} s of a {window} s window"
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
