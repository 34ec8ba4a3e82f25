//! [`RemoteLink`]: the `castle-link` [`EngineLink`] of a gateway (or market data) running in its
//! own process, over TCP to `castle engine`.
//!
//! ```text
//! submit() --bounded queue--> castle-remote-gw thread --Submit--> engine
//!                                  | unacked (bounded, resent after a reconnect)
//!                                  '<--Ack-- reader thread
//! subscribe_after(n) --> castle-remote-sub thread <--Events2 (origin included)-- engine
//! ```
//!
//! * **No duplicate orders after a reconnect.** Requests written but not acknowledged stay in a
//!   bounded `unacked` list. After a reconnect the engine's Welcome says the highest request id of
//!   this gateway it ever applied: every unacked request at or below it was applied (and is
//!   dropped from the list), the rest are resent in order. A request resent twice anyway is
//!   answered `Duplicate` by the engine and never applied twice.
//! * **No lost or doubled events.** Each subscription remembers the last sequence number it
//!   delivered and reconnects with "after that one" (the engine serves it from its ring or by
//!   replay); anything at or below it is skipped.
//! * **Bounded.** `submit` answers `Busy` when the queue is full (while disconnected too, once
//!   the queue fills); at most `in_flight` requests wait for an acknowledgement; a subscriber
//!   that does not keep up stops this link reading its socket, the engine cuts the connection
//!   (`SlowConsumer`) and the link resumes from where the subscriber is.
//! * Request ids must increase per gateway in submission order (the engine's deduplication
//!   answers a lower id `Duplicate` and does not apply it); the REST and FIX gateways number
//!   their requests under the lock they submit under.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use castle_engine::codec::encode_command;
use castle_engine::{Command, Event, EventKind, InstrumentSpec, Seq};
use castle_link::{EngineBatch, EngineLink, EngineRequest, LinkError};

use crate::proto::{self, AckStatus, FrameDecoder, GoodbyeReason, Role, ServerFrame, PROTOCOL_VERSION};

/// How a [`RemoteLink`] reaches the engine and how much it queues.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// `castle engine`'s address (host:port).
    pub addr: String,
    /// This gateway's id at the engine (it deduplicates per id: two running gateways must not
    /// share one). 0: a subscriber only (market data); `submit` answers `Stopped`.
    pub gateway: u32,
    /// The id the component puts in its origins when it differs from `gateway` (a component with
    /// a built-in id run as several replicas, each with its own engine-side id). The link swaps
    /// the two ids in both directions, so the component sees its own requests under its own id
    /// and another instance's under `gateway`, never mixed up.
    pub local_gateway: Option<u32>,
    /// Commands `submit` accepts before answering `Busy`.
    pub queue: usize,
    /// Requests written and not yet acknowledged (kept to resend after a reconnect).
    pub in_flight: usize,
    /// Connect and request/reply timeout.
    pub timeout: Duration,
}

