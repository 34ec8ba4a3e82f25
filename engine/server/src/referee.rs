//! The referee: an external record of which engine node may accept orders, and in which epoch.
//!
//! A primary accepts commands only while it holds the **lease** of the referee's current epoch;
//! promoting a standby **claims** the next epoch at the referee, which is granted only once the
//! previous holder's lease has run out. A deposed primary that restarts (or comes back after a
//! partition) asks for its lease, is told the epoch moved on, refuses orders and rejoins as a
//! standby of the new holder when its journal is a prefix of the new epoch's history.
//!
//! Layers:
//! * [`Referee`]: the decision logic, sans-IO (time is a parameter, persistence is the
//!   caller's: [`Referee::handle`] says when the state must be made durable before replying);
//! * [`LeaseClock`]: the node side of lease timing, sans-IO;
//! * the wire format ([`Request`], [`Response`], [`encode_request`], [`parse_request`],
//!   [`encode_response`], [`parse_response`]), the engine's framing (u32 length, u8 type, body);
//! * a small blocking transport: [`call`] (one request per connection) and [`serve`] (the
//!   `castle referee` process), with the state in a file ([`load_state`], [`store_state`]).
//!
//! Timing: the referee starts a lease when it receives the request, the node counts it from
//! before it sent the request and only for [`LeaseClock::USABLE`] of its length, so the node's
//! lease ends before the referee's unless the two clocks' rates differ by more than a third.
//! After a referee restart, the recorded holder is assumed to hold a full lease from then on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proto::{self, Body};

/// Longest advertised address accepted.
pub const MAX_ADDR: usize = 256;
/// Largest referee frame body (the biggest message is a Claim or Deposed with a full address).
pub const MAX_FRAME: usize = 64 + MAX_ADDR;

const LEASE: u8 = 0x01;
const CLAIM: u8 = 0x02;
const GRANTED: u8 = 0x81;
const DEPOSED: u8 = 0x82;
const BUSY: u8 = 0x83;
const REFUSED: u8 = 0x84;

/// A node's referee settings ([`crate::Config::referee`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The referee's address.
    pub referee: String,
    /// This node's id (not 0; distinct per node of a venue).
    pub node: u32,
    /// Where this node serves gateways and standbys, told to the referee so a deposed node can
    /// find the new primary (empty: the bound listen address).
    pub advertise: String,
}

/// How long one referee request may take.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// What the referee records (and persists): the current epoch and who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefereeState {
    pub epoch: u64,
    /// Node id of the holder (0: nobody yet).
    pub holder: u32,
    /// The first seq of this epoch's history (the promotion marker); 0: not known (the holder
    /// took the epoch with a lease request, not a claim).
    pub start_seq: u64,
    /// Where the holder serves gateways and standbys.
    pub addr: String,
}

/// A node's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// "I am the primary at `epoch`": take or renew its lease.
    Lease { node: u32, epoch: u64, addr: String },
    /// Promotion: "I have seen `epoch` and applied up to `seq`; give me the next epoch".
    Claim { node: u32, epoch: u64, seq: u64, addr: String },
}

/// The referee's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The lease of `epoch` is the requester's for `lease_ms` from the request.
    Granted { epoch: u64, lease_ms: u32 },
    /// The requester's epoch is over (or belongs to another node): it must not accept orders.
    Deposed { epoch: u64, holder: u32, start_seq: u64, addr: String },
    /// Another node's lease is still running: retry after `retry_ms`.
    Busy { holder: u32, retry_ms: u32 },
    /// The request could not be decoded ([`RefereeFrameError::code`]); nothing was decided.
    /// After a malformed body the connection stays open (the framing is intact); after a frame
    /// whose length is out of bounds it is closed (the stream cannot be resynchronised).
    Refused { code: u8 },
}

/// The referee's decisions (sans-IO).
#[derive(Debug)]
pub struct Referee {
    state: RefereeState,
    lease_ms: u32,
    /// When the holder's lease ends, on the caller's clock (ms).
    expires_ms: u64,
}

