//! Loom models of otlp-core's atomic protocols, on the shipped code (its `src/sync.rs` switches to loom, and the
//! thread index lives in `loom::thread_local!`s): per-thread counter blocks, the shared block of threads without a
//! slot, the hand-over of a thread's index (and with it its blocks) when it exits, and the publication of the
//! latest value that histogram recorders read without a lock (`Latest`). Run with
//! `RUSTFLAGS="--cfg otlp_loom" cargo test --release -p otlp-core --test loom`.
//!
//! Loom runs thread-local destructors outside its execution, where the registry's loom mutex cannot be taken, so
//! each model thread ends with [`exit`] (`thread_index::exit_for_loom`: the same code a thread's exit runs, which
//! tells the owners and gives the index back). A model's main thread never takes an index.
#![cfg(otlp_loom)]

use loom::sync::Arc;
use loom::thread;
use otlp_core::{Counters, thread_index};

/// Runs `f` on a new model thread that then exits as a real thread does (see the module docs).
fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        let out = f();
        thread_index::exit_for_loom();
        out
    })
}

/// Adds from two threads, each on its own block, all land: the sum after joining is exact.
#[test]
fn concurrent_adds_are_all_counted() {
    loom::model(|| {
        let c = Arc::new(Counters::<2, 4>::new());
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let c = c.clone();
                spawn(move || {
                    c.incr(0);
                    c.add(1, t + 1);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.snapshot(), [2, 3]);
    });
}

/// With one slot, the second thread counts in the shared block: nothing is lost either way.
#[test]
fn threads_without_a_slot_share_the_atomic_block() {
    loom::model(|| {
        let c = Arc::new(Counters::<1, 1>::new());
        let handles: Vec<_> = (1..=2)
            .map(|n| {
                let c = c.clone();
                spawn(move || c.add(0, n))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.snapshot(), [3]);
    });
}

/// A reader's successive snapshots never go backwards while writers add: counters exported as monotonic sums
/// stay monotonic.
#[test]
fn snapshots_never_go_backwards() {
    loom::model(|| {
        let c = Arc::new(Counters::<1, 4>::new());
        let writer = {
            let c = c.clone();
            spawn(move || {
                c.incr(0);
                c.incr(0);
            })
        };
        let first = c.snapshot()[0];
        let second = c.snapshot()[0];
        assert!(second >= first, "{second} < {first}");
        writer.join().unwrap();
        assert_eq!(c.snapshot(), [2]);
    });
}

/// A thread that exits gives its index (and its block) to the next thread, which keeps counting in the same block
/// without losing the first thread's counts, while a reader sums concurrently.
#[test]
fn an_exited_threads_index_and_block_pass_to_the_next_thread() {
    loom::model(|| {
        let c = Arc::new(Counters::<1, 4>::new());
        let first = {
            let c = c.clone();
            spawn(move || {
                c.incr(0);
                thread_index::current()
            })
        };
        let reader = {
            let c = c.clone();
            spawn(move || assert!(c.snapshot()[0] <= 2))
        };
        let index = first.join().unwrap();
        let second = {
            let c = c.clone();
            spawn(move || {
                c.incr(0);
                thread_index::current()
            })
        };
        let reused = second.join().unwrap();
        reader.join().unwrap();
        assert!(index < thread_index::DEAD);
        // The reader may hold a smaller index (smallest first), so the second writer reuses the first's index
        // unless the reader still held its own when the second writer asked.
        assert!(reused == index || reused < 3, "{reused} vs {index}");
        assert_eq!(c.snapshot(), [2]);
    });
}

/// A value written before it is published, for the `Latest` model: loom checks that a reader's access to it
/// happens after its initialisation.
struct Written(loom::cell::UnsafeCell<usize>);

// SAFETY: the cell is written only while the value is built, before it is shared; readers only read it.
unsafe impl Sync for Written {}

impl Written {
    /// Built with a tracked write (loom does not track the cell's creation).
    fn new(v: usize) -> Self {
        let w = Written(loom::cell::UnsafeCell::new(0));
        // SAFETY: not shared yet.
        w.0.with_mut(|p| unsafe { *p = v });
        w
    }

    fn read(&self) -> usize {
        // SAFETY: see the `Sync` impl: no writer after construction.
        self.0.with(|v| unsafe { *v })
    }
}

/// A reader racing two replacements (one of them racing a second publisher that finds it fresh) sees either
/// nothing or a fully initialised value, never one going back; afterwards the last one is current and every one is
/// kept.
#[test]
fn latest_publishes_initialised_values_once() {
    use otlp_core::__loom::Latest;
    loom::model(|| {
        let latest: Arc<Latest<Written>> = Arc::new(Latest::new());
        let publishers: Vec<_> = (0..2)
            .map(|_| {
                let latest = latest.clone();
                thread::spawn(move || {
                    let v = latest.refresh(|v| v.read() == 1, || Written::new(1)).read();
                    assert_eq!(v, 1);
                })
            })
            .collect();
        let mut last = 0;
        for _ in 0..2 {
            // Loom explores a spawned thread's run before this load only past a yield.
            thread::yield_now();
            if let Some(v) = latest.get() {
                let v = v.read();
                assert!(v >= last);
                last = v;
            }
        }
        for p in publishers {
            p.join().unwrap();
        }
        let v = latest.refresh(|v| v.read() == 2, || Written::new(2)).read();
        assert_eq!(v, 2);
        assert_eq!(
            latest.published(),
            2,
            "the racing publishers made one value"
        );
    });
}
