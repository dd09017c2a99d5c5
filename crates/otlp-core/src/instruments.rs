//! Instruments that follow the global meter provider, whenever it is installed.
//!
//! opentelemetry's global meter is a snapshot: a `Meter` taken before `global::set_meter_provider` stays a no-op
//! forever, and 0.33 cannot unregister a callback from a provider. So an owner (a pool, a semaphore, a worker
//! pool...) never holds instruments of its own. Each instrumentation scope has one [`Scope`]: a process-wide
//! registry of its owners' counter [`Source`]s, plus the scope's instruments on the provider it last saw.
//!
//! * The scope compares the global provider (the data pointer of its `Arc`, which it holds, so the address cannot
//!   be reused) with its own when an owner is built ([`Scope::register`]), from [`Registration::follow`] (owners
//!   call it from `stats()` and from slow paths that already waited), and in [`refresh`], which
//!   `otlp_telemetry::init` calls right after installing its provider. On a change it builds its observable
//!   instruments once on the new provider and re-creates its histograms; callbacks left on an old provider
//!   report nothing from then on.
//! * A callback walks the live owners and the retained counts of dropped ones, sums them per attribute set and
//!   observes one point per set. The registry holds each source strongly: when it is the last holder the owner is
//!   gone, and the source's counter values are folded into the retained sums (so cumulative counts survive their
//!   owner until the provider shuts down; up-down counters of a dropped owner stop).
//! * Owners record histograms through a [`Recorder`] per histogram and attribute set: an atomic load of the
//!   scope's current histogram set, so the record path takes no lock. A scope keeps every set it built (one per provider it followed) for the life of the process, so that a
//!   record racing a rebuild never reaches a freed one.
//! * A recorder resolves its attribute set once per provider where the provider allows it: the crate that
//!   installs a provider whose `Histogram::bind` really binds (`otlp_telemetry`, for its SDK provider) installs
//!   it with [`install`] and a [`Binder`]; the first record after the scope follows that provider binds, and
//!   later ones are the bound handle's record (no hashing of the attribute set). On any other provider (one set
//!   with `global::set_meter_provider`, whose `bind` may drop every record) a recorder takes the plain
//!   `Histogram::record`. A recorder keeps the handles it made while it lives, so a record racing a rebind never
//!   reaches a freed one.
//!
//! The hot paths of owners never call into this module: they bump their own counters, which sources read here.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use otlp_core::instruments::{
//!     Attributes, HistogramSpec, Kind, Observable, Observations, Scope, Source,
//! };
//!
//! static SCOPE: Scope = Scope::new(
//!     "my-crate",
//!     "0.1.0",
//!     &[Observable { name: "thing.uses", unit: "{use}", description: "Uses.", kind: Kind::Counter }],
//!     &[HistogramSpec { name: "thing.use.duration", unit: "s", description: "Uses' durations.", boundaries: &[] }],
//! );
//!
//! struct Thing { uses: AtomicU64, attrs: Attributes }
//! impl Source for Thing {
//!     fn observe(&self, out: &mut Observations<'_>) {
//!         out.observe(0, self.uses.load(Ordering::Relaxed), &self.attrs);
//!     }
//! }
//!
//! let thing = Arc::new(Thing {
//!     uses: AtomicU64::new(0),
//!     attrs: Attributes::new(vec![opentelemetry::KeyValue::new("thing.name", "a")]),
//! });
//! let registration = SCOPE.register(None, thing.clone());
//! // One recorder per histogram and attribute set, built with the owner.
//! let durations = registration.recorder(0, &thing.attrs);
//! thing.uses.fetch_add(1, Ordering::Relaxed);
//! durations.record(0.004);
//! # drop(registration);
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use opentelemetry::metrics::{AsyncInstrument, Histogram, Meter, MeterProvider};
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::latest::Latest;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What an observable instrument reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic `u64` counter: the counts of dropped owners are retained.
    Counter,
    /// An `i64` up-down counter of a quantity that adds up across owners (idle objects, queue sizes): a dropped
    /// owner's share goes away with it.
    UpDownCounter,
    /// An `f64` gauge of a value that does not add up (a latency estimate): sources report it with
    /// [`Observations::observe_f64`]; of owners with the same attributes the last one observed wins, and a dropped
    /// owner's value goes away with it.
    Gauge,
}

/// One observable instrument of a scope.
#[derive(Debug, Clone, Copy)]
pub struct Observable {
    /// Its name (`docs/metrics.md` lists every one).
    pub name: &'static str,
    /// Its UCUM unit.
    pub unit: &'static str,
    /// Its description.
    pub description: &'static str,
    /// Counter or up-down counter.
    pub kind: Kind,
}

