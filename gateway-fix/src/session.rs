//! Acceptor-side FIX session state machine (FIX 4.4 Volume 2, "Session
//! Protocol" and the session-level test cases).
//!
//! Sans-IO: the transport feeds received bytes ([`Session::on_bytes`]),
//! timer ticks ([`Session::on_timer`]) and connection events, always with the
//! current time; the session appends [`Action`]s (bytes to send, application
//! messages to deliver, disconnect) to a caller-owned vector. It never reads
//! a clock and never touches a socket, so every rule is unit-tested from the
//! spec and the transport stays a thin loop:
//!
//! ```text
//! on accept:   peek_logon(first bytes) -> find Session by CompIDs
//!              session.on_connect(now)?      (Err = duplicate logon: close)
//! on read:     session.on_bytes(bytes, now, &mut actions)
//! on timer:    session.on_timer(now, &mut actions)  (due at next_deadline())
//! on order layer output: session.send_app(b"8", |e| { ... }, now, &mut actions)
//! on close:    session.on_disconnected(now)
//! then:        Send -> write; Deliver -> order layer; Disconnect -> flush
//!              pending writes, then close.
//! ```

use crate::dictionary::{Dictionary, MessageDef};
use crate::encode::Encoder;
use crate::field::{msg_type as mt, parse_u64, tag, Timestamp};
use crate::frame::{
    next_frame, FieldSpan, FrameStatus, Garbled, Message, Parser, DEFAULT_MAX_FIELDS, DEFAULT_MAX_MESSAGE_SIZE,
};
use crate::store::{MessageStore, StoreError};
use crate::validate::{RejectReason, Rejection, ValidationOptions, Validator};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

/// Configuration of one session (one SenderCompID/TargetCompID pair).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// BeginString, e.g. "FIX.4.4".
    pub begin_string: String,
    /// Castle's CompID: the client's TargetCompID (56), our 49.
    pub sender_comp_id: String,
    /// The client's CompID: their 49, our 56.
    pub target_comp_id: String,
    /// Maximum |SendingTime - now| (Volume 2 test 2.o); `None` disables.
    pub sending_time_tolerance: Option<Duration>,
    /// Disconnect if no Logon arrives within this time after connect.
    pub logon_timeout: Duration,
    /// Disconnect if the peer does not answer our Logout within this time.
    pub logout_timeout: Duration,
    /// Accepted HeartBtInt (108) values in seconds; outside -> Logout.
    pub heartbeat_range: std::ops::RangeInclusive<u64>,
    /// Reset both sequence numbers on every Logon (as if 141=Y).
    pub reset_on_logon: bool,
    /// Largest ResendRequest range we answer; larger ones are rejected
    /// (373=5 on EndSeqNo) instead of replaying an absurd amount.
    pub max_resend_range: u64,
    /// Bound on messages held while waiting for a gap to be filled. Excess
    /// messages are dropped; they are requested again once the gap closes.
    pub max_queued_messages: usize,
    pub max_message_size: usize,
    pub max_fields: usize,
    /// Application MsgTypes the gateway handles. Other application types
    /// defined in the dictionary get BusinessMessageReject 380=3.
    pub supported_app_msg_types: Vec<Vec<u8>>,
    pub validation: ValidationOptions,
    /// FIXT.1.1: the DefaultApplVerID (1137) the client's Logon must carry;
    /// echoed in our Logon.
    pub default_appl_ver_id: Option<String>,
}

impl SessionConfig {
    /// Defaults for a FIX 4.4 order-entry session.
    pub fn new(sender_comp_id: &str, target_comp_id: &str) -> Self {
        SessionConfig {
            begin_string: "FIX.4.4".into(),
            sender_comp_id: sender_comp_id.into(),
            target_comp_id: target_comp_id.into(),
            sending_time_tolerance: Some(Duration::from_secs(120)),
            logon_timeout: Duration::from_secs(10),
            logout_timeout: Duration::from_secs(5),
            heartbeat_range: 0..=3600,
            reset_on_logon: false,
            max_resend_range: 100_000,
            max_queued_messages: 10_000,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_fields: DEFAULT_MAX_FIELDS,
            supported_app_msg_types: ["D", "F", "G", "H", "q", "AF", "V", "x"]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            validation: ValidationOptions::default(),
            default_appl_ver_id: None,
        }
    }
}

/// Credentials check supplied by the gateway (accounts, API secrets...).
pub trait Authenticator {
    /// `Err(text)` refuses the logon; `text` goes into the Logout (58).
    fn authenticate(
        &self,
        session: &SessionConfig,
        username: Option<&[u8]>,
        password: Option<&[u8]>,
    ) -> Result<(), String>;
}

/// Accepts every logon (tests, drop-copy on a private network).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;
impl Authenticator for AllowAll {
    fn authenticate(&self, _: &SessionConfig, _: Option<&[u8]>, _: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No connection.
    Disconnected,
    /// Connected, waiting for the client's Logon.
    AwaitingLogon,
    /// Logged on.
    Active,
    /// We sent a Logout and wait for the answer (or the timeout).
    LogoutSent,
}

/// Why the session asks the transport to close the connection.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DisconnectReason {
    #[error("no Logon within the logon timeout")]
    LogonTimeout,
    #[error("first message was not a Logon")]
    FirstMessageNotLogon,
    #[error("invalid Logon: {0}")]
    InvalidLogon(String),
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    #[error("CompID problem")]
    CompIdProblem,
    #[error("incorrect BeginString")]
    IncorrectBeginString,
    #[error("SendingTime accuracy problem")]
    SendingTimeAccuracy,
    #[error("MsgSeqNum too low, expecting {expected} but received {received}")]
    MsgSeqNumTooLow { expected: u64, received: u64 },
    #[error("MsgSeqNum missing")]
    MsgSeqNumMissing,
    #[error("no answer to TestRequest")]
    TestRequestTimeout,
    #[error("no answer to Logout")]
    LogoutTimeout,
    #[error("logout completed")]
    LogoutCompleted,
    #[error("logged out by the counterparty")]
    LogoutByPeer,
    #[error("Logon received on an established session")]
    UnexpectedLogon,
    #[error("message store failure: {0}")]
    Store(String),
}

