//! `RedisRateLimiter` against a real `redis-server` (the Debian package; `.ci/run` installs it). Each test starts
//! its own server on a free loopback port with persistence off, and stops it by PID.
//!
//! Redis's clock is real time (the script reads `TIME`), so these tests run in real time; they wait only for
//! Redis (its answers, its key expiry), never a fixed sleep for our own code.
#![cfg(feature = "redis")]

use std::io::Read as _;
use std::num::NonZeroU32;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use otlp_sync::redis_limiter::{RedisRateLimiter, Unavailable};
use otlp_sync::{CheckError, Quota, WaitError};
use otlp_testkit::{Process, Redis};

#[path = "quota_child/hammer.rs"]
mod hammer;
use hammer::hammer;

fn start_redis() -> Redis {
    Redis::start()
        .expect("redis-server runs (apt-get install -y redis-server; .ci/run installs it)")
}

/// The test's own commands to its server, on a plain blocking connection.
trait Ask {
    fn cmd<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T;

    /// Redis's clock, in microseconds.
    fn now_us(&self) -> u64 {
        let (s, us): (u64, u64) = self.cmd(&mut redis::cmd("TIME"));
        s * 1_000_000 + us
    }
}

impl Ask for Redis {
    fn cmd<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        cmd.query(&mut conn).unwrap()
    }
}

fn per_second(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_follow_the_quota_and_the_key_expires_with_its_state() {
    let server = start_redis();
    // One cell a second, in bursts of 10.
    let quota = Quota::with_period(Duration::from_secs(1))
        .unwrap()
        .allow_burst(NonZeroU32::new(10).unwrap());
    let limiter = RedisRateLimiter::builder("quota", quota)
        .url(server.url())
        .build()
        .unwrap();
    // A fresh key: the whole burst (10) at once, then no more.
    for _ in 0..10 {
        limiter.check().await.unwrap();
    }
    match limiter.check().await {
        Err(CheckError::Throttled { retry_after }) => {
            assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}")
        }
        other => panic!("expected throttled, got {other:?}"),
    }
    assert!(matches!(
        limiter.check_n(11).await,
        Err(CheckError::InsufficientCapacity {
            requested: 11,
            burst: 10
        })
    ));
    // The key's TTL is the time until a full burst is back (ten seconds here).
    let pttl: i64 = server.cmd(redis::cmd("PTTL").arg(limiter.key()));
    assert!(pttl > 9_000 && pttl <= 10_000, "{pttl}");
    // The script was loaded on first use.
    let loaded: Vec<bool> = server.cmd(
        redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(redis::Script::new(otlp_sync::redis_limiter::GCRA_SCRIPT).get_hash()),
    );
    assert_eq!(loaded, [true]);
    // After a SCRIPT FLUSH, EVALSHA answers NOSCRIPT once and the script is loaded again.
    server.cmd::<()>(redis::cmd("SCRIPT").arg("FLUSH"));
    assert!(limiter.check().await.is_err()); // still throttled: the state survived the flush
    let loaded: Vec<bool> = server.cmd(
        redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(redis::Script::new(otlp_sync::redis_limiter::GCRA_SCRIPT).get_hash()),
    );
    assert_eq!(loaded, [true]);
    // Waits end when Redis says the cell is due.
    limiter
        .until_ready_timeout(Duration::from_secs(2))
        .await
        .unwrap();
    let st = limiter.stats();
    assert_eq!((st.allowed, st.throttled, st.waited), (11, 3, 1), "{st:?}");
    assert_eq!(st.calls(), 14);
    assert_eq!((st.backend_errors, st.backend_timeouts), (0, 0));
}

