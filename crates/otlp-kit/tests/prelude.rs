//! The prelude holds what a service reaches for after its first lines: handles, permits, errors (without name
//! clashes between the crates' `BuildError`s) and telemetry's `init`; the facade re-exports `tracing`.
#![cfg(all(
    feature = "pool",
    feature = "sync",
    feature = "patterns",
    feature = "telemetry"
))]

use otlp_kit::prelude::*;

#[tokio::test(flavor = "current_thread")]
async fn the_prelude_is_enough_for_a_service() -> Result<(), Box<dyn std::error::Error>> {
    // Telemetry: the config and `init` itself (not called here: it installs process-wide providers).
    let _config: TelemetryConfig = TelemetryConfig::default();
    let _init: fn(TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> = init;

    // Permits, borrowed and owned, and the semaphore's errors.
    let sem = Semaphore::new("prelude", 1)?;
    let permit: Permit<'_> = sem.acquire().await?;
    assert!(matches!(sem.try_acquire(), Err(TryAcquireError::NoPermits)));
    drop(permit);
    let owned: OwnedPermit = sem.acquire_owned().await?;
    drop(owned);
    let _: Option<AcquireError> = None;

    // Rate limiters and their errors.
    let limiter = RateLimiter::per_second("prelude", 1)?;
    limiter.check()?;
    assert!(matches!(limiter.check(), Err(CheckError::Throttled { .. })));
    let _: Option<WaitError> = None;

    // Task handles and submission errors.
    let pool = WorkerPool::builder("prelude").workers(1).queue(1).build()?;
    let handle: TaskHandle<u32> = pool.submit(async { 7 }).await?;
    assert_eq!(handle.await?, 7);
    pool.shutdown_now().await;
    let refused: Result<TaskHandle<u32>, SubmitError> = pool.try_submit(async { 8 });
    assert_eq!(refused.unwrap_err(), SubmitError::Closed);
    let _: Option<TaskError> = None;

    // Each crate's build error under its own name.
    let _: PoolBuildError = Pool::builder("prelude", Vec::<u8>::new)
        .capacity(0)
        .build()
        .unwrap_err();
    let _: SyncBuildError = Semaphore::builder("prelude").build().unwrap_err();
    let _: PatternsBuildError = FanOut::new("prelude", 0).unwrap_err();

    // `tracing` through the facade: one dependency is enough to emit spans.
    let span = otlp_kit::tracing::info_span!("prelude.request", route = "/");
    span.in_scope(|| otlp_kit::tracing::info!("inside"));
    Ok(())
}
