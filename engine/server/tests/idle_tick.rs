//! GTD orders expire on time with no other traffic: the idle sequencer journals a Tick once its
//! clock passes the earliest expiry, and only then (an idle journal does not grow).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use castle_engine::{
    CancelReason, ClientOrderId, Command, EventKind, InstrumentSpec, NewOrder, OrderSize, OrderType, Side, TimeInForce,
};
use castle_engine_server::{Config, DurableLink};
use castle_link::{EngineBatch, EngineLink, EngineRequest, Origin};

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as u64
}

/// Next batch within `deadline` (polling the channel; None when the deadline passes).
fn next(rx: &mut tokio::sync::mpsc::Receiver<std::sync::Arc<EngineBatch>>, deadline: Instant) -> Option<EngineBatch> {
    while Instant::now() < deadline {
        match rx.try_recv() {
            Ok(b) => return Some((*b).clone()),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("stream ended: {e}"),
        }
    }
    None
}

#[test]
fn a_gtd_order_expires_without_other_traffic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::new(tmp.path().join("journal"), "");
    cfg.snapshot_every = 0;
    let link = DurableLink::start(cfg).expect("start");
    let mut rx = link.subscribe(64).expect("subscribe");
    let send = |request, command| {
        link.submit(EngineRequest { origin: Origin { gateway: 9, request }, command }).expect("submit");
    };
    send(1, Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)));
    send(2, Command::Deposit { account: 1, asset: 2, amount: 100_000_000_000_000 });
    let expiry = now_ns() + 300_000_000;
    send(
        3,
        Command::PlaceOrder(NewOrder {
            account: 1,
            instrument: 0,
            client_order_id: ClientOrderId::from_u64(1),
            side: Side::Buy,
            order_type: OrderType::Limit { price: 5_900_000 },
            size: OrderSize::Base(1),
            tif: TimeInForce::Gtd(expiry),
            post_only: false,
            display_qty: 0,
            stp: None,
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let placed = (0..3).filter_map(|_| next(&mut rx, deadline)).last().expect("three batches");
    assert_eq!(placed.origin, Some(Origin { gateway: 9, request: 3 }));
    assert!(placed.events.iter().any(|e| matches!(e.kind, EventKind::OrderAccepted { .. })), "{placed:?}");
    // Nothing else is submitted from here on.
    let expired = next(&mut rx, deadline).expect("the GTD order expires within the deadline");
    assert_eq!(expired.origin, None, "the sequencer's own Tick");
    assert_eq!(expired.seq, placed.seq + 1);
    assert!(expired.ts >= expiry, "expired at {} before its time {expiry}", expired.ts);
    assert!(
        expired
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::OrderCancelled { reason: CancelReason::Expired, .. })),
        "{expired:?}"
    );
    // Nothing left to expire: no further ticks are journaled.
    assert_eq!(link.status().expect("status").seq, expired.seq);
    assert!(next(&mut rx, Instant::now() + Duration::from_millis(300)).is_none(), "idle journal must not grow");
    assert_eq!(link.status().expect("status").seq, expired.seq);
}
