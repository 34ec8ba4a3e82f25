//! One conformance suite, run against both backends (SQLite and a real PostgreSQL).
//! Each test is a generic function over `Store`; the macro at the bottom instantiates it
//! per backend (and per PostgreSQL write path where the write path matters).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use castle_engine::workload::Chaos;
use castle_engine::{Command, EventKind, InstrumentSpec, Limits, OrderRef, Side, TimeInForce};
use castle_settlement::ledger::status;
use castle_settlement::testkit::{FillStream, VecSource};
use castle_settlement::{
    consumer, reconcile, BalanceRow, ConsumerConfig, EntryKind, Flush, Metrics, Store, StoreError, WriteMode,
};
use common::{limit, wait_until, Harness};

/// Net (available, locked, external) per (account, asset) of the entries of one seq, and
/// the check that they sum to zero per asset.
async fn seq_entries<S: Store>(s: &S, seq: u64) -> Vec<castle_settlement::Entry> {
    let e = s.entries(seq, seq).await.unwrap();
    let mut per_asset: BTreeMap<u32, i64> = BTreeMap::new();
    for x in &e {
        *per_asset.entry(x.asset).or_default() += x.available + x.locked + x.external;
    }
    assert!(per_asset.values().all(|v| *v == 0), "seq {seq}: legs do not sum to zero: {per_asset:?}");
    e
}

async fn assert_reconciles<S: Store>(s: &S, h: &Harness) {
    let r = reconcile(s, &h.view()).await.unwrap();
    assert!(r.clean(), "reconcile differences: {:#?}", r.differences);
    assert!(r.pairs_checked > 0);
}