impl RemoteConfig {
    pub fn new(addr: impl Into<String>, gateway: u32) -> Self {
        RemoteConfig {
            addr: addr.into(),
            gateway,
            local_gateway: None,
            queue: 65_536,
            in_flight: 65_536,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of what happened on the link (tests and metrics).
#[derive(Debug, Default)]
pub struct RemoteStats {
    pub connects: AtomicU64,
    pub resent: AtomicU64,
    pub acked: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused: AtomicU64,
}

struct Shared {
    cfg: RemoteConfig,
    stop: AtomicBool,
    /// (request id, command) written and not yet acknowledged, in request order.
    unacked: Mutex<VecDeque<(u64, Command)>>,
    /// Signalled when `unacked` shrinks or the connection dies.
    space: Condvar,
    /// Requests submitted and not yet in `unacked` (in the queue, or taken and held).
    queued: AtomicU64,
    /// Highest request id taken from the queue (0: none).
    highest: AtomicU64,
    instruments: RwLock<Vec<InstrumentSpec>>,
    /// Set by a subscription that saw `InstrumentAdded`: the next `instruments()` asks the engine.
    instruments_stale: AtomicBool,
    stats: RemoteStats,
}

/// See the module documentation.
pub struct RemoteLink {
    shared: Arc<Shared>,
    tx: SyncSender<EngineRequest>,
}

/// Blocking frame reader with a read timeout that never loses a partial frame (the bytes stay
/// in the [`FrameDecoder`] across timeouts).
struct FrameReader {
    stream: TcpStream,
    dec: FrameDecoder,
    buf: Vec<u8>,
}

enum Next {
    Frame(ServerFrame),
    /// The read timed out (nothing, or only part of a frame, arrived).
    Idle,
    Closed,
}

impl FrameReader {
    fn new(stream: TcpStream) -> Self {
        FrameReader { stream, dec: FrameDecoder::new(proto::MAX_SERVER_FRAME), buf: vec![0; 1 << 16] }
    }

    fn next(&mut self) -> io::Result<Next> {
        loop {
            match self.dec.next_frame() {
                Ok(Some((ty, body))) => {
                    let f = proto::parse_server_frame(ty, body)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                    return Ok(Next::Frame(f));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Ok(Next::Closed),
                Ok(n) => self.dec.extend(&self.buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(Next::Idle)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next frame, waiting at most `timeout` in total.
    fn expect(&mut self, timeout: Duration) -> io::Result<ServerFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next()? {
                Next::Frame(f) => return Ok(f),
                Next::Closed => return Err(io::ErrorKind::UnexpectedEof.into()),
                Next::Idle if Instant::now() >= deadline => return Err(io::ErrorKind::TimedOut.into()),
                Next::Idle => {}
            }
        }
    }
}

fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connects, says Hello (protocol version 2) and returns the reader (read timeout `tick`).
fn hello(
    addr: &str,
    timeout: Duration,
    role: Role,
    gateway: u32,
    from: u64,
    tick: Duration,
) -> io::Result<FrameReader> {
    let mut s = connect(addr, timeout)?;
    let mut f = Vec::with_capacity(24);
    let body = proto::hello_v(role, gateway, from, PROTOCOL_VERSION);
    proto::frame_header(&mut f, proto::HELLO, body.len());
    f.extend_from_slice(&body);
    s.write_all(&f)?;
    s.set_read_timeout(Some(tick))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(FrameReader::new(s))
}

fn unexpected(f: &ServerFrame) -> io::Error {
    let what = match f {
        ServerFrame::Goodbye { text, .. } => format!("engine said goodbye: {text}"),
        other => format!("unexpected frame from the engine: {other:?}"),
    };
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl RemoteConfig {
    /// The component's id for this link.
    fn local(&self) -> u32 {
        self.local_gateway.unwrap_or(self.gateway)
    }

    /// An origin from the engine as the component must see it (the swap of `local_gateway`).
    fn to_local(&self, o: Option<castle_link::Origin>) -> Option<castle_link::Origin> {
        let local = self.local();
        o.map(|mut o| {
            if o.gateway == self.gateway {
                o.gateway = local;
            } else if o.gateway == local {
                o.gateway = self.gateway;
            }
            o
        })
    }
}

impl Shared {
    /// One request/reply on a fresh control connection.
    fn control(&self, ty: u8) -> io::Result<ServerFrame> {
        let t = self.cfg.timeout;
        let mut r = hello(&self.cfg.addr, t, Role::Control, 0, 0, Duration::from_millis(100))?;
        let mut f = Vec::with_capacity(5);
        proto::frame_header(&mut f, ty, 0);
        r.stream.write_all(&f)?;
        let reply = r.expect(t);
        let _ = r.stream.shutdown(Shutdown::Both);
        reply
    }

    fn refresh_instruments(&self) -> io::Result<Vec<InstrumentSpec>> {
        match self.control(proto::LIST_INSTRUMENTS)? {
            ServerFrame::Instruments(specs) => {
                *self.instruments.write().unwrap_or_else(|p| p.into_inner()) = specs.clone();
                Ok(specs)
            }
            other => Err(unexpected(&other)),
        }
    }
}

impl RemoteLink {
    /// Connects to the engine (fails when it cannot be reached within the timeout, so a
    /// misconfigured gateway stops at start) and starts the gateway session thread; later
    /// disconnections are retried for ever.
    pub fn connect(cfg: RemoteConfig) -> io::Result<Arc<RemoteLink>> {
        let (tx, rx) = sync_channel(cfg.queue.max(1));
        let submits = cfg.gateway != 0;
        let shared = Arc::new(Shared {
            unacked: Mutex::new(VecDeque::new()),
            space: Condvar::new(),
            stop: AtomicBool::new(false),
            highest: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            instruments: RwLock::new(Vec::new()),
            instruments_stale: AtomicBool::new(false),
            stats: RemoteStats::default(),
            cfg,
        });
        shared.refresh_instruments()?;
        if submits {
            let sh = shared.clone();
            std::thread::Builder::new().name("castle-remote-gw".into()).spawn(move || gateway_session(sh, rx))?;
        }
        Ok(Arc::new(RemoteLink { shared, tx }))
    }

    pub fn stats(&self) -> &RemoteStats {
        &self.shared.stats
    }

    /// Requests written and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.shared.unacked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits until every submitted request is acknowledged (false at the deadline).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.unacked.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // The queue into the session thread empty and nothing unacknowledged.
            if q.is_empty() && self.shared.queued.load(Ordering::SeqCst) == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = self
                .shared
                .space
                .wait_timeout(q, left.min(Duration::from_millis(20)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for RemoteLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.space.notify_all();
    }
}

/// The gateway connection: connect, learn what was applied, resend the rest, then write what
/// `submit` queues; reconnects (with a bounded back-off) until the link is dropped.
fn gateway_session(sh: Arc<Shared>, rx: Receiver<EngineRequest>) {
    let mut backoff = Duration::from_millis(20);
    let mut held: Option<EngineRequest> = None;
    while !sh.stop.load(Ordering::SeqCst) {
        match gateway_connection(&sh, &rx, &mut held) {
            Ok(true) => return, // the link was dropped
            Ok(false) => backoff = Duration::from_millis(20),
            Err(e) => {
                tracing::warn!(engine = %sh.cfg.addr, gateway = sh.cfg.gateway, error = %e, "engine connection lost; reconnecting");
                // Back-off between attempts (not synchronisation): an engine that is down is
                // retried a few times a second, not in a busy loop.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One connection's life. `Ok(true)`: the link is gone, stop.
fn gateway_connection(
    sh: &Arc<Shared>,
    rx: &Receiver<EngineRequest>,
    held: &mut Option<EngineRequest>,
) -> io::Result<bool> {
    let cfg = &sh.cfg;
    let mut r = hello(&cfg.addr, cfg.timeout, Role::Gateway, cfg.gateway, 0, Duration::from_millis(100))?;
    let (primary, last_request) = match r.expect(cfg.timeout)? {
        ServerFrame::Welcome { primary, last_request, .. } => (primary, last_request),
        other => return Err(unexpected(&other)),
    };
    if !primary {
        return Err(io::Error::other("the engine is a standby"));
    }
    sh.stats.connects.fetch_add(1, Ordering::Relaxed);
    let mut w = io::BufWriter::with_capacity(1 << 16, r.stream.try_clone()?);
    let mut frame = Vec::with_capacity(128);
    {
        // Everything up to `last_request` was applied (the engine reports only durable state):
        // drop it; resend the rest in order.
        let mut q = sh.unacked.lock().unwrap_or_else(|p| p.into_inner());
        q.retain(|(req, _)| *req > last_request);
        for (req, cmd) in q.iter() {
            put_submit(&mut frame, *req, cmd);
            w.write_all(&frame)?;
        }
        sh.stats.resent.fetch_add(q.len() as u64, Ordering::Relaxed);
        sh.space.notify_all();
        if !q.is_empty() {
            tracing::info!(gateway = cfg.gateway, last_request, resent = q.len(), "resending unacknowledged requests");
        }
    }
    w.flush()?;
    tracing::info!(engine = %cfg.addr, gateway = cfg.gateway, last_request, "connected to the engine");
    let dead = Arc::new(AtomicBool::new(false));
    let reader = {
        let (sh, dead) = (sh.clone(), dead.clone());
        std::thread::Builder::new().name("castle-remote-ack".into()).spawn(move || {
            if let Err(e) = read_acks(&sh, &mut r, &dead) {
                tracing::debug!(error = %e, "acknowledgement reader stopped");
            }
            dead.store(true, Ordering::SeqCst);
            let _ = r.stream.shutdown(Shutdown::Both);
            sh.space.notify_all();
        })?
    };
    let result = write_requests(sh, rx, held, &mut w, &dead);
    dead.store(true, Ordering::SeqCst);
    let _ = w.get_ref().shutdown(Shutdown::Both);
    let _ = reader.join();
    match result {
        Ok(done) if !done => Err(io::Error::other("connection closed")),
        other => other,
    }
}

fn put_submit(f: &mut Vec<u8>, request: u64, cmd: &Command) {
    f.clear();
    f.extend_from_slice(&[0; 5]);
    f.extend_from_slice(&request.to_le_bytes());
    encode_command(cmd, f);
    let len = (f.len() - 4) as u32;
    f[..4].copy_from_slice(&len.to_le_bytes());
    f[4] = proto::SUBMIT;
}

/// Takes requests from the queue and writes them, batching whatever is queued into one write.
fn write_requests(
    sh: &Shared,
    rx: &Receiver<EngineRequest>,
    held: &mut Option<EngineRequest>,
    w: &mut io::BufWriter<TcpStream>,
    dead: &AtomicBool,
) -> io::Result<bool> {
    let mut frame = Vec::with_capacity(128);
    let in_flight = sh.cfg.in_flight.max(1);
    loop {
        if dead.load(Ordering::SeqCst) {
            return Ok(false);
        }
        if sh.stop.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let first = match held.take() {
            Some(r) => r,
            None => match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(true),
            },
        };
        let mut next = Some(first);
        let mut written = 0;
        while let Some(req) = next.take() {
            {
                let mut q = sh.unacked.lock().unwrap_or_else(|p| p.into_inner());
                if q.len() >= in_flight {
                    // Full: write what we have, then wait for acknowledgements to make room.
                    *held = Some(req);
                    drop(q);
                    break;
                }
                q.push_back((req.origin.request, req.command));
                // Counted out only now, under the lock `flush` looks under: a request is always
                // either queued or unacknowledged until its acknowledgement.
                sh.queued.fetch_sub(1, Ordering::SeqCst);
            }
            sh.highest.fetch_max(req.origin.request, Ordering::Relaxed);
            put_submit(&mut frame, req.origin.request, &req.command);
            w.write_all(&frame)?;
            written += 1;
            if written < 256 {
                next = rx.try_recv().ok();
            }
        }
        w.flush()?;
        if held.is_some() {
            let q = sh.unacked.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= in_flight && !dead.load(Ordering::SeqCst) {
                drop(sh.space.wait_timeout(q, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()));
            }
        }
    }
}

fn read_acks(sh: &Shared, r: &mut FrameReader, dead: &AtomicBool) -> io::Result<()> {
    loop {
        if dead.load(Ordering::SeqCst) || sh.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (request, status) = match r.next()? {
            Next::Idle => continue,
            Next::Closed => return Ok(()),
            Next::Frame(ServerFrame::Ack { request, status, .. }) => (request, status),
            Next::Frame(ServerFrame::Goodbye { text, .. }) => return Err(io::Error::other(text)),
            Next::Frame(other) => return Err(unexpected(&other)),
        };
        match status {
            AckStatus::Applied => {
                sh.stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            AckStatus::Duplicate => {
                // Expected for a request resent after a reconnect; otherwise the gateway
                // submitted ids out of order and this one was not applied.
                sh.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(gateway = sh.cfg.gateway, request, "engine: duplicate request, not applied again");
            }
            AckStatus::NotPrimary => {
                // Keep it for the next connection (to a promoted engine, once there is one).
                return Err(io::Error::other("the engine is no longer primary"));
            }
            AckStatus::Invalid | AckStatus::TooManyGateways => {
                sh.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(gateway = sh.cfg.gateway, request, ?status, "engine refused a request");
            }
        }
        let mut q = sh.unacked.lock().unwrap_or_else(|p| p.into_inner());
        // Acknowledgements come in request order, except refusals answered at once: find it.
        if let Some(i) = q.iter().position(|(req, _)| *req == request) {
            q.remove(i);
        }
        drop(q);
        sh.space.notify_all();
    }
}

/// One subscription: connects with "after `last`", forwards batches, resumes after the last one
/// delivered when the connection ends; stops when the receiver is dropped.
fn subscription(sh: Arc<Shared>, mut last: Seq, tx: tokio::sync::mpsc::Sender<Arc<EngineBatch>>) {
    let mut backoff = Duration::from_millis(20);
    while !tx.is_closed() && !sh.stop.load(Ordering::SeqCst) {
        match stream_once(&sh, &mut last, &tx) {
            Ok(()) => backoff = Duration::from_millis(20),
            Err(e) => {
                tracing::warn!(engine = %sh.cfg.addr, after = last, error = %e, "engine stream lost; resuming");
                // Back-off between reconnection attempts, not synchronisation.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn stream_once(sh: &Shared, last: &mut Seq, tx: &tokio::sync::mpsc::Sender<Arc<EngineBatch>>) -> io::Result<()> {
    let cfg = &sh.cfg;
    let mut r = hello(&cfg.addr, cfg.timeout, Role::Subscriber, 0, *last, Duration::from_millis(100))?;
    match r.expect(cfg.timeout)? {
        ServerFrame::Welcome { .. } => {}
        other => return Err(unexpected(&other)),
    }
    loop {
        if tx.is_closed() || sh.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        match r.next()? {
            Next::Idle => {}
            Next::Closed => return Err(io::Error::other("the engine closed the stream")),
            Next::Frame(ServerFrame::Events { seq, ts, origin, events }) => {
                if seq <= *last {
                    continue;
                }
                if seq != *last + 1 {
                    // The engine never skips a seq: something is wrong; resume where we are.
                    return Err(io::Error::other(format!("gap in the stream: {} then {seq}", *last)));
                }
                if events.iter().any(|k| matches!(k, EventKind::InstrumentAdded { .. })) {
                    sh.instruments_stale.store(true, Ordering::SeqCst);
                }
                let events = events.into_iter().map(|kind| Event { seq, ts, kind }).collect();
                let batch = Arc::new(EngineBatch { origin: cfg.to_local(origin), seq, ts, events });
                // Blocks while the consumer is behind: the engine's ring absorbs it, and cuts us
                // off (SlowConsumer) past that; we then resume from `last`.
                if tx.blocking_send(batch).is_err() {
                    return Ok(());
                }
                *last = seq;
            }
            Next::Frame(ServerFrame::Goodbye { reason, text, .. }) => {
                if reason == GoodbyeReason::SlowConsumer as u8 {
                    tracing::warn!(after = *last, "engine: slow consumer; resuming");
                    return Ok(());
                }
                return Err(io::Error::other(format!("engine said goodbye: {text}")));
            }
            Next::Frame(other) => return Err(unexpected(&other)),
        }
    }
}

impl EngineLink for RemoteLink {
    fn submit(&self, req: EngineRequest) -> Result<(), LinkError> {
        let cfg = &self.shared.cfg;
        if cfg.gateway == 0 || req.origin.gateway != cfg.local() {
            // The engine knows this connection as one gateway: another id would be deduplicated
            // against the wrong counter.
            tracing::error!(expected = cfg.local(), got = req.origin.gateway, "submit with a foreign gateway id");
            return Err(LinkError::Stopped);
        }
        // Counted before the send so the session thread never takes one not yet counted.
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        self.tx.try_send(req).map_err(|e| {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => LinkError::Busy,
                TrySendError::Disconnected(_) => LinkError::Stopped,
            }
        })
    }

    fn subscribe(&self, capacity: usize) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let last = self.last_seq().ok_or(LinkError::Stopped)?;
        self.subscribe_after(last, capacity)
    }

    fn subscribe_after(
        &self,
        after: Seq,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let sh = self.shared.clone();
        std::thread::Builder::new()
            .name("castle-remote-sub".into())
            .spawn(move || subscription(sh, after, tx))
            .map_err(|_| LinkError::Stopped)?;
        Ok(rx)
    }

    fn instruments(&self) -> Vec<InstrumentSpec> {
        if self.shared.instruments_stale.swap(false, Ordering::SeqCst) {
            match self.shared.refresh_instruments() {
                Ok(specs) => return specs,
                Err(e) => {
                    self.shared.instruments_stale.store(true, Ordering::SeqCst);
                    tracing::warn!(error = %e, "refreshing the instrument list");
                }
            }
        }
        self.shared.instruments.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn first_request(&self, gateway: u32) -> u64 {
        let sh = &self.shared;
        let gateway = if gateway == sh.cfg.local() { sh.cfg.gateway } else { gateway };
        let asked = hello(&sh.cfg.addr, sh.cfg.timeout, Role::Gateway, gateway, 0, Duration::from_millis(100))
            .and_then(|mut r| r.expect(sh.cfg.timeout));
        let applied = match asked {
            Ok(ServerFrame::Welcome { last_request, .. }) => last_request,
            Ok(other) => {
                tracing::error!(error = %unexpected(&other), "asking the engine for the last request id");
                0
            }
            Err(e) => {
                tracing::error!(error = %e, "asking the engine for the last request id");
                0
            }
        };
        let mine = if gateway == sh.cfg.gateway { sh.highest.load(Ordering::SeqCst) } else { 0 };
        applied.max(mine) + 1
    }

    fn last_seq(&self) -> Option<Seq> {
        match self.shared.control(proto::STATUS) {
            Ok(ServerFrame::StatusReply { seq, .. }) => Some(seq),
            Ok(other) => {
                tracing::warn!(error = %unexpected(&other), "engine status");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "engine status");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_link::Origin;

    #[test]
    fn local_gateway_swaps_the_two_ids_and_nothing_else() {
        let mut cfg = RemoteConfig::new("127.0.0.1:1", 12);
        let o = |gateway| Some(Origin { gateway, request: 5 });
        assert_eq!(cfg.to_local(o(12)), o(12), "no local id: unchanged");
        cfg.local_gateway = Some(3);
        assert_eq!(cfg.to_local(o(12)), o(3), "ours, under the component's id");
        assert_eq!(cfg.to_local(o(3)), o(12), "another replica's, never taken for ours");
        assert_eq!(cfg.to_local(o(4)), o(4));
        assert_eq!(cfg.to_local(None), None);
    }
}
