//! Worker pool behaviour: outcomes, backpressure, timeouts, shutdown, cancellation and leaks. Paused clock, no
//! sleeps, no timing assertions.

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use otlp_patterns::{
    BuildError, ResizeError, SubmitError, TaskError, WorkerPool, WorkerPoolStats, current_token,
};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn alive() -> usize {
    Handle::current().metrics().num_alive_tasks()
}

fn assert_accounted(s: &WorkerPoolStats) {
    assert_eq!(s.queued, 0, "{s:?}");
    assert_eq!(s.active, 0, "{s:?}");
    assert_eq!(
        s.submitted,
        s.finished(),
        "submitted != sum of outcomes: {s:?}"
    );
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<WorkerPool>();
    send_sync::<otlp_patterns::WorkerPoolBuilder>();
    send_sync::<otlp_patterns::TaskHandle<u32, String>>();
    send_sync::<TaskError<String>>();
    send_sync::<SubmitError>();
    send_sync::<BuildError>();
    send_sync::<otlp_patterns::ShutdownReport>();
}

#[test]
fn bad_configuration_is_a_typed_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    assert_eq!(
        WorkerPool::builder("x").workers(0).build().unwrap_err(),
        BuildError::ZeroWorkers
    );
    assert_eq!(
        WorkerPool::builder("x").queue(0).build().unwrap_err(),
        BuildError::ZeroQueue
    );
    let err = WorkerPool::builder("x")
        .task_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::ZeroTimeout);
    assert!(err.to_string().contains("task_timeout"), "{err}");
    drop(_g);
    let err = WorkerPool::builder("x").build().unwrap_err();
    assert_eq!(err, BuildError::NoRuntime);
    // With an explicit handle it works outside the runtime.
    let pool = WorkerPool::builder("x")
        .workers(1)
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    rt.block_on(pool.shutdown_now());
    // A runtime without timers cannot enforce deadlines: a typed error, not a panic in a worker.
    let no_timer = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = WorkerPool::builder("x")
        .runtime(no_timer.handle().clone())
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::NoTimer);
    assert!(err.to_string().contains("enable_time"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn outcomes_are_kept_apart() {
    let pool = WorkerPool::builder("outcomes")
        .workers(2)
        .queue(8)
        .task_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let ok = pool
        .submit_fallible(async { Ok::<u32, String>(1) })
        .await
        .unwrap();
    let err = pool
        .submit_fallible(async { Err::<u32, _>("boom".to_string()) })
        .await
        .unwrap();
    let panic = pool
        .submit_fallible(async { panic!("kaboom") })
        .await
        .unwrap();
    let slow = pool
        .submit_fallible(async { pending::<Result<u32, String>>().await })
        .await
        .unwrap();
    assert_eq!(ok.await, Ok(1));
    assert_eq!(err.await, Err(TaskError::Failed("boom".into())));
    let p: Result<u32, TaskError<String>> = panic.await;
    assert_eq!(p, Err(TaskError::Panicked("kaboom".into())));
    assert_eq!(slow.await, Err(TaskError::TimedOut));
    // The worker that caught the panic keeps serving.
    let again = pool
        .submit_fallible(async { Ok::<u32, String>(7) })
        .await
        .unwrap();
    assert_eq!(again.await, Ok(7));
    pool.shutdown_now().await;
    let s = pool.stats();
    assert_eq!(
        (s.completed, s.failed, s.panicked, s.timed_out, s.cancelled),
        (2, 1, 1, 1, 0)
    );
    assert_accounted(&s);
}

#[tokio::test(start_paused = true)]
async fn own_deadline_overrides_the_default_and_counts_queue_time() {
    let pool = WorkerPool::builder("deadline")
        .workers(1)
        .queue(8)
        .task_timeout(Duration::MAX)
        .build()
        .unwrap();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let blocker = pool
        .submit_fallible(async move {
            g.notified().await;
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    let late = pool
        .submit_fallible_with_deadline(Instant::now() + Duration::from_millis(10), async {
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // paused clock: advances instantly
    gate.notify_one();
    assert_eq!(blocker.await, Ok(()));
    assert_eq!(late.await, Err(TaskError::TimedOut));
    pool.shutdown_now().await;
    assert_eq!(pool.stats().timed_out, 1);
}

/// Time from `since` until `handle` resolves, with its result (paused clock: virtual time, exact to the timer's
/// 1 ms tick).
async fn resolve<T>(
    since: Instant,
    handle: otlp_patterns::TaskHandle<T, String>,
) -> (Result<T, TaskError<String>>, Duration) {
    let r = handle.await;
    (r, since.elapsed())
}

/// A worker reuses one timer for its tasks and moves it only when it would fire too late: each task still times
/// out exactly at its own deadline, neither at an earlier task's (the timer firing early is not a timeout) nor
/// later (a deadline earlier than the timer's moves it).
#[tokio::test(start_paused = true)]
async fn a_reused_timer_times_each_task_out_at_its_own_deadline() {
    let pool = WorkerPool::builder("timer")
        .workers(1)
        .queue(4)
        .task_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let ms = Duration::from_millis;
    let within_a_tick = |d: Duration, want: Duration| d >= want && d <= want + ms(1);
    // Pending once: the timer is set to this task's deadline (start + 100 ms).
    let first = pool
        .submit_fallible(async {
            tokio::task::yield_now().await;
            Ok::<_, String>(1)
        })
        .await
        .unwrap();
    assert_eq!(first.await, Ok(1));
    tokio::time::sleep(ms(30)).await;

    // Runs 99 ms of its 100: the timer, still set for the first task, fires at 70 ms; not a timeout.
    let t = Instant::now();
    let slow = pool
        .submit_fallible(async {
            tokio::time::sleep(Duration::from_millis(99)).await;
            Ok::<_, String>(2)
        })
        .await
        .unwrap();
    let (r, took) = resolve(t, slow).await;
    assert_eq!(r, Ok(2));
    assert!(within_a_tick(took, ms(99)), "{took:?}");

    // Never finishes: times out at its own 100 ms, although the timer was set earlier.
    let t = Instant::now();
    let stuck = pool
        .submit_fallible(pending::<Result<u8, String>>())
        .await
        .unwrap();
    let (r, took) = resolve(t, stuck).await;
    assert_eq!(r, Err(TaskError::TimedOut));
    assert!(within_a_tick(took, ms(100)), "{took:?}");

    // A deadline earlier than where the timer is set moves it.
    let armer = pool
        .submit_fallible(async {
            tokio::task::yield_now().await;
            Ok::<_, String>(3)
        })
        .await
        .unwrap();
    assert_eq!(armer.await, Ok(3));
    let t = Instant::now();
    let short = pool
        .submit_fallible_with_deadline(t + ms(10), pending::<Result<u8, String>>())
        .await
        .unwrap();
    let (r, took) = resolve(t, short).await;
    assert_eq!(r, Err(TaskError::TimedOut));
    assert!(within_a_tick(took, ms(10)), "{took:?}");

    pool.shutdown_now().await;
    let s = pool.stats();
    assert_eq!((s.completed, s.timed_out), (3, 2), "{s:?}");
    assert_accounted(&s);
}

#[tokio::test(start_paused = true)]
async fn try_submit_reports_full_and_queue_never_exceeds_capacity() {
    let pool = WorkerPool::builder("full")
        .workers(1)
        .queue(3)
        .build()
        .unwrap();
    let gate = Arc::new(Notify::new());
    let mut handles = Vec::new();
    let mut full = 0;
    for _ in 0..10 {
        let g = gate.clone();
        match pool.try_submit_fallible(async move {
            g.notified().await;
            Ok::<_, String>(())
        }) {
            Ok(h) => handles.push(h),
            Err(SubmitError::Full) => full += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(pool.stats().queued <= 3);
        tokio::task::yield_now().await;
    }
    assert!(full >= 6, "full = {full}");
    assert_eq!(pool.stats().rejected, full);
    for _ in 0..handles.len() {
        gate.notify_one();
        tokio::task::yield_now().await;
        assert!(pool.stats().queued <= 3);
    }
    gate.notify_waiters();
    let report = pool.shutdown(Instant::now() + Duration::from_secs(1)).await;
    assert!(!report.deadline_reached, "{report:?}");
    for h in handles {
        assert_eq!(h.await, Ok(()));
    }
    assert_accounted(&pool.stats());
}

#[tokio::test(start_paused = true)]
async fn submit_waits_for_room_and_is_cancel_safe() {
    let pool = WorkerPool::builder("room")
        .workers(1)
        .queue(1)
        .build()
        .unwrap();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let first = pool
        .submit_fallible(async move {
            g.notified().await;
            Ok::<_, String>(1)
        })
        .await
        .unwrap();
    tokio::task::yield_now().await; // the worker takes it
    let second = pool
        .submit_fallible(async { Ok::<_, String>(2) })
        .await
        .unwrap(); // fills the queue
    // The third waits for room: dropping the wait submits nothing.
    let third = tokio::time::timeout(
        Duration::from_millis(5),
        pool.submit_fallible(async { Ok::<_, String>(3) }),
    )
    .await;
    assert!(third.is_err());
    assert_eq!(pool.stats().submitted, 2);
    gate.notify_one();
    assert_eq!(first.await, Ok(1));
    assert_eq!(second.await, Ok(2));
    pool.shutdown_now().await;
    assert_accounted(&pool.stats());
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_then_leaves_no_task_alive() {
    let before = alive();
    let pool = WorkerPool::builder("drain")
        .workers(3)
        .queue(100)
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..50u64 {
        let done = done.clone();
        pool.execute_fallible(async move {
            tokio::time::sleep(Duration::from_millis(i % 7)).await;
            done.fetch_add(1, Ordering::Relaxed);
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    }
    let report = pool
        .shutdown(Instant::now() + Duration::from_secs(60))
        .await;
    assert_eq!(done.load(Ordering::Relaxed), 50);
    assert_eq!(
        (report.completed, report.cancelled, report.deadline_reached),
        (50, 0, false)
    );
    assert_eq!(alive(), before);
    assert_eq!(
        pool.submit_fallible(async { Ok::<_, String>(()) })
            .await
            .unwrap_err(),
        SubmitError::Closed
    );
    let s = pool.stats();
    assert_eq!((s.submitted, s.completed, s.rejected), (51, 50, 1));
    assert_accounted(&s);
    // A second shutdown returns at once.
    assert_eq!(pool.shutdown_now().await.cancelled, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_past_deadline_cancels_running_and_queued_tasks() {
    let before = alive();
    let pool = WorkerPool::builder("stuck")
        .workers(2)
        .queue(10)
        .task_timeout(Duration::MAX)
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..6 {
        handles.push(
            pool.submit_fallible(async { pending::<Result<(), String>>().await })
                .await
                .unwrap(),
        );
    }
    tokio::task::yield_now().await;
    assert_eq!(pool.stats().active, 2);
    let report = pool.shutdown(Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(
        (report.cancelled, report.completed, report.deadline_reached),
        (6, 0, true)
    );
    assert_eq!(alive(), before, "a task of the pool outlived shutdown");
    for h in handles {
        assert_eq!(h.await, Err(TaskError::Cancelled));
    }
    assert_accounted(&pool.stats());
}

#[tokio::test(start_paused = true)]
async fn tasks_see_the_token_cancelled_at_the_deadline() {
    let pool = WorkerPool::builder("token")
        .workers(1)
        .queue(2)
        .task_timeout(Duration::MAX)
        .build()
        .unwrap();
    let observed = Arc::new(Notify::new());
    let o = observed.clone();
    let h = pool
        .submit_fallible(async move {
            let token = current_token().expect("pool task");
            token.cancelled().await;
            o.notify_one();
            pending::<Result<(), String>>().await
        })
        .await
        .unwrap();
    let report = pool.shutdown_now().await;
    assert_eq!(report.cancelled, 1);
    assert_eq!(h.await, Err(TaskError::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_parent_cancels_the_pool() {
    let before = alive();
    let parent = CancellationToken::new();
    let pool = WorkerPool::builder("parent")
        .workers(2)
        .queue(4)
        .parent(parent.clone())
        .build()
        .unwrap();
    let h = pool
        .submit_fallible(async { pending::<Result<(), String>>().await })
        .await
        .unwrap();
    let q = pool
        .submit_fallible(async { pending::<Result<(), String>>().await })
        .await
        .unwrap();
    let r = pool
        .submit_fallible(async { pending::<Result<(), String>>().await })
        .await
        .unwrap();
    parent.cancel();
    assert_eq!(h.await, Err(TaskError::Cancelled));
    assert_eq!(q.await, Err(TaskError::Cancelled));
    assert_eq!(r.await, Err(TaskError::Cancelled));
    assert!(pool.is_closed());
    assert_eq!(
        pool.submit_fallible(async { Ok::<_, String>(()) })
            .await
            .unwrap_err(),
        SubmitError::Closed
    );
    pool.shutdown_now().await;
    assert_eq!(alive(), before);
    let s = pool.stats();
    assert_eq!(s.cancelled, 3);
    assert_accounted(&s);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pool_cancels_its_tasks() {
    let before = alive();
    let pool = WorkerPool::builder("dropped")
        .workers(2)
        .queue(4)
        .task_timeout(Duration::MAX)
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..5 {
        handles.push(
            pool.submit_fallible(async { pending::<Result<(), String>>().await })
                .await
                .unwrap(),
        );
    }
    tokio::task::yield_now().await;
    drop(pool);
    for h in handles {
        assert_eq!(h.await, Err(TaskError::Cancelled));
    }
    // The aborted workers are gone once the runtime ran them one more time.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(alive(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_a_multi_thread_runtime_are_all_accounted() {
    let pool = Arc::new(
        WorkerPool::builder("mt")
            .workers(4)
            .queue(16)
            .build()
            .unwrap(),
    );
    let n: u64 = if cfg!(miri) { 20 } else { 2_000 };
    let mut producers = Vec::new();
    for p in 0..2u64 {
        let pool = pool.clone();
        producers.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..n {
                let h = pool
                    .submit_fallible(async move {
                        if (i + p) % 10 == 0 {
                            Err(i)
                        } else {
                            tokio::task::yield_now().await;
                            Ok(i)
                        }
                    })
                    .await
                    .unwrap();
                handles.push(h);
            }
            let mut errs = 0;
            for h in handles {
                if h.await.is_err() {
                    errs += 1;
                }
            }
            errs
        }));
    }
    let mut errs = 0;
    for p in producers {
        errs += p.await.unwrap();
    }
    pool.shutdown(Instant::now() + Duration::from_secs(5)).await;
    let s = pool.stats();
    assert_eq!(s.submitted, 2 * n);
    assert_eq!(s.failed, errs);
    assert_accounted(&s);
}

/// Yields until `cond` holds (bounded: the pool's workers are tasks on this runtime that need turns to run).
async fn settle(mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    assert!(cond(), "condition never held");
}

/// A task that counts itself running (and the peak) for `ms` of (paused) time.
fn counted(
    running: &Arc<AtomicUsize>,
    peak: &Arc<AtomicUsize>,
    ms: u64,
) -> impl std::future::Future<Output = Result<(), ()>> + Send + 'static {
    let (running, peak) = (running.clone(), peak.clone());
    async move {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn resize_grows_at_once_and_shrinks_without_cancelling() {
    let before = alive();
    let pool = WorkerPool::builder("resize")
        .workers(1)
        .max_workers(3)
        .queue(16)
        .build()
        .unwrap();
    assert_eq!((pool.workers(), pool.max_workers()), (1, 3));
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut handles = Vec::new();
    for _ in 0..6 {
        handles.push(
            pool.submit_fallible(counted(&running, &peak, 10))
                .await
                .unwrap(),
        );
    }
    settle(|| running.load(Ordering::SeqCst) == 1).await;

    pool.resize(3).unwrap();
    settle(|| running.load(Ordering::SeqCst) == 3).await;
    assert_eq!(pool.stats().workers, 3);

    // Shrink while all three run: they finish their tasks, the queue still drains, then two workers exit.
    pool.resize(1).unwrap();
    assert_eq!(pool.workers(), 1);
    for h in handles {
        assert_eq!(h.await, Ok(()));
    }
    settle(|| pool.stats().workers == 1).await;
    assert_eq!(peak.load(Ordering::SeqCst), 3);

    // One worker from now on.
    peak.store(0, Ordering::SeqCst);
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(
            pool.submit_fallible(counted(&running, &peak, 5))
                .await
                .unwrap(),
        );
    }
    for h in handles {
        assert_eq!(h.await, Ok(()));
    }
    assert_eq!(peak.load(Ordering::SeqCst), 1);

    let report = pool.shutdown(Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(report.cancelled, 0);
    assert_accounted(&pool.stats());
    assert_eq!(pool.stats().completed, 9);
    assert_eq!(pool.stats().workers, 0);
    assert_eq!(alive(), before, "a worker outlived shutdown");
}

#[tokio::test(start_paused = true)]
async fn idle_workers_retire_at_once_and_a_quick_regrow_starts_no_extra_worker() {
    let before = alive();
    let pool = WorkerPool::builder("idle")
        .workers(3)
        .max_workers(4)
        .build()
        .unwrap();
    // Let the workers start and wait for work: idle, blocked on the empty queue.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.stats().workers, 3);
    pool.resize(1).unwrap();
    settle(|| pool.stats().workers == 1).await;
    assert_eq!(alive(), before + 1);

    // Shrink and grow back before any worker had a turn: the same workers stay, none is added.
    pool.resize(4).unwrap();
    pool.resize(2).unwrap();
    pool.resize(4).unwrap();
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.stats().workers, 4);
    assert_eq!(alive(), before + 4);

    pool.shutdown_now().await;
    assert_eq!(alive(), before, "a worker outlived shutdown");
}

#[tokio::test(start_paused = true)]
async fn resize_refuses_bad_sizes_and_a_closed_pool() {
    let pool = WorkerPool::builder("bad").workers(2).build().unwrap();
    assert_eq!(
        pool.resize(0),
        Err(ResizeError::OutOfRange {
            requested: 0,
            max: 2
        })
    );
    let err = pool.resize(3).unwrap_err();
    assert_eq!(
        err,
        ResizeError::OutOfRange {
            requested: 3,
            max: 2
        }
    );
    assert!(err.to_string().contains("max_workers"), "{err}");
    assert_eq!(pool.workers(), 2);
    pool.shutdown_now().await;
    assert_eq!(pool.resize(1), Err(ResizeError::Closed));
    let err = WorkerPool::builder("bad")
        .workers(4)
        .max_workers(2)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        BuildError::MaxWorkersBelowWorkers { workers: 4, max: 2 }
    );
    assert!(err.to_string().contains("max_workers"), "{err}");
}

mod prop {
    use super::*;
    use otlp_patterns::Outcome;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Ok,
        Err,
        Panic,
        /// Sleeps this many ms (may time out, or be cancelled by the shutdown deadline).
        Sleep(u64),
        /// Never finishes: times out or is cancelled.
        Hang,
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            3 => Just(Kind::Ok),
            1 => Just(Kind::Err),
            1 => Just(Kind::Panic),
            2 => (0u64..40).prop_map(Kind::Sleep),
            1 => Just(Kind::Hang),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 64 }, ..ProptestConfig::default() })]

        /// submitted = ok + error + panic + timeout + cancelled + rejected for any mix of tasks and any shutdown
        /// point and deadline; every handle agrees with the counters; no task outlives the shutdown.
        #[test]
        fn accounting(
            tasks in proptest::collection::vec((kind(), any::<bool>()), 0..40),
            workers in 1usize..4,
            queue in 1usize..6,
            shutdown_at in 0usize..40,
            deadline_ms in 0u64..60,
            resizes in proptest::collection::vec((0usize..40, 1usize..5), 0..3),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            rt.block_on(async {
                let before = alive();
                let pool = WorkerPool::builder("prop")
                    .workers(workers)
                    .max_workers(4)
                    .queue(queue)
                    .task_timeout(Duration::from_millis(25))
                    .build()
                    .unwrap();
                let mut handles = Vec::new();
                let mut refused = 0u64;
                let mut report = None;
                for (i, (kind, wait)) in tasks.iter().copied().enumerate() {
                    if i == shutdown_at {
                        report = Some(pool.shutdown(Instant::now() + Duration::from_millis(deadline_ms)).await);
                    }
                    for (at, n) in &resizes {
                        if *at == i {
                            let resized = pool.resize(*n);
                            prop_assert_eq!(resized.is_err(), report.is_some(), "{:?}", resized);
                        }
                    }
                    let fut = async move {
                        match kind {
                            Kind::Ok => Ok(i),
                            Kind::Err => Err(i),
                            Kind::Panic => panic!("task {i}"),
                            Kind::Sleep(ms) => {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                Ok(i)
                            }
                            Kind::Hang => pending().await,
                        }
                    };
                    let submitted = if wait { pool.submit_fallible(fut).await } else { pool.try_submit_fallible(fut) };
                    match submitted {
                        Ok(h) => handles.push(h),
                        Err(_) => refused += 1,
                    }
                    prop_assert!(pool.stats().queued <= queue as u64);
                }
                if report.is_none() {
                    pool.shutdown(Instant::now() + Duration::from_millis(deadline_ms)).await;
                }
                prop_assert_eq!(alive(), before, "a task outlived shutdown");
                let s = pool.stats();
                prop_assert_eq!(s.submitted, tasks.len() as u64);
                prop_assert_eq!(s.rejected, refused);
                prop_assert_eq!(s.queued + s.active, 0);
                prop_assert_eq!(s.submitted, s.finished(), "{:?}", s);
                let mut seen = [0u64; 6];
                for h in handles {
                    let outcome = match h.await {
                        Ok(_) => Outcome::Ok,
                        Err(e) => e.outcome(),
                    };
                    seen[Outcome::ALL.iter().position(|o| *o == outcome).unwrap()] += 1;
                }
                prop_assert_eq!(seen, [s.completed, s.failed, s.panicked, s.timed_out, s.cancelled, 0]);
                Ok(())
            })?;
        }
    }
}

/// A panic's payload is reported as what was caught: its text for `&str` and `String`, else its type (and value,
/// where the type can be told), never a fixed text that hides it.
#[tokio::test(start_paused = true)]
async fn panic_reports_what_was_caught() {
    #[derive(Debug)]
    struct Custom;
    let pool = WorkerPool::builder("payloads").workers(1).build().unwrap();
    async fn caught(pool: &WorkerPool, payload: Box<dyn std::any::Any + Send>) -> String {
        let handle = pool
            .submit_fallible(async move {
                if true {
                    std::panic::resume_unwind(payload);
                }
                Ok::<(), String>(())
            })
            .await
            .unwrap();
        match handle.await {
            Err(TaskError::Panicked(msg)) => msg,
            other => panic!("expected a caught panic, got {other:?}"),
        }
    }
    assert_eq!(caught(&pool, Box::new("static text")).await, "static text");
    assert_eq!(
        caught(&pool, Box::new(String::from("owned"))).await,
        "owned"
    );
    assert_eq!(
        caught(&pool, Box::new(42i32)).await,
        "panic payload of type i32: 42"
    );
    assert_eq!(
        caught(&pool, Box::new(7u64)).await,
        "panic payload of type u64: 7"
    );
    let io = std::io::Error::other("disk gone");
    assert_eq!(
        caught(&pool, Box::new(io)).await,
        "panic payload of type std::io::Error: disk gone"
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = "bad input".into();
    assert_eq!(
        caught(&pool, Box::new(boxed)).await,
        "panic payload of type Box<dyn std::error::Error + Send + Sync>: bad input"
    );
    let unknown = caught(&pool, Box::new(Custom)).await;
    assert!(
        unknown.contains("of a type that cannot be told") && unknown.contains("TypeId"),
        "{unknown}"
    );
    pool.shutdown_now().await;
    assert_eq!(pool.stats().panicked, 7);
}

/// A task that cannot fail is submitted as it is: no `Ok::<_, E>` wrapping, no turbofish. Its handle resolves to
/// its value, and it is counted `ok`; `execute` takes a plain `()` future too.
#[tokio::test(start_paused = true)]
async fn plain_tasks_need_no_result_wrapping() {
    let pool = WorkerPool::builder("plain")
        .workers(2)
        .queue(8)
        .build()
        .unwrap();
    let answer = pool.submit(async { 6 * 7 }).await.unwrap();
    let text = pool.try_submit(async { String::from("hi") }).unwrap();
    let late = pool
        .submit_with_deadline(Instant::now() + Duration::from_secs(1), async { 1u8 })
        .await
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    pool.execute(async move {
        r.fetch_add(1, Ordering::SeqCst);
    })
    .await
    .unwrap();
    let r = ran.clone();
    pool.try_execute(async move {
        r.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!(answer.await, Ok(42));
    let text: Result<String, TaskError> = text.await;
    assert_eq!(text.as_deref(), Ok("hi"));
    assert_eq!(late.await, Ok(1));
    // A plain task can still panic or time out: that is what its `TaskError` (with `Infallible`) carries.
    let boom = pool.submit(async { panic!("plain panic") }).await.unwrap();
    let boom: Result<(), TaskError> = boom.await;
    assert_eq!(boom, Err(TaskError::Panicked("plain panic".into())));
    pool.shutdown(Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    let s = pool.stats();
    assert_eq!((s.completed, s.failed, s.panicked), (5, 0, 1));
    assert_accounted(&s);
}

/// `TaskHandle::cancel` stops a queued task before it runs and a running one at its next `.await`; both are
/// counted `cancelled` and their handles say so. A task that already finished keeps its result.
#[tokio::test(start_paused = true)]
async fn cancel_stops_queued_and_running_tasks() {
    let pool = WorkerPool::builder("cancel")
        .workers(1)
        .queue(8)
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let task = |started: Arc<AtomicUsize>, dropped: Arc<AtomicUsize>| async move {
        let _guard = OnDrop(dropped);
        started.fetch_add(1, Ordering::SeqCst);
        pending::<()>().await
    };
    let running = pool
        .submit(task(started.clone(), dropped.clone()))
        .await
        .unwrap();
    let queued = pool
        .submit(task(started.clone(), dropped.clone()))
        .await
        .unwrap();
    let done = pool.submit(async { 5 }).await.unwrap();
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.stats().active, 1);
    queued.cancel();
    assert!(queued.is_cancel_requested());
    running.cancel();
    assert_eq!(running.await, Err(TaskError::Cancelled));
    assert_eq!(queued.await, Err(TaskError::Cancelled));
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the queued task never ran"
    );
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the running future was dropped"
    );
    assert_eq!(done.await, Ok(5), "the worker went on with the next task");

    let finished = pool.submit(async { 10 }).await.unwrap();
    while pool.stats().completed < 2 {
        tokio::task::yield_now().await;
    }
    finished.cancel(); // too late: it already ran
    assert_eq!(finished.await, Ok(10));

    pool.shutdown(Instant::now() + Duration::from_secs(1)).await;
    let s = pool.stats();
    assert_eq!((s.completed, s.cancelled), (2, 2));
    assert_accounted(&s);
}

/// A queued task cancelled while every worker is busy: its handle resolves at once (it will never run), not when
/// a worker frees up; the task is counted `cancelled` once, when a worker takes it off the queue.
#[tokio::test(start_paused = true)]
async fn a_cancelled_queued_task_resolves_without_waiting_for_a_worker() {
    let pool = WorkerPool::builder("cancel-queued")
        .workers(1)
        .queue(4)
        .build()
        .unwrap();
    let release = Arc::new(Notify::new());
    let busy = {
        let release = release.clone();
        pool.submit(async move { release.notified().await })
            .await
            .unwrap()
    };
    while pool.stats().active == 0 {
        tokio::task::yield_now().await;
    }
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = {
        let ran = ran.clone();
        pool.submit(async move { ran.fetch_add(1, Ordering::SeqCst) })
            .await
            .unwrap()
    };
    queued.cancel();
    // The worker is still busy (far from its task timeout): the handle is ready all the same.
    let result = tokio::time::timeout(Duration::from_millis(1), queued).await;
    assert_eq!(result, Ok(Err(TaskError::Cancelled)));
    assert_eq!(pool.stats().active, 1, "the worker is still busy");

    release.notify_one();
    busy.await.unwrap();
    pool.shutdown(Instant::now() + Duration::from_secs(1)).await;
    let s = pool.stats();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "the cancelled task never ran"
    );
    assert_eq!((s.completed, s.cancelled), (1, 1));
    assert_accounted(&s);
}

/// Dropping a handle detaches its task (it still runs); `cancel_on_drop` makes the drop cancel it instead.
#[tokio::test(start_paused = true)]
async fn cancel_on_drop_ties_the_task_to_its_handle() {
    let pool = WorkerPool::builder("on-drop")
        .workers(1)
        .queue(8)
        .build()
        .unwrap();
    let gate = Arc::new(Notify::new());
    let ran = Arc::new(AtomicUsize::new(0));
    let work = |gate: Arc<Notify>, ran: Arc<AtomicUsize>| async move {
        gate.notified().await;
        ran.fetch_add(1, Ordering::SeqCst);
    };
    let detached = pool.submit(work(gate.clone(), ran.clone())).await.unwrap();
    let tied = pool
        .submit(work(gate.clone(), ran.clone()))
        .await
        .unwrap()
        .cancel_on_drop();
    drop(detached);
    drop(tied);
    // Let the detached task start waiting, then open the gate for everyone.
    while pool.stats().active == 0 {
        tokio::task::yield_now().await;
    }
    gate.notify_waiters();
    pool.shutdown(Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "only the detached task ran to its end"
    );
    let s = pool.stats();
    assert_eq!((s.completed, s.cancelled), (1, 1));
    assert_accounted(&s);
}

/// Futures whose `Drop` panics, let go of by a shutdown while one runs and one waits in the queue: both handles
/// still resolve, and every task is accounted for.
#[tokio::test(start_paused = true)]
async fn futures_that_panic_when_dropped_still_resolve_their_handles() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop");
        }
    }
    let task = || {
        let guard = PanicOnDrop;
        async move {
            let _guard = guard;
            pending::<()>().await
        }
    };
    let pool = WorkerPool::builder("panic-drop")
        .workers(1)
        .queue(8)
        .build()
        .unwrap();
    let running = pool.submit(task()).await.unwrap();
    let queued = pool.submit(task()).await.unwrap();
    while pool.stats().active == 0 {
        tokio::task::yield_now().await;
    }
    pool.shutdown_now().await;
    assert_eq!(running.await, Err(TaskError::Cancelled));
    assert_eq!(queued.await, Err(TaskError::Cancelled));
    let s = pool.stats();
    assert_eq!((s.submitted, s.cancelled), (2, 2));
    assert_accounted(&s);
}
