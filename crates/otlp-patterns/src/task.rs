//! One submitted task: the job a worker runs, and the [`TaskHandle`] its submitter awaits.
//!
//! A submitted task costs one heap allocation, shared by the worker's side and the handle: the user's future, its
//! span and deadline, and the link (the result slot and the cancellation flags). The future is dropped, where it
//! lies, as soon as the worker lets go of the task; the allocation goes when the handle does too.

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tracing::Span;

use crate::error::panic_message;
use crate::sync::{AtomicU8, Mutex, Ordering, lock};
use crate::{Outcome, TaskError};

pin_project! {
    /// A future that cannot fail, as one returning `Result<T, Infallible>`: how plain tasks share the fallible
    /// tasks' machinery.
    #[derive(Debug)]
    pub(crate) struct Infallibly<F> {
        #[pin]
        fut: F,
    }
}

impl<F> Infallibly<F> {
    pub(crate) fn new(fut: F) -> Self {
        Infallibly { fut }
    }
}

impl<F: Future> Future for Infallibly<F> {
    type Output = Result<F::Output, Infallible>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().fut.poll(cx).map(Ok)
    }
}

/// What a job and its [`TaskHandle`] share: the result, who waits for it, and the handle's cancellation request.
///
/// Whether the task was cancelled and whether a worker started it are bits of one atomic, so that the job's start
/// and the handle's cancellation are decided against each other without the lock: either the start comes first
/// (the task runs, and the cancellation stops it at its next poll) or the cancellation does (the task never runs,
/// and its handle resolves at once). In steady state a task takes the lock twice: to hand its result over and to
/// take it.
struct Link<T, E> {
    /// [`CANCELLED`] (set by [`TaskHandle::cancel`], read by the job before each poll) and [`STARTED`].
    flags: AtomicU8,
    state: Mutex<LinkState<T, E>>,
}

/// The handle asked the task to stop.
const CANCELLED: u8 = 1;
/// A worker began running the task (never set once [`CANCELLED`] is): until then a cancelled task is settled, it
/// will not run, so its handle resolves at once instead of waiting for a worker to take the job off the queue.
const STARTED: u8 = 2;

struct LinkState<T, E> {
    result: Option<Result<T, TaskError<E>>>,
    /// The handle's task, woken when the result comes (or the job is gone).
    handle_waker: Option<Waker>,
    /// The worker running the job, woken by a cancellation.
    job_waker: Option<Waker>,
    /// The job ended without a result (dropped unrun): the handle reads `Cancelled`.
    job_gone: bool,
    /// The handle was dropped: nobody will read a result.
    handle_gone: bool,
}

impl<T, E> Link<T, E> {
    fn new() -> Self {
        Link {
            flags: AtomicU8::new(0),
            state: Mutex::new(LinkState {
                result: None,
                handle_waker: None,
                job_waker: None,
                job_gone: false,
                handle_gone: false,
            }),
        }
    }

    fn is_cancelled(&self) -> bool {
        self.flags.load(Ordering::Acquire) & CANCELLED != 0
    }

    /// Cancelled before a worker started it: it will never run.
    fn is_settled(&self) -> bool {
        self.flags.load(Ordering::Acquire) == CANCELLED
    }

