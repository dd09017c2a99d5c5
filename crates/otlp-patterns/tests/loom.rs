//! Loom models of the worker pool's own protocols: the queue's push/close/drain under one lock (a job is either
//! accepted and then taken exactly once, or refused), the outcome counters (no count lost), the roster of
//! worker slots under resizing (never two workers in a slot, never a wanted slot left empty), and a task's link to
//! its handle (a task cancelled before it starts never runs, and its handle agrees with what the worker did).
//!
//! Run with `RUSTFLAGS="--cfg otlp_loom" cargo test --release -p otlp-patterns --test loom`.
#![cfg(otlp_loom)]

use loom::sync::Arc;
use loom::thread;
use otlp_patterns::__loom::{OutcomeCounters, Pop, QueueCore, Roster, task_link};
use otlp_patterns::{Outcome, TaskError};

/// A producer pushes while the queue is closed and drained concurrently: every job is accepted and then taken
/// exactly once, or refused; none is lost after the close.
#[test]
fn push_close_drain_loses_nothing() {
    loom::model(|| {
        let q = Arc::new(QueueCore::<u32>::new(4));
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                let mut refused = 0;
                for job in 0..2 {
                    if q.push(job).is_err() {
                        refused += 1;
                    }
                }
                refused
            })
        };
        let worker = {
            let q = q.clone();
            thread::spawn(move || {
                let mut taken = Vec::new();
                loop {
                    match q.pop() {
                        Pop::Job(j) => taken.push(j),
                        Pop::Empty => thread::yield_now(),
                        Pop::Closed => return taken,
                    }
                }
            })
        };
        q.close();
        let refused = producer.join().unwrap();
        let taken = worker.join().unwrap();
        let drained = q.drain();
        assert!(
            drained.is_empty(),
            "a job accepted before the close was left behind"
        );
        assert_eq!(taken.len() as u64 + refused, 2);
        assert_eq!(q.accepted(), taken.len() as u64);
        // Jobs come out in the order they went in.
        assert!(taken.windows(2).all(|w| w[0] < w[1]));
        assert!(q.is_closed() && q.is_empty());
    });
}

/// Two workers drain the same closed queue: each job is taken by exactly one of them.
#[test]
fn concurrent_drain_takes_each_job_once() {
    loom::model(|| {
        let q = Arc::new(QueueCore::<u32>::new(4));
        q.push(1).unwrap();
        q.push(2).unwrap();
        q.close();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut taken = Vec::new();
                    while let Pop::Job(j) = q.pop() {
                        taken.push(j);
                    }
                    taken
                })
            })
            .collect();
        let mut all: Vec<u32> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2]);
        assert!(q.push(3).is_err());
    });
}

/// Outcome counters written from two threads add up.
#[test]
fn outcome_counters_add_up() {
    loom::model(|| {
        let c = Arc::new(OutcomeCounters::new());
        let t = {
            let c = c.clone();
            thread::spawn(move || {
                c.add(Outcome::Ok, 1);
                c.add(Outcome::Cancelled, 2);
            })
        };
        c.add(Outcome::Ok, 1);
        c.add(Outcome::Rejected, 1);
        t.join().unwrap();
        assert_eq!(c.snapshot(), [2, 0, 0, 0, 2, 1]);
    });
}

/// No lost wake-up for workers: a worker that registered as idle before a push is always told to be woken, even
/// when later pushes find jobs queued and wake nobody (workers are woken one at a time).
#[test]
fn idle_worker_is_always_woken_by_a_later_push() {
    loom::model(|| {
        let q = Arc::new(QueueCore::<u32>::new(2));
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                let a = q.push(1).expect("room").wake_worker;
                let b = q.push(2).expect("room").wake_worker;
                (a, b)
            })
        };
        let taken = q.pop_or_register(|| {});
        let (a, b) = producer.join().unwrap();
        match taken.pop {
            // Awake with a job: it comes back for the rest, nobody else needed waking for it.
            Pop::Job(j) => assert_eq!(j, 1),
            // We registered before the pushes: exactly one of them wakes us (the one that found the queue empty).
            Pop::Empty => assert!(a && !b, "lost or doubled wake-up: {a} {b}"),
            Pop::Closed => unreachable!("never closed"),
        }
    });
}

