//! A fixed set of long-lived workers serving a bounded queue of tasks.
//!
//! [`WorkerPool`] is the answer to "run these futures, at most `n` at a time, with backpressure, timeouts,
//! metrics and a clean shutdown". Each submitted task is one boxed job (the future, where its result goes, its
//! span and its deadline) pushed onto a bounded queue; `n` workers spawned at build pop and run jobs one at a time.
//!
//! * **Backpressure**: [`submit`](WorkerPool::submit) waits for room in the queue; [`try_submit`](WorkerPool::try_submit)
//!   fails at once with [`SubmitError::Full`].
//! * **Timeouts**: every task gets the pool's `task_timeout` (5 s by default) from the moment it starts; a task
//!   submitted with [`submit_with_deadline`](WorkerPool::submit_with_deadline) gets that deadline instead, counted
//!   from submission (a task whose deadline passes while queued times out without running).
//! * **Tasks**: [`submit`](WorkerPool::submit) takes any future and its [`TaskHandle`] resolves to
//!   `Result<T, TaskError>`: the value, or `Panicked(msg)` (the panic is caught, the worker keeps serving),
//!   `TimedOut` or `Cancelled`. A task that can fail goes through
//!   [`submit_fallible`](WorkerPool::submit_fallible): it returns `Result<T, E>`, its handle resolves to
//!   `Result<T, TaskError<E>>`, and an `Err` is `Failed(E)`, counted as `error`.
//! * **Cancellation**: [`TaskHandle::cancel`] stops one task (queued: it never runs; running: it is dropped at its
//!   next `.await`), and [`TaskHandle::cancel_on_drop`] ties a task to its handle. Dropping a plain handle
//!   detaches the task.
//! * **Context**: each task runs in a `worker_pool.task` span (debug level) whose parent is the span current at
//!   submission, so traces follow work into the pool; [`current_token`](crate::current_token) gives the pool's
//!   cancellation token (a child of the builder's `parent`).
//! * **Shutdown**: [`shutdown(deadline)`](WorkerPool::shutdown) stops accepting, lets the workers drain the queue
//!   and finish until the deadline, then cancels whatever is left; [`shutdown_now`](WorkerPool::shutdown_now)
//!   cancels at once. When either returns, no task of the pool is alive. Dropping the pool without a shutdown
//!   cancels everything (running tasks are dropped at their next `.await`, queued ones never run), without waiting.
//!   Cancelling the `parent` token does the same.
//! * **Resizing**: [`resize(n)`](WorkerPool::resize) changes the number of workers while the pool runs, up to the
//!   builder's `max_workers`: new workers start at once; surplus ones finish the task they are running (nothing is
//!   cancelled) and exit before taking another.
//! * **Accounting**: every submission is counted as exactly one outcome; once the pool is shut down,
//!   `submitted = completed + failed + panicked + timed_out + cancelled + rejected` ([`WorkerPoolStats`]).
//!
//! A task that `submit`s to its own pool and awaits the result can deadlock once every worker does so (the
//! classic pool-within-pool trap): use `try_submit`, or another pool, for nested work.
//!
//! Cancellation drops futures at their `.await` points: a task that blocks its thread (a CPU loop with no
//! `.await`) cannot be interrupted, and `shutdown` waits for it. Use `spawn_blocking` for such work.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use otlp_patterns::{TaskError, WorkerPool};
//!
//! let pool = WorkerPool::builder("thumbnails")
//!     .workers(4)
//!     .queue(64)
//!     .task_timeout(Duration::from_secs(2))
//!     .build()?;
//!
//! // A task that cannot fail: its value, or why there is none (a panic, a timeout, a cancellation).
//! let ok = pool.submit(async { 21 * 2 }).await?;
//! assert_eq!(ok.await, Ok(42));
//!
//! // A task that can fail: its `Err` is kept, and counted as `error`.
//! async fn resize(name: &str) -> Result<u32, String> {
//!     Err(format!("no such image: {name}"))
//! }
//! let bad = pool.submit_fallible(resize("cat.png")).await?;
//! assert_eq!(bad.await, Err(TaskError::Failed("no such image: cat.png".to_string())));
//!
//! let report = pool.shutdown(tokio::time::Instant::now() + Duration::from_secs(5)).await;
//! assert_eq!(report.cancelled, 0);
//! let stats = pool.stats();
//! assert_eq!((stats.submitted, stats.completed, stats.failed), (2, 1, 1));
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{Attributes, Observations, Recorder, Registration, Source};
use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::Span;

