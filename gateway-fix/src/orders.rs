//! The order layer: FIX application messages to engine commands, engine
//! events to FIX application messages. Sans-IO and single-threaded: the
//! transport feeds it parsed messages (with the time) and engine batches, it
//! returns commands to submit and message bodies to send per session.
//!
//! It keeps the gateway's view of every order it has seen in the engine
//! stream (ClOrdID chain, CumQty, AvgPx, status), because FIX execution
//! reports carry state the engine events do not repeat.
//!
//! Tag choices (see README.md for the full table):
//! - TimeInForce 59: 0 DAY, 1 GTC, 3 IOC, 4 FOK, 6 GTD (ExpireTime 126); absent = DAY.
//! - OrdType 40: 1 market, 2 limit, 3 stop, 4 stop-limit (StopPx 99).
//! - ExecInst 18 = 6 (participate don't initiate): post-only.
//! - MaxFloor 111: iceberg display quantity.
//! - CashOrderQty 152: quote budget of a market / stop-market buy.
//! - SelfTradePrevention 7928 (user-defined, the convention of several crypto
//!   venues): N cancel newest (incoming), O cancel oldest (resting), B cancel
//!   both, D decrement and cancel, A allow self-trades; absent = account default.

use crate::field::{write_u64, Timestamp, SOH};
use crate::frame::Message;
use crate::link::{EngineBatch, Origin};
use castle_engine::{
    AccountId, CancelReason, ClientOrderId, Command, EventKind, InstrumentId, InstrumentSpec, NewOrder, OrderId,
    OrderKind, OrderRef, OrderSize, OrderType, Price, Qty, RejectReason, Replace, Scaling, Side, StpMode, TimeInForce,
};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;
use std::sync::Arc;

/// Index of a configured session.
pub type SessionId = usize;

/// User-defined tag carrying the self-trade prevention mode.
pub const TAG_STP: u32 = 7928;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// Sends orders for one account, receives its execution reports.
    OrderEntry,
    /// Receives every execution report of its accounts; may not send orders.
    DropCopy,
}

/// What the order layer needs to know about a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionProfile {
    pub kind: SessionKind,
    /// Order entry: the account every order goes to.
    pub account: AccountId,
    /// Drop copy: the accounts followed.
    pub accounts: Vec<AccountId>,
    /// Application messages per second (token bucket, burst of one second);
    /// 0 = unlimited.
    pub max_messages_per_sec: u32,
    /// Open orders (including ones waiting for the engine); 0 = unlimited.
    pub max_open_orders: usize,
    /// Cancel the session's open orders when its connection drops.
    pub cancel_on_disconnect: bool,
    /// Service bureau / hub: OnBehalfOfCompID (115) values this session may
    /// send, each trading for its own account. Messages without 115 trade
    /// for `account`; an unknown 115 is refused.
    pub on_behalf_of: Vec<(String, AccountId)>,
    /// DeliverToCompID (128) values this session may address (desks of the
    /// venue behind a hub); any other 128 is refused. Echoed back as 115.
    pub deliver_to: Vec<String>,
}

impl SessionProfile {
    pub fn order_entry(account: AccountId) -> Self {
        SessionProfile {
            kind: SessionKind::OrderEntry,
            account,
            accounts: vec![account],
            max_messages_per_sec: 0,
            max_open_orders: 0,
            cancel_on_disconnect: false,
            on_behalf_of: Vec::new(),
            deliver_to: Vec::new(),
        }
    }

    /// Add an OnBehalfOfCompID and its account (also followed for status).
    pub fn with_on_behalf_of(mut self, comp_id: &str, account: AccountId) -> Self {
        self.on_behalf_of.push((comp_id.to_string(), account));
        if !self.accounts.contains(&account) {
            self.accounts.push(account);
        }
        self
    }

    fn on_behalf_of_account(&self, comp_id: &[u8]) -> Option<AccountId> {
        self.on_behalf_of.iter().find(|(c, _)| c.as_bytes() == comp_id).map(|(_, a)| *a)
    }

    fn on_behalf_of_name(&self, account: AccountId) -> Option<&str> {
        self.on_behalf_of.iter().find(|(_, a)| *a == account).map(|(c, _)| c.as_str())
    }
    pub fn drop_copy(accounts: Vec<AccountId>) -> Self {
        SessionProfile { kind: SessionKind::DropCopy, account: 0, accounts, ..SessionProfile::order_entry(0) }
    }
}

/// Routing header fields of an outbound message, for sessions of service
/// bureaus and hubs: the inbound OnBehalfOfCompID (115) comes back as
/// DeliverToCompID (128) and the inbound DeliverToCompID as OnBehalfOfCompID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// DeliverToCompID (128) to send.
    pub deliver_to: Option<String>,
    /// OnBehalfOfCompID (115) to send.
    pub on_behalf_of: Option<String>,
}

impl Route {
    /// The echo of an inbound message's 115/128 (None when it has neither).
    pub fn echo(msg: &Message<'_>) -> Option<Arc<Route>> {
        let deliver_to = msg.get(115).map(|v| text(v).to_string());
        let on_behalf_of = msg.get(128).map(|v| text(v).to_string());
        (deliver_to.is_some() || on_behalf_of.is_some()).then(|| Arc::new(Route { deliver_to, on_behalf_of }))
    }

    /// Write the header fields (right after TargetCompID).
    pub fn write(&self, e: &mut crate::encode::Encoder) {
        if let Some(v) = &self.on_behalf_of {
            e.str(115, v.as_bytes());
        }
        if let Some(v) = &self.deliver_to {
            e.str(128, v.as_bytes());
        }
    }
}

/// A message for a session: type and body fields (after the standard
/// header, without the trailer), `tag=value<SOH>` encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub session: SessionId,
    pub msg_type: &'static [u8],
    pub body: Vec<u8>,
    /// Sequence number of the engine batch this message reports (0: not
    /// from the engine stream). The session records the highest one it
    /// stored (its engine mark) so a restarted gateway knows what it sent.
    pub engine_seq: u64,
    /// Routing header fields (115/128), for hub sessions.
    pub route: Option<Arc<Route>>,
}

impl Outbound {
    pub fn new(session: SessionId, msg_type: &'static [u8], body: Vec<u8>) -> Self {
        Outbound { session, msg_type, body, engine_seq: 0, route: None }
    }

    /// Value of the first occurrence of `tag` (tests, logs).
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.fields().find(|(t, _)| *t == tag).map(|(_, v)| v)
    }
    /// Iterate the body's fields.
    pub fn fields(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        self.body.split(|&b| b == SOH).filter(|f| !f.is_empty()).filter_map(|f| {
            let s = std::str::from_utf8(f).ok()?;
            let (t, v) = s.split_once('=')?;
            Some((t.parse().ok()?, v))
        })
    }
}

/// Output of the order layer, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send(Outbound),
    /// Submit this command to the engine with this request id.
    Submit {
        request: u64,
        command: Command,
    },
    /// The application message with inbound MsgSeqNum `seq` is finished:
    /// answered, or its command is applied by the engine (so in its
    /// journal). The session releases its hold on it (see store.rs).
    Done {
        session: SessionId,
        seq: u64,
    },
}

/// Bits of a request id that name the session it came from: a restarted
/// gateway finds the owner of every order in the engine stream by its
/// origin, without a database of its own. Request ids stay increasing per
/// gateway (the counter is in the high bits), as the engine's
/// deduplication wants.
pub const REQUEST_SESSION_BITS: u32 = 20;
const REQUEST_SESSION_MASK: u64 = (1 << REQUEST_SESSION_BITS) - 1;
/// Request ids with this bit are start-up barriers (a `Tick` whose batch
/// marks the end of the replayed stream), never orders.
pub const REQUEST_BARRIER_BIT: u64 = 1 << 63;

/// A stable number for a session in request ids, from its CompIDs (so
/// reordering the configuration file does not re-attribute orders).
pub fn session_tag(sender_comp_id: &str, target_comp_id: &str) -> u32 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sender_comp_id.bytes().chain([1u8]).chain(target_comp_id.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((h ^ (h >> 20) ^ (h >> 40)) & REQUEST_SESSION_MASK) as u32
}

/// Body builder: `tag=value<SOH>` pairs.
struct Body(Vec<u8>);

impl Default for Body {
    /// Room for a whole execution report (about 200 bytes): growing from
    /// empty cost five reallocations per report.
    fn default() -> Self {
        Body(Vec::with_capacity(256))
    }
}

impl Body {
    fn tag(&mut self, tag: u32) {
        write_u64(&mut self.0, tag as u64);
        self.0.push(b'=');
    }
    fn s(&mut self, tag: u32, v: &str) -> &mut Self {
        // Values echoed from the client come from parsed fields and cannot
        // hold SOH; texts are ours. Strip defensively anyway.
        self.tag(tag);
        let start = self.0.len();
        if memchr::memchr(SOH, v.as_bytes()).is_none() {
            self.0.extend_from_slice(v.as_bytes());
        } else {
            self.0.extend(v.bytes().filter(|&b| b != SOH));
        }
        if self.0.len() == start {
            // An empty field is a session-level error for the peer (373=4);
            // echoes of fields the client left empty say so instead.
            self.0.extend_from_slice(b"NONE");
        }
        self.0.push(SOH);
        self
    }
    fn u(&mut self, tag: u32, v: u64) -> &mut Self {
        self.tag(tag);
        write_u64(&mut self.0, v);
        self.0.push(SOH);
        self
    }
    fn c(&mut self, tag: u32, v: u8) -> &mut Self {
        self.tag(tag);
        self.0.push(v);
        self.0.push(SOH);
        self
    }
    fn d(&mut self, tag: u32, v: Decimal) -> &mut Self {
        self.tag(tag);
        write_decimal(&mut self.0, v);
        self.0.push(SOH);
        self
    }
    fn t(&mut self, tag: u32, ns: u64) -> &mut Self {
        self.tag(tag);
        Timestamp::from_unix_nanos(ns.min(i64::MAX as u64) as i64).write_millis(&mut self.0);
        self.0.push(SOH);
        self
    }
}

