//! RAII guards: a pooled object goes back to its pool when the guard drops.
//!
//! [`Pooled`] borrows the pool; [`OwnedPooled`] holds it by `Arc` and is `'static`, for spawned tasks and threads.
//! Both are one pointer to the object plus one to the pool: the object itself sits in a `Box` that the pool keeps
//! across reuses, so moving a guard never copies `T`.

use crate::pool::Pool;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// An object borrowed from a [`Pool`]; returned (reset) to the pool on drop.
pub struct Pooled<'a, T: Send> {
    // `None` only after `detach` took the object out.
    object: Option<Box<T>>,
    pool: &'a Pool<T>,
}

impl<'a, T: Send> Pooled<'a, T> {
    #[inline]
    pub(crate) fn new(pool: &'a Pool<T>, object: Box<T>) -> Self {
        Pooled {
            object: Some(object),
            pool,
        }
    }

    /// Takes the object out of the pool for good: it will not be returned (counted as `detached`).
    pub fn detach(mut self) -> T {
        self.pool.count_detached();
        match self.object.take() {
            Some(object) => *object,
            // `object` is `Some` until `detach` or `drop`, and both consume the guard.
            None => unreachable!("a pooled guard holds its object until detach or drop"),
        }
    }

    /// The pool this object returns to.
    pub fn pool(&self) -> &'a Pool<T> {
        self.pool
    }
}

impl<T: Send> Deref for Pooled<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.object
            .as_deref()
            .expect("a pooled guard holds its object until detach or drop")
    }
}

impl<T: Send> DerefMut for Pooled<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.object
            .as_deref_mut()
            .expect("a pooled guard holds its object until detach or drop")
    }
}

impl<T: Send> Drop for Pooled<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            self.pool.put(object);
        }
    }
}

impl<T: Send + fmt::Debug> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("pool", &self.pool.name)
            .field("object", &self.object)
            .finish()
    }
}

/// An object borrowed from an `Arc<Pool>`; `'static`, returned (reset) to the pool on drop.
pub struct OwnedPooled<T: Send> {
    object: Option<Box<T>>,
    pool: Arc<Pool<T>>,
}

impl<T: Send> OwnedPooled<T> {
    #[inline]
    pub(crate) fn new(pool: Arc<Pool<T>>, object: Box<T>) -> Self {
        OwnedPooled {
            object: Some(object),
            pool,
        }
    }

    /// Takes the object out of the pool for good: it will not be returned (counted as `detached`).
    pub fn detach(mut self) -> T {
        self.pool.count_detached();
        match self.object.take() {
            Some(object) => *object,
            None => unreachable!("a pooled guard holds its object until detach or drop"),
        }
    }

    /// The pool this object returns to.
    pub fn pool(&self) -> &Arc<Pool<T>> {
        &self.pool
    }
}

impl<T: Send> Deref for OwnedPooled<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.object
            .as_deref()
            .expect("a pooled guard holds its object until detach or drop")
    }
}

impl<T: Send> DerefMut for OwnedPooled<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.object
            .as_deref_mut()
            .expect("a pooled guard holds its object until detach or drop")
    }
}

impl<T: Send> Drop for OwnedPooled<T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            self.pool.put(object);
        }
    }
}

impl<T: Send + fmt::Debug> fmt::Debug for OwnedPooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPooled")
            .field("pool", &self.pool.name)
            .field("object", &self.object)
            .finish()
    }
}
