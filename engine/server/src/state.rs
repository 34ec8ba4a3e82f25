//! The replicated state: engine + gateway deduplication index + fencing epoch, its snapshot
//! format, and recovery (latest snapshot + journal replay).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use castle_engine::{Event, FastEngine, Limits, StateHash};
use castle_journal::{list_snapshots, load_snapshot, JournalError, JournalReader};

use crate::payload::Payload;
use crate::ServerError;

const MAGIC: [u8; 8] = *b"CSTLSRV\0";
const VERSION: u32 = 1;

/// Where snapshots live inside a journal directory.
pub fn snapshot_dir(journal: &Path) -> PathBuf {
    journal.join("snapshots")
}

/// Where journal segments older than the oldest retained snapshot are moved (never deleted).
pub fn archive_dir(journal: &Path) -> PathBuf {
    journal.join("archive")
}

/// A reader positioned at `from`: on the journal, or on its archive when `from` precedes the
/// journal's oldest segment. The flag says it is the archive (which ends where the journal
/// starts: read on from the journal after it).
pub fn reader_from(dir: &Path, from: u64) -> Result<(JournalReader, bool), ServerError> {
    match JournalReader::open(dir, from) {
        Err(JournalError::SeqNotAvailable { .. }) if archive_dir(dir).is_dir() => {
            Ok((JournalReader::open(archive_dir(dir), from)?, true))
        }
        r => Ok((r?, false)),
    }
}

/// Per gateway: the highest request id applied and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatewayMark {
    pub request: u64,
    pub seq: u64,
}

/// What a journal record did to the dedup index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedup {
    Fresh,
    Duplicate(GatewayMark),
    TooManyGateways,
}

pub struct Replica {
    pub engine: FastEngine,
    /// Bounded by `max_gateways`; a BTreeMap so snapshots are canonical.
    pub gateways: BTreeMap<u32, GatewayMark>,
    pub max_gateways: usize,
    /// Highest epoch seen in the journal.
    pub epoch: u64,
}

impl Replica {
    pub fn new(limits: Limits, max_gateways: usize) -> Self {
        Replica { engine: FastEngine::new(limits), gateways: BTreeMap::new(), max_gateways, epoch: 0 }
    }

    pub fn seq(&self) -> u64 {
        self.engine.seq()
    }

    /// Would a command from this gateway/request be applied?
    pub fn check(&self, gateway: u32, request: u64) -> Dedup {
        if gateway == 0 {
            return Dedup::Fresh;
        }
        match self.gateways.get(&gateway) {
            Some(m) if request <= m.request => Dedup::Duplicate(*m),
            Some(_) => Dedup::Fresh,
            None if self.gateways.len() >= self.max_gateways => Dedup::TooManyGateways,
            None => Dedup::Fresh,
        }
    }

    /// Applies a journaled record (already checked, or replayed: replay trusts the journal).
    pub fn apply(&mut self, ts: u64, p: &Payload, out: &mut Vec<Event>) -> u64 {
        let seq = self.engine.apply(ts, &p.command, out);
        if p.gateway != 0 {
            // The highest request id, not the latest: a TCP gateway's are increasing (the dedup
            // check refuses anything else), but in-process gateways submit from several tasks
            // and may be journaled slightly out of order; `first_request` must pass them all.
            let m = self.gateways.entry(p.gateway).or_default();
            if p.request >= m.request {
                *m = GatewayMark { request: p.request, seq };
            }
        }
        self.epoch = self.epoch.max(p.epoch);
        seq
    }

    /// Server snapshot: header (epoch, dedup index) + engine snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        let engine = self.engine.snapshot();
        let mut out = Vec::with_capacity(engine.len() + 32 + self.gateways.len() * 20);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&(self.gateways.len() as u32).to_le_bytes());
        for (g, m) in &self.gateways {
            out.extend_from_slice(&g.to_le_bytes());
            out.extend_from_slice(&m.request.to_le_bytes());
            out.extend_from_slice(&m.seq.to_le_bytes());
        }
        out.extend_from_slice(&engine);
        out
    }

    pub fn restore(limits: Limits, max_gateways: usize, b: &[u8]) -> Result<Self, ServerError> {
        let bad = |why: &str| ServerError::Snapshot(why.to_string());
        let mut r = castle_engine::codec::Reader::new(b);
        let magic: [u8; 8] = r.bytes().map_err(|_| bad("short"))?;
        if magic != MAGIC {
            return Err(bad("bad magic"));
        }
        let v = r.u32().map_err(|_| bad("short"))?;
        if v != VERSION {
            return Err(bad(&format!("unknown server snapshot version {v}")));
        }
        let epoch = r.u64().map_err(|_| bad("short"))?;
        let n = r.u32().map_err(|_| bad("short"))? as usize;
        if n > max_gateways {
            return Err(bad("more gateways than the index holds"));
        }
        let mut gateways = BTreeMap::new();
        for _ in 0..n {
            let g = r.u32().map_err(|_| bad("short"))?;
            let request = r.u64().map_err(|_| bad("short"))?;
            let seq = r.u64().map_err(|_| bad("short"))?;
            gateways.insert(g, GatewayMark { request, seq });
        }
        let engine = FastEngine::restore(limits, &b[r.position()..]).map_err(|e| bad(&e.to_string()))?;
        Ok(Replica { engine, gateways, max_gateways, epoch })
    }

    /// The engine snapshot's stored state hash and seq, read without restoring (for replay checks).
    pub fn snapshot_hash(b: &[u8]) -> Option<(u64, StateHash)> {
        let mut r = castle_engine::codec::Reader::new(b);
        r.bytes::<12>().ok()?;
        r.u64().ok()?;
        let n = r.u32().ok()? as usize;
        let engine = b.get(24 + n * 20..)?;
        // Engine snapshot: magic 8, version 4, limits 3*4 + 4*8, then seq, now, ids (5 x 8), hash.
        let at = 8 + 4 + 12 + 32;
        let seq = u64::from_le_bytes(engine.get(at..at + 8)?.try_into().ok()?);
        let hash: StateHash = engine.get(at + 40..at + 72)?.try_into().ok()?;
        Some((seq, hash))
    }
}

