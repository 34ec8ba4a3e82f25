//! The engine server's TCP front end on io_uring (Linux), with the std-socket threads of
//! [`crate::server`] as the portable fallback.
//!
//! One thread (`castle-net`) owns a ring and every gateway connection:
//!
//! * **accept**: one multishot accept on the listener (re-armed if the kernel ends it);
//! * **recv**: one recv in flight per connection, all of them submitted together with the
//!   sends in one `io_uring_enter` per turn (batched); received bytes go through the sans-IO
//!   [`FrameDecoder`] and [`parse_client_frame`], and every command a recv delivered is handed to
//!   the sequencer's bounded inbox as one message. When the inbox is full the connection's next
//!   recv is not armed until the message is taken (backpressure onto that gateway only, as the
//!   threaded path's blocking send does);
//! * **send**: acknowledgements come from the sequencer through each connection's bounded
//!   [`ConnOut`] queue; the sequencer wakes the ring through an eventfd ([`Waker`]) read that is
//!   always armed, and everything queued for a connection goes out in one send.
//!
//! * **streams**: subscribers (`Events`/`Events2`) and standbys (`Record`s) are sent from the
//!   ring too. Each stream connection has a bounded send queue ([`STREAM_QUEUE`] bytes): the
//!   ring thread moves entries from the event ring into it while it has room (the sequencer wakes
//!   the ring after each release), so a consumer that does not read stops being fed. Slow
//!   consumer policy, the same as the threads': a live stream whose next seq has left the event
//!   ring is sent what is queued, then `Goodbye(SlowConsumer, resume = last seq queued)`, and
//!   closed (logged with the seq; the consumer resumes from it). A consumer that takes nothing
//!   at all for `Config::stall_timeout` ([`STALL_TIMEOUT`] by default) is cut off without the
//!   Goodbye (logged). A resume from before
//!   the ring (`subscribe_after` far back, a standby catching up) is regenerated from the journal
//!   by a catch-up thread ([`catch_up`]) into a small bounded channel the ring drains: disk reads
//!   and replay never run on the ring thread.
//!
//! Control clients (Status, Promote, ListInstruments: rare, and they wait for the sequencer)
//! are handed over after their Hello, with any bytes already received, to a thread running the
//! threaded path's code ([`server::after_hello`]).
//!
//! [`NetChoice::Auto`] uses io_uring when the kernel has it (and the opcodes used) and falls back
//! to the threads otherwise; which one runs is logged.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use castle_engine::Command;
use io_uring::{cqueue, opcode, types, IoUring, Probe};

use crate::proto::{self, parse_client_frame, AckStatus, ClientFrame, FrameDecoder, GoodbyeReason, Role};
use crate::server::{self, ConnOut, Inbound, Shared, StatusInfo};
use crate::state::GatewayMark;
use crate::ServerError;

/// Which TCP front end the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetChoice {
    /// io_uring when available, else the threads (logged).
    #[default]
    Auto,
    /// io_uring or fail to start.
    IoUring,
    /// A thread per connection on blocking std sockets (portable).
    Std,
}

/// Wakes the front end's ring from another thread (an eventfd the ring always has a read on).
/// Only while the ring thread is about to wait or waiting: a busy ring picks the acknowledgements
/// up on its next turn anyway, and each wake-up costs the sequencer a syscall and the ring a turn.
pub struct Waker {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> std::io::Result<Waker> {
        // SAFETY: eventfd returns a new descriptor or -1; ownership passes to OwnedFd.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, owned, valid descriptor.
        Ok(Waker { fd: unsafe { OwnedFd::from_raw_fd(fd) }, sleeping: AtomicBool::new(false) })
    }

    /// Called after queueing something for the ring: wakes it if it sleeps.
    pub fn wake(&self) {
        // Pairs with the fence in `Front::run`: either the ring sees what was queued, or we see
        // that it sleeps (Dekker: both sides store, fence, then load).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.signal();
        }
    }

    fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // A full counter (EAGAIN) means a wake-up is pending anyway.
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

