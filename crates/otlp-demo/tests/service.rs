//! The service as a process: started on an ephemeral 127.0.0.1 port, spoken to over plain HTTP/1.1, stopped with
//! SIGTERM; with a real collector (rotel, on free loopback ports, stopped by PID) for the telemetry test.

#[path = "../../otlp-telemetry/tests/common/mod.rs"]
mod common;

mod support;

use std::sync::mpsc;
use std::time::Duration;

use support::{Service, get, request};

const INGEST: &str = "A-1,2,150\nB-2,0,300\nnot a record\n\n,1,5\nC-3,1,1000\n";

#[test]
fn every_variant_answers_both_routes_alike() {
    let mut orders = Vec::new();
    for variant in ["kit", "twin", "naive"] {
        let svc = Service::start(&["--variant", variant], &[]);
        let a = get(svc.addr, "/api/orders/42", &[("x-client-id", "alice")]);
        assert_eq!(a.status, 200, "{variant}: {a:?}");
        assert_eq!(a.header("content-type"), Some("application/json"));
        let order = a.json();
        assert_eq!(order["id"], 42);
        assert_eq!(order["client"], "alice");
        let lines = order["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 3, "one line per shard");
        let total: u64 = lines
            .iter()
            .map(|l| l["qty"].as_u64().unwrap() * l["price_cents"].as_u64().unwrap())
            .sum();
        assert_eq!(order["total_cents"], total);
        orders.push(order);

        let bad = get(svc.addr, "/api/orders/forty-two", &[]);
        assert_eq!(bad.status, 400, "{variant}: {bad:?}");
        assert!(bad.body.contains("whole number"));

        let ingest = request(svc.addr, "POST", "/api/ingest", &[], INGEST).expect("POST");
        assert_eq!(ingest.status, 200, "{variant}: {ingest:?}");
        assert_eq!(
            ingest.json(),
            serde_json::json!({"records": 5, "accepted": 2, "malformed": 1, "invalid": 2, "total_cents": 1300}),
            "{variant}"
        );

        let report = svc.stop();
        assert_eq!(report["variant"], variant);
        assert_eq!(report["answered"]["total"], 3, "{variant}: {report}");
        assert_eq!(report["answered"]["ok"], 2);
        assert_eq!(report["answered"]["client_error"], 1);
        assert_eq!(
            report["alive_tasks_after_shutdown"], 0,
            "{variant}: {report}"
        );
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "the variants disagree: {orders:?}"
    );
}

#[test]
fn the_bare_floor_answers_at_once_and_counts_its_answers() {
    // `--variant bare` is the load test's floor of hyper and axum: the orders route answers a fixed body whatever
    // the id, and every answer is counted like the other variants' (the load test compares the counts).
    let svc = Service::start(&["--variant", "bare"], &[]);
    for path in ["/api/orders/42", "/api/orders/forty-two"] {
        let a = get(svc.addr, path, &[("x-client-id", "alice")]);
        assert_eq!(a.status, 200, "{path}: {a:?}");
        assert_eq!(a.json(), serde_json::json!({}));
    }
    let stats = get(svc.addr, "/admin/stats", &[]).json();
    assert_eq!(stats["variant"], "bare");
    let report = svc.stop();
    assert_eq!(report["variant"], "bare");
    assert_eq!(report["answered"]["ok"], 2, "{report}");
    assert_eq!(report["alive_tasks_after_shutdown"], 0, "{report}");
}

#[test]
fn order_bodies_go_out_of_the_pool_and_back_to_it() {
    // Each body is encoded into a pooled buffer that hyper sends without a copy; once written, the buffer is back
    // in the pool, counted once as a put.
    const ORDERS: u64 = 20;
    let svc = Service::start(&["--variant", "kit"], &[]);
    for i in 0..ORDERS {
        let client = format!("client-{i}");
        let a = get(
            svc.addr,
            &format!("/api/orders/{i}"),
            &[("x-client-id", &client)],
        );
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.json()["id"], i);
    }
    let pool = get(svc.addr, "/admin/stats", &[]).json()["owners"]["buffer_pool"].clone();
    assert_eq!(pool["gets"], ORDERS, "{pool}");
    assert_eq!(pool["puts"], ORDERS, "every body came back, once: {pool}");
    assert_eq!(pool["discards"], 0, "{pool}");
    let misses = pool["misses"].as_u64().expect("misses");
    assert!(
        misses < ORDERS / 2,
        "the bodies reuse pooled buffers: {pool}"
    );
    svc.stop();
}

