//! A pipeline: stages with their own concurrency, joined by bounded queues.
//!
//! ```text
//! input stream ─▶ [queue ≤ capacity] ─▶ stage "parse" (≤ k₁ at once) ─▶ [queue] ─▶ stage "enrich" (≤ k₂) ─▶ output
//! ```
//!
//! Build it once with [`Pipeline::builder`] and a stage per step, each `f` taking the previous stage's item and
//! returning a future of the next (it may change the item type): [`.stage(name, concurrency, f)`](PipelineBuilder::stage)
//! when `f` cannot fail, [`.stage_fallible(..)`](PipelineBuilder::stage_fallible) when it returns `Result<Next, E>`
//! (every fallible stage has the same `E`). Then feed it any [`Stream`] with [`Pipeline::run`], which returns a
//! `Stream` of `Result<Out, PipelineError<E>>` (`E` is `Infallible` when no stage can fail).
//!
//! * **Bounded memory**: each stage pulls from the stage before it only while its input queue (`capacity`, 16 by
//!   default) has room, so a slow stage slows its producers instead of growing memory. A run holds at most
//!   `Σ (capacity + concurrencyᵢ)` items, even when the last stage stalls.
//! * **Order**: outputs come in input order by default (each stage keeps order, however its items complete);
//!   [`unordered`](PipelineBuilder::unordered) lets each item go as soon as it is done.
//! * **Errors**: an item whose stage fails (or panics: the panic is caught) skips the later stages. With
//!   [`ErrorPolicy::Stop`] (the default) it is yielded as `Err` and the run stops: the items in flight are yielded
//!   as [`PipelineError::Cancelled`] and the stream ends. With [`ErrorPolicy::Skip`] it is counted (`outcome` =
//!   `error` or `panic`), logged at debug level and left out of the output; the run goes on.
//! * **Tracing**: each run is a debug-level `pipeline.run` span (attribute `pipeline.name`), entered while the
//!   output stream is polled, so spans the stages open are its children.
//! * **Cancellation**: when the [`parent`](PipelineBuilder::parent) token is cancelled, every stage stops and
//!   every item in flight is yielded as [`PipelineError::Cancelled`] before the stream ends. Dropping the stream
//!   drops everything in flight (counted as cancelled).
//!
//! A run is one stream polled by the task that consumes it: the stages' futures run concurrently (like
//! `buffered`), not in parallel, and nothing is spawned, so nothing can leak. For CPU-heavy stages, spawn inside
//! the stage function (for example onto a [`WorkerPool`](crate::WorkerPool)).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use otlp_patterns::Pipeline;
//!
//! let pipeline = Pipeline::builder("logs")
//!     .stage_fallible("parse", 4, |line: &'static str| async move {
//!         line.trim().parse::<u32>().map_err(|e| e.to_string())
//!     })
//!     .stage("double", 2, |n| async move { n * 2 })
//!     .capacity(8)
//!     .build()?;
//!
//! let out: Vec<_> = pipeline.run(futures_util::stream::iter([" 1", "2 ", "3"])).collect().await;
//! assert_eq!(out, vec![Ok(2), Ok(4), Ok(6)]);
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, FuturesUnordered, Stream};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{Attributes, Observations, Recorder, Registration};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::catch::CatchPanic;
use crate::outcome::OutcomeCounters;
use crate::sync::{AtomicU64, Ordering};
use crate::telemetry::{self, OutcomeAttributes, SCOPE, secs};
use crate::{BuildError, Outcome};

/// Default capacity of the queue in front of each stage.
pub const DEFAULT_CAPACITY: usize = 16;

/// Why an item did not come out of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineError<E> {
    /// A stage returned this error.
    Failed {
        /// The stage's name.
        stage: Arc<str>,
        /// The stage's error.
        error: E,
    },
    /// A stage panicked (caught).
    Panicked {
        /// The stage's name.
        stage: Arc<str>,
        /// The panic message.
        message: String,
    },
    /// The run was stopped (error policy `Stop`, or the parent token) while the item was in flight.
    Cancelled,
}