/// No lost wake-up for producers: a producer that found the queue full and registered is woken by the pop that
/// frees room.
#[test]
fn waiting_producer_is_always_woken_by_a_later_pop() {
    loom::model(|| {
        let q = Arc::new(QueueCore::<u32>::new(1));
        q.push(1).unwrap();
        let worker = {
            let q = q.clone();
            thread::spawn(move || {
                let taken = q.try_take();
                assert_eq!(taken.pop, Pop::Job(1));
                taken.wake_producer
            })
        };
        let pushed = q.push_or_register(2, || {});
        let wake = worker.join().unwrap();
        match pushed {
            Ok(_) => {}
            Err(otlp_patterns::__loom::PushError::Full(_)) => assert!(wake, "lost wake-up"),
            Err(e) => panic!("{e:?}"),
        }
    });
}

/// Slot 1's worker checks whether to retire while the pool shrinks to 1 and grows back to 2: whatever the
/// interleaving, slot 1 ends with exactly one worker (the old one stayed, or it left and a new one was started).
#[test]
fn retire_racing_shrink_and_regrow_keeps_one_worker_per_wanted_slot() {
    loom::model(|| {
        let roster = Arc::new(Roster::new(2));
        assert_eq!(roster.resize(2).1, vec![0, 1]);
        let resizer = {
            let roster = roster.clone();
            thread::spawn(move || {
                let (_, shrink_starts) = roster.resize(1);
                assert!(shrink_starts.is_empty());
                roster.resize(2).1
            })
        };
        // Worker 1, which may be told to retire at this check.
        let retired = roster.retire(1);
        let starts = resizer.join().unwrap();
        let new_in_slot_1 = starts.iter().filter(|&&i| i == 1).count();
        assert_eq!(
            usize::from(!retired) + new_in_slot_1,
            1,
            "slot 1 has two workers or none"
        );
        assert!(!starts.contains(&0), "slot 0 was never free");
        assert_eq!(roster.target(), 2);
    });
}

/// Two workers above a shrunken target retire concurrently with a grow that wants one of them back: each slot
/// ends with at most one worker, and every wanted slot with exactly one.
#[test]
fn concurrent_retires_and_a_grow_fill_each_wanted_slot_once() {
    loom::model(|| {
        let roster = Arc::new(Roster::new(3));
        roster.resize(3);
        roster.resize(1); // slots 1 and 2 must go
        let workers: Vec<_> = [1usize, 2]
            .into_iter()
            .map(|index| {
                let roster = roster.clone();
                thread::spawn(move || (index, roster.retire(index)))
            })
            .collect();
        let (_, starts) = roster.resize(2);
        let mut live = [1usize, 0, 0]; // slot 0 never retires
        for w in workers {
            let (index, retired) = w.join().unwrap();
            live[index] += usize::from(!retired);
        }
        for i in starts {
            live[i] += 1;
        }
        assert_eq!(live[0], 1);
        assert_eq!(live[1], 1, "wanted slot 1: {live:?}");
        assert!(live[2] <= 1, "slot 2 doubled: {live:?}");
    });
}

/// A worker runs a task while its handle cancels it and reads the result: the handle resolves to what the worker
/// did. A handle that saw the task settled as cancelled (cancelled before a worker started it) is never contradicted
/// by the task running; a task that ran to its value hands that value to the handle.
#[test]
fn cancel_racing_start_agrees_with_the_worker() {
    loom::model(|| {
        let (mut job, mut handle) = task_link(7);
        let worker = thread::spawn(move || job.run());
        handle.cancel();
        let early = handle.try_result();
        let outcome = worker.join().unwrap();
        let late = handle.try_result();
        match outcome {
            Some(Outcome::Ok) => {
                assert_ne!(
                    early,
                    Some(Err(TaskError::Cancelled)),
                    "the handle said cancelled, yet the task ran"
                );
                assert_eq!(early.or(late), Some(Ok(7)));
            }
            Some(Outcome::Cancelled) => {
                assert_eq!(early.or(late), Some(Err(TaskError::Cancelled)));
            }
            other => panic!("a ready task ended as {other:?}"),
        }
    });
}
