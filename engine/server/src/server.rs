//! The server: recovery, the sequencer thread, TCP connections, the standby follower.

use std::collections::VecDeque;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use castle_engine::codec::put_event_kind;
use castle_engine::{Command, Event, EventKind, InstrumentSpec, Limits, StateHash};
use castle_journal::{
    prune_snapshots, write_snapshot, Journal, JournalError, JournalOptions, RecoveryMode, Verify, WriterChoice,
};

use crate::payload::Payload;
use crate::proto::{self, AckStatus, Body, ClientFrame, GoodbyeReason, Role};
use crate::ring::{ChunkBuilder, Entry, Ring};
use crate::state::{self, Dedup, GatewayMark, Replica};
use crate::ServerError;

/// Server configuration. Every queue is bounded by one of these.
#[derive(Debug, Clone)]
pub struct Config {
    pub journal_dir: PathBuf,
    /// TCP address for gateways, subscribers and standbys; empty: no TCP at all (in-process use
    /// through [`crate::DurableLink`] only).
    pub listen: String,
    /// Run as a hot standby of the primary at this address.
    pub follow: Option<String>,
    pub limits: Limits,
    pub writer: WriterChoice,
    pub recovery: RecoveryMode,
    /// Sequence numbers kept in memory for subscribers.
    pub ring_capacity: usize,
    /// Messages waiting for the sequencer, each a batch of at most 256 commands of one gateway
    /// (gateway readers block when it is full).
    pub inbox_capacity: usize,
    /// Distinct gateway ids in the deduplication index.
    pub max_gateways: usize,
    /// Acknowledgements queued per gateway connection before it is cut off as too slow.
    pub gateway_queue: usize,
    /// Commands between snapshots (0: never).
    pub snapshot_every: u64,
    /// Snapshots kept on disk.
    pub snapshots_kept: usize,
    /// After each snapshot, move journal segments older than the oldest retained snapshot into
    /// `JOURNAL/archive` (renamed, never deleted; replays read them from there).
    pub archive_segments: bool,
    /// Most commands taken from the inbox per turn of the sequencer loop.
    pub max_batch: usize,
    pub max_connections: usize,
    pub journal_segment_size: u64,
    /// How recovery replays the journal (pipelined by default).
    pub replay: state::ReplayMode,
    /// The TCP front end: io_uring when available (the default), or threads on std sockets.
    pub net: crate::net_uring::NetChoice,
    /// Fencing by an external referee: orders are accepted only while this node holds the
    /// lease of the referee's current epoch, and promotion claims the next epoch there. None:
    /// a primary accepts orders whenever it is primary (a single node; logged at start).
    pub referee: Option<crate::referee::NodeConfig>,
    /// A stream consumer (subscriber, standby) that takes no bytes for this long is cut off
    /// (both front ends); it resumes from the last seq it received.
    pub stall_timeout: Duration,
    /// Open orders the engine's lookup tables hold without growing. They grow
    /// by doubling, and each doubling moves every entry at once: tens of
    /// milliseconds at 100k resting orders, during which no command is
    /// applied. Reserving at start costs address space and the tables'
    /// control bytes (about 1 byte per slot, a few hundred KiB), not a page
    /// fault per entry: slots are backed when first used. 0: start small.
    pub reserve_orders: usize,
    /// Also write the reserved tables' pages (and each book's order arena for
    /// `reserve_orders` orders) once at start
    /// ([`castle_engine::Engine::fault_in_order_index`]), so the first orders
    /// do not page-fault on the sequencer. Costs resident memory (~24 MB per
    /// instrument and ~16 MB of client order ids at the default reserve) and
    /// some milliseconds at start. Default off; `castle serve` turns it on.
    pub fault_in_orders: bool,
    /// A new connection that has not sent its Hello within this is refused with
    /// `Goodbye(ProtocolError)` and closed (both front ends), so silent sockets cannot pile up.
    pub hello_timeout: Duration,
}

/// Default [`Config::reserve_orders`]: the first doubling comes after about
/// 229k resting orders instead of 57k.
pub const RESERVE_ORDERS: usize = 1 << 17;

impl Config {
    pub fn new(journal_dir: impl Into<PathBuf>, listen: impl Into<String>) -> Self {
        Config {
            journal_dir: journal_dir.into(),
            listen: listen.into(),
            follow: None,
            limits: Limits::default(),
            writer: WriterChoice::Auto,
            recovery: RecoveryMode::Strict,
            ring_capacity: 1 << 16,
            inbox_capacity: 4_096,
            max_gateways: 1 << 16,
            gateway_queue: 1 << 16,
            snapshot_every: 1_000_000,
            snapshots_kept: 2,
            archive_segments: true,
            max_batch: 8_192,
            max_connections: 1_024,
            journal_segment_size: 64 << 20,
            replay: state::ReplayMode::Pipelined,
            net: crate::net_uring::NetChoice::Auto,
            referee: None,
            stall_timeout: crate::net_uring::STALL_TIMEOUT,
            reserve_orders: RESERVE_ORDERS,
            fault_in_orders: false,
            hello_timeout: crate::net_uring::HELLO_TIMEOUT,
        }
    }
}

/// Answer to a Status request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusInfo {
    pub primary: bool,
    pub epoch: u64,
    pub seq: u64,
    pub hash: StateHash,
}

/// A gateway connection's outbound queue (bounded).
pub(crate) struct ConnOut {
    pub(crate) tx: SyncSender<Vec<u8>>,
    pub(crate) dead: AtomicBool,
    /// Wakes the io_uring front end's thread (None for the std threads, which block on `tx`).
    pub(crate) wake: Option<Arc<crate::net_uring::Waker>>,
}

