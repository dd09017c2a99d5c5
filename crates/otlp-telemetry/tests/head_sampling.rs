//! Head sampling at root creation: a sampled-out trace skips the OpenTelemetry layer, root and children; a
//! sampled trace keeps its links; a remote parent's sampled flag is followed.

mod common;

use common::{Counted, traced_request as request};
use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use otlp_telemetry::stack::TracingStack;
use otlp_telemetry::{
    TelemetryConfig, TraceRatioHandle, TraceSampler, extract_context, inject_context,
};

fn build(sampler: TraceSampler) -> (TracingStack, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let config = TelemetryConfig::new()
        .fmt_output(false)
        .log_filter("trace")
        .trace_sampler(sampler);
    let stack = TracingStack::with_exporter(&config, exporter.clone()).unwrap();
    (stack, exporter)
}

/// A stack at trace ratio `ratio`, and the handle that changes it.
fn with_ratio(ratio: f64) -> (TracingStack, InMemorySpanExporter, TraceRatioHandle) {
    let (stack, exporter) = build(TraceSampler::ParentBasedTraceIdRatio(ratio));
    let handle = stack.trace_ratio_handle();
    (stack, exporter, handle)
}

fn finished(stack: &TracingStack, exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    stack.provider().force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

#[test]
fn an_unsampled_trace_exports_nothing_and_its_fields_are_never_visited() {
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOff);
    let formatted = Counted::default();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        for _ in 0..10 {
            request("request", &formatted);
        }
    });
    assert!(finished(&stack, &exporter).is_empty());
    assert_eq!(
        formatted.take(),
        0,
        "the OpenTelemetry layer formatted fields of sampled-out spans"
    );
}

#[test]
fn a_sampled_trace_keeps_parent_child_links() {
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOn);
    let formatted = Counted::default();
    tracing::dispatcher::with_default(stack.dispatch(), || request("request", &formatted));
    let spans = finished(&stack, &exporter);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let root = spans.iter().find(|s| s.name == "request").unwrap();
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    let children: Vec<_> = spans.iter().filter(|s| s.name == "step").collect();
    assert_eq!(children.len(), 3);
    for child in children {
        assert_eq!(child.span_context.trace_id(), root.span_context.trace_id());
        assert_eq!(child.parent_span_id, root.span_context.span_id());
        assert_eq!(child.events.len(), 1, "the event is recorded on its span");
    }
}

#[test]
fn the_ratio_decides_whole_traces() {
    let (stack, exporter) = build(TraceSampler::ParentBasedTraceIdRatio(0.5));
    let formatted = Counted::default();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        for _ in 0..400 {
            request("request", &formatted);
        }
    });
    let spans = finished(&stack, &exporter);
    let roots: Vec<TraceId> = spans
        .iter()
        .filter(|s| s.name == "request")
        .map(|s| s.span_context.trace_id())
        .collect();
    // 200 expected; 120..280 is more than 8 standard deviations wide.
    assert!((120..280).contains(&roots.len()), "{} roots", roots.len());
    // No trace is cut in half: every sampled root has its 3 children, and no child is orphaned.
    assert_eq!(spans.len(), roots.len() * 4);
    for s in spans.iter().filter(|s| s.name == "step") {
        assert!(roots.contains(&s.span_context.trace_id()));
    }
}

const SAMPLED_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

fn headers(traceparent: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("traceparent", traceparent.parse().unwrap());
    h
}

/// A server span created while the caller's context is current, then a child, then an outgoing call.
fn serve(incoming: &http::HeaderMap) -> String {
    let span = {
        let _parent = extract_context(incoming).attach();
        tracing::info_span!("server", otel.kind = "server")
    };
    let _entered = span.enter();
    let child = tracing::info_span!("db");
    let _child = child.enter();
    let mut outgoing = http::HeaderMap::new();
    inject_context(&mut outgoing);
    outgoing["traceparent"].to_str().unwrap().to_owned()
}

#[test]
fn a_remote_parents_sampled_flag_is_followed() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let caller = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();

    // Sampled caller, no root sampled locally: the trace is recorded.
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOff);
    let out =
        tracing::dispatcher::with_default(stack.dispatch(), || serve(&headers(SAMPLED_PARENT)));
    let spans = finished(&stack, &exporter);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = spans.iter().find(|s| s.name == "server").unwrap();
    assert_eq!(server.span_context.trace_id(), caller);
    assert_eq!(
        server.parent_span_id,
        SpanId::from_hex("00f067aa0ba902b7").unwrap()
    );
    assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && out.ends_with("-01"));

    // Unsampled caller, every root sampled locally: nothing is recorded, and the outgoing call carries the
    // caller's trace, still not sampled.
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOn);
    let out =
        tracing::dispatcher::with_default(stack.dispatch(), || serve(&headers(UNSAMPLED_PARENT)));
    assert!(finished(&stack, &exporter).is_empty());
    assert!(
        out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && out.ends_with("-00"),
        "{out}"
    );
    assert!(
        !out.contains("00f067aa0ba902b7"),
        "a span id of our own: {out}"
    );
}

