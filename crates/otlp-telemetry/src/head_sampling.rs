//! Head sampling when a root span is created, so that a sampled-out trace costs almost nothing.
//!
//! `tracing-opentelemetry` builds an OpenTelemetry span for every `tracing` span it sees (attributes copied,
//! thread and code location recorded, the sampler asked when the span is first entered) and drops it at the end
//! if the sampler said no: an unsampled request pays nearly as much as a sampled one. [`HeadSampling`] sits in
//! front of that layer and decides when a span is created, from what is known then:
//! - a span whose `tracing` parent was sampled out is sampled out (its trace is);
//! - a span whose parent is sampled goes to the OpenTelemetry layer, which follows the parent;
//! - a root span follows the OpenTelemetry context current when it is created (a remote parent attached by
//!   [`ServerTraceLayer`](crate::tower), or a span of the OpenTelemetry API) when the sampler is parent-based,
//!   and otherwise asks the configured sampler with a new trace id.
//!
//! A sampled-out span never reaches the OpenTelemetry layer: the spans handed to it carry a zero-sized
//! [`Recorded`] marker and a sampled-out one carries none (no allocation, nothing to insert), and its events and
//! recorded fields are not visited. Each thread also lists the sampled-out spans it created lately ([`Recent`]), so
//! that entering, leaving and closing one skips the OpenTelemetry layer without looking the span up. Its trace id,
//! for [`inject_context`](crate::inject_context) to propagate the trace flagged as not sampled, is the remote
//! parent's (kept with the span), or drawn the first time the trace is propagated. A sampled root goes to the
//! OpenTelemetry layer with the trace id and decision already made: [`HeadTracer`] hands the trace id to the SDK
//! through the builder and [`Predecided`] makes the SDK's sampler agree without asking the configured sampler a
//! second time (which would spend a span budget twice, or draw a second ratio decision).
//!
//! Spans of the exporter's own targets (its HTTP and gRPC stacks, see [`excluded`]) are kept from the
//! OpenTelemetry layer here too, and are transparent: a span inside one follows the span around it.
//!
//! Inside a sampled-out trace, [`UnsampledGate`] (in the global log filter, asked first) disables every new span for every
//! layer: `tracing::span!` returns a disabled span, so the registry and the other layers never see it, and a child
//! costs a check of the current span (known without asking the registry when the sampled-out root is the one span
//! entered on the thread). What follows from that:
//! - the root is the only span of a sampled-out trace: [`Span::current()`](tracing::Span::current) inside it is
//!   the root, and the console log (with `OTEL_CONSOLE_LOG=spans`) shows the root as the span of its events;
//! - events inside still reach the fmt layer, and [`inject_context`](crate::inject_context) still propagates the
//!   trace id, flagged as not sampled;
//! - the gate sees only the current span, not a parent given explicitly: a span created with `parent: None` or
//!   `parent: &other` while the current span belongs to a sampled-out trace is disabled too (create a detached
//!   root outside the sampled-out request's scope, e.g. before entering it);
//! - a sampled span entered inside a sampled-out trace (`sampled.in_scope(..)`) is the current span: its children
//!   are created and recorded as usual.
//!
//! A parent set with `OpenTelemetrySpanExt::set_parent` after creation is too late for this decision: make the
//! parent context current (`let _guard = cx.attach();`) while the span is created instead, as
//! [`ServerTraceLayer`](crate::tower) does.

use std::any::TypeId;
use std::borrow::Cow;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::{
    Link, SpanBuilder, SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceId, TraceState,
    Tracer,
};
use opentelemetry::{Context as OtelContext, KeyValue, Value};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, SamplingResult, ShouldSample,
};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::init::excluded;
use crate::sampler::RootSampler;
use crate::tracer_switch::{self, TracerSwitch};