use crate::outcome::{OutcomeCounters, sum};
use crate::queue::{PushError, Queue};
use crate::roster::Roster;
use crate::sync::{AtomicU64, Ordering};
use crate::task::{Deadline, DeadlineTimer, Infallibly, JobRef, RunJob, TaskJob};
use crate::telemetry::{self, OutcomeAttributes, SCOPE, secs};
use crate::{BuildError, Outcome, ResizeError, SubmitError, TaskHandle};

/// The default per-task timeout (the Go original's 5 s).
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures a [`WorkerPool`]; see [`WorkerPool::builder`].
#[derive(Debug, Clone)]
pub struct WorkerPoolBuilder {
    name: String,
    workers: usize,
    max_workers: Option<usize>,
    queue: Option<usize>,
    task_timeout: Duration,
    parent: Option<CancellationToken>,
    runtime: Option<Handle>,
    meter: Option<Meter>,
}

impl WorkerPoolBuilder {
    /// Number of workers, i.e. of tasks running at once (default: the available parallelism). 0 is an error.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The most workers [`WorkerPool::resize`] may set (default: `workers`, i.e. no growth). Below `workers` is an
    /// error. Each possible worker costs one small counter block, allocated at build.
    pub fn max_workers(mut self, max: usize) -> Self {
        self.max_workers = Some(max);
        self
    }

    /// Tasks that may wait in the queue (default: 64 per worker). 0 is an error.
    pub fn queue(mut self, capacity: usize) -> Self {
        self.queue = Some(capacity);
        self
    }

    /// Time a task may run before it is dropped and reported as [`TaskError::TimedOut`](crate::TaskError::TimedOut)
    /// (default [`DEFAULT_TASK_TIMEOUT`], 5 s). `Duration::MAX` means no timeout; zero is an error.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = timeout;
        self
    }

    /// Makes the pool's cancellation token a child of `token`: cancelling `token` cancels the pool (like
    /// [`WorkerPool::shutdown_now`], without waiting).
    pub fn parent(mut self, token: CancellationToken) -> Self {
        self.parent = Some(token);
        self
    }

    /// Spawns the workers on `handle` instead of the current runtime.
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Gives the instruments to `meter` instead of the process-wide registry of scope `otlp-patterns`, which
    /// follows the global meter provider (for tests and loom models): they report while this owner lives.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Validates the configuration, registers the instruments and spawns the workers.
    pub fn build(self) -> Result<WorkerPool, BuildError> {
        if self.workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        let max_workers = self.max_workers.unwrap_or(self.workers);
        if max_workers < self.workers {
            return Err(BuildError::MaxWorkersBelowWorkers {
                workers: self.workers,
                max: max_workers,
            });
        }
        let capacity = self.queue.unwrap_or(self.workers.saturating_mul(64));
        if capacity == 0 {
            return Err(BuildError::ZeroQueue);
        }
        if self.task_timeout.is_zero() {
            return Err(BuildError::ZeroTimeout);
        }
        let runtime = match self.runtime {
            Some(h) => h,
            None => Handle::try_current().map_err(|_| BuildError::NoRuntime)?,
        };
        let token = match &self.parent {
            Some(parent) => parent.child_token(),
            None => CancellationToken::new(),
        };
        let attrs = [KeyValue::new("worker_pool.name", self.name.clone())];
        let link = SCOPE.link(self.meter);
        let set = Attributes::new(attrs.to_vec());
        let shared = Arc::new(Shared {
            queue: Queue::new(capacity),
            shards: (0..max_workers).map(|_| WorkerShard::default()).collect(),
            pool_counts: OutcomeCounters::new(),
            alive: AtomicU64::new(0),
            roster: Roster::new(max_workers),
            resize: std::sync::Mutex::new(ResizeState {
                spawned: Vec::new(),
                runtime: runtime.clone(),
            }),
            timeout: if self.task_timeout == Duration::MAX {
                None
            } else {
                Some(self.task_timeout)
            },
            token,
            run: link.recorder(telemetry::WORKER_POOL_RUN, &set),
            wait: link.recorder(telemetry::WORKER_POOL_WAIT, &set),
            link,
            outcome_attrs: OutcomeAttributes::new(&attrs, &Outcome::ALL),
            attrs: set,
            aborts: std::sync::Mutex::new(Vec::with_capacity(self.workers)),
            name: self.name,
        });
        shared.link.add(shared.clone());

        // Every timer first: nothing is spawned unless all can be made.
        let timers = (0..self.workers)
            .map(|_| deadline_timer(&runtime))
            .collect::<Result<Vec<_>, _>>()?;
        let (_, slots) = shared.roster.resize(self.workers);
        let workers = {
            let resize = lock_std(&shared.resize);
            slots
                .into_iter()
                .zip(timers)
                .map(|(index, sleep)| spawn_worker(&shared, &resize, index, sleep))
                .collect()
        };
        let supervisor = self.parent.map(|_| {
            let shared = Arc::clone(&shared);
            runtime.spawn(async move {
                shared.token.cancelled().await;
                shared.cancel();
            })
        });
        Ok(WorkerPool {
            shared,
            handles: tokio::sync::Mutex::new(Handles {
                workers,
                supervisor,
            }),
        })
    }
}

