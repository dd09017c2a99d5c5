//! `span_source_attributes`: thread, code-location and `target` attributes on exported spans only when asked for,
//! and never code attributes naming otlp-telemetry on `ServerTraceLayer`'s server span.

use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use otlp_telemetry::stack::TracingStack;
use otlp_telemetry::{TelemetryConfig, TraceSampler};

const SOURCE_KEYS: [&str; 6] = [
    "thread.id",
    "thread.name",
    "code.file.path",
    "code.module.name",
    "code.line.number",
    "target",
];

fn exported(config: TelemetryConfig, work: impl FnOnce()) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let config = config
        .fmt_output(false)
        .trace_sampler(TraceSampler::ParentBasedAlwaysOn);
    let stack = TracingStack::with_exporter(&config, exporter.clone()).unwrap();
    tracing::dispatcher::with_default(stack.dispatch(), work);
    stack.provider().force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn keys(span: &SpanData) -> Vec<&str> {
    span.attributes.iter().map(|kv| kv.key.as_str()).collect()
}

fn a_span() {
    let _span = tracing::info_span!("work", item = 7).entered();
}

#[test]
fn by_default_spans_carry_no_thread_or_code_attributes() {
    let spans = exported(TelemetryConfig::new(), a_span);
    assert_eq!(spans.len(), 1);
    let keys = keys(&spans[0]);
    assert!(keys.contains(&"item"), "{keys:?}");
    for key in SOURCE_KEYS {
        assert!(!keys.contains(&key), "{key} in {keys:?}");
    }
}

#[test]
fn when_on_spans_carry_the_thread_and_where_they_were_created() {
    let spans = exported(TelemetryConfig::new().span_source_attributes(true), a_span);
    assert_eq!(spans.len(), 1);
    let keys = keys(&spans[0]);
    for key in SOURCE_KEYS {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let file = spans[0]
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "code.file.path")
        .unwrap();
    assert!(
        file.value.as_str().ends_with("span_source_attributes.rs"),
        "{file:?}"
    );
    let value = |key: &str| {
        spans[0]
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(value("target").as_deref(), Some(module_path!()));
    assert_eq!(value("item").as_deref(), Some("7"));
}

#[test]
fn the_environment_turns_them_on_and_rejects_a_non_boolean() {
    let on = TelemetryConfig::from_env_vars([("OTEL_SPAN_SOURCE_ATTRIBUTES", "true")]).unwrap();
    let spans = exported(on, a_span);
    assert!(keys(&spans[0]).contains(&"thread.id"));
    let err = TelemetryConfig::from_env_vars([("OTEL_SPAN_SOURCE_ATTRIBUTES", "yes")]).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("OTEL_SPAN_SOURCE_ATTRIBUTES"), "{message}");
    assert!(message.contains("true or false"), "{message}");
}

#[cfg(feature = "tower")]
mod server_span {
    use super::*;
    use otlp_telemetry::tower::ServerTraceLayer;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt as _};

    fn serve() {
        let service = ServiceBuilder::new()
            .layer(ServerTraceLayer::new())
            .service_fn(|_req: http::Request<()>| async {
                Ok::<_, Infallible>(http::Response::new(()))
            });
        let req = http::Request::get("/orders/7").body(()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(service.oneshot(req)).unwrap();
    }

    #[test]
    fn the_server_span_never_names_otlp_telemetry_as_its_code() {
        for on in [false, true] {
            let spans = exported(TelemetryConfig::new().span_source_attributes(on), serve);
            assert_eq!(spans.len(), 1, "{spans:#?}");
            let keys = keys(&spans[0]);
            assert!(
                keys.iter().all(|k| !k.starts_with("code.")),
                "on={on}: {keys:?}"
            );
            assert_eq!(keys.contains(&"thread.id"), on, "{keys:?}");
            assert_eq!(keys.contains(&"target"), on, "{keys:?}");
            for key in [
                "http.request.method",
                "url.path",
                "http.response.status_code",
            ] {
                assert!(keys.contains(&key), "on={on}: {key} missing from {keys:?}");
            }
        }
    }
}
