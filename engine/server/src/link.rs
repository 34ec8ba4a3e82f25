//! [`DurableLink`]: the journal-backed engine server as a `castle-link` [`EngineLink`], in
//! process (what `castle serve` runs).
//!
//! ```text
//! gateway --submit (try_send, Busy when full)--> bounded inbox --> sequencer --> journal
//!                                                                      | released once durable
//!                                                                      v
//!                  event ring (shared with TCP subscribers and standbys)
//!                      | one feeder thread per subscriber, its own cursor
//!                      v
//!        bounded tokio channel of Arc<EngineBatch> --> the subscriber
//! ```
//!
//! * `submit` never blocks: a full inbox is `LinkError::Busy`. In-process commands are not
//!   deduplicated (see `Inbound::Local`), but their origin (gateway id, request id) is journaled
//!   and comes back on every batch, so a gateway recognises its own requests. Request ids stay
//!   unique across restarts: a gateway numbers from `first_request` (one past the highest id
//!   journaled for it), so an origin in a replayed stream is never taken for a new request.
//! * Events reach subscribers only from the ring, that is only after the command is durable.
//! * Each subscriber has a feeder thread with its own cursor: the sequencer never waits for it.
//!   When the subscriber's channel is full the feeder waits (re-trying whenever the sequencer
//!   releases more); once the sequence number it is holding has left the ring the subscriber
//!   is too slow: its channel is closed (a warning names the sequence to resume from, which is
//!   the last one it received) and it resumes with `subscribe_after`.
//! * `subscribe_after(n)` starts from the ring when `n` is recent, else regenerates the events by
//!   deterministic replay (snapshot at or below `n` + journal), then continues live.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use castle_engine::{InstrumentSpec, Seq};
use castle_link::{EngineBatch, EngineLink, EngineRequest, LinkError};
use tokio::sync::mpsc;

use crate::payload;
use crate::ring::Entry;
use crate::server::{Inbound, Shared};
use crate::state::{self, Replica};
use crate::{Config, Server, ServerError, StatusInfo};

/// How long a feeder blocked on a full subscriber channel waits before looking again when the
/// engine releases nothing (when it does release, the feeder is woken at once).
const FULL_RECHECK: Duration = Duration::from_millis(10);

/// Entries a feeder takes from the ring per lock.
const FEED_CHUNK: usize = 256;

/// The journal-backed engine as an [`EngineLink`]. Dropping it shuts the server down (after
/// committing what is pending).
pub struct DurableLink {
    server: Mutex<Option<Server>>,
    shared: Arc<Shared>,
    inbox: SyncSender<Inbound>,
    recovered: StatusInfo,
    feeders: Mutex<Vec<JoinHandle<()>>>,
}

impl DurableLink {
    /// Recovers the state from `cfg.journal_dir` (snapshot + journal) and starts the sequencer.
    /// `cfg.listen` may be empty (no TCP) or an address for TCP gateways, subscribers and
    /// standbys next to the in-process ones. `cfg.follow` must be `None`.
    pub fn start(cfg: Config) -> Result<Arc<DurableLink>, ServerError> {
        if cfg.follow.is_some() {
            return Err(ServerError::Stopped("an in-process link cannot run a standby".into()));
        }
        let server = Server::start(cfg)?;
        let recovered = server.status()?;
        Ok(Arc::new(DurableLink {
            shared: server.shared.clone(),
            inbox: server.inbox.clone(),
            server: Mutex::new(Some(server)),
            recovered,
            feeders: Mutex::new(Vec::new()),
        }))
    }

    /// Sequence number and state hash right after recovery (seq 0: the journal was empty).
    pub fn recovered(&self) -> StatusInfo {
        self.recovered
    }