impl<E> PipelineError<E> {
    /// The outcome this error is counted as.
    pub fn outcome(&self) -> Outcome {
        match self {
            PipelineError::Failed { .. } => Outcome::Error,
            PipelineError::Panicked { .. } => Outcome::Panic,
            PipelineError::Cancelled => Outcome::Cancelled,
        }
    }
}

impl<E: fmt::Display> fmt::Display for PipelineError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Failed { stage, error } => {
                write!(f, "pipeline stage {stage:?} failed: {error}")
            }
            PipelineError::Panicked { stage, message } => {
                write!(f, "pipeline stage {stage:?} panicked: {message}")
            }
            PipelineError::Cancelled => {
                f.write_str("pipeline run stopped while the item was in flight")
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PipelineError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipelineError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What a run does when an item fails or panics in a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Yield the error, then stop: items in flight are yielded as cancelled and the stream ends.
    #[default]
    Stop,
    /// Count the item (`error` or `panic`), log it at debug level, leave it out of the output and go on.
    Skip,
}

type Slot<T, E> = Result<T, PipelineError<E>>;

/// Per-stage metric state.
#[derive(Debug)]
struct StageMeta {
    name: Arc<str>,
    concurrency: usize,
    /// `pipeline.name` and `pipeline.stage.name`, built once.
    attrs: Attributes,
    /// `pipeline.stage.duration` with `attrs`.
    duration: Recorder,
    queued: AtomicU64,
}

/// State shared by a pipeline and its runs; the registry holds it as the source of the pipeline's counts
/// (keeping them once the pipeline is gone), and the stages record their durations through its link.
#[derive(Debug)]
struct Shared {
    name: String,
    counts: OutcomeCounters,
    stages: Vec<StageMeta>,
    link: Registration,
    outcome_attrs: OutcomeAttributes,
}

impl otlp_core::instruments::Source for Shared {
    fn observe(&self, out: &mut Observations<'_>) {
        self.outcome_attrs
            .observe(out, telemetry::PIPELINE_ITEMS, || self.counts.snapshot());
        for stage in &self.stages {
            out.observe(
                telemetry::PIPELINE_QUEUE_SIZE,
                stage.queued.load(Ordering::Relaxed),
                &stage.attrs,
            );
        }
    }
}

/// One stage's function and place. The function is `FnMut`, shared by the runs of the pipeline: it is called
/// under this lock, which is held only while it makes the item's future (never across an `.await`).
#[doc(hidden)]
#[derive(Debug)]
pub struct StageDef<F> {
    index: usize,
    f: std::sync::Mutex<F>,
}

/// Calls a stage's function. A panic in an earlier call (while it made a future) poisons nothing that matters:
/// the function's own state is whatever that call left.
fn call_stage<F: StageFn<In, E>, In, E>(f: &std::sync::Mutex<F>, item: In) -> F::Fut {
    let mut f = f.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f.call(item)
}

/// A stage's function as the chain calls it: one item in, a future of `Result<Next, E>` out, for the pipeline's
/// error type `E`.
#[doc(hidden)]
pub trait StageFn<In, E> {
    /// The stage's output item.
    type Next;
    /// The future of one item.
    type Fut: Future<Output = Result<Self::Next, E>>;
    /// Makes the future of `item`.
    fn call(&mut self, item: In) -> Self::Fut;
}

/// A stage function whose futures return `Result` ([`PipelineBuilder::stage_fallible`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct Fallible<F>(F);

impl<F, In, Fut, Next, E> StageFn<In, E> for Fallible<F>
where
    F: FnMut(In) -> Fut,
    Fut: Future<Output = Result<Next, E>>,
{
    type Next = Next;
    type Fut = Fut;
    fn call(&mut self, item: In) -> Fut {
        (self.0)(item)
    }
}

/// A stage function whose futures cannot fail ([`PipelineBuilder::stage`]): it fits a pipeline of any error type.
#[doc(hidden)]
#[derive(Debug)]
pub struct Plain<F>(F);

