//! Wire types of the REST API: requests (strict: unknown fields refused,
//! closed enums, decimals as strings) and responses.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SideDto {
    Buy,
    Sell,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderTypeDto {
    Limit,
    Market,
    StopMarket,
    StopLimit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TifDto {
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
    /// Good till `expire_time`.
    Gtd,
    /// Until the end of the trading day.
    Day,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StpDto {
    None,
    CancelNewest,
    CancelOldest,
    CancelBoth,
    DecrementAndCancel,
}

/// A JSON string field of a request, borrowed from the request body when
/// it has no escape sequences (the usual case: no copy, no allocation) and
/// unescaped into an owned string otherwise. Reads as a `&str`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A new order. Prices and quantities are decimal strings on the
/// instrument's tick and lot grid (off-grid values are refused, never rounded).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest<'a> {
    #[serde(borrow)]
    #[schema(example = "BTC-USDT", value_type = String)]
    pub symbol: Text<'a>,
    pub side: SideDto,
    #[serde(rename = "type")]
    pub order_type: OrderTypeDto,
    /// Default GTC for limit orders, IOC for market orders.
    #[serde(default)]
    pub time_in_force: Option<TifDto>,
    /// Limit price (LIMIT, STOP_LIMIT).
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, example = "60000.00", pattern = r"^[0-9]{1,20}(\.[0-9]{1,18})?$")]
    pub price: Option<Text<'a>>,
    /// Trigger price (STOP_MARKET, STOP_LIMIT).
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,20}(\.[0-9]{1,18})?$")]
    pub stop_price: Option<Text<'a>>,
    /// Base quantity.
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, example = "0.01", pattern = r"^[0-9]{1,20}(\.[0-9]{1,18})?$")]
    pub quantity: Option<Text<'a>>,
    /// Quote budget, fees included (MARKET and STOP_MARKET buys instead of `quantity`).
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,20}(\.[0-9]{1,18})?$")]
    pub quote_quantity: Option<Text<'a>>,
    /// GTD expiry, ms since the epoch.
    #[serde(default)]
    pub expire_time: Option<u64>,
    #[serde(default)]
    pub post_only: Option<bool>,
    /// Iceberg: quantity shown on the book at a time.
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,20}(\.[0-9]{1,18})?$")]
    pub display_quantity: Option<Text<'a>>,
    /// Self-trade prevention; the account default when absent.
    #[serde(default)]
    pub stp: Option<StpDto>,
    /// Idempotency key, 1-36 chars of `[A-Za-z0-9._:/-]`. Retrying with the same
    /// id returns the existing order instead of placing a second one while that
    /// order is open, or closed and still among the account's last 1,000 closed
    /// orders the gateway holds. A retry with the id of a closed order that has
    /// aged out of memory places a new order (closed orders are not looked up in
    /// the ledger on every placement): use a fresh id for every new order.
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._:/-]{1,36}$")]
    pub client_order_id: Option<Text<'a>>,
}