impl Referee {
    /// A referee resuming `state` at time `now_ms`: the recorded holder keeps a full lease from
    /// now (it may have been renewed just before a restart).
    pub fn new(state: RefereeState, lease_ms: u32, now_ms: u64) -> Referee {
        assert!(lease_ms > 0, "a lease must last");
        let expires_ms = if state.holder == 0 { 0 } else { now_ms + lease_ms as u64 };
        Referee { state, lease_ms, expires_ms }
    }

    pub fn state(&self) -> &RefereeState {
        &self.state
    }

    /// Answers `req` received at `now_ms`. When the returned flag is true the state changed and
    /// must be durable before the answer is sent (an epoch granted and then forgotten by a
    /// restarted referee could be granted twice).
    pub fn handle(&mut self, now_ms: u64, req: Request) -> (Response, bool) {
        let before = self.state.clone();
        let lease_running = self.state.holder != 0 && now_ms < self.expires_ms;
        let resp = match req {
            Request::Lease { node, epoch, addr } => {
                let st = &mut self.state;
                if epoch < st.epoch || (epoch == st.epoch && st.holder != 0 && st.holder != node) {
                    self.deposed()
                } else if epoch > st.epoch && st.holder != node && lease_running {
                    // The referee is behind this node (its state was lost, or the node was
                    // promoted without it), but another node's lease still runs.
                    self.busy(now_ms)
                } else {
                    if epoch > st.epoch {
                        st.start_seq = 0;
                    }
                    st.epoch = epoch;
                    st.holder = node;
                    st.addr = addr;
                    self.expires_ms = now_ms + self.lease_ms as u64;
                    Response::Granted { epoch, lease_ms: self.lease_ms }
                }
            }
            Request::Claim { node, epoch, seq, addr } => {
                let st = &self.state;
                if st.holder == node && st.epoch > epoch && st.start_seq == seq + 1 {
                    // This claim was granted already and the answer lost: the same answer.
                    self.expires_ms = now_ms + self.lease_ms as u64;
                    Response::Granted { epoch: st.epoch, lease_ms: self.lease_ms }
                } else if epoch < st.epoch {
                    // It missed an epoch: its history may not be the current one.
                    self.deposed()
                } else if st.holder != node && lease_running {
                    self.busy(now_ms)
                } else {
                    let st = &mut self.state;
                    st.epoch = st.epoch.max(epoch) + 1;
                    st.holder = node;
                    st.start_seq = seq + 1;
                    st.addr = addr;
                    self.expires_ms = now_ms + self.lease_ms as u64;
                    Response::Granted { epoch: st.epoch, lease_ms: self.lease_ms }
                }
            }
        };
        debug_assert!(self.state.epoch >= before.epoch, "epochs never go back");
        let changed = self.state != before;
        (resp, changed)
    }

    fn deposed(&self) -> Response {
        let st = &self.state;
        Response::Deposed { epoch: st.epoch, holder: st.holder, start_seq: st.start_seq, addr: st.addr.clone() }
    }

    fn busy(&self, now_ms: u64) -> Response {
        let left = self.expires_ms.saturating_sub(now_ms).min(u32::MAX as u64) as u32;
        Response::Busy { holder: self.state.holder, retry_ms: left.max(1) }
    }
}

/// Whether a node told `Deposed` may follow the new holder as a standby on its own (sans-IO).
/// Only when its journal is certainly a prefix of the new holder's history: it is empty (a node
/// that never applied anything, e.g. the second of two fresh nodes started the same way: the
/// first to reach the referee holds the lease, the other follows it), or it ends before the first
/// seq of the new epoch (it stopped before the promotion). Otherwise it may hold records the new
/// history lacks, and an operator must move its journal aside.
pub fn may_rejoin(last_applied: u64, epoch_start_seq: u64, holder_addr: &str) -> bool {
    !holder_addr.is_empty() && (last_applied == 0 || (epoch_start_seq > 0 && last_applied < epoch_start_seq))
}

/// The node's view of its lease (sans-IO; times are the node's monotonic clock in ns).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseClock {
    until_ns: u64,
}

impl LeaseClock {
    /// Share of a granted lease the node uses (the rest absorbs clock rate differences).
    pub const USABLE: (u64, u64) = (3, 4);

