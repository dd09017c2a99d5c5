//! Loom models of the crate's own atomic protocol: the waiting gauge (the per-thread counters behind `stats()` and
//! the metrics are otlp-core's, checked by its models). Run with `RUSTFLAGS="--cfg otlp_loom" cargo test --release -p otlp-sync --test loom`.
#![cfg(otlp_loom)]

use loom::sync::Arc;
use loom::thread;
use otlp_sync::__loom::Gauge;

/// Waiters entering and leaving from two threads leave the gauge at zero, and a reader never sees more waiters
/// than entered.
#[test]
fn waiting_gauge_balances() {
    loom::model(|| {
        let g = Arc::new(Gauge::new());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || {
                    g.incr();
                    assert!(g.get() <= 2);
                    g.decr();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(g.get(), 0);
    });
}
