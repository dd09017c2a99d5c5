//! A counting global allocator (feature `count-alloc`), the same in every variant.
//!
//! Counting is off until [`set`] turns it on (`--count-allocs`, or `POST /admin/alloc-counting` with `on`), so a build with the feature costs one relaxed
//! load of a read-only flag per allocation when it is not measuring.

#[cfg(feature = "count-alloc")]
mod imp {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    static ENABLED: AtomicBool = AtomicBool::new(false);
    static BYTES: AtomicU64 = AtomicU64::new(0);
    static COUNT: AtomicU64 = AtomicU64::new(0);

    /// The system allocator, counting bytes and calls while enabled.
    pub struct Counting;

    #[inline]
    fn count(bytes: usize) {
        if ENABLED.load(Ordering::Relaxed) {
            BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s guarantees
    // hold; the counting touches only atomics and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded as is; `ptr` came from this allocator, i.e. from `System`.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // A growth is an allocation of the new size (what a fresh allocation plus copy would cost).
            count(new_size);
            // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub fn set(on: bool) -> bool {
        ENABLED.store(on, Ordering::Relaxed);
        true
    }

    pub fn snapshot() -> Option<(u64, u64)> {
        ENABLED
            .load(Ordering::Relaxed)
            .then(|| (BYTES.load(Ordering::Relaxed), COUNT.load(Ordering::Relaxed)))
    }
}

#[cfg(not(feature = "count-alloc"))]
mod imp {
    pub fn set(_on: bool) -> bool {
        false
    }

    pub fn snapshot() -> Option<(u64, u64)> {
        None
    }
}

/// Starts or stops counting; `false` when built without the feature (nothing is counted then).
pub fn set(on: bool) -> bool {
    imp::set(on)
}

/// `(bytes, allocations)` counted so far, or `None` when not counting.
pub fn snapshot() -> Option<(u64, u64)> {
    imp::snapshot()
}
