//! The tokio transport: a thin layer over the sans-IO session and order layer.
//!
//! Tasks:
//! - one acceptor per listener (plain TCP, TLS); each new connection gets a
//!   short-lived handshake task (TLS handshake, then read until the first
//!   frame is a Logon, bounded in time and size) that hands it to its
//!   session by CompIDs;
//! - one task per configured session owning the [`Session`] and its file
//!   store for the life of the gateway, and the connection while there is
//!   one (so messages produced while the client is away are stored and
//!   recovered by ResendRequest);
//! - one router task owning the [`OrderLayer`], fed by the sessions and by
//!   the engine stream, submitting commands through the [`EngineLink`].
//!
//! Channels: sessions -> router is bounded (a client that floods us is
//! slowed down by TCP back-pressure, the throttle rejects the excess);
//! router -> session is unbounded on purpose: everything on it is produced
//! by engine output, itself bounded by admission (throttle, open-order limit,
//! bounded engine queue), and blocking the router on one slow client would
//! stall every other session.

use crate::config::{Config, SessionSettings};
use crate::dialect::{adapt, Dialect};
use crate::dictionary::Dictionary;
use crate::field::Timestamp;
use crate::link::{EngineLink, EngineRequest, Origin};
use crate::orders::{session_tag, OrderLayer, Outbound, Output, SessionId, REQUEST_BARRIER_BIT};
use crate::session::{peek_logon, Action, Authenticator, Peek, Session, SessionConfig, SessionEvent};
use crate::store::{FileStore, MessageStore};
use crate::validate::UserDefinedTags;
use castle_engine::EventKind;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("opening the store of session {session}: {source}")]
    Store {
        session: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("engine link: {0}")]
    Link(#[from] crate::link::LinkError),
    #[error("configuration: {0}")]
    Config(String),
    /// The gateway's own runtime failed to run its start-up (placement.rs).
    #[error("FIX runtime: {0}")]
    Runtime(String),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Connection {
    stream: Box<dyn Stream>,
    initial: Vec<u8>,
    peer: SocketAddr,
}

/// From the router to a session task, in order. One router step's items
/// for a session travel together, so a report and the release of the
/// message it answers are stored (and persisted) together.
enum ToSession {
    Send(Outbound),
    /// The inbound application message with this MsgSeqNum is finished.
    Done(u64),
}

type ToSessionBatch = Vec<ToSession>;

enum ToRouter {
    App { session: SessionId, msg: crate::session::AppMessage },
    Disconnected(SessionId),
}

/// Username/password check against the session's configuration.
struct PasswordAuth {
    username: Option<String>,
    password: Option<String>,
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // Length leaks, content does not.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator for PasswordAuth {
    fn authenticate(&self, _: &SessionConfig, username: Option<&[u8]>, password: Option<&[u8]>) -> Result<(), String> {
        if let Some(u) = &self.username {
            if !username.is_some_and(|x| ct_eq(x, u.as_bytes())) {
                return Err("Invalid username or password".into());
            }
        }
        if let Some(p) = &self.password {
            if !password.is_some_and(|x| ct_eq(x, p.as_bytes())) {
                return Err("Invalid username or password".into());
            }
        }
        Ok(())
    }
}

fn now() -> Timestamp {
    Timestamp::from_unix_nanos(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0))
}

/// A running gateway.
pub struct Server {
    local_addr: Option<SocketAddr>,
    tls_local_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Address of the plain TCP listener (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }
    /// Stop every task (listeners, sessions, router) without logging out,
    /// as a crash would; session stores are closed when this returns.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
    /// Wait until the gateway stops (it does not by itself).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The session dictionary of a BeginString (validated by the configuration).
fn dictionary_for(begin_string: &str) -> &'static Dictionary {
    let name = match begin_string {
        "FIX.4.2" => "FIX42",
        "FIXT.1.1" => "FIX50SP2",
        _ => "FIX44",
    };
    Dictionary::builtin(name).unwrap_or_else(Dictionary::fix44)
}

