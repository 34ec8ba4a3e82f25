//! The engine server's TCP framing. Compact, little-endian, one frame per message:
//!
//! ```text
//! frame = len u32 | type u8 | body (len - 1 bytes)
//! ```
//!
//! `len` counts the type byte and the body. The server refuses client frames longer than
//! [`MAX_CLIENT_FRAME`] (it closes the connection); server frames are at most
//! [`MAX_SERVER_FRAME`]. Commands and events inside frames use the engine codec
//! (`castle_engine::codec`, version byte included for commands, bare event kinds in `Events`).
//!
//! # Client to server
//!
//! | type | name | body |
//! | --- | --- | --- |
//! | 0x01 | Hello | role u8 (1 gateway, 2 subscriber, 3 standby, 4 control), gateway id u32, from seq u64, [protocol version u8] |
//! | 0x02 | Submit | request id u64, command (codec bytes, to the end of the frame) |
//! | 0x03 | Status | (empty) |
//! | 0x04 | Promote | (empty) |
//! | 0x05 | ListInstruments | (empty; control connections, protocol version 2) |
//!
//! **Versions.** A Hello without the version byte is version 1 (the original protocol). A client
//! that says version 2 ([`PROTOCOL_VERSION`]) gets `Events2` frames instead of `Events` (the
//! command's origin included: a gateway in another process matches events to its own requests
//! by it) and may ask for the instrument list. The server never sends a version-2 frame to a
//! version-1 client, so old clients keep working unchanged.
//!
//! The first frame must be Hello. A **gateway** then sends Submits; request ids must increase
//! strictly per gateway id (across reconnects). A **subscriber** receives `Events` for every
//! sequence number after `from seq`; a **standby** receives `Record`s (the journal records) after
//! `from seq`. A **control** client sends Status or Promote.
//!
//! # Server to client
//!
//! | type | name | body |
//! | --- | --- | --- |
//! | 0x81 | Welcome | server role u8 (1 primary, 2 standby), epoch u64, durable seq u64, last request id u64, its seq u64 |
//! | 0x82 | Ack | request id u64, seq u64, status u8 (see [`AckStatus`]) |
//! | 0x83 | Events | seq u64, ts u64, count u32, count x event kind (codec) |
//! | 0x86 | Events2 | seq u64, ts u64, origin gateway u32 (0: the engine's own command), origin request id u64, count u32, count x event kind (codec) |
//! | 0x87 | Instruments | count u32, count x (length u32, `AddInstrument` command, codec bytes) |
//! | 0x84 | Record | seq u64, ts u64, journal payload (see [`crate::payload`]) |
//! | 0x85 | StatusReply | server role u8, epoch u64, seq u64, state hash [32] |
//! | 0x8F | Goodbye | reason u8 (see [`GoodbyeReason`]), resume from seq u64, UTF-8 text |
//!
//! `Welcome` answers Hello; for a gateway, "last request id" is the highest request id of that
//! gateway ever applied (0: none) and "its seq" the sequence number it got, so a reconnecting
//! gateway knows which of its requests were applied and resends only the later ones (a resent
//! applied id is answered `Duplicate`, never applied twice). An `Ack` with status `Applied` is
//! sent only once the command is durable in the journal; `Events` and `Record`s likewise only
//! carry durable sequence numbers, and every sequence number gets exactly one `Events` frame
//! (possibly with zero events), so a subscriber sees gaps never. Before closing a connection
//! for a protocol error, a slow consumer or a shutdown the server sends `Goodbye`; a subscriber
//! resumes with Hello `from seq` = the last sequence number it processed.

use std::io::{self, Read, Write};

/// Longest frame a client may send (type byte + body).
pub const MAX_CLIENT_FRAME: usize = 4_096;
/// Longest frame the server sends (a mass cancel on a deep book makes big `Events` frames).
pub const MAX_SERVER_FRAME: usize = 64 << 20;

