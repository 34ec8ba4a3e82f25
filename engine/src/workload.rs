//! Seeded command generators for tests, benchmarks and load generators.
//!
//! - [`Workload`]: the exchange-core style benchmark mix (about 9% GTC, 3%
//!   IOC, 6% cancel, 82% replace) on a two-sided book around a moving mid.
//!   It tracks open orders by running its own shadow engine, so every cancel
//!   and replace names an order that is really open at that point.
//! - [`Chaos`]: every command and option the engine knows, with values
//!   chosen to hit edge cases (duplicate ids, self-trades, stops, icebergs,
//!   halts, expiries), for property tests.
//!
//! Both use their own SplitMix64 so the engine crate needs no RNG dependency
//! and sequences never change under a dependency upgrade.

use rustc_hash::FxHashMap;

use crate::command::{Command, NewOrder, OrderRef, OrderSize, OrderType, Replace, StpMode, TimeInForce};
use crate::engine::{Engine, Limits};
use crate::event::{Event, EventKind};
use crate::instrument::{InstrumentSpec, TradingStatus};
use crate::types::{AccountId, ClientOrderId, InstrumentId, OrderId, Price, Qty, Side, Timestamp};
use crate::LadderBook;

/// SplitMix64: tiny, fast, good enough for workloads, stable forever.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const BASE: u32 = 1;
const QUOTE: u32 = 2;

/// Parameters of the benchmark mix.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub accounts: u32,
    /// Resting orders to build before the measured mix starts.
    pub book_depth: usize,
    /// Initial mid price in ticks.
    pub mid: Price,
    /// Half-width in ticks of the price range where orders rest.
    pub spread_ticks: i64,
    pub max_qty: Qty,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            seed: 1,
            accounts: 2_000,
            book_depth: 1_000,
            mid: 10_000_000,
            spread_ticks: 2_000,
            max_qty: 100,
        }
    }
}

struct Open {
    id: OrderId,
    account: AccountId,
    side: Side,
    qty: Qty,
}

/// The exchange-core style generator. See the module docs.
pub struct Workload {
    cfg: WorkloadConfig,
    rng: Rng,
    shadow: Engine<LadderBook>,
    out: Vec<Event>,
    open: Vec<Open>,
    pos: FxHashMap<OrderId, usize>,
    mid: Price,
    next_client: u64,
    ts: Timestamp,
}

impl Workload {
    pub const INSTRUMENT: InstrumentId = 0;

    /// Engine limits that fit the workload.
    pub fn limits(cfg: &WorkloadConfig) -> Limits {
        let orders = (cfg.book_depth * 2).max(4_096);
        Limits {
            max_instruments: 4,
            max_assets: 4,
            max_accounts: cfg.accounts + 16,
            max_orders_per_instrument: orders,
            max_open_orders: orders,
            max_stops_per_instrument: 16,
            max_timed_orders: 16,
        }
    }

    pub fn new(cfg: WorkloadConfig) -> Self {
        Workload {
            cfg,
            rng: Rng::new(cfg.seed),
            shadow: Engine::new(Self::limits(&cfg)),
            out: Vec::with_capacity(1_024),
            open: Vec::with_capacity(cfg.book_depth * 2),
            pos: FxHashMap::default(),
            mid: cfg.mid,
            next_client: 1,
            ts: 1,
        }
    }

    /// The instrument and the deposits: apply these first.
    pub fn setup(&mut self) -> Vec<Command> {
        let mut spec = InstrumentSpec::demo(Self::INSTRUMENT, "BTC-USDT", BASE, QUOTE, self.cfg.mid);
        spec.band_bps = 5_000;
        let mut cmds = vec![Command::AddInstrument(spec)];
        for a in 1..=self.cfg.accounts {
            cmds.push(Command::Deposit { account: a, asset: BASE, amount: 1 << 40 });
            cmds.push(Command::Deposit { account: a, asset: QUOTE, amount: 1 << 50 });
        }
        for c in &cmds {
            self.feed(c);
        }
        cmds
    }

