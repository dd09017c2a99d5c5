//! Behaviour of the instrumented semaphore, on tokio's paused clock.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker_ref;
use otlp_sync::{
    AcquireError, AcquireOptions, BuildError, CancellationToken, OwnedPermit, Permit, Semaphore,
    SemaphoreStats, TryAcquireError,
};

fn sem(permits: usize) -> Semaphore {
    Semaphore::new("test", permits).expect("valid semaphore")
}

/// Polls a future once with a no-op waker.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(noop_waker_ref()))
}

#[test]
fn types_are_send_sync_and_debug() {
    fn send_sync<T: Send + Sync + std::fmt::Debug>() {}
    send_sync::<Semaphore>();
    send_sync::<Permit<'static>>();
    send_sync::<OwnedPermit>();
    send_sync::<SemaphoreStats>();
    send_sync::<AcquireOptions<'static>>();
    send_sync::<otlp_sync::SemaphoreBuilder>();
    send_sync::<AcquireError>();
    send_sync::<TryAcquireError>();
    send_sync::<BuildError>();
}

#[test]
fn acquire_futures_are_send() {
    fn send<T: Send>(_: T) {}
    let s = sem(1);
    let token = CancellationToken::new();
    send(s.acquire());
    send(s.acquire_owned());
    send(s.acquire_cancellable(&token));
    send(s.acquire_timeout(Duration::from_secs(1)));
    send(s.with_permit(1, || async {}));
}

#[test]
fn bad_configuration_is_a_typed_error() {
    let err = Semaphore::builder("db").build().unwrap_err();
    assert_eq!(err, BuildError::PermitsNotSet { name: "db".into() });
    assert!(err.to_string().contains(".permits(n)"), "{err}");

    let err = Semaphore::new("db", Semaphore::MAX_PERMITS + 1).unwrap_err();
    assert!(matches!(err, BuildError::TooManyPermits { .. }), "{err:?}");
    assert!(Semaphore::new("db", Semaphore::MAX_PERMITS).is_ok());
}

/// A semaphore with 0 permits is a closed gate: acquires wait (they are not rejected) until `add_permits` opens
/// it, as with tokio's semaphore.
#[tokio::test(start_paused = true)]
async fn zero_permits_is_a_gate_opened_by_add_permits() {
    let gate = Semaphore::new("gate", 0).expect("0 permits is a valid gate");
    assert_eq!((gate.limit(), gate.available()), (0, 0));
    assert_eq!(gate.try_acquire().unwrap_err(), TryAcquireError::NoPermits);

    let mut one = pin!(gate.acquire());
    let mut two = pin!(gate.acquire_many(2));
    assert!(poll_once(one.as_mut()).is_pending());
    assert!(poll_once(two.as_mut()).is_pending());
    assert_eq!(gate.stats().waiting, 2);

    gate.add_permits(3).unwrap();
    let Poll::Ready(Ok(a)) = poll_once(one.as_mut()) else {
        panic!("the first waiter gets its permit once the gate opens")
    };
    let Poll::Ready(Ok(b)) = poll_once(two.as_mut()) else {
        panic!("the second waiter gets its two permits")
    };
    assert_eq!((a.num_permits(), b.num_permits()), (1, 2));
    drop((a, b));

    let st = gate.stats();
    assert_eq!(
        (st.acquired, st.rejected, st.waited, st.limit),
        (2, 1, 2, 3)
    );
    assert_eq!(st.calls(), 3);
    // Once it has permits, asking for more than the limit is still refused at once.
    assert!(matches!(
        gate.acquire_many(4).await,
        Err(AcquireError::TooManyPermits {
            requested: 4,
            limit: 3
        })
    ));

    // A gate that is closed instead of opened fails its waiters.
    let shut = Semaphore::new("shut", 0).unwrap();
    let mut w = pin!(shut.acquire());
    assert!(poll_once(w.as_mut()).is_pending());
    shut.close();
    assert!(matches!(
        poll_once(w.as_mut()),
        Poll::Ready(Err(AcquireError::Closed))
    ));
}