/// Spawns the worker of slot `index` (which the roster just gave out) on the pool's runtime.
fn spawn_worker(
    shared: &Arc<Shared>,
    resize: &ResizeState,
    index: usize,
    sleep: Sleep,
) -> JoinHandle<()> {
    shared.alive.fetch_add(1, Ordering::Relaxed);
    let fut = crate::context::with_token(
        shared.token.clone(),
        worker(Arc::clone(shared), index, sleep),
    );
    let handle = resize.runtime.spawn(fut);
    let mut aborts = lock_std(&shared.aborts);
    // Workers that retired leave finished handles behind: drop those, so resizing does not grow the list.
    aborts.retain(|a| !a.is_finished());
    aborts.push(handle.abort_handle());
    handle
}

/// What `resize` needs to start workers, under a lock that `shutdown` takes too.
struct ResizeState {
    /// Workers started by `resize`, for `shutdown` to wait for.
    spawned: Vec<JoinHandle<()>>,
    runtime: Handle,
}

/// A worker's reusable deadline timer. Fails (instead of panicking in the worker) if the runtime has no timer.
fn deadline_timer(runtime: &Handle) -> Result<Sleep, BuildError> {
    let _enter = runtime.enter();
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    catch_unwind(|| tokio::time::sleep_until(far)).map_err(|_| BuildError::NoTimer)
}

fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drops `job`, containing a panic from the user's `Drop`.
fn drop_quietly(job: JobRef) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(job)));
}

/// One worker's counters, written only by that worker (so they do not bounce between cores).
#[derive(Debug, Default)]
struct WorkerShard {
    counts: OutcomeCounters,
    active: AtomicU64,
}

/// State shared by the pool handle, its workers and its metric callbacks.
struct Shared {
    name: String,
    queue: Queue<JobRef>,
    shards: Box<[WorkerShard]>,
    /// Outcomes decided outside a worker: rejections, and queued tasks cancelled before they ran.
    pool_counts: OutcomeCounters,
    alive: AtomicU64,
    /// Which worker slots are live and how many are wanted (`roster.rs`).
    roster: Roster,
    resize: std::sync::Mutex<ResizeState>,
    timeout: Option<Duration>,
    token: CancellationToken,
    /// The scope's instruments: the registry holds this `Shared` as the source of the pool's counters (keeping
    /// its cumulative counts once the pool is gone), and the workers record durations through it.
    link: Registration,
    /// `worker_pool.task.duration` and `worker_pool.task.wait.duration` with `attrs`.
    run: Recorder,
    wait: Recorder,
    /// `worker_pool.name`, built once.
    attrs: Attributes,
    outcome_attrs: OutcomeAttributes,
    aborts: std::sync::Mutex<Vec<AbortHandle>>,
}

