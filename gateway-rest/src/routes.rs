//! HTTP handlers (thin): parse and check the request, authenticate, charge
//! the rate limits, build the engine command, wait for its batch, render.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use castle_engine::{
    ClientOrderId, Command, EventKind, InstrumentSpec, NewOrder, OrderRef, OrderSize, OrderType, RejectReason, Replace,
    Side, StpMode, TimeInForce,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::accounts::{Fill, OrderRecord, PlacedOptions};
use crate::api::*;
use crate::auth::{require, Caller, Scope, Scopes, SignedParts};
use crate::decimal::{price_str, price_ticks, qty_lots, qty_str, quote_units, units_str};
use crate::error::{ApiError, Code};
use crate::gateway::{
    candle_view, fill_view, interval_secs, now_ms, order_view, render_order, ticker_view, Gateway, Instruments,
};
use crate::limits::Used;

pub const MAX_BODY: usize = 16 * 1024;
pub const MAX_PAGE: u32 = 500;
pub const DEFAULT_PAGE: u32 = 100;

pub type Gw = Arc<Gateway>;

/// A request as the handlers see it: what the signature covers plus the peer.
pub struct Req {
    pub method: Method,
    /// Path and query exactly as on the request line (moved, not copied).
    pub uri: axum::http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub ip: IpAddr,
}

/// Request headers the handlers read, as constants: a lookup by `&str`
/// parses the name on every call (it showed in the order path's profile).
pub mod names {
    use axum::http::HeaderName;
    pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-timestamp");
    pub const SIGNATURE: HeaderName = HeaderName::from_static("x-signature");
    pub const RECV_WINDOW: HeaderName = HeaderName::from_static("x-recv-window");
}

impl FromRequest<Gw> for Req {
    type Rejection = ApiError;

    async fn from_request(req: Request, gw: &Gw) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        // ConnectInfo (or MockConnectInfo in tests); unknown peers share one budget.
        let ip = ConnectInfo::<SocketAddr>::from_request_parts(&mut parts, gw)
            .await
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if parts.uri.query().map_or(0, str::len) > gw.cfg.max_query_len {
            drain(body).await;
            return Err(ApiError::new(Code::QueryTooLong, format!("query longer than {} bytes", gw.cfg.max_query_len)));
        }
        let too_large = || ApiError::new(Code::BodyTooLarge, format!("body larger than {MAX_BODY} bytes"));
        if let Some(len) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
            if len.parse::<usize>().map_or(true, |n| n > MAX_BODY) {
                drain(body).await;
                return Err(too_large());
            }
        }
        let body = read_body(body, MAX_BODY).await.ok_or_else(too_large)?;
        Ok(Req { method: parts.method, uri: parts.uri, headers: parts.headers, body, ip })
    }
}

/// The whole body, at most `max` bytes (None: longer, or the read failed).
/// A body that arrives in one piece (the usual case) is returned as it
/// came, without the collecting buffers of `axum::body::to_bytes`.
async fn read_body(body: axum::body::Body, max: usize) -> Option<Bytes> {
    use futures_util::StreamExt;
    let mut data = body.into_data_stream();
    let mut first = match data.next().await {
        None => return Some(Bytes::new()),
        Some(chunk) => chunk.ok()?,
    };
    if first.len() > max {
        return None;
    }
    let mut rest: Option<Vec<u8>> = None;
    while let Some(chunk) = data.next().await {
        let chunk = chunk.ok()?;
        let buf = rest.get_or_insert_with(|| first.to_vec());
        if buf.len() + chunk.len() > max {
            return None;
        }
        buf.extend_from_slice(&chunk);
    }
    if let Some(all) = rest {
        first = Bytes::from(all);
    }
    Some(first)
}

/// How much of a refused request's body is read and thrown away.
const MAX_DRAIN: usize = 1 << 20;

/// Reads and discards what the client is still sending, up to [`MAX_DRAIN`]
/// bytes or one second, before an early refusal. Closing a socket with
/// unread input makes the kernel send a reset, which can destroy our 4xx
/// answer before the client reads it: the client sees a broken connection
/// instead of a clear error. Past the bounds the connection is simply closed.
async fn drain(body: axum::body::Body) {
    use futures_util::StreamExt;
    let mut data = body.into_data_stream();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = data.next().await {
            seen += chunk.len();
            if seen > MAX_DRAIN {
                break;
            }
        }
    })
    .await;
}

impl Req {
    fn header(&self, name: &header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The query string ("" when there is none).
    pub fn query_str(&self) -> &str {
        self.uri.query().unwrap_or("")
    }

    fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_urlencoded::from_str(self.query_str()).map_err(|e| ApiError::param(format!("query: {e}")))
    }

    /// The JSON body; `T` may borrow strings from it (see [`crate::api::Text`]).
    fn json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        let ct = self.header(&header::CONTENT_TYPE).unwrap_or("");
        // A case-insensitive prefix check without lowercasing a copy.
        let ct = ct.trim_start().as_bytes();
        const JSON: &[u8] = b"application/json";
        if ct.len() < JSON.len() || !ct[..JSON.len()].eq_ignore_ascii_case(JSON) {
            return Err(ApiError::new(Code::UnsupportedMediaType, "Content-Type must be application/json"));
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiError::new(Code::InvalidJson, format!("body: {e}")))
    }
}

/// Admission of a request: rate limit charged, caller known (private routes).
pub struct Ctx {
    pub used: Used,
    pub caller: Option<Caller>,
}

impl Ctx {
    fn caller(&self) -> &Caller {
        self.caller.as_ref().expect("private route has a caller")
    }

    fn reply<T: Serialize>(&self, v: &T) -> Response {
        // Rendered into one buffer sized for an order with a fill or two
        // (axum's Json starts at 128 bytes and grows three times for an order).
        let mut body = Vec::with_capacity(1024);
        match serde_json::to_writer(&mut body, v) {
            Ok(()) => self.reply_json(Bytes::from(body)),
            Err(e) => {
                tracing::error!(%e, "rendering a response failed");
                ApiError::new(Code::Internal, "rendering the response failed").into_response()
            }
        }
    }