impl<F, In, Fut, E> StageFn<In, E> for Plain<F>
where
    F: FnMut(In) -> Fut,
    Fut: Future,
{
    type Next = Fut::Output;
    type Fut = Succeeds<Fut, E>;
    fn call(&mut self, item: In) -> Self::Fut {
        Succeeds {
            fut: (self.0)(item),
            _err: PhantomData,
        }
    }
}

pin_project! {
    /// A future that cannot fail, as one returning `Result<_, E>`.
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct Succeeds<Fut, E> {
        #[pin]
        fut: Fut,
        _err: PhantomData<fn() -> E>,
    }
}

impl<Fut: Future, E> Future for Succeeds<Fut, E> {
    type Output = Result<Fut::Output, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().fut.poll(cx).map(Ok)
    }
}

/// The error type of a pipeline's stages, as the builder knows it: [`NoErrors`] until a fallible stage is added,
/// then [`ErrorsOf<E>`] for that stage's `E`.
#[doc(hidden)]
pub trait Errors {
    /// The pipeline's error type: `Infallible` when no stage can fail.
    type Error;
}

/// No stage of the pipeline can fail (yet).
#[doc(hidden)]
#[derive(Debug)]
pub enum NoErrors {}

/// The stages fail with `E`.
#[doc(hidden)]
#[derive(Debug)]
pub struct ErrorsOf<E>(PhantomData<fn() -> E>);

impl Errors for NoErrors {
    type Error = std::convert::Infallible;
}

impl<E> Errors for ErrorsOf<E> {
    type Error = E;
}

/// Adding a stage that fails with `E`: the first fallible stage sets the pipeline's error type, the next ones
/// must have the same.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "every fallible stage of a pipeline returns the same error type, and this one is `{E}`",
    label = "an earlier `stage_fallible` returned another error type",
    note = "map the error (`.map_err(..)`) to the type of the first fallible stage"
)]
pub trait Join<E> {
    /// The errors once the stage is added.
    type Joined: Errors<Error = E>;
}

impl<E> Join<E> for NoErrors {
    type Joined = ErrorsOf<E>;
}

impl<E> Join<E> for ErrorsOf<E> {
    type Joined = ErrorsOf<E>;
}

/// The empty chain of stages.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

/// A chain of stages followed by one more.
#[doc(hidden)]
#[derive(Debug)]
pub struct Chain<P, F> {
    prev: P,
    stage: Arc<StageDef<F>>,
}

/// Run-time settings a stage needs.
#[doc(hidden)]
#[derive(Debug)]
pub struct RunCtx {
    shared: Arc<Shared>,
    capacity: usize,
    ordered: bool,
}

/// A chain of stages turning a stream of `Slot<In, E>` into a stream of `Slot<Out, E>`.
#[doc(hidden)]
pub trait Stages<In, E> {
    /// The item type coming out of the last stage.
    type Out;
    /// The stream the chain makes of an input stream.
    type Stream<S>: Stream<Item = Slot<Self::Out, E>>
    where
        S: Stream<Item = Slot<In, E>>;
    /// Attaches the chain to `input`.
    fn attach<S>(&self, input: S, ctx: &RunCtx) -> Self::Stream<S>
    where
        S: Stream<Item = Slot<In, E>>;
}

impl<In, E> Stages<In, E> for Identity {
    type Out = In;
    type Stream<S>
        = S
    where
        S: Stream<Item = Slot<In, E>>;

    fn attach<S>(&self, input: S, _ctx: &RunCtx) -> S
    where
        S: Stream<Item = Slot<In, E>>,
    {
        input
    }
}