    /// The job's side, before its first poll: `false` if the task was cancelled first (it must not run). One
    /// atomic update, so that the handle sees either a cancelled task that never starts or a started one.
    fn start(&self) -> bool {
        self.flags
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                (f & CANCELLED == 0).then_some(f | STARTED)
            })
            .is_ok()
    }

    /// The job's side: hands the result over (dropped here if the handle is gone).
    fn deliver(&self, result: Result<T, TaskError<E>>) {
        let mut st = lock(&self.state);
        let waker = if st.handle_gone {
            None
        } else {
            st.result = Some(result);
            st.handle_waker.take()
        };
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The job's side: it ended without a result.
    fn job_gone(&self) {
        let mut st = lock(&self.state);
        st.job_gone = true;
        let waker = st.handle_waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The job's side: wake `waker` if the handle cancels while the job waits.
    fn watch_cancel(&self, waker: &Waker) {
        let mut st = lock(&self.state);
        if st.handle_gone {
            // A dropped handle can no longer cancel (it cancelled on drop, if it was asked to, before it went).
            st.job_waker = None;
            return;
        }
        match &st.job_waker {
            Some(w) if w.will_wake(waker) => {}
            _ => st.job_waker = Some(waker.clone()),
        }
    }

    /// The handle's side: asks the job to stop, waking the worker running it.
    fn cancel(&self) {
        self.flags.fetch_or(CANCELLED, Ordering::AcqRel);
        let waker = lock(&self.state).job_waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A type-erased task as the worker sees it.
pub(crate) trait Job: Send + Sync + 'static {
    /// Polls the task inside its span, catching panics. `Ready(outcome)` once it finished and its result was
    /// delivered; must not be polled again after that.
    fn poll_run(&self, cx: &mut Context<'_>) -> Poll<Outcome>;
    /// Ends the task without a value (`TimedOut` or `Cancelled`), telling its handle. No-op if already finished.
    fn abandon(&self, outcome: Outcome);
    /// When it was queued.
    fn enqueued_at(&self) -> Instant;
    /// Its own deadline, if it has one (else the pool's default timeout applies from the start of its run).
    fn deadline(&self) -> Option<Instant>;
    /// The worker's side lets go: drops the future and its span where they lie and, if the task delivered no
    /// result, tells its handle that none will come (it reads `Cancelled`).
    fn release(&self);
}

/// The queue's, then a worker's, hold on a task; dropping it releases the task (see [`Job::release`]).
pub(crate) struct JobRef(Arc<dyn Job>);

impl std::ops::Deref for JobRef {
    type Target = dyn Job;
    fn deref(&self) -> &dyn Job {
        &*self.0
    }
}

impl Drop for JobRef {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// What a handle reaches of its task, whatever the future's type.
trait Linked<T, E>: Send + Sync {
    fn link(&self) -> &Link<T, E>;
}

/// Where a task's result goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// A [`TaskHandle`] (which may have been dropped: the task was detached).
    Handle,
    /// Fire and forget (`execute`): errors are only counted (and logged at debug level).
    Detached,
    /// Already delivered.
    Done,
}

/// The part of a task that only the worker's side touches.
struct Body<F> {
    /// The user's future: `None` once released. Never moved once polled: it is dropped where it lies.
    fut: Option<F>,
    reply: Reply,
    started: bool,
    span: Span,
}

/// A task for a future `F` returning `Result<T, E>`: the job and its link to the handle, in one allocation.
pub(crate) struct TaskJob<F, T, E> {
    link: Link<T, E>,
    /// Locked by the worker's side only (to poll, abandon or release), so never contended.
    body: Mutex<Body<F>>,
    enqueued: Instant,
    deadline: Option<Instant>,
}

impl<F, T, E> TaskJob<F, T, E>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + std::fmt::Debug + 'static,
{
    #[inline]
    fn new(fut: F, reply: Reply, span: Span, deadline: Option<Instant>) -> Arc<Self> {
        Arc::new(TaskJob {
            link: Link::new(),
            body: Mutex::new(Body {
                fut: Some(fut),
                reply,
                started: false,
                span,
            }),
            enqueued: Instant::now(),
            deadline,
        })
    }

    /// A job whose result goes to the returned handle.
    pub(crate) fn with_handle(
        fut: F,
        span: Span,
        deadline: Option<Instant>,
    ) -> (JobRef, TaskHandle<T, E>) {
        let task = Self::new(fut, Reply::Handle, span, deadline);
        let handle = TaskHandle {
            task: Arc::clone(&task) as Arc<dyn Linked<T, E>>,
            cancel_on_drop: false,
            taken: false,
        };
        (JobRef(task), handle)
    }

    /// A fire-and-forget job.
    pub(crate) fn detached(fut: F, span: Span, deadline: Option<Instant>) -> JobRef {
        JobRef(Self::new(fut, Reply::Detached, span, deadline))
    }

    /// Hands `result` to where it goes, once.
    fn deliver(&self, reply: &mut Reply, result: Result<T, TaskError<E>>) {
        match std::mem::replace(reply, Reply::Done) {
            Reply::Handle => self.link.deliver(result),
            Reply::Detached => {
                if let Err(e) = result {
                    tracing::debug!(error = ?e, "detached task did not succeed");
                }
            }
            Reply::Done => {}
        }
    }
}

impl<F, T, E> Linked<T, E> for TaskJob<F, T, E>
where
    F: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    fn link(&self) -> &Link<T, E> {
        &self.link
    }
}

impl<F, T, E> Job for TaskJob<F, T, E>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + std::fmt::Debug + 'static,
{
    fn poll_run(&self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut body = lock(&self.body);
        let Body {
            fut,
            reply,
            started,
            span,
        } = &mut *body;
        let Some(fut) = fut.as_mut().filter(|_| *reply != Reply::Done) else {
            return Poll::Ready(Outcome::Cancelled);
        };
        if !*started {
            if *reply == Reply::Handle && !self.link.start() {
                self.deliver(reply, Err(TaskError::Cancelled));
                return Poll::Ready(Outcome::Cancelled);
            }
            *started = true;
        }
        if *reply == Reply::Handle && self.link.is_cancelled() {
            self.deliver(reply, Err(TaskError::Cancelled));
            return Poll::Ready(Outcome::Cancelled);
        }
        let _entered = span.enter();
        // SAFETY: the future lives in this task's `Arc` allocation, which never moves; it is never moved out of
        // `body.fut` either, only dropped where it lies (`release` assigns `None` over it). So it stays pinned from
        // this poll until it is dropped.
        let fut = unsafe { Pin::new_unchecked(fut) };
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => {
                if *reply == Reply::Handle {
                    self.link.watch_cancel(cx.waker());
                    // A cancel between the check above and the registration would find no waker: look again.
                    if self.link.is_cancelled() {
                        cx.waker().wake_by_ref();
                    }
                }
                Poll::Pending
            }
            Ok(Poll::Ready(Ok(value))) => {
                self.deliver(reply, Ok(value));
                Poll::Ready(Outcome::Ok)
            }
            Ok(Poll::Ready(Err(e))) => {
                self.deliver(reply, Err(TaskError::Failed(e)));
                Poll::Ready(Outcome::Error)
            }
            Err(payload) => {
                let msg = panic_message(payload.as_ref());
                tracing::debug!(panic = %msg, "task panicked");
                self.deliver(reply, Err(TaskError::Panicked(msg)));
                Poll::Ready(Outcome::Panic)
            }
        }
    }

    fn abandon(&self, outcome: Outcome) {
        let err = match outcome {
            Outcome::Timeout => TaskError::TimedOut,
            _ => TaskError::Cancelled,
        };
        let mut body = lock(&self.body);
        self.deliver(&mut body.reply, Err(err));
    }

    fn enqueued_at(&self) -> Instant {
        self.enqueued
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn release(&self) {
        let mut body = lock(&self.body);
        if std::mem::replace(&mut body.reply, Reply::Done) == Reply::Handle {
            // Let go without a result (a job dropped unrun): its handle reads `Cancelled`. Told first, so that a
            // panic in the future's `Drop` below cannot leave the handle waiting.
            self.link.job_gone();
        }
        body.span = Span::none();
        // Dropped where it lies (an assignment drops the old value in place): see `poll_run`'s SAFETY.
        body.fut = None;
    }
}

/// A task's job, run by hand: the worker's side of [`task_link`], for the loom model of the link.
#[cfg(otlp_loom)]
#[derive(Debug)]
pub struct TaskRun(JobRef);

#[cfg(otlp_loom)]
impl std::fmt::Debug for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobRef")
    }
}

