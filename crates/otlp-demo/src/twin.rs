//! The twin: the same routes written the usual way, with none of otlp-kit (a fresh `Vec` per body, tokio's
//! `Semaphore`, `governor`, `join_all`, `tokio::spawn` for the audit event), and no metrics. With `naive` set it
//! becomes the naive-instrumented variant: a counter and a histogram recorded per request, their attributes built
//! on every call, as instrumentation is often first written.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use bytes::Bytes;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use crate::args::Args;
use crate::common::{
    self, Answered, AuditLog, IngestSummary, Refused, SHARDS, client_id, hash_str, json_response,
    refuse,
};

/// The naive variant's instruments (from the global meter, after telemetry is installed).
#[derive(Debug)]
struct Naive {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

/// The twin's state.
#[derive(Debug)]
pub struct Twin {
    limiter: DefaultKeyedRateLimiter<String>,
    downstream: tokio::sync::Semaphore,
    downstream_limit: usize,
    audit_log: Arc<AuditLog>,
    answered: Answered,
    naive: Option<Naive>,
    /// `/admin/stats`' name of the variant.
    variant: &'static str,
    peak_tasks: Arc<AtomicUsize>,
    downstream_latency: Duration,
    queue_timeout: Duration,
}

/// Builds the twin (`naive = false`) or the naive-instrumented variant, and its router.
pub fn build(
    args: &Args,
    naive: bool,
    peak_tasks: Arc<AtomicUsize>,
) -> Result<(Router, Arc<Twin>), String> {
    let nz = |n: u64, what: &str| {
        u32::try_from(n)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| format!("{what} {n} must be between 1 and {}", u32::MAX))
    };
    let quota = Quota::per_second(nz(args.client_rps, "--client-rps")?)
        .allow_burst(nz(args.burst(), "--client-burst")?);
    let naive = naive.then(|| {
        let meter = opentelemetry::global::meter("otlp-demo-naive");
        Naive {
            requests: meter
                .u64_counter("http.server.requests")
                .with_unit("{request}")
                .build(),
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .build(),
        }
    });
    let twin = Arc::new(Twin {
        limiter: RateLimiter::keyed(quota),
        downstream: tokio::sync::Semaphore::new(args.downstream_permits),
        downstream_limit: args.downstream_permits,
        audit_log: Arc::default(),
        answered: Answered::default(),
        variant: if naive.is_some() { "naive" } else { "twin" },
        naive,
        peak_tasks,
        downstream_latency: args.downstream_latency,
        queue_timeout: args.queue_timeout,
    });
    // The naive variant's server spans come from the layer `main` wraps around the router, as for kit.
    Ok((routes(get(get_order), &twin), twin))
}

/// The floor under every variant (`--variant bare`): the same routes, the orders route answering a fixed body at
/// once (no extractor, no state touched but the answer count), no telemetry.
pub fn bare(args: &Args, peak_tasks: Arc<AtomicUsize>) -> Result<(Router, Arc<Twin>), String> {
    let (router, mut twin) = build(args, false, peak_tasks)?;
    drop(router);
    Arc::get_mut(&mut twin)
        .ok_or("the twin's state is shared before its router is built")?
        .variant = "bare";
    Ok((routes(get(bare_order), &twin), twin))
}

/// The twin's routes, with `orders` serving `GET /api/orders/{id}`.
fn routes(orders: MethodRouter<Arc<Twin>>, twin: &Arc<Twin>) -> Router {
    Router::new()
        .route("/api/orders/{id}", orders)
        .route("/api/ingest", post(ingest))
        .route("/admin/stats", get(stats))
        .route("/admin/reset-peak", post(reset_peak))
        .route("/admin/alloc-counting", post(common::alloc_counting))
        .with_state(Arc::clone(twin))
}

async fn bare_order(State(twin): State<Arc<Twin>>) -> Response {
    twin.answered.count(StatusCode::OK);
    json_response(StatusCode::OK, Bytes::from_static(b"{}"))
}