    /// A response body already rendered as JSON.
    fn reply_json(&self, body: Bytes) -> Response {
        // Built directly: through `IntoResponse` for a tuple, the body first
        // gets an octet-stream content type and the JSON one is parsed and
        // copied from a `&str`, on every response.
        let mut r = Response::new(axum::body::Body::from(body));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.headers(r)
    }

    fn headers(&self, mut r: Response) -> Response {
        // Constant names and integer values: no parsing per response (this
        // showed in the order path's profile).
        const IP_USED: header::HeaderName = header::HeaderName::from_static("x-ratelimit-used-weight-1m");
        const KEY_USED: header::HeaderName = header::HeaderName::from_static("x-ratelimit-key-used-weight-1m");
        let h = r.headers_mut();
        h.insert(IP_USED, HeaderValue::from(self.used.ip));
        if let Some(k) = self.used.key {
            h.insert(KEY_USED, HeaderValue::from(k));
        }
        r
    }
}

fn public(gw: &Gateway, req: &Req, weight: u32) -> Result<Ctx, ApiError> {
    Ok(Ctx { used: gw.charge(req.ip, None, weight)?, caller: None })
}

/// Authenticates (API key signature or bearer token), checks the scope and
/// charges the IP (before anything else, so unsigned floods cost their
/// sender) and then the key.
pub fn private(gw: &Gateway, req: &Req, scope: Scope, weight: u32) -> Result<Ctx, ApiError> {
    let ip_used = gw.charge(req.ip, None, weight)?;
    let caller = authenticate(gw, req)?;
    require(&caller, scope)?;
    let used = match &caller.key_id {
        Some(k) => gw.charge_key_only(k, weight)?,
        None => gw.charge_key_only(&format!("account:{}", caller.account), weight)?,
    };
    Ok(Ctx { used: Used { ip: ip_used.ip, key: Some(used) }, caller: Some(caller) })
}

pub fn authenticate(gw: &Gateway, req: &Req) -> Result<Caller, ApiError> {
    if let Some(auth) = req.header(&header::AUTHORIZATION) {
        let token = auth
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::new(Code::InvalidToken, "Authorization must be 'Bearer <token>'"))?;
        let v = gw.jwt.as_ref().ok_or_else(|| ApiError::new(Code::InvalidToken, "bearer tokens are not configured"))?;
        return v.verify(token.trim());
    }
    let parts = SignedParts {
        key: req.header(&names::API_KEY),
        timestamp: req.header(&names::TIMESTAMP),
        signature: req.header(&names::SIGNATURE),
        recv_window: req.header(&names::RECV_WINDOW),
    };
    let now = now_ms();
    // The HMAC runs outside the key store's lock (taken twice, briefly:
    // before for the key, after for the replay cache).
    let check = gw.keys.lock().unwrap_or_else(|e| e.into_inner()).admit(&parts, Some(req.ip), now)?;
    check.verify(req.method.as_str(), req.path(), req.query_str(), &req.body)?;
    gw.keys.lock().unwrap_or_else(|e| e.into_inner()).remember(&check, now)?;
    Ok(check.caller)
}

fn spec_of(ins: &Instruments, sym: &str) -> Result<InstrumentSpec, ApiError> {
    ins.by_symbol(sym).copied()
}

fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        l if l >= 1 && l <= max => Ok(l as usize),
        _ => Err(ApiError::param(format!("limit must be 1..={max}"))),
    }
}

fn cursor(c: &Option<String>) -> Result<Option<u64>, ApiError> {
    match c {
        None => Ok(None),
        Some(s) if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map(Some).map_err(|_| ApiError::new(Code::InvalidCursor, "invalid cursor"))
        }
        Some(_) => Err(ApiError::new(Code::InvalidCursor, "invalid cursor")),
    }
}

