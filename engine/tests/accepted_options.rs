//! The acceptance event carries the order's options as placed (post-only,
//! iceberg display quantity, STP mode), so a consumer of the stream alone
//! (settlement, another gateway) knows them; the order's own behaviour is
//! unchanged.

use castle_engine::{
    ClientOrderId, Command, Engine, Event, EventKind, FastEngine, InstrumentSpec, Limits, NewOrder, OrderSize,
    OrderType, Side, StpMode, TimeInForce,
};

fn place(
    cl: &str,
    side: Side,
    price: i64,
    qty: i64,
    post_only: bool,
    display_qty: i64,
    stp: Option<StpMode>,
) -> Command {
    Command::PlaceOrder(NewOrder {
        account: 1,
        instrument: 0,
        client_order_id: ClientOrderId::new(cl).unwrap(),
        side,
        order_type: OrderType::Limit { price },
        size: OrderSize::Base(qty),
        tif: TimeInForce::Gtc,
        post_only,
        display_qty,
        stp,
    })
}

fn accepted(events: &[Event]) -> Option<(bool, i64, Option<StpMode>)> {
    events.iter().find_map(|e| match e.kind {
        EventKind::OrderAccepted { post_only, display_qty, stp, .. } => Some((post_only, display_qty, stp)),
        _ => None,
    })
}

#[test]
fn acceptance_carries_post_only_iceberg_and_stp() {
    let mut e: FastEngine = Engine::new(Limits::small());
    let mut out = Vec::new();
    let mut seq = 0;
    let mut run = |c: Command, out: &mut Vec<Event>| {
        seq += 1;
        out.clear();
        e.apply(seq, &c, out);
    };
    run(Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)), &mut out);
    run(Command::Deposit { account: 1, asset: 1, amount: 1_000_000_000 }, &mut out);
    run(Command::Deposit { account: 1, asset: 2, amount: 1_000_000_000_000 }, &mut out);

    run(place("plain", Side::Sell, 6_000_100, 10, false, 0, None), &mut out);
    assert_eq!(accepted(&out), Some((false, 0, None)));
    run(place("po", Side::Sell, 6_000_200, 10, true, 0, Some(StpMode::CancelBoth)), &mut out);
    assert_eq!(accepted(&out), Some((true, 0, Some(StpMode::CancelBoth))));
    run(place("ice", Side::Sell, 6_000_300, 10, false, 4, None), &mut out);
    assert_eq!(accepted(&out), Some((false, 4, None)));
    // The book shows the iceberg's display quantity, not its size.
    assert!(out.iter().any(|e| matches!(e.kind, EventKind::BookAdd { qty: 4, .. })), "no BookAdd of 4: {out:?}");
    // A rejected option is still rejected (post-only that would cross).
    run(place("cross", Side::Buy, 6_000_100, 1, true, 0, None), &mut out);
    assert_eq!(accepted(&out), None, "{out:?}");
}