/// Progress callback for replays: (records so far, last seq).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Restores the newest valid snapshot at or below `max_seq` (if any) from `dir/snapshots`.
pub fn load_snapshot_at_or_below(
    dir: &Path,
    limits: Limits,
    max_gateways: usize,
    max_seq: u64,
) -> Result<Option<Replica>, ServerError> {
    for info in list_snapshots(snapshot_dir(dir))?.into_iter().rev() {
        if info.seq > max_seq {
            continue;
        }
        match load_snapshot(&info.path) {
            Ok(s) => match Replica::restore(limits, max_gateways, &s.data) {
                Ok(r) if r.seq() == s.seq => return Ok(Some(r)),
                Ok(_) => tracing::warn!(file = %info.path.display(), "snapshot seq does not match its file; skipped"),
                Err(e) => {
                    tracing::warn!(file = %info.path.display(), error = %e, "snapshot refused; trying an older one")
                }
            },
            Err(e) => {
                tracing::warn!(file = %info.path.display(), error = %e, "snapshot unreadable; trying an older one")
            }
        }
    }
    Ok(None)
}

/// Replays journal records after the replica's seq up to `until` (inclusive), calling `each`
/// with every record's events. Errors on a gap or an undecodable payload.
///
/// Pipelined: a reader thread reads the segments, checks every record's CRC and sequence and
/// decodes the payloads into batches of [`REPLAY_BATCH`] records, handed over through a bounded
/// queue of [`REPLAY_QUEUE`] batches (buffers are recycled, so nothing is allocated per record);
/// this thread only applies. Records reach the engine in journal order and an error is reported
/// after every record before it was applied, exactly as a single-threaded replay would.
pub fn replay_into(
    dir: &Path,
    r: &mut Replica,
    until: u64,
    each: impl FnMut(&Replica, u64, u64, &[u8], &[Event]) -> bool,
    progress: Progress<'_>,
) -> Result<u64, ServerError> {
    replay_into_with(ReplayMode::Pipelined, dir, r, until, each, progress)
}

/// How [`replay_into_with`] reads the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayMode {
    /// Reading, CRC checks and payload decoding on a second thread (the default).
    Pipelined,
    /// Everything on the calling thread (the earlier design, kept for comparison in
    /// `castle bench durable`).
    Serial,
}

/// [`replay_into`] with an explicit [`ReplayMode`].
pub fn replay_into_with(
    mode: ReplayMode,
    dir: &Path,
    r: &mut Replica,
    until: u64,
    mut each: impl FnMut(&Replica, u64, u64, &[u8], &[Event]) -> bool,
    progress: Progress<'_>,
) -> Result<u64, ServerError> {
    let mut out = Vec::with_capacity(1_024);
    let mut n = 0u64;
    // At most two passes: the archive (when `from` is that old), then the journal.
    loop {
        let from = r.seq() + 1;
        if from > until {
            return Ok(n);
        }
        let (reader, archived) = reader_from(dir, from)?;
        let before = r.seq();
        let stopped = match mode {
            ReplayMode::Pipelined => replay_reader(reader, r, until, &mut each, &mut *progress, &mut out, &mut n)?,
            ReplayMode::Serial => {
                let mut reader = reader;
                replay_reader_serial(&mut reader, r, until, &mut each, &mut *progress, &mut out, &mut n)?
            }
        };
        if stopped || !archived || r.seq() == before {
            return Ok(n);
        }
    }
}

/// Records per hand-over from the reader thread to the applying thread.
pub const REPLAY_BATCH: usize = 1_024;
/// Decoded batches queued between the two threads (bounds replay memory to a few MB).
pub const REPLAY_QUEUE: usize = 4;

/// A run of consecutive records, CRC-checked and decoded by the reader thread.
#[derive(Default)]
struct DecodedBatch {
    /// Payload bytes back to back (the callback gets each record's slice).
    bytes: Vec<u8>,
    /// (seq, ts, end of the payload in `bytes`, decoded payload)
    recs: Vec<(u64, u64, usize, Payload)>,
    /// Set on the last batch: why reading stopped.
    end: Option<ReadEnd>,
}

