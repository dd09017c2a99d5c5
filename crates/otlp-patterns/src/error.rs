//! Typed errors: bad configuration ([`BuildError`]), refused submissions ([`SubmitError`]) and how a task failed
//! ([`TaskError`]). Their messages say what went wrong and how to fix it.

use std::fmt;

/// A builder was given a configuration that cannot work. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// `workers(0)`: a pool without workers would never run anything.
    ZeroWorkers,
    /// `queue(0)`: a pool needs room for at least one queued task.
    ZeroQueue,
    /// `task_timeout(Duration::ZERO)`: every task would time out before it starts.
    ZeroTimeout,
    /// A concurrency of 0 (fan-out or a pipeline stage): nothing would ever run (the `buffer_unordered(0)` hang).
    ZeroConcurrency {
        /// What had the zero concurrency: `"fan-out"` or the stage name.
        what: String,
    },
    /// A concurrency above what the semaphore bounding it can count.
    ConcurrencyTooHigh {
        /// What had the concurrency: `"fan-out"` or the stage name.
        what: String,
        /// The most allowed.
        max: usize,
    },
    /// `capacity(0)` on a pipeline: a stage needs room for at least one queued item.
    ZeroCapacity,
    /// `max_workers(m)` below `workers(n)`: the pool could not even start with `n`.
    MaxWorkersBelowWorkers {
        /// The workers asked for.
        workers: usize,
        /// The most workers [`WorkerPool::resize`](crate::WorkerPool::resize) may set.
        max: usize,
    },
    /// No tokio runtime to spawn workers on.
    NoRuntime,
    /// The runtime has no timer, which task deadlines need.
    NoTimer,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroWorkers => {
                f.write_str("worker pool with 0 workers would never run a task: pass workers(n) with n >= 1")
            }
            BuildError::ZeroQueue => f.write_str(
                "worker pool with a queue of 0 could never accept a task: pass queue(capacity) with capacity >= 1",
            ),
            BuildError::ZeroTimeout => f.write_str(
                "a task timeout of 0 would time every task out before it starts: pass a positive task_timeout, \
                 or Duration::MAX for no timeout",
            ),
            BuildError::ZeroConcurrency { what } => {
                write!(f, "{what} has a concurrency of 0 and would hang forever: pass a concurrency >= 1")
            }
            BuildError::ConcurrencyTooHigh { what, max } => {
                write!(f, "{what} has a concurrency above {max}, the most a semaphore can count: pass less")
            }
            BuildError::ZeroCapacity => f.write_str(
                "pipeline channels with capacity 0 could never hold an item: pass capacity(n) with n >= 1",
            ),
            BuildError::NoTimer => f.write_str(
                "the tokio runtime has timers disabled, which task timeouts need: build it with enable_time() \
                 (or enable_all(); #[tokio::main] does)",
            ),
            BuildError::MaxWorkersBelowWorkers { workers, max } => write!(
                f,
                "worker pool with workers({workers}) above max_workers({max}): pass max_workers >= workers"
            ),
            BuildError::NoRuntime => f.write_str(
                "no tokio runtime: build inside a tokio runtime or pass one with .runtime(handle)",
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// [`WorkerPool::resize`](crate::WorkerPool::resize) refused the new size; the pool kept its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResizeError {
    /// The size is 0 or above the pool's `max_workers`.
    OutOfRange {
        /// The size asked for.
        requested: usize,
        /// The most allowed (the builder's `max_workers`).
        max: usize,
    },
    /// The pool is shutting down (or was cancelled).
    Closed,
}

impl fmt::Display for ResizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResizeError::OutOfRange { requested, max } => write!(
                f,
                "cannot resize a worker pool to {requested} workers: pass 1..={max}, or build it with a higher \
                 max_workers"
            ),
            ResizeError::Closed => {
                f.write_str("worker pool is shut down or cancelled and cannot be resized")
            }
        }
    }
}

impl std::error::Error for ResizeError {}

/// A task was not accepted by the worker pool; it was dropped without running and counted as `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubmitError {
    /// `try_submit` found the queue full. Retry later, use `submit` to wait for room, or raise `queue(..)`.
    Full,
    /// The pool is shutting down (or was cancelled) and accepts no more tasks.
    Closed,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Full => f.write_str(
                "worker pool queue is full: retry later, await submit() to wait for room, or raise queue(capacity)",
            ),
            SubmitError::Closed => f.write_str("worker pool is shut down or cancelled and accepts no more tasks"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Why a task did not produce a value. Panics and cancellations are kept apart (unlike tokio's `JoinError`).
///
/// `E` is the task's own error type; it is [`Infallible`](std::convert::Infallible) (the default) for tasks that
/// cannot fail, which then end only as `Panicked`, `TimedOut` or `Cancelled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError<E = std::convert::Infallible> {
    /// The task ran and returned this error.
    Failed(E),
    /// The task panicked with this message; the panic was caught and the worker kept serving.
    Panicked(String),
    /// The task did not finish before its deadline (the pool's `task_timeout`, or its own deadline) and was
    /// dropped.
    TimedOut,
    /// The task was cancelled before it finished: the pool was shut down past its deadline, its parent token was
    /// cancelled, the pool was dropped, or (fan-out) a fail-fast run stopped after another item's error.
    Cancelled,
}

impl<E> TaskError<E> {
    /// The outcome this error is counted as.
    pub fn outcome(&self) -> crate::Outcome {
        match self {
            TaskError::Failed(_) => crate::Outcome::Error,
            TaskError::Panicked(_) => crate::Outcome::Panic,
            TaskError::TimedOut => crate::Outcome::Timeout,
            TaskError::Cancelled => crate::Outcome::Cancelled,
        }
    }

    /// The task's own error, if it returned one.
    pub fn into_failed(self) -> Option<E> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => write!(f, "task failed: {e}"),
            TaskError::Panicked(msg) => write!(f, "task panicked: {msg}"),
            TaskError::TimedOut => {
                f.write_str("task timed out: it did not finish before its deadline")
            }
            TaskError::Cancelled => f.write_str("task cancelled before it finished"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TaskError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// The message of a caught panic payload: its text when it is a string; else its type (and its value, for the
/// types a panic commonly carries: numbers, `bool`, `char`, errors); else that its type cannot be told (a `dyn Any`
/// keeps only a `TypeId`, which is printed so that two such panics can at least be told apart).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        return (*s).to_owned();
    }
    if let Some(s) = payload.downcast_ref::<String>() {
        return s.clone();
    }
    macro_rules! told {
        ($($ty:ty => $name:expr),* $(,)?) => {
            $(if let Some(v) = payload.downcast_ref::<$ty>() {
                return format!("panic payload of type {}: {}", $name, v);
            })*
        };
    }
    told!(
        i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128", isize => "isize",
        u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128", usize => "usize",
        f32 => "f32", f64 => "f64", bool => "bool", char => "char",
        std::io::Error => "std::io::Error",
        Box<dyn std::error::Error + Send + Sync> => "Box<dyn std::error::Error + Send + Sync>",
        Box<dyn std::error::Error + Send> => "Box<dyn std::error::Error + Send>",
        std::fmt::Error => "std::fmt::Error",
    );
    format!(
        "panic payload of a type that cannot be told ({:?}); panic with a string, or catch it in the task to \
         report it",
        payload.type_id()
    )
}
