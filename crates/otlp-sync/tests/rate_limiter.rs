//! Behaviour of the instrumented rate limiters, on tokio's paused clock (through `TokioClock`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker_ref;
use otlp_sync::{
    AcquireOptions, BuildError, CancellationToken, CheckError, Jitter, KeyedRateLimiter, Quota,
    RateLimiter, RateLimiterBuilder, RateLimiterStats, TokioClock, WaitError,
};

fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(noop_waker_ref()))
}

/// `per_second` cells per second, burst `burst`, on tokio's clock.
fn limiter(per_second: u64, burst: u64) -> RateLimiter<TokioClock> {
    RateLimiter::builder("test")
        .per_second(per_second)
        .burst(burst)
        .clock(TokioClock)
        .build()
        .unwrap()
}

#[test]
fn types_are_send_sync_and_debug() {
    fn send_sync<T: Send + Sync + std::fmt::Debug>() {}
    send_sync::<RateLimiter>();
    send_sync::<RateLimiter<TokioClock>>();
    send_sync::<KeyedRateLimiter<String>>();
    send_sync::<KeyedRateLimiter<u64, TokioClock>>();
    send_sync::<RateLimiterBuilder>();
    send_sync::<RateLimiterStats>();
    send_sync::<CheckError>();
    send_sync::<WaitError>();
    send_sync::<TokioClock>();
}

#[test]
fn wait_futures_are_send() {
    fn send<T: Send>(_: T) {}
    let l = RateLimiter::per_second("x", 1).unwrap();
    let k = KeyedRateLimiter::<u64>::per_second("x", 1).unwrap();
    let token = CancellationToken::new();
    send(l.until_ready());
    send(l.until_ready_cancellable(&token));
    send(k.until_key_ready(&1));
    send(k.until_key_ready_timeout(&1, Duration::from_secs(1)));
}

#[test]
fn zero_rate_or_burst_is_a_typed_error() {
    let err = RateLimiter::per_second("api", 0).unwrap_err();
    assert_eq!(err, BuildError::ZeroRate { name: "api".into() });
    assert!(err.to_string().contains("at least 1 cell"), "{err}");
    let err = RateLimiter::builder("api")
        .per_second(5)
        .burst(0)
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::ZeroBurst { name: "api".into() });
    let err = RateLimiter::builder("api")
        .per_period(5, Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::ZeroRate { name: "api".into() });
    assert!(matches!(
        RateLimiter::builder("api").build().unwrap_err(),
        BuildError::ZeroRate { .. }
    ));
    let err = RateLimiter::builder("api")
        .per_second(u64::from(u32::MAX) + 1)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::TooLarge { .. }), "{err:?}");
    let err = RateLimiter::builder("api")
        .per_second(1)
        .max_keys(0)
        .build_keyed::<u8>()
        .unwrap_err();
    assert_eq!(err, BuildError::ZeroMaxKeys { name: "api".into() });
    assert!(KeyedRateLimiter::<u8>::per_second("api", 0).is_err());
}

#[test]
fn quota_constructors() {
    let quota = Quota::per_minute(std::num::NonZeroU32::new(60).unwrap());
    let l = RateLimiter::new("q", quota).unwrap();
    assert_eq!(l.quota(), quota);
    assert_eq!(l.name(), "q");
    let l = RateLimiter::builder("m").per_minute(120).build().unwrap();
    assert_eq!(l.quota().replenish_interval(), Duration::from_millis(500));
    assert_eq!(l.quota().burst_size().get(), 120);
    let k = KeyedRateLimiter::<u8>::new("k", quota).unwrap();
    assert_eq!(
        (k.quota(), k.name(), k.max_keys()),
        (quota, "k", otlp_sync::DEFAULT_MAX_KEYS)
    );
    assert!(format!("{k:?}").contains("KeyedRateLimiter"));
    assert!(format!("{l:?}").contains("RateLimiter"));
}

#[tokio::test(start_paused = true)]
async fn check_allows_the_burst_then_throttles_with_retry_after() {
    let l = limiter(2, 2); // one cell every 500 ms, burst 2
    l.check().unwrap();
    l.check().unwrap();
    let err = l.check().unwrap_err();
    assert_eq!(
        err,
        CheckError::Throttled {
            retry_after: Duration::from_millis(500)
        }
    );
    assert!(err.to_string().contains("until_ready"), "{err}");
    tokio::time::advance(Duration::from_millis(500)).await;
    l.check().unwrap();
    let st = l.stats();
    assert_eq!((st.allowed, st.throttled, st.calls()), (3, 1, 4));
}

#[tokio::test(start_paused = true)]
async fn check_n_needs_all_cells_and_never_more_than_the_burst() {
    let l = limiter(10, 5);
    l.check_n(5).unwrap();
    assert!(matches!(l.check_n(1), Err(CheckError::Throttled { .. })));
    assert_eq!(
        l.check_n(6).unwrap_err(),
        CheckError::InsufficientCapacity {
            requested: 6,
            burst: 5
        }
    );
    l.check_n(0).unwrap();
    assert_eq!(
        l.until_n_ready(6).await.unwrap_err(),
        WaitError::InsufficientCapacity {
            requested: 6,
            burst: 5
        }
    );
    let st = l.stats();
    assert_eq!((st.allowed, st.throttled, st.calls()), (2, 3, 5));
}