/// One synchronous `f64` histogram of a scope.
#[derive(Debug, Clone, Copy)]
pub struct HistogramSpec {
    /// Its name.
    pub name: &'static str,
    /// Its UCUM unit.
    pub unit: &'static str,
    /// Its description.
    pub description: &'static str,
    /// Advised bucket boundaries (a view may replace them).
    pub boundaries: &'static [f64],
}

/// An attribute set built once per owner, with the key its points are summed under.
#[derive(Clone)]
pub struct Attributes {
    key: Arc<str>,
    kvs: Arc<[KeyValue]>,
}

impl Attributes {
    /// Builds the set (and its key) once.
    pub fn new(kvs: Vec<KeyValue>) -> Self {
        let mut key = String::new();
        for kv in &kvs {
            key.push_str(kv.key.as_str());
            key.push('\u{1f}');
            key.push_str(&format!("{:?}", kv.value));
            key.push('\u{1e}');
        }
        Attributes {
            key: key.into(),
            kvs: kvs.into(),
        }
    }

    /// The attributes, for a histogram record.
    pub fn as_slice(&self) -> &[KeyValue] {
        &self.kvs
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kvs.iter()).finish()
    }
}

/// Where a [`Source`] reports its values: one instrument at a time (sources report every instrument; the other
/// instruments' values are ignored).
pub struct Observations<'a> {
    instrument: usize,
    sink: &'a mut dyn FnMut(u64, &Attributes),
}

impl Observations<'_> {
    /// The index of the instrument being collected.
    pub fn current(&self) -> usize {
        self.instrument
    }

    /// Reports `value` for the scope's observable `instrument` (its index) with `attrs`.
    #[inline]
    pub fn observe(&mut self, instrument: usize, value: u64, attrs: &Attributes) {
        if instrument == self.instrument {
            (self.sink)(value, attrs);
        }
    }

    /// Reports `value` for the scope's [`Kind::Gauge`] `instrument` with `attrs`.
    #[inline]
    pub fn observe_f64(&mut self, instrument: usize, value: f64, attrs: &Attributes) {
        self.observe(instrument, value.to_bits(), attrs);
    }
}

impl fmt::Debug for Observations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observations")
            .field("instrument", &self.instrument)
            .finish()
    }
}

/// An owner's counters, read at export time.
///
/// `observe` must not call back into the registry (it runs under the registry's lock when a dropped owner's
/// counts are folded).
pub trait Source: Send + Sync + 'static {
    /// Reports the owner's current values (counters cumulative since the owner was built).
    fn observe(&self, out: &mut Observations<'_>);
}

enum Held {
    /// Global scopes: the registry keeps the source until it is the last holder, then folds its counts.
    Strong(Arc<dyn Source>),
    /// An owner with a meter of its own: held weakly, reported while it lives.
    Weak(Weak<dyn Source>),
}

/// The owners of one registry and the retained counts of dropped ones.
#[derive(Default)]
struct Sources {
    held: Vec<Held>,
    /// Per observable: attribute key → (attributes, cumulative count of dropped owners).
    retained: Vec<HashMap<Arc<str>, (Attributes, u64)>>,
    /// How many sources there were after the last sweep (registration sweeps when it doubled).
    swept_len: usize,
}

impl Sources {
    /// Folds the counters of owners nobody else holds into the retained sums; returns the sources to drop once
    /// the lock is released (their drop may record a histogram).
    fn sweep(&mut self, observables: &[Observable]) -> Vec<Arc<dyn Source>> {
        if self.retained.len() < observables.len() {
            self.retained.resize_with(observables.len(), HashMap::new);
        }
        let mut dead = Vec::new();
        let mut kept = Vec::with_capacity(self.held.len());
        for held in self.held.drain(..) {
            match held {
                Held::Strong(source) if Arc::strong_count(&source) == 1 => {
                    for (i, obs) in observables.iter().enumerate() {
                        if obs.kind != Kind::Counter {
                            continue;
                        }
                        let retained = &mut self.retained[i];
                        source.observe(&mut Observations {
                            instrument: i,
                            sink: &mut |value, attrs| {
                                let slot = retained
                                    .entry(attrs.key.clone())
                                    .or_insert_with(|| (attrs.clone(), 0));
                                slot.1 = slot.1.wrapping_add(value);
                            },
                        });
                    }
                    dead.push(source);
                }
                Held::Weak(weak) if weak.strong_count() == 0 => {}
                other => kept.push(other),
            }
        }
        self.held = kept;
        self.swept_len = self.held.len();
        dead
    }
}

