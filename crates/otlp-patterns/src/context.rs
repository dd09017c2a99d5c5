//! The cancellation token of the worker pool running the current task.

use tokio_util::sync::CancellationToken;

tokio::task_local! {
    static CURRENT_TOKEN: CancellationToken;
}

/// The [`CancellationToken`] of the [`WorkerPool`](crate::WorkerPool) running the current task, or `None` outside
/// a pool's task.
///
/// It is a child of the pool's `parent` token. It is cancelled when the parent is, when the pool is dropped, and
/// when `shutdown` reaches its deadline, just before the remaining tasks are dropped: a long task can watch it
/// (`token.cancelled().await` in a `select!`, or `is_cancelled()` between steps) to stop at a clean point.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use otlp_patterns::{WorkerPool, current_token};
///
/// let pool = WorkerPool::builder("doc").workers(1).queue(4).build()?;
/// let handle = pool
///     .submit(async {
///         let token = current_token().expect("inside a pool task");
///         token.is_cancelled()
///     })
///     .await?;
/// assert!(!handle.await?);
/// assert!(current_token().is_none());
/// pool.shutdown_now().await;
/// # Ok(())
/// # }
/// ```
pub fn current_token() -> Option<CancellationToken> {
    CURRENT_TOKEN.try_with(CancellationToken::clone).ok()
}

/// Runs `fut` with `token` as the [`current_token`].
pub(crate) async fn with_token<F: std::future::Future>(
    token: CancellationToken,
    fut: F,
) -> F::Output {
    CURRENT_TOKEN.scope(token, fut).await
}