/// Cancel-replace: new price and total quantity for an open limit order.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceOrderRequest {
    pub symbol: String,
    /// The order's new client order id (it keeps its current one when absent).
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._:/-]{1,36}$")]
    pub new_client_order_id: Option<String>,
    #[schema(pattern = r"^[0-9]{1,20}(\.[0-9]{1,18})?$")]
    pub price: String,
    /// New total quantity (filled quantity included).
    #[schema(pattern = r"^[0-9]{1,20}(\.[0-9]{1,18})?$")]
    pub quantity: String,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SymbolQuery {
    pub symbol: Option<String>,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub symbol: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DepthQuery {
    pub symbol: String,
    /// Levels per side: 1..=1000 (default 100). Weight 1 up to 100, 5 up to 500, 10 above.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TradesQuery {
    pub symbol: String,
    /// 1..=1000 (default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    pub symbol: String,
    /// One of 1m, 5m, 15m, 1h, 4h, 1d.
    #[param(pattern = r"^(1m|5m|15m|1h|4h|1d)$")]
    pub interval: String,
    /// Open time from (ms, inclusive).
    pub start_time: Option<u64>,
    /// Open time up to (ms, inclusive).
    pub end_time: Option<u64>,
    /// 1..=1000 (default 500); the most recent candles in range.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Subset of the caller's scopes: "read", "trade".
    #[schema(min_items = 1)]
    pub scopes: Vec<ScopeDto>,
    /// IPv4/IPv6 addresses or CIDR ranges allowed to use the key; empty or absent: any.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScopeDto {
    Read,
    Trade,
}

/// Answer of the load balancer's health check.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always "ok" when the gateway answers.
    pub status: String,
    /// Engine sequence number the gateway's view reflects (a stalled stream shows as a seq that stops moving).
    pub seq: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ServerTime {
    /// ms since the epoch.
    pub server_time: u64,
}

#[derive(Serialize, ToSchema)]
pub struct InstrumentInfo {
    pub symbol: String,
    pub base_asset: String,
    pub quote_asset: String,
    /// OPEN, HALTED or CLOSED.
    pub status: String,
    pub tick_size: String,
    pub lot_size: String,
    pub min_quantity: String,
    pub min_notional: String,
    pub base_decimals: u32,
    pub quote_decimals: u32,
    pub maker_fee_bps: u32,
    pub taker_fee_bps: u32,
    pub order_types: Vec<OrderTypeDto>,
    pub time_in_force: Vec<TifDto>,
}

#[derive(Serialize, ToSchema)]
pub struct RateLimitInfo {
    pub kind: String,
    pub interval_seconds: u64,
    pub limit: u32,
}

#[derive(Serialize, ToSchema)]
pub struct ExchangeInfo {
    pub server_time: u64,
    pub rate_limits: Vec<RateLimitInfo>,
    pub symbols: Vec<InstrumentInfo>,
}

/// Aggregated depth: `[price, quantity]` pairs, best first.
#[derive(Serialize, ToSchema)]
pub struct DepthResponse {
    pub symbol: String,
    /// Engine sequence number the snapshot reflects: apply stream diffs with `last_seq` above it.
    pub seq: u64,
    pub bids: Vec<[String; 2]>,
    pub asks: Vec<[String; 2]>,
}

#[derive(Serialize, ToSchema)]
pub struct TradeView {
    pub trade_id: u64,
    pub price: String,
    pub quantity: String,
    /// Side of the taker.
    pub taker_side: SideDto,
    pub time: u64,
    pub seq: u64,
}

#[derive(Serialize, ToSchema)]
pub struct CandleView {
    pub open_time: u64,
    pub close_time: u64,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    pub quote_volume: String,
    pub trades: u64,
    pub seq: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TickerView {
    pub symbol: String,
    pub open: Option<String>,
    pub high: Option<String>,
    pub low: Option<String>,
    pub last: Option<String>,
    pub change: Option<String>,
    pub volume: String,
    pub quote_volume: String,
    pub trades: u64,
    pub best_bid: Option<[String; 2]>,
    pub best_ask: Option<[String; 2]>,
    pub seq: u64,
    pub time: u64,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct FillView {
    pub fill_id: u64,
    pub trade_id: u64,
    pub order_id: u64,
    pub symbol: String,
    pub side: SideDto,
    pub price: String,
    pub quantity: String,
    /// In the quote asset.
    pub fee: String,
    pub fee_asset: String,
    pub maker: bool,
    pub time: u64,
    pub seq: u64,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct OrderView {
    pub order_id: u64,
    pub client_order_id: String,
    pub symbol: String,
    pub side: SideDto,
    #[serde(rename = "type")]
    pub order_type: OrderTypeDto,
    pub time_in_force: TifDto,
    pub expire_time: Option<u64>,
    pub price: Option<String>,
    pub stop_price: Option<String>,
    pub quantity: Option<String>,
    pub quote_quantity: Option<String>,
    pub executed_quantity: String,
    pub cumulative_quote: String,
    pub leaves_quantity: String,
    /// NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED.
    pub status: String,
    pub post_only: bool,
    pub display_quantity: Option<String>,
    pub stp: Option<StpDto>,
    pub triggered: bool,
    pub cancel_reason: Option<String>,
    pub created_time: u64,
    pub update_time: u64,
    pub seq: u64,
    /// Fills produced by this request (placement and replace responses only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fills: Option<Vec<FillView>>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FillPage {
    pub fills: Vec<FillView>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CancelAllResponse {
    pub cancelled: Vec<OrderView>,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct BalanceView {
    pub asset: String,
    pub available: String,
    pub locked: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub account: u32,
    pub balances: Vec<BalanceView>,
    pub seq: u64,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub key_id: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub label: String,
    pub created_time: u64,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub key_id: String,
    /// Shown once: sign requests with it.
    pub secret: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub label: String,
    pub created_time: u64,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    pub key_id: String,
    pub revoked: bool,
}
