//! The service on otlp-kit: every part through the facade, each where a real service would put it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt as _;
use otlp_kit::patterns::pipeline::ErrorPolicy;
use otlp_kit::patterns::{PipelineStats, ShutdownReport};
use otlp_kit::prelude::*;
use otlp_kit::sync::CheckError;

use crate::args::Args;
use crate::common::{
    self, Answered, AuditLog, IngestSummary, SHARDS, client_id, hash_str, json_response, refuse,
};

/// The owners, built once at start (after telemetry, so their instruments report through it).
pub struct Kit {
    limiter: KeyedRateLimiter<String>,
    downstream: Semaphore,
    shards: FanOut,
    bodies: BufferPool,
    audit: WorkerPool,
    audit_log: Arc<AuditLog>,
    answered: Answered,
    pipeline_stats: Box<dyn Fn() -> PipelineStats + Send + Sync>,
    peak_tasks: Arc<AtomicUsize>,
    downstream_latency: Duration,
    queue_timeout: Duration,
}

impl std::fmt::Debug for Kit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit")
            .field("limiter", &self.limiter)
            .field("downstream", &self.downstream)
            .field("shards", &self.shards)
            .field("bodies", &self.bodies)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

/// Counts of one ingest request, shared by the items of its pipeline run.
#[derive(Debug, Default)]
struct Tally {
    malformed: AtomicU64,
    invalid: AtomicU64,
}

type Item = (Arc<Tally>, Bytes);

/// Builds the owners and the router (`main` wraps the router in the server trace layer).
pub fn build(args: &Args, peak_tasks: Arc<AtomicUsize>) -> Result<(Router, Arc<Kit>), String> {
    let err = |what: &str, e: &dyn std::fmt::Display| format!("building the {what}: {e}");
    let limiter = KeyedRateLimiter::<String>::builder("demo.clients")
        .per_second(args.client_rps)
        .burst(args.burst())
        .build()
        .map_err(|e| err("client rate limiter", &e))?;
    // Its hold time is what tuning `--downstream-permits` needs (the dashboard's "Hold P99").
    let downstream = Semaphore::builder("demo.downstream")
        .permits(args.downstream_permits)
        .record_hold_duration(true)
        .build()
        .map_err(|e| err("downstream semaphore", &e))?;
    let shards =
        FanOut::new("demo.shards", SHARDS as usize).map_err(|e| err("shard fan-out", &e))?;
    let bodies = BufferPool::builder("demo.bodies")
        .initial_capacity(1024)
        .capacity(1024)
        .build()
        .map_err(|e| err("body buffer pool", &e))?;
    let audit = WorkerPool::builder("demo.audit")
        .workers(args.workers)
        .queue(args.audit_queue)
        .build()
        .map_err(|e| err("audit worker pool", &e))?;
    let pipeline = Arc::new(
        Pipeline::builder("demo.ingest")
            .stage_fallible("parse", 4, |(tally, line): Item| async move {
                common::parse(&line)
                    .map(|r| (tally.clone(), r))
                    .inspect_err(|_| {
                        tally.malformed.fetch_add(1, Ordering::Relaxed);
                    })
            })
            .stage_fallible("validate", 4, |(tally, record)| async move {
                common::validate(record)
                    .map(|r| (tally.clone(), r))
                    .inspect_err(|_| {
                        tally.invalid.fetch_add(1, Ordering::Relaxed);
                    })
            })
            .stage("aggregate", 1, |(_tally, record)| async move {
                common::value(record)
            })
            .error_policy(ErrorPolicy::Skip)
            .build()
            .map_err(|e| err("ingest pipeline", &e))?,
    );
    let kit = Arc::new(Kit {
        limiter,
        downstream,
        shards,
        bodies,
        audit,
        audit_log: Arc::default(),
        answered: Answered::default(),
        pipeline_stats: Box::new({
            let p = Arc::clone(&pipeline);
            move || p.stats()
        }),
        peak_tasks,
        downstream_latency: args.downstream_latency,
        queue_timeout: args.queue_timeout,
    });

    let ingest = {
        let kit = Arc::clone(&kit);
        move |body: Bytes| {
            let (kit, pipeline) = (Arc::clone(&kit), Arc::clone(&pipeline));
            async move {
                let tally = Arc::new(Tally::default());
                let input =
                    futures::stream::iter(common::lines(&body).map(|l| (Arc::clone(&tally), l)));
                let mut summary = IngestSummary::default();
                let mut out = std::pin::pin!(pipeline.run(input));
                while let Some(item) = out.next().await {
                    // Under `ErrorPolicy::Skip` refused lines are counted in the tally, not yielded; a cancelled
                    // item (never here: the run has no parent token) would count as neither.
                    if let Ok(v) = item {
                        summary.accepted += 1;
                        summary.total_cents += v;
                    }
                }
                summary.malformed = tally.malformed.load(Ordering::Relaxed);
                summary.invalid = tally.invalid.load(Ordering::Relaxed);
                summary.records = summary.accepted + summary.malformed + summary.invalid;
                let r = match serde_json::to_vec(&summary) {
                    Ok(v) => json_response(StatusCode::OK, v),
                    Err(_) => refuse(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "{\"error\":\"encoding\"}",
                        None,
                    ),
                };
                kit.answered.count(r.status());
                r
            }
        }
    };

    let router = Router::new()
        .route("/api/orders/{id}", get(get_order))
        .route("/api/ingest", post(ingest))
        .route("/admin/stats", get(stats))
        .route("/admin/reset-peak", post(reset_peak))
        .route("/admin/alloc-counting", post(common::alloc_counting))
        .with_state(Arc::clone(&kit));
    Ok((router, kit))
}

