//! The worker pool's bounded multi-producer multi-consumer queue.
//!
//! [`QueueCore`] is the synchronous part, modelled with loom: the jobs, a `closed` flag, the number of idle workers
//! and of producers waiting for room, all under one short lock. A push either lands before the close (and is
//! drained by a worker) or is refused (and counted as rejected); nothing falls in between, and the deque never
//! holds more than `capacity` jobs.
//!
//! [`Queue`] adds the waiting, with two tokio `Notify`s: an idle worker (or a producer facing a full queue) registers
//! itself under the lock before it sleeps, and the other side wakes it only when the counts say someone sleeps. In
//! steady state a task costs one uncontended lock to push and one to pop, and no wake-up at all. A producer waiting
//! for room is woken once the queue is down to half its capacity, so it refills in a burst instead of waking once
//! per task.
//!
//! Workers are woken one at a time, as work proves to be there: a push wakes an idle worker only when it finds the
//! queue empty (jobs already queued mean a worker is awake or on its way: workers only go idle on an empty queue),
//! and a worker that takes a job while more are queued wakes the next idle one. A burst thus wakes every worker it
//! can keep busy, one after the other, while a producer that a single worker keeps up with wakes nobody else:
//! waking a worker per push made idle workers bounce between sleeping and waking, once per task or so in some runs
//! and not in others (see docs/benchmarks.md).

use std::collections::VecDeque;
use std::pin::pin;

use tokio::sync::Notify;

use crate::sync::{Mutex, lock};

/// Why a push was refused; the job comes back.
#[derive(Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum PushError<J> {
    /// No free slot.
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
    /// Workers that registered to be woken by the next push.
    idle_workers: usize,
    /// Producers that registered to be woken when room frees up.
    waiting_producers: usize,
}

impl<J> State<J> {
    /// Claims one registered idle worker to wake, if there is one.
    fn wake_idle_worker(&mut self) -> bool {
        let wake = self.idle_workers > 0;
        if wake {
            self.idle_workers -= 1;
        }
        wake
    }
}

/// The lock-protected state of the queue: the part whose interleavings the loom model explores.
#[derive(Debug)]
#[doc(hidden)]
pub struct QueueCore<J> {
    state: Mutex<State<J>>,
    capacity: usize,
}

/// A successful push: whether an idle worker must be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub struct Pushed {
    /// The queue was empty and an idle worker was registered: wake one.
    pub wake_worker: bool,
}

/// What [`QueueCore::pop_or_register`] and [`QueueCore::try_take`] found, and whom the caller must wake.
#[derive(Debug, PartialEq, Eq)]
#[doc(hidden)]
pub struct Taken<J> {
    pub pop: Pop<J>,
    /// A producer waits for room and the queue is down to half: wake one.
    pub wake_producer: bool,
    /// A job was taken, more are queued and a worker is idle: wake one (the next link of the chain).
    pub wake_worker: bool,
}

