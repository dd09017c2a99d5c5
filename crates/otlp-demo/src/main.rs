//! `otlp-demo`: an HTTP service built on otlp-kit, its twin without otlp-kit, and a naive-instrumented variant,
//! one binary, picked by `--variant`. See `otlp-demo --help` and the README's `cargo xtask demo`.
//!
//! Output contract (what `cargo xtask demo`, `cargo xtask load` and the tests read): one line
//! `otlp-demo listening on http://ADDR variant=V` on stdout once the port is bound (preceded by
//! `otlp-demo prometheus on http://ADDR/metrics` when the scrape endpoint is on), and one line
//! `otlp-demo stopped {json}` after a graceful shutdown (SIGINT or SIGTERM), then exit status 0.

mod alloc;
mod args;
mod common;
mod kit;
mod twin;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use args::{Args, Variant};
use axum::ServiceExt;
use otlp_kit::telemetry::tower::ServerTraceLayer;
use otlp_kit::telemetry::{self, TelemetryConfig, TelemetryGuard};
use tower_layer::Layer as _;

fn main() -> std::process::ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            let help = msg.starts_with("otlp-demo:");
            return std::process::ExitCode::from(if help { 0 } else { 2 });
        }
    };
    if args.count_allocs {
        alloc::set(true);
    }
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otlp-demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.runtime_threads {
        builder.worker_threads(n);
    }
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the tokio runtime: {e}"))?;
    let (mut guard, mut report, app) = runtime.block_on(serve(&args))?;
    // Telemetry is flushed last, off the runtime's threads, so the spans of the last requests go out too; the
    // owners live until then, so their observable instruments report their final counts in that last export.
    if let Some(guard) = guard.as_mut() {
        report["telemetry_shutdown"] = match guard.shutdown() {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string().into(),
        };
        report["dropped_spans"] = guard.dropped_spans().into();
        // What otel.sdk.processor.span.processed{error.type=queue_full} said: equal to the line above when every
        // drop was counted as it happened.
        report["spans_dropped_live"] = guard.spans_dropped_live().into();
    }
    drop(app);
    drop(runtime);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "otlp-demo stopped {report}");
    let _ = out.flush();
    Ok(())
}

/// Telemetry for the kit and naive variants, from `OTEL_*` (service name `otlp-demo` unless they name one), plus
/// the Prometheus scrape endpoint of `--prometheus`.
fn telemetry(args: &Args) -> Result<Option<TelemetryGuard>, String> {
    if matches!(args.variant, Variant::Twin | Variant::Bare) {
        return Ok(None);
    }
    let mut config = TelemetryConfig::from_env()
        .map_err(|e| e.to_string())?
        .service_name("otlp-demo")
        .resource_attribute("otlp_demo.variant", args.variant.as_str());
    if let Some(addr) = args.prometheus {
        config = config
            .prometheus(true)
            .prometheus_address(addr.ip().to_string(), addr.port());
    }
    let guard = telemetry::init(config).map_err(|e| format!("telemetry: {e}"))?;
    if let Some(addr) = guard.prometheus_addr() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "otlp-demo prometheus on http://{addr}/metrics");
        let _ = out.flush();
    }
    Ok(Some(guard))
}

enum App {
    Kit(Arc<kit::Kit>),
    Twin(Arc<twin::Twin>),
}

async fn serve(args: &Args) -> Result<(Option<TelemetryGuard>, serde_json::Value, App), String> {
    // First, so that the owners built next report through it.
    let guard = telemetry(args)?;
    let sampler = common::TaskSampler::start(tokio::runtime::Handle::current());
    let (router, app) = match args.variant {
        Variant::Kit => kit::build(args, sampler.peak()).map(|(r, k)| (r, App::Kit(k)))?,
        Variant::Bare => twin::bare(args, sampler.peak()).map(|(r, t)| (r, App::Twin(t)))?,
        v => twin::build(args, v == Variant::Naive, sampler.peak())
            .map(|(r, t)| (r, App::Twin(t)))?,
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("could not listen on {}: {e}", args.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "otlp-demo listening on http://{addr} variant={}",
            args.variant.as_str()
        );
        let _ = out.flush();
    }

    // Graceful: on the signal, stop accepting and let every accepted request finish. The kit and naive variants
    // trace every request: the layer wraps the whole router once, so a request goes through one boxed route
    // future, not a second one per route as `Router::layer` would make (the span's fields need no route match).
    let served = if matches!(args.variant, Variant::Kit | Variant::Naive) {
        let traced = ServerTraceLayer::new().layer(router);
        axum::serve(
            listener,
            ServiceExt::<axum::extract::Request>::into_make_service(traced),
        )
        .with_graceful_shutdown(signal())
        .await
    } else {
        axum::serve(listener, router)
            .with_graceful_shutdown(signal())
            .await
    };
    served.map_err(|e| format!("server: {e}"))?;

    let mut report = serde_json::json!({"variant": args.variant.as_str()});
    if let App::Kit(kit) = &app {
        let r = kit.shutdown(args.shutdown_deadline).await;
        report["worker_pool"] = serde_json::json!({
            "completed": r.completed, "cancelled": r.cancelled, "deadline_reached": r.deadline_reached,
        });
    }
    // A finished connection task is counted alive until the runtime reaps it: give that a moment (bounded).
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..100 {
        if metrics.num_alive_tasks() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    report["alive_tasks_after_shutdown"] = metrics.num_alive_tasks().into();
    report["peak_alive_tasks"] = sampler
        .peak()
        .load(std::sync::atomic::Ordering::Relaxed)
        .into();
    sampler.stop();
    report["answered"] = match &app {
        App::Kit(k) => k.answered().json(),
        App::Twin(t) => t.answered().json(),
    };
    if let App::Kit(k) = &app {
        report["owners"] = k.stats_json()["owners"].clone();
    }
    Ok((guard, report, app))
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("otlp-demo: cannot listen for SIGTERM ({e}); Ctrl-C still stops the service");
            None
        }
    };
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
    eprintln!("otlp-demo: shutting down: no new connections, finishing the requests in flight");
}
