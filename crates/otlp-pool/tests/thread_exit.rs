//! Capacity is not stranded in dead threads: after a burst of short-lived threads (tokio's blocking pool and
//! thread-per-connection servers make them all day), a working set within capacity is served from the pool.

use otlp_pool::{Pool, PoolStats};
use std::sync::{Barrier, Mutex};

fn pool(capacity: usize) -> Pool<Vec<u8>> {
    Pool::builder("burst", || Vec::with_capacity(64))
        .capacity(capacity)
        .reset(Vec::clear)
        .build()
        .unwrap()
}

/// Runs `f` on `threads` threads and joins each (a scope's end alone does not wait for the threads'
/// thread-local destructors, which is where a thread hands its cache back).
fn on_threads(threads: usize, f: impl Fn() + Sync) {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(&f)).collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// `threads` threads start together, each takes one object, gives it back and exits.
fn burst(pool: &Pool<Vec<u8>>, threads: usize) {
    let barrier = Barrier::new(threads);
    on_threads(threads, || {
        barrier.wait();
        drop(pool.get());
    });
}

fn delta(after: PoolStats, before: PoolStats) -> (u64, u64, u64, u64) {
    (
        after.gets - before.gets,
        after.misses - before.misses,
        after.puts - before.puts,
        after.discards - before.discards,
    )
}

/// Every idle object the pool reports can be taken by a thread that never used the pool before.
fn assert_idle_reachable(pool: &Pool<Vec<u8>>, what: &str) {
    let idle = pool.stats().idle;
    let taken = std::thread::scope(|s| {
        s.spawn(|| {
            let held: Vec<_> = std::iter::from_fn(|| pool.try_get()).collect();
            held.len() as u64
        })
        .join()
        .unwrap()
    });
    // The taker's own cache keeps what it gave back, until it exits: then it is all shared again.
    assert_eq!(
        taken,
        idle,
        "{what}: idle objects stranded: {:?}",
        pool.stats()
    );
    assert_eq!(pool.stats().idle, idle, "{what}");
}

/// After a burst of `burst_threads`, `workers` threads each hold one object at a time for `ROUNDS` gets and puts:
/// exact counts, every idle object reachable, and under 1 % misses and discards.
fn burst_then_work(capacity: usize, burst_threads: usize, workers: usize, run: usize) {
    const ROUNDS: u64 = 10_000;
    let what = format!("capacity {capacity}, burst {burst_threads}, {workers} workers, run {run}");
    let pool = pool(capacity);
    burst(&pool, burst_threads);
    let after_burst = pool.stats();
    assert_eq!(after_burst.gets, burst_threads as u64, "{what}");
    assert_eq!(
        after_burst.puts + after_burst.discards,
        burst_threads as u64,
        "{what}"
    );
    assert_idle_reachable(&pool, &what);

    let before = pool.stats();
    on_threads(workers, || {
        for _ in 0..ROUNDS {
            let mut v = pool.get();
            v.push(1);
        }
    });
    let (gets, misses, puts, discards) = delta(pool.stats(), before);
    let total = workers as u64 * ROUNDS;
    assert_eq!(gets, total, "{what}");
    assert_eq!(puts + discards, total, "{what}: every get came back");
    assert!(
        misses * 100 < total && discards * 100 < total,
        "{what}: {misses} misses and {discards} discards of {total} gets"
    );
    assert_idle_reachable(&pool, &what);
}

#[test]
fn a_working_set_is_served_from_the_pool_after_any_burst() {
    for capacity in [4, 5, 6, 7, 16, 64, 256, 1024] {
        for burst_threads in [40, 100, 200] {
            for run in 0..3 {
                // A quarter of the capacity in use (the threads' caches have room to spare) ...
                burst_then_work(capacity, burst_threads, (capacity / 4).min(8), run);
            }
        }
    }
}

#[test]
fn a_working_set_of_the_whole_capacity_is_served_after_any_burst() {
    // ... and as many threads as the pool keeps objects (up to 8), each holding one: every slot of the budget is
    // needed. Capacities 1-3 have no caches, 4-7 a hot slot only (one slot per thread), 8-15 two or three slots.
    for capacity in 1..=16 {
        for burst_threads in [40, 200] {
            for run in 0..2 {
                burst_then_work(capacity, burst_threads, capacity.min(8), run);
            }
        }
    }
}

#[test]
fn the_default_buffer_pool_recovers_from_a_burst() {
    // `buffers()` is process-wide: measure this test's own deltas with a pool of the same shape.
    let pool = otlp_pool::BufferPool::builder("burst.buffers")
        .build()
        .unwrap();
    let barrier = Barrier::new(100);
    on_threads(100, || {
        barrier.wait();
        drop(pool.get());
    });
    let before = pool.stats();
    on_threads(8, || {
        for _ in 0..10_000 {
            pool.get().push(1);
        }
    });
    let (gets, misses, puts, discards) = delta(pool.stats(), before);
    assert_eq!((gets, puts + discards), (80_000, 80_000));
    assert!(
        misses < 800 && discards < 800,
        "{misses} misses, {discards} discards"
    );
}

#[test]
fn sequential_short_lived_threads_reuse_the_same_objects() {
    // Each thread exits before the next starts: with the exiting thread's objects handed back, every thread after
    // the first reuses them, whichever index it gets.
    let pool = pool(64);
    let gate = Mutex::new(());
    for _ in 0..50 {
        on_threads(1, || {
            let _turn = gate.lock().unwrap();
            let held: Vec<_> = (0..4).map(|_| pool.get()).collect();
            drop(held);
        });
    }
    let s = pool.stats();
    assert_eq!((s.gets, s.misses, s.discards), (200, 4, 0), "{s:?}");
}