thread_local! {
    /// The trace id of a root sampled by [`HeadSampling`], between its decision and the builder the
    /// OpenTelemetry layer makes for it (the same call, on this thread).
    static PENDING: Cell<Option<TraceId>> = const { Cell::new(None) };
    /// Set while the SDK builds a root decided as sampled: the trace id its id generator hands out, and the
    /// one its sampler records without asking the configured sampler again.
    static PREDECIDED: Cell<Option<TraceId>> = const { Cell::new(None) };
    /// Enters and exits of spans on this thread so far (through a [`HeadSampling`] layer): the registry's current
    /// span changes only with one of them.
    static MOVES: Cell<u64> = const { Cell::new(0) };
    /// Spans entered and not yet exited on this thread, through every [`HeadSampling`] layer: the entries of
    /// their registries' span stacks on this thread, together (`tracing`'s enter guards cannot leave the thread,
    /// so every exit matches an enter here). At 0 no stack has a current span on this thread.
    static ENTERED: Cell<u64> = const { Cell::new(0) };
    /// The current span of a stack on this thread as last known: `(layer key, MOVES then, the current span's id or
    /// 0)`, valid while MOVES has not moved. Set when the gate reads the current span (so that the decision of the
    /// span it let through does not read it again), and by an enter or exit that leaves a known span stack: one
    /// span entered in all (it is current) or none.
    static GATE_SAW: Cell<(u64, u64, u64)> = const { Cell::new((0, 0, 0)) };
    /// What this thread found out about span callsites: see [`Verdicts`].
    static VERDICTS: Verdicts = const {
        Verdicts([const { Cell::new((0, 0, false, false)) }; VERDICT_SLOTS])
    };
    /// The spans this thread sampled out lately: see [`Recent`].
    static RECENT: Recent = const {
        Recent {
            entries: [const { Cell::new((0, 0)) }; RECENT_SPANS],
        }
    };
}

/// What a stack's log filter answered about a span callsite, and whether the callsite's target is the exporter's own
/// ([`excluded`]), per thread, in a direct-mapped table: `(callsite metadata address, stack key, filter's answer,
/// excluded)`. Only for span callsites (whose metadata is `'static`, so an address names one callsite for good)
/// and only for a filter whose answer depends on the callsite alone (no span-scoped directives): then an answer
/// once true is true for good. A miss asks again.
#[derive(Debug)]
pub(crate) struct Verdicts([Cell<(usize, u64, bool, bool)>; VERDICT_SLOTS]);

const VERDICT_SLOTS: usize = 64;

impl Verdicts {
    fn slot(meta: usize, key: u64) -> usize {
        ((meta >> 4) ^ (meta >> 10) ^ key as usize) % VERDICT_SLOTS
    }

    /// The log filter's answer about the span callsite `metadata` for the stack `key`, remembered (`filter` asks).
    pub(crate) fn filter(key: u64, metadata: &Metadata<'_>, filter: impl FnOnce() -> bool) -> bool {
        let meta = metadata as *const Metadata<'_> as usize;
        let slot = Verdicts::slot(meta, key);
        let found = VERDICTS
            .try_with(|v| {
                let (m, k, answer, _) = v.0[slot].get();
                (m == meta && k == key).then_some(answer)
            })
            .ok()
            .flatten();
        if let Some(answer) = found {
            return answer;
        }
        let answer = filter();
        let excluded = excluded(metadata.target());
        let _ = VERDICTS.try_with(|v| v.0[slot].set((meta, key, answer, excluded)));
        answer
    }

    /// Whether the span callsite `metadata` is of one of the exporter's own targets.
    fn excluded(key: u64, metadata: &Metadata<'_>) -> bool {
        let meta = metadata as *const Metadata<'_> as usize;
        let slot = Verdicts::slot(meta, key);
        VERDICTS
            .try_with(|v| {
                let (m, k, _, excluded) = v.0[slot].get();
                (m == meta && k == key).then_some(excluded)
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| excluded(metadata.target()))
    }
}

/// A key for a new stack (its [`HeadSampling`] layer, its log filter): unique, never 0.
pub(crate) fn next_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// Where the next [`HeadSampling`] layer's key comes from: unique per layer, never 0 (an empty entry).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// The ids of the spans this thread sampled out lately, each with the key of the layer that did, so that entering,
/// leaving, recording and closing them skips the OpenTelemetry layer without looking the span up.
///
/// A direct-mapped table: a span's entry is the slot its id picks. An entry stays true while it is listed. A
/// registry hands out the ids of the spans created on a thread from that thread's own slab shard, so a span created
/// later with the same id (the slot reused, its generation wrapped) is created on this thread, through
/// [`HeadSampling::on_new_span`] here, which replaces the entry (the same id picks the same slot); a span closed on
/// another thread leaves an entry that matches no live span until then. A miss (another thread, an entry taken by
/// another span) costs the lookup it saves.
#[derive(Debug)]
struct Recent {
    /// `(layer key, span id)`; `(0, 0)` is empty.
    entries: [Cell<(u64, u64)>; RECENT_SPANS],
}

/// Sampled-out spans remembered per thread: enough for the requests a worker thread interleaves.
const RECENT_SPANS: usize = 16;

impl Recent {
    /// The entry `id` picks. The registry's ids are slab indices (plus one), their low bits the slot's place in
    /// the thread's shard: spans alive together on a thread differ there.
    fn entry<R>(id: &Id, f: impl FnOnce(&Cell<(u64, u64)>) -> R) -> Option<R> {
        let slot = (id.into_u64() as usize) % RECENT_SPANS;
        RECENT.try_with(|r| f(&r.entries[slot])).ok()
    }

