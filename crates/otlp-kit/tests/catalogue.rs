//! docs/metrics.md is the one catalogue of what the library crates export. This test drives every owner of
//! otlp-pool, otlp-sync and otlp-patterns through each documented outcome, exports through an SDK provider with an
//! in-memory exporter, and compares what arrived with the catalogue's tables, both ways:
//!
//! * an instrument, an attribute key or an attribute value (`outcome` = ..., `error.type` = ...) that is exported
//!   but not listed fails the test;
//! * an instrument or an attribute key that is listed but that nothing exported fails it, and so does a listed
//!   value that nothing exported, except the few in [`UNFORCED`], which this test cannot bring about on purpose
//!   (each says why, and each must still be listed).
//!
//! Kinds (counter, up-down counter, gauge, histogram, and the number type) and units are compared too.
//!
//! One test in this binary: the global meter provider is process-wide. Needs `redis-server` on the `PATH` (the
//! Debian package; `.ci/run` installs it) for the `RedisRateLimiter` rows.
#![cfg(all(
    feature = "pool",
    feature = "sync",
    feature = "patterns",
    feature = "redis"
))]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry::global;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otlp_kit::patterns::{ErrorPolicy, FanOut, Pipeline, WorkerPool};
use otlp_kit::pool::{BufferPool, ByteSlicePool, Pool};
use otlp_kit::sync::adaptive::{Aimd, Algorithm, Gradient2, Vegas};
use otlp_kit::sync::redis_limiter::{RedisRateLimiter, Unavailable};
use otlp_kit::sync::{
    AdaptiveLimit, CancellationToken, KeyedRateLimiter, Quota, RateLimiter, Semaphore,
};
use otlp_testkit::{Redis, free_port};

/// The scopes whose tables the catalogue holds, as their section headings name them.
const SCOPES: [&str; 3] = ["otlp-pool", "otlp-sync", "otlp-patterns"];

/// Listed values this test cannot force, with the reason. They must be listed; they need not be exported here.
const UNFORCED: &[(&str, &str, &str, &str)] = &[(
    "adaptive_limit.samples",
    "outcome",
    "skipped",
    "a timed sample that finds another thread holding the algorithm's lock: a race, not an input",
)];

/// What an instrument's points look like, as the catalogue writes its kind column.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kind {
    /// `counter`, `up-down counter`, `gauge` or `histogram`.
    shape: &'static str,
    /// `u64`, `i64` or `f64`.
    number: &'static str,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.shape, self.number)
    }
}

/// An attribute cell: its keys, and the enumerated values of some of them.
type Attributes = (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>);

/// One instrument, from the catalogue or from the export.
#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    unit: String,
    keys: BTreeSet<String>,
    /// The values of the keys whose values are enumerated (`outcome = a | b`).
    values: BTreeMap<String, BTreeSet<String>>,
    /// Keys listed without values in this row, whose values come from another row of the scope (`outcome` on a
    /// histogram takes the outcomes of its counter): exported values must be among them, not all of them.
    inherited: BTreeSet<String>,
}

/// The backticked spans of a table cell, each with the text before it.
fn ticked(cell: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = cell;
    while let Some(start) = rest.find('`') {
        let before = rest[..start].to_owned();
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else { break };
        out.push((before, after[..end].to_owned()));
        rest = &after[end + 1..];
    }
    out
}

fn parse_kind(cell: &str) -> Kind {
    let shape = if cell.contains("up-down counter") {
        "up-down counter"
    } else if cell.contains("counter") {
        "counter"
    } else if cell.contains("gauge") {
        "gauge"
    } else if cell.contains("histogram") {
        "histogram"
    } else {
        panic!("docs/metrics.md: unknown kind `{cell}`")
    };
    let number = ["u64", "i64", "f64"]
        .into_iter()
        .find(|n| cell.contains(n))
        .unwrap_or_else(|| panic!("docs/metrics.md: kind `{cell}` names no number type"));
    Kind { shape, number }
}

/// The attribute keys of a cell and the enumerated values of some: `` `a.name`, `outcome` = `x` \| `y` ``.
fn parse_attributes(cell: &str) -> Attributes {
    let mut keys = BTreeSet::new();
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (before, token) in ticked(cell) {
        let joiner = before.trim();
        match &current {
            Some(key) if joiner.ends_with('=') || joiner == "\\|" => {
                values.entry(key.clone()).or_default().insert(token);
            }
            _ => {
                keys.insert(token.clone());
                current = Some(token);
            }
        }
    }
    (keys, values)
}