impl ConnOut {
    fn send(&self, frame: Vec<u8>) {
        match self.tx.try_send(frame) {
            Ok(()) => {
                if let Some(w) = &self.wake {
                    w.wake();
                }
            }
            Err(TrySendError::Full(_)) => {
                // Never block the sequencer on a gateway: cut it off; it reconnects and asks.
                if !self.dead.swap(true, Ordering::Relaxed) {
                    tracing::warn!("gateway acknowledgement queue full: disconnecting the gateway");
                }
                if let Some(w) = &self.wake {
                    w.wake();
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

pub(crate) enum Inbound {
    /// Commands of one gateway in request order, batched per read so the channel hand-off
    /// (a futex wake-up on a busy machine) is paid per batch, not per command.
    Submit {
        gateway: u32,
        cmds: Vec<(u64, Command)>,
        out: Arc<ConnOut>,
    },
    /// One command of an in-process gateway ([`crate::DurableLink`]): no acknowledgement (the
    /// gateway sees its origin in the event stream) and no deduplication: in process the gateway
    /// and the engine live and die together, so there is no reconnect to deduplicate. Its request
    /// ids still never repeat: after a restart it numbers from `EngineLink::first_request` (one
    /// past the highest journaled), so origins in a replayed stream are never taken for new ones.
    Local {
        gateway: u32,
        request: u64,
        command: Command,
    },
    GatewayHello {
        gateway: u32,
        reply: SyncSender<(StatusInfo, GatewayMark)>,
    },
    Record {
        seq: u64,
        ts: u64,
        payload: Vec<u8>,
    },
    Status {
        reply: SyncSender<StatusInfo>,
    },
    Promote {
        reply: SyncSender<StatusInfo>,
    },
}

pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) ring: Mutex<Ring>,
    /// Signalled whenever entries are released into the ring (and at shutdown).
    pub(crate) cond: Condvar,
    pub(crate) shutdown: AtomicBool,
    primary: AtomicBool,
    epoch: AtomicU64,
    /// Last seq appended (standby: what to ask the primary for after a reconnect).
    pub(crate) applied: AtomicU64,
    pub(crate) connections: AtomicUsize,
    /// The standby's connection to its primary, so promotion can cut it.
    follow_conn: Mutex<Option<TcpStream>>,
    error: Mutex<Option<String>>,
    /// Listed instruments, refreshed by the sequencer when one is added.
    pub(crate) instruments: RwLock<Vec<InstrumentSpec>>,
    /// The io_uring front end's waker: its stream connections send from the ring, so a release
    /// into the ring must wake it (the threads wait on `cond` instead).
    pub(crate) net_waker: OnceLock<Arc<crate::net_uring::Waker>>,
    /// The monotonic clock's origin for `lease_until`.
    t0: std::time::Instant,
    /// End of this node's referee lease in ns since `t0`; `u64::MAX` without a referee. The
    /// sequencer accepts commands only before it (read once per turn).
    lease_until: AtomicU64,
    /// What this node tells the referee about where it serves.
    advertise: String,
}

/// See [`Server::lease_gauge`].
#[derive(Clone)]
pub struct LeaseGauge(Arc<Shared>);

impl LeaseGauge {
    /// Milliseconds left of this node's referee lease, on the node's own (conservative) count:
    /// 0 when it holds none (a standby, deposed, or unable to renew: no orders are accepted);
    /// `None` without a referee (the lease never ends).
    pub fn remaining_ms(&self) -> Option<u64> {
        let until = self.0.lease_until.load(Ordering::SeqCst);
        if until == u64::MAX {
            return None;
        }
        Some(until.saturating_sub(self.0.t0.elapsed().as_nanos() as u64) / 1_000_000)
    }
}

pub struct Server {
    pub(crate) shared: Arc<Shared>,
    pub(crate) inbox: SyncSender<Inbound>,
    addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
}

fn listed(engine: &castle_engine::FastEngine) -> Vec<InstrumentSpec> {
    (0..engine.limits().max_instruments).filter_map(|id| engine.instrument(id).copied()).collect()
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Opens the journal and recovers the state: latest snapshot + replay.
pub fn recover(cfg: &Config) -> Result<(Replica, Journal), ServerError> {
    let started = std::time::Instant::now();
    let mut opts = JournalOptions::new(&cfg.journal_dir);
    opts.writer = cfg.writer;
    opts.recovery = cfg.recovery;
    opts.segment_size = cfg.journal_segment_size;
    // Strict start-up verifies only the last segment (where a crash leaves a torn tail): the
    // replay below reads, and CRC-checks, every segment after the snapshot anyway and fails
    // naming file and offset, and reading gigabytes of older segments would dominate restart
    // time. Asked to truncate, verify everything so corruption anywhere is cut off.
    opts.verify = match cfg.recovery {
        RecoveryMode::Strict => Verify::LastSegment,
        RecoveryMode::Truncate => Verify::Full,
    };
    // The newest snapshot is restored on a second thread while the journal is opened (which
    // reads and checks the last segment): the two are independent unless recovery truncated the
    // journal below that snapshot, in which case an older one is loaded afterwards.
    let (opened, newest) = std::thread::scope(|scope| {
        let newest = std::thread::Builder::new()
            .name("castle-snapshot-load".into())
            .spawn_scoped(scope, || {
                state::load_snapshot_at_or_below(&cfg.journal_dir, cfg.limits, cfg.max_gateways, u64::MAX)
            })
            .ok();
        let opened = Journal::open(opts);
        (opened, newest.and_then(|h| h.join().ok()))
    });
    let (journal, report) = opened?;
    for t in &report.truncations {
        tracing::warn!(file = %t.file.display(), offset = t.offset, reason = %t.reason, corruption = t.corruption, "journal truncated");
    }
    let last = report.last_seq.unwrap_or(0);
    let newest = match newest {
        Some(Ok(Some(r))) if r.seq() <= last => Some(r),
        Some(Ok(None)) => None,
        // Past the (truncated) journal's end, failed, or not loaded: the sequential way.
        _ => state::load_snapshot_at_or_below(&cfg.journal_dir, cfg.limits, cfg.max_gateways, last)?,
    };
    let mut r = newest.unwrap_or_else(|| Replica::new(cfg.limits, cfg.max_gateways));
    // Before replay, so replay does not double the tables either.
    r.engine.reserve_order_index(cfg.reserve_orders);
    if cfg.fault_in_orders {
        r.engine.fault_in_order_index();
    }
    let from = r.seq();
    let n =
        state::replay_into_with(cfg.replay, &cfg.journal_dir, &mut r, last, |_, _, _, _, _| true, &mut |n, seq| {
            tracing::info!(records = n, seq, "replaying journal");
        })?;
    if r.seq() != last {
        return Err(ServerError::RecoveryGap { recovered: r.seq(), journal: last });
    }
    tracing::info!(
        snapshot_seq = from, replayed = n, seq = last, epoch = r.epoch, hash = %state::hex(&r.engine.state_hash()),
        ms = started.elapsed().as_millis() as u64, writer = %report.writer, "recovered"
    );
    Ok((r, journal))
}

impl Server {
    /// Recovers, binds and starts every thread.
    pub fn start(cfg: Config) -> Result<Server, ServerError> {
        if cfg.ring_capacity < 2 * cfg.max_batch {
            // One release can hold `max_batch` commands: a smaller ring drops entries before
            // any subscriber could read them, cutting off even subscribers that keep up.
            tracing::warn!(
                ring = cfg.ring_capacity,
                max_batch = cfg.max_batch,
                "event ring smaller than two releases: live subscribers will be cut off as slow"
            );
        }
        let (mut rep, journal) = recover(&cfg)?;
        let primary = cfg.follow.is_none();
        if primary && rep.epoch == 0 {
            rep.epoch = 1;
        }
        let listener = if cfg.listen.is_empty() {
            None
        } else {
            let l = TcpListener::bind(&cfg.listen).map_err(|e| ServerError::io(format!("bind {}", cfg.listen), e))?;
            l.set_nonblocking(true).map_err(|e| ServerError::io("nonblocking", e))?;
            Some(l)
        };
        let addr = match &listener {
            Some(l) => Some(l.local_addr().map_err(|e| ServerError::io("local addr", e))?),
            None => None,
        };
        let (tx, rx) = sync_channel(cfg.inbox_capacity);
        let shared = Arc::new(Shared {
            ring: Mutex::new(Ring::new(rep.seq() + 1, cfg.ring_capacity)),
            cond: Condvar::new(),
            shutdown: AtomicBool::new(false),
            primary: AtomicBool::new(primary),
            epoch: AtomicU64::new(rep.epoch),
            applied: AtomicU64::new(rep.seq()),
            connections: AtomicUsize::new(0),
            follow_conn: Mutex::new(None),
            error: Mutex::new(None),
            instruments: RwLock::new(listed(&rep.engine)),
            net_waker: OnceLock::new(),
            t0: std::time::Instant::now(),
            lease_until: AtomicU64::new(if cfg.referee.is_some() { 0 } else { u64::MAX }),
            advertise: match (&cfg.referee, addr) {
                (Some(r), _) if !r.advertise.is_empty() => r.advertise.clone(),
                (_, Some(a)) => a.to_string(),
                _ => String::new(),
            },
            cfg,
        });
        tracing::info!(addr = ?addr, primary, epoch = rep.epoch, seq = rep.seq(), "engine server listening");
        match &shared.cfg.referee {
            None => tracing::info!(
                "no referee configured: a primary accepts orders without a lease (single node; keeping a deposed primary from accepting orders is the operator's job)"
            ),
            Some(r) => {
                tracing::info!(
                    referee = %r.referee, node = r.node, advertise = %shared.advertise,
                    "referee configured: orders are accepted only while this node holds the referee's lease"
                );
                if shared.advertise.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_unspecified()) {
                    tracing::warn!(
                        advertise = %shared.advertise,
                        "advertised address is a wildcard: other nodes cannot follow it (set --advertise)"
                    );
                }
            }
        }
        let mut threads = Vec::new();
        let (snap_tx, snap_rx) = sync_channel::<(u64, Vec<u8>)>(1);
        {
            let sh = shared.clone();
            threads.push(spawn("castle-snapshot", move || snapshot_writer(sh, snap_rx)));
        }
        {
            let sh = shared.clone();
            threads.push(spawn("castle-sequencer", move || {
                let mut s = Sequencer::new(sh.clone(), rep, journal, snap_tx);
                if let Err(e) = s.run(rx) {
                    tracing::error!(error = %e, "sequencer stopped");
                    *sh.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
                let _ = s.journal.commit();
                sh.shutdown.store(true, Ordering::SeqCst);
                sh.cond.notify_all();
            }));
        }
        if let Some(listener) = listener {
            threads.push(crate::net_uring::start(shared.clone(), listener, tx.clone())?);
        }
        if let Some(primary_addr) = shared.cfg.follow.clone() {
            let (sh, tx) = (shared.clone(), tx.clone());
            threads.push(spawn("castle-follow", move || follower(sh, primary_addr, tx)));
        }
        if let Some(r) = shared.cfg.referee.clone() {
            let (sh, tx) = (shared.clone(), tx.clone());
            threads.push(spawn("castle-lease", move || lease_keeper(sh, r, tx)));
        }
        Ok(Server { shared, inbox: tx, addr, threads })
    }

    /// The TCP address (None when started without a listener).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Status from the sequencer (waits for durability of everything applied).
    pub fn status(&self) -> Result<StatusInfo, ServerError> {
        let (tx, rx) = sync_channel(1);
        self.inbox.send(Inbound::Status { reply: tx }).map_err(|_| ServerError::Stopped("inbox closed".into()))?;
        rx.recv().map_err(|_| ServerError::Stopped("no status reply".into()))
    }

    /// An in-process gateway: the same sequencer path as a TCP gateway, over channels (for
    /// `castle serve` and benchmarks). `queue` bounds its acknowledgement queue.
    pub fn local_gateway(&self, gateway: u32, queue: usize) -> LocalGateway {
        let (tx, rx) = sync_channel(queue.max(1));
        LocalGateway {
            gateway,
            inbox: self.inbox.clone(),
            out: Arc::new(ConnOut { tx, dead: AtomicBool::new(false), wake: None }),
            rx,
        }
    }

    /// A reader of this node's referee lease that never waits on the sequencer (for metrics).
    pub fn lease_gauge(&self) -> LeaseGauge {
        LeaseGauge(self.shared.clone())
    }

    /// Open TCP connections (gateways, subscribers, standbys, control).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// True once the server has stopped (error or shutdown).
    pub fn stopped(&self) -> bool {
        self.shared.shutdown.load(Ordering::SeqCst)
    }

    /// Stops every thread (after committing what is pending) and returns the sequencer's error, if any.
    pub fn shutdown(self) -> Result<(), ServerError> {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.cond.notify_all();
        if let Some(c) = self.shared.follow_conn.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        drop(self.inbox);
        for t in self.threads {
            let _ = t.join();
        }
        match self.shared.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(ServerError::Stopped(e)),
            None => Ok(()),
        }
    }
}

/// See [`Server::local_gateway`].
pub struct LocalGateway {
    gateway: u32,
    inbox: SyncSender<Inbound>,
    out: Arc<ConnOut>,
    rx: Receiver<Vec<u8>>,
}

impl LocalGateway {
    /// A submit-only handle for another thread (acknowledgements still arrive here).
    pub fn submitter(&self) -> LocalSubmitter {
        LocalSubmitter { gateway: self.gateway, inbox: self.inbox.clone(), out: self.out.clone() }
    }

    /// Submits a command (blocks while the sequencer's inbox is full).
    pub fn submit(&self, request: u64, cmd: Command) -> Result<(), ServerError> {
        self.inbox
            .send(Inbound::Submit { gateway: self.gateway, cmds: vec![(request, cmd)], out: self.out.clone() })
            .map_err(|_| ServerError::Stopped("inbox closed".into()))
    }

    /// Next batch of acknowledgements, appended to `out` as (request id, seq, status); false on
    /// timeout or when cut off.
    pub fn recv_acks(&self, timeout: Duration, out: &mut Vec<(u64, u64, AckStatus)>) -> bool {
        let Ok(buf) = self.rx.recv_timeout(timeout) else { return false };
        let mut b = Body(&buf);
        while let (Some(_len), Some(_ty), Some(req), Some(seq), Some(st)) =
            (b.u32(), b.u8(), b.u64(), b.u64(), b.u8().and_then(AckStatus::from_u8))
        {
            out.push((req, seq, st));
        }
        true
    }
}

/// See [`LocalGateway::submitter`].
pub struct LocalSubmitter {
    gateway: u32,
    inbox: SyncSender<Inbound>,
    out: Arc<ConnOut>,
}

impl LocalSubmitter {
    /// Submits commands in request order as one inbox message (blocks while the inbox is full).
    pub fn submit_batch(&self, cmds: Vec<(u64, Command)>) -> Result<(), ServerError> {
        self.inbox
            .send(Inbound::Submit { gateway: self.gateway, cmds, out: self.out.clone() })
            .map_err(|_| ServerError::Stopped("inbox closed".into()))
    }

    /// Submits a command (blocks while the sequencer's inbox is full).
    pub fn submit(&self, request: u64, cmd: Command) -> Result<(), ServerError> {
        self.inbox
            .send(Inbound::Submit { gateway: self.gateway, cmds: vec![(request, cmd)], out: self.out.clone() })
            .map_err(|_| ServerError::Stopped("inbox closed".into()))
    }
}

pub(crate) fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.into()).spawn(f).expect("spawning a server thread")
}

fn snapshot_writer(sh: Arc<Shared>, rx: Receiver<(u64, Vec<u8>)>) {
    let dir = state::snapshot_dir(&sh.cfg.journal_dir);
    while let Ok((seq, blob)) = rx.recv() {
        let t = std::time::Instant::now();
        match write_snapshot(&dir, seq, &blob) {
            Ok(path) => {
                tracing::info!(seq, bytes = blob.len(), ms = t.elapsed().as_millis() as u64, file = %path.display(), "snapshot");
                if let Err(e) = prune_snapshots(&dir, sh.cfg.snapshots_kept) {
                    tracing::warn!(error = %e, "pruning snapshots");
                } else if sh.cfg.archive_segments {
                    archive_before_oldest_snapshot(&sh.cfg.journal_dir, &dir);
                }
            }
            Err(e) => tracing::error!(seq, error = %e, "writing snapshot"),
        }
    }
}

/// Moves the segments every retained snapshot has made unnecessary for recovery (all their
/// records at or below the oldest snapshot's seq) into the archive.
fn archive_before_oldest_snapshot(journal: &std::path::Path, snapshots: &std::path::Path) {
    let oldest = match castle_journal::list_snapshots(snapshots) {
        Ok(list) => list.first().map(|s| s.seq),
        Err(e) => return tracing::warn!(error = %e, "listing snapshots"),
    };
    if let Some(seq) = oldest {
        if let Err(e) = castle_journal::archive_segments_before(journal, state::archive_dir(journal), seq + 1) {
            tracing::error!(error = %e, "archiving journal segments");
        }
    }
}

/// Events of one seq as an `Events` frame.
fn events_frame(seq: u64, ts: u64, events: &[Event]) -> Vec<u8> {
    let mut f = Vec::with_capacity(25 + events.len() * 64);
    put_events_frame(&mut f, seq, ts, events);
    f
}

/// Appends an `Events` frame to `f`.
fn put_events_frame(f: &mut Vec<u8>, seq: u64, ts: u64, events: &[Event]) {
    let at = f.len();
    f.extend_from_slice(&[0; 5]);
    f.extend_from_slice(&seq.to_le_bytes());
    f.extend_from_slice(&ts.to_le_bytes());
    f.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        put_event_kind(f, &e.kind);
    }
    let len = (f.len() - at - 4) as u32;
    f[at..at + 4].copy_from_slice(&len.to_le_bytes());
    f[at + 4] = proto::EVENTS;
}