async fn every_event_type_makes_the_right_entries<S: Store + Clone>(s: S) {
    let mut h = Harness::new(Limits::small());
    // Demo instrument: tick 0.01, lot 0.00001, 8 decimals: tick_value 1, lot_units 1000.
    h.run(&Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)));
    let dep = h.run(&Command::Deposit { account: 1, asset: 2, amount: 1_000_000_000 });
    h.run(&Command::Deposit { account: 2, asset: 1, amount: 1_000_000 });
    h.flush(&s).await;
    let e = seq_entries(&s, dep.seq).await;
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].kind, e[0].account, e[0].asset), (EntryKind::Deposit, 1, 2));
    assert_eq!((e[0].available, e[0].locked, e[0].external), (1_000_000_000, 0, -1_000_000_000));

    // A resting sell of 10 lots locks 10 * 1000 base units.
    let sell = h.run(&limit(2, Side::Sell, 6_000_000, 10, TimeInForce::Gtc, 1));
    h.flush(&s).await;
    let e = seq_entries(&s, sell.seq).await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].kind, e[0].reference, e[0].account, e[0].asset), (EntryKind::Hold, 1, 2, 1));
    assert_eq!((e[0].available, e[0].locked, e[0].external), (-10_000, 10_000, 0));

    // A buy of 4 lots fills against it: tick_value = 0.01 * 0.00001 * 10^8 = 10, so the
    // notional is 4 * 6_000_000 * 10 = 240_000_000; maker fee 10 bps = 240_000, taker 20 bps = 480_000.
    let buy = h.run(&limit(1, Side::Buy, 6_000_000, 4, TimeInForce::Gtc, 2));
    h.flush(&s).await;
    let e = seq_entries(&s, buy.seq).await;
    let mut net: BTreeMap<(u32, u32), i64> = BTreeMap::new();
    for x in &e {
        *net.entry((x.account, x.asset)).or_default() += x.available + x.locked;
    }
    assert_eq!(net.get(&(1, 2)), Some(&-240_480_000), "buyer pays notional + taker fee: {e:?}");
    assert_eq!(net.get(&(1, 1)), Some(&4_000), "buyer receives 4 lots");
    assert_eq!(net.get(&(2, 1)), Some(&-4_000), "seller delivers 4 lots");
    assert_eq!(net.get(&(2, 2)), Some(&239_760_000), "seller receives notional - maker fee");
    assert_eq!(net.get(&(0, 2)), Some(&720_000), "fee account receives both fees");
    let fee = e.iter().find(|x| x.account == 0).unwrap();
    assert_eq!((fee.kind, fee.reference, fee.available), (EntryKind::Fee, 1, 720_000));
    assert!(e.iter().filter(|x| x.account != 0 && x.external == 0).any(|x| x.kind == EntryKind::Trade));
    let (n, max) = s.fill_stats().await.unwrap();
    assert_eq!((n, max), (1, 1));
    let fills = s.fills_by_account(2, None, None, 10).await.unwrap();
    assert_eq!(fills.rows.len(), 1);
    let (af, f) = (fills.rows[0], fills.rows[0].fill);
    assert!(af.maker && af.account() == 2 && af.order_id() == 1 && af.side() == 1 && af.fee() == 240_000);
    assert_eq!(af.fill_id(), 2, "maker side of trade 1");
    let taker = s.fills_by_account(1, None, None, 10).await.unwrap().rows;
    assert!(!taker[0].maker && taker[0].fill_id() == 3 && taker[0].side() == 0 && taker[0].fee() == 480_000);
    assert!(s.fills_by_account(2, Some(9), None, 10).await.unwrap().rows.is_empty(), "another instrument");
    assert!(s.fills_by_account(2, None, Some(2), 10).await.unwrap().rows.is_empty(), "cursor is exclusive");
    assert_eq!((f.trade_id, f.seq, f.price, f.qty, f.maker_order, f.taker_order), (1, buy.seq, 6_000_000, 4, 1, 2));
    assert_eq!((f.maker_account, f.taker_account, f.maker_fee, f.taker_fee, f.aggressor), (2, 1, 240_000, 480_000, 0));

    // Cancel the rest of the sell: 6 lots released.
    let cancel = h.run(&Command::Cancel { account: 2, instrument: 0, target: OrderRef::Id(1) });
    // Withdraw 1000 base units of what was bought.
    let wd = h.run(&Command::Withdraw { account: 1, asset: 1, amount: 1_000 });
    h.flush(&s).await;
    let e = seq_entries(&s, cancel.seq).await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].kind, e[0].reference, e[0].available, e[0].locked), (EntryKind::Release, 1, 6_000, -6_000));
    let e = seq_entries(&s, wd.seq).await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].kind, e[0].available, e[0].external), (EntryKind::Withdrawal, -1_000, 1_000));

    let o = s.orders_by_account(2, None, None, 10).await.unwrap().rows;
    assert_eq!(o.len(), 1);
    assert_eq!((o[0].order_id, o[0].status, o[0].filled, o[0].leaves), (1, status::CANCELLED, 4, 6));
    assert_eq!(o[0].client_order_id, "1");
    assert_eq!(o[0].notional, 24_000_000, "price * qty of its one fill");
    // Options as the engine's acceptance carries them (NULL STP: the account's mode).
    assert_eq!((o[0].expire_ts, o[0].post_only, o[0].display_qty, o[0].stp), (0, Some(false), Some(0), None));
    let o = s.orders_by_account(1, None, None, 10).await.unwrap().rows;
    assert_eq!((o[0].order_id, o[0].status, o[0].filled, o[0].leaves), (2, status::FILLED, 4, 0));
    assert_eq!(o[0].notional, 24_000_000);
    assert!(s.orders_by_account(1, Some(9), None, 10).await.unwrap().rows.is_empty(), "another instrument");
    assert_eq!(s.orders_by_account(1, Some(0), None, 10).await.unwrap().rows, o);
    // Point lookups, only for the owner.
    assert_eq!(s.order(1, 2).await.unwrap().as_ref(), Some(&o[0]));
    assert_eq!(s.order(2, 2).await.unwrap(), None, "another account's order");
    assert_eq!(s.order(1, u64::MAX).await.unwrap(), None);
    assert_eq!(s.order_by_client_id(1, &o[0].client_order_id).await.unwrap().as_ref(), Some(&o[0]));
    assert_eq!(s.order_by_client_id(2, &o[0].client_order_id).await.unwrap(), None);
    assert_eq!(s.order_by_client_id(1, "").await.unwrap(), None);
    // A good-till-date order keeps its expiry.
    let expiry = 4_000_000_000_000_000_000;
    let gtd = h.run(&limit(2, Side::Sell, 6_000_100, 1, TimeInForce::Gtd(expiry), 9));
    assert!(matches!(gtd.events[0].kind, EventKind::OrderAccepted { .. }), "{:?}", gtd.events);
    h.flush(&s).await;
    let o = s.order_by_client_id(2, "9").await.unwrap().expect("the GTD order");
    assert_eq!((o.tif, o.expire_ts, o.status, o.notional), (3, expiry, status::OPEN, 0));
    // A post-only iceberg with its own STP mode keeps its options.
    let mut ice = limit(2, Side::Sell, 6_000_200, 10, TimeInForce::Gtc, 10);
    if let Command::PlaceOrder(o) = &mut ice {
        (o.post_only, o.display_qty, o.stp) = (true, 3, Some(castle_engine::StpMode::DecrementAndCancel));
    }
    let ice = h.run(&ice);
    assert!(matches!(ice.events[0].kind, EventKind::OrderAccepted { post_only: true, .. }), "{:?}", ice.events);
    h.flush(&s).await;
    let o = s.order_by_client_id(2, "10").await.unwrap().expect("the iceberg");
    assert_eq!((o.post_only, o.display_qty, o.stp), (Some(true), Some(3), Some(4)));
    // Rejections leave no entry: a withdrawal beyond the balance.
    let rej = h.run(&Command::Withdraw { account: 1, asset: 1, amount: 1 << 40 });
    assert!(matches!(rej.events[0].kind, EventKind::Rejected { .. }));
    h.flush(&s).await;
    assert!(seq_entries(&s, rej.seq).await.is_empty());
    assert_reconciles(&s, &h).await;
}

