//! The worker pool's bounded multi-producer multi-consumer queue.
//!
//! [`QueueCore`] is the synchronous part, modelled with loom: a deque and a `closed` flag under one lock, so a push
//! either lands before the close (and is drained by a worker) or is refused (and counted as rejected); nothing
//! falls in between. [`Queue`] adds two tokio semaphores: `space` (free slots, for backpressure) and `items`
//! (queued jobs, for waking idle workers). The deque never holds more than `capacity` jobs, because a job enters
//! only with a `space` permit, which comes back only when a worker takes a job out.

use std::collections::VecDeque;

use tokio::sync::Semaphore;

use crate::sync::{Mutex, lock};

/// Why a push was refused; the job comes back.
#[derive(Debug)]
pub(crate) enum PushError<J> {
    /// No free slot (only from `try_push`).
    Full(J),
    /// The queue is closed.
    Closed(J),
}

/// What [`QueueCore::pop`] found.
#[derive(Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Pop<J> {
    /// The oldest job.
    Job(J),
    /// Nothing queued, but the queue is open: more may come.
    Empty,
    /// Nothing queued and the queue is closed: nothing will ever come.
    Closed,
}

#[derive(Debug)]
struct State<J> {
    jobs: VecDeque<J>,
    closed: bool,
    /// Jobs ever accepted (a plain integer: it only changes under the lock the push takes anyway).
    accepted: u64,
}

/// The lock-protected state of the queue: the part whose interleavings the loom model explores.
#[derive(Debug)]
#[doc(hidden)]
pub struct QueueCore<J> {
    state: Mutex<State<J>>,
}

impl<J> QueueCore<J> {
    /// An open, empty queue with room reserved for `capacity` jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
                accepted: 0,
            }),
        }
    }

    /// Appends `job` unless the queue is closed (then it comes back).
    pub fn push(&self, job: J) -> Result<(), J> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(job);
        }
        s.jobs.push_back(job);
        s.accepted += 1;
        Ok(())
    }

    /// Takes the oldest job.
    pub fn pop(&self) -> Pop<J> {
        let mut s = lock(&self.state);
        match s.jobs.pop_front() {
            Some(job) => Pop::Job(job),
            None if s.closed => Pop::Closed,
            None => Pop::Empty,
        }
    }

    /// Refuses every later push. Returns whether this call closed it.
    pub fn close(&self) -> bool {
        let mut s = lock(&self.state);
        !std::mem::replace(&mut s.closed, true)
    }

    /// Takes every queued job out (used when cancelling: they will not run).
    pub fn drain(&self) -> Vec<J> {
        lock(&self.state).jobs.drain(..).collect()
    }

    /// Jobs queued now.
    pub fn len(&self) -> usize {
        lock(&self.state).jobs.len()
    }

    /// Whether no job is queued now.
    #[cfg_attr(not(otlp_loom), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Jobs ever accepted.
    pub fn accepted(&self) -> u64 {
        lock(&self.state).accepted
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }
}

/// The bounded async queue: [`QueueCore`] plus backpressure and wake-ups.
#[derive(Debug)]
pub(crate) struct Queue<J> {
    core: QueueCore<J>,
    space: Semaphore,
    items: Semaphore,
    capacity: usize,
}

impl<J> Queue<J> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            core: QueueCore::new(capacity),
            space: Semaphore::new(capacity),
            items: Semaphore::new(0),
            capacity,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn core(&self) -> &QueueCore<J> {
        &self.core
    }

    /// Waits for a free slot, then appends `job`. Cancel-safe: dropped while waiting, it takes no slot (and drops
    /// `job` with the future).
    pub(crate) async fn push(&self, job: J) -> Result<(), PushError<J>> {
        match self.space.acquire().await {
            Ok(permit) => {
                permit.forget();
                self.push_with_slot(job)
            }
            Err(_) => Err(PushError::Closed(job)),
        }
    }

    /// Appends `job` if a slot is free now.
    pub(crate) fn try_push(&self, job: J) -> Result<(), PushError<J>> {
        match self.space.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.push_with_slot(job)
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(PushError::Full(job)),
            Err(tokio::sync::TryAcquireError::Closed) => Err(PushError::Closed(job)),
        }
    }

    fn push_with_slot(&self, job: J) -> Result<(), PushError<J>> {
        match self.core.push(job) {
            Ok(()) => {
                self.items.add_permits(1);
                Ok(())
            }
            Err(job) => {
                self.space.add_permits(1);
                Err(PushError::Closed(job))
            }
        }
    }

    /// Waits for a job. `None` once the queue is closed and empty. Cancel-safe: dropped while waiting, it takes
    /// nothing.
    pub(crate) async fn pop(&self) -> Option<J> {
        loop {
            // After `close`, `items` is closed too: workers then take what is left without waiting.
            if let Ok(permit) = self.items.acquire().await {
                permit.forget();
            }
            match self.core.pop() {
                Pop::Job(job) => {
                    self.space.add_permits(1);
                    return Some(job);
                }
                Pop::Closed => return None,
                // Another worker (draining after close) took the job this permit stood for.
                Pop::Empty => continue,
            }
        }
    }

    /// Takes a job if one is queued now, without waiting (`None` also when closed: use `pop` to drain).
    pub(crate) fn try_pop(&self) -> Option<J> {
        let permit = self.items.try_acquire().ok()?;
        permit.forget();
        match self.core.pop() {
            Pop::Job(job) => {
                self.space.add_permits(1);
                Some(job)
            }
            // Unreachable before close (a permit stands for a queued job); give the permit back to be safe.
            Pop::Empty | Pop::Closed => {
                self.items.add_permits(1);
                None
            }
        }
    }

    /// Refuses new jobs and wakes every waiting producer and worker. Queued jobs stay for the workers to drain.
    pub(crate) fn close(&self) {
        self.core.close();
        self.space.close();
        self.items.close();
    }

    pub(crate) fn len(&self) -> usize {
        self.core.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    #[test]
    fn core_refuses_after_close_and_drains_in_order() {
        let q = QueueCore::new(2);
        assert_eq!(q.push(1), Ok(()));
        assert_eq!(q.push(2), Ok(()));
        assert!(q.close());
        assert!(!q.close());
        assert_eq!(q.push(3), Err(3));
        assert_eq!(q.pop(), Pop::Job(1));
        assert_eq!(q.drain(), vec![2]);
        assert_eq!(q.pop(), Pop::Closed);
        assert_eq!(q.accepted(), 2);
    }

    #[test]
    fn bounded_push_pop_and_close() {
        rt().block_on(async {
            let q = Queue::new(2);
            q.push(1).await.unwrap();
            q.try_push(2).unwrap();
            assert!(matches!(q.try_push(3), Err(PushError::Full(3))));
            assert_eq!(q.len(), 2);
            assert_eq!(q.pop().await, Some(1));
            q.try_push(3).unwrap();
            q.close();
            assert!(matches!(q.try_push(4), Err(PushError::Closed(4))));
            assert!(matches!(q.push(5).await, Err(PushError::Closed(5))));
            // Workers drain what was accepted before the close, then see the end.
            assert_eq!(q.pop().await, Some(2));
            assert_eq!(q.pop().await, Some(3));
            assert_eq!(q.pop().await, None);
        });
    }
}