/// The catalogue's tables of [`SCOPES`]: scope → instrument name → entry. Rows of one name (the `(Redis)` rows)
/// are merged: their kinds and units must agree, their keys and values add up.
fn catalogue(text: &str) -> BTreeMap<String, BTreeMap<String, Entry>> {
    let mut out: BTreeMap<String, BTreeMap<String, Entry>> = BTreeMap::new();
    let mut scope: Option<&str> = None;
    let mut previous: Option<Attributes> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            scope = SCOPES
                .into_iter()
                .find(|s| heading.starts_with(&format!("{s} (instrumentation scope `{s}`)")));
            previous = None;
            continue;
        }
        let Some(scope) = scope else { continue };
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(cells.len() >= 5, "docs/metrics.md: short row `{line}`");
        let name = ticked(cells[0])
            .first()
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("docs/metrics.md: no name in `{line}`"));
        let kind = parse_kind(cells[1]);
        let unit = ticked(cells[2])
            .first()
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("docs/metrics.md: no unit in `{line}`"));
        let (keys, values) = if cells[3].starts_with("same") {
            previous
                .clone()
                .unwrap_or_else(|| panic!("docs/metrics.md: `same` with no row above: `{line}`"))
        } else {
            parse_attributes(cells[3])
        };
        previous = Some((keys.clone(), values.clone()));
        let table = out.entry(scope.to_owned()).or_default();
        match table.get_mut(&name) {
            None => {
                table.insert(
                    name,
                    Entry {
                        kind,
                        unit,
                        keys,
                        values,
                        inherited: BTreeSet::new(),
                    },
                );
            }
            Some(entry) => {
                assert_eq!(entry.kind, kind, "docs/metrics.md: two kinds for `{name}`");
                assert_eq!(entry.unit, unit, "docs/metrics.md: two units for `{name}`");
                entry.keys.extend(keys);
                for (key, vals) in values {
                    entry.values.entry(key).or_default().extend(vals);
                }
            }
        }
    }
    for scope in SCOPES {
        let table = out
            .get_mut(scope)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("docs/metrics.md: no table found for scope `{scope}`"));
        let mut enumerated: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for entry in table.values() {
            for (key, values) in &entry.values {
                enumerated
                    .entry(key.clone())
                    .or_default()
                    .extend(values.iter().cloned());
            }
        }
        for entry in table.values_mut() {
            for key in entry.keys.clone() {
                if let (false, Some(values)) =
                    (entry.values.contains_key(&key), enumerated.get(&key))
                {
                    entry.values.insert(key.clone(), values.clone());
                    entry.inherited.insert(key);
                }
            }
        }
    }
    out
}

/// Every instrument exported in [`SCOPES`], with the keys and the values (of the keys the catalogue enumerates)
/// of all its points.
fn exported(
    metrics: &[ResourceMetrics],
    enumerated: &BTreeSet<String>,
) -> BTreeMap<String, BTreeMap<String, Entry>> {
    let mut out: BTreeMap<String, BTreeMap<String, Entry>> = BTreeMap::new();
    for resource in metrics {
        for scope in resource.scope_metrics() {
            let scope_name = scope.scope().name().to_string();
            if !SCOPES.contains(&scope_name.as_str()) {
                continue;
            }
            for metric in scope.metrics() {
                let mut points: Vec<Vec<(String, String)>> = Vec::new();
                macro_rules! collect {
                    ($iter:expr) => {
                        for p in $iter {
                            points.push(
                                p.attributes()
                                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                                    .collect(),
                            );
                        }
                    };
                }
                // One arm per shape the catalogue knows: collect the points' attributes, name the kind.
                macro_rules! kind {
                    ($points:expr, $shape:expr, $number:literal) => {{
                        collect!($points);
                        Kind {
                            shape: $shape,
                            number: $number,
                        }
                    }};
                }
                let kind = match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        kind!(s.data_points(), sum_shape(s.is_monotonic()), "u64")
                    }
                    AggregatedMetrics::I64(MetricData::Sum(s)) => {
                        kind!(s.data_points(), sum_shape(s.is_monotonic()), "i64")
                    }
                    AggregatedMetrics::F64(MetricData::Sum(s)) => {
                        kind!(s.data_points(), sum_shape(s.is_monotonic()), "f64")
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                        kind!(g.data_points(), "gauge", "u64")
                    }
                    AggregatedMetrics::I64(MetricData::Gauge(g)) => {
                        kind!(g.data_points(), "gauge", "i64")
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                        kind!(g.data_points(), "gauge", "f64")
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        kind!(h.data_points(), "histogram", "f64")
                    }
                    AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                        kind!(h.data_points(), "histogram", "u64")
                    }
                    other => panic!(
                        "`{}`: an aggregation the catalogue cannot describe: {other:?}",
                        metric.name()
                    ),
                };
                let entry = out
                    .entry(scope_name.clone())
                    .or_default()
                    .entry(metric.name().to_string())
                    .or_insert_with(|| Entry {
                        kind: kind.clone(),
                        unit: metric.unit().to_string(),
                        keys: BTreeSet::new(),
                        values: BTreeMap::new(),
                        inherited: BTreeSet::new(),
                    });
                assert_eq!(
                    entry.kind,
                    kind,
                    "`{}` exported with two kinds",
                    metric.name()
                );
                for point in points {
                    for (key, value) in point {
                        if enumerated.contains(&key) {
                            entry.values.entry(key.clone()).or_default().insert(value);
                        }
                        entry.keys.insert(key);
                    }
                }
            }
        }
    }
    out
}

