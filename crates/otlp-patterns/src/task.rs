//! One submitted task: the boxed job a worker runs, and the [`TaskHandle`] its submitter awaits.
//!
//! A submitted task costs two heap allocations: the job box (the user's future, its reply sender, its span and its
//! deadline, all in one block) and the reply channel. `execute` has no reply channel: one allocation.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Span;

use crate::error::panic_message;
use crate::{Outcome, TaskError};

/// A type-erased task as the worker sees it.
pub(crate) trait Job: Send + 'static {
    /// Polls the task inside its span, catching panics. `Ready(outcome)` once it finished and its result was
    /// delivered; must not be polled again after that.
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome>;
    /// Ends the task without a value (`TimedOut` or `Cancelled`), telling its handle. No-op if already finished.
    fn abandon(self: Pin<&mut Self>, outcome: Outcome);
    /// When it was queued.
    fn enqueued_at(&self) -> Instant;
    /// Its own deadline, if it has one (else the pool's default timeout applies from the start of its run).
    fn deadline(&self) -> Option<Instant>;
}

pub(crate) type BoxJob = Pin<Box<dyn Job>>;

/// Where a task's result goes.
enum Reply<T, E> {
    /// A waiting [`TaskHandle`].
    Handle(oneshot::Sender<Result<T, TaskError<E>>>),
    /// Fire and forget (`execute`): errors are only counted (and logged at debug level).
    Detached,
    /// Already delivered.
    Done,
}

impl<T, E> Reply<T, E> {
    fn deliver(&mut self, result: Result<T, TaskError<E>>)
    where
        E: std::fmt::Debug,
    {
        match std::mem::replace(self, Reply::Done) {
            Reply::Handle(tx) => {
                // The submitter may have dropped its handle: the task was detached, nothing to tell.
                let _ = tx.send(result);
            }
            Reply::Detached => {
                if let Err(e) = result {
                    tracing::debug!(error = ?e, "detached task did not succeed");
                }
            }
            Reply::Done => {}
        }
    }
}

pin_project! {
    /// The concrete job for a future `F` returning `Result<T, E>`.
    pub(crate) struct TaskJob<F, T, E> {
        #[pin]
        fut: F,
        reply: Reply<T, E>,
        span: Span,
        enqueued: Instant,
        deadline: Option<Instant>,
    }
}

impl<F, T, E> TaskJob<F, T, E>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + std::fmt::Debug + 'static,
{
    /// A job whose result goes to the returned handle.
    pub(crate) fn with_handle(
        fut: F,
        span: Span,
        deadline: Option<Instant>,
    ) -> (BoxJob, TaskHandle<T, E>) {
        let (tx, rx) = oneshot::channel();
        let job = Box::pin(TaskJob {
            fut,
            reply: Reply::Handle(tx),
            span,
            enqueued: Instant::now(),
            deadline,
        });
        (job, TaskHandle { rx })
    }

    /// A fire-and-forget job.
    pub(crate) fn detached(fut: F, span: Span, deadline: Option<Instant>) -> BoxJob {
        Box::pin(TaskJob {
            fut,
            reply: Reply::<T, E>::Detached,
            span,
            enqueued: Instant::now(),
            deadline,
        })
    }
}

impl<F, T, E> Job for TaskJob<F, T, E>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + std::fmt::Debug + 'static,
{
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.project();
        if matches!(this.reply, Reply::Done) {
            return Poll::Ready(Outcome::Cancelled);
        }
        let _entered = this.span.enter();
        let fut = this.fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(value))) => {
                this.reply.deliver(Ok(value));
                Poll::Ready(Outcome::Ok)
            }
            Ok(Poll::Ready(Err(e))) => {
                this.reply.deliver(Err(TaskError::Failed(e)));
                Poll::Ready(Outcome::Error)
            }
            Err(payload) => {
                let msg = panic_message(payload.as_ref());
                tracing::debug!(panic = %msg, "task panicked");
                this.reply.deliver(Err(TaskError::Panicked(msg)));
                Poll::Ready(Outcome::Panic)
            }
        }
    }

    fn abandon(self: Pin<&mut Self>, outcome: Outcome) {
        let this = self.project();
        let err = match outcome {
            Outcome::Timeout => TaskError::TimedOut,
            _ => TaskError::Cancelled,
        };
        this.reply.deliver(Err(err));
    }

    fn enqueued_at(&self) -> Instant {
        self.enqueued
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// Polls a job until it finishes (`Some(outcome)`) or its deadline passes (`None`).
///
/// The deadline is a `Sleep` owned by the worker and reset for each task: creating and dropping a `Sleep` per
/// task would take the runtime's timer lock twice per task, while resetting a registered one to a later instant
/// is a single atomic update.
pub(crate) struct RunJob<'a> {
    pub(crate) job: Pin<&'a mut dyn Job>,
    pub(crate) deadline: Option<Pin<&'a mut tokio::time::Sleep>>,
}

impl Future for RunJob<'_> {
    type Output = Option<Outcome>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outcome>> {
        if let Poll::Ready(outcome) = self.job.as_mut().poll_run(cx) {
            return Poll::Ready(Some(outcome));
        }
        if let Some(sleep) = self.deadline.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// The result of a task submitted with [`WorkerPool::submit`](crate::WorkerPool::submit): a future resolving to
/// `Result<T, TaskError<E>>`.
///
/// Dropping the handle detaches the task: it still runs and is counted, its result is dropped. Awaiting the handle
/// is cancel-safe (dropping the `await` loses nothing but the result).
#[must_use = "a TaskHandle does nothing unless awaited; drop it to detach the task"]
pub struct TaskHandle<T, E> {
    rx: oneshot::Receiver<Result<T, TaskError<E>>>,
}

impl<T, E> std::fmt::Debug for TaskHandle<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle").finish_non_exhaustive()
    }
}

impl<T, E> TaskHandle<T, E> {
    /// The result if the task already finished, without waiting: `None` while it is queued or running.
    pub fn try_result(&mut self) -> Option<Result<T, TaskError<E>>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(TaskError::Cancelled)),
        }
    }
}

impl<T, E> Future for TaskHandle<T, E> {
    type Output = Result<T, TaskError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            // The job was dropped without a result: only cancellation does that.
            Poll::Ready(Err(_)) => Poll::Ready(Err(TaskError::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}
