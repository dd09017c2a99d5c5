//! Loom models of the pool's cross-thread protocol: the slot budget (`free`, an atomic) and the overflow store
//! (a mutex), which together bound the idle objects. Run with
//! `RUSTFLAGS="--cfg otlp_loom" cargo test --release -p otlp-pool --test loom` (`cargo xtask verify` does).
//!
//! Loom builds compile the per-thread caches out (see `src/local.rs`), so every get and put below goes through the
//! shared protocol that loom explores.
#![cfg(otlp_loom)]

// `std::sync::Arc`: `get_owned` takes the std `Arc` the pool API uses; the protocol inside is loom-checked.
use loom::thread;
use otlp_pool::Pool;
use std::sync::Arc;

fn pool(capacity: usize, prefill: usize) -> Arc<Pool<u32>> {
    Arc::new(
        Pool::builder("loom", || 0u32)
            .capacity(capacity)
            .prefill(prefill)
            // An explicit meter keeps the pool out of the process-wide instrument registry: that registry outlives
            // a model's execution, and loom atomics must not (the next execution would read them).
            .meter(opentelemetry::global::meter("loom"))
            .build()
            .unwrap(),
    )
}

/// Every object that is idle at rest can be taken again, and idle never exceeds capacity.
fn check_at_rest(pool: &Pool<u32>) {
    let stats = pool.stats();
    assert!(stats.idle <= stats.capacity, "{stats:?}");
    assert_eq!(stats.gets, stats.misses + stats.reuses());
    let drained: Vec<_> = std::iter::from_fn(|| pool.try_get()).collect();
    assert_eq!(
        drained.len() as u64,
        stats.idle,
        "idle objects that cannot be taken: {stats:?}"
    );
    // Give them all back: all slots must be free again, so none is discarded.
    let discards = pool.stats().discards;
    drop(drained);
    assert_eq!(
        pool.stats().discards,
        discards,
        "a slot leaked: {:?}",
        pool.stats()
    );
}

#[test]
fn concurrent_get_put_never_exceeds_capacity() {
    loom::model(|| {
        let pool = pool(1, 0);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let mut obj = pool.get();
                    *obj += 1;
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = pool.stats();
        assert_eq!(stats.gets, 2);
        assert_eq!(
            stats.puts + stats.discards,
            2,
            "every object came back: {stats:?}"
        );
        check_at_rest(&pool);
    });
}

#[test]
fn one_idle_object_goes_to_exactly_one_taker() {
    loom::model(|| {
        let pool = pool(1, 1);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || pool.try_get().map(|o| o.detach()).is_some())
            })
            .collect();
        let taken = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&t| t)
            .count();
        assert_eq!(taken, 1);
        assert_eq!(pool.stats().idle, 0);
        check_at_rest(&pool);
    });
}

#[test]
fn returns_racing_gets_keep_the_budget() {
    loom::model(|| {
        let pool = pool(2, 1);
        let held = pool.get_owned(); // the prefilled object
        let returner = thread::spawn(move || drop(held));
        let p2 = pool.clone();
        let getter = thread::spawn(move || {
            let a = p2.get();
            drop(a);
        });
        returner.join().unwrap();
        getter.join().unwrap();
        let stats = pool.stats();
        assert_eq!(stats.gets, 2);
        assert_eq!(
            stats.discards, 0,
            "capacity 2 holds both objects: {stats:?}"
        );
        check_at_rest(&pool);
    });
}
