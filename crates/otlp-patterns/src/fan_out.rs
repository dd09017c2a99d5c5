//! Fan-out / fan-in: run one async function over many items with bounded concurrency, and gather the results.
//!
//! A [`FanOut`] is a long-lived, named runner (build it once, use it for many calls). Its concurrency bound is an
//! instrumented [`otlp_sync::Semaphore`] shared by every call, so `k` bounds the items running at once across all
//! concurrent [`run`](FanOut::run)s of the same `FanOut`, and the semaphore's own metrics
//! (`semaphore.*`, `semaphore.name` = the fan-out's name) show how long items waited for a slot.
//!
//! * [`run`](FanOut::run) returns one result per item, **in input order** whatever the completion order, in a
//!   vector allocated once. Every error is kept ([`FanOutResults::into_result`] joins them, like Go's
//!   `errors.Join`). In fail-fast mode the first error (or panic) cancels the rest: each item is still returned,
//!   as done, failed or [`TaskError::Cancelled`].
//! * [`run_unordered`](FanOut::run_unordered) streams `(index, result)` pairs as items finish.
//!
//! Items run as futures polled by the caller's task (no spawning), so `f` may borrow from the caller and items need
//! not be `Send` or `'static`; for CPU-heavy items, spawn inside `f`. A panicking item is caught and reported as
//! [`TaskError::Panicked`]. At most `k` item futures exist at a time: items are pulled from the input lazily.
//!
//! Cancel-safety: dropping a `run` future (or the stream) drops the items in flight; they and the started items are
//! counted as `cancelled`, so the `fanout.tasks` counter still adds up.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use otlp_patterns::FanOut;
//!
//! let fetch = FanOut::builder("fetch").concurrency(8).build()?;
//! let results = fetch
//!     .run(1..=5u64, |id| async move {
//!         if id == 4 { Err(format!("user {id} not found")) } else { Ok(id * 10) }
//!     })
//!     .await;
//! assert_eq!(results.len(), 5);
//! let err = results.into_result().unwrap_err();
//! assert_eq!(err.to_string(), "1 of 5 items failed: item 3: task failed: user 4 not found");
//!
//! // All good: the values in input order.
//! let values = fetch.run(1..=3u64, |id| async move { Ok::<_, std::io::Error>(id) }).await.into_result()?;
//! assert_eq!(values, vec![1, 2, 3]);
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, ObservableCounter};
use pin_project_lite::pin_project;

use crate::catch::CatchPanic;
use crate::outcome::OutcomeCounters;
use crate::telemetry::{DurationBuffer, Stopwatch, duration_histogram, outcome_counter};
use crate::{BuildError, Outcome, TaskError};

/// Configures a [`FanOut`]; see [`FanOut::builder`].
#[derive(Debug, Clone)]
pub struct FanOutBuilder {
    name: String,
    concurrency: usize,
    fail_fast: bool,
    meter: Option<Meter>,
}

impl FanOutBuilder {
    /// At most `k` items run at once, across every call on this fan-out (default: the available parallelism).
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

    /// Uses `meter` instead of the global meters (for this crate's and the semaphore's instruments; for tests).
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
        let mut sem = otlp_sync::Semaphore::builder(self.name.clone()).permits(self.concurrency);
        if let Some(m) = &self.meter {
            sem = sem.meter(m.clone());
        }
        let sem = sem.build().map_err(|_| BuildError::ConcurrencyTooHigh {
            what: format!("fan-out {:?}", self.name),
            max: otlp_sync::Semaphore::MAX_PERMITS,
        })?;
        let meter = self.meter.unwrap_or_else(crate::telemetry::default_meter);
        let attrs = [KeyValue::new("fanout.name", self.name.clone())];
        let shared = Arc::new(Shared {
            counts: OutcomeCounters::new(),
            hist: duration_histogram(
                &meter,
                "fanout.task.duration",
                "Time fan-out items ran (after their permit).",
            ),
            durations: DurationBuffer::default(),
            clock: Stopwatch::new(),
            attrs,
        });
        let tasks = outcome_counter(
            &meter,
            "fanout.tasks",
            "{task}",
            "Fan-out items, by outcome.",
            &shared,
            &shared.attrs,
            |s: &Shared| s.counts.snapshot(),
            Shared::flush,
        );
        Ok(FanOut {
            name: self.name,
            concurrency: self.concurrency,
            fail_fast: self.fail_fast,
            sem,
            shared,
            _tasks: tasks,
        })
    }
}