#[cfg(otlp_loom)]
impl TaskRun {
    /// Polls the job once, as a worker does: its outcome, or `None` if it is still pending.
    pub fn run(&mut self) -> Option<Outcome> {
        let mut cx = Context::from_waker(Waker::noop());
        match self.0.poll_run(&mut cx) {
            Poll::Ready(outcome) => Some(outcome),
            Poll::Pending => None,
        }
    }
}

/// A task whose future returns `value` at once: its job and its handle, for the loom model of their link.
#[cfg(otlp_loom)]
pub fn task_link(value: u8) -> (TaskRun, TaskHandle<u8>) {
    let (job, handle) = TaskJob::with_handle(
        Infallibly::new(std::future::ready(value)),
        Span::none(),
        None,
    );
    (TaskRun(job), handle)
}

pin_project! {
    /// A worker's deadline timer, reused by every task it runs.
    ///
    /// Creating and dropping a `Sleep` per task would take the runtime's timer lock twice per task; resetting and
    /// polling one per task still costs more than a task that is ready on its first poll. So the timer is moved
    /// only when it would fire too late: while it is set to fire no later than the running task's deadline (set
    /// for an earlier task) and has not fired, it is left alone, and the worker's waker from its last poll is
    /// still the one it wakes. When it fires before the task's deadline, that wake-up is spurious: the timer is
    /// reset to the deadline and the task keeps running. A task times out at its own deadline, never earlier.
    pub(crate) struct DeadlineTimer {
        #[pin]
        sleep: tokio::time::Sleep,
        // Where `sleep` is set, once it was polled there (so this worker's waker is the one it wakes).
        armed: Option<Instant>,
    }
}

