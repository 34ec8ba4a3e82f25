//! Per-session persistence: the next sequence numbers in both directions and
//! every outbound message (so a ResendRequest can be answered, also after a
//! gateway restart).
//!
//! [`MemoryStore`] is for tests and for sessions that reset daily and do not
//! need restart recovery. [`FileStore`] is the production store:
//!
//! - `<name>.body`: append-only log of outbound messages, each record
//!   `[u32 LE length][u64 LE MsgSeqNum][message bytes]`. An in-memory index
//!   (seq -> offset) is rebuilt by scanning at open; a torn record or the
//!   zero tail the file was grown ahead with (crash mid-write) is truncated
//!   away.
//! - `<name>.seqnums`: two 64-byte slots `[u64 next sender][u64 next
//!   target][u64 check][u64 engine mark][u64 check][u64 generation][u64
//!   check]`, written alternately when a number changes that the body log
//!   cannot reconstruct (inbound progress, resets, gap fills, holds, the
//!   engine mark); the open takes the newest valid one. On open the next
//!   sender number is max(file, last logged seq + 1), so the body append
//!   alone is enough to persist outbound progress. (24- and 40-byte files of
//!   older versions read as slot 0, engine mark 0 for the 24-byte ones.)
//!
//! Both files are written through shared memory mappings ([`FileStore`]):
//! no system call per message.
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
//! Fsync policy ([`FsyncPolicy`]): `OsBuffered` (default) stores each change
//! in the page cache (a memory copy into the mapping) and leaves flushing to
//! the kernel: everything survives a
//! gateway *process* crash or restart, which is the common case, at no
//! latency cost. `Always` adds fdatasync after every change so numbers and
//! messages also survive power loss / kernel crash, at the cost of a disk
//! flush (milliseconds on this VM) per message. If the seq file is lost
//! anyway (power loss under `OsBuffered`), the FIX protocol recovers: a lower
//! expected inbound number makes the peer's messages look too high, we send
//! a ResendRequest and receive PossDup copies.

use crate::grow::{BodyFile, AHEAD, STEP};
use crate::mapped::Mapping;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
const GEN_CHECK: u64 = 0x9E37_79B9_7F4A_7C15;
/// The seqnums file: two 64-byte slots (see [`FileStore`]).
const SLOT: usize = 64;
const SEQ_FILE_LEN: usize = 2 * SLOT;
/// Virtual size mapped for the body at open, once: the file grows inside
/// it without a new mapping (pages beyond the end of the file are never
/// touched). Address space only: pages are used as written. A file that
/// outgrows it (a session storing 16 GiB without a reset) is remapped
/// twice as large by the writer.
const BODY_MAP_RESERVE: usize = 16 << 30;

/// File-backed store (see the module documentation for the layout).
///
/// Both files are written through shared memory mappings, so storing a
/// message or a number is a memory copy, not a system call; durability is
/// that of write(2) (see [`crate::mapped`]), and `FsyncPolicy::Always`
/// adds fdatasync as before.
///
/// - Body records are written bytes first and header (length) last, behind
///   a store fence: a crash leaves either a whole record or a zero header,
///   and the open-time scan stops at the first zero header. The file is
///   grown ahead in steps and cut back to the last record when the store
///   is dropped (or at the next open, after a crash).
/// - The seqnums file has two slots, each `[sender][target][check][engine
///   mark][check][generation][check]`, written alternately, generation
///   last. A crash in the middle of writing one leaves the other, one
///   change older, which the open picks: older numbers are the safe side
///   (a lower expected inbound number asks the peer to resend; the order
///   layer drops what the engine already had). Slot 0 alone is the old
///   40-byte format, read as generation 0.
#[derive(Debug)]
pub struct FileStore {
    body_path: PathBuf,
    seq_path: PathBuf,
    /// The body file, shared with the grower (see [`crate::grow`]).
    body: Arc<BodyFile>,
    seqs: File,
    /// The body file mapped from offset 0 (replaced, under the growth
    /// lock, only when the file outgrows it).
    body_map: Mapping,
    /// Bytes of the body known ready to store into (grown, allocated and
    /// inside `body_map`): the last value read from the grower, refreshed
    /// when a record does not fit below it.
    ready: u64,
    /// Whether the grower grows the body ahead, and the length it was last
    /// asked to reach.
    grow_ahead: bool,
    asked: u64,
    /// Address space mapped for a body file at open (BODY_MAP_RESERVE).
    map_reserve: usize,
    seq_map: Mapping,
    /// Slot the next write of the numbers goes to, and its generation.
    next_slot: usize,
    next_gen: u64,
    policy: FsyncPolicy,
    sender: u64,
    target: u64,
    /// seq -> (offset of the message bytes, length). A later record with the
    /// same seq (cannot happen without reset, which truncates) would win.
    index: BTreeMap<u64, (u64, u32)>,
    /// End of the last record.
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
    stats: GrowthStats,
}

