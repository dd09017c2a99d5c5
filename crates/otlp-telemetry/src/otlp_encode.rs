//! OTLP trace encoding: a batch of [`SpanData`] straight to the protobuf bytes of an
//! `ExportTraceServiceRequest`, borrowing every string and attribute.
//!
//! `opentelemetry-otlp` first converts each span into `opentelemetry-proto`'s structures (a `String` per
//! attribute key and string value, a `Vec` per id and list), then encodes them, then frees them, several
//! times the cost of writing the bytes directly (docs/benchmarks.md, "Tracing"). The output is the same message, field for field: the tests decode it
//! with `opentelemetry-proto` and compare it with that crate's own conversion.
//!
//! ```
//! use opentelemetry_sdk::Resource;
//! use otlp_telemetry::otlp_encode::encode_trace_request;
//!
//! let mut buf = Vec::new();
//! encode_trace_request(&Resource::builder_empty().build(), &[], &mut buf);
//! // One ResourceSpans with an empty resource: field 1, length 2, then the resource (field 1, length 0).
//! assert_eq!(buf, [0x0a, 0x02, 0x0a, 0x00]);
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `SpanFlags`: the W3C trace flags, and whether the parent's remoteness is known (always, here) and true.
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// Appends the `ExportTraceServiceRequest` of `spans` under `resource` to `buf`: one `ResourceSpans`, with one
/// `ScopeSpans` per instrumentation scope in the order the scopes first appear.
pub fn encode_trace_request(resource: &Resource, spans: &[SpanData], buf: &mut Vec<u8>) {
    // A batch holds few scopes (tracing's, a library's or two): a linear search beats hashing each span's. The
    // first scope's list has room for the whole batch, so that the common batch of one scope never grows it.
    let mut scopes: Vec<(&InstrumentationScope, Vec<&SpanData>)> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        let scope = &span.instrumentation_scope;
        match scopes.iter_mut().find(|(s, _)| same_scope(s, scope)) {
            Some((_, members)) => members.push(span),
            None => {
                let room = if scopes.is_empty() {
                    spans.len() - i
                } else {
                    1
                };
                let mut members = Vec::with_capacity(room);
                members.push(span);
                scopes.push((scope, members));
            }
        }
    }
    message(buf, 1, |buf| {
        message(buf, 1, |buf| {
            for (k, v) in resource.iter() {
                message(buf, 1, |buf| key_value(buf, k.as_str(), v));
            }
        });
        for (scope, members) in &scopes {
            message(buf, 2, |buf| {
                message(buf, 1, |buf| {
                    string(buf, 1, scope.name());
                    string(buf, 2, scope.version().unwrap_or_default());
                    attributes(buf, 3, scope.attributes());
                });
                for span in members {
                    message(buf, 2, |buf| encode_span(buf, span));
                }
                string(buf, 3, scope.schema_url().unwrap_or_default());
            });
        }
        string(buf, 3, resource.schema_url().unwrap_or_default());
    });
}