    /// Commands that build the book to `book_depth` resting orders.
    pub fn fill_book(&mut self) -> Vec<Command> {
        let mut cmds = Vec::new();
        while self.open.len() < self.cfg.book_depth {
            let c = self.gtc(false);
            self.feed(&c);
            cmds.push(c);
        }
        cmds
    }

    /// The next command of the measured mix.
    pub fn next_command(&mut self) -> Command {
        // The mid wanders, so replaces keep reshaping both sides.
        if self.rng.chance(10) {
            self.mid = (self.mid + self.rng.range(-3, 3)).max(self.cfg.spread_ticks * 4);
        }
        let roll = self.rng.below(100);
        let c = if self.open.is_empty() || roll < 9 {
            self.gtc(true)
        } else if roll < 12 {
            self.ioc()
        } else if roll < 18 || self.open.len() > self.cfg.book_depth * 3 / 2 {
            self.cancel()
        } else {
            self.replace()
        };
        self.feed(&c);
        c
    }

    /// Time stamp of the most recent command.
    pub fn now(&self) -> Timestamp {
        self.ts
    }

    fn order(&mut self, side: Side, price: Price, qty: Qty, tif: TimeInForce) -> Command {
        let account = 1 + self.rng.below(self.cfg.accounts as u64) as AccountId;
        let client_order_id = ClientOrderId::from_u64(self.next_client);
        self.next_client += 1;
        Command::PlaceOrder(NewOrder {
            account,
            instrument: Self::INSTRUMENT,
            client_order_id,
            side,
            order_type: OrderType::Limit { price },
            size: OrderSize::Base(qty),
            tif,
            post_only: false,
            display_qty: 0,
            stp: Some(StpMode::None),
        })
    }