pub(crate) fn ack_frame(request: u64, seq: u64, status: AckStatus) -> Vec<u8> {
    let mut f = Vec::with_capacity(22);
    put_ack(&mut f, request, seq, status);
    f
}

fn put_ack(f: &mut Vec<u8>, request: u64, seq: u64, status: AckStatus) {
    let at = f.len();
    proto::frame_header(f, proto::ACK, 17);
    // The body as one block (this runs once per command at full rate).
    let mut b = [0u8; 17];
    b[0..8].copy_from_slice(&request.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16] = status as u8;
    f.extend_from_slice(&b);
    debug_assert_eq!(f.len() - at, ACK_FRAME_LEN);
}

/// Bytes of one `Ack` frame (header included).
const ACK_FRAME_LEN: usize = 22;

/// An acknowledgement waiting for its seq to be durable. Its connection is in
/// [`Sequencer::pending_conns`] (one entry per run of consecutive acks to the same connection,
/// so the sequencer does not clone and drop an `Arc` per command).
struct Pending {
    seq: u64,
    request: u64,
    /// Seq to report (the original's for a duplicate).
    reported: u64,
    status: AckStatus,
}

struct Sequencer {
    sh: Arc<Shared>,
    rep: Replica,
    journal: Journal,
    snap_tx: SyncSender<(u64, Vec<u8>)>,
    pending: VecDeque<Pending>,
    /// The connections of `pending`, run-length: (connection, acks in the run), oldest first.
    pending_conns: VecDeque<(Arc<ConnOut>, usize)>,
    /// Payloads and events of the journal batch being filled ...
    filling: ChunkBuilder,
    /// ... and of the batches submitted but not yet durable, oldest first.
    sealed: VecDeque<crate::ring::Chunk>,
    last_ts: u64,
    since_snapshot: u64,
    acks: Vec<(Arc<ConnOut>, Vec<u8>)>,
    clock: u64,
    /// Chunks that just left the ring (reused buffer).
    evicted: Vec<Arc<crate::ring::Chunk>>,
    /// Monotonic ns since `Shared::t0`, read once per turn (the lease check).
    mono: u64,
}