#[tokio::test(start_paused = true)]
async fn until_ready_sleeps_exactly_until_a_cell_is_free() {
    let l = limiter(1, 1);
    l.until_ready().await; // burst: no wait
    let start = tokio::time::Instant::now();
    l.until_ready().await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    l.until_n_ready(1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let st = l.stats();
    assert_eq!(
        (st.allowed, st.waited, st.waiting, st.calls()),
        (3, 2, 0, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn until_ready_timeout_fails_fast_when_the_deadline_cannot_be_met() {
    let l = limiter(1, 1);
    l.check().unwrap();
    let start = tokio::time::Instant::now();
    let err = l
        .until_ready_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        WaitError::Timeout {
            timeout: Duration::from_millis(300)
        }
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no point sleeping: the next cell is 1 s away"
    );
    l.until_ready_timeout(Duration::from_secs(2)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let st = l.stats();
    assert_eq!(
        (st.allowed, st.timed_out, st.waited, st.calls()),
        (2, 1, 1, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn a_competitor_can_push_a_waiter_past_its_deadline() {
    let l = limiter(1, 1);
    l.check().unwrap();
    let mut waiter = pin!(l.until_ready_timeout(Duration::from_millis(1500)));
    assert!(poll_once(waiter.as_mut()).is_pending());
    tokio::time::advance(Duration::from_secs(1)).await;
    l.check().unwrap(); // takes the cell the waiter was sleeping for
    assert_eq!(
        waiter.await.unwrap_err(),
        WaitError::Timeout {
            timeout: Duration::from_millis(1500)
        }
    );
    let st = l.stats();
    assert_eq!(
        (st.allowed, st.timed_out, st.waited, st.calls()),
        (2, 1, 1, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn cancellation_by_token_and_by_drop() {
    let l = limiter(1, 1);
    let token = CancellationToken::new();
    token.cancel();
    assert_eq!(
        l.until_ready_cancellable(&token).await.unwrap_err(),
        WaitError::Cancelled
    );
    assert_eq!(
        l.stats().allowed,
        0,
        "an already-cancelled token takes no cell"
    );
    l.check().unwrap();

    let token = CancellationToken::new();
    let mut waiter = pin!(l.until_ready_cancellable(&token));
    assert!(poll_once(waiter.as_mut()).is_pending());
    assert_eq!(l.stats().waiting, 1);
    token.cancel();
    assert_eq!(waiter.await.unwrap_err(), WaitError::Cancelled);

    {
        let mut dropped = Box::pin(l.until_n_ready_with(1, AcquireOptions::new()));
        assert!(poll_once(dropped.as_mut()).is_pending());
    }
    let st = l.stats();
    assert_eq!(
        (st.cancelled, st.waiting, st.allowed, st.calls()),
        (3, 0, 1, 4)
    );
    // Nothing was taken by the cancelled waits: the next cell comes when it would have.
    tokio::time::advance(Duration::from_secs(1)).await;
    l.check().unwrap();
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_the_wake_up_within_its_bound() {
    let l = RateLimiter::builder("j")
        .per_second(1)
        .jitter(Jitter::up_to(Duration::from_millis(100)))
        .clock(TokioClock)
        .build()
        .unwrap();
    l.check().unwrap();
    let start = tokio::time::Instant::now();
    l.until_ready().await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited <= Duration::from_millis(1100),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn many_waiters_all_get_through_at_the_rate() {
    let l = limiter(10, 1);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.until_ready().await })
        })
        .collect();
    let start = tokio::time::Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    // 20 cells at 10 per second, the first from the burst: at least 1.9 s.
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
    let st = l.stats();
    assert_eq!((st.allowed, st.calls(), st.waiting), (20, 20, 0));
}

#[tokio::test(start_paused = true)]
async fn keyed_limiter_has_one_bucket_per_key() {
    let k = RateLimiter::builder("tenants")
        .per_second(1)
        .clock(TokioClock)
        .build_keyed::<&str>()
        .unwrap();
    k.check_key(&"a").unwrap();
    assert!(matches!(
        k.check_key(&"a"),
        Err(CheckError::Throttled { .. })
    ));
    k.check_key(&"b").unwrap();
    assert_eq!(
        k.check_key_n(&"c", 2).unwrap_err(),
        CheckError::InsufficientCapacity {
            requested: 2,
            burst: 1
        }
    );
    k.check_key_n(&"c", 0).unwrap();
    let start = tokio::time::Instant::now();
    k.until_key_ready(&"a").await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    k.check_key(&"b").unwrap(); // b's bucket refilled meanwhile
    assert_eq!(
        k.until_key_ready_timeout(&"b", Duration::from_millis(10))
            .await
            .unwrap_err(),
        WaitError::Timeout {
            timeout: Duration::from_millis(10)
        }
    );
    let token = CancellationToken::new();
    token.cancel();
    assert_eq!(
        k.until_key_ready_cancellable(&"z", &token)
            .await
            .unwrap_err(),
        WaitError::Cancelled
    );
    assert_eq!(
        k.until_key_n_ready(&"z", 3).await.unwrap_err(),
        WaitError::InsufficientCapacity {
            requested: 3,
            burst: 1
        }
    );
    let st = k.stats();
    assert_eq!(
        (
            st.allowed,
            st.throttled,
            st.timed_out,
            st.cancelled,
            st.calls()
        ),
        (5, 3, 1, 1, 10)
    );
    assert_eq!(
        st.keys, 2,
        "a and b; calls that could never pass store no key"
    );
    assert!(!k.is_empty());
}

#[tokio::test(start_paused = true)]
async fn keyed_store_is_bounded_under_hostile_keys() {
    let k = RateLimiter::builder("ip")
        .per_second(1)
        .max_keys(64)
        .clock(TokioClock)
        .build_keyed::<u64>()
        .unwrap();
    for key in 0..10_000u64 {
        k.check_key(&key).unwrap(); // every key is new: each gets its own burst
        assert!(k.len() <= 64);
    }
    let st = k.stats();
    assert_eq!(st.allowed, 10_000);
    assert_eq!(st.evicted, 10_000 - st.keys as u64);
}

#[tokio::test(start_paused = true)]
async fn retain_recent_forgets_keys_that_are_back_to_a_full_burst() {
    let k = RateLimiter::builder("r")
        .per_second(1)
        .burst(2)
        .clock(TokioClock)
        .build_keyed::<u8>()
        .unwrap();
    k.check_key(&1).unwrap();
    tokio::time::advance(Duration::from_secs(3)).await;
    k.check_key(&2).unwrap();
    k.retain_recent(); // key 1 is back to a full burst; key 2 is not
    assert_eq!(k.len(), 1);
    tokio::time::advance(Duration::from_secs(5)).await;
    k.retain_recent();
    k.shrink_to_fit();
    assert!(k.is_empty());
}

/// `KeyedRateLimiter::builder(..).build()` builds a keyed limiter whose key type is inferred from its use, and
/// `RateLimiter::builder(..).build()` stays a direct one.
#[tokio::test(start_paused = true)]
async fn keyed_builder_builds_a_keyed_limiter() {
    let keyed = KeyedRateLimiter::builder("per-client")
        .per_second(1)
        .burst(2)
        .max_keys(8)
        .clock(TokioClock)
        .build()
        .unwrap();
    keyed.check_key(&7u16).unwrap();
    keyed.check_key(&7u16).unwrap();
    assert!(matches!(
        keyed.check_key(&7u16),
        Err(CheckError::Throttled { .. })
    ));
    keyed.check_key(&8u16).unwrap();
    assert_eq!(
        (keyed.len(), keyed.max_keys(), keyed.name()),
        (2, 8, "per-client")
    );

    let direct: RateLimiter<TokioClock> = RateLimiter::builder("direct")
        .per_second(1)
        .clock(TokioClock)
        .build()
        .unwrap();
    direct.check().unwrap();

    let err = KeyedRateLimiter::<u16>::builder("no-keys")
        .per_second(1)
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        BuildError::ZeroMaxKeys {
            name: "no-keys".into()
        }
    );
}

/// A `String`-keyed limiter is checked with a `&str`: no owned key per request (a new key is made owned once).
/// Decisions are governor's GCRA: a burst of 1 at 10 per second retries after exactly 100 ms.
#[tokio::test(start_paused = true)]
async fn string_keys_are_checked_by_str() {
    let k = KeyedRateLimiter::<String>::builder("by-str")
        .per_second(10)
        .burst(1)
        .clock(TokioClock)
        .build()
        .unwrap();
    let request_client: &str = "acme";
    k.check_key(request_client).unwrap();
    assert_eq!(
        k.check_key(request_client),
        Err(CheckError::Throttled {
            retry_after: Duration::from_millis(100)
        })
    );
    k.check_key(&String::from("globex")).unwrap();
    assert_eq!(k.len(), 2);
    assert_eq!(
        k.check_key_n("acme", 2),
        Err(CheckError::InsufficientCapacity {
            requested: 2,
            burst: 1
        })
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    k.check_key("acme").unwrap();
    let start = tokio::time::Instant::now();
    k.until_key_ready("acme").await;
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(
        k.until_key_ready_timeout("acme", Duration::from_millis(50))
            .await,
        Err(WaitError::Timeout {
            timeout: Duration::from_millis(50)
        })
    );
    // After a quiet second every key is as good as fresh: `retain_recent` drops them all.
    tokio::time::advance(Duration::from_secs(1)).await;
    k.retain_recent();
    assert!(k.is_empty());
    let st = k.stats();
    assert_eq!(
        (st.allowed, st.throttled, st.timed_out, st.waited),
        (4, 2, 1, 1)
    );
}
