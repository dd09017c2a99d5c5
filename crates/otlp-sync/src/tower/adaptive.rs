//! `AdaptiveLimitLayer`: an adaptive concurrency limit in front of a service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::BoxError;
use crate::adaptive::{AdaptiveLimit, OwnedAdaptivePermit};
use crate::error::AcquireError;
use crate::semaphore::AcquireOptions;

/// Limits how many requests are in the inner service at once with an [`AdaptiveLimit`]: each response reports its
/// sample (`Ok` a success with its latency, `Err` a drop, a response future dropped before it finished nothing).
///
/// ```
/// use otlp_sync::adaptive::AdaptiveLimit;
/// use otlp_sync::tower::AdaptiveLimitLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let limit = AdaptiveLimit::new("backend")?;
/// let svc = ServiceBuilder::new()
///     .layer(AdaptiveLimitLayer::new(limit.clone()))
///     .service(service_fn(|req: u32| async move { Ok::<_, tower::BoxError>(req * 2) }));
/// assert_eq!(svc.oneshot(21).await?, 42);
/// assert_eq!(limit.semaphore().stats().acquired, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveLimitLayer {
    limit: AdaptiveLimit,
    timeout: Option<Duration>,
}

impl AdaptiveLimitLayer {
    /// A layer whose services share `limit` (one permit per request in flight) and wait for a permit.
    pub fn new(limit: AdaptiveLimit) -> Self {
        AdaptiveLimitLayer {
            limit,
            timeout: None,
        }
    }

    /// Wait at most `timeout` for a permit, then fail `poll_ready` with [`AcquireError::Timeout`] (a zero timeout
    /// sheds at once when no permit is free).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<S> Layer<S> for AdaptiveLimitLayer {
    type Service = AdaptiveLimitService<S>;

    fn layer(&self, inner: S) -> AdaptiveLimitService<S> {
        AdaptiveLimitService {
            inner,
            limit: self.limit.clone(),
            timeout: self.timeout,
            state: State::Empty,
        }
    }
}

type AcquireFuture =
    Pin<Box<dyn Future<Output = Result<OwnedAdaptivePermit, AcquireError>> + Send>>;

enum State {
    Empty,
    /// Waiting for a permit (boxed only on this path).
    Waiting(AcquireFuture),
    Ready(OwnedAdaptivePermit),
}

/// The service of [`AdaptiveLimitLayer`]. Clones share the limit but not a permit taken by `poll_ready`.
pub struct AdaptiveLimitService<S> {
    inner: S,
    limit: AdaptiveLimit,
    timeout: Option<Duration>,
    state: State,
}

impl<S: Clone> Clone for AdaptiveLimitService<S> {
    fn clone(&self) -> Self {
        AdaptiveLimitService {
            inner: self.inner.clone(),
            limit: self.limit.clone(),
            timeout: self.timeout,
            state: State::Empty,
        }
    }
}

impl<S> fmt::Debug for AdaptiveLimitService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Empty => "empty",
            State::Waiting(_) => "waiting",
            State::Ready(_) => "ready",
        };
        f.debug_struct("AdaptiveLimitService")
            .field("limit", &self.limit)
            .field("timeout", &self.timeout)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for AdaptiveLimitService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AdaptiveLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Ready(_) => return self.inner.poll_ready(cx).map_err(Into::into),
                State::Empty => match self.limit.try_acquire_owned() {
                    Ok(p) => self.state = State::Ready(p),
                    Err(_) if self.limit.semaphore().is_closed() => {
                        return Poll::Ready(Err(AcquireError::Closed.into()));
                    }
                    Err(_) if self.timeout == Some(Duration::ZERO) => {
                        return Poll::Ready(Err(AcquireError::Timeout {
                            timeout: Duration::ZERO,
                        }
                        .into()));
                    }
                    Err(_) => {
                        let limit = self.limit.clone();
                        let timeout = self.timeout;
                        self.state = State::Waiting(Box::pin(async move {
                            let opts = match timeout {
                                Some(t) => AcquireOptions::new().timeout(t),
                                None => AcquireOptions::new(),
                            };
                            limit.acquire_owned_with(opts).await
                        }));
                    }
                },
                State::Waiting(fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(p)) => self.state = State::Ready(p),
                    Poll::Ready(Err(e)) => {
                        self.state = State::Empty;
                        return Poll::Ready(Err(e.into()));
                    }
                },
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let permit = match std::mem::replace(&mut self.state, State::Empty) {
            State::Ready(p) => Some(p),
            // Called without `poll_ready` (a contract violation): run unguarded rather than panic.
            other => {
                self.state = other;
                None
            }
        };
        AdaptiveLimitFuture {
            inner: self.inner.call(req),
            permit: Ending(permit),
        }
    }
}

/// Holds the permit of a request in flight; a future dropped before its response reports nothing.
struct Ending(Option<OwnedAdaptivePermit>);

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.ignore();
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AdaptiveLimitService`]: holds the permit until the inner future finishes, then
    /// reports the sample.
    pub struct AdaptiveLimitFuture<F> {
        #[pin]
        inner: F,
        permit: Ending,
    }
}

impl<F> fmt::Debug for AdaptiveLimitFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitFuture")
            .field("permit", &self.permit.0)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for AdaptiveLimitFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(p) = this.permit.0.take() {
            match &out {
                Ok(_) => p.success(),
                Err(_) => p.dropped(),
            }
        }
        Poll::Ready(out.map_err(Into::into))
    }
}
