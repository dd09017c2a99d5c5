//! The adaptive limit against a simulated downstream, on tokio's paused clock.
//!
//! The downstream answers in `BASE` up to `knee` requests at once and in `BASE * concurrency / knee` past it, so
//! its throughput stops growing at the knee and only latency grows: the limit should sit just past the knee. 64 clients
//! call it in a closed loop through the limit under test. tower-acc's Gradient2 and Vegas run on the same
//! simulation through a copy of tower-acc's own controller (its layer times requests with `std::time::Instant`,
//! which does not follow the paused clock; the algorithms are its own).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otlp_sync::adaptive::{AdaptiveLimit, Aimd, Algorithm};
use tokio::time::Instant;

const BASE: Duration = Duration::from_millis(10);
const CLIENTS: usize = 64;
/// How often the limit is recorded.
const TICK: Duration = Duration::from_millis(10);
/// Phase 1 (knee 16) and phase 2 (knee 8) each last this long.
const PHASE: Duration = Duration::from_secs(30);

struct Downstream {
    knee: AtomicUsize,
    inflight: AtomicUsize,
    served: AtomicU64,
}

impl Downstream {
    fn new(knee: usize) -> Arc<Self> {
        Arc::new(Downstream {
            knee: AtomicUsize::new(knee),
            inflight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
        })
    }

    /// Takes `BASE` up to the knee and `BASE * concurrency / knee` past it (the downstream shares itself between
    /// the requests it holds), by the concurrency when the request arrives.
    async fn call(&self) {
        let c = self.inflight.fetch_add(1, Ordering::Relaxed) + 1;
        let knee = self.knee.load(Ordering::Relaxed);
        let latency = BASE.mul_f64((c as f64 / knee as f64).max(1.0));
        tokio::time::sleep(latency).await;
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
    }
}

/// tower-acc's `Controller`, copied: a tokio semaphore resized after each update of the algorithm.
struct TheirController {
    algorithm: Box<dyn tower_acc::Algorithm + Send>,
    semaphore: Arc<tokio::sync::Semaphore>,
    max_permits: usize,
}

impl TheirController {
    fn new(algorithm: Box<dyn tower_acc::Algorithm + Send>) -> Self {
        let max_permits = algorithm.max_concurrency();
        TheirController {
            algorithm,
            semaphore: Arc::new(tokio::sync::Semaphore::new(max_permits)),
            max_permits,
        }
    }

    fn update(&mut self, rtt: Duration) {
        let inflight = self.max_permits - self.semaphore.available_permits();
        self.algorithm.update(rtt, inflight, false, false);
        let new = self.algorithm.max_concurrency();
        if new > self.max_permits {
            self.semaphore.add_permits(new - self.max_permits);
            self.max_permits = new;
        } else if new < self.max_permits {
            self.max_permits -= self.semaphore.forget_permits(self.max_permits - new);
        }
    }
}

#[derive(Clone)]
enum Subject {
    Ours(AdaptiveLimit),
    Theirs(Arc<Mutex<TheirController>>),
}

impl Subject {
    fn theirs(algorithm: impl tower_acc::Algorithm + Send + 'static) -> Self {
        Subject::Theirs(Arc::new(Mutex::new(TheirController::new(Box::new(
            algorithm,
        )))))
    }

    fn limit(&self) -> usize {
        match self {
            Subject::Ours(l) => l.limit(),
            Subject::Theirs(c) => c.lock().unwrap().max_permits,
        }
    }

    async fn call(&self, ds: &Downstream) {
        match self {
            Subject::Ours(l) => {
                let _permit = l.acquire().await.unwrap();
                ds.call().await;
            }
            Subject::Theirs(c) => {
                let sem = c.lock().unwrap().semaphore.clone();
                let permit = sem.acquire_owned().await.unwrap();
                let start = Instant::now();
                ds.call().await;
                c.lock().unwrap().update(start.elapsed());
                drop(permit);
            }
        }
    }
}

/// One point of the record: (time since the start, limit, requests served so far).
type Trace = Vec<(Duration, usize, u64)>;

