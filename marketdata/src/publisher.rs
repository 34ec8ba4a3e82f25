//! Feed publisher: a sans-IO core ([`FeedCore`]: encoder, sequencing,
//! packetising, retransmission buffer, snapshot book) and a thin I/O layer
//! ([`Publisher`]: UDP multicast or unicast, A/B groups, heartbeats, End of
//! Session, re-request server over UDP, snapshot service over TCP).
//!
//! Threads: one publishing thread fed by a bounded queue (so a slow network
//! pushes back on the producer instead of growing memory), one re-request
//! thread and one snapshot thread. They share the retransmission buffer and
//! the snapshot book behind one mutex, held per batch, never across I/O.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use castle_engine::{Event, InstrumentSpec};

use crate::encoder::{EncodeError, FeedEncoder};
use crate::feedbook::FeedBook;
use crate::itch::{len, Header, Message};
use crate::mold::{self, PacketBuilder, Request, Session};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the publisher queue is full")]
    QueueFull,
    #[error("the publisher has stopped")]
    Stopped,
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
}

/// Fixed-size slots so the buffer never allocates after start-up.
#[derive(Clone, Copy)]
struct Slot {
    len: u8,
    bytes: [u8; len::MAX],
}

/// The last `capacity` messages by sequence number.
pub struct RetransBuffer {
    slots: VecDeque<Slot>,
    capacity: usize,
    /// Sequence number of `slots[0]`.
    first: u64,
}

impl RetransBuffer {
    pub fn new(capacity: usize) -> Self {
        RetransBuffer { slots: VecDeque::with_capacity(capacity.max(1)), capacity: capacity.max(1), first: 1 }
    }

    fn push(&mut self, seq: u64, msg: &[u8]) {
        if self.slots.is_empty() {
            self.first = seq;
        }
        if self.slots.len() == self.capacity {
            self.slots.pop_front();
            self.first += 1;
        }
        let mut s = Slot { len: msg.len() as u8, bytes: [0; len::MAX] };
        s.bytes[..msg.len()].copy_from_slice(msg);
        self.slots.push_back(s);
    }

    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        let i = seq.checked_sub(self.first)?;
        self.slots.get(usize::try_from(i).ok()?).map(|s| &s.bytes[..s.len as usize])
    }

    /// Oldest sequence number still held.
    pub fn first_seq(&self) -> u64 {
        self.first
    }
}

/// State shared with the re-request and snapshot threads.
pub struct Shared {
    pub retrans: RetransBuffer,
    /// The book as the feed has described it so far (serves snapshots).
    pub book: FeedBook,
    /// Sequence number of the next message to be sent.
    pub next_seq: u64,
}

/// The sans-IO publishing core: events in, datagrams out through a callback.
pub struct FeedCore {
    session: Session,
    encoder: FeedEncoder,
    builder: PacketBuilder,
    msgs: Vec<Message>,
    scratch: [u8; len::MAX],
    shared: Arc<Mutex<Shared>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic in another feed thread must not take the feed down with it:
    // the data under the lock is updated batch-wise and stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FeedCore {
    pub fn new(session: Session, max_packet: usize, retrans_capacity: usize) -> Self {
        FeedCore {
            session,
            encoder: FeedEncoder::new(),
            builder: PacketBuilder::new(session, max_packet),
            msgs: Vec::with_capacity(1_024),
            scratch: [0; len::MAX],
            shared: Arc::new(Mutex::new(Shared {
                retrans: RetransBuffer::new(retrans_capacity),
                book: FeedBook::new(),
                next_seq: 1,
            })),
        }
    }

    pub fn shared(&self) -> Arc<Mutex<Shared>> {
        self.shared.clone()
    }

    pub fn session(&self) -> Session {
        self.session
    }

    pub fn register(&mut self, spec: InstrumentSpec) {
        self.encoder.register(spec);
    }

    pub fn next_seq(&self) -> u64 {
        lock(&self.shared).next_seq
    }