/// Starts the front end chosen by `sh.cfg.net` on `listener`.
pub(crate) fn start(
    sh: Arc<Shared>,
    listener: TcpListener,
    inbox: SyncSender<Inbound>,
) -> Result<JoinHandle<()>, ServerError> {
    let choice = sh.cfg.net;
    let listener = if choice == NetChoice::Std {
        listener
    } else {
        // The ring is set up on the thread that will use it (a single-issuer ring belongs to
        // the thread that created it); that thread says whether it could, then runs it. The
        // listener moves to it and comes back on failure.
        let (tx, rx) = sync_channel::<Result<(), (std::io::Error, TcpListener)>>(1);
        let (sh2, inbox2) = (sh.clone(), inbox.clone());
        let handle = server::spawn("castle-net", move || match Front::new(sh2, &listener, inbox2) {
            Ok(front) => {
                let _ = tx.send(Ok(()));
                front.run();
                drop(listener); // kept open until the ring's accept is gone
            }
            Err(e) => {
                let _ = tx.send(Err((e, listener)));
            }
        });
        match rx.recv() {
            Ok(Ok(())) => {
                tracing::info!(front_end = "io_uring", "engine TCP front end");
                return Ok(handle);
            }
            Ok(Err((e, l))) => {
                let _ = handle.join();
                if choice == NetChoice::IoUring {
                    return Err(ServerError::io("io_uring front end", e));
                }
                tracing::warn!(error = %e, "io_uring unavailable: using the threaded front end");
                l
            }
            Err(_) => return Err(ServerError::Stopped("the io_uring front end thread died".into())),
        }
    };
    tracing::info!(front_end = "std threads", "engine TCP front end");
    Ok(server::spawn("castle-accept", move || server::acceptor(sh, listener, inbox)))
}

const RING_ENTRIES: u32 = 1_024;
/// Bytes one recv may deliver (a gateway's burst of Submits is read in pieces of this size).
const RECV_BUF: usize = 64 << 10;
/// Default of `Config::hello_timeout`: how long a new connection may take to send its Hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands per inbox message (as the threaded path).
const BATCH: usize = 256;
/// Bytes queued for one stream connection before the ring stops feeding it (bounded memory
/// per subscriber; the kernel's socket buffer comes on top).
pub const STREAM_QUEUE: usize = 1 << 20;
/// Default of `Config::stall_timeout`: a stream consumer that takes no bytes for this long is
/// cut off (the threads' write timeout).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Ring entries encoded per step.
const STREAM_STEP: usize = 1_024;
/// Catch-up chunks in flight from the journal reader to the ring (about 64 KiB each).
const CATCH_UP_CHUNKS: usize = 8;
/// Journal catch-ups before a stream must be live (as the threads: then it is hopeless).
const MAX_CATCH_UPS: u32 = 8;

const OP_ACCEPT: u64 = 1;
const OP_WAKE: u64 = 2;
const OP_RECV: u64 = 3;
const OP_SEND: u64 = 4;

/// Completion tag: op (8 bits) | slot (32 bits) | connection generation (24 bits), so a late
/// completion for a closed connection is never taken for the one now in its slot.
fn user_data(op: u64, slot: usize, gen: u32) -> u64 {
    debug_assert!(slot <= u32::MAX as usize && gen <= 0xff_ffff);
    op | (slot as u64) << 8 | (gen as u64) << 40
}

fn split(ud: u64) -> (u64, usize, u32) {
    (ud & 0xff, ((ud >> 8) & 0xffff_ffff) as usize, (ud >> 40) as u32)
}

enum Phase {
    /// Waiting for the Hello.
    Hello,
    /// Hello read; waiting for the sequencer's answer (what this gateway had applied).
    Welcoming {
        gateway: u32,
        reply: Receiver<(StatusInfo, GatewayMark)>,
    },
    Gateway {
        gateway: u32,
        out: Arc<ConnOut>,
        acks: Receiver<Vec<u8>>,
    },
    /// A subscriber or standby, fed from the event ring.
    Stream(Stream),
}

/// A stream connection's position.
struct Stream {
    feed: server::Feed,
    /// Next seq to queue.
    next: u64,
    /// Has been sent something from the ring (only a live stream can fall behind it).
    live: bool,
    catch_ups: u32,
    catch_up: Option<Receiver<CatchUp>>,
}