fn encode_span(buf: &mut Vec<u8>, span: &SpanData) {
    let cx = &span.span_context;
    bytes(buf, 1, &cx.trace_id().to_bytes());
    bytes(buf, 2, &cx.span_id().to_bytes());
    trace_state(buf, 3, cx);
    if span.parent_span_id != SpanId::INVALID {
        bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    string(buf, 5, &span.name);
    uint(buf, 6, kind(&span.span_kind));
    fixed64(buf, 7, nanos(span.start_time));
    fixed64(buf, 8, nanos(span.end_time));
    attributes(buf, 9, &span.attributes);
    uint(buf, 10, span.dropped_attributes_count.into());
    for event in span.events.iter() {
        message(buf, 11, |buf| {
            fixed64(buf, 1, nanos(event.timestamp));
            string(buf, 2, &event.name);
            attributes(buf, 3, &event.attributes);
            uint(buf, 4, event.dropped_attributes_count.into());
        });
    }
    uint(buf, 12, span.events.dropped_count.into());
    for link in span.links.iter() {
        let lcx = &link.span_context;
        message(buf, 13, |buf| {
            bytes(buf, 1, &lcx.trace_id().to_bytes());
            bytes(buf, 2, &lcx.span_id().to_bytes());
            trace_state(buf, 3, lcx);
            attributes(buf, 4, &link.attributes);
            uint(buf, 5, link.dropped_attributes_count.into());
            fixed32(buf, 6, flags(lcx.trace_flags().to_u8(), lcx.is_remote()));
        });
    }
    uint(buf, 14, span.links.dropped_count.into());
    message(buf, 15, |buf| match &span.status {
        Status::Unset => {}
        Status::Ok => uint(buf, 3, 1),
        Status::Error { description } => {
            string(buf, 2, description);
            uint(buf, 3, 2);
        }
    });
    fixed32(
        buf,
        16,
        flags(cx.trace_flags().to_u8(), span.parent_span_is_remote),
    );
}

/// `a == b`, without the comparison's sorted copies of the attributes when both are the same static strings and
/// have no attributes (the spans of one tracer carry copies of its scope: the same strings).
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    fn same(a: Option<&str>, b: Option<&str>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
    let identical = same(Some(a.name()), Some(b.name()))
        && same(a.version(), b.version())
        && same(a.schema_url(), b.schema_url())
        && a.attributes().next().is_none()
        && b.attributes().next().is_none();
    identical || a == b
}

fn flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | CONTEXT_HAS_IS_REMOTE | if remote { CONTEXT_IS_REMOTE } else { 0 }
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn trace_state(buf: &mut Vec<u8>, field: u32, cx: &SpanContext) {
    let state = cx.trace_state();
    if *state != Default::default() {
        string(buf, field, &state.header());
    }
}

fn attributes<'a>(buf: &mut Vec<u8>, field: u32, kvs: impl IntoIterator<Item = &'a KeyValue>) {
    for kv in kvs {
        message(buf, field, |buf| key_value(buf, kv.key.as_str(), &kv.value));
    }
}

fn key_value(buf: &mut Vec<u8>, key: &str, value: &Value) {
    string(buf, 1, key);
    message(buf, 2, |buf| any_value(buf, value));
}

/// An `AnyValue`: its one field is written even when it holds the default (a oneof has presence).
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            tag(buf, 2, VARINT);
            varint(buf, u64::from(*b));
        }
        Value::I64(i) => {
            tag(buf, 3, VARINT);
            varint(buf, *i as u64);
        }
        Value::F64(f) => {
            tag(buf, 4, FIXED64);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            tag(buf, 1, LEN);
            len_bytes(buf, s.as_str().as_bytes());
        }
        Value::Array(array) => message(buf, 5, |buf| match array {
            Array::Bool(v) => array_values(buf, v.iter().map(|b| Value::Bool(*b))),
            Array::I64(v) => array_values(buf, v.iter().map(|i| Value::I64(*i))),
            Array::F64(v) => array_values(buf, v.iter().map(|f| Value::F64(*f))),
            Array::String(v) => array_values(buf, v.iter().cloned().map(Value::String)),
            other => array_values(buf, std::iter::once(Value::from(other.to_string()))),
        }),
        // `Value` is non-exhaustive: a kind added later is sent as its text.
        other => {
            tag(buf, 1, LEN);
            len_bytes(buf, other.as_str().as_bytes());
        }
    }
}

fn array_values(buf: &mut Vec<u8>, values: impl Iterator<Item = Value>) {
    for v in values {
        message(buf, 1, |buf| any_value(buf, &v));
    }
}