impl DeadlineTimer {
    pub(crate) fn new(sleep: tokio::time::Sleep) -> Self {
        DeadlineTimer { sleep, armed: None }
    }

    /// `Ready` once `at` has passed; otherwise the current task is woken by then.
    fn poll_until(self: Pin<&mut Self>, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if let Some(armed) = *this.armed
            && armed <= at
            && !this.sleep.is_elapsed()
        {
            return Poll::Pending;
        }
        if *this.armed != Some(at) {
            this.sleep.as_mut().reset(at);
            *this.armed = Some(at);
        }
        this.sleep.poll(cx)
    }
}

/// Polls a job until it finishes (`Some(outcome)`) or its deadline passes (`None`). The deadline is computed only
/// when the first poll leaves the task pending: a task that is ready at once never needs the timer.
pub(crate) struct RunJob<'a> {
    pub(crate) job: &'a dyn Job,
    pub(crate) timer: Pin<&'a mut DeadlineTimer>,
    pub(crate) deadline: Deadline,
}

/// When a running task times out.
pub(crate) enum Deadline {
    /// Not known yet: the task's own deadline, else `start` plus the pool's timeout (if any).
    Unset {
        own: Option<Instant>,
        start: Instant,
        timeout: Option<Duration>,
    },
    /// Then.
    At(Instant),
    /// The task has none.
    Never,
}