impl Sequencer {
    fn new(sh: Arc<Shared>, rep: Replica, journal: Journal, snap_tx: SyncSender<(u64, Vec<u8>)>) -> Self {
        Sequencer {
            sh,
            rep,
            journal,
            snap_tx,
            pending: VecDeque::new(),
            pending_conns: VecDeque::new(),
            filling: ChunkBuilder::default(),
            sealed: VecDeque::new(),
            last_ts: 0,
            since_snapshot: 0,
            acks: Vec::new(),
            clock: 0,
            evicted: Vec::new(),
            mono: 0,
        }
    }

    fn run(&mut self, rx: Receiver<Inbound>) -> Result<(), ServerError> {
        let max_batch = self.sh.cfg.max_batch.max(1);
        loop {
            if self.sh.shutdown.load(Ordering::Relaxed) {
                break;
            }
            let idle = self.pending.is_empty() && self.journal.pending_records() == 0 && !self.journal.in_flight();
            let mut msg = if idle {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                rx.try_recv().ok()
            };
            let mut n = 0;
            // One clock read per turn: every command of a batch gets the same time.
            self.clock = now_ns();
            self.mono = self.sh.t0.elapsed().as_nanos() as u64;
            while let Some(m) = msg {
                // Count commands, not messages: a turn ends after about `max_batch` commands so
                // acknowledgements are released at least that often.
                n += self.handle(m)?;
                if n >= max_batch {
                    break;
                }
                msg = rx.try_recv().ok();
            }
            if n == 0 {
                self.tick_if_due()?;
            }
            // Pipelined group commit: at most one batch in flight; the next fills meanwhile.
            if self.journal.in_flight() {
                self.journal.poll()?;
                if n == 0 && self.journal.in_flight() {
                    // Nothing else to do: sleep in the kernel rather than spin on a shared core.
                    self.journal.wait()?;
                }
            }
            if !self.journal.in_flight() && self.journal.pending_records() > 0 {
                self.submit_batch()?;
            }
            self.release();
            if self.sh.cfg.snapshot_every > 0 && self.since_snapshot >= self.sh.cfg.snapshot_every {
                self.snapshot()?;
            }
        }
        self.commit()
    }

    /// With no traffic, time stands still inside the engine: journal a `Tick` once the clock
    /// reaches the earliest GTD expiry so the order expires (and its events go out) without
    /// waiting for the next command. Only when one is due, so an idle journal does not grow.
    fn tick_if_due(&mut self) -> Result<(), ServerError> {
        if !self.may_accept() {
            return Ok(());
        }
        if self.rep.engine.next_expiry().is_some_and(|t| t <= self.clock) {
            self.last_ts = self.last_ts.max(self.clock);
            let p = Payload { epoch: self.rep.epoch, gateway: 0, request: 0, command: Command::Tick };
            self.append(self.last_ts, p, None)?;
        }
        Ok(())
    }

    /// Submits the journal batch being filled; its ring chunk is sealed with it, so a chunk is
    /// always exactly one journal batch and becomes durable as a whole.
    fn submit_batch(&mut self) -> Result<(), ServerError> {
        if let Some(c) = self.filling.seal() {
            self.sealed.push_back(c);
        }
        self.journal.submit()?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), ServerError> {
        self.submit_batch()?;
        self.journal.wait()?;
        self.release();
        Ok(())
    }

    fn snapshot(&mut self) -> Result<(), ServerError> {
        // Only durable state may be snapshotted: a snapshot past the journal's end would make
        // recovery skip records that were never written.
        self.commit()?;
        self.since_snapshot = 0;
        let t = std::time::Instant::now();
        let blob = self.rep.snapshot();
        let seq = self.rep.seq();
        tracing::debug!(seq, us = t.elapsed().as_micros() as u64, "state serialised for a snapshot");
        if self.snap_tx.try_send((seq, blob)).is_err() {
            tracing::warn!(seq, "previous snapshot still being written: skipping this one");
        }
        Ok(())
    }

    /// Queues an acknowledgement for when `seq` is durable.
    fn push_pending(&mut self, out: &Arc<ConnOut>, p: Pending) {
        match self.pending_conns.back_mut() {
            Some((o, n)) if Arc::ptr_eq(o, out) => *n += 1,
            _ => self.pending_conns.push_back((out.clone(), 1)),
        }
        self.pending.push_back(p);
    }

    fn release(&mut self) {
        let durable = self.journal.durable_seq();
        // Durable acks form a prefix of `pending`; walk it run by run (one connection each).
        let ready = self.pending.partition_point(|p| p.seq <= durable);
        let mut done = 0;
        while done < ready {
            let Some((out, run)) = self.pending_conns.front_mut() else { break };
            let take = (*run).min(ready - done);
            // One message per connection per release, not one per ack: channel wake-ups
            // and allocations per command were the sequencer's biggest overhead.
            let at = match self.acks.iter().position(|(o, _)| Arc::ptr_eq(o, out)) {
                Some(i) => i,
                None => {
                    self.acks.push((out.clone(), Vec::with_capacity(ACK_FRAME_LEN * take.max(64))));
                    self.acks.len() - 1
                }
            };
            let buf = &mut self.acks[at].1;
            buf.reserve(ACK_FRAME_LEN * take);
            for p in self.pending.range(done..done + take) {
                put_ack(buf, p.request, p.reported, p.status);
            }
            done += take;
            *run -= take;
            if *run == 0 {
                self.pending_conns.pop_front();
            }
        }
        self.pending.drain(..ready);
        for (out, buf) in self.acks.drain(..) {
            if !out.dead.load(Ordering::Relaxed) {
                out.send(buf);
            }
        }
        if self.sealed.front().is_some_and(|c| c.last() <= durable) {
            let mut evicted = std::mem::take(&mut self.evicted);
            let mut ring = self.sh.ring.lock().unwrap_or_else(|p| p.into_inner());
            while self.sealed.front().is_some_and(|c| c.last() <= durable) {
                if let Some(c) = self.sealed.pop_front() {
                    ring.push_evicting(Arc::new(c), &mut evicted);
                }
            }
            drop(ring);
            self.sh.cond.notify_all();
            if let Some(w) = self.sh.net_waker.get() {
                w.wake();
            }
            for c in evicted.drain(..) {
                self.filling.recycle(c);
            }
            self.evicted = evicted;
        }
    }