#[test]
fn a_sampled_out_root_still_propagates_its_trace() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (stack, _exporter) = build(TraceSampler::ParentBasedAlwaysOff);
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let root = tracing::info_span!("root");
        let _root = root.enter();
        let mut first = http::HeaderMap::new();
        inject_context(&mut first);
        let child = tracing::info_span!("child");
        let _child = child.enter();
        let mut second = http::HeaderMap::new();
        inject_context(&mut second);
        let (a, b) = (
            first["traceparent"].to_str().unwrap(),
            second["traceparent"].to_str().unwrap(),
        );
        assert!(a.ends_with("-00") && b.ends_with("-00"), "{a} {b}");
        assert_eq!(a[3..35], b[3..35], "root and child are one trace");
        let cx = extract_context(&first);
        assert!(cx.span().span_context().is_valid());
    });
}

/// A disabled `tracing` span is one the subscriber never created: no layer's `on_new_span`, no registry slot.
fn created(span: &tracing::Span) -> bool {
    !span.is_disabled()
}

#[test]
fn children_of_a_sampled_out_trace_are_never_created() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOff);
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let root = tracing::info_span!("root");
        assert!(
            created(&root),
            "the root carries the trace id it propagates"
        );
        let _root = root.enter();
        let mut from_root = http::HeaderMap::new();
        inject_context(&mut from_root);
        for _ in 0..3 {
            let child = tracing::info_span!("child", step = 1);
            assert!(
                !created(&child),
                "a child of a sampled-out trace reached the subscriber"
            );
            let _child = child.enter();
            assert_eq!(
                tracing::Span::current().id(),
                root.id(),
                "the root stays current"
            );
            let grandchild = tracing::debug_span!("grandchild");
            assert!(!created(&grandchild));
            let explicit = tracing::info_span!(parent: &root, "explicit");
            assert!(!created(&explicit));
            // The trace still propagates from inside, flagged not sampled.
            let mut from_child = http::HeaderMap::new();
            inject_context(&mut from_child);
            assert_eq!(
                from_child["traceparent"].to_str().unwrap()[..36],
                from_root["traceparent"].to_str().unwrap()[..36]
            );
            assert!(from_child["traceparent"].to_str().unwrap().ends_with("-00"));
        }
    });
    assert!(finished(&stack, &exporter).is_empty());
}

#[test]
fn children_of_a_sampled_trace_are_created_and_linked() {
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOn);
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let root = tracing::info_span!("root");
        let _root = root.enter();
        let child = tracing::info_span!("child");
        assert!(created(&child));
        let _child = child.enter();
        let grandchild = tracing::info_span!("grandchild");
        assert!(created(&grandchild));
    });
    let spans = finished(&stack, &exporter);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    let (root, child, grandchild) = (by_name("root"), by_name("child"), by_name("grandchild"));
    assert_eq!(child.parent_span_id, root.span_context.span_id());
    assert_eq!(grandchild.parent_span_id, child.span_context.span_id());
    assert_eq!(
        grandchild.span_context.trace_id(),
        root.span_context.trace_id()
    );
}

#[test]
fn a_remote_sampled_out_parent_keeps_children_out() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOn);
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let server = {
            let _parent = extract_context(&headers(UNSAMPLED_PARENT)).attach();
            tracing::info_span!("server", otel.kind = "server")
        };
        assert!(created(&server));
        let _server = server.enter();
        let db = tracing::info_span!("db");
        assert!(
            !created(&db),
            "a child of a remote sampled-out parent was created"
        );
        let _db = db.enter();
        let mut outgoing = http::HeaderMap::new();
        inject_context(&mut outgoing);
        let out = outgoing["traceparent"].to_str().unwrap();
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && out.ends_with("-00"),
            "{out}"
        );
    });
    assert!(finished(&stack, &exporter).is_empty());
}

#[test]
fn a_sampled_span_entered_inside_a_sampled_out_trace_keeps_its_children() {
    let exporter = InMemorySpanExporter::default();
    let config = TelemetryConfig::new()
        .fmt_output(false)
        .trace_sampler(TraceSampler::ParentBasedTraceIdRatio(1.0));
    let stack = TracingStack::with_exporter(&config, exporter.clone()).unwrap();
    let ratio = stack.trace_ratio_handle();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let sampled = tracing::info_span!("sampled");
        ratio.set_ratio(0.0).unwrap();
        let unsampled = tracing::info_span!("unsampled");
        let _unsampled = unsampled.enter();
        assert!(!created(&tracing::info_span!("out")));
        sampled.in_scope(|| {
            let child = tracing::info_span!("child");
            assert!(
                created(&child),
                "the current span is sampled: its child is recorded"
            );
        });
        assert!(!created(&tracing::info_span!("out again")));
    });
    let spans = finished(&stack, &exporter);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let sampled = spans.iter().find(|s| s.name == "sampled").unwrap();
    let child = spans.iter().find(|s| s.name == "child").unwrap();
    assert_eq!(child.parent_span_id, sampled.span_context.span_id());
}