/// How the body file was grown (see [`FileStore::growth_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrowthStats {
    /// Growth steps done by the writing (session) thread: it caught up with
    /// the grower (or runs without one). Each one is file-system work on the
    /// session's thread.
    pub writer_grew: u64,
    /// Growth steps done ahead by the background grower.
    pub grower_grew: u64,
    /// Offset of the current message file below which writeback has been
    /// started (see [`crate::grow`]: writeback behind the writer). It starts
    /// at the file's length at open (0 after a reset) and stays there with
    /// `CASTLE_FIX_STORE_WRITEBACK=0` or without a grower.
    pub written_back: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// One slot of the seqnums file as read at open.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// (sender, target) when their check holds.
    numbers: Option<(u64, u64)>,
    mark: Option<u64>,
    /// 0 when absent or torn.
    generation: u64,
}

fn read_slot(b: &[u8]) -> Slot {
    let word = |i: usize| b.get(i * 8..i * 8 + 8).map(|w| u64::from_le_bytes(w.try_into().unwrap()));
    let mut slot = Slot::default();
    if let (Some(s), Some(t), Some(c)) = (word(0), word(1), word(2)) {
        if c == s ^ t ^ SEQ_CHECK && s > 0 && t > 0 {
            slot.numbers = Some((s, t));
        }
    }
    if let (Some(m), Some(c)) = (word(3), word(4)) {
        if c == m ^ MARK_CHECK {
            slot.mark = Some(m);
        }
    }
    if let (Some(g), Some(c)) = (word(5), word(6)) {
        if c == g ^ GEN_CHECK {
            slot.generation = g;
        }
    }
    slot
}

impl FileStore {
    /// Open (or create) the store files `<dir>/<name>.body` and
    /// `<dir>/<name>.seqnums`. `name` is typically "SENDER-TARGET".
    /// The body file is grown ahead of the writer by a background thread
    /// (see [`crate::grow`]).
    pub fn open(dir: &Path, name: &str, policy: FsyncPolicy) -> Result<FileStore, StoreError> {
        Self::open_with(dir, name, policy, true)
    }

    /// [`FileStore::open`], choosing whether a background thread grows the
    /// body file ahead (`grow_ahead`) or the writer grows it when a record
    /// does not fit (the behaviour before session 7; for comparisons).
    pub fn open_with(dir: &Path, name: &str, policy: FsyncPolicy, grow_ahead: bool) -> Result<FileStore, StoreError> {
        Self::open_impl(dir, name, policy, grow_ahead, BODY_MAP_RESERVE)
    }

