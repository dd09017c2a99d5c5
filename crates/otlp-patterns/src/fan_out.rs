//! Fan-out / fan-in: run one async function over many items with bounded concurrency, and gather the results.
//!
//! A [`FanOut`] is a long-lived, named runner (build it once, use it for many calls). Its concurrency `k` is per
//! call, like `buffer_unordered(k)`: each [`run`](FanOut::run) has at most `k` items in flight, however many calls
//! run at once. To bound the items of all calls together (a downstream that takes `n` requests in all), pass an
//! [`otlp_sync::Semaphore`] with [`FanOutBuilder::shared_limit`]: each item then also holds one of its permits, and
//! the semaphore's own metrics (`semaphore.*`) show how long calls waited for a slot.
//!
//! With a shared limit, [`run`](FanOut::run) hands the permit of a finished item straight to its next item, so the
//! semaphore counts permits taken (at most `k` per call while nobody else waits), not items; when another call is
//! waiting on the semaphore, a finished item's permit goes back to it instead, so concurrent calls share the slots
//! in turn. ([`run_unordered`](FanOut::run_unordered) gives a finished item's permit back as it yields the result,
//! since its consumer may pause before it asks for more.) Closing the shared semaphore stops calls from taking new
//! permits: items in flight finish, and items that then find no permit are reported as [`TaskError::Cancelled`].
//!
//! * [`run`](FanOut::run) takes a function whose items cannot fail, and returns one result per item (the value,
//!   or why there is none: a panic, a cancellation), **in input order** whatever the completion order, in a vector
//!   allocated once. [`run_fallible`](FanOut::run_fallible) takes a function returning `Result<T, E>`; an `Err` is
//!   kept as [`TaskError::Failed`] and counted as `error`. Every error is kept ([`FanOutResults::into_result`] joins them, like Go's
//!   `errors.Join`). In fail-fast mode the first error (or panic) cancels the rest: each item is still returned,
//!   as done, failed or [`TaskError::Cancelled`].
//! * [`run_unordered`](FanOut::run_unordered) (and [`run_unordered_fallible`](FanOut::run_unordered_fallible))
//!   stream `(index, result)` pairs as items finish.
//!
//! Items run as futures polled by the caller's task (no spawning), so `f` may borrow from the caller and items need
//! not be `Send` or `'static`; for CPU-heavy items, spawn inside `f`. A panicking item is caught and reported as
//! [`TaskError::Panicked`]. At most `k` item futures exist at a time: items are pulled from the input lazily.
//! The first item in flight is polled in place, so an item that finishes on its first poll (a cache hit, say)
//! costs no allocation. A call with at most 8 items in flight (its concurrency, or fewer when its input's
//! `size_hint` says it has fewer items) polls each of them on each of its polls, like `join_all`, so it takes no
//! more polls than `join_all` whatever order the runtime delivers the wake-ups in; a wider call keeps the others
//! in a `FuturesUnordered`, which polls only the items that were woken. A call that
//! handles 1024 items in one poll yields to its runtime before it goes on.
//!
//! Tracing: each call runs in a debug-level `fan_out.run` span (attribute `fan_out.name`), a child of the span
//! current when the call was made; spans the items open are its children.
//!
//! Cancel-safety: dropping a `run` future (or the stream) drops the items in flight; they and the started items are
//! counted as `cancelled`, so the `fan_out.tasks` counter still adds up.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use otlp_patterns::FanOut;
//!
//! let fetch = FanOut::builder("fetch").concurrency(8).build()?; // at most 8 in flight per call
//!
//! // Items that cannot fail: the values in input order.
//! let doubled = fetch.run(1..=3u64, |id| async move { id * 2 }).await.into_result()?;
//! assert_eq!(doubled, vec![2, 4, 6]);
//!
//! // Items that can fail: every error is kept.
//! let results = fetch
//!     .run_fallible(1..=5u64, |id| async move {
//!         if id == 4 { Err(format!("user {id} not found")) } else { Ok(id * 10) }
//!     })
//!     .await;
//! assert_eq!(results.len(), 5);
//! let err = results.into_result().unwrap_err();
//! assert_eq!(err.to_string(), "1 of 5 items failed: item 3: task failed: user 4 not found");
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, Stream};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{Attributes, Observations, Recorder, Registration, Source};
use pin_project_lite::pin_project;

use crate::catch::CatchPanic;
use crate::outcome::OutcomeCounters;
use crate::task::Infallibly;
use crate::telemetry::{self, Mark, OutcomeAttributes, SCOPE, Stopwatch};
use crate::{BuildError, Outcome, TaskError};

/// Configures a [`FanOut`]; see [`FanOut::builder`].
#[derive(Debug, Clone)]
pub struct FanOutBuilder {
    name: String,
    concurrency: usize,
    fail_fast: bool,
    shared: Option<otlp_sync::Semaphore>,
    meter: Option<Meter>,
}