/// What a catch-up thread sends the ring.
enum CatchUp {
    Bytes(Vec<u8>),
    /// Done: the next seq to send (from the ring now), or why it failed.
    Done(Result<u64, String>),
}

struct Conn {
    stream: TcpStream,
    /// When it was accepted: a connection that has not said Hello within `Config::hello_timeout` is
    /// closed (as the threaded path's read timeout does), so silent sockets cannot pile up.
    accepted: Instant,
    gen: u32,
    phase: Phase,
    dec: FrameDecoder,
    recv_buf: Box<[u8]>,
    recv_armed: bool,
    /// Bytes being sent (owned until the send completes) and bytes queued behind them.
    sending: Vec<u8>,
    send_armed: bool,
    queued: Vec<u8>,
    /// Command messages waiting for room in the sequencer's inbox, in order (bounded: nothing
    /// is read from this connection while any wait, so at most one recv's worth).
    held: VecDeque<Inbound>,
    /// No more reading; close once the queued bytes are sent and no operation is in flight.
    closing: bool,
    /// Last time a send made progress (or was started from idle): stall detection.
    sent_at: Instant,
}

impl Conn {
    fn in_flight(&self) -> bool {
        self.recv_armed || self.send_armed
    }
}

struct Front {
    sh: Arc<Shared>,
    ring: IoUring,
    listen_fd: RawFd,
    inbox: SyncSender<Inbound>,
    waker: Arc<Waker>,
    wake_buf: Box<[u8; 8]>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_gen: u32,
    accept_armed: bool,
    wake_armed: bool,
}

