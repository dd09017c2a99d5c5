//! The shared bottom of otlp-kit.
//!
//! Every other otlp-kit crate builds on the machinery here, so that it exists, and is checked, once:
//!
//! * per-thread indices, recycled when a thread exits, and per-thread counter blocks summed by readers;
//! * instruments that follow the global OpenTelemetry meter provider, whenever it is installed.
//!
//! Users do not need to depend on this crate: it is public so that the crates above it can share it.

pub mod instruments;