pub const HELLO: u8 = 0x01;
pub const SUBMIT: u8 = 0x02;
pub const STATUS: u8 = 0x03;
pub const PROMOTE: u8 = 0x04;
pub const LIST_INSTRUMENTS: u8 = 0x05;
pub const WELCOME: u8 = 0x81;
pub const ACK: u8 = 0x82;
pub const EVENTS: u8 = 0x83;
pub const RECORD: u8 = 0x84;
pub const STATUS_REPLY: u8 = 0x85;
pub const EVENTS2: u8 = 0x86;
pub const INSTRUMENTS: u8 = 0x87;
pub const GOODBYE: u8 = 0x8F;

/// The newest protocol version (see the module documentation); a Hello without a version is 1.
pub const PROTOCOL_VERSION: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    Gateway = 1,
    Subscriber = 2,
    Standby = 3,
    Control = 4,
}

impl Role {
    pub fn from_u8(v: u8) -> Option<Role> {
        Some(match v {
            1 => Role::Gateway,
            2 => Role::Subscriber,
            3 => Role::Standby,
            4 => Role::Control,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AckStatus {
    /// Journaled (durable) and applied at `seq`.
    Applied = 0,
    /// This gateway's request id was applied before (or is not above its last one): not applied again.
    Duplicate = 1,
    /// The command did not decode; nothing was journaled.
    Invalid = 2,
    /// This server is a standby: submit to the primary.
    NotPrimary = 3,
    /// The gateway index is full (too many distinct gateway ids).
    TooManyGateways = 4,
}

impl AckStatus {
    pub fn from_u8(v: u8) -> Option<AckStatus> {
        Some(match v {
            0 => AckStatus::Applied,
            1 => AckStatus::Duplicate,
            2 => AckStatus::Invalid,
            3 => AckStatus::NotPrimary,
            4 => AckStatus::TooManyGateways,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GoodbyeReason {
    ProtocolError = 1,
    /// The consumer fell further behind than the event ring holds: resume from the given seq.
    SlowConsumer = 2,
    ShuttingDown = 3,
    /// The requested sequence range is not available (journal pruned, or beyond the end).
    Unavailable = 4,
    /// Fencing: the peer's epoch is older than ours.
    Fenced = 5,
}

/// Server role in Welcome / StatusReply.
pub const SERVER_PRIMARY: u8 = 1;
pub const SERVER_STANDBY: u8 = 2;

/// Appends a frame header for a body of `body_len` bytes.
pub fn frame_header(out: &mut Vec<u8>, ty: u8, body_len: usize) {
    out.extend_from_slice(&((body_len + 1) as u32).to_le_bytes());
    out.push(ty);
}

/// Writes a whole frame.
pub fn write_frame(w: &mut impl Write, ty: u8, body: &[u8]) -> io::Result<()> {
    let mut h = Vec::with_capacity(5);
    frame_header(&mut h, ty, body.len());
    w.write_all(&h)?;
    w.write_all(body)
}

/// Reads one frame into `buf` (type, body). `Ok(None)` on a clean end of stream before a frame.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<u8>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame length {len} outside 1..={max}")));
    }
    let mut ty = [0u8; 1];
    r.read_exact(&mut ty)?;
    buf.clear();
    buf.resize(len - 1, 0);
    r.read_exact(buf)?;
    Ok(Some(ty[0]))
}

/// A version-1 Hello (no version byte).
pub fn hello(role: Role, gateway: u32, from_seq: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(14);
    b.push(role as u8);
    b.extend_from_slice(&gateway.to_le_bytes());
    b.extend_from_slice(&from_seq.to_le_bytes());
    b
}

/// A Hello saying protocol `version`.
pub fn hello_v(role: Role, gateway: u32, from_seq: u64, version: u8) -> Vec<u8> {
    let mut b = hello(role, gateway, from_seq);
    b.push(version);
    b
}

/// A frame a client sent, decoded (sans-IO: the server's connection threads
/// read frames with [`read_frame`] and hand the bytes here; the fuzz target
/// `engine/server/fuzz` drives the same function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Hello {
        role: Role,
        gateway: u32,
        from_seq: u64,
        /// 1 when the Hello carries no version byte.
        version: u8,
    },
    /// `command` is `Err` when the command bytes do not decode: the server
    /// answers that request `Invalid` and keeps the connection.
    Submit {
        request: u64,
        command: Result<castle_engine::Command, castle_engine::codec::CodecError>,
    },
    Status,
    Promote,
    ListInstruments,
}

/// Why a client frame was refused (the server says Goodbye and closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown client frame type {0:#04x}")]
    UnknownType(u8),
    #[error("frame {0:#04x} too short")]
    Short(u8),
    #[error("unknown role {0}")]
    Role(u8),
    #[error("{0} bytes after the Hello fields")]
    Trailing(usize),
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("frame length {0} outside the limit")]
    Length(usize),
    #[error("frame {0:#04x}: bad {1}")]
    Body(u8, &'static str),
}

/// Decodes one client frame body of type `ty`.
pub fn parse_client_frame(ty: u8, body: &[u8]) -> Result<ClientFrame, FrameError> {
    let mut b = Body(body);
    match ty {
        HELLO => {
            let role = b.u8().ok_or(FrameError::Short(ty))?;
            let role = Role::from_u8(role).ok_or(FrameError::Role(role))?;
            let (gateway, from_seq) = (b.u32().ok_or(FrameError::Short(ty))?, b.u64().ok_or(FrameError::Short(ty))?);
            let version = match b.rest() {
                [] => 1,
                [v @ 1..=PROTOCOL_VERSION] => *v,
                [v] => return Err(FrameError::Version(*v)),
                more => return Err(FrameError::Trailing(more.len() - 1)),
            };
            Ok(ClientFrame::Hello { role, gateway, from_seq, version })
        }
        SUBMIT => {
            let request = b.u64().ok_or(FrameError::Short(ty))?;
            Ok(ClientFrame::Submit { request, command: castle_engine::codec::decode_command(b.rest()) })
        }
        STATUS => Ok(ClientFrame::Status),
        PROMOTE => Ok(ClientFrame::Promote),
        LIST_INSTRUMENTS => Ok(ClientFrame::ListInstruments),
        other => Err(FrameError::UnknownType(other)),
    }
}

/// Reads `data` as a client would send it to the server: frames until the
/// end, each decoded with [`parse_client_frame`]. Returns how many frames
/// decoded before the first refusal (or the end). Never panics and never
/// allocates more than [`MAX_CLIENT_FRAME`] per frame whatever the length
/// prefix says: this is the fuzz and property-test entry point.
pub fn check_client_bytes(data: &[u8]) -> usize {
    let mut r = data;
    let mut buf = Vec::new();
    let mut n = 0;
    while let Ok(Some(ty)) = read_frame(&mut r, &mut buf, MAX_CLIENT_FRAME) {
        assert!(buf.len() < MAX_CLIENT_FRAME, "frame body beyond the limit");
        match parse_client_frame(ty, &buf) {
            Ok(ClientFrame::Submit { request, command: Ok(cmd) }) => {
                // What decodes re-encodes to a frame that decodes the same.
                let mut again = request.to_le_bytes().to_vec();
                castle_engine::codec::encode_command(&cmd, &mut again);
                let back = parse_client_frame(SUBMIT, &again);
                assert_eq!(back, Ok(ClientFrame::Submit { request, command: Ok(cmd) }));
            }
            Ok(_) => {}
            Err(_) => break,
        }
        n += 1;
    }
    n
}

/// Incremental frame splitter (sans-IO): bytes go in as they arrive from any transport (a
/// blocking read with a timeout, an io_uring completion), whole frames come out. Holds at most
/// one frame of `max` bytes plus what the caller appended after it.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    at: usize,
    max: usize,
}

impl FrameDecoder {
    pub fn new(max: usize) -> Self {
        FrameDecoder { buf: Vec::new(), at: 0, max }
    }

    /// Appends received bytes (dropping the frames already returned first).
    pub fn extend(&mut self, data: &[u8]) {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.at
    }

    /// The next whole frame (type, body), `Ok(None)` when more bytes are needed, `Err` when the
    /// length prefix is outside `1..=max` (the stream cannot be resynchronised: close it).
    pub fn next_frame(&mut self) -> Result<Option<(u8, &[u8])>, FrameError> {
        let b = &self.buf[self.at..];
        let Some(len) = b.get(..4) else { return Ok(None) };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len == 0 || len > self.max {
            return Err(FrameError::Length(len));
        }
        if b.len() < 4 + len {
            return Ok(None);
        }
        let start = self.at;
        self.at += 4 + len;
        Ok(Some((self.buf[start + 4], &self.buf[start + 5..start + 4 + len])))
    }
}

/// A frame the server sent, decoded (what [`crate::client`] and [`crate::remote`] read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    Welcome {
        primary: bool,
        epoch: u64,
        durable_seq: u64,
        last_request: u64,
        last_request_seq: u64,
    },
    Ack {
        request: u64,
        seq: u64,
        status: AckStatus,
    },
    /// `Events` (origin `None`) or `Events2` (origin `None` for the engine's own commands).
    Events {
        seq: u64,
        ts: u64,
        origin: Option<castle_link::Origin>,
        events: Vec<castle_engine::EventKind>,
    },
    Record {
        seq: u64,
        ts: u64,
        payload: Vec<u8>,
    },
    StatusReply {
        primary: bool,
        epoch: u64,
        seq: u64,
        hash: castle_engine::StateHash,
    },
    Instruments(Vec<castle_engine::InstrumentSpec>),
    Goodbye {
        reason: u8,
        resume_from: u64,
        text: String,
    },
}