    fn side(&mut self) -> Side {
        if self.rng.chance(50) {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    /// A resting price on `side`; with `may_cross`, 5% of them cross the mid.
    fn passive_price(&mut self, side: Side, may_cross: bool) -> Price {
        let off = self.rng.range(1, self.cfg.spread_ticks);
        let off = if may_cross && self.rng.chance(5) { -self.rng.range(0, 3) } else { off };
        match side {
            Side::Buy => self.mid - off,
            Side::Sell => self.mid + off,
        }
    }

    fn gtc(&mut self, may_cross: bool) -> Command {
        let side = self.side();
        let price = self.passive_price(side, may_cross);
        let qty = self.rng.range(1, self.cfg.max_qty);
        self.order(side, price, qty, TimeInForce::Gtc)
    }

    fn ioc(&mut self) -> Command {
        let side = self.side();
        let reach = self.rng.range(0, self.cfg.spread_ticks / 20);
        let price = match side {
            Side::Buy => self.mid + reach,
            Side::Sell => self.mid - reach,
        };
        let qty = self.rng.range(1, self.cfg.max_qty);
        self.order(side, price, qty, TimeInForce::Ioc)
    }

    fn pick(&mut self) -> &Open {
        let i = self.rng.below(self.open.len() as u64) as usize;
        &self.open[i]
    }

    fn cancel(&mut self) -> Command {
        let o = self.pick();
        Command::Cancel { account: o.account, instrument: Self::INSTRUMENT, target: OrderRef::Id(o.id) }
    }

    fn replace(&mut self) -> Command {
        let (id, account, side, qty) = {
            let o = self.pick();
            (o.id, o.account, o.side, o.qty)
        };
        let price = self.passive_price(side, true);
        Command::Replace(Replace {
            account,
            instrument: Self::INSTRUMENT,
            target: OrderRef::Id(id),
            new_client_order_id: None,
            price,
            qty,
        })
    }

    fn feed(&mut self, c: &Command) {
        self.ts += 1_000;
        self.out.clear();
        self.shadow.apply(self.ts, c, &mut self.out);
        for e in &self.out {
            match e.kind {
                EventKind::BookAdd { order_id, side, .. } if !self.pos.contains_key(&order_id) => {
                    if let Some(o) = self.shadow.order(Self::INSTRUMENT, order_id) {
                        self.pos.insert(order_id, self.open.len());
                        self.open.push(Open { id: order_id, account: o.account, side, qty: o.qty });
                    }
                }
                EventKind::OrderFilled { order_id, .. } | EventKind::OrderCancelled { order_id, .. } => {
                    if let Some(i) = self.pos.remove(&order_id) {
                        self.open.swap_remove(i);
                        if i < self.open.len() {
                            self.pos.insert(self.open[i].id, i);
                        }
                    }
                }
                EventKind::OrderReplaced { order_id, qty, .. } => {
                    if let Some(&i) = self.pos.get(&order_id) {
                        self.open[i].qty = qty;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Generator of arbitrary-but-plausible commands over every feature. See the module docs.
pub struct Chaos {
    rng: Rng,
    ts: Timestamp,
    next_order_guess: OrderId,
    /// Recently accepted order ids (a small ring), so cancels and replaces
    /// often name live orders.
    recent: [(OrderId, AccountId, Price, Qty); 16],
}

impl Chaos {
    pub const ACCOUNTS: u32 = 5;

    pub fn new(seed: u64) -> Self {
        Chaos { rng: Rng::new(seed), ts: 1_000, next_order_guess: 1, recent: [(0, 0, 0, 0); 16] }
    }

    /// Learns order ids from the engine's output (optional feedback).
    pub fn observe(&mut self, events: &[Event]) {
        for e in events {
            if let EventKind::OrderAccepted { order_id, account, price, qty, .. } = e.kind {
                self.recent[(order_id % 16) as usize] = (order_id, account, price, qty);
            }
        }
    }

    /// Two instruments and funded accounts.
    pub fn setup() -> Vec<Command> {
        let mut a = InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 1_000);
        a.min_notional = 50;
        let mut b = InstrumentSpec::demo(1, "ETH-USDT", 3, 2, 200);
        b.band_bps = 2_000;
        b.maker_fee_bps = 0;
        b.taker_fee_bps = 35;
        b.min_qty = 2;
        let mut cmds = vec![Command::AddInstrument(a), Command::AddInstrument(b)];
        for acct in 1..=Self::ACCOUNTS {
            for (asset, amount) in [(1, 2_000_000), (2, 3_000_000_000), (3, 5_000_000)] {
                cmds.push(Command::Deposit { account: acct, asset, amount });
            }
        }
        cmds
    }

    /// Time of the next command: mostly small steps, sometimes a jump past GTD expiries.
    pub fn next_ts(&mut self) -> Timestamp {
        self.ts +=
            if self.rng.chance(5) { self.rng.range(1_000, 50_000) as u64 } else { self.rng.range(0, 100) as u64 };
        self.ts
    }

    fn pick_side(&mut self) -> Side {
        if self.rng.chance(50) {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn client(&mut self) -> ClientOrderId {
        // A small space, so duplicates and cancel-by-client-id hit often.
        ClientOrderId::from_u64(self.rng.below(40))
    }

    fn target(&mut self, account: &mut AccountId) -> OrderRef {
        let (id, owner, _, _) = self.recent[self.rng.below(16) as usize];
        if id != 0 && self.rng.chance(60) {
            if self.rng.chance(90) {
                *account = owner;
            }
            OrderRef::Id(id)
        } else if self.rng.chance(60) {
            OrderRef::Id(self.rng.range(1, self.next_order_guess as i64 + 2) as OrderId)
        } else {
            OrderRef::Client(self.client())
        }
    }

    fn price(&mut self, instrument: InstrumentId) -> Price {
        let reference = if instrument == 0 { 1_000 } else { 200 };
        (reference + self.rng.range(-(reference / 8), reference / 8)).max(1)
    }

    pub fn next_command(&mut self) -> Command {
        let mut account = if self.rng.chance(3) { 0 } else { self.rng.range(1, Self::ACCOUNTS as i64) as AccountId };
        let instrument = match self.rng.below(100) {
            0..=79 => 0,
            80..=97 => 1,
            _ => 2,
        };
        let roll = self.rng.below(1_000);
        match roll {
            0..=579 => {
                self.next_order_guess += 1;
                let side = self.pick_side();
                let price = self.price(instrument);
                let order_type = match self.rng.below(20) {
                    0..=13 => OrderType::Limit { price },
                    14..=15 => OrderType::Market,
                    16..=17 => OrderType::StopMarket { stop: self.price(instrument) },
                    _ => OrderType::StopLimit { stop: self.price(instrument), price },
                };
                let qty = if self.rng.chance(3) { self.rng.range(-2, 0) } else { self.rng.range(1, 60) };
                let size = if side == Side::Buy && self.rng.chance(15) {
                    OrderSize::QuoteBudget(self.rng.range(0, 400_000))
                } else {
                    OrderSize::Base(qty)
                };
                let tif = match self.rng.below(10) {
                    0..=4 => TimeInForce::Gtc,
                    5 => TimeInForce::Ioc,
                    6 => TimeInForce::Fok,
                    7 => TimeInForce::Day,
                    _ => TimeInForce::Gtd(self.ts + self.rng.range(0, 20_000) as u64),
                };
                let stp = match self.rng.below(7) {
                    0 => Some(StpMode::None),
                    1 => Some(StpMode::CancelNewest),
                    2 => Some(StpMode::CancelOldest),
                    3 => Some(StpMode::CancelBoth),
                    4 => Some(StpMode::DecrementAndCancel),
                    _ => None,
                };
                Command::PlaceOrder(NewOrder {
                    account,
                    instrument,
                    client_order_id: self.client(),
                    side,
                    order_type,
                    size,
                    tif,
                    post_only: self.rng.chance(10),
                    display_qty: if self.rng.chance(15) { self.rng.range(0, 20) } else { 0 },
                    stp,
                })
            }
            580..=729 => {
                let target = self.target(&mut account);
                Command::Cancel { account, instrument, target }
            }
            730..=869 => {
                let (id, owner, price, qty) = self.recent[self.rng.below(16) as usize];
                let (target, price, qty) = if id != 0 && self.rng.chance(30) {
                    // Same price, smaller quantity: the priority-keeping path.
                    account = owner;
                    (OrderRef::Id(id), price, self.rng.range(1, qty.max(1)))
                } else {
                    (self.target(&mut account), self.price(instrument), self.rng.range(0, 70))
                };
                Command::Replace(Replace {
                    account,
                    instrument,
                    target,
                    new_client_order_id: if self.rng.chance(30) { Some(self.client()) } else { None },
                    price,
                    qty,
                })
            }
            870..=899 => {
                Command::Deposit { account, asset: self.rng.range(1, 3) as u32, amount: self.rng.range(-5, 500_000) }
            }
            900..=929 => {
                Command::Withdraw { account, asset: self.rng.range(1, 3) as u32, amount: self.rng.range(-5, 500_000) }
            }
            930..=944 => Command::MassCancel {
                account,
                instrument: if self.rng.chance(50) { Some(instrument) } else { None },
                side: if self.rng.chance(50) { Some(self.pick_side()) } else { None },
            },
            945..=954 => Command::KillSwitch { account, engaged: self.rng.chance(20) },
            955..=964 => Command::SetAccountStp {
                account,
                mode: [
                    StpMode::None,
                    StpMode::CancelNewest,
                    StpMode::CancelOldest,
                    StpMode::CancelBoth,
                    StpMode::DecrementAndCancel,
                ][self.rng.below(5) as usize],
            },
            965..=979 => Command::SetTradingStatus {
                instrument,
                status: if self.rng.chance(85) {
                    TradingStatus::Open
                } else if self.rng.chance(70) {
                    TradingStatus::Halted
                } else {
                    TradingStatus::Closed
                },
            },
            980..=989 => Command::EndOfDay { instrument: if self.rng.chance(50) { Some(instrument) } else { None } },
            _ => Command::Tick,
        }
    }
}