impl Shared {
    fn outcomes(&self) -> [u64; 6] {
        sum(self
            .shards
            .iter()
            .map(|s| &s.counts)
            .chain(std::iter::once(&self.pool_counts)))
    }

    fn active(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.active.load(Ordering::Relaxed))
            .sum()
    }

    /// Cancels everything: the token, the queue (no more pushes), the workers (their running task is dropped
    /// and counted as cancelled) and the queued tasks (counted as cancelled). Does not wait.
    fn cancel(&self) {
        self.token.cancel();
        self.queue.close();
        for abort in lock_std(&self.aborts).iter() {
            abort.abort();
        }
        for job in self.queue.core().drain() {
            job.abandon(Outcome::Cancelled);
            self.pool_counts.add(Outcome::Cancelled, 1);
            drop_quietly(job);
        }
    }
}

impl Source for Shared {
    fn observe(&self, out: &mut Observations<'_>) {
        let attrs = &self.attrs;
        out.observe(
            telemetry::WORKER_POOL_WORKERS,
            self.alive.load(Ordering::Relaxed),
            attrs,
        );
        out.observe(telemetry::WORKER_POOL_ACTIVE, self.active(), attrs);
        out.observe(
            telemetry::WORKER_POOL_QUEUE_SIZE,
            self.queue.len() as u64,
            attrs,
        );
        out.observe(
            telemetry::WORKER_POOL_QUEUE_CAPACITY,
            self.queue.capacity() as u64,
            attrs,
        );
        self.outcome_attrs
            .observe(out, telemetry::WORKER_POOL_TASKS, || self.outcomes());
    }
}

/// The task a worker is running; dropping it unfinished (the worker was aborted) counts it as cancelled.
struct InFlight<'a> {
    job: Option<JobRef>,
    shard: &'a WorkerShard,
    alive: &'a AtomicU64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            job.abandon(Outcome::Cancelled);
            self.shard.counts.add(Outcome::Cancelled, 1);
            self.shard.active.store(0, Ordering::Relaxed);
            drop_quietly(job);
        }
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn worker(shared: Arc<Shared>, index: usize, sleep: Sleep) {
    let Some(shard) = shared.shards.get(index) else {
        return;
    };
    let mut slot = InFlight {
        job: None,
        shard,
        alive: &shared.alive,
    };
    let mut timer = std::pin::pin!(DeadlineTimer::new(sleep));
    // When a job is waiting as the previous one ends, the previous end is the next start: one clock read saved.
    let mut last_end: Option<Instant> = None;
    loop {
        // Give the runtime a chance to run other tasks (the submitters this worker woke sit in this thread's
        // LIFO slot) when the coop budget is out; free otherwise.
        tokio::task::coop::consume_budget().await;
        if shared.roster.retire(index) {
            break;
        }
        let (job, start) = match shared.queue.try_pop() {
            // The previous task just ended and this one was already waiting: the previous end is this start.
            Some(job) => (job, last_end.unwrap_or_else(Instant::now)),
            None => match shared
                .queue
                .pop_unless(|| shared.roster.retire(index))
                .await
            {
                Some(job) => {
                    // This worker waited for work: cheap enough to catch up with a provider installed since.
                    shared.link.follow();
                    (job, Instant::now())
                }
                None => break,
            },
        };
        shared
            .wait
            .record(secs(start.saturating_duration_since(job.enqueued_at())));
        shard.active.store(1, Ordering::Relaxed);
        let job = slot.job.insert(job);
        let own = job.deadline();
        let outcome = if own.is_some_and(|d| d <= start) {
            // Its deadline passed while it waited: it times out without running.
            None
        } else {
            RunJob {
                job: &**job,
                timer: timer.as_mut(),
                deadline: Deadline::Unset {
                    own,
                    start,
                    timeout: shared.timeout,
                },
            }
            .await
        };
        let outcome = outcome.unwrap_or_else(|| {
            job.abandon(Outcome::Timeout);
            Outcome::Timeout
        });
        let end = Instant::now();
        last_end = Some(end);
        shared
            .run
            .record(secs(end.saturating_duration_since(start)));
        shard.counts.add(outcome, 1);
        shard.active.store(0, Ordering::Relaxed);
        if let Some(job) = slot.job.take() {
            drop_quietly(job);
        }
    }
}