    /// A grant for `lease_ms`, for a request sent at `sent_ns`: the lease runs until
    /// `sent + lease * 3/4` (never shortened by a late answer to an older request).
    pub fn granted(&mut self, sent_ns: u64, lease_ms: u32) -> u64 {
        let usable = lease_ms as u64 * 1_000_000 * Self::USABLE.0 / Self::USABLE.1;
        self.until_ns = self.until_ns.max(sent_ns + usable);
        self.until_ns
    }

    /// A lease known to run until `until_ns` (granted elsewhere, e.g. to a promotion's claim).
    pub fn extend_to(&mut self, until_ns: u64) {
        self.until_ns = self.until_ns.max(until_ns);
    }

    /// Deposed: no lease at all.
    pub fn revoke(&mut self) {
        self.until_ns = 0;
    }

    pub fn until_ns(&self) -> u64 {
        self.until_ns
    }

    pub fn valid_at(&self, now_ns: u64) -> bool {
        now_ns < self.until_ns
    }
}

/// Why a referee message was refused.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum RefereeFrameError {
    #[error("unknown referee frame type {0:#x}")]
    UnknownType(u8),
    #[error("referee frame too short")]
    Short,
    #[error("{0} trailing bytes in a referee frame")]
    Trailing(usize),
    #[error("node id 0 is reserved")]
    NodeZero,
    #[error("address longer than {MAX_ADDR} bytes or not UTF-8")]
    BadAddr,
    #[error("frame length {0} outside 1..={MAX_FRAME}")]
    Length(usize),
}

impl RefereeFrameError {
    /// The code a [`Response::Refused`] carries.
    pub fn code(&self) -> u8 {
        match self {
            RefereeFrameError::UnknownType(_) => 1,
            RefereeFrameError::Short => 2,
            RefereeFrameError::Trailing(_) => 3,
            RefereeFrameError::NodeZero => 4,
            RefereeFrameError::BadAddr => 5,
            RefereeFrameError::Length(_) => 6,
        }
    }
}

/// What a [`Response::Refused`] code means (for logs).
pub fn refusal_reason(code: u8) -> &'static str {
    match code {
        1 => "unknown request type",
        2 => "request too short",
        3 => "trailing bytes after the request",
        4 => "node id 0",
        5 => "address too long or not UTF-8",
        6 => "frame length out of bounds",
        _ => "unknown refusal code",
    }
}

/// What the referee does with the next bytes of a connection (see [`RefereeInbox`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A well-formed request: decide it ([`Referee::handle`]) and answer.
    Request(Request),
    /// A request that could not be decoded: answer this refusal, then close the connection if
    /// `close` (the framing itself is broken), else go on reading.
    Refuse { response: Response, close: bool },
}

/// One connection's request bytes, decoded sans-IO: the transport feeds what it reads and
/// answers each [`Incoming`] in order.
#[derive(Debug)]
pub struct RefereeInbox {
    frames: proto::FrameDecoder,
    closed: bool,
}

impl Default for RefereeInbox {
    fn default() -> Self {
        RefereeInbox { frames: proto::FrameDecoder::new(MAX_FRAME), closed: false }
    }
}

impl RefereeInbox {
    /// Appends bytes read from the connection (ignored once a refusal closed it).
    pub fn extend(&mut self, data: &[u8]) {
        if !self.closed {
            self.frames.extend(data);
        }
    }

    /// The next request or refusal; `None` when more bytes are needed or the connection is
    /// to be closed.
    pub fn next_incoming(&mut self) -> Option<Incoming> {
        if self.closed {
            return None;
        }
        match self.frames.next_frame() {
            Ok(None) => None,
            Ok(Some((ty, body))) => Some(match parse_request(ty, body) {
                Ok(r) => Incoming::Request(r),
                Err(e) => Incoming::Refuse { response: Response::Refused { code: e.code() }, close: false },
            }),
            Err(e) => {
                // Only a length outside 1..=MAX_FRAME makes the decoder fail.
                self.closed = true;
                let n = if let proto::FrameError::Length(n) = e { n } else { 0 };
                let code = RefereeFrameError::Length(n).code();
                Some(Incoming::Refuse { response: Response::Refused { code }, close: true })
            }
        }
    }

