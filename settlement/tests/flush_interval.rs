//! The consumer's flush timing ([`ConsumerConfig::flush_interval`]) in virtual time (tokio's
//! paused clock, so every instant below is exact): a flush starts once its first batch has
//! waited the interval, never later while a pipeline slot is free; batches arriving meanwhile
//! join it; an idle stream still flushes what it has; interval zero starts at once (eager);
//! a flush that reaches `max_flush_rows` starts without waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use castle_engine::{AccountId, InstrumentId, OrderId, Seq};
use castle_settlement::testkit::{FillStream, VecSource};
use castle_settlement::{
    consumer, AccountFill, BalanceRow, ConsumerConfig, Entry, EntryTotal, Flush, LedgerState, Metrics, OrderRow, Page,
    Store, StoreError,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// One applied flush: when it started (virtual time), its seq range and batch count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applied {
    at: Instant,
    prev_seq: Seq,
    seq: Seq,
    batches: u64,
}

/// A store that only records flushes (and takes `commit` of virtual time to apply one).
#[derive(Clone)]
struct Recorder {
    tx: mpsc::UnboundedSender<Applied>,
    commit: Duration,
    applied: Arc<Mutex<Seq>>,
}

impl Store for Recorder {
    fn backend(&self) -> &'static str {
        "recorder"
    }
    async fn load(&self) -> Result<LedgerState, StoreError> {
        Ok(LedgerState::default())
    }
    async fn apply(&self, f: Arc<Flush>) -> Result<(), StoreError> {
        let at = Instant::now();
        tokio::time::sleep(self.commit).await;
        {
            let mut applied = self.applied.lock().unwrap();
            assert_eq!(*applied, f.prev_seq, "flushes commit in order");
            *applied = f.seq;
        }
        let _ = self.tx.send(Applied { at, prev_seq: f.prev_seq, seq: f.seq, batches: f.batches });
        Ok(())
    }
    async fn applied_seq(&self) -> Result<Seq, StoreError> {
        Ok(*self.applied.lock().unwrap())
    }
    async fn balances(&self) -> Result<Vec<BalanceRow>, StoreError> {
        Ok(Vec::new())
    }
    async fn entry_totals(&self) -> Result<Vec<EntryTotal>, StoreError> {
        Ok(Vec::new())
    }
    async fn entries(&self, _: Seq, _: Seq) -> Result<Vec<Entry>, StoreError> {
        Ok(Vec::new())
    }
    async fn fill_stats(&self) -> Result<(u64, u64), StoreError> {
        Ok((0, 0))
    }
    async fn fills_by_account(
        &self,
        _: AccountId,
        _: Option<InstrumentId>,
        _: Option<u64>,
        _: usize,
    ) -> Result<Page<AccountFill>, StoreError> {
        Ok(Page { rows: Vec::new(), next: None })
    }
    async fn orders_by_account(
        &self,
        _: AccountId,
        _: Option<InstrumentId>,
        _: Option<u64>,
        _: usize,
    ) -> Result<Page<OrderRow>, StoreError> {
        Ok(Page { rows: Vec::new(), next: None })
    }
    async fn order(&self, _: AccountId, _: OrderId) -> Result<Option<OrderRow>, StoreError> {
        Ok(None)
    }
    async fn order_by_client_id(&self, _: AccountId, _: &str) -> Result<Option<OrderRow>, StoreError> {
        Ok(None)
    }
}

struct Rig {
    src: VecSource,
    stream: FillStream,
    applied: mpsc::UnboundedReceiver<Applied>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), castle_settlement::ConsumerError>>,
    metrics: Arc<Metrics>,
}

impl Rig {
    /// A consumer on an empty ledger; the stream's set-up batches are pushed at once.
    fn start(cfg: ConsumerConfig, commit: Duration) -> Rig {
        let (tx, applied) = mpsc::unbounded_channel();
        let store = Recorder { tx, commit, applied: Arc::new(Mutex::new(0)) };
        let (stream, setup) = FillStream::new(7);
        let src = VecSource::default();
        for b in setup {
            src.push(b);
        }
        let metrics = Arc::new(Metrics::default());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(consumer::run(store, src.clone(), cfg, metrics.clone(), rx));
        Rig { src, stream, applied, stop, task, metrics }
    }