struct Handles {
    workers: Vec<JoinHandle<()>>,
    supervisor: Option<JoinHandle<()>>,
}

/// Waits for every handle, removing each once it finished (so a dropped wait loses nothing).
async fn join_all(handles: &mut Vec<JoinHandle<()>>) {
    while let Some(last) = handles.last_mut() {
        let _ = last.await;
        handles.pop();
    }
}

/// A snapshot of a worker pool's counters; see [`WorkerPool::stats`].
///
/// Once the pool is shut down, `submitted = completed + failed + panicked + timed_out + cancelled + rejected`.
/// While it runs, `queued` and `active` tasks are the difference (read at slightly different instants).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerPoolStats {
    /// Calls to `submit`, `try_submit`, `execute`... that returned (accepted or rejected).
    pub submitted: u64,
    /// Tasks that returned `Ok`.
    pub completed: u64,
    /// Tasks that returned `Err`.
    pub failed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks that missed their deadline.
    pub timed_out: u64,
    /// Tasks cancelled before they finished (shutdown past its deadline, parent token, drop).
    pub cancelled: u64,
    /// Submissions refused (queue full or pool closed).
    pub rejected: u64,
    /// Tasks waiting in the queue now.
    pub queued: u64,
    /// Tasks running now.
    pub active: u64,
    /// Workers alive now (the `worker_pool.worker.count` up-down counter).
    pub workers: u64,
}

impl WorkerPoolStats {
    /// Tasks that reached an outcome (every outcome, rejections included).
    pub fn finished(&self) -> u64 {
        self.completed
            + self.failed
            + self.panicked
            + self.timed_out
            + self.cancelled
            + self.rejected
    }
}

/// What [`WorkerPool::shutdown`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks that reached an outcome other than `cancelled` during the shutdown (the queue drained).
    pub completed: u64,
    /// Tasks cancelled: still queued or running when the deadline came.
    pub cancelled: u64,
    /// Whether the deadline came before the workers drained the queue.
    pub deadline_reached: bool,
}

/// A fixed set of workers serving a bounded queue of tasks; see the [module docs](self).
pub struct WorkerPool {
    shared: Arc<Shared>,
    handles: tokio::sync::Mutex<Handles>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("name", &self.shared.name)
            .field("workers", &self.workers())
            .field("max_workers", &self.max_workers())
            .field("capacity", &self.shared.queue.capacity())
            .field("task_timeout", &self.shared.timeout)
            .field("stats", &self.stats())
            .finish()
    }
}

