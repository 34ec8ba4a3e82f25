//! Support for tests and benchmarks (not used on the production path): a throwaway
//! PostgreSQL, an in-memory engine stream with duplicate delivery, and a fill-heavy
//! command generator.

pub mod pg;

use std::sync::{Arc, Mutex, OnceLock};

use castle_engine::{
    ClientOrderId, Command, Engine, Event, EventKind, FastEngine, InstrumentSpec, Limits, NewOrder, OrderSize,
    OrderType, Seq, Side, TimeInForce,
};
use castle_link::EngineBatch;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::source::{Source, SourceError};

/// URL of a PostgreSQL server tests may create databases on: `$DATABASE_URL`, or a private
/// cluster started once per test process and stopped when the process exits.
pub fn shared_server() -> Result<String, String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if let Ok(u) = std::env::var("DATABASE_URL") {
                return Ok(u);
            }
            let c = pg::PgCluster::start()?;
            let url = c.url("postgres");
            // Statics are never dropped: a watchdog stops the server when this process ends.
            let script = format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop}",
                pid = std::process::id(),
                stop = c.stop_command()
            );
            std::process::Command::new("sh")
                .args(["-c", &script])
                .stdin(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("watchdog: {e}"))?;
            std::mem::forget(c);
            Ok(url)
        })
        .clone()
}

/// An engine stream kept in memory: batches are pushed by the test; `open(after)` replays
/// from history then goes live. With `duplicate`, every batch is delivered twice and each
/// reopen also replays a few batches from before `after` (both must be no-ops).
#[derive(Clone, Default)]
pub struct VecSource {
    inner: Arc<Mutex<VecInner>>,
    pub duplicate: bool,
}

#[derive(Default)]
struct VecInner {
    history: Vec<Arc<EngineBatch>>,
    live: Vec<mpsc::UnboundedSender<Arc<EngineBatch>>>,
}

impl VecSource {
    /// A source that delivers every batch twice and replays already-applied ones on reopen.
    pub fn duplicating() -> VecSource {
        VecSource { duplicate: true, ..VecSource::default() }
    }

    pub fn push(&self, b: EngineBatch) {
        let b = Arc::new(b);
        let mut g = self.inner.lock().expect("source lock");
        g.live.retain(|tx| {
            let ok = tx.send(b.clone()).is_ok();
            ok && (!self.duplicate || tx.send(b.clone()).is_ok())
        });
        g.history.push(b);
    }

    pub fn last_seq(&self) -> Seq {
        self.inner.lock().expect("source lock").history.last().map(|b| b.seq).unwrap_or(0)
    }

    /// Closes every live stream (the consumer sees the stream end and reopens).
    pub fn cut(&self) {
        self.inner.lock().expect("source lock").live.clear();
    }
}

impl Source for VecSource {
    fn open(
        &self,
        after: Seq,
        capacity: usize,
        metrics: &Arc<Metrics>,
    ) -> Result<mpsc::Receiver<Arc<EngineBatch>>, SourceError> {
        let mut g = self.inner.lock().expect("source lock");
        let (utx, mut urx) = mpsc::unbounded_channel();
        let start = g.history.partition_point(|b| b.seq <= after);
        let from = if self.duplicate { start.saturating_sub(3) } else { start };
        for b in &g.history[from..] {
            let _ = utx.send(b.clone());
            if self.duplicate {
                let _ = utx.send(b.clone());
            }
        }
        if let Some(b) = g.history.last() {
            metrics.saw_engine_seq(b.seq);
        }
        g.live.push(utx);
        // Bridge to the bounded channel the consumer expects.
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(async move {
            while let Some(b) = urx.recv().await {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// Applies `cmd` to `engine` and wraps its events as a batch.
pub fn apply(engine: &mut FastEngine, ts: u64, cmd: &Command) -> EngineBatch {
    let mut out: Vec<Event> = Vec::new();
    let seq = engine.apply(ts, cmd, &mut out);
    EngineBatch { origin: None, seq, ts, events: out }
}

/// A fill-heavy engine stream for benchmarks: per round, 1..=4 resting sells from random
/// accounts then one buy that takes them all (so about 2.5 fills per taker command).
pub struct FillStream {
    pub engine: FastEngine,
    rng: castle_engine::workload::Rng,
    ts: u64,
    client: u64,
    pub fills: u64,
}

impl FillStream {
    pub const ACCOUNTS: u32 = 50;

    pub fn limits() -> Limits {
        Limits { max_accounts: Self::ACCOUNTS + 8, ..Limits::default() }
    }

    /// The engine after set-up, and the set-up batches (instrument, deposits).
    pub fn new(seed: u64) -> (FillStream, Vec<EngineBatch>) {
        let mut s = FillStream {
            engine: Engine::new(Self::limits()),
            rng: castle_engine::workload::Rng::new(seed),
            ts: 1,
            client: 0,
            fills: 0,
        };
        let mut spec = InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000);
        spec.band_bps = 5_000;
        let mut setup = vec![Command::AddInstrument(spec)];
        for account in 1..=Self::ACCOUNTS {
            setup.push(Command::Deposit { account, asset: 1, amount: 1 << 50 });
            setup.push(Command::Deposit { account, asset: 2, amount: 1 << 58 });
        }
        let batches = setup.iter().map(|c| s.step(c)).collect();
        (s, batches)
    }

    fn step(&mut self, cmd: &Command) -> EngineBatch {
        self.ts += 1;
        let b = apply(&mut self.engine, self.ts, cmd);
        self.fills += b.events.iter().filter(|e| matches!(e.kind, EventKind::Trade { .. })).count() as u64;
        b
    }

    fn order(&mut self, account: u32, side: Side, price: i64, qty: i64, tif: TimeInForce) -> Command {
        self.client += 1;
        Command::PlaceOrder(NewOrder {
            account,
            instrument: 0,
            client_order_id: ClientOrderId::from_u64(self.client),
            side,
            order_type: OrderType::Limit { price },
            size: OrderSize::Base(qty),
            tif,
            post_only: false,
            display_qty: 0,
            stp: None,
        })
    }

    /// Next round of commands' batches.
    pub fn round(&mut self) -> Vec<EngineBatch> {
        let makers = 1 + self.rng.below(4) as i64;
        let mut out = Vec::with_capacity(makers as usize + 1);
        let mut top = 0;
        for k in 0..makers {
            let account = 1 + self.rng.below(Self::ACCOUNTS as u64) as u32;
            let price = 6_000_000 + k;
            top = price;
            let qty = 1 + self.rng.below(5) as i64;
            let c = self.order(account, Side::Sell, price, qty, TimeInForce::Gtc);
            out.push(self.step(&c));
        }
        let taker = 1 + self.rng.below(Self::ACCOUNTS as u64) as u32;
        let c = self.order(taker, Side::Buy, top, 100, TimeInForce::Ioc);
        out.push(self.step(&c));
        out
    }
}