impl Future for RunJob<'_> {
    type Output = Option<Outcome>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outcome>> {
        let this = &mut *self;
        if let Poll::Ready(outcome) = this.job.poll_run(cx) {
            return Poll::Ready(Some(outcome));
        }
        if let Deadline::Unset {
            own,
            start,
            timeout,
        } = this.deadline
        {
            this.deadline = match own.or_else(|| timeout.and_then(|t| start.checked_add(t))) {
                Some(at) => Deadline::At(at),
                None => Deadline::Never,
            };
        }
        if let Deadline::At(at) = this.deadline
            && this.timer.as_mut().poll_until(at, cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// The result of a task submitted with [`WorkerPool::submit`](crate::WorkerPool::submit): a future resolving to
/// `Result<T, TaskError<E>>` (`E` is [`Infallible`] for tasks that cannot fail).
///
/// Dropping the handle detaches the task: it still runs and is counted, its result is dropped. Call
/// [`cancel`](Self::cancel) to stop it, or make the handle cancel it when dropped with
/// [`cancel_on_drop`](Self::cancel_on_drop) (a request handler whose client went away, say). Awaiting the handle is
/// cancel-safe (dropping the `await` loses nothing but the result).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use otlp_patterns::{TaskError, WorkerPool};
///
/// let pool = WorkerPool::builder("reports").workers(1).build()?;
/// let report = pool.submit(std::future::pending::<()>()).await?;
/// report.cancel(); // the task is dropped at its next poll, counted as cancelled
/// assert_eq!(report.await, Err(TaskError::Cancelled));
///
/// // Tied to a scope: leaving it cancels the task.
/// let guard = pool.submit(std::future::pending::<()>()).await?.cancel_on_drop();
/// drop(guard);
/// pool.shutdown_now().await;
/// assert_eq!(pool.stats().cancelled, 2);
/// # Ok(()) }
/// ```
#[must_use = "a TaskHandle does nothing unless awaited; drop it to detach the task"]
pub struct TaskHandle<T, E = Infallible> {
    task: Arc<dyn Linked<T, E>>,
    cancel_on_drop: bool,
    /// The result was taken (the job is done with the link): dropping the handle has nothing to tell it.
    taken: bool,
}

impl<T, E> std::fmt::Debug for TaskHandle<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("cancel_requested", &self.task.link().is_cancelled())
            .field("cancel_on_drop", &self.cancel_on_drop)
            .finish_non_exhaustive()
    }
}

impl<T, E> TaskHandle<T, E> {
    /// The result if the task already finished, without waiting: `None` while it is queued or running.
    pub fn try_result(&mut self) -> Option<Result<T, TaskError<E>>> {
        let mut st = lock(&self.task.link().state);
        match st.result.take() {
            Some(r) => {
                self.taken = true;
                Some(r)
            }
            None if st.job_gone || self.task.link().is_settled() => Some(Err(TaskError::Cancelled)),
            None => None,
        }
    }

    /// Asks the task to stop: a queued task will not run (its handle resolves at once; the task is counted when a
    /// worker takes it off the queue), a running one is dropped at its next poll (that is, at an `.await`). It is
    /// counted as `cancelled` and the handle resolves to [`TaskError::Cancelled`], unless it had already
    /// finished, in which case the handle keeps its result. Returns at once; await the handle to know
    /// how it ended.
    pub fn cancel(&self) {
        self.task.link().cancel();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancel_requested(&self) -> bool {
        self.task.link().is_cancelled()
    }

    /// Makes dropping this handle cancel the task (instead of detaching it), so the task lives no longer than the
    /// handle.
    pub fn cancel_on_drop(mut self) -> Self {
        self.cancel_on_drop = true;
        self
    }
}

impl<T, E> Drop for TaskHandle<T, E> {
    fn drop(&mut self) {
        if self.taken {
            // The job delivered its result (and with it the waker it woke): nothing is left to tell it.
            return;
        }
        if self.cancel_on_drop {
            self.task.link().cancel();
        }
        let mut st = lock(&self.task.link().state);
        st.handle_gone = true;
        st.handle_waker = None;
        // Dropped outside the lock: the value's own `Drop` may be arbitrary code.
        let result = st.result.take();
        drop(st);
        drop(result);
    }
}

impl<T, E> Future for TaskHandle<T, E> {
    type Output = Result<T, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut st = lock(&this.task.link().state);
        if let Some(result) = st.result.take() {
            this.taken = true;
            return Poll::Ready(result);
        }
        if st.job_gone || this.task.link().is_settled() {
            // Dropped without a result (only cancellation does that), or cancelled before a worker started it:
            // it will not run, and its worker counts it when it takes it off the queue.
            return Poll::Ready(Err(TaskError::Cancelled));
        }
        match &st.handle_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.handle_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