/// The observable instruments a registry built on one provider: their handles are kept (their callbacks stay
/// with the provider anyway).
struct Built {
    _observables: Vec<Box<dyn Any + Send + Sync>>,
}

/// What a registry's callbacks and records reach: its sources and its current instruments.
struct Registry {
    name: &'static str,
    version: &'static str,
    observables: &'static [Observable],
    histograms: &'static [HistogramSpec],
    sources: Mutex<Sources>,
    built: Mutex<Option<Built>>,
    /// Bumped whenever the instruments are rebuilt; 0 before the first build.
    generation: AtomicU64,
}

impl Registry {
    const fn new(
        name: &'static str,
        version: &'static str,
        observables: &'static [Observable],
        histograms: &'static [HistogramSpec],
    ) -> Self {
        Registry {
            name,
            version,
            observables,
            histograms,
            sources: Mutex::new(Sources {
                held: Vec::new(),
                retained: Vec::new(),
                swept_len: 0,
            }),
            built: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    fn meter(&self, provider: &dyn MeterProvider) -> Meter {
        provider.meter_with_scope(
            InstrumentationScope::builder(self.name)
                .with_version(self.version)
                .build(),
        )
    }

    fn add(&self, held: Held) {
        let dead = {
            let mut sources = lock(&self.sources);
            sources.held.push(held);
            // Without exports (no provider), nothing else sweeps: keep the list within twice the live owners.
            if sources.held.len() >= 2 * sources.swept_len.max(8) {
                sources.sweep(self.observables)
            } else {
                Vec::new()
            }
        };
        drop(dead);
    }

    /// The summed points of observable `i` for a callback of generation `generation`.
    fn gather(&self, i: usize, generation: u64) -> Vec<(Attributes, u64)> {
        if self.generation.load(Ordering::Acquire) != generation {
            // A callback left on a provider this scope no longer follows.
            return Vec::new();
        }
        let mut sums: HashMap<Arc<str>, (Attributes, u64)> = HashMap::new();
        let (live, dead) = {
            let mut sources = lock(&self.sources);
            let dead = sources.sweep(self.observables);
            if let Some(retained) = sources.retained.get(i) {
                sums.extend(retained.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let live: Vec<Arc<dyn Source>> = sources
                .held
                .iter()
                .filter_map(|held| match held {
                    Held::Strong(s) => Some(s.clone()),
                    Held::Weak(w) => w.upgrade(),
                })
                .collect();
            (live, dead)
        };
        let gauge = self
            .observables
            .get(i)
            .is_some_and(|o| o.kind == Kind::Gauge);
        for source in &live {
            source.observe(&mut Observations {
                instrument: i,
                sink: &mut |value, attrs| {
                    let slot = sums
                        .entry(attrs.key.clone())
                        .or_insert_with(|| (attrs.clone(), 0));
                    slot.1 = if gauge {
                        value
                    } else {
                        slot.1.wrapping_add(value)
                    };
                },
            });
        }
        // Dropped here, outside the lock: a source's drop may record a histogram.
        drop(live);
        drop(dead);
        sums.into_values().collect()
    }

    /// Builds the observable instruments and histograms on `meter`, with callbacks reaching the registry through
    /// `this`, and makes them current.
    fn build(
        &self,
        meter: &Meter,
        this: impl Fn() -> Option<RegistryRef> + Clone + Send + Sync + 'static,
    ) -> Arc<[Histogram<f64>]> {
        // From here on, callbacks on the previous provider report nothing.
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        self.generation.store(generation, Ordering::Release);
        let observables: Vec<Box<dyn Any + Send + Sync>> = self
            .observables
            .iter()
            .enumerate()
            .map(|(i, spec)| -> Box<dyn Any + Send + Sync> {
                let this = this.clone();
                match spec.kind {
                    Kind::Counter => Box::new(
                        meter
                            .u64_observable_counter(spec.name)
                            .with_unit(spec.unit)
                            .with_description(spec.description)
                            .with_callback(move |obs: &dyn AsyncInstrument<u64>| {
                                if let Some(registry) = this() {
                                    for (attrs, value) in registry.get().gather(i, generation) {
                                        obs.observe(value, attrs.as_slice());
                                    }
                                }
                            })
                            .build(),
                    ),
                    Kind::Gauge => Box::new(
                        meter
                            .f64_observable_gauge(spec.name)
                            .with_unit(spec.unit)
                            .with_description(spec.description)
                            .with_callback(move |obs: &dyn AsyncInstrument<f64>| {
                                if let Some(registry) = this() {
                                    for (attrs, value) in registry.get().gather(i, generation) {
                                        obs.observe(f64::from_bits(value), attrs.as_slice());
                                    }
                                }
                            })
                            .build(),
                    ),
                    Kind::UpDownCounter => Box::new(
                        meter
                            .i64_observable_up_down_counter(spec.name)
                            .with_unit(spec.unit)
                            .with_description(spec.description)
                            .with_callback(move |obs: &dyn AsyncInstrument<i64>| {
                                if let Some(registry) = this() {
                                    for (attrs, value) in registry.get().gather(i, generation) {
                                        let value = i64::try_from(value).unwrap_or(i64::MAX);
                                        obs.observe(value, attrs.as_slice());
                                    }
                                }
                            })
                            .build(),
                    ),
                }
            })
            .collect();
        let histograms: Arc<[Histogram<f64>]> = self
            .histograms
            .iter()
            .map(|spec| {
                meter
                    .f64_histogram(spec.name)
                    .with_unit(spec.unit)
                    .with_description(spec.description)
                    .with_boundaries(spec.boundaries.to_vec())
                    .build()
            })
            .collect();
        *lock(&self.built) = Some(Built {
            _observables: observables,
        });
        histograms
    }
}

/// How a callback reaches its registry: a static one, or one owned by an owner with its own meter.
#[derive(Clone)]
enum RegistryRef {
    Static(&'static Registry),
    Owned(Arc<Registry>),
}

impl RegistryRef {
    fn get(&self) -> &Registry {
        match self {
            RegistryRef::Static(r) => r,
            RegistryRef::Owned(r) => r,
        }
    }
}

/// A histogram with one attribute set resolved once: what a [`Recorder`] records into.
pub trait BoundRecord: Send + Sync + 'static {
    /// Records `value` with the attribute set it was bound to.
    fn record(&self, value: f64);
}

/// Binds a provider's histograms to an attribute set, for a provider whose instruments really resolve bound
/// records (its `Histogram::bind` does not drop them); see [`install`].
///
/// The wiring crate implements it (`otlp_telemetry` with opentelemetry's `Histogram::bind`, for its SDK provider),
/// so that the crates of owners use the OpenTelemetry API alone and turn on no feature of it.
pub trait Binder: Send + Sync + 'static {
    /// A handle that records into `histogram` with `attrs`, exactly as `histogram.record(value, attrs)` would.
    fn bind(&self, histogram: &Histogram<f64>, attrs: &[KeyValue]) -> Box<dyn BoundRecord>;
}

/// The plain path: the histogram and the attributes, resolved by the provider on each record.
struct Unbound {
    histogram: Histogram<f64>,
    attrs: Arc<[KeyValue]>,
}

impl BoundRecord for Unbound {
    #[inline]
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attrs);
    }
}

/// A histogram index the scope does not have: records go nowhere.
struct Nowhere;

impl BoundRecord for Nowhere {
    fn record(&self, _value: f64) {}
}

/// The histograms a scope built on one provider, and the binder registered for that provider (if any).
struct Set {
    histograms: Arc<[Histogram<f64>]>,
    binder: Option<Arc<dyn Binder>>,
}

impl Set {
    fn bind(&self, index: usize, attrs: &Attributes) -> Box<dyn BoundRecord> {
        match (self.histograms.get(index), &self.binder) {
            (Some(histogram), Some(binder)) => binder.bind(histogram, attrs.as_slice()),
            (histogram, _) => plain(histogram, attrs),
        }
    }
}

/// The plain path for `histogram` (none: an index the scope does not have) with `attrs`.
fn plain(histogram: Option<&Histogram<f64>>, attrs: &Attributes) -> Box<dyn BoundRecord> {
    match histogram {
        Some(histogram) => Box::new(Unbound {
            histogram: histogram.clone(),
            attrs: attrs.kvs.clone(),
        }),
        None => Box::new(Nowhere),
    }
}

/// The provider [`install`] installed last (held weakly: its allocation, so its address, stays its own) and its
/// binder.
type Installed = (Weak<dyn MeterProvider + Send + Sync>, Arc<dyn Binder>);

/// Held across `install`'s installation and registration, and by a scope looking its provider's binder up, so
/// that a scope that follows the new provider always finds its binder.
static BINDER: Mutex<Option<Installed>> = Mutex::new(None);

/// The binder registered for `provider`, if [`install`] installed it.
fn binder_for(provider: &Arc<dyn MeterProvider + Send + Sync>) -> Option<Arc<dyn Binder>> {
    lock(&BINDER)
        .as_ref()
        .filter(|(installed, _)| installed.as_ptr().cast::<()>().addr() == address(provider))
        .map(|(_, binder)| binder.clone())
}

/// Installs `provider` as the global meter provider, records owners' histograms through `binder` for it, and makes
/// every scope follow it (as [`refresh`] does).
///
/// `binder` is used for this provider only: owners record on any other provider (one installed with
/// `global::set_meter_provider`) through the plain `Histogram::record`, which every provider implements. Call it
/// from the crate that built the provider and knows its instruments bind (`otlp_telemetry::init` and
/// `otlp_telemetry::install_meter_provider` do, for an SDK provider); do not race it with another installation.
pub fn install<P>(provider: P, binder: Arc<dyn Binder>)
where
    P: MeterProvider + Send + Sync + 'static,
{
    {
        let mut installed = lock(&BINDER);
        opentelemetry::global::set_meter_provider(provider);
        let provider = opentelemetry::global::meter_provider();
        *installed = Some((Arc::downgrade(&provider), binder));
    }
    refresh();
}

/// One histogram of an owner with one attribute set: records go through a handle bound once per provider (when
/// the provider was [`install`]ed with a binder) or through the plain `Histogram::record`.
///
/// Build one per histogram and attribute set with [`Registration::recorder`], when the owner is built.
pub struct Recorder {
    index: usize,
    attrs: Attributes,
    target: RecorderTarget,
}

enum RecorderTarget {
    /// The handle for the set of the scope's provider it was made for, made on the first record after a change.
    Global(&'static Scope, Latest<Handle>),
    /// An owner with a meter of its own: one handle for good.
    Own(Box<dyn BoundRecord>),
}

/// A recorder's handle on one histogram set (the set's address tells sets apart: a scope keeps every set it built).
struct Handle {
    set: usize,
    bound: Box<dyn BoundRecord>,
}

impl Recorder {
    /// Records `value`: two atomic loads (the scope's set and this recorder's handle) and the handle's record.
    #[inline]
    pub fn record(&self, value: f64) {
        match &self.target {
            RecorderTarget::Global(scope, latest) => {
                let set = scope.histograms.load(Ordering::Acquire).addr();
                match latest.get() {
                    Some(handle) if handle.set == set => handle.bound.record(value),
                    _ => self.rebind(scope, latest, value),
                }
            }
            RecorderTarget::Own(bound) => bound.record(value),
        }
    }