impl<In, E, P, F> Stages<In, E> for Chain<P, F>
where
    P: Stages<In, E>,
    F: StageFn<P::Out, E>,
{
    type Out = F::Next;
    type Stream<S>
        = StageStream<P::Stream<S>, F, F::Fut, P::Out, E>
    where
        S: Stream<Item = Slot<In, E>>;

    fn attach<S>(&self, input: S, ctx: &RunCtx) -> Self::Stream<S>
    where
        S: Stream<Item = Slot<In, E>>,
    {
        let upstream = self.prev.attach(input, ctx);
        let concurrency = ctx
            .shared
            .stages
            .get(self.stage.index)
            .map_or(1, |m| m.concurrency);
        let many = if concurrency == 1 {
            Many::None
        } else if ctx.ordered {
            Many::Ordered(FuturesOrdered::new())
        } else {
            Many::Unordered(FuturesUnordered::new())
        };
        StageStream {
            upstream,
            up_done: false,
            stage: Arc::clone(&self.stage),
            shared: Arc::clone(&ctx.shared),
            capacity: ctx.capacity,
            concurrency,
            queue: VecDeque::with_capacity(ctx.capacity),
            single: None,
            many,
        }
    }
}

/// Configures a [`Pipeline`]; see [`Pipeline::builder`].
pub struct PipelineBuilder<In, Out, E, C> {
    name: String,
    capacity: usize,
    ordered: bool,
    policy: ErrorPolicy,
    parent: Option<CancellationToken>,
    meter: Option<Meter>,
    stages: C,
    metas: Vec<(Arc<str>, usize)>,
    _types: PhantomData<fn(In) -> (Out, E)>,
}

impl<In, Out, E, C: fmt::Debug> fmt::Debug for PipelineBuilder<In, Out, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("ordered", &self.ordered)
            .field("policy", &self.policy)
            .field("stages", &self.metas)
            .finish_non_exhaustive()
    }
}

impl<In, Out, E, C> PipelineBuilder<In, Out, E, C> {
    /// Appends a stage named `name` running `f` on at most `concurrency` items at once (0 is an error at
    /// [`build`](Self::build)). `f` gets the previous stage's output and returns a future of the next item: a
    /// stage that cannot fail (for one that can, see [`stage_fallible`](Self::stage_fallible)). It may be `FnMut`
    /// (a counter, a cache): the runs of the pipeline share it, one call at a time.
    pub fn stage<F, Fut>(
        self,
        name: impl Into<String>,
        concurrency: usize,
        f: F,
    ) -> PipelineBuilder<In, Fut::Output, E, Chain<C, Plain<F>>>
    where
        F: FnMut(Out) -> Fut,
        Fut: Future,
    {
        self.push(name, concurrency, Plain(f))
    }

    /// Appends a stage that may fail: `f` returns a future of `Result<Next, Err>`, and an `Err` is the item's
    /// [`PipelineError::Failed`] (counted as `error`), handled by the [`ErrorPolicy`]. Every fallible stage of a
    /// pipeline has the same error type, the pipeline's. Otherwise like [`stage`](Self::stage).
    pub fn stage_fallible<F, Fut, Next, Err>(
        self,
        name: impl Into<String>,
        concurrency: usize,
        f: F,
    ) -> PipelineBuilder<In, Next, E::Joined, Chain<C, Fallible<F>>>
    where
        F: FnMut(Out) -> Fut,
        Fut: Future<Output = Result<Next, Err>>,
        E: Join<Err>,
    {
        self.push(name, concurrency, Fallible(f))
    }

    fn push<G, Next, E2>(
        mut self,
        name: impl Into<String>,
        concurrency: usize,
        f: G,
    ) -> PipelineBuilder<In, Next, E2, Chain<C, G>> {
        let index = self.metas.len();
        self.metas.push((Arc::from(name.into()), concurrency));
        PipelineBuilder {
            name: self.name,
            capacity: self.capacity,
            ordered: self.ordered,
            policy: self.policy,
            parent: self.parent,
            meter: self.meter,
            stages: Chain {
                prev: self.stages,
                stage: Arc::new(StageDef {
                    index,
                    f: std::sync::Mutex::new(f),
                }),
            },
            metas: self.metas,
            _types: PhantomData,
        }
    }

    /// Capacity of the queue in front of each stage (default [`DEFAULT_CAPACITY`]). 0 is an error.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Lets items overtake each other: each stage passes an item on as soon as it is done.
    pub fn unordered(mut self) -> Self {
        self.ordered = false;
        self
    }

