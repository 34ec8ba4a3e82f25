//! The gateway's shared state: instruments, derived market data and account
//! state built from the engine stream, pending requests waiting for their
//! batch, API keys and rate limits. The stream consumer is the only writer
//! of market and account state; handlers read under short lock sections and
//! never hold a lock across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use castle_engine::{
    AssetId, ClientOrderId, EventKind, InstrumentId, InstrumentSpec, OrderKind, Price, Seq, Side, StpMode, TimeInForce,
    TradingStatus,
};
use castle_link::{EngineBatch, EngineLink, EngineRequest, LinkError, Origin};
use castle_marketdata::MarketData;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::accounts::{AccountLimits, Accounts, Fill, OrderRecord};
use crate::api::*;
use crate::auth::{ApiKey, JwtVerifier, KeyStore, Scopes};
use crate::decimal::{
    notional_dec, notional_str, price_dec, price_str, qty_dec, qty_str, units_dec, units_str, write_json_decimal,
};
use crate::error::{ApiError, Code};
use crate::hashing::Map;
use crate::limits::{RateConfig, RateLimiter};

/// WebSocket limits.
#[derive(Clone, Copy, Debug)]
pub struct WsLimits {
    pub max_subscriptions: usize,
    /// Client messages per second (subscribe, ping, ...).
    pub max_messages_per_sec: u32,
    pub max_lifetime: Duration,
    pub ping_interval: Duration,
    /// Messages buffered for one connection before it is dropped as too slow.
    pub send_buffer: usize,
    /// Connections at once.
    pub max_connections: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_subscriptions: 50,
            max_messages_per_sec: 20,
            max_lifetime: Duration::from_secs(24 * 3600),
            ping_interval: Duration::from_secs(20),
            send_buffer: 4096,
            max_connections: 10_000,
        }
    }
}

#[derive(Clone)]
pub struct RestConfig {
    pub gateway_id: u32,
    pub rate: RateConfig,
    pub accounts: AccountLimits,
    /// Open orders per account admitted through this gateway.
    pub max_open_orders: usize,
    /// How long a request waits for its engine batch before answering "status unknown".
    pub order_timeout: Duration,
    pub cors_origins: Vec<String>,
    pub master_key: Vec<u8>,
    pub ws: WsLimits,
    /// Longest query string accepted.
    pub max_query_len: usize,
    /// Serve order history (`allOrders`, order by id) and fills (`myTrades`)
    /// from the settlement ledger merged with memory; None: memory only
    /// (the last `accounts.max_history` orders and `max_fills` fills).
    pub history: Option<Arc<dyn crate::history::OrderHistory>>,
    /// Single sign-on for the trading page (authorization code + PKCE
    /// against an OIDC provider); the bearer tokens it yields are verified
    /// by the gateway's [`JwtVerifier`]. None: API-key login only.
    pub oidc: Option<crate::page::OidcLogin>,
}

impl RestConfig {
    pub fn new(gateway_id: u32, master_key: Vec<u8>) -> Self {
        RestConfig {
            gateway_id,
            rate: RateConfig::default(),
            accounts: AccountLimits::default(),
            max_open_orders: 1_000,
            order_timeout: Duration::from_secs(5),
            cors_origins: Vec::new(),
            master_key,
            ws: WsLimits::default(),
            max_query_len: 1_024,
            history: None,
            oidc: None,
        }
    }
}

/// A message for WebSocket subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Depth(InstrumentId),
    Trades(InstrumentId),
    Ticker(InstrumentId),
    /// Interval in seconds.
    Candles(InstrumentId, u64),
    User(u32),
}

#[derive(Debug)]
pub struct Push {
    pub topic: Topic,
    pub text: String,
    /// Engine time of the batch (ns), for delivery-latency measurements.
    pub ts: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Instruments {
    pub specs: BTreeMap<InstrumentId, InstrumentSpec>,
    pub by_symbol: HashMap<String, InstrumentId>,
    /// Asset names and decimals, from the instruments' symbols (BASE-QUOTE).
    pub assets: BTreeMap<AssetId, (String, u32)>,
}

impl Instruments {
    pub fn from_specs(specs: &[InstrumentSpec]) -> Self {
        let mut i = Instruments::default();
        for s in specs {
            let sym = s.symbol.as_str().to_string();
            let (b, q) = sym
                .split_once(['-', '/'])
                .map(|(b, q)| (b.to_string(), q.to_string()))
                .unwrap_or_else(|| (format!("ASSET{}", s.base), format!("ASSET{}", s.quote)));
            i.assets.entry(s.base).or_insert((b, s.scaling.base_decimals));
            i.assets.entry(s.quote).or_insert((q, s.scaling.quote_decimals));
            i.by_symbol.insert(sym, s.id);
            i.specs.insert(s.id, *s);
        }
        i
    }

    pub fn by_symbol(&self, sym: &str) -> Result<&InstrumentSpec, ApiError> {
        self.by_symbol
            .get(sym)
            .and_then(|id| self.specs.get(id))
            .ok_or_else(|| ApiError::new(Code::UnknownSymbol, format!("unknown symbol {sym:?}")))
    }

