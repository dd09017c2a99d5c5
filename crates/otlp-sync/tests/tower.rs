//! The tower layers, with `tower::service_fn` services, on tokio's paused clock.
#![cfg(feature = "tower")]

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker_ref;
use otlp_sync::tower::{
    BoxError, ConcurrencyLimit, ConcurrencyLimitLayer, NotReady, RateLimit, RateLimitLayer,
};
use otlp_sync::{AcquireError, CheckError, RateLimiter, Semaphore, TokioClock, WaitError};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn poll_ready<S: Service<R>, R>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    svc.poll_ready(&mut Context::from_waker(noop_waker_ref()))
}

fn echo() -> impl Service<
    u32,
    Response = u32,
    Error = BoxError,
    Future = impl Future<Output = Result<u32, BoxError>> + Send,
> + Clone
+ Send
+ Sync {
    service_fn(|req: u32| async move { Ok::<_, BoxError>(req) })
}

#[test]
fn layers_and_services_are_send_sync_and_debug() {
    fn send_sync<T: Send + Sync + std::fmt::Debug>() {}
    send_sync::<ConcurrencyLimitLayer>();
    send_sync::<RateLimitLayer>();
    send_sync::<RateLimitLayer<TokioClock>>();
    fn send_debug<T: Send + std::fmt::Debug>(_: &T) {}
    let sem = Semaphore::new("s", 1).unwrap();
    send_debug(&ConcurrencyLimitLayer::new(sem).layer(echo()));
    send_debug(&RateLimitLayer::new(RateLimiter::per_second("r", 1).unwrap()).layer(echo()));
}

#[tokio::test(start_paused = true)]
async fn concurrency_limit_holds_a_permit_per_request_in_flight() {
    let sem = Semaphore::new("svc", 1).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let inner = service_fn(move |req: u32| {
        let rx = rx.clone();
        async move {
            if req == 1 {
                let rx = rx.lock().await.take().unwrap();
                rx.await.unwrap();
            }
            Ok::<_, BoxError>(req * 10)
        }
    });
    let mut svc = ConcurrencyLimitLayer::new(sem.clone()).layer(inner);
    let mut other = svc.clone();

    svc.ready().await.unwrap();
    let first = tokio::spawn(svc.call(1)); // holds the only permit until released
    while sem.available() > 0 {
        tokio::task::yield_now().await;
    }
    assert!(
        poll_ready(&mut other).is_pending(),
        "the second request waits for the permit"
    );
    assert_eq!(sem.stats().waiting, 1);
    tx.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 10);
    other.ready().await.unwrap();
    assert_eq!(other.call(2).await.unwrap(), 20);
    assert_eq!(sem.available(), 1, "permits go back when responses finish");
    let st = sem.stats();
    assert_eq!((st.acquired, st.waited, st.calls()), (2, 1, 2));
}