/// Things worth logging or acting on that need no transport action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    LoggedOn {
        username: Option<String>,
        reset_seq_nums: bool,
    },
    /// A garbled frame was dropped (not answered, MsgSeqNum unchanged).
    Garbled(Garbled),
    /// We sent a session-level Reject.
    RejectSent {
        ref_seq: u64,
        reason: RejectReason,
    },
    /// We sent a BusinessMessageReject for an unsupported message type.
    BusinessRejectSent {
        ref_seq: u64,
    },
    /// We detected a gap and sent a ResendRequest from `begin` (to infinity).
    ResendRequestSent {
        begin: u64,
        received: u64,
    },
    /// We answered a ResendRequest.
    ResendAnswered {
        begin: u64,
        end: u64,
    },
    /// The counterparty rejected one of our messages.
    RejectReceived {
        ref_seq: Option<u64>,
    },
    /// SequenceReset-Reset moved the expected number (or tried to).
    SequenceReset {
        from: u64,
        to: u64,
    },
}

/// An application message for the order layer (validated, in sequence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppMessage {
    pub msg_type: Vec<u8>,
    pub seq: u64,
    pub poss_dup: bool,
    /// PossResend (97=Y): the application must check whether it has
    /// already processed this message (e.g. by ClOrdID) - test case 19.
    pub poss_resend: bool,
    /// The complete frame.
    pub bytes: Vec<u8>,
    /// The session's parse of `bytes`, handed on so the order layer does
    /// not parse the message a second time.
    fields: Vec<FieldSpan>,
}

impl AppMessage {
    /// The parsed message (no second parse: the session's field spans).
    pub fn message(&self) -> Message<'_> {
        Message::from_spans(&self.bytes, &self.fields)
    }
}

/// Output of the state machine, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the connection.
    Send(Vec<u8>),
    /// Hand this message to the order layer.
    Deliver(AppMessage),
    /// Flush pending sends, then close the connection.
    Disconnect(DisconnectReason),
    Event(SessionEvent),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("session already has a connection (duplicate logon)")]
    AlreadyConnected,
    #[error("message store: {0}")]
    Store(String),
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        SessionError::Store(e.to_string())
    }
}

/// What the first bytes of a new connection ask for, so the transport can
/// pick the configured session (or refuse) before a Session is involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    NeedMore,
    /// The first complete frame is garbled or not a Logon: close.
    NotLogon,
    Logon {
        begin_string: Vec<u8>,
        /// The client's 49 (our target).
        sender_comp_id: Vec<u8>,
        /// The client's 56 (our sender).
        target_comp_id: Vec<u8>,
    },
}

/// Inspect the first frame of a new connection.
pub fn peek_logon(buf: &[u8], max_message_size: usize) -> Peek {
    match next_frame(buf, max_message_size) {
        FrameStatus::Incomplete => Peek::NeedMore,
        FrameStatus::Garbled { .. } => Peek::NotLogon,
        FrameStatus::Complete { len } => {
            let mut p = Parser::default();
            match p.parse(&buf[..len], &crate::frame::NoDataFields) {
                Ok(m) if m.msg_type() == mt::LOGON => Peek::Logon {
                    begin_string: m.begin_string().to_vec(),
                    sender_comp_id: m.get(tag::SENDER_COMP_ID).unwrap_or_default().to_vec(),
                    target_comp_id: m.get(tag::TARGET_COMP_ID).unwrap_or_default().to_vec(),
                },
                _ => Peek::NotLogon,
            }
        }
    }
}

/// Header fields the session looks at, gathered in one pass.
#[derive(Default)]
struct Header<'a> {
    seq: Option<u64>,
    sender: Option<&'a [u8]>,
    target: Option<&'a [u8]>,
    sending_time: Option<Timestamp>,
    poss_dup: bool,
    poss_resend: bool,
    orig_sending_time: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    fn of(m: &Message<'a>) -> Header<'a> {
        let mut h = Header::default();
        for f in m.fields() {
            match f.tag {
                tag::MSG_SEQ_NUM => h.seq = h.seq.or(parse_u64(f.value)),
                tag::SENDER_COMP_ID => h.sender = h.sender.or(Some(f.value)),
                tag::TARGET_COMP_ID => h.target = h.target.or(Some(f.value)),
                tag::SENDING_TIME => h.sending_time = h.sending_time.or(Timestamp::parse(f.value)),
                tag::POSS_DUP_FLAG => h.poss_dup = f.value == b"Y",
                tag::POSS_RESEND => h.poss_resend = f.value == b"Y",
                tag::ORIG_SENDING_TIME => h.orig_sending_time = Some(f.value),
                _ => {}
            }
        }
        h
    }
}

enum Queued {
    /// A frame that arrived ahead of a gap.
    Frame(Vec<u8>),
    /// Already acted on when it arrived (Logon, ResendRequest); only its
    /// sequence number remains to be consumed.
    Processed,
}

