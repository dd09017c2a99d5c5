//! Typed errors. Every message says what was wrong and how to fix it.

use std::fmt;
use std::time::Duration;

/// A semaphore or rate limiter could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The semaphore's builder was not told how many permits to hold.
    PermitsNotSet {
        /// The semaphore's name.
        name: String,
    },
    /// The semaphore was given more permits than tokio's semaphore can count.
    TooManyPermits {
        /// The semaphore's name.
        name: String,
        /// The permits asked for.
        permits: usize,
        /// The most a semaphore can hold ([`crate::Semaphore::MAX_PERMITS`]).
        max: usize,
    },
    /// The rate limiter was given a zero rate (zero cells per period, or a zero period).
    ZeroRate {
        /// The rate limiter's name.
        name: String,
    },
    /// The rate limiter was given a zero burst: no request could ever pass.
    ZeroBurst {
        /// The rate limiter's name.
        name: String,
    },
    /// The keyed rate limiter was given room for zero keys.
    ZeroMaxKeys {
        /// The rate limiter's name.
        name: String,
    },
    /// An adaptive limit's bounds, sampling or algorithm parameters are out of range.
    InvalidAdaptiveLimit {
        /// The limit's name.
        name: String,
        /// What is wrong, and the range allowed.
        what: &'static str,
    },
    /// A Redis rate limiter's configuration is not usable.
    InvalidRedisLimiter {
        /// The limiter's name.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// A number (rate, burst) does not fit governor's `u32` cell count.
    TooLarge {
        /// The owner's name.
        name: String,
        /// What was too large.
        what: &'static str,
        /// The value given.
        value: u64,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::PermitsNotSet { name } => write!(
                f,
                "semaphore `{name}` was built without a number of permits; call `.permits(n)` on its builder \
                 (0 makes a closed gate that `add_permits` opens)"
            ),
            BuildError::TooManyPermits { name, permits, max } => write!(
                f,
                "semaphore `{name}` was built with {permits} permits, more than the maximum of {max}; \
                 use at most {max} permits"
            ),
            BuildError::ZeroRate { name } => write!(
                f,
                "rate limiter `{name}` was built with a zero rate, so no request could ever pass; \
                 give it at least 1 cell per non-zero period"
            ),
            BuildError::ZeroBurst { name } => write!(
                f,
                "rate limiter `{name}` was built with a burst of 0, so no request could ever pass; \
                 give it a burst of at least 1"
            ),
            BuildError::ZeroMaxKeys { name } => write!(
                f,
                "keyed rate limiter `{name}` was built with room for 0 keys; give `max_keys` at least 1"
            ),
            BuildError::InvalidAdaptiveLimit { name, what } => write!(
                f,
                "adaptive limit `{name}` is misconfigured: {what}; fix that parameter in its builder"
            ),
            BuildError::InvalidRedisLimiter { name, what } => write!(
                f,
                "Redis rate limiter `{name}` cannot be built: {what}; fix that in its builder"
            ),
            BuildError::TooLarge { name, what, value } => write!(
                f,
                "`{name}`: {what} of {value} is too large (at most {}); use a smaller value",
                u32::MAX
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// A waiting acquire did not get its permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireError {
    /// The semaphore was closed (before or while waiting).
    Closed,
    /// The timeout passed before the permits were free.
    Timeout {
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The cancellation token was cancelled (before or while waiting).
    Cancelled,
    /// More permits were asked for than the semaphore has in all: waiting would never end.
    TooManyPermits {
        /// Permits asked for.
        requested: u32,
        /// The semaphore's limit when asked.
        limit: usize,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Closed => f.write_str(
                "the semaphore is closed and gives no more permits; stop acquiring from it or build a new one",
            ),
            AcquireError::Timeout { timeout } => write!(
                f,
                "no permit became free within {timeout:?}; retry later, raise the timeout or the semaphore's limit"
            ),
            AcquireError::Cancelled => {
                f.write_str("the acquire was cancelled by its cancellation token before it got its permits")
            }
            AcquireError::TooManyPermits { requested, limit } => write!(
                f,
                "asked for {requested} permits but the semaphore holds only {limit} in all, so the wait would never \
                 end; ask for at most {limit} or raise the limit with `add_permits`"
            ),
        }
    }
}

impl std::error::Error for AcquireError {}

/// A `try_acquire` did not get its permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryAcquireError {
    /// Not enough permits are free right now.
    NoPermits,
    /// The semaphore was closed.
    Closed,
    /// More permits were asked for than the semaphore has in all.
    TooManyPermits {
        /// Permits asked for.
        requested: u32,
        /// The semaphore's limit when asked.
        limit: usize,
    },
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::NoPermits => f.write_str(
                "no permit is free right now; retry later, wait with `acquire`, or raise the semaphore's limit",
            ),
            TryAcquireError::Closed => f.write_str(
                "the semaphore is closed and gives no more permits; stop acquiring from it or build a new one",
            ),
            TryAcquireError::TooManyPermits { requested, limit } => write!(
                f,
                "asked for {requested} permits but the semaphore holds only {limit} in all; ask for at most {limit} \
                 or raise the limit with `add_permits`"
            ),
        }
    }
}