    /// Encodes a batch of whole commands and emits the datagrams through `send`.
    pub fn publish(&mut self, events: &[Event], send: &mut dyn FnMut(&[u8])) -> Result<(), EncodeError> {
        self.msgs.clear();
        let res = self.encoder.encode(events, &mut self.msgs);
        let msgs = std::mem::take(&mut self.msgs);
        self.publish_messages(&msgs, send);
        self.msgs = msgs;
        res
    }

    /// Sequences and sends ready-made messages (system events, tests).
    pub fn publish_messages(&mut self, msgs: &[Message], send: &mut dyn FnMut(&[u8])) {
        if msgs.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let mut sh = lock(&shared);
        self.builder.start(sh.next_seq);
        for m in msgs {
            let n = m.encode(&mut self.scratch).unwrap_or(0);
            let bytes = &self.scratch[..n];
            if !self.builder.push(bytes) {
                send(self.builder.finish());
                let next = self.builder.next_seq();
                self.builder.start(next);
                // An empty packet always has room for the longest message.
                self.builder.push(bytes);
            }
            let seq = sh.next_seq;
            sh.retrans.push(seq, bytes);
            sh.next_seq += 1;
            if let Err(e) = sh.book.apply(m) {
                // Our own stream must always apply; if not, snapshots would be wrong.
                tracing::error!(error = %e, seq, "publisher book rejected its own message");
            }
        }
        if !self.builder.is_empty() {
            send(self.builder.finish());
        }
    }

    pub fn heartbeat(&self) -> [u8; mold::HEADER_LEN] {
        mold::control_packet(self.session, self.next_seq(), 0)
    }

    pub fn end_of_session(&self) -> [u8; mold::HEADER_LEN] {
        mold::control_packet(self.session, self.next_seq(), mold::END_OF_SESSION)
    }

    /// A System Event message with the current time.
    pub fn system_event(code: u8, ts: u64) -> Message {
        Message::SystemEvent {
            h: Header { locate: 0, tracking: 0, timestamp: crate::encoder::itch_timestamp(ts) },
            code,
        }
    }
}

/// Answers one re-request from the buffer: at most `max_messages`, in packets
/// of at most `max_packet` bytes. Stale, future or foreign-session requests get nothing.
pub fn answer_request(
    shared: &Mutex<Shared>,
    session: Session,
    request: &[u8],
    max_messages: u16,
    max_packet: usize,
    send: &mut dyn FnMut(&[u8]),
) -> Result<usize, mold::MoldError> {
    let req = Request::parse(request)?;
    if req.session != session || req.count == 0 {
        return Ok(0);
    }
    let count = req.count.min(max_messages) as u64;
    let mut b = PacketBuilder::new(session, max_packet);
    let sh = lock(shared);
    let end = req.seq.saturating_add(count).min(sh.next_seq);
    let mut seq = req.seq.max(1);
    let mut sent = 0;
    b.start(seq);
    while seq < end {
        let Some(msg) = sh.retrans.get(seq) else {
            break;
        };
        if !b.push(msg) {
            send(b.finish());
            b.start(seq);
            b.push(msg);
        }
        seq += 1;
        sent += 1;
    }
    if !b.is_empty() {
        send(b.finish());
    }
    Ok(sent)
}

