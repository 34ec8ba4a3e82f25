//! Castle's engine server: the durable, distributed shell around the sans-IO engine.
//!
//! ```text
//! gateways --TCP--> reader threads --bounded inbox--> sequencer thread --> journal (group commit)
//!                                                          |  engine.apply (while the batch is written)
//!                                                          v  released once durable
//!                               bounded event ring (one chunk per journal batch) --> front end (io_uring ring or threads) --TCP-->
//! ```
//!
//! * **Sequencer** ([`server`]): one thread owns the engine and the journal. It drains the
//!   bounded inbox, gives each command the next sequence number by appending it to the journal
//!   batch, applies it to the engine at once (matching overlaps the write of the previous batch),
//!   and holds its events and acknowledgement until the journal reports the batch durable
//!   (pipelined group commit: at most one batch in flight, the next one filling meanwhile).
//! * **Deduplication**: commands carry (gateway id, request id); per gateway the highest applied
//!   request id is kept (a map bounded by `max_gateways`, rebuilt from snapshot + journal), so a
//!   reconnecting gateway learns what was applied and a resent request is never applied twice.
//! * **Event ring** ([`ring`]): the last `ring_capacity` sequence numbers' events and journal
//!   payloads, one chunk per journal batch (no allocation per command). A subscriber asking for "after N" is served from the ring, or, when N
//!   is older, by deterministic replay (snapshot at or below N + journal) until it reaches the
//!   ring. A subscriber that falls out of the ring while live is disconnected with
//!   `SlowConsumer` and the seq to resume from: matching never waits for a subscriber.
//! * **Recovery** ([`state`]): latest valid snapshot (its stored state hash is re-derived and
//!   checked) + replay of the journal after it; the recovered seq must equal the journal's end.
//! * **Snapshots**: every `snapshot_every` commands the sequencer makes everything durable,
//!   serialises the state into a buffer (a linear walk, a few ms for 100k orders: the only
//!   pause of matching) and hands the buffer to a snapshot thread that writes, fsyncs and
//!   renames it while matching continues. If the previous snapshot is still being written the
//!   new one is skipped rather than queued.
//! * **Hot standby**: `follow` connects to a primary as a standby subscriber, receives the
//!   journal records, appends them byte-identically to its own journal and applies them, so it
//!   reports the same state hash at the same seq. Each record carries the primary's epoch;
//!   a standby refuses records of an older epoch than it has seen (fencing), and promotion
//!   journals a marker record with epoch + 1 before accepting orders. Sequence numbers continue
//!   without a gap.
//! * **Referee** ([`referee`], optional): with `Config::referee` a primary accepts commands only
//!   while it holds the lease of the referee's current epoch, promotion claims the next epoch
//!   there, and a deposed primary refuses orders and rejoins as a standby (see ARCHITECTURE.md
//!   for what this does and does not protect against).
//!
//! * **In process** ([`link`]): [`DurableLink`] is this server as a `castle-link` `EngineLink`
//!   (what `castle serve` runs): non-blocking submit, one feeder thread per subscriber.
//! * **Archive**: after each snapshot, segments older than the oldest kept snapshot move to
//!   `JOURNAL/archive` (never deleted); replays read the archive, then the journal.
//!
//! The TCP framing is specified in [`proto`].

pub mod client;
pub mod link;
pub mod net_uring;
pub mod payload;
pub mod proto;
pub mod referee;
pub mod remote;
pub mod ring;
pub mod server;
pub mod state;

pub use link::DurableLink;
pub use remote::{RemoteConfig, RemoteLink};
pub use server::{recover, Config, LeaseGauge, LocalGateway, LocalSubmitter, Server, StatusInfo};
pub use state::{hex, Replica};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Journal(#[from] castle_journal::JournalError),
    #[error("journal record {seq}: {reason}")]
    BadRecord { seq: u64, reason: String },
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error("recovery ended at seq {recovered} but the journal ends at {journal}")]
    RecoveryGap { recovered: u64, journal: u64 },
    #[error("replay of {dir}: state hash at seq {seq} is {found}, the snapshot says {expected}")]
    HashMismatch { dir: PathBuf, seq: u64, expected: String, found: String },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the sequencer stopped: {0}")]
    Stopped(String),
}

impl ServerError {
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        ServerError::Io { op: op.into(), source }
    }
}

/// Result of a from-scratch replay ([`replay_dir`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayResult {
    pub seq: u64,
    pub hash: castle_engine::StateHash,
    pub records: u64,
    /// Snapshots whose stored hash was compared on the way.
    pub snapshots_checked: usize,
}

/// Rebuilds the state from the journal alone (no snapshot), checking every snapshot it passes
/// (the state hash at its seq must equal the one stored in it). `progress(records, seq)` is
/// called every million records.
pub fn replay_dir(
    dir: &std::path::Path,
    limits: castle_engine::Limits,
    progress: state::Progress<'_>,
) -> Result<ReplayResult, ServerError> {
    replay_dir_with(state::ReplayMode::Pipelined, dir, limits, progress)
}

/// [`replay_dir`] with an explicit [`state::ReplayMode`] (benchmarks compare both).
pub fn replay_dir_with(
    mode: state::ReplayMode,
    dir: &std::path::Path,
    limits: castle_engine::Limits,
    progress: state::Progress<'_>,
) -> Result<ReplayResult, ServerError> {
    let mut checks: std::collections::BTreeMap<u64, castle_engine::StateHash> = Default::default();
    for info in castle_journal::list_snapshots(state::snapshot_dir(dir))? {
        if let Ok(s) = castle_journal::load_snapshot(&info.path) {
            if let Some((seq, hash)) = Replica::snapshot_hash(&s.data) {
                checks.insert(seq, hash);
            }
        }
    }
    let mut r = Replica::new(limits, usize::MAX);
    let mut bad: Option<ServerError> = None;
    let mut checked = 0;
    let records = state::replay_into_with(
        mode,
        dir,
        &mut r,
        u64::MAX,
        |rep, seq, _, _, _| {
            if let Some(expected) = checks.get(&seq) {
                let found = rep.engine.state_hash();
                if &found != expected {
                    bad = Some(ServerError::HashMismatch {
                        dir: dir.to_path_buf(),
                        seq,
                        expected: hex(expected),
                        found: hex(&found),
                    });
                    return false;
                }
                checked += 1;
            }
            true
        },
        progress,
    )?;
    if let Some(e) = bad {
        return Err(e);
    }
    Ok(ReplayResult { seq: r.seq(), hash: r.engine.state_hash(), records, snapshots_checked: checked })
}

/// Every record of a journal directory as (seq, payload), for tools and tests.
pub fn journal_records(
    dir: &std::path::Path,
) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), ServerError>>, ServerError> {
    let r = castle_journal::JournalReader::open(dir, 1)?;
    Ok(r.map(|x| x.map(|rec| (rec.seq, rec.payload)).map_err(ServerError::from)))
}