impl FanOutBuilder {
    /// At most `k` items of one call run at once, like `buffer_unordered(k)` (default: the available parallelism).
    /// Calls do not share it: two calls may have `2k` items in flight (see [`shared_limit`](Self::shared_limit)).
    /// 0 is an error (it would hang, like `buffer_unordered(0)`).
    pub fn concurrency(mut self, k: usize) -> Self {
        self.concurrency = k;
        self
    }

    /// Stop at the first error or panic: items in flight are dropped and the rest are not started; all are
    /// returned as [`TaskError::Cancelled`] (default: off, every item runs and every error is kept).
    pub fn fail_fast(mut self, on: bool) -> Self {
        self.fail_fast = on;
        self
    }

    /// Also bounds the items of all calls together: each item holds one permit of `semaphore` while it runs, so at
    /// most `semaphore.limit()` items are in flight across every call (and every other user of the semaphore).
    pub fn shared_limit(mut self, semaphore: otlp_sync::Semaphore) -> Self {
        self.shared = Some(semaphore);
        self
    }

    /// Gives the instruments to `meter` instead of the process-wide registry of scope `otlp-patterns`, which
    /// follows the global meter provider (for tests and loom models): they report while this owner lives.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Validates the configuration and registers the instruments.
    pub fn build(self) -> Result<FanOut, BuildError> {
        if self.concurrency == 0 {
            return Err(BuildError::ZeroConcurrency {
                what: format!("fan-out {:?}", self.name),
            });
        }
        let attrs = [KeyValue::new("fan_out.name", self.name.clone())];
        let link = SCOPE.link(self.meter);
        let run = link.recorder(telemetry::FAN_OUT_RUN, &Attributes::new(attrs.to_vec()));
        let shared = Arc::new(Shared {
            counts: OutcomeCounters::new(),
            clock: Stopwatch::new(),
            link,
            run,
            outcome_attrs: OutcomeAttributes::new(&attrs, &Outcome::ITEM),
        });
        shared.link.add(shared.clone());
        Ok(FanOut {
            name: self.name,
            concurrency: self.concurrency,
            fail_fast: self.fail_fast,
            sem: self.shared,
            shared,
        })
    }
}

/// Runs one async function over many items with bounded concurrency; see the [module docs](self).
pub struct FanOut {
    name: String,
    concurrency: usize,
    fail_fast: bool,
    /// The limit shared by every call, when the builder was given one.
    sem: Option<otlp_sync::Semaphore>,
    shared: Arc<Shared>,
}

/// The counters, the clock and the link to the scope's instruments; the registry holds it as the source of the
/// fan-out's counts (keeping them once the fan-out is gone), and calls record item durations through it.
struct Shared {
    counts: OutcomeCounters,
    clock: Stopwatch,
    link: Registration,
    /// `fan_out.task.duration` with `fan_out.name`, built once.
    run: Recorder,
    outcome_attrs: OutcomeAttributes,
}

impl Source for Shared {
    fn observe(&self, out: &mut Observations<'_>) {
        self.outcome_attrs
            .observe(out, telemetry::FAN_OUT_TASKS, || self.counts.snapshot());
    }
}

impl fmt::Debug for FanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .field("fail_fast", &self.fail_fast)
            .field("shared_limit", &self.sem)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A snapshot of a fan-out's counters ([`FanOut::stats`]); `submitted` is the sum of the outcomes once no call is
/// running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOutStats {
    /// Items taken from the inputs.
    pub submitted: u64,
    /// Items that returned `Ok`.
    pub ok: u64,
    /// Items that returned `Err`.
    pub failed: u64,
    /// Items that panicked.
    pub panicked: u64,
    /// Items cancelled (fail-fast, or the call was dropped).
    pub cancelled: u64,
}

impl FanOut {
    /// A builder for a fan-out named `name` (the `fan_out.name` attribute).
    pub fn builder(name: impl Into<String>) -> FanOutBuilder {
        FanOutBuilder {
            name: name.into(),
            concurrency: std::thread::available_parallelism().map_or(1, usize::from),
            fail_fast: false,
            shared: None,
            meter: None,
        }
    }

    /// A fan-out named `name` running at most `concurrency` items at once per call.
    pub fn new(name: impl Into<String>, concurrency: usize) -> Result<FanOut, BuildError> {
        FanOut::builder(name).concurrency(concurrency).build()
    }