/// Plain decimal without trailing zeros or exponent ("0.5", "60000",
/// "-1.25"), written without allocating: this runs several times per
/// execution report.
pub fn write_decimal(out: &mut Vec<u8>, v: Decimal) {
    let m = v.mantissa();
    let mut scale = v.scale() as usize;
    if m < 0 {
        out.push(b'-');
    }
    // Digits, least significant first, trailing fraction zeros dropped.
    // Prices and quantities fit in 64 bits, where division by 10 is a
    // multiplication; 128-bit division is a library call (it was most of
    // this function's cost).
    let mut digits = [0u8; 40];
    let mut n = 0;
    // One loop for both widths; a macro rather than a generic so the u64 case stays plain
    // 64-bit arithmetic.
    macro_rules! push_digits {
        ($u:expr) => {{
            let mut u = $u;
            while scale > 0 {
                let (q, r) = (u / 10, u % 10);
                if r != 0 {
                    break;
                }
                u = q;
                scale -= 1;
            }
            loop {
                digits[n] = b'0' + (u % 10) as u8;
                u /= 10;
                n += 1;
                if u == 0 {
                    break;
                }
            }
        }};
    }
    match u64::try_from(m.unsigned_abs()) {
        Ok(u) => push_digits!(u),
        Err(_) => push_digits!(m.unsigned_abs()),
    }
    if n <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - n));
        out.extend(digits[..n].iter().rev());
    } else {
        out.extend(digits[scale..n].iter().rev());
        if scale > 0 {
            out.push(b'.');
            out.extend(digits[..scale].iter().rev());
        }
    }
}

/// OrdRejReason (103) for an engine reject reason. Values limited to the
/// FIX 4.4 enumeration so strict counterparties accept them.
pub fn ord_rej_reason(r: RejectReason) -> u32 {
    use RejectReason::*;
    match r {
        UnknownInstrument | InvalidInstrument => 1,
        InstrumentHalted | InstrumentClosed => 2,
        InsufficientBalance | BookFull | TooManyStopOrders | TooManyTimedOrders | BalanceOverflow => 3,
        ExpireTimeInPast => 4,
        UnknownOrder => 5,
        DuplicateClientOrderId => 6,
        PostOnlyWouldCross
        | StopWouldTriggerImmediately
        | InvalidOrderOptions
        | InvalidTimeInForce
        | InvalidDisplayQuantity
        | NotReplaceable => 11,
        InvalidQuantity | BelowMinQuantity | BelowMinNotional | ReplaceQuantityBelowFilled | InvalidAmount => 13,
        UnknownAccount | AccountKilled | ReservedAccount | TooManyAccounts => 15,
        InvalidPrice | PriceOutsideBand | UnknownAsset | DuplicateInstrument => 99,
    }
}

/// CxlRejReason (102) for an engine reject of a cancel or replace.
pub fn cxl_rej_reason(r: RejectReason) -> u32 {
    match r {
        RejectReason::UnknownOrder => 1,
        _ => 99,
    }
}

fn side_char(s: Side) -> u8 {
    match s {
        Side::Buy => b'1',
        Side::Sell => b'2',
    }
}

fn tif_char(t: TimeInForce) -> u8 {
    match t {
        TimeInForce::Day => b'0',
        TimeInForce::Gtc => b'1',
        TimeInForce::Ioc => b'3',
        TimeInForce::Fok => b'4',
        TimeInForce::Gtd(_) => b'6',
    }
}

fn kind_char(k: OrderKind) -> u8 {
    match k {
        OrderKind::Market => b'1',
        OrderKind::Limit => b'2',
        OrderKind::StopMarket => b'3',
        OrderKind::StopLimit => b'4',
    }
}

#[derive(Clone, Debug)]
struct OrderState {
    session: Option<SessionId>,
    account: AccountId,
    instrument: InstrumentId,
    side: Side,
    ord_type: u8,
    tif: u8,
    expire: Option<u64>,
    price: Price,
    stop: Price,
    qty: Qty,
    cash: Option<Decimal>,
    /// Inline (no allocation per order or per report): every ClOrdID the
    /// layer accepts is a valid `ClientOrderId`.
    cl: ClientOrderId,
    cum: Qty,
    /// Sum of price * qty over fills, ticks x lots.
    notional: i128,
    leaves: Qty,
    /// OrdStatus (39).
    status: u8,
    /// Routing header of the owner's reports (hub sessions).
    route: Option<Arc<Route>>,
}

/// Context of a request waiting for its engine batch.
#[derive(Clone, Debug)]
enum Pending {
    New {
        session: SessionId,
        // Inline copies (no allocation per order): the ClOrdID was checked
        // to be a valid `ClientOrderId` and the symbol is a listed one.
        cl: ClientOrderId,
        symbol: castle_engine::Symbol,
        side: u8,
        qty: Option<Decimal>,
        cash: Option<Decimal>,
    },
    Cancel {
        session: SessionId,
        cl: String,
        orig: String,
    },
    Replace {
        session: SessionId,
        cl: String,
        orig: String,
    },
    MassCancel {
        session: SessionId,
        cl: String,
        req_type: u8,
        symbol: Option<String>,
    },
    /// Cancel-on-disconnect: nobody to answer.
    Silent,
}

struct Throttle {
    tokens: f64,
    last: u64,
}

struct SessionState {
    profile: SessionProfile,
    /// Low bits of this session's request ids.
    tag: u32,
    /// Engine mark of the session's store: messages of batches at or below
    /// it were stored before a restart and are not produced again.
    mark: u64,
    throttle: Throttle,
    /// Orders accepted and open, plus new orders waiting for the engine.
    open: usize,
}

/// Write every page of an empty table's reserved memory now, by filling
/// it to its capacity with distinct keys and clearing it (the capacity and
/// the pages stay): see [`OrderLayer::reserve`]. Tables holding entries
/// are left alone.
fn fault_in<K: Eq + std::hash::Hash, V: Clone>(map: &mut FxHashMap<K, V>, key: impl Fn(u64) -> K, fill: &V) {
    if !map.is_empty() {
        return;
    }
    let capacity = map.capacity();
    for i in 0..capacity as u64 {
        map.insert(key(i), fill.clone());
    }
    map.clear();
    debug_assert_eq!(map.capacity(), capacity, "filled within capacity: no growth");
}

#[derive(Default)]
struct MdBook {
    orders: FxHashMap<OrderId, (Side, Price, Qty)>,
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
}

impl MdBook {
    fn level(&mut self, side: Side) -> &mut BTreeMap<Price, Qty> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
    fn level_qty(&self, side: Side, price: Price) -> Qty {
        match side {
            Side::Buy => self.bids.get(&price).copied().unwrap_or(0),
            Side::Sell => self.asks.get(&price).copied().unwrap_or(0),
        }
    }
    fn adjust(&mut self, side: Side, price: Price, delta: Qty) {
        let l = self.level(side);
        let q = l.entry(price).or_insert(0);
        *q += delta;
        if *q <= 0 {
            l.remove(&price);
        }
    }
}

#[derive(Clone, Debug)]
struct MdSub {
    session: SessionId,
    req_id: String,
    instrument: InstrumentId,
    bids_offers: bool,
    trades: bool,
}

/// A request waiting for its batch: its context, the inbound message
/// (session, MsgSeqNum) it finishes, and the route of its answers.
type Waiting = (Pending, Option<(SessionId, u64)>, Option<Arc<Route>>);

/// Bound on finished orders kept for OrderStatusRequest.
const DONE_KEPT: usize = 65_536;
/// Bound on market-data subscriptions per session.
const MAX_MD_SUBS: usize = 64;

/// The order layer of one gateway.
pub struct OrderLayer {
    gateway: u32,
    next_request: u64,
    next_local_exec: u64,
    sessions: Vec<SessionState>,
    instruments: FxHashMap<InstrumentId, InstrumentSpec>,
    by_symbol: FxHashMap<String, InstrumentId>,
    orders: FxHashMap<OrderId, OrderState>,
    /// ClOrdID -> order. Keyed by the inline `ClientOrderId` (every ClOrdID
    /// the layer accepts is one), so indexing an order allocates nothing.
    by_cl: FxHashMap<(AccountId, ClientOrderId), OrderId>,
    done: VecDeque<OrderId>,
    /// Requests waiting for their batch, with the inbound message (session,
    /// MsgSeqNum) they answer.
    pending: FxHashMap<u64, Waiting>,
    /// The inbound message being handled by `on_message`, and whether it
    /// became a request (then it is finished by its batch).
    current: Option<(SessionId, u64)>,
    current_submitted: bool,
    /// Account and routing echo of the message being handled.
    msg_account: Option<AccountId>,
    msg_route: Option<Arc<Route>>,
    /// Start-up barrier still to come back: until then the stream is a
    /// replay and client messages must wait.
    barrier: Option<u64>,
    /// Or: the last engine seq of the replay (the link knew it).
    replay_until: Option<u64>,
    md: FxHashMap<InstrumentId, MdBook>,
    md_subs: Vec<MdSub>,
    /// Open orders the per-order tables are sized for (see [`OrderLayer::reserve`]).
    order_capacity: usize,
}

/// ExecID (17) of a report from the engine stream, `SEQ-INDEX` (batch
/// sequence number, event index), built on the stack: one is made for
/// every report, and `format!` cost an allocation and ~800 instructions.
struct ExecId {
    buf: [u8; 41],
    len: usize,
}

impl ExecId {
    fn new(seq: u64, index: u64) -> ExecId {
        let mut e = ExecId { buf: [0; 41], len: 0 };
        e.push_u64(seq);
        e.buf[e.len] = b'-';
        e.len += 1;
        e.push_u64(index);
        e
    }

    fn push_u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut k = digits.len();
        loop {
            k -= 1;
            digits[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let d = &digits[k..];
        self.buf[self.len..self.len + d.len()].copy_from_slice(d);
        self.len += d.len();
    }
}

impl std::ops::Deref for ExecId {
    type Target = str;
    fn deref(&self) -> &str {
        // Only ASCII digits and '-' were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("0-0")
    }
}

fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap_or("")
}

fn dec(v: Option<&[u8]>) -> Option<Decimal> {
    v.and_then(|v| Decimal::from_str(text(v)).ok())
}

/// What `OrderLayer::build_new_order` makes of a NewOrderSingle: the
/// engine order, OrderQty (38) and CashOrderQty (152).
type NewOrderParts = (NewOrder, Option<Decimal>, Option<Decimal>);