    fn status(&self) -> StatusInfo {
        StatusInfo {
            primary: self.sh.primary.load(Ordering::SeqCst),
            epoch: self.rep.epoch,
            seq: self.rep.seq(),
            hash: self.rep.engine.state_hash(),
        }
    }

    /// Journals and applies one record; its events and ack wait in `pending` for durability.
    ///
    /// The payload is encoded straight into the ring chunk being filled and the engine writes
    /// its events straight into it too: the journal's copy (with the CRC) is the only copy of
    /// either on this path.
    fn append(&mut self, ts: u64, p: Payload, ack: Option<(&Arc<ConnOut>, u64)>) -> Result<(), ServerError> {
        let lens = self.filling.open_lens();
        p.encode(self.filling.payloads());
        let seq = match self.journal.append(ts, &self.filling.payloads()[lens.0..]) {
            Ok(s) => s,
            Err(JournalError::BatchFull { .. }) => {
                // The batch is full: this record opens the next one (and the next chunk).
                self.filling.discard_open(lens);
                self.submit_batch()?;
                let lens = self.filling.open_lens();
                p.encode(self.filling.payloads());
                return self.append_encoded(ts, &p, lens, ack);
            }
            Err(e) => {
                self.filling.discard_open(lens);
                return Err(e.into());
            }
        };
        self.apply_appended(seq, ts, &p, lens, ack)
    }

    /// [`append`](Self::append) after a batch change: the payload is encoded at `lens`.
    fn append_encoded(
        &mut self,
        ts: u64,
        p: &Payload,
        lens: (usize, usize),
        ack: Option<(&Arc<ConnOut>, u64)>,
    ) -> Result<(), ServerError> {
        let seq = self.journal.append(ts, &self.filling.payloads()[lens.0..])?;
        self.apply_appended(seq, ts, p, lens, ack)
    }

    fn apply_appended(
        &mut self,
        seq: u64,
        ts: u64,
        p: &Payload,
        lens: (usize, usize),
        ack: Option<(&Arc<ConnOut>, u64)>,
    ) -> Result<(), ServerError> {
        let applied = self.rep.apply(ts, p, self.filling.events());
        if applied != seq {
            return Err(ServerError::BadRecord { seq, reason: format!("engine applied it as seq {applied}") });
        }
        self.filling.close(seq, ts);
        self.sh.applied.store(seq, Ordering::Release);
        self.since_snapshot += 1;
        if self.filling.events()[lens.1..].iter().any(|e| matches!(e.kind, EventKind::InstrumentAdded { .. })) {
            let specs = listed(&self.rep.engine);
            *self.sh.instruments.write().unwrap_or_else(|p| p.into_inner()) = specs;
        }
        if let Some((out, request)) = ack {
            self.push_pending(out, Pending { seq, request, reported: seq, status: AckStatus::Applied });
        }
        Ok(())
    }

    fn handle(&mut self, m: Inbound) -> Result<usize, ServerError> {
        let mut n = 1;
        match m {
            Inbound::Submit { gateway, cmds, out } => {
                n = cmds.len();
                for (request, cmd) in cmds {
                    self.submit(gateway, request, cmd, &out)?;
                }
            }
            Inbound::Local { gateway, request, command } => {
                if !self.may_accept() {
                    // DurableLink never runs a standby or a referee; refuse loudly rather than apply.
                    tracing::error!(
                        gateway,
                        request,
                        "in-process command on a standby (or without the lease): dropped"
                    );
                    return Ok(n);
                }
                self.last_ts = self.last_ts.max(self.clock);
                let p = Payload { epoch: self.rep.epoch, gateway, request, command };
                self.append(self.last_ts, p, None)?;
            }
            Inbound::GatewayHello { gateway, reply } => {
                // Report only durable state: an applied-but-not-durable request could still be lost.
                self.commit()?;
                let mark = self.rep.gateways.get(&gateway).copied().unwrap_or_default();
                let _ = reply.try_send((self.status(), mark));
            }
            Inbound::Record { seq, ts, payload } => {
                if self.sh.primary.load(Ordering::Relaxed) {
                    return Ok(n);
                }
                let next = self.journal.next_seq();
                if seq < next {
                    return Ok(n); // already have it (re-sent after a reconnect)
                }
                if seq > next {
                    tracing::error!(seq, expected = next, "gap in the primary's stream: reconnecting");
                    self.drop_follow_conn();
                    return Ok(n);
                }
                let p = Payload::decode(&payload).map_err(|e| ServerError::BadRecord { seq, reason: e.to_string() })?;
                if p.epoch < self.rep.epoch {
                    // Fencing: a deposed primary is still sending.
                    tracing::error!(seq, epoch = p.epoch, ours = self.rep.epoch, "record from an older epoch refused");
                    self.drop_follow_conn();
                    return Ok(n);
                }
                self.last_ts = self.last_ts.max(ts);
                self.append(ts, p, None)?;
                self.sh.epoch.store(self.rep.epoch, Ordering::Relaxed);
            }
            Inbound::Status { reply } => {
                self.commit()?;
                let _ = reply.try_send(self.status());
            }
            Inbound::Promote { reply } => {
                if !self.sh.primary.load(Ordering::SeqCst) {
                    let epoch = match self.claim() {
                        Some(e) => e,
                        None => {
                            // Not granted (logged): still a standby, still following.
                            let _ = reply.try_send(self.status());
                            return Ok(n);
                        }
                    };
                    self.sh.primary.store(true, Ordering::SeqCst);
                    self.drop_follow_conn();
                    self.rep.epoch = epoch;
                    self.sh.epoch.store(self.rep.epoch, Ordering::SeqCst);
                    // The new epoch is on disk before the first order of the new primary.
                    self.last_ts = self.last_ts.max(self.clock);
                    let p = Payload { epoch: self.rep.epoch, gateway: 0, request: 0, command: Command::Tick };
                    self.append(self.last_ts, p, None)?;
                    tracing::info!(epoch = self.rep.epoch, seq = self.rep.seq(), "promoted to primary");
                }
                self.commit()?;
                let _ = reply.try_send(self.status());
            }
        }
        Ok(n)
    }

    /// Primary and, with a referee, holding its lease at this turn's time.
    fn may_accept(&self) -> bool {
        self.sh.primary.load(Ordering::Relaxed) && self.mono < self.sh.lease_until.load(Ordering::Relaxed)
    }

    fn submit(&mut self, gateway: u32, request: u64, cmd: Command, out: &Arc<ConnOut>) -> Result<(), ServerError> {
        if !self.may_accept() {
            out.send(ack_frame(request, 0, AckStatus::NotPrimary));
            return Ok(());
        }
        match self.rep.check(gateway, request) {
            Dedup::Fresh => {
                self.last_ts = self.last_ts.max(self.clock);
                let p = Payload { epoch: self.rep.epoch, gateway, request, command: cmd };
                self.append(self.last_ts, p, Some((out, request)))?;
            }
            Dedup::Duplicate(mark) => {
                // Answer no earlier than the original is durable: queue behind everything.
                let p = Pending { seq: self.rep.seq(), request, reported: mark.seq, status: AckStatus::Duplicate };
                self.push_pending(out, p);
            }
            Dedup::TooManyGateways => out.send(ack_frame(request, 0, AckStatus::TooManyGateways)),
        }
        Ok(())
    }