    /// Whether `(key, id)` is a sampled-out span created on this thread (a miss says nothing).
    #[inline]
    fn contains(key: u64, id: &Id) -> bool {
        Recent::entry(id, |e| e.get() == (key, id.into_u64())).unwrap_or(false)
    }

    /// Records the span `id` just created on this thread, sampled out or not.
    #[inline]
    fn created(key: u64, id: &Id, sampled_out: bool) {
        let entry = (key, id.into_u64());
        Recent::entry(id, |e| {
            if sampled_out {
                e.set(entry);
            } else if e.get() == entry {
                e.set((0, 0));
            }
        });
    }

    /// Forgets `(key, id)`, closed; whether it was listed.
    #[inline]
    fn closed(key: u64, id: &Id) -> bool {
        let entry = (key, id.into_u64());
        Recent::entry(id, |e| {
            let listed = e.get() == entry;
            if listed {
                e.set((0, 0));
            }
            listed
        })
        .unwrap_or(false)
    }
}

/// Marks a `tracing` span handed to the OpenTelemetry layer. Every span of the registry passes
/// [`HeadSampling::on_new_span`], so a span with neither this nor [`Excluded`] belongs to a sampled-out trace: a
/// sampled-out span costs no marker of its own (zero-sized markers, so no allocation either way).
#[derive(Debug, Clone, Copy)]
struct Recorded;

/// Answers `downcast_ref` on a subscriber with a [`HeadSampling`] layer (whose spans carry its markers).
#[derive(Debug)]
pub(crate) struct HeadSamplingOn;

static HEAD_SAMPLING_ON: HeadSamplingOn = HeadSamplingOn;

/// Marks a span of one of the exporter's own targets ([`excluded`]): never handed to the OpenTelemetry layer, and
/// transparent to head sampling (a span inside it follows the span around it).
#[derive(Debug, Clone, Copy)]
struct Excluded;

/// The trace id of a sampled-out root, for propagation: a remote parent's, or drawn when first propagated.
#[derive(Debug, Clone, Copy)]
struct UnsampledTraceId(TraceId);

/// The configured sampler as [`HeadSampling`] asks it about roots.
#[derive(Debug, Clone)]
pub(crate) struct HeadSampler {
    /// Decides root spans (and, when not parent-based, every span).
    root: Box<dyn ShouldSample>,
    /// The same sampler when it is `init`'s: asked about a root with no parent without building a
    /// `SamplingResult`.
    roots: Option<RootSampler>,
    parent_based: bool,
}

impl HeadSampler {
    #[cfg(test)]
    pub(crate) fn new(root: Box<dyn ShouldSample>, parent_based: bool) -> Self {
        HeadSampler {
            root,
            roots: None,
            parent_based,
        }
    }

    /// `init`'s sampler.
    pub(crate) fn configured(root: RootSampler, parent_based: bool) -> Self {
        HeadSampler {
            root: Box::new(root.clone()),
            roots: Some(root),
            parent_based,
        }
    }

    /// The sampler for the SDK: the same decisions, taking the ones already made by [`HeadSampling`].
    pub(crate) fn sdk_sampler(&self) -> Box<dyn ShouldSample> {
        let predecided = Predecided(self.root.clone());
        if self.parent_based {
            Box::new(opentelemetry_sdk::trace::Sampler::parent_based(predecided))
        } else {
            Box::new(predecided)
        }
    }

