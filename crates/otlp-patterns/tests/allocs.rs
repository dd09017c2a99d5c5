//! Allocation counts of the fan-out's per-call path and of a worker pool's task, with a counting global allocator
//! (this test binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use otlp_patterns::{FanOut, WorkerPool};

struct Counting;

thread_local! {
    /// Allocations made by this thread (the test harness's own threads are not counted).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: a thread being torn down has no counter left, and is not measured.
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes through `alloc` above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// With its per-call limit (no semaphore), a call whose items finish on their first poll allocates a few blocks per
/// call (its result vector) and nothing per item; items that wait cost at most one allocation each (at this
/// concurrency, 8, one block of up to 7 slots a call, reused by later items; in wider calls, a `FuturesUnordered`
/// node).
#[test]
fn per_call_fan_out_allocates_at_most_one_per_item() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let fan = FanOut::new("allocs", 8).unwrap();
    rt.block_on(async {
        // Warm-up: the thread's counters and the runtime's own first allocations.
        let _ = fan.run(0..64u64, |i| async move { i }).await;
        let before = allocs();
        let out = fan.run(0..10_000u64, |i| async move { i }).await;
        let ready = allocs() - before;
        assert_eq!(out.len(), 10_000);
        drop(out);
        eprintln!("ready items: {ready} allocations per 10,000");
        // A few per call (the result vector, first-use blocks), none per item.
        assert!(ready <= 16, "{ready} allocations for 10,000 ready items");

        let before = allocs();
        let out = fan
            .run(0..10_000u64, |i| async move {
                tokio::task::yield_now().await;
                i
            })
            .await;
        let waiting = allocs() - before;
        assert_eq!(out.len(), 10_000);
        eprintln!("waiting items: {waiting} allocations per 10,000");
        assert!(
            waiting <= 10_000 + 4,
            "{waiting} allocations for 10,000 waiting items"
        );
    });
}

/// Allocations per operation of `batch(n)` (n operations): after a warm-up, the difference of a 64 and a 32 batch,
/// over 32, so that a batch's fixed costs (a vector of handles) cancel out.
async fn per_op<F: std::future::Future<Output = ()>>(mut batch: impl FnMut(u64) -> F) -> f64 {
    batch(64).await;
    let a = allocs();
    batch(32).await;
    let b = allocs();
    batch(64).await;
    let c = allocs();
    ((c - b) as f64 - (b - a) as f64) / 32.0
}

/// A submitted task is one allocation, shared by its job and its handle (the future, its span, the result slot),
/// and an `execute`d one too: on a current-thread runtime every allocation of submitting, running and awaiting
/// lands on this thread's count.
#[test]
fn a_submitted_task_is_one_allocation() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = WorkerPool::builder("allocs")
            .workers(1)
            .queue(64)
            .build()
            .unwrap();
        let run = |n: u64| {
            let pool = &pool;
            async move {
                let mut handles = Vec::with_capacity(n as usize);
                for i in 0..n {
                    handles.push(pool.submit(async move { i }).await.unwrap());
                }
                for h in handles {
                    std::hint::black_box(h.await.unwrap());
                }
            }
        };
        assert_eq!(per_op(run).await, 1.0, "allocations per submitted task");
        let execute = |n: u64| {
            let pool = &pool;
            async move {
                for i in 0..n {
                    pool.execute(async move {
                        std::hint::black_box(i);
                    })
                    .await
                    .unwrap();
                }
                while pool.stats().queued + pool.stats().active > 0 {
                    tokio::task::yield_now().await;
                }
            }
        };
        assert_eq!(per_op(execute).await, 1.0, "allocations per executed task");
        pool.shutdown_now().await;
    });
}