/// Decodes one server frame body of type `ty`. The bytes come from the network: every length is
/// checked against what is there before anything is allocated for it.
pub fn parse_server_frame(ty: u8, body: &[u8]) -> Result<ServerFrame, FrameError> {
    let mut b = Body(body);
    let short = FrameError::Short(ty);
    Ok(match ty {
        WELCOME => ServerFrame::Welcome {
            primary: b.u8().ok_or(short)? == SERVER_PRIMARY,
            epoch: b.u64().ok_or(short)?,
            durable_seq: b.u64().ok_or(short)?,
            last_request: b.u64().ok_or(short)?,
            last_request_seq: b.u64().ok_or(short)?,
        },
        ACK => ServerFrame::Ack {
            request: b.u64().ok_or(short)?,
            seq: b.u64().ok_or(short)?,
            status: b.u8().and_then(AckStatus::from_u8).ok_or(short)?,
        },
        EVENTS | EVENTS2 => {
            let (seq, ts) = (b.u64().ok_or(short)?, b.u64().ok_or(short)?);
            let origin = if ty == EVENTS2 {
                let (gateway, request) = (b.u32().ok_or(short)?, b.u64().ok_or(short)?);
                (gateway != 0).then_some(castle_link::Origin { gateway, request })
            } else {
                None
            };
            let n = b.u32().ok_or(short)? as usize;
            let mut r = castle_engine::codec::Reader::new(b.rest());
            // Every event takes at least one byte: a count beyond the body is a lie.
            let mut events = Vec::with_capacity(n.min(body.len()));
            for _ in 0..n {
                events.push(r.event_kind().map_err(|_| FrameError::Body(ty, "event"))?);
            }
            r.finish().map_err(|_| FrameError::Body(ty, "bytes after the events"))?;
            ServerFrame::Events { seq, ts, origin, events }
        }
        RECORD => {
            ServerFrame::Record { seq: b.u64().ok_or(short)?, ts: b.u64().ok_or(short)?, payload: b.rest().to_vec() }
        }
        STATUS_REPLY => ServerFrame::StatusReply {
            primary: b.u8().ok_or(short)? == SERVER_PRIMARY,
            epoch: b.u64().ok_or(short)?,
            seq: b.u64().ok_or(short)?,
            hash: b.take(32).and_then(|h| h.try_into().ok()).ok_or(short)?,
        },
        INSTRUMENTS => {
            let n = b.u32().ok_or(short)? as usize;
            let mut specs = Vec::with_capacity(n.min(body.len() / 4));
            for _ in 0..n {
                let len = b.u32().ok_or(short)? as usize;
                match castle_engine::codec::decode_command(b.take(len).ok_or(short)?) {
                    Ok(castle_engine::Command::AddInstrument(spec)) => specs.push(spec),
                    _ => return Err(FrameError::Body(ty, "instrument")),
                }
            }
            if !b.rest().is_empty() {
                return Err(FrameError::Body(ty, "bytes after the last instrument"));
            }
            ServerFrame::Instruments(specs)
        }
        GOODBYE => ServerFrame::Goodbye {
            reason: b.u8().ok_or(short)?,
            resume_from: b.u64().ok_or(short)?,
            text: String::from_utf8_lossy(b.rest()).into_owned(),
        },
        other => return Err(FrameError::UnknownType(other)),
    })
}

