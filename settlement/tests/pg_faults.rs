//! PostgreSQL fault test: the server is stopped with `pg_ctl stop -m immediate` while the
//! consumer is writing under load, then started again; the consumer reconnects, catches up,
//! and the ledger reconciles with zero lost or duplicated fills. Uses its own private
//! cluster (stopping a shared one would disturb other tests).

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use castle_settlement::testkit::{pg, FillStream, VecSource};
use castle_settlement::{consumer, reconcile, ConsumerConfig, EngineView, Metrics, PgConfig, PgStore, Store};
use common::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_immediately_mid_batch_then_restarted() {
    let cluster = pg::PgCluster::start().unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let url = pg::create_database(&cluster.url("postgres"), "castle_fault").await.unwrap();
    let store = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    let src = VecSource::default();
    let (mut stream, setup) = FillStream::new(21);
    for b in setup {
        src.push(b);
    }
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg =
        ConsumerConfig { max_flush_rows: 2_000, retry: std::time::Duration::from_millis(50), ..Default::default() };
    let task = tokio::spawn(consumer::run(store.clone(), src.clone(), cfg, metrics.clone(), stop_rx));

    // Load in small steps so flushes are in flight when the server dies.
    let mut pushed = 0;
    let mut push = |n: usize| {
        for _ in 0..n {
            for b in stream.round() {
                src.push(b);
            }
        }
        pushed += n;
    };
    push(200);
    wait_until(30, "first flushes", async || metrics.flushes.load(Relaxed) > 0).await;
    push(200);
    cluster.stop_immediate().unwrap();
    push(400);
    wait_until(30, "the consumer to notice the outage", async || metrics.retries.load(Relaxed) > 0).await;
    let applied_during_outage = metrics.applied_seq.load(Relaxed);
    push(200);
    assert_eq!(metrics.applied_seq.load(Relaxed), applied_during_outage, "nothing commits while the server is down");
    cluster.pg_ctl_start().unwrap();
    push(200);
    let last = src.last_seq();
    wait_until(60, "the consumer to catch up", async || store.applied_seq().await.is_ok_and(|s| s == last)).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();

    let view = EngineView::from_engine(&stream.engine, 0..=FillStream::ACCOUNTS, stream.fills);
    let r = reconcile(&store, &view).await.unwrap();
    assert!(r.clean(), "{:#?}", r.differences);
    assert_eq!(r.fills, stream.fills, "zero lost, zero duplicated fills");
    assert!(pushed >= 1_000 && stream.fills > 1_000);
}