async fn get_order(
    State(kit): State<Arc<Kit>>,
    id: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = kit.order(id, &headers).await;
    kit.answered.count(r.status());
    r
}

impl Kit {
    async fn order(&self, id: Result<Path<u64>, PathRejection>, headers: &HeaderMap) -> Response {
        let Ok(Path(id)) = id else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "{\"error\":\"the order id must be a whole number, as in /api/orders/42\"}",
                None,
            );
        };
        let client = client_id(headers);
        if let Err(e) = self.limiter.check_key(client) {
            let after = match e {
                CheckError::Throttled { retry_after } => retry_after,
                _ => Duration::from_secs(1),
            };
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "{\"error\":\"rate limited\"}",
                Some(after),
            );
        }
        match self.downstream.acquire_timeout(self.queue_timeout).await {
            Ok(_permit) => common::downstream(self.downstream_latency).await,
            Err(_) => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{\"error\":\"downstream busy\"}",
                    Some(Duration::from_secs(1)),
                );
            }
        }
        let lines = match self
            .shards
            .run_fallible(0..SHARDS, |s| common::shard_lookup(id, s))
            .await
            .into_result()
        {
            Ok(lines) => lines,
            Err(_) => {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{\"error\":\"shard\"}",
                    None,
                );
            }
        };
        let order = common::order(id, client, lines);
        // Encoded into a pooled buffer that hyper sends as it is: the buffer goes back to the pool when the
        // body has been written (the last `Bytes` clone drops), on whichever thread that happens.
        let body = {
            let mut buf = self.bodies.get_owned();
            if serde_json::to_writer(&mut *buf, &order).is_err() {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{\"error\":\"encoding\"}",
                    None,
                );
            }
            buf.freeze()
        };
        // Best effort: a full audit queue drops the event, and the pool counts it as rejected.
        let log = Arc::clone(&self.audit_log);
        let client_hash = hash_str(client);
        let _ = self.audit.try_execute(async move {
            common::audit(log, id, client_hash).await;
        });
        json_response(StatusCode::OK, body)
    }

    /// The owners' `stats()`, for `/admin/stats` and `cargo xtask demo`.
    pub fn stats_json(&self) -> serde_json::Value {
        let l = self.limiter.stats();
        let s = self.downstream.stats();
        let f = self.shards.stats();
        let w = self.audit.stats();
        let p = (self.pipeline_stats)();
        let b = self.bodies.stats();
        let mut v = common::process_json(&self.answered, &self.peak_tasks, &self.audit_log);
        v["variant"] = "kit".into();
        v["owners"] = serde_json::json!({
            "rate_limiter": {"allowed": l.allowed, "throttled": l.throttled, "keys": l.keys, "evicted": l.evicted},
            "semaphore": {"acquired": s.acquired, "timed_out": s.timed_out, "waited": s.waited,
                          "in_use": s.in_use, "waiting": s.waiting, "limit": s.limit},
            "fan_out": {"submitted": f.submitted, "ok": f.ok, "failed": f.failed, "panicked": f.panicked,
                        "cancelled": f.cancelled},
            "worker_pool": {"submitted": w.submitted, "completed": w.completed, "failed": w.failed,
                            "panicked": w.panicked, "timed_out": w.timed_out, "cancelled": w.cancelled,
                            "rejected": w.rejected, "queued": w.queued, "active": w.active, "workers": w.workers},
            "pipeline": {"submitted": p.submitted, "ok": p.ok, "failed": p.failed, "panicked": p.panicked,
                         "cancelled": p.cancelled, "queued": p.queued},
            "buffer_pool": {"gets": b.gets, "misses": b.misses, "puts": b.puts, "discards": b.discards,
                            "idle": b.idle, "reuses": b.reuses()},
        });
        v
    }

    /// Stops the audit worker pool: drains until `deadline`, then cancels the rest.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.audit
            .shutdown(tokio::time::Instant::now() + deadline)
            .await
    }

    /// Requests answered so far.
    pub fn answered(&self) -> &Answered {
        &self.answered
    }
}

async fn stats(State(kit): State<Arc<Kit>>) -> Response {
    json_response(StatusCode::OK, kit.stats_json().to_string())
}

async fn reset_peak(State(kit): State<Arc<Kit>>) -> StatusCode {
    kit.peak_tasks.store(0, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}