    /// The scope follows another provider than the handle's (or this is the first record): binds for it.
    #[cold]
    #[inline(never)]
    fn rebind(&self, scope: &'static Scope, latest: &Latest<Handle>, value: f64) {
        let Some(set) = scope.set() else {
            return;
        };
        let address = std::ptr::from_ref(set).addr();
        let handle = latest.refresh(
            |handle| handle.set == address,
            || Handle {
                set: address,
                bound: set.bind(self.index, &self.attrs),
            },
        );
        handle.bound.record(value);
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Recorder");
        d.field("histogram", &self.index)
            .field("attributes", &self.attrs);
        if let RecorderTarget::Global(scope, latest) = &self.target {
            d.field("scope", &scope.registry.name)
                .field("providers_bound", &latest.published());
        }
        d.finish()
    }
}

/// The process-wide registry of one instrumentation scope; see the [module docs](self).
pub struct Scope {
    registry: Registry,
    /// The provider the instruments were built on (held, so that its address is not reused).
    provider: Mutex<Option<Arc<dyn MeterProvider + Send + Sync>>>,
    /// The address of `provider` (0 before the first build): what [`follow`](Scope::follow) compares, unlocked.
    current: AtomicUsize,
    /// Serialises rebuilds, which call into the SDK: callbacks never take it.
    following: Mutex<()>,
    /// The current provider's histogram set, null before the first build: what [`Recorder::record`] reads,
    /// unlocked. It points into a set that `kept` holds.
    histograms: AtomicPtr<Set>,
    /// Every histogram set this scope built, one per provider it followed, kept while the scope lives (a static:
    /// the process), so that a record that read `histograms` just before a rebuild never reaches a freed set. A
    /// provider change is rare (`init`, a test), and a set is a handle per histogram.
    kept: Mutex<Vec<Arc<Set>>>,
    /// Whether this scope is in [`SCOPES`].
    listed: AtomicBool,
}

/// The address of a provider's data, to tell providers apart (the pointer's vtable half is left out: the same
/// object may be reached through different vtables).
fn address(provider: &Arc<dyn MeterProvider + Send + Sync>) -> usize {
    Arc::as_ptr(provider).cast::<()>().addr()
}

/// Every scope that has been used, for [`refresh`].
static SCOPES: Mutex<Vec<&'static Scope>> = Mutex::new(Vec::new());

/// Makes every scope follow the global meter provider now. `otlp_telemetry::init` calls it right after it installs
/// its provider; call it after your own `global::set_meter_provider` to have owners built earlier report at once
/// (they also catch up on their own the next time they are built, read with `stats()`, or wait).
pub fn refresh() {
    let scopes: Vec<&'static Scope> = lock(&SCOPES).clone();
    for scope in scopes {
        scope.follow();
    }
}

impl Scope {
    /// A scope named `name` (the crate's name) at `version`, with its observable instruments and histograms
    /// (referred to by index).
    pub const fn new(
        name: &'static str,
        version: &'static str,
        observables: &'static [Observable],
        histograms: &'static [HistogramSpec],
    ) -> Self {
        Scope {
            registry: Registry::new(name, version, observables, histograms),
            provider: Mutex::new(None),
            current: AtomicUsize::new(0),
            following: Mutex::new(()),
            histograms: AtomicPtr::new(std::ptr::null_mut()),
            kept: Mutex::new(Vec::new()),
            listed: AtomicBool::new(false),
        }
    }