/// Client order ids: 1..=36 of `[A-Za-z0-9._:/-]` (ids starting with '~' are the gateway's own).
pub fn valid_client_id(s: &str) -> bool {
    (1..=ClientOrderId::LEN).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

fn client_id(s: &str, field: &str) -> Result<ClientOrderId, ApiError> {
    if !valid_client_id(s) {
        return Err(ApiError::param(format!("{field} must be 1-36 characters of [A-Za-z0-9._:/-]")));
    }
    ClientOrderId::new(s).ok_or_else(|| ApiError::param(format!("invalid {field}")))
}

fn side(s: SideDto) -> Side {
    match s {
        SideDto::Buy => Side::Buy,
        SideDto::Sell => Side::Sell,
    }
}

/// Builds the engine order from a request (sans-IO, so it is unit tested).
pub fn build_order(
    spec: &InstrumentSpec,
    r: &PlaceOrderRequest<'_>,
    account: u32,
    generated_cl: &str,
) -> Result<(NewOrder, Option<PlacedOptions>, String), ApiError> {
    let cl = match &r.client_order_id {
        Some(c) => c.to_string(),
        None => generated_cl.to_string(),
    };
    let client_order_id = if r.client_order_id.is_some() {
        client_id(&cl, "client_order_id")?
    } else {
        ClientOrderId::new(&cl).ok_or_else(|| ApiError::new(Code::Internal, "generated id"))?
    };
    fn need<'r>(v: &'r Option<Text<'_>>, f: &str) -> Result<&'r str, ApiError> {
        v.as_deref().ok_or_else(|| ApiError::param(format!("{f} is required for this order type")))
    }
    let forbid = |v: bool, f: &str| {
        if v {
            Err(ApiError::param(format!("{f} is not allowed for this order type")))
        } else {
            Ok(())
        }
    };
    let side = side(r.side);
    let size = |allow_quote: bool| -> Result<OrderSize, ApiError> {
        match (&r.quantity, &r.quote_quantity) {
            (Some(q), None) => Ok(OrderSize::Base(qty_lots(spec, "quantity", q)?)),
            (None, Some(b)) if allow_quote && side == Side::Buy => {
                Ok(OrderSize::QuoteBudget(quote_units(spec, "quote_quantity", b)?))
            }
            (None, Some(_)) => Err(ApiError::param("quote_quantity is only for MARKET and STOP_MARKET buys")),
            (Some(_), Some(_)) => Err(ApiError::param("give quantity or quote_quantity, not both")),
            (None, None) => Err(ApiError::param("quantity is required")),
        }
    };
    let (order_type, size, default_tif) = match r.order_type {
        OrderTypeDto::Limit => {
            forbid(r.stop_price.is_some(), "stop_price")?;
            let price = price_ticks(spec, "price", need(&r.price, "price")?)?;
            (OrderType::Limit { price }, size(false)?, TifDto::Gtc)
        }
        OrderTypeDto::Market => {
            forbid(r.price.is_some(), "price")?;
            forbid(r.stop_price.is_some(), "stop_price")?;
            (OrderType::Market, size(true)?, TifDto::Ioc)
        }
        OrderTypeDto::StopMarket => {
            forbid(r.price.is_some(), "price")?;
            let stop = price_ticks(spec, "stop_price", need(&r.stop_price, "stop_price")?)?;
            (OrderType::StopMarket { stop }, size(true)?, TifDto::Gtc)
        }
        OrderTypeDto::StopLimit => {
            let stop = price_ticks(spec, "stop_price", need(&r.stop_price, "stop_price")?)?;
            let price = price_ticks(spec, "price", need(&r.price, "price")?)?;
            (OrderType::StopLimit { stop, price }, size(false)?, TifDto::Gtc)
        }
    };
    let tif = match (r.time_in_force.unwrap_or(default_tif), r.expire_time) {
        (TifDto::Gtd, Some(ms)) => {
            let ns = ms.checked_mul(1_000_000).ok_or_else(|| ApiError::param("expire_time out of range"))?;
            TimeInForce::Gtd(ns)
        }
        (TifDto::Gtd, None) => return Err(ApiError::param("expire_time is required with GTD")),
        (_, Some(_)) => return Err(ApiError::param("expire_time is only for GTD")),
        (TifDto::Gtc, None) => TimeInForce::Gtc,
        (TifDto::Ioc, None) => TimeInForce::Ioc,
        (TifDto::Fok, None) => TimeInForce::Fok,
        (TifDto::Day, None) => TimeInForce::Day,
    };
    let display_qty = match &r.display_quantity {
        None => 0,
        Some(d) => {
            if r.order_type != OrderTypeDto::Limit {
                return Err(ApiError::param("display_quantity is only for LIMIT orders"));
            }
            qty_lots(spec, "display_quantity", d)?
        }
    };
    let stp = r.stp.map(|s| match s {
        StpDto::None => StpMode::None,
        StpDto::CancelNewest => StpMode::CancelNewest,
        StpDto::CancelOldest => StpMode::CancelOldest,
        StpDto::CancelBoth => StpMode::CancelBoth,
        StpDto::DecrementAndCancel => StpMode::DecrementAndCancel,
    });
    let post_only = r.post_only.unwrap_or(false);
    let order = NewOrder {
        account,
        instrument: spec.id,
        client_order_id,
        side,
        order_type,
        size,
        tif,
        post_only,
        display_qty,
        stp,
    };
    let placed = match size {
        OrderSize::QuoteBudget(quote_budget) => Some(PlacedOptions { quote_budget }),
        OrderSize::Base(_) => None,
    };
    Ok((order, placed, cl))
}

fn reject_in(batch: &castle_link::EngineBatch) -> Option<RejectReason> {
    batch.events.iter().find_map(|e| match e.kind {
        EventKind::Rejected { reason, .. } => Some(reason),
        _ => None,
    })
}

/// The fills of order `id` in `batch` (the request's own engine batch).
fn fills_in(ins: &Instruments, id: u64, b: &castle_link::EngineBatch) -> Vec<FillView> {
    b.events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Trade {
                trade_id,
                instrument,
                price,
                qty,
                aggressor,
                maker_order,
                taker_order,
                maker_fee,
                taker_fee,
                ..
            } => {
                let (maker, fee, s) = if taker_order == id {
                    (false, taker_fee, aggressor)
                } else if maker_order == id {
                    (true, maker_fee, aggressor.opposite())
                } else {
                    return None;
                };
                let f = crate::accounts::Fill {
                    fill_id: trade_id * 2 + u64::from(!maker),
                    trade_id,
                    order_id: id,
                    instrument,
                    side: s,
                    price,
                    qty,
                    fee,
                    maker,
                    ts: b.ts,
                    seq: b.seq,
                };
                fill_view(ins, &f)
            }
            _ => None,
        })
        .collect()
}

fn view_of(
    gw: &Gateway,
    account: u32,
    id: u64,
    fills_of: Option<&castle_link::EngineBatch>,
) -> Result<OrderView, ApiError> {
    let st = gw.read();
    let o = st.accounts.get(account).and_then(|a| a.order(id)).ok_or_else(ApiError::not_found)?;
    let fills = fills_of.map(|b| fills_in(&st.instruments, id, b));
    order_view(&st.instruments, o, fills).ok_or_else(ApiError::not_found)
}

/// [`view_of`] with the fills of `batch`, rendered as JSON straight from the
/// record (see [`render_order`]): the placement and replace responses.
fn view_json_of(gw: &Gateway, account: u32, id: u64, batch: &castle_link::EngineBatch) -> Result<Bytes, ApiError> {
    let st = gw.read();
    let o = st.accounts.get(account).and_then(|a| a.order(id)).ok_or_else(ApiError::not_found)?;
    let fills = fills_in(&st.instruments, id, batch);
    let mut out = Vec::with_capacity(768 + 320 * fills.len());
    if !render_order(&st.instruments, o, Some(&fills), &mut out) {
        return Err(ApiError::not_found());
    }
    Ok(Bytes::from(out))
}

fn record_view(gw: &Gateway, o: &OrderRecord) -> Result<OrderView, ApiError> {
    order_view(&gw.read().instruments, o, None).ok_or_else(ApiError::not_found)
}

// ---------------------------------------------------------------- public

