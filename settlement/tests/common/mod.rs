//! Shared helpers of the settlement tests: backends and an engine harness.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use castle_engine::{
    ClientOrderId, Command, Engine, EventKind, FastEngine, Limits, NewOrder, OrderSize, OrderType, Side, TimeInForce,
};
use castle_link::EngineBatch;
use castle_settlement::testkit::{self, pg};
use castle_settlement::{EngineView, PgConfig, PgStore, Projector, SqliteStore, Store, WriteMode};

pub fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStore::open(dir.path().join("ledger.sqlite")).expect("open sqlite ledger");
    (s, dir)
}

/// A fresh database on the shared test server. Fails (never skips) when PostgreSQL is missing.
pub async fn postgres(name: &str, mode: WriteMode) -> PgStore {
    let admin = testkit::shared_server().unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    // PostgreSQL identifiers stop at 63 bytes: keep the unique part (the pid) first.
    let mut db = format!("castle_{}_{name}", std::process::id());
    db.truncate(63);
    let url = pg::create_database(&admin, &db).await.unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let mut cfg = PgConfig::new(url);
    cfg.mode = mode;
    PgStore::connect(&cfg).await.expect("connect to the test database")
}

/// An engine whose batches are projected and flushed into a store.
pub struct Harness {
    pub engine: FastEngine,
    pub proj: Projector,
    pub trades: u64,
    pub accounts: BTreeSet<u32>,
    pub ts: u64,
    pub batches: Vec<EngineBatch>,
}

impl Harness {
    pub fn new(limits: Limits) -> Harness {
        Harness {
            engine: Engine::new(limits),
            proj: Projector::new(Default::default()),
            trades: 0,
            accounts: [0].into_iter().collect(),
            ts: 1_000,
            batches: Vec::new(),
        }
    }

    pub fn run_at(&mut self, ts: u64, c: &Command) -> EngineBatch {
        self.ts = ts.max(self.ts);
        let b = testkit::apply(&mut self.engine, self.ts, c);
        for e in &b.events {
            match e.kind {
                EventKind::Trade { .. } => self.trades += 1,
                EventKind::BalanceChanged { account, .. } | EventKind::Transfer { account, .. } => {
                    self.accounts.insert(account);
                }
                _ => {}
            }
        }
        self.proj.project(&b).expect("projection");
        self.batches.push(b.clone());
        b
    }

    pub fn run(&mut self, c: &Command) -> EngineBatch {
        let ts = self.ts + 1;
        self.run_at(ts, c)
    }

    pub async fn flush<S: Store>(&mut self, s: &S) {
        if let Some(f) = self.proj.take_flush() {
            s.apply(Arc::new(f)).await.expect("apply flush");
        }
    }

    /// Drops the in-memory projection and resumes from the database (as after a restart).
    pub async fn reload<S: Store>(&mut self, s: &S) {
        self.proj = Projector::new(s.load().await.expect("load"));
        assert_eq!(self.proj.seq(), self.engine.seq(), "resumed at the engine's seq");
    }

    pub fn view(&self) -> EngineView {
        EngineView::from_engine(&self.engine, self.accounts.iter().copied(), self.trades)
    }
}

pub fn limit(account: u32, side: Side, price: i64, qty: i64, tif: TimeInForce, client: u64) -> Command {
    Command::PlaceOrder(NewOrder {
        account,
        instrument: 0,
        client_order_id: ClientOrderId::from_u64(client),
        side,
        order_type: OrderType::Limit { price },
        size: OrderSize::Base(qty),
        tif,
        post_only: false,
        display_qty: 0,
        stp: None,
    })
}

/// Polls `cond` until it holds or `secs` pass (then panics with `what`).
pub async fn wait_until(secs: u64, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