async fn a_flush_applied_twice_is_refused_and_changes_nothing<S: Store + Clone>(s: S) {
    let (mut stream, setup) = FillStream::new(7);
    let mut proj = castle_settlement::Projector::new(Default::default());
    for b in setup.iter().chain(stream.round().iter()) {
        proj.project(b).unwrap();
    }
    let f = Arc::new(proj.take_flush().unwrap());
    s.apply(f.clone()).await.unwrap();
    let before = (s.fill_stats().await.unwrap(), s.balances().await.unwrap(), s.entries(0, u64::MAX).await.unwrap());
    match s.apply(f.clone()).await {
        Err(StoreError::Conflict { expected, found }) => assert_eq!((expected, found), (0, f.seq)),
        other => panic!("second apply must be a conflict, got {other:?}"),
    }
    let after = (s.fill_stats().await.unwrap(), s.balances().await.unwrap(), s.entries(0, u64::MAX).await.unwrap());
    assert_eq!(before, after);
    // The projector also ignores a replayed batch.
    assert!(!proj.project(&setup[0]).unwrap());
}

/// Two flushes in flight (what the consumer does with `pipeline` 2): the second commits only
/// after the first, a second whose predecessor failed writes nothing, and a gate that lies
/// (says "committed" when it was not) is still caught by the compare-and-set.
async fn pipelined_flushes_commit_in_order_or_not_at_all<S: Store + Clone>(s: S) {
    let (mut stream, setup) = FillStream::new(11);
    let mut proj = castle_settlement::Projector::new(Default::default());
    for b in setup.iter().chain(stream.round().iter()) {
        proj.project(b).unwrap();
    }
    let f1 = Arc::new(proj.take_flush().unwrap());
    for _ in 0..5 {
        for b in stream.round() {
            proj.project(&b).unwrap();
        }
    }
    let f2 = Arc::new(proj.take_flush().unwrap());
    assert!(!f2.fills.is_empty() && f2.new_orders > 0, "the second flush appends rows");

    // The predecessor failed: nothing of f2 is written.
    let e = s.apply_after(f2.clone(), async { Err(StoreError::PreviousFailed) }).await.expect_err("must not apply");
    assert!(matches!(e, StoreError::PreviousFailed), "{e}");
    assert!(e.is_transient());
    // The gate says "committed" but f1 was never applied: the compare-and-set refuses f2.
    match s.apply_after(f2.clone(), async { Ok(()) }).await {
        Err(StoreError::Conflict { expected, found: 0 }) => assert_eq!(expected, f1.seq),
        other => panic!("expected a compare-and-set conflict, got {other:?}"),
    }
    assert_eq!(s.applied_seq().await.unwrap(), 0);
    assert!(s.entries(0, u64::MAX).await.unwrap().is_empty(), "no entry was kept");
    assert_eq!(s.fill_stats().await.unwrap().0, 0, "no fill was kept");

    // Both in flight at once, the second gated on the first's commit.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<bool>();
    let first = {
        let (s, f1) = (s.clone(), f1.clone());
        tokio::spawn(async move {
            let r = s.apply(f1).await;
            let _ = done_tx.send(r.is_ok());
            r
        })
    };
    let second = s.apply_after(f2.clone(), async {
        match done_rx.await {
            Ok(true) => Ok(()),
            _ => Err(StoreError::PreviousFailed),
        }
    });
    second.await.expect("second flush");
    first.await.unwrap().expect("first flush");
    assert_eq!(s.applied_seq().await.unwrap(), f2.seq);
    let want: Vec<_> = f1.entries.iter().chain(f2.entries.iter()).copied().collect();
    assert_eq!(s.entries(0, u64::MAX).await.unwrap(), want);
    assert_eq!(s.fill_stats().await.unwrap().0, (f1.fills.len() + f2.fills.len()) as u64);
}

