//! Settlement on the in-process engine link (what `castle serve` runs): orders submitted
//! through `EngineLink` trade, the consumer follows `subscribe_after`, and the ledger equals
//! the engine's balances as an independent subscriber folds them from the same stream.

mod common;

use std::sync::Arc;

use castle_engine::{Command, InstrumentSpec, Limits, Side, TimeInForce};
use castle_link::{EngineLink, EngineRequest, InProcessEngine, Origin};
use castle_settlement::{consumer, reconcile, ConsumerConfig, EngineView, LinkSource, Metrics, Store};
use common::{limit, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_link_settles_and_reconciles() {
    let mut setup = vec![Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000))];
    for account in 1..=4 {
        setup.push(Command::Deposit { account, asset: 1, amount: 100_000_000 });
        setup.push(Command::Deposit { account, asset: 2, amount: 1 << 50 });
    }
    let engine = InProcessEngine::start(Limits::default(), &setup, 4_096);
    let link: Arc<dyn EngineLink> = engine;
    let mut observer = link.subscribe_after(0, 1 << 16).unwrap();
    let (store, _dir) = common::sqlite();
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(consumer::run(
        store.clone(),
        LinkSource(link.clone()),
        ConsumerConfig::default(),
        metrics.clone(),
        stop_rx,
    ));
    let mut request = 0;
    for i in 0..500u64 {
        let account = 1 + (i % 4) as u32;
        let side = if i % 2 == 0 { Side::Sell } else { Side::Buy };
        let price = 6_000_000 + (i % 7) as i64 - 3;
        for cmd in [limit(account, side, price, 1 + (i % 3) as i64, TimeInForce::Gtc, i)] {
            request += 1;
            let req = EngineRequest { origin: Origin { gateway: 1, request }, command: cmd };
            while link.submit(req).is_err() {
                tokio::task::yield_now().await;
            }
        }
    }
    // Fold the independent subscriber until it has seen every submitted command's batch.
    let mut view = EngineView::default();
    let mut seen = 0;
    while seen < request {
        let b = observer.recv().await.expect("stream");
        if b.origin.is_some() {
            seen += 1;
        }
        view.observe(&b);
    }
    let last = view.seq;
    wait_until(60, "the ledger to catch up", async || store.applied_seq().await.unwrap() >= last).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    // Ticks may follow (empty batches are not published), so compare at the view's seq.
    view.seq = store.applied_seq().await.unwrap();
    let r = reconcile(&store, &view).await.unwrap();
    assert!(r.clean(), "{:#?}", r.differences);
    assert!(r.fills > 100, "the orders traded ({} fills)", r.fills);
    assert!(metrics.render().contains("castle_settlement_lag_seq 0"), "{}", metrics.render());
}

/// A stream that breaks the ledger's rules stops the consumer with an error (it is never
/// written, and never retried into a loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_creates_money_stops_the_consumer_and_writes_nothing() {
    use castle_engine::{Event, EventKind};
    let src = castle_settlement::testkit::VecSource::default();
    src.push(castle_link::EngineBatch {
        origin: None,
        seq: 1,
        ts: 1,
        events: vec![Event {
            seq: 1,
            ts: 1,
            kind: EventKind::BalanceChanged { account: 1, asset: 1, available: 100, locked: 0 },
        }],
    });
    let (store, _dir) = common::sqlite();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let r = consumer::run(store.clone(), src, ConsumerConfig::default(), Arc::new(Metrics::default()), rx).await;
    assert!(matches!(r, Err(castle_settlement::ConsumerError::Project(_))), "{r:?}");
    assert_eq!(store.applied_seq().await.unwrap(), 0);
    assert!(store.balances().await.unwrap().is_empty());
}
