//! `OTEL_METRICS_EXPORTER=prometheus`: `init` serves the metrics for a scrape on the configured address, alongside
//! or instead of OTLP, and its guard stops the endpoint on shutdown. One test in this binary: `init` is
//! process-wide.
#![cfg(feature = "prometheus")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use opentelemetry::{KeyValue, global};
use otlp_telemetry::{TelemetryConfig, TelemetryError};

/// A plain HTTP/1.1 GET; returns the status line and the body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/plain\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Ok((
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    ))
}

fn config(vars: &[(&str, &str)]) -> TelemetryConfig {
    TelemetryConfig::from_env_vars(vars.iter().copied())
        .unwrap()
        .traces(false)
        .fmt_output(false)
}

#[test]
fn the_scrape_endpoint_serves_what_the_owners_observed_and_stops_with_the_guard() {
    // A taken port is a typed error that names the address.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let err = otlp_telemetry::init(config(&[
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", &port),
    ]))
    .unwrap_err();
    assert!(
        matches!(&err, TelemetryError::Prometheus { address, .. } if address.ends_with(&port)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("OTEL_EXPORTER_PROMETHEUS_PORT"),
        "{err}"
    );
    drop(taken);

    let mut guard = otlp_telemetry::init(config(&[
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "0"),
    ]))
    .expect("init");
    let addr = guard.prometheus_addr().expect("the endpoint is on");
    assert_ne!(addr.port(), 0);

    // An owner of the library, built after init, and a plain API counter.
    let pool = otlp_pool::Pool::builder("scraped", Vec::<u8>::new)
        .build()
        .unwrap();
    for _ in 0..3 {
        drop(pool.get());
    }
    let counter = global::meter("prometheus-test")
        .u64_counter("test.things")
        .with_unit("{thing}")
        .build();
    counter.add(7, &[KeyValue::new("thing.kind", "a")]);

    let (status, body) = get(addr, "/metrics").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let line = |prefix: &str| {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{body}"))
            .to_owned()
    };
    assert!(line("test_things_total{").contains("thing_kind=\"a\""));
    assert!(line("test_things_total{").ends_with(" 7"));
    let gets = line("pool_gets_total{");
    assert!(gets.contains("pool_name=\"scraped\""), "{gets}");
    assert!(gets.ends_with(" 3"), "{gets}");

    let (status, _) = get(addr, "/other").unwrap();
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    guard.shutdown().expect("shutdown");
    assert_eq!(guard.prometheus_addr(), None);
    assert!(
        get(addr, "/metrics").is_err(),
        "the endpoint is gone after shutdown"
    );
}
