//! Zero-copy hand-off: a pooled buffer freezes into [`bytes::Bytes`] and goes back to its pool when the last clone
//! drops.
//!
//! A response body encoded into a pooled buffer would otherwise be copied into a fresh `Bytes` for hyper, and the
//! pool would save nothing. [`OwnedPooled::freeze`] makes the guard itself the owner of the `Bytes` memory
//! (`Bytes::from_owner`): clones and slices share it, no byte is copied, and when the last of them drops, on
//! whatever thread, the guard drops and returns the buffer to its pool, counted once as a put (or a discard, if the
//! pool is full or its retain check refuses the buffer), exactly as dropping the guard would.

use crate::guard::OwnedPooled;
use bytes::Bytes;

/// The guard as the owner of `Bytes` memory: its bytes are the pooled object's bytes.
struct Frozen<T: Send + 'static>(OwnedPooled<T>);

impl<T: AsRef<[u8]> + Send + 'static> AsRef<[u8]> for Frozen<T> {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl<T: AsRef<[u8]> + Send + 'static> OwnedPooled<T> {
    /// Freezes the pooled object into [`Bytes`] without copying: clones and slices of the result share its memory,
    /// and when the last of them drops (on any thread) the object goes back to its pool, reset, counted once as a
    /// put (or a discard if the pool does not keep it), as if this guard had been dropped then.
    ///
    /// `Bytes::from_owner` allocates one small header for the shared owner; the bytes themselves are not copied.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use otlp_pool::BufferPool;
    ///
    /// let pool = BufferPool::builder("bodies").initial_capacity(1024).build()?;
    /// let mut body = pool.get_owned();
    /// body.extend_from_slice(b"{\"ok\":true}");
    /// let address = body.as_ptr();
    ///
    /// let bytes: Bytes = body.freeze();
    /// assert_eq!(bytes.as_ptr(), address); // the pooled memory itself, not a copy
    /// let clone = bytes.clone();
    /// std::thread::spawn(move || assert_eq!(&clone[..], b"{\"ok\":true}")).join().unwrap();
    /// assert_eq!(pool.stats().puts, 0); // `bytes` still holds the buffer
    ///
    /// drop(bytes); // the last clone: the buffer goes back, cleared
    /// assert_eq!(pool.stats().puts, 1);
    /// let again = pool.get();
    /// assert!(again.is_empty());
    /// assert_eq!(again.as_ptr(), address);
    /// # Ok::<(), otlp_pool::BuildError>(())
    /// ```
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(Frozen(self))
    }
}

#[cfg(all(test, not(otlp_loom)))]
mod tests {
    use crate::{BufferPool, Pool, PoolStats};
    use bytes::Bytes;
    use std::sync::{Arc, Barrier};

    fn counts(s: PoolStats) -> (u64, u64, u64, u64) {
        (s.gets, s.misses, s.puts, s.discards)
    }

    #[test]
    fn the_last_clone_returns_the_buffer_once_from_any_thread() {
        let (buffers, clones) = if cfg!(miri) { (3, 2) } else { (64, 4) };
        let pool = BufferPool::builder("frozen")
            .initial_capacity(64)
            .capacity(buffers)
            .build()
            .unwrap();
        let frozen: Vec<(usize, Bytes)> = (0..buffers)
            .map(|i| {
                let mut buf = pool.get_owned();
                buf.extend_from_slice(&i.to_le_bytes());
                let address = buf.as_ptr() as usize;
                let bytes = buf.freeze();
                assert_eq!(bytes.as_ptr() as usize, address, "not copied");
                (address, bytes)
            })
            .collect();
        let mut addresses: Vec<usize> = frozen.iter().map(|(a, _)| *a).collect();
        assert_eq!(counts(pool.stats()), (buffers as u64, buffers as u64, 0, 0));
        // Clones (and a slice) of each go to other threads; the originals drop here first, so the last drop of
        // every buffer happens on another thread. Joining each thread waits for its exit, where it hands back
        // what its cache kept.
        let barrier = Barrier::new(buffers * clones + 1);
        std::thread::scope(|s| {
            let threads: Vec<_> = frozen
                .into_iter()
                .enumerate()
                .flat_map(|(i, (_, bytes))| {
                    let barrier = &barrier;
                    (0..clones)
                        .map(|c| {
                            let (clone, expected) = if c == 0 {
                                (bytes.slice(1..), i.to_le_bytes()[1..].to_vec())
                            } else {
                                (bytes.clone(), i.to_le_bytes().to_vec())
                            };
                            s.spawn(move || {
                                barrier.wait();
                                assert_eq!(&clone[..], &expected[..]);
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(pool.stats().puts, 0, "clones still hold every buffer");
            barrier.wait();
            for thread in threads {
                thread.join().unwrap();
            }
        });
        // Each buffer came back exactly once: kept, or dropped when concurrent threads held the budget's free
        // slots as credit in their caches.
        let s = pool.stats();
        assert_eq!((s.gets, s.misses), (buffers as u64, buffers as u64));
        assert_eq!(s.puts + s.discards, buffers as u64, "{s:?}");
        assert!(s.puts > 0, "{s:?}");
        assert_eq!(s.idle, s.puts);
        // The kept ones are those buffers, cleared: a thread that never used the pool takes exactly `idle` of them.
        let got: Vec<usize> = std::thread::scope(|s| {
            s.spawn(|| {
                let again: Vec<_> = std::iter::from_fn(|| pool.pool().try_get()).collect();
                assert!(again.iter().all(|b| b.is_empty()), "reset ran");
                again.iter().map(|b| b.as_ptr() as usize).collect()
            })
            .join()
            .unwrap()
        });
        assert_eq!(got.len() as u64, s.idle);
        addresses.sort_unstable();
        assert!(got.iter().all(|a| addresses.binary_search(a).is_ok()));
        let mut distinct = got.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), got.len(), "a buffer came back twice");
    }

    #[test]
    fn a_frozen_buffer_the_pool_will_not_keep_is_counted_once_as_a_discard() {
        let pool = Arc::new(
            Pool::builder("frozen.full", || Vec::<u8>::with_capacity(8))
                .capacity(1)
                .reset(Vec::clear)
                .build()
                .unwrap(),
        );
        let (a, b) = (pool.get_owned(), pool.get_owned());
        let (a, b) = (a.freeze(), b.freeze());
        let b2 = b.clone();
        drop(a);
        drop(b);
        assert_eq!(counts(pool.stats()), (2, 2, 1, 0));
        std::thread::spawn(move || drop(b2)).join().unwrap();
        assert_eq!(counts(pool.stats()), (2, 2, 1, 1));
        assert_eq!(pool.stats().idle, 1);
    }

    #[test]
    fn a_frozen_buffer_keeps_its_pool_alive() {
        let pool = Arc::new(
            Pool::<Vec<u8>>::default_reset("frozen.owner")
                .build()
                .unwrap(),
        );
        let mut buf = pool.get_owned();
        buf.extend_from_slice(b"abc");
        let bytes = buf.freeze();
        let stats = Arc::downgrade(&pool);
        drop(pool);
        assert_eq!(&bytes[..], b"abc");
        assert!(
            stats.upgrade().is_some(),
            "the frozen buffer holds its pool"
        );
        drop(bytes);
        assert!(
            stats.upgrade().is_none(),
            "and lets it go with the last clone"
        );
    }
}