#[utoipa::path(get, path = "/api/v1/time", tag = "market", responses((status = 200, body = ServerTime)))]
pub async fn time(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = public(&gw, &req, 1)?;
    let _: EmptyQuery = req.query()?;
    Ok(ctx.reply(&ServerTime { server_time: now_ms() }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyQuery {}

/// The load balancer's health check (infra/terraform/modules/edge): not
/// rate limited, because the probes come from the balancer's few addresses
/// and a 429 would take a healthy gateway out of service.
#[utoipa::path(get, path = "/api/v1/health", tag = "market", responses((status = 200, body = Health)))]
pub async fn health(State(gw): State<Gw>) -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into(), seq: gw.read().seq })
}

#[utoipa::path(get, path = "/api/v1/exchangeInfo", tag = "market", responses((status = 200, body = ExchangeInfo)))]
pub async fn exchange_info(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = public(&gw, &req, 10)?;
    let _: EmptyQuery = req.query()?;
    let st = gw.read();
    let symbols = st
        .instruments
        .specs
        .values()
        .map(|s| {
            let status = st.status.get(&s.id).copied().unwrap_or(castle_engine::TradingStatus::Open);
            InstrumentInfo {
                symbol: s.symbol.as_str().to_string(),
                base_asset: st.instruments.asset_name(s.base),
                quote_asset: st.instruments.asset_name(s.quote),
                status: format!("{status:?}").to_uppercase(),
                tick_size: crate::decimal::show(s.scaling.tick_size),
                lot_size: crate::decimal::show(s.scaling.lot_size),
                min_quantity: qty_str(s, s.min_qty.max(1)),
                min_notional: units_str(s.min_notional, s.scaling.quote_decimals),
                base_decimals: s.scaling.base_decimals,
                quote_decimals: s.scaling.quote_decimals,
                maker_fee_bps: s.maker_fee_bps,
                taker_fee_bps: s.taker_fee_bps,
                order_types: vec![
                    OrderTypeDto::Limit,
                    OrderTypeDto::Market,
                    OrderTypeDto::StopMarket,
                    OrderTypeDto::StopLimit,
                ],
                time_in_force: vec![TifDto::Gtc, TifDto::Ioc, TifDto::Fok, TifDto::Gtd, TifDto::Day],
            }
        })
        .collect();
    let r = gw.cfg.rate;
    Ok(ctx.reply(&ExchangeInfo {
        server_time: now_ms(),
        rate_limits: vec![
            RateLimitInfo { kind: "IP_WEIGHT".into(), interval_seconds: 60, limit: r.ip_weight_per_min },
            RateLimitInfo { kind: "KEY_WEIGHT".into(), interval_seconds: 60, limit: r.key_weight_per_min },
        ],
        symbols,
    }))
}

fn depth_weight(limit: u32) -> u32 {
    match limit {
        0..=100 => 1,
        101..=500 => 5,
        _ => 10,
    }
}

#[utoipa::path(get, path = "/api/v1/depth", tag = "market", params(DepthQuery), responses((status = 200, body = DepthResponse)))]
pub async fn depth(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let q: DepthQuery = req.query()?;
    let ctx = public(&gw, &req, depth_weight(q.limit.unwrap_or(100)))?;
    let limit = page_limit(q.limit, 100, 1000)?;
    let st = gw.read();
    let spec = spec_of(&st.instruments, &q.symbol)?;
    let seq = st.md.instrument(spec.id).map(|d| d.book.seq).unwrap_or(0);
    // Books are read far more often than they change: a rendering is reused
    // until the book's seq moves.
    let key = (spec.id, limit);
    if let Some(body) = gw.depth_cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key).filter(|c| c.0 == seq) {
        return Ok(ctx.reply_json(body.1.clone()));
    }
    let d = st.md.instrument(spec.id).map(|d| d.book.depth(limit)).unwrap_or_default();
    drop(st);
    let lv = |l: &castle_marketdata::DepthLevel| [price_str(&spec, l.price), qty_str(&spec, l.qty)];
    let body = DepthResponse {
        symbol: q.symbol.clone(),
        seq,
        bids: d.bids.iter().map(lv).collect(),
        asks: d.asks.iter().map(lv).collect(),
    };
    let bytes = Bytes::from(serde_json::to_vec(&body).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?);
    let mut cache = gw.depth_cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= crate::gateway::DEPTH_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, (seq, bytes.clone()));
    Ok(ctx.reply_json(bytes))
}