#[tokio::test(start_paused = true)]
async fn acquire_and_release() {
    let s = sem(2);
    assert_eq!((s.limit(), s.available(), s.name()), (2, 2, "test"));
    let a = s.acquire().await.unwrap();
    let b = s.acquire_many(1).await.unwrap();
    assert_eq!(a.num_permits() + b.num_permits(), 2);
    assert_eq!(s.available(), 0);
    assert_eq!(s.stats().in_use, 2);
    drop(a);
    assert_eq!(s.available(), 1);
    drop(b);
    let st = s.stats();
    assert_eq!(
        (st.acquired, st.in_use, st.waited, st.calls()),
        (2, 0, 0, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn try_acquire_rejects_without_waiting() {
    let s = sem(1);
    let p = s.try_acquire().unwrap();
    assert_eq!(s.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    assert_eq!(
        s.try_acquire_owned().unwrap_err(),
        TryAcquireError::NoPermits
    );
    assert_eq!(
        s.try_acquire_many(2).unwrap_err(),
        TryAcquireError::TooManyPermits {
            requested: 2,
            limit: 1
        }
    );
    drop(p);
    let owned = s.try_acquire_many_owned(1).unwrap();
    assert_eq!(owned.num_permits(), 1);
    let st = s.stats();
    assert_eq!((st.acquired, st.rejected, st.calls()), (2, 3, 5));
}

#[tokio::test(start_paused = true)]
async fn acquire_many_above_the_limit_is_an_error_not_a_hang() {
    let s = sem(3);
    let _all = s.acquire_many(3).await.unwrap();
    let err = s.acquire_many(4).await.unwrap_err();
    assert_eq!(
        err,
        AcquireError::TooManyPermits {
            requested: 4,
            limit: 3
        }
    );
    assert!(err.to_string().contains("add_permits"), "{err}");
    assert_eq!(s.stats().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn zero_permits_always_succeed() {
    let s = sem(1);
    let _p = s.acquire().await.unwrap();
    let none = s.acquire_many(0).await.unwrap();
    assert_eq!(none.num_permits(), 0);
}

#[tokio::test(start_paused = true)]
async fn timeout_fires_on_the_paused_clock() {
    let s = sem(1);
    let _p = s.acquire().await.unwrap();
    let start = tokio::time::Instant::now();
    let err = s.acquire_timeout(Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(
        err,
        AcquireError::Timeout {
            timeout: Duration::from_secs(5)
        }
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "the paused clock advanced exactly to the deadline"
    );
    assert_eq!(
        s.acquire_timeout(Duration::ZERO).await.unwrap_err(),
        AcquireError::Timeout {
            timeout: Duration::ZERO
        }
    );
    let st = s.stats();
    assert_eq!(
        (st.timed_out, st.waited, st.waiting, st.calls()),
        (2, 1, 0, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_does_not_fire_when_a_permit_comes_in_time() {
    let s = sem(1);
    let p = s.acquire_owned().await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(p);
    });
    let got = s
        .acquire_many_timeout(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.num_permits(), 1);
    let st = s.stats();
    assert_eq!((st.acquired, st.waited, st.timed_out), (2, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_already_cancelled_token_fails_even_with_free_permits() {
    // Go's golang/go#63615: acquiring with a done context must fail.
    let s = sem(1);
    let token = CancellationToken::new();
    token.cancel();
    assert_eq!(
        s.acquire_cancellable(&token).await.unwrap_err(),
        AcquireError::Cancelled
    );
    assert_eq!(
        s.acquire_many_cancellable(1, &token).await.unwrap_err(),
        AcquireError::Cancelled
    );
    assert_eq!(
        s.acquire_owned_with(1, AcquireOptions::new().cancel_on(&token))
            .await
            .unwrap_err(),
        AcquireError::Cancelled
    );
    assert_eq!(s.available(), 1);
    assert_eq!(s.stats().cancelled, 3);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_token_ends_a_wait_and_the_next_waiter_gets_the_permit() {
    // Go's golang/go#37852: a cancelled front waiter must not block the ones behind it.
    let s = sem(2);
    let held = s.acquire().await.unwrap();
    let token = CancellationToken::new();
    let mut front = pin!(s.acquire_many_cancellable(2, &token)); // needs both permits
    assert!(poll_once(front.as_mut()).is_pending());
    let mut back = pin!(s.acquire()); // queued behind it
    assert!(poll_once(back.as_mut()).is_pending());
    token.cancel();
    assert_eq!(front.await.unwrap_err(), AcquireError::Cancelled);
    let p = back
        .await
        .expect("the waiter behind the cancelled one is served");
    drop((p, held));
    assert_eq!(s.available(), 2);
    let st = s.stats();
    assert_eq!(
        (st.acquired, st.cancelled, st.waited, st.waiting),
        (2, 1, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_waiting_acquires_loses_no_permit() {
    let s = sem(3);
    let a = s.acquire_many(2).await.unwrap(); // 1 left
    {
        // Waiters that get part of what they need (the free permit) and are then dropped must give it back.
        let mut w1 = Box::pin(s.acquire_many(3));
        let mut w2 = Box::pin(s.acquire_owned());
        let mut w3 = Box::pin(s.acquire_timeout(Duration::from_secs(60)));
        assert!(poll_once(w1.as_mut()).is_pending());
        assert!(poll_once(w2.as_mut()).is_pending());
        assert!(poll_once(w3.as_mut()).is_pending());
        assert_eq!(s.stats().waiting, 3);
        assert_eq!(s.waiting(), 3);
        drop(a); // 3 free: w1 takes what it needs... but is dropped before being polled
    }
    assert_eq!(s.available(), 3, "no permit lost");
    let st = s.stats();
    assert_eq!((st.cancelled, st.waiting, st.in_use), (3, 0, 0));
    // The semaphore still works for everyone.
    let all = s.acquire_many(3).await.unwrap();
    assert_eq!(all.num_permits(), 3);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_fifo_order() {
    let s = sem(1);
    let held = s.acquire().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (s2, order) = (s.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = s2.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::task::yield_now().await;
        }));
        // Let task i enqueue before task i + 1 is spawned.
        while s.stats().waiting < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn try_acquire_does_not_jump_the_queue() {
    let s = sem(2);
    let held = s.acquire_many(2).await.unwrap();
    let mut waiter = pin!(s.acquire_many(2));
    assert!(poll_once(waiter.as_mut()).is_pending());
    drop(held); // both go to the waiter
    assert_eq!(s.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    assert_eq!(waiter.await.unwrap().num_permits(), 2);
}

#[tokio::test(start_paused = true)]
async fn close_fails_waiters_and_later_acquires_but_keeps_held_permits() {
    let s = sem(1);
    let held = s.acquire().await.unwrap();
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.acquire_owned().await.map(|_| ()) })
    };
    while s.stats().waiting == 0 {
        tokio::task::yield_now().await;
    }
    s.close();
    assert!(s.is_closed());
    assert_eq!(waiter.await.unwrap().unwrap_err(), AcquireError::Closed);
    assert_eq!(s.acquire().await.unwrap_err(), AcquireError::Closed);
    assert_eq!(s.try_acquire().unwrap_err(), TryAcquireError::Closed);
    assert_eq!(held.num_permits(), 1);
    drop(held);
    let st = s.stats();
    assert_eq!((st.acquired, st.closed, st.calls()), (1, 3, 4));
}

#[tokio::test(start_paused = true)]
async fn add_permits_raises_the_limit_and_wakes_waiters() {
    let s = sem(2);
    let _held = s.acquire().await.unwrap();
    let mut waiter = pin!(s.acquire_many(2));
    assert!(poll_once(waiter.as_mut()).is_pending());
    s.add_permits(1).unwrap();
    assert_eq!(s.limit(), 3);
    assert_eq!(waiter.await.unwrap().num_permits(), 2);

    let err = s.add_permits(Semaphore::MAX_PERMITS).unwrap_err();
    assert_eq!(err.limit, 3);
    assert!(err.to_string().contains("exceed the maximum"), "{err}");
    assert_eq!(s.limit(), 3, "a failed add changes nothing");
}

#[tokio::test(start_paused = true)]
async fn with_permit_holds_the_permits_while_the_closure_runs() {
    let s = sem(3);
    let seen = s.with_permit(2, || async { s.available() }).await.unwrap();
    assert_eq!(seen, 1);
    assert_eq!(s.available(), 3);
    assert_eq!(
        s.with_permit(4, || async {}).await.unwrap_err(),
        AcquireError::TooManyPermits {
            requested: 4,
            limit: 3
        }
    );
}

#[tokio::test(start_paused = true)]
async fn owned_permits_work_in_spawned_tasks() {
    let s = sem(2);
    let mut handles = Vec::new();
    for _ in 0..10 {
        let permit = s.acquire_owned().await.unwrap();
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(permit);
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let st = s.stats();
    assert_eq!((st.acquired, st.in_use, st.available), (10, 0, 2));
    assert!(st.waited > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_never_exceed_the_limit() {
    let s = sem(3);
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let max_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (s, in_flight, max_seen) = (s.clone(), in_flight.clone(), max_seen.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    let _p = s.acquire().await.unwrap();
                    let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(max_seen.load(std::sync::atomic::Ordering::SeqCst) <= 3);
    let st = s.stats();
    assert_eq!(
        (st.acquired, st.calls(), st.in_use, st.waiting),
        (640, 640, 0, 0)
    );
}

#[test]
fn debug_output_names_the_semaphore() {
    let s = sem(2);
    let dbg = format!("{s:?}");
    assert!(dbg.contains("test") && dbg.contains("limit: 2"), "{dbg}");
    let p = s.try_acquire().unwrap();
    assert!(format!("{p:?}").contains("permits: 1"));
}
