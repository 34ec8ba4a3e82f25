//! The engine state machine: `apply(time, command) -> events`.
//!
//! One `Engine` owns every instrument's book, every balance and every open
//! order. It does no I/O and reads no clock; the same commands with the same
//! times always produce the same events and the same state hash.
//!
//! The engine is generic over the book so the fast [`crate::LadderBook`] and
//! the obviously-correct [`crate::ReferenceBook`] run the very same rules.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::account::{AccountIx, Accounts, Balance};
use crate::book::OrderBook;
use crate::command::{Command, StpMode};
use crate::event::{Event, EventKind, RejectReason};
use crate::instrument::{InstrumentSpec, TradingStatus};
use crate::order::{Order, StopOrder};
use crate::risk::Scale;
use crate::types::{
    AccountId, Amount, AssetId, ClientOrderId, InstrumentId, OrderId, Price, Seq, Side, Timestamp, FEE_ACCOUNT,
    MAX_VALUE,
};

/// Explicit bounds on everything the engine holds. Memory for books, the
/// client-id index and the expiry queue is reserved up front from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_instruments: u32,
    pub max_assets: u32,
    pub max_accounts: u32,
    /// Resting orders per instrument (book capacity).
    pub max_orders_per_instrument: usize,
    /// Open orders across the engine (client order id index capacity).
    pub max_open_orders: usize,
    pub max_stops_per_instrument: usize,
    /// Open GTD orders across the engine (expiry queue capacity).
    pub max_timed_orders: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_instruments: 64,
            max_assets: 32,
            max_accounts: 1 << 20,
            max_orders_per_instrument: 1 << 18,
            max_open_orders: 1 << 20,
            max_stops_per_instrument: 4_096,
            max_timed_orders: 1 << 18,
        }
    }
}

impl Limits {
    /// Small limits for tests and fuzzing.
    pub fn small() -> Self {
        Limits {
            max_instruments: 8,
            max_assets: 8,
            max_accounts: 64,
            max_orders_per_instrument: 256,
            max_open_orders: 512,
            max_stops_per_instrument: 32,
            max_timed_orders: 64,
        }
    }
}

pub(crate) struct Market<B> {
    pub(crate) spec: InstrumentSpec,
    pub(crate) scale: Scale,
    pub(crate) status: TradingStatus,
    /// Last trade price, or the spec's reference price before the first trade.
    pub(crate) last_price: Price,
    pub(crate) book: B,
    /// Waiting stop orders in arrival order.
    pub(crate) stops: Vec<StopOrder>,
}

pub struct Engine<B: OrderBook> {
    pub(crate) limits: Limits,
    pub(crate) seq: Seq,
    pub(crate) now: Timestamp,
    pub(crate) next_order_id: OrderId,
    pub(crate) next_trade_id: u64,
    pub(crate) next_priority: u64,
    pub(crate) markets: Vec<Option<Market<B>>>,
    pub(crate) accounts: Accounts,
    /// Open orders by (account, client order id): uniqueness and cancel by client id.
    pub(crate) client_ids: FxHashMap<(AccountId, ClientOrderId), (InstrumentId, OrderId)>,
    /// GTD expiries, earliest first. Entries of orders that already left are
    /// skipped when popped, and swept when the queue is full.
    pub(crate) expiries: BinaryHeap<Reverse<(Timestamp, OrderId, InstrumentId)>>,
    /// Reused buffer for mass cancels (order ids to cancel, sorted).
    pub(crate) scratch: Vec<(OrderId, InstrumentId)>,
    /// Open orders the host asked the lookup tables to hold without growing
    /// ([`Engine::reserve_order_index`]); instruments listed later get their
    /// id index sized from it too. A sizing hint only: not state, not in
    /// snapshots, no effect on any output.
    pub(crate) order_reserve: usize,
    /// [`Engine::fault_in_order_index`] was called: books of instruments
    /// listed later are faulted in too. A hint like `order_reserve`.
    pub(crate) fault_in_orders: bool,
}