#[utoipa::path(get, path = "/api/v1/trades", tag = "market", params(TradesQuery), responses((status = 200, body = [TradeView])))]
pub async fn trades(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let q: TradesQuery = req.query()?;
    let ctx = public(&gw, &req, 2)?;
    let limit = page_limit(q.limit, 500, 1000)?;
    let st = gw.read();
    let spec = spec_of(&st.instruments, &q.symbol)?;
    let v: Vec<TradeView> = st
        .md
        .instrument(spec.id)
        .map(|d| {
            let n = d.trades.len();
            d.trades
                .iter()
                .skip(n.saturating_sub(limit))
                .map(|t| TradeView {
                    trade_id: t.trade_id,
                    price: price_str(&spec, t.price),
                    quantity: qty_str(&spec, t.qty),
                    taker_side: if t.aggressor == Side::Buy { SideDto::Buy } else { SideDto::Sell },
                    time: crate::gateway::ns_to_ms(t.ts),
                    seq: t.seq,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ctx.reply(&v))
}

#[utoipa::path(get, path = "/api/v1/klines", tag = "market", params(CandlesQuery), responses((status = 200, body = [CandleView])))]
pub async fn candles(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let q: CandlesQuery = req.query()?;
    let ctx = public(&gw, &req, 2)?;
    let limit = page_limit(q.limit, 500, 1000)?;
    let secs =
        interval_secs(&q.interval).ok_or_else(|| ApiError::param("interval must be one of 1m 5m 15m 1h 4h 1d"))?;
    let (start, end) = (q.start_time.unwrap_or(0), q.end_time.unwrap_or(u64::MAX));
    let st = gw.read();
    let spec = spec_of(&st.instruments, &q.symbol)?;
    let mut v: Vec<CandleView> = Vec::new();
    if let Some(series) = st.md.instrument(spec.id).and_then(|d| d.candles(secs)) {
        for c in series.closed.iter().chain(series.current.iter()) {
            let open_ms = crate::gateway::ns_to_ms(c.open_time);
            if open_ms >= start && open_ms <= end {
                v.push(candle_view(&spec, c));
            }
        }
    }
    let n = v.len();
    let v: Vec<CandleView> = v.into_iter().skip(n.saturating_sub(limit)).collect();
    Ok(ctx.reply(&v))
}

#[utoipa::path(get, path = "/api/v1/ticker/24hr", tag = "market", params(SymbolQuery), responses((status = 200, body = [TickerView])))]
pub async fn ticker(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let q: SymbolQuery = req.query()?;
    let ctx = public(&gw, &req, if q.symbol.is_some() { 1 } else { 20 })?;
    let st = gw.read();
    let specs: Vec<InstrumentSpec> = match &q.symbol {
        Some(s) => vec![spec_of(&st.instruments, s)?],
        None => st.instruments.specs.values().copied().collect(),
    };
    let v: Vec<TickerView> = specs
        .iter()
        .map(|spec| {
            let t = st.md.instrument(spec.id).map(|d| d.ticker()).unwrap_or_default();
            ticker_view(spec, &t)
        })
        .collect();
    Ok(ctx.reply(&v))
}

// ---------------------------------------------------------------- private

#[utoipa::path(post, path = "/api/v1/order", tag = "trading", request_body = PlaceOrderRequest,
    responses((status = 200, description = "the order (or the existing order with this client_order_id)", body = OrderView)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn place_order(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Trade, 1)?;
    let account = ctx.caller().account;
    let r: PlaceOrderRequest<'_> = req.json()?;
    let spec = spec_of(&gw.read().instruments, &r.symbol)?;
    // Only orders without a client order id need one made up.
    let generated = match r.client_order_id {
        None => format!("~{:016x}", rand::random::<u64>()),
        Some(_) => String::new(),
    };
    let (order, opts, cl) = build_order(&spec, &r, account, &generated)?;
    {
        let mut st = gw.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = st.accounts.get(account).and_then(|a| a.by_client_id(&cl)).cloned() {
            drop(st);
            return Ok(ctx.reply(&record_view(&gw, &o)?));
        }
        if st.accounts.open_count(account) >= gw.cfg.max_open_orders {
            return Err(ApiError::new(
                Code::TooManyOpenOrders,
                format!("at most {} open orders", gw.cfg.max_open_orders),
            ));
        }
        if let Some(opts) = opts {
            st.accounts.note_placed(account, &cl, opts);
        }
    }
    let batch = match gw.submit_order(order, account).await {
        Ok(Ok(b)) => b,
        Ok(Err(existing)) => return Ok(ctx.reply(&record_view(&gw, &existing)?)),
        Err(e) => {
            if e.code != Code::StatusUnknown as u16 {
                gw.state.write().unwrap_or_else(|e| e.into_inner()).accounts.forget_placed(account, &cl);
            }
            return Err(e);
        }
    };
    let accepted = batch.events.iter().find_map(|e| match e.kind {
        EventKind::OrderAccepted { order_id, account: a, client_order_id, .. }
            if a == account && client_order_id.as_str() == cl =>
        {
            Some(order_id)
        }
        _ => None,
    });
    match (accepted, reject_in(&batch)) {
        (Some(id), _) => Ok(ctx.reply_json(view_json_of(&gw, account, id, &batch)?)),
        (None, Some(RejectReason::DuplicateClientOrderId)) => {
            // A retry of an order placed elsewhere or earlier: answer with it.
            let existing = gw.read().accounts.get(account).and_then(|a| a.by_client_id(&cl)).cloned();
            let existing = match existing {
                Some(o) => Some(o),
                // Placed before this gateway started: the ledger has it
                // (unless it lags the engine: then the reject stands).
                None => ledger_order(&gw, account, &Target::Client(cl.clone())).await?.filter(|o| o.status.is_open()),
            };
            match existing {
                Some(o) => Ok(ctx.reply(&record_view(&gw, &o)?)),
                None => Err(ApiError::rejected(RejectReason::DuplicateClientOrderId)),
            }
        }
        (None, Some(reason)) => Err(ApiError::rejected(reason)),
        (None, None) => Err(ApiError::new(Code::Internal, "the engine answered without accepting or rejecting")),
    }
}

/// How a route names one of the caller's orders.
#[derive(Clone, Debug)]
pub enum Target {
    Id(u64),
    Client(String),
}

fn target_id(raw: &str) -> Result<Target, ApiError> {
    if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::param("order_id must be an unsigned integer"));
    }
    raw.parse().map(Target::Id).map_err(|_| ApiError::param("order_id must be an unsigned integer"))
}

fn target_client(raw: &str) -> Result<Target, ApiError> {
    client_id(raw, "client_order_id")?;
    Ok(Target::Client(raw.to_string()))
}

/// An order of the caller that is not in the gateway's memory (aged out of
/// it, or placed before this gateway started), from the settlement ledger;
/// None without a ledger or when it has no such order. By client id it is
/// the newest order with that id (the engine keeps client ids unique only
/// among an account's open orders).
async fn ledger_order(gw: &Gateway, account: u32, t: &Target) -> Result<Option<OrderRecord>, ApiError> {
    let Some(h) = &gw.cfg.history else { return Ok(None) };
    let row = match t {
        Target::Id(id) => h.order(account, *id).await,
        Target::Client(c) => h.order_by_client_id(account, c).await,
    }
    .map_err(crate::history::unavailable)?;
    row.map(|o| crate::history::order_record(&o, o.notional.into())).transpose()
}

/// Resolves an order of the caller (None for anyone else's: they answer 404).
fn find_order(gw: &Gateway, account: u32, t: &Target) -> Option<OrderRecord> {
    let st = gw.read();
    let a = st.accounts.get(account)?;
    match t {
        Target::Id(id) => a.order(*id).cloned(),
        Target::Client(c) => a.by_client_id(c).cloned(),
    }
}

fn engine_ref(t: &Target) -> Result<OrderRef, ApiError> {
    Ok(match t {
        Target::Id(id) => OrderRef::Id(*id),
        Target::Client(c) => OrderRef::Client(client_id(c, "client_order_id")?),
    })
}

async fn query_inner(gw: Gw, req: Req, t: Result<Target, ApiError>) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Read, 2)?;
    let q: SymbolQuery = req.query()?;
    let t = t?;
    let o = match find_order(&gw, ctx.caller().account, &t) {
        Some(o) => o,
        None => ledger_order(&gw, ctx.caller().account, &t).await?.ok_or_else(ApiError::not_found)?,
    };
    if let Some(s) = &q.symbol {
        if spec_of(&gw.read().instruments, s)?.id != o.instrument {
            return Err(ApiError::not_found());
        }
    }
    Ok(ctx.reply(&record_view(&gw, &o)?))
}