impl Front {
    fn new(sh: Arc<Shared>, listener: &TcpListener, inbox: SyncSender<Inbound>) -> std::io::Result<Front> {
        // Only this thread submits and reaps: completions' task work can wait until it enters the
        // kernel to wait (fewer interruptions, completions reaped in bigger batches). Older
        // kernels (before 6.1) refuse the flags: a plain ring then.
        let ring = match IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(RING_ENTRIES) {
            Ok(r) => r,
            Err(_) => IoUring::builder().build(RING_ENTRIES)?,
        };
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::AcceptMulti::CODE, "accept"),
            (opcode::Recv::CODE, "recv"),
            (opcode::Send::CODE, "send"),
            (opcode::Read::CODE, "read"),
        ] {
            if !probe.is_supported(code) {
                return Err(std::io::Error::other(format!("io_uring without {name}")));
            }
        }
        // The ring's accept must not see EAGAIN-less blocking semantics mixed with the std
        // listener's non-blocking flag: a non-blocking listener is fine for io_uring (it polls).
        let waker = Arc::new(Waker::new()?);
        // Releases into the event ring wake this thread (its streams send from it).
        let _ = sh.net_waker.set(waker.clone());
        Ok(Front {
            sh,
            ring,
            listen_fd: listener.as_raw_fd(),
            inbox,
            waker,
            wake_buf: Box::new([0; 8]),
            conns: Vec::new(),
            free: Vec::new(),
            next_gen: 0,
            accept_armed: false,
            wake_armed: false,
        })
    }

    fn push(&mut self, e: io_uring::squeue::Entry) {
        // SAFETY: every buffer an entry points to lives in a `Conn` (or in `self`) that is kept
        // until the entry's completion arrives (see `in_flight` and `run`'s drain at exit).
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            if let Err(err) = self.ring.submit() {
                tracing::error!(error = %err, "io_uring submit");
                return;
            }
        }
    }

    fn run(mut self) {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize);
        while !self.sh.shutdown.load(Ordering::Relaxed) {
            self.arm();
            // Held commands (inbox full) and gateways waiting for their Welcome are polled:
            // wait at most a millisecond then; otherwise until something completes (the
            // shutdown flag is looked at every 100 ms).
            let polling =
                self.conns.iter().flatten().any(|c| !c.held.is_empty() || matches!(c.phase, Phase::Welcoming { .. }));
            let ts =
                if polling { types::Timespec::new().nsec(1_000_000) } else { types::Timespec::new().nsec(100_000_000) };
            let args = types::SubmitArgs::new().timespec(&ts);
            // Announce the wait, then look at the acknowledgement queues once more: anything the
            // sequencer queued before seeing the flag is picked up here instead of waking us.
            self.waker.sleeping.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            let want = if self.take_acks() | self.fill_streams() {
                self.waker.sleeping.store(false, Ordering::SeqCst);
                self.service();
                0
            } else {
                1
            };
            let waited = self.ring.submitter().submit_with_args(want, &args);
            self.waker.sleeping.store(false, Ordering::SeqCst);
            match waited {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "io_uring wait");
                    break;
                }
            }
            cqes.clear();
            cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
            for &(ud, res, flags) in &cqes {
                self.complete(ud, res, flags);
            }
            self.service();
        }
        self.stop();
    }

    /// Moves queued acknowledgements into the connections' send buffers; true if there were any.
    fn take_acks(&mut self) -> bool {
        let mut any = false;
        for c in self.conns.iter_mut().flatten() {
            if let Phase::Gateway { acks, .. } = &c.phase {
                while let Ok(f) = acks.try_recv() {
                    c.queued.extend_from_slice(&f);
                    any = true;
                }
            }
        }
        any
    }

    /// Feeds every stream connection from the event ring; true if anything was queued.
    fn fill_streams(&mut self) -> bool {
        let mut any = false;
        for c in self.conns.iter_mut().flatten() {
            any |= feed_stream(&self.sh, &self.waker, c);
        }
        any
    }

    /// Arms the accept and the wake-up read when they are not in flight.
    fn arm(&mut self) {
        if !self.accept_armed {
            self.accept_armed = true;
            let e = opcode::AcceptMulti::new(types::Fd(self.listen_fd)).build().user_data(user_data(OP_ACCEPT, 0, 0));
            self.push(e);
        }
        if !self.wake_armed {
            self.wake_armed = true;
            let e = opcode::Read::new(types::Fd(self.waker.fd.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8)
                .build()
                .user_data(user_data(OP_WAKE, 0, 0));
            self.push(e);
        }
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) {
        let (op, slot, gen) = split(ud);
        match op {
            OP_ACCEPT => {
                if !cqueue::more(flags) {
                    self.accept_armed = false;
                }
                if res >= 0 {
                    // SAFETY: a successful accept completion carries a new descriptor we own.
                    let stream = unsafe { TcpStream::from_raw_fd(res) };
                    self.accepted(stream);
                } else if res != -libc::ECANCELED {
                    tracing::warn!(error = %std::io::Error::from_raw_os_error(-res), "accept");
                }
            }
            OP_WAKE => self.wake_armed = false,
            OP_RECV | OP_SEND => {
                let Some(c) = self.conns.get_mut(slot).and_then(|c| c.as_mut()).filter(|c| c.gen == gen) else {
                    return;
                };
                if op == OP_RECV {
                    c.recv_armed = false;
                    if res <= 0 {
                        c.closing = true;
                    } else if matches!(c.phase, Phase::Stream(_)) {
                        // A stream's peer only reads; whatever it sends is dropped (the recv
                        // stays armed to see the connection end).
                    } else if !c.closing {
                        let n = res as usize;
                        c.dec.extend(&c.recv_buf[..n]);
                        self.received(slot);
                    }
                } else {
                    c.send_armed = false;
                    if res < 0 {
                        c.closing = true;
                        c.queued.clear();
                        c.sending.clear();
                    } else {
                        c.sending.drain(..res as usize);
                        c.sent_at = Instant::now();
                    }
                }
            }
            _ => {}
        }
    }

    fn accepted(&mut self, stream: TcpStream) {
        let sh = &self.sh;
        if sh.connections.fetch_add(1, Ordering::SeqCst) >= sh.cfg.max_connections {
            sh.connections.fetch_sub(1, Ordering::SeqCst);
            // Best effort, never blocking the ring: a fresh socket's buffer takes a Goodbye.
            let mut s = stream;
            let _ = s.set_nonblocking(true);
            let _ = server::goodbye(&mut s, GoodbyeReason::Unavailable, 0, "too many connections");
            return;
        }
        let _ = stream.set_nodelay(true);
        // 24 bits: what fits in the user data next to the op and the slot.
        self.next_gen = (self.next_gen + 1) & 0xff_ffff;
        let c = Conn {
            stream,
            accepted: Instant::now(),
            gen: self.next_gen,
            phase: Phase::Hello,
            dec: FrameDecoder::new(proto::MAX_CLIENT_FRAME),
            recv_buf: vec![0u8; RECV_BUF].into_boxed_slice(),
            recv_armed: false,
            sending: Vec::new(),
            send_armed: false,
            queued: Vec::new(),
            held: VecDeque::new(),
            closing: false,
            sent_at: Instant::now(),
        };
        match self.free.pop() {
            Some(i) => self.conns[i] = Some(c),
            None => self.conns.push(Some(c)),
        }
    }

    /// Decodes what a recv delivered.
    fn received(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_mut() else { return };
        let mut batch: Vec<(u64, Command)> = Vec::new();
        let mut handover = None;
        loop {
            if matches!(c.phase, Phase::Welcoming { .. } | Phase::Stream(_)) {
                // Frames behind the Hello are decoded once the Welcome is out (`service`);
                // a stream's peer has nothing more to say.
                break;
            }
            let (ty, body) = match c.dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    refuse(c, "frame length outside the limit");
                    break;
                }
            };
            let frame = parse_client_frame(ty, body);
            match (&c.phase, frame) {
                (Phase::Hello, Ok(ClientFrame::Hello { role: Role::Gateway, gateway, .. })) => {
                    let (tx, rx) = sync_channel(1);
                    // Asked without blocking the ring: the answer is polled in `service`.
                    match self.inbox.try_send(Inbound::GatewayHello { gateway, reply: tx }) {
                        Ok(()) => c.phase = Phase::Welcoming { gateway, reply: rx },
                        Err(_) => refuse(c, "engine busy"),
                    }
                }
                (
                    Phase::Hello,
                    Ok(ClientFrame::Hello {
                        role: role @ (Role::Subscriber | Role::Standby), from_seq, version, ..
                    }),
                ) => {
                    let feed = match (role, version) {
                        (Role::Standby, _) => server::Feed::Records,
                        (_, v) if v >= 2 => server::Feed::Events2,
                        _ => server::Feed::Events,
                    };
                    let durable = server::ring_last(&self.sh);
                    let _ = server::welcome(
                        &mut c.queued,
                        &server::quick_status(&self.sh),
                        durable,
                        GatewayMark::default(),
                    );
                    c.phase = Phase::Stream(Stream {
                        feed,
                        next: from_seq.saturating_add(1),
                        live: false,
                        catch_ups: 0,
                        catch_up: None,
                    });
                    // Nothing more is read from a stream but the end of it (see `complete`).
                    break;
                }
                (Phase::Hello, Ok(ClientFrame::Hello { role, from_seq, version, .. })) => {
                    // Control: a thread of the threaded path takes over.
                    handover = Some((role, from_seq, version));
                    break;
                }
                (Phase::Hello, _) => refuse(c, "expected Hello"),
                (Phase::Gateway { .. }, Ok(ClientFrame::Submit { request, command: Ok(cmd) })) => {
                    batch.push((request, cmd))
                }
                (Phase::Gateway { .. }, Ok(ClientFrame::Submit { request, command: Err(_) })) => {
                    put_ack(&mut c.queued, request, AckStatus::Invalid)
                }
                (Phase::Gateway { .. }, _) => {
                    put_ack(&mut c.queued, 0, AckStatus::Invalid);
                    c.closing = true;
                }
                (Phase::Welcoming { .. } | Phase::Stream(_), _) => unreachable!("not decoded here"),
            }
            if c.closing {
                break;
            }
        }
        if !batch.is_empty() {
            if let Phase::Gateway { gateway, out, .. } = &c.phase {
                // One inbox message per recv (at most BATCH commands each, like the threads).
                let mut rest = batch;
                let mut msgs = VecDeque::new();
                while !rest.is_empty() {
                    let tail = rest.split_off(rest.len().min(BATCH));
                    msgs.push_back(Inbound::Submit { gateway: *gateway, cmds: rest, out: out.clone() });
                    rest = tail;
                }
                for m in msgs {
                    deliver(&self.inbox, c, m);
                }
            }
        }
        if let Some((role, from, version)) = handover {
            if let Some(c) = self.conns[slot].take() {
                self.free.push(slot);
                hand_over(self.sh.clone(), self.inbox.clone(), c, role, from, version);
            }
        }
    }

    /// Per turn: Welcome answers, held commands, acknowledgements, closes, and the next recvs
    /// and sends.
    fn service(&mut self) {
        let mut welcomed = Vec::new();
        for (slot, c) in self.conns.iter_mut().enumerate() {
            let Some(c) = c.as_mut() else { continue };
            if let Phase::Welcoming { gateway, reply } = &c.phase {
                match reply.try_recv() {
                    Ok((st, mark)) => {
                        let gateway = *gateway;
                        let _ = server::welcome(&mut c.queued, &st, st.seq, mark);
                        let (otx, orx) = sync_channel::<Vec<u8>>(self.sh.cfg.gateway_queue.max(1));
                        let out =
                            Arc::new(ConnOut { tx: otx, dead: AtomicBool::new(false), wake: Some(self.waker.clone()) });
                        c.phase = Phase::Gateway { gateway, out, acks: orx };
                        welcomed.push(slot);
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => c.closing = true,
                }
            }
        }
        // Submits that arrived right behind the Hello.
        for slot in welcomed {
            self.received(slot);
        }
        let hello_timeout = self.sh.cfg.hello_timeout;
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else { continue };
            if matches!(c.phase, Phase::Hello) && !c.closing && c.accepted.elapsed() > hello_timeout {
                refuse(c, "no Hello in time");
            }
            flush_held(&self.inbox, c);
            if let Phase::Gateway { out, acks, .. } = &c.phase {
                while let Ok(f) = acks.try_recv() {
                    c.queued.extend_from_slice(&f);
                }
                if out.dead.load(Ordering::Relaxed) {
                    // Cut off by the sequencer (acknowledgement queue full).
                    c.closing = true;
                }
            }
            feed_stream(&self.sh, &self.waker, c);
            let stall = self.sh.cfg.stall_timeout;
            if matches!(c.phase, Phase::Stream(_)) && c.send_armed && c.sent_at.elapsed() > stall {
                // The consumer takes nothing (not even the Goodbye a slow consumer gets).
                tracing::warn!(
                    stalled_ms = stall.as_millis() as u64,
                    queued = c.queued.len() + c.sending.len(),
                    "stream consumer stopped reading: disconnecting it"
                );
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                c.closing = true;
                c.queued.clear();
                c.sent_at = Instant::now();
            }
            if !c.send_armed && c.sending.is_empty() && !c.queued.is_empty() {
                std::mem::swap(&mut c.sending, &mut c.queued);
                c.sent_at = Instant::now();
            }
            let fd = types::Fd(c.stream.as_raw_fd());
            let mut entries = Vec::new();
            if !c.send_armed && !c.sending.is_empty() {
                c.send_armed = true;
                let len = c.sending.len().min(u32::MAX as usize) as u32;
                entries.push(
                    opcode::Send::new(fd, c.sending.as_ptr(), len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(user_data(OP_SEND, slot, c.gen)),
                );
            }
            if !c.recv_armed && !c.closing && c.held.is_empty() && !matches!(c.phase, Phase::Welcoming { .. }) {
                c.recv_armed = true;
                entries.push(
                    opcode::Recv::new(fd, c.recv_buf.as_mut_ptr(), RECV_BUF as u32)
                        .build()
                        .user_data(user_data(OP_RECV, slot, c.gen)),
                );
            }
            let close = c.closing && !c.send_armed && c.sending.is_empty();
            if close && c.recv_armed {
                // Wake the pending recv up so its completion lets the buffer go.
                let _ = c.stream.shutdown(std::net::Shutdown::Read);
            }
            let done = close && !c.in_flight();
            for e in entries {
                self.push(e);
            }
            if done {
                if let Some(c) = self.conns[slot].take() {
                    if let Phase::Gateway { out, .. } = &c.phase {
                        out.dead.store(true, Ordering::Relaxed);
                    }
                    self.sh.connections.fetch_sub(1, Ordering::SeqCst);
                    self.free.push(slot);
                }
            }
        }
    }

    /// Shutdown: says goodbye, cancels what is in flight and waits (bounded) for the kernel to
    /// let go of the buffers; any still held after that are leaked rather than freed under it.
    fn stop(mut self) {
        for c in self.conns.iter_mut().flatten() {
            let mut resume = 0;
            if let Phase::Stream(st) = &mut c.phase {
                // Its thread sees the channel close and stops.
                st.catch_up = None;
                resume = st.next - 1;
            }
            // A Goodbye only on an idle connection: behind unsent bytes its resume point
            // would be wrong (the consumer resumes from what it received, either way).
            if !c.send_armed && c.sending.is_empty() && c.queued.is_empty() {
                let mut s = &c.stream;
                let _ = s.set_nonblocking(true);
                let mut f = Vec::new();
                let _ = server::goodbye(&mut f, GoodbyeReason::ShuttingDown, resume, "server shutting down");
                let _ = s.write_all(&f);
            }
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        let e = opcode::AsyncCancel::new(user_data(OP_ACCEPT, 0, 0)).build().user_data(0);
        self.push(e);
        for _ in 0..50 {
            let busy = self.conns.iter().flatten().any(|c| c.in_flight()) || self.accept_armed || self.wake_armed;
            if !busy {
                break;
            }
            self.waker.signal();
            let ts = types::Timespec::new().nsec(10_000_000);
            let _ = self.ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&ts));
            let done: Vec<_> = self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())).collect();
            for (ud, res, flags) in done {
                self.complete(ud, res, flags);
            }
        }
        let busy = self.conns.iter().flatten().any(|c| c.in_flight()) || self.accept_armed || self.wake_armed;
        if busy {
            tracing::warn!("io_uring operations still in flight at shutdown: leaking their buffers");
            std::mem::forget(self.conns);
            std::mem::forget(self.wake_buf);
            std::mem::forget(self.ring);
        }
    }
}

