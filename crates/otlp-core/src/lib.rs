//! The shared bottom of otlp-kit.
//!
//! Every other otlp-kit crate builds on the machinery here, so that it exists, and is checked, once:
//!
//! * per-thread indices, recycled when a thread exits ([`thread_index`]), per-thread slots found by them
//!   ([`PerThread`]) and per-thread counter blocks summed by readers ([`CounterBlock`], [`Counters`]);
//! * instruments that follow the global OpenTelemetry meter provider, whenever it is installed.
//!
//! Users do not need to depend on this crate: it is public so that the crates above it can share it.
//!
//! The atomic protocols here go through `src/sync.rs`, which switches to loom under `--cfg otlp_loom`: the loom
//! models in `tests/loom.rs` run this same code.

mod counters;
pub mod instruments;
mod latest;
mod per_thread;
mod sync;
pub mod thread_index;

pub use counters::{CounterBlock, Counters, OWN_BLOCKS};
pub use per_thread::PerThread;

/// What `tests/loom.rs` checks beside the public API.
#[cfg(otlp_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::latest::Latest;
}

/// The lib's tests share one process-wide thread-index registry, and freed indices are reused smallest first: a
/// test that checks what a thread gave back must not race another test's thread taking it. Every lib test runs
/// under this lock.
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