    /// Pushes one round of the fill stream (a few batches); returns how many.
    fn round(&mut self) -> u64 {
        let batches = self.stream.round();
        let n = batches.len() as u64;
        for b in batches {
            self.src.push(b);
        }
        n
    }

    async fn next(&mut self) -> Applied {
        self.applied.recv().await.expect("the consumer stopped")
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

fn cfg(interval_ms: u64, pipeline: usize) -> ConsumerConfig {
    ConsumerConfig { flush_interval: Duration::from_millis(interval_ms), pipeline, ..ConsumerConfig::default() }
}

#[tokio::test(start_paused = true)]
async fn a_flush_waits_for_the_interval_and_never_more() {
    let t0 = Instant::now();
    let mut rig = Rig::start(cfg(10, 4), Duration::from_millis(1));
    let setup = rig.src.last_seq();
    // The set-up batches arrived at t0: one flush of all of them, started exactly 10 ms later
    // (an idle stream still flushes: nothing else arrives).
    let first = rig.next().await;
    assert_eq!(first.at - t0, Duration::from_millis(10), "{first:?}");
    assert_eq!((first.prev_seq, first.seq, first.batches), (0, setup, setup));

    // Batches at 13 ms and 16 ms: one flush of both, started 10 ms after the first of them.
    tokio::time::sleep_until(t0 + Duration::from_millis(13)).await;
    let a = rig.round();
    tokio::time::sleep_until(t0 + Duration::from_millis(16)).await;
    let b = rig.round();
    let second = rig.next().await;
    assert_eq!(second.at - t0, Duration::from_millis(23), "{second:?}");
    assert_eq!((second.prev_seq, second.seq, second.batches), (setup, rig.src.last_seq(), a + b));

    // A steady trickle (a round every 3 ms from 30 ms): each flush starts exactly 10 ms after
    // its first batch, so flushes hold 4 rounds (at 30, 33, 36, 39 ms, started at 40 ms; the
    // next at 42, 45, 48, 51, started at 52 ms) and none waits longer.
    let mut starts = Vec::new();
    let mut rounds = 0;
    for k in 0..8u64 {
        tokio::time::sleep_until(t0 + Duration::from_millis(30 + 3 * k)).await;
        rounds += rig.round();
        while let Ok(f) = rig.applied.try_recv() {
            starts.push(f);
        }
    }
    while starts.iter().map(|f| f.batches).sum::<u64>() < rounds {
        starts.push(rig.next().await);
    }
    let at: Vec<Duration> = starts.iter().map(|f| f.at - t0).collect();
    assert_eq!(at, [Duration::from_millis(40), Duration::from_millis(52)], "{starts:?}");
    let stages = rig.metrics.stage_us.lock().unwrap().clone();
    let queue = stages.get("queue").unwrap();
    assert_eq!(queue.len(), 4, "one queue time per flush");
    assert!(queue.max() <= 10_010, "no flush queued longer than the interval: {} us", queue.max());
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn interval_zero_starts_a_flush_at_once() {
    let t0 = Instant::now();
    let mut rig = Rig::start(cfg(0, 2), Duration::from_millis(5));
    let setup = rig.src.last_seq();
    let first = rig.next().await;
    assert_eq!(first.at, t0, "eager: the first flush starts when its batches arrive");
    // The rest of the set-up (what the first flush did not find queued) follows as soon as
    // slots free up, never later than the previous commit.
    let mut last = first;
    while last.seq < setup {
        let f = rig.next().await;
        assert!(f.at <= last.at + Duration::from_millis(5), "{f:?} after {last:?}");
        last = f;
    }
    tokio::time::sleep_until(t0 + Duration::from_millis(20)).await;
    rig.round();
    let second = rig.next().await;
    assert_eq!(second.at - t0, Duration::from_millis(20), "{second:?}");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_flush_does_not_wait_for_the_interval() {
    let t0 = Instant::now();
    // A 1-row flush limit: every batch with a row fills a flush at once.
    let cfg = ConsumerConfig { max_flush_rows: 1, ..cfg(1_000, 4) };
    let mut rig = Rig::start(cfg, Duration::from_millis(1));
    let first = rig.next().await;
    assert_eq!(first.at, t0, "a full flush starts at once: {first:?}");
    rig.stop().await;
}
