//! The price of a fleet-wide quota: `RedisRateLimiter::check` against a raw `EVALSHA` loop running the same
//! script on the same kind of connection (the `redis` crate's `ConnectionManager`), and against the local
//! `RateLimiter::check`, in the same run. A `redis-server` of its own is started on a free loopback port with
//! persistence off, and stopped by PID at the end; without `redis-server` the groups are skipped.
//!
//! Group `sync_redis_check_1t`: one decision at a time from one task (the latency of a decision; its inverse is
//! decisions per second), ours and the raw loop alternating decision by decision in both functions, each timing its
//! own. After criterion, 20,000 timed decisions of each print their P50 and P99.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::Quota;
use otlp_benches::Comparison;
use otlp_sync::RateLimiter;
use otlp_sync::redis_limiter::{GCRA_SCRIPT, RedisRateLimiter, Unavailable};
use otlp_testkit::Redis;

/// A rate no benchmark loop reaches, so every decision is "allowed" for all three.
fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000).unwrap())
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

/// The raw loop's connection and script arguments.
struct Raw {
    conn: redis::aio::ConnectionManager,
    sha: String,
    interval_us: u64,
    burst: u32,
}

/// One decision by `RedisRateLimiter::check`. Not inlined, so that `valgrind --tool=callgrind` can count each
/// side's instructions per decision (docs/benchmarks.md).
#[inline(never)]
fn op_ours(rt: &tokio::runtime::Runtime, ours: &RedisRateLimiter) {
    rt.block_on(async { black_box(ours.check().await).unwrap() })
}

/// One decision by a raw `EVALSHA` of the same script, as a hand-written client would send it.
#[inline(never)]
fn op_raw(rt: &tokio::runtime::Runtime, raw: &Raw) {
    rt.block_on(async {
        let mut conn = raw.conn.clone();
        let (ok, _): (i64, i64) = redis::cmd("EVALSHA")
            .arg(&raw.sha)
            .arg(1)
            .arg("bench:raw")
            .arg(raw.interval_us)
            .arg(raw.burst)
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(ok, 1);
    })
}

/// `n` decisions of `timed`, each followed by one of `other`; the time of the `timed` ones alone.
fn paired(n: u64, mut timed: impl FnMut(), mut other: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        timed();
        total += t.elapsed();
        other();
    }
    total
}

fn fleet(c: &mut Criterion) {
    let server = match Redis::start() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{e}: sync_redis_check_1t skipped");
            return;
        }
    };
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ours = rt.block_on(async {
        RedisRateLimiter::builder("bench", quota())
            .url(url.as_str())
            .timeout(Duration::from_secs(1))
            .on_unavailable(Unavailable::FailClosed)
            .build()
            .expect("valid limiter")
    });
    let mut conn = rt.block_on(async {
        redis::aio::ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
            .await
            .expect("connects")
    });
    let sha: String = rt.block_on(async {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(GCRA_SCRIPT)
            .query_async(&mut conn)
            .await
            .unwrap()
    });
    let raw = Raw {
        conn,
        sha,
        interval_us: (quota().replenish_interval().as_micros() as u64).max(1),
        burst: quota().burst_size().get(),
    };
    let local = RateLimiter::new("bench-local", quota()).expect("valid limiter");

    // Ours and the raw loop alternate decision by decision in both functions, each timing only its own: a burst
    // of load on the machine (other builds, the scheduler) falls on both alike, where criterion's rounds of
    // 0.5 s each would let it fall on one side only.
    Comparison::new("sync_redis_check_1t")
        .function("ours", |b| {
            b.iter_custom(|n| paired(n, || op_ours(&rt, &ours), || op_raw(&rt, &raw)))
        })
        .function("raw_evalsha", |b| {
            b.iter_custom(|n| paired(n, || op_raw(&rt, &raw), || op_ours(&rt, &ours)))
        })
        .function("local", |b| {
            b.iter(|| rt.block_on(async { black_box(local.check()).unwrap() }))
        })
        .run(c);

    const N: usize = 20_000;
    let (mut t_ours, mut t_raw) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for _ in 0..N {
        let t = Instant::now();
        op_ours(&rt, &ours);
        t_ours.push(t.elapsed());
        let t = Instant::now();
        op_raw(&rt, &raw);
        t_raw.push(t.elapsed());
    }
    let (o50, o99) = percentiles(t_ours);
    let (r50, r99) = percentiles(t_raw);
    eprintln!(
        "sync_redis_check_1t latency over {N} interleaved decisions: ours P50 {o50:?} P99 {o99:?}; raw EVALSHA P50 {r50:?} P99 {r99:?}"
    );
    let st = ours.stats();
    assert_eq!(
        st.failed_closed + st.backend_errors + st.backend_timeouts,
        0
    );
    drop(server);
}

criterion_group!(benches, fleet);
criterion_main!(benches);