    pub fn asset_name(&self, a: AssetId) -> String {
        self.assets.get(&a).map(|x| x.0.clone()).unwrap_or_else(|| format!("ASSET{a}"))
    }
}

pub struct State {
    pub instruments: Instruments,
    pub md: MarketData,
    pub accounts: Accounts,
    /// Last engine seq applied.
    pub seq: Seq,
    /// Per instrument, the seq of the last depth diff published.
    last_diff: HashMap<InstrumentId, Seq>,
    pub status: HashMap<InstrumentId, TradingStatus>,
}

/// Requests waiting for their engine batch.
#[derive(Default)]
struct PendingTable {
    waiters: Map<u64, Waiters>,
    /// Keyed by the engine's fixed-size id: no string copies per order.
    by_client: Map<(u32, ClientOrderId), u64>,
    client_of: Map<u64, (u32, ClientOrderId)>,
}

/// The requests waiting for one batch: nearly always one (a concurrent
/// retry of the same client order id adds more), held without a `Vec`
/// allocation per request.
#[derive(Default)]
struct Waiters {
    first: Option<oneshot::Sender<Arc<EngineBatch>>>,
    more: Vec<oneshot::Sender<Arc<EngineBatch>>>,
}

impl Waiters {
    fn one(tx: oneshot::Sender<Arc<EngineBatch>>) -> Self {
        Waiters { first: Some(tx), more: Vec::new() }
    }

    fn push(&mut self, tx: oneshot::Sender<Arc<EngineBatch>>) {
        match self.first {
            None => self.first = Some(tx),
            Some(_) => self.more.push(tx),
        }
    }
}

impl IntoIterator for Waiters {
    type Item = oneshot::Sender<Arc<EngineBatch>>;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Self::Item>, std::vec::IntoIter<Self::Item>>;
    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.more)
    }
}

/// Most engine batches the stream consumer applies under one lock.
const STREAM_CHUNK: usize = 256;

/// The gateway's subscription to the engine stream. Whoever holds it (the
/// stream task, or a request that just submitted, see [`Gateway::pump`])
/// drains it and applies what it took before letting go, so batches are
/// applied once each and in order.
struct Stream {
    rx: mpsc::Receiver<Arc<EngineBatch>>,
    batches: Vec<Arc<EngineBatch>>,
}

/// Most requests in flight at once (beyond: 503, engine busy).
pub const MAX_PENDING: usize = 65_536;

pub struct Gateway {
    pub cfg: RestConfig,
    pub link: Arc<dyn EngineLink>,
    next_request: AtomicU64,
    pub state: RwLock<State>,
    pending: Mutex<PendingTable>,
    /// The engine stream (None until [`Gateway::start_stream`]).
    stream: Mutex<Option<Stream>>,
    pub keys: Mutex<KeyStore>,
    pub limiter: Mutex<RateLimiter>,
    pub jwt: Option<JwtVerifier>,
    /// Stream messages, one vector per engine batch (a connection wakes once
    /// per batch, not once per message).
    pub push: broadcast::Sender<Arc<Vec<Push>>>,
    pub ws_connections: AtomicU64,
    /// Rendered depth snapshots by (instrument, limit), with the book seq they show.
    pub depth_cache: Mutex<HashMap<(InstrumentId, usize), (Seq, axum::body::Bytes)>>,
}