async fn cancel_inner(gw: Gw, req: Req, t: Result<Target, ApiError>) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Trade, 1)?;
    let account = ctx.caller().account;
    let q: SymbolQuery = req.query()?;
    let t = t?;
    // Not in memory and no symbol: the ledger knows the instrument (an open
    // order placed before this gateway started).
    let known = match (find_order(&gw, account, &t), &q.symbol) {
        (None, None) => ledger_order(&gw, account, &t).await?,
        (known, _) => known,
    };
    let instrument = match (&q.symbol, &known) {
        (Some(s), _) => spec_of(&gw.read().instruments, s)?.id,
        (None, Some(o)) => o.instrument,
        (None, None) => return Err(ApiError::not_found()),
    };
    let batch = gw.submit(Command::Cancel { account, instrument, target: engine_ref(&t)? }).await?;
    if let Some(r) = reject_in(&batch) {
        return Err(ApiError::rejected(r));
    }
    let (id, reason) = batch
        .events
        .iter()
        .find_map(|e| match e.kind {
            EventKind::OrderCancelled { order_id, account: a, reason, .. } if a == account => Some((order_id, reason)),
            _ => None,
        })
        .ok_or_else(ApiError::not_found)?;
    match (view_of(&gw, account, id, None), known) {
        (Ok(v), _) => Ok(ctx.reply(&v)),
        // The memory never held it: the ledger's copy with this cancel applied.
        (Err(_), Some(mut o)) if o.id == id => {
            o.leaves = 0;
            o.status = crate::accounts::Status::Canceled;
            o.cancel_reason = Some(reason);
            o.updated = batch.ts;
            o.seq = batch.seq;
            Ok(ctx.reply(&record_view(&gw, &o)?))
        }
        (Err(e), _) => Err(e),
    }
}

async fn replace_inner(gw: Gw, req: Req, t: Result<Target, ApiError>) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Trade, 1)?;
    let account = ctx.caller().account;
    let t = t?;
    let r: ReplaceOrderRequest = req.json()?;
    let spec = spec_of(&gw.read().instruments, &r.symbol)?;
    let new_client_order_id =
        r.new_client_order_id.as_deref().map(|c| client_id(c, "new_client_order_id")).transpose()?;
    let price = price_ticks(&spec, "price", &r.price)?;
    let qty = qty_lots(&spec, "quantity", &r.quantity)?;
    let target = engine_ref(&t)?;
    let batch = gw
        .submit(Command::Replace(Replace { account, instrument: spec.id, target, new_client_order_id, price, qty }))
        .await?;
    if let Some(reason) = reject_in(&batch) {
        return Err(ApiError::rejected(reason));
    }
    let id = batch
        .events
        .iter()
        .find_map(|e| match e.kind {
            EventKind::OrderReplaced { order_id, account: a, .. } if a == account => Some(order_id),
            _ => None,
        })
        .ok_or_else(ApiError::not_found)?;
    Ok(ctx.reply_json(view_json_of(&gw, account, id, &batch)?))
}

#[utoipa::path(get, path = "/api/v1/order/{order_id}", tag = "trading",
    params(("order_id" = u64, Path, description = "engine order id"), SymbolQuery),
    responses((status = 200, body = OrderView)), security(("api_key" = []), ("bearer" = [])))]
pub async fn query_order(State(gw): State<Gw>, Path(id): Path<String>, req: Req) -> Result<Response, ApiError> {
    query_inner(gw, req, target_id(&id)).await
}

#[utoipa::path(get, path = "/api/v1/order/client/{client_order_id}", tag = "trading",
    params(("client_order_id" = String, Path), SymbolQuery),
    responses((status = 200, body = OrderView)), security(("api_key" = []), ("bearer" = [])))]
pub async fn query_order_client(State(gw): State<Gw>, Path(cl): Path<String>, req: Req) -> Result<Response, ApiError> {
    query_inner(gw, req, target_client(&cl)).await
}

#[utoipa::path(delete, path = "/api/v1/order/{order_id}", tag = "trading",
    params(("order_id" = u64, Path, description = "engine order id"), SymbolQuery),
    responses((status = 200, description = "the cancelled order", body = OrderView)), security(("api_key" = []), ("bearer" = [])))]
pub async fn cancel_order(State(gw): State<Gw>, Path(id): Path<String>, req: Req) -> Result<Response, ApiError> {
    cancel_inner(gw, req, target_id(&id)).await
}

#[utoipa::path(delete, path = "/api/v1/order/client/{client_order_id}", tag = "trading",
    params(("client_order_id" = String, Path), SymbolQuery),
    responses((status = 200, description = "the cancelled order", body = OrderView)), security(("api_key" = []), ("bearer" = [])))]
pub async fn cancel_order_client(State(gw): State<Gw>, Path(cl): Path<String>, req: Req) -> Result<Response, ApiError> {
    cancel_inner(gw, req, target_client(&cl)).await
}

#[utoipa::path(post, path = "/api/v1/order/{order_id}/replace", tag = "trading",
    params(("order_id" = u64, Path, description = "engine order id")), request_body = ReplaceOrderRequest,
    responses((status = 200, description = "cancel-replace applied", body = OrderView)), security(("api_key" = []), ("bearer" = [])))]
pub async fn replace_order(State(gw): State<Gw>, Path(id): Path<String>, req: Req) -> Result<Response, ApiError> {
    replace_inner(gw, req, target_id(&id)).await
}

#[utoipa::path(post, path = "/api/v1/order/client/{client_order_id}/replace", tag = "trading",
    params(("client_order_id" = String, Path)), request_body = ReplaceOrderRequest,
    responses((status = 200, description = "cancel-replace applied", body = OrderView)), security(("api_key" = []), ("bearer" = [])))]