impl<B: OrderBook> Engine<B> {
    pub fn new(limits: Limits) -> Self {
        assert!(limits.max_assets > 0 && limits.max_instruments > 0 && limits.max_accounts > 0);
        let mut accounts = Accounts::new(limits.max_accounts, limits.max_assets);
        accounts.ix_or_create(FEE_ACCOUNT).expect("room for the fee account");
        Engine {
            limits,
            seq: 0,
            now: 0,
            next_order_id: 1,
            next_trade_id: 1,
            next_priority: 1,
            markets: (0..limits.max_instruments).map(|_| None).collect(),
            accounts,
            client_ids: FxHashMap::with_capacity_and_hasher(
                limits.max_open_orders.min(crate::INDEX_START_CAPACITY),
                Default::default(),
            ),
            expiries: BinaryHeap::with_capacity(limits.max_timed_orders),
            scratch: Vec::new(),
            order_reserve: 0,
            fault_in_orders: false,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Size the order lookup tables (the client order id index and the id
    /// index of every instrument, listed so far or later) for `open_orders`
    /// orders, up to the limits. They start small and grow by doubling (see
    /// [`crate::INDEX_START_CAPACITY`]); each growth moves every entry at
    /// once, a stall of milliseconds at 100k orders. A host that expects
    /// that many resting orders and cares about tail latency (the FIX
    /// gateway's round trip) reserves once at start instead.
    pub fn reserve_order_index(&mut self, open_orders: usize) {
        self.order_reserve = open_orders;
        let want = open_orders.min(self.limits.max_open_orders);
        self.client_ids.reserve(want.saturating_sub(self.client_ids.len()));
        for m in self.markets.iter_mut().flatten() {
            m.book.reserve(open_orders.min(self.limits.max_orders_per_instrument));
        }
    }

    /// Write the pages of the order lookup tables and of every book's order
    /// arena once, for as many orders as [`Engine::reserve_order_index`]
    /// reserved (the tables' whole allocation; the arena and free list of
    /// each listed instrument's book for that many orders), and do the same
    /// for books of instruments listed later. Reserved memory is only
    /// address space until first written: without this, the first orders
    /// page-fault on the thread applying commands (a zeroed page per ~27
    /// orders in the arena, more in the tables), which for the FIX
    /// gateway's inline-when-idle link is the gateway's session thread.
    /// Costs resident memory (the reserved tables and arenas, ~24 MB per
    /// instrument for 131,072 orders) and some milliseconds at start. A
    /// host hint: no effect on state, events or snapshots.
    pub fn fault_in_order_index(&mut self) {
        self.fault_in_orders = true;
        crate::fault_in_map(&mut self.client_ids, |i| (AccountId::MAX, ClientOrderId::from_u64(i)), &(0, 0));
        let n = self.order_reserve.min(self.limits.max_orders_per_instrument);
        for m in self.markets.iter_mut().flatten() {
            m.book.fault_in(n);
        }
    }

    /// Sequence number of the last command applied (0 before any).
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Time of the earliest GTD expiry still queued (it may belong to an
    /// order that already left): a host with no traffic sends `Tick` once
    /// its clock reaches it, so GTD orders expire without other commands.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.peek().map(|r| r.0 .0)
    }

    /// Applies one command. Appends its events to `out` (which the caller
    /// clears and reuses) and returns the command's sequence number.
    pub fn apply(&mut self, ts: Timestamp, cmd: &Command, out: &mut Vec<Event>) -> Seq {
        self.seq += 1;
        // Time never runs backwards inside the engine, whatever the caller passes.
        self.now = self.now.max(ts);
        self.expire_due(out);
        match *cmd {
            Command::AddInstrument(spec) => self.add_instrument(spec, out),
            Command::SetTradingStatus { instrument, status } => self.set_status(instrument, status, out),
            Command::Deposit { account, asset, amount } => self.deposit(account, asset, amount, out),
            Command::Withdraw { account, asset, amount } => self.withdraw(account, asset, amount, out),
            Command::SetAccountStp { account, mode } => self.set_account_stp(account, mode, out),
            Command::PlaceOrder(ref o) => self.place(o, out),
            Command::Cancel { account, instrument, target } => self.cancel_request(account, instrument, target, out),
            Command::Replace(ref r) => self.replace(r, out),
            Command::MassCancel { account, instrument, side } => {
                if self.accounts.ix(account).is_some() {
                    self.cancel_matching(
                        Some(account),
                        instrument,
                        side,
                        false,
                        crate::event::CancelReason::MassCancel,
                        out,
                    );
                } else {
                    self.reject(
                        out,
                        account,
                        instrument.unwrap_or(0),
                        ClientOrderId::default(),
                        0,
                        RejectReason::UnknownAccount,
                    );
                }
            }
            Command::KillSwitch { account, engaged } => self.kill_switch(account, engaged, out),
            Command::EndOfDay { instrument } => {
                self.cancel_matching(None, instrument, None, true, crate::event::CancelReason::EndOfDay, out)
            }
            Command::Tick => {}
        }
        self.seq
    }

    pub(crate) fn emit(&self, out: &mut Vec<Event>, kind: EventKind) {
        out.push(Event { seq: self.seq, ts: self.now, kind });
    }

    pub(crate) fn reject(
        &self,
        out: &mut Vec<Event>,
        account: AccountId,
        instrument: InstrumentId,
        client_order_id: ClientOrderId,
        order_id: OrderId,
        reason: RejectReason,
    ) {
        self.emit(out, EventKind::Rejected { account, instrument, client_order_id, order_id, reason });
    }

    pub(crate) fn emit_balance(&self, out: &mut Vec<Event>, ix: AccountIx, asset: AssetId) {
        let b = self.accounts.balance(ix, asset);
        let account = self.accounts.id(ix);
        self.emit(out, EventKind::BalanceChanged { account, asset, available: b.available, locked: b.locked });
    }

    pub(crate) fn market(&self, id: InstrumentId) -> Option<&Market<B>> {
        self.markets.get(id as usize).and_then(|m| m.as_ref())
    }

    pub(crate) fn market_mut(&mut self, id: InstrumentId) -> &mut Market<B> {
        self.markets[id as usize].as_mut().expect("instrument checked by caller")
    }

    fn add_instrument(&mut self, spec: InstrumentSpec, out: &mut Vec<Event>) {
        let fail = |e: &Self, out: &mut Vec<Event>, reason| {
            e.reject(out, FEE_ACCOUNT, spec.id, ClientOrderId::default(), 0, reason)
        };
        if spec.id >= self.limits.max_instruments {
            return fail(self, out, RejectReason::InvalidInstrument);
        }
        if self.market(spec.id).is_some() {
            return fail(self, out, RejectReason::DuplicateInstrument);
        }
        let valid = spec.base != spec.quote
            && spec.base < self.limits.max_assets
            && spec.quote < self.limits.max_assets
            && (1..=10_000).contains(&spec.band_bps)
            && spec.reference_price > 0
            && spec.reference_price < MAX_VALUE
            && spec.min_qty >= 0
            && spec.min_qty < MAX_VALUE
            && spec.min_notional >= 0
            && spec.min_notional < MAX_VALUE
            && spec.maker_fee_bps <= spec.taker_fee_bps
            && spec.taker_fee_bps <= 10_000;
        let units = match spec.units() {
            Ok(u) if valid => u,
            _ => return fail(self, out, RejectReason::InvalidInstrument),
        };
        let scale = Scale {
            lot_units: units.lot_units,
            tick_value: units.tick_value,
            taker_fee_bps: spec.taker_fee_bps,
            maker_fee_bps: spec.maker_fee_bps,
        };
        self.markets[spec.id as usize] = Some(Market {
            spec,
            scale,
            status: TradingStatus::Open,
            last_price: spec.reference_price,
            book: B::with_capacity(self.limits.max_orders_per_instrument),
            stops: Vec::with_capacity(self.limits.max_stops_per_instrument),
        });
        if self.order_reserve > 0 {
            let n = self.order_reserve.min(self.limits.max_orders_per_instrument);
            self.market_mut(spec.id).book.reserve(n);
        }
        if self.fault_in_orders {
            let n = self.order_reserve.min(self.limits.max_orders_per_instrument);
            self.market_mut(spec.id).book.fault_in(n);
        }
        self.emit(out, EventKind::InstrumentAdded { instrument: spec.id });
    }

    fn set_status(&mut self, instrument: InstrumentId, status: TradingStatus, out: &mut Vec<Event>) {
        if self.market(instrument).is_none() {
            return self.reject(
                out,
                FEE_ACCOUNT,
                instrument,
                ClientOrderId::default(),
                0,
                RejectReason::UnknownInstrument,
            );
        }
        self.market_mut(instrument).status = status;
        self.emit(out, EventKind::TradingStatusChanged { instrument, status });
    }

    fn check_transfer(&self, account: AccountId, asset: AssetId, amount: Amount) -> Result<(), RejectReason> {
        if asset >= self.limits.max_assets {
            return Err(RejectReason::UnknownAsset);
        }
        if amount <= 0 || amount >= MAX_VALUE {
            return Err(RejectReason::InvalidAmount);
        }
        let _ = account;
        Ok(())
    }

    fn deposit(&mut self, account: AccountId, asset: AssetId, amount: Amount, out: &mut Vec<Event>) {
        let r = self.check_transfer(account, asset, amount).and_then(|_| {
            if account == FEE_ACCOUNT {
                return Err(RejectReason::ReservedAccount);
            }
            let ix = self.accounts.ix_or_create(account)?;
            self.accounts.deposit(ix, asset, amount)?;
            Ok(ix)
        });
        match r {
            Ok(ix) => {
                self.emit(out, EventKind::Transfer { account, asset, amount });
                self.emit_balance(out, ix, asset);
            }
            Err(reason) => self.reject(out, account, 0, ClientOrderId::default(), 0, reason),
        }
    }

    fn withdraw(&mut self, account: AccountId, asset: AssetId, amount: Amount, out: &mut Vec<Event>) {
        let r = self.check_transfer(account, asset, amount).and_then(|_| {
            let ix = self.accounts.ix(account).ok_or(RejectReason::UnknownAccount)?;
            self.accounts.withdraw(ix, asset, amount)?;
            Ok(ix)
        });
        match r {
            Ok(ix) => {
                self.emit(out, EventKind::Transfer { account, asset, amount: -amount });
                self.emit_balance(out, ix, asset);
            }
            Err(reason) => self.reject(out, account, 0, ClientOrderId::default(), 0, reason),
        }
    }

    fn set_account_stp(&mut self, account: AccountId, mode: StpMode, out: &mut Vec<Event>) {
        match self.accounts.ix(account) {
            Some(ix) => {
                self.accounts.set_stp(ix, mode);
                self.emit(out, EventKind::AccountStpChanged { account, mode });
            }
            None => self.reject(out, account, 0, ClientOrderId::default(), 0, RejectReason::UnknownAccount),
        }
    }

    fn kill_switch(&mut self, account: AccountId, engaged: bool, out: &mut Vec<Event>) {
        let Some(ix) = self.accounts.ix(account) else {
            return self.reject(out, account, 0, ClientOrderId::default(), 0, RejectReason::UnknownAccount);
        };
        self.accounts.set_killed(ix, engaged);
        self.emit(out, EventKind::KillSwitchChanged { account, engaged });
        if engaged {
            self.cancel_matching(Some(account), None, None, false, crate::event::CancelReason::KillSwitch, out);
        }
    }

    // ----- read-only views (for gateways, tests and snapshots) -----

    pub fn balance(&self, account: AccountId, asset: AssetId) -> Option<Balance> {
        let ix = self.accounts.ix(account)?;
        (asset < self.limits.max_assets).then(|| self.accounts.balance(ix, asset))
    }

    pub fn instrument(&self, id: InstrumentId) -> Option<&InstrumentSpec> {
        self.market(id).map(|m| &m.spec)
    }

    pub fn trading_status(&self, id: InstrumentId) -> Option<TradingStatus> {
        self.market(id).map(|m| m.status)
    }

    pub fn last_price(&self, id: InstrumentId) -> Option<Price> {
        self.market(id).map(|m| m.last_price)
    }

    pub fn order(&self, instrument: InstrumentId, id: OrderId) -> Option<&Order> {
        let m = self.market(instrument)?;
        m.book.get(id).or_else(|| m.stops.iter().find(|s| s.order.id == id).map(|s| &s.order))
    }

    pub fn best_price(&self, instrument: InstrumentId, side: Side) -> Option<Price> {
        self.market(instrument)?.book.best_price(side)
    }

    /// Visits one side of a book in priority order until `f` returns false.
    pub fn visit_book(&self, instrument: InstrumentId, side: Side, f: &mut dyn FnMut(&Order) -> bool) {
        if let Some(m) = self.market(instrument) {
            m.book.visit(side, f);
        }
    }

    pub fn resting_orders(&self, instrument: InstrumentId) -> usize {
        self.market(instrument).map_or(0, |m| m.book.len())
    }

    pub fn open_orders(&self) -> usize {
        self.client_ids.len()
    }
}

#[cfg(test)]
mod reserve_tests {
    use crate::{Command, FastEngine, InstrumentSpec, Limits};

    /// A host reserves once at start, before its journal lists the
    /// instruments (replay from scratch): books listed afterwards must get the
    /// reserve too, or the first doubling stalls the engine after all.
    #[test]
    fn instruments_listed_after_a_reserve_are_sized_too() {
        let mut e = FastEngine::new(Limits::default());
        let mut out = Vec::new();
        e.apply(1, &Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 0, 1, 100_000)), &mut out);
        e.reserve_order_index(50_000);
        e.apply(2, &Command::AddInstrument(InstrumentSpec::demo(1, "ETH-USDT", 2, 1, 3_000)), &mut out);
        assert!(e.client_ids.capacity() >= 50_000, "client id index {}", e.client_ids.capacity());
        for id in [0, 1] {
            let cap = e.market(id).expect("listed").book.index_capacity();
            assert!(cap >= 50_000, "instrument {id}: id index {cap}");
        }
        let mut small = FastEngine::new(Limits::default());
        small.apply(1, &Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 0, 1, 100_000)), &mut out);
        assert!(small.market(0).expect("listed").book.index_capacity() < 50_000, "no reserve: starts small");
    }

    /// This thread's minor page faults so far (Linux; 0 elsewhere).
    fn minor_faults() -> u64 {
        // /proc/thread-self/stat: "pid (comm) state ..." minflt is the 10th field,
        // the 8th after the parenthesised name.
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        after.split_whitespace().nth(7).and_then(|f| f.parse().ok()).unwrap_or(0)
    }

    fn place(e: &mut FastEngine, out: &mut Vec<crate::Event>, i: u64) {
        use crate::{ClientOrderId, NewOrder, OrderSize, OrderType, Side, StpMode, TimeInForce};
        out.clear();
        let cmd = Command::PlaceOrder(NewOrder {
            account: 7,
            instrument: 0,
            client_order_id: ClientOrderId::from_u64(i),
            side: Side::Buy,
            order_type: OrderType::Limit { price: 99_000 + (i % 64) as i64 },
            size: OrderSize::Base(1),
            tif: TimeInForce::Gtc,
            post_only: false,
            display_qty: 0,
            stp: Some(StpMode::None),
        });
        e.apply(10 + i, &cmd, out);
    }

    fn engine(reserve: usize, fault_in: bool) -> FastEngine {
        let mut e = FastEngine::new(Limits::default());
        let mut out = Vec::new();
        e.apply(1, &Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 0, 1, 100_000)), &mut out);
        e.apply(2, &Command::Deposit { account: 7, asset: 1, amount: 1 << 50 }, &mut out);
        e.reserve_order_index(reserve);
        if fault_in {
            e.fault_in_order_index();
        }
        e
    }

    /// Faulting the reserved tables in changes nothing an engine shows, also
    /// with orders already resting (a host restoring a snapshot), and the
    /// first orders after it no longer page-fault in the order arena and
    /// the indexes.
    #[test]
    fn fault_in_keeps_the_state_and_saves_the_first_orders_page_faults() {
        let mut out = Vec::new();
        let mut plain = engine(20_000, false);
        let mut faulted = engine(20_000, false);
        for i in 0..1_000 {
            place(&mut plain, &mut out, i);
            place(&mut faulted, &mut out, i);
        }
        faulted.fault_in_order_index();
        assert_eq!(plain.state_hash(), faulted.state_hash(), "same state after a fault-in with orders resting");
        assert_eq!(faulted.resting_orders(0), 1_000);
        // Instruments listed afterwards are faulted in as they are listed.
        faulted.apply(3, &Command::AddInstrument(InstrumentSpec::demo(1, "ETH-USDT", 2, 1, 3_000)), &mut out);
        plain.apply(3, &Command::AddInstrument(InstrumentSpec::demo(1, "ETH-USDT", 2, 1, 3_000)), &mut out);
        assert_eq!(plain.state_hash(), faulted.state_hash());

        // Page faults of 8,000 more resting orders on this thread.
        let mut faults = |e: &mut FastEngine| {
            let before = minor_faults();
            for i in 1_000..9_000 {
                place(e, &mut out, i);
            }
            minor_faults() - before
        };
        let without = faults(&mut engine(20_000, false));
        let with = faults(&mut engine(20_000, true));
        assert!(with * 4 <= without, "minor faults for 8,000 orders: {with} faulted in, {without} not");
        let (mut a, mut b) = (engine(20_000, false), engine(20_000, true));
        for i in 0..9_000 {
            place(&mut a, &mut out, i);
            place(&mut b, &mut out, i);
        }
        assert_eq!(a.state_hash(), b.state_hash());
    }
}
