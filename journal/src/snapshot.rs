//! Snapshot files: an opaque blob (the engine's state) named by the sequence number it covers,
//! written atomically, plus journal retention.
//!
//! File `snapshot-{seq:020}.snap` = blob followed by a 32-byte trailer (little-endian):
//!
//! | offset from trailer start | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `b"CSTLSNP\0"` |
//! | 8 | 8 | sequence number covered (state after applying this record) |
//! | 16 | 8 | blob length |
//! | 24 | 4 | version (1) |
//! | 28 | 4 | CRC32C over the blob and trailer bytes 0..28 |
//!
//! Writing: `.snapshot-{seq}.snap.tmp` is written and fsynced, renamed into place, and the
//! directory fsynced, so a crash leaves either no snapshot or a complete one. A half-written
//! temporary file is ignored (and removed by the next write). Loading verifies length and CRC
//! and skips (with a warning) any snapshot that fails, falling back to the next older one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{JournalError, Result};
use crate::segment::{fsync_dir, list_segments, read_file, segment_file_name};

const MAGIC: [u8; 8] = *b"CSTLSNP\0";
const VERSION: u32 = 1;
const TRAILER: usize = 32;

/// A snapshot file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub seq: u64,
    pub path: PathBuf,
}

/// A loaded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub seq: u64,
    pub data: Vec<u8>,
    pub path: PathBuf,
}

/// File name of the snapshot covering `seq`.
pub fn snapshot_file_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.snap")
}

fn parse_name(name: &str) -> Option<u64> {
    let d = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    (d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit())).then(|| d.parse().ok()).flatten()
}

/// Streaming snapshot writer: write the blob with `io::Write`, then [`finish`](Self::finish).
/// Dropping it without `finish` leaves only a temporary file.
pub struct SnapshotWriter {
    dir: PathBuf,
    tmp: PathBuf,
    file: io::BufWriter<File>,
    seq: u64,
    len: u64,
    crc: u32,
}

impl SnapshotWriter {
    /// Start a snapshot covering `seq` in `dir` (created if missing).
    pub fn create(dir: impl AsRef<Path>, seq: u64) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| JournalError::io("create dir", &dir, e))?;
        let tmp = dir.join(format!(".{}.tmp", snapshot_file_name(seq)));
        let file = File::create(&tmp).map_err(|e| JournalError::io("create", &tmp, e))?;
        Ok(SnapshotWriter { dir, tmp, file: io::BufWriter::with_capacity(1 << 20, file), seq, len: 0, crc: 0 })
    }

    /// Write the trailer, fsync, rename into place, fsync the directory.
    pub fn finish(mut self) -> Result<PathBuf> {
        let mut t = [0u8; TRAILER];
        t[0..8].copy_from_slice(&MAGIC);
        t[8..16].copy_from_slice(&self.seq.to_le_bytes());
        t[16..24].copy_from_slice(&self.len.to_le_bytes());
        t[24..28].copy_from_slice(&VERSION.to_le_bytes());
        let crc = crc32c::crc32c_append(self.crc, &t[0..28]);
        t[28..32].copy_from_slice(&crc.to_le_bytes());
        let tmp = self.tmp.clone();
        self.file
            .write_all(&t)
            .and_then(|_| self.file.flush())
            .and_then(|_| self.file.get_ref().sync_all())
            .map_err(|e| JournalError::io("write snapshot", &tmp, e))?;
        let dst = self.dir.join(snapshot_file_name(self.seq));
        fs::rename(&tmp, &dst).map_err(|e| JournalError::io("rename", &tmp, e))?;
        fsync_dir(&self.dir)?;
        tracing::info!(file = %dst.display(), seq = self.seq, bytes = self.len, "snapshot written");
        Ok(dst)
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Atomically write `blob` as the snapshot covering `seq`.
pub fn write_snapshot(dir: impl AsRef<Path>, seq: u64, blob: &[u8]) -> Result<PathBuf> {
    let dir = dir.as_ref();
    // Leftovers of interrupted writes.
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(".snapshot-") && n.ends_with(".snap.tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let mut w = SnapshotWriter::create(dir, seq)?;
    let tmp = w.tmp.clone();
    w.write_all(blob).map_err(|e| JournalError::io("write snapshot", &tmp, e))?;
    w.finish()
}

/// Snapshots in `dir`, oldest first.
pub fn list_snapshots(dir: impl AsRef<Path>) -> Result<Vec<SnapshotInfo>> {
    let dir = dir.as_ref();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io("read dir", dir, e)),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| JournalError::io("read dir", dir, e))?;
        if let Some(seq) = e.file_name().to_str().and_then(parse_name) {
            v.push(SnapshotInfo { seq, path: e.path() });
        }
    }
    v.sort_by_key(|s| s.seq);
    Ok(v)
}