    /// What a run does when an item fails (default [`ErrorPolicy::Stop`]).
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Stops every run when `token` is cancelled (items in flight are yielded as cancelled).
    pub fn parent(mut self, token: CancellationToken) -> Self {
        self.parent = Some(token);
        self
    }

    /// Gives the instruments to `meter` instead of the process-wide registry of scope `otlp-patterns`, which
    /// follows the global meter provider (for tests and loom models): they report while this owner lives.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Validates the configuration and registers the instruments.
    pub fn build(self) -> Result<Pipeline<In, Out, E::Error, C>, BuildError>
    where
        E: Errors,
    {
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if let Some((name, _)) = self.metas.iter().find(|(_, k)| *k == 0) {
            return Err(BuildError::ZeroConcurrency {
                what: format!("pipeline {:?} stage {name:?}", self.name),
            });
        }
        let link = SCOPE.link(self.meter);
        let stages = self
            .metas
            .iter()
            .map(|(stage, k)| {
                let attrs = Attributes::new(vec![
                    KeyValue::new("pipeline.name", self.name.clone()),
                    KeyValue::new("pipeline.stage.name", stage.to_string()),
                ]);
                StageMeta {
                    name: Arc::clone(stage),
                    concurrency: *k,
                    duration: link.recorder(telemetry::PIPELINE_STAGE, &attrs),
                    attrs,
                    queued: AtomicU64::new(0),
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            counts: OutcomeCounters::new(),
            stages,
            link,
            outcome_attrs: OutcomeAttributes::new(
                &[KeyValue::new("pipeline.name", self.name.clone())],
                &Outcome::ITEM,
            ),
            name: self.name,
        });
        shared.link.add(shared.clone());
        Ok(Pipeline {
            shared,
            stages: self.stages,
            capacity: self.capacity,
            ordered: self.ordered,
            policy: self.policy,
            parent: self.parent,
            _types: PhantomData,
        })
    }
}

/// A counter snapshot of a pipeline ([`Pipeline::stats`]); once no run is active,
/// `submitted = ok + failed + panicked + cancelled`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Items taken from inputs.
    pub submitted: u64,
    /// Items that came out of the last stage.
    pub ok: u64,
    /// Items a stage failed.
    pub failed: u64,
    /// Items a stage panicked on.
    pub panicked: u64,
    /// Items in flight when a run stopped or was dropped.
    pub cancelled: u64,
    /// Items waiting in stage queues now (all runs).
    pub queued: u64,
}

/// Stages joined by bounded queues; see the [module docs](self).
pub struct Pipeline<In, Out, E, C> {
    shared: Arc<Shared>,
    stages: C,
    capacity: usize,
    ordered: bool,
    policy: ErrorPolicy,
    parent: Option<CancellationToken>,
    _types: PhantomData<fn(In) -> (Out, E)>,
}

impl<In, Out, E, C> fmt::Debug for Pipeline<In, Out, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stages: Vec<(&str, usize)> = self
            .shared
            .stages
            .iter()
            .map(|s| (&*s.name, s.concurrency))
            .collect();
        f.debug_struct("Pipeline")
            .field("name", &self.shared.name)
            .field("stages", &stages)
            .field("capacity", &self.capacity)
            .field("ordered", &self.ordered)
            .field("policy", &self.policy)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pipeline<(), (), (), Identity> {
    /// A builder for a pipeline named `name` (the `pipeline.name` attribute), with no stage yet. Its error type
    /// is that of its fallible stages ([`PipelineBuilder::stage_fallible`]), `Infallible` if it has none.
    pub fn builder<In>(name: impl Into<String>) -> PipelineBuilder<In, In, NoErrors, Identity> {
        PipelineBuilder {
            name: name.into(),
            capacity: DEFAULT_CAPACITY,
            ordered: true,
            policy: ErrorPolicy::default(),
            parent: None,
            meter: None,
            stages: Identity,
            metas: Vec::new(),
            _types: PhantomData,
        }
    }
}