fn sum_shape(monotonic: bool) -> &'static str {
    if monotonic {
        "counter"
    } else {
        "up-down counter"
    }
}

/// Owners kept alive until the export: a dropped owner's up-down counters go with it.
type Keep = Vec<Box<dyn std::any::Any + Send>>;

fn per_second(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n).unwrap())
}

async fn exercise_pools(keep: &mut Keep) {
    let pool = Pool::builder("catalogue.objects", Vec::<u8>::new)
        .capacity(1)
        .build()
        .unwrap();
    let (a, b) = (pool.get(), pool.get());
    drop((a, b)); // one kept, one discarded
    drop(pool.get());

    let buffers = BufferPool::builder("catalogue.buffers").build().unwrap();
    drop(buffers.get());
    let slices = ByteSlicePool::builder("catalogue.slices").build().unwrap();
    drop(slices.get(100));
    keep.push(Box::new((pool, buffers, slices)));
}

async fn exercise_semaphore(keep: &mut Keep) {
    let sem = Arc::new(
        Semaphore::builder("catalogue.semaphore")
            .permits(1)
            .record_hold_duration(true)
            .build()
            .unwrap(),
    );
    let held = sem.acquire().await.unwrap();
    assert!(sem.try_acquire().is_err()); // rejected
    assert!(sem.acquire_timeout(Duration::from_millis(1)).await.is_err()); // timeout
    let token = CancellationToken::new();
    let waiter = {
        let (sem, token) = (sem.clone(), token.clone());
        tokio::spawn(async move { sem.acquire_cancellable(&token).await.map(drop) })
    };
    while sem.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    token.cancel();
    assert!(waiter.await.unwrap().is_err()); // cancelled
    drop(held);
    sem.close();
    assert!(sem.acquire().await.is_err()); // closed
    keep.push(Box::new(sem));
}