    /// The fan-out's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most items of one call running at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The semaphore bounding the items of all calls together, if the builder was given one
    /// ([`FanOutBuilder::shared_limit`]).
    pub fn shared_limit(&self) -> Option<&otlp_sync::Semaphore> {
        self.sem.as_ref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FanOutStats {
        self.shared.link.follow();
        let [ok, error, panic, timeout, cancelled, rejected] = self.shared.counts.snapshot();
        FanOutStats {
            submitted: ok + error + panic + timeout + cancelled + rejected,
            ok,
            failed: error,
            panicked: panic,
            cancelled,
        }
    }

    /// Runs `f` on every item, at most `concurrency` at once, and returns one result per item in input order:
    /// its value, or [`TaskError::Panicked`] / [`TaskError::Cancelled`]. For items that can fail, see
    /// [`run_fallible`](Self::run_fallible).
    ///
    /// Cancel-safe in the sense of the module docs: dropping the future drops the items in flight and counts them.
    pub async fn run<I, F, Fut>(&self, items: I, mut f: F) -> FanOutResults<Fut::Output>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future,
    {
        self.run_fallible(items, move |item| Infallibly::new(f(item)))
            .await
    }

    /// Runs `f`, which may fail, on every item, at most `concurrency` at once, and returns one result per item in
    /// input order; an `Err` is kept as [`TaskError::Failed`] (and counted as `error`).
    ///
    /// Cancel-safe in the sense of the module docs: dropping the future drops the items in flight and counts them.
    pub async fn run_fallible<I, F, Fut, T, E>(&self, items: I, f: F) -> FanOutResults<T, E>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let items = items.into_iter();
        let mut results: Vec<Result<T, TaskError<E>>> = Vec::with_capacity(items.size_hint().0);
        let mut stream = std::pin::pin!(self.stream(items, f));
        // Every item taken from the input is reported exactly once (done, failed or cancelled), straight into its
        // slot.
        let mut store = |index: usize, result| {
            if index == results.len() {
                // In input order (the usual case): no placeholder to write first.
                results.push(result);
                return true;
            }
            if index > results.len() {
                results.resize_with(index + 1, || Err(TaskError::Cancelled));
            }
            if let Some(slot) = results.get_mut(index) {
                *slot = result;
            }
            true
        };
        std::future::poll_fn(|cx| stream.as_mut().poll_drive(cx, &mut store)).await;
        FanOutResults { items: results }
    }

    /// Runs `f` on every item, at most `concurrency` at once, and yields `(index, result)` as items finish.
    ///
    /// Every item taken from the input is yielded exactly once; in fail-fast mode, after the first panic the items
    /// in flight and the rest of the input are yielded as [`TaskError::Cancelled`] (the rest of the input is
    /// consumed, without calling `f`). Dropping the stream drops the items in flight (counted as cancelled).
    ///
    /// The stream holds an item future in place, so it is not `Unpin`: pin it (`std::pin::pin!` or `Box::pin`) to
    /// call `next()` on it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures::StreamExt;
    /// use otlp_patterns::FanOut;
    ///
    /// let fan = FanOut::new("probe", 2)?;
    /// let mut done = std::pin::pin!(fan.run_unordered(["a", "b", "c"], |host| async move { host.len() }));
    /// let mut seen = Vec::new();
    /// while let Some((index, result)) = done.next().await {
    ///     seen.push((index, result?));
    /// }
    /// seen.sort();
    /// assert_eq!(seen, vec![(0, 1), (1, 1), (2, 1)]);
    /// # Ok(()) }
    /// ```
    pub fn run_unordered<'a, I, F, Fut>(
        &'a self,
        items: I,
        mut f: F,
    ) -> impl Stream<Item = (usize, Result<Fut::Output, TaskError>)> + 'a
    where
        I: IntoIterator,
        I::IntoIter: 'a,
        F: FnMut(I::Item) -> Fut + 'a,
        Fut: Future + 'a,
    {
        self.stream(items.into_iter(), move |item| Infallibly::new(f(item)))
    }

    /// [`run_unordered`](Self::run_unordered) for a function that may fail: an `Err` is yielded as
    /// [`TaskError::Failed`] (in fail-fast mode, it stops the run like a panic).
    pub fn run_unordered_fallible<'a, I, F, Fut, T, E>(
        &'a self,
        items: I,
        f: F,
    ) -> impl Stream<Item = (usize, Result<T, TaskError<E>>)> + 'a
    where
        I: IntoIterator,
        I::IntoIter: 'a,
        F: FnMut(I::Item) -> Fut + 'a,
        Fut: Future<Output = Result<T, E>> + 'a,
        T: 'a,
        E: 'a,
    {
        self.stream(items.into_iter(), f)
    }

    fn stream<'a, I, F, Fut, T, E>(&'a self, items: I, f: F) -> FanOutStream<'a, I, F, Fut>
    where
        I: Iterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        FanOutStream {
            owner: self,
            span: tracing::debug_span!("fan_out.run", fan_out.name = %self.name),
            items,
            f,
            exhausted: false,
            inline: None,
            few: Few::default(),
            rest: Rest::default(),
            others: 0,
            width: 0,
            permits: Permits::default(),
            acquiring: None,
            cancelled: VecDeque::new(),
            next_index: 0,
            stopped: false,
            tally: Tally {
                counts: &self.shared.counts,
                pending: [0; 6],
                started: 0,
                finished: 0,
            },
        }
    }
}

pin_project! {
    /// A running item: its index, when it started, and its future.
    struct Running<G> {
        index: usize,
        start: Mark,
        #[pin]
        fut: CatchPanic<G>,
    }
}

/// A finished item, before it is counted.
struct Finished<V> {
    index: usize,
    start: Mark,
    out: Result<V, String>,
}

