//! Loom models of the pool, on the shipped code: the slot budget (`free`, an atomic) and the overflow store (a
//! mutex) that together bound the idle objects, and the per-thread caches in front of them (hot slot, stack and
//! credit, found through otlp-core's thread index, whose thread-locals are loom's), including a thread's exit
//! handing its cache back. Run with `RUSTFLAGS="--cfg otlp_loom" cargo test --release -p otlp-pool --test loom`
//! (`cargo xtask verify` does).
//!
//! Pools with a capacity below 4 have no caches (every operation takes the shared path); the models with capacity
//! 4 (one slot per thread: the hot slot) and 8 (hot slot, stack and credit, batches of one) run the caches. Loom
//! runs thread-local destructors outside its execution, so each model thread ends with
//! `thread_index::exit_for_loom` (the same code a thread's exit runs); a model's main thread never uses the pool.
#![cfg(otlp_loom)]

// `std::sync::Arc`: `get_owned` takes the std `Arc` the pool API uses; the protocol inside is loom-checked.
use loom::thread;
use otlp_core::thread_index;
use otlp_pool::{OwnedPooled, Pool};
use std::sync::Arc;

fn pool(capacity: usize, thread_cache: usize, prefill: usize) -> Arc<Pool<u32>> {
    Arc::new(
        Pool::builder("loom", || 0u32)
            .capacity(capacity)
            .thread_cache(thread_cache)
            .prefill(prefill)
            .reset(|n| *n = 0)
            // An explicit meter keeps the pool out of the process-wide instrument registry: that registry outlives
            // a model's execution, and loom atomics must not (the next execution would read them).
            .meter(opentelemetry::global::meter("loom"))
            .build()
            .unwrap(),
    )
}

/// Runs `f` on a new model thread that then exits as a real thread does (see the module docs).
fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        let out = f();
        thread_index::exit_for_loom();
        out
    })
}

/// At rest (every model thread joined, so every cache handed back): counts add up, idle never exceeds capacity,
/// and a new thread can take every idle object and give them all back without a discard (no slot leaked).
fn check_at_rest(pool: &Arc<Pool<u32>>, in_use: u64) {
    let stats = pool.stats();
    assert!(stats.idle <= stats.capacity, "{stats:?}");
    assert_eq!(stats.gets, stats.misses + stats.reuses());
    assert_eq!(
        stats.gets,
        stats.puts + stats.discards + stats.detached + in_use,
        "{stats:?}"
    );
    let pool = pool.clone();
    spawn(move || {
        let drained: Vec<_> = std::iter::from_fn(|| pool.try_get()).collect();
        assert_eq!(
            drained.len() as u64,
            stats.idle,
            "idle objects that cannot be taken: {stats:?}"
        );
        assert!(drained.iter().all(|o| **o == 0), "reset ran");
        let discards = pool.stats().discards;
        drop(drained);
        assert_eq!(
            pool.stats().discards,
            discards,
            "a slot leaked: {:?}",
            pool.stats()
        );
    })
    .join()
    .unwrap();
}

// ---- The shared path (capacity below 4: no caches) ----

#[test]
fn concurrent_get_put_never_exceeds_capacity() {
    loom::model(|| {
        let pool = pool(1, 32, 0);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                spawn(move || {
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
        check_at_rest(&pool, 0);
    });
}

#[test]
fn one_idle_object_goes_to_exactly_one_taker() {
    loom::model(|| {
        let pool = pool(1, 32, 1);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                spawn(move || pool.try_get().map(|o| o.detach()).is_some())
            })
            .collect();
        let taken = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&t| t)
            .count();
        assert_eq!(taken, 1);
        assert_eq!(pool.stats().idle, 0);
        check_at_rest(&pool, 0);
    });
}