impl std::error::Error for TryAcquireError {}

/// `add_permits` would take the semaphore over its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddPermitsError {
    /// The limit before the call.
    pub limit: usize,
    /// The permits the call tried to add.
    pub added: usize,
    /// The most a semaphore can hold.
    pub max: usize,
}

impl fmt::Display for AddPermitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "adding {} permits to a limit of {} would exceed the maximum of {}; add at most {}",
            self.added,
            self.limit,
            self.max,
            self.max.saturating_sub(self.limit)
        )
    }
}

impl std::error::Error for AddPermitsError {}

/// A rate limiter said no (`check`, `check_n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckError {
    /// Too many requests right now.
    Throttled {
        /// How long until the request could pass (it may be taken by someone else by then).
        retry_after: Duration,
    },
    /// More cells were asked for at once than the burst allows: it can never pass.
    InsufficientCapacity {
        /// Cells asked for.
        requested: u32,
        /// The limiter's burst size.
        burst: u32,
    },
    /// The shared limiter's backend (Redis) did not answer within its timeout or failed, and the limiter was
    /// built to fail closed.
    Unavailable {
        /// The limiter's per-call timeout.
        timeout: Duration,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Throttled { retry_after } => write!(
                f,
                "rate limit reached; retry after {retry_after:?} or wait with `until_ready`"
            ),
            CheckError::InsufficientCapacity { requested, burst } => write!(
                f,
                "asked for {requested} cells at once but the burst is only {burst}, so it can never pass; \
                 ask for at most {burst} or build the limiter with a larger burst"
            ),
            CheckError::Unavailable { timeout } => write!(
                f,
                "the rate limiter's Redis did not answer within {timeout:?} (or failed), and the limiter fails \
                 closed; retry later, check that Redis is up, or build it with another `Unavailable` policy"
            ),
        }
    }
}

impl std::error::Error for CheckError {}

/// A rate limiter wait (`until_ready` and friends) ended without the request passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed first.
    Timeout {
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The cancellation token was cancelled (before or while waiting).
    Cancelled,
    /// More cells were asked for at once than the burst allows: waiting would never end.
    InsufficientCapacity {
        /// Cells asked for.
        requested: u32,
        /// The limiter's burst size.
        burst: u32,
    },
    /// The shared limiter's backend (Redis) did not answer within its timeout or failed, and the limiter was
    /// built to fail closed.
    Unavailable {
        /// The limiter's per-call timeout.
        timeout: Duration,
    },
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Timeout { timeout } => write!(
                f,
                "the rate limiter did not let the request pass within {timeout:?}; retry later or raise the timeout \
                 or the rate"
            ),
            WaitError::Cancelled => {
                f.write_str("the wait was cancelled by its cancellation token before the rate limiter let it pass")
            }
            WaitError::InsufficientCapacity { requested, burst } => write!(
                f,
                "asked for {requested} cells at once but the burst is only {burst}, so the wait would never end; \
                 ask for at most {burst} or build the limiter with a larger burst"
            ),
            WaitError::Unavailable { timeout } => write!(
                f,
                "the rate limiter's Redis did not answer within {timeout:?} (or failed), and the limiter fails \
                 closed; retry later, check that Redis is up, or build it with another `Unavailable` policy"
            ),
        }
    }
}

impl std::error::Error for WaitError {}
