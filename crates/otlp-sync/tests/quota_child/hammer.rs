//! What each of the limiters sharing one quota does (in `tests/redis.rs`'s tasks and in the child process).

use std::time::{Duration, Instant};

use otlp_sync::redis_limiter::{RedisRateLimiter, Unavailable};
use otlp_sync::{CheckError, Quota};

/// The key the limiters share.
pub const SHARED: &str = "shared";

/// Checks key [`SHARED`] at `rate` a second (burst `rate`) as fast as it can for `run`; returns how many passed.
/// Panics on any answer but allowed or throttled: a backend error would make the count meaningless.
pub async fn hammer(url: &str, rate: u32, run: Duration) -> u64 {
    let quota = Quota::per_second(std::num::NonZeroU32::new(rate).expect("a rate above 0"));
    let limiter = RedisRateLimiter::builder(SHARED, quota)
        .url(url)
        .on_unavailable(Unavailable::FailClosed)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let end = Instant::now() + run;
    let mut allowed = 0;
    while Instant::now() < end {
        match limiter.check().await {
            Ok(()) => allowed += 1,
            Err(CheckError::Throttled { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let st = limiter.stats();
    assert_eq!(st.allowed, allowed);
    assert_eq!(st.failed_closed, 0);
    allowed
}