    /// Rebuilds the instruments if the global meter provider is not the one they were built on.
    ///
    /// When it is the same (the common case: owners call this on every wait), this costs the global provider's
    /// read (opentelemetry's lock and `Arc` clone) and one atomic load: no lock of ours.
    pub fn follow(&'static self) {
        let provider = opentelemetry::global::meter_provider();
        if self.current.load(Ordering::Acquire) == address(&provider) {
            return;
        }
        let _following = lock(&self.following);
        if self.current.load(Ordering::Acquire) == address(&provider) {
            return;
        }
        if !self.listed.swap(true, Ordering::Relaxed) {
            lock(&SCOPES).push(self);
        }
        let meter = self.registry.meter(provider.as_ref());
        let histograms = self
            .registry
            .build(&meter, move || Some(RegistryRef::Static(&self.registry)));
        let set = Arc::new(Set {
            histograms,
            binder: binder_for(&provider),
        });
        let first = Arc::as_ptr(&set).cast_mut();
        lock(&self.kept).push(set);
        self.histograms.store(first, Ordering::Release);
        let address = address(&provider);
        // Held from before `current` names it until after `current` names another, so that an address `current`
        // holds is never that of a provider dropped and another allocated in its place.
        let previous = lock(&self.provider).replace(provider);
        self.current.store(address, Ordering::Release);
        drop(previous);
    }