impl<J> QueueCore<J> {
    /// An open, empty queue holding at most `capacity` jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
                accepted: 0,
                idle_workers: 0,
                waiting_producers: 0,
            }),
            capacity,
        }
    }

    /// Appends `job` if the queue is open and not full; when full and `register` is set, the caller is counted as
    /// a waiting producer (it must then wait to be woken) and `register` is called under the lock.
    pub fn push_or_register(
        &self,
        job: J,
        register: impl FnOnce(),
    ) -> Result<Pushed, PushError<J>> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(PushError::Closed(job));
        }
        if s.jobs.len() >= self.capacity {
            s.waiting_producers += 1;
            register();
            return Err(PushError::Full(job));
        }
        let was_empty = s.jobs.is_empty();
        s.jobs.push_back(job);
        s.accepted += 1;
        Ok(Pushed {
            wake_worker: was_empty && s.wake_idle_worker(),
        })
    }

    /// Appends `job` if the queue is open and not full.
    pub fn push(&self, job: J) -> Result<Pushed, PushError<J>> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(PushError::Closed(job));
        }
        if s.jobs.len() >= self.capacity {
            return Err(PushError::Full(job));
        }
        let was_empty = s.jobs.is_empty();
        s.jobs.push_back(job);
        s.accepted += 1;
        Ok(Pushed {
            wake_worker: was_empty && s.wake_idle_worker(),
        })
    }

    /// Takes the oldest job; when there is none and the queue is open, the caller is counted as an idle worker and
    /// `register` is called under the lock.
    pub fn pop_or_register(&self, register: impl FnOnce()) -> Taken<J> {
        self.take(Some(register))
    }

    /// Takes the oldest job without registering.
    pub fn try_take(&self) -> Taken<J> {
        self.take(None::<fn()>)
    }

    fn take(&self, register: Option<impl FnOnce()>) -> Taken<J> {
        let mut s = lock(&self.state);
        let (pop, wake_producer, wake_worker) = match s.jobs.pop_front() {
            Some(job) => {
                let wake_producer = s.waiting_producers > 0 && s.jobs.len() <= self.capacity / 2;
                if wake_producer {
                    s.waiting_producers -= 1;
                }
                let wake_worker = !s.jobs.is_empty() && s.wake_idle_worker();
                (Pop::Job(job), wake_producer, wake_worker)
            }
            None if s.closed => (Pop::Closed, false, false),
            None => {
                if let Some(register) = register {
                    s.idle_workers += 1;
                    register();
                }
                (Pop::Empty, false, false)
            }
        };
        Taken {
            pop,
            wake_producer,
            wake_worker,
        }
    }

    /// Takes the oldest job (no registration).
    #[cfg_attr(not(any(test, otlp_loom)), allow(dead_code))]
    pub fn pop(&self) -> Pop<J> {
        self.try_take().pop
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

    /// The most jobs it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The bounded async queue: [`QueueCore`] plus waiting.
#[derive(Debug)]
pub(crate) struct Queue<J> {
    core: QueueCore<J>,
    /// Idle workers wait here.
    items: Notify,
    /// Producers facing a full queue wait here.
    space: Notify,
}

impl<J> Queue<J> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            core: QueueCore::new(capacity),
            items: Notify::new(),
            space: Notify::new(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.core.capacity()
    }

    pub(crate) fn core(&self) -> &QueueCore<J> {
        &self.core
    }

    /// Waits for a free slot, then appends `job`. Cancel-safe: dropped while waiting, it queues nothing (and drops
    /// `job` with the future).
    pub(crate) async fn push(&self, job: J) -> Result<(), PushError<J>> {
        // Room now (the common case): no waiter to create and drop. No coop yield either: yielding the
        // producer every 128 pushes let the queue run dry and the workers park and unpark once per task or so.
        // Producers yield when the queue is full.
        let mut job = match self.try_push(job) {
            Err(PushError::Full(job)) => job,
            done => return done,
        };
        loop {
            let mut notified = pin!(self.space.notified());
            match self.core.push_or_register(job, || {
                notified.as_mut().enable();
            }) {
                Ok(pushed) => {
                    if pushed.wake_worker {
                        self.items.notify_one();
                    }
                    return Ok(());
                }
                Err(PushError::Full(back)) => {
                    job = back;
                    notified.await;
                }
                Err(closed) => return Err(closed),
            }
        }
    }

    /// Appends `job` if a slot is free now.
    pub(crate) fn try_push(&self, job: J) -> Result<(), PushError<J>> {
        let pushed = self.core.push(job)?;
        if pushed.wake_worker {
            self.items.notify_one();
        }
        Ok(())
    }

    /// Waits for a job. `None` once the queue is closed and empty. Cancel-safe: dropped while waiting, it takes
    /// nothing.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) async fn pop(&self) -> Option<J> {
        self.pop_unless(|| false).await
    }

    /// [`pop`](Self::pop) for a worker that may be told to retire: `None` as well once `retire()` says so, checked
    /// before each attempt to take a job (so a retiring worker never takes one) and after each wake-up;
    /// [`wake_idle`](Self::wake_idle) wakes idle workers to check it.
    pub(crate) async fn pop_unless(&self, retire: impl Fn() -> bool) -> Option<J> {
        loop {
            // Created before `retire()` is read: a `wake_idle` after that read wakes this future even though it is
            // not registered yet (tokio's `Notify` guarantees it for `notify_waiters`).
            let mut notified = pin!(self.items.notified());
            if retire() {
                // The wake-up that brought this worker here may have been meant for a job: pass it on.
                if !self.core.is_empty() {
                    self.items.notify_one();
                }
                return None;
            }
            let taken = self.core.pop_or_register(|| {
                notified.as_mut().enable();
            });
            self.wake(&taken);
            match taken.pop {
                Pop::Job(job) => return Some(job),
                Pop::Closed => return None,
                Pop::Empty => notified.await,
            }
        }
    }

    /// Takes a job if one is queued now, without waiting.
    pub(crate) fn try_pop(&self) -> Option<J> {
        let taken = self.core.try_take();
        self.wake(&taken);
        match taken.pop {
            Pop::Job(job) => Some(job),
            Pop::Empty | Pop::Closed => None,
        }
    }

    /// Wakes whom a take said to wake.
    fn wake(&self, taken: &Taken<J>) {
        if taken.wake_producer {
            self.space.notify_one();
        }
        if taken.wake_worker {
            self.items.notify_one();
        }
    }

    /// Refuses new jobs and wakes every waiting producer and worker. Queued jobs stay for the workers to drain.
    pub(crate) fn close(&self) {
        self.core.close();
        self.space.notify_waiters();
        self.items.notify_waiters();
    }

    pub(crate) fn len(&self) -> usize {
        self.core.len()
    }

    /// Wakes every idle worker (to notice that it must retire). A woken worker that stays registers again: the
    /// idle count may then be high by one per worker, which only costs a spurious wake-up on a later push.
    pub(crate) fn wake_idle(&self) {
        self.items.notify_waiters();
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
        assert_eq!(q.push(1), Ok(Pushed { wake_worker: false }));
        assert_eq!(q.push(2), Ok(Pushed { wake_worker: false }));
        assert_eq!(q.push(9), Err(PushError::Full(9)));
        assert!(q.close());
        assert!(!q.close());
        assert_eq!(q.push(3), Err(PushError::Closed(3)));
        assert_eq!(q.pop(), Pop::Job(1));
        assert_eq!(q.drain(), vec![2]);
        assert_eq!(q.pop(), Pop::Closed);
        assert_eq!(q.accepted(), 2);
    }

    /// One wake-up per idle stretch, not per push: a push onto a queue that already holds jobs wakes nobody (the
    /// worker woken for the first job is on its way).
    #[test]
    fn push_onto_a_non_empty_queue_wakes_nobody() {
        let q = QueueCore::new(8);
        assert_eq!(q.pop_or_register(|| {}).pop, Pop::Empty);
        assert_eq!(q.pop_or_register(|| {}).pop, Pop::Empty);
        assert_eq!(q.push(1), Ok(Pushed { wake_worker: true }));
        assert_eq!(q.push(2), Ok(Pushed { wake_worker: false }));
        assert_eq!(q.push(3), Ok(Pushed { wake_worker: false }));
        // The woken worker takes job 1 and, jobs left and a worker idle, wakes the next one.
        let taken = q.try_take();
        assert_eq!((taken.pop, taken.wake_worker), (Pop::Job(1), true));
        // Nobody is idle any more: later takes and pushes wake no one.
        let taken = q.try_take();
        assert_eq!((taken.pop, taken.wake_worker), (Pop::Job(2), false));
        assert_eq!(q.push(4), Ok(Pushed { wake_worker: false }));
        // A worker goes idle on an empty queue only; the next push onto the empty queue wakes it.
        assert_eq!(q.try_take().pop, Pop::Job(3));
        assert_eq!(q.try_take().pop, Pop::Job(4));
        assert_eq!(q.pop_or_register(|| {}).pop, Pop::Empty);
        assert_eq!(q.push(5), Ok(Pushed { wake_worker: true }));
        // The last job taken: nothing queued, nobody to wake.
        let taken = q.try_take();
        assert_eq!((taken.pop, taken.wake_worker), (Pop::Job(5), false));
    }

    /// Waking one worker at a time keeps the parallelism: a burst of slow jobs runs on every worker at once.
    #[test]
    fn a_burst_wakes_every_worker_it_can_keep_busy() {
        rt().block_on(async {
            let q = std::sync::Arc::new(Queue::<u64>::new(8));
            let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
            let workers: Vec<_> = (0..3)
                .map(|w| {
                    let (q, done_tx) = (q.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        while let Some(ms) = q.pop().await {
                            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                            let _ = done_tx.send(w);
                        }
                    })
                })
                .collect();
            // Let all three go idle.
            tokio::task::yield_now().await;
            let start = tokio::time::Instant::now();
            for _ in 0..3 {
                q.try_push(10).unwrap();
            }
            let mut ran = Vec::new();
            for _ in 0..3 {
                ran.push(done.recv().await.unwrap());
            }
            // Three 10 ms jobs on three workers: 10 ms, not 30; each worker ran one.
            assert_eq!(start.elapsed(), std::time::Duration::from_millis(10));
            ran.sort_unstable();
            assert_eq!(ran, vec![0, 1, 2]);
            q.close();
            for w in workers {
                w.await.unwrap();
            }
        });
    }

    #[test]
    fn bounded_push_pop_and_close() {
        rt().block_on(async {
            let q = Queue::new(2);
            q.push(1).await.unwrap();
            q.try_push(2).unwrap();
            assert_eq!(q.core().len(), 2);
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