/// Runs the clients through `subject` for one phase at knee 16, then one at knee 8.
async fn simulate(subject: Subject) -> Trace {
    let ds = Downstream::new(16);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (s, ds, stop) = (subject.clone(), ds.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    s.call(&ds).await;
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut trace = Trace::new();
    let mut moved = false;
    while start.elapsed() < 2 * PHASE {
        if !moved && start.elapsed() >= PHASE {
            ds.knee.store(8, Ordering::Relaxed);
            moved = true;
        }
        trace.push((
            start.elapsed(),
            subject.limit(),
            ds.served.load(Ordering::Relaxed),
        ));
        tokio::time::sleep(TICK).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    trace
}

/// How one phase went: when the limit entered ±25 % of the knee for good, and the highest it went after first
/// reaching the band.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// Time from the phase's start until the limit stays in the band; `None` if it never does.
    settle: Option<Duration>,
    /// Requests served from the phase's start until then.
    settle_requests: Option<u64>,
    /// The highest limit after the limit first entered the band, over the knee (1.0 = no overshoot).
    overshoot: f64,
}

fn phase(trace: &Trace, from: Duration, to: Duration, knee: usize) -> Phase {
    let points: Vec<_> = trace
        .iter()
        .filter(|(t, _, _)| *t >= from && *t < to)
        .collect();
    let (lo, hi) = (knee as f64 * 0.75, knee as f64 * 1.25);
    let inside = |l: usize| (lo..=hi).contains(&(l as f64));
    let served0 = points[0].2;
    let last_out = points.iter().rposition(|(_, l, _)| !inside(*l));
    let settled_at = match last_out {
        None => Some(0),
        Some(i) if i + 1 < points.len() => Some(i + 1),
        Some(_) => None,
    };
    let first_in = points.iter().position(|(_, l, _)| inside(*l));
    let overshoot = first_in.map_or(f64::INFINITY, |i| {
        points[i..].iter().map(|p| p.1).max().unwrap() as f64 / knee as f64
    });
    Phase {
        settle: settled_at.map(|i| points[i].0 - from),
        settle_requests: settled_at.map(|i| points[i].2 - served0),
        overshoot,
    }
}

fn ours() -> AdaptiveLimit {
    AdaptiveLimit::builder("sim")
        .initial_limit(20)
        .min_limit(1)
        .max_limit(1000)
        .build()
        .unwrap()
}

/// The most requests the default Gradient2 takes to follow the knee from 16 down to 8 (docs/architecture.md).
const FOLLOW_REQUESTS: u64 = 3_000;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gradient2_settles_at_the_knee_and_follows_it() {
    let limit = ours();
    let trace = simulate(Subject::Ours(limit.clone())).await;
    let one = phase(&trace, Duration::ZERO, PHASE, 16);
    let two = phase(&trace, PHASE, 2 * PHASE, 8);
    eprintln!("ours gradient2: knee 16 {one:?}; knee 8 {two:?}");
    let every: Vec<_> = trace.iter().step_by(20).map(|p| p.1).collect();
    eprintln!("limit every 200 ms: {every:?}; {:?}", limit.stats());
    let settle = one.settle.expect("settles within ±25 % of the knee (16)");
    assert!(settle < Duration::from_secs(5), "{one:?}");
    let follow = two.settle_requests.expect("follows the knee to 8");
    assert!(follow <= FOLLOW_REQUESTS, "{two:?}");
    let stats = limit.stats();
    assert!(stats.success > 1_000, "{stats:?}");
    // The baseline it works from is the downstream's own service time.
    assert!(
        (stats.baseline_rtt - BASE.as_secs_f64()).abs() < 1e-3,
        "{stats:?}"
    );
    assert_eq!(limit.semaphore().limit(), limit.limit());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gradient2_settles_no_slower_and_overshoots_no_more_than_tower_acc() {
    let ours = simulate(Subject::Ours(ours())).await;
    let g2 = simulate(Subject::theirs(
        tower_acc::Gradient2::builder()
            .initial_limit(20)
            .min_limit(1)
            .max_limit(1000)
            .build(),
    ))
    .await;
    let vegas = simulate(Subject::theirs(
        tower_acc::Vegas::builder()
            .initial_limit(20)
            .max_limit(1000)
            .build(),
    ))
    .await;
    let slow = Duration::MAX;
    for (knee, from) in [(16, Duration::ZERO), (8, PHASE)] {
        let ours = phase(&ours, from, from + PHASE, knee);
        for (name, theirs) in [("gradient2", &g2), ("vegas", &vegas)] {
            let theirs = phase(theirs, from, from + PHASE, knee);
            eprintln!("knee {knee}: ours {ours:?} / tower-acc {name} {theirs:?}");
            assert!(
                ours.settle.unwrap_or(slow) <= theirs.settle.unwrap_or(slow),
                "knee {knee}: ours settles slower than tower-acc's {name}: {ours:?} vs {theirs:?}"
            );
            assert!(
                ours.overshoot <= theirs.overshoot,
                "knee {knee}: ours overshoots more than tower-acc's {name}: {ours:?} vs {theirs:?}"
            );
        }
    }
}

/// A downstream that rejects what it cannot serve at once: every error is an overload, and AIMD cuts on it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn aimd_is_cut_by_errors() {
    let knee = 16;
    let limit = AdaptiveLimit::builder("aimd")
        .algorithm(Algorithm::Aimd(Aimd::default()))
        .initial_limit(40)
        .sample_every(1)
        .build()
        .unwrap();
    let workers = Arc::new(tokio::sync::Semaphore::new(knee));
    let cuts = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (limit, workers, cuts, stop) =
                (limit.clone(), workers.clone(), cuts.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let permit = limit.acquire().await.unwrap();
                    match workers.try_acquire() {
                        Ok(_worker) => {
                            tokio::time::sleep(BASE).await;
                            permit.success();
                        }
                        Err(_) => {
                            let before = limit.limit();
                            permit.dropped();
                            if limit.limit() < before {
                                cuts.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(BASE).await;
                        }
                    }
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    for _ in 0..1000 {
        tokio::time::sleep(TICK).await;
        seen.push(limit.limit());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let stats = limit.stats();
    assert!(
        stats.dropped > 0 && cuts.load(Ordering::Relaxed) > 0,
        "{stats:?}"
    );
    // From 40, errors bring it down to the knee, and it stays around it (AIMD's saw-tooth).
    eprintln!("aimd limit every 10 ms: {seen:?}");
    let late = &seen[seen.len() / 2..];
    let (lo, hi) = (*late.iter().min().unwrap(), *late.iter().max().unwrap());
    assert!(
        lo >= 12 && hi <= 20,
        "limit ranged {lo}..={hi} around a knee of {knee}"
    );
    assert_eq!(stats.in_use, 0);
}

/// Every exported point of `name` as (attributes, value), from the last export.
fn points(
    exporter: &opentelemetry_sdk::metrics::InMemoryMetricExporter,
    name: &str,
) -> Vec<(Vec<(String, String)>, f64)> {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    let mut out = Vec::new();
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics().filter(|m| m.name() == name) {
                out.clear();
                let attrs = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                    let mut v: Vec<_> = it
                        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect();
                    v.sort();
                    v
                };
                match m.data() {
                    AggregatedMetrics::U64(MetricData::Gauge(g)) => out.extend(
                        g.data_points()
                            .map(|p| (attrs(&mut p.attributes()), p.value() as f64)),
                    ),
                    AggregatedMetrics::U64(MetricData::Sum(s)) => out.extend(
                        s.data_points()
                            .map(|p| (attrs(&mut p.attributes()), p.value() as f64)),
                    ),
                    AggregatedMetrics::I64(MetricData::Sum(s)) => out.extend(
                        s.data_points()
                            .map(|p| (attrs(&mut p.attributes()), p.value() as f64)),
                    ),
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => out.extend(
                        g.data_points()
                            .map(|p| (attrs(&mut p.attributes()), p.value())),
                    ),
                    other => panic!("unexpected aggregation for {name}: {other:?}"),
                }
            }
        }
    }
    out
}

fn value_with(points: &[(Vec<(String, String)>, f64)], key: &str, value: &str) -> f64 {
    points
        .iter()
        .find(|(attrs, _)| attrs.iter().any(|(k, v)| k == key && v == value))
        .unwrap_or_else(|| panic!("no point with {key}={value} in {points:?}"))
        .1
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_limit_and_its_latency_estimates_are_exported() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use otlp_sync::telemetry::names;

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let limit = AdaptiveLimit::builder("exported")
        .algorithm(Algorithm::Aimd(Aimd::default()))
        .initial_limit(10)
        .sample_every(1)
        .meter(provider.meter("test"))
        .build()
        .unwrap();
    for _ in 0..10 {
        let p = limit.acquire().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.success();
    }
    limit.try_acquire().unwrap().dropped();
    limit.try_acquire().unwrap().ignore();
    provider.force_flush().unwrap();

    let stats = limit.stats();
    assert_eq!((stats.success, stats.dropped, stats.ignored), (10, 1, 1));
    assert_eq!(limit.limit(), 9, "10 less a tenth for the drop");
    let sem_limit = points(&exporter, names::SEMAPHORE_PERMIT_LIMIT);
    assert_eq!(sem_limit.len(), 1);
    assert_eq!(sem_limit[0].1, limit.limit() as f64);
    assert!(
        sem_limit[0]
            .0
            .contains(&("semaphore.name".into(), "exported".into()))
    );
    let latency = points(&exporter, names::ADAPTIVE_LIMIT_LATENCY);
    assert_eq!(
        value_with(&latency, names::ADAPTIVE_LIMIT_ESTIMATE, "sample"),
        0.020
    );
    assert!(
        (value_with(&latency, names::ADAPTIVE_LIMIT_ESTIMATE, "baseline") - 0.020).abs() < 1e-9
    );
    let samples = points(&exporter, names::ADAPTIVE_LIMIT_SAMPLES);
    assert_eq!(value_with(&samples, names::OUTCOME, "success"), 10.0);
    assert_eq!(value_with(&samples, names::OUTCOME, "dropped"), 1.0);
    assert_eq!(value_with(&samples, names::OUTCOME, "ignored"), 1.0);
    assert_eq!(value_with(&samples, names::OUTCOME, "skipped"), 0.0);
    assert!(
        samples
            .iter()
            .all(|(a, _)| a.contains(&("adaptive_limit.algorithm".into(), "aimd".into())))
    );
    provider.shutdown().unwrap();
}

#[cfg(feature = "tower")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_tower_layer_reports_responses_as_samples() {
    use otlp_sync::tower::{AdaptiveLimitLayer, BoxError};
    use tower::{Layer, Service, ServiceExt, service_fn};

    let limit = AdaptiveLimit::builder("layer")
        .algorithm(Algorithm::Aimd(Aimd::default()))
        .initial_limit(10)
        .sample_every(1)
        .build()
        .unwrap();
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(service_fn(|fail: bool| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if fail {
            Err::<(), BoxError>("overloaded".into())
        } else {
            Ok(())
        }
    }));
    svc.clone().oneshot(false).await.unwrap();
    svc.clone().oneshot(true).await.unwrap_err();
    // A response future dropped before it finished reports nothing.
    let mut ready = svc.clone();
    let fut = ready.ready().await.unwrap().call(false);
    drop(fut);
    let stats = limit.stats();
    assert_eq!((stats.success, stats.dropped, stats.ignored), (1, 1, 1));
    assert_eq!(stats.sample_rtt, 0.005);
    assert_eq!(stats.in_use, 0);
    assert_eq!(limit.limit(), 9);
}

#[test]
fn adaptive_types_are_send_sync_and_debug() {
    fn send_sync<T: Send + Sync + std::fmt::Debug>() {}
    send_sync::<AdaptiveLimit>();
    send_sync::<otlp_sync::adaptive::AdaptiveLimitBuilder>();
    send_sync::<otlp_sync::adaptive::AdaptiveLimitStats>();
    send_sync::<otlp_sync::AdaptivePermit<'static>>();
    send_sync::<otlp_sync::OwnedAdaptivePermit>();
    send_sync::<Algorithm>();
    send_sync::<Aimd>();
    send_sync::<otlp_sync::adaptive::Gradient2>();
    send_sync::<otlp_sync::adaptive::Vegas>();
}