    /// The epoch this standby may take as primary: the referee's grant of a claim (blocking
    /// the sequencer for at most one referee round trip, on a standby, which only appends
    /// records), or without a referee simply the next one. None: not granted (logged).
    fn claim(&mut self) -> Option<u64> {
        let Some(r) = self.sh.cfg.referee.clone() else { return Some(self.rep.epoch + 1) };
        let req = crate::referee::Request::Claim {
            node: r.node,
            epoch: self.rep.epoch,
            seq: self.rep.seq(),
            addr: self.sh.advertise.clone(),
        };
        let sent = self.sh.t0.elapsed().as_nanos() as u64;
        match crate::referee::call(&r.referee, &req, crate::referee::CALL_TIMEOUT) {
            Ok(crate::referee::Response::Granted { epoch, lease_ms }) if epoch > self.rep.epoch => {
                let mut clock = crate::referee::LeaseClock::default();
                self.sh.lease_until.store(clock.granted(sent, lease_ms), Ordering::SeqCst);
                tracing::info!(epoch, seq = self.rep.seq(), "referee granted the next epoch: promoting");
                Some(epoch)
            }
            Ok(resp) => {
                tracing::warn!(?resp, epoch = self.rep.epoch, "promotion refused by the referee: staying a standby");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, referee = %r.referee, "referee unreachable: not promoted");
                None
            }
        }
    }

    fn drop_follow_conn(&self) {
        if let Some(c) = self.sh.follow_conn.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

pub(crate) fn acceptor(sh: Arc<Shared>, listener: TcpListener, inbox: SyncSender<Inbound>) {
    while !sh.shutdown.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                if sh.connections.fetch_add(1, Ordering::SeqCst) >= sh.cfg.max_connections {
                    sh.connections.fetch_sub(1, Ordering::SeqCst);
                    let mut s = stream;
                    let _ = goodbye(&mut s, GoodbyeReason::Unavailable, 0, "too many connections");
                    continue;
                }
                let (sh2, inbox2) = (sh.clone(), inbox.clone());
                let spawned = std::thread::Builder::new().name("castle-conn".into()).spawn(move || {
                    if let Err(e) = connection(&sh2, stream, inbox2) {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                    sh2.connections.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    sh.connections.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

pub(crate) fn goodbye(w: &mut impl Write, reason: GoodbyeReason, resume: u64, text: &str) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(9 + text.len());
    b.push(reason as u8);
    b.extend_from_slice(&resume.to_le_bytes());
    b.extend_from_slice(text.as_bytes());
    proto::write_frame(w, proto::GOODBYE, &b)?;
    w.flush()
}

pub(crate) fn welcome(w: &mut impl Write, st: &StatusInfo, durable: u64, mark: GatewayMark) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(33);
    b.push(if st.primary { proto::SERVER_PRIMARY } else { proto::SERVER_STANDBY });
    b.extend_from_slice(&st.epoch.to_le_bytes());
    b.extend_from_slice(&durable.to_le_bytes());
    b.extend_from_slice(&mark.request.to_le_bytes());
    b.extend_from_slice(&mark.seq.to_le_bytes());
    proto::write_frame(w, proto::WELCOME, &b)?;
    w.flush()
}

fn status_frame(st: &StatusInfo) -> Vec<u8> {
    let mut b = Vec::with_capacity(49);
    b.push(if st.primary { proto::SERVER_PRIMARY } else { proto::SERVER_STANDBY });
    b.extend_from_slice(&st.epoch.to_le_bytes());
    b.extend_from_slice(&st.seq.to_le_bytes());
    b.extend_from_slice(&st.hash);
    b
}

pub(crate) type ConnResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn connection(sh: &Arc<Shared>, stream: TcpStream, inbox: SyncSender<Inbound>) -> ConnResult {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(sh.cfg.hello_timeout))?;
    let mut r = std::io::BufReader::new(stream.try_clone()?);
    let mut w = BufWriter::with_capacity(1 << 16, stream.try_clone()?);
    let mut buf = Vec::with_capacity(256);
    let ty = match proto::read_frame(&mut r, &mut buf, proto::MAX_CLIENT_FRAME) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            goodbye(&mut w, GoodbyeReason::ProtocolError, 0, "no Hello in time")?;
            return Ok(());
        }
        read => read?,
    };
    let hello = match ty.map(|ty| proto::parse_client_frame(ty, &buf)) {
        Some(Ok(ClientFrame::Hello { role, gateway, from_seq, version })) => (role, gateway, from_seq, version),
        _ => {
            goodbye(&mut w, GoodbyeReason::ProtocolError, 0, "expected Hello")?;
            return Ok(());
        }
    };
    stream.set_read_timeout(None)?;
    // Writes that stall this long mean a dead or hopeless peer.
    stream.set_write_timeout(Some(sh.cfg.stall_timeout))?;
    match hello {
        (Role::Gateway, gateway, _, _) => gateway_conn(sh, stream, r, w, inbox, gateway),
        (role, _, from, version) => after_hello(sh, &mut r, &mut w, role, from, version, &inbox),
    }
}

/// A subscriber, standby or control connection once its Hello is read (the io_uring front end
/// hands these over to a thread here, with the bytes it had already received in `r`).
pub(crate) fn after_hello(
    sh: &Arc<Shared>,
    r: &mut impl std::io::Read,
    w: &mut BufWriter<TcpStream>,
    role: Role,
    from: u64,
    version: u8,
    inbox: &SyncSender<Inbound>,
) -> ConnResult {
    let mut buf = Vec::with_capacity(256);
    match role {
        Role::Gateway => Err("gateway connections are not served here".into()),
        Role::Subscriber => {
            let durable = sh.ring.lock().unwrap_or_else(|p| p.into_inner()).last();
            welcome(w, &quick_status(sh), durable, GatewayMark::default())?;
            stream_to(sh, w, if version >= 2 { Feed::Events2 } else { Feed::Events }, from)
        }
        Role::Standby => {
            let durable = sh.ring.lock().unwrap_or_else(|p| p.into_inner()).last();
            welcome(w, &quick_status(sh), durable, GatewayMark::default())?;
            stream_to(sh, w, Feed::Records, from)
        }
        Role::Control => loop {
            let Some(ty) = proto::read_frame(r, &mut buf, proto::MAX_CLIENT_FRAME)? else { return Ok(()) };
            let (tx, rx) = sync_channel(1);
            let m = match proto::parse_client_frame(ty, &buf) {
                Ok(ClientFrame::Status) => Inbound::Status { reply: tx },
                Ok(ClientFrame::Promote) => Inbound::Promote { reply: tx },
                Ok(ClientFrame::ListInstruments) if version >= 2 => {
                    let mut f = Vec::new();
                    proto::put_instruments(&mut f, &sh.instruments.read().unwrap_or_else(|p| p.into_inner()));
                    w.write_all(&f)?;
                    w.flush()?;
                    continue;
                }
                _ => {
                    goodbye(w, GoodbyeReason::ProtocolError, 0, "control: expected Status or Promote")?;
                    return Ok(());
                }
            };
            inbox.send(m)?;
            let st = rx.recv()?;
            proto::write_frame(w, proto::STATUS_REPLY, &status_frame(&st))?;
            w.flush()?;
        },
    }
}

