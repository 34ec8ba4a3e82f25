//! Segment files: naming, listing, creation (pre-allocation, O_DIRECT), reading.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{JournalError, Result};

/// A segment file in a journal directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Sequence number of its first record (from the file name).
    pub first_seq: u64,
    pub path: PathBuf,
}

/// File name of the segment whose first record has `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segments of `dir` in sequence order (other files are ignored).
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io("read dir", dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| JournalError::io("read dir", dir, e))?;
        if let Some(seq) = ent.file_name().to_str().and_then(parse_segment_name) {
            out.push(SegmentInfo { first_seq: seq, path: ent.path() });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// fsync a directory so that creations, renames and deletions in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| JournalError::io("open dir", dir, e))?;
    f.sync_all().map_err(|e| JournalError::io("fsync dir", dir, e))
}

/// Takes an exclusive `flock` on `f`, waiting (and saying so) while another holder has it.
///
/// Why: the writer holds this lock on every segment it has open. After a kill -9 the kernel
/// tears the dead writer's io_uring down asynchronously, and its in-flight writes may still land
/// after the process has been reaped; the ring keeps the file (and so the lock) alive until they
/// have. Recovery takes the same lock first, so it never reads a tail that is still being written.
pub(crate) fn lock_exclusive(f: &File, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    tracing::info!(file = %path.display(), "waiting for a previous writer to release the segment");
    loop {
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(JournalError::io("lock segment", path, e));
        }
    }
}

/// Waits until no writer (live, or a dead one whose writes are still landing) holds `path`.
pub(crate) fn wait_for_writers(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| JournalError::io("open", path, e))?;
    lock_exclusive(&f, path)
}

/// Open a segment for writing, with O_DIRECT if `direct` and the filesystem accepts it.
/// Returns the file and whether O_DIRECT is on. The file is locked exclusively (see
/// [`lock_exclusive`]) for as long as it is open.
pub(crate) fn open_segment_rw(path: &Path, create: bool, direct: bool) -> Result<(File, bool)> {
    let (f, direct) = open_segment_rw_unlocked(path, create, direct)?;
    lock_exclusive(&f, path)?;
    Ok((f, direct))
}

fn open_segment_rw_unlocked(path: &Path, create: bool, direct: bool) -> Result<(File, bool)> {
    let mut oo = OpenOptions::new();
    oo.read(true).write(true);
    if create {
        oo.create(true).truncate(true);
    }
    if direct {
        let mut d = oo.clone();
        d.custom_flags(libc::O_DIRECT);
        match d.open(path) {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::info!(path = %path.display(), "O_DIRECT refused by the filesystem; using buffered writes + fdatasync");
            }
            Err(e) => return Err(JournalError::io("open segment", path, e)),
        }
    }
    let f = oo.open(path).map_err(|e| JournalError::io("open segment", path, e))?;
    Ok((f, false))
}

/// Reserve `size` bytes of disk for a segment (keeps the written extent count at one and fails
/// early on a full disk). Filesystems without fallocate are tolerated.
pub(crate) fn preallocate(file: &File, path: &Path, size: u64) -> Result<()> {
    // SAFETY: plain syscall on an open fd.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
    if r != 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
                tracing::debug!(path = %path.display(), "fallocate not supported; segment grows on write");
            }
            _ => return Err(JournalError::io("fallocate", path, e)),
        }
    }
    Ok(())
}

/// Read a whole file.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| JournalError::io("open", path, e))?;
    let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let mut v = Vec::with_capacity(len);
    f.read_to_end(&mut v).map_err(|e| JournalError::io("read", path, e))?;
    Ok(v)
}

/// Overwrite `[from, to)` of a file with zeros and fdatasync it (used to cut a torn tail).
pub(crate) fn zero_range(path: &Path, from: u64, to: u64) -> Result<()> {
    let f = OpenOptions::new().write(true).open(path).map_err(|e| JournalError::io("open", path, e))?;
    let zeros = vec![0u8; 1 << 20];
    let mut off = from;
    while off < to {
        let n = ((to - off) as usize).min(zeros.len());
        f.write_all_at(&zeros[..n], off).map_err(|e| JournalError::io("zero range", path, e))?;
        off += n as u64;
    }
    f.sync_data().map_err(|e| JournalError::io("fdatasync", path, e))
}

/// Write a small file (used to keep discarded bytes for forensics).
pub(crate) fn write_side_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| JournalError::io("create", path, e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| JournalError::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(segment_file_name(42), "00000000000000000042.wal");
        assert_eq!(parse_segment_name("00000000000000000042.wal"), Some(42));
        assert_eq!(parse_segment_name("0000000000000000042.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000042.wal.discarded"), None);
        assert_eq!(parse_segment_name(&segment_file_name(u64::MAX)), Some(u64::MAX));
    }
}