impl<In, Out, E, C> Pipeline<In, Out, E, C> {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A snapshot of the counters (all runs).
    pub fn stats(&self) -> PipelineStats {
        self.shared.link.follow();
        let [ok, error, panic, timeout, cancelled, rejected] = self.shared.counts.snapshot();
        PipelineStats {
            submitted: ok + error + panic + timeout + cancelled + rejected,
            ok,
            failed: error,
            panicked: panic,
            cancelled,
            queued: self
                .shared
                .stages
                .iter()
                .map(|s| s.queued.load(Ordering::Relaxed))
                .sum(),
        }
    }
}

impl<In, Out, E, C> Pipeline<In, Out, E, C>
where
    C: Stages<In, E, Out = Out>,
{
    /// Feeds `input` through the stages; the returned stream yields one result per item (except items skipped
    /// under [`ErrorPolicy::Skip`]). Nothing runs until the stream is polled. Several runs may be active at once.
    pub fn run<S>(&self, input: S) -> PipelineRun<C::Stream<Source<S, E>>, E>
    where
        S: Stream<Item = In>,
    {
        // Once per run: cheap enough to catch up with a provider installed since.
        self.shared.link.follow();
        let pulled = Arc::new(AtomicU64::new(0));
        let ctx = RunCtx {
            shared: Arc::clone(&self.shared),
            capacity: self.capacity,
            ordered: self.ordered,
        };
        let source = Source {
            input,
            pulled: Arc::clone(&pulled),
            _err: PhantomData,
        };
        PipelineRun {
            span: tracing::debug_span!("pipeline.run", pipeline.name = %self.shared.name),
            inner: Some(Box::pin(self.stages.attach(source, &ctx))),
            shared: ctx.shared,
            pulled,
            finished: 0,
            to_cancel: 0,
            stopping: false,
            cancelled: self
                .parent
                .as_ref()
                .map(|t| Box::pin(t.clone().cancelled_owned())),
            policy: self.policy,
            _err: PhantomData,
        }
    }
}

pin_project! {
    /// The input of a run: counts the items taken.
    #[doc(hidden)]
    pub struct Source<S, E> {
        #[pin]
        input: S,
        pulled: Arc<AtomicU64>,
        _err: PhantomData<fn() -> E>,
    }
}

impl<S: fmt::Debug, E> fmt::Debug for Source<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl<S: Stream, E> Stream for Source<S, E> {
    type Item = Slot<S::Item, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        match this.input.poll_next(cx) {
            Poll::Ready(Some(item)) => {
                this.pulled.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Some(Ok(item)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a stage future produced.
#[doc(hidden)]
#[derive(Debug)]
pub enum StageDone<O, E> {
    /// The stage function ran (or panicked) and took this long.
    Ran(Result<O, String>, Duration),
    /// An earlier stage's error, passed on.
    Passed(PipelineError<E>),
}

pin_project! {
    /// One item in a stage: either running the stage function, or an earlier failure passing through in order.
    #[doc(hidden)]
    #[project = StageFutProj]
    pub enum StageFut<Fut, E> {
        Run { #[pin] fut: CatchPanic<Fut>, start: Instant },
        Pass { err: Option<PipelineError<E>> },
    }
}

impl<Fut: Future, E> Future for StageFut<Fut, E> {
    type Output = StageDone<Fut::Output, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            StageFutProj::Run { fut, start } => match fut.poll(cx) {
                Poll::Ready(out) => Poll::Ready(StageDone::Ran(out, start.elapsed())),
                Poll::Pending => Poll::Pending,
            },
            StageFutProj::Pass { err } => Poll::Ready(StageDone::Passed(
                err.take().unwrap_or(PipelineError::Cancelled),
            )),
        }
    }
}

/// The running items of a stage with a concurrency above 1.
#[doc(hidden)]
pub enum Many<G: Future> {
    /// Concurrency 1: the single slot is used instead.
    None,
    /// Kept in order.
    Ordered(FuturesOrdered<G>),
    /// As they finish.
    Unordered(FuturesUnordered<G>),
}

impl<G: Future> fmt::Debug for Many<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Many::None => f.write_str("Single"),
            Many::Ordered(m) => write!(f, "Ordered({})", m.len()),
            Many::Unordered(m) => write!(f, "Unordered({})", m.len()),
        }
    }
}