impl<G: Future> Future for Running<G> {
    type Output = Finished<G::Output>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (index, start) = (*this.index, *this.start);
        this.fut.poll(cx).map(|out| Finished { index, start, out })
    }
}

/// Outcome counts of one call, moved into the fan-out's shared counters in batches (when the call waits, ends,
/// or has [`Tally::BATCH`] uncounted items), so that an item costs no shared atomic. Items started and not
/// finished when the call is dropped are counted as cancelled.
struct Tally<'a> {
    counts: &'a OutcomeCounters,
    pending: [u64; 6],
    started: u64,
    finished: u64,
}

impl Tally<'_> {
    const BATCH: u64 = 64;

    fn finish(&mut self, outcome: Outcome) {
        self.finished += 1;
        if let Some(n) = self.pending.get_mut(outcome.index()) {
            *n += 1;
        }
    }

    fn flush(&mut self) {
        for (outcome, n) in Outcome::ALL.iter().zip(self.pending.iter_mut()) {
            if *n > 0 {
                self.counts.add(*outcome, std::mem::take(n));
            }
        }
    }

    fn flush_if_full(&mut self) {
        if self.pending.iter().sum::<u64>() >= Self::BATCH {
            self.flush();
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.flush();
        let left = self.started.saturating_sub(self.finished);
        if left > 0 {
            self.counts.add(Outcome::Cancelled, left);
        }
    }
}

/// Calls with at most this many items in flight (their concurrency, or fewer items) poll each of them on every
/// poll, as `join_all` does for small sets: a wake-up then costs at most 7 polls of pending items (each a few
/// instructions for a typical leaf future), well below the one wasted poll of the caller's task (its whole stack: a
/// request's router, span and runtime, about 2k instructions) that polling only the woken items can cost when the
/// runtime delivers the call's wake-up before the item's. Wider calls keep `FuturesUnordered`, whose cost per
/// wake-up does not grow with the number of items in flight.
const FEW: usize = 8;

/// The items in flight beyond the one polled in place, for a call with at most [`FEW`] of them: one boxed slice of
/// slots, allocated when the call first needs one and reused by its next items.
struct Few<G> {
    slots: Option<Pin<Box<[Option<G>]>>>,
    // Their number, kept apart: asking the slice would take a shared reference to every item (see `inline`).
    n: usize,
}

impl<G> Default for Few<G> {
    fn default() -> Self {
        Few { slots: None, n: 0 }
    }
}

impl<G> Few<G> {
    /// Slot `i` (`i < n`) of `slots`, pinned (panics past the end, which `n` prevents).
    fn slot(slots: &mut Pin<Box<[Option<G>]>>, i: usize) -> Pin<&mut Option<G>> {
        // SAFETY: the slots are pinned with their boxed slice, which is never moved out of, resized or
        // reallocated; a slot's item is only replaced through `Pin::set`, which drops it in place. So an item
        // stays where it is from its first poll until it is dropped (the same argument as for a pinned array).
        unsafe { slots.as_mut().map_unchecked_mut(|s| &mut s[i]) }
    }
}

impl<G: Future> Few<Running<G>> {
    /// Puts `running` in a free slot (allocating `width` slots on first use), marking it not yet polled in
    /// `polled`; gives it back when every slot is taken.
    fn push(
        &mut self,
        running: Running<G>,
        width: usize,
        polled: &mut u32,
    ) -> Result<(), Running<G>> {
        let slots = self.slots.get_or_insert_with(|| {
            self.n = width;
            Box::into_pin((0..width).map(|_| None).collect())
        });
        for i in 0..self.n {
            let mut slot = Self::slot(slots, i);
            if slot.as_mut().as_pin_mut().is_none() {
                slot.set(Some(running));
                *polled &= !(2 << i);
                return Ok(());
            }
        }
        Err(running)
    }

    /// Polls each item not yet polled in this poll of the call (`polled`), until one finishes.
    fn poll_next(&mut self, cx: &mut Context<'_>, polled: &mut u32) -> Option<Finished<G::Output>> {
        let slots = self.slots.as_mut()?;
        for i in 0..self.n {
            let bit = 2 << i;
            if *polled & bit != 0 {
                continue;
            }
            let mut slot = Self::slot(slots, i);
            if let Some(running) = slot.as_mut().as_pin_mut() {
                match running.poll(cx) {
                    Poll::Ready(done) => {
                        slot.set(None);
                        return Some(done);
                    }
                    Poll::Pending => *polled |= bit,
                }
            }
        }
        None
    }

    /// Drops every item (fail-fast), appending their indices to `out`.
    fn cancel_into(&mut self, out: &mut VecDeque<usize>) {
        let Some(slots) = self.slots.as_mut() else {
            return;
        };
        for i in 0..self.n {
            let mut slot = Self::slot(slots, i);
            if let Some(running) = slot.as_mut().as_pin_mut() {
                out.push_back(*running.project().index);
            }
            slot.set(None);
        }
    }
}