/// Four limiters (three tasks here and one in a separate process) share one key: together they get the quota per
/// period, within the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_limiters_share_one_quota() {
    const RATE: u32 = 200;
    let server = start_redis();
    let run = Duration::from_secs(2);
    let start_us = server.now_us();
    // The fourth limiter: the same code in another process (tests/quota_child), killed by PID if this test fails
    // before it ends.
    let mut child = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_otlp-sync-quota-child"))
            .args([server.url(), RATE.to_string(), run.as_millis().to_string()])
            .stdout(Stdio::piped()),
        "otlp-sync-quota-child",
        "cargo test -p otlp-sync --features redis builds it",
    )
    .unwrap();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url();
            tokio::spawn(async move { hammer(&url, RATE, run).await })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await.unwrap();
    }
    let mut stdout = String::new();
    child
        .child_mut()
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{stdout}");
    let child_allowed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("allowed="))
        .unwrap_or_else(|| panic!("the child printed no count: {stdout}"))
        .parse()
        .unwrap();
    assert!(child_allowed > 0, "the other process got its share");
    allowed += child_allowed;
    let elapsed_s = (server.now_us() - start_us) as f64 / 1e6;
    // At most the burst plus the rate over the time Redis saw; at least the rate over the time all four ran.
    let most = f64::from(RATE) + f64::from(RATE) * elapsed_s;
    let least = f64::from(RATE) * run.as_secs_f64() * 0.9;
    assert!(
        (allowed as f64) <= most && (allowed as f64) >= least,
        "{allowed} allowed in {elapsed_s:.2} s at {RATE}/s with a burst of {RATE}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_keys_leave_nothing_behind() {
    let server = start_redis();
    // 10 per second, burst 1: each key's state expires 100 ms after its last decision.
    let limiter = RedisRateLimiter::builder("keys", per_second(10).allow_burst(NonZeroU32::MIN))
        .url(server.url())
        .timeout(Duration::from_secs(5))
        .build_keyed::<u32>()
        .unwrap();
    let tasks: Vec<_> = (0..16u32)
        .map(|t| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                for k in (t..100_000).step_by(16) {
                    limiter.check_key(&k).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(limiter.stats().allowed, 100_000);
    let info: String = server.cmd(redis::cmd("INFO").arg("keyspace"));
    let db0 = info.lines().find(|l| l.starts_with("db0:")).unwrap_or("");
    let count = |field: &str| -> u64 {
        db0.split([':', ','])
            .find_map(|kv| kv.strip_prefix(field))
            .map_or(0, |v| v.parse().unwrap())
    };
    // Every key that is still there expires.
    assert_eq!(count("keys="), count("expires="), "{db0}");
    // Redis expires them by itself; wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size: u64 = server.cmd(&mut redis::cmd("DBSIZE"));
        if size == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{size} keys still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis killed mid-run: each policy decides within the timeout, and decisions go back to Redis after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_applies_the_policy_within_the_timeout_and_recovers() {
    let mut server = start_redis();
    let port = server.port();
    let timeout = Duration::from_millis(50);
    let build = |name: &str, policy| {
        RedisRateLimiter::builder(name, per_second(1000))
            .url(server.url())
            .timeout(timeout)
            .on_unavailable(policy)
            .build()
            .unwrap()
    };
    let open = build("open", Unavailable::FailOpen);
    let closed = build("closed", Unavailable::FailClosed);
    let local = build("local", Unavailable::Local { share: 0.01 }); // 10 per second, burst 10 while away
    for l in [&open, &closed, &local] {
        l.check().await.unwrap();
    }
    server.kill();
    let killed = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        open.check().await.unwrap();
        assert!(matches!(
            closed.check().await,
            Err(CheckError::Unavailable { .. })
        ));
        assert!(matches!(
            closed.until_ready().await,
            Err(WaitError::Unavailable { .. })
        ));
        let _ = local.check().await;
        // Three decisions and a wait, each bounded by the timeout (with room for a loaded machine).
        assert!(
            t.elapsed() < 4 * timeout + Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }
    let away = killed.elapsed().as_secs_f64();
    let (o, c, l) = (open.stats(), closed.stats(), local.stats());
    assert_eq!(o.failed_open, 20, "{o:?}");
    assert_eq!(c.failed_closed, 40, "{c:?}");
    // The local share: its burst of 10, plus 10 a second while Redis was away.
    assert_eq!(l.fallback_allowed + l.fallback_throttled, 20, "{l:?}");
    assert!(
        l.fallback_allowed >= 10 && l.fallback_allowed as f64 <= 11.0 + 10.0 * away,
        "{l:?} in {away:.2} s"
    );
    for st in [o, c, l] {
        assert_eq!(
            st.backend_errors + st.backend_timeouts,
            st.calls() - 1,
            "{st:?}"
        );
    }

    let _server = Redis::start_on(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for l in [&open, &closed, &local] {
        let before = l.stats().allowed;
        while l.stats().allowed == before {
            assert!(
                Instant::now() < deadline,
                "{} did not resume: {:?}",
                l.name(),
                l.stats()
            );
            let _ = l.check().await;
        }
    }
}

/// `CLIENT PAUSE`: Redis holds our commands; the timeout ends each decision and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_counts_timeouts() {
    let server = start_redis();
    let limiter = RedisRateLimiter::builder("paused", per_second(1000))
        .url(server.url())
        .timeout(Duration::from_millis(50))
        .on_unavailable(Unavailable::FailClosed)
        .build()
        .unwrap();
    limiter.check().await.unwrap();
    server.cmd::<()>(redis::cmd("CLIENT").arg("PAUSE").arg(1000).arg("ALL"));
    for _ in 0..3 {
        let t = Instant::now();
        assert!(matches!(
            limiter.check().await,
            Err(CheckError::Unavailable { .. })
        ));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    let st = limiter.stats();
    assert_eq!((st.backend_timeouts, st.failed_closed), (3, 3), "{st:?}");
    // The pause ends by itself after a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while limiter.check().await.is_err() {
        assert!(Instant::now() < deadline, "{:?}", limiter.stats());
    }
}

/// With a meter of its own (the builder's `.meter`), a limiter's decisions and wait times go to that meter's
/// provider, with `rate_limiter.backend` = `redis`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_of_its_own_receives_the_metrics() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let server = start_redis();
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    // One cell every 100 ms, burst 1: the second call sleeps.
    let limiter = RedisRateLimiter::builder(
        "own-meter",
        Quota::with_period(Duration::from_millis(100)).unwrap(),
    )
    .url(server.url())
    .meter(provider.meter("otlp-sync"))
    .build()
    .unwrap();
    limiter.check().await.unwrap();
    limiter.until_ready().await.unwrap();
    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    let last = metrics.last().expect("an export");
    let find = |name: &str| {
        last.scope_metrics()
            .flat_map(|s| s.metrics())
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{name} exported"))
    };
    let has = |attrs: &mut dyn Iterator<Item = &opentelemetry::KeyValue>, outcome: &str| {
        let attrs: Vec<(String, String)> = attrs
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        attrs.contains(&("rate_limiter.name".into(), "own-meter".into()))
            && attrs.contains(&("rate_limiter.backend".into(), "redis".into()))
            && attrs.contains(&("outcome".into(), outcome.into()))
    };
    let AggregatedMetrics::U64(MetricData::Sum(decisions)) = find("rate_limiter.decisions").data()
    else {
        panic!("rate_limiter.decisions is a u64 sum");
    };
    let allowed: Vec<u64> = decisions
        .data_points()
        .filter(|p| has(&mut p.attributes(), "allowed"))
        .map(|p| p.value())
        .collect();
    assert_eq!(allowed, [2]);
    let AggregatedMetrics::F64(MetricData::Histogram(waits)) =
        find("rate_limiter.wait.duration").data()
    else {
        panic!("rate_limiter.wait.duration is an f64 histogram");
    };
    let slept: Vec<u64> = waits
        .data_points()
        .filter(|p| has(&mut p.attributes(), "allowed"))
        .map(|p| p.count())
        .collect();
    assert_eq!(slept, [1]);
}

#[test]
fn redis_types_are_send_sync_and_debug() {
    fn send_sync<T: Send + Sync + std::fmt::Debug>() {}
    send_sync::<RedisRateLimiter>();
    send_sync::<otlp_sync::redis_limiter::RedisKeyedRateLimiter<str>>();
    send_sync::<otlp_sync::redis_limiter::RedisRateLimiterBuilder>();
    send_sync::<otlp_sync::redis_limiter::RedisRateLimiterStats>();
    send_sync::<Unavailable>();
}