pin_project! {
    /// One stage of a run: its input queue and its running items.
    #[doc(hidden)]
    pub struct StageStream<S, F, Fut: Future, In, E> {
        #[pin]
        upstream: S,
        up_done: bool,
        stage: Arc<StageDef<F>>,
        shared: Arc<Shared>,
        capacity: usize,
        concurrency: usize,
        queue: VecDeque<Slot<In, E>>,
        #[pin]
        single: Option<StageFut<Fut, E>>,
        many: Many<StageFut<Fut, E>>,
    }

    impl<S, F, Fut: Future, In, E> PinnedDrop for StageStream<S, F, Fut, In, E> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(meta) = this.shared.stages.get(this.stage.index) {
                meta.queued.fetch_sub(this.queue.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

impl<S, F, Fut: Future, In, E> fmt::Debug for StageStream<S, F, Fut, In, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageStream")
            .field("stage", &self.stage.index)
            .field("queued", &self.queue.len())
            .field("many", &self.many)
            .finish_non_exhaustive()
    }
}

impl<S, F, Fut, In, Next, E> Stream for StageStream<S, F, Fut, In, E>
where
    S: Stream<Item = Slot<In, E>>,
    F: StageFn<In, E, Fut = Fut, Next = Next>,
    Fut: Future<Output = Result<Next, E>>,
{
    type Item = Slot<Next, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let meta = this.shared.stages.get(this.stage.index);
        loop {
            // Pull from upstream while our queue has room.
            while !*this.up_done && this.queue.len() < *this.capacity {
                match this.upstream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(item)) => {
                        this.queue.push_back(item);
                        if let Some(m) = meta {
                            m.queued.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Poll::Ready(None) => *this.up_done = true,
                    Poll::Pending => break,
                }
            }
            // Start queued items while we have room to run them.
            let mut started = false;
            loop {
                let running = match this.many {
                    Many::None => usize::from(this.single.is_some()),
                    Many::Ordered(m) => m.len(),
                    Many::Unordered(m) => m.len(),
                };
                if running >= *this.concurrency {
                    break;
                }
                let Some(item) = this.queue.pop_front() else {
                    break;
                };
                if let Some(m) = meta {
                    m.queued.fetch_sub(1, Ordering::Relaxed);
                }
                let fut = match item {
                    Ok(v) => StageFut::Run {
                        fut: CatchPanic::new(call_stage(&this.stage.f, v)),
                        start: Instant::now(),
                    },
                    Err(e) => StageFut::Pass { err: Some(e) },
                };
                match this.many {
                    Many::None => this.single.set(Some(fut)),
                    Many::Ordered(m) => m.push_back(fut),
                    Many::Unordered(m) => m.push(fut),
                }
                started = true;
            }
            if !started || *this.up_done {
                break;
            }
        }
        let done = match this.many {
            Many::None => match this.single.as_mut().as_pin_mut() {
                Some(fut) => match fut.poll(cx) {
                    Poll::Ready(done) => {
                        this.single.set(None);
                        Poll::Ready(Some(done))
                    }
                    Poll::Pending => Poll::Pending,
                },
                None => Poll::Ready(None),
            },
            Many::Ordered(m) => Pin::new(m).poll_next(cx),
            Many::Unordered(m) => Pin::new(m).poll_next(cx),
        };
        match done {
            Poll::Ready(Some(done)) => {
                let stage = || meta.map_or_else(|| Arc::from("?"), |m| Arc::clone(&m.name));
                let out = match done {
                    StageDone::Ran(out, took) => {
                        if let Some(m) = meta {
                            m.duration.record(secs(took));
                        }
                        match out {
                            Ok(Ok(v)) => Ok(v),
                            Ok(Err(error)) => Err(PipelineError::Failed {
                                stage: stage(),
                                error,
                            }),
                            Err(message) => Err(PipelineError::Panicked {
                                stage: stage(),
                                message,
                            }),
                        }
                    }
                    StageDone::Passed(e) => Err(e),
                };
                Poll::Ready(Some(out))
            }
            // Nothing running: done if nothing can come any more.
            Poll::Ready(None) if *this.up_done && this.queue.is_empty() => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

pin_project! {
    /// The output of [`Pipeline::run`]: a `Stream` of `Result<Out, PipelineError<E>>`.
    ///
    /// Dropping it drops every item in flight; they are counted as cancelled. It is `Unpin` (the stages live in
    /// one box per run), so `run.next().await` works without pinning.
    pub struct PipelineRun<C, E> {
        // Entered while the run is polled: spans the stages' items open are its children.
        span: tracing::Span,
        inner: Option<Pin<Box<C>>>,
        shared: Arc<Shared>,
        pulled: Arc<AtomicU64>,
        finished: u64,
        to_cancel: u64,
        stopping: bool,
        cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        policy: ErrorPolicy,
        _err: PhantomData<fn() -> E>,
    }

    impl<C, E> PinnedDrop for PipelineRun<C, E> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let left = this.pulled.load(Ordering::Relaxed).saturating_sub(*this.finished);
            if left > 0 {
                this.shared.counts.add(Outcome::Cancelled, left);
            }
        }
    }
}

impl<C, E> fmt::Debug for PipelineRun<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineRun")
            .field("pipeline", &self.shared.name)
            .field("pulled", &self.pulled.load(Ordering::Relaxed))
            .field("finished", &self.finished)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

impl<C, Out, E> PipelineRun<C, E>
where
    C: Stream<Item = Slot<Out, E>>,
{
    /// Drops every stage and arranges for the items in flight to be yielded as cancelled.
    fn stop(self: Pin<&mut Self>) {
        let this = self.project();
        *this.inner = None;
        *this.stopping = true;
        *this.to_cancel = this
            .pulled
            .load(Ordering::Relaxed)
            .saturating_sub(*this.finished);
    }
}

impl<C, Out, E> Stream for PipelineRun<C, E>
where
    C: Stream<Item = Slot<Out, E>>,
{
    type Item = Slot<Out, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Moved out while entered (no reference count touched), so that the run stays mutably borrowable.
        let span = std::mem::replace(self.as_mut().project().span, tracing::Span::none());
        let polled = span.in_scope(|| self.as_mut().poll_run(cx));
        *self.as_mut().project().span = span;
        polled
    }
}

