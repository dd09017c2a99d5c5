//! Owners' last numbers survive them: a service that drops its state (here a semaphore and a rate limiter)
//! before `TelemetryGuard::shutdown` still exports every count those owners made, at the shutdown's final
//! collection (the export interval is far longer than the test), like the owners it still holds.

mod common;

use std::time::Duration;

use otlp_sync::{RateLimiter, Semaphore};
use otlp_telemetry::TelemetryConfig;

#[test]
fn owners_dropped_before_shutdown_export_their_counts_at_shutdown() {
    let rotel = common::Rotel::start();
    let endpoint = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let config = TelemetryConfig::from_env_vars([
        ("OTEL_SERVICE_NAME", "dropped-owners"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ])
    .unwrap()
    .metric_export_interval(Duration::from_secs(3600))
    .fmt_output(false);
    let mut guard = otlp_telemetry::init(config).expect("init");

    let kept = Semaphore::new("owners.kept", 2).unwrap();
    let gone = Semaphore::new("owners.gone", 2).unwrap();
    let limiter = RateLimiter::builder("owners.gone")
        .per_second(1000)
        .burst(100)
        .build()
        .unwrap();
    for _ in 0..3 {
        drop(kept.try_acquire().unwrap());
    }
    for _ in 0..5 {
        drop(gone.try_acquire().unwrap());
        limiter.check().unwrap();
    }
    // The service's state goes before the telemetry does.
    drop(gone);
    drop(limiter);
    guard.shutdown().expect("shutdown delivers everything");

    let out = rotel.wait_for(
        &[
            "semaphore.name: Str(owners.gone)",
            "rate_limiter.name: Str(owners.gone)",
            "semaphore.name: Str(owners.kept)",
        ],
        Duration::from_secs(20),
    );
    let value = |metric: &str, owner: &str, outcome: &str| {
        let block = common::metric_block(&out, metric).unwrap_or_else(|| panic!("no {metric}"));
        // The point of this owner with this outcome.
        block
            .split("NumberDataPoints #")
            .filter(|p| {
                p.contains(&format!("Str({owner})")) && p.contains(&format!("Str({outcome})"))
            })
            .find_map(|p| {
                p.lines()
                    .find_map(|l| l.trim().strip_prefix("Value: "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
    };
    assert_eq!(
        value("semaphore.acquires", "owners.kept", "acquired"),
        Some(3),
        "{out}"
    );
    assert_eq!(
        value("semaphore.acquires", "owners.gone", "acquired"),
        Some(5),
        "{out}"
    );
    assert_eq!(
        value("rate_limiter.decisions", "owners.gone", "allowed"),
        Some(5),
        "{out}"
    );
}