    fn open_impl(
        dir: &Path,
        name: &str,
        policy: FsyncPolicy,
        grow_ahead: bool,
        map_reserve: usize,
    ) -> Result<FileStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let body_path = dir.join(format!("{name}.body"));
        let seq_path = dir.join(format!("{name}.seqnums"));
        let open = |p: &Path| {
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p).map_err(io_err(p))
        };
        let mut body = open(&body_path)?;
        let seqs = open(&seq_path)?;

        // Rebuild the index; cut a torn or zero (grown ahead) tail.
        let mut data = Vec::new();
        body.read_to_end(&mut data).map_err(io_err(&body_path))?;
        let mut index = BTreeMap::new();
        let mut pos = 0usize;
        let mut last_seq = 0u64;
        while pos + 12 <= data.len() {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            let seq = u64::from_le_bytes(data[pos + 4..pos + 12].try_into().unwrap());
            // Sequence numbers start at 1: a zero header is the end of the log.
            if len == 0 || seq == 0 || len > MAX_RECORD || pos + 12 + len > data.len() {
                break;
            }
            index.insert(seq, ((pos + 12) as u64, len as u32));
            last_seq = seq;
            pos += 12 + len;
        }
        if pos != data.len() {
            body.set_len(pos as u64).map_err(io_err(&body_path))?;
        }
        drop(data);
        let body_map =
            Mapping::new(&body, map_reserve.max((2 * pos).next_power_of_two())).map_err(io_err(&body_path))?;
        let body = Arc::new(BodyFile::new(body, &body_path, pos as u64, body_map.addr(), body_map.len()));
        // Nothing is grown ahead until the session stores something (its
        // first store grows the file itself and asks the grower): a gateway
        // with many idle sessions does not hold AHEAD of disk and page
        // cache for each.

        let mut buf = [0u8; SEQ_FILE_LEN];
        let n = read_prefix(&seqs, &mut buf).map_err(io_err(&seq_path))?;
        let slots = [read_slot(&buf[..n.min(SLOT)]), read_slot(&buf[SLOT.min(n)..n])];
        // The newest slot with valid numbers (slot 0 on a tie: the old format).
        let best = if slots[1].numbers.is_some()
            && (slots[0].numbers.is_none() || slots[1].generation > slots[0].generation)
        {
            1
        } else {
            0
        };
        let (mut sender, target) = slots[best].numbers.unwrap_or((1, 1));
        let loaded = slots[best].numbers.is_some();
        let engine_mark = slots[best].mark.or(slots[1 - best].mark).unwrap_or(0);
        if (n as u64) < SEQ_FILE_LEN as u64 {
            seqs.set_len(SEQ_FILE_LEN as u64).map_err(io_err(&seq_path))?;
        }
        let seq_map = Mapping::new(&seqs, SEQ_FILE_LEN).map_err(io_err(&seq_path))?;
        sender = sender.max(last_seq + 1);
        Ok(FileStore {
            body_path,
            seq_path,
            body,
            seqs,
            body_map,
            ready: pos as u64,
            grow_ahead,
            asked: pos as u64,
            map_reserve,
            seq_map,
            next_slot: 1 - best,
            next_gen: slots[best].generation + 1,
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
            stats: GrowthStats::default(),
        })
    }

    fn write_seqs(&mut self) -> Result<(), StoreError> {
        // The lowest held inbound message is expected again after a crash.
        let target = self.holds.first().map_or(self.target, |&h| h.min(self.target));
        self.marks_dirty = false;
        if !self.sender_dirty && target == self.written_target && self.engine_mark == self.written_mark {
            return Ok(());
        }
        let mut buf = [0u8; 56];
        buf[0..8].copy_from_slice(&self.sender.to_le_bytes());
        buf[8..16].copy_from_slice(&target.to_le_bytes());
        buf[16..24].copy_from_slice(&(self.sender ^ target ^ SEQ_CHECK).to_le_bytes());
        buf[24..32].copy_from_slice(&self.engine_mark.to_le_bytes());
        buf[32..40].copy_from_slice(&(self.engine_mark ^ MARK_CHECK).to_le_bytes());
        buf[40..48].copy_from_slice(&self.next_gen.to_le_bytes());
        buf[48..56].copy_from_slice(&(self.next_gen ^ GEN_CHECK).to_le_bytes());
        let at = self.next_slot * SLOT;
        self.seq_map.write(at, &buf[..40]);
        Mapping::store_fence();
        self.seq_map.write(at + 40, &buf[40..]);
        if self.policy == FsyncPolicy::Always {
            self.seqs.sync_data().map_err(io_err(&self.seq_path))?;
        }
        self.next_slot = 1 - self.next_slot;
        self.next_gen += 1;
        (self.written_target, self.written_mark, self.sender_dirty) = (target, self.engine_mark, false);
        Ok(())
    }

    /// The writer caught up with the ready part of the body: grow the file
    /// (and its mapping) to hold at least `need` bytes on this thread. Waits
    /// at most for the grower's step in progress.
    fn catch_up(&mut self, need: u64) -> Result<(), StoreError> {
        let body = self.body.clone();
        let mut st = body.lock();
        if need as usize > self.body_map.len() {
            let len = (2 * need as usize).next_power_of_two().max(2 * self.body_map.len());
            self.body_map = Mapping::new(&body.file, len).map_err(io_err(&self.body_path))?;
            (st.map_addr, st.map_len) = (self.body_map.addr(), self.body_map.len());
        }
        if st.len < need {
            let to = need.max(st.len + STEP).next_multiple_of(4096);
            body.grow_locked(&mut st, to).map_err(io_err(&self.body_path))?;
            self.stats.writer_grew += 1;
            tracing::debug!(path = %self.body_path.display(), len = to, grown_by_writer = self.stats.writer_grew,
                "FIX store writer caught up with its grower and grew the file itself");
        }
        drop(st);
        self.ready = body.ready().min(self.body_map.len() as u64);
        debug_assert!(self.ready >= need);
        if self.grow_ahead {
            self.asked = need + AHEAD;
            body.set_passed(self.end);
            body.ask(self.asked);
        }
        Ok(())
    }

    /// How the body file was grown so far.
    pub fn growth_stats(&self) -> GrowthStats {
        GrowthStats {
            writer_grew: self.stats.writer_grew,
            grower_grew: self.stats.grower_grew + self.body.grower_steps.load(std::sync::atomic::Ordering::Relaxed),
            written_back: self.body.flushed(),
        }
    }
}

