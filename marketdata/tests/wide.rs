//! Prices and quantities beyond ITCH's 32-bit fields: the feed carries them
//! in Castle's 64-bit messages ('a', 'w', 'x'), and the handler's book (live
//! and from a snapshot) still equals the engine's after every command.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use castle_engine::{
    ClientOrderId, Command, Engine, FastEngine, InstrumentSpec, Limits, NewOrder, OrderRef, OrderSize, OrderType,
    Replace, Scaling, Side, TimeInForce,
};
use castle_marketdata::handler::{HandlerConfig, HandlerCore};
use castle_marketdata::mold::{self, Packet};
use castle_marketdata::publisher::{snapshot_bytes, FeedCore};
use common::{engine_book, our_book};
use rust_decimal::Decimal;

fn spec(
    id: u32,
    symbol: &str,
    base: u32,
    tick: Decimal,
    lot: Decimal,
    base_decimals: u32,
    reference: i64,
) -> InstrumentSpec {
    let mut s = InstrumentSpec::demo(id, symbol, base, 2, reference);
    s.scaling = Scaling { tick_size: tick, lot_size: lot, base_decimals, quote_decimals: 8 };
    s
}

fn limit(account: u32, instrument: u32, side: Side, price: i64, qty: i64, cid: &str) -> Command {
    Command::PlaceOrder(NewOrder {
        account,
        instrument,
        client_order_id: ClientOrderId::new(cid).expect("client order id"),
        side,
        order_type: OrderType::Limit { price },
        size: OrderSize::Base(qty),
        tif: TimeInForce::Gtc,
        post_only: false,
        display_qty: 0,
        stp: None,
    })
}

#[test]
fn values_beyond_32_bits_use_the_wide_messages_and_the_book_stays_exact() {
    // Tick 0.000001 USDT: 60,000 USDT is 6e10 ticks (> 2^32).
    let big = spec(0, "BTC-USDT", 1, Decimal::new(1, 6), Decimal::new(1, 2), 8, 60_000_000_000);
    // Lot 1 token at a price of 1,000 ticks of 1e-8: orders of billions of lots (> 2^32).
    let tiny = spec(1, "SHIB-USDT", 3, Decimal::new(1, 8), Decimal::ONE, 0, 1_000);
    let mut cmds = vec![Command::AddInstrument(big), Command::AddInstrument(tiny)];
    for account in [1, 2] {
        cmds.push(Command::Deposit { account, asset: 1, amount: 1_000 * 100_000_000 });
        cmds.push(Command::Deposit { account, asset: 2, amount: 1_000_000_000 * 100_000_000 });
        cmds.push(Command::Deposit { account, asset: 3, amount: 100_000_000_000 });
    }
    cmds.extend([
        limit(1, 0, Side::Buy, 59_999_999_000, 100, "b1"),
        limit(2, 0, Side::Sell, 60_000_005_000, 300, "s1"),
        limit(2, 0, Side::Sell, 59_999_999_000, 40, "s2"), // trades 40 against b1: 'E'
        limit(1, 1, Side::Buy, 1_000, 5_000_000_000, "b3"), // 'a': quantity > 2^32
        limit(2, 1, Side::Sell, 1_000, 4_500_000_000, "s3"), // 'w': executed quantity > 2^32
        limit(2, 1, Side::Sell, 1_001, 6_000_000_000, "s4"),
        limit(1, 1, Side::Buy, 999, 10, "b5"), // fits: plain 'A'
        // Same price, quantity down: keeps priority, shown quantity drops by 5e9: 'x'.
        Command::Replace(Replace {
            account: 2,
            instrument: 1,
            target: OrderRef::Client(ClientOrderId::new("s4").expect("cid")),
            new_client_order_id: None,
            price: 1_001,
            qty: 1_000_000_000,
        }),
    ]);

    let mut engine: FastEngine = Engine::new(Limits::default());
    let mut core = FeedCore::new(mold::session("WIDE"), 1_400, 1 << 16);
    let mut handler = HandlerCore::new(HandlerConfig::default());
    let mut types = BTreeSet::new();
    let mut checked = 0;
    for (k, cmd) in cmds.iter().enumerate() {
        let mut events = Vec::new();
        engine.apply(1_700_000_000_000_000_000 + k as u64, cmd, &mut events);
        assert!(
            !events.iter().any(|e| matches!(e.kind, castle_engine::EventKind::Rejected { .. })),
            "command {k} rejected: {events:?}"
        );
        if let Command::AddInstrument(s) = cmd {
            core.register(*s);
        }
        let mut packets = Vec::new();
        core.publish(&events, &mut |p| packets.push(p.to_vec())).expect("every value is representable");
        for p in &packets {
            types.extend(Packet::parse(p).expect("packet").messages().map(|(_, m)| m[0]));
            handler.on_packet(p, Instant::now(), &mut |_, _| {});
        }
        assert!(handler.in_sync());
        for inst in [0, 1].into_iter().filter(|&i| engine.instrument(i).is_some()) {
            let got = handler.book.by_instrument(inst).map(|i| our_book(&i.book)).expect("instrument on the feed");
            assert_eq!(got, engine_book(&engine, inst), "instrument {inst} after command {k}");
            checked += 1;
        }
    }
    assert!(checked > 0);
    for ty in [b'A', b'E', b'a', b'w', b'x'] {
        assert!(types.contains(&ty), "message type {:?} was not used: {types:?}", ty as char);
    }

    // A late joiner's snapshot carries the wide orders too.
    let mut late = HandlerCore::new(HandlerConfig::default());
    late.load_snapshot(&snapshot_bytes(&core.shared()), &mut |_, _| {}).expect("snapshot loads");
    for inst in [0, 1] {
        let got = late.book.by_instrument(inst).map(|i| our_book(&i.book)).expect("instrument in the snapshot");
        assert_eq!(got, engine_book(&engine, inst), "snapshot of instrument {inst}");
    }
}
