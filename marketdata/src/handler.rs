//! Feed handler: sequences MoldUDP64 packets, detects gaps, recovers by
//! re-request (small gaps) or TCP snapshot (large or unrecoverable gaps,
//! late join, book inconsistency), and rebuilds the book.
//!
//! [`HandlerCore`] is sans-IO: it takes datagrams and time, and says what to
//! do ([`Action`]). [`FeedClient`] does the I/O around it.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use castle_engine::Seq;

use crate::feedbook::{Applied, FeedBook, FeedBookError};
use crate::itch::{DecodeError, Message};
use crate::mold::{MoldError, Packet, Request, Session};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("packet: {0}")]
    Mold(#[from] MoldError),
    #[error("message: {0}")]
    Decode(#[from] DecodeError),
    #[error("book: {0}")]
    Book(#[from] FeedBookError),
    #[error("snapshot stream ended before its end marker")]
    SnapshotIncomplete,
    #[error("snapshot too large ({0} bytes)")]
    SnapshotTooLarge(usize),
    #[error("timed out waiting for the feed")]
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Send a MoldUDP64 request for these messages.
    Rerequest(Request),
    /// Fetch a snapshot over TCP.
    Snapshot,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mold::{control_packet, session, PacketBuilder};

    #[test]
    fn extreme_sequence_numbers_do_not_overflow() {
        let mut h = HandlerCore::new(HandlerConfig::default());
        let now = Instant::now();
        assert_eq!(h.on_packet(&control_packet(session("S"), u64::MAX, 0), now, &mut |_, _| {}), Action::Snapshot);
        let mut h = HandlerCore::new(HandlerConfig::default());
        let mut b = PacketBuilder::new(session("S"), 1_400);
        b.start(u64::MAX - 1);
        for _ in 0..4 {
            b.push(b"q");
        }
        h.on_packet(b.finish(), now, &mut |_, _| {});
        h.poll(now);
    }

    #[test]
    fn gap_is_rerequested_then_escalates_to_snapshot() {
        let cfg = HandlerConfig { rerequest_timeout: Duration::from_millis(1), max_retries: 2, ..Default::default() };
        let mut h = HandlerCore::new(cfg);
        let now = Instant::now();
        let a = h.on_packet(&control_packet(session("S"), 11, 0), now, &mut |_, _| {});
        assert_eq!(a, Action::Rerequest(Request { session: session("S"), seq: 1, count: 10 }));
        assert_eq!(h.poll(now), Action::None, "no resend before the timeout");
        let later = now + Duration::from_millis(5);
        assert!(matches!(h.poll(later), Action::Rerequest(_)));
        assert_eq!(h.poll(later + Duration::from_millis(5)), Action::Snapshot);
    }
}

#[derive(Clone, Copy, Debug)]
pub struct HandlerConfig {
    /// Gaps up to this many messages are re-requested; larger ones go to a snapshot.
    pub max_rerequest_gap: u64,
    /// Messages asked for per request (the server bounds it too).
    pub request_count: u16,
    pub rerequest_timeout: Duration,
    /// Re-requests sent for the same gap (the first included) before falling back to a snapshot.
    pub max_retries: u32,
    /// Out-of-order messages held while a gap is open.
    pub max_pending: usize,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        HandlerConfig {
            max_rerequest_gap: 50_000,
            request_count: 1_000,
            rerequest_timeout: Duration::from_millis(100),
            max_retries: 5,
            max_pending: 200_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerStats {
    pub packets: u64,
    pub messages: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub rerequests: u64,
    pub snapshots: u64,
    pub bad_packets: u64,
    pub unknown_messages: u64,
}

pub struct HandlerCore {
    cfg: HandlerConfig,
    session: Option<Session>,
    /// Next MoldUDP64 sequence number to apply.
    next: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    /// Highest sequence number known to exist (from packets and heartbeats).
    high: u64,
    /// The gap being re-requested: (from seq, sent at, attempts).
    inflight: Option<(u64, Instant, u32)>,
    need_snapshot: bool,
    pub book: FeedBook,
    pub stats: HandlerStats,
    pub end_of_session: bool,
}

impl HandlerCore {
    pub fn new(cfg: HandlerConfig) -> Self {
        HandlerCore {
            cfg,
            session: None,
            next: 1,
            pending: BTreeMap::new(),
            high: 0,
            inflight: None,
            need_snapshot: false,
            book: FeedBook::new(),
            stats: HandlerStats::default(),
            end_of_session: false,
        }
    }

    /// Next sequence number to apply (everything before it is in the book).
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn session(&self) -> Option<Session> {
        self.session
    }

    /// True when nothing is missing up to the highest sequence number seen.
    pub fn in_sync(&self) -> bool {
        !self.need_snapshot && self.pending.is_empty() && self.next > self.high
    }

    /// Handles one datagram. `on_seq` is called each time an engine command
    /// completes in the book (with the book at exactly that engine seq).
    pub fn on_packet(&mut self, data: &[u8], now: Instant, on_seq: &mut dyn FnMut(Seq, &FeedBook)) -> Action {
        let p = match Packet::parse(data) {
            Ok(p) => p,
            Err(e) => {
                self.stats.bad_packets += 1;
                tracing::debug!(error = %e, "malformed packet dropped");
                return Action::None;
            }
        };
        match self.session {
            None => self.session = Some(p.header.session),
            Some(s) if s != p.header.session => {
                // A new session restarts sequencing; everything known is void.
                tracing::info!("new feed session; resynchronising");
                self.session = Some(p.header.session);
                self.reset();
                self.need_snapshot = true;
            }
            Some(_) => {}
        }
        self.stats.packets += 1;
        if p.header.is_end_of_session() {
            self.end_of_session = true;
        }
        let n = p.header.message_count() as u64;
        // A heartbeat or End of Session announces the next sequence number.
        self.high = self.high.max(p.header.seq.saturating_add(n).saturating_sub(1));
        if n == 0 {
            self.high = self.high.max(p.header.seq.saturating_sub(1));
        }
        for (seq, msg) in p.messages() {
            self.stats.messages += 1;
            if seq < self.next {
                self.stats.duplicates += 1;
            } else if seq == self.next && !self.need_snapshot {
                self.apply(msg, on_seq);
                self.next = self.next.saturating_add(1);
            } else if self.pending.len() < self.cfg.max_pending {
                self.pending.entry(seq).or_insert_with(|| msg.to_vec());
            } else {
                self.need_snapshot = true;
            }
        }
        self.drain(on_seq);
        self.poll(now)
    }

    fn reset(&mut self) {
        self.next = 1;
        self.high = 0;
        self.pending.clear();
        self.inflight = None;
        self.book.clear();
    }

    fn apply(&mut self, msg: &[u8], on_seq: &mut dyn FnMut(Seq, &FeedBook)) {
        match Message::decode(msg) {
            Ok(m) => match self.book.apply(&m) {
                Ok(Applied::EngineSeq(s)) => on_seq(s, &self.book),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, seq = self.next, "book out of sync; snapshot needed");
                    self.need_snapshot = true;
                }
            },
            // Unknown types are skipped, as ITCH consumers must for forward compatibility.
            Err(DecodeError::UnknownType(_)) => self.stats.unknown_messages += 1,
            Err(e) => {
                tracing::warn!(error = %e, seq = self.next, "undecodable message; snapshot needed");
                self.need_snapshot = true;
            }
        }
    }

    fn drain(&mut self, on_seq: &mut dyn FnMut(Seq, &FeedBook)) {
        if self.need_snapshot {
            return;
        }
        while let Some(msg) = self.pending.remove(&self.next) {
            self.apply(&msg, on_seq);
            self.next = self.next.saturating_add(1);
            if self.need_snapshot {
                return;
            }
        }
        // Anything below `next` is a duplicate now.
        while let Some(e) = self.pending.first_entry() {
            if *e.key() >= self.next {
                break;
            }
            e.remove();
        }
    }

    /// Time-driven part: (re)sends a re-request or escalates to a snapshot.
    pub fn poll(&mut self, now: Instant) -> Action {
        if self.need_snapshot {
            return Action::Snapshot;
        }
        if self.next > self.high {
            self.inflight = None;
            return Action::None;
        }
        // Saturating: sequence numbers come off the wire and may be anything.
        let gap_end = self.pending.keys().next().copied().unwrap_or(self.high.saturating_add(1));
        let missing = gap_end.saturating_sub(self.next);
        if missing == 0 {
            return Action::None;
        }
        if missing > self.cfg.max_rerequest_gap {
            self.need_snapshot = true;
            return Action::Snapshot;
        }
        let Some(session) = self.session else {
            return Action::None;
        };
        let attempts = match self.inflight {
            Some((from, at, n)) if from == self.next => {
                if now.duration_since(at) < self.cfg.rerequest_timeout {
                    return Action::None;
                }
                if n >= self.cfg.max_retries {
                    self.need_snapshot = true;
                    return Action::Snapshot;
                }
                n + 1
            }
            _ => {
                self.stats.gaps += 1;
                1
            }
        };
        self.inflight = Some((self.next, now, attempts));
        self.stats.rerequests += 1;
        let count = missing.min(self.cfg.request_count as u64) as u16;
        Action::Rerequest(Request { session, seq: self.next, count })
    }

    /// Loads a snapshot (2-byte-length-prefixed message blocks ending with
    /// 'e'), then applies held live messages from the snapshot's sequence on.
    pub fn load_snapshot(&mut self, bytes: &[u8], on_seq: &mut dyn FnMut(Seq, &FeedBook)) -> Result<(), HandlerError> {
        let mut book = FeedBook::new();
        let mut at = 0usize;
        let mut end = None;
        while at + 2 <= bytes.len() {
            let len = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
            let msg = bytes.get(at + 2..at + 2 + len).ok_or(HandlerError::SnapshotIncomplete)?;
            at += 2 + len;
            if let Applied::SnapshotEnd { feed_seq, engine_seq, .. } = book.apply(&Message::decode(msg)?)? {
                end = Some((feed_seq, engine_seq));
                break;
            }
        }
        let (feed_seq, engine_seq) = end.ok_or(HandlerError::SnapshotIncomplete)?;
        self.stats.snapshots += 1;
        self.book = book;
        self.need_snapshot = false;
        self.inflight = None;
        // Live messages before N are in the snapshot; any applied past N were
        // applied to the discarded book, so resume exactly at N.
        self.next = feed_seq;
        self.high = self.high.max(feed_seq.saturating_sub(1));
        on_seq(engine_seq, &self.book);
        while let Some(e) = self.pending.first_entry() {
            if *e.key() >= self.next {
                break;
            }
            e.remove();
        }
        self.drain(on_seq);
        Ok(())
    }
}

/// Reads one snapshot from the TCP service (bounded in size and time).
pub fn fetch_snapshot(addr: SocketAddr, timeout: Duration, max_bytes: usize) -> Result<Vec<u8>, HandlerError> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > max_bytes {
            return Err(HandlerError::SnapshotTooLarge(out.len() + n));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[derive(Clone, Debug)]
pub struct FeedClientConfig {
    /// Address to bind: the multicast group's port (or unicast port).
    pub bind: SocketAddr,
    /// Multicast group to join, and the interface to join it on.
    pub group: Option<(Ipv4Addr, Ipv4Addr)>,
    pub rerequest: Option<SocketAddr>,
    pub snapshot: Option<SocketAddr>,
    pub handler: HandlerConfig,
}

/// The I/O side of the feed handler: a UDP socket (joined to the group, or
/// unicast), a re-request socket and the snapshot client.
pub struct FeedClient {
    pub core: HandlerCore,
    sock: UdpSocket,
    req: UdpSocket,
    cfg: FeedClientConfig,
    buf: Vec<u8>,
    last_snapshot_attempt: Option<Instant>,
}

impl FeedClient {
    pub fn new(cfg: FeedClientConfig) -> Result<Self, HandlerError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        // Several handlers (A and B, or tests) may listen on one group port.
        s.set_reuse_address(true)?;
        s.set_recv_buffer_size(8 << 20)?;
        s.bind(&cfg.bind.into())?;
        if let Some((group, iface)) = cfg.group {
            s.join_multicast_v4(&group, &iface)?;
        }
        let sock: UdpSocket = s.into();
        let req = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        req.set_nonblocking(true)?;
        Ok(FeedClient {
            core: HandlerCore::new(cfg.handler),
            sock,
            req,
            cfg,
            buf: vec![0u8; 65_536],
            last_snapshot_attempt: None,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Receives and handles datagrams (feed and re-request replies) for up
    /// to `wait`, performing recovery actions as they come up.
    pub fn run_for(&mut self, wait: Duration, on_seq: &mut dyn FnMut(Seq, &FeedBook)) -> Result<(), HandlerError> {
        let deadline = Instant::now() + wait;
        self.sock.set_read_timeout(Some(Duration::from_millis(5)))?;
        while Instant::now() < deadline {
            let mut action = Action::None;
            match self.sock.recv(&mut self.buf) {
                Ok(n) => action = self.core.on_packet(&self.buf[..n], Instant::now(), on_seq),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
            // Replies to re-requests come back on the request socket.
            loop {
                match self.req.recv(&mut self.buf) {
                    Ok(n) => action = self.core.on_packet(&self.buf[..n], Instant::now(), on_seq),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
            if action == Action::None {
                action = self.core.poll(Instant::now());
            }
            self.act(action, on_seq)?;
            if self.core.end_of_session && self.core.in_sync() {
                break;
            }
        }
        Ok(())
    }

    fn act(&mut self, action: Action, on_seq: &mut dyn FnMut(Seq, &FeedBook)) -> Result<(), HandlerError> {
        match action {
            Action::None => {}
            Action::Rerequest(r) => match self.cfg.rerequest {
                Some(addr) => {
                    if let Err(e) = self.req.send_to(&r.encode(), addr) {
                        tracing::warn!(error = %e, "re-request send failed");
                    }
                }
                None => return self.act(Action::Snapshot, on_seq),
            },
            Action::Snapshot => {
                // Failed fetches are retried at most twice a second, not on every datagram.
                let now = Instant::now();
                if self.last_snapshot_attempt.is_some_and(|t| now.duration_since(t) < Duration::from_millis(500)) {
                    return Ok(());
                }
                self.last_snapshot_attempt = Some(now);
                if let Some(addr) = self.cfg.snapshot {
                    match fetch_snapshot(addr, Duration::from_secs(5), 1 << 30) {
                        Ok(bytes) => {
                            self.core.load_snapshot(&bytes, on_seq)?;
                            self.last_snapshot_attempt = None;
                        }
                        Err(e) => tracing::warn!(error = %e, "snapshot fetch failed; will retry"),
                    }
                }
            }
        }
        Ok(())
    }
}
