//! A shared, writable memory mapping of a file: how [`crate::store::FileStore`]
//! persists without a system call per message.
//!
//! A store into a `MAP_SHARED` mapping lands in the kernel's page cache, the
//! same place a write(2) puts its bytes: it survives a crash or kill of the
//! process exactly as a write(2) does (the page cache outlives the process),
//! and fdatasync on the file flushes it to disk like written data. The
//! store owns its files: nothing else may change them while it is open
//! (another writer, or a truncation behind our back, would be seen here as
//! changing memory, or as SIGBUS past the end of the file).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// `len` bytes of `file` from offset 0, mapped shared and writable. The
/// mapping may be longer than the file: only the part inside the file may
/// be touched (the caller grows the file first).
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// The mapping is plain memory owned by this value (like a Box<[u8]>).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping").field("len", &self.len).finish()
    }
}

impl Mapping {
    pub(crate) fn new(file: &File, len: usize) -> io::Result<Mapping> {
        assert!(len > 0, "empty mapping");
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), of
        // a file descriptor we hold open; checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Start address (the grower faults in pages of the mapped range).
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The bytes `[off, off + len)`, which must lie inside the file.
    pub(crate) fn slice(&self, off: usize, len: usize) -> &[u8] {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len), "read past the mapping");
        // SAFETY: in bounds (checked); the memory lives as long as `self`,
        // and only `&mut self` methods write it.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) }
    }

    /// Copy `bytes` to offset `off`, which must lie inside the file.
    pub(crate) fn write(&mut self, off: usize, bytes: &[u8]) {
        assert!(off.checked_add(bytes.len()).is_some_and(|e| e <= self.len), "write past the mapping");
        // SAFETY: in bounds (checked); `bytes` cannot overlap the mapping's
        // interior borrowed mutably here (we hold `&mut self`).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(off), bytes.len()) }
    }

    /// Order the stores before this call before the stores after it, as
    /// seen by anyone reading the file later (also after our process dies):
    /// a record's header is stored after its bytes, a slot's generation
    /// after its contents, so a visible header or generation implies the
    /// rest is there.
    pub(crate) fn store_fence() {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the region mmap returned; nothing borrows it past `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
