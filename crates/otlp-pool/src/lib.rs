//! Object pools that are cheap enough to leave instrumented in production.
//!
//! * [`Pool<T>`]: a generic pool. `get()` returns a guard that derefs to `T` and, when dropped, resets the object
//!   and keeps it for the next `get`. Bounded: at most `capacity` idle objects, extra returns are dropped.
//! * [`BufferPool`]: `Vec<u8>` buffers, cleared on return, dropped if they grew past a limit.
//! * [`ByteSlicePool`]: byte buffers in power-of-two size classes (64 B to 64 KiB by default).
//! * [`buffers()`] and [`byte_slices()`]: process-wide defaults, created on first use.
//! * [`OwnedPooled::freeze`]: a pooled buffer handed on as [`bytes::Bytes`] without a copy (to hyper, say); it goes
//!   back to its pool when the last clone drops, on any thread.
//!
//! Every pool counts gets, misses, puts, discards and idle objects. [`Pool::stats`] returns them as a plain
//! [`PoolStats`]; the same numbers are exported as OpenTelemetry metrics (scope `otlp-pool`, see [`metrics`](crate#metrics)).
//!
//! # How it is fast
//! Each thread that uses a pool gets its own cache: a *hot slot* holding the object it returned last, then a small
//! stack of idle objects and a little credit of free slots. A `get` followed by a `put` on the same thread swaps a
//! pointer in and out of the hot slot: no lock, no atomic read-modify-write, no allocation (objects live in boxes
//! the pool keeps, so a guard is two pointers). A thread finds its cache through a small per-thread index into a
//! per-pool array (one thread-local load). Threads exchange objects through a shared overflow store in batches,
//! and one budget of `capacity` slots bounds the idle objects of all threads together. Counters live in each
//! thread's cache and are summed only when someone asks.
//!
//! Threads beyond the array's size (256) and threads that are exiting use the shared store directly: correct, just
//! slower. A cache holds at most `min(thread_cache, capacity / 4)` slots; pools with a capacity below 4 have no
//! per-thread caches at all.
//!
//! # Example
//! ```
//! use otlp_pool::Pool;
//! use std::sync::Arc;
//!
//! let pool = Arc::new(
//!     Pool::builder("encoders", || String::with_capacity(256))
//!         .capacity(128)
//!         .reset(String::clear)
//!         .prefill(4)
//!         .build()?,
//! );
//!
//! let mut s = pool.get();
//! s.push_str("hello");
//! drop(s);
//!
//! // An owned guard can move to another thread or task.
//! let owned = pool.get_owned();
//! let handle = std::thread::spawn(move || owned.len());
//! assert_eq!(handle.join().unwrap(), 0); // reset ran
//!
//! let stats = pool.stats();
//! assert_eq!(stats.gets, 2);
//! assert_eq!(stats.misses, 0); // prefilled
//! # Ok::<(), otlp_pool::BuildError>(())
//! ```
//!
//! # Metrics
//! Observable instruments on the global meter (or the builder's `meter`), read at export time:
//!
//! | instrument | kind | unit | attributes |
//! |---|---|---|---|
//! | `pool.gets` | counter | `{get}` | `pool.name` (+ `pool.size_class`) |
//! | `pool.misses` | counter | `{get}` | same |
//! | `pool.puts` | counter | `{object}` | same |
//! | `pool.discards` | counter | `{object}` | same |
//! | `pool.idle` | up-down counter | `{object}` | same |
//!
//! The instruments are registered when a pool is built, so install the meter provider first.

mod buffer;
mod builder;
mod byte_slice;
mod defaults;
mod error;
mod freeze;
mod guard;
mod local;
mod metrics;
mod pool;
mod reset;
mod shared;
mod stats;
mod sync;

pub use buffer::{
    BufferPool, BufferPoolBuilder, DEFAULT_INITIAL_CAPACITY, DEFAULT_MAX_RETAINED_CAPACITY,
};
pub use builder::{DEFAULT_CAPACITY, DEFAULT_THREAD_CACHE, PoolBuilder};
pub use byte_slice::{
    ByteSlice, ByteSlicePool, ByteSlicePoolBuilder, DEFAULT_MAX_CLASS, DEFAULT_MIN_CLASS,
};
pub use defaults::{buffers, byte_slices};
pub use error::BuildError;
pub use guard::{OwnedPooled, Pooled};
pub use pool::Pool;
pub use reset::Reset;
pub use stats::PoolStats;
