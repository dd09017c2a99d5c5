//! A fleet-wide rate limiter (feature `redis`): GCRA evaluated atomically in Redis, so every instance of a
//! service shares one quota.
//!
//! [`RedisRateLimiter`] (one key) and [`RedisKeyedRateLimiter`] (one key per caller, tenant, route...) have the
//! surface of [`RateLimiter`](crate::RateLimiter): `check`, `check_n`, `until_ready` with timeouts and
//! cancellation, `stats()`, and its metrics. Each decision is one round trip: one Lua script run with `EVALSHA`
//! (loaded with `SCRIPT LOAD` on first use and again after a `NOSCRIPT`, e.g. after a restart or `SCRIPT
//! FLUSH`). The script reads Redis's own clock (`TIME`), so the instances' clocks do not matter, and stores one
//! number per key (its theoretical arrival time) that expires when the key is back to a full burst: idle keys
//! leave nothing behind. No Redis module is needed.
//!
//! ```no_run
//! use std::time::Duration;
//! use otlp_sync::Quota;
//! use otlp_sync::redis_limiter::{RedisRateLimiter, Unavailable};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 100 requests a second to the partner API, for all our instances together.
//! let limiter = RedisRateLimiter::builder("partner-api", Quota::per_second(100.try_into()?))
//!     .url("redis://127.0.0.1:6379")
//!     .timeout(Duration::from_millis(20))
//!     .on_unavailable(Unavailable::Local { share: 0.25 })
//!     .build()?;
//! limiter.until_ready_timeout(Duration::from_secs(1)).await?;
//! // ... call the partner API ...
//! # Ok(()) }
//! ```
//!
//! # Redis down or slow
//!
//! Every round trip is bounded by a timeout (50 ms by default). When it passes, or Redis answers with an error,
//! the decision follows the policy chosen at build ([`Unavailable`]): let the request through (the default, as
//! Envoy's rate limit filter does), refuse it, or ask a local limiter that has a share of the quota (a share of
//! `1 / instances` keeps the fleet near its quota). Each such decision is counted with its own outcome. The
//! connection is a `redis` [`ConnectionManager`](redis::aio::ConnectionManager): it reconnects by itself, so
//! decisions go back to Redis as soon as it answers again. Nothing waits longer than the timeout for Redis.
//!
//! # Telemetry
//!
//! The rate limiter's instruments, with attribute `rate_limiter.backend` = `redis`: `rate_limiter.decisions`
//! (outcomes `allowed`, `throttled`, `timeout`, `cancelled`, and for decisions taken without Redis
//! `failed_open`, `failed_closed`, `fallback_allowed`, `fallback_throttled`), `rate_limiter.wait.duration`, and
//! `rate_limiter.backend.errors` (attribute `error.type` = `timeout` | `error`): round trips that failed. See
//! `docs/metrics.md`.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter as Governor};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{Attributes, Observations, Recorder, Registration, Source};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

use crate::counters::{Counters, Gauge};
use crate::error::{BuildError, CheckError, WaitError};
use crate::semaphore::AcquireOptions;
use crate::telemetry::{
    INSTRUMENTS, RATE_LIMITER_BACKEND_ERRORS, RATE_LIMITER_DECISIONS, RATE_LIMITER_WAIT, names,
};

/// The GCRA, atomically in Redis. KEYS[1]: the key. ARGV: emission interval (µs), burst (cells), cells asked.
/// Returns `{1, 0}` when allowed, `{0, retry_after_µs}` when not. The stored value is the theoretical arrival
/// time (µs, Redis's clock); it expires when it passes, which is when the key is back to a full burst.
pub const GCRA_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * n
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
"#;

