//! WebSocket streams at /api/v1/ws.
//!
//! Client messages (JSON text):
//! - `{"op":"subscribe","channels":["depth@BTC-USDT","trades@BTC-USDT","ticker@BTC-USDT","candles@BTC-USDT@1m"]}`
//!   (and `unsubscribe`);
//! - `{"op":"login","api_key":K,"timestamp":MS,"signature":HEX}` signed like
//!   a REST request `GET /api/v1/ws` with no query or body, or
//!   `{"op":"login","token":JWT}`: then the account's `orders`, `fills` and
//!   `balances` messages follow;
//! - `{"op":"ping"}` -> `{"op":"pong"}` (protocol-level pings are sent by the server too).
//!
//! Depth diffs carry `first_seq`/`last_seq` (engine sequence numbers) and
//! `prev_seq` (the `last_seq` of the previous diff of that symbol): take a
//! REST snapshot (`seq` S), drop diffs with `last_seq <= S`, start with the
//! first diff whose `prev_seq <= S < last_seq`, then require each diff's
//! `prev_seq` to equal the previous diff's `last_seq` (else resubscribe).
//!
//! Limits: subscriptions per connection, client messages per second,
//! message size, connection lifetime; a client whose buffered stream
//! messages exceed the send buffer is closed with 1008 "slow consumer".

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::SignedParts;
use crate::error::{ApiError, Code};
use crate::gateway::{interval_secs, now_ms, Gateway, Topic};

pub const MAX_WS_MESSAGE: usize = 4 * 1024;
/// A close frame that cannot be written in this time is abandoned (the
/// client's socket is full): the connection is dropped without it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum ClientMsg {
    Subscribe {
        channels: Vec<String>,
    },
    Unsubscribe {
        channels: Vec<String>,
    },
    Login {
        #[serde(default)]
        api_key: Option<String>,
        #[serde(default)]
        timestamp: Option<u64>,
        #[serde(default)]
        signature: Option<String>,
        #[serde(default)]
        recv_window: Option<u64>,
        #[serde(default)]
        token: Option<String>,
    },
    Ping,
}

pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let ip = peer.map(|p| p.0 .0.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Err(e) = gw.charge(ip, None, 2) {
        return e.into_response();
    }
    if gw.ws_connections.load(Ordering::Relaxed) as usize >= gw.cfg.ws.max_connections {
        return ApiError::new(Code::EngineBusy, "too many WebSocket connections").into_response();
    }
    ws.max_message_size(MAX_WS_MESSAGE).max_frame_size(MAX_WS_MESSAGE).on_upgrade(move |socket| async move {
        gw.ws_connections.fetch_add(1, Ordering::Relaxed);
        run(gw.clone(), socket, ip).await;
        gw.ws_connections.fetch_sub(1, Ordering::Relaxed);
    })
}