/// Appends an `Events2` frame (the command's origin included) to `f`.
pub fn put_events2<'a>(
    f: &mut Vec<u8>,
    seq: u64,
    ts: u64,
    origin: Option<castle_link::Origin>,
    events: impl ExactSizeIterator<Item = &'a castle_engine::EventKind>,
) {
    let at = f.len();
    f.extend_from_slice(&[0; 5]);
    f.extend_from_slice(&seq.to_le_bytes());
    f.extend_from_slice(&ts.to_le_bytes());
    let o = origin.unwrap_or(castle_link::Origin { gateway: 0, request: 0 });
    f.extend_from_slice(&o.gateway.to_le_bytes());
    f.extend_from_slice(&o.request.to_le_bytes());
    f.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        castle_engine::codec::put_event_kind(f, e);
    }
    let len = (f.len() - at - 4) as u32;
    f[at..at + 4].copy_from_slice(&len.to_le_bytes());
    f[at + 4] = EVENTS2;
}

/// Appends an `Instruments` frame listing `specs` to `f`.
pub fn put_instruments(f: &mut Vec<u8>, specs: &[castle_engine::InstrumentSpec]) {
    let at = f.len();
    f.extend_from_slice(&[0; 5]);
    f.extend_from_slice(&(specs.len() as u32).to_le_bytes());
    let mut one = Vec::with_capacity(128);
    for s in specs {
        one.clear();
        castle_engine::codec::encode_command(&castle_engine::Command::AddInstrument(*s), &mut one);
        f.extend_from_slice(&(one.len() as u32).to_le_bytes());
        f.extend_from_slice(&one);
    }
    let len = (f.len() - at - 4) as u32;
    f[at..at + 4].copy_from_slice(&len.to_le_bytes());
    f[at + 4] = INSTRUMENTS;
}