async fn a_negative_balance_is_refused_atomically<S: Store + Clone>(s: S) {
    let bad = Flush {
        prev_seq: 0,
        seq: 5,
        batches: 1,
        balances: vec![BalanceRow { account: 1, asset: 1, available: -1, locked: 0, external: 1, seq: 5 }],
        entries: vec![castle_settlement::Entry {
            seq: 5,
            idx: 0,
            ts: 1,
            account: 1,
            asset: 1,
            kind: EntryKind::Other,
            reference: 0,
            available: -1,
            locked: 0,
            external: 1,
        }],
        ..Flush::default()
    };
    let e = s.apply(Arc::new(bad)).await.expect_err("CHECK (available >= 0) must refuse");
    assert!(!e.is_transient(), "a constraint violation is not retried: {e}");
    assert_eq!(s.applied_seq().await.unwrap(), 0, "the cursor did not move");
    assert!(s.entries(0, u64::MAX).await.unwrap().is_empty(), "no entry was kept");
}

async fn random_engine_streams_reconcile<S: Store + Clone>(s: S) {
    // Seeded Chaos command streams (every command and option) through the engine; the
    // ledger is flushed at random points and reloaded from the database halfway.
    let mut h = Harness::new(Limits::small());
    for c in Chaos::setup() {
        h.run(&c);
    }
    let mut rng = castle_engine::workload::Rng::new(0x5e77);
    for seed in 1..=3u64 {
        let mut chaos = Chaos::new(seed);
        for n in 0..400 {
            let c = chaos.next_command();
            let ts = chaos.next_ts();
            let b = h.run_at(ts, &c);
            chaos.observe(&b.events);
            if rng.chance(10) {
                h.flush(&s).await;
            }
            if n == 200 {
                h.flush(&s).await;
                h.reload(&s).await;
            }
        }
        h.flush(&s).await;
        assert_reconciles(&s, &h).await;
    }
    assert!(h.trades > 50, "the streams trade ({} trades)", h.trades);
}