async fn exercise_limiters(redis: &Redis, keep: &mut Keep) {
    let limiter = RateLimiter::builder("catalogue.limiter")
        .per_second(1)
        .burst(1)
        .build()
        .unwrap();
    limiter.check().unwrap(); // allowed
    assert!(limiter.check().is_err()); // throttled
    assert!(
        limiter
            .until_ready_timeout(Duration::from_millis(1))
            .await
            .is_err()
    ); // timeout
    let token = CancellationToken::new();
    token.cancel();
    assert!(limiter.until_ready_cancellable(&token).await.is_err()); // cancelled
    // A wait that sleeps (the histogram records only those): one cell per 200 ms, so the cell taken by `check` is
    // still owed when `until_ready` asks, however slow the machine.
    let quick = RateLimiter::builder("catalogue.limiter.quick")
        .per_period(1, Duration::from_millis(200))
        .burst(1)
        .build()
        .unwrap();
    quick.check().unwrap();
    quick.until_ready().await;
    keep.push(Box::new(quick));

    let keyed = KeyedRateLimiter::<String>::per_second("catalogue.keyed", 10).unwrap();
    keyed.check_key("a").unwrap();
    keep.push(Box::new(keyed));

    for (name, algorithm) in [
        (
            "catalogue.gradient2",
            Algorithm::Gradient2(Gradient2::default()),
        ),
        ("catalogue.aimd", Algorithm::Aimd(Aimd::default())),
        ("catalogue.vegas", Algorithm::Vegas(Vegas::default())),
    ] {
        let limit = AdaptiveLimit::builder(name)
            .algorithm(algorithm)
            .sample_every(1)
            .build()
            .unwrap();
        limit.acquire().await.unwrap().success();
        limit.acquire().await.unwrap().dropped();
        limit.acquire().await.unwrap().ignore();
        keep.push(Box::new(limit));
    }

    let fleet = RedisRateLimiter::builder("catalogue.redis", per_second(1))
        .url(redis.url())
        .build()
        .unwrap();
    fleet.check().await.unwrap(); // allowed
    assert!(fleet.check().await.is_err()); // throttled
    assert!(
        fleet
            .until_ready_timeout(Duration::from_millis(1))
            .await
            .is_err()
    ); // timeout
    let token = CancellationToken::new();
    token.cancel();
    assert!(
        fleet
            .until_n_ready_with(1, otlp_kit::sync::AcquireOptions::new().cancel_on(&token))
            .await
            .is_err()
    ); // cancelled
    // A wait that sleeps: one cell per 200 ms, no burst (far above a loopback round trip).
    let quick = RedisRateLimiter::builder(
        "catalogue.redis.quick",
        Quota::with_period(Duration::from_millis(200)).unwrap(),
    )
    .url(redis.url())
    .build()
    .unwrap();
    quick.check().await.unwrap();
    quick.until_ready().await.unwrap();
    keep.push(Box::new(quick));

    // Nothing listens on this port: every round trip fails (`error.type` = `error`) and the policy decides.
    let gone = format!("redis://127.0.0.1:{}/", free_port().unwrap());
    // A listener that accepts and never answers: round trips time out (`error.type` = `timeout`).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("redis://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    for (name, url, policy) in [
        ("catalogue.redis.open", &gone, Unavailable::FailOpen),
        (
            "catalogue.redis.closed",
            &silent_url,
            Unavailable::FailClosed,
        ),
        (
            "catalogue.redis.local",
            &gone,
            Unavailable::Local { share: 0.5 },
        ),
    ] {
        let l = RedisRateLimiter::builder(name, per_second(1))
            .url(url.clone())
            .timeout(Duration::from_millis(50))
            .on_unavailable(policy)
            .build()
            .unwrap();
        let _ = l.check().await;
        let _ = l.check().await; // the local share: allowed, then throttled
        keep.push(Box::new(l));
    }
    keep.push(Box::new((limiter, fleet, silent)));
}