/// What a decision does when Redis does not answer in time or answers with an error.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Unavailable {
    /// Let the request through (outcome `failed_open`): availability first; the downstream's own limits apply.
    FailOpen,
    /// Refuse it (outcome `failed_closed`; `check` fails with [`CheckError::Unavailable`], waits with
    /// [`WaitError::Unavailable`]): the quota first.
    FailClosed,
    /// Ask a local limiter with `share` (0 < share <= 1) of the quota's rate and burst (outcomes
    /// `fallback_allowed`, `fallback_throttled`); `1 / instances` keeps the fleet near its quota.
    Local {
        /// The share of the quota this instance takes while Redis is away.
        share: f64,
    },
}

/// How one call ended; the index of its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Outcome {
    Allowed = 0,
    Throttled = 1,
    Timeout = 2,
    Cancelled = 3,
    FailedOpen = 4,
    FailedClosed = 5,
    FallbackAllowed = 6,
    FallbackThrottled = 7,
}

const OUTCOMES: [Outcome; 8] = [
    Outcome::Allowed,
    Outcome::Throttled,
    Outcome::Timeout,
    Outcome::Cancelled,
    Outcome::FailedOpen,
    Outcome::FailedClosed,
    Outcome::FallbackAllowed,
    Outcome::FallbackThrottled,
];

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Throttled => "throttled",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::FailedOpen => "failed_open",
            Outcome::FailedClosed => "failed_closed",
            Outcome::FallbackAllowed => "fallback_allowed",
            Outcome::FallbackThrottled => "fallback_throttled",
        }
    }
}

/// Counter indexes past the outcomes.
const WAITED: usize = 8;
const BACKEND_TIMEOUTS: usize = 9;
const BACKEND_ERRORS: usize = 10;
const COUNTERS: usize = 11;

/// A plain snapshot of a Redis rate limiter's counters.
///
/// Every call ends as exactly one outcome, so [`RedisRateLimiterStats::calls`] is their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RedisRateLimiterStats {
    /// Calls Redis let through (at once or after waiting).
    pub allowed: u64,
    /// `check` calls Redis said no to, and calls asking more cells than the burst.
    pub throttled: u64,
    /// Waits whose timeout came first.
    pub timed_out: u64,
    /// Waits cancelled by a token or by dropping the future.
    pub cancelled: u64,
    /// Calls let through without Redis ([`Unavailable::FailOpen`]).
    pub failed_open: u64,
    /// Calls refused without Redis ([`Unavailable::FailClosed`]).
    pub failed_closed: u64,
    /// Calls the local fallback let through ([`Unavailable::Local`]).
    pub fallback_allowed: u64,
    /// Calls the local fallback refused.
    pub fallback_throttled: u64,
    /// Calls that slept (a subset of the above).
    pub waited: u64,
    /// Calls sleeping right now.
    pub waiting: usize,
    /// Round trips to Redis that passed the timeout (not an outcome: a call may make several).
    pub backend_timeouts: u64,
    /// Round trips to Redis that failed with an error (connection refused or lost, script error...).
    pub backend_errors: u64,
}

impl RedisRateLimiterStats {
    /// All finished calls: the sum of the outcomes.
    pub fn calls(&self) -> u64 {
        self.allowed
            + self.throttled
            + self.timed_out
            + self.cancelled
            + self.failed_open
            + self.failed_closed
            + self.fallback_allowed
            + self.fallback_throttled
    }
}

/// Builds a [`RedisRateLimiter`] or a [`RedisKeyedRateLimiter`].
pub struct RedisRateLimiterBuilder {
    name: String,
    quota: Quota,
    url: Option<String>,
    client: Option<redis::Client>,
    prefix: Option<String>,
    timeout: Duration,
    policy: Unavailable,
    meter: Option<Meter>,
}

impl fmt::Debug for RedisRateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiterBuilder")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The default bound on one round trip to Redis.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

impl RedisRateLimiterBuilder {
    /// The Redis server, as a `redis://host:port/db` URL (or give a [`client`](Self::client)).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// A `redis` client to connect with (TLS, authentication, RESP3: whatever the client was built with).
    pub fn client(mut self, client: redis::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The Redis key (direct limiter) or key prefix (keyed limiter, `prefix:key`); default `otlp-sync:{name}`.
    /// Limiters that share a key share a quota: give them the same name or prefix, and the same quota.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.prefix = Some(key.into());
        self
    }