/// One FIX session, acceptor side.
pub struct Session<S: MessageStore> {
    cfg: SessionConfig,
    validator: Validator<'static>,
    parser: Parser,
    resend_parser: Parser,
    enc: Encoder,
    store: S,
    auth: Box<dyn Authenticator + Send>,
    state: State,
    inbuf: Vec<u8>,
    /// HeartBtInt of the current connection, nanoseconds (0 = none).
    heartbeat: i64,
    last_sent: Timestamp,
    last_received: Timestamp,
    logon_deadline: Timestamp,
    logout_deadline: Timestamp,
    test_request_sent: Option<Timestamp>,
    test_request_counter: u64,
    /// We sent a ResendRequest and the gap runs up to this MsgSeqNum.
    resend_until: Option<u64>,
    queue: BTreeMap<u64, Queued>,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl<S: MessageStore> Session<S> {
    pub fn new(cfg: SessionConfig, dict: &'static Dictionary, store: S, auth: Box<dyn Authenticator + Send>) -> Self {
        Session {
            validator: Validator::new(dict, cfg.validation),
            parser: Parser::new(cfg.max_fields),
            resend_parser: Parser::new(cfg.max_fields),
            enc: Encoder::new(&cfg.begin_string),
            cfg,
            store,
            auth,
            state: State::Disconnected,
            inbuf: Vec::new(),
            heartbeat: 0,
            last_sent: Timestamp::default(),
            last_received: Timestamp::default(),
            logon_deadline: Timestamp::default(),
            logout_deadline: Timestamp::default(),
            test_request_sent: None,
            test_request_counter: 0,
            resend_until: None,
            queue: BTreeMap::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }
    pub fn store(&self) -> &S {
        &self.store
    }
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }
    pub fn next_sender_seq(&self) -> u64 {
        self.store.next_sender_seq()
    }
    pub fn next_target_seq(&self) -> u64 {
        self.store.next_target_seq()
    }
    /// HeartBtInt agreed at logon.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_nanos(self.heartbeat as u64)
    }

    /// A transport connection was accepted for this session.
    pub fn on_connect(&mut self, now: Timestamp) -> Result<(), SessionError> {
        if self.state != State::Disconnected {
            return Err(SessionError::AlreadyConnected);
        }
        self.reset_connection_state();
        self.state = State::AwaitingLogon;
        self.logon_deadline = now.add_nanos(nanos(self.cfg.logon_timeout));
        self.last_received = now;
        self.last_sent = now;
        Ok(())
    }

    /// The transport connection closed (either side).
    pub fn on_disconnected(&mut self, _now: Timestamp) {
        self.state = State::Disconnected;
        self.reset_connection_state();
    }

    fn reset_connection_state(&mut self) {
        self.inbuf = Vec::new();
        self.queue.clear();
        self.resend_until = None;
        self.test_request_sent = None;
        self.heartbeat = 0;
    }