    /// True once a refusal closed the connection.
    pub fn closed(&self) -> bool {
        self.closed
    }
}

fn put_addr(b: &mut Vec<u8>, addr: &str) {
    let a = &addr.as_bytes()[..addr.len().min(MAX_ADDR)];
    b.extend_from_slice(&(a.len() as u16).to_le_bytes());
    b.extend_from_slice(a);
}

fn get_addr(b: &mut Body<'_>) -> Result<String, RefereeFrameError> {
    let n = b.take(2).ok_or(RefereeFrameError::Short)?;
    let n = u16::from_le_bytes([n[0], n[1]]) as usize;
    if n > MAX_ADDR {
        return Err(RefereeFrameError::BadAddr);
    }
    let a = b.take(n).ok_or(RefereeFrameError::Short)?;
    String::from_utf8(a.to_vec()).map_err(|_| RefereeFrameError::BadAddr)
}

fn done(b: &Body<'_>) -> Result<(), RefereeFrameError> {
    match b.0.len() {
        0 => Ok(()),
        n => Err(RefereeFrameError::Trailing(n)),
    }
}

/// A request as one frame (header included).
pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    let ty = match r {
        Request::Lease { node, epoch, addr } => {
            b.extend_from_slice(&node.to_le_bytes());
            b.extend_from_slice(&epoch.to_le_bytes());
            put_addr(&mut b, addr);
            LEASE
        }
        Request::Claim { node, epoch, seq, addr } => {
            b.extend_from_slice(&node.to_le_bytes());
            b.extend_from_slice(&epoch.to_le_bytes());
            b.extend_from_slice(&seq.to_le_bytes());
            put_addr(&mut b, addr);
            CLAIM
        }
    };
    frame(ty, &b)
}

fn frame(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + body.len());
    proto::frame_header(&mut f, ty, body.len());
    f.extend_from_slice(body);
    f
}

/// Decodes a request frame's body (every byte of it hostile).
pub fn parse_request(ty: u8, body: &[u8]) -> Result<Request, RefereeFrameError> {
    let mut b = Body(body);
    let node = b.u32().ok_or(RefereeFrameError::Short)?;
    if node == 0 {
        return Err(RefereeFrameError::NodeZero);
    }
    let epoch = b.u64().ok_or(RefereeFrameError::Short)?;
    let r = match ty {
        LEASE => Request::Lease { node, epoch, addr: get_addr(&mut b)? },
        CLAIM => {
            let seq = b.u64().ok_or(RefereeFrameError::Short)?;
            Request::Claim { node, epoch, seq, addr: get_addr(&mut b)? }
        }
        t => return Err(RefereeFrameError::UnknownType(t)),
    };
    done(&b)?;
    Ok(r)
}

/// A response as one frame (header included).
pub fn encode_response(r: &Response) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    let ty = match r {
        Response::Granted { epoch, lease_ms } => {
            b.extend_from_slice(&epoch.to_le_bytes());
            b.extend_from_slice(&lease_ms.to_le_bytes());
            GRANTED
        }
        Response::Deposed { epoch, holder, start_seq, addr } => {
            b.extend_from_slice(&epoch.to_le_bytes());
            b.extend_from_slice(&holder.to_le_bytes());
            b.extend_from_slice(&start_seq.to_le_bytes());
            put_addr(&mut b, addr);
            DEPOSED
        }
        Response::Busy { holder, retry_ms } => {
            b.extend_from_slice(&holder.to_le_bytes());
            b.extend_from_slice(&retry_ms.to_le_bytes());
            BUSY
        }
        Response::Refused { code } => {
            b.push(*code);
            REFUSED
        }
    };
    frame(ty, &b)
}

