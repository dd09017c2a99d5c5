//! `ConcurrencyLimitLayer`: an instrumented semaphore in front of a service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, NotReady};
use crate::error::AcquireError;
use crate::semaphore::{AcquireOptions, OwnedPermit, Semaphore};

/// Limits how many requests are in the inner service at once, with an instrumented [`Semaphore`]; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    semaphore: Semaphore,
    timeout: Option<Duration>,
}

impl ConcurrencyLimitLayer {
    /// A layer whose services share `semaphore`'s permits (one per request in flight) and wait for one.
    pub fn new(semaphore: Semaphore) -> Self {
        ConcurrencyLimitLayer {
            semaphore,
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

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit {
            inner,
            semaphore: self.semaphore.clone(),
            timeout: self.timeout,
            state: State::Empty,
        }
    }
}

type AcquireFuture = Pin<Box<dyn Future<Output = Result<OwnedPermit, AcquireError>> + Send>>;

enum State {
    Empty,
    /// Waiting for a permit (boxed only on this path: a free permit is taken without allocating).
    Waiting(AcquireFuture),
    Ready(OwnedPermit),
}

/// The service of [`ConcurrencyLimitLayer`]. Clones share the semaphore but not a permit taken by `poll_ready`.
pub struct ConcurrencyLimit<S> {
    inner: S,
    semaphore: Semaphore,
    timeout: Option<Duration>,
    state: State,
}

impl<S: Clone> Clone for ConcurrencyLimit<S> {
    fn clone(&self) -> Self {
        ConcurrencyLimit {
            inner: self.inner.clone(),
            semaphore: self.semaphore.clone(),
            timeout: self.timeout,
            state: State::Empty,
        }
    }
}

impl<S> fmt::Debug for ConcurrencyLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Empty => "empty",
            State::Waiting(_) => "waiting",
            State::Ready(_) => "ready",
        };
        f.debug_struct("ConcurrencyLimit")
            .field("semaphore", &self.semaphore)
            .field("timeout", &self.timeout)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for ConcurrencyLimit<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ConcurrencyLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Ready(_) => return self.inner.poll_ready(cx).map_err(Into::into),
                State::Empty => {
                    if self.timeout == Some(Duration::ZERO) {
                        match self.semaphore.try_acquire_owned() {
                            Ok(p) => self.state = State::Ready(p),
                            Err(_) if !self.semaphore.is_closed() => {
                                return Poll::Ready(Err(AcquireError::Timeout {
                                    timeout: Duration::ZERO,
                                }
                                .into()));
                            }
                            Err(_) => return Poll::Ready(Err(AcquireError::Closed.into())),
                        }
                        continue;
                    }
                    match self.semaphore.acquire_owned_now() {
                        Some(Ok(p)) => self.state = State::Ready(p),
                        Some(Err(e)) => return Poll::Ready(Err(e.into())),
                        None => {
                            let sem = self.semaphore.clone();
                            let timeout = self.timeout;
                            self.state = State::Waiting(Box::pin(async move {
                                let opts = match timeout {
                                    Some(t) => AcquireOptions::new().timeout(t),
                                    None => AcquireOptions::new(),
                                };
                                sem.acquire_owned_with(1, opts).await
                            }));
                        }
                    }
                }
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
            State::Ready(p) => p,
            // Called without `poll_ready` (a breach of the contract): take a free permit now, or refuse the request
            // without calling the inner service. A pending wait stays for the next `poll_ready`.
            other => {
                self.state = other;
                match self.semaphore.try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        return ConcurrencyLimitFuture {
                            inner: None,
                            permit: None,
                            refused: Some(NotReady::ConcurrencyLimit),
                        };
                    }
                }
            }
        };
        ConcurrencyLimitFuture {
            inner: Some(self.inner.call(req)),
            permit: Some(permit),
            refused: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ConcurrencyLimit`]: holds the permit until the inner future finishes.
    pub struct ConcurrencyLimitFuture<F> {
        #[pin]
        inner: Option<F>,
        permit: Option<OwnedPermit>,
        // Set when `call` came unready and no permit was free: the inner service was not called.
        refused: Option<NotReady>,
    }
}

impl<F> fmt::Debug for ConcurrencyLimitFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimitFuture")
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ConcurrencyLimitFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let refused = this.refused.take().unwrap_or(NotReady::ConcurrencyLimit);
            return Poll::Ready(Err(refused.into()));
        };
        let out = std::task::ready!(inner.poll(cx));
        this.permit.take();
        Poll::Ready(out.map_err(Into::into))
    }
}
