//! A heap buffer aligned to [`BLOCK`](crate::format::BLOCK) for O_DIRECT and io_uring registered
//! buffers. Its address never changes after allocation.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use crate::format::BLOCK;

pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: plain owned memory.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// Zeroed buffer of `cap` bytes (rounded up to a whole number of blocks, at least one).
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(BLOCK).div_ceil(BLOCK) * BLOCK;
        let layout = Layout::from_size_align(cap, BLOCK).expect("layout");
        // SAFETY: non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Never free this buffer: the kernel may still read it (a wedged io_uring writer).
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.cap, BLOCK).expect("layout");
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}