#[test]
fn a_throttled_client_gets_429_with_retry_after_and_others_do_not() {
    for variant in ["kit", "twin"] {
        let svc = Service::start(
            &[
                "--variant",
                variant,
                "--client-rps",
                "1",
                "--client-burst",
                "1",
            ],
            &[],
        );
        let first = get(svc.addr, "/api/orders/1", &[("x-client-id", "noisy")]);
        assert_eq!(first.status, 200);
        let second = get(svc.addr, "/api/orders/1", &[("x-client-id", "noisy")]);
        assert_eq!(second.status, 429, "{variant}: {second:?}");
        let after: u64 = second
            .header("retry-after")
            .unwrap_or_else(|| panic!("{variant}: 429 without retry-after: {second:?}"))
            .parse()
            .expect("retry-after in whole seconds");
        assert!((1..=2).contains(&after), "{variant}: retry-after {after}");
        let other = get(svc.addr, "/api/orders/1", &[("x-client-id", "quiet")]);
        assert_eq!(
            other.status, 200,
            "{variant}: another client is not throttled"
        );
        let report = svc.stop();
        assert_eq!(report["answered"]["throttled"], 1, "{variant}: {report}");
        if variant == "kit" {
            assert_eq!(report["owners"]["rate_limiter"]["throttled"], 1, "{report}");
            assert_eq!(report["owners"]["rate_limiter"]["allowed"], 2, "{report}");
        }
    }
}

#[test]
fn sigterm_mid_load_loses_no_accepted_request() {
    let svc = Service::start(&["--downstream-latency-ms", "2"], &[]);
    let addr = svc.addr;
    let (tx, rx) = mpsc::channel::<()>();
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let client = format!("client-{c}");
                let (mut answered, mut refused) = (0u64, 0u64);
                for i in 0..100_000u64 {
                    match request(
                        addr,
                        "GET",
                        &format!("/api/orders/{i}"),
                        &[("x-client-id", &client)],
                        "",
                    ) {
                        Ok(a) => {
                            assert!(matches!(a.status, 200 | 429 | 503), "{a:?}");
                            answered += 1;
                            let _ = tx.send(());
                        }
                        // The listener is closed: the connection was never accepted, so nothing was lost.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            refused += 1;
                            break;
                        }
                        // Still in the kernel's backlog when the listener closed (reset), or accepted but closed
                        // before its request was read (no byte of an answer): the server never took the request.
                        // Whether it did is what the count comparison below checks.
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::UnexpectedEof
                            ) && !e.to_string().contains("cut short") => {}
                        Err(e) => {
                            panic!("request {i} of {client} was accepted but not answered: {e}")
                        }
                    }
                }
                (answered, refused)
            })
        })
        .collect();
    drop(tx);
    // Mid-load: after 300 answers, with 8 clients still sending.
    for _ in 0..300 {
        rx.recv().expect("answers while the clients run");
    }
    let report = svc.stop();
    let (mut answered, mut stopped) = (0, 0);
    for c in clients {
        let (a, r) = c.join().expect("client thread");
        answered += a;
        stopped += r;
    }
    assert_eq!(stopped, 8, "every client saw the listener close");
    assert_eq!(
        report["answered"]["total"], answered,
        "server and clients disagree: {report}"
    );
    assert_eq!(report["alive_tasks_after_shutdown"], 0, "{report}");
    let pool = &report["owners"]["worker_pool"];
    assert_eq!(pool["queued"], 0, "{report}");
    assert_eq!(pool["active"], 0, "{report}");
}

