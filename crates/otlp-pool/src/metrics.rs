//! OpenTelemetry instruments of the pools (instrumentation scope `otlp-pool`).
//!
//! Every pool registers its statistics with the scope's process-wide registry (`otlp_core::instruments`), which
//! follows the global meter provider: a pool built before the provider is installed reports through it once it
//! is. At export time the callbacks sum each pool's per-thread counters (the same numbers
//! [`Pool::stats`](crate::Pool::stats) returns) and report them with the pool's pre-built attributes, summed per
//! attribute set; a dropped pool's cumulative counts are kept. The hot path never calls into OpenTelemetry.
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

use crate::stats::StatsCell;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use otlp_core::instruments::{Attributes, Kind, Observable, Observations, Scope, Source};
use std::fmt;
use std::sync::Arc;

const GETS: usize = 0;
const MISSES: usize = 1;
const PUTS: usize = 2;
const DISCARDS: usize = 3;
const IDLE: usize = 4;

/// The scope's instruments, by index.
static OBSERVABLES: [Observable; 5] = [
    Observable {
        name: "pool.gets",
        unit: "{get}",
        description: "Objects handed out by the pool",
        kind: Kind::Counter,
    },
    Observable {
        name: "pool.misses",
        unit: "{get}",
        description: "Gets that found no idle object and created one",
        kind: Kind::Counter,
    },
    Observable {
        name: "pool.puts",
        unit: "{object}",
        description: "Returned objects kept for reuse",
        kind: Kind::Counter,
    },
    Observable {
        name: "pool.discards",
        unit: "{object}",
        description: "Returned objects dropped: pool full, object too large or refused",
        kind: Kind::Counter,
    },
    Observable {
        name: "pool.idle",
        unit: "{object}",
        description: "Idle objects kept by the pool",
        kind: Kind::UpDownCounter,
    },
];

/// The `otlp-pool` instrumentation scope.
static SCOPE: Scope = Scope::new("otlp-pool", env!("CARGO_PKG_VERSION"), &OBSERVABLES, &[]);

/// One pool's statistics as the registry reads them.
struct PoolSource {
    stats: Arc<StatsCell>,
    attributes: Attributes,
}

impl Source for PoolSource {
    fn observe(&self, out: &mut Observations<'_>) {
        let s = self.stats.snapshot();
        for (i, v) in [
            (GETS, s.gets),
            (MISSES, s.misses),
            (PUTS, s.puts),
            (DISCARDS, s.discards),
            (IDLE, s.idle),
        ] {
            out.observe(i, v, &self.attributes);
        }
    }
}

/// A pool's link to its instruments; the registry keeps the pool's counts once this is dropped with the pool.
pub(crate) struct Registration {
    _source: Arc<PoolSource>,
    link: otlp_core::instruments::Registration,
}

impl Registration {
    /// Registers a pool's statistics with the scope's registry, or with instruments of `meter`'s own.
    pub(crate) fn new(
        meter: Option<Meter>,
        stats: &Arc<StatsCell>,
        attributes: Vec<KeyValue>,
    ) -> Self {
        let source = Arc::new(PoolSource {
            stats: stats.clone(),
            attributes: Attributes::new(attributes),
        });
        let link = SCOPE.register(meter, source.clone());
        Registration {
            _source: source,
            link,
        }
    }

    /// Catches up with the global meter provider.
    pub(crate) fn follow(&self) {
        self.link.follow();
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.link.fmt(f)
    }
}