pub async fn replace_order_client(
    State(gw): State<Gw>,
    Path(cl): Path<String>,
    req: Req,
) -> Result<Response, ApiError> {
    replace_inner(gw, req, target_client(&cl)).await
}

#[utoipa::path(get, path = "/api/v1/openOrders", tag = "trading", params(PageQuery), responses((status = 200, body = OrderPage)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn open_orders(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Read, 3)?;
    let q: PageQuery = req.query()?;
    let limit = page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let after = cursor(&q.cursor)?.unwrap_or(0);
    let st = gw.read();
    let inst = q.symbol.as_deref().map(|s| spec_of(&st.instruments, s).map(|s| s.id)).transpose()?;
    let mut orders = Vec::new();
    let mut next = None;
    if let Some(a) = st.accounts.get(ctx.caller().account) {
        for o in
            a.open.range(after.saturating_add(1)..).map(|(_, o)| o).filter(|o| inst.is_none_or(|i| i == o.instrument))
        {
            if orders.len() == limit {
                next = orders.last().map(|v: &OrderView| v.order_id.to_string());
                break;
            }
            orders.extend(order_view(&st.instruments, o, None));
        }
    }
    Ok(ctx.reply(&OrderPage { orders, next_cursor: next }))
}

#[utoipa::path(delete, path = "/api/v1/openOrders", tag = "trading", params(SymbolQuery), responses((status = 200, body = CancelAllResponse)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn cancel_all(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Trade, 1)?;
    let account = ctx.caller().account;
    let q: SymbolQuery = req.query()?;
    let instrument = q.symbol.as_deref().map(|s| spec_of(&gw.read().instruments, s).map(|s| s.id)).transpose()?;
    let batch = gw.submit(Command::MassCancel { account, instrument, side: None }).await?;
    if let Some(r) = reject_in(&batch) {
        return Err(ApiError::rejected(r));
    }
    let mut cancelled = Vec::new();
    for e in &batch.events {
        if let EventKind::OrderCancelled { order_id, account: a, .. } = e.kind {
            if a == account {
                cancelled.extend(view_of(&gw, account, order_id, None).ok());
            }
        }
    }
    Ok(ctx.reply(&CancelAllResponse { cancelled }))
}

#[utoipa::path(get, path = "/api/v1/allOrders", tag = "trading", params(PageQuery),
    responses((status = 200, description = "open and closed orders, newest first", body = OrderPage)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn all_orders(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Read, 10)?;
    let q: PageQuery = req.query()?;
    let limit = page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let before = cursor(&q.cursor)?.unwrap_or(u64::MAX);
    let account = ctx.caller().account;
    // The newest `limit + 1` in memory (no lock is held across the ledger query).
    let (inst, mem) = {
        let st = gw.read();
        let inst = q.symbol.as_deref().map(|s| spec_of(&st.instruments, s).map(|s| s.id)).transpose()?;
        let mut all: Vec<&OrderRecord> = Vec::new();
        if let Some(a) = st.accounts.get(account) {
            all.extend(a.open.values());
            all.extend(a.history.iter());
        }
        all.retain(|o| o.id < before && inst.is_none_or(|i| i == o.instrument));
        all.sort_by_key(|o| std::cmp::Reverse(o.id));
        (inst, all.into_iter().take(limit + 1).cloned().collect::<Vec<OrderRecord>>())
    };
    let (rows, next) = match &gw.cfg.history {
        None => {
            let next = (mem.len() > limit).then(|| mem[limit - 1].id);
            (mem.into_iter().take(limit).collect(), next)
        }
        Some(h) => {
            let page = h
                .orders(account, inst, (before != u64::MAX).then_some(before), limit)
                .await
                .map_err(crate::history::unavailable)?;
            let known: std::collections::HashSet<u64> = mem.iter().map(|o| o.id).collect();
            let db = page
                .rows
                .iter()
                .filter(|o| !known.contains(&o.order_id))
                .map(|o| crate::history::order_record(o, o.notional.into()))
                .collect::<Result<Vec<_>, _>>()?;
            crate::history::merge(mem, db, page.next.is_some(), limit, |o| o.id)
        }
    };
    let st = gw.read();
    let orders = rows.iter().filter_map(|o| order_view(&st.instruments, o, None)).collect();
    Ok(ctx.reply(&OrderPage { orders, next_cursor: next.map(|n| n.to_string()) }))
}

#[utoipa::path(get, path = "/api/v1/myTrades", tag = "trading", params(PageQuery),
    responses((status = 200, description = "fills, newest first", body = FillPage)), security(("api_key" = []), ("bearer" = [])))]
pub async fn my_trades(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Read, 10)?;
    let q: PageQuery = req.query()?;
    let limit = page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let before = cursor(&q.cursor)?.unwrap_or(u64::MAX);
    let account = ctx.caller().account;
    let (inst, mem) = {
        let st = gw.read();
        let inst = q.symbol.as_deref().map(|s| spec_of(&st.instruments, s).map(|s| s.id)).transpose()?;
        let mem: Vec<Fill> = st
            .accounts
            .get(account)
            .map(|a| {
                a.fills
                    .iter()
                    .rev()
                    .filter(|f| f.fill_id < before && inst.is_none_or(|i| i == f.instrument))
                    .take(limit + 1)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        (inst, mem)
    };
    let (rows, next) = match &gw.cfg.history {
        None => {
            let next = (mem.len() > limit).then(|| mem[limit - 1].fill_id);
            (mem.into_iter().take(limit).collect::<Vec<_>>(), next)
        }
        Some(h) => {
            let page = h
                .fills(account, inst, (before != u64::MAX).then_some(before), limit)
                .await
                .map_err(crate::history::unavailable)?;
            let db = page.rows.iter().map(crate::history::fill).collect::<Result<Vec<_>, _>>()?;
            crate::history::merge(mem, db, page.next.is_some(), limit, |f| f.fill_id)
        }
    };
    let st = gw.read();
    let fills = rows.iter().filter_map(|f| fill_view(&st.instruments, f)).collect();
    Ok(ctx.reply(&FillPage { fills, next_cursor: next.map(|n| n.to_string()) }))
}

#[utoipa::path(get, path = "/api/v1/account", tag = "account", responses((status = 200, body = AccountView)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn account(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Read, 10)?;
    let _: EmptyQuery = req.query()?;
    let account = ctx.caller().account;
    let st = gw.read();
    let mut balances = Vec::new();
    if let Some(a) = st.accounts.get(account) {
        for (asset, b) in &a.balances {
            let dec = st.instruments.assets.get(asset).map(|a| a.1).unwrap_or(8);
            balances.push(BalanceView {
                asset: st.instruments.asset_name(*asset),
                available: units_str(b.available, dec),
                locked: units_str(b.locked, dec),
            });
        }
    }
    Ok(ctx.reply(&AccountView { account, balances, seq: st.accounts.seq }))
}

