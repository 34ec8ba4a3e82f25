//! Criterion benchmarks of the engine on books of 1k and 100k resting orders,
//! fast book vs reference book in the same run.
//!
//! The book depth stays fixed: every benchmark undoes what it did.
//! - `add`: a passive GTC limit order on an existing level (timed in chunks of
//!   1000; the chunk's orders are then cancelled untimed);
//! - `cancel`: cancelling such an order (placed untimed);
//! - `place_cancel`: both, back to back (2 commands);
//! - `match_one_level`: a sell placed inside the spread, then an IOC buy that
//!   takes it (2 commands, 1 fill);
//! - `sweep_ten_levels`: ten sells placed on ten new levels inside the spread,
//!   then one IOC buy that takes all ten (11 commands, 10 fills).

use castle_engine::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const I: InstrumentId = 0;
const MID: Price = 1_000_000;
/// No resting order within this many ticks of the mid: room for the benches' own levels.
const GAP: Price = 20;
const LEVELS: i64 = 2_000;

struct Bench<B: OrderBook> {
    e: Engine<B>,
    out: Vec<Event>,
    ts: u64,
    client: u64,
}

impl<B: OrderBook> Bench<B> {
    fn new(depth: usize) -> Self {
        let limits = Limits {
            max_instruments: 2,
            max_assets: 4,
            max_accounts: 64,
            max_orders_per_instrument: depth + 2_048,
            max_open_orders: depth + 2_048,
            max_stops_per_instrument: 4,
            max_timed_orders: 4,
        };
        let mut b = Bench { e: Engine::new(limits), out: Vec::with_capacity(4_096), ts: 0, client: 0 };
        let mut spec = InstrumentSpec::demo(I, "BTC-USDT", 1, 2, MID);
        spec.band_bps = 5_000;
        b.cmd(Command::AddInstrument(spec));
        for a in 1..=8 {
            b.cmd(Command::Deposit { account: a, asset: 1, amount: 1 << 55 });
            b.cmd(Command::Deposit { account: a, asset: 2, amount: 1 << 58 });
        }
        for i in 0..depth as i64 {
            let off = GAP + (i / 2) % LEVELS;
            let (side, price) = if i % 2 == 0 { (Side::Buy, MID - off) } else { (Side::Sell, MID + off) };
            b.place(1 + (i % 4) as u32, side, price, TimeInForce::Gtc);
        }
        assert_eq!(b.e.resting_orders(I), depth);
        b
    }

    fn cmd(&mut self, c: Command) {
        self.ts += 1;
        self.out.clear();
        self.e.apply(self.ts, &c, &mut self.out);
    }

    fn place(&mut self, account: AccountId, side: Side, price: Price, tif: TimeInForce) -> OrderId {
        self.client += 1;
        self.cmd(Command::PlaceOrder(NewOrder {
            account,
            instrument: I,
            client_order_id: ClientOrderId::from_u64(self.client),
            side,
            order_type: OrderType::Limit { price },
            size: OrderSize::Base(10),
            tif,
            post_only: false,
            display_qty: 0,
            stp: Some(StpMode::None),
        }));
        match self.out.first().map(|e| e.kind) {
            Some(EventKind::OrderAccepted { order_id, .. }) => order_id,
            other => panic!("order not accepted: {other:?}"),
        }
    }

    fn place_cancel(&mut self, i: u64) {
        let price = MID - GAP - (i as i64 * 7) % LEVELS;
        let id = self.place(5, Side::Buy, price, TimeInForce::Gtc);
        self.cmd(Command::Cancel { account: 5, instrument: I, target: OrderRef::Id(id) });
    }

    /// Places `n` passive orders, returning their ids.
    fn add_many(&mut self, n: u64, ids: &mut Vec<OrderId>) {
        for i in 0..n {
            let price = MID - GAP - (i as i64 * 7) % LEVELS;
            ids.push(self.place(5, Side::Buy, price, TimeInForce::Gtc));
        }
    }

    fn cancel_many(&mut self, ids: &mut Vec<OrderId>) {
        for &id in ids.iter() {
            self.cmd(Command::Cancel { account: 5, instrument: I, target: OrderRef::Id(id) });
        }
        ids.clear();
    }

    fn match_one_level(&mut self) {
        self.place(5, Side::Sell, MID, TimeInForce::Gtc);
        self.place(6, Side::Buy, MID, TimeInForce::Ioc);
    }

    fn sweep_ten_levels(&mut self) {
        for k in 0..10 {
            self.place(5, Side::Sell, MID - 10 + k, TimeInForce::Gtc);
        }
        self.client += 1;
        self.cmd(Command::PlaceOrder(NewOrder {
            account: 6,
            instrument: I,
            client_order_id: ClientOrderId::from_u64(self.client),
            side: Side::Buy,
            order_type: OrderType::Limit { price: MID },
            size: OrderSize::Base(100),
            tif: TimeInForce::Ioc,
            post_only: false,
            display_qty: 0,
            stp: Some(StpMode::None),
        }));
        debug_assert_eq!(self.out.iter().filter(|e| matches!(e.kind, EventKind::Trade { .. })).count(), 10);
    }
}

fn run<B: OrderBook>(c: &mut Criterion, name: &str, depths: &[usize]) {
    for &depth in depths {
        let mut g = c.benchmark_group(format!("{name}/{depth}"));
        let mut b = Bench::<B>::new(depth);
        const CHUNK: u64 = 1_000;
        let mut ids = Vec::with_capacity(CHUNK as usize);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter("add"), |x| {
            x.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let t = std::time::Instant::now();
                    b.add_many(n, &mut ids);
                    spent += t.elapsed();
                    b.cancel_many(&mut ids);
                    left -= n;
                }
                spent
            })
        });
        g.bench_function(BenchmarkId::from_parameter("cancel"), |x| {
            x.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    b.add_many(n, &mut ids);
                    let t = std::time::Instant::now();
                    b.cancel_many(&mut ids);
                    spent += t.elapsed();
                    left -= n;
                }
                spent
            })
        });
        g.throughput(Throughput::Elements(2));
        let mut i = 0u64;
        g.bench_function(BenchmarkId::from_parameter("place_cancel"), |x| {
            x.iter(|| {
                i += 1;
                b.place_cancel(i)
            })
        });
        g.bench_function(BenchmarkId::from_parameter("match_one_level"), |x| x.iter(|| b.match_one_level()));
        g.throughput(Throughput::Elements(11));
        g.bench_function(BenchmarkId::from_parameter("sweep_ten_levels"), |x| x.iter(|| b.sweep_ten_levels()));
        assert_eq!(b.e.resting_orders(I), depth, "benchmarks must leave the book as they found it");
        g.finish();
    }
}

fn benches(c: &mut Criterion) {
    run::<LadderBook>(c, "fast", &[1_000, 100_000]);
    run::<ReferenceBook>(c, "reference", &[1_000, 100_000]);
}

criterion_group! {
    name = engine;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(engine);