/// The items in flight beyond the one polled in place, for wider calls: a `FuturesUnordered`, created on first use
/// (creating one allocates twice, which a call whose items finish on their first poll never needs).
struct Rest<G>(Option<FuturesUnordered<G>>);

impl<G> Default for Rest<G> {
    fn default() -> Self {
        Rest(None)
    }
}

impl<G> Rest<G> {
    fn push(&mut self, running: G) {
        self.0
            .get_or_insert_with(FuturesUnordered::new)
            .push(running);
    }
}

impl<G: Future> Rest<Running<G>> {
    /// The next finished item, if one is ready (`Pending` when none is, or when there are none).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Finished<G::Output>>> {
        match self.0.as_mut() {
            Some(rest) if !rest.is_empty() => Pin::new(rest).poll_next(cx),
            _ => Poll::Pending,
        }
    }

    /// Drops every item (fail-fast), appending their indices to `out`.
    fn cancel_into(&mut self, out: &mut VecDeque<usize>) {
        if let Some(rest) = self.0.take() {
            out.extend(Pin::new(&rest).iter_pin_ref().map(|r| r.get_ref().index));
        }
    }
}

/// The permits a call holds, the first inline (a call whose items finish on their first poll needs only that one).
#[derive(Default)]
struct Permits<'a> {
    first: Option<otlp_sync::Permit<'a>>,
    more: Vec<otlp_sync::Permit<'a>>,
}

impl<'a> Permits<'a> {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    fn push(&mut self, permit: otlp_sync::Permit<'a>) {
        if self.first.is_none() {
            self.first = Some(permit);
        } else {
            self.more.push(permit);
        }
    }

    /// Gives back all permits but `n`.
    fn truncate(&mut self, n: usize) {
        self.more.truncate(n.saturating_sub(1));
        if n == 0 {
            self.first = None;
        }
    }

    fn clear(&mut self) {
        self.truncate(0);
    }
}

/// An acquire that had to wait: boxed, since the fan-out rarely needs it and the future is large.
type Acquiring<'a> = Pin<
    Box<dyn Future<Output = Result<otlp_sync::Permit<'a>, otlp_sync::AcquireError>> + Send + 'a>,
>;

/// How the next permit was obtained.
enum NextPermit {
    Got,
    Wait,
    Closed,
}

/// Items one call handles in one poll before it lets its task yield (an input of items that all finish at once
/// would otherwise hold the thread for the whole call).
const ITEMS_PER_POLL: u32 = 1024;

pin_project! {
    /// The fan-out state machine behind `run` and `run_unordered`.
    ///
    /// Permits: the call keeps the permit of a finished item for its next item (one semaphore operation per
    /// call and concurrency slot, not per item), unless another caller is waiting on the semaphore, in which case
    /// it gives the permit back. A stream gives it back whenever it yields (its consumer may pause), so only
    /// `run` keeps permits across items. Items: the first one in flight is polled in place (`inline`), so that an
    /// item that finishes on its first poll costs no allocation; the others in `few` (concurrency up to [`FEW`]:
    /// each polled on every poll of the call) or in `rest` (a `FuturesUnordered`, for wider calls).
    struct FanOutStream<'a, I, F, G> {
        owner: &'a FanOut,
        // Entered while the call is polled, so spans of the items are its children (debug level: free when
        // filtered out).
        span: tracing::Span,
        items: I,
        f: F,
        exhausted: bool,
        // Read through `Pin<&mut _>` only, here and in `few`'s slots: an item may point into itself (an `async`
        // block borrowing its own locals), and a shared reference to the whole item would invalidate those
        // pointers under Stacked Borrows.
        #[pin]
        inline: Option<Running<G>>,
        few: Few<Running<G>>,
        rest: Rest<Running<G>>,
        // Items in flight in `few` and `rest`.
        others: usize,
        // The most items in flight beside `inline` (0 until the first of them starts): below `FEW`, they go to
        // `few`.
        width: usize,
        // One permit per item in flight, plus at most one kept for the next item.
        permits: Permits<'a>,
        acquiring: Option<Acquiring<'a>>,
        // Indices of items cancelled by fail-fast, still to be yielded.
        cancelled: VecDeque<usize>,
        next_index: usize,
        stopped: bool,
        tally: Tally<'a>,
    }
}