impl<C, Out, E> PipelineRun<C, E>
where
    C: Stream<Item = Slot<Out, E>>,
{
    fn poll_run(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Slot<Out, E>>> {
        loop {
            if !self.stopping
                && let Some(c) = self.as_mut().project().cancelled.as_mut()
                && c.as_mut().poll(cx).is_ready()
            {
                self.as_mut().stop();
            }
            let this = self.as_mut().project();
            if *this.stopping {
                if *this.to_cancel == 0 {
                    return Poll::Ready(None);
                }
                *this.to_cancel -= 1;
                *this.finished += 1;
                this.shared.counts.add(Outcome::Cancelled, 1);
                return Poll::Ready(Some(Err(PipelineError::Cancelled)));
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let item = match inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => item,
                Poll::Ready(None) => {
                    *this.inner = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            };
            *this.finished += 1;
            let outcome = match &item {
                Ok(_) => Outcome::Ok,
                Err(e) => e.outcome(),
            };
            this.shared.counts.add(outcome, 1);
            match (&item, *this.policy) {
                (Ok(_), _) | (Err(PipelineError::Cancelled), _) => return Poll::Ready(Some(item)),
                (Err(e), ErrorPolicy::Skip) => {
                    tracing::debug!(pipeline = %this.shared.name, outcome = %e.outcome(), "pipeline item skipped");
                    continue;
                }
                (Err(_), ErrorPolicy::Stop) => {
                    self.as_mut().stop();
                    return Poll::Ready(Some(item));
                }
            }
        }
    }
}