    /// The most one round trip to Redis may take before the [`Unavailable`] policy decides (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do when Redis does not answer in time or fails (default [`Unavailable::FailOpen`]).
    pub fn on_unavailable(mut self, policy: Unavailable) -> Self {
        self.policy = policy;
        self
    }

    /// The meter to create instruments from, instead of the global meter provider's `otlp-sync` meter.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    fn core(self, keyed: bool) -> Result<Arc<Core>, BuildError> {
        let bad = |what: String| BuildError::InvalidRedisLimiter {
            name: self.name.clone(),
            what,
        };
        if self.timeout.is_zero() {
            return Err(bad("the timeout must be above zero".into()));
        }
        let client = match (self.client.clone(), &self.url) {
            (Some(c), _) => c,
            (None, Some(url)) => redis::Client::open(url.as_str())
                .map_err(|e| bad(format!("the Redis URL `{url}` is not valid ({e})")))?,
            (None, None) => return Err(bad("no Redis server given: set `url` or `client`".into())),
        };
        let fallback = match self.policy {
            Unavailable::Local { share } => {
                if !(share > 0.0 && share <= 1.0) {
                    return Err(bad(format!(
                        "the local share of the quota must be in (0, 1], not {share}"
                    )));
                }
                Some(Fallback::new(self.quota, share, keyed))
            }
            _ => None,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(bad(
                "it must be built inside a tokio runtime (its connection runs on it)".into(),
            ));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| bad(format!("the Redis connection could not be set up ({e})")))?;
        let interval_us = (self.quota.replenish_interval().as_micros() as u64).max(1);
        let burst = self.quota.burst_size().get();
        let prefix = self
            .prefix
            .unwrap_or_else(|| format!("otlp-sync:{}", self.name));
        let name = self.name;
        let sha = redis::Script::new(GCRA_SCRIPT).get_hash().to_owned();
        let core = Arc::new(Core {
            telemetry: Telemetry::new(self.meter, &name),
            name,
            quota: self.quota,
            interval_us,
            burst,
            prefix,
            conn,
            sha,
            timeout: self.timeout,
            policy: self.policy,
            fallback,
            counters: Counters::new(),
            waiting: Gauge::new(),
        });
        core.telemetry.link.add(core.clone());
        Ok(core)
    }

    /// Builds a direct limiter: one key, one quota. Must be called inside a tokio runtime; connects lazily, so
    /// Redis need not be up yet.
    pub fn build(self) -> Result<RedisRateLimiter, BuildError> {
        Ok(RedisRateLimiter {
            core: self.core(false)?,
        })
    }

    /// Builds a keyed limiter: one Redis key (`prefix:key`) and one quota per key.
    pub fn build_keyed<K: fmt::Display + ?Sized>(
        self,
    ) -> Result<RedisKeyedRateLimiter<K>, BuildError> {
        Ok(RedisKeyedRateLimiter {
            core: self.core(true)?,
            _key: std::marker::PhantomData,
        })
    }
}

type LocalDirect = Governor<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;
type LocalKeyed = Governor<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// The local limiter behind [`Unavailable::Local`].
enum Fallback {
    Direct(LocalDirect),
    Keyed {
        limiter: LocalKeyed,
        /// Decisions since idle keys were last dropped.
        since_sweep: Mutex<u32>,
    },
}