async fn history_pages_by_account<S: Store + Clone>(s: S) {
    let (mut stream, setup) = FillStream::new(11);
    let mut h = Harness::new(FillStream::limits());
    for b in &setup {
        h.proj.project(b).unwrap();
    }
    // Per account, its fill ids and accepted order ids; written in many flushes (every 7th
    // round), so pages cross the history maps' per-flush rows.
    let mut want: BTreeMap<u32, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for round in 0..60 {
        for b in stream.round() {
            for e in &b.events {
                match e.kind {
                    EventKind::Trade { trade_id, maker_account, taker_account, .. } => {
                        // A self-trade is two fills of the account.
                        want.entry(maker_account).or_default().0.push(trade_id * 2);
                        want.entry(taker_account).or_default().0.push(trade_id * 2 + 1);
                    }
                    EventKind::OrderAccepted { order_id, account, .. } => {
                        want.entry(account).or_default().1.push(order_id)
                    }
                    _ => {}
                }
            }
            h.proj.project(&b).unwrap();
        }
        if round % 7 == 6 {
            h.flush(&s).await;
        }
    }
    h.flush(&s).await;
    for (&account, (fills, orders)) in &mut want {
        fills.sort_unstable_by(|a, b| b.cmp(a));
        orders.sort_unstable_by(|a, b| b.cmp(a));
        let sizes: &[usize] = if account == 7 { &[1, 4, 1_000] } else { &[4] };
        for &size in sizes {
            let (mut seen, mut cursor) = (Vec::new(), None);
            loop {
                let p = s.fills_by_account(account, None, cursor, size).await.unwrap();
                assert!(p.rows.len() <= size);
                assert!(p.rows.iter().all(|f| f.account() == account));
                seen.extend(p.rows.iter().map(|f| f.fill_id()));
                match p.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(&seen, fills, "every fill of {account} once, newest first, pages of {size}");
            let (mut seen, mut cursor) = (Vec::new(), None);
            loop {
                let p = s.orders_by_account(account, None, cursor, size).await.unwrap();
                assert!(p.rows.len() <= size);
                assert!(p.rows.iter().all(|o| o.account == account));
                seen.extend(p.rows.iter().map(|o| o.order_id));
                match p.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(&seen, orders, "every accepted order of {account} once, newest first, pages of {size}");
        }
    }
    assert!(want[&7].0.len() > 4, "several pages of fills");
    let most = want.values().map(|(_, o)| o.len()).max();
    assert!(most > Some(4), "several pages of orders ({most:?})");
}

async fn consumer_ignores_duplicate_and_replayed_batches<S: Store + Clone>(s: S) {
    // Every batch is delivered twice, and each (re)open replays batches already applied;
    // the stream is also cut twice midway. Exactly the engine's fills must land.
    let src = VecSource::duplicating();
    let (mut stream, setup) = FillStream::new(3);
    for b in setup {
        src.push(b);
    }
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = ConsumerConfig { max_flush_rows: 500, retry: std::time::Duration::from_millis(10), ..Default::default() };
    let task = tokio::spawn(consumer::run(s.clone(), src.clone(), cfg, metrics.clone(), stop_rx));
    for i in 0..300 {
        for b in stream.round() {
            src.push(b);
        }
        if i == 100 || i == 200 {
            // Cut while the consumer is live (it has applied something since the last cut).
            let (seen, retries) = (metrics.batches.load(Relaxed), metrics.retries.load(Relaxed));
            wait_until(30, "consumer progress", async || metrics.batches.load(Relaxed) > seen).await;
            src.cut();
            wait_until(30, "the cut to be noticed", async || metrics.retries.load(Relaxed) > retries).await;
        }
    }
    let last = src.last_seq();
    wait_until(60, "the consumer to catch up", async || s.applied_seq().await.unwrap() == last).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    let accounts = 0..=FillStream::ACCOUNTS;
    let view = castle_settlement::EngineView::from_engine(&stream.engine, accounts, stream.fills);
    let r = reconcile(&s, &view).await.unwrap();
    assert!(r.clean(), "{:#?}", r.differences);
    assert_eq!(r.fills, stream.fills);
    assert!(metrics.retries.load(Relaxed) >= 2, "the cuts were noticed");
}

async fn reconcile_reports_every_difference<S: Store + Clone>(s: S) {
    let mut h = Harness::new(Limits::small());
    for c in Chaos::setup() {
        h.run(&c);
    }
    h.flush(&s).await;
    let mut view = h.view();
    assert!(reconcile(&s, &view).await.unwrap().clean());
    // The engine view disagrees on one balance, the trade count and the seq.
    let (k, v) = view.balances.iter().next().map(|(k, v)| (*k, *v)).unwrap();
    view.balances.insert(k, (v.0 + 1, v.1));
    view.trades += 1;
    view.seq += 1;
    let r = reconcile(&s, &view).await.unwrap();
    assert_eq!(r.differences.len(), 3, "{:#?}", r.differences);
    assert!(r.differences.iter().any(|d| d.contains(&format!("account {} asset {}", k.0, k.1))));
    assert!(r.differences.iter().any(|d| d.starts_with("fills:")));
    assert!(r.differences.iter().any(|d| d.starts_with("seq:")));
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (s, _dir) = super::common::sqlite();
                    super::$name(s).await;
                }
            )*
        }
        mod postgres_copy {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = super::common::postgres(concat!("c_", stringify!($name)), super::WriteMode::Copy).await;
                    super::$name(s).await;
                }
            )*
        }
    };
}

conformance!(
    every_event_type_makes_the_right_entries,
    a_flush_applied_twice_is_refused_and_changes_nothing,
    a_negative_balance_is_refused_atomically,
    pipelined_flushes_commit_in_order_or_not_at_all,
    random_engine_streams_reconcile,
    history_pages_by_account,
    consumer_ignores_duplicate_and_replayed_batches,
    reconcile_reports_every_difference,
);

/// The second PostgreSQL write path (multi-row unnest) on the same random streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unnest_random_engine_streams_reconcile() {
    random_engine_streams_reconcile(common::postgres("unnest_random", WriteMode::Unnest).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unnest_every_event_type() {
    every_event_type_makes_the_right_entries(common::postgres("unnest_every", WriteMode::Unnest).await).await;
}