impl Twin {
    fn record(
        &self,
        route: &'static str,
        method: &'static str,
        status: StatusCode,
        start: Option<Instant>,
    ) {
        self.answered.count(status);
        if let (Some(naive), Some(start)) = (&self.naive, start) {
            let attrs = vec![
                KeyValue::new("http.route", route),
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            ];
            naive.requests.add(1, &attrs);
            naive.duration.record(start.elapsed().as_secs_f64(), &attrs);
        }
    }

    fn start(&self) -> Option<Instant> {
        self.naive.as_ref().map(|_| Instant::now())
    }

    async fn order(&self, id: Result<Path<u64>, PathRejection>, headers: &HeaderMap) -> Response {
        let Ok(Path(id)) = id else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "{\"error\":\"the order id must be a whole number, as in /api/orders/42\"}",
                None,
            );
        };
        let client = client_id(headers);
        if let Err(not_until) = self.limiter.check_key(&client.to_owned()) {
            let after = not_until.wait_time_from(DefaultClock::default().now());
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "{\"error\":\"rate limited\"}",
                Some(after),
            );
        }
        match tokio::time::timeout(self.queue_timeout, self.downstream.acquire()).await {
            Ok(Ok(_permit)) => common::downstream(self.downstream_latency).await,
            _ => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{\"error\":\"downstream busy\"}",
                    Some(Duration::from_secs(1)),
                );
            }
        }
        let parts =
            futures::future::join_all((0..SHARDS).map(|s| common::shard_lookup(id, s))).await;
        let lines = parts.into_iter().map(|r| match r {
            Ok(line) => line,
            Err(never) => match never {},
        });
        let order = common::order(id, client, lines.collect());
        let body = match serde_json::to_vec(&order) {
            Ok(v) => v,
            Err(_) => {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{\"error\":\"encoding\"}",
                    None,
                );
            }
        };
        tokio::spawn(common::audit(
            Arc::clone(&self.audit_log),
            id,
            hash_str(client),
        ));
        json_response(StatusCode::OK, body)
    }
}

async fn get_order(
    State(twin): State<Arc<Twin>>,
    id: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let start = twin.start();
    let r = twin.order(id, &headers).await;
    twin.record("/api/orders/{id}", "GET", r.status(), start);
    r
}

async fn ingest(State(twin): State<Arc<Twin>>, body: Bytes) -> Response {
    let start = twin.start();
    let mut summary = IngestSummary::default();
    for line in common::lines(&body) {
        summary.records += 1;
        match common::parse(&line).and_then(common::validate) {
            Ok(r) => {
                summary.accepted += 1;
                summary.total_cents += common::value(r);
            }
            Err(Refused::Malformed) => summary.malformed += 1,
            Err(Refused::Invalid) => summary.invalid += 1,
        }
    }
    let r = match serde_json::to_vec(&summary) {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"encoding\"}",
            None,
        ),
    };
    twin.record("/api/ingest", "POST", r.status(), start);
    r
}

impl Twin {
    /// `/admin/stats`: the process figures (the twin has no owners with stats).
    pub fn stats_json(&self) -> serde_json::Value {
        let mut v = common::process_json(&self.answered, &self.peak_tasks, &self.audit_log);
        v["variant"] = self.variant.into();
        v["owners"] = serde_json::json!({
            "semaphore": {"in_use": self.downstream_permits_in_use()},
        });
        v
    }

    fn downstream_permits_in_use(&self) -> usize {
        // tokio's semaphore reports only what is available; the limit is what was configured.
        self.downstream_limit()
            .saturating_sub(self.downstream.available_permits())
    }

    fn downstream_limit(&self) -> usize {
        self.downstream_limit
    }

    /// Requests answered so far.
    pub fn answered(&self) -> &Answered {
        &self.answered
    }
}

async fn stats(State(twin): State<Arc<Twin>>) -> Response {
    json_response(StatusCode::OK, twin.stats_json().to_string())
}

async fn reset_peak(State(twin): State<Arc<Twin>>) -> StatusCode {
    twin.peak_tasks.store(0, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}