#[tokio::test(start_paused = true)]
async fn concurrency_limit_sheds_after_its_timeout() {
    let sem = Semaphore::new("svc", 1).unwrap();
    let _held = sem.acquire().await.unwrap();
    let svc = ConcurrencyLimitLayer::new(sem.clone())
        .timeout(Duration::from_millis(100))
        .layer(echo());
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!(
        *err.downcast_ref::<AcquireError>().unwrap(),
        AcquireError::Timeout {
            timeout: Duration::from_millis(100)
        }
    );

    let mut shed_now = ConcurrencyLimitLayer::new(sem.clone())
        .timeout(Duration::ZERO)
        .layer(echo());
    let Poll::Ready(Err(err)) = poll_ready(&mut shed_now) else {
        panic!("a zero timeout sheds at once")
    };
    assert!(err.downcast_ref::<AcquireError>().is_some(), "{err}");

    sem.close();
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(
        *err.downcast_ref::<AcquireError>().unwrap(),
        AcquireError::Closed
    );
    let st = sem.stats();
    assert_eq!((st.timed_out, st.rejected, st.closed), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through() {
    let sem = Semaphore::new("svc", 1).unwrap();
    let failing = service_fn(|_: u32| async { Err::<u32, BoxError>("boom".into()) });
    let err = ConcurrencyLimitLayer::new(sem.clone())
        .layer(failing)
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_eq!(sem.available(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_for_a_cell() {
    let limiter = RateLimiter::builder("svc")
        .per_second(1)
        .clock(TokioClock)
        .build()
        .unwrap();
    let mut svc: RateLimit<_, TokioClock> = RateLimitLayer::new(limiter.clone()).layer(echo());
    let start = tokio::time::Instant::now();
    for i in 0..3 {
        assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
    }
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "the burst of 1, then one per second"
    );
    let st = limiter.stats();
    assert_eq!((st.allowed, st.waited, st.calls()), (3, 2, 3));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_sheds_with_a_timeout() {
    let limiter = RateLimiter::builder("svc")
        .per_second(1)
        .clock(TokioClock)
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(limiter.clone())
        .timeout(Duration::ZERO)
        .layer(echo());
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), 7);
    let err = svc.oneshot(8).await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<CheckError>(),
            Some(CheckError::Throttled { .. })
        ),
        "{err}"
    );

    let svc = RateLimitLayer::new(limiter.clone())
        .timeout(Duration::from_millis(10))
        .layer(echo());
    let err = svc.oneshot(9).await.unwrap_err();
    assert_eq!(
        *err.downcast_ref::<WaitError>().unwrap(),
        WaitError::Timeout {
            timeout: Duration::from_millis(10)
        }
    );
    let st = limiter.stats();
    assert_eq!((st.allowed, st.throttled, st.timed_out), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn layers_stack_in_a_service_builder() {
    let sem = Semaphore::new("stack", 2).unwrap();
    let limiter = RateLimiter::builder("stack")
        .per_second(100)
        .clock(TokioClock)
        .build()
        .unwrap();
    let svc: ConcurrencyLimit<RateLimit<_, TokioClock>> = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(sem.clone()))
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(echo());
    let results = futures::future::join_all((0..10).map(|i| svc.clone().oneshot(i))).await;
    assert!(results.into_iter().all(|r| r.is_ok()));
    assert_eq!((sem.stats().acquired, limiter.stats().allowed), (10, 10));
}

/// A service that counts how often the inner service was called.
fn counted() -> (
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    impl Service<
        u32,
        Response = u32,
        Error = BoxError,
        Future = impl Future<Output = Result<u32, BoxError>>,
    > + Clone,
) {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let svc = service_fn(move |req: u32| {
        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { Ok::<_, BoxError>(req) }
    });
    (calls, svc)
}

/// `call` without `poll_ready` never skips the limit: it takes a permit if one is free, else it fails with a typed
/// error without calling the inner service (tower's own layer panics instead).
#[tokio::test(start_paused = true)]
async fn concurrency_limit_is_never_skipped_by_call_without_poll_ready() {
    let sem = Semaphore::new("unready", 1).unwrap();
    let (calls, inner) = counted();
    let mut svc = ConcurrencyLimitLayer::new(sem.clone()).layer(inner);
    let mut other = svc.clone();

    let first = svc.call(1); // no poll_ready: takes the free permit itself
    assert_eq!(sem.available(), 0, "the request in flight holds the permit");
    let err = other.call(2).await.unwrap_err();
    let not_ready = err.downcast_ref::<NotReady>().expect("a typed error");
    assert_eq!(*not_ready, NotReady::ConcurrencyLimit);
    assert!(err.to_string().contains("poll_ready"), "{err}");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the inner service was not called"
    );
    assert_eq!(first.await.unwrap(), 1);
    assert_eq!(sem.available(), 1);
    let st = sem.stats();
    assert_eq!((st.acquired, st.rejected, st.calls()), (1, 1, 2));
}

/// The same for the rate limit: `call` without `poll_ready` takes a cell or fails, typed.
#[tokio::test(start_paused = true)]
async fn rate_limit_is_never_skipped_by_call_without_poll_ready() {
    let limiter = RateLimiter::builder("unready")
        .per_second(1)
        .clock(TokioClock)
        .build()
        .unwrap();
    let (calls, inner) = counted();
    let mut svc = RateLimitLayer::new(limiter.clone()).layer(inner);
    assert_eq!(svc.call(1).await.unwrap(), 1);
    let err = svc.call(2).await.unwrap_err();
    assert_eq!(
        *err.downcast_ref::<NotReady>().expect("a typed error"),
        NotReady::RateLimit
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let st = limiter.stats();
    assert_eq!((st.allowed, st.throttled), (1, 1));
}
