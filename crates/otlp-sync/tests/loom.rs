//! Loom models of the crate's own atomic protocol: the per-thread counters behind `stats()` and the metrics, and the
//! waiting gauge. Run with `RUSTFLAGS="--cfg otlp_loom" cargo test --release -p otlp-sync --test loom`.
#![cfg(otlp_loom)]

use loom::sync::Arc;
use loom::thread;
use otlp_sync::__loom::{Counters, Gauge};

/// Adds from three threads, each on its own block, all land: the sum after joining is exact.
#[test]
fn concurrent_adds_are_all_counted() {
    loom::model(|| {
        let c = Arc::new(Counters::<2>::new());
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let c = c.clone();
                thread::spawn(move || {
                    c.incr(0);
                    c.add(1, t + 1);
                })
            })
            .collect();
        c.incr(0);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.snapshot(), [3, 3]);
    });
}

/// A reader's successive snapshots never go backwards while writers add: counters exported as monotonic sums
/// stay monotonic.
#[test]
fn snapshots_never_go_backwards() {
    loom::model(|| {
        let c = Arc::new(Counters::<1>::new());
        let writer = {
            let c = c.clone();
            thread::spawn(move || {
                c.incr(0);
                c.incr(0);
            })
        };
        let reader = {
            let c = c.clone();
            thread::spawn(move || {
                let first = c.snapshot()[0];
                let second = c.snapshot()[0];
                assert!(second >= first, "{second} < {first}");
                assert!(second <= 3);
            })
        };
        c.incr(0);
        writer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(c.snapshot(), [3]);
    });
}

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