fn key_view(k: &crate::auth::ApiKey) -> KeyView {
    KeyView {
        key_id: k.id.clone(),
        scopes: k.scopes.names().iter().map(|s| s.to_string()).collect(),
        // A single host shows as its address, a range as CIDR.
        allowed_ips: k
            .allowed_ips
            .iter()
            .map(|n| if n.prefix_len() == n.max_prefix_len() { n.addr().to_string() } else { n.to_string() })
            .collect(),
        label: k.label.clone(),
        created_time: k.created_ms,
    }
}

#[utoipa::path(get, path = "/api/v1/apiKeys", tag = "account", responses((status = 200, body = KeyList)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list_keys(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Read, 1)?;
    let _: EmptyQuery = req.query()?;
    let keys = gw.keys.lock().unwrap_or_else(|e| e.into_inner()).list(ctx.caller().account);
    Ok(ctx.reply(&KeyList { keys: keys.iter().map(key_view).collect() }))
}

#[utoipa::path(post, path = "/api/v1/apiKeys", tag = "account", request_body = CreateKeyRequest,
    responses((status = 200, description = "the new key; the secret is shown only here", body = CreatedKey)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn create_key(State(gw): State<Gw>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Trade, 1)?;
    let r: CreateKeyRequest = req.json()?;
    let caller = ctx.caller();
    let scopes = Scopes { read: r.scopes.contains(&ScopeDto::Read), trade: r.scopes.contains(&ScopeDto::Trade) };
    if scopes == Scopes::default() {
        return Err(ApiError::param("scopes must name at least one of read, trade"));
    }
    if !caller.scopes.contains(scopes) {
        return Err(ApiError::new(Code::MissingScope, "a key cannot grant scopes its creator lacks"));
    }
    if r.allowed_ips.len() > 16 {
        return Err(ApiError::param("at most 16 allowed_ips"));
    }
    let ips = r
        .allowed_ips
        .iter()
        .map(|s| {
            crate::vault::parse_net(s)
                .ok_or_else(|| ApiError::param(format!("allowed_ips: {s:?} is not an IP address or CIDR range")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let label = r.label.unwrap_or_default();
    if label.len() > 64 || !label.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ApiError::param("label: at most 64 printable characters"));
    }
    let (k, secret) =
        gw.keys.lock().unwrap_or_else(|e| e.into_inner()).create(caller.account, scopes, ips, label, now_ms())?;
    let v = key_view(&k);
    Ok(ctx.reply(&CreatedKey {
        key_id: v.key_id,
        secret,
        scopes: v.scopes,
        allowed_ips: v.allowed_ips,
        label: v.label,
        created_time: v.created_time,
    }))
}

#[utoipa::path(delete, path = "/api/v1/apiKeys/{key_id}", tag = "account", params(("key_id" = String, Path)),
    responses((status = 200, body = Revoked)), security(("api_key" = []), ("bearer" = [])))]
pub async fn revoke_key(State(gw): State<Gw>, Path(key_id): Path<String>, req: Req) -> Result<Response, ApiError> {
    let ctx = private(&gw, &req, Scope::Trade, 1)?;
    let _: EmptyQuery = req.query()?;
    if !gw.keys.lock().unwrap_or_else(|e| e.into_inner()).revoke(ctx.caller().account, &key_id, now_ms())? {
        return Err(ApiError::new(Code::NotFound, "no such key"));
    }
    Ok(ctx.reply(&Revoked { key_id, revoked: true }))
}

async fn no_route() -> ApiError {
    ApiError::new(Code::NoSuchRoute, "no such route")
}

async fn no_method() -> ApiError {
    ApiError::new(Code::MethodNotAllowed, "method not allowed on this route")
}

/// The whole HTTP surface.
pub fn router(gw: Gw) -> Router {
    let cors = crate::server::cors(&gw.cfg.cors_origins);
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/time", get(time))
        .route("/api/v1/exchangeInfo", get(exchange_info))
        .route("/api/v1/depth", get(depth))
        .route("/api/v1/trades", get(trades))
        .route("/api/v1/klines", get(candles))
        .route("/api/v1/ticker/24hr", get(ticker))
        .route("/api/v1/order", post(place_order))
        .route("/api/v1/order/{order_id}", get(query_order).delete(cancel_order))
        .route("/api/v1/order/{order_id}/replace", post(replace_order))
        .route("/api/v1/order/client/{client_order_id}", get(query_order_client).delete(cancel_order_client))
        .route("/api/v1/order/client/{client_order_id}/replace", post(replace_order_client))
        .route("/api/v1/openOrders", get(open_orders).delete(cancel_all))
        .route("/api/v1/allOrders", get(all_orders))
        .route("/api/v1/myTrades", get(my_trades))
        .route("/api/v1/account", get(account))
        .route("/api/v1/apiKeys", get(list_keys).post(create_key))
        .route("/api/v1/apiKeys/{key_id}", delete(revoke_key))
        .route("/api/v1/ws", get(crate::ws::upgrade))
        .route("/api/v1/openapi.json", get(crate::openapi::document))
        .merge(crate::page::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        // No `DefaultBodyLimit` layer: no route uses axum's body extractors
        // (`Req` reads at most MAX_BODY itself), and each layer costs every
        // request a boxed service clone.
        .layer(cors)
        .with_state(gw)
}

pub fn status_of(e: &ApiError) -> StatusCode {
    e.status
}