/// Role and epoch without asking the sequencer (hash left zero).
pub(crate) fn quick_status(sh: &Shared) -> StatusInfo {
    StatusInfo {
        primary: sh.primary.load(Ordering::SeqCst),
        epoch: sh.epoch.load(Ordering::SeqCst),
        seq: sh.applied.load(Ordering::SeqCst),
        hash: [0; 32],
    }
}

fn gateway_conn(
    sh: &Arc<Shared>,
    stream: TcpStream,
    mut r: std::io::BufReader<TcpStream>,
    mut w: BufWriter<TcpStream>,
    inbox: SyncSender<Inbound>,
    gateway: u32,
) -> ConnResult {
    let (tx, rx) = sync_channel(1);
    inbox.send(Inbound::GatewayHello { gateway, reply: tx })?;
    let (st, mark) = rx.recv()?;
    welcome(&mut w, &st, st.seq, mark)?;
    let (otx, orx) = sync_channel::<Vec<u8>>(sh.cfg.gateway_queue.max(1));
    let out = Arc::new(ConnOut { tx: otx, dead: AtomicBool::new(false), wake: None });
    // The writer holds a sender of its own queue, so it never sees it disconnect: once the
    // reader is done it stops when the queue has been idle for a wait (acks drained), otherwise a
    // closed gateway connection would keep its thread and its connection slot until shutdown.
    let reader_done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (out, stream, sh) = (out.clone(), stream.try_clone()?, sh.clone());
        let reader_done = reader_done.clone();
        std::thread::Builder::new().name("castle-gw-out".into()).spawn(move || {
            loop {
                if out.dead.load(Ordering::Relaxed) || sh.shutdown.load(Ordering::Relaxed) {
                    break;
                }
                match orx.recv_timeout(Duration::from_millis(100)) {
                    Ok(f) => {
                        if w.write_all(&f).is_err() {
                            break;
                        }
                        // Batch whatever else is queued into the same write.
                        while let Ok(f) = orx.try_recv() {
                            if w.write_all(&f).is_err() {
                                out.dead.store(true, Ordering::Relaxed);
                            }
                        }
                        if w.flush().is_err() {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) if reader_done.load(Ordering::SeqCst) => break,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            out.dead.store(true, Ordering::Relaxed);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        })?
    };
    let mut buf = Vec::with_capacity(256);
    let mut batch: Vec<(u64, Command)> = Vec::with_capacity(256);
    let res: ConnResult = loop {
        if out.dead.load(Ordering::Relaxed) {
            break Ok(());
        }
        let ty = match proto::read_frame(&mut r, &mut buf, proto::MAX_CLIENT_FRAME) {
            Ok(Some(t)) => t,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        match proto::parse_client_frame(ty, &buf) {
            Ok(ClientFrame::Submit { request, command: Ok(cmd) }) => batch.push((request, cmd)),
            Ok(ClientFrame::Submit { request, command: Err(_) }) => out.send(ack_frame(request, 0, AckStatus::Invalid)),
            _ => {
                out.send(ack_frame(0, 0, AckStatus::Invalid));
                break Ok(());
            }
        }
        // Hand over everything already buffered as one message (bounded by 256 commands).
        if batch.len() >= 256 || !frame_buffered(&r) {
            let cmds = std::mem::replace(&mut batch, Vec::with_capacity(256));
            // Blocks when the sequencer is saturated: backpressure onto this gateway only.
            if !cmds.is_empty() && inbox.send(Inbound::Submit { gateway, cmds, out: out.clone() }).is_err() {
                break Ok(());
            }
        }
    };
    if !batch.is_empty() {
        let _ = inbox.send(Inbound::Submit { gateway, cmds: batch, out: out.clone() });
    }
    // Let queued acks drain before closing (the writer stops once its queue has been idle).
    reader_done.store(true, Ordering::SeqCst);
    drop(out);
    let _ = writer.join();
    res
}

/// Whether a whole frame is already in the reader's buffer (reading it will not block).
fn frame_buffered(r: &std::io::BufReader<TcpStream>) -> bool {
    let b = r.buffer();
    b.len() >= 4 && b.len() >= 4 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// What a stream connection carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// Version-1 subscribers.
    Events,
    /// Version-2 subscribers: events with the command's origin.
    Events2,
    /// Standbys: the journal records.
    Records,
}

/// Streams `Events`/`Events2` (or, for a standby, `Record`s) for every seq after `from`.
fn stream_to(sh: &Arc<Shared>, w: &mut BufWriter<TcpStream>, feed: Feed, from: u64) -> ConnResult {
    let mut next = from + 1;
    let mut live = false;
    let mut catchups = 0;
    let mut batch: Vec<Entry> = Vec::with_capacity(1_024);
    let mut frame = Vec::with_capacity(4_096);
    loop {
        let mut old_until = None;
        {
            let mut ring = sh.ring.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if sh.shutdown.load(Ordering::Relaxed) {
                    drop(ring);
                    goodbye(w, GoodbyeReason::ShuttingDown, next - 1, "server shutting down")?;
                    return Ok(());
                }
                if next < ring.first() {
                    old_until = Some(ring.first() - 1);
                    break;
                }
                if ring.last() >= next {
                    ring.take(next, 1_024, &mut batch);
                    break;
                }
                if next > ring.last() + 1 && ring.last() >= sh.applied.load(Ordering::Relaxed) {
                    drop(ring);
                    goodbye(w, GoodbyeReason::Unavailable, ring_last(sh), "requested seq is beyond the end")?;
                    return Ok(());
                }
                ring = sh.cond.wait_timeout(ring, Duration::from_millis(200)).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        if let Some(until) = old_until {
            catchups += 1;
            if live || catchups > 8 {
                let why = format!("slow consumer: fell out of the event ring; resume from {}", next - 1);
                tracing::warn!(resume = next - 1, "{why}");
                goodbye(w, GoodbyeReason::SlowConsumer, next - 1, &why)?;
                return Ok(());
            }
            next = match feed {
                Feed::Records => send_old_records(sh, w, next, until)?,
                _ => send_old_events(sh, w, next, until, feed == Feed::Events2)?,
            };
            continue;
        }
        live = true;
        for e in batch.drain(..) {
            frame.clear();
            put_entry(&mut frame, feed, &e);
            w.write_all(&frame)?;
            next = e.seq + 1;
        }
        w.flush()?;
    }
}

/// Appends the frame `feed` carries for one ring entry (`Record`, `Events` or `Events2`).
pub(crate) fn put_entry(frame: &mut Vec<u8>, feed: Feed, e: &Entry) {
    match feed {
        Feed::Records => {
            proto::frame_header(frame, proto::RECORD, 16 + e.payload().len());
            frame.extend_from_slice(&e.seq.to_le_bytes());
            frame.extend_from_slice(&e.ts.to_le_bytes());
            frame.extend_from_slice(e.payload());
        }
        Feed::Events2 => proto::put_events2(
            frame,
            e.seq,
            e.ts,
            crate::payload::origin(e.payload()),
            e.events().iter().map(|e| &e.kind),
        ),
        Feed::Events => put_events_frame(frame, e.seq, e.ts, e.events()),
    }
}

pub(crate) fn ring_last(sh: &Shared) -> u64 {
    sh.ring.lock().unwrap_or_else(|p| p.into_inner()).last()
}

/// Journal records `next ..= until` straight from the journal files.
pub(crate) fn send_old_records(sh: &Shared, w: &mut impl Write, next: u64, until: u64) -> Result<u64, ServerError> {
    let (mut reader, _) = state::reader_from(&sh.cfg.journal_dir, next)?;
    let mut at = next;
    while let Some(rec) = reader.next_record()? {
        if rec.seq > until {
            break;
        }
        let mut h = Vec::with_capacity(21);
        proto::frame_header(&mut h, proto::RECORD, 16 + rec.payload.len());
        h.extend_from_slice(&rec.seq.to_le_bytes());
        h.extend_from_slice(&rec.ts.to_le_bytes());
        w.write_all(&h).and_then(|_| w.write_all(rec.payload)).map_err(|e| ServerError::io("send", e))?;
        at = rec.seq + 1;
    }
    w.flush().map_err(|e| ServerError::io("send", e))?;
    Ok(at)
}

/// Events of `next ..= until` regenerated by deterministic replay (snapshot at or below, then journal).
pub(crate) fn send_old_events(
    sh: &Shared,
    w: &mut impl Write,
    next: u64,
    until: u64,
    v2: bool,
) -> Result<u64, ServerError> {
    let cfg = &sh.cfg;
    let mut rep = state::load_snapshot_at_or_below(&cfg.journal_dir, cfg.limits, usize::MAX, next - 1)?
        .unwrap_or_else(|| Replica::new(cfg.limits, usize::MAX));
    let mut at = next;
    let mut err = None;
    state::replay_into(
        &cfg.journal_dir,
        &mut rep,
        until,
        |_, seq, ts, payload, events| {
            if seq < next {
                return true;
            }
            let frame = if v2 {
                let mut f = Vec::with_capacity(37 + events.len() * 64);
                proto::put_events2(&mut f, seq, ts, crate::payload::origin(payload), events.iter().map(|e| &e.kind));
                f
            } else {
                events_frame(seq, ts, events)
            };
            if let Err(e) = w.write_all(&frame) {
                err = Some(e);
                return false;
            }
            at = seq + 1;
            true
        },
        &mut |_, _| {},
    )?;
    if let Some(e) = err {
        return Err(ServerError::io("send", e));
    }
    w.flush().map_err(|e| ServerError::io("send", e))?;
    Ok(at)
}

/// Standby: follows the primary's record stream, reconnecting until promoted or shut down.
fn follower(sh: Arc<Shared>, primary: String, inbox: SyncSender<Inbound>) {
    let mut backoff = Duration::from_millis(50);
    while !sh.shutdown.load(Ordering::Relaxed) && !sh.primary.load(Ordering::SeqCst) {
        match follow_once(&sh, &primary, &inbox) {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                tracing::debug!(error = %e, %primary, "following the primary");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn follow_once(sh: &Arc<Shared>, primary: &str, inbox: &SyncSender<Inbound>) -> ConnResult {
    let stream = TcpStream::connect(primary)?;
    stream.set_nodelay(true)?;
    *sh.follow_conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream.try_clone()?);
    if sh.primary.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mut w = stream.try_clone()?;
    proto::write_frame(&mut w, proto::HELLO, &proto::hello(Role::Standby, 0, sh.applied.load(Ordering::Acquire)))?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, stream);
    let mut buf = Vec::new();
    let mut first = true;
    while let Some(ty) = proto::read_frame(&mut r, &mut buf, proto::MAX_SERVER_FRAME)? {
        let mut b = Body(&buf);
        match ty {
            proto::WELCOME if first => {
                first = false;
                let (_, epoch) = (b.u8(), b.u64().unwrap_or(0));
                if epoch < sh.epoch.load(Ordering::SeqCst) {
                    tracing::error!(epoch, "primary has an older epoch than ours: fenced, not following");
                    return Ok(());
                }
                tracing::info!(%primary, epoch, "following the primary");
            }
            proto::RECORD => {
                let (Some(seq), Some(ts)) = (b.u64(), b.u64()) else { return Err("short Record".into()) };
                inbox.send(Inbound::Record { seq, ts, payload: b.rest().to_vec() })?;
            }
            proto::GOODBYE => {
                tracing::info!(reason = b.u8().unwrap_or(0), "primary said goodbye");
                return Ok(());
            }
            _ => return Err(format!("unexpected frame type {ty:#x} from the primary").into()),
        }
    }
    Ok(())
}

/// With a referee: takes and renews this node's lease while it is primary (every quarter of
/// the lease), and acts on being deposed: no more orders, and a rejoin as a standby of the new
/// holder when this journal is a prefix of the new epoch's history.
fn lease_keeper(sh: Arc<Shared>, r: crate::referee::NodeConfig, inbox: SyncSender<Inbound>) {
    use crate::referee::{call, LeaseClock, Request, Response, CALL_TIMEOUT};
    let mut clock = LeaseClock::default();
    let mut every = Duration::from_millis(100);
    let mut held = false;
    let mut unreachable = false;
    let mut deposed = false;
    while !sh.shutdown.load(Ordering::Relaxed) {
        let now = sh.t0.elapsed().as_nanos() as u64;
        if held && now >= sh.lease_until.load(Ordering::SeqCst) {
            held = false;
            tracing::warn!("referee lease ran out: refusing orders until it is renewed");
        }
        if sh.primary.load(Ordering::SeqCst) && !deposed {
            // A promotion's claim set the lease from its own grant.
            clock.extend_to(sh.lease_until.load(Ordering::SeqCst));
            let req =
                Request::Lease { node: r.node, epoch: sh.epoch.load(Ordering::SeqCst), addr: sh.advertise.clone() };
            let sent = sh.t0.elapsed().as_nanos() as u64;
            match call(&r.referee, &req, CALL_TIMEOUT) {
                Ok(Response::Granted { epoch, lease_ms }) if epoch == sh.epoch.load(Ordering::SeqCst) => {
                    sh.lease_until.store(clock.granted(sent, lease_ms), Ordering::SeqCst);
                    every = Duration::from_millis((lease_ms as u64 / 4).max(1));
                    if !held {
                        tracing::info!(epoch, lease_ms, node = r.node, "holding the referee's lease: accepting orders");
                    }
                    held = true;
                    unreachable = false;
                }
                Ok(Response::Deposed { epoch, holder, start_seq, addr }) => {
                    deposed = true;
                    clock.revoke();
                    sh.lease_until.store(0, Ordering::SeqCst);
                    sh.primary.store(false, Ordering::SeqCst);
                    let ours = sh.epoch.load(Ordering::SeqCst);
                    let last = sh.applied.load(Ordering::SeqCst);
                    tracing::error!(
                        our_epoch = ours, epoch, holder, %addr,
                        "deposed: the referee's current epoch belongs to another node; refusing orders"
                    );
                    if crate::referee::may_rejoin(last, start_seq, &addr) {
                        tracing::info!(%addr, from = last, epoch_start = start_seq, "rejoining as a standby of the new primary");
                        let (sh2, inbox2) = (sh.clone(), inbox.clone());
                        if std::thread::Builder::new()
                            .name("castle-follow".into())
                            .spawn(move || follower(sh2, addr, inbox2))
                            .is_err()
                        {
                            tracing::error!("could not start following the new primary");
                        }
                    } else {
                        tracing::error!(
                            last, epoch_start = start_seq,
                            "not rejoining on its own: this journal has records the new primary's history may not have (seqs from the new epoch's start on, or that start is unknown); move this journal aside and start as a standby (--follow)"
                        );
                    }
                }
                Ok(other) => tracing::debug!(?other, "referee did not renew the lease"),
                Err(e) => {
                    if !unreachable {
                        tracing::warn!(error = %e, referee = %r.referee, "referee unreachable: the lease runs out unless renewed");
                    }
                    unreachable = true;
                }
            }
        } else if sh.primary.load(Ordering::SeqCst) {
            // Deposed, then promoted again (a later claim): keep the new lease.
            deposed = false;
            held = false;
            continue;
        }
        // A renewal that got no answer (a timeout on a loaded machine, a lost connection) is
        // retried soon rather than a quarter of the lease later: the usable part of the lease
        // then spans many attempts instead of three, and one slow answer does not lapse it.
        let pause = if unreachable { RETRY_AFTER_FAILURE.min(every) } else { every };
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until && !sh.shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10).min(pause));
        }
    }
}

/// Pause before retrying a lease renewal that failed (no answer from the referee).
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(100);