/// Serialises a snapshot as 2-byte-length-prefixed message blocks (the
/// MoldUDP64 block format without the packet header).
pub fn snapshot_bytes(shared: &Mutex<Shared>) -> Vec<u8> {
    let mut msgs = Vec::new();
    {
        let sh = lock(shared);
        sh.book.snapshot_messages(sh.next_seq, &mut msgs);
    }
    let mut out = Vec::with_capacity(msgs.len() * 40);
    let mut buf = [0u8; len::MAX];
    for m in &msgs {
        let n = m.encode(&mut buf).unwrap_or(0);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[derive(Clone, Debug)]
pub struct PublisherConfig {
    pub session: Session,
    /// Primary destination: a multicast group or, in unicast mode, a host.
    pub destination: SocketAddr,
    /// Optional duplicate ("B") destination carrying identical packets.
    pub destination_b: Option<SocketAddr>,
    /// Local address to send from; its IP is also the multicast interface.
    pub interface: Ipv4Addr,
    pub ttl: u32,
    pub max_packet: usize,
    pub heartbeat: Duration,
    pub retrans_capacity: usize,
    pub max_per_request: u16,
    /// Where the re-request server listens (None: no re-request service).
    pub rerequest: Option<SocketAddr>,
    /// Where the snapshot service listens (None: no snapshots).
    pub snapshot: Option<SocketAddr>,
    /// Bound of the input queue in batches.
    pub queue: usize,
}

impl PublisherConfig {
    /// Loopback defaults for tests and `castle serve`.
    pub fn loopback(destination: SocketAddr) -> Self {
        PublisherConfig {
            session: mold::session("CASTLE0001"),
            destination,
            destination_b: None,
            interface: Ipv4Addr::LOCALHOST,
            ttl: 0,
            max_packet: mold::DEFAULT_MAX_PACKET,
            heartbeat: Duration::from_millis(500),
            retrans_capacity: 1 << 20,
            max_per_request: 1_000,
            rerequest: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            snapshot: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            queue: 1_024,
        }
    }
}

enum Input {
    Instrument(InstrumentSpec),
    Events(Vec<Event>),
    Flush(SyncSender<u64>),
}

/// Running publisher. Dropping it without [`Publisher::shutdown`] stops the
/// threads without End of Session (as a crash would).
pub struct Publisher {
    tx: Option<SyncSender<Input>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub rerequest_addr: Option<SocketAddr>,
    pub snapshot_addr: Option<SocketAddr>,
    shared: Arc<Mutex<Shared>>,
}

fn udp_sender(cfg: &PublisherConfig) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_multicast_if_v4(&cfg.interface)?;
    s.set_multicast_ttl_v4(cfg.ttl)?;
    // Loopback delivery is how a subscriber on the same host (tests, `castle serve`) hears the feed.
    s.set_multicast_loop_v4(true)?;
    s.set_send_buffer_size(4 << 20)?;
    s.bind(&SocketAddr::from((cfg.interface, 0)).into())?;
    Ok(s.into())
}

/// The re-request and snapshot threads and where they listen.
struct Services {
    threads: Vec<JoinHandle<()>>,
    rerequest_addr: Option<SocketAddr>,
    snapshot_addr: Option<SocketAddr>,
}

/// Starts the re-request and snapshot threads (when configured); they stop when `stop` is set.
fn start_services(
    cfg: &PublisherConfig,
    shared: &Arc<Mutex<Shared>>,
    stop: &Arc<AtomicBool>,
) -> Result<Services, PublishError> {
    let mut threads = Vec::new();
    let mut rerequest_addr = None;
    if let Some(addr) = cfg.rerequest {
        let rs = UdpSocket::bind(addr)?;
        rs.set_read_timeout(Some(Duration::from_millis(50)))?;
        rerequest_addr = Some(rs.local_addr()?);
        let (shared, stop, cfg) = (shared.clone(), stop.clone(), cfg.clone());
        threads.push(std::thread::spawn(move || rerequest_loop(rs, &shared, &stop, &cfg)));
    }
    let mut snapshot_addr = None;
    if let Some(addr) = cfg.snapshot {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        snapshot_addr = Some(l.local_addr()?);
        let (shared, stop) = (shared.clone(), stop.clone());
        threads.push(std::thread::spawn(move || snapshot_loop(l, &shared, &stop)));
    }
    Ok(Services { threads, rerequest_addr, snapshot_addr })
}

fn send_all(sock: &UdpSocket, dests: &[SocketAddr], p: &[u8]) {
    for d in dests {
        if let Err(e) = sock.send_to(p, d) {
            // UDP is fire and forget: receivers recover by re-request.
            tracing::warn!(error = %e, dest = %d, "feed send failed");
        }
    }
}

fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Publisher {
    pub fn start(cfg: PublisherConfig) -> Result<Publisher, PublishError> {
        let sock = udp_sender(&cfg)?;
        let mut core = FeedCore::new(cfg.session, cfg.max_packet, cfg.retrans_capacity);
        let shared = core.shared();
        let stop = Arc::new(AtomicBool::new(false));
        let Services { mut threads, rerequest_addr, snapshot_addr } = start_services(&cfg, &shared, &stop)?;

        let (tx, rx) = sync_channel::<Input>(cfg.queue.max(1));
        let stop2 = stop.clone();
        threads.push(std::thread::spawn(move || {
            let dests: Vec<SocketAddr> = std::iter::once(cfg.destination).chain(cfg.destination_b).collect();
            let mut send = |p: &[u8]| send_all(&sock, &dests, p);
            let now = wall_clock_ns;
            core.publish_messages(&[FeedCore::system_event(b'O', now())], &mut send);
            loop {
                match rx.recv_timeout(cfg.heartbeat) {
                    Ok(Input::Instrument(spec)) => core.register(spec),
                    Ok(Input::Events(ev)) => {
                        if let Err(e) = core.publish(&ev, &mut send) {
                            tracing::error!(error = %e, "feed encode");
                        }
                    }
                    Ok(Input::Flush(ack)) => {
                        let _ = ack.send(core.next_seq());
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if stop2.load(Ordering::Relaxed) {
                            break;
                        }
                        send(&core.heartbeat());
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        // Orderly shutdown: end of messages, then End of Session.
                        core.publish_messages(&[FeedCore::system_event(b'C', now())], &mut send);
                        let eos = core.end_of_session();
                        // Sent a few times: it is the only signal a receiver gets that no gap will ever fill.
                        for _ in 0..3 {
                            send(&eos);
                        }
                        break;
                    }
                }
            }
        }));
        Ok(Publisher { tx: Some(tx), stop, threads, rerequest_addr, snapshot_addr, shared })
    }

    fn send(&self, input: Input) -> Result<(), PublishError> {
        self.tx.as_ref().ok_or(PublishError::Stopped)?.send(input).map_err(|_| PublishError::Stopped)
    }

    /// Makes an instrument's spec known (before its InstrumentAdded event).
    pub fn register(&self, spec: InstrumentSpec) -> Result<(), PublishError> {
        self.send(Input::Instrument(spec))
    }

    /// Queues events of whole commands; blocks while the queue is full.
    pub fn publish(&self, events: Vec<Event>) -> Result<(), PublishError> {
        self.send(Input::Events(events))
    }

    /// Like `publish` but never blocks: a full queue is an error for the caller to handle.
    pub fn try_publish(&self, events: Vec<Event>) -> Result<(), PublishError> {
        match self.tx.as_ref().ok_or(PublishError::Stopped)?.try_send(Input::Events(events)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(PublishError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(PublishError::Stopped),
        }
    }

    /// Waits until everything queued so far is on the wire; returns the next sequence number.
    pub fn flush(&self) -> Result<u64, PublishError> {
        let (tx, rx) = sync_channel(1);
        self.send(Input::Flush(tx))?;
        rx.recv().map_err(|_| PublishError::Stopped)
    }

    pub fn shared(&self) -> Arc<Mutex<Shared>> {
        self.shared.clone()
    }

    /// Sends End of Session and stops every thread.
    pub fn shutdown(mut self) {
        self.tx.take();
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.tx.take();
        // The publishing thread ends on the closed queue; the others poll this flag.
        if let Some(main) = self.threads.pop() {
            let _ = main.join();
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// The publisher without a publishing thread: the caller's thread encodes
/// and sends, which saves a thread hop (a futex wake-up, tens of
/// microseconds on a VM) on the engine -> wire path. The caller must call
/// [`InlinePublisher::tick`] regularly (heartbeats). Re-request and snapshot
/// services run on their own threads as with [`Publisher`].
pub struct InlinePublisher {
    core: FeedCore,
    sock: UdpSocket,
    dests: Vec<SocketAddr>,
    heartbeat: Duration,
    last_send: std::time::Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub rerequest_addr: Option<SocketAddr>,
    pub snapshot_addr: Option<SocketAddr>,
}

impl InlinePublisher {
    /// Binds everything and sends System Event 'O' (start of messages).
    pub fn start(cfg: PublisherConfig) -> Result<InlinePublisher, PublishError> {
        let sock = udp_sender(&cfg)?;
        let core = FeedCore::new(cfg.session, cfg.max_packet, cfg.retrans_capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let Services { threads, rerequest_addr, snapshot_addr } = start_services(&cfg, &core.shared(), &stop)?;
        let dests = std::iter::once(cfg.destination).chain(cfg.destination_b).collect();
        let mut p = InlinePublisher {
            core,
            sock,
            dests,
            heartbeat: cfg.heartbeat,
            last_send: std::time::Instant::now(),
            stop,
            threads,
            rerequest_addr,
            snapshot_addr,
        };
        p.messages(&[FeedCore::system_event(b'O', wall_clock_ns())]);
        Ok(p)
    }

    fn messages(&mut self, msgs: &[Message]) {
        let (sock, dests) = (&self.sock, &self.dests);
        self.core.publish_messages(msgs, &mut |p| send_all(sock, dests, p));
        self.last_send = std::time::Instant::now();
    }

    pub fn shared(&self) -> Arc<Mutex<Shared>> {
        self.core.shared()
    }

    /// Makes an instrument's spec known (before its InstrumentAdded event).
    pub fn register(&mut self, spec: InstrumentSpec) {
        self.core.register(spec);
    }

    /// Encodes and sends the events of whole commands.
    pub fn publish(&mut self, events: &[Event]) -> Result<(), EncodeError> {
        let (sock, dests) = (&self.sock, &self.dests);
        let mut sent = false;
        let res = self.core.publish(events, &mut |p| {
            send_all(sock, dests, p);
            sent = true;
        });
        if sent {
            self.last_send = std::time::Instant::now();
        }
        res
    }

    /// Sends a heartbeat when nothing was sent for the heartbeat interval.
    pub fn tick(&mut self) {
        if self.last_send.elapsed() >= self.heartbeat {
            send_all(&self.sock, &self.dests, &self.core.heartbeat());
            self.last_send = std::time::Instant::now();
        }
    }

    /// End of messages, End of Session (three times: it is the last thing a
    /// receiver hears), and the service threads stop.
    pub fn shutdown(mut self) {
        self.messages(&[FeedCore::system_event(b'C', wall_clock_ns())]);
        let eos = self.core.end_of_session();
        for _ in 0..3 {
            send_all(&self.sock, &self.dests, &eos);
        }
    }
}

impl Drop for InlinePublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn rerequest_loop(sock: UdpSocket, shared: &Mutex<Shared>, stop: &AtomicBool, cfg: &PublisherConfig) {
    // One byte more than a request so an oversized datagram is seen as such, not truncated into a valid one.
    let mut buf = [0u8; mold::REQUEST_LEN + 1];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "re-request socket");
                continue;
            }
        };
        let mut send = |p: &[u8]| {
            if let Err(e) = sock.send_to(p, from) {
                tracing::warn!(error = %e, %from, "re-request reply failed");
            }
        };
        match answer_request(shared, cfg.session, &buf[..n], cfg.max_per_request, cfg.max_packet, &mut send) {
            Ok(sent) => tracing::debug!(%from, sent, "re-request answered"),
            Err(e) => tracing::debug!(error = %e, %from, "bad re-request ignored"),
        }
    }
}

fn snapshot_loop(l: TcpListener, shared: &Mutex<Shared>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, from)) => {
                // One client at a time keeps the service bounded; each is
                // served from an in-memory copy so the lock is not held while writing.
                let bytes = snapshot_bytes(shared);
                if let Err(e) = serve_snapshot(s, &bytes) {
                    tracing::warn!(error = %e, %from, "snapshot client");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!(error = %e, "snapshot accept");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn serve_snapshot(mut s: TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(bytes)?;
    s.flush()
}