/// Reads `data` as a client reads the server's bytes, split into pieces of `step` bytes the way
/// a socket may deliver them: frames through [`FrameDecoder`], each decoded with
/// [`parse_server_frame`]; `Events2` frames re-encode to the same bytes. Returns how many frames
/// decoded before the first refusal. Never panics: the fuzz and property-test entry point.
pub fn check_server_bytes(data: &[u8], step: usize) -> usize {
    let mut d = FrameDecoder::new(MAX_CLIENT_FRAME * 16);
    let mut n = 0;
    for piece in data.chunks(step.max(1)) {
        d.extend(piece);
        loop {
            let (ty, body) = match d.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return n,
            };
            match parse_server_frame(ty, body) {
                Ok(ServerFrame::Events { seq, ts, origin, events }) if ty == EVENTS2 => {
                    let mut again = Vec::new();
                    put_events2(&mut again, seq, ts, origin, events.iter());
                    let back = parse_server_frame(EVENTS2, &again[5..]);
                    assert_eq!(back, Ok(ServerFrame::Events { seq, ts, origin, events }), "Events2 round trip");
                }
                Ok(_) => {}
                Err(_) => return n,
            }
            n += 1;
        }
    }
    n
}

/// Little-endian field reader for frame bodies; `None` when short.
pub struct Body<'a>(pub &'a [u8]);

impl<'a> Body<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}