enum ReadEnd {
    /// End of the journal.
    Exhausted,
    /// A record past `until` was reached.
    PastUntil,
    Failed(ServerError),
}

/// The reader thread: fills batches until the journal ends, `until` is passed, a record is bad,
/// or the applying side hangs up.
fn read_ahead(
    mut reader: JournalReader,
    until: u64,
    tx: std::sync::mpsc::SyncSender<DecodedBatch>,
    recycled: std::sync::mpsc::Receiver<DecodedBatch>,
) {
    loop {
        let mut b = recycled.try_recv().unwrap_or_else(|_| DecodedBatch {
            bytes: Vec::with_capacity(REPLAY_BATCH * 96),
            recs: Vec::with_capacity(REPLAY_BATCH),
            end: None,
        });
        b.bytes.clear();
        b.recs.clear();
        b.end = None;
        while b.recs.len() < REPLAY_BATCH {
            match reader.next_record() {
                Ok(Some(rec)) if rec.seq > until => {
                    b.end = Some(ReadEnd::PastUntil);
                    break;
                }
                Ok(Some(rec)) => match Payload::decode(rec.payload) {
                    Ok(p) => {
                        b.bytes.extend_from_slice(rec.payload);
                        b.recs.push((rec.seq, rec.ts, b.bytes.len(), p));
                    }
                    Err(e) => {
                        b.end = Some(ReadEnd::Failed(ServerError::BadRecord { seq: rec.seq, reason: e.to_string() }));
                        break;
                    }
                },
                Ok(None) => {
                    b.end = Some(ReadEnd::Exhausted);
                    break;
                }
                Err(e) => {
                    b.end = Some(ReadEnd::Failed(e.into()));
                    break;
                }
            }
        }
        let last = b.end.is_some();
        if tx.send(b).is_err() || last {
            return;
        }
    }
}

/// [`replay_into`] over one reader; true when `each` asked to stop or `until` was passed.
fn replay_reader(
    reader: JournalReader,
    r: &mut Replica,
    until: u64,
    each: &mut impl FnMut(&Replica, u64, u64, &[u8], &[Event]) -> bool,
    progress: Progress<'_>,
    out: &mut Vec<Event>,
    n: &mut u64,
) -> Result<bool, ServerError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<DecodedBatch>(REPLAY_QUEUE);
    let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<DecodedBatch>(REPLAY_QUEUE + 2);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("castle-replay-read".into())
            .spawn_scoped(scope, move || read_ahead(reader, until, tx, back_rx))
            .map_err(|e| ServerError::io("spawning the replay reader", e))?;
        // Dropping `rx` (on any return) makes the reader's next send fail, so it stops early.
        let rx = rx;
        loop {
            let Ok(mut b) = rx.recv() else {
                return Err(ServerError::Stopped("the replay reader stopped".into()));
            };
            let mut start = 0;
            for &(seq, ts, end, ref p) in &b.recs {
                out.clear();
                let applied = r.apply(ts, p, out);
                if applied != seq {
                    return Err(ServerError::BadRecord {
                        seq,
                        reason: format!("journal record seq {seq} but engine at seq {applied}"),
                    });
                }
                *n += 1;
                if *n % 1_000_000 == 0 {
                    progress(*n, seq);
                }
                if !each(r, seq, ts, &b.bytes[start..end], out) {
                    return Ok(true);
                }
                start = end;
            }
            match b.end.take() {
                None => {
                    let _ = back_tx.try_send(b);
                }
                Some(ReadEnd::Exhausted) => return Ok(false),
                Some(ReadEnd::PastUntil) => return Ok(true),
                Some(ReadEnd::Failed(e)) => return Err(e),
            }
        }
    })
}

/// [`ReplayMode::Serial`]: read, check, decode and apply on one thread.
fn replay_reader_serial(
    reader: &mut JournalReader,
    r: &mut Replica,
    until: u64,
    each: &mut impl FnMut(&Replica, u64, u64, &[u8], &[Event]) -> bool,
    progress: Progress<'_>,
    out: &mut Vec<Event>,
    n: &mut u64,
) -> Result<bool, ServerError> {
    while let Some(rec) = reader.next_record()? {
        if rec.seq > until {
            return Ok(true);
        }
        let p =
            Payload::decode(rec.payload).map_err(|e| ServerError::BadRecord { seq: rec.seq, reason: e.to_string() })?;
        out.clear();
        let seq = r.apply(rec.ts, &p, out);
        if seq != rec.seq {
            return Err(ServerError::BadRecord {
                seq: rec.seq,
                reason: format!("journal record seq {} but engine at seq {seq}", rec.seq),
            });
        }
        *n += 1;
        if *n % 1_000_000 == 0 {
            progress(*n, seq);
        }
        if !each(r, seq, rec.ts, rec.payload, out) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn hex(h: &StateHash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