    /// Registers an owner's counters: with the scope's global registry (following the global provider), or, given
    /// a `meter` (tests), with instruments of its own on that meter, which report while the owner lives.
    pub fn register(&'static self, meter: Option<Meter>, source: Arc<dyn Source>) -> Registration {
        let registration = self.link(meter);
        registration.add(source);
        registration
    }

    /// A registration without a source yet, for owners whose source contains the registration: build the owner,
    /// then [`add`](Registration::add) it.
    pub fn link(&'static self, meter: Option<Meter>) -> Registration {
        match meter {
            None => {
                self.follow();
                Registration {
                    target: Target::Global(self),
                }
            }
            Some(meter) => {
                let r = &self.registry;
                let own = Arc::new(Registry::new(
                    r.name,
                    r.version,
                    r.observables,
                    r.histograms,
                ));
                let weak = Arc::downgrade(&own);
                let histograms = own.build(&meter, move || weak.upgrade().map(RegistryRef::Owned));
                Registration {
                    target: Target::Own(own, histograms),
                }
            }
        }
    }

    /// The histogram set of the provider followed (none before the first build).
    #[inline]
    fn set(&'static self) -> Option<&'static Set> {
        let set = self.histograms.load(Ordering::Acquire);
        // SAFETY: a non-null `histograms` points into an `Arc<Set>` built by `follow` and published after it was
        // pushed to `kept`, which never drops or moves a set while the scope lives (a static: the process). The set
        // is never written again.
        unsafe { set.as_ref() }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("name", &self.registry.name)
            .field(
                "generation",
                &self.registry.generation.load(Ordering::Relaxed),
            )
            .finish()
    }
}

enum Target {
    Global(&'static Scope),
    /// The registry (kept alive for its callbacks) and its histograms.
    Own(Arc<Registry>, Arc<[Histogram<f64>]>),
}

/// An owner's link to its scope's instruments: record histograms through it, and call
/// [`follow`](Registration::follow) from `stats()` and slow paths.
pub struct Registration {
    target: Target,
}

impl Registration {
    /// Adds an owner's counters: a global registry holds them until it is their last holder (then keeps their
    /// counts); an owner with its own meter is held weakly. The source must not hold this registration's
    /// histograms' registry strongly in a cycle with itself (a global registration holds nothing of the source).
    pub fn add(&self, source: Arc<dyn Source>) {
        match &self.target {
            Target::Global(scope) => scope.registry.add(Held::Strong(source)),
            Target::Own(own, _) => own.add(Held::Weak(Arc::downgrade(&source))),
        }
    }

