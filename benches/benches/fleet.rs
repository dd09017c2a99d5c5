//! The price of a fleet-wide quota: `RedisRateLimiter::check` against a raw `EVALSHA` loop running the same
//! script on the same kind of connection (the `redis` crate's `ConnectionManager`), and against the local
//! `RateLimiter::check`, in the same run. A `redis-server` of its own is started on a free loopback port with
//! persistence off, and stopped by PID at the end; without `redis-server` the groups are skipped.
//!
//! Group `sync_redis_check_1t`: one decision at a time from one task (the latency of a decision; its inverse is
//! decisions per second). Criterion measures ours, the raw loop and the local limiter; then ours and the raw loop
//! run in paired rounds, alternating decision by decision within each round's window, and each round's means are
//! recorded for `cargo xtask bench` (the goal row is `"paired"`), with P50 and P99 over every timed decision.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::Quota;
use otlp_benches::{Comparison, Rounds};
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

/// `rounds.rounds` rounds in which ours and the raw loop alternate decision by decision (A B B A, so each side
/// follows each side as often), each decision timed on its own; a round lasts at least four times criterion's
/// measurement time. Returns each side's mean per round (ns) and all of each side's decision times.
fn paired_rounds(
    rounds: Rounds,
    ours: impl Fn(),
    raw: impl Fn(),
) -> ([Vec<f64>; 2], [Vec<Duration>; 2]) {
    let sides: [&dyn Fn(); 2] = [&ours, &raw];
    let mut means = [Vec::new(), Vec::new()];
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds.rounds {
        let start = Instant::now();
        let (mut sums, mut n) = ([Duration::ZERO; 2], 0u32);
        while start.elapsed() < 4 * rounds.measurement {
            for side in [0, 1, 1, 0] {
                let t = Instant::now();
                sides[side]();
                let d = t.elapsed();
                sums[side] += d;
                times[side].push(d);
            }
            n += 2;
        }
        for side in 0..2 {
            means[side].push(sums[side].as_nanos() as f64 / f64::from(n));
        }
    }
    (means, times)
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

    // Criterion's rows, for the absolute times and the price of the fleet (ours against the local limiter).
    Comparison::new("sync_redis_check_1t")
        .function("ours", |b| b.iter(|| op_ours(&rt, &ours)))
        .function("raw_evalsha", |b| b.iter(|| op_raw(&rt, &raw)))
        .function("local", |b| {
            b.iter(|| rt.block_on(async { black_box(local.check()).unwrap() }))
        })
        .run(c);

    // Ours against the raw loop, round by round in the same window: a round trip on loopback swings more from
    // one of criterion's windows to the next (other processes, the scheduler) than between the two sides, so the
    // ratio of two windows says more about the machine than about the client (docs/benchmarks.md).
    let (means, times) = paired_rounds(
        Rounds::from_env(),
        || op_ours(&rt, &ours),
        || op_raw(&rt, &raw),
    );
    let ratios: Vec<String> = means[0]
        .iter()
        .zip(&means[1])
        .map(|(o, r)| format!("{:.3}", o / r))
        .collect();
    eprintln!(
        "sync_redis_check_1t paired rounds, ours/raw_evalsha per round: {} (means ours {:?} ns, raw {:?} ns)",
        ratios.join(", "),
        means[0].iter().map(|m| m.round()).collect::<Vec<_>>(),
        means[1].iter().map(|m| m.round()).collect::<Vec<_>>(),
    );
    otlp_benches::record_rounds("sync_redis_check_1t", "ours", &means[0]);
    otlp_benches::record_rounds("sync_redis_check_1t", "raw_evalsha", &means[1]);
    let [t_ours, t_raw] = times;
    let n = t_ours.len();
    let (o50, o99) = percentiles(t_ours);
    let (r50, r99) = percentiles(t_raw);
    eprintln!(
        "sync_redis_check_1t latency over {n} interleaved decisions each: ours P50 {o50:?} P99 {o99:?}; raw EVALSHA P50 {r50:?} P99 {r99:?}"
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