impl Fallback {
    fn new(quota: Quota, share: f64, keyed: bool) -> Self {
        let interval = quota.replenish_interval().div_f64(share);
        let burst = ((f64::from(quota.burst_size().get()) * share).floor() as u32).max(1);
        let local = Quota::with_period(interval)
            .unwrap_or(quota)
            .allow_burst(std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN));
        if keyed {
            Fallback::Keyed {
                limiter: Governor::hashmap(local),
                since_sweep: Mutex::new(0),
            }
        } else {
            Fallback::Direct(Governor::direct(local))
        }
    }

    /// `Ok` if allowed, else how long until it could be.
    fn check(&self, key: &str, n: u32) -> Result<(), Duration> {
        let nz = std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN);
        let clock = DefaultClock::default();
        let verdict = match self {
            Fallback::Direct(l) => l.check_n(nz),
            Fallback::Keyed {
                limiter,
                since_sweep,
            } => {
                if let Ok(mut since) = since_sweep.lock() {
                    *since += 1;
                    if *since >= 1024 {
                        *since = 0;
                        limiter.retain_recent();
                    }
                }
                limiter.check_key_n(&key.to_owned(), nz)
            }
        };
        match verdict {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(clock.now())),
            // More than the local burst: it would wait forever; say "try again in a period".
            Err(_) => Err(Duration::from_secs(1)),
        }
    }
}

struct Core {
    name: String,
    quota: Quota,
    interval_us: u64,
    burst: u32,
    prefix: String,
    conn: ConnectionManager,
    sha: String,
    timeout: Duration,
    policy: Unavailable,
    fallback: Option<Fallback>,
    counters: Counters<COUNTERS>,
    waiting: Gauge,
    telemetry: Telemetry,
}

struct Telemetry {
    link: Registration,
    /// `[rate_limiter.name, rate_limiter.backend, outcome]` per outcome.
    attrs: [Attributes; 8],
    /// `[rate_limiter.name, rate_limiter.backend, error.type]`: timeout, error.
    errors: [Attributes; 2],
    /// `rate_limiter.wait.duration` with `attrs`, per outcome.
    waits: [Recorder; 8],
}

impl Telemetry {
    fn new(meter: Option<Meter>, name: &str) -> Self {
        let name_kv = KeyValue::new(names::RATE_LIMITER_NAME, name.to_owned());
        let backend = KeyValue::new(names::RATE_LIMITER_BACKEND, "redis");
        let with = |k: &'static str, v: &'static str| {
            Attributes::new(vec![name_kv.clone(), backend.clone(), KeyValue::new(k, v)])
        };
        let link = INSTRUMENTS.link(meter);
        let attrs = OUTCOMES.map(|o| with(names::OUTCOME, o.as_str()));
        Telemetry {
            waits: std::array::from_fn(|o| link.recorder(RATE_LIMITER_WAIT, &attrs[o])),
            link,
            attrs,
            errors: ["timeout", "error"].map(|t| with(names::ERROR_TYPE, t)),
        }
    }
}

impl Source for Core {
    fn observe(&self, out: &mut Observations<'_>) {
        let t = &self.telemetry;
        let current = out.current();
        if current != RATE_LIMITER_DECISIONS && current != RATE_LIMITER_BACKEND_ERRORS {
            return;
        }
        let totals = self.counters.snapshot();
        for (o, attrs) in OUTCOMES.iter().zip(&t.attrs) {
            out.observe(RATE_LIMITER_DECISIONS, totals[*o as usize], attrs);
        }
        out.observe(
            RATE_LIMITER_BACKEND_ERRORS,
            totals[BACKEND_TIMEOUTS],
            &t.errors[0],
        );
        out.observe(
            RATE_LIMITER_BACKEND_ERRORS,
            totals[BACKEND_ERRORS],
            &t.errors[1],
        );
    }
}

/// What Redis (or the policy standing in for it) said.
enum Verdict {
    Allowed,
    Throttled(Duration),
    /// Redis did not answer in time or failed; `Some` when the local fallback said no, with its retry time.
    Unavailable(Option<Duration>),
}

impl Core {
    fn count(&self, outcome: Outcome) {
        self.counters.incr(outcome as usize);
    }

