//! Process-wide default pools, like Go's `GetBuffer`/`GetByteSlice`: created on first use, shared by everyone.
//!
//! ```
//! let mut buf = otlp_pool::buffers().get();
//! buf.extend_from_slice(b"scratch");
//! let frame = otlp_pool::byte_slices().get(1500);
//! assert!(frame.capacity() >= 1500);
//! ```
//!
//! Build them after installing your meter provider (e.g. `otlp_telemetry::init`) if you want their metrics: the
//! instruments are registered when the pool is created.

use crate::buffer::BufferPool;
use crate::byte_slice::ByteSlicePool;
use std::sync::OnceLock;

/// The process-wide [`BufferPool`] (`pool.name` = `default.buffers`): 4 KiB buffers, kept up to 64 KiB.
pub fn buffers() -> &'static BufferPool {
    static POOL: OnceLock<BufferPool> = OnceLock::new();
    POOL.get_or_init(|| match BufferPool::builder("default.buffers").build() {
        Ok(pool) => pool,
        // The defaults are constants that pass validation (tested); this arm cannot run.
        Err(e) => unreachable!("default buffer pool configuration is valid: {e}"),
    })
}

/// The process-wide [`ByteSlicePool`] (`pool.name` = `default.byte_slices`): classes 64 B to 64 KiB.
pub fn byte_slices() -> &'static ByteSlicePool {
    static POOL: OnceLock<ByteSlicePool> = OnceLock::new();
    POOL.get_or_init(
        || match ByteSlicePool::builder("default.byte_slices").build() {
            Ok(pool) => pool,
            Err(e) => unreachable!("default byte-slice pool configuration is valid: {e}"),
        },
    )
}