#[test]
fn spans_dropped_at_a_full_export_queue_are_all_counted_live() {
    // A collector that accepts connections and never answers: each export hangs until its timeout, the one-span
    // queue stays full meanwhile, and the spans of the requests sent then are dropped. What the service reports
    // at shutdown (spans ended but never handed to the exporter) must equal what was counted as it happened (the
    // count exported as otel.sdk.processor.span.processed{error.type=queue_full}).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let svc = Service::start(
        &[],
        &[
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "1"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
        ],
    );
    for id in 0..50 {
        let a = get(svc.addr, &format!("/api/orders/{id}"), &[]);
        assert_eq!(a.status, 200, "{a:?}");
    }
    let report = svc.stop();
    let dropped = report["dropped_spans"].as_u64().expect("dropped_spans");
    assert!(dropped > 0, "the full queue dropped spans: {report}");
    assert_eq!(
        report["spans_dropped_live"].as_u64(),
        Some(dropped),
        "every dropped span counted live: {report}"
    );
    drop(silent);
}

#[test]
fn spans_and_every_owners_metrics_reach_a_collector() {
    let rotel = common::Rotel::start();
    let endpoint = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let svc = Service::start(
        &[],
        &[
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "otlp-demo-test"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent_id}-01");
    let a = get(svc.addr, "/api/orders/7", &[("traceparent", &traceparent)]);
    assert_eq!(a.status, 200);
    let b = request(svc.addr, "POST", "/api/ingest", &[], INGEST).expect("POST");
    assert_eq!(b.status, 200);
    let report = svc.stop();
    assert_eq!(report["telemetry_shutdown"], "ok", "{report}");
    assert_eq!(report["dropped_spans"], 0, "{report}");

    // Each owner's metrics arrive: a metric of its kind whose data points carry its name.
    let owners = [
        (
            "rate_limiter.decisions",
            "rate_limiter.name: Str(demo.clients)",
        ),
        ("semaphore.acquires", "semaphore.name: Str(demo.downstream)"),
        ("fan_out.tasks", "fan_out.name: Str(demo.shards)"),
        ("worker_pool.tasks", "worker_pool.name: Str(demo.audit)"),
        ("pipeline.items", "pipeline.name: Str(demo.ingest)"),
        ("pool.gets", "pool.name: Str(demo.bodies)"),
    ];
    let out = rotel.wait_for(&["otlp-demo-test", trace_id], Duration::from_secs(20));
    let start = std::time::Instant::now();
    let mut out = out;
    loop {
        let missing: Vec<_> = owners
            .iter()
            .filter(|(metric, owner)| !metric_has_point(&out, metric, owner))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "owners' metrics missing: {missing:?}; rotel printed:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(50));
        out = rotel.output();
    }
    let spans = common::spans(&out);
    let server = |method: &str| {
        spans
            .iter()
            .find(|s| s.name == method && s.kind.to_ascii_lowercase().contains("server"))
            .unwrap_or_else(|| panic!("no {method} server span in {spans:?}"))
            .clone()
    };
    let order = server("GET");
    assert_eq!(
        order.trace_id, trace_id,
        "the incoming traceparent's trace: {order:?}"
    );
    assert_eq!(
        order.parent_id, parent_id,
        "the incoming span is the server span's parent: {order:?}"
    );
    assert!(
        order.attributes.iter().any(|a| a.contains("/api/orders/7")),
        "{order:?}"
    );
    let ingest = server("POST");
    assert!(
        ingest.parent_id.is_empty(),
        "no traceparent: a new root: {ingest:?}"
    );
    assert!(
        ingest.attributes.iter().any(|a| a.contains("/api/ingest")),
        "{ingest:?}"
    );
}

/// Whether some block that rotel printed for metric `name` has a data point with the attribute line `attribute`.
fn metric_has_point(out: &str, name: &str, attribute: &str) -> bool {
    let header = format!("-> Name: {name}");
    let mut rest = out;
    while let Some(at) = rest.find(&header) {
        let block = &rest[at + header.len()..];
        let (first, body) = block.split_once('\n').unwrap_or((block, ""));
        let body = &body[..body.find("Metric #").unwrap_or(body.len())];
        // The whole name, not a longer one that starts with it.
        if first.trim().is_empty() && body.contains(attribute) {
            return true;
        }
        rest = block;
    }
    false
}