/// Decodes a response frame's body.
pub fn parse_response(ty: u8, body: &[u8]) -> Result<Response, RefereeFrameError> {
    let mut b = Body(body);
    let short = RefereeFrameError::Short;
    let r = match ty {
        GRANTED => Response::Granted { epoch: b.u64().ok_or(short)?, lease_ms: b.u32().ok_or(short)? },
        DEPOSED => Response::Deposed {
            epoch: b.u64().ok_or(short)?,
            holder: b.u32().ok_or(short)?,
            start_seq: b.u64().ok_or(short)?,
            addr: get_addr(&mut b)?,
        },
        BUSY => Response::Busy { holder: b.u32().ok_or(short)?, retry_ms: b.u32().ok_or(short)? },
        REFUSED => Response::Refused { code: b.take(1).ok_or(short)?[0] },
        t => return Err(RefereeFrameError::UnknownType(t)),
    };
    done(&b)?;
    Ok(r)
}

/// Checks arbitrary bytes as a stream of request frames, as the referee reads them (the fuzz
/// target's and proptest's function): never panics whatever the input; every request re-encodes
/// to itself; every refusal is a response frame that decodes to itself; nothing follows a
/// refusal that closes; and the same bytes split at `split` give the same answers.
pub fn check_request_bytes(data: &[u8]) {
    check_request_bytes_split(data, data.len() / 2);
}

/// [`check_request_bytes`] with the bytes arriving in two reads split at `split`.
pub fn check_request_bytes_split(data: &[u8], split: usize) {
    let drain = |inbox: &mut RefereeInbox, out: &mut Vec<Incoming>| {
        while let Some(i) = inbox.next_incoming() {
            out.push(i);
        }
    };
    let mut whole = RefereeInbox::default();
    whole.extend(data);
    let mut answers = Vec::new();
    drain(&mut whole, &mut answers);
    let (a, b) = data.split_at(split.min(data.len()));
    let mut parts = RefereeInbox::default();
    let mut again = Vec::new();
    parts.extend(a);
    drain(&mut parts, &mut again);
    parts.extend(b);
    drain(&mut parts, &mut again);
    assert_eq!(answers, again, "the answers do not depend on how the bytes arrive");
    for (i, inc) in answers.iter().enumerate() {
        let frame = match inc {
            Incoming::Request(r) => {
                let f = encode_request(r);
                let mut d = proto::FrameDecoder::new(MAX_FRAME);
                d.extend(&f);
                let (t, body) = d.next_frame().ok().flatten().expect("a re-encoded request is one frame");
                assert_eq!(parse_request(t, body).as_ref(), Ok(r), "re-encoding round trips");
                continue;
            }
            Incoming::Refuse { response, close } => {
                assert!(!close || i + 1 == answers.len(), "nothing is answered after a closing refusal");
                encode_response(response)
            }
        };
        let mut d = proto::FrameDecoder::new(MAX_FRAME);
        d.extend(&frame);
        let (t, body) = d.next_frame().ok().flatten().expect("a refusal is one frame");
        match (parse_response(t, body), inc) {
            (Ok(r), Incoming::Refuse { response, .. }) => assert_eq!(&r, response, "refusals round trip"),
            (other, _) => panic!("a refusal frame does not decode: {other:?}"),
        }
    }
}

fn bad(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// One request to the referee at `addr` (a connection each: leases are renewed a few times a
/// second at most), bounded by `timeout` per step.
pub fn call(addr: &str, req: &Request, timeout: Duration) -> std::io::Result<Response> {
    let sa = addr.to_socket_addrs()?.next().ok_or_else(|| bad(format!("no address for {addr}")))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(&encode_request(req))?;
    let mut buf = Vec::new();
    let ty = proto::read_frame(&mut s, &mut buf, MAX_FRAME)?.ok_or_else(|| bad("the referee closed"))?;
    match parse_response(ty, &buf).map_err(bad)? {
        Response::Refused { code } => Err(bad(format!("the referee refused the request: {}", refusal_reason(code)))),
        r => Ok(r),
    }
}

/// Reads the referee's state file (absent: a fresh referee).
pub fn load_state(path: &Path) -> std::io::Result<RefereeState> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RefereeState::default()),
        Err(e) => return Err(e),
    };
    let mut st = RefereeState::default();
    for line in text.lines() {
        let (k, v) = line.split_once('=').ok_or_else(|| bad(format!("{}: bad line {line:?}", path.display())))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| bad(format!("{}: bad number in {line:?}", path.display())));
        match k {
            "epoch" => st.epoch = num(v)?,
            "holder" => st.holder = num(v)?.try_into().map_err(|_| bad("holder out of range"))?,
            "start_seq" => st.start_seq = num(v)?,
            "addr" => st.addr = v.to_string(),
            _ => return Err(bad(format!("{}: unknown key {k:?}", path.display()))),
        }
    }
    Ok(st)
}