/// Read up to `buf.len()` bytes from the start of `f`; how many there were.
fn read_prefix(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // Stop the grower (it may hold this file in its queue), then leave
        // the log ending at its last record (a crash leaves the zero tail
        // instead, which the next open cuts).
        let mut st = self.body.lock();
        st.closed = true;
        if st.len != self.end {
            let _ = self.body.file.set_len(self.end);
            st.len = self.end;
        }
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
        if msg.is_empty() || seq == 0 {
            // Would read back as the end of the log.
            return Err(StoreError::Io {
                path: self.body_path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "empty message or sequence number 0"),
            });
        }
        let at = self.end;
        let need = at + 12 + msg.len() as u64;
        if need > self.ready {
            self.ready = self.body.ready().min(self.body_map.len() as u64);
            if need > self.ready {
                self.catch_up(need)?;
            }
        }
        // Bytes, then sequence number, then (after the fence) the length:
        // a crash leaves a whole record or a zero header (see FileStore).
        self.body_map.write(at as usize + 12, msg);
        self.body_map.write(at as usize + 4, &seq.to_le_bytes());
        Mapping::store_fence();
        self.body_map.write(at as usize, &(msg.len() as u32).to_le_bytes());
        if self.policy == FsyncPolicy::Always {
            self.body.file.sync_data().map_err(io_err(&self.body_path))?;
        }
        self.index.insert(seq, (at + 12, msg.len() as u32));
        self.end += (12 + msg.len()) as u64;
        self.sender = seq + 1;
        // Keep the grower AHEAD of the end, asking once per STEP written
        // (a request the grower could not take is repeated a STEP later).
        if self.grow_ahead && self.end + AHEAD >= self.asked + STEP {
            self.asked = self.end + AHEAD;
            // The grower also has the pages behind this end written back.
            self.body.set_passed(self.end);
            self.body.ask(self.asked);
        }
        Ok(())
    }
    fn outbound_range(&self, begin: u64, end: u64, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError> {
        if begin > end {
            return Ok(());
        }
        for (&seq, &(off, len)) in self.index.range(begin..=end) {
            f(seq, self.body_map.slice(off as usize, len as usize));
        }
        Ok(())
    }
    fn reset(&mut self) -> Result<(), StoreError> {
        // A new empty file replaces the log (rename: atomic), instead of
        // truncating it: freeing the old file's blocks can wait for the disk
        // (`discard` mounts), so the old file is closed, and its blocks freed,
        // on the grower's thread (see grow::retire). A crash before the
        // rename leaves the old log and a stray `.body.new`, truncated by the
        // next reset; after it, an empty log (as a truncation would).
        let tmp = self.body_path.with_extension("body.new");
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &self.body_path).map_err(io_err(&self.body_path))?;
        if self.policy == FsyncPolicy::Always {
            if let Some(dir) = self.body_path.parent() {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
            }
        }
        let map = Mapping::new(&file, self.map_reserve).map_err(io_err(&self.body_path))?;
        let body = Arc::new(BodyFile::new(file, &self.body_path, 0, map.addr(), map.len()));
        let old_body = std::mem::replace(&mut self.body, body);
        let old_map = std::mem::replace(&mut self.body_map, map);
        self.stats.grower_grew += old_body.grower_steps.load(std::sync::atomic::Ordering::Relaxed);
        crate::grow::retire(old_body, old_map);
        self.ready = 0;
        self.asked = AHEAD;
        if self.grow_ahead {
            self.body.ask(AHEAD);
        }
        self.index.clear();
        self.end = 0;
        self.sender = 1;
        self.target = 1;
        self.holds.clear();
        self.sender_dirty = true;
        if self.policy == FsyncPolicy::Always {
            self.body.file.sync_data().map_err(io_err(&self.body_path))?;
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

/// Page cache state of a file's first `len` bytes (0: to its end), in pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PageCacheState {
    pub cached: u64,
    pub dirty: u64,
    pub writeback: u64,
    pub evicted: u64,
    pub recently_evicted: u64,
}

/// The page cache state of `[0, len)` of `file` (the cachestat system call,
/// Linux 6.5+; None where it is not available). For tests and measurements
/// of the store's writeback (`examples/store_pace.rs`), not for the hot path.
pub fn page_cache(file: &File, len: u64) -> Option<PageCacheState> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    // No wrapper in libc 0.2 yet: the raw system call number on every
    // architecture with the unified syscall table.
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off: 0, len };
    let mut st = PageCacheState::default();
    // SAFETY: cachestat(fd, &range, &stat, 0) on a descriptor we hold and
    // two locals of the layout the kernel expects (five u64 counters).
    let r = unsafe {
        libc::syscall(SYS_CACHESTAT, file.as_raw_fd(), &range as *const Range, &mut st as *mut PageCacheState, 0u32)
    };
    (r == 0).then_some(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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

    #[test]
    fn a_crash_leaves_a_zero_tail_that_the_next_open_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        s.store_outbound(1, b"first").unwrap();
        s.store_outbound(2, b"second").unwrap();
        s.set_next_target_seq(9).unwrap();
        let body = dir.path().join("A-B.body");
        assert!(std::fs::metadata(&body).unwrap().len() >= STEP, "grown ahead");
        // A crash: no Drop, so the zero tail stays (the mapping leaks in this
        // test only). The grower is let finish first: in a real crash it dies too.
        wait_grown(&s);
        std::mem::forget(s);
        // Opened without a grower, which would grow the file again at once.
        let s = FileStore::open_with(dir.path(), "A-B", FsyncPolicy::OsBuffered, false).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (3, 9));
        assert_eq!(collect(&s, 1, 2), vec![(1, b"first".to_vec()), (2, b"second".to_vec())]);
        assert_eq!(std::fs::metadata(&body).unwrap().len(), 2 * 12 + 11, "cut at the last record");
        drop(s);
        assert_eq!(std::fs::metadata(&body).unwrap().len(), 2 * 12 + 11);
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_other_one() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
            s.set_next_target_seq(4).unwrap();
            s.set_next_target_seq(5).unwrap();
            s.set_next_target_seq(6).unwrap();
        }
        let path = dir.path().join("A-B.seqnums");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), SEQ_FILE_LEN);
        // The newest slot (target 6) is torn in its check word: 5 wins.
        let newest = (0..2).max_by_key(|&i| read_slot(&bytes[i * SLOT..(i + 1) * SLOT]).generation).unwrap();
        assert_eq!(read_slot(&bytes[newest * SLOT..(newest + 1) * SLOT]).numbers.map(|n| n.1), Some(6));
        let mut torn = bytes.clone();
        torn[newest * SLOT + 16] ^= 1;
        std::fs::write(&path, &torn).unwrap();
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(s.next_target_seq(), 5);
        // The next write goes to the torn slot and wins from then on.
        s.set_next_target_seq(7).unwrap();
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(s.next_target_seq(), 7);
        // A torn generation makes a slot the oldest.
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = (0..2).max_by_key(|&i| read_slot(&bytes[i * SLOT..(i + 1) * SLOT]).generation).unwrap();
        bytes[newest * SLOT + 48] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(s.next_target_seq(), 5);
    }

    #[test]
    fn old_forty_byte_numbers_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Vec::new();
        for w in [12u64, 34, 12 ^ 34 ^ SEQ_CHECK, 77, 77 ^ MARK_CHECK] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        std::fs::write(dir.path().join("A-B.seqnums"), &b).unwrap();
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq(), s.engine_mark()), (12, 34, 77));
        s.set_next_target_seq(35).unwrap();
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq(), s.engine_mark()), (12, 35, 77));
    }

    /// The grown tail's blocks are allocated at growth (fallocate), so
    /// first stores into it do not allocate blocks inside page faults; a
    /// reopened store whose file ends mid-page grows and reads back fine.
    #[test]
    fn grown_tail_is_allocated_up_front() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let body = dir.path().join("A-B.body");
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        s.store_outbound(1, b"8=FIX.4.4\x01first").unwrap();
        let m = std::fs::metadata(&body).unwrap();
        assert!(m.blocks() * 512 >= STEP, "{} bytes allocated for a {} byte file", m.blocks() * 512, m.len());
        drop(s);
        // Reopened: the file is cut to its last record (not page aligned).
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        let big = vec![b'y'; (STEP as usize) + 100];
        s.store_outbound(2, &big).unwrap();
        s.store_outbound(3, b"third").unwrap();
        let mut got = Vec::new();
        s.outbound_range(1, 3, &mut |seq, m| got.push((seq, m.len()))).unwrap();
        assert_eq!(got, vec![(1, 15), (2, big.len()), (3, 5)]);
    }

    #[test]
    fn the_body_map_grows_past_its_first_size() {
        let dir = tempfile::tempdir().unwrap();
        // A small reserve stands for the 16 GiB one.
        let reserve = 8 << 20;
        let mut s = FileStore::open_impl(dir.path(), "A-B", FsyncPolicy::OsBuffered, true, reserve).unwrap();
        let big = vec![b'x'; 1 << 20];
        let n = (reserve >> 20) as u64 + 3;
        for seq in 1..=n {
            s.store_outbound(seq, &big).unwrap();
        }
        assert!(s.body_map.len() > reserve);
        let mut seen = 0;
        s.outbound_range(1, n, &mut |_, m| {
            assert_eq!(m.len(), big.len());
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, n);
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(s.next_sender_seq(), n + 1);
    }

    /// Poll (deadline 60 s) until the grower has done what it was asked.
    fn wait_grown(s: &FileStore) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while s.body.ready() < s.asked {
            assert!(std::time::Instant::now() < deadline, "the grower did not reach {} bytes", s.asked);
            std::thread::yield_now();
        }
    }

    /// The grower keeps the file grown, allocated and mapped AHEAD of the
    /// writer: records that fit in that lead cost the writer no growth.
    #[test]
    fn the_grower_keeps_the_file_grown_ahead_of_the_writer() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let body = dir.path().join("A-B.body");
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(std::fs::metadata(&body).unwrap().len(), 0, "nothing grown before the first store");
        let msg = vec![b'r'; 250];
        s.store_outbound(1, &msg).unwrap();
        assert_eq!(s.growth_stats().writer_grew, 1, "the first store grows the file itself");
        wait_grown(&s);
        let m = std::fs::metadata(&body).unwrap();
        assert!(
            m.len() >= AHEAD && m.blocks() * 512 >= AHEAD,
            "grown {} bytes, {} allocated",
            m.len(),
            m.blocks() * 512
        );
        // ... and its pages faulted in (resident in the page cache, mapped).
        let mut vec = vec![0u8; (AHEAD / 4096) as usize];
        // SAFETY: the range is the start of our own mapping, inside the file (grown to >= AHEAD).
        let r = unsafe { libc::mincore(s.body_map.addr() as *mut libc::c_void, AHEAD as usize, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        let resident = vec.iter().filter(|b| *b & 1 == 1).count();
        assert_eq!(resident, vec.len(), "pages resident");
        // 3 MiB of ~260-byte records: more than a STEP, less than the lead.
        let n = (3 << 20) / 262;
        for seq in 2..=n {
            s.store_outbound(seq, &msg).unwrap();
        }
        assert_eq!(s.growth_stats().writer_grew, 1, "the writer grew the file only for the first store");
        // It asked for more as it went; the grower follows.
        wait_grown(&s);
        assert!(s.body.ready() >= s.end + AHEAD - STEP);
        assert!(s.growth_stats().grower_grew >= (AHEAD / STEP) + 2, "{:?}", s.growth_stats());
        let mut seen = 0;
        s.outbound_range(1, n, &mut |_, m| {
            assert_eq!(m, &msg[..]);
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, n);
        drop(s);
        assert_eq!(std::fs::metadata(&body).unwrap().len(), n * 262, "cut back to the last record at close");
    }

    /// A record larger than the lead catches the writer up: it grows the
    /// file itself (counted), and the record is stored whole.
    #[test]
    fn a_writer_that_catches_up_grows_the_file_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        s.store_outbound(1, b"first").unwrap();
        wait_grown(&s);
        assert_eq!(s.growth_stats().writer_grew, 1, "the first store");
        let big = vec![b'b'; 2 * AHEAD as usize];
        s.store_outbound(2, &big).unwrap();
        s.store_outbound(3, b"after").unwrap();
        assert_eq!(s.growth_stats().writer_grew, 2, "the big record caught up with the grower");
        assert_eq!(collect(&s, 3, 3), vec![(3, b"after".to_vec())]);
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(collect(&s, 2, 2), vec![(2, big)]);

        // Without a grower the writer grows the file, one STEP at a time.
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::open_with(dir.path(), "A-B", FsyncPolicy::OsBuffered, false).unwrap();
        let msg = vec![b'w'; 250];
        let n = (3 << 20) / 262 + 10;
        for seq in 1..=n {
            s.store_outbound(seq, &msg).unwrap();
        }
        assert_eq!(s.growth_stats(), GrowthStats { writer_grew: 4, grower_grew: 0, written_back: 0 });
        assert_eq!(collect(&s, n, n), vec![(n, msg)]);
    }

    /// A crash while the grower was growing the file (length set, blocks
    /// allocated or not, pages zero) leaves a zero tail: the next open cuts
    /// it, and the store goes on (also growing ahead again) from the last
    /// whole record.
    #[test]
    fn a_crash_in_the_middle_of_growth_reopens_at_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let body = dir.path().join("A-B.body");
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        for seq in 1..=100u64 {
            s.store_outbound(seq, format!("message {seq}").as_bytes()).unwrap();
        }
        let end = s.end;
        wait_grown(&s);
        std::mem::forget(s);
        // Mid-growth: the length was set further, its blocks not allocated (a hole).
        let f = OpenOptions::new().write(true).open(&body).unwrap();
        f.set_len(std::fs::metadata(&body).unwrap().len() + 3 * STEP + 123).unwrap();
        drop(f);
        // Opened without a grower first (it would grow the file again at once).
        let s = FileStore::open_with(dir.path(), "A-B", FsyncPolicy::OsBuffered, false).unwrap();
        assert_eq!(s.end, end);
        assert_eq!(std::fs::metadata(&body).unwrap().len(), end, "zero tail cut at open");
        assert_eq!(s.next_sender_seq(), 101);
        assert_eq!(collect(&s, 100, 100), vec![(100, b"message 100".to_vec())]);
        drop(s);
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(s.end, end);
        s.store_outbound(101, b"message 101").unwrap();
        wait_grown(&s);
        assert!(s.body.ready() >= s.end + AHEAD, "growing ahead again");
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(collect(&s, 99, 200).len(), 3);
    }

    /// A reset replaces the log with a new empty file (the old one is closed
    /// on the grower's thread); the grower grows the new file ahead.
    #[test]
    fn a_reset_starts_growing_ahead_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        s.store_outbound(1, b"one").unwrap();
        wait_grown(&s);
        let body = dir.path().join("A-B.body");
        let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&body).unwrap());
        let before = inode();
        s.reset().unwrap();
        assert_ne!(inode(), before, "a new file replaced the log");
        assert!(!dir.path().join("A-B.body.new").exists());
        wait_grown(&s);
        let before = s.growth_stats().writer_grew;
        s.store_outbound(1, b"uno").unwrap();
        assert_eq!(s.growth_stats().writer_grew, before, "grown ahead after the reset");
        drop(s);
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(collect(&s, 1, 9), vec![(1, b"uno".to_vec())]);
    }

    fn dirty_pages(file: &File, len: u64) -> Option<(u64, u64)> {
        super::page_cache(file, len).map(|c| (c.dirty, c.writeback))
    }

    /// The grower has the flusher start writeback of the pages its writer
    /// has passed: the written-back offset follows the writer's end to
    /// within one growth request, never reaches into the page the writer is
    /// still storing into, and those pages are no longer dirty.
    #[test]
    fn the_grower_writes_back_behind_the_writer() {
        assert!(
            crate::grow::write_back_enabled(),
            "CASTLE_FIX_STORE_WRITEBACK=0 turns off what this test checks: unset it to run the tests"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(s.growth_stats().written_back, 0);
        let msg = vec![b'w'; 250];
        // 5 MiB of records: the writer asks the grower (and so the flusher) once per STEP.
        let n = (5 << 20) / 262;
        for seq in 1..=n {
            s.store_outbound(seq, &msg).unwrap();
        }
        let passed = s.body.passed();
        assert!(passed >= 4 * STEP && passed <= s.end, "the writer published its end: {passed} of {}", s.end);
        let align = crate::grow::PAGE;
        let target = passed & !(align - 1);
        assert!(
            crate::grow::wait_flushed(&s.body, target, std::time::Duration::from_secs(60)),
            "writeback reached {} of {target} in 60 s",
            s.growth_stats().written_back
        );
        let wb = s.growth_stats().written_back;
        assert_eq!(wb % align, 0, "whole pages");
        assert!(wb + STEP + align >= s.end, "written back to {wb}, the writer is at {}", s.end);
        assert!(wb <= s.end & !(align - 1), "never the page the writer stores into: {wb} > {}", s.end);
        if let Some((dirty, _)) = dirty_pages(&s.body.file, wb) {
            assert!(dirty <= 16, "{dirty} pages below the written-back offset are still dirty");
        }
        // The records read back whole, the store goes on and closes as before.
        assert_eq!(collect(&s, 1, 1), vec![(1, msg.clone())]);
        s.store_outbound(n + 1, b"after").unwrap();
        let end = s.end;
        drop(s);
        assert_eq!(std::fs::metadata(dir.path().join("A-B.body")).unwrap().len(), end, "cut back at close");
        let s = FileStore::open(dir.path(), "A-B", FsyncPolicy::OsBuffered).unwrap();
        assert_eq!(s.next_sender_seq(), n + 2);
        assert_eq!(collect(&s, n, n + 1), vec![(n, msg), (n + 1, b"after".to_vec())]);
    }
}
