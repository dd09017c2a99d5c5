//! OpenTelemetry instruments of the pools (instrumentation scope `otlp-pool`).
//!
//! One set of observable instruments per meter serves every pool registered with it: at export time their
//! callbacks sum each live pool's per-thread counters (the same numbers [`Pool::stats`](crate::Pool::stats)
//! returns) and report them with the pool's pre-built attributes. The hot path never calls into OpenTelemetry.
//! Pools are held weakly, so a dropped pool simply stops reporting.
//!
//! | instrument | kind | unit | meaning |
//! |---|---|---|---|
//! | `pool.gets` | counter | `{get}` | objects handed out |
//! | `pool.misses` | counter | `{get}` | gets that had to create an object |
//! | `pool.puts` | counter | `{object}` | returns kept for reuse |
//! | `pool.discards` | counter | `{object}` | returns dropped (pool full, too large, refused) |
//! | `pool.idle` | up-down counter | `{object}` | idle objects kept |
//!
//! Every point carries `pool.name`; byte-slice pools add `pool.size_class` (bytes).

use crate::stats::{PoolStats, StatsCell};
use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableCounter, ObservableUpDownCounter};
use opentelemetry::{InstrumentationScope, KeyValue};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

struct Source {
    stats: Weak<StatsCell>,
    attributes: Vec<KeyValue>,
}

type Sources = Arc<Mutex<Vec<Source>>>;

fn lock(sources: &Sources) -> MutexGuard<'_, Vec<Source>> {
    sources
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The instruments of one meter and the pools they report.
pub(crate) struct Registry {
    sources: Sources,
    _counters: Vec<ObservableCounter<u64>>,
    _idle: ObservableUpDownCounter<i64>,
}

/// The meter the pools use unless a builder names another.
fn global_meter() -> Meter {
    opentelemetry::global::meter_with_scope(
        InstrumentationScope::builder("otlp-pool")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}

fn observe<T>(sources: &Sources, field: fn(&PoolStats) -> T, instrument: &dyn AsyncInstrument<T>) {
    let mut sources = lock(sources);
    sources.retain(|source| source.stats.strong_count() > 0);
    for source in sources.iter() {
        if let Some(stats) = source.stats.upgrade() {
            instrument.observe(field(&stats.snapshot()), &source.attributes);
        }
    }
}

impl Registry {
    fn new(meter: &Meter) -> Self {
        let sources: Sources = Arc::default();
        let counter = |name: &'static str,
                       unit: &'static str,
                       description: &'static str,
                       field: fn(&PoolStats) -> u64| {
            let sources = sources.clone();
            meter
                .u64_observable_counter(name)
                .with_unit(unit)
                .with_description(description)
                .with_callback(move |instrument| observe(&sources, field, instrument))
                .build()
        };
        let counters = vec![
            counter(
                "pool.gets",
                "{get}",
                "Objects handed out by the pool",
                |s| s.gets,
            ),
            counter(
                "pool.misses",
                "{get}",
                "Gets that found no idle object and created one",
                |s| s.misses,
            ),
            counter(
                "pool.puts",
                "{object}",
                "Returned objects kept for reuse",
                |s| s.puts,
            ),
            counter(
                "pool.discards",
                "{object}",
                "Returned objects dropped: pool full, object too large or refused",
                |s| s.discards,
            ),
        ];
        let idle_sources = sources.clone();
        let idle = meter
            .i64_observable_up_down_counter("pool.idle")
            .with_unit("{object}")
            .with_description("Idle objects kept by the pool")
            .with_callback(move |instrument| {
                observe(
                    &idle_sources,
                    |s| i64::try_from(s.idle).unwrap_or(i64::MAX),
                    instrument,
                )
            })
            .build();
        Registry {
            sources,
            _counters: counters,
            _idle: idle,
        }
    }

    fn add(&self, stats: &Arc<StatsCell>, attributes: Vec<KeyValue>) {
        lock(&self.sources).push(Source {
            stats: Arc::downgrade(stats),
            attributes,
        });
    }
}

/// Keeps a pool's instruments alive as long as the pool (for pools with their own meter).
pub(crate) struct Registration {
    _own: Option<Registry>,
}

impl Registration {
    /// Registers a pool's statistics with `meter`'s instruments, or with the global meter's.
    pub(crate) fn new(
        meter: Option<Meter>,
        stats: &Arc<StatsCell>,
        attributes: Vec<KeyValue>,
    ) -> Self {
        match meter {
            Some(meter) => {
                let registry = Registry::new(&meter);
                registry.add(stats, attributes);
                Registration {
                    _own: Some(registry),
                }
            }
            None => {
                static GLOBAL: OnceLock<Registry> = OnceLock::new();
                GLOBAL
                    .get_or_init(|| Registry::new(&global_meter()))
                    .add(stats, attributes);
                Registration { _own: None }
            }
        }
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("own_meter", &self._own.is_some())
            .finish()
    }
}
