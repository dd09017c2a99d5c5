//! The [`Reset`] trait: how an object is made ready for its next user.
//!
//! A pooled object comes back dirty. `Reset` empties it while keeping its allocation, which is the whole point of
//! pooling: `Vec::clear` keeps capacity, a fresh `Vec::new()` would not.
//!
//! ```
//! use otlp_pool::{Pool, Reset};
//!
//! let pool = Pool::<Vec<u8>>::default_reset("scratch").capacity(8).build()?;
//! {
//!     let mut v = pool.get();
//!     v.extend_from_slice(b"hello");
//! } // returned, and reset, here
//! let v = pool.get();
//! assert!(v.is_empty());
//! assert!(v.capacity() >= 5); // the allocation was kept
//! # Ok::<(), otlp_pool::BuildError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};

/// Empties an object for reuse, keeping the memory it owns.
pub trait Reset {
    /// Clears the contents. Implementations must keep capacity (that is what a pool is for).
    fn reset(&mut self);
}

impl<T> Reset for Vec<T> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl Reset for String {
    fn reset(&mut self) {
        self.clear();
    }
}

impl<T> Reset for VecDeque<T> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl<T: Ord> Reset for BinaryHeap<T> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl<K: Eq + Hash, V, S: BuildHasher> Reset for HashMap<K, V, S> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl<T: Eq + Hash, S: BuildHasher> Reset for HashSet<T, S> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl<K, V> Reset for BTreeMap<K, V> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl<T> Reset for BTreeSet<T> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl Reset for bytes::BytesMut {
    fn reset(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Reset>(mut value: T, len: impl Fn(&T) -> usize, cap: impl Fn(&T) -> usize) {
        let before = cap(&value);
        assert!(len(&value) > 0);
        value.reset();
        assert_eq!(len(&value), 0);
        assert_eq!(cap(&value), before, "reset must keep capacity");
    }

    #[test]
    fn resets_keep_capacity() {
        check(vec![1u8, 2, 3], Vec::len, Vec::capacity);
        check(String::from("abc"), String::len, String::capacity);
        check(
            VecDeque::from(vec![1, 2]),
            VecDeque::len,
            VecDeque::capacity,
        );
        check(HashMap::from([(1, 2)]), HashMap::len, HashMap::capacity);
        check(HashSet::from([1]), HashSet::len, HashSet::capacity);
        check(
            BinaryHeap::from(vec![3, 1]),
            BinaryHeap::len,
            BinaryHeap::capacity,
        );
    }

    #[test]
    fn btree_reset_empties() {
        let mut m = BTreeMap::from([(1, 1)]);
        m.reset();
        assert!(m.is_empty());
        let mut s = BTreeSet::from([1]);
        s.reset();
        assert!(s.is_empty());
    }

    #[test]
    fn bytes_mut_reset_keeps_capacity() {
        let mut b = bytes::BytesMut::with_capacity(64);
        b.extend_from_slice(b"abc");
        b.reset();
        assert!(b.is_empty());
        assert!(b.capacity() >= 64);
    }
}