    /// The decision for a new root with no parent: its trace id if sampled. `new_id` is called only when the
    /// decision needs a trace id or the trace is recorded.
    fn sample_root(&self, new_id: impl Fn() -> TraceId, name: &str) -> Option<TraceId> {
        if let Some(roots) = &self.roots {
            return roots.sample_new(new_id);
        }
        let trace_id = new_id();
        self.sampled(None, trace_id, name).then_some(trace_id)
    }

    fn sampled(&self, parent: Option<&OtelContext>, trace_id: TraceId, name: &str) -> bool {
        let result = self
            .root
            .should_sample(parent, trace_id, name, &SpanKind::Internal, &[], &[]);
        !matches!(result.decision, SamplingDecision::Drop)
    }
}

/// Takes a decision made by [`HeadSampling`] for the root being built, and asks the configured sampler
/// otherwise (spans started through the OpenTelemetry API directly).
#[derive(Debug, Clone)]
pub(crate) struct Predecided(Box<dyn ShouldSample>);

impl ShouldSample for Predecided {
    fn should_sample(
        &self,
        parent_context: Option<&OtelContext>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if PREDECIDED.get() == Some(trace_id) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// Random ids, except the trace id of a root that [`HeadSampling`] already decided.
#[derive(Debug, Default)]
pub(crate) struct PredecidedIds(RandomIdGenerator);

impl IdGenerator for PredecidedIds {
    fn new_trace_id(&self) -> TraceId {
        PREDECIDED.get().unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

/// The tracer of the current [`TracerSwitch`] state, carrying [`HeadSampling`]'s decision for a root from its
/// creation to the SDK span.
#[derive(Debug, Clone)]
pub(crate) struct HeadTracer(pub(crate) TracerSwitch);

/// Attribute keys that carry a decided root's trace id from its builder to the SDK (removed before the SDK
/// sees the attributes): `SpanBuilder` has no field for it.
const TRACE_ID_HIGH: &str = "otlp_telemetry.head_sampling.trace_id_high";
const TRACE_ID_LOW: &str = "otlp_telemetry.head_sampling.trace_id_low";

/// Room for the OpenTelemetry layer's attributes (fields, code location, thread, target) without growing.
const ATTRIBUTES_CAPACITY: usize = 16;

fn take_trace_id(builder: &mut SpanBuilder) -> Option<TraceId> {
    let attributes = builder.attributes.as_mut()?;
    // Read in place: no copies of the values to drop.
    let id = match attributes.get(..2)? {
        [high, low] if high.key.as_str() == TRACE_ID_HIGH && low.key.as_str() == TRACE_ID_LOW => {
            match (&high.value, &low.value) {
                (Value::I64(high), Value::I64(low)) => Some(TraceId::from(
                    ((*high as u64 as u128) << 64) | *low as u64 as u128,
                )),
                _ => None,
            }
        }
        _ => return None,
    };
    attributes.drain(..2);
    id
}

impl Tracer for HeadTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn span_builder<T>(&self, name: T) -> SpanBuilder
    where
        T: Into<Cow<'static, str>>,
    {
        let mut builder = SpanBuilder::from_name(name);
        if let Some(trace_id) = PENDING.take() {
            let id = u128::from_be_bytes(trace_id.to_bytes());
            let mut attributes = Vec::with_capacity(ATTRIBUTES_CAPACITY);
            attributes.push(KeyValue::new(TRACE_ID_HIGH, (id >> 64) as u64 as i64));
            attributes.push(KeyValue::new(TRACE_ID_LOW, id as u64 as i64));
            builder.attributes = Some(attributes);
        }
        builder
    }

    fn build_with_context(&self, mut builder: SpanBuilder, parent_cx: &OtelContext) -> Self::Span {
        // A parent set after creation (`set_parent`) makes the span a child: the SDK follows the parent.
        let predecided =
            take_trace_id(&mut builder).filter(|_| !parent_cx.span().span_context().is_valid());
        self.0.with(|installed| {
            let Some(installed) = installed else {
                return tracer_switch::off().build_with_context(builder, parent_cx);
            };
            if predecided.is_none() {
                return installed.tracer.build_with_context(builder, parent_cx);
            }
            let previous = PREDECIDED.replace(predecided);
            let span = installed.tracer.build_with_context(builder, parent_cx);
            PREDECIDED.set(previous);
            span
        })
    }
}

/// The layer in front of the OpenTelemetry layer that takes the head-sampling decision when a span is created.
/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct HeadSampling<L> {
    inner: L,
    /// The sampler that decides roots, switched with the tracer behind `inner`.
    switch: TracerSwitch,
    ids: RandomIdGenerator,
    /// This layer's key in [`Recent`].
    key: u64,
}

impl<L> HeadSampling<L> {
    /// `key`: the stack's ([`next_key`]).
    pub(crate) fn new(inner: L, switch: TracerSwitch, key: u64) -> Self {
        HeadSampling {
            inner,
            switch,
            ids: RandomIdGenerator::default(),
            key,
        }
    }

    /// The gate that keeps the spans of the traces this layer samples out from being created.
    pub(crate) fn gate(&self) -> UnsampledGate {
        UnsampledGate { key: self.key }
    }
}

/// What [`HeadSampling`] decided for a new span.
enum Decision {
    /// Hand it to the OpenTelemetry layer; `Some` for a root decided here, with its trace id.
    Record(Option<TraceId>),
    /// A sampled-out root, with its remote parent's trace id if it has one.
    DropRoot(Option<TraceId>),
    /// A span of a sampled-out trace.
    DropChild,
    /// A span of one of the exporter's own targets.
    Exclude,
}

fn unsampled<S>(span: &SpanRef<'_, S>) -> bool
where
    S: for<'a> LookupSpan<'a>,
{
    let extensions = span.extensions();
    extensions.get::<Recorded>().is_none() && extensions.get::<Excluded>().is_none()
}

/// Puts `marker` on the span `id`.
fn mark<S, T>(ctx: &Context<'_, S>, id: &Id, marker: T)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: Send + Sync + 'static,
{
    if let Some(span) = ctx.span(id) {
        span.extensions_mut().insert(marker);
    }
}

fn recorded<S>(span: &SpanRef<'_, S>) -> bool
where
    S: for<'a> LookupSpan<'a>,
{
    span.extensions().get::<Recorded>().is_some()
}

impl<L> HeadSampling<L> {
    /// Decides `span`, just created with `attrs`.
    fn decide<S>(&self, attrs: &Attributes<'_>, ctx: &Context<'_, S>) -> Decision
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if Verdicts::excluded(self.key, attrs.metadata()) {
            return Decision::Exclude;
        }
        // The parent the registry gave the span (the current span, or the explicit one), and from it the nearest
        // span around that is not the exporter's own: the one it follows.
        let parent = if attrs.is_contextual() {
            let (key, moves, current) = GATE_SAW.get();
            if key == self.key && moves == MOVES.get() {
                // No span entered or exited since the gate read the current span.
                (current != 0).then(|| Id::from_u64(current))
            } else {
                ctx.current_span().id().cloned()
            }
        } else {
            attrs.parent().cloned()
        };
        let mut parent = parent.and_then(|id| ctx.span(&id));
        while let Some(p) = &parent {
            if p.extensions().get::<Excluded>().is_none() {
                break;
            }
            parent = p.parent();
        }
        if let Some(parent) = parent {
            // A child follows its parent: a sampled-out trace stays out; a recorded parent is followed by the
            // OpenTelemetry layer and the SDK's sampler.
            return if unsampled(&parent) {
                Decision::DropChild
            } else {
                Decision::Record(None)
            };
        }
        let name = attrs.metadata().name();
        // A root under an OpenTelemetry context (a remote caller's, or a span of the OpenTelemetry API).
        let remote = if attrs.is_contextual() {
            OtelContext::map_current(|cx| {
                let span = cx.span();
                let sc: &SpanContext = span.span_context();
                sc.is_valid().then(|| (sc.trace_id(), sc.is_sampled()))
            })
        } else {
            None
        };
        self.switch.with(|installed| {
            let Some(sampler) = installed.map(|i| &i.sampler) else {
                // Telemetry is off (shut down, not initialized again): nothing is recorded.
                return Decision::DropRoot(remote.map(|r| r.0));
            };
            if let Some((trace_id, parent_sampled)) = remote {
                let sampled = if sampler.parent_based {
                    parent_sampled
                } else {
                    OtelContext::map_current(|cx| sampler.sampled(Some(cx), trace_id, name))
                };
                return if sampled {
                    Decision::Record(None)
                } else {
                    Decision::DropRoot(Some(trace_id))
                };
            }
            // A trace id is drawn when the sampler needs one or the trace is recorded; a sampled-out trace
            // gets one if it is ever propagated.
            match sampler.sample_root(|| self.ids.new_trace_id(), name) {
                Some(trace_id) => Decision::Record(Some(trace_id)),
                None => Decision::DropRoot(None),
            }
        })
    }

    /// Whether `id` went to the OpenTelemetry layer (neither sampled out nor the exporter's own).
    fn is_recorded<S>(id: &Id, ctx: &Context<'_, S>) -> bool
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        ctx.span(id).is_some_and(|span| recorded(&span))
    }
}

impl<S, L> Layer<S> for HeadSampling<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    #[inline]
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let decision = self.decide(attrs, &ctx);
        Recent::created(
            self.key,
            id,
            matches!(decision, Decision::DropRoot(_) | Decision::DropChild),
        );
        // A sampled-out span is left as the registry made it: nothing to look up.
        match decision {
            Decision::Record(trace_id) => {
                mark(&ctx, id, Recorded);
                PENDING.set(trace_id);
                self.inner.on_new_span(attrs, id, ctx);
                PENDING.set(None);
            }
            Decision::DropRoot(Some(trace_id)) => mark(&ctx, id, UnsampledTraceId(trace_id)),
            Decision::DropRoot(None) | Decision::DropChild => {}
            Decision::Exclude => mark(&ctx, id, Excluded),
        }
    }

    #[inline]
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !Recent::contains(self.key, id) && Self::is_recorded(id, &ctx) {
            self.inner.on_record(id, values, ctx);
        }
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The OpenTelemetry layer records events on their span only; an event in a sampled-out span (or in no
        // span), or of the exporter's own, is not visited at all.
        if excluded(event.metadata().target()) {
            return;
        }
        let span = match event.parent() {
            Some(id) => ctx.span(id),
            None if event.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        if span.is_some_and(|span| recorded(&span)) {
            self.inner.on_event(event, ctx);
        }
    }

    // A sampled-out span known to this thread skips the OpenTelemetry layer, which would look it up to find
    // nothing; any other span goes there.
    #[inline]
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let moves = MOVES.get().wrapping_add(1);
        MOVES.set(moves);
        let entered = ENTERED.get() + 1;
        ENTERED.set(entered);
        if entered == 1 {
            // The only span entered on this thread: the current one.
            GATE_SAW.set((self.key, moves, id.into_u64()));
        }
        if !Recent::contains(self.key, id) {
            self.inner.on_enter(id, ctx);
        }
    }

    #[inline]
    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let moves = MOVES.get().wrapping_add(1);
        MOVES.set(moves);
        let entered = ENTERED.get().saturating_sub(1);
        ENTERED.set(entered);
        if entered == 0 {
            GATE_SAW.set((self.key, moves, 0));
        }
        if !Recent::contains(self.key, id) {
            self.inner.on_exit(id, ctx);
        }
    }

    #[inline]
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if !Recent::closed(self.key, &id) {
            self.inner.on_close(id, ctx);
        }
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }

    // SAFETY: forwards to the inner layer, whose pointers are valid for the lifetime of `&self` (ours is
    // `self` itself).
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        if id == TypeId::of::<HeadSamplingOn>() {
            return Some(&HEAD_SAMPLING_ON as *const HeadSamplingOn as *const ());
        }
        // SAFETY: the inner layer lives as long as `self`.
        unsafe { self.inner.downcast_raw(id) }
    }
}

/// Disables, for every layer, a span created while the current span belongs to a sampled-out trace: see the
/// [module docs](self). The global log filter asks it first, so that a child of a sampled-out trace costs a
/// lookup of the current span, not a registry slot and every layer's callbacks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnsampledGate {
    /// The key of the [`HeadSampling`] layer whose decisions it follows.
    key: u64,
}