/// Load and verify one snapshot file.
pub fn load_snapshot(path: impl AsRef<Path>) -> Result<Snapshot> {
    let path = path.as_ref();
    let mut data = read_file(path)?;
    let bad = |offset: usize, reason: &str| JournalError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason: format!("snapshot: {reason}"),
        valid_after: None,
    };
    if data.len() < TRAILER {
        return Err(bad(0, "shorter than its trailer"));
    }
    let at = data.len() - TRAILER;
    let t: [u8; TRAILER] = data[at..].try_into().expect("trailer");
    if t[0..8] != MAGIC {
        return Err(bad(at, "bad trailer magic"));
    }
    let seq = u64::from_le_bytes(t[8..16].try_into().expect("8"));
    let len = u64::from_le_bytes(t[16..24].try_into().expect("8"));
    let ver = u32::from_le_bytes(t[24..28].try_into().expect("4"));
    let stored = u32::from_le_bytes(t[28..32].try_into().expect("4"));
    if ver != VERSION {
        return Err(bad(at, &format!("unknown version {ver}")));
    }
    if len != at as u64 {
        return Err(bad(at, &format!("length {len} in trailer, {at} bytes present")));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&data[..at]), &t[0..28]);
    if crc != stored {
        return Err(bad(at, "CRC mismatch"));
    }
    if let Some(name_seq) = path.file_name().and_then(|n| n.to_str()).and_then(parse_name) {
        if name_seq != seq {
            return Err(bad(at, &format!("file name says seq {name_seq}, trailer {seq}")));
        }
    }
    data.truncate(at);
    Ok(Snapshot { seq, data, path: path.to_path_buf() })
}

/// The newest snapshot that verifies; invalid newer ones are logged and skipped.
pub fn load_latest_snapshot(dir: impl AsRef<Path>) -> Result<Option<Snapshot>> {
    for info in list_snapshots(dir)?.into_iter().rev() {
        match load_snapshot(&info.path) {
            Ok(s) => return Ok(Some(s)),
            Err(e @ JournalError::Corrupt { .. }) => {
                tracing::warn!(error = %e, "skipping invalid snapshot");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Delete snapshots older than the newest `keep` (keep >= 1).
pub fn prune_snapshots(dir: impl AsRef<Path>, keep: usize) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let all = list_snapshots(dir)?;
    let n = all.len().saturating_sub(keep.max(1));
    let mut out = Vec::new();
    for s in &all[..n] {
        fs::remove_file(&s.path).map_err(|e| JournalError::io("remove", &s.path, e))?;
        out.push(s.path.clone());
    }
    if !out.is_empty() {
        fsync_dir(dir)?;
    }
    Ok(out)
}

/// Move journal segments all of whose records have sequence numbers below `seq` into `archive`
/// (created if needed; a segment goes when the next segment starts at or before `seq`; the last
/// segment never goes). Nothing is deleted: the files are renamed, byte for byte, and both
/// directories are fsynced so a crash leaves each segment in exactly one of them. `archive` must
/// be on the same filesystem (a subdirectory of the journal is). Returns the new paths.
pub fn archive_segments_before(dir: impl AsRef<Path>, archive: impl AsRef<Path>, seq: u64) -> Result<Vec<PathBuf>> {
    let (dir, archive) = (dir.as_ref(), archive.as_ref());
    let segs = list_segments(dir)?;
    let mut out = Vec::new();
    for w in segs.windows(2) {
        if w[1].first_seq > seq {
            break;
        }
        if out.is_empty() {
            fs::create_dir_all(archive).map_err(|e| JournalError::io("create dir", archive, e))?;
        }
        let to = archive.join(segment_file_name(w[0].first_seq));
        if to.exists() {
            // Never overwrite: an archived copy with this name means something is off.
            return Err(JournalError::io(
                "archive",
                &to,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "segment already archived"),
            ));
        }
        fs::rename(&w[0].path, &to).map_err(|e| JournalError::io("rename", &w[0].path, e))?;
        tracing::info!(from = %w[0].path.display(), to = %to.display(), "archived journal segment");
        out.push(to);
    }
    if !out.is_empty() {
        // The archive first: a segment must never be in neither directory after a crash.
        fsync_dir(archive)?;
        fsync_dir(dir)?;
    }
    Ok(out)
}

/// Delete journal segments all of whose records have sequence numbers below `seq` (a segment is
/// deleted when the next segment starts at or before `seq`). The last segment is never deleted.
pub fn delete_segments_before(dir: impl AsRef<Path>, seq: u64) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let segs = list_segments(dir)?;
    let mut out = Vec::new();
    for w in segs.windows(2) {
        if w[1].first_seq <= seq {
            fs::remove_file(&w[0].path).map_err(|e| JournalError::io("remove", &w[0].path, e))?;
            tracing::info!(file = %w[0].path.display(), "deleted journal segment");
            out.push(w[0].path.clone());
        } else {
            break;
        }
    }
    if !out.is_empty() {
        fsync_dir(dir)?;
    }
    Ok(out)
}
