//! The synchronisation primitives the crate's own atomic protocols use: `std` ones normally, `loom` ones under
//! `--cfg otlp_loom` (a cfg name of our own, so that a user's `--cfg loom` does not switch our internals).

#[cfg(not(otlp_loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(otlp_loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