async fn exercise_patterns(keep: &mut Keep) {
    let pool = WorkerPool::builder("catalogue.workers")
        .workers(1)
        .queue(1)
        .build()
        .unwrap();
    pool.submit(async { 1 }).await.unwrap().await.unwrap(); // ok
    assert!(
        pool.submit_fallible(async { Err::<(), _>("no") })
            .await
            .unwrap()
            .await
            .is_err()
    ); // error
    assert!(
        pool.submit(async { panic!("on purpose") })
            .await
            .unwrap()
            .await
            .is_err()
    ); // panic
    assert!(
        pool.submit_with_deadline(
            tokio::time::Instant::now() + Duration::from_millis(1),
            std::future::pending::<()>()
        )
        .await
        .unwrap()
        .await
        .is_err()
    ); // timeout
    // The worker busy, the queue full: one cancelled in the queue, then one rejected.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = pool.submit(async move { drop(rx.await) }).await.unwrap();
    while pool.stats().active == 0 {
        tokio::task::yield_now().await;
    }
    let queued = pool.submit(async {}).await.unwrap();
    assert!(pool.try_submit(async {}).is_err()); // rejected
    queued.cancel();
    tx.send(()).unwrap();
    running.await.unwrap();
    assert!(queued.await.is_err()); // cancelled
    keep.push(Box::new(pool));

    let fan_out = FanOut::builder("catalogue.fan_out")
        .concurrency(1)
        .fail_fast(true)
        .build()
        .unwrap();
    fan_out.run([1, 2], |n| async move { n }).await;
    let results = fan_out
        .run_fallible([0, 1, 2], |n| async move {
            match n {
                0 => Ok(()),
                1 => Err("no"),
                _ => Ok(()),
            }
        })
        .await;
    assert!(!results.all_ok()); // error, then cancelled by fail-fast
    let panicky = FanOut::new("catalogue.fan_out", 1).unwrap();
    let results = panicky.run([0], |_| async { panic!("on purpose") }).await;
    assert!(!results.all_ok()); // panic
    keep.push(Box::new((fan_out, panicky)));

    let pipeline = Pipeline::builder("catalogue.pipeline")
        .stage_fallible("parse", 1, |n: u32| async move {
            match n {
                1 => Err("no".to_owned()),
                2 => panic!("on purpose"),
                n => Ok(n),
            }
        })
        .error_policy(ErrorPolicy::Skip)
        .build()
        .unwrap();
    let out: Vec<_> = pipeline
        .run(futures_util::stream::iter([0u32, 1, 2, 3]))
        .collect()
        .await;
    assert_eq!(out.len(), 2); // ok, error, panic, ok
    // A run dropped with items in flight: they are cancelled.
    let mut run = pipeline.run(
        futures_util::stream::iter([5u32, 6, 7]).then(|n| async move {
            if n == 7 {
                std::future::pending::<()>().await;
            }
            n
        }),
    );
    assert!(run.next().await.is_some());
    drop(run);
    keep.push(Box::new(pipeline));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exported_metric_is_in_the_catalogue_and_every_listed_one_is_exported() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .expect("docs/metrics.md");
    let listed = catalogue(&docs);

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    global::set_meter_provider(provider.clone());

    let redis = Redis::start()
        .expect("redis-server runs (apt-get install -y redis-server; .ci/run installs it)");
    let mut keep = Keep::new();
    exercise_pools(&mut keep).await;
    exercise_semaphore(&mut keep).await;
    exercise_limiters(&redis, &mut keep).await;
    exercise_patterns(&mut keep).await;

    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    let enumerated: BTreeSet<String> = listed
        .values()
        .flat_map(|t| t.values())
        .flat_map(|e| e.values.keys().cloned())
        .collect();
    let got = exported(&metrics, &enumerated);

    let mut problems = Vec::new();
    for scope in SCOPES {
        let empty = BTreeMap::new();
        let want = listed.get(scope).unwrap_or(&empty);
        let have = got.get(scope).unwrap_or(&empty);
        for name in have.keys().filter(|n| !want.contains_key(*n)) {
            problems.push(format!(
                "{scope}: `{name}` is exported but not in docs/metrics.md"
            ));
        }
        for name in want.keys().filter(|n| !have.contains_key(*n)) {
            problems.push(format!(
                "{scope}: `{name}` is in docs/metrics.md but nothing exported it"
            ));
        }
        for (name, w) in want {
            let Some(h) = have.get(name) else { continue };
            if w.kind != h.kind {
                problems.push(format!(
                    "`{name}`: listed as {}, exported as {}",
                    w.kind, h.kind
                ));
            }
            if w.unit != h.unit {
                problems.push(format!(
                    "`{name}`: listed unit `{}`, exported `{}`",
                    w.unit, h.unit
                ));
            }
            for key in h.keys.difference(&w.keys) {
                problems.push(format!(
                    "`{name}`: attribute `{key}` is exported but not listed"
                ));
            }
            for key in w.keys.difference(&h.keys) {
                problems.push(format!(
                    "`{name}`: attribute `{key}` is listed but never exported"
                ));
            }
            for (key, values) in &h.values {
                let listed_values = w.values.get(key).cloned().unwrap_or_default();
                for v in values.difference(&listed_values) {
                    problems.push(format!(
                        "`{name}`: `{key}` = `{v}` is exported but not listed"
                    ));
                }
            }
            for (key, values) in w.values.iter().filter(|(k, _)| !w.inherited.contains(*k)) {
                let exported_values = h.values.get(key).cloned().unwrap_or_default();
                for v in values.difference(&exported_values) {
                    let unforced = UNFORCED
                        .iter()
                        .any(|(n, k, val, _)| n == name && k == key && val == v);
                    if !unforced {
                        problems.push(format!(
                            "`{name}`: `{key}` = `{v}` is listed but never exported"
                        ));
                    }
                }
            }
        }
    }
    for (name, key, value, why) in UNFORCED {
        let listed_here = listed
            .values()
            .filter_map(|t| t.get(*name))
            .any(|e| e.values.get(*key).is_some_and(|v| v.contains(*value)));
        if !listed_here {
            problems.push(format!(
                "`{name}`: `{key}` = `{value}` ({why}) is no longer listed: remove it from UNFORCED"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/metrics.md and the export disagree:\n  {}",
        problems.join("\n  ")
    );
    drop(keep);
    provider.shutdown().unwrap();
}