fn session_config(s: &SessionSettings, dict: &Dictionary) -> SessionConfig {
    let mut c = SessionConfig::new(&s.sender_comp_id, &s.target_comp_id);
    c.begin_string = s.begin_string.clone();
    c.default_appl_ver_id = s.default_appl_ver_id.clone();
    // Message types this version does not define (q, AF, x in 4.2) are
    // invalid MsgTypes for it, not unsupported ones.
    c.supported_app_msg_types.retain(|t| dict.message(t).is_some());
    c.reset_on_logon = s.reset_on_logon;
    c.sending_time_tolerance = s.sending_time_tolerance;
    if s.allow_user_defined_tags {
        c.validation.user_defined_tags = UserDefinedTags::Allow;
    }
    c
}

fn tls_acceptor(cfg: &Config) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &Path| std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())));
    let cert_path = cfg.tls_certificate.as_deref().ok_or_else(|| ServeError::Tls("no TlsCertificate".into()))?;
    let key_path = cfg.tls_private_key.as_deref().ok_or_else(|| ServeError::Tls("no TlsPrivateKey".into()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &read(cert_path)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert_path.display())))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &read(key_path)?[..])
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key_path.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{}: no private key", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = match &cfg.tls_client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &read(ca)?[..]) {
                let c = c.map_err(|e| ServeError::Tls(format!("{}: {e}", ca.display())))?;
                roots.add(c).map_err(|e| ServeError::Tls(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ServeError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let sc = builder.with_single_cert(certs, key).map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
}

/// Start the gateway: bind the listeners, open the session stores, and run
/// until [`Server::shutdown`]. Must be called inside a tokio runtime.
pub async fn serve(config: Config, link: Arc<dyn EngineLink>) -> Result<Server, ServeError> {
    let mut tasks = Vec::new();
    let mut layer = OrderLayer::new(config.gateway_id, &link.instruments());
    layer.reserve(config.order_capacity);
    layer.set_first_request(link.first_request(config.gateway_id));
    let mut versions: Vec<(&'static Dictionary, Dialect)> = Vec::new();
    let (router_tx, router_rx) = mpsc::channel::<ToRouter>(4096);
    let mut to_sessions = Vec::new();
    let mut tags: HashMap<u32, String> = HashMap::new();
    // (our CompID, their CompID) -> (session, require TLS, connection channel)
    let mut directory: HashMap<(String, String), (SessionId, bool, mpsc::Sender<Connection>)> = HashMap::new();
    for s in &config.sessions {
        let store = FileStore::open(&s.store_dir, &format!("{}-{}", s.sender_comp_id, s.target_comp_id), s.fsync)
            .map_err(|source| ServeError::Store { session: s.target_comp_id.clone(), source })?;
        let auth = PasswordAuth { username: s.username.clone(), password: s.password.clone() };
        let dict = dictionary_for(&s.begin_string);
        versions.push((dict, Dialect::for_begin_string(&s.begin_string)));
        let session = Session::new(session_config(s, dict), dict, store, Box::new(auth));
        let sid = layer.add_session(s.profile.clone());
        let tag = session_tag(&s.sender_comp_id, &s.target_comp_id);
        let name = format!("{}-{}", s.sender_comp_id, s.target_comp_id);
        if let Some(other) = tags.insert(tag, name.clone()) {
            // 1 in a million per pair: rename one of them.
            return Err(ServeError::Config(format!("sessions {other} and {name} have the same request tag")));
        }
        layer.set_session_tag(sid, tag, session.store().engine_mark());
        let (out_tx, out_rx) = mpsc::unbounded_channel::<ToSessionBatch>();
        let (conn_tx, conn_rx) = mpsc::channel::<Connection>(4);
        to_sessions.push(out_tx);
        directory.insert((s.sender_comp_id.clone(), s.target_comp_id.clone()), (sid, s.require_tls, conn_tx));
        tasks.push(tokio::spawn(session_task(session, sid, conn_rx, out_rx, router_tx.clone())));
    }
    // Rebuild the order view from the whole engine stream (orders placed
    // before a restart, fills while the gateway was down), then go live at
    // the barrier. A link without that history starts from an empty view.
    let engine_rx = match link.subscribe_after(0, 65_536) {
        Ok(rx) => {
            match link.last_seq() {
                Some(last) => layer.begin_recovery_until(last),
                None => {
                    // The link cannot say where the replay ends: a barrier command marks it.
                    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
                    let barrier = REQUEST_BARRIER_BIT | (nonce & !REQUEST_BARRIER_BIT).max(1);
                    layer.begin_recovery(barrier);
                    submit_barrier(&link, config.gateway_id, barrier).await?;
                }
            }
            rx
        }
        Err(crate::link::LinkError::CannotResume(_)) => {
            tracing::warn!("engine link has no history: the order view starts empty");
            link.subscribe(65_536)?
        }
        Err(e) => return Err(e.into()),
    };
    tasks.push(tokio::spawn(router_task(layer, router_rx, engine_rx, to_sessions, versions, link)));
    let directory = Arc::new(directory);
    let mut local_addr = None;
    let mut tls_local_addr = None;
    if let Some(addr) = config.listen {
        let l = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        local_addr = l.local_addr().ok();
        tracing::info!(addr = ?local_addr, "FIX gateway listening (TCP)");
        tasks.push(tokio::spawn(accept_task(l, None, directory.clone())));
    }
    if let Some(addr) = config.tls_listen {
        let acceptor = tls_acceptor(&config)?;
        let l = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        tls_local_addr = l.local_addr().ok();
        tracing::info!(addr = ?tls_local_addr, client_auth = config.tls_client_ca.is_some(), "FIX gateway listening (TLS)");
        tasks.push(tokio::spawn(accept_task(l, Some(acceptor), directory.clone())));
    }
    Ok(Server { local_addr, tls_local_addr, tasks })
}

/// Submit the start-up barrier: a `Tick` (harmless: the engine ticks by
/// itself too) whose batch tells the router the replay is over.
async fn submit_barrier(link: &Arc<dyn EngineLink>, gateway: u32, barrier: u64) -> Result<(), ServeError> {
    let req = EngineRequest { origin: Origin { gateway, request: barrier }, command: castle_engine::Command::Tick };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match link.submit(req) {
            Ok(()) => return Ok(()),
            Err(crate::link::LinkError::Busy) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

type Directory = Arc<HashMap<(String, String), (SessionId, bool, mpsc::Sender<Connection>)>>;

/// Connections between accept and Logon (TLS handshake, first frame). Each
/// is bounded in time (10 s) and size; this bounds how many exist at once,
/// so a connection flood cannot exhaust memory or tasks.
const MAX_PENDING_CONNECTIONS: usize = 256;

async fn accept_task(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, directory: Directory) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_CONNECTIONS));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections awaiting logon; closed");
            continue;
        };
        let _ = sock.set_nodelay(true);
        let tls = tls.clone();
        let directory = directory.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let is_tls = tls.is_some();
            let stream: Box<dyn Stream> = match tls {
                None => Box::new(sock),
                Some(acc) => match tokio::time::timeout(Duration::from_secs(10), acc.accept(sock)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => return tracing::info!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::info!(%peer, "TLS handshake timed out"),
                },
            };
            if let Err(why) = handshake(stream, peer, is_tls, &directory).await {
                tracing::info!(%peer, why, "connection refused before logon");
            }
        });
    }
}

