//! A value replaced now and then and read on hot paths with one atomic load and no lock: [`Latest`].
//!
//! Readers get a plain reference to the latest value published. A value is never freed while the `Latest`
//! lives (it is replaced rarely: once per meter provider an owner records on), so a reader that loaded the pointer
//! just before a replacement still reaches a live value, without reference counting on the read path.

use std::fmt;
use std::sync::Arc;

use crate::sync::{AtomicPtr, Mutex, Ordering, lock};

/// The latest of the values published so far, each kept until this drops.
pub struct Latest<T> {
    /// The latest value (null before the first): points into an `Arc` that `kept` holds.
    current: AtomicPtr<T>,
    /// Every value published, so that a reference handed out stays valid while `self` lives.
    kept: Mutex<Vec<Arc<T>>>,
}

impl<T> Latest<T> {
    /// Nothing published yet.
    pub fn new() -> Self {
        Latest {
            current: AtomicPtr::new(std::ptr::null_mut()),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The latest value published, if any: one atomic load.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        let latest = self.current.load(Ordering::Acquire);
        // SAFETY: a non-null `current` was taken from an `Arc` pushed to `kept` before the `Release` store that
        // published it (the `Acquire` load above pairs with it, so the value is initialised), and `kept` never
        // drops or moves an `Arc` while `self` lives; nothing writes through the pointer.
        unsafe { latest.as_ref() }
    }

    /// The latest value if `fresh` accepts it, else publishes `make()`. Racing callers serialise on a lock, so
    /// that one makes the value and the others take it; `make` runs under that lock.
    pub fn refresh(&self, fresh: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> &T {
        let mut kept = lock(&self.kept);
        if let Some(latest) = self.get()
            && fresh(latest)
        {
            return latest;
        }
        let value = Arc::new(make());
        let latest = Arc::as_ptr(&value).cast_mut();
        kept.push(value);
        self.current.store(latest, Ordering::Release);
        drop(kept);
        // SAFETY: `latest` points into the `Arc` just pushed to `kept`, kept while `self` lives.
        unsafe { &*latest }
    }

    /// How many values were published.
    pub fn published(&self) -> usize {
        lock(&self.kept).len()
    }
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for Latest<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Latest")
            .field("latest", &self.get())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use super::*;

    #[test]
    fn refresh_publishes_only_when_stale_and_keeps_every_value() {
        let latest = Latest::new();
        assert!(latest.get().is_none());
        assert_eq!(*latest.refresh(|_| true, || 1), 1);
        assert_eq!(*latest.refresh(|v| *v == 1, || 2), 1, "fresh: kept");
        assert_eq!(*latest.refresh(|v| *v == 2, || 2), 2, "stale: replaced");
        assert_eq!(latest.get(), Some(&2));
        assert_eq!(latest.published(), 2);
    }

    #[test]
    fn readers_racing_replacements_see_a_live_value() {
        let rounds = if cfg!(miri) { 8 } else { 1000 };
        let latest: Latest<Box<usize>> = Latest::new();
        latest.refresh(|_| false, || Box::new(0));
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=rounds {
                    latest.refresh(|v| **v == i, || Box::new(i));
                }
            });
            let mut last = 0;
            for _ in 0..rounds {
                let seen = **latest.get().expect("published");
                assert!(seen >= last, "never goes back: {seen} after {last}");
                last = seen;
            }
        });
        assert_eq!(latest.published(), rounds + 1);
    }
}