#[test]
fn returns_racing_gets_keep_the_budget() {
    loom::model(|| {
        let pool = pool(2, 32, 1);
        let p1 = pool.clone();
        // The prefilled object, taken on one thread and returned on another while a third gets and puts.
        let held = spawn(move || p1.get_owned()).join().unwrap();
        let returner = spawn(move || drop(held));
        let p2 = pool.clone();
        let getter = spawn(move || {
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
        check_at_rest(&pool, 0);
    });
}

// ---- The per-thread caches (capacity 4 and up) ----

/// Gets an object through this thread's cache and puts it back (reserving the hot slot), then gets it again on
/// the fast path and returns the guard still held: the caller's thread will put it.
fn get_put_get(pool: &Arc<Pool<u32>>) -> OwnedPooled<u32> {
    let mut first = pool.get_owned();
    *first += 1;
    drop(first);
    let mut again = pool.get_owned();
    *again += 1;
    again
}

/// One object is got on a thread (through its hot slot, which then stays reserved while the object is out) and put
/// on another, while a third thread gets, puts and gets again through its own hot slot; all exit, handing their
/// caches back. Capacity 4 gives each thread one cache slot: the hot slot.
#[test]
fn hot_slot_get_on_one_thread_put_on_another() {
    loom::model(|| {
        let pool = pool(4, 32, 0);
        let p = pool.clone();
        let held = spawn(move || get_put_get(&p)).join().unwrap();
        let putter = spawn(move || drop(held));
        let p = pool.clone();
        let cycler = spawn(move || drop(get_put_get(&p)));
        putter.join().unwrap();
        cycler.join().unwrap();
        let stats = pool.stats();
        assert_eq!(stats.gets, 4);
        assert_eq!(
            stats.discards, 0,
            "capacity 4 keeps both objects: {stats:?}"
        );
        assert_eq!(
            stats.idle, stats.misses,
            "every object made is idle again: {stats:?}"
        );
        check_at_rest(&pool, 0);
    });
}

/// A thread exits while another works: the exiting thread's cache (its hot slot object, with its slot) goes back
/// to the shared store, where the other thread, or the checker after both, finds it. Capacity 8 with caches of 2
/// slots: the hot slot, then credit and the stack (batches of one).
#[test]
fn a_thread_exit_hands_its_cache_back_while_another_thread_works() {
    loom::model(|| {
        let pool = pool(8, 2, 0);
        let p = pool.clone();
        let exiting = spawn(move || {
            let (a, b) = (p.get(), p.get());
            drop(a); // the hot slot
            drop(b); // the stack, on credit
        });
        let p = pool.clone();
        let worker = spawn(move || {
            let a = p.get();
            drop(a);
            // Whatever this finds, it came from the pool or the factory, and was reset.
            let b = p.get();
            assert_eq!(*b, 0);
        });
        exiting.join().unwrap();
        worker.join().unwrap();
        let stats = pool.stats();
        assert_eq!(stats.gets, 4);
        assert_eq!(stats.discards, 0, "{stats:?}");
        assert_eq!(stats.idle, stats.misses, "{stats:?}");
        check_at_rest(&pool, 0);
    });
}

/// A thread index, and with it a cache, passes from an exited thread to the next one, which reuses the objects
/// the first left there (now in the shared store) while a concurrent thread races it for them.
#[test]
fn an_exited_threads_cache_passes_to_the_next_thread() {
    loom::model(|| {
        let pool = pool(4, 32, 0);
        let p = pool.clone();
        spawn(move || drop(p.get())).join().unwrap();
        let p = pool.clone();
        let next = spawn(move || drop(get_put_get(&p)));
        let p = pool.clone();
        let racer = spawn(move || p.try_get().is_some());
        next.join().unwrap();
        let raced = racer.join().unwrap();
        let stats = pool.stats();
        assert_eq!(stats.gets, 3 + u64::from(raced), "{stats:?}");
        // The first object serves everyone unless the racer held it when the next thread asked.
        assert!(stats.misses <= 2, "{stats:?}");
        assert_eq!(stats.idle, stats.misses, "{stats:?}");
        check_at_rest(&pool, 0);
    });
}
