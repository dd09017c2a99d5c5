//! Cross-service trace propagation over HTTP headers (W3C `traceparent`, `tracestate`, `baggage`).
//!
//! - Client side: [`inject_context`] writes the current span's context into outgoing request headers.
//! - Server side: [`extract_context`] reads it back; make it the parent of the request's span with
//!   `tracing_opentelemetry::OpenTelemetrySpanExt::set_parent` **before the span is entered** (after that
//!   the span has started as a new root and the parent is ignored), or use the tower layer
//!   (feature `tower`, module `otlp_telemetry::tower`) which does exactly that.
//!
//! Both use the global propagator that [`init`](crate::init()) installs (W3C Trace Context + Baggage unless
//! `OTEL_PROPAGATORS` says otherwise); before `init` they do nothing.
//!
//! ```
//! use opentelemetry::trace::TraceContextExt as _;
//! use otlp_telemetry::{extract_context, inject_context};
//!
//! # opentelemetry::global::set_text_map_propagator(
//! #     opentelemetry_sdk::propagation::TraceContextPropagator::new());
//! let mut incoming = http::HeaderMap::new();
//! incoming.insert(
//!     "traceparent",
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
//! );
//! let cx = extract_context(&incoming);
//! assert_eq!(
//!     cx.span().span_context().trace_id().to_string(),
//!     "4bf92f3577b34da6a3ce929d0e0e4736"
//! );
//!
//! // Later, calling another service from inside a span:
//! let span = tracing::info_span!("call downstream");
//! let _entered = span.enter();
//! let mut outgoing = http::HeaderMap::new();
//! inject_context(&mut outgoing); // adds traceparent (when telemetry is on)
//! ```

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Context, global};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Writes `headers` through an `http::HeaderMap`, for any `TextMapPropagator`.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Reads an `http::HeaderMap`, for any `TextMapPropagator`.
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// The OpenTelemetry context of the current `tracing` span, or else the current OpenTelemetry context.
pub fn current_context() -> Context {
    let span = tracing::Span::current();
    if !span.is_none() {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            return cx;
        }
        if let Some(cx) = crate::head_sampling::unsampled_context(&span) {
            return cx;
        }
    }
    Context::current()
}

/// Writes the current span's context (`traceparent`, `tracestate`, `baggage`) into outgoing headers.
pub fn inject_context(headers: &mut HeaderMap) {
    inject_context_from(&current_context(), headers);
}

/// Writes the given context into outgoing headers.
pub fn inject_context_from(cx: &Context, headers: &mut HeaderMap) {
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut HeaderInjector(headers)));
}

/// Reads the remote parent context (and baggage) from incoming headers. Without valid headers the result
/// has no span, and a span parented to it becomes a root.
pub fn extract_context(headers: &HeaderMap) -> Context {
    extract_remote(headers).unwrap_or_else(Context::current)
}

/// The context extracted from `headers`, or `None` when they hold none of the global propagator's fields (the
/// propagator would return the current context unchanged): a request without `traceparent` or `baggage` costs
/// a pass over its header names, not a parse and a new context.
pub(crate) fn extract_remote(headers: &HeaderMap) -> Option<Context> {
    if headers.is_empty() {
        return None;
    }
    global::get_text_map_propagator(|p| {
        carries_fields(p, headers).then(|| p.extract(&HeaderExtractor(headers)))
    })
}

/// Whether `headers` hold one of `propagator`'s fields (names compared ignoring ASCII case).
fn carries_fields(propagator: &dyn TextMapPropagator, headers: &HeaderMap) -> bool {
    // The lengths of the propagator's fields, one bit each (any of 64 or more: the top bit): most header names
    // differ in length from every field, and are passed over without a comparison.
    let lengths = propagator
        .fields()
        .fold(0u64, |bits, field| bits | length_bit(field.len()));
    // Header names are stored lowercase; compared without hashing or parsing.
    headers.keys().any(|name| {
        let name = name.as_str();
        lengths & length_bit(name.len()) != 0
            && propagator
                .fields()
                .any(|field| field.eq_ignore_ascii_case(name))
    })
}

/// A length's bit in a set of lengths: lengths of 63 and more share the top bit.
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::baggage::BaggageExt as _;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::{KeyValue, propagation::TextMapCompositePropagator};
    use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

    fn install() {
        global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
    }

    /// A propagator of the given fields, extracting nothing.
    #[derive(Debug)]
    struct Fields(Vec<String>);

    impl TextMapPropagator for Fields {
        fn inject_context(&self, _: &Context, _: &mut dyn Injector) {}

        fn extract_with_context(&self, cx: &Context, _: &dyn Extractor) -> Context {
            cx.clone()
        }

        fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
            opentelemetry::propagation::text_map_propagator::FieldIter::new(&self.0)
        }
    }

    fn carried(fields: &[&str], names: &[&str]) -> bool {
        let propagator = Fields(fields.iter().map(|f| f.to_string()).collect());
        let mut headers = HeaderMap::new();
        for name in names {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
        }
        carries_fields(&propagator, &headers)
    }

    /// A header is found by its name whatever its length and the case of the field; a name of a field's length is
    /// not one of its fields for that.
    #[test]
    fn headers_carrying_a_propagators_fields_are_found_by_name() {
        let w3c = ["traceparent", "tracestate", "baggage"];
        assert!(carried(&w3c, &["host", "user-agent", "baggage"]));
        assert!(carried(&w3c, &["traceparent"]));
        assert!(
            !carried(&w3c, &["host", "user-agent", "x-client-id"]),
            "names of the fields' lengths"
        );
        assert!(!carried(&w3c, &[]));
        assert!(carried(&["X-B3-TraceId"], &["accept", "x-b3-traceid"]));
        let long = "x-".repeat(40) + "trace";
        assert!(carried(&[long.as_str()], &["host", long.as_str()]));
        assert!(!carried(
            &[long.as_str()],
            &[&("y-".repeat(40) + "trace"), &"z".repeat(70)]
        ));
    }

    #[test]
    fn inject_then_extract_round_trips_span_state_and_baggage() {
        install();
        let sc = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let cx = Context::new()
            .with_remote_span_context(sc.clone())
            .with_baggage([KeyValue::new("tenant", "acme")]);
        let mut headers = HeaderMap::new();
        inject_context_from(&cx, &mut headers);
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(headers["tracestate"], "vendor=x");
        assert_eq!(headers["baggage"], "tenant=acme");

        let back = extract_context(&headers);
        let span = back.span();
        let got = span.span_context();
        assert_eq!(got.trace_id(), sc.trace_id());
        assert_eq!(got.span_id(), sc.span_id());
        assert!(got.is_sampled());
        assert!(got.is_remote());
        assert_eq!(got.trace_state().get("vendor"), Some("x"));
        assert_eq!(
            back.baggage().get("tenant").map(|v| v.to_string()),
            Some("acme".to_owned())
        );
    }

    #[test]
    fn inject_uses_the_current_context_and_extract_tolerates_garbage() {
        install();
        let sc = SpanContext::new(
            TraceId::from(5u128),
            SpanId::from(6u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let attached = Context::new().with_remote_span_context(sc).attach();
        let mut headers = HeaderMap::new();
        inject_context(&mut headers);
        assert_eq!(
            headers["traceparent"],
            "00-00000000000000000000000000000005-0000000000000006-01"
        );
        drop(attached);

        let mut bad = HeaderMap::new();
        bad.insert("traceparent", HeaderValue::from_static("not-a-traceparent"));
        assert!(!extract_context(&bad).span().span_context().is_valid());
    }
}