impl WorkerPool {
    /// A builder for a pool named `name` (the `worker_pool.name` attribute of its metrics).
    pub fn builder(name: impl Into<String>) -> WorkerPoolBuilder {
        WorkerPoolBuilder {
            name: name.into(),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            max_workers: None,
            queue: None,
            task_timeout: DEFAULT_TASK_TIMEOUT,
            parent: None,
            runtime: None,
            meter: None,
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The number of workers asked for (at build, or by the last [`resize`](Self::resize)). Right after a
    /// shrink, surplus workers may still be finishing their task: [`WorkerPoolStats::workers`] counts the live ones.
    pub fn workers(&self) -> usize {
        self.shared.roster.target()
    }

    /// The most workers [`resize`](Self::resize) may set (the builder's `max_workers`).
    pub fn max_workers(&self) -> usize {
        self.shared.roster.max()
    }

    /// Sets the number of workers to `workers` (1 to [`max_workers`](Self::max_workers)) while the pool runs.
    ///
    /// Growing starts the new workers at once. Shrinking never cancels anything: each surplus worker finishes the
    /// task it is running, then exits instead of taking another (idle ones exit at once). Returns at once in both
    /// cases; [`WorkerPoolStats::workers`] shows the live workers.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use otlp_patterns::{ResizeError, WorkerPool};
    ///
    /// let pool = WorkerPool::builder("resizable").workers(2).max_workers(8).build()?;
    /// pool.resize(8)?; // a burst: more workers
    /// pool.resize(1)?; // quiet again
    /// assert_eq!(pool.workers(), 1);
    /// assert_eq!(pool.resize(9), Err(ResizeError::OutOfRange { requested: 9, max: 8 }));
    /// pool.shutdown_now().await;
    /// assert_eq!(pool.resize(2), Err(ResizeError::Closed));
    /// # Ok(()) }
    /// ```
    pub fn resize(&self, workers: usize) -> Result<(), ResizeError> {
        let max = self.max_workers();
        if workers == 0 || workers > max {
            return Err(ResizeError::OutOfRange {
                requested: workers,
                max,
            });
        }
        let shared = &self.shared;
        let mut resize = lock_std(&shared.resize);
        // Under the resize lock: `shutdown` closes the queue, then takes this lock to collect what was spawned.
        if shared.queue.core().is_closed() {
            return Err(ResizeError::Closed);
        }
        let (before, slots) = shared.roster.resize(workers);
        resize.spawned.retain(|h| !h.is_finished());
        let mut failed = false;
        for index in slots {
            match deadline_timer(&resize.runtime) {
                Ok(sleep) if !failed => {
                    let handle = spawn_worker(shared, &resize, index, sleep);
                    resize.spawned.push(handle);
                }
                // The runtime lost its timer (it is shutting down): give the slots back.
                _ => {
                    failed = true;
                    shared.roster.vacate(index);
                }
            }
        }
        drop(resize);
        if failed {
            return Err(ResizeError::Closed);
        }
        if workers < before {
            shared.queue.wake_idle();
        }
        Ok(())
    }

    /// How many tasks the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.shared.queue.capacity()
    }

    /// The pool's cancellation token (what [`current_token`](crate::current_token) returns inside its tasks).
    pub fn token(&self) -> &CancellationToken {
        &self.shared.token
    }

    /// Whether the pool stopped accepting tasks (shutdown or cancellation began).
    pub fn is_closed(&self) -> bool {
        self.shared.queue.core().is_closed()
    }

    fn task_span(&self) -> Span {
        tracing::debug_span!(parent: &Span::current(), "worker_pool.task", worker_pool.name = %self.shared.name)
    }

    fn rejected(&self, err: PushError<JobRef>) -> SubmitError {
        self.shared.pool_counts.add(Outcome::Rejected, 1);
        let (job, err) = match err {
            PushError::Full(job) => (job, SubmitError::Full),
            PushError::Closed(job) => (job, SubmitError::Closed),
        };
        drop_quietly(job);
        err
    }

    /// Queues `fut`, waiting for room if the queue is full, and returns a handle to its result.
    ///
    /// `fut` is any future: its output is the task's value, and the task is counted `ok` when it finishes (use
    /// [`submit_fallible`](Self::submit_fallible) for a task returning `Result`, so its errors count as `error`).
    /// Fails with [`SubmitError::Closed`] once the pool shuts down. Cancel-safe: dropped while waiting for room,
    /// it drops `fut` unrun and counts nothing.
    pub async fn submit<F>(&self, fut: F) -> Result<TaskHandle<F::Output>, SubmitError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.push_handle(Infallibly::new(fut), None).await
    }

    /// Queues `fut`, a task that may fail, waiting for room: its handle resolves to its value or
    /// [`TaskError::Failed`](crate::TaskError::Failed) with its error, counted as `ok` or `error`. Otherwise like
    /// [`submit`](Self::submit).
    pub async fn submit_fallible<F, T, E>(&self, fut: F) -> Result<TaskHandle<T, E>, SubmitError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + std::fmt::Debug + 'static,
    {
        self.push_handle(fut, None).await
    }