#[test]
fn a_root_admitted_by_the_span_budget_keeps_all_its_children() {
    let (stack, exporter) = build(TraceSampler::ParentBasedRateLimited(1));
    let formatted = Counted::default();
    tracing::dispatcher::with_default(stack.dispatch(), || {
        // One root a second: the first is recorded whole, the others (in the same second) not at all.
        for _ in 0..5 {
            request("request", &formatted);
        }
    });
    let spans = finished(&stack, &exporter);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let root = spans.iter().find(|s| s.name == "request").unwrap();
    for child in spans.iter().filter(|s| s.name == "step") {
        assert_eq!(child.parent_span_id, root.span_context.span_id());
    }
}

/// A span given a sampled-out parent explicitly, outside the parent's scope, passes the gate (which sees only the
/// current span) but is still sampled out with its trace, and propagates the trace's id.
#[test]
fn an_explicit_child_of_a_sampled_out_root_follows_its_trace() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOff);
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let root = tracing::info_span!("root");
        let from_root = root.in_scope(outgoing_traceparent);
        let explicit = tracing::info_span!(parent: &root, "explicit");
        assert!(created(&explicit));
        let from_explicit = explicit.in_scope(outgoing_traceparent);
        assert_eq!(from_explicit[..36], from_root[..36], "one trace");
        assert!(from_explicit.ends_with("-00"), "{from_explicit}");
        // Inside it, children are kept out like the root's.
        explicit.in_scope(|| assert!(!created(&tracing::info_span!("grandchild"))));
    });
    assert!(finished(&stack, &exporter).is_empty());
}

/// The `traceparent` an outgoing call made now would carry.
fn outgoing_traceparent() -> String {
    let mut h = http::HeaderMap::new();
    inject_context(&mut h);
    h["traceparent"].to_str().unwrap().to_owned()
}

/// Each stack keeps its own sampled-out spans apart: a fresh registry hands out the same first ids, and a span
/// of one stack sharing its id with a sampled-out span of another on the same thread is still recorded whole.
#[test]
fn a_span_with_the_id_of_another_stacks_sampled_out_span_is_recorded() {
    let (unsampled, _) = build(TraceSampler::ParentBasedAlwaysOff);
    let (sampled, exporter) = build(TraceSampler::ParentBasedAlwaysOn);
    let out =
        tracing::dispatcher::with_default(unsampled.dispatch(), || tracing::info_span!("out"));
    let kept =
        tracing::dispatcher::with_default(sampled.dispatch(), || tracing::info_span!("kept"));
    assert_eq!(out.id(), kept.id(), "the two registries' first ids differ");
    tracing::dispatcher::with_default(sampled.dispatch(), || {
        kept.in_scope(|| tracing::info!("inside"));
    });
    drop(kept);
    drop(out);
    let spans = finished(&sampled, &exporter);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].name, "kept");
    assert_eq!(spans[0].events.len(), 1, "entered, its event recorded");
}

/// A sampled-out request polled and closed on another thread than the one that created it keeps its children out
/// there too, and the spans created after it in its slot (a reused slot, a new id) are recorded whole.
#[test]
fn a_sampled_out_span_moved_to_another_thread_keeps_its_trace_out_and_its_slot_is_reused() {
    let (stack, exporter, ratio) = with_ratio(0.0);
    let dispatch = stack.dispatch().clone();
    let kept = tracing::dispatcher::with_default(stack.dispatch(), || {
        let out = tracing::info_span!("out");
        let out_id = out.id().expect("created");
        out.in_scope(|| assert!(!created(&tracing::info_span!("child"))));
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                out.in_scope(|| assert!(!created(&tracing::info_span!("child elsewhere"))));
            })
        })
        .join()
        .unwrap();
        ratio.set_ratio(1.0).unwrap();
        // Enough spans alive at once to take every free slot of the registry's first page, `out`'s among them.
        let kept: Vec<tracing::Span> = (0..64).map(|_| tracing::info_span!("kept")).collect();
        assert!(
            kept.iter()
                .all(|s| s.id().is_some() && s.id() != Some(out_id.clone()))
        );
        for span in &kept {
            span.in_scope(|| tracing::info!("inside"));
        }
        kept.len()
    });
    let spans = finished(&stack, &exporter);
    assert_eq!(
        spans.len(),
        kept,
        "every span after the sampled-out one recorded"
    );
    assert!(
        spans
            .iter()
            .all(|s| s.name == "kept" && s.events.len() == 1)
    );
}