impl UnsampledGate {
    /// The interest in a callsite given the log filter's: a span the filter may enable is asked about each time
    /// (its fate depends on the current span); what the filter disables stays disabled for good (a `debug_span!`
    /// at `info` costs nothing more), and events are left as they are.
    pub(crate) fn interest(
        self,
        metadata: &'static Metadata<'static>,
        filter: tracing::subscriber::Interest,
    ) -> tracing::subscriber::Interest {
        if metadata.is_span() && !filter.is_never() {
            tracing::subscriber::Interest::sometimes()
        } else {
            filter
        }
    }

    /// Whether a span (or event) may be created now: no span while the current span belongs to a sampled-out
    /// trace.
    #[inline]
    pub(crate) fn allows<S>(self, metadata: &Metadata<'_>, ctx: &Context<'_, S>) -> bool
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if !metadata.is_span() {
            return true;
        }
        let moves = MOVES.get();
        let (key, saw_moves, saw) = GATE_SAW.get();
        let current = if key == self.key && saw_moves == moves {
            // No span entered or exited since this stack's current span was last known.
            saw
        } else if ENTERED.get() == 0 {
            0
        } else {
            ctx.current_span().id().map_or(0, Id::into_u64)
        };
        if current == 0 {
            GATE_SAW.set((self.key, moves, 0));
            return true;
        }
        let id = Id::from_u64(current);
        let allowed =
            !Recent::contains(self.key, &id) && !ctx.span(&id).is_some_and(|span| unsampled(&span));
        if allowed {
            GATE_SAW.set((self.key, moves, current));
        }
        allowed
    }
}