    /// Like [`submit`](Self::submit), with the task's own `deadline` instead of the pool's timeout. The deadline
    /// counts from now, queueing included: a task still queued at its deadline times out without running.
    pub async fn submit_with_deadline<F>(
        &self,
        deadline: Instant,
        fut: F,
    ) -> Result<TaskHandle<F::Output>, SubmitError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.push_handle(Infallibly::new(fut), Some(deadline)).await
    }

    /// [`submit_fallible`](Self::submit_fallible) with the task's own `deadline` (see
    /// [`submit_with_deadline`](Self::submit_with_deadline)).
    pub async fn submit_fallible_with_deadline<F, T, E>(
        &self,
        deadline: Instant,
        fut: F,
    ) -> Result<TaskHandle<T, E>, SubmitError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + std::fmt::Debug + 'static,
    {
        self.push_handle(fut, Some(deadline)).await
    }

    /// Queues `fut` if there is room now; else fails at once with [`SubmitError::Full`] (`fut` is dropped and
    /// counted as rejected).
    pub fn try_submit<F>(&self, fut: F) -> Result<TaskHandle<F::Output>, SubmitError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.try_push_handle(Infallibly::new(fut))
    }

    /// [`submit_fallible`](Self::submit_fallible) if there is room now; else [`SubmitError::Full`].
    pub fn try_submit_fallible<F, T, E>(&self, fut: F) -> Result<TaskHandle<T, E>, SubmitError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + std::fmt::Debug + 'static,
    {
        self.try_push_handle(fut)
    }

    async fn push_handle<F, T, E>(
        &self,
        fut: F,
        deadline: Option<Instant>,
    ) -> Result<TaskHandle<T, E>, SubmitError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + std::fmt::Debug + 'static,
    {
        let (job, handle) = TaskJob::with_handle(fut, self.task_span(), deadline);
        match self.shared.queue.push(job).await {
            Ok(()) => Ok(handle),
            Err(e) => Err(self.rejected(e)),
        }
    }

    fn try_push_handle<F, T, E>(&self, fut: F) -> Result<TaskHandle<T, E>, SubmitError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + std::fmt::Debug + 'static,
    {
        let (job, handle) = TaskJob::with_handle(fut, self.task_span(), None);
        match self.shared.queue.try_push(job) {
            Ok(()) => Ok(handle),
            Err(e) => Err(self.rejected(e)),
        }
    }

    /// Queues `fut` without a handle (fire and forget: one allocation), waiting for room. Its outcome is only
    /// counted; a panic is also logged at debug level. Cancel-safe like [`submit`](Self::submit).
    pub async fn execute<F>(&self, fut: F) -> Result<(), SubmitError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.execute_fallible(Infallibly::new(fut)).await
    }

    /// [`execute`](Self::execute) for a task that may fail: an `Err` is counted as `error` and logged at debug
    /// level.
    pub async fn execute_fallible<F, E>(&self, fut: F) -> Result<(), SubmitError>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Send + std::fmt::Debug + 'static,
    {
        let job = TaskJob::detached(fut, self.task_span(), None);
        match self.shared.queue.push(job).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.rejected(e)),
        }
    }

    /// [`execute`](Self::execute) if there is room now; else [`SubmitError::Full`].
    pub fn try_execute<F>(&self, fut: F) -> Result<(), SubmitError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.try_execute_fallible(Infallibly::new(fut))
    }

    /// [`execute_fallible`](Self::execute_fallible) if there is room now; else [`SubmitError::Full`].
    pub fn try_execute_fallible<F, E>(&self, fut: F) -> Result<(), SubmitError>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Send + std::fmt::Debug + 'static,
    {
        let job = TaskJob::detached(fut, self.task_span(), None);
        match self.shared.queue.try_push(job) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.rejected(e)),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WorkerPoolStats {
        self.shared.link.follow();
        let accepted = self.shared.queue.core().accepted();
        let [ok, error, panic, timeout, cancelled, rejected] = self.shared.outcomes();
        WorkerPoolStats {
            submitted: accepted + rejected,
            completed: ok,
            failed: error,
            panicked: panic,
            timed_out: timeout,
            cancelled,
            rejected,
            queued: self.shared.queue.len() as u64,
            active: self.shared.active(),
            workers: self.shared.alive.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting tasks, lets the workers drain the queue and finish their tasks until `deadline`, then
    /// cancels the rest (the token is cancelled, running tasks are dropped at their next `.await`, queued ones never
    /// run; all are counted as cancelled) and waits for the workers to exit.
    ///
    /// When it returns, no task of the pool is alive. Calling it again (or after `shutdown_now`) returns at once.
    /// Cancel-safe: if the returned future is dropped, the pool stays closed and its workers keep draining; a later
    /// call or dropping the pool finishes the job.
    pub async fn shutdown(&self, deadline: Instant) -> ShutdownReport {
        let before = self.stats();
        self.shared.queue.close();
        let mut handles = self.handles.lock().await;
        // Workers started by `resize`: none can start once the queue is closed (it checks under this lock).
        handles
            .workers
            .append(&mut lock_std(&self.shared.resize).spawned);
        let drained = tokio::time::timeout_at(deadline, join_all(&mut handles.workers))
            .await
            .is_ok();
        self.shared.cancel();
        join_all(&mut handles.workers).await;
        if let Some(supervisor) = handles.supervisor.as_mut() {
            let _ = supervisor.await;
            handles.supervisor = None;
        }
        let after = self.stats();
        let cancelled = after.cancelled.saturating_sub(before.cancelled);
        let finished = |s: &WorkerPoolStats| s.finished().saturating_sub(s.rejected);
        ShutdownReport {
            completed: finished(&after)
                .saturating_sub(finished(&before))
                .saturating_sub(cancelled),
            cancelled,
            deadline_reached: !drained,
        }
    }

    /// Cancels everything now (queued and running tasks) and waits for the workers to exit: `shutdown` with a
    /// deadline that already passed.
    pub async fn shutdown_now(&self) -> ShutdownReport {
        self.shutdown(Instant::now()).await
    }
}

impl Drop for WorkerPool {
    /// Cancels every queued and running task (counted as cancelled) without waiting; see the module docs.
    fn drop(&mut self) {
        self.shared.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskError;

    /// A small end-to-end run, cheap enough for miri: every outcome, a shutdown past its deadline, no task left.
    #[test]
    fn outcomes_shutdown_and_no_leak() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let before = Handle::current().metrics().num_alive_tasks();
            let pool = WorkerPool::builder("unit")
                .workers(2)
                .queue(4)
                .task_timeout(Duration::from_millis(10))
                .build()
                .unwrap();
            let ok = pool
                .submit_fallible(async { Ok::<_, u8>(1) })
                .await
                .unwrap();
            let err = pool
                .submit_fallible(async { Err::<u8, _>(2u8) })
                .await
                .unwrap();
            let slow = pool
                .submit_fallible(std::future::pending::<Result<u8, u8>>())
                .await
                .unwrap();
            pool.execute_fallible(async { Ok::<_, u8>(()) })
                .await
                .unwrap();
            assert_eq!(ok.await, Ok(1));
            assert_eq!(err.await, Err(TaskError::Failed(2)));
            assert_eq!(slow.await, Err(TaskError::TimedOut));
            let stuck = pool
                .submit_fallible(std::future::pending::<Result<u8, u8>>())
                .await
                .unwrap();
            let report = pool.shutdown_now().await;
            assert_eq!(report.cancelled, 1);
            assert_eq!(stuck.await, Err(TaskError::Cancelled));
            assert_eq!(Handle::current().metrics().num_alive_tasks(), before);
            let s = pool.stats();
            assert_eq!(
                (s.submitted, s.completed, s.failed, s.timed_out, s.cancelled),
                (5, 2, 1, 1, 1)
            );
        });
    }

    /// Dropping the pool cancels its tasks without waiting.
    #[test]
    fn drop_cancels() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = WorkerPool::builder("unit-drop")
                .workers(1)
                .queue(2)
                .build()
                .unwrap();
            let a = pool
                .submit_fallible(std::future::pending::<Result<u8, u8>>())
                .await
                .unwrap();
            let b = pool
                .submit_fallible(std::future::pending::<Result<u8, u8>>())
                .await
                .unwrap();
            tokio::task::yield_now().await;
            drop(pool);
            assert_eq!(a.await, Err(TaskError::Cancelled));
            assert_eq!(b.await, Err(TaskError::Cancelled));
        });
        drop(rt);
    }
}