    /// One round trip: `EVALSHA`, and on `NOSCRIPT` `SCRIPT LOAD` and `EVALSHA` again.
    async fn eval(&self, key: &str, n: u32) -> redis::RedisResult<(i64, i64)> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha)
            .arg(1)
            .arg(key)
            .arg(self.interval_us)
            .arg(self.burst)
            .arg(n);
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(GCRA_SCRIPT)
                    .query_async::<String>(&mut conn)
                    .await?;
                cmd.query_async(&mut conn).await
            }
            other => other,
        }
    }

    /// Asks Redis, within the timeout; on failure, the policy (counting the failed round trip).
    async fn decide(&self, key: &str, n: u32) -> Verdict {
        match tokio::time::timeout(self.timeout, self.eval(key, n)).await {
            Ok(Ok((1, _))) => Verdict::Allowed,
            Ok(Ok((_, retry_us))) => {
                Verdict::Throttled(Duration::from_micros(retry_us.max(0) as u64))
            }
            Ok(Err(e)) => {
                tracing::debug!(rate_limiter.name = %self.name, error = %e, "redis rate limiter: round trip failed");
                self.counters.incr(BACKEND_ERRORS);
                self.unavailable(key, n)
            }
            Err(_) => {
                self.counters.incr(BACKEND_TIMEOUTS);
                self.unavailable(key, n)
            }
        }
    }

    fn unavailable(&self, key: &str, n: u32) -> Verdict {
        match &self.fallback {
            Some(f) => Verdict::Unavailable(f.check(key, n).err()),
            None => Verdict::Unavailable(None),
        }
    }

    fn insufficient(&self, n: u32) -> Option<(u32, u32)> {
        (n > self.burst || n == 0).then_some((n, self.burst))
    }

    async fn check(&self, key: &str, n: u32) -> Result<(), CheckError> {
        if let Some((requested, burst)) = self.insufficient(n) {
            self.count(Outcome::Throttled);
            return Err(CheckError::InsufficientCapacity { requested, burst });
        }
        match self.decide(key, n).await {
            Verdict::Allowed => {
                self.count(Outcome::Allowed);
                Ok(())
            }
            Verdict::Throttled(retry_after) => {
                self.count(Outcome::Throttled);
                Err(CheckError::Throttled { retry_after })
            }
            Verdict::Unavailable(fallback) => match (self.policy, fallback) {
                (Unavailable::FailOpen, _) => {
                    self.count(Outcome::FailedOpen);
                    Ok(())
                }
                (Unavailable::Local { .. }, None) => {
                    self.count(Outcome::FallbackAllowed);
                    Ok(())
                }
                (Unavailable::Local { .. }, Some(retry_after)) => {
                    self.count(Outcome::FallbackThrottled);
                    Err(CheckError::Throttled { retry_after })
                }
                (_, _) => {
                    self.count(Outcome::FailedClosed);
                    Err(CheckError::Unavailable {
                        timeout: self.timeout,
                    })
                }
            },
        }
    }

    async fn wait(&self, key: &str, n: u32, opts: AcquireOptions<'_>) -> Result<(), WaitError> {
        if let Some((requested, burst)) = self.insufficient(n) {
            self.count(Outcome::Throttled);
            return Err(WaitError::InsufficientCapacity { requested, burst });
        }
        if opts
            .cancel_token()
            .is_some_and(CancellationToken::is_cancelled)
        {
            self.count(Outcome::Cancelled);
            return Err(WaitError::Cancelled);
        }
        let start = tokio::time::Instant::now();
        let deadline = opts.timeout_value().map(|t| start + t);
        let mut guard: Option<WaitGuard<'_>> = None;
        loop {
            let retry_after = match self.decide(key, n).await {
                Verdict::Allowed => {
                    return self.end(guard, Outcome::Allowed, Ok(()));
                }
                Verdict::Throttled(d) => d,
                Verdict::Unavailable(fallback) => match (self.policy, fallback) {
                    (Unavailable::FailOpen, _) => {
                        return self.end(guard, Outcome::FailedOpen, Ok(()));
                    }
                    (Unavailable::Local { .. }, None) => {
                        return self.end(guard, Outcome::FallbackAllowed, Ok(()));
                    }
                    (Unavailable::Local { .. }, Some(d)) => d,
                    (_, _) => {
                        let err = WaitError::Unavailable {
                            timeout: self.timeout,
                        };
                        return self.end(guard, Outcome::FailedClosed, Err(err));
                    }
                },
            };
            let now = tokio::time::Instant::now();
            let wake = now + retry_after.max(Duration::from_micros(100));
            if let Some(deadline) = deadline
                && wake > deadline
            {
                let timeout = opts.timeout_value().unwrap_or_default();
                return self.end(guard, Outcome::Timeout, Err(WaitError::Timeout { timeout }));
            }
            if guard.is_none() {
                guard = Some(WaitGuard::new(self, start));
            }
            let mut sleep = pin!(tokio::time::sleep_until(wake));
            match opts.cancel_token() {
                Some(token) => {
                    let mut cancelled = pin!(token.cancelled());
                    let was_cancelled = poll_fn(|cx| {
                        if cancelled.as_mut().poll(cx).is_ready() {
                            Poll::Ready(true)
                        } else if sleep.as_mut().poll(cx).is_ready() {
                            Poll::Ready(false)
                        } else {
                            Poll::Pending
                        }
                    })
                    .await;
                    if was_cancelled {
                        return self.end(guard, Outcome::Cancelled, Err(WaitError::Cancelled));
                    }
                }
                None => sleep.await,
            }
        }
    }

    fn end<T>(&self, guard: Option<WaitGuard<'_>>, outcome: Outcome, result: T) -> T {
        match guard {
            Some(mut g) => g.outcome = outcome,
            None => self.count(outcome),
        }
        result
    }

    fn stats(&self) -> RedisRateLimiterStats {
        self.telemetry.link.follow();
        let c = self.counters.snapshot();
        RedisRateLimiterStats {
            allowed: c[Outcome::Allowed as usize],
            throttled: c[Outcome::Throttled as usize],
            timed_out: c[Outcome::Timeout as usize],
            cancelled: c[Outcome::Cancelled as usize],
            failed_open: c[Outcome::FailedOpen as usize],
            failed_closed: c[Outcome::FailedClosed as usize],
            fallback_allowed: c[Outcome::FallbackAllowed as usize],
            fallback_throttled: c[Outcome::FallbackThrottled as usize],
            waited: c[WAITED],
            waiting: self.waiting.get(),
            backend_timeouts: c[BACKEND_TIMEOUTS],
            backend_errors: c[BACKEND_ERRORS],
        }
    }
}