/// A length-delimited field whose body `body` writes: a one-byte length is reserved and the body is shifted
/// right in the rare case its length needs more.
fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(buf, field, LEN);
    buf.push(0);
    let start = buf.len();
    body(buf);
    let len = buf.len() - start;
    if len < 0x80 {
        buf[start - 1] = len as u8;
    } else {
        // The varint's first byte goes in the reserved one; the body moves right by the rest.
        let mut prefix = [0u8; 10];
        let mut n = 0;
        let mut v = len as u64;
        while v >= 0x80 {
            prefix[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        prefix[n] = v as u8;
        let end = buf.len();
        buf.resize(end + n, 0);
        buf.copy_within(start..end, start + n);
        buf[start - 1..start + n].copy_from_slice(&prefix[..=n]);
    }
}

fn tag(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(buf, u64::from((field << 3) | wire_type));
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn len_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Scalar fields are left out when they hold their default, as proto3 encoders do.
fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    bytes(buf, field, s.as_bytes());
}

fn bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        tag(buf, field, LEN);
        len_bytes(buf, b);
    }
}

fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(buf, field, VARINT);
        varint(buf, v);
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(buf, field, FIXED64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        tag(buf, field, FIXED32);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry::{Key, StringValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;

    fn context(trace: u128, span: u64, remote: bool, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            remote,
            state.parse::<TraceState>().unwrap(),
        )
    }

    fn span(i: u64, scope: &InstrumentationScope) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + i);
        let mut events = SpanEvents::default();
        let mut links = SpanLinks::default();
        if i.is_multiple_of(3) {
            events.events.push(opentelemetry::trace::Event::new(
                "exception",
                start,
                vec![
                    KeyValue::new("exception.message", "boom"),
                    KeyValue::new("attempt", i as i64),
                ],
                1,
            ));
            events.dropped_count = 2;
            links.links.push(opentelemetry::trace::Link::new(
                context(7, 8, true, "vendor=value"),
                vec![KeyValue::new("link.kind", "follows")],
                3,
            ));
            links.dropped_count = 4;
        }
        SpanData {
            span_context: context(
                0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10 + u128::from(i),
                100 + i,
                false,
                if i.is_multiple_of(2) {
                    ""
                } else {
                    "rojo=00f067aa0ba902b7"
                },
            ),
            parent_span_id: if i.is_multiple_of(4) {
                SpanId::INVALID
            } else {
                SpanId::from(i)
            },
            parent_span_is_remote: i.is_multiple_of(5),
            span_kind: [
                SpanKind::Server,
                SpanKind::Client,
                SpanKind::Internal,
                SpanKind::Producer,
                SpanKind::Consumer,
            ][i as usize % 5]
                .clone(),
            name: Cow::Owned(format!("GET /orders/{i}")),
            start_time: start,
            end_time: start + Duration::from_micros(250),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new(Key::from(format!("owned.key.{}", i % 2)), format!("v{i}")),
                KeyValue::new("http.response.status_code", 200i64 + i as i64),
                KeyValue::new("sampled", i.is_multiple_of(2)),
                KeyValue::new("ratio", 0.25),
                KeyValue::new("zero", 0i64),
                KeyValue::new("negative", -5i64 - i as i64),
                KeyValue::new("", "an empty key"),
                KeyValue::new("empty", ""),
                KeyValue::new("ints", Value::Array(Array::I64(vec![1, -2, 3]))),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("floats", Value::Array(Array::F64(vec![0.5, -1.0]))),
                KeyValue::new(
                    "strings",
                    Value::Array(Array::String(vec![
                        StringValue::from("a"),
                        StringValue::from("b"),
                    ])),
                ),
                // Longer than 127 bytes: its length takes two bytes.
                KeyValue::new("long", "x".repeat(300)),
            ],
            dropped_attributes_count: (i % 2) as u32,
            events,
            links,
            status: match i % 3 {
                0 => Status::error(format!("failed {i}")),
                1 => Status::Ok,
                _ => Status::Unset,
            },
            instrumentation_scope: scope.clone(),
        }
    }

    /// Our bytes decode to exactly the message `opentelemetry-otlp` would have sent.
    fn assert_same_as_opentelemetry_proto(resource: &Resource, spans: Vec<SpanData>) {
        let mut buf = Vec::new();
        encode_trace_request(resource, &spans, &mut buf);
        let ours = ExportTraceServiceRequest::decode(buf.as_slice()).expect("decodes");
        let theirs = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        };
        assert_eq!(ours, theirs);
        // Field for field, including the defaults that neither side writes.
        assert_eq!(buf.len(), theirs.encoded_len());
    }

    #[test]
    fn a_batch_decodes_to_what_opentelemetry_proto_builds() {
        let tracing = InstrumentationScope::builder("tracing-opentelemetry")
            .with_version("0.34.0")
            .build();
        let library = InstrumentationScope::builder("otlp-pool")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("pool.name", "buffers")])
            .build();
        let spans: Vec<SpanData> = (0..300)
            .map(|i| span(i, if i % 7 == 3 { &library } else { &tracing }))
            .collect();
        let resource = Resource::builder_empty()
            .with_schema_url(
                [KeyValue::new("service.name", "checkout")],
                "https://opentelemetry.io/schemas/1.30.0",
            )
            .with_attributes([
                KeyValue::new("service.version", "9.9.9"),
                KeyValue::new("host.cpus", 2i64),
            ])
            .build();
        assert_same_as_opentelemetry_proto(&resource, spans);
    }

    #[test]
    fn one_span_and_an_empty_batch_decode_too() {
        let scope = InstrumentationScope::builder("s").build();
        let resource = Resource::builder_empty().build();
        assert_same_as_opentelemetry_proto(&resource, vec![span(1, &scope)]);
        assert_same_as_opentelemetry_proto(&resource, Vec::new());
        assert_same_as_opentelemetry_proto(&Resource::builder().build(), vec![span(6, &scope)]);
    }

    /// Scopes are told apart by value, not by where their strings live: equal ones made of other strings, or with
    /// their attributes in another order, share one `ScopeSpans`; a different version or attribute does not.
    #[test]
    fn spans_group_by_scope_value() {
        let scope = |name: &str, version: &str, attrs: &[(&'static str, i64)]| {
            InstrumentationScope::builder(name.to_owned())
                .with_version(version.to_owned())
                .with_attributes(attrs.iter().map(|(k, v)| KeyValue::new(*k, *v)))
                .build()
        };
        let statics = InstrumentationScope::builder("lib")
            .with_version("1")
            .build();
        let scopes = [
            statics.clone(),
            scope("lib", "1", &[]),
            statics,
            scope("lib", "2", &[]),
            scope("lib", "1", &[("a", 1), ("b", 2)]),
            scope("lib", "1", &[("b", 2), ("a", 1)]),
            scope("lib", "1", &[("a", 1), ("b", 3)]),
        ];
        let spans: Vec<SpanData> = scopes
            .iter()
            .enumerate()
            .map(|(i, s)| span(i as u64, s))
            .collect();
        let mut buf = Vec::new();
        encode_trace_request(&Resource::builder_empty().build(), &spans, &mut buf);
        let request = ExportTraceServiceRequest::decode(buf.as_slice()).expect("decodes");
        let sizes: Vec<usize> = request.resource_spans[0]
            .scope_spans
            .iter()
            .map(|s| s.spans.len())
            .collect();
        assert_eq!(sizes, [3, 1, 2, 1]);
        assert_same_as_opentelemetry_proto(&Resource::builder_empty().build(), spans);
    }

    #[test]
    fn lengths_of_every_size_are_written_canonically() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 2_097_152] {
            let mut buf = Vec::new();
            message(&mut buf, 1, |buf| buf.resize(buf.len() + len, 7));
            let mut expected = vec![0x0a];
            varint(&mut expected, len as u64);
            assert_eq!(&buf[..expected.len()], expected.as_slice(), "{len}");
            assert_eq!(buf.len(), expected.len() + len, "{len}");
            assert!(buf[expected.len()..].iter().all(|b| *b == 7));
        }
    }
}