/// The exporter's own spans (its HTTP and gRPC stacks, its error reports) never reach the OpenTelemetry layer; a
/// span inside one follows the span around it, as if it were not there.
#[test]
fn the_exporters_own_spans_are_left_out_and_spans_inside_follow_the_span_around() {
    let (stack, exporter) = build(TraceSampler::ParentBasedAlwaysOn);
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let request = tracing::info_span!("request");
        let _request = request.enter();
        let h2 = tracing::info_span!(target: "h2::proto", "poll");
        assert!(created(&h2), "the console log may still see it");
        let _h2 = h2.enter();
        let _inner = tracing::info_span!("inner").entered();
        // Outside any span: the exporter's own root, and a span inside it that starts a trace of its own.
        drop((_inner, _h2, _request));
        let _own = tracing::info_span!(target: "opentelemetry_otlp", "export").entered();
        let _after = tracing::info_span!("after").entered();
    });
    let spans = finished(&stack, &exporter);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    let (request, inner, after) = (by_name("request"), by_name("inner"), by_name("after"));
    assert_eq!(inner.parent_span_id, request.span_context.span_id());
    assert_eq!(
        inner.span_context.trace_id(),
        request.span_context.trace_id()
    );
    assert_eq!(after.parent_span_id, SpanId::INVALID);
}

/// A span follows the span current when it is created, even when its own fields' expressions change which span that
/// is (after the gate looked): here one enters a sampled-out root inside a sampled trace.
#[test]
fn a_span_follows_the_current_span_its_fields_made_current() {
    let (stack, exporter, ratio) = with_ratio(0.0);
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let out = tracing::info_span!("out");
        ratio.set_ratio(1.0).unwrap();
        let kept = tracing::info_span!("kept");
        let _kept = kept.enter();
        let inner = tracing::info_span!(
            "inner",
            field = {
                std::mem::forget(out.enter());
                1
            }
        );
        assert!(created(&inner), "the gate had let it through");
        drop(inner);
        tracing::dispatcher::get_default(|d| d.exit(&out.id().unwrap()));
    });
    let spans = finished(&stack, &exporter);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        ["kept"],
        "a child of the sampled-out root was recorded"
    );
}

/// Two stacks' spans entered on one thread, nested: each stack follows its own current span, whatever the other
/// entered (a fresh registry hands out the same first ids, so a span id alone says nothing about the stack).
#[test]
fn spans_of_two_stacks_nested_on_one_thread_each_follow_their_own_current_span() {
    let (out, out_exporter) = build(TraceSampler::ParentBasedAlwaysOff);
    let (kept, kept_exporter) = build(TraceSampler::ParentBasedAlwaysOn);
    tracing::dispatcher::with_default(out.dispatch(), || {
        let root = tracing::info_span!("out root");
        let _root = root.enter();
        tracing::dispatcher::with_default(kept.dispatch(), || {
            let inner_root = tracing::info_span!("kept root");
            assert!(created(&inner_root));
            inner_root.in_scope(|| assert!(created(&tracing::info_span!("kept child"))));
            assert!(
                created(&tracing::info_span!("kept second root")),
                "the other stack's entered span is not this one's"
            );
        });
        assert!(
            !created(&tracing::info_span!("out child")),
            "back in the sampled-out trace"
        );
    });
    assert!(finished(&out, &out_exporter).is_empty());
    let spans = finished(&kept, &kept_exporter);
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["kept child", "kept root", "kept second root"]);
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    assert_eq!(
        by_name("kept child").parent_span_id,
        by_name("kept root").span_context.span_id()
    );
    assert_eq!(by_name("kept second root").parent_span_id, SpanId::INVALID);
}

/// A span entered again while it is entered does not become current again (the registry keeps the span entered
/// in between as current): a sampled span entered inside a sampled-out root, then the root re-entered, still
/// has its children recorded.
#[test]
fn re_entering_an_entered_span_leaves_the_current_span_as_it_was() {
    let (stack, exporter, ratio) = with_ratio(1.0);
    tracing::dispatcher::with_default(stack.dispatch(), || {
        let sampled = tracing::info_span!("sampled");
        ratio.set_ratio(0.0).unwrap();
        let unsampled = tracing::info_span!("unsampled");
        let _unsampled = unsampled.enter();
        let _sampled = sampled.enter();
        let _again = unsampled.enter();
        assert_eq!(tracing::Span::current().id(), sampled.id());
        assert!(created(&tracing::info_span!("child")));
    });
    let spans = finished(&stack, &exporter);
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert_eq!(
        by_name("child").parent_span_id,
        by_name("sampled").span_context.span_id()
    );
}
