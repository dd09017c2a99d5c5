//! Trace propagation: a worker pool task's span is a child of the span current at submit, through
//! tracing-opentelemetry into the SDK's in-memory span exporter.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use otlp_patterns::WorkerPool;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "current_thread")]
async fn task_span_is_a_child_of_the_submitter_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otlp-patterns-test")));
    // current_thread runtime: the workers are polled on this thread, under this default subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let pool = WorkerPool::builder("traced")
        .workers(1)
        .queue(4)
        .build()
        .unwrap();
    async {
        let h = pool
            .submit(async {
                tracing::info_span!("inner.work").in_scope(|| {});
                Ok::<_, String>(())
            })
            .await
            .unwrap();
        h.await.unwrap();
    }
    .instrument(tracing::info_span!("request"))
    .await;
    pool.shutdown_now().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {:?}", spans))
    };
    let request = find("request");
    let task = find("workerpool.task");
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
            .any(|kv| kv.key.as_str() == "workerpool.name" && kv.value.as_str() == "traced"),
        "{:?}",
        task.attributes
    );
}