    /// Catches up with the global meter provider (a global registration only).
    pub fn follow(&self) {
        if let Target::Global(scope) = self.target {
            scope.follow();
        }
    }

    /// A recorder of the scope's histogram `index` with `attrs`, for an owner that records it often: it binds the
    /// attribute set once per provider where the provider allows it (see [`install`]).
    pub fn recorder(&self, index: usize, attrs: &Attributes) -> Recorder {
        let target = match &self.target {
            Target::Global(scope) => RecorderTarget::Global(scope, Latest::new()),
            Target::Own(_, histograms) => RecorderTarget::Own(plain(histograms.get(index), attrs)),
        };
        Recorder {
            index,
            attrs: attrs.clone(),
            target,
        }
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = match &self.target {
            Target::Global(scope) => ("global", scope.registry.name),
            Target::Own(own, _) => ("own meter", own.name),
        };
        f.debug_struct("Registration")
            .field("scope", &name)
            .field("instruments", &kind)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::{HistogramBuilder, InstrumentProvider, SyncInstrument};

    /// A provider whose histograms count their records; each `set_meter_provider` of one installs a new provider.
    struct Counting(Arc<AtomicU64>);
    struct CountingInstruments(Arc<AtomicU64>);
    struct CountingHistogram(Arc<AtomicU64>);
    impl SyncInstrument<f64> for CountingHistogram {
        fn measure(&self, _value: f64, _attributes: &[KeyValue]) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    impl InstrumentProvider for CountingInstruments {
        fn f64_histogram(&self, _builder: HistogramBuilder<'_, Histogram<f64>>) -> Histogram<f64> {
            Histogram::new(Arc::new(CountingHistogram(self.0.clone())))
        }
    }
    impl MeterProvider for Counting {
        fn meter_with_scope(&self, _scope: InstrumentationScope) -> Meter {
            Meter::new(Arc::new(CountingInstruments(self.0.clone())))
        }
    }

    /// One histogram, index 0, for the test scopes.
    const ONE_HISTOGRAM: &[HistogramSpec] = &[HistogramSpec {
        name: "test.duration",
        unit: "s",
        description: "",
        boundaries: &[],
    }];

    static FOLLOWING: Scope = Scope::new("follow-test", "0", &[], ONE_HISTOGRAM);

    fn generation() -> u64 {
        FOLLOWING.registry.generation.load(Ordering::Relaxed)
    }

    /// Installs a new counting provider; returns its record count.
    fn install() -> Arc<AtomicU64> {
        let records = Arc::new(AtomicU64::new(0));
        opentelemetry::global::set_meter_provider(Counting(records.clone()));
        records
    }

    #[test]
    fn follow_rebuilds_once_per_provider_change_and_records_reach_the_new_provider() {
        let _serial = crate::serial();
        let first_records = install();
        let registration = FOLLOWING.link(None);
        let none = Attributes::new(Vec::new());
        let (histogram, missing) = (
            registration.recorder(0, &none),
            registration.recorder(1, &none),
        );
        let first = generation();
        assert!(first > 0, "linking follows the global provider");
        FOLLOWING.follow();
        FOLLOWING.follow();
        assert_eq!(generation(), first, "the same provider: nothing rebuilt");
        histogram.record(1.0);
        missing.record(1.0); // no such histogram: ignored
        assert_eq!(first_records.load(Ordering::Relaxed), 1);

        let second_records = install();
        histogram.record(1.0);
        assert_eq!(
            first_records.load(Ordering::Relaxed),
            2,
            "not followed yet: the provider built on"
        );
        registration.follow();
        assert_eq!(generation(), first + 1, "a new provider: rebuilt once");
        FOLLOWING.follow();
        assert_eq!(generation(), first + 1);
        histogram.record(1.0);
        assert_eq!(
            second_records.load(Ordering::Relaxed),
            1,
            "the new provider"
        );
        assert_eq!(first_records.load(Ordering::Relaxed), 2);

        let held = lock(&FOLLOWING.provider)
            .as_ref()
            .map(address)
            .expect("holds the provider it follows");
        assert_eq!(held, address(&opentelemetry::global::meter_provider()));
        assert_eq!(FOLLOWING.current.load(Ordering::Relaxed), held);
        assert_eq!(
            lock(&FOLLOWING.kept).len(),
            2,
            "one set per provider followed"
        );
    }

    /// A binder whose handles count their records in `records`, and counts its binds.
    #[derive(Default)]
    struct CountingBinder {
        binds: AtomicU64,
        records: Arc<AtomicU64>,
    }
    struct CountingBound(Arc<AtomicU64>);
    impl BoundRecord for CountingBound {
        fn record(&self, _value: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    impl Binder for CountingBinder {
        fn bind(&self, _histogram: &Histogram<f64>, _attrs: &[KeyValue]) -> Box<dyn BoundRecord> {
            self.binds.fetch_add(1, Ordering::Relaxed);
            Box::new(CountingBound(self.records.clone()))
        }
    }

    static BINDING: Scope = Scope::new("bind-test", "0", &[], ONE_HISTOGRAM);

    #[test]
    fn a_binder_serves_only_the_provider_installed_with_it() {
        let _serial = crate::serial();
        let attrs = Attributes::new(vec![KeyValue::new("k", "v")]);
        let plain_before = install();
        let early = BINDING.link(None).recorder(0, &attrs);
        early.record(1.0);
        assert_eq!(plain_before.load(Ordering::Relaxed), 1, "no binder: plain");

        let binder = Arc::new(CountingBinder::default());
        let unbound = Arc::new(AtomicU64::new(0));
        super::install(Counting(unbound.clone()), binder.clone());
        let late = BINDING.link(None).recorder(0, &attrs);
        for _ in 0..3 {
            early.record(1.0);
            late.record(1.0);
        }
        assert_eq!(
            binder.records.load(Ordering::Relaxed),
            6,
            "owners built before and after the installation record through the binder"
        );
        assert_eq!(unbound.load(Ordering::Relaxed), 0);
        assert_eq!(
            binder.binds.load(Ordering::Relaxed),
            2,
            "one bind per recorder and provider"
        );

        // Another provider (a user's own, whose `bind` might drop records): the plain path, never the binder.
        let plain_after = install();
        BINDING.follow();
        early.record(1.0);
        late.record(1.0);
        assert_eq!(plain_after.load(Ordering::Relaxed), 2);
        assert_eq!(binder.records.load(Ordering::Relaxed), 6);
        assert_eq!(binder.binds.load(Ordering::Relaxed), 2);
        assert_eq!(plain_before.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_recorder_on_an_own_meter_records_plainly() {
        let _serial = crate::serial();
        let records = Arc::new(AtomicU64::new(0));
        let meter = Counting(records.clone()).meter("own");
        let registration = BINDING.link(Some(meter));
        registration
            .recorder(0, &Attributes::new(Vec::new()))
            .record(1.0);
        registration
            .recorder(1, &Attributes::new(Vec::new()))
            .record(1.0); // no such histogram
        assert_eq!(records.load(Ordering::Relaxed), 1);
    }

    static RACED: Scope = Scope::new("race-test", "0", &[], ONE_HISTOGRAM);

    #[test]
    fn records_racing_provider_changes_reach_a_live_set() {
        let _serial = crate::serial();
        let rounds: u64 = if cfg!(miri) { 4 } else { 200 };
        // Every provider, and every handle bound on one, counts into `total`: no record may be lost.
        let total = Arc::new(AtomicU64::new(0));
        opentelemetry::global::set_meter_provider(Counting(total.clone()));
        let registration = RACED.link(None);
        let recorder = registration.recorder(0, &Attributes::new(vec![KeyValue::new("k", 1)]));
        let unattributed = registration.recorder(0, &Attributes::new(Vec::new()));
        let binder = Arc::new(CountingBinder {
            binds: AtomicU64::new(0),
            records: total.clone(),
        });
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 0..rounds {
                    if round % 2 == 0 {
                        super::install(Counting(total.clone()), binder.clone());
                    } else {
                        opentelemetry::global::set_meter_provider(Counting(total.clone()));
                        RACED.follow();
                    }
                }
            });
            for _ in 0..rounds * 4 {
                unattributed.record(1.0);
                recorder.record(1.0);
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), rounds * 8);
        assert!(lock(&RACED.kept).len() >= 2);
        // The last provider has no binder; one more with it, and the recorder binds.
        let binds = binder.binds.load(Ordering::Relaxed);
        super::install(Counting(total.clone()), binder.clone());
        recorder.record(1.0);
        assert_eq!(binder.binds.load(Ordering::Relaxed), binds + 1);
        assert_eq!(total.load(Ordering::Relaxed), rounds * 8 + 1);
    }
}
