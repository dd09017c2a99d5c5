//! `RateLimitLayer`: an instrumented rate limiter in front of a service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, NotReady};
use crate::error::WaitError;
use crate::rate_limiter::RateLimiter;
use crate::semaphore::AcquireOptions;

/// Lets requests into the inner service at most at the rate of an instrumented [`RateLimiter`]; see the
/// [module docs](super).
pub struct RateLimitLayer<C: Clock = DefaultClock> {
    limiter: RateLimiter<C>,
    timeout: Option<Duration>,
}

impl<C: Clock> Clone for RateLimitLayer<C> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
            timeout: self.timeout,
        }
    }
}

impl<C: Clock> fmt::Debug for RateLimitLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<C: Clock> RateLimitLayer<C> {
    /// A layer whose services share `limiter` and wait for a cell before each request.
    pub fn new(limiter: RateLimiter<C>) -> Self {
        RateLimitLayer {
            limiter,
            timeout: None,
        }
    }

    /// Wait at most `timeout` for a cell, then fail `poll_ready` with [`WaitError::Timeout`]. A zero timeout sheds at
    /// once with [`CheckError::Throttled`](crate::CheckError) (which carries `retry_after`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<S, C: Clock> Layer<S> for RateLimitLayer<C> {
    type Service = RateLimit<S, C>;

    fn layer(&self, inner: S) -> RateLimit<S, C> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            timeout: self.timeout,
            state: State::Empty,
        }
    }
}

type WaitFuture = Pin<Box<dyn Future<Output = Result<(), WaitError>> + Send>>;

enum State {
    Empty,
    /// Waiting for a cell (boxed only on this path).
    Waiting(WaitFuture),
    /// A cell was taken for the next `call`.
    Ready,
}

/// The service of [`RateLimitLayer`]. Clones share the limiter but not a cell taken by `poll_ready`.
pub struct RateLimit<S, C: Clock = DefaultClock> {
    inner: S,
    limiter: RateLimiter<C>,
    timeout: Option<Duration>,
    state: State,
}

impl<S: Clone, C: Clock> Clone for RateLimit<S, C> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            timeout: self.timeout,
            state: State::Empty,
        }
    }
}

impl<S, C: Clock> fmt::Debug for RateLimit<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Empty => "empty",
            State::Waiting(_) => "waiting",
            State::Ready => "ready",
        };
        f.debug_struct("RateLimit")
            .field("limiter", &self.limiter)
            .field("timeout", &self.timeout)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for RateLimit<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = RateLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Ready => return self.inner.poll_ready(cx).map_err(Into::into),
                State::Empty => {
                    if self.timeout == Some(Duration::ZERO) {
                        match self.limiter.check() {
                            Ok(()) => self.state = State::Ready,
                            Err(e) => return Poll::Ready(Err(e.into())),
                        }
                    } else if self.limiter.check_now() {
                        self.state = State::Ready;
                    } else {
                        let limiter = self.limiter.clone();
                        let timeout = self.timeout;
                        self.state = State::Waiting(Box::pin(async move {
                            let opts = match timeout {
                                Some(t) => AcquireOptions::new().timeout(t),
                                None => AcquireOptions::new(),
                            };
                            limiter.until_n_ready_with(1, opts).await
                        }));
                    }
                }
                State::Waiting(fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => self.state = State::Ready,
                    Poll::Ready(Err(e)) => {
                        self.state = State::Empty;
                        return Poll::Ready(Err(e.into()));
                    }
                },
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if matches!(self.state, State::Ready) {
            self.state = State::Empty;
        } else if self.limiter.check().is_err() {
            // Called without `poll_ready` (a breach of the contract) and no cell is free now: refuse the request
            // without calling the inner service (the `check` counted it as throttled).
            return RateLimitFuture {
                inner: None,
                refused: Some(NotReady::RateLimit),
            };
        }
        RateLimitFuture {
            inner: Some(self.inner.call(req)),
            refused: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RateLimit`]: the inner future with its error boxed.
    pub struct RateLimitFuture<F> {
        #[pin]
        inner: Option<F>,
        // Set when `call` came unready and no cell was free: the inner service was not called.
        refused: Option<NotReady>,
    }
}

impl<F> fmt::Debug for RateLimitFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for RateLimitFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx).map_err(Into::into),
            None => {
                let refused = this.refused.take().unwrap_or(NotReady::RateLimit);
                Poll::Ready(Err(refused.into()))
            }
        }
    }
}
