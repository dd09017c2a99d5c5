//! Fan-out: order, errors, fail-fast, panics, bounded concurrency and accounting. Paused clock, no sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use otlp_patterns::{BuildError, FanOut, FanOutStats, TaskError};
use otlp_sync::Semaphore;
use proptest::prelude::*;

fn assert_accounted(s: &FanOutStats, items: u64) {
    assert_eq!(s.submitted, items, "{s:?}");
    assert_eq!(
        s.submitted,
        s.ok + s.failed + s.panicked + s.cancelled,
        "{s:?}"
    );
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<FanOut>();
    send_sync::<otlp_patterns::FanOutResults<u32, String>>();
    send_sync::<otlp_patterns::FanOutError<String>>();
}

#[test]
fn zero_concurrency_is_a_typed_error() {
    let err = FanOut::new("zero", 0).unwrap_err();
    assert!(matches!(err, BuildError::ZeroConcurrency { .. }));
    assert!(err.to_string().contains("concurrency >= 1"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn keeps_every_error_in_input_order() {
    let fan = FanOut::new("errors", 3).unwrap();
    let results = fan
        .run_fallible(0..10u64, |i| async move {
            tokio::time::sleep(Duration::from_millis(10 - i)).await;
            match i % 4 {
                1 => Err(format!("bad {i}")),
                3 if i == 3 => panic!("boom {i}"),
                _ => Ok(i),
            }
        })
        .await;
    let v = results.as_slice();
    assert_eq!(v.len(), 10);
    assert_eq!(v[0], Ok(0));
    assert_eq!(v[1], Err(TaskError::Failed("bad 1".into())));
    assert_eq!(v[3], Err(TaskError::Panicked("boom 3".into())));
    assert_eq!(v[9], Err(TaskError::Failed("bad 9".into())));
    let err = results.into_result().unwrap_err();
    assert_eq!(
        err.errors().iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 3, 5, 9]
    );
    assert!(
        err.to_string()
            .starts_with("4 of 10 items failed: item 1: task failed: bad 1; item 3"),
        "{err}"
    );
    let s = fan.stats();
    assert_eq!((s.ok, s.failed, s.panicked, s.cancelled), (6, 3, 1, 0));
    assert_accounted(&s, 10);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_cancels_the_rest_and_returns_every_item() {
    let fan = FanOut::builder("ff")
        .concurrency(2)
        .fail_fast(true)
        .build()
        .unwrap();
    let called = AtomicUsize::new(0);
    let results = fan
        .run_fallible(0..10u64, |i| {
            called.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(if i == 1 { 1 } else { 100 })).await;
                if i == 1 { Err("stop") } else { Ok(i) }
            }
        })
        .await;
    let v = results.into_vec();
    assert_eq!(v.len(), 10);
    assert_eq!(v[1], Err(TaskError::Failed("stop")));
    assert!(
        v.iter()
            .enumerate()
            .all(|(i, r)| i == 1 || *r == Err(TaskError::Cancelled)),
        "{v:?}"
    );
    assert!(
        called.load(Ordering::Relaxed) <= 3,
        "items were started after the failure"
    );
    let s = fan.stats();
    assert_eq!((s.failed, s.cancelled), (1, 9));
    assert_accounted(&s, 10);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_across_concurrent_runs() {
    // Three calls of up to 3 items each, bounded to 3 in all by a shared semaphore.
    let limit = Semaphore::new("bounded", 3).unwrap();
    let fan = Arc::new(
        FanOut::builder("bounded")
            .concurrency(3)
            .shared_limit(limit.clone())
            .build()
            .unwrap(),
    );
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut runs = Vec::new();
    for r in 0..3u64 {
        let (fan, running, peak) = (fan.clone(), running.clone(), peak.clone());
        runs.push(tokio::spawn(async move {
            fan.run_fallible(0..20u64, |i| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis((i * 7 + r) % 5 + 1)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ()>(i)
                }
            })
            .await
            .into_result()
            .unwrap()
        }));
    }
    for run in runs {
        assert_eq!(run.await.unwrap(), (0..20).collect::<Vec<_>>());
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert_accounted(&fan.stats(), 60);
    assert_eq!(limit.available(), 3);
}

#[tokio::test(start_paused = true)]
async fn run_unordered_yields_as_items_finish() {
    let fan = FanOut::new("unordered", 4).unwrap();
    let got: Vec<(usize, Result<u64, TaskError<()>>)> = fan
        .run_unordered_fallible(0..4u64, |i| async move {
            tokio::time::sleep(Duration::from_millis(10 * (4 - i))).await;
            Ok(i)
        })
        .collect()
        .await;
    assert_eq!(
        got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![3, 2, 1, 0]
    );
    assert_accounted(&fan.stats(), 4);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_run_counts_items_in_flight_as_cancelled() {
    let fan = FanOut::builder("dropped")
        .concurrency(2)
        .shared_limit(Semaphore::new("dropped", 2).unwrap())
        .build()
        .unwrap();
    let run = fan.run_fallible(0..5u64, |_| async {
        std::future::pending::<Result<(), ()>>().await
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(5), run)
            .await
            .is_err()
    );
    let s = fan.stats();
    assert_eq!(s.cancelled, 2, "{s:?}");
    assert_eq!(s.submitted, 2);
    assert_eq!(
        fan.shared_limit().unwrap().available(),
        2,
        "a permit was lost"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_gives_its_permit_to_a_waiting_run() {
    // One shared permit, two runs: the first must not keep the permit for all its items while the second waits.
    let fan = FanOut::builder("handover")
        .concurrency(1)
        .shared_limit(Semaphore::new("handover", 1).unwrap())
        .build()
        .unwrap();
    let log = std::sync::Mutex::new(Vec::new());
    let item = |run: char, i: u64| {
        let log = &log;
        async move {
            log.lock().unwrap().push((run, i));
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, ()>(i)
        }
    };
    let (a, b) = tokio::join!(
        fan.run_fallible(0..4u64, |i| item('a', i)),
        fan.run_fallible(0..4u64, |i| item('b', i))
    );
    assert!(a.all_ok() && b.all_ok());
    let log = log.into_inner().unwrap();
    assert_eq!(log.len(), 8);
    let first_b = log.iter().position(|(r, _)| *r == 'b').unwrap();
    let last_a = log.iter().rposition(|(r, _)| *r == 'a').unwrap();
    assert!(first_b < last_a, "run b waited for all of run a: {log:?}");
    assert_accounted(&fan.stats(), 8);
    assert_eq!(fan.shared_limit().unwrap().available(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_paused_stream_holds_no_permit_of_a_finished_item() {
    // One permit. A stream yields its first result and its consumer pauses: another call must still run.
    let fan = FanOut::builder("paused")
        .concurrency(1)
        .shared_limit(Semaphore::new("paused", 1).unwrap())
        .build()
        .unwrap();
    let mut stream =
        std::pin::pin!(fan.run_unordered_fallible(0..3u64, |i| async move { Ok::<_, ()>(i) }));
    let (index, first) = stream.next().await.unwrap();
    assert_eq!((index, first), (0, Ok(0)));
    assert_eq!(
        fan.shared_limit().unwrap().available(),
        1,
        "the finished item's permit was kept"
    );
    let other = tokio::time::timeout(
        Duration::from_secs(1),
        fan.run_fallible(0..2u64, |i| async move { Ok::<_, ()>(i) }),
    )
    .await
    .expect("a paused stream blocked another call");
    assert!(other.all_ok());
    // The stream goes on where it stopped.
    let rest: Vec<_> = stream.map(|(i, _)| i).collect().await;
    assert_eq!(rest, vec![1, 2]);
    assert_accounted(&fan.stats(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_closed_semaphore_cancels_the_items_left_and_counts_them() {
    let fan = FanOut::builder("closed")
        .concurrency(2)
        .shared_limit(Semaphore::new("closed", 2).unwrap())
        .build()
        .unwrap();
    fan.shared_limit().unwrap().close();
    let results = fan
        .run_fallible(0..3u64, |i| async move { Ok::<_, ()>(i) })
        .await;
    assert_eq!(results.len(), 3);
    assert!(
        results
            .as_slice()
            .iter()
            .all(|r| matches!(r, Err(TaskError::Cancelled)))
    );
    assert_accounted(&fan.stats(), 3);
    assert_eq!(fan.stats().cancelled, 3);

    // Closed in the middle of a run: the items in flight finish with the permits they hold, and none is lost.
    let fan = FanOut::builder("closing")
        .concurrency(2)
        .shared_limit(Semaphore::new("closing", 2).unwrap())
        .build()
        .unwrap();
    let results = fan
        .run_fallible(0..6u64, |i| {
            let sem = fan.shared_limit().unwrap().clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if i == 1 {
                    sem.close();
                }
                Ok::<_, ()>(i)
            }
        })
        .await;
    assert_eq!(results.len(), 6);
    assert!(results.as_slice()[..2].iter().all(Result::is_ok));
    assert_accounted(&fan.stats(), 6);
    assert_eq!(
        fan.shared_limit().unwrap().available(),
        2,
        "a permit was lost"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_run_of_ready_items_lets_other_tasks_run() {
    // Items that finish on their first poll never make the run wait; it must still yield now and then.
    let other_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = other_ran.clone();
    let other = tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    let fan = FanOut::new("ready", 4).unwrap();
    let seen = fan
        .run_fallible(0..5_000u64, |_| {
            let other_ran = other_ran.clone();
            async move { Ok::<_, ()>(other_ran.load(Ordering::SeqCst)) }
        })
        .await
        .into_result()
        .unwrap();
    assert!(
        !seen[0],
        "the spawned task cannot run before the run yields"
    );
    assert!(seen[4_999], "the run never yielded to the spawned task");
    other.await.unwrap();
    assert_accounted(&fan.stats(), 5_000);
}

/// An input whose `size_hint` is its own (0), unknown (1) or too low (2, at most one item left).
struct Hinted<I>(I, u8);

impl<I: Iterator> Iterator for Hinted<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.1 {
            0 => self.0.size_hint(),
            1 => (0, None),
            _ => (0, Some(1)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 64 }, ..ProptestConfig::default() })]

    /// Results come back in input order for any completion order, and every item is counted once.
    #[test]
    fn order_and_accounting(
        delays in proptest::collection::vec((0u64..50, 0u8..10), 0..40),
        k in 1usize..12, // both sides of the few-items bound (8)
        fail_fast in any::<bool>(),
        shared in any::<bool>(),
        hint in 0u8..3, // the input's size hint: exact, unknown, or too low (an input that has more than it says)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            let limit = Semaphore::new("prop", k).unwrap();
            let mut builder = FanOut::builder("prop").concurrency(k).fail_fast(fail_fast);
            if shared {
                builder = builder.shared_limit(limit.clone());
            }
            let fan = builder.build().unwrap();
            let results = fan
                .run_fallible(Hinted(delays.iter().copied().enumerate(), hint), |(i, (d, kind))| async move {
                    // d = 0: the item finishes on its first poll (the in-place path), else it waits.
                    if d > 0 {
                        tokio::time::sleep(Duration::from_millis(d)).await;
                    }
                    match kind {
                        0 => Err(i),
                        1 => panic!("item {i}"),
                        _ => Ok(i),
                    }
                })
                .await
                .into_vec();
            prop_assert_eq!(results.len(), delays.len());
            let mut stopped = false;
            let mut cancelled = false;
            for (i, r) in results.iter().enumerate() {
                match r {
                    Ok(v) => prop_assert_eq!(*v, i),
                    Err(TaskError::Failed(v)) => { prop_assert_eq!(*v, i); stopped = true; }
                    Err(TaskError::Panicked(m)) => { prop_assert_eq!(m, &format!("item {i}")); stopped = true; }
                    Err(TaskError::Cancelled) => { prop_assert!(fail_fast); cancelled = true; }
                    Err(TaskError::TimedOut) => prop_assert!(false, "no timeouts in fan-out"),
                }
            }
            prop_assert!(!cancelled || stopped, "items cancelled without a failure");
            let s = fan.stats();
            prop_assert_eq!(s.submitted, delays.len() as u64);
            prop_assert_eq!(s.submitted, s.ok + s.failed + s.panicked + s.cancelled);
            prop_assert_eq!(limit.available(), k, "a permit was lost");
            Ok(())
        })?;
    }
}

/// The concurrency is per call, like `buffer_unordered(k)`: three calls on one `FanOut::new(.., 3)` run 3 items
/// each at once (9 in all), and no call ever runs more than 3.
#[tokio::test(start_paused = true)]
async fn concurrency_is_per_call() {
    let fan = FanOut::new("per-call", 3).unwrap();
    let running = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let call = |r: usize| {
        let (running, peak) = (&running, &peak);
        let mine = Arc::new(AtomicUsize::new(0));
        let my_peak = Arc::new(AtomicUsize::new(0));
        let fan = &fan;
        async move {
            let results = fan
                .run(0..12u64, |i| {
                    let (mine, my_peak) = (mine.clone(), my_peak.clone());
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        my_peak
                            .fetch_max(mine.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10 + (i + r as u64) % 3)).await;
                        mine.fetch_sub(1, Ordering::SeqCst);
                        running.fetch_sub(1, Ordering::SeqCst);
                        i
                    }
                })
                .await;
            assert!(results.all_ok());
            my_peak.load(Ordering::SeqCst)
        }
    };
    let (a, b, c) = tokio::join!(call(0), call(1), call(2));
    assert_eq!((a, b, c), (3, 3, 3), "each call runs its own 3 at once");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        9,
        "calls do not share the limit"
    );
    assert_accounted(&fan.stats(), 36);
    assert!(fan.shared_limit().is_none());
}

/// Items that cannot fail need no `Ok` wrapping; their results are their values (or a caught panic).
#[tokio::test(start_paused = true)]
async fn plain_items_need_no_result_wrapping() {
    let fan = FanOut::new("plain", 2).unwrap();
    let lengths = fan
        .run(["a", "bb", "ccc"], |s| async move { s.len() })
        .await
        .into_result()
        .unwrap();
    assert_eq!(lengths, vec![1, 2, 3]);
    let results = fan
        .run(0..3u32, |i| async move {
            if i == 1 {
                panic!("item {i}");
            }
            i
        })
        .await
        .into_vec();
    assert_eq!(
        results,
        vec![Ok(0), Err(TaskError::Panicked("item 1".into())), Ok(2)]
    );
    let mut unordered: Vec<(usize, Result<u32, TaskError>)> = fan
        .run_unordered(0..3u32, |i| async move { i * 2 })
        .collect()
        .await;
    unordered.sort_by_key(|(i, _)| *i);
    assert_eq!(unordered, vec![(0, Ok(0)), (1, Ok(2)), (2, Ok(4))]);
    let s = fan.stats();
    assert_eq!((s.ok, s.failed, s.panicked), (8, 0, 1));
    assert_accounted(&s, 9);
}

pin_project_lite::pin_project! {
    /// Counts the polls of the future it wraps.
    struct CountPolls<F> {
        #[pin]
        fut: F,
        polls: u32,
    }
}

impl<F: std::future::Future> std::future::Future for CountPolls<F> {
    type Output = (F::Output, u32);
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        *this.polls += 1;
        let polls = *this.polls;
        this.fut.poll(cx).map(|out| (out, polls))
    }
}

fn count_polls<F: std::future::Future>(fut: F) -> CountPolls<F> {
    CountPolls { fut, polls: 0 }
}

/// A call with few items in flight is polled no more often than `join_all` of the same items: in a task on a
/// 2-worker runtime, tokio defers `yield_now` wake-ups and wakes them last-in-first-out, so a call that polls only
/// the items whose own waker fired can be re-polled (by the other worker) before the ready item is queued, a
/// wasted poll that `join_all` (which polls every item) never takes. What counts is the items in flight, not the
/// concurrency the fan-out allows: a wide fan-out given 3 items takes no more polls either.
#[test]
fn few_items_take_no_more_polls_than_join_all() {
    few_items_polls_against_join_all(3);
    few_items_polls_against_join_all(16);
}

fn few_items_polls_against_join_all(concurrency: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let fan = Arc::new(FanOut::new("polls", concurrency).unwrap());
    let in_task = fan.clone();
    let (fan_polls, join_polls) = rt
        .block_on(rt.spawn(async move {
            let (mut fan_polls, mut join_polls) = (0u32, 0u32);
            for _ in 0..50 {
                let (out, polls) = count_polls(in_task.run_fallible(0..3u64, |i| async move {
                    tokio::task::yield_now().await;
                    Ok::<_, String>(i)
                }))
                .await;
                assert_eq!(out.into_result().unwrap(), vec![0, 1, 2]);
                fan_polls += polls;
                let (out, polls) =
                    count_polls(futures::future::join_all((0..3u64).map(|i| async move {
                        tokio::task::yield_now().await;
                        i
                    })))
                    .await;
                assert_eq!(out, vec![0, 1, 2]);
                join_polls += polls;
            }
            (fan_polls, join_polls)
        }))
        .unwrap();
    eprintln!("50 calls: fan-out ({concurrency}) polled {fan_polls} times, join_all {join_polls}");
    assert!(
        fan_polls <= join_polls,
        "50 calls: fan-out of concurrency {concurrency} polled {fan_polls} times, join_all {join_polls}"
    );
    assert_accounted(&fan.stats(), 150);
}
