//! The background thread that drives OTLP connections, independent of the application's runtime.
//!
//! tonic channels must be created inside a tokio runtime, and that runtime must keep running while the
//! SDK's export threads use them; HTTP requests run on it too (see `http_client`). Borrowing the
//! application's runtime breaks in two ways: `init` may be called before any runtime exists, and on a
//! `current_thread` runtime a shutdown that blocks the runtime thread also stops the connection it waits
//! for (a deadlock until the timeout, delivering nothing). So the exporters get a small `current_thread`
//! runtime of their own on a dedicated thread, stopped after the providers have shut down.
//!
//! Each export is polled inside that runtime's context ([`in_runtime`]), so that the exporter's retry
//! backoff sleeps on the runtime's timer instead of blocking the SDK's export thread: an export the guard
//! abandons at its deadline stops at once, even between retries.

use std::future::Future;
use std::sync::mpsc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A `current_thread` tokio runtime running on its own thread until stopped.
#[derive(Debug)]
pub(crate) struct ExporterRuntime {
    #[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl ExporterRuntime {
    /// Starts the thread; the runtime is created and dropped on it, never in the caller's async context.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (handle_tx, handle_rx) = mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("otlp-telemetry-grpc".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    // Ends on stop() or when the ExporterRuntime is dropped.
                    let _ = stop_rx.await;
                });
                // Connection tasks still running are cancelled here, on this thread.
                drop(rt);
            })?;
        let handle = handle_rx.recv().map_err(|_| {
            std::io::Error::other(
                "the otlp-telemetry-grpc thread exited before starting its runtime",
            )
        })??;
        Ok(ExporterRuntime {
            handle,
            stop: Some(stop_tx),
        })
    }

    /// The runtime to enter while building tonic exporters, and to run HTTP requests and exports on.
    #[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Lets the thread finish; does not wait for it.
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for ExporterRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `f`, telling tokio first when the caller is a worker of a multi-thread runtime, so that other
/// tasks move to other workers while `f` blocks. On a `current_thread` runtime `f` simply blocks that
/// thread; nothing it waits for runs there (export threads and [`ExporterRuntime`] are separate).
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Polls `fut` inside `handle`'s context (when given), so that the timers and tasks it creates belong to
/// that runtime rather than to the calling thread, which has none. The context is entered for each poll
/// only, so the future stays `Send`.
#[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]
pub(crate) async fn in_runtime<F: Future>(handle: Option<Handle>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        let _entered = handle.as_ref().map(Handle::enter);
        fut.as_mut().poll(cx)
    })
    .await
}