impl<'a, I, F, G, T, E> FanOutStream<'a, I, F, G>
where
    I: Iterator,
    F: FnMut(I::Item) -> G,
    G: Future<Output = Result<T, E>>,
{
    /// Drives the call: finishes, starts and reports items, handing each result to `sink` (which returns whether
    /// it wants more). `Ready(true)` once every item was reported, `Ready(false)` when the sink said stop.
    fn poll_drive<S>(self: Pin<&mut Self>, cx: &mut Context<'_>, sink: &mut S) -> Poll<bool>
    where
        S: FnMut(usize, Result<T, TaskError<E>>) -> bool,
    {
        let mut this = self.project();
        let _entered = this.span.enter();
        let owner: &'a FanOut = this.owner;
        let shared = &*owner.shared;
        // When the last item finished in this poll: the next item starts then (one clock read per item when
        // items finish as fast as they start).
        let mut mark: Option<Mark> = None;
        let mut handled = 0u32;
        // The items polled (and still pending) in this poll, bit 0 `inline`, bit `i + 1` slot `i` of `few`: each
        // is polled at most once a poll (its waker is this call's, so a later wake-up polls it again).
        let mut polled = 0u32;
        loop {
            if *this.stopped {
                // Fail-fast or a closed semaphore: report the dropped in-flight items, then the rest of the input,
                // as cancelled.
                let index = match this.cancelled.pop_front() {
                    Some(index) => index,
                    None => match this.items.next() {
                        Some(_) => {
                            this.tally.started += 1;
                            let index = *this.next_index;
                            *this.next_index += 1;
                            index
                        }
                        None => {
                            this.tally.flush();
                            return Poll::Ready(true);
                        }
                    },
                };
                this.tally.finish(Outcome::Cancelled);
                if !sink(index, Err(TaskError::Cancelled)) {
                    this.tally.flush_if_full();
                    return Poll::Ready(false);
                }
                continue;
            }
            if handled >= ITEMS_PER_POLL {
                this.tally.flush();
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }

            // 1. A finished item, polled in place or by the `FuturesUnordered`.
            let mut finished = None;
            if polled & 1 == 0
                && let Some(running) = this.inline.as_mut().as_pin_mut()
            {
                match running.poll(cx) {
                    Poll::Ready(done) => {
                        this.inline.set(None);
                        finished = Some(done);
                    }
                    Poll::Pending => polled |= 1,
                }
            }
            if finished.is_none() && *this.others > 0 {
                finished = this.few.poll_next(cx, &mut polled);
                if finished.is_none()
                    && let Poll::Ready(Some(done)) = this.rest.poll_next(cx)
                {
                    finished = Some(done);
                }
                if finished.is_some() {
                    *this.others -= 1;
                }
            }
            if let Some(done) = finished {
                handled += 1;
                let end = shared.clock.now();
                mark = Some(end);
                shared
                    .run
                    .record(end.saturating_duration_since(done.start).as_secs_f64());
                let result = match done.out {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(TaskError::Failed(e)),
                    Err(msg) => Err(TaskError::Panicked(msg)),
                };
                let outcome = match &result {
                    Ok(_) => Outcome::Ok,
                    Err(e) => e.outcome(),
                };
                this.tally.finish(outcome);
                if owner.fail_fast && matches!(outcome, Outcome::Error | Outcome::Panic) {
                    *this.stopped = true;
                    if let Some(running) = this.inline.as_mut().as_pin_mut() {
                        this.cancelled.push_back(*running.project().index);
                    }
                    this.inline.set(None);
                    this.few.cancel_into(this.cancelled);
                    this.rest.cancel_into(this.cancelled);
                    *this.others = 0;
                    this.permits.clear();
                    *this.acquiring = None;
                }
                if !sink(done.index, result) {
                    this.tally.flush_if_full();
                    // The consumer of a stream may not poll again for a while: the permit of the item that just
                    // finished must not wait with it (another call may need it).
                    let in_flight =
                        usize::from(this.inline.as_mut().as_pin_mut().is_some()) + *this.others;
                    this.permits.truncate(in_flight);
                    return Poll::Ready(false);
                }
                continue;
            }

            // 2. Start one more item, if the bound, the input and (with a shared limit) a permit allow.
            let in_flight = usize::from(this.inline.as_mut().as_pin_mut().is_some()) + *this.others;
            if !*this.exhausted && in_flight < owner.concurrency {
                if let Some(sem) = &owner.sem {
                    if this.permits.len() > in_flight && sem.waiting() > 0 {
                        // Another caller waits: give the spare permit back instead of keeping it.
                        this.permits.truncate(in_flight);
                    }
                    if this.permits.len() <= in_flight {
                        match next_permit(sem, this.permits, this.acquiring, in_flight, cx) {
                            NextPermit::Got => {}
                            NextPermit::Wait => {
                                if in_flight == 0 {
                                    this.tally.flush();
                                    return Poll::Pending;
                                }
                            }
                            NextPermit::Closed => {
                                if in_flight == 0 {
                                    // No permit will come: the rest of the input is reported as cancelled.
                                    *this.stopped = true;
                                    continue;
                                }
                            }
                        }
                    }
                }
                if owner.sem.is_none() || this.permits.len() > in_flight {
                    match this.items.next() {
                        None => {
                            *this.exhausted = true;
                            this.permits.truncate(in_flight);
                        }
                        Some(item) => {
                            let index = *this.next_index;
                            *this.next_index += 1;
                            this.tally.started += 1;
                            let start = mark.unwrap_or_else(|| shared.clock.now());
                            let running = Running {
                                index,
                                start,
                                fut: CatchPanic::new((this.f)(item)),
                            };
                            if this.inline.as_mut().as_pin_mut().is_none() {
                                // Polled at the top of the loop, where it stays until it finishes.
                                this.inline.set(Some(running));
                                polled &= !1;
                            } else {
                                // The most items this call can have in flight beside `inline`, known when the first
                                // one needs a place: its concurrency, or fewer when its input says it has fewer
                                // items left. Few of them go to `few`; an input that had more than it said goes on
                                // in `rest`.
                                if *this.width == 0 {
                                    let left = this.items.size_hint().1.unwrap_or(usize::MAX);
                                    *this.width =
                                        (owner.concurrency - 1).min(left.saturating_add(1));
                                }
                                let rest = if *this.width < FEW {
                                    this.few.push(running, *this.width, &mut polled).err()
                                } else {
                                    Some(running)
                                };
                                if let Some(running) = rest {
                                    this.rest.push(running);
                                }
                                *this.others += 1;
                            }
                        }
                    }
                    continue;
                }
            }

            // 3. Nothing can move until an item or the semaphore wakes this task.
            this.tally.flush();
            if in_flight == 0 && *this.exhausted {
                return Poll::Ready(true);
            }
            // The call waits for its items: cheap enough to catch up with a provider installed since.
            shared.link.follow();
            return Poll::Pending;
        }
    }
}

/// Gets one more permit into `permits`: at once if one is free, else by waiting (only when no item of the call is
/// in flight: otherwise a finishing item's permit is the next one).
fn next_permit<'a>(
    sem: &'a otlp_sync::Semaphore,
    permits: &mut Permits<'a>,
    acquiring: &mut Option<Acquiring<'a>>,
    in_flight: usize,
    cx: &mut Context<'_>,
) -> NextPermit {
    if acquiring.is_none() && sem.available() > 0 {
        match sem.try_acquire() {
            Ok(p) => {
                permits.push(p);
                return NextPermit::Got;
            }
            Err(otlp_sync::TryAcquireError::Closed) => return NextPermit::Closed,
            Err(_) => {}
        }
    }
    if sem.is_closed() {
        return NextPermit::Closed;
    }
    if in_flight > 0 {
        return NextPermit::Wait;
    }
    let wait = acquiring.get_or_insert_with(|| Box::pin(sem.acquire()));
    match wait.as_mut().poll(cx) {
        Poll::Ready(Ok(p)) => {
            *acquiring = None;
            permits.push(p);
            NextPermit::Got
        }
        Poll::Ready(Err(_)) => {
            *acquiring = None;
            NextPermit::Closed
        }
        Poll::Pending => NextPermit::Wait,
    }
}