/// Parses `depth@SYM`, `trades@SYM`, `ticker@SYM`, `candles@SYM@1m`.
pub fn parse_channel(gw: &Gateway, c: &str) -> Result<Topic, String> {
    let mut it = c.split('@');
    let (kind, sym, extra, rest) = (it.next(), it.next(), it.next(), it.next());
    if rest.is_some() {
        return Err(format!("bad channel {c:?}"));
    }
    let st = gw.read();
    let id =
        sym.and_then(|s| st.instruments.by_symbol.get(s).copied()).ok_or_else(|| format!("unknown symbol in {c:?}"))?;
    match (kind, extra) {
        (Some("depth"), None) => Ok(Topic::Depth(id)),
        (Some("trades"), None) => Ok(Topic::Trades(id)),
        (Some("ticker"), None) => Ok(Topic::Ticker(id)),
        (Some("candles"), Some(i)) => {
            interval_secs(i).map(|s| Topic::Candles(id, s)).ok_or_else(|| format!("bad interval in {c:?}"))
        }
        _ => Err(format!("bad channel {c:?}")),
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

fn err_msg(code: u16, message: &str) -> Message {
    Message::Text(json!({"op": "error", "code": code, "message": message}).to_string().into())
}

async fn run(gw: Arc<Gateway>, socket: WebSocket, ip: IpAddr) {
    let limits = gw.cfg.ws;
    let (mut tx, mut rx) = socket.split();
    // Every exit after a limit goes through `close_with`: send our Close,
    // then keep reading (and discarding) until the client's Close or the
    // timeout, as RFC 6455 section 7.1.1 asks. Dropping the socket right
    // after our Close would reset the connection while the client may still
    // be writing, and it would lose the close frame with the reason.
    macro_rules! close_with {
        ($code:expr, $reason:expr) => {{
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                if tx.send(close($code, $reason)).await.is_err() {
                    return;
                }
                while let Some(Ok(m)) = rx.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
            return;
        }};
    }
    let mut push = gw.push.subscribe();
    let mut subs: BTreeSet<Topic> = BTreeSet::new();
    let mut user: Option<u32> = None;
    let deadline = tokio::time::sleep(limits.max_lifetime);
    tokio::pin!(deadline);
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.tick().await;
    let mut last_pong = Instant::now();
    let (mut window, mut count) = (Instant::now(), 0u32);
    let send_timeout = Duration::from_secs(5);
    loop {
        let out: Vec<Message> = tokio::select! {
            _ = &mut deadline => {
                close_with!(1000, "max connection lifetime reached");
            }
            _ = ping.tick() => {
                if last_pong.elapsed() > limits.ping_interval * 3 {
                    close_with!(1011, "no pong");
                }
                vec![Message::Ping(Vec::new().into())]
            }
            m = push.recv() => match m {
                Ok(batch) => batch
                    .iter()
                    .filter(|p| match &p.topic {
                        Topic::User(a) => user == Some(*a),
                        t => subs.contains(t),
                    })
                    .map(|p| Message::Text(p.text.clone().into()))
                    .collect(),
                Err(RecvError::Lagged(_)) => {
                    close_with!(1008, "slow consumer: send buffer full");
                }
                Err(RecvError::Closed) => {
                    close_with!(1001, "gateway shutting down");
                }
            },
            m = rx.next() => {
                let Some(Ok(m)) = m else { return };
                if window.elapsed() >= Duration::from_secs(1) {
                    (window, count) = (Instant::now(), 0);
                }
                count += 1;
                if count > limits.max_messages_per_sec {
                    close_with!(1008, "message rate exceeded");
                }
                match m {
                    Message::Text(t) => vec![on_text(&gw, t.as_str(), &mut subs, &mut user, ip)],
                    Message::Binary(_) => vec![err_msg(Code::BadRequest as u16, "text frames only")],
                    Message::Pong(_) => { last_pong = Instant::now(); vec![] }
                    Message::Ping(_) => vec![], // answered by the library
                    Message::Close(_) => return,
                }
            }
        };
        if out.is_empty() {
            continue;
        }
        // Queue the batch and flush once, within the send timeout: a client
        // whose socket stays full is dropped.
        let sent = tokio::time::timeout(send_timeout, async {
            for m in out {
                tx.feed(m).await?;
            }
            tx.flush().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
    }
}

/// Parses one client message (also fuzzed).
pub fn parse_client(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<ClientMsg>(text).map(|_| ())
}

fn on_text(gw: &Gateway, text: &str, subs: &mut BTreeSet<Topic>, user: &mut Option<u32>, ip: IpAddr) -> Message {
    let msg: ClientMsg = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return err_msg(Code::InvalidJson as u16, &format!("{e}")),
    };
    match msg {
        ClientMsg::Ping => Message::Text(json!({"op": "pong", "time": now_ms()}).to_string().into()),
        ClientMsg::Subscribe { channels } => {
            let mut topics = Vec::new();
            for c in &channels {
                match parse_channel(gw, c) {
                    Ok(t) => topics.push(t),
                    Err(e) => return err_msg(Code::InvalidParameter as u16, &e),
                }
            }
            let new: BTreeSet<_> = topics.into_iter().filter(|t| !subs.contains(t)).collect();
            if subs.len() + new.len() > gw.cfg.ws.max_subscriptions {
                return err_msg(
                    Code::InvalidParameter as u16,
                    &format!("at most {} subscriptions", gw.cfg.ws.max_subscriptions),
                );
            }
            subs.extend(new);
            Message::Text(json!({"op": "subscribed", "channels": channels}).to_string().into())
        }
        ClientMsg::Unsubscribe { channels } => {
            for c in &channels {
                if let Ok(t) = parse_channel(gw, c) {
                    subs.remove(&t);
                }
            }
            Message::Text(json!({"op": "unsubscribed", "channels": channels}).to_string().into())
        }
        ClientMsg::Login { api_key, timestamp, signature, recv_window, token } => {
            let caller = match token {
                Some(t) => match &gw.jwt {
                    Some(v) => v.verify(&t),
                    None => Err(ApiError::new(Code::InvalidToken, "bearer tokens are not configured")),
                },
                None => {
                    let ts = timestamp.map(|t| t.to_string());
                    let rw = recv_window.map(|t| t.to_string());
                    let parts = SignedParts {
                        key: api_key.as_deref(),
                        timestamp: ts.as_deref(),
                        signature: signature.as_deref(),
                        recv_window: rw.as_deref(),
                    };
                    let mut keys = gw.keys.lock().unwrap_or_else(|e| e.into_inner());
                    keys.authenticate(&parts, "GET", "/api/v1/ws", "", b"", Some(ip), now_ms())
                }
            };
            match caller.and_then(|c| crate::auth::require(&c, crate::auth::Scope::Read).map(|_| c)) {
                Ok(c) => {
                    *user = Some(c.account);
                    Message::Text(json!({"op": "login", "account": c.account}).to_string().into())
                }
                Err(e) => err_msg(e.code, &e.message),
            }
        }
    }
}