/// Hands a command message to the sequencer, or holds it (and stops reading) while the inbox is
/// full; held messages go first, in order.
fn deliver(inbox: &SyncSender<Inbound>, c: &mut Conn, m: Inbound) {
    c.held.push_back(m);
    flush_held(inbox, c);
}

fn flush_held(inbox: &SyncSender<Inbound>, c: &mut Conn) {
    while let Some(m) = c.held.pop_front() {
        match inbox.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                c.held.push_front(m);
                return;
            }
            Err(TrySendError::Disconnected(_)) => {
                c.held.clear();
                c.closing = true;
            }
        }
    }
}

fn put_ack(out: &mut Vec<u8>, request: u64, status: AckStatus) {
    out.extend_from_slice(&server::ack_frame(request, 0, status));
}

fn refuse(c: &mut Conn, why: &str) {
    let _ = server::goodbye(&mut c.queued, GoodbyeReason::ProtocolError, 0, why);
    c.closing = true;
}

/// A subscriber, standby or control connection goes to a thread of the threaded path.
fn hand_over(sh: Arc<Shared>, inbox: SyncSender<Inbound>, c: Conn, role: Role, from: u64, version: u8) {
    let Conn { stream, mut dec, .. } = c;
    // Bytes received after the Hello (a control client's first request) are read first.
    let mut leftover = Vec::new();
    while let Ok(Some((ty, body))) = dec.next_frame() {
        proto::frame_header(&mut leftover, ty, body.len());
        leftover.extend_from_slice(body);
    }
    let sh2 = sh.clone();
    let spawned = std::thread::Builder::new().name("castle-conn".into()).spawn(move || {
        let run = || -> server::ConnResult {
            stream.set_nonblocking(false)?;
            stream.set_write_timeout(Some(sh2.cfg.stall_timeout))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 16, stream.try_clone()?);
            let mut r = std::io::Read::chain(std::io::Cursor::new(leftover), stream.try_clone()?);
            server::after_hello(&sh2, &mut r, &mut w, role, from, version, &inbox)
        };
        if let Err(e) = run() {
            tracing::debug!(error = %e, "connection closed");
        }
        sh2.connections.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        sh.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Moves what a stream connection may send next into its queue (bounded by [`STREAM_QUEUE`]):
/// catch-up bytes from the journal, then entries of the event ring. Applies the slow consumer
/// policy (see the module comment). True if anything was queued.
fn feed_stream(sh: &Arc<Shared>, waker: &Arc<Waker>, c: &mut Conn) -> bool {
    let Conn { phase, queued, closing, .. } = c;
    let Phase::Stream(st) = phase else { return false };
    if *closing {
        return false;
    }
    let before = queued.len();
    let mut batch = Vec::new();
    loop {
        if let Some(rx) = &st.catch_up {
            if queued.len() >= STREAM_QUEUE {
                break;
            }
            match rx.try_recv() {
                Ok(CatchUp::Bytes(b)) => queued.extend_from_slice(&b),
                Ok(CatchUp::Done(Ok(next))) => {
                    st.next = next;
                    st.catch_up = None;
                }
                Ok(CatchUp::Done(Err(e))) => {
                    tracing::warn!(error = %e, from = st.next, "stream catch-up from the journal failed");
                    let _ = server::goodbye(queued, GoodbyeReason::Unavailable, 0, "catch-up from the journal failed");
                    *closing = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    *closing = true;
                    break;
                }
            }
            continue;
        }
        let ring = sh.ring.lock().unwrap_or_else(|p| p.into_inner());
        if st.next < ring.first() {
            let until = ring.first() - 1;
            drop(ring);
            st.catch_ups += 1;
            if st.live || st.catch_ups > MAX_CATCH_UPS {
                let resume = st.next - 1;
                let why = format!("slow consumer: fell out of the event ring; resume from {resume}");
                tracing::warn!(resume, queued = queued.len(), "{why}");
                let _ = server::goodbye(queued, GoodbyeReason::SlowConsumer, resume, &why);
                *closing = true;
                break;
            }
            st.catch_up = Some(catch_up(sh.clone(), waker.clone(), st.feed, st.next, until));
            continue;
        }
        if queued.len() >= STREAM_QUEUE {
            break;
        }
        if ring.last() >= st.next {
            ring.take(st.next, STREAM_STEP, &mut batch);
            drop(ring);
            for e in batch.drain(..) {
                server::put_entry(queued, st.feed, &e);
                st.next = e.seq + 1;
            }
            st.live = true;
            continue;
        }
        if st.next > ring.last() + 1 && ring.last() >= sh.applied.load(Ordering::Relaxed) {
            let last = ring.last();
            drop(ring);
            let _ = server::goodbye(queued, GoodbyeReason::Unavailable, last, "requested seq is beyond the end");
            *closing = true;
        }
        break;
    }
    queued.len() > before
}

/// Regenerates `next ..= until` from the journal on its own thread (disk reads and replay never
/// run on the ring), handing the frames over in chunks through a bounded channel.
fn catch_up(sh: Arc<Shared>, waker: Arc<Waker>, feed: server::Feed, next: u64, until: u64) -> Receiver<CatchUp> {
    let (tx, rx) = sync_channel(CATCH_UP_CHUNKS);
    let tx2 = tx.clone();
    let spawned = std::thread::Builder::new().name("castle-catch-up".into()).spawn(move || {
        let mut w = ChunkWriter { tx: &tx, buf: Vec::with_capacity(CHUNK), waker: &waker };
        let r = match feed {
            server::Feed::Records => server::send_old_records(&sh, &mut w, next, until),
            _ => server::send_old_events(&sh, &mut w, next, until, feed == server::Feed::Events2),
        };
        let _ = tx.send(CatchUp::Done(r.map_err(|e| e.to_string())));
        waker.wake();
    });
    if let Err(e) = spawned {
        let _ = tx2.try_send(CatchUp::Done(Err(format!("spawning the catch-up thread: {e}"))));
    }
    rx
}

/// Bytes per catch-up chunk.
const CHUNK: usize = 64 << 10;

/// A `Write` into the catch-up channel (blocks while the ring has [`CATCH_UP_CHUNKS`] waiting).
struct ChunkWriter<'a> {
    tx: &'a SyncSender<CatchUp>,
    buf: Vec<u8>,
    waker: &'a Waker,
}

impl ChunkWriter<'_> {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let b = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(CatchUp::Bytes(b)).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        self.waker.wake();
        Ok(())
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
