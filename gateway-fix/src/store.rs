//! Per-session persistence: the next sequence numbers in both directions and
//! every outbound message (so a ResendRequest can be answered, also after a
//! gateway restart).
//!
//! [`MemoryStore`] is for tests and for sessions that reset daily and do not
//! need restart recovery. [`FileStore`] is the production store:
//!
//! - `<name>.body`: append-only log of outbound messages, each record
//!   `[u32 LE length][u64 LE MsgSeqNum][message bytes]`. An in-memory index
//!   (seq -> offset) is rebuilt by scanning at open; a torn record at the
//!   tail (crash mid-write) is truncated away.
//! - `<name>.seqnums`: 40 bytes `[u64 next sender][u64 next target][u64
//!   check][u64 engine mark][u64 check]`, rewritten in place (pwrite) when a
//!   number changes that the body log cannot reconstruct (inbound progress,
//!   resets, gap fills, holds, the engine mark). On open the next sender
//!   number is max(file, last logged seq + 1), so the body append alone is
//!   enough to persist outbound progress. (24-byte files of older versions
//!   read as engine mark 0.)
//!
//! Two marks tie the session to the engine stream across a gateway restart:
//!
//! - **Inbound holds** ([`MessageStore::hold_inbound`]): an application
//!   message handed to the order layer is *held* until the order layer says
//!   it is finished (answered, or its command is in the engine's journal).
//!   The persisted next-target number is the lowest held MsgSeqNum, so after
//!   a crash the session expects that message again, the client's Logon is
//!   "too high", and the standard ResendRequest recovers it (the order layer
//!   drops PossDup copies of what the engine had applied after all).
//! - **Engine mark** ([`MessageStore::engine_mark`]): the engine sequence
//!   number of the last engine batch whose messages this session stored. On
//!   restart the order layer rebuilds its view from the engine stream and
//!   sends this session only the messages of later batches (fills that
//!   happened while the gateway was down).
//!
//! Fsync policy ([`FsyncPolicy`]): `OsBuffered` (default) issues a write(2)
//! per change and leaves flushing to the kernel: everything survives a
//! gateway *process* crash or restart, which is the common case, at no
//! latency cost. `Always` adds fdatasync after every change so numbers and
//! messages also survive power loss / kernel crash, at the cost of a disk
//! flush (milliseconds on this VM) per message. If the seq file is lost
//! anyway (power loss under `OsBuffered`), the FIX protocol recovers: a lower
//! expected inbound number makes the peer's messages look too high, we send
//! a ResendRequest and receive PossDup copies.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store record too large ({0} bytes)")]
    TooLarge(usize),
}

