//! Catching a future's panic, so one bad item or task is reported instead of tearing down its runner.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::error::panic_message;

pin_project! {
    /// Polls `fut`, turning a panic during a poll into `Err(message)`. Not polled again after it resolved.
    #[derive(Debug)]
    pub(crate) struct CatchPanic<F> {
        #[pin]
        fut: F,
        done: bool,
    }
}

impl<F> CatchPanic<F> {
    pub(crate) fn new(fut: F) -> Self {
        Self { fut, done: false }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(Err("polled after completion".to_owned()));
        }
        let fut = this.fut;
        let out = match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(payload) => Err(panic_message(payload.as_ref())),
        };
        *this.done = true;
        Poll::Ready(out)
    }
}