impl<'a, I, F, G, T, E> Stream for FanOutStream<'a, I, F, G>
where
    I: Iterator,
    F: FnMut(I::Item) -> G,
    G: Future<Output = Result<T, E>>,
{
    type Item = (usize, Result<T, TaskError<E>>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut next = None;
        match self.poll_drive(cx, &mut |index, result| {
            next = Some((index, result));
            false
        }) {
            Poll::Ready(_) => Poll::Ready(next),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// One result per item, in input order ([`FanOut::run`], [`FanOut::run_fallible`]). `E` is
/// [`Infallible`](std::convert::Infallible) for items that cannot fail.
pub struct FanOutResults<T, E = std::convert::Infallible> {
    items: Vec<Result<T, TaskError<E>>>,
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for FanOutResults<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.items).finish()
    }
}

impl<T, E> FanOutResults<T, E> {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there were no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The results, in input order.
    pub fn as_slice(&self) -> &[Result<T, TaskError<E>>] {
        &self.items
    }

    /// The results, in input order.
    pub fn into_vec(self) -> Vec<Result<T, TaskError<E>>> {
        self.items
    }

    /// Whether every item succeeded.
    pub fn all_ok(&self) -> bool {
        self.items.iter().all(Result::is_ok)
    }

    /// The errors with their item index, in input order.
    pub fn errors(&self) -> impl Iterator<Item = (usize, &TaskError<E>)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
    }

    /// The values in input order if every item succeeded; else every error, joined.
    pub fn into_result(self) -> Result<Vec<T>, FanOutError<E>> {
        let total = self.items.len();
        if self.all_ok() {
            return Ok(self.items.into_iter().filter_map(Result::ok).collect());
        }
        let errors = self
            .items
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect();
        Err(FanOutError { errors, total })
    }
}

impl<T, E> IntoIterator for FanOutResults<T, E> {
    type Item = Result<T, TaskError<E>>;
    type IntoIter = std::vec::IntoIter<Result<T, TaskError<E>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// Every error of a fan-out, with the index of its item (like Go's `errors.Join`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutError<E = std::convert::Infallible> {
    errors: Vec<(usize, TaskError<E>)>,
    total: usize,
}

impl<E> FanOutError<E> {
    /// The errors with their item index, in input order.
    pub fn errors(&self) -> &[(usize, TaskError<E>)] {
        &self.errors
    }

    /// The errors with their item index, in input order.
    pub fn into_errors(self) -> Vec<(usize, TaskError<E>)> {
        self.errors
    }