/// One wait that slept: counted in `waiting` while it lives; on drop counts its outcome (`cancelled` if the
/// future was dropped) and records how long it waited.
struct WaitGuard<'a> {
    core: &'a Core,
    start: tokio::time::Instant,
    outcome: Outcome,
}

impl<'a> WaitGuard<'a> {
    fn new(core: &'a Core, start: tokio::time::Instant) -> Self {
        core.waiting.incr();
        core.counters.incr(WAITED);
        WaitGuard {
            core,
            start,
            outcome: Outcome::Cancelled,
        }
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let core = self.core;
        core.waiting.decr();
        core.count(self.outcome);
        let t = &core.telemetry;
        // This call slept: cheap enough to catch up with a provider installed since.
        t.link.follow();
        t.waits[self.outcome as usize].record(self.start.elapsed().as_secs_f64());
    }
}

/// A rate limiter whose quota is shared, through Redis, by every instance that uses the same key; see the
/// [module docs](self).
#[derive(Clone)]
pub struct RedisRateLimiter {
    core: Arc<Core>,
}

impl RedisRateLimiter {
    /// A builder for a limiter named `name` (the `rate_limiter.name` attribute, and the default key) with `quota`
    /// for the whole fleet.
    pub fn builder(name: impl Into<String>, quota: Quota) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder {
            name: name.into(),
            quota,
            url: None,
            client: None,
            prefix: None,
            timeout: DEFAULT_TIMEOUT,
            policy: Unavailable::FailOpen,
            meter: None,
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The fleet's quota.
    pub fn quota(&self) -> Quota {
        self.core.quota
    }

    /// The Redis key holding the limiter's state.
    pub fn key(&self) -> &str {
        &self.core.prefix
    }

    /// One cell now, or [`CheckError::Throttled`] with how long until it could pass. One round trip.
    pub async fn check(&self) -> Result<(), CheckError> {
        self.core.check(&self.core.prefix, 1).await
    }

    /// `n` cells at once.
    pub async fn check_n(&self, n: u32) -> Result<(), CheckError> {
        self.core.check(&self.core.prefix, n).await
    }

    /// Waits until one cell passes. Returns an error only under [`Unavailable::FailClosed`] with Redis away.
    pub async fn until_ready(&self) -> Result<(), WaitError> {
        self.until_n_ready_with(1, AcquireOptions::new()).await
    }

    /// Waits at most `timeout` for one cell. A wait that could not end in time fails at once.
    pub async fn until_ready_timeout(&self, timeout: Duration) -> Result<(), WaitError> {
        self.until_n_ready_with(1, AcquireOptions::new().timeout(timeout))
            .await
    }

    /// Waits for one cell until `token` is cancelled.
    pub async fn until_ready_cancellable(
        &self,
        token: &CancellationToken,
    ) -> Result<(), WaitError> {
        self.until_n_ready_with(1, AcquireOptions::new().cancel_on(token))
            .await
    }

    /// Waits for `n` cells within the limits of `opts` (timeout, cancellation). Cancel-safe: dropping the future
    /// counts the call as `cancelled`.
    pub async fn until_n_ready_with(
        &self,
        n: u32,
        opts: AcquireOptions<'_>,
    ) -> Result<(), WaitError> {
        self.core.wait(&self.core.prefix, n, opts).await
    }

    /// A snapshot of the counters (the same ones the metrics export).
    pub fn stats(&self) -> RedisRateLimiterStats {
        self.core.stats()
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("name", &self.core.name)
            .field("key", &self.core.prefix)
            .field("quota", &self.core.quota)
            .field("timeout", &self.core.timeout)
            .field("policy", &self.core.policy)
            .finish()
    }
}

/// A rate limiter with one fleet-wide quota per key (Redis key `prefix:key`); see the [module docs](self).
pub struct RedisKeyedRateLimiter<K: ?Sized> {
    core: Arc<Core>,
    _key: std::marker::PhantomData<fn(&K)>,
}

impl<K: ?Sized> Clone for RedisKeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        RedisKeyedRateLimiter {
            core: Arc::clone(&self.core),
            _key: std::marker::PhantomData,
        }
    }
}

