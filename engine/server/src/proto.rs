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
//! | 0x01 | Hello | role u8 (1 gateway, 2 subscriber, 3 standby, 4 control), gateway id u32, from seq u64 |
//! | 0x02 | Submit | request id u64, command (codec bytes, to the end of the frame) |
//! | 0x03 | Status | (empty) |
//! | 0x04 | Promote | (empty) |
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
pub const WELCOME: u8 = 0x81;
pub const ACK: u8 = 0x82;
pub const EVENTS: u8 = 0x83;
pub const RECORD: u8 = 0x84;
pub const STATUS_REPLY: u8 = 0x85;
pub const GOODBYE: u8 = 0x8F;

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

pub fn hello(role: Role, gateway: u32, from_seq: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(13);
    b.push(role as u8);
    b.extend_from_slice(&gateway.to_le_bytes());
    b.extend_from_slice(&from_seq.to_le_bytes());
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
    },
    /// `command` is `Err` when the command bytes do not decode: the server
    /// answers that request `Invalid` and keeps the connection.
    Submit {
        request: u64,
        command: Result<castle_engine::Command, castle_engine::codec::CodecError>,
    },
    Status,
    Promote,
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
}

/// Decodes one client frame body of type `ty`.
pub fn parse_client_frame(ty: u8, body: &[u8]) -> Result<ClientFrame, FrameError> {
    let mut b = Body(body);
    match ty {
        HELLO => {
            let role = b.u8().ok_or(FrameError::Short(ty))?;
            let role = Role::from_u8(role).ok_or(FrameError::Role(role))?;
            let (gateway, from_seq) = (b.u32().ok_or(FrameError::Short(ty))?, b.u64().ok_or(FrameError::Short(ty))?);
            match b.rest().len() {
                0 => Ok(ClientFrame::Hello { role, gateway, from_seq }),
                n => Err(FrameError::Trailing(n)),
            }
        }
        SUBMIT => {
            let request = b.u64().ok_or(FrameError::Short(ty))?;
            Ok(ClientFrame::Submit { request, command: castle_engine::codec::decode_command(b.rest()) })
        }
        STATUS => Ok(ClientFrame::Status),
        PROMOTE => Ok(ClientFrame::Promote),
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
