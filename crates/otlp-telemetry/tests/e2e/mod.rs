//! The end-to-end scenario shared by the gRPC and HTTP tests.
#![allow(dead_code)] // each test binary uses one of the endings

use std::time::Duration;

use opentelemetry::KeyValue;

use crate::common::{self, Rotel};
use otlp_telemetry::TelemetryConfig;

/// How the guard ends: an explicit `shutdown()` (checked for errors) or a plain drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Shutdown,
    Drop,
}

pub async fn run(rotel: &Rotel, config: TelemetryConfig, service: &str, end: End) {
    let mut guard = otlp_telemetry::init(
        config
            .service_version("9.9.9")
            .resource_attribute("deployment.environment.name", "e2e")
            // The service's own meter gets the duration view too; other libraries' do not.
            .duration_view_scope("e2e")
            .shutdown_timeout(Duration::from_secs(15)),
    )
    .expect("init");

    // A parent and a child span with attributes, through `tracing`.
    async {
        let parent = tracing::info_span!("e2e.parent", order.id = 42, customer = "acme");
        let _p = parent.enter();
        let child = tracing::info_span!("e2e.child", db.system = "postgresql", rows = 3);
        let _c = child.enter();
        tracing::info!("inside the child span");
    }
    .await;

    // A counter and a histogram, through the global meter provider.
    let meter = opentelemetry::global::meter("e2e");
    let counter = meter.u64_counter("e2e.requests").build();
    counter.add(3, &[KeyValue::new("route", "/orders")]);
    counter.add(4, &[KeyValue::new("route", "/orders")]);
    let histogram = meter
        .f64_histogram("e2e.request.duration")
        .with_unit("s")
        .build();
    histogram.record(0.003, &[]);
    histogram.record(0.2, &[]);
    let semconv = opentelemetry::global::meter("tower-http")
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .build();
    semconv.record(0.2, &[]);

    // Either way, everything recorded before is delivered.
    match end {
        End::Shutdown => {
            guard.shutdown().expect("shutdown delivers everything");
            assert_eq!(guard.dropped_spans(), Some(0));
        }
        End::Drop => drop(guard),
    }

    let out = rotel.wait_for(
        &[
            "e2e.parent",
            "e2e.child",
            "-> Name: e2e.requests",
            "-> Name: e2e.request.duration",
            "-> Name: http.server.request.duration",
        ],
        Duration::from_secs(15),
    );

    // Resource.
    assert!(
        out.contains(&format!("-> service.name: Str({service})")),
        "service.name {service} missing"
    );
    assert!(out.contains("-> service.version: Str(9.9.9)"));
    assert!(out.contains("-> deployment.environment.name: Str(e2e)"));
    assert!(out.contains("-> telemetry.sdk.language: Str(rust)"));

    // Spans: names, parent link, attributes.
    let spans = common::spans(&out);
    let parent = spans
        .iter()
        .find(|s| s.name == "e2e.parent")
        .expect("parent span");
    let child = spans
        .iter()
        .find(|s| s.name == "e2e.child")
        .expect("child span");
    assert_eq!(child.trace_id, parent.trace_id, "same trace");
    assert_eq!(
        child.parent_id, parent.id,
        "child's parent is the parent span"
    );
    assert!(parent.parent_id.is_empty(), "parent is a root: {parent:?}");
    assert!(
        parent.attributes.contains(&"order.id: Int(42)".to_owned()),
        "{parent:?}"
    );
    assert!(
        parent
            .attributes
            .contains(&"customer: Str(acme)".to_owned()),
        "{parent:?}"
    );
    assert!(
        child
            .attributes
            .contains(&"db.system: Str(postgresql)".to_owned()),
        "{child:?}"
    );
    assert!(
        child.attributes.contains(&"rows: Int(3)".to_owned()),
        "{child:?}"
    );

    // Metrics: names and values.
    let counter = common::metric_block(&out, "e2e.requests").expect("counter");
    assert!(counter.contains("DataType: Sum"), "{counter}");
    assert!(counter.contains("-> route: Str(/orders)"), "{counter}");
    assert!(counter.contains("Value: 7"), "{counter}");
    let hist = common::metric_block(&out, "e2e.request.duration").expect("histogram");
    assert!(hist.contains("DataType: Histogram"), "{hist}");
    assert!(hist.contains("Count: 2"), "{hist}");
    assert!(hist.contains("Sum: 0.203"), "{hist}");
    // The duration view's bounds (1 µs .. 10 s) replaced the SDK's millisecond defaults.
    assert!(hist.contains("ExplicitBounds #0: 0.000001\n"), "{hist}");
    assert!(hist.contains("ExplicitBounds #21: 10\n"), "{hist}");
    // 0.003 s falls in (0.0025, 0.005], 0.2 s in (0.1, 0.25].
    assert!(hist.contains("Buckets #11, Count: 1\n"), "{hist}");
    assert!(hist.contains("Buckets #16, Count: 1\n"), "{hist}");
    // Another library's histogram keeps the SDK's default buckets (0, 5, 10, ...).
    let foreign =
        common::metric_block(&out, "http.server.request.duration").expect("semconv histogram");
    assert!(foreign.contains("ExplicitBounds #0: 0\n"), "{foreign}");
    assert!(foreign.contains("ExplicitBounds #1: 5\n"), "{foreign}");
}