    /// Makes everything submitted so far durable and reports seq and state hash (blocks).
    pub fn status(&self) -> Result<StatusInfo, ServerError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inbox.send(Inbound::Status { reply: tx }).map_err(|_| ServerError::Stopped("inbox closed".into()))?;
        rx.recv().map_err(|_| ServerError::Stopped("no status reply".into()))
    }

    /// The TCP address, when started with one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|s| s.local_addr())
    }

    /// Commits what is pending, stops the sequencer and every feeder (their channels close).
    pub fn shutdown(&self) -> Result<(), ServerError> {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        let res = match server {
            Some(s) => s.shutdown(),
            None => Ok(()),
        };
        for f in self.feeders.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = f.join();
        }
        res
    }

    fn spawn_feeder(&self, after: Seq, capacity: usize) -> Result<mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sh = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("castle-link-feed".into())
            .spawn(move || feed(&sh, &tx, after))
            .map_err(|_| LinkError::Stopped)?;
        let mut feeders = self.feeders.lock().unwrap_or_else(|p| p.into_inner());
        feeders.retain(|h| !h.is_finished());
        feeders.push(handle);
        Ok(rx)
    }
}

impl Drop for DurableLink {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "engine stopped with an error");
        }
    }
}

impl EngineLink for DurableLink {
    fn submit(&self, req: EngineRequest) -> Result<(), LinkError> {
        if self.shared.shutdown.load(Ordering::Relaxed) {
            return Err(LinkError::Stopped);
        }
        let m = Inbound::Local { gateway: req.origin.gateway, request: req.origin.request, command: req.command };
        self.inbox.try_send(m).map_err(|e| match e {
            TrySendError::Full(_) => LinkError::Busy,
            TrySendError::Disconnected(_) => LinkError::Stopped,
        })
    }

    fn subscribe(&self, capacity: usize) -> Result<mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        if self.shared.shutdown.load(Ordering::Relaxed) {
            return Err(LinkError::Stopped);
        }
        let last = self.shared.ring.lock().unwrap_or_else(|p| p.into_inner()).last();
        self.spawn_feeder(last, capacity)
    }

    fn subscribe_after(&self, after: Seq, capacity: usize) -> Result<mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        if self.shared.shutdown.load(Ordering::Relaxed) {
            return Err(LinkError::Stopped);
        }
        // A consumer can only have seen durable (released) sequence numbers: anything beyond
        // is from another journal (or a bug), not something to wait for silently.
        if after > self.shared.ring.lock().unwrap_or_else(|p| p.into_inner()).last() {
            return Err(LinkError::CannotResume(after));
        }
        self.spawn_feeder(after, capacity)
    }

    fn instruments(&self) -> Vec<InstrumentSpec> {
        self.shared.instruments.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One past the highest request id journaled for `gateway` (the dedup index, recovered from
    /// snapshot + journal), asked of the sequencer after everything before is durable.
    fn first_request(&self, gateway: u32) -> u64 {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.inbox.send(Inbound::GatewayHello { gateway, reply: tx }).is_err() {
            return 1; // stopped: nothing will be submitted anyway
        }
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((_, mark)) => mark.request + 1,
            Err(_) => {
                tracing::error!(gateway, "no answer from the sequencer for the gateway's first request id");
                1
            }
        }
    }

    fn last_seq(&self) -> Option<Seq> {
        Some(self.shared.ring.lock().unwrap_or_else(|p| p.into_inner()).last())
    }
}

/// Why a feeder stopped sending.
enum Stop {
    /// The subscriber dropped its receiver, or the server is shutting down.
    Gone,
    /// The subscriber fell out of the ring; it resumes after this seq (the last it received).
    Slow(Seq),
}

/// Sends `b` to the subscriber, waiting while its channel is full. With `watch` (live entries),
/// gives up as soon as that seq has left the ring: the subscriber is then too slow.
fn send(sh: &Shared, tx: &mpsc::Sender<Arc<EngineBatch>>, b: Arc<EngineBatch>, watch: Option<Seq>) -> Result<(), Stop> {
    let mut b = b;
    loop {
        match tx.try_send(b) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stop::Gone),
            Err(mpsc::error::TrySendError::Full(x)) => b = x,
        }
        let ring = sh.ring.lock().unwrap_or_else(|p| p.into_inner());
        if sh.shutdown.load(Ordering::Relaxed) {
            return Err(Stop::Gone);
        }
        if let Some(seq) = watch.filter(|&s| s < ring.first()) {
            return Err(Stop::Slow(seq - 1));
        }
        drop(sh.cond.wait_timeout(ring, FULL_RECHECK).unwrap_or_else(|p| p.into_inner()));
    }
}

