//! Allocation counts of the hot paths, with a counting global allocator (this test binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use otlp_sync::KeyedRateLimiter;

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

/// A `String`-keyed limiter checked by `&str` allocates only for a new key: a known key costs nothing.
#[test]
fn keyed_check_by_str_allocates_only_for_new_keys() {
    let limiter: KeyedRateLimiter<String> =
        KeyedRateLimiter::per_second("allocs", 1_000_000_000).unwrap();
    let clients: Vec<String> = (0..64).map(|i| format!("client-{i}")).collect();
    for c in &clients {
        limiter.check_key(c.as_str()).unwrap();
    }
    // Warm: the store has every key and room for them; the thread's counter block exists.
    let before = allocs();
    for round in 0..100 {
        for c in &clients {
            limiter.check_key(c.as_str()).unwrap();
            limiter.check_key_n(c.as_str(), 1 + round % 2).unwrap();
        }
    }
    let during = allocs() - before;
    assert_eq!(
        during, 0,
        "{during} allocations in 12,800 checks of known keys"
    );

    let before = allocs();
    limiter.check_key("a-new-client").unwrap();
    let new_key = allocs() - before;
    assert!(new_key >= 1, "a new key is stored owned");
}