/// Read until the first frame is known, and hand the connection to its
/// session. Anything but a Logon for a configured session is closed
/// without an answer (we do not know whom we would be answering).
async fn handshake(
    mut stream: Box<dyn Stream>,
    peer: SocketAddr,
    is_tls: bool,
    directory: &Directory,
) -> Result<(), &'static str> {
    let max = crate::frame::DEFAULT_MAX_MESSAGE_SIZE;
    let mut buf = Vec::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 4096];
    loop {
        match peek_logon(&buf, max) {
            Peek::NeedMore => {}
            Peek::NotLogon => return Err("first message is not a Logon"),
            Peek::Logon { begin_string: _, sender_comp_id, target_comp_id } => {
                let key = (
                    String::from_utf8_lossy(&target_comp_id).into_owned(),
                    String::from_utf8_lossy(&sender_comp_id).into_owned(),
                );
                let Some((sid, require_tls, tx)) = directory.get(&key) else {
                    return Err("unknown CompIDs");
                };
                if *require_tls && !is_tls {
                    return Err("session requires TLS");
                }
                tracing::debug!(%peer, session = sid, "connection handed to session");
                return tx.send(Connection { stream, initial: buf, peer }).await.map_err(|_| "session stopped");
            }
        }
        if buf.len() > max {
            return Err("oversized first message");
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err("closed before logon"),
            Ok(Ok(n)) => n,
            Err(_) => return Err("no logon within 10 s"),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_opt(conn: &mut Option<Connection>, buf: &mut [u8]) -> std::io::Result<usize> {
    match conn {
        Some(c) => c.stream.read(buf).await,
        None => std::future::pending().await,
    }
}

enum Wake {
    Conn(Option<Connection>),
    Read(std::io::Result<usize>),
    App(Option<ToSessionBatch>),
    Timer,
}

async fn session_task(
    mut sess: Session<FileStore>,
    sid: SessionId,
    mut conn_rx: mpsc::Receiver<Connection>,
    mut app_rx: mpsc::UnboundedReceiver<ToSessionBatch>,
    router: mpsc::Sender<ToRouter>,
) {
    let mut conn: Option<Connection> = None;
    let mut actions: Vec<Action> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut wbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let name = format!("{}-{}", sess.config().sender_comp_id, sess.config().target_comp_id);
    loop {
        let sleep = match sess.next_deadline() {
            Some(d) => {
                let wait = d.unix_nanos().saturating_sub(now().unix_nanos()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_nanos(wait)
            }
            None => tokio::time::Instant::now() + Duration::from_secs(3600),
        };
        let wake = tokio::select! {
            c = conn_rx.recv() => Wake::Conn(c),
            r = read_opt(&mut conn, &mut buf) => Wake::Read(r),
            m = app_rx.recv() => Wake::App(m),
            _ = tokio::time::sleep_until(sleep) => Wake::Timer,
        };
        let t = now();
        match wake {
            Wake::Conn(None) => return,
            Wake::Conn(Some(c)) => {
                if conn.is_some() {
                    // Duplicate logon: the established connection wins.
                    tracing::warn!(session = %name, peer = %c.peer, "duplicate logon refused");
                    continue;
                }
                if let Err(e) = sess.on_connect(t) {
                    tracing::warn!(session = %name, error = %e, "connect refused");
                    continue;
                }
                tracing::info!(session = %name, peer = %c.peer, "connected");
                let initial = c.initial.clone();
                conn = Some(c);
                sess.on_bytes(&initial, t, &mut actions);
            }
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                tracing::info!(session = %name, "connection closed by peer");
                conn = None;
                sess.on_disconnected(t);
                let _ = router.send(ToRouter::Disconnected(sid)).await;
                continue;
            }
            Wake::Read(Ok(n)) => sess.on_bytes(&buf[..n], t, &mut actions),
            Wake::App(None) => return,
            Wake::App(Some(m)) => {
                let mut next = Some(m);
                // Drain what is queued so one write carries many reports.
                while let Some(items) = next {
                    for m in items {
                        match m {
                            ToSession::Send(m) => match sess.send_app(m.msg_type, t, &mut actions, |e| {
                                // Header fields first: they follow TargetCompID.
                                if let Some(r) = &m.route {
                                    r.write(e);
                                }
                                e.raw(&m.body);
                            }) {
                                Ok(_) => sess.store_mut().set_engine_mark(m.engine_seq),
                                Err(e) => {
                                    tracing::error!(session = %name, error = %e, "store failure; message not sent")
                                }
                            },
                            ToSession::Done(seq) => sess.store_mut().release_inbound(seq),
                        }
                    }
                    next = if actions.len() < 256 { app_rx.try_recv().ok() } else { None };
                }
                if let Err(e) = sess.store_mut().flush_marks() {
                    tracing::error!(session = %name, error = %e, "store failure writing marks");
                }
            }
            Wake::Timer => sess.on_timer(t, &mut actions),
        }
        let mut disconnect = false;
        for a in actions.drain(..) {
            match a {
                Action::Send(b) => wbuf.extend_from_slice(&b),
                Action::Deliver(m) => {
                    let _ = router.send(ToRouter::App { session: sid, msg: m }).await;
                }
                Action::Disconnect(r) => {
                    tracing::info!(session = %name, reason = %r, "disconnecting");
                    disconnect = true;
                }
                Action::Event(SessionEvent::LoggedOn { username, reset_seq_nums }) => {
                    tracing::info!(session = %name, ?username, reset_seq_nums, "logged on");
                }
                Action::Event(e) => tracing::debug!(session = %name, event = ?e, "session event"),
            }
        }
        if let Some(c) = conn.as_mut() {
            if !wbuf.is_empty() {
                let r = async {
                    c.stream.write_all(&wbuf).await?;
                    c.stream.flush().await
                }
                .await;
                wbuf.clear();
                if r.is_err() {
                    disconnect = true;
                }
            }
            if disconnect {
                let _ = c.stream.shutdown().await;
                conn = None;
                sess.on_disconnected(now());
                let _ = router.send(ToRouter::Disconnected(sid)).await;
            }
        } else {
            wbuf.clear();
        }
    }
}

/// How long the router polls the engine stream after submitting, before
/// going back to sleep. The reply usually comes within microseconds; polling
/// saves the thread wake-up, which costs far more than that on a busy VM.
/// Off by default: on a small shared machine (2 cores here) a polling
/// thread steals the CPU the rest of the pipeline needs. Set
/// `CASTLE_FIX_REPLY_SPIN_US` (e.g. 30) on a host with cores to spare.
fn reply_spin() -> Duration {
    let us = std::env::var("CASTLE_FIX_REPLY_SPIN_US").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_micros(us)
}

fn on_batch(
    layer: &mut OrderLayer,
    link: &Arc<dyn EngineLink>,
    batch: &crate::link::EngineBatch,
    out: &mut Vec<Output>,
) {
    if batch.events.iter().any(|e| matches!(e.kind, EventKind::InstrumentAdded { .. })) {
        layer.set_instruments(&link.instruments());
    }
    layer.on_engine(batch, out);
}

/// Submit commands and hand messages to sessions; true if anything was submitted.
/// The router's side of the sessions: their channels, dictionaries and
/// dialects, by session id.
struct Sessions {
    tx: Vec<mpsc::UnboundedSender<ToSessionBatch>>,
    versions: Vec<(&'static Dictionary, Dialect)>,
}

fn dispatch(layer: &mut OrderLayer, link: &Arc<dyn EngineLink>, sessions: &Sessions, out: &mut Vec<Output>) -> bool {
    let gateway = layer.gateway();
    let mut submitted = false;
    let mut i = 0;
    while i < out.len() {
        if let Output::Submit { request, command } = &out[i] {
            let req = EngineRequest { origin: Origin { gateway, request: *request }, command: *command };
            match link.submit(req) {
                Ok(()) => submitted = true,
                Err(e) => {
                    let reason = match e {
                        crate::link::LinkError::Busy => "Engine busy, retry",
                        crate::link::LinkError::Stopped | crate::link::LinkError::CannotResume(_) => {
                            "Engine unavailable"
                        }
                    };
                    let mut extra = Vec::new();
                    layer.on_submit_failed(*request, reason, &mut extra);
                    out.extend(extra);
                }
            }
        }
        i += 1;
    }
    // Group per session (order kept within each): one channel send and one
    // wake-up per session, and a report travels with the release of the
    // message it answers.
    let mut groups: Vec<(SessionId, ToSessionBatch)> = Vec::new();
    for o in out.drain(..) {
        let (session, m) = match o {
            Output::Send(mut m) => {
                if let Some(&(dict, dialect)) = sessions.versions.get(m.session) {
                    adapt(dialect, dict, m.msg_type, &mut m.body);
                }
                (m.session, ToSession::Send(m))
            }
            Output::Done { session, seq } => (session, ToSession::Done(seq)),
            Output::Submit { .. } => continue,
        };
        match groups.iter_mut().find(|(s, _)| *s == session) {
            Some((_, items)) => items.push(m),
            None => groups.push((session, vec![m])),
        }
    }
    for (s, items) in groups {
        if let Some(tx) = sessions.tx.get(s) {
            let _ = tx.send(items);
        }
    }
    submitted
}

async fn router_task(
    mut layer: OrderLayer,
    mut rx: mpsc::Receiver<ToRouter>,
    mut engine: mpsc::Receiver<Arc<crate::link::EngineBatch>>,
    tx: Vec<mpsc::UnboundedSender<ToSessionBatch>>,
    versions: Vec<(&'static Dictionary, Dialect)>,
    link: Arc<dyn EngineLink>,
) {
    let sessions = Sessions { tx, versions };
    let mut out: Vec<Output> = Vec::new();
    let spin = reply_spin();
    // Last engine seq seen: a durable engine closes the stream of a subscriber that fell too far
    // behind (it never slows matching for one); the router then resumes right after it.
    let mut last_seq: Option<castle_engine::Seq> = None;
    loop {
        // Client messages wait until the replay of the engine stream is over:
        // they may refer to orders the replay has not reached yet.
        let replaying = layer.recovering();
        tokio::select! {
            m = rx.recv(), if !replaying => match m {
                None => return,
                Some(ToRouter::App { session, msg }) => {
                    // Parsed and validated by the session already.
                    layer.on_message(session, &msg.message(), msg.seq, now().unix_nanos().max(0) as u64, &mut out)
                }
                Some(ToRouter::Disconnected(session)) => layer.on_disconnect(session, &mut out),
            },
            b = engine.recv() => match b {
                None => {
                    let resumed = match last_seq {
                        Some(seq) => link.subscribe_after(seq, 65_536),
                        None => link.subscribe(65_536),
                    };
                    match resumed {
                        Ok(rx) => {
                            tracing::warn!(after = ?last_seq, "engine stream closed: resumed");
                            engine = rx;
                        }
                        Err(e) => return tracing::error!(error = %e, "engine stream ended"),
                    }
                }
                Some(batch) => {
                    last_seq = Some(batch.seq);
                    on_batch(&mut layer, &link, &batch, &mut out);
                }
            },
        }
        let submitted = dispatch(&mut layer, &link, &sessions, &mut out);
        // A link that applies commands on the caller's thread (or answers
        // very fast) has the replies queued already: take them now rather
        // than after a round through the scheduler. Costs one empty
        // `try_recv` otherwise.
        if submitted {
            while let Ok(batch) = engine.try_recv() {
                last_seq = Some(batch.seq);
                on_batch(&mut layer, &link, &batch, &mut out);
                dispatch(&mut layer, &link, &sessions, &mut out);
            }
        }
        if submitted && !spin.is_zero() {
            let t0 = std::time::Instant::now();
            while t0.elapsed() < spin {
                match engine.try_recv() {
                    Ok(batch) => {
                        last_seq = Some(batch.seq);
                        on_batch(&mut layer, &link, &batch, &mut out);
                        dispatch(&mut layer, &link, &sessions, &mut out);
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => std::hint::spin_loop(),
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
        }
    }
}