/// Runs one async function over many items with bounded concurrency; see the [module docs](self).
pub struct FanOut {
    name: String,
    concurrency: usize,
    fail_fast: bool,
    sem: otlp_sync::Semaphore,
    shared: Arc<Shared>,
    _tasks: ObservableCounter<u64>,
}

/// The counters and the duration histogram, shared with the outcome counter's callback.
struct Shared {
    counts: OutcomeCounters,
    hist: Histogram<f64>,
    /// Item durations not yet in `hist`: flushed at each export and on drop.
    durations: DurationBuffer,
    clock: Stopwatch,
    attrs: [KeyValue; 1],
}

impl Shared {
    fn flush(&self) {
        self.durations.flush(&self.hist, &self.attrs);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush();
    }
}

impl fmt::Debug for FanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .field("fail_fast", &self.fail_fast)
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
    /// A builder for a fan-out named `name` (the `fanout.name` attribute, and the name of its semaphore).
    pub fn builder(name: impl Into<String>) -> FanOutBuilder {
        FanOutBuilder {
            name: name.into(),
            concurrency: std::thread::available_parallelism().map_or(1, usize::from),
            fail_fast: false,
            meter: None,
        }
    }

    /// A fan-out named `name` running at most `concurrency` items at once.
    pub fn new(name: impl Into<String>, concurrency: usize) -> Result<FanOut, BuildError> {
        FanOut::builder(name).concurrency(concurrency).build()
    }

    /// The fan-out's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most items running at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The semaphore bounding the concurrency.
    pub fn semaphore(&self) -> &otlp_sync::Semaphore {
        &self.sem
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FanOutStats {
        let [ok, error, panic, timeout, cancelled, rejected] = self.shared.counts.snapshot();
        FanOutStats {
            submitted: ok + error + panic + timeout + cancelled + rejected,
            ok,
            failed: error,
            panicked: panic,
            cancelled,
        }
    }

    /// Runs `f` on every item, at most `concurrency` at once, and returns one result per item in input order.
    ///
    /// Cancel-safe in the sense of the module docs: dropping the future drops the items in flight and counts them.
    pub async fn run<I, F, Fut, T, E>(&self, items: I, f: F) -> FanOutResults<T, E>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let items = items.into_iter();
        let mut results: Vec<Result<T, TaskError<E>>> = Vec::with_capacity(items.size_hint().0);
        let mut stream = std::pin::pin!(self.stream(items, f));
        // Every item taken from the input is yielded exactly once (done, failed or cancelled).
        while let Some((index, result)) = stream.next().await {
            if index >= results.len() {
                results.resize_with(index + 1, || Err(TaskError::Cancelled));
            }
            if let Some(slot) = results.get_mut(index) {
                *slot = result;
            }
        }
        FanOutResults { items: results }
    }

    /// Runs `f` on every item, at most `concurrency` at once, and yields `(index, result)` as items finish.
    ///
    /// Every item taken from the input is yielded exactly once; in fail-fast mode, after the first error the items
    /// in flight and the rest of the input are yielded as [`TaskError::Cancelled`] (the rest of the input is
    /// consumed, without calling `f`). Dropping the stream drops the items in flight (counted as cancelled).
    pub fn run_unordered<'a, I, F, Fut, T, E>(
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

    fn stream<'a, I, F, Fut, T, E>(
        &'a self,
        items: I,
        mut f: F,
    ) -> impl Stream<Item = (usize, Result<T, TaskError<E>>)> + 'a
    where
        I: Iterator + 'a,
        F: FnMut(I::Item) -> Fut + 'a,
        Fut: Future<Output = Result<T, E>> + 'a,
        T: 'a,
        E: 'a,
    {
        let sem = &self.sem;
        let shared = &*self.shared;
        let make = move |item: I::Item| {
            let fut = f(item);
            async move {
                // Fast path without the (large) acquire future; the wait, when there is one, is boxed so that
                // every item future stays small (they are moved into the `FuturesUnordered`).
                let fast = if sem.available() > 0 {
                    sem.try_acquire().ok()
                } else {
                    None
                };
                let _permit = match fast {
                    Some(p) => p,
                    None => match Box::pin(sem.acquire()).await {
                        Ok(p) => p,
                        Err(_) => return Err(TaskError::Cancelled),
                    },
                };
                let start = shared.clock.now();
                let out = CatchPanic::new(fut).await;
                shared
                    .durations
                    .record(shared.clock.since(start), &shared.hist, &shared.attrs);
                match out {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(TaskError::Failed(e)),
                    Err(msg) => Err(TaskError::Panicked(msg)),
                }
            }
        };
        FanOutStream::new(self, items, make)
    }
}

