//! Trace propagation: a worker pool task's span is a child of the span current at submit, and fan-out and pipeline
//! runs are spans under the caller's span with their items' spans under them, through tracing-opentelemetry into
//! the SDK's in-memory span exporter.

use futures::StreamExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use otlp_patterns::{FanOut, Pipeline, WorkerPool};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "current_thread")]
async fn task_span_is_a_child_of_the_submitter_span() {
    // current_thread runtime: the workers are polled on this thread, under the test's default subscriber.
    let pool = WorkerPool::builder("traced")
        .workers(1)
        .queue(4)
        .build()
        .unwrap();
    let spans = traced(async {
        let h = pool
            .submit_fallible(async {
                tracing::info_span!("inner.work").in_scope(|| {});
                Ok::<_, String>(())
            })
            .await
            .unwrap();
        h.await.unwrap();
    })
    .await;
    pool.shutdown_now().await;
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {spans:?}"))
    };
    let request = find("request");
    let task = find("worker_pool.task");
    let inner = find("inner.work");
    assert_eq!(
        task.parent_span_id,
        request.span_context.span_id(),
        "task span is not a child of the submitter"
    );
    assert_eq!(
        task.span_context.trace_id(),
        request.span_context.trace_id()
    );
    assert_eq!(
        inner.parent_span_id,
        task.span_context.span_id(),
        "work inside the task is not under its span"
    );
    assert!(
        task.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "worker_pool.name" && kv.value.as_str() == "traced"),
        "{:?}",
        task.attributes
    );
}

/// Runs `body` under a `request` span with an in-memory exporter and returns the finished spans.
async fn traced<F: std::future::Future<Output = ()>>(body: F) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otlp-patterns-test")));
    let guard = tracing::subscriber::set_default(subscriber);
    body.instrument(tracing::info_span!("request")).await;
    drop(guard);
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

/// Asserts that `child` (one span) is under `parent` (one span) and that `item.work` spans (`items` of them) are
/// under `child`, and that `child` carries `attr` = `value`.
fn assert_tree(spans: &[SpanData], child: &str, attr: &str, value: &str, items: usize) {
    let one = |name: &str| {
        let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "spans named {name}: {spans:?}");
        found[0]
    };
    let request = one("request");
    let run = one(child);
    assert_eq!(
        run.parent_span_id,
        request.span_context.span_id(),
        "{child} is not under the caller's span"
    );
    assert!(
        run.attributes
            .iter()
            .any(|kv| kv.key.as_str() == attr && kv.value.as_str() == value),
        "{:?}",
        run.attributes
    );
    let work: Vec<_> = spans.iter().filter(|s| s.name == "item.work").collect();
    assert_eq!(work.len(), items);
    for w in work {
        assert_eq!(
            w.parent_span_id,
            run.span_context.span_id(),
            "an item's span is not under {child}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn fan_out_run_span_holds_its_items() {
    let fan = FanOut::new("fan", 2).unwrap();
    let spans = traced(async {
        let r = fan
            .run(0..3u32, |i| async move {
                tracing::info_span!("item.work").in_scope(|| {});
                tokio::task::yield_now().await; // some items wait, some finish on their first poll
                i
            })
            .await;
        assert!(r.all_ok());
    })
    .await;
    assert_tree(&spans, "fan_out.run", "fan_out.name", "fan", 3);
}

#[tokio::test(flavor = "current_thread")]
async fn pipeline_run_span_holds_its_items() {
    let pipe = Pipeline::builder("pipe")
        .stage("work", 2, |i: u32| async move {
            tracing::info_span!("item.work").in_scope(|| {});
            i
        })
        .build()
        .unwrap();
    let spans = traced(async {
        let out: Vec<_> = pipe.run(futures::stream::iter(0..3u32)).collect().await;
        assert_eq!(out.len(), 3);
    })
    .await;
    assert_tree(&spans, "pipeline.run", "pipeline.name", "pipe", 3);
}