    /// The number of items of the run.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl<E: fmt::Display> fmt::Display for FanOutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} items failed", self.errors.len(), self.total)?;
        for (i, (index, e)) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "item {index}: {e}")?;
        }
        Ok(())
    }
}

impl<E: std::error::Error + 'static> std::error::Error for FanOutError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.errors
            .first()
            .map(|(_, e)| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, HistogramDataPoint, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use std::time::Duration;

    fn histogram(exporter: &InMemoryMetricExporter, name: &str) -> HistogramDataPoint<f64> {
        let metrics = exporter.get_finished_metrics().unwrap();
        let m = metrics
            .iter()
            .rev()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no histogram {name}"));
        let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
            panic!("{name} is not an f64 histogram");
        };
        h.data_points().next().expect("a point").clone()
    }

    /// Each item's exported duration is the time it ran: one item at a time, each running for exactly its
    /// duration on tokio's paused clock (which unit tests time items with), one nanosecond below, on and above
    /// every advised boundary, export what recording the same values directly gives.
    #[tokio::test(start_paused = true)]
    #[cfg_attr(miri, ignore)] // the SDK's aggregation is slow under miri and not what this checks
    async fn item_durations_are_the_time_each_item_ran() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let meter = provider.meter("otlp-patterns");
        let fan = FanOut::builder("exact")
            .concurrency(1)
            .meter(meter.clone())
            .build()
            .unwrap();
        // The boundaries the fan-out's histogram advises, read from an export.
        let _ = fan.run([Duration::ZERO], |_| async {}).await;
        provider.force_flush().unwrap();
        let bounds: Vec<f64> = histogram(&exporter, "fan_out.task.duration")
            .bounds()
            .collect();
        let values: Vec<Duration> = bounds
            .iter()
            .flat_map(|b| {
                let n = (b * 1e9).round() as u64;
                [n - 1, n, n + 1]
            })
            .map(Duration::from_nanos)
            .collect();
        let reference = meter
            .f64_histogram("reference")
            .with_boundaries(bounds.clone())
            .build();
        reference.record(0.0, &[]);
        let out = fan
            .run(values.clone(), |d| async move {
                tokio::time::advance(d).await;
                d
            })
            .await;
        assert_eq!(out.into_result().unwrap(), values);
        for d in &values {
            reference.record(d.as_secs_f64(), &[]);
        }
        exporter.reset();
        provider.force_flush().unwrap();
        let (got, want) = (
            histogram(&exporter, "fan_out.task.duration"),
            histogram(&exporter, "reference"),
        );
        assert_eq!(got.count(), values.len() as u64 + 1);
        assert_eq!(
            got.bucket_counts().collect::<Vec<_>>(),
            want.bucket_counts().collect::<Vec<_>>()
        );
        assert_eq!((got.min(), got.max()), (want.min(), want.max()));
        assert!((got.sum() - want.sum()).abs() <= want.sum() * 1e-9);
        provider.shutdown().unwrap();
    }

    async fn yields(n: usize) {
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
    }

    /// Items that wait in the boxed slots (and, past a size hint that was too low, in the `FuturesUnordered`),
    /// finish out of order, or are dropped where they lie by fail-fast: small enough for miri, which checks the
    /// slots' pinning.
    #[test]
    fn slots_hold_waiting_items_until_they_finish_or_are_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let fan = FanOut::new("unit", 4).unwrap();
            let out = fan
                .run(0..6usize, |i| async move {
                    yields(6 - i).await;
                    i * 10
                })
                .await;
            assert_eq!(out.into_result().unwrap(), vec![0, 10, 20, 30, 40, 50]);

            // An input that says it has one item left when it has five: the others go on in `rest`.
            let out = fan
                .run(LowHint(0..6usize), |i| async move {
                    yields(i % 3).await;
                    i
                })
                .await;
            assert_eq!(out.into_result().unwrap(), vec![0, 1, 2, 3, 4, 5]);

            let strict = FanOut::builder("unit-ff")
                .concurrency(4)
                .fail_fast(true)
                .build()
                .unwrap();
            let out = strict
                .run_fallible(0..6usize, |i| async move {
                    yields(if i == 1 { 1 } else { 5 }).await;
                    if i == 1 { Err(i) } else { Ok(i) }
                })
                .await
                .into_vec();
            assert_eq!(out[1], Err(TaskError::Failed(1)));
            assert!(
                out.iter()
                    .enumerate()
                    .all(|(i, r)| i == 1 || r == &Err(TaskError::Cancelled))
            );
            let s = fan.stats();
            assert_eq!((s.submitted, s.ok), (12, 12));
            let s = strict.stats();
            assert_eq!((s.submitted, s.failed, s.cancelled), (6, 1, 5));
        });
    }

    struct LowHint<I>(I);

    impl<I: Iterator> Iterator for LowHint<I> {
        type Item = I::Item;
        fn next(&mut self) -> Option<I::Item> {
            self.0.next()
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (0, Some(1))
        }
    }
}