enum LocalReject {
    /// ExecutionReport 150=8 with OrdRejReason.
    Order(u32, &'static str),
    /// BusinessMessageReject with BusinessRejectReason.
    Business(u32, &'static str),
}

impl OrderLayer {
    /// Numbers the next engine request from `first` (the link's `first_request`: request ids
    /// stay unique across restarts of a journal-backed engine).
    pub fn set_first_request(&mut self, first: u64) {
        // `first` is one past the highest request id journaled for this gateway. Ids here are
        // (counter << REQUEST_SESSION_BITS) | session tag (barriers have the top bit), so the
        // counter continues above the highest one journaled, as the replay below also ensures.
        let highest = first.saturating_sub(1) & !REQUEST_BARRIER_BIT;
        self.next_request = self.next_request.max((highest >> REQUEST_SESSION_BITS) + 1);
    }

    pub fn new(gateway: u32, instruments: &[InstrumentSpec]) -> Self {
        let mut l = OrderLayer {
            gateway,
            next_request: 1,
            next_local_exec: 1,
            sessions: Vec::new(),
            instruments: FxHashMap::default(),
            by_symbol: FxHashMap::default(),
            orders: FxHashMap::default(),
            by_cl: FxHashMap::default(),
            done: VecDeque::new(),
            pending: FxHashMap::default(),
            current: None,
            current_submitted: false,
            msg_account: None,
            msg_route: None,
            barrier: None,
            replay_until: None,
            md: FxHashMap::default(),
            md_subs: Vec::new(),
            order_capacity: 0,
        };
        l.set_instruments(instruments);
        l
    }

    pub fn gateway(&self) -> u32 {
        self.gateway
    }

    /// Size the per-order tables (orders, ClOrdID index, market-data books)
    /// for `orders` open orders. A hash table that grows moves every entry
    /// at once: with 100k resting orders that is a stall of milliseconds on
    /// the gateway thread, which every message behind it waits for. Sizing
    /// up front trades memory (about 100 bytes per order, pages touched as
    /// they fill) for no such stall below `orders`.
    ///
    /// Empty tables are also faulted in here (filled to capacity and
    /// cleared): a reserved table's memory is only address space until
    /// first written, and the first write to each page is a page fault
    /// (a zeroed page) on the gateway thread. Traced at the start of a
    /// 20k orders/s run: 33-40% of the gateway thread's CPU samples were
    /// such faults in hash inserts for the first 200 ms, about 4% after.
    pub fn reserve(&mut self, orders: usize) {
        self.order_capacity = orders;
        self.orders.reserve(orders.saturating_sub(self.orders.len()));
        self.by_cl.reserve(orders.saturating_sub(self.by_cl.len()));
        let template = OrderState {
            session: None,
            account: 0,
            instrument: 0,
            side: Side::Buy,
            ord_type: 0,
            tif: 0,
            expire: None,
            price: 0,
            stop: 0,
            qty: 0,
            cash: None,
            cl: ClientOrderId::from_u64(0),
            cum: 0,
            notional: 0,
            leaves: 0,
            status: 0,
            route: None,
        };
        fault_in(&mut self.orders, |i| i, &template);
        fault_in(&mut self.by_cl, |i| (0, ClientOrderId::from_u64(i)), &0);
        // Every listed instrument's market-data book now (an empty book
        // reads like an absent one), rather than at its first order.
        let per_book = self.md_book_capacity();
        for &id in self.instruments.keys() {
            let book = self.md.entry(id).or_default();
            book.orders.reserve(per_book.saturating_sub(book.orders.len()));
            fault_in(&mut book.orders, |i| i, &(Side::Buy, 0, 0));
        }
    }

    /// Share of [`OrderLayer::reserve`]'s capacity for one instrument's
    /// market-data book.
    fn md_book_capacity(&self) -> usize {
        self.order_capacity / self.instruments.len().max(1)
    }

    /// Replace the instrument list (at start and after `InstrumentAdded`).
    pub fn set_instruments(&mut self, specs: &[InstrumentSpec]) {
        self.instruments = specs.iter().map(|s| (s.id, *s)).collect();
        self.by_symbol = specs.iter().map(|s| (s.symbol.as_str().to_string(), s.id)).collect();
    }

    /// Register a session; ids are dense in registration order.
    pub fn add_session(&mut self, profile: SessionProfile) -> SessionId {
        let rate = profile.max_messages_per_sec as f64;
        let tag = self.sessions.len() as u32 & REQUEST_SESSION_MASK as u32;
        self.sessions.push(SessionState {
            profile,
            tag,
            mark: 0,
            throttle: Throttle { tokens: rate, last: 0 },
            open: 0,
        });
        self.sessions.len() - 1
    }

    /// Set the session's number in request ids (default: its index) and
    /// the engine mark of its store. Tags must be unique and below
    /// 2^[`REQUEST_SESSION_BITS`].
    pub fn set_session_tag(&mut self, session: SessionId, tag: u32, mark: u64) {
        assert!((tag as u64) <= REQUEST_SESSION_MASK, "session tag out of range");
        assert!(
            self.sessions.iter().enumerate().all(|(i, s)| i == session || s.tag != tag),
            "session tags must be unique"
        );
        self.sessions[session].tag = tag;
        self.sessions[session].mark = mark;
    }

    /// Start rebuilding from a replay of the engine stream: until the batch
    /// of request `barrier` (a `Tick` the transport submits after
    /// subscribing from the start) comes back, batches are history: they
    /// rebuild the order view, and only messages of batches above a
    /// session's engine mark are sent (what happened while the gateway was
    /// down). The transport holds client messages until [`Self::recovering`]
    /// is false.
    pub fn begin_recovery(&mut self, barrier: u64) {
        debug_assert!(barrier & REQUEST_BARRIER_BIT != 0);
        self.barrier = Some(barrier);
    }

    /// Like [`Self::begin_recovery`] when the link tells the last sequence
    /// number of the replay (no barrier command in the journal).
    pub fn begin_recovery_until(&mut self, last_seq: u64) {
        if last_seq > 0 {
            self.replay_until = Some(last_seq);
        }
    }

    /// True while the replay of the engine stream has not reached the barrier.
    pub fn recovering(&self) -> bool {
        self.barrier.is_some() || self.replay_until.is_some()
    }

    fn session_of_request(&self, request: u64) -> Option<SessionId> {
        if request & REQUEST_BARRIER_BIT != 0 {
            return None;
        }
        let tag = (request & REQUEST_SESSION_MASK) as u32;
        self.sessions.iter().position(|s| s.tag == tag)
    }

    /// Open orders the layer attributes to a session (tests, metrics).
    pub fn open_orders(&self, session: SessionId) -> usize {
        self.sessions.get(session).map_or(0, |s| s.open)
    }

    /// The session's connection dropped: cancel its open orders if
    /// configured, and drop its market-data subscriptions.
    pub fn on_disconnect(&mut self, session: SessionId, out: &mut Vec<Output>) {
        self.md_subs.retain(|s| s.session != session);
        let Some(st) = self.sessions.get(session) else { return };
        if !st.profile.cancel_on_disconnect {
            return;
        }
        let mut ids: Vec<(OrderId, AccountId, InstrumentId)> = self
            .orders
            .iter()
            .filter(|(_, o)| o.session == Some(session) && is_open(o.status))
            .map(|(id, o)| (*id, o.account, o.instrument))
            .collect();
        ids.sort_unstable();
        for (id, account, instrument) in ids {
            let request = self.request(Pending::Silent, session);
            out.push(Output::Submit {
                request,
                command: Command::Cancel { account, instrument, target: OrderRef::Id(id) },
            });
        }
    }

    fn request(&mut self, p: Pending, session: SessionId) -> u64 {
        let r = (self.next_request << REQUEST_SESSION_BITS) | self.sessions[session].tag as u64;
        self.next_request += 1;
        let (inbound, route) = match self.current {
            Some((s, seq)) if s == session && !matches!(p, Pending::Silent) => {
                self.current_submitted = true;
                (Some((s, seq)), self.msg_route.clone())
            }
            _ => (None, None),
        };
        self.pending.insert(r, (p, inbound, route));
        r
    }

    /// The engine refused to queue a request (busy or stopped): answer it
    /// as a reject instead of leaving the client waiting.
    pub fn on_submit_failed(&mut self, request: u64, reason: &'static str, out: &mut Vec<Output>) {
        let Some((p, inbound, route)) = self.pending.remove(&request) else { return };
        let base = out.len();
        self.answer_submit_failed(p, reason, out);
        set_route(&mut out[base..], &route);
        if let Some((session, seq)) = inbound {
            out.push(Output::Done { session, seq });
        }
    }

    fn answer_submit_failed(&mut self, p: Pending, reason: &'static str, out: &mut Vec<Output>) {
        match p {
            Pending::New { session, cl, symbol, side, qty, cash } => {
                self.sessions[session].open = self.sessions[session].open.saturating_sub(1);
                let b = self.reject_er(cl.as_str(), symbol.as_str(), side, qty, cash, 99, reason);
                out.push(Output::Send(Outbound::new(session, b"8", b)));
            }
            Pending::Cancel { session, cl, orig, .. } => {
                out.push(Output::Send(self.cancel_reject(session, &cl, &orig, None, b'1', 99, reason)));
            }
            Pending::Replace { session, cl, orig, .. } => {
                out.push(Output::Send(self.cancel_reject(session, &cl, &orig, None, b'2', 99, reason)));
            }
            Pending::MassCancel { session, cl, req_type, .. } => {
                let mut b = Body::default();
                b.s(11, &cl).s(37, "NONE").c(530, req_type).c(531, b'0').s(58, reason);
                out.push(Output::Send(Outbound::new(session, b"r", b.0)));
            }
            Pending::Silent => {}
        }
    }

    fn throttled(&mut self, session: SessionId, now: u64) -> bool {
        let st = &mut self.sessions[session];
        let rate = st.profile.max_messages_per_sec as f64;
        if rate <= 0.0 {
            return false;
        }
        let t = &mut st.throttle;
        let elapsed = now.saturating_sub(t.last) as f64 / 1e9;
        t.last = now;
        t.tokens = (t.tokens + elapsed * rate).min(rate);
        if t.tokens >= 1.0 {
            t.tokens -= 1.0;
            false
        } else {
            true
        }
    }

    /// An application message from a session (validated by the session
    /// layer). `seq` is its MsgSeqNum (for RefSeqNum), `now` ns since epoch.
    ///
    /// Every message ends either in a request (finished by its engine batch
    /// or by [`Self::on_submit_failed`]) or in an [`Output::Done`] here.
    pub fn on_message(&mut self, session: SessionId, msg: &Message<'_>, seq: u64, now: u64, out: &mut Vec<Output>) {
        if session >= self.sessions.len() {
            return;
        }
        self.current = Some((session, seq));
        self.current_submitted = false;
        self.msg_route = Route::echo(msg);
        self.msg_account = None;
        let base = out.len();
        self.handle_message(session, msg, seq, now, out);
        // Answers go back the way the message came (115 <-> 128).
        let route = self.msg_route.take();
        set_route(&mut out[base..], &route);
        if !self.current_submitted {
            out.push(Output::Done { session, seq });
        }
        self.current = None;
        self.msg_account = None;
    }

    /// The account of a message: its OnBehalfOfCompID's for hub sessions,
    /// else the session's; and its DeliverToCompID must be one we serve.
    fn resolve_route(&self, session: SessionId, msg: &Message<'_>) -> Result<AccountId, LocalReject> {
        let prof = &self.sessions[session].profile;
        if let Some(d) = msg.get(128) {
            if !prof.deliver_to.iter().any(|x| x.as_bytes() == d) {
                return Err(LocalReject::Business(7, "Unknown DeliverToCompID (128)"));
            }
        }
        match msg.get(115) {
            None => Ok(prof.account),
            Some(c) => prof.on_behalf_of_account(c).ok_or(match msg.msg_type() {
                b"D" | b"F" | b"G" => LocalReject::Order(15, "Unknown OnBehalfOfCompID (115)"),
                _ => LocalReject::Business(6, "Unknown OnBehalfOfCompID (115)"),
            }),
        }
    }

    fn handle_message(&mut self, session: SessionId, msg: &Message<'_>, seq: u64, now: u64, out: &mut Vec<Output>) {
        let mt = msg.msg_type();
        if self.throttled(session, now) {
            tracing::debug!(session, "message rate limit exceeded");
            self.reject_message(
                session,
                msg,
                seq,
                LocalReject::Order(99, "Throttle: message rate limit exceeded"),
                out,
            );
            return;
        }
        let kind = self.sessions[session].profile.kind;
        if kind == SessionKind::DropCopy && mt != b"H" && mt != b"AF" && mt != b"x" && mt != b"V" {
            self.reject_message(
                session,
                msg,
                seq,
                LocalReject::Business(6, "Drop-copy session may not send orders"),
                out,
            );
            return;
        }
        match self.resolve_route(session, msg) {
            Ok(account) => self.msg_account = Some(account),
            Err(e) => return self.reject_message(session, msg, seq, e, out),
        }
        match mt {
            b"D" => self.new_order(session, msg, seq, out),
            b"F" => self.cancel(session, msg, seq, out),
            b"G" => self.replace(session, msg, seq, out),
            b"H" => self.status(session, msg, out),
            b"q" => self.mass_cancel(session, msg, seq, out),
            b"AF" => self.mass_status(session, msg, out),
            b"x" => self.security_list(session, msg, out),
            b"V" => self.market_data_request(session, msg, seq, out),
            _ => self.business_reject(session, msg, seq, 3, "Unsupported Message Type", out),
        }
    }

    fn business_reject(
        &mut self,
        session: SessionId,
        msg: &Message<'_>,
        seq: u64,
        reason: u32,
        why: &str,
        out: &mut Vec<Output>,
    ) {
        let mut b = Body::default();
        b.u(45, seq).s(372, text(msg.msg_type()));
        let ref_id = msg.get(11).or_else(|| msg.get(262)).or_else(|| msg.get(320)).or_else(|| msg.get(584));
        if let Some(id) = ref_id {
            b.s(379, text(id));
        }
        b.u(380, reason as u64).s(58, why);
        out.push(Output::Send(Outbound::new(session, b"j", b.0)));
    }

    /// Answer a message the gateway refuses before it reaches the engine,
    /// with the reject the client's order state machine expects.
    fn reject_message(
        &mut self,
        session: SessionId,
        msg: &Message<'_>,
        seq: u64,
        why: LocalReject,
        out: &mut Vec<Output>,
    ) {
        let mt = msg.msg_type();
        let (code, reason) = match why {
            LocalReject::Business(code, reason) => return self.business_reject(session, msg, seq, code, reason, out),
            LocalReject::Order(code, reason) => (code, reason),
        };
        let cl = text(msg.get(11).unwrap_or_default()).to_string();
        match mt {
            b"D" if !cl.is_empty() => {
                let side = msg.get(54).and_then(|s| s.first().copied()).unwrap_or(b'1');
                let b = self.reject_er(
                    &cl,
                    text(msg.get(55).unwrap_or(b"NA")),
                    side,
                    dec(msg.get(38)),
                    dec(msg.get(152)),
                    code,
                    reason,
                );
                out.push(Output::Send(Outbound::new(session, b"8", b)));
            }
            b"F" | b"G" if !cl.is_empty() => {
                let orig = text(msg.get(41).unwrap_or_default()).to_string();
                let order_id = msg.get(37).map(|v| text(v).to_string());
                let to = if mt == b"F" { b'1' } else { b'2' };
                out.push(Output::Send(self.cancel_reject(session, &cl, &orig, order_id.as_deref(), to, 99, reason)));
            }
            _ => self.business_reject(session, msg, seq, 0, reason, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reject_er(
        &mut self,
        cl: &str,
        symbol: &str,
        side: u8,
        qty: Option<Decimal>,
        cash: Option<Decimal>,
        code: u32,
        reason: &str,
    ) -> Vec<u8> {
        let exec = self.next_local_exec;
        self.next_local_exec += 1;
        let mut b = Body::default();
        b.s(37, "NONE").s(11, cl).s(17, &format!("G{}-{exec}", self.gateway)).c(150, b'8').c(39, b'8');
        b.u(103, code as u64).s(55, if symbol.is_empty() { "NA" } else { symbol }).c(54, side);
        if let Some(q) = qty {
            b.d(38, q);
        }
        if let Some(c) = cash {
            b.d(152, c);
        }
        b.s(151, "0").s(14, "0").s(6, "0").s(58, reason);
        b.0
    }

    #[allow(clippy::too_many_arguments)]
    fn cancel_reject(
        &self,
        session: SessionId,
        cl: &str,
        orig: &str,
        order_id: Option<&str>,
        response_to: u8,
        code: u32,
        reason: &str,
    ) -> Outbound {
        let known = self.by_cl_lookup(session, orig);
        let status = known.map_or(b'8', |o| o.status);
        let oid = match (order_id, self.by_cl_id(session, orig)) {
            (_, Some(id)) => id.to_string(),
            (Some(o), None) => o.to_string(),
            (None, None) => "NONE".to_string(),
        };
        let mut b = Body::default();
        b.s(37, &oid).s(11, cl).s(41, orig).c(39, status).c(434, response_to).u(102, code as u64).s(58, reason);
        Outbound::new(session, b"9", b.0)
    }

    fn by_cl_id(&self, session: SessionId, cl: &str) -> Option<OrderId> {
        let account = self.msg_account.unwrap_or(self.sessions.get(session)?.profile.account);
        // A ClOrdID that is not a valid ClientOrderId names no order.
        self.by_cl.get(&(account, ClientOrderId::new(cl)?)).copied()
    }

    fn by_cl_lookup(&self, session: SessionId, cl: &str) -> Option<&OrderState> {
        self.orders.get(&self.by_cl_id(session, cl)?)
    }

    fn instrument_of(&self, msg: &Message<'_>) -> Result<&InstrumentSpec, LocalReject> {
        let Some(sym) = msg.get(55) else {
            return Err(LocalReject::Business(5, "Symbol (55) is required"));
        };
        self.by_symbol
            .get(text(sym))
            .and_then(|id| self.instruments.get(id))
            .ok_or(LocalReject::Order(1, "Unknown symbol"))
    }

    fn check_account(&self, session: SessionId, msg: &Message<'_>) -> Result<AccountId, LocalReject> {
        let account = self.msg_account.unwrap_or(self.sessions[session].profile.account);
        match msg.get(1) {
            Some(a) if text(a) != account.to_string() => {
                Err(LocalReject::Order(15, "Account does not belong to this session"))
            }
            _ => Ok(account),
        }
    }

    /// The engine order, and the OrderQty (38) / CashOrderQty (152) as the
    /// client sent them (echoed in a later reject; parsed once).
    fn build_new_order(&self, session: SessionId, msg: &Message<'_>) -> Result<NewOrderParts, LocalReject> {
        use LocalReject::Order as R;
        let spec = *self.instrument_of(msg)?;
        let account = self.check_account(session, msg)?;
        let cl = msg.get(11).ok_or(LocalReject::Business(5, "ClOrdID (11) is required"))?;
        let client_order_id =
            ClientOrderId::new(text(cl)).ok_or(R(99, "ClOrdID must be 1-36 printable ASCII characters"))?;
        let side = match msg.get(54) {
            Some(b"1") => Side::Buy,
            Some(b"2") => Side::Sell,
            _ => return Err(R(11, "Side must be 1 (buy) or 2 (sell)")),
        };
        let sc = spec.scaling;
        let price = |tag: u32, what: &'static str| -> Result<Price, LocalReject> {
            let v = dec(msg.get(tag)).ok_or(R(99, what))?;
            sc.price_to_ticks(v).map_err(|_| R(99, "Price is not positive or not a multiple of the tick size"))
        };
        let order_type = match msg.get(40) {
            Some(b"1") => OrderType::Market,
            Some(b"2") => OrderType::Limit { price: price(44, "Price (44) is required for a limit order")? },
            Some(b"3") => OrderType::StopMarket { stop: price(99, "StopPx (99) is required for a stop order")? },
            Some(b"4") => OrderType::StopLimit {
                stop: price(99, "StopPx (99) is required for a stop-limit order")?,
                price: price(44, "Price (44) is required for a stop-limit order")?,
            },
            _ => return Err(R(11, "Unsupported OrdType")),
        };
        let sent_size = (dec(msg.get(38)), dec(msg.get(152)));
        let size = match sent_size {
            (Some(q), None) => {
                OrderSize::Base(sc.qty_to_lots(q).map_err(|_| R(13, "OrderQty is not positive or off the lot size"))?)
            }
            (None, Some(c)) => {
                if side != Side::Buy || !matches!(order_type, OrderType::Market | OrderType::StopMarket { .. }) {
                    return Err(R(11, "CashOrderQty (152) is only for market or stop buys"));
                }
                OrderSize::QuoteBudget(
                    Scaling::amount_to_units(c, sc.quote_decimals)
                        .map_err(|_| R(13, "CashOrderQty is not positive or has too many decimals"))?,
                )
            }
            _ => return Err(R(13, "exactly one of OrderQty (38) and CashOrderQty (152) is required")),
        };
        let tif = match msg.get(59) {
            None | Some(b"0") => TimeInForce::Day,
            Some(b"1") => TimeInForce::Gtc,
            Some(b"3") => TimeInForce::Ioc,
            Some(b"4") => TimeInForce::Fok,
            Some(b"6") => {
                let t = msg.get(126).and_then(Timestamp::parse).ok_or(R(99, "ExpireTime (126) is required for GTD"))?;
                TimeInForce::Gtd(u64::try_from(t.unix_nanos()).map_err(|_| R(4, "ExpireTime is in the past"))?)
            }
            _ => return Err(R(11, "Unsupported TimeInForce")),
        };
        let mut post_only = false;
        if let Some(ei) = msg.get(18) {
            for v in ei.split(|&b| b == b' ').filter(|v| !v.is_empty()) {
                match v {
                    b"6" => post_only = true,
                    _ => return Err(R(11, "Unsupported ExecInst (only 6, post-only)")),
                }
            }
        }
        let display_qty = match dec(msg.get(111)) {
            None => 0,
            Some(d) => sc.qty_to_lots(d).map_err(|_| R(13, "MaxFloor is not positive or off the lot size"))?,
        };
        let stp = match msg.get(TAG_STP) {
            None => None,
            Some(b"N") => Some(StpMode::CancelNewest),
            Some(b"O") => Some(StpMode::CancelOldest),
            Some(b"B") => Some(StpMode::CancelBoth),
            Some(b"D") => Some(StpMode::DecrementAndCancel),
            Some(b"A") => Some(StpMode::None),
            _ => return Err(R(11, "Unsupported SelfTradePrevention (7928)")),
        };
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
        Ok((order, sent_size.0, sent_size.1))
    }

    /// A PossDup copy (43=Y) of an order message whose ClOrdID the engine
    /// stream already showed: the original was applied (typically before a
    /// gateway crash, whose ResendRequest brings the copy back), and its
    /// reports come from the stream, so the copy is dropped.
    fn already_applied(&self, session: SessionId, msg: &Message<'_>) -> bool {
        msg.get(43) == Some(b"Y") && msg.get(11).is_some_and(|cl| self.by_cl_id(session, text(cl)).is_some())
    }

    fn new_order(&mut self, session: SessionId, msg: &Message<'_>, seq: u64, out: &mut Vec<Output>) {
        if self.already_applied(session, msg) {
            return tracing::info!(session, "PossDup NewOrderSingle already applied: ignored");
        }
        let (order, qty, cash) = match self.build_new_order(session, msg) {
            Ok(parts) => parts,
            Err(e) => return self.reject_message(session, msg, seq, e, out),
        };
        let st = &mut self.sessions[session];
        if st.profile.max_open_orders > 0 && st.open >= st.profile.max_open_orders {
            return self.reject_message(session, msg, seq, LocalReject::Order(3, "Open order limit reached"), out);
        }
        st.open += 1;
        // The listed symbol the order was resolved by (the same text as tag 55).
        let symbol = self.instruments.get(&order.instrument).map(|spec| spec.symbol).unwrap_or_default();
        let request = self.request(
            Pending::New { session, cl: order.client_order_id, symbol, side: side_char(order.side), qty, cash },
            session,
        );
        out.push(Output::Submit { request, command: Command::PlaceOrder(order) });
    }

    fn target_of(msg: &Message<'_>) -> Result<(OrderRef, String, String), LocalReject> {
        use LocalReject::Order as R;
        let orig = text(msg.get(41).unwrap_or_default()).to_string();
        let cl = text(msg.get(11).unwrap_or_default()).to_string();
        if ClientOrderId::new(&cl).is_none() {
            return Err(R(99, "ClOrdID must be 1-36 printable ASCII characters"));
        }
        let target = match msg.get(37).and_then(crate::field::parse_u64) {
            Some(id) => OrderRef::Id(id),
            None => OrderRef::Client(ClientOrderId::new(&orig).ok_or(R(99, "OrigClOrdID (41) is invalid"))?),
        };
        Ok((target, cl, orig))
    }

    fn cancel(&mut self, session: SessionId, msg: &Message<'_>, seq: u64, out: &mut Vec<Output>) {
        if self.already_applied(session, msg) {
            return tracing::info!(session, "PossDup OrderCancelRequest already applied: ignored");
        }
        let r = (|| {
            let spec = *self.instrument_of(msg)?;
            let account = self.check_account(session, msg)?;
            let (target, cl, orig) = Self::target_of(msg)?;
            Ok((spec, account, target, cl, orig))
        })();
        let (spec, account, target, cl, orig) = match r {
            Ok(x) => x,
            Err(e) => return self.reject_message(session, msg, seq, e, out),
        };
        let request = self.request(Pending::Cancel { session, cl, orig }, session);
        out.push(Output::Submit { request, command: Command::Cancel { account, instrument: spec.id, target } });
    }

    fn replace(&mut self, session: SessionId, msg: &Message<'_>, seq: u64, out: &mut Vec<Output>) {
        if self.already_applied(session, msg) {
            return tracing::info!(session, "PossDup OrderCancelReplaceRequest already applied: ignored");
        }
        use LocalReject::Order as R;
        let r = (|| {
            let spec = *self.instrument_of(msg)?;
            let account = self.check_account(session, msg)?;
            let (target, cl, orig) = Self::target_of(msg)?;
            let known = match target {
                OrderRef::Id(id) => self.orders.get(&id),
                OrderRef::Client(_) => self.by_cl_lookup(session, &orig),
            };
            // Only price and quantity can change (the engine's replace); a
            // different side or order type is refused rather than ignored.
            if let Some(o) = known {
                if msg.get(54).and_then(|s| s.first().copied()) != Some(side_char(o.side))
                    || msg.get(40).and_then(|s| s.first().copied()) != Some(o.ord_type)
                {
                    return Err(R(99, "Only Price and OrderQty can be replaced"));
                }
            }
            let price = match dec(msg.get(44)) {
                Some(p) => spec.scaling.price_to_ticks(p).map_err(|_| R(99, "Price is off the tick size"))?,
                None => known.map(|o| o.price).filter(|p| *p > 0).ok_or(R(99, "Price (44) is required"))?,
            };
            let qty = dec(msg.get(38)).ok_or(R(99, "OrderQty (38) is required"))?;
            let qty = spec.scaling.qty_to_lots(qty).map_err(|_| R(99, "OrderQty is off the lot size"))?;
            let new_cl = ClientOrderId::new(&cl);
            Ok((Replace { account, instrument: spec.id, target, new_client_order_id: new_cl, price, qty }, cl, orig))
        })();
        let (rep, cl, orig) = match r {
            Ok(x) => x,
            Err(e) => return self.reject_message(session, msg, seq, e, out),
        };
        let request = self.request(Pending::Replace { session, cl, orig }, session);
        out.push(Output::Submit { request, command: Command::Replace(rep) });
    }

    fn status(&mut self, session: SessionId, msg: &Message<'_>, out: &mut Vec<Output>) {
        let cl = text(msg.get(11).unwrap_or_default()).to_string();
        let id = msg.get(37).and_then(crate::field::parse_u64).or_else(|| self.by_cl_id(session, &cl));
        let accounts = &self.sessions[session].profile.accounts;
        let req_id = msg.get(790).map(|v| text(v).to_string());
        match id.and_then(|id| self.orders.get(&id).map(|o| (id, o))) {
            Some((id, o))
                if (accounts.contains(&o.account) || self.sessions[session].profile.account == o.account)
                    && (msg.get(115).is_none() || self.msg_account == Some(o.account)) =>
            {
                let mut b = self.er_base(id, o, o.cl.as_str(), None, b'I', &format!("S{id}-{}", o.cum));
                if let Some(r) = req_id {
                    b.s(790, &r);
                }
                out.push(Output::Send(Outbound::new(session, b"8", b.0)));
            }
            _ => {
                let mut b = Body::default();
                b.s(37, "NONE").s(11, &cl).s(17, "0").c(150, b'I').c(39, b'8');
                b.s(55, text(msg.get(55).unwrap_or(b"NA"))).s(54, text(msg.get(54).unwrap_or(b"1")));
                b.s(151, "0").s(14, "0").s(6, "0").s(58, "Unknown order");
                if let Some(r) = req_id {
                    b.s(790, &r);
                }
                out.push(Output::Send(Outbound::new(session, b"8", b.0)));
            }
        }
    }

    fn mass_cancel(&mut self, session: SessionId, msg: &Message<'_>, seq: u64, out: &mut Vec<Output>) {
        let cl = text(msg.get(11).unwrap_or_default()).to_string();
        let req_type = msg.get(530).and_then(|v| v.first().copied()).unwrap_or(b'7');
        let account = match self.check_account(session, msg) {
            Ok(a) => a,
            Err(e) => return self.reject_message(session, msg, seq, e, out),
        };
        let side = match msg.get(54) {
            Some(b"1") => Some(Side::Buy),
            Some(b"2") => Some(Side::Sell),
            _ => None,
        };
        let reject = |reason: u8, t: &str| {
            let mut b = Body::default();
            b.s(11, &cl).s(37, "NONE").c(530, req_type).c(531, b'0').c(532, reason).s(58, t);
            Outbound::new(session, b"r", b.0)
        };
        let (instrument, symbol) = match req_type {
            b'7' => (None, None),
            b'1' => match msg.get(55).and_then(|s| self.by_symbol.get(text(s))) {
                Some(id) => (Some(*id), msg.get(55).map(|s| text(s).to_string())),
                None => return out.push(Output::Send(reject(b'1', "Unknown or missing Symbol"))),
            },
            _ => return out.push(Output::Send(reject(b'0', "MassCancelRequestType must be 1 or 7"))),
        };
        let request = self.request(Pending::MassCancel { session, cl, req_type, symbol }, session);
        out.push(Output::Submit { request, command: Command::MassCancel { account, instrument, side } });
    }

    fn mass_status(&mut self, session: SessionId, msg: &Message<'_>, out: &mut Vec<Output>) {
        let req_id = text(msg.get(584).unwrap_or_default()).to_string();
        let prof = &self.sessions[session].profile;
        let instrument = msg.get(55).and_then(|s| self.by_symbol.get(text(s)).copied());
        let mut ids: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|(_, o)| {
                is_open(o.status)
                    && (prof.account == o.account || prof.accounts.contains(&o.account))
                    && (msg.get(115).is_none() || self.msg_account == Some(o.account))
                    && instrument.is_none_or(|i| i == o.instrument)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let n = ids.len();
        if n == 0 {
            let mut b = Body::default();
            b.s(37, "NONE").s(11, "NONE").s(17, "0").c(150, b'I').c(39, b'8').s(55, "NA").c(54, b'1');
            b.s(151, "0").s(14, "0").s(6, "0").s(584, &req_id).u(911, 0).c(912, b'Y').s(58, "No open orders");
            out.push(Output::Send(Outbound::new(session, b"8", b.0)));
            return;
        }
        for (i, id) in ids.iter().enumerate() {
            let o = &self.orders[id];
            let mut b = self.er_base(*id, o, o.cl.as_str(), None, b'I', &format!("S{id}-{}", o.cum));
            b.s(584, &req_id).u(911, n as u64).c(912, if i + 1 == n { b'Y' } else { b'N' });
            out.push(Output::Send(Outbound::new(session, b"8", b.0)));
        }
    }

    fn security_list(&mut self, session: SessionId, msg: &Message<'_>, out: &mut Vec<Output>) {
        let req_id = text(msg.get(320).unwrap_or_default()).to_string();
        let one = match msg.get(559) {
            Some(b"0") => Some(text(msg.get(55).unwrap_or_default()).to_string()),
            _ => None,
        };
        let mut specs: Vec<&InstrumentSpec> =
            self.instruments.values().filter(|s| one.as_deref().is_none_or(|sym| s.symbol.as_str() == sym)).collect();
        specs.sort_by_key(|s| s.id);
        let mut b = Body::default();
        b.s(320, &req_id).s(322, &format!("SL{}", self.next_local_exec));
        self.next_local_exec += 1;
        b.u(560, if specs.is_empty() { 2 } else { 0 });
        b.u(146, specs.len() as u64);
        for s in specs {
            // FIX 4.4 has no tick-size field in the list; the tick goes in
            // Text, the lot size in RoundLot and the minimum in MinTradeVol.
            b.s(55, s.symbol.as_str());
            b.d(561, s.scaling.lot_size).d(562, s.scaling.lots_to_qty(s.min_qty.max(1)));
            b.s(58, &format!("tick={}", s.scaling.tick_size.normalize()));
        }
        out.push(Output::Send(Outbound::new(session, b"y", b.0)));
    }

    fn market_data_request(&mut self, session: SessionId, msg: &Message<'_>, seq: u64, out: &mut Vec<Output>) {
        let req_id = text(msg.get(262).unwrap_or_default()).to_string();
        let reject = |reason: u8, t: &str| {
            let mut b = Body::default();
            b.s(262, &req_id).c(281, reason).s(58, t);
            Outbound::new(session, b"Y", b.0)
        };
        let sub_type = msg.get(263).and_then(|v| v.first().copied()).unwrap_or(b'0');
        if sub_type == b'2' {
            self.md_subs.retain(|s| !(s.session == session && s.req_id == req_id));
            return;
        }
        if sub_type == b'1' && self.md_subs.iter().any(|s| s.session == session && s.req_id == req_id) {
            return out.push(Output::Send(reject(b'1', "Duplicate MDReqID")));
        }
        let depth = msg.get(264).and_then(crate::field::parse_u64).unwrap_or(0) as usize;
        if sub_type == b'1' && msg.get(265) == Some(b"0") {
            return out.push(Output::Send(reject(b'6', "Only incremental refresh (265=1) is supported")));
        }
        // Groups: entry types (267/269) and symbols (146/55).
        let (mut bids_offers, mut trades) = (false, false);
        let mut symbols = Vec::new();
        for f in msg.fields() {
            match f.tag {
                269 => match f.value {
                    b"0" | b"1" => bids_offers = true,
                    b"2" => trades = true,
                    _ => return out.push(Output::Send(reject(b'8', "Unsupported MDEntryType"))),
                },
                55 => symbols.push(text(f.value).to_string()),
                _ => {}
            }
        }
        if symbols.is_empty() {
            return self.business_reject(session, msg, seq, 5, "Symbol (55) is required", out);
        }
        let mut ids = Vec::new();
        for s in &symbols {
            match self.by_symbol.get(s) {
                Some(id) => ids.push(*id),
                None => return out.push(Output::Send(reject(b'0', "Unknown symbol"))),
            }
        }
        if sub_type == b'1' && self.md_subs.iter().filter(|s| s.session == session).count() + ids.len() > MAX_MD_SUBS {
            return out.push(Output::Send(reject(b'0', "Too many subscriptions")));
        }
        for id in ids {
            let sym = self.instruments[&id].symbol.as_str().to_string();
            let sc = self.instruments[&id].scaling;
            let mut b = Body::default();
            b.s(262, &req_id).s(55, &sym);
            let mut entries = Vec::new();
            if bids_offers {
                if let Some(book) = self.md.get(&id) {
                    let cap = if depth == 0 { usize::MAX } else { depth };
                    entries.extend(book.bids.iter().rev().take(cap).map(|(p, q)| (b'0', *p, *q)));
                    entries.extend(book.asks.iter().take(cap).map(|(p, q)| (b'1', *p, *q)));
                }
            }
            b.u(268, entries.len() as u64);
            for (t, p, q) in entries {
                b.c(269, t).d(270, sc.ticks_to_price(p)).d(271, sc.lots_to_qty(q));
            }
            out.push(Output::Send(Outbound::new(session, b"W", b.0)));
            if sub_type == b'1' {
                self.md_subs.push(MdSub { session, req_id: req_id.clone(), instrument: id, bids_offers, trades });
            }
        }
    }

    /// Execution report fields common to every ExecType, from the order state.
    fn er_base(&self, id: OrderId, o: &OrderState, cl: &str, orig: Option<&str>, exec_type: u8, exec_id: &str) -> Body {
        let spec = self.instruments.get(&o.instrument);
        let mut b = Body::default();
        b.u(37, id).s(11, cl);
        if let Some(orig) = orig {
            b.s(41, orig);
        }
        b.s(17, exec_id).c(150, exec_type).c(39, o.status);
        b.u(1, o.account as u64);
        let Some(spec) = spec else {
            b.s(55, "NA").c(54, side_char(o.side)).s(151, "0").s(14, "0").s(6, "0");
            return b;
        };
        let sc = spec.scaling;
        b.s(55, spec.symbol.as_str()).c(54, side_char(o.side));
        if o.qty > 0 {
            b.d(38, sc.lots_to_qty(o.qty));
        }
        if let Some(c) = o.cash {
            b.d(152, c);
        }
        b.c(40, o.ord_type);
        if o.price > 0 && o.ord_type != b'1' && o.ord_type != b'3' {
            b.d(44, sc.ticks_to_price(o.price));
        }
        if o.stop > 0 {
            b.d(99, sc.ticks_to_price(o.stop));
        }
        b.c(59, o.tif);
        if let Some(e) = o.expire {
            b.t(126, e);
        }
        // Checked: a notional beyond Decimal's 96 bits must not panic the gateway.
        let avg = Decimal::try_from_i128_with_scale(o.notional, 0)
            .ok()
            .filter(|_| o.cum > 0)
            .and_then(|n| n.checked_div(Decimal::from(o.cum)))
            .and_then(|x| x.checked_mul(sc.tick_size))
            .map_or(Decimal::ZERO, |x| x.round_dp(12));
        b.d(151, sc.lots_to_qty(o.leaves)).d(14, sc.lots_to_qty(o.cum)).d(6, avg);
        b
    }

    fn emit(&self, id: OrderId, body: Body, out: &mut Vec<Output>) {
        let Some(o) = self.orders.get(&id) else { return };
        let outbound = |s: SessionId, body: Vec<u8>| {
            let mut m = Outbound::new(s, b"8", body);
            // The owner's reports go back through its hub route; drop copies get none.
            if Some(s) == o.session {
                m.route = o.route.clone();
            }
            Output::Send(m)
        };
        // Recipients: the owner, then the drop-copy sessions following the
        // account, in session order; not collected (no allocation per
        // report): the last one takes the body uncopied.
        let mut held = o.session;
        for (i, s) in self.sessions.iter().enumerate() {
            if s.profile.kind == SessionKind::DropCopy && s.profile.accounts.contains(&o.account) {
                if let Some(prev) = held.replace(i) {
                    out.push(outbound(prev, body.0.clone()));
                }
            }
        }
        if let Some(last) = held {
            out.push(outbound(last, body.0));
        }
    }

    fn finish(&mut self, id: OrderId) {
        if let Some(o) = self.orders.get(&id) {
            if let Some(s) = o.session {
                self.sessions[s].open = self.sessions[s].open.saturating_sub(1);
            }
        }
        self.done.push_back(id);
        while self.done.len() > DONE_KEPT {
            if let Some(old) = self.done.pop_front() {
                if let Some(o) = self.orders.remove(&old) {
                    self.by_cl.remove(&(o.account, o.cl));
                }
            }
        }
    }

    /// One engine batch (the events of one command), from any gateway.
    pub fn on_engine(&mut self, batch: &EngineBatch, out: &mut Vec<Output>) {
        let own = match batch.origin {
            Some(Origin { gateway, request }) if gateway == self.gateway => Some(request),
            _ => None,
        };
        let (ctx, inbound, ctx_route) = match own.and_then(|r| self.pending.remove(&r)) {
            Some((p, i, r)) => (Some(p), i, r),
            None => (None, None, None),
        };
        // One of our requests without a context: history from before a
        // restart (its session is in the request id), or a barrier.
        let mut owner = None;
        let mut barrier_reached = false;
        if let (Some(r), None) = (own, &ctx) {
            if r & REQUEST_BARRIER_BIT == 0 {
                self.next_request = self.next_request.max((r >> REQUEST_SESSION_BITS) + 1);
                owner =
                    self.session_of_request(r).filter(|&s| self.sessions[s].profile.kind == SessionKind::OrderEntry);
            } else if self.barrier == Some(r) {
                barrier_reached = true;
            }
        }
        let mut md_changes: Vec<(InstrumentId, Side, Price, Qty)> = Vec::new();
        let mut md_trades: Vec<(InstrumentId, Price, Qty)> = Vec::new();
        let mut cancelled = 0u64;
        let mut ctx_answered = false;
        let mut deferred: Vec<Output> = Vec::new();
        let base = out.len();
        for (i, ev) in batch.events.iter().enumerate() {
            // Built only for the events that produce a report (most do not:
            // book and balance events).
            let exec_id = || ExecId::new(batch.seq, i as u64);
            match ev.kind {
                EventKind::OrderAccepted {
                    order_id,
                    account,
                    instrument,
                    client_order_id,
                    side,
                    kind,
                    price,
                    stop_price,
                    qty,
                    tif,
                    ..
                } => {
                    let (session, cash, route) = match &ctx {
                        Some(Pending::New { session, cl, cash, .. }) if *cl == client_order_id => {
                            ctx_answered = true;
                            (Some(*session), *cash, ctx_route.clone())
                        }
                        None if owner.is_some_and(|s| self.sessions[s].profile.accounts.contains(&account)) => {
                            // Placed before a restart: the route back is the account's OnBehalfOfCompID.
                            let s = owner.unwrap_or_default();
                            self.sessions[s].open += 1;
                            let route = self.sessions[s]
                                .profile
                                .on_behalf_of_name(account)
                                .map(|name| Arc::new(Route { deliver_to: Some(name.to_string()), on_behalf_of: None }));
                            (Some(s), None, route)
                        }
                        _ => (None, None, None),
                    };
                    let o = OrderState {
                        session,
                        account,
                        instrument,
                        side,
                        ord_type: kind_char(kind),
                        tif: tif_char(tif),
                        expire: match tif {
                            TimeInForce::Gtd(t) => Some(t),
                            _ => None,
                        },
                        price,
                        stop: stop_price,
                        qty,
                        cash,
                        cl: client_order_id,
                        cum: 0,
                        notional: 0,
                        leaves: qty,
                        status: b'0',
                        route,
                    };
                    self.by_cl.insert((account, client_order_id), order_id);
                    self.orders.insert(order_id, o);
                    let o = &self.orders[&order_id];
                    let b = self.er_base(order_id, o, o.cl.as_str(), None, b'0', &exec_id());
                    self.emit(order_id, b, out);
                }
                EventKind::Rejected { order_id, reason, .. } => {
                    let Some(p) = &ctx else { continue };
                    ctx_answered = true;
                    let from = out.len();
                    let why = format!("{reason:?}");
                    match p {
                        Pending::New { session, cl, symbol, side, qty, cash } => {
                            let (session, cl, symbol, side, qty, cash) = (*session, *cl, *symbol, *side, *qty, *cash);
                            self.sessions[session].open = self.sessions[session].open.saturating_sub(1);
                            let b = self.reject_er(
                                cl.as_str(),
                                symbol.as_str(),
                                side,
                                qty,
                                cash,
                                ord_rej_reason(reason),
                                &why,
                            );
                            out.push(Output::Send(Outbound::new(session, b"8", b)));
                        }
                        Pending::Cancel { session, cl, orig, .. } | Pending::Replace { session, cl, orig, .. } => {
                            let to = if matches!(p, Pending::Cancel { .. }) { b'1' } else { b'2' };
                            let oid = (order_id != 0).then(|| order_id.to_string());
                            out.push(Output::Send(self.cancel_reject(
                                *session,
                                cl,
                                orig,
                                oid.as_deref(),
                                to,
                                cxl_rej_reason(reason),
                                &why,
                            )));
                        }
                        Pending::MassCancel { session, cl, req_type, .. } => {
                            let mut b = Body::default();
                            b.s(11, cl).s(37, "NONE").c(530, *req_type).c(531, b'0').c(532, b'0').s(58, &why);
                            out.push(Output::Send(Outbound::new(*session, b"r", b.0)));
                        }
                        Pending::Silent => {}
                    }
                    set_route(&mut out[from..], &ctx_route);
                }
                EventKind::Trade {
                    trade_id,
                    instrument,
                    price,
                    qty,
                    maker_order,
                    taker_order,
                    maker_leaves,
                    taker_leaves,
                    ..
                } => {
                    if let Some(book) = self.md.get_mut(&instrument) {
                        if let Some(e) = book.orders.get_mut(&maker_order) {
                            let (side, p) = (e.0, e.1);
                            let by = qty.min(e.2);
                            e.2 -= by;
                            let old = book.level_qty(side, p);
                            book.adjust(side, p, -by);
                            md_changes.push((instrument, side, p, old));
                        }
                    }
                    md_trades.push((instrument, price, qty));
                    for (oid, leaves, tag) in [(maker_order, maker_leaves, 'M'), (taker_order, taker_leaves, 'T')] {
                        let Some(o) = self.orders.get_mut(&oid) else { continue };
                        o.cum += qty;
                        o.notional = o.notional.saturating_add(price as i128 * qty as i128);
                        o.leaves = leaves;
                        o.status = if leaves == 0 { b'2' } else { b'1' };
                        let cl = o.cl;
                        let sc = self.instruments.get(&o.instrument).map(|s| s.scaling);
                        let mut b = self.er_base(
                            oid,
                            &self.orders[&oid],
                            cl.as_str(),
                            None,
                            b'F',
                            &format!("{}-{i}{tag}", batch.seq),
                        );
                        if let Some(sc) = sc {
                            b.d(31, sc.ticks_to_price(price)).d(32, sc.lots_to_qty(qty));
                        }
                        // FIX 4.4 has no TrdMatchID (880) in the ExecutionReport: SecondaryExecID carries the trade id.
                        b.u(527, trade_id);
                        self.emit(oid, b, out);
                    }
                }
                EventKind::OrderFilled { order_id, .. } => {
                    if let Some(o) = self.orders.get_mut(&order_id) {
                        o.status = b'2';
                        o.leaves = 0;
                        self.finish(order_id);
                    }
                }
                EventKind::OrderCancelled { order_id, reason, .. } => {
                    cancelled += 1;
                    let Some(o) = self.orders.get_mut(&order_id) else { continue };
                    let expired = matches!(reason, CancelReason::Expired | CancelReason::EndOfDay);
                    // FIX: LeavesQty is 0 once an order is closed, whatever was left.
                    o.leaves = 0;
                    o.status = if expired { b'C' } else { b'4' };
                    let mut cl = o.cl;
                    let mut orig = None;
                    if let Some(Pending::Cancel { cl: ccl, .. }) = &ctx {
                        if reason == CancelReason::Requested {
                            ctx_answered = true;
                            // Always a valid ClientOrderId: `target_of` checked it.
                            if let Some(key) = ClientOrderId::new(ccl) {
                                orig = Some(std::mem::replace(&mut o.cl, key));
                                cl = key;
                                self.by_cl.insert((o.account, key), order_id);
                            }
                        }
                    }
                    let mut b = self.er_base(
                        order_id,
                        &self.orders[&order_id],
                        cl.as_str(),
                        orig.as_ref().map(ClientOrderId::as_str),
                        if expired { b'C' } else { b'4' },
                        &exec_id(),
                    );
                    b.s(58, cancel_text(reason));
                    self.emit(order_id, b, out);
                    self.finish(order_id);
                }
                EventKind::OrderReplaced { order_id, client_order_id, price, qty, leaves, .. } => {
                    let Some(o) = self.orders.get_mut(&order_id) else { continue };
                    let orig = std::mem::replace(&mut o.cl, client_order_id);
                    o.price = price;
                    o.qty = qty;
                    o.leaves = leaves;
                    o.status = if o.cum > 0 { b'1' } else { b'0' };
                    let (account, cl) = (o.account, o.cl);
                    if matches!(&ctx, Some(Pending::Replace { .. })) {
                        ctx_answered = true;
                    }
                    self.by_cl.insert((account, client_order_id), order_id);
                    let b = self.er_base(
                        order_id,
                        &self.orders[&order_id],
                        cl.as_str(),
                        Some(orig.as_str()),
                        b'5',
                        &exec_id(),
                    );
                    self.emit(order_id, b, out);
                }
                EventKind::OrderTriggered { order_id, .. } => {
                    let Some(o) = self.orders.get(&order_id) else { continue };
                    // FIX 4.4 has no ExecType "triggered" (L is 5.0): a
                    // restatement with reason 99 and a Text says it.
                    let mut b = self.er_base(order_id, o, o.cl.as_str(), None, b'D', &exec_id());
                    b.u(378, 99).s(58, "Stop triggered");
                    self.emit(order_id, b, out);
                }
                EventKind::BookAdd { instrument, order_id, side, price, qty } => {
                    let per_book = self.md_book_capacity();
                    let book = self.md.entry(instrument).or_insert_with(|| MdBook {
                        orders: FxHashMap::with_capacity_and_hasher(per_book, Default::default()),
                        ..MdBook::default()
                    });
                    // An iceberg refresh re-adds a known order id: take the old slice out first.
                    if let Some((s, p, q)) = book.orders.insert(order_id, (side, price, qty)) {
                        md_changes.push((instrument, s, p, book.level_qty(s, p)));
                        book.adjust(s, p, -q);
                    }
                    let old = book.level_qty(side, price);
                    book.adjust(side, price, qty);
                    md_changes.push((instrument, side, price, old));
                }
                EventKind::BookReduce { instrument, order_id, by } => {
                    if let Some(book) = self.md.get_mut(&instrument) {
                        if let Some(e) = book.orders.get_mut(&order_id) {
                            let (side, p) = (e.0, e.1);
                            let by = by.min(e.2);
                            e.2 -= by;
                            let old = book.level_qty(side, p);
                            book.adjust(side, p, -by);
                            md_changes.push((instrument, side, p, old));
                        }
                    }
                }
                EventKind::BookRemove { instrument, order_id } => {
                    if let Some(book) = self.md.get_mut(&instrument) {
                        if let Some((side, p, q)) = book.orders.remove(&order_id) {
                            let old = book.level_qty(side, p);
                            book.adjust(side, p, -q);
                            md_changes.push((instrument, side, p, old));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(Pending::MassCancel { session, cl, req_type, symbol }) = &ctx {
            if !ctx_answered {
                let mut b = Body::default();
                b.s(11, cl).s(37, &format!("MC{}", batch.seq)).c(530, *req_type).c(531, *req_type);
                b.u(533, cancelled);
                if let Some(s) = symbol {
                    b.s(55, s);
                }
                // The report goes before the cancels it announces.
                let mut m = Outbound::new(*session, b"r", b.0);
                m.route = ctx_route.clone();
                deferred.push(Output::Send(m));
            }
        }
        if !deferred.is_empty() {
            // Mass-cancel report first, then the execution reports of this batch.
            let tail: Vec<Output> = out.split_off(base);
            out.extend(deferred);
            out.extend(tail);
        }
        if !self.md_subs.is_empty() && (!md_changes.is_empty() || !md_trades.is_empty()) {
            self.publish_md(&md_changes, &md_trades, out);
        }
        // Stamp this batch's messages with its seq; a session whose store
        // already holds them (engine mark) does not get them again.
        let produced = out.split_off(base);
        for mut o in produced {
            if let Output::Send(m) = &mut o {
                if self.sessions.get(m.session).is_some_and(|s| batch.seq <= s.mark) {
                    continue;
                }
                m.engine_seq = batch.seq;
            }
            out.push(o);
        }
        if let Some((session, seq)) = inbound {
            out.push(Output::Done { session, seq });
        }
        if self.replay_until.is_some_and(|n| batch.seq >= n) {
            self.replay_until = None;
            barrier_reached = true;
        }
        if barrier_reached {
            tracing::info!(seq = batch.seq, orders = self.orders.len(), "order view rebuilt from the engine stream");
            self.barrier = None;
        }
    }

    fn publish_md(
        &self,
        changes: &[(InstrumentId, Side, Price, Qty)],
        trades: &[(InstrumentId, Price, Qty)],
        out: &mut Vec<Output>,
    ) {
        // Net effect per level: the first recorded old quantity vs now.
        let mut levels: Vec<(InstrumentId, Side, Price, Qty)> = Vec::new();
        for &(i, s, p, old) in changes {
            if !levels.iter().any(|&(i2, s2, p2, _)| i2 == i && s2 == s && p2 == p) {
                levels.push((i, s, p, old));
            }
        }
        for sub in &self.md_subs {
            let Some(spec) = self.instruments.get(&sub.instrument) else { continue };
            let sc = spec.scaling;
            let mut b = Body::default();
            let mut n = 0;
            let mut entries = Body::default();
            if sub.bids_offers {
                let book = self.md.get(&sub.instrument);
                for &(_, s, p, old) in levels.iter().filter(|l| l.0 == sub.instrument) {
                    let new = book.map_or(0, |b| b.level_qty(s, p));
                    let action = match (old, new) {
                        (0, 0) => continue,
                        (0, _) => b'0',
                        (_, 0) => b'2',
                        (a, b) if a == b => continue,
                        _ => b'1',
                    };
                    entries.c(279, action).c(269, if s == Side::Buy { b'0' } else { b'1' });
                    entries.s(55, spec.symbol.as_str()).d(270, sc.ticks_to_price(p)).d(271, sc.lots_to_qty(new));
                    n += 1;
                }
            }
            if sub.trades {
                for &(_, p, q) in trades.iter().filter(|t| t.0 == sub.instrument) {
                    entries.c(279, b'0').c(269, b'2').s(55, spec.symbol.as_str());
                    entries.d(270, sc.ticks_to_price(p)).d(271, sc.lots_to_qty(q));
                    n += 1;
                }
            }
            if n == 0 {
                continue;
            }
            b.s(262, &sub.req_id).u(268, n);
            b.0.extend_from_slice(&entries.0);
            out.push(Output::Send(Outbound::new(sub.session, b"X", b.0)));
        }
    }
}

/// Give messages without a route this one (answers to one request).
fn set_route(out: &mut [Output], route: &Option<Arc<Route>>) {
    if route.is_none() {
        return;
    }
    for o in out {
        if let Output::Send(m) = o {
            if m.route.is_none() {
                m.route = route.clone();
            }
        }
    }
}

fn is_open(status: u8) -> bool {
    matches!(status, b'0' | b'1')
}

fn cancel_text(r: CancelReason) -> &'static str {
    match r {
        CancelReason::Requested => "Canceled on request",
        CancelReason::MassCancel => "Mass cancel",
        CancelReason::KillSwitch => "Kill switch",
        CancelReason::Unfilled => "Unfilled remainder canceled (IOC/market)",
        CancelReason::FillOrKill => "Fill or kill could not fill",
        CancelReason::SelfTrade => "Self-trade prevention",
        CancelReason::Expired => "Expired (GTD)",
        CancelReason::EndOfDay => "Expired (end of day)",
        CancelReason::ProtectionLimit => "Price protection or budget limit reached",
        CancelReason::BookFull => "Book full",
    }
}

#[cfg(test)]
mod exec_id_tests {
    use super::ExecId;
    use proptest::prelude::*;

    #[test]
    fn exec_id_edges() {
        assert_eq!(&*ExecId::new(0, 0), "0-0");
        assert_eq!(&*ExecId::new(u64::MAX, u64::MAX), format!("{}-{}", u64::MAX, u64::MAX));
    }

    proptest! {
        /// The same text `format!("{seq}-{index}")` made before.
        #[test]
        fn exec_id_matches_format(seq: u64, index: u64) {
            prop_assert_eq!(&*ExecId::new(seq, index), format!("{seq}-{index}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After `reserve(n)`, n resting orders fit without any per-order table
    /// growing (a doubling is a stall of the gateway thread).
    #[test]
    fn reserved_tables_hold_that_many_orders_without_growing() {
        use crate::frame::{checksum, Parser};
        use castle_engine::FastEngine;
        const N: u64 = 3_000;
        let limits = castle_engine::Limits { max_orders_per_instrument: 1 << 14, ..castle_engine::Limits::default() };
        let mut engine = FastEngine::new(limits);
        let spec = InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000);
        let mut events = Vec::new();
        engine.apply(1, &Command::AddInstrument(spec), &mut events);
        engine.apply(1, &Command::Deposit { account: 7, asset: 2, amount: 1 << 61 }, &mut events);
        let mut layer = OrderLayer::new(1, &[spec]);
        let sid = layer.add_session(SessionProfile::order_entry(7));
        layer.reserve(N as usize);
        let caps = |l: &OrderLayer| {
            (l.orders.capacity(), l.by_cl.capacity(), l.md.get(&0).map(|b| b.orders.capacity()).unwrap_or(usize::MAX))
        };
        let before = caps(&layer);
        assert!(before.0 >= N as usize && before.1 >= N as usize, "{before:?}");
        let mut parser = Parser::default();
        let mut out = Vec::new();
        // Page faults of this thread inside the layer (not the engine's).
        let minflt = || {
            let mut u: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: getrusage fills the struct we pass.
            assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
            u.ru_minflt as u64
        };
        let mut faults = 0;
        for i in 0..N {
            let body = format!(
                "35=D\x0149=BENCH\x0156=CASTLE\x0134={}\x0152=20240101-00:00:00\x0111=C{i}\x0155=BTC-USDT\x0154=1\x01\
                 60=20240101-00:00:00\x0138=0.001\x0140=2\x0144={}\x0159=1\x01",
                i + 2,
                59_000 + i % 100
            );
            let mut bytes = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
            let cs = checksum(&bytes);
            bytes.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
            let msg = parser.parse(&bytes, crate::Dictionary::fix44()).expect("valid NewOrderSingle");
            let f0 = minflt();
            layer.on_message(sid, &msg, i + 2, 2, &mut out);
            faults += minflt() - f0;
            let mut replies = Vec::new();
            for o in out.drain(..) {
                if let Output::Submit { request, command } = o {
                    events.clear();
                    let seq = engine.apply(3, &command, &mut events);
                    let batch = EngineBatch {
                        origin: Some(Origin { gateway: 1, request }),
                        seq,
                        ts: 3,
                        events: events.clone(),
                    };
                    let f0 = minflt();
                    layer.on_engine(&batch, &mut replies);
                    faults += minflt() - f0;
                }
            }
            assert!(
                replies.iter().any(|r| matches!(r, Output::Send(m) if m.get(150) == Some("0"))),
                "order {i}: {replies:?}"
            );
        }
        assert_eq!(layer.orders.len(), N as usize);
        let after = caps(&layer);
        assert_eq!((after.0, after.1), (before.0, before.1), "a table grew");
        assert!(after.2 >= N as usize && after.2 != usize::MAX, "market-data book sized: {after:?}");
        // The reserved tables were faulted in by `reserve`: storing 3,000
        // orders in them (~250 pages untouched otherwise) faults only where
        // the allocator grows (a few dozen at most).
        eprintln!("page faults in the order layer for {N} orders: {faults}");
        assert!(faults < 100, "{faults} page faults in the order layer for {N} orders");
    }

    #[test]
    fn decimals_are_written_plainly() {
        for (v, want) in [
            ("0.5", "0.5"),
            ("60000.00", "60000"),
            ("0", "0"),
            ("-1.250", "-1.25"),
            ("0.00001", "0.00001"),
            ("123.456", "123.456"),
            ("100", "100"),
            ("-0.010", "-0.01"),
            // Mantissas beyond 64 bits take the 128-bit path.
            ("123456789012345678901234.5670", "123456789012345678901234.567"),
            ("-79228162514264337593543950335", "-79228162514264337593543950335"),
            ("0.0000000000000000000000000010", "0.000000000000000000000000001"),
        ] {
            let mut out = Vec::new();
            write_decimal(&mut out, Decimal::from_str(v).unwrap());
            assert_eq!(String::from_utf8(out).unwrap(), want, "{v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn write_decimal_matches_normalized_display(m in proptest::num::i128::ANY, scale in 0u32..=28) {
            let m = m % 79_228_162_514_264_337_593_543_950_335i128; // within 96 bits
            let v = Decimal::from_i128_with_scale(m, scale);
            let mut out = Vec::new();
            write_decimal(&mut out, v);
            let want = v.normalize().to_string();
            // Display of a negative zero after normalize may keep the sign; we never write "-0".
            let want = if v.is_zero() { "0".to_string() } else { want };
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