impl<K: fmt::Display + ?Sized> RedisKeyedRateLimiter<K> {
    fn redis_key(&self, key: &K) -> String {
        format!("{}:{key}", self.core.prefix)
    }

    /// One cell for `key` now.
    pub async fn check_key(&self, key: &K) -> Result<(), CheckError> {
        self.core.check(&self.redis_key(key), 1).await
    }

    /// `n` cells for `key` at once.
    pub async fn check_key_n(&self, key: &K, n: u32) -> Result<(), CheckError> {
        self.core.check(&self.redis_key(key), n).await
    }

    /// Waits until one cell for `key` passes.
    pub async fn until_key_ready(&self, key: &K) -> Result<(), WaitError> {
        self.until_key_n_ready_with(key, 1, AcquireOptions::new())
            .await
    }

    /// Waits for `n` cells for `key` within the limits of `opts`.
    pub async fn until_key_n_ready_with(
        &self,
        key: &K,
        n: u32,
        opts: AcquireOptions<'_>,
    ) -> Result<(), WaitError> {
        self.core.wait(&self.redis_key(key), n, opts).await
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RedisRateLimiterStats {
        self.core.stats()
    }
}

impl<K: ?Sized> fmt::Debug for RedisKeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyedRateLimiter")
            .field("name", &self.core.name)
            .field("prefix", &self.core.prefix)
            .field("quota", &self.core.quota)
            .field("timeout", &self.core.timeout)
            .field("policy", &self.core.policy)
            .finish()
    }
}