    /// When `on_timer` must be called next (None: no timer needed).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.state {
            State::Disconnected => None,
            State::AwaitingLogon => Some(self.logon_deadline),
            State::LogoutSent => Some(self.logout_deadline),
            State::Active if self.heartbeat == 0 => None,
            State::Active => {
                let hb = self.heartbeat;
                let recv = match self.test_request_sent {
                    None => self.last_received.add_nanos(hb + hb / 5),
                    Some(t) => t.add_nanos(hb + hb / 5),
                };
                Some(recv.min(self.last_sent.add_nanos(hb)))
            }
        }
    }

    /// Timers: logon/logout timeouts, heartbeats, TestRequest and the
    /// disconnect when it is not answered (Volume 2 tests 4.a and 6).
    pub fn on_timer(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        match self.state {
            State::Disconnected => {}
            State::AwaitingLogon => {
                if now >= self.logon_deadline {
                    self.disconnect(DisconnectReason::LogonTimeout, out);
                }
            }
            State::LogoutSent => {
                if now >= self.logout_deadline {
                    self.disconnect(DisconnectReason::LogoutTimeout, out);
                }
            }
            State::Active => {
                let hb = self.heartbeat;
                if hb == 0 {
                    return;
                }
                // "HeartBtInt + some reasonable transmission time": 20%.
                let grace = hb + hb / 5;
                match self.test_request_sent {
                    Some(t) if now.0 - t.0 >= grace => {
                        self.disconnect(DisconnectReason::TestRequestTimeout, out);
                        return;
                    }
                    None if now.0 - self.last_received.0 >= grace => {
                        self.test_request_counter += 1;
                        let id = format!("TEST{}", self.test_request_counter);
                        self.test_request_sent = Some(now);
                        self.send_admin(mt::TEST_REQUEST, now, out, |e| {
                            e.str(tag::TEST_REQ_ID, id.as_bytes());
                        });
                    }
                    _ => {}
                }
                if self.state == State::Active && now.0 - self.last_sent.0 >= hb {
                    self.send_admin(mt::HEARTBEAT, now, out, |_| {});
                }
            }
        }
    }

    /// Start the Logout handshake (end of day, gateway shutdown...).
    pub fn logout(&mut self, text: Option<&str>, now: Timestamp, out: &mut Vec<Action>) {
        match self.state {
            State::Active => self.send_logout(text, now, out),
            State::AwaitingLogon => self.disconnect(DisconnectReason::LogoutCompleted, out),
            _ => {}
        }
    }

    /// Send an application message built by `body` (fields after the
    /// standard header). It is stored under the next MsgSeqNum even when the
    /// session is not logged on, so a client that reconnects can recover it
    /// with a ResendRequest (test case 16). Returns the MsgSeqNum.
    pub fn send_app(
        &mut self,
        msg_type: &[u8],
        now: Timestamp,
        out: &mut Vec<Action>,
        body: impl FnOnce(&mut Encoder),
    ) -> Result<u64, SessionError> {
        let seq = self.store.next_sender_seq();
        self.build(msg_type, seq, now, body);
        self.store.store_outbound(seq, self.enc.message())?;
        if matches!(self.state, State::Active | State::LogoutSent) {
            out.push(Action::Send(self.enc.message().to_vec()));
            self.last_sent = now;
        }
        Ok(seq)
    }

    /// Feed bytes received from the connection.
    pub fn on_bytes(&mut self, data: &[u8], now: Timestamp, out: &mut Vec<Action>) {
        if self.state == State::Disconnected {
            return;
        }
        let mut buf = std::mem::take(&mut self.inbuf);
        let mut parser = std::mem::take(&mut self.parser);
        buf.extend_from_slice(data);
        let mut pos = 0;
        while pos < buf.len() && self.state != State::Disconnected {
            match next_frame(&buf[pos..], self.cfg.max_message_size) {
                FrameStatus::Incomplete => break,
                FrameStatus::Garbled { skip, reason } => {
                    pos += skip;
                    out.push(Action::Event(SessionEvent::Garbled(reason)));
                }
                FrameStatus::Complete { len } => {
                    let frame = &buf[pos..pos + len];
                    pos += len;
                    self.on_frame(&mut parser, frame, now, out);
                    self.drain_queue(&mut parser, now, out);
                }
            }
        }
        if self.state != State::Disconnected {
            buf.drain(..pos);
            self.inbuf = buf;
        }
        self.parser = parser;
    }

    fn on_frame(&mut self, parser: &mut Parser, frame: &[u8], now: Timestamp, out: &mut Vec<Action>) {
        let dict = self.validator.dictionary();
        let msg = match parser.parse(frame, dict) {
            Ok(m) => m,
            Err(_) => {
                // The envelope was fine but the fields cannot be split:
                // nothing reliable to answer; treat as garbled.
                out.push(Action::Event(SessionEvent::Garbled(Garbled::BadCheckSumField)));
                return;
            }
        };
        self.last_received = now;
        self.test_request_sent = None;
        if msg.begin_string() != self.cfg.begin_string.as_bytes() {
            // Test cases 1.d / 2.i: before logon just disconnect; after,
            // Logout with the reason and wait for the answer.
            if self.state == State::AwaitingLogon {
                self.disconnect(DisconnectReason::IncorrectBeginString, out);
            } else {
                self.send_logout(Some("Incorrect BeginString"), now, out);
            }
            return;
        }
        let h = Header::of(&msg);
        match self.state {
            State::AwaitingLogon => self.on_logon(&msg, &h, now, out),
            State::Active | State::LogoutSent => self.on_message(&msg, &h, now, out),
            State::Disconnected => {}
        }
    }

    fn comp_ids_ok(&self, h: &Header<'_>) -> bool {
        h.sender.is_none_or(|s| s == self.cfg.target_comp_id.as_bytes())
            && h.target.is_none_or(|t| t == self.cfg.sender_comp_id.as_bytes())
    }

    fn sending_time_ok(&self, h: &Header<'_>, now: Timestamp) -> bool {
        match (self.cfg.sending_time_tolerance, h.sending_time) {
            (Some(tol), Some(t)) => t.abs_diff_nanos(now) <= tol.as_nanos() as u64,
            _ => true,
        }
    }

    /// First message of a connection (Volume 2 test case 1.B).
    fn on_logon(&mut self, msg: &Message<'_>, h: &Header<'_>, now: Timestamp, out: &mut Vec<Action>) {
        if msg.msg_type() != mt::LOGON {
            return self.disconnect(DisconnectReason::FirstMessageNotLogon, out);
        }
        if h.sender.is_none() || h.target.is_none() || !self.comp_ids_ok(h) {
            return self.disconnect(DisconnectReason::CompIdProblem, out);
        }
        if h.sending_time.is_none() || !self.sending_time_ok(h, now) {
            return self.disconnect(DisconnectReason::SendingTimeAccuracy, out);
        }
        if let Err(r) = self.validator.validate(msg) {
            let text = format!("{}", r);
            return self.refuse_logon(DisconnectReason::InvalidLogon(text), now, out);
        }
        if let Some(v) = &self.cfg.default_appl_ver_id {
            if msg.get(1137) != Some(v.as_bytes()) {
                let r = DisconnectReason::InvalidLogon(format!("DefaultApplVerID (1137) must be {v}"));
                return self.refuse_logon(r, now, out);
            }
        }
        if msg.get(tag::ENCRYPT_METHOD) != Some(b"0") {
            // Castle uses TLS for confidentiality, not FIX encryption.
            let r = DisconnectReason::InvalidLogon("EncryptMethod must be 0".into());
            return self.refuse_logon(r, now, out);
        }
        let hb = msg.get(tag::HEART_BT_INT).and_then(parse_u64);
        let Some(hb) = hb.filter(|v| self.cfg.heartbeat_range.contains(v)) else {
            let r = DisconnectReason::InvalidLogon(format!(
                "HeartBtInt must be within {:?} seconds",
                self.cfg.heartbeat_range
            ));
            return self.refuse_logon(r, now, out);
        };
        let username = msg.get(tag::USERNAME);
        if let Err(text) = self.auth.authenticate(&self.cfg, username, msg.get(tag::PASSWORD)) {
            return self.refuse_logon(DisconnectReason::AuthenticationFailed(text), now, out);
        }
        let Some(seq) = h.seq else {
            return self.refuse_logon(DisconnectReason::MsgSeqNumMissing, now, out);
        };
        let peer_reset = msg.get(tag::RESET_SEQ_NUM_FLAG) == Some(b"Y");
        let reset = peer_reset || self.cfg.reset_on_logon;
        if reset {
            if let Err(e) = self.store.reset() {
                return self.disconnect(DisconnectReason::Store(e.to_string()), out);
            }
        }
        let expected = self.store.next_target_seq();
        if seq < expected {
            let r = DisconnectReason::MsgSeqNumTooLow { expected, received: seq };
            return self.refuse_logon(r, now, out);
        }
        self.heartbeat = (hb as i64).saturating_mul(1_000_000_000);
        self.state = State::Active;
        let appl_ver = self.cfg.default_appl_ver_id.clone();
        self.send_admin(mt::LOGON, now, out, |e| {
            e.u64(tag::ENCRYPT_METHOD, 0).u64(tag::HEART_BT_INT, hb);
            if reset {
                e.bool(tag::RESET_SEQ_NUM_FLAG, true);
            }
            if let Some(v) = &appl_ver {
                e.str(1137, v.as_bytes());
            }
        });
        out.push(Action::Event(SessionEvent::LoggedOn {
            username: username.map(|u| String::from_utf8_lossy(u).into_owned()),
            reset_seq_nums: reset,
        }));
        if seq == expected {
            self.set_target(seq + 1, out);
        } else {
            // Logon with MsgSeqNum too high: respond, then recover the gap
            // (test case 1.a). The Logon itself is already processed.
            self.queue.insert(seq, Queued::Processed);
            self.request_resend(expected, seq, now, out);
        }
    }

    /// A refused logon: Logout with the reason, then disconnect.
    fn refuse_logon(&mut self, reason: DisconnectReason, now: Timestamp, out: &mut Vec<Action>) {
        let text = reason.to_string();
        self.send_admin(mt::LOGOUT, now, out, |e| {
            e.str(tag::TEXT, text.as_bytes());
        });
        self.disconnect(reason, out);
    }

    fn on_message(&mut self, msg: &Message<'_>, h: &Header<'_>, now: Timestamp, out: &mut Vec<Action>) {
        let t = msg.msg_type();
        let Some(seq) = h.seq else {
            // Without MsgSeqNum the message cannot be sequenced or
            // referenced: Logout and disconnect.
            self.send_admin(mt::LOGOUT, now, out, |e| {
                e.str(tag::TEXT, b"MsgSeqNum(34) missing or invalid");
            });
            return self.disconnect(DisconnectReason::MsgSeqNumMissing, out);
        };
        // SequenceReset-Reset ignores MsgSeqNum (test case 11).
        if t == mt::SEQUENCE_RESET && msg.get(tag::GAP_FILL_FLAG) != Some(b"Y") {
            return self.on_sequence_reset(msg, seq, now, out);
        }
        // Logout is honoured whatever its MsgSeqNum (test case 13).
        if t == mt::LOGOUT {
            if seq == self.store.next_target_seq() {
                self.set_target(seq + 1, out);
            }
            if self.state == State::LogoutSent {
                return self.disconnect(DisconnectReason::LogoutCompleted, out);
            }
            self.send_admin(mt::LOGOUT, now, out, |_| {});
            return self.disconnect(DisconnectReason::LogoutByPeer, out);
        }
        let expected = self.store.next_target_seq();
        if seq > expected {
            // Gap: answer a ResendRequest right away (test case 20), queue
            // anything else until the gap is filled.
            if t == mt::RESEND_REQUEST {
                if let Ok(_def) = self.validator.validate(msg) {
                    self.answer_resend(msg, now, out);
                }
                self.queue.insert(seq, Queued::Processed);
            } else if self.queue.len() < self.cfg.max_queued_messages {
                self.queue.insert(seq, Queued::Frame(msg.as_bytes().to_vec()));
            }
            return self.request_resend(expected, seq, now, out);
        }
        if seq < expected {
            if !h.poss_dup {
                let reason = DisconnectReason::MsgSeqNumTooLow { expected, received: seq };
                let text = reason.to_string();
                self.send_admin(mt::LOGOUT, now, out, |e| {
                    e.str(tag::TEXT, text.as_bytes());
                });
                return self.disconnect(reason, out);
            }
            // PossDup resend of something already processed (test 2.e-2.g).
            match self.check_orig_sending_time(h) {
                Ok(()) => {}
                Err(r) => {
                    self.send_reject(seq, t, r, None, now, out);
                    if r.reason == RejectReason::SendingTimeAccuracyProblem {
                        self.send_logout(Some(r.reason.text()), now, out);
                    }
                }
            }
            return;
        }
        self.in_sequence(msg, h, seq, now, out);
    }

    /// PossDup messages must carry OrigSendingTime <= SendingTime.
    fn check_orig_sending_time(&self, h: &Header<'_>) -> Result<(), Rejection> {
        if !h.poss_dup {
            return Ok(());
        }
        let Some(orig) = h.orig_sending_time else {
            return Err(Rejection::new(RejectReason::RequiredTagMissing, Some(tag::ORIG_SENDING_TIME)));
        };
        match (Timestamp::parse(orig), h.sending_time) {
            (None, _) => Err(Rejection::new(RejectReason::IncorrectDataFormat, Some(tag::ORIG_SENDING_TIME))),
            (Some(o), Some(s)) if o > s => Err(Rejection::new(RejectReason::SendingTimeAccuracyProblem, None)),
            _ => Ok(()),
        }
    }

    /// A message carrying exactly the expected MsgSeqNum.
    fn in_sequence(&mut self, msg: &Message<'_>, h: &Header<'_>, seq: u64, now: Timestamp, out: &mut Vec<Action>) {
        let t = msg.msg_type();
        // Order follows Volume 2: CompID (2.k) and SendingTime (2.o) first,
        // both reject + Logout; then PossDup (2.f/2.g); then the dictionary.
        if !self.comp_ids_ok(h) {
            let r = Rejection::new(RejectReason::CompIdProblem, None);
            self.send_reject(seq, t, r, None, now, out);
            self.set_target(seq + 1, out);
            return self.send_logout(Some(r.reason.text()), now, out);
        }
        if !self.sending_time_ok(h, now) {
            let r = Rejection::new(RejectReason::SendingTimeAccuracyProblem, None);
            self.send_reject(seq, t, r, None, now, out);
            self.set_target(seq + 1, out);
            return self.send_logout(Some(r.reason.text()), now, out);
        }
        if let Err(r) = self.check_orig_sending_time(h) {
            self.send_reject(seq, t, r, None, now, out);
            self.set_target(seq + 1, out);
            if r.reason == RejectReason::SendingTimeAccuracyProblem {
                self.send_logout(Some(r.reason.text()), now, out);
            }
            return;
        }
        let dict = self.validator.dictionary();
        // Valid but unsupported application messages get a business-level
        // reject, before body validation (test case 2.r).
        if let Some(def) = dict.message(t) {
            if !def.admin && !self.cfg.supported_app_msg_types.iter().any(|s| s == t) {
                self.send_business_reject(seq, t, now, out);
                return self.set_target(seq + 1, out);
            }
        }
        let def: &MessageDef = match self.validator.validate(msg) {
            Ok(d) => d,
            Err(r) => {
                self.send_reject(seq, t, r, msg.bad_tag(), now, out);
                return self.set_target(seq + 1, out);
            }
        };
        match t {
            mt::HEARTBEAT | mt::REJECT => {
                if t == mt::REJECT {
                    let ref_seq = msg.get(tag::REF_SEQ_NUM).and_then(parse_u64);
                    out.push(Action::Event(SessionEvent::RejectReceived { ref_seq }));
                }
                self.set_target(seq + 1, out);
            }
            mt::TEST_REQUEST => {
                self.set_target(seq + 1, out);
                let id = msg.get(tag::TEST_REQ_ID).unwrap_or_default();
                self.send_admin(mt::HEARTBEAT, now, out, |e| {
                    e.str(tag::TEST_REQ_ID, id);
                });
            }
            mt::RESEND_REQUEST => {
                self.set_target(seq + 1, out);
                self.answer_resend(msg, now, out);
            }
            mt::SEQUENCE_RESET => {
                // GapFill (the Reset mode was handled before sequencing).
                let new = msg.get(tag::NEW_SEQ_NO).and_then(parse_u64).unwrap_or(0);
                if new <= seq {
                    let r = Rejection::new(RejectReason::ValueIsIncorrect, Some(tag::NEW_SEQ_NO));
                    self.send_reject(seq, t, r, None, now, out);
                    self.set_target(seq + 1, out);
                } else {
                    self.set_target(new, out);
                }
            }
            mt::LOGON => {
                // A second Logon on an established session.
                self.set_target(seq + 1, out);
                self.send_admin(mt::LOGOUT, now, out, |e| {
                    e.str(tag::TEXT, b"Logon received on an established session");
                });
                self.disconnect(DisconnectReason::UnexpectedLogon, out);
            }
            _ if def.admin => self.set_target(seq + 1, out),
            _ => {
                // Held until the order layer finishes it: a crash before that
                // makes the client resend it (see store.rs).
                self.store.hold_inbound(seq);
                self.set_target(seq + 1, out);
                out.push(Action::Deliver(AppMessage {
                    msg_type: t.to_vec(),
                    seq,
                    poss_dup: h.poss_dup,
                    poss_resend: h.poss_resend,
                    bytes: msg.as_bytes().to_vec(),
                    fields: msg.spans().to_vec(),
                }));
            }
        }
    }

    /// SequenceReset in Reset mode (test case 11).
    fn on_sequence_reset(&mut self, msg: &Message<'_>, seq: u64, now: Timestamp, out: &mut Vec<Action>) {
        let t = msg.msg_type();
        if let Err(r) = self.validator.validate(msg) {
            return self.send_reject(seq, t, r, msg.bad_tag(), now, out);
        }
        let expected = self.store.next_target_seq();
        let new = msg.get(tag::NEW_SEQ_NO).and_then(parse_u64).unwrap_or(0);
        if new < expected {
            let r = Rejection::new(RejectReason::ValueIsIncorrect, Some(tag::NEW_SEQ_NO));
            return self.send_reject(seq, t, r, None, now, out);
        }
        out.push(Action::Event(SessionEvent::SequenceReset { from: expected, to: new }));
        self.set_target(new, out);
    }

    /// Process queued messages that have become in-sequence.
    fn drain_queue(&mut self, parser: &mut Parser, now: Timestamp, out: &mut Vec<Action>) {
        while matches!(self.state, State::Active | State::LogoutSent) {
            let expected = self.store.next_target_seq();
            // Anything below `expected` was gap-filled over.
            while let Some((&s, _)) = self.queue.first_key_value() {
                if s >= expected {
                    break;
                }
                self.queue.pop_first();
            }
            match self.queue.remove(&expected) {
                None => break,
                Some(Queued::Processed) => self.set_target(expected + 1, out),
                Some(Queued::Frame(bytes)) => {
                    self.on_frame(parser, &bytes, now, out);
                    // A queued frame that did not advance the sequence (for
                    // example an invalid SequenceReset) must not loop.
                    if self.store.next_target_seq() == expected {
                        break;
                    }
                }
            }
        }
        if let Some(end) = self.resend_until {
            if self.store.next_target_seq() > end {
                self.resend_until = None;
            }
        }
    }

    /// Gap detected: expected `expected`, received `received`.
    fn request_resend(&mut self, expected: u64, received: u64, now: Timestamp, out: &mut Vec<Action>) {
        match self.resend_until {
            // Already asked up to infinity; the peer is replaying.
            Some(end) if end >= expected => {
                self.resend_until = Some(end.max(received - 1));
            }
            _ => {
                self.resend_until = Some(received - 1);
                // EndSeqNo 0 = "infinity" (FIX 4.2 and later).
                self.send_admin(mt::RESEND_REQUEST, now, out, |e| {
                    e.u64(tag::BEGIN_SEQ_NO, expected).u64(tag::END_SEQ_NO, 0);
                });
                out.push(Action::Event(SessionEvent::ResendRequestSent { begin: expected, received }));
            }
        }
    }

    /// Answer a ResendRequest from the store: application messages resent
    /// with PossDupFlag=Y and OrigSendingTime, admin messages and holes
    /// replaced by SequenceReset-GapFill (test case 8).
    fn answer_resend(&mut self, msg: &Message<'_>, now: Timestamp, out: &mut Vec<Action>) {
        let ref_seq = msg.get(tag::MSG_SEQ_NUM).and_then(parse_u64).unwrap_or(0);
        let begin = msg.get(tag::BEGIN_SEQ_NO).and_then(parse_u64).unwrap_or(0);
        let end_req = msg.get(tag::END_SEQ_NO).and_then(parse_u64).unwrap_or(0);
        let last = self.store.next_sender_seq() - 1;
        let end = if end_req == 0 || end_req > last { last } else { end_req };
        let bad = |t| Rejection::new(RejectReason::ValueIsIncorrect, Some(t));
        if begin == 0 || begin > last {
            return self.send_reject(ref_seq, mt::RESEND_REQUEST, bad(tag::BEGIN_SEQ_NO), None, now, out);
        }
        if end < begin {
            return self.send_reject(ref_seq, mt::RESEND_REQUEST, bad(tag::END_SEQ_NO), None, now, out);
        }
        if end - begin >= self.cfg.max_resend_range {
            let r = bad(tag::END_SEQ_NO);
            let text =
                format!("Resend range too large: at most {} messages per ResendRequest", self.cfg.max_resend_range);
            return self.send_reject_text(ref_seq, mt::RESEND_REQUEST, r, None, &text, now, out);
        }
        out.push(Action::Event(SessionEvent::ResendAnswered { begin, end }));
        let mut gap_start: Option<u64> = None;
        let mut next = begin;
        // Read the store in chunks so memory stays bounded for big ranges.
        const CHUNK: u64 = 1024;
        let mut chunk_begin = begin;
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        while chunk_begin <= end {
            let chunk_end = end.min(chunk_begin + CHUNK - 1);
            batch.clear();
            if let Err(e) = self.store.outbound_range(chunk_begin, chunk_end, &mut |s, m| batch.push((s, m.to_vec()))) {
                return self.disconnect(DisconnectReason::Store(e.to_string()), out);
            }
            for (seq, bytes) in batch.drain(..) {
                if seq > next {
                    gap_start.get_or_insert(next);
                }
                let mut parser = std::mem::take(&mut self.resend_parser);
                let app = match parser.parse(&bytes, self.validator.dictionary()) {
                    Ok(m) if !mt::is_admin(m.msg_type()) => {
                        if let Some(g) = gap_start.take() {
                            self.send_gap_fill(g, seq, now, out);
                        }
                        self.resend_app(&m, seq, now, out);
                        true
                    }
                    _ => false,
                };
                self.resend_parser = parser;
                if !app {
                    gap_start.get_or_insert(seq);
                }
                next = seq + 1;
            }
            chunk_begin = chunk_end + 1;
        }
        if next <= end {
            gap_start.get_or_insert(next);
        }
        if let Some(g) = gap_start {
            self.send_gap_fill(g, end + 1, now, out);
        }
    }

    fn send_gap_fill(&mut self, seq: u64, new_seq: u64, now: Timestamp, out: &mut Vec<Action>) {
        self.enc
            .start(mt::SEQUENCE_RESET)
            .u64(tag::MSG_SEQ_NUM, seq)
            .bool(tag::POSS_DUP_FLAG, true)
            .str(tag::SENDER_COMP_ID, self.cfg.sender_comp_id.as_bytes())
            .timestamp(tag::SENDING_TIME, now)
            .str(tag::TARGET_COMP_ID, self.cfg.target_comp_id.as_bytes())
            .timestamp(tag::ORIG_SENDING_TIME, now)
            .u64(tag::NEW_SEQ_NO, new_seq)
            .bool(tag::GAP_FILL_FLAG, true);
        out.push(Action::Send(self.enc.finish().to_vec()));
        self.last_sent = now;
    }

    /// Re-send a stored application message with a fresh header.
    fn resend_app(&mut self, m: &Message<'_>, seq: u64, now: Timestamp, out: &mut Vec<Action>) {
        let orig = m.get(tag::SENDING_TIME).unwrap_or_default();
        self.enc
            .start(m.msg_type())
            .u64(tag::MSG_SEQ_NUM, seq)
            .bool(tag::POSS_DUP_FLAG, true)
            .str(tag::SENDER_COMP_ID, self.cfg.sender_comp_id.as_bytes())
            .timestamp(tag::SENDING_TIME, now)
            .str(tag::TARGET_COMP_ID, self.cfg.target_comp_id.as_bytes())
            .str(tag::ORIG_SENDING_TIME, orig);
        for f in m.fields() {
            match f.tag {
                tag::BEGIN_STRING
                | tag::BODY_LENGTH
                | tag::CHECK_SUM
                | tag::MSG_TYPE
                | tag::MSG_SEQ_NUM
                | tag::POSS_DUP_FLAG
                | tag::SENDER_COMP_ID
                | tag::SENDING_TIME
                | tag::TARGET_COMP_ID
                | tag::ORIG_SENDING_TIME
                | tag::POSS_RESEND => {}
                _ => {
                    self.enc.str(f.tag, f.value);
                }
            }
        }
        out.push(Action::Send(self.enc.finish().to_vec()));
        self.last_sent = now;
    }

    fn set_target(&mut self, seq: u64, out: &mut Vec<Action>) {
        if let Err(e) = self.store.set_next_target_seq(seq) {
            self.disconnect(DisconnectReason::Store(e.to_string()), out);
        }
    }

    /// Encode a message with the standard header into `self.enc`.
    fn build(&mut self, msg_type: &[u8], seq: u64, now: Timestamp, body: impl FnOnce(&mut Encoder)) {
        self.enc
            .start(msg_type)
            .u64(tag::MSG_SEQ_NUM, seq)
            .str(tag::SENDER_COMP_ID, self.cfg.sender_comp_id.as_bytes())
            .timestamp(tag::SENDING_TIME, now)
            .str(tag::TARGET_COMP_ID, self.cfg.target_comp_id.as_bytes());
        body(&mut self.enc);
        self.enc.finish();
    }

    /// Send a session message under the next MsgSeqNum (stored so the
    /// sequence stays consistent; it is gap-filled on resend).
    fn send_admin(&mut self, msg_type: &[u8], now: Timestamp, out: &mut Vec<Action>, body: impl FnOnce(&mut Encoder)) {
        let seq = self.store.next_sender_seq();
        self.build(msg_type, seq, now, body);
        if let Err(e) = self.store.store_outbound(seq, self.enc.message()) {
            return self.disconnect(DisconnectReason::Store(e.to_string()), out);
        }
        out.push(Action::Send(self.enc.message().to_vec()));
        self.last_sent = now;
    }

    fn send_reject(
        &mut self,
        ref_seq: u64,
        ref_msg_type: &[u8],
        r: Rejection,
        raw_tag: Option<&[u8]>,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        self.send_reject_text(ref_seq, ref_msg_type, r, raw_tag, r.reason.text(), now, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_reject_text(
        &mut self,
        ref_seq: u64,
        ref_msg_type: &[u8],
        r: Rejection,
        raw_tag: Option<&[u8]>,
        text: &str,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        // RefMsgType echoes what was received, even an invalid MsgType
        // (test case 2.q); parsed values never contain SOH.
        let mt_ok = !ref_msg_type.is_empty();
        self.send_admin(mt::REJECT, now, out, |e| {
            e.u64(tag::REF_SEQ_NUM, ref_seq).str(tag::TEXT, text.as_bytes());
            match (r.raw_tag, raw_tag, r.ref_tag) {
                (true, Some(raw), _) => {
                    e.str(tag::REF_TAG_ID, raw);
                }
                (_, _, Some(t)) => {
                    e.u64(tag::REF_TAG_ID, t as u64);
                }
                _ => {}
            }
            if mt_ok {
                e.str(tag::REF_MSG_TYPE, ref_msg_type);
            }
            e.u64(tag::SESSION_REJECT_REASON, r.reason.code() as u64);
        });
        out.push(Action::Event(SessionEvent::RejectSent { ref_seq, reason: r.reason }));
    }

    fn send_business_reject(&mut self, ref_seq: u64, ref_msg_type: &[u8], now: Timestamp, out: &mut Vec<Action>) {
        self.send_admin(mt::BUSINESS_MESSAGE_REJECT, now, out, |e| {
            e.u64(tag::REF_SEQ_NUM, ref_seq)
                .str(tag::TEXT, b"Unsupported Message Type")
                .str(tag::REF_MSG_TYPE, ref_msg_type)
                .u64(tag::BUSINESS_REJECT_REASON, 3);
        });
        out.push(Action::Event(SessionEvent::BusinessRejectSent { ref_seq }));
    }

    /// Send Logout and wait (logout timeout) for the counterparty's Logout.
    fn send_logout(&mut self, text: Option<&str>, now: Timestamp, out: &mut Vec<Action>) {
        if self.state == State::Disconnected {
            return;
        }
        self.send_admin(mt::LOGOUT, now, out, |e| {
            if let Some(t) = text {
                e.str(tag::TEXT, t.as_bytes());
            }
        });
        if self.state != State::Disconnected {
            self.state = State::LogoutSent;
            self.logout_deadline = now.add_nanos(nanos(self.cfg.logout_timeout));
        }
    }

    fn disconnect(&mut self, reason: DisconnectReason, out: &mut Vec<Action>) {
        if self.state == State::Disconnected {
            return;
        }
        self.state = State::Disconnected;
        self.reset_connection_state();
        out.push(Action::Disconnect(reason));
    }
}
