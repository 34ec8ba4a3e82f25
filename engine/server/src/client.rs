//! Blocking clients of the engine server's protocol (for gateways, tests, tools and benchmarks).

use std::io::{self, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::time::Duration;

use castle_engine::codec::encode_command;
use castle_engine::{Command, EventKind, StateHash};

use crate::proto::{self, AckStatus, Body, Role, ServerFrame};

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The server's answer to Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    pub primary: bool,
    pub epoch: u64,
    pub durable_seq: u64,
    /// Gateways: the highest request id of this gateway ever applied (0: none) and its seq.
    pub last_request: u64,
    pub last_request_seq: u64,
}

/// What a stream connection delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Events { seq: u64, ts: u64, events: Vec<EventKind> },
    Record { seq: u64, ts: u64, payload: Vec<u8> },
    Ack { request: u64, seq: u64, status: AckStatus },
    Goodbye { reason: u8, resume_from: u64, text: String },
}

pub struct Connection {
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
    buf: Vec<u8>,
    pub welcome: Welcome,
}

impl Connection {
    /// Connects and says Hello.
    pub fn connect(addr: &str, role: Role, gateway: u32, from_seq: u64) -> io::Result<Connection> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let mut c = Connection {
            r: BufReader::with_capacity(1 << 16, s.try_clone()?),
            w: BufWriter::with_capacity(1 << 16, s),
            buf: Vec::new(),
            welcome: Welcome { primary: false, epoch: 0, durable_seq: 0, last_request: 0, last_request_seq: 0 },
        };
        proto::write_frame(&mut c.w, proto::HELLO, &proto::hello(role, gateway, from_seq))?;
        c.w.flush()?;
        if role != Role::Control {
            let ty = proto::read_frame(&mut c.r, &mut c.buf, proto::MAX_SERVER_FRAME)?.ok_or_else(|| bad("closed"))?;
            let mut b = Body(&c.buf);
            if ty != proto::WELCOME {
                return Err(bad(&format!("expected Welcome, got frame {ty:#x}")));
            }
            c.welcome = Welcome {
                primary: b.u8().ok_or_else(|| bad("short"))? == proto::SERVER_PRIMARY,
                epoch: b.u64().ok_or_else(|| bad("short"))?,
                durable_seq: b.u64().ok_or_else(|| bad("short"))?,
                last_request: b.u64().ok_or_else(|| bad("short"))?,
                last_request_seq: b.u64().ok_or_else(|| bad("short"))?,
            };
        }
        Ok(c)
    }

    /// The underlying socket (for socket options).
    pub fn socket(&self) -> &TcpStream {
        self.r.get_ref()
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.r.get_ref().set_read_timeout(t)
    }

    /// Queues a Submit (call [`flush`](Self::flush) to send).
    pub fn submit(&mut self, request: u64, cmd: &Command) -> io::Result<()> {
        let mut body = Vec::with_capacity(96);
        body.extend_from_slice(&request.to_le_bytes());
        encode_command(cmd, &mut body);
        proto::write_frame(&mut self.w, proto::SUBMIT, &body)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Next frame from the server; `Ok(None)` when the connection closed.
    pub fn recv(&mut self) -> io::Result<Option<Delivery>> {
        let Some(ty) = proto::read_frame(&mut self.r, &mut self.buf, proto::MAX_SERVER_FRAME)? else { return Ok(None) };
        Ok(Some(match proto::parse_server_frame(ty, &self.buf).map_err(|e| bad(&e.to_string()))? {
            ServerFrame::Events { seq, ts, events, .. } => Delivery::Events { seq, ts, events },
            ServerFrame::Record { seq, ts, payload } => Delivery::Record { seq, ts, payload },
            ServerFrame::Ack { request, seq, status } => Delivery::Ack { request, seq, status },
            ServerFrame::Goodbye { reason, resume_from, text } => Delivery::Goodbye { reason, resume_from, text },
            _ => return Err(bad(&format!("unexpected frame type {ty:#x}"))),
        }))
    }

    fn control(&mut self, ty: u8) -> io::Result<(bool, u64, u64, StateHash)> {
        proto::write_frame(&mut self.w, ty, &[])?;
        self.w.flush()?;
        let t = proto::read_frame(&mut self.r, &mut self.buf, proto::MAX_SERVER_FRAME)?.ok_or_else(|| bad("closed"))?;
        if t != proto::STATUS_REPLY {
            return Err(bad(&format!("expected StatusReply, got {t:#x}")));
        }
        let mut b = Body(&self.buf);
        let primary = b.u8().ok_or_else(|| bad("short"))? == proto::SERVER_PRIMARY;
        let epoch = b.u64().ok_or_else(|| bad("short"))?;
        let seq = b.u64().ok_or_else(|| bad("short"))?;
        let hash: StateHash = b.take(32).and_then(|h| h.try_into().ok()).ok_or_else(|| bad("short"))?;
        Ok((primary, epoch, seq, hash))
    }
}

/// Status of a server: (primary, epoch, seq, state hash), everything applied made durable first.
pub fn status(addr: &str) -> io::Result<(bool, u64, u64, StateHash)> {
    Connection::connect(addr, Role::Control, 0, 0)?.control(proto::STATUS)
}

/// Promotes a standby; returns its status afterwards.
pub fn promote(addr: &str) -> io::Result<(bool, u64, u64, StateHash)> {
    Connection::connect(addr, Role::Control, 0, 0)?.control(proto::PROMOTE)
}