/// The context of the current `tracing` span when it was sampled out: its trace, flagged as not sampled, so
/// that a downstream service does not start a trace of its own.
pub(crate) fn unsampled_context(span: &tracing::Span) -> Option<OtelContext> {
    let id = span.id()?;
    let trace_id = tracing::dispatcher::get_default(|dispatch| {
        // Only head sampling's spans carry its markers.
        dispatch.downcast_ref::<HeadSamplingOn>()?;
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(&id)?;
        // The root of a sampled-out trace (its outermost marked span) carries its trace id, or gets one now (under
        // the extensions' lock, so that every propagation of the trace agrees).
        let root = span.scope().filter(|s| unsampled(s)).last()?;
        let mut extensions = root.extensions_mut();
        if let Some(id) = extensions.get_mut::<UnsampledTraceId>() {
            return Some(id.0);
        }
        let trace_id = RandomIdGenerator::default().new_trace_id();
        extensions.insert(UnsampledTraceId(trace_id));
        Some(trace_id)
    })?;
    let sc = SpanContext::new(
        trace_id,
        RandomIdGenerator::default().new_span_id(),
        opentelemetry::trace::TraceFlags::default(),
        true,
        TraceState::default(),
    );
    Some(OtelContext::current().with_remote_span_context(sc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule that keeps the per-thread list true: a span created with a listed id replaces the entry (the id
    /// came round again in its slot), entries are per layer, and a closed span is forgotten.
    #[test]
    fn recent_sampled_out_spans_follow_creation_and_close() {
        let (a, b) = (next_key(), next_key());
        let id = Id::from_u64(7);
        Recent::created(a, &id, true);
        assert!(Recent::contains(a, &id));
        assert!(!Recent::contains(b, &id), "another layer's span 7");
        Recent::created(a, &id, false);
        assert!(!Recent::contains(a, &id), "a recorded span reusing id 7");
        Recent::created(a, &id, true);
        Recent::closed(a, &id);
        assert!(!Recent::contains(a, &id));
        // Older entries make room for newer ones: a miss, never a wrong answer.
        for n in 1..=RECENT_SPANS as u64 + 1 {
            Recent::created(a, &Id::from_u64(n), true);
        }
        assert!(!Recent::contains(a, &Id::from_u64(1)));
        assert!((2..=RECENT_SPANS as u64 + 1).all(|n| Recent::contains(a, &Id::from_u64(n))));
        // Other threads keep lists of their own.
        assert!(
            !std::thread::spawn(move || Recent::contains(a, &Id::from_u64(2)))
                .join()
                .unwrap()
        );
    }
}
