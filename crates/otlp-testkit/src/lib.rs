//! Test support for otlp-kit's own tests, benches and `cargo xtask`: the real programs they run beside our code
//! (`redis-server`, Prometheus) and the demo service as a process, each started on a free loopback port and
//! stopped by PID when its handle drops.
//!
//! A dev-dependency only (`publish = false`): no library crate of the workspace depends on it normally, and
//! `cargo package` strips it from a published crate's manifest (its workspace entry has a path and no version).
//!
//! ```no_run
//! let redis = otlp_testkit::Redis::start()?;
//! println!("{}", redis.url()); // redis://127.0.0.1:<port>/
//! drop(redis); // killed by PID and reaped
//! # Ok::<(), otlp_testkit::Error>(())
//! ```

mod demo;
mod error;
mod process;
mod prometheus;
mod redis;

pub use demo::Demo;
pub use error::Error;
pub use process::Process;
pub use prometheus::{Prometheus, encode, values};
pub use redis::Redis;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it for a listener we closed at once).
pub fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::new(format!("no free loopback port: {e}")))
}