/// Depth renderings kept (instruments x distinct limits asked for).
pub const DEPTH_CACHE_ENTRIES: usize = 1_024;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent-enough state for
    // these tables (each update is a single insert/remove).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gateway {
    pub fn new(cfg: RestConfig, link: Arc<dyn EngineLink>, jwt: Option<JwtVerifier>) -> Arc<Gateway> {
        let instruments = Instruments::from_specs(&link.instruments());
        // Unique across restarts of a journal-backed engine (see `EngineLink::first_request`).
        let first_request = link.first_request(cfg.gateway_id);
        let (push, _) = broadcast::channel(cfg.ws.send_buffer.max(16));
        Arc::new(Gateway {
            keys: Mutex::new(KeyStore::new(cfg.master_key.clone())),
            limiter: Mutex::new(RateLimiter::new(cfg.rate)),
            state: RwLock::new(State {
                instruments,
                md: MarketData::new(),
                accounts: Accounts::new(cfg.accounts),
                seq: 0,
                last_diff: HashMap::new(),
                status: HashMap::new(),
            }),
            cfg,
            link,
            next_request: AtomicU64::new(first_request),
            pending: Mutex::new(PendingTable::default()),
            stream: Mutex::new(None),
            jwt,
            push,
            ws_connections: AtomicU64::new(0),
            depth_cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Persists API keys in `vault` from now on and loads the keys it holds;
    /// returns how many were loaded. Call before serving.
    pub fn attach_key_vault(&self, vault: crate::vault::KeyVault) -> Result<usize, crate::vault::VaultError> {
        lock(&self.keys).attach_vault(vault)
    }

    /// Adds a configured API key with a chosen id; returns its secret (None:
    /// this id was revoked through the API and stays revoked).
    pub fn add_key(&self, id: &str, account: u32, scopes: Scopes) -> Option<String> {
        lock(&self.keys).insert(ApiKey {
            id: id.to_string(),
            account,
            scopes,
            allowed_ips: vec![],
            label: "configured".into(),
            created_ms: now_ms(),
        })
    }

    /// Consumes the engine stream: subscribe from the start when the link
    /// keeps history (balances of the set-up deposits), else live.
    pub fn start_stream(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, LinkError> {
        let rx = match self.link.subscribe_after(0, 65_536) {
            Ok(rx) => rx,
            Err(LinkError::CannotResume(_)) => self.link.subscribe(65_536)?,
            Err(e) => return Err(e),
        };
        *lock(&self.stream) = Some(Stream { rx, batches: Vec::with_capacity(STREAM_CHUNK) });
        let gw = self.clone();
        Ok(tokio::spawn(async move {
            while std::future::poll_fn(|cx| gw.poll_stream(cx)).await {}
            tracing::warn!("engine stream ended");
        }))
    }

    /// The stream task's step: applies everything queued (up to
    /// [`STREAM_CHUNK`] batches under one state lock and one pending-table
    /// lock; under load the engine is ahead of us). Ready(false): the
    /// stream ended. While a request is pumping, the task yields and comes
    /// back rather than block a worker thread on the lock.
    fn poll_stream(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut guard = match self.stream.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        };
        let Some(s) = guard.as_mut() else { return Poll::Ready(false) };
        match s.rx.poll_recv_many(cx, &mut s.batches, STREAM_CHUNK) {
            Poll::Ready(0) => Poll::Ready(false),
            Poll::Ready(_) => {
                self.on_batches(&mut s.batches);
                Poll::Ready(true)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Applies what the engine stream holds now, on the calling request's
    /// task, unless someone else is at it. A request calls this right after
    /// submitting: with the in-process engine's inline placement its batch
    /// is already queued, so it is applied here and the request's own wait
    /// is over without a hand-off to the stream task and back (which cost
    /// two task wake-ups per order, and on 2 cores often a thread switch).
    pub fn pump(&self) {
        let mut guard = match self.stream.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let Some(s) = guard.as_mut() else { return };
        while s.batches.len() < STREAM_CHUNK {
            match s.rx.try_recv() {
                Ok(b) => s.batches.push(b),
                Err(_) => break,
            }
        }
        if !s.batches.is_empty() {
            self.on_batches(&mut s.batches);
        }
    }

    /// Applies one batch to the state, publishes its stream messages and
    /// wakes the request waiting for it. State first: a woken request reads
    /// the order it placed.
    pub fn on_batch(&self, batch: Arc<EngineBatch>) {
        self.on_batches(&mut vec![batch]);
    }

    /// [`Gateway::on_batch`] for consecutive batches (drained from `batches`),
    /// in order: all of them are applied before any request is woken.
    pub fn on_batches(&self, batches: &mut Vec<Arc<EngineBatch>>) {
        let mut pushes = Vec::new();
        {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            // Messages are rendered only when someone listens.
            let publish = self.push.receiver_count() > 0;
            for batch in batches.iter() {
                if batch.events.iter().any(|e| matches!(e.kind, EventKind::InstrumentAdded { .. })) {
                    st.instruments = Instruments::from_specs(&self.link.instruments());
                }
                pushes.extend(st.apply(batch, publish));
            }
        }
        if !pushes.is_empty() {
            // No receivers is fine.
            let _ = self.push.send(Arc::new(pushes));
        }
        let mine = |b: &EngineBatch| b.origin.filter(|o| o.gateway == self.cfg.gateway_id).map(|o| o.request);
        if !batches.iter().any(|b| mine(b).is_some()) {
            batches.clear();
            return;
        }
        let mut wake = Vec::new();
        {
            let mut p = lock(&self.pending);
            for batch in batches.drain(..) {
                let Some(request) = mine(&batch) else { continue };
                if let Some(key) = p.client_of.remove(&request) {
                    p.by_client.remove(&key);
                }
                if let Some(waiters) = p.waiters.remove(&request) {
                    wake.push((waiters, batch));
                }
            }
        }
        for (waiters, batch) in wake {
            for w in waiters {
                let _ = w.send(batch.clone());
            }
        }
    }

    /// Submits a command and waits for its batch.
    pub async fn submit(&self, command: castle_engine::Command) -> Result<Arc<EngineBatch>, ApiError> {
        let (rx, _) = self.submit_inner(command)?;
        self.pump();
        self.wait(rx).await
    }

    /// Submits a new order keyed by (account, client order id) so that a
    /// concurrent retry waits for the same batch. `existing` is consulted
    /// under the pending lock: an order already known wins.
    pub async fn submit_order(
        &self,
        order: castle_engine::NewOrder,
        account: u32,
    ) -> Result<Result<Arc<EngineBatch>, OrderRecord>, ApiError> {
        let id = order.client_order_id;
        let rx = {
            let mut p = lock(&self.pending);
            let key = (account, id);
            if let Some(&req) = p.by_client.get(&key) {
                let (tx, rx) = oneshot::channel();
                p.waiters.entry(req).or_default().push(tx);
                rx
            } else {
                // State is updated before pending entries are removed, so an
                // order is either pending or already in the state here.
                if let Some(o) = self.read().accounts.get(account).and_then(|a| a.by_client_id(id.as_str())).cloned() {
                    return Ok(Err(o));
                }
                let (rx, req) = self.submit_locked(&mut p, castle_engine::Command::PlaceOrder(order))?;
                p.by_client.insert(key, req);
                p.client_of.insert(req, key);
                rx
            }
        };
        self.pump();
        self.wait(rx).await.map(Ok)
    }

    fn submit_inner(
        &self,
        command: castle_engine::Command,
    ) -> Result<(oneshot::Receiver<Arc<EngineBatch>>, u64), ApiError> {
        let mut p = lock(&self.pending);
        self.submit_locked(&mut p, command)
    }

    fn submit_locked(
        &self,
        p: &mut PendingTable,
        command: castle_engine::Command,
    ) -> Result<(oneshot::Receiver<Arc<EngineBatch>>, u64), ApiError> {
        if p.waiters.len() >= MAX_PENDING {
            return Err(ApiError::new(Code::EngineBusy, "too many requests in flight"));
        }
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        // Registered before submitting: the batch may come back before
        // `submit` returns.
        p.waiters.insert(request, Waiters::one(tx));
        match self.link.submit(EngineRequest { origin: Origin { gateway: self.cfg.gateway_id, request }, command }) {
            Ok(()) => Ok((rx, request)),
            Err(e) => {
                p.waiters.remove(&request);
                Err(match e {
                    LinkError::Busy => ApiError::new(Code::EngineBusy, "engine busy, nothing was submitted: retry"),
                    _ => ApiError::new(Code::EngineStopped, "engine unavailable"),
                })
            }
        }
    }

    async fn wait(&self, mut rx: oneshot::Receiver<Arc<EngineBatch>>) -> Result<Arc<EngineBatch>, ApiError> {
        // Usually the batch is here already (applied by `pump` on this very
        // task): answer without arming a timer.
        if let Ok(b) = rx.try_recv() {
            return Ok(b);
        }
        match tokio::time::timeout(self.cfg.order_timeout, rx).await {
            Ok(Ok(b)) => Ok(b),
            _ => Err(ApiError::new(
                Code::StatusUnknown,
                "no answer from the engine in time: the request may or may not have been applied; \
                 query the order by client_order_id before retrying",
            )),
        }
    }

    pub fn charge_key_only(&self, key: &str, weight: u32) -> Result<u32, ApiError> {
        lock(&self.limiter).charge_key(key, weight, now_ms()).map_err(|l| limited(l, "x-ratelimit-key-used-weight-1m"))
    }

    pub fn charge(&self, ip: IpAddr, key: Option<&str>, weight: u32) -> Result<crate::limits::Used, ApiError> {
        lock(&self.limiter).charge(ip, key, weight, now_ms()).map_err(|l| limited(l, "x-ratelimit-used-weight-1m"))
    }
}

/// A 429 with Retry-After and the weight used in the window (`header`: the IP's or the key's).
fn limited(l: crate::limits::Limited, header: &'static str) -> ApiError {
    match l {
        crate::limits::Limited::Over { retry_after_s, used } => {
            let mut e =
                ApiError::new(Code::RateLimited, "request weight limit exceeded").with_retry_after(retry_after_s);
            e.used_weight = Some((header, used));
            e
        }
        crate::limits::Limited::Banned { retry_after_s } => {
            ApiError::new(Code::Banned, "temporarily banned after repeated 429s").with_retry_after(retry_after_s)
        }
    }
}

fn side_dto(s: Side) -> SideDto {
    match s {
        Side::Buy => SideDto::Buy,
        Side::Sell => SideDto::Sell,
    }
}

pub fn ns_to_ms(ns: u64) -> u64 {
    ns / 1_000_000
}

impl State {
    /// Applies a batch to the market data and accounts; returns the stream messages it produced.
    fn apply(&mut self, batch: &EngineBatch, publish: bool) -> Vec<Push> {
        let mut touched: BTreeSet<(InstrumentId, Side, Price)> = BTreeSet::new();
        let mut traded: BTreeSet<InstrumentId> = BTreeSet::new();
        let mut trades = Vec::new();
        for e in &batch.events {
            let inst_book = |md: &MarketData, i: InstrumentId, id| {
                md.instrument(i).and_then(|d| d.book.get(id)).map(|o| (o.side, o.price))
            };
            match e.kind {
                EventKind::BookAdd { instrument, side, price, .. } => {
                    touched.insert((instrument, side, price));
                }
                EventKind::BookReduce { instrument, order_id, .. } | EventKind::BookRemove { instrument, order_id } => {
                    if let Some((s, p)) = inst_book(&self.md, instrument, order_id) {
                        touched.insert((instrument, s, p));
                    }
                }
                EventKind::Trade { instrument, maker_order, .. } => {
                    if let Some((s, p)) = inst_book(&self.md, instrument, maker_order) {
                        touched.insert((instrument, s, p));
                    }
                    traded.insert(instrument);
                    trades.push(e.kind);
                }
                EventKind::TradingStatusChanged { instrument, status } => {
                    self.status.insert(instrument, status);
                }
                _ => {}
            }
            if let Err(err) = self.md.apply_one(e) {
                // A gap or an inconsistent stream: log loudly; the book is
                // left as before that event.
                tracing::error!(%err, "market data could not apply an engine event");
            }
        }
        let changes = self.accounts.apply(&batch.events);
        self.seq = batch.seq;
        let mut out = Vec::new();
        if !publish {
            // Keep the diff chain right for later subscribers.
            for (inst, _, _) in &touched {
                self.last_diff.insert(*inst, batch.seq);
            }
            return out;
        }
        let ts = batch.ts;
        // Depth diffs, one per instrument touched.
        type Levels = Vec<[String; 2]>;
        let mut by_inst: BTreeMap<InstrumentId, (Levels, Levels)> = BTreeMap::new();
        for (inst, side, price) in touched {
            let (Some(spec), Some(d)) = (self.instruments.specs.get(&inst), self.md.instrument(inst)) else { continue };
            let q = d.book.level(side, price).map(|l| l.qty).unwrap_or(0);
            let entry = [price_str(spec, price), qty_str(spec, q)];
            let e = by_inst.entry(inst).or_default();
            match side {
                Side::Buy => e.0.push(entry),
                Side::Sell => e.1.push(entry),
            }
        }
        for (inst, (bids, asks)) in by_inst {
            let Some(spec) = self.instruments.specs.get(&inst) else { continue };
            let prev = self.last_diff.insert(inst, batch.seq).unwrap_or(0);
            out.push(Push {
                topic: Topic::Depth(inst),
                ts,
                text: json!({"stream": "depth", "symbol": spec.symbol.as_str(), "first_seq": batch.seq,
                    "last_seq": batch.seq, "prev_seq": prev, "time": ns_to_ms(ts), "bids": bids, "asks": asks})
                .to_string(),
            });
        }
        for t in trades {
            if let EventKind::Trade { trade_id, instrument, price, qty, aggressor, .. } = t {
                let Some(spec) = self.instruments.specs.get(&instrument) else { continue };
                out.push(Push {
                    topic: Topic::Trades(instrument),
                    ts,
                    text: json!({"stream": "trades", "symbol": spec.symbol.as_str(), "trade_id": trade_id,
                        "price": price_str(spec, price), "quantity": qty_str(spec, qty), "taker_side": side_dto(aggressor),
                        "time": ns_to_ms(ts), "seq": batch.seq})
                    .to_string(),
                });
            }
        }
        for inst in traded {
            let Some(spec) = self.instruments.specs.get(&inst) else { continue };
            if let Some(d) = self.md.instrument(inst) {
                let mut v = serde_json::to_value(ticker_view(spec, &d.ticker())).unwrap_or_default();
                v["stream"] = json!("ticker");
                out.push(Push { topic: Topic::Ticker(inst), ts, text: v.to_string() });
                for series in &d.candles {
                    if let Some(c) = &series.current {
                        let mut v = serde_json::to_value(candle_view(spec, c)).unwrap_or_default();
                        v["stream"] = json!("candles");
                        v["symbol"] = json!(spec.symbol.as_str());
                        v["interval"] = json!(interval_name(series.interval));
                        out.push(Push { topic: Topic::Candles(inst, series.interval), ts, text: v.to_string() });
                    }
                }
            }
        }
        // User streams.
        let mut seen = BTreeSet::new();
        for (account, id) in changes.orders {
            if !seen.insert((account, id)) {
                continue;
            }
            if let Some(o) = self.accounts.get(account).and_then(|a| a.order(id)) {
                if let Some(v) = order_view(&self.instruments, o, None) {
                    let mut v = serde_json::to_value(v).unwrap_or_default();
                    v["stream"] = json!("orders");
                    out.push(Push { topic: Topic::User(account), ts, text: v.to_string() });
                }
            }
        }
        for (account, f) in changes.fills {
            if let Some(v) = fill_view(&self.instruments, &f) {
                let mut v = serde_json::to_value(v).unwrap_or_default();
                v["stream"] = json!("fills");
                out.push(Push { topic: Topic::User(account), ts, text: v.to_string() });
            }
        }
        let mut seen = BTreeSet::new();
        for (account, asset) in changes.balances {
            if !seen.insert((account, asset)) {
                continue;
            }
            if let Some(b) = self.accounts.get(account).and_then(|a| a.balances.get(&asset)) {
                let dec = self.instruments.assets.get(&asset).map(|a| a.1).unwrap_or(8);
                out.push(Push {
                    topic: Topic::User(account),
                    ts,
                    text: json!({"stream": "balances", "asset": self.instruments.asset_name(asset),
                        "available": units_str(b.available, dec), "locked": units_str(b.locked, dec), "seq": b.seq})
                    .to_string(),
                });
            }
        }
        out
    }
}

pub fn interval_name(secs: u64) -> &'static str {
    match secs {
        60 => "1m",
        300 => "5m",
        900 => "15m",
        3_600 => "1h",
        14_400 => "4h",
        86_400 => "1d",
        _ => "?",
    }
}

pub fn interval_secs(name: &str) -> Option<u64> {
    Some(match name {
        "1m" => 60,
        "5m" => 300,
        "15m" => 900,
        "1h" => 3_600,
        "4h" => 14_400,
        "1d" => 86_400,
        _ => return None,
    })
}

pub fn candle_view(spec: &InstrumentSpec, c: &castle_marketdata::Candle) -> CandleView {
    CandleView {
        open_time: ns_to_ms(c.open_time),
        close_time: ns_to_ms(c.open_time) + c.interval * 1000 - 1,
        open: price_str(spec, c.open),
        high: price_str(spec, c.high),
        low: price_str(spec, c.low),
        close: price_str(spec, c.close),
        volume: qty_str(spec, c.volume),
        quote_volume: notional_str(spec, c.quote_volume),
        trades: c.trades,
        seq: c.seq,
    }
}

pub fn ticker_view(spec: &InstrumentSpec, t: &castle_marketdata::Ticker) -> TickerView {
    let has = t.trades > 0;
    let p = |v: Price| has.then(|| price_str(spec, v));
    let lvl = |x: Option<(Price, i64)>| x.map(|(p, q)| [price_str(spec, p), qty_str(spec, q)]);
    TickerView {
        symbol: spec.symbol.as_str().to_string(),
        open: p(t.open),
        high: p(t.high),
        low: p(t.low),
        last: (t.last > 0).then(|| price_str(spec, t.last)),
        change: has.then(|| {
            let d = spec.scaling.ticks_to_price(t.change);
            d.normalize().to_string()
        }),
        volume: qty_str(spec, t.volume),
        quote_volume: notional_str(spec, t.quote_volume),
        trades: t.trades,
        best_bid: lvl(t.best_bid),
        best_ask: lvl(t.best_ask),
        seq: t.seq,
        time: ns_to_ms(t.ts),
    }
}

pub fn fill_view(ins: &Instruments, f: &Fill) -> Option<FillView> {
    let spec = ins.specs.get(&f.instrument)?;
    Some(FillView {
        fill_id: f.fill_id,
        trade_id: f.trade_id,
        order_id: f.order_id,
        symbol: spec.symbol.as_str().to_string(),
        side: side_dto(f.side),
        price: price_str(spec, f.price),
        quantity: qty_str(spec, f.qty),
        fee: units_str(f.fee, spec.scaling.quote_decimals),
        fee_asset: ins.asset_name(spec.quote),
        maker: f.maker,
        time: ns_to_ms(f.ts),
        seq: f.seq,
    })
}

fn tif_dto(tif: TimeInForce) -> (TifDto, Option<u64>) {
    match tif {
        TimeInForce::Gtc => (TifDto::Gtc, None),
        TimeInForce::Ioc => (TifDto::Ioc, None),
        TimeInForce::Fok => (TifDto::Fok, None),
        // 0: unknown (orders read from the settlement ledger, which keeps no expiry).
        TimeInForce::Gtd(t) => (TifDto::Gtd, (t > 0).then(|| ns_to_ms(t))),
        TimeInForce::Day => (TifDto::Day, None),
    }
}

fn order_type_dto(kind: OrderKind) -> OrderTypeDto {
    match kind {
        OrderKind::Limit => OrderTypeDto::Limit,
        OrderKind::Market => OrderTypeDto::Market,
        OrderKind::StopMarket => OrderTypeDto::StopMarket,
        OrderKind::StopLimit => OrderTypeDto::StopLimit,
    }
}

fn stp_dto(s: StpMode) -> StpDto {
    match s {
        StpMode::None => StpDto::None,
        StpMode::CancelNewest => StpDto::CancelNewest,
        StpMode::CancelOldest => StpDto::CancelOldest,
        StpMode::CancelBoth => StpDto::CancelBoth,
        StpMode::DecrementAndCancel => StpDto::DecrementAndCancel,
    }
}

/// The API's name of a cancel reason: the engine's variant name in capitals
/// (a static string: an IOC placement's answer carries one every time).
fn cancel_reason_name(r: castle_engine::CancelReason) -> &'static str {
    use castle_engine::CancelReason as R;
    match r {
        R::Requested => "REQUESTED",
        R::MassCancel => "MASSCANCEL",
        R::KillSwitch => "KILLSWITCH",
        R::Unfilled => "UNFILLED",
        R::FillOrKill => "FILLORKILL",
        R::SelfTrade => "SELFTRADE",
        R::Expired => "EXPIRED",
        R::EndOfDay => "ENDOFDAY",
        R::ProtectionLimit => "PROTECTIONLIMIT",
        R::BookFull => "BOOKFULL",
    }
}

/// Writes exactly what `serde_json::to_vec(&order_view(ins, o, fills))`
/// would (same fields, order and formatting; a test holds them equal), but
/// straight from the record: no intermediate `OrderView` with a dozen
/// `String`s. The order placement's response is rendered this way (in the
/// order path's profile, building and serialising the view cost more than
/// the engine). False: the order's instrument is unknown.
pub fn render_order(ins: &Instruments, o: &OrderRecord, fills: Option<&[FillView]>, out: &mut Vec<u8>) -> bool {
    fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
        // Plain values into a Vec: cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    fn opt_dec(out: &mut Vec<u8>, d: Option<rust_decimal::Decimal>) {
        match d {
            Some(d) => write_json_decimal(out, d),
            None => out.extend_from_slice(b"null"),
        }
    }
    let Some(spec) = ins.specs.get(&o.instrument) else { return false };
    let (tif, expire) = tif_dto(o.tif);
    let has_price = matches!(o.kind, OrderKind::Limit | OrderKind::StopLimit);
    let has_stop = matches!(o.kind, OrderKind::StopMarket | OrderKind::StopLimit);
    out.extend_from_slice(b"{\"order_id\":");
    json(out, &o.id);
    out.extend_from_slice(b",\"client_order_id\":");
    json(out, o.client_order_id.as_str());
    out.extend_from_slice(b",\"symbol\":");
    json(out, spec.symbol.as_str());
    out.extend_from_slice(b",\"side\":");
    json(out, &side_dto(o.side));
    out.extend_from_slice(b",\"type\":");
    json(out, &order_type_dto(o.kind));
    out.extend_from_slice(b",\"time_in_force\":");
    json(out, &tif);
    out.extend_from_slice(b",\"expire_time\":");
    json(out, &expire);
    out.extend_from_slice(b",\"price\":");
    opt_dec(out, has_price.then(|| price_dec(spec, o.price)));
    out.extend_from_slice(b",\"stop_price\":");
    opt_dec(out, has_stop.then(|| price_dec(spec, o.stop_price)));
    out.extend_from_slice(b",\"quantity\":");
    opt_dec(out, (o.qty > 0).then(|| qty_dec(spec, o.qty)));
    out.extend_from_slice(b",\"quote_quantity\":");
    opt_dec(out, o.quote_budget.map(|b| units_dec(b, spec.scaling.quote_decimals)));
    out.extend_from_slice(b",\"executed_quantity\":");
    write_json_decimal(out, qty_dec(spec, o.filled));
    out.extend_from_slice(b",\"cumulative_quote\":");
    write_json_decimal(out, notional_dec(spec, o.filled_notional));
    out.extend_from_slice(b",\"leaves_quantity\":");
    write_json_decimal(out, qty_dec(spec, o.leaves));
    out.extend_from_slice(b",\"status\":");
    json(out, o.status.name());
    out.extend_from_slice(b",\"post_only\":");
    json(out, &o.post_only);
    out.extend_from_slice(b",\"display_quantity\":");
    opt_dec(out, (o.display_qty > 0).then(|| qty_dec(spec, o.display_qty)));
    out.extend_from_slice(b",\"stp\":");
    json(out, &o.stp.map(stp_dto));
    out.extend_from_slice(b",\"triggered\":");
    json(out, &o.triggered);
    out.extend_from_slice(b",\"cancel_reason\":");
    json(out, &o.cancel_reason.map(cancel_reason_name));
    out.extend_from_slice(b",\"created_time\":");
    json(out, &ns_to_ms(o.created));
    out.extend_from_slice(b",\"update_time\":");
    json(out, &ns_to_ms(o.updated));
    out.extend_from_slice(b",\"seq\":");
    json(out, &o.seq);
    if let Some(f) = fills {
        out.extend_from_slice(b",\"fills\":");
        json(out, f);
    }
    out.push(b'}');
    true
}

pub fn order_view(ins: &Instruments, o: &OrderRecord, fills: Option<Vec<FillView>>) -> Option<OrderView> {
    let spec = ins.specs.get(&o.instrument)?;
    let (tif, expire) = tif_dto(o.tif);
    let order_type = order_type_dto(o.kind);
    let has_price = matches!(o.kind, OrderKind::Limit | OrderKind::StopLimit);
    let has_stop = matches!(o.kind, OrderKind::StopMarket | OrderKind::StopLimit);
    Some(OrderView {
        order_id: o.id,
        client_order_id: o.client_order_id.clone(),
        symbol: spec.symbol.as_str().to_string(),
        side: side_dto(o.side),
        order_type,
        time_in_force: tif,
        expire_time: expire,
        price: has_price.then(|| price_str(spec, o.price)),
        stop_price: has_stop.then(|| price_str(spec, o.stop_price)),
        quantity: (o.qty > 0).then(|| qty_str(spec, o.qty)),
        quote_quantity: o.quote_budget.map(|b| units_str(b, spec.scaling.quote_decimals)),
        executed_quantity: qty_str(spec, o.filled),
        cumulative_quote: notional_str(spec, o.filled_notional),
        leaves_quantity: qty_str(spec, o.leaves),
        status: o.status.name().to_string(),
        post_only: o.post_only,
        display_quantity: (o.display_qty > 0).then(|| qty_str(spec, o.display_qty)),
        stp: o.stp.map(stp_dto),
        triggered: o.triggered,
        cancel_reason: o.cancel_reason.map(|r| cancel_reason_name(r).to_string()),
        created_time: ns_to_ms(o.created),
        update_time: ns_to_ms(o.updated),
        seq: o.seq,
        fills,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Status;
    use castle_engine::CancelReason;
    use proptest::prelude::*;

    fn instruments() -> Instruments {
        Instruments::from_specs(&[InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)])
    }

    prop_compose! {
        fn record()(
            (id, instrument, client_order_id, side, kind, price, stop_price) in (
                any::<u64>(), 0u32..2, ".{0,40}", any::<bool>(), 0u8..4, 0i64..1_000_000_000_000, 0i64..1_000_000_000_000,
            ),
            (qty, leaves, filled, filled_notional, quote_budget) in (
                0i64..1_000_000_000, 0i64..1_000_000_000, 0i64..1_000_000_000, 0i128..1_000_000_000_000_000_000,
                proptest::option::of(0i64..1_000_000_000_000),
            ),
            (tif, gtd, post_only, display_qty, stp, status, cancel_reason) in (
                0u8..5, 0u64..2_000_000_000_000_000_000, any::<bool>(), 0i64..1_000_000, proptest::option::of(0u8..5),
                0u8..5, proptest::option::of(1u8..11),
            ),
            (triggered, created, updated, seq) in (any::<bool>(), any::<u64>(), any::<u64>(), any::<u64>()),
        ) -> OrderRecord {
            OrderRecord {
                id,
                account: 1,
                instrument,
                client_order_id,
                side: if side { Side::Buy } else { Side::Sell },
                kind: [OrderKind::Limit, OrderKind::Market, OrderKind::StopMarket, OrderKind::StopLimit][kind as usize],
                price,
                stop_price,
                qty,
                leaves,
                filled,
                filled_notional,
                quote_budget,
                tif: [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok, TimeInForce::Gtd(gtd), TimeInForce::Day]
                    [tif as usize],
                post_only,
                display_qty,
                stp: stp.map(|s| {
                    [StpMode::None, StpMode::CancelNewest, StpMode::CancelOldest, StpMode::CancelBoth,
                        StpMode::DecrementAndCancel][s as usize]
                }),
                status: [Status::New, Status::PartiallyFilled, Status::Filled, Status::Canceled, Status::Expired]
                    [status as usize],
                cancel_reason: cancel_reason.map(|r| {
                    [CancelReason::Requested, CancelReason::MassCancel, CancelReason::KillSwitch,
                        CancelReason::Unfilled, CancelReason::FillOrKill, CancelReason::SelfTrade,
                        CancelReason::Expired, CancelReason::EndOfDay, CancelReason::ProtectionLimit,
                        CancelReason::BookFull][r as usize - 1]
                }),
                triggered,
                created,
                updated,
                seq,
            }
        }
    }

    /// The names are the engine's variant names in capitals (what the API
    /// has always shown).
    #[test]
    fn cancel_reason_names_are_the_variant_names() {
        for r in [
            CancelReason::Requested,
            CancelReason::MassCancel,
            CancelReason::KillSwitch,
            CancelReason::Unfilled,
            CancelReason::FillOrKill,
            CancelReason::SelfTrade,
            CancelReason::Expired,
            CancelReason::EndOfDay,
            CancelReason::ProtectionLimit,
            CancelReason::BookFull,
        ] {
            assert_eq!(cancel_reason_name(r), format!("{r:?}").to_uppercase());
        }
    }

    proptest! {
        /// The placement response's direct rendering is byte for byte the
        /// serialised `OrderView` (the documented schema), with and without
        /// fills; an unknown instrument renders nothing in both.
        #[test]
        fn rendered_order_is_the_serialised_view(o in record(), fill_count in proptest::option::of(0usize..3)) {
            let ins = instruments();
            let fills: Option<Vec<FillView>> = fill_count.map(|n| {
                (0..n as u64)
                    .filter_map(|i| {
                        fill_view(&ins, &Fill {
                            fill_id: i * 2, trade_id: i, order_id: o.id, instrument: 0, side: o.side,
                            price: 60_000 + i as i64, qty: 1 + i as i64, fee: i as i64, maker: i % 2 == 0,
                            ts: o.created, seq: o.seq,
                        })
                    })
                    .collect()
            });
            let mut out = Vec::new();
            let rendered = render_order(&ins, &o, fills.as_deref(), &mut out);
            match order_view(&ins, &o, fills) {
                Some(v) => {
                    prop_assert!(rendered);
                    let want = serde_json::to_vec(&v).unwrap();
                    prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(want).unwrap());
                }
                None => prop_assert!(!rendered, "instrument {} is unknown", o.instrument),
            }
        }
    }
}