/// Storage of sequence numbers and outbound messages for one session.
pub trait MessageStore {
    /// MsgSeqNum of the next message we send.
    fn next_sender_seq(&self) -> u64;
    /// MsgSeqNum we expect on the next message received.
    fn next_target_seq(&self) -> u64;
    fn set_next_sender_seq(&mut self, seq: u64) -> Result<(), StoreError>;
    fn set_next_target_seq(&mut self, seq: u64) -> Result<(), StoreError>;
    /// Record an outbound message sent with MsgSeqNum `seq` and advance the
    /// next sender number to `seq + 1`.
    fn store_outbound(&mut self, seq: u64, msg: &[u8]) -> Result<(), StoreError>;
    /// Call `f` for every stored outbound message with `begin <= seq <= end`
    /// in increasing seq order.
    fn outbound_range(&self, begin: u64, end: u64, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError>;
    /// Forget all messages; both numbers back to 1 (ResetSeqNumFlag, daily
    /// reset). Holds are dropped; the engine mark is kept (it is about the
    /// engine stream, not this sequence of numbers).
    fn reset(&mut self) -> Result<(), StoreError>;
    /// Hold inbound MsgSeqNum `seq` (see the module documentation): until it
    /// is released the persisted next-target number does not pass it. Call
    /// before advancing the target past `seq`.
    fn hold_inbound(&mut self, seq: u64) {
        let _ = seq;
    }
    /// The order layer finished inbound message `seq`. Persisted lazily (at
    /// the next write or [`MessageStore::flush_marks`]).
    fn release_inbound(&mut self, seq: u64) {
        let _ = seq;
    }
    /// Engine sequence number of the last batch whose messages are stored.
    fn engine_mark(&self) -> u64 {
        0
    }
    /// Raise the engine mark (persisted lazily).
    fn set_engine_mark(&mut self, seq: u64) {
        let _ = seq;
    }
    /// Persist released holds and the engine mark if they changed.
    fn flush_marks(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// In-memory store.
#[derive(Debug)]
pub struct MemoryStore {
    sender: u64,
    target: u64,
    messages: BTreeMap<u64, Vec<u8>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore { sender: 1, target: 1, messages: BTreeMap::new() }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl MessageStore for MemoryStore {
    fn next_sender_seq(&self) -> u64 {
        self.sender
    }
    fn next_target_seq(&self) -> u64 {
        self.target
    }
    fn set_next_sender_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        self.sender = seq;
        Ok(())
    }
    fn set_next_target_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        self.target = seq;
        Ok(())
    }
    fn store_outbound(&mut self, seq: u64, msg: &[u8]) -> Result<(), StoreError> {
        self.messages.insert(seq, msg.to_vec());
        self.sender = seq + 1;
        Ok(())
    }
    fn outbound_range(&self, begin: u64, end: u64, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError> {
        if begin <= end {
            for (s, m) in self.messages.range(begin..=end) {
                f(*s, m);
            }
        }
        Ok(())
    }
    fn reset(&mut self) -> Result<(), StoreError> {
        *self = Self::default();
        Ok(())
    }
}

/// When the file store forces data to stable storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// write(2) only: survives process crash/restart, not power loss.
    #[default]
    OsBuffered,
    /// fdatasync after every change: survives power loss.
    Always,
}

const MAX_RECORD: usize = 16 * 1024 * 1024;
const SEQ_CHECK: u64 = 0xC457_1E5E_0F1C_5EED;
const MARK_CHECK: u64 = 0x3A4B_E1C0_FFEE_0001;

/// File-backed store (see the module documentation for the layout).
#[derive(Debug)]
pub struct FileStore {
    body_path: PathBuf,
    seq_path: PathBuf,
    body: File,
    seqs: File,
    policy: FsyncPolicy,
    sender: u64,
    target: u64,
    /// seq -> (offset of the message bytes, length). A later record with the
    /// same seq (cannot happen without reset, which truncates) would win.
    index: BTreeMap<u64, (u64, u32)>,
    end: u64,
    /// Inbound application messages handed on and not finished.
    holds: std::collections::BTreeSet<u64>,
    engine_mark: u64,
    /// Marks changed since the last write of the seqnums file.
    marks_dirty: bool,
    /// What the seqnums file holds (target as persisted, engine mark), and
    /// whether the sender number must be written (set explicitly, reset):
    /// a write that would change nothing is skipped. Usual case: an
    /// application message is held at the number the file already has.
    written_target: u64,
    written_mark: u64,
    sender_dirty: bool,
    /// Scratch buffer for one body record.
    rec: Vec<u8>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

impl FileStore {
    /// Open (or create) the store files `<dir>/<name>.body` and
    /// `<dir>/<name>.seqnums`. `name` is typically "SENDER-TARGET".
    pub fn open(dir: &Path, name: &str, policy: FsyncPolicy) -> Result<FileStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let body_path = dir.join(format!("{name}.body"));
        let seq_path = dir.join(format!("{name}.seqnums"));
        let open = |p: &Path| {
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p).map_err(io_err(p))
        };
        let mut body = open(&body_path)?;
        let seqs = open(&seq_path)?;

        // Rebuild the index; cut a torn tail.
        let mut data = Vec::new();
        body.read_to_end(&mut data).map_err(io_err(&body_path))?;
        let mut index = BTreeMap::new();
        let mut pos = 0usize;
        let mut last_seq = 0u64;
        while pos + 12 <= data.len() {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            let seq = u64::from_le_bytes(data[pos + 4..pos + 12].try_into().unwrap());
            if len > MAX_RECORD || pos + 12 + len > data.len() {
                break;
            }
            index.insert(seq, ((pos + 12) as u64, len as u32));
            last_seq = seq;
            pos += 12 + len;
        }
        if pos != data.len() {
            body.set_len(pos as u64).map_err(io_err(&body_path))?;
        }
        body.seek(SeekFrom::Start(pos as u64)).map_err(io_err(&body_path))?;

        let mut buf = [0u8; 40];
        let (mut sender, mut target, mut engine_mark) = (1, 1, 0);
        let mut loaded = false;
        let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        if seqs.read_exact_at(&mut buf[..24], 0).is_ok() {
            let (s, t, c) = (word(&buf, 0), word(&buf, 1), word(&buf, 2));
            if c == s ^ t ^ SEQ_CHECK && s > 0 && t > 0 {
                (sender, target) = (s, t);
                loaded = true;
            }
            if seqs.read_exact_at(&mut buf[24..], 24).is_ok() && word(&buf, 4) == word(&buf, 3) ^ MARK_CHECK {
                engine_mark = word(&buf, 3);
            }
        }
        sender = sender.max(last_seq + 1);
        Ok(FileStore {
            body_path,
            seq_path,
            body,
            seqs,
            policy,
            sender,
            target,
            index,
            end: pos as u64,
            holds: Default::default(),
            engine_mark,
            marks_dirty: false,
            written_target: target,
            written_mark: engine_mark,
            sender_dirty: !loaded,
            rec: Vec::with_capacity(1024),
        })
    }

    fn write_seqs(&mut self) -> Result<(), StoreError> {
        // The lowest held inbound message is expected again after a crash.
        let target = self.holds.first().map_or(self.target, |&h| h.min(self.target));
        self.marks_dirty = false;
        if !self.sender_dirty && target == self.written_target && self.engine_mark == self.written_mark {
            return Ok(());
        }
        let mut buf = [0u8; 40];
        buf[0..8].copy_from_slice(&self.sender.to_le_bytes());
        buf[8..16].copy_from_slice(&target.to_le_bytes());
        buf[16..24].copy_from_slice(&(self.sender ^ target ^ SEQ_CHECK).to_le_bytes());
        buf[24..32].copy_from_slice(&self.engine_mark.to_le_bytes());
        buf[32..40].copy_from_slice(&(self.engine_mark ^ MARK_CHECK).to_le_bytes());
        self.seqs.write_all_at(&buf, 0).map_err(io_err(&self.seq_path))?;
        if self.policy == FsyncPolicy::Always {
            self.seqs.sync_data().map_err(io_err(&self.seq_path))?;
        }
        (self.written_target, self.written_mark, self.sender_dirty) = (target, self.engine_mark, false);
        Ok(())
    }
}

impl MessageStore for FileStore {
    fn next_sender_seq(&self) -> u64 {
        self.sender
    }
    fn next_target_seq(&self) -> u64 {
        self.target
    }
    fn set_next_sender_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        self.sender = seq;
        self.sender_dirty = true;
        self.write_seqs()
    }
    fn set_next_target_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        self.target = seq;
        self.write_seqs()
    }
    fn store_outbound(&mut self, seq: u64, msg: &[u8]) -> Result<(), StoreError> {
        if msg.len() > MAX_RECORD {
            return Err(StoreError::TooLarge(msg.len()));
        }
        // One write(2) per record so a crash leaves at most one torn record.
        // The record buffer is reused: no allocation per message.
        let rec = &mut self.rec;
        rec.clear();
        rec.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(msg);
        self.body.write_all(rec).map_err(io_err(&self.body_path))?;
        if self.policy == FsyncPolicy::Always {
            self.body.sync_data().map_err(io_err(&self.body_path))?;
        }
        self.index.insert(seq, (self.end + 12, msg.len() as u32));
        self.end += (12 + msg.len()) as u64;
        self.sender = seq + 1;
        Ok(())
    }
    fn outbound_range(&self, begin: u64, end: u64, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError> {
        if begin > end {
            return Ok(());
        }
        let mut buf = Vec::new();
        for (&seq, &(off, len)) in self.index.range(begin..=end) {
            buf.resize(len as usize, 0);
            self.body.read_exact_at(&mut buf, off).map_err(io_err(&self.body_path))?;
            f(seq, &buf);
        }
        Ok(())
    }
    fn reset(&mut self) -> Result<(), StoreError> {
        self.body.set_len(0).map_err(io_err(&self.body_path))?;
        self.body.seek(SeekFrom::Start(0)).map_err(io_err(&self.body_path))?;
        self.index.clear();
        self.end = 0;
        self.sender = 1;
        self.target = 1;
        self.holds.clear();
        self.sender_dirty = true;
        if self.policy == FsyncPolicy::Always {
            self.body.sync_data().map_err(io_err(&self.body_path))?;
        }
        self.write_seqs()
    }
    fn hold_inbound(&mut self, seq: u64) {
        self.holds.insert(seq);
    }
    fn release_inbound(&mut self, seq: u64) {
        // Only a release of the lowest hold moves the persisted number.
        if self.holds.first() == Some(&seq) {
            self.marks_dirty = true;
        }
        self.holds.remove(&seq);
    }
    fn engine_mark(&self) -> u64 {
        self.engine_mark
    }
    fn set_engine_mark(&mut self, seq: u64) {
        if seq > self.engine_mark {
            self.engine_mark = seq;
            self.marks_dirty = true;
        }
    }
    fn flush_marks(&mut self) -> Result<(), StoreError> {
        if self.marks_dirty {
            self.write_seqs()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &dyn MessageStore, b: u64, e: u64) -> Vec<(u64, Vec<u8>)> {
        let mut v = Vec::new();
        s.outbound_range(b, e, &mut |seq, m| v.push((seq, m.to_vec()))).unwrap();
        v
    }

    #[test]
    fn memory_store() {
        let mut s = MemoryStore::new();
        s.store_outbound(1, b"a").unwrap();
        s.store_outbound(2, b"b").unwrap();
        assert_eq!(s.next_sender_seq(), 3);
        assert_eq!(collect(&s, 2, 9), vec![(2, b"b".to_vec())]);
        s.reset().unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (1, 1));
    }

    #[test]
    fn file_store_survives_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::Always).unwrap();
            s.store_outbound(1, b"first").unwrap();
            s.store_outbound(2, b"second").unwrap();
            s.set_next_target_seq(7).unwrap();
        }
        // Simulate a crash in the middle of writing record 3.
        let body = dir.path().join("A-B.body");
        let mut f = OpenOptions::new().append(true).open(&body).unwrap();
        f.write_all(&[9, 0, 0, 0, 3, 0]).unwrap();
        drop(f);
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (3, 7));
        assert_eq!(collect(&s, 1, 0).len() + collect(&s, 1, 2).len(), 2, "empty range and both records");
        s.store_outbound(3, b"third").unwrap();
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(collect(&s, 2, 3), vec![(2, b"second".to_vec()), (3, b"third".to_vec())]);
        let mut s = s;
        s.reset().unwrap();
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (1, 1));
        assert!(collect(&s, 1, 100).is_empty());
    }

    #[test]
    fn unchanged_numbers_are_not_rewritten_but_changes_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        s.set_next_target_seq(4).unwrap();
        s.set_next_sender_seq(10).unwrap();
        // Held at the number the file already has: nothing to write, and nothing lost.
        s.hold_inbound(4);
        s.set_next_target_seq(5).unwrap();
        drop(s);
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (10, 4));
        s.set_next_sender_seq(3).unwrap();
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(s.next_sender_seq(), 3, "an explicit sender number is always written");
    }

    #[test]
    fn held_inbound_messages_are_expected_again_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
            s.hold_inbound(5);
            s.set_next_target_seq(6).unwrap();
            s.hold_inbound(6);
            s.set_next_target_seq(7).unwrap();
            s.set_engine_mark(42);
            s.release_inbound(6);
            s.flush_marks().unwrap();
            assert_eq!(s.next_target_seq(), 7, "in memory the session moves on");
        }
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!((s.next_target_seq(), s.engine_mark()), (5, 42), "5 was never finished");
        s.hold_inbound(5);
        s.set_next_target_seq(6).unwrap();
        s.release_inbound(5);
        s.set_engine_mark(41);
        s.flush_marks().unwrap();
        drop(s);
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!((s.next_target_seq(), s.engine_mark()), (6, 42), "released; the mark never goes back");
        s.hold_inbound(6);
        s.reset().unwrap();
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!((s.next_target_seq(), s.engine_mark()), (1, 42), "a reset drops holds, keeps the mark");
    }
}