/// Writes the state durably (temporary file, fsync, rename, fsync of the directory).
pub fn store_state(path: &Path, st: &RefereeState) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        write!(f, "epoch={}\nholder={}\nstart_seq={}\naddr={}\n", st.epoch, st.holder, st.start_seq, st.addr)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Connections served at once by [`serve`].
const MAX_CONNECTIONS: usize = 64;

/// Runs a referee on `listener` until `stop` is set: one thread per connection (bounded), every
/// decision under one lock and persisted to `state_path` before it is answered.
pub fn serve(listener: TcpListener, state_path: &Path, lease_ms: u32, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let t0 = Instant::now();
    let st = load_state(state_path)?;
    tracing::info!(epoch = st.epoch, holder = st.holder, start_seq = st.start_seq, addr = %st.addr, lease_ms, "referee state");
    let referee = Arc::new(Mutex::new(Referee::new(st, lease_ms, 0)));
    let open = Arc::new(AtomicUsize::new(0));
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        let (mut s, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "referee accept");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            continue; // dropped: the node retries
        }
        let (referee, open, path) = (referee.clone(), open.clone(), state_path.to_path_buf());
        let spawned = std::thread::Builder::new().name("castle-referee".into()).spawn(move || {
            let r = (|| -> std::io::Result<()> {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.set_write_timeout(Some(Duration::from_secs(5)))?;
                let mut inbox = RefereeInbox::default();
                let mut buf = [0u8; 1024];
                loop {
                    let req = match inbox.next_incoming() {
                        Some(Incoming::Request(req)) => req,
                        Some(Incoming::Refuse { response, close }) => {
                            if let Response::Refused { code } = response {
                                tracing::debug!(%peer, reason = refusal_reason(code), close, "referee: malformed request refused");
                            }
                            s.write_all(&encode_response(&response))?;
                            if close {
                                return Ok(());
                            }
                            continue;
                        }
                        None => {
                            let n = s.read(&mut buf)?;
                            if n == 0 {
                                return Ok(());
                            }
                            inbox.extend(&buf[..n]);
                            continue;
                        }
                    };
                    let resp = {
                        let mut r = referee.lock().unwrap_or_else(|p| p.into_inner());
                        let (resp, changed) = r.handle(t0.elapsed().as_millis() as u64, req.clone());
                        if changed {
                            // Durable before anyone hears of it.
                            store_state(&path, r.state())?;
                            let st = r.state();
                            tracing::info!(epoch = st.epoch, holder = st.holder, start_seq = st.start_seq, addr = %st.addr, "referee: epoch holder recorded");
                        }
                        resp
                    };
                    tracing::debug!(?req, ?resp, "referee");
                    s.write_all(&encode_response(&resp))?;
                }
            })();
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "referee connection");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            tracing::warn!("referee: could not spawn a connection thread");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(node: u32, epoch: u64) -> Request {
        Request::Lease { node, epoch, addr: format!("n{node}") }
    }

    fn claim(node: u32, epoch: u64, seq: u64) -> Request {
        Request::Claim { node, epoch, seq, addr: format!("n{node}") }
    }

    #[test]
    fn a_primary_holds_and_renews_then_a_standby_waits_for_the_lease_to_end() {
        let mut r = Referee::new(RefereeState::default(), 1_000, 0);
        // A fresh referee adopts the first primary's epoch.
        assert_eq!(r.handle(0, lease(1, 1)), (Response::Granted { epoch: 1, lease_ms: 1_000 }, true));
        assert_eq!(r.handle(500, lease(1, 1)), (Response::Granted { epoch: 1, lease_ms: 1_000 }, false));
        // The standby's claim is refused while node 1's lease runs (renewed at 500: until 1,500).
        assert_eq!(r.handle(1_200, claim(2, 1, 40)), (Response::Busy { holder: 1, retry_ms: 300 }, false));
        // Once it ran out: epoch 2, starting at seq 41.
        assert_eq!(r.handle(1_500, claim(2, 1, 40)), (Response::Granted { epoch: 2, lease_ms: 1_000 }, true));
        assert_eq!(
            r.state(),
            &RefereeState { epoch: 2, holder: 2, start_seq: 41, addr: "n2".into() },
            "recorded for the deposed node"
        );
        // The old primary comes back: deposed, told where to rejoin and from which seq on its
        // journal would diverge.
        let deposed = Response::Deposed { epoch: 2, holder: 2, start_seq: 41, addr: "n2".into() };
        assert_eq!(r.handle(1_600, lease(1, 1)), (deposed.clone(), false));
        // Nor can it claim with its old epoch, even after the new lease ran out.
        assert_eq!(r.handle(9_000, claim(1, 1, 45)), (deposed, false));
        // A lost answer to a granted claim: asked again, the same grant.
        assert_eq!(r.handle(9_100, claim(2, 1, 40)), (Response::Granted { epoch: 2, lease_ms: 1_000 }, false));
    }

    #[test]
    fn same_epoch_held_by_another_node_is_deposed_and_a_lagging_referee_waits() {
        let mut r = Referee::new(RefereeState { epoch: 3, holder: 1, start_seq: 10, addr: "n1".into() }, 1_000, 0);
        // After a restart the holder keeps a full lease from now.
        assert!(matches!(r.handle(999, claim(2, 3, 50)).0, Response::Busy { holder: 1, retry_ms: 1 }));
        assert!(matches!(r.handle(10, lease(2, 3)).0, Response::Deposed { epoch: 3, holder: 1, .. }));
        // A node ahead of the referee (promoted without it): only after node 1's lease.
        assert!(matches!(r.handle(20, lease(2, 5)).0, Response::Busy { .. }));
        assert_eq!(r.handle(1_000, lease(2, 5)), (Response::Granted { epoch: 5, lease_ms: 1_000 }, true));
        assert_eq!(r.state().start_seq, 0, "start of an epoch taken by a lease is unknown");
    }

    #[test]
    fn a_claim_after_a_vacancy_is_granted_at_once_and_epochs_only_grow() {
        let mut r = Referee::new(RefereeState::default(), 1_000, 0);
        assert_eq!(r.handle(0, claim(2, 7, 100)), (Response::Granted { epoch: 8, lease_ms: 1_000 }, true));
        for (t, req) in [(10, lease(1, 7)), (20, claim(3, 8, 5)), (3_000, claim(3, 8, 200)), (3_100, lease(2, 8))] {
            let before = r.state().epoch;
            r.handle(t, req);
            assert!(r.state().epoch >= before);
        }
        assert_eq!(r.state().epoch, 9, "node 3 took epoch 9 after node 2's lease ended");
        assert!(matches!(r.handle(3_100, lease(2, 8)).0, Response::Deposed { epoch: 9, holder: 3, .. }));
    }

    #[test]
    fn a_malformed_request_gets_a_refusal_and_the_connection_goes_on_until_the_framing_breaks() {
        let mut inbox = RefereeInbox::default();
        let mut bytes = encode_request(&lease(0, 2)); // node 0: refused, framing intact
        bytes.extend(encode_request(&lease(1, 2)));
        // Split inside the second frame: nothing until the rest arrives.
        let (a, b) = bytes.split_at(bytes.len() - 3);
        inbox.extend(a);
        let refusal = Response::Refused { code: RefereeFrameError::NodeZero.code() };
        assert_eq!(inbox.next_incoming(), Some(Incoming::Refuse { response: refusal, close: false }));
        assert_eq!(inbox.next_incoming(), None);
        inbox.extend(b);
        assert_eq!(inbox.next_incoming(), Some(Incoming::Request(lease(1, 2))));
        assert_eq!(inbox.next_incoming(), None);
        // A frame longer than any request: refused, then closed (the stream cannot be
        // resynchronised), whatever follows.
        inbox.extend(&(MAX_FRAME as u32 + 1).to_le_bytes());
        inbox.extend(&encode_request(&lease(1, 2)));
        let too_long = Response::Refused { code: RefereeFrameError::Length(MAX_FRAME + 1).code() };
        assert_eq!(inbox.next_incoming(), Some(Incoming::Refuse { response: too_long, close: true }));
        assert!(inbox.closed());
        inbox.extend(&encode_request(&lease(1, 2)));
        assert_eq!(inbox.next_incoming(), None);
        assert_eq!(refusal_reason(6), "frame length out of bounds");
    }

    #[test]
    fn a_deposed_node_rejoins_only_when_its_journal_is_a_prefix() {
        // Empty journal: a prefix of any history, whatever the referee knows of the epoch start.
        assert!(may_rejoin(0, 0, "10.0.1.5:7400"));
        assert!(may_rejoin(0, 41, "10.0.1.5:7400"));
        // Stopped before the promotion marker.
        assert!(may_rejoin(40, 41, "10.0.1.5:7400"));
        // Records from the new epoch's start on, or a start the referee does not know: refuse.
        assert!(!may_rejoin(41, 41, "10.0.1.5:7400"));
        assert!(!may_rejoin(5, 0, "10.0.1.5:7400"));
        // Nowhere to follow.
        assert!(!may_rejoin(0, 0, ""));
    }

    #[test]
    fn lease_clock_counts_from_the_send_and_keeps_a_quarter_back() {
        let mut c = LeaseClock::default();
        assert!(!c.valid_at(0), "no lease before the first grant");
        let until = c.granted(1_000, 2_000);
        assert_eq!(until, 1_000 + 1_500_000_000);
        assert!(c.valid_at(until - 1) && !c.valid_at(until));
        // A late answer to an older request does not shorten the lease.
        assert_eq!(c.granted(500, 2_000), until);
        c.revoke();
        assert!(!c.valid_at(1_001));
    }

    #[test]
    fn frames_round_trip_and_refusals_are_typed() {
        for req in [lease(1, 2), claim(7, 9, 1_000), Request::Lease { node: 3, epoch: 0, addr: String::new() }] {
            let f = encode_request(&req);
            assert_eq!(parse_request(f[4], &f[5..]), Ok(req));
        }
        for resp in [
            Response::Granted { epoch: 4, lease_ms: 2_000 },
            Response::Deposed { epoch: 4, holder: 2, start_seq: 9, addr: "127.0.0.1:7400".into() },
            Response::Busy { holder: 1, retry_ms: 30 },
            Response::Refused { code: RefereeFrameError::NodeZero.code() },
        ] {
            let f = encode_response(&resp);
            assert_eq!(parse_response(f[4], &f[5..]), Ok(resp));
        }
        let f = encode_request(&lease(1, 2));
        assert_eq!(parse_request(0x09, &f[5..]), Err(RefereeFrameError::UnknownType(9)));
        assert_eq!(parse_request(LEASE, &f[5..f.len() - 1]), Err(RefereeFrameError::Short));
        let mut long = f[5..].to_vec();
        long.push(0);
        assert_eq!(parse_request(LEASE, &long), Err(RefereeFrameError::Trailing(1)));
        assert_eq!(parse_request(LEASE, &encode_request(&lease(0, 2))[5..]), Err(RefereeFrameError::NodeZero));
        let mut b = 1u32.to_le_bytes().to_vec();
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&(MAX_ADDR as u16 + 1).to_le_bytes());
        assert_eq!(parse_request(LEASE, &b), Err(RefereeFrameError::BadAddr));
    }

    #[test]
    fn state_file_round_trips_and_bad_files_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("referee.state");
        assert_eq!(load_state(&p).expect("absent"), RefereeState::default());
        let st = RefereeState { epoch: 12, holder: 3, start_seq: 99, addr: "10.0.0.2:7400".into() };
        store_state(&p, &st).expect("store");
        assert_eq!(load_state(&p).expect("load"), st);
        std::fs::write(&p, "epoch=x\n").expect("write");
        assert!(load_state(&p).is_err());
    }
}