pin_project! {
    /// A running item: its index and its future.
    struct Running<G> {
        index: usize,
        #[pin]
        fut: G,
    }
}

impl<G: Future> Future for Running<G> {
    type Output = (usize, G::Output);
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let index = *this.index;
        this.fut.poll(cx).map(|out| (index, out))
    }
}

/// Counts items as they finish; counts started-but-unfinished items as cancelled when dropped.
struct Counted<'a> {
    counts: &'a OutcomeCounters,
    started: u64,
    finished: u64,
}

impl Counted<'_> {
    fn finish(&mut self, outcome: Outcome) {
        self.finished += 1;
        self.counts.add(outcome, 1);
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let left = self.started.saturating_sub(self.finished);
        if left > 0 {
            self.counts.add(Outcome::Cancelled, left);
        }
    }
}

pin_project! {
    /// The fan-out state machine behind `run` and `run_unordered`.
    struct FanOutStream<'a, I, M, G> {
        concurrency: usize,
        fail_fast: bool,
        items: I,
        make: M,
        in_flight: FuturesUnordered<Running<G>>,
        // Indices of items cancelled by fail-fast, still to be yielded.
        cancelled: VecDeque<usize>,
        next_index: usize,
        stopped: bool,
        counted: Counted<'a>,
    }
}

impl<'a, I, M, G, T, E> FanOutStream<'a, I, M, G>
where
    I: Iterator,
    M: FnMut(I::Item) -> G,
    G: Future<Output = Result<T, TaskError<E>>>,
{
    fn new(owner: &'a FanOut, items: I, make: M) -> Self {
        FanOutStream {
            concurrency: owner.concurrency,
            fail_fast: owner.fail_fast,
            items,
            make,
            in_flight: FuturesUnordered::new(),
            cancelled: VecDeque::new(),
            next_index: 0,
            stopped: false,
            counted: Counted {
                counts: &owner.shared.counts,
                started: 0,
                finished: 0,
            },
        }
    }
}

impl<I, M, G, T, E> Stream for FanOutStream<'_, I, M, G>
where
    I: Iterator,
    M: FnMut(I::Item) -> G,
    G: Future<Output = Result<T, TaskError<E>>>,
{
    type Item = (usize, Result<T, TaskError<E>>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.stopped {
            // Fail-fast: report the dropped in-flight items, then the rest of the input, as cancelled.
            let index = match this.cancelled.pop_front() {
                Some(index) => index,
                None => match this.items.next() {
                    Some(_) => {
                        this.counted.started += 1;
                        let index = *this.next_index;
                        *this.next_index += 1;
                        index
                    }
                    None => return Poll::Ready(None),
                },
            };
            this.counted.finish(Outcome::Cancelled);
            return Poll::Ready(Some((index, Err(TaskError::Cancelled))));
        }
        while this.in_flight.len() < *this.concurrency {
            let Some(item) = this.items.next() else { break };
            let index = *this.next_index;
            *this.next_index += 1;
            this.counted.started += 1;
            let fut = (this.make)(item);
            this.in_flight.push(Running { index, fut });
        }
        match Pin::new(&mut *this.in_flight).poll_next(cx) {
            Poll::Ready(Some((index, result))) => {
                let outcome = match &result {
                    Ok(_) => Outcome::Ok,
                    Err(e) => e.outcome(),
                };
                this.counted.finish(outcome);
                if *this.fail_fast && matches!(outcome, Outcome::Error | Outcome::Panic) {
                    *this.stopped = true;
                    let running = Pin::new(&*this.in_flight)
                        .iter_pin_ref()
                        .map(|r| r.get_ref().index);
                    this.cancelled.extend(running);
                    this.in_flight.clear();
                }
                Poll::Ready(Some((index, result)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// One result per item, in input order ([`FanOut::run`]).
pub struct FanOutResults<T, E> {
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
pub struct FanOutError<E> {
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