/// One subscriber's cursor: replay while behind the ring, then follow the ring.
fn feed(sh: &Shared, tx: &mpsc::Sender<Arc<EngineBatch>>, after: Seq) {
    let mut next = after + 1;
    let mut live = false;
    let mut catchups = 0;
    let mut chunk: Vec<Entry> = Vec::with_capacity(FEED_CHUNK);
    loop {
        let mut old_until = None;
        {
            let mut ring = sh.ring.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if sh.shutdown.load(Ordering::Relaxed) || tx.is_closed() {
                    return;
                }
                if next < ring.first() {
                    old_until = Some(ring.first() - 1);
                    break;
                }
                if ring.last() >= next {
                    ring.take(next, FEED_CHUNK, &mut chunk);
                    break;
                }
                ring = sh.cond.wait_timeout(ring, Duration::from_millis(200)).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        if let Some(until) = old_until {
            catchups += 1;
            // Live, or still behind after several catch-ups: this subscriber cannot keep up.
            if live || catchups > 8 {
                return slow(next - 1);
            }
            match replay_range(sh, tx, next, until) {
                Ok(at) => next = at,
                Err(Stop::Gone) => return,
                Err(Stop::Slow(resume)) => return slow(resume),
            }
            continue;
        }
        live = true;
        for e in chunk.drain(..) {
            match send(sh, tx, e.batch(), Some(e.seq)) {
                Ok(()) => next = e.seq + 1,
                Err(Stop::Gone) => return,
                Err(Stop::Slow(resume)) => return slow(resume),
            }
        }
    }
}

fn slow(resume: Seq) {
    tracing::warn!(resume, "slow consumer: fell out of the event ring; closing its stream (resume after {resume})");
}

/// Regenerates the batches `next ..= until` by replay (snapshot at or below `next - 1`, then the
/// journal); returns the next seq to send.
fn replay_range(sh: &Shared, tx: &mpsc::Sender<Arc<EngineBatch>>, next: Seq, until: Seq) -> Result<Seq, Stop> {
    let cfg = &sh.cfg;
    let rep = match state::load_snapshot_at_or_below(&cfg.journal_dir, cfg.limits, usize::MAX, next - 1) {
        Ok(r) => r.unwrap_or_else(|| Replica::new(cfg.limits, usize::MAX)),
        Err(e) => {
            tracing::error!(error = %e, next, "replay for a subscriber: loading a snapshot");
            return Err(Stop::Gone);
        }
    };
    let mut rep = rep;
    let mut at = next;
    let mut stop = None;
    let res = state::replay_into(
        &cfg.journal_dir,
        &mut rep,
        until,
        |_, seq, ts, bytes, events| {
            if seq < next {
                return true;
            }
            let b = Arc::new(EngineBatch { origin: payload::origin(bytes), seq, ts, events: events.to_vec() });
            match send(sh, tx, b, None) {
                Ok(()) => {
                    at = seq + 1;
                    true
                }
                Err(s) => {
                    stop = Some(s);
                    false
                }
            }
        },
        &mut |_, _| {},
    );
    if let Some(s) = stop {
        return Err(s);
    }
    if let Err(e) = res {
        tracing::error!(error = %e, next, until, "replay for a subscriber");
        return Err(Stop::Gone);
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_engine::{Command, EventKind};
    use castle_link::Origin;

    fn cfg(dir: &std::path::Path) -> Config {
        let mut c = Config::new(dir, "");
        c.ring_capacity = 64;
        c.snapshot_every = 0;
        c
    }

    fn deposit(amount: i64) -> Command {
        Command::Deposit { account: 1, asset: 1, amount }
    }

    fn req(gateway: u32, request: u64, command: Command) -> EngineRequest {
        EngineRequest { origin: Origin { gateway, request }, command }
    }

    fn recv(rx: &mut mpsc::Receiver<Arc<EngineBatch>>) -> Option<Arc<EngineBatch>> {
        rx.blocking_recv()
    }

    #[test]
    fn origins_flow_through_and_state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let link = DurableLink::start(cfg(dir.path())).unwrap();
        assert_eq!(link.recovered().seq, 0);
        let mut rx = link.subscribe(16).unwrap();
        link.submit(req(0, 0, deposit(5))).unwrap();
        link.submit(req(7, 1, deposit(6))).unwrap();
        let a = recv(&mut rx).unwrap();
        assert_eq!((a.seq, a.origin), (1, None));
        assert!(a.events.iter().any(|e| matches!(e.kind, EventKind::BalanceChanged { .. })), "{:?}", a.events);
        let b = recv(&mut rx).unwrap();
        assert_eq!((b.seq, b.origin), (2, Some(Origin { gateway: 7, request: 1 })));
        let st = link.status().unwrap();
        drop(rx);
        drop(link);
        // Restart: same state. (A gateway numbers from `first_request`; reusing an id is not
        // refused in process, there being no resend to deduplicate.)
        let link = DurableLink::start(cfg(dir.path())).unwrap();
        assert_eq!((link.recovered().seq, link.recovered().hash), (st.seq, st.hash));
        let mut rx = link.subscribe_after(0, 16).unwrap();
        let replayed: Vec<_> = (0..2).map(|_| recv(&mut rx).unwrap()).collect();
        assert_eq!(*replayed[0], *a);
        assert_eq!(*replayed[1], *b);
        link.submit(req(7, 1, deposit(7))).unwrap();
        let c = recv(&mut rx).unwrap();
        assert_eq!((c.seq, c.origin), (3, Some(Origin { gateway: 7, request: 1 })), "not a duplicate in process");
    }

    #[test]
    fn request_ids_continue_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let link = DurableLink::start(cfg(dir.path())).unwrap();
        assert_eq!(link.first_request(7), 1, "an empty journal: start at 1");
        // Two tasks of one in-process gateway may be journaled out of order (3 before 2).
        for r in [1, 3, 2] {
            link.submit(req(7, r, deposit(1))).unwrap();
        }
        link.submit(req(9, 40, deposit(1))).unwrap();
        link.submit(req(0, 0, deposit(1))).unwrap();
        assert_eq!(link.first_request(7), 4, "one past the highest, not past the latest");
        drop(link);
        let link = DurableLink::start(cfg(dir.path())).unwrap();
        assert_eq!((link.first_request(7), link.first_request(9), link.first_request(5)), (4, 41, 1));
        // What a restarted gateway sees when it replays the history: none of the old origins can
        // be one of its new requests.
        let first = link.first_request(7);
        let mut rx = link.subscribe_after(0, 16).unwrap();
        link.submit(req(7, first, deposit(1))).unwrap();
        let mut ours = Vec::new();
        for _ in 0..6 {
            let b = recv(&mut rx).unwrap();
            if let Some(o) = b.origin.filter(|o| o.gateway == 7) {
                ours.push(o.request);
            }
        }
        assert_eq!(ours, vec![1, 3, 2, 4]);
        drop(link);
        let link = DurableLink::start(cfg(dir.path())).unwrap();
        assert_eq!(link.first_request(7), 5);
    }

    #[test]
    fn submit_is_busy_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.inbox_capacity = 1;
        let link = DurableLink::start(c).unwrap();
        let mut busy = false;
        for i in 0..100_000 {
            match link.submit(req(3, i + 1, deposit(1))) {
                Ok(()) => {}
                Err(LinkError::Busy) => {
                    busy = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(busy, "a one-slot inbox must fill up under 100k submits");
    }
}
