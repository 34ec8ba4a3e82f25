//! MoldUDP64 framing: downstream packets (header + length-prefixed message
//! blocks) and request packets for retransmission.
//!
//! Parsing validates the whole packet before handing out anything, so a
//! consumer iterating messages never meets a truncated block halfway
//! through a packet it has already started to apply.

pub const SESSION_LEN: usize = 10;
pub const HEADER_LEN: usize = 20;
pub const REQUEST_LEN: usize = 20;
/// Message count of an End of Session packet.
pub const END_OF_SESSION: u16 = 0xFFFF;
/// Default largest datagram: fits a 1500-byte Ethernet MTU with IP and UDP headers.
pub const DEFAULT_MAX_PACKET: usize = 1_400;

pub type Session = [u8; SESSION_LEN];

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoldError {
    #[error("packet of {0} bytes is shorter than the 20-byte header")]
    Short(usize),
    #[error("message block {index} runs past the end of the packet")]
    Truncated { index: u16 },
    #[error("{0} bytes after the last message block")]
    TrailingBytes(usize),
    #[error("request packet must be 20 bytes, got {0}")]
    BadRequestLength(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    pub session: Session,
    /// Sequence number of the first message (for a heartbeat: of the next message).
    pub seq: u64,
    pub count: u16,
}

impl PacketHeader {
    pub fn is_heartbeat(&self) -> bool {
        self.count == 0
    }
    pub fn is_end_of_session(&self) -> bool {
        self.count == END_OF_SESSION
    }
    /// Messages actually carried (0 for heartbeats and End of Session).
    pub fn message_count(&self) -> u16 {
        if self.is_end_of_session() {
            0
        } else {
            self.count
        }
    }

    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out[..10].copy_from_slice(&self.session);
        out[10..18].copy_from_slice(&self.seq.to_be_bytes());
        out[18..20].copy_from_slice(&self.count.to_be_bytes());
    }

    fn parse(b: &[u8]) -> Result<Self, MoldError> {
        if b.len() < HEADER_LEN {
            return Err(MoldError::Short(b.len()));
        }
        let mut session = [0u8; SESSION_LEN];
        session.copy_from_slice(&b[..10]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[10..18]);
        Ok(PacketHeader { session, seq: u64::from_be_bytes(seq), count: u16::from_be_bytes([b[18], b[19]]) })
    }
}

/// A validated downstream packet borrowing the datagram.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub header: PacketHeader,
    body: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Self, MoldError> {
        let header = PacketHeader::parse(b)?;
        let body = &b[HEADER_LEN..];
        let mut at = 0usize;
        for index in 0..header.message_count() {
            let len = match body.get(at..at + 2) {
                Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
                None => return Err(MoldError::Truncated { index }),
            };
            at += 2;
            if body.len() - at < len {
                return Err(MoldError::Truncated { index });
            }
            at += len;
        }
        if at != body.len() {
            return Err(MoldError::TrailingBytes(body.len() - at));
        }
        Ok(Packet { header, body })
    }

    /// The message blocks, each without its length prefix, with their sequence numbers.
    pub fn messages(&self) -> Messages<'a> {
        Messages { body: self.body, seq: self.header.seq, left: self.header.message_count() }
    }
}

pub struct Messages<'a> {
    body: &'a [u8],
    seq: u64,
    left: u16,
}

impl<'a> Iterator for Messages<'a> {
    type Item = (u64, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // Bounds were checked by `Packet::parse`; `get` keeps this panic-free regardless.
        let l = self.body.get(..2)?;
        let len = u16::from_be_bytes([l[0], l[1]]) as usize;
        let msg = self.body.get(2..2 + len)?;
        self.body = &self.body[2 + len..];
        self.left -= 1;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        Some((seq, msg))
    }
}

/// A retransmission request: "send `count` messages from `seq`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub session: Session,
    pub seq: u64,
    pub count: u16,
}

impl Request {
    pub fn parse(b: &[u8]) -> Result<Self, MoldError> {
        if b.len() != REQUEST_LEN {
            return Err(MoldError::BadRequestLength(b.len()));
        }
        let h = PacketHeader::parse(b)?;
        Ok(Request { session: h.session, seq: h.seq, count: h.count })
    }

    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        PacketHeader { session: self.session, seq: self.seq, count: self.count }.encode(&mut b);
        b
    }
}

/// Builds one downstream packet in a reusable buffer.
#[derive(Debug)]
pub struct PacketBuilder {
    buf: Vec<u8>,
    max: usize,
    session: Session,
    seq: u64,
    count: u16,
}

impl PacketBuilder {
    pub fn new(session: Session, max_packet: usize) -> Self {
        let mut buf = Vec::with_capacity(max_packet);
        buf.resize(HEADER_LEN, 0);
        PacketBuilder { buf, max: max_packet.max(HEADER_LEN + 2 + crate::itch::len::MAX), session, seq: 1, count: 0 }
    }

    /// Starts a packet whose first message will have sequence `seq`.
    pub fn start(&mut self, seq: u64) {
        self.buf.truncate(HEADER_LEN);
        self.seq = seq;
        self.count = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    /// Sequence number the next message pushed would get.
    pub fn next_seq(&self) -> u64 {
        self.seq + self.count as u64
    }

    /// Appends a message block; false when the packet is full (start a new one).
    pub fn push(&mut self, msg: &[u8]) -> bool {
        if self.buf.len() + 2 + msg.len() > self.max
            || self.count >= END_OF_SESSION - 1
            || msg.len() > u16::MAX as usize
        {
            return false;
        }
        self.buf.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(msg);
        self.count += 1;
        true
    }

    /// The finished datagram.
    pub fn finish(&mut self) -> &[u8] {
        let mut h = [0u8; HEADER_LEN];
        PacketHeader { session: self.session, seq: self.seq, count: self.count }.encode(&mut h);
        self.buf[..HEADER_LEN].copy_from_slice(&h);
        &self.buf
    }
}

/// A message-less packet: heartbeat (`count` 0) or End of Session (`count` 0xFFFF).
pub fn control_packet(session: Session, next_seq: u64, count: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    PacketHeader { session, seq: next_seq, count }.encode(&mut h);
    h
}

/// A session name from text: ASCII, space padded to 10 bytes.
pub fn session(name: &str) -> Session {
    crate::itch::alpha(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse() {
        let mut b = PacketBuilder::new(session("CASTLE"), 100);
        b.start(42);
        assert!(b.push(b"abc"));
        assert!(b.push(b""));
        let p = b.finish().to_vec();
        let pk = Packet::parse(&p).unwrap();
        assert_eq!(pk.header.seq, 42);
        let m: Vec<_> = pk.messages().collect();
        assert_eq!(m, vec![(42, &b"abc"[..]), (43, &b""[..])]);
        assert_eq!(Packet::parse(&p[..p.len() - 1]).unwrap_err(), MoldError::Truncated { index: 1 });
        let mut extra = p.clone();
        extra.push(0);
        assert_eq!(Packet::parse(&extra).unwrap_err(), MoldError::TrailingBytes(1));
        let hb = control_packet(session("CASTLE"), 9, 0);
        assert!(Packet::parse(&hb).unwrap().header.is_heartbeat());
        let eos = control_packet(session("CASTLE"), 9, END_OF_SESSION);
        let e = Packet::parse(&eos).unwrap();
        assert!(e.header.is_end_of_session() && e.messages().next().is_none());
        let r = Request { session: session("X"), seq: 5, count: 3 };
        assert_eq!(Request::parse(&r.encode()), Ok(r));
        assert!(Request::parse(&[0; 19]).is_err());
    }
}
