//! The seam between the gateways (and other consumers) and the engine.
//!
//! The gateway never owns the engine: it submits [`Command`]s tagged with its
//! gateway id and a request id, and it consumes the engine's output stream,
//! one [`EngineBatch`] per command in sequence order, for *every* command
//! (not only its own): a resting order placed through this gateway is filled
//! by someone else's command, and drop-copy sessions follow accounts whatever
//! gateway they trade through.
//!
//! [`InProcessEngine`] runs a [`FastEngine`] on its own thread behind bounded
//! channels; it is what `castle serve` and the tests use. The durable
//! sequencer/engine server implements the same trait later (submitting into
//! its journal, streaming from it).

use castle_engine::{Command, Engine, Event, EventKind, FastEngine, InstrumentSpec, Limits, Seq};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// Who sent a command: a gateway instance and its own request counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub gateway: u32,
    pub request: u64,
}

/// A command submitted to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineRequest {
    pub origin: Origin,
    pub command: Command,
}

/// The events of one command, in engine sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineBatch {
    /// `None` for commands the engine host issued itself (time ticks, admin).
    pub origin: Option<Origin>,
    pub seq: Seq,
    /// Engine time of the command (ns since the epoch).
    pub ts: u64,
    pub events: Vec<Event>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The engine's inbound queue is full: the caller rejects the request
    /// ("engine busy") instead of queueing without bound.
    #[error("engine queue full")]
    Busy,
    #[error("engine stopped")]
    Stopped,
    /// The link cannot replay history (the plain in-process engine keeps
    /// none): only a journal-backed engine serves "everything after N".
    #[error("this engine cannot resume a stream from sequence {0}")]
    CannotResume(Seq),
}

/// What a gateway needs from an engine.
pub trait EngineLink: Send + Sync + 'static {
    /// Queue a command. Never blocks: `Err(Busy)` when the queue is full.
    fn submit(&self, req: EngineRequest) -> Result<(), LinkError>;
    /// Subscribe to the output stream, starting with the next command
    /// applied. The channel is bounded: a subscriber that does not keep up
    /// slows the engine down (in-process) rather than losing events.
    fn subscribe(&self, capacity: usize) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError>;
    /// Subscribe to every batch with a sequence number greater than `after`
    /// (a consumer's last processed seq), then live: how settlement, market
    /// data and the archive resume after a restart without losing or
    /// doubling an event. Links without history answer `CannotResume`.
    fn subscribe_after(
        &self,
        after: Seq,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let _ = capacity;
        Err(LinkError::CannotResume(after))
    }
    /// Instruments currently listed (refreshed by the gateway when it sees
    /// `InstrumentAdded` in the stream).
    fn instruments(&self) -> Vec<InstrumentSpec>;
    /// The request id a gateway starting with this id numbers its requests
    /// from. A journal-backed engine answers one past the highest request id
    /// it has journaled for that gateway, so request ids stay unique across
    /// restarts: an origin seen in a replayed stream (`subscribe_after`) is
    /// never mistaken for a request of the new run. Links without history
    /// answer 1.
    fn first_request(&self, gateway: u32) -> u64 {
        let _ = gateway;
        1
    }
    /// Sequence number of the last batch released to subscribers (0: none),
    /// when the link knows it: a consumer replaying with
    /// `subscribe_after(0)` has caught up once it has seen this one (how the
    /// FIX gateway knows its order view is rebuilt after a restart).
    fn last_seq(&self) -> Option<Seq> {
        None
    }
}

/// How many batches the in-process engine remembers for `subscribe_after`.
/// It has no journal, so history is memory: bounded, and a consumer asking
/// for anything older gets `CannotResume` instead of a silent gap.
pub const IN_PROCESS_HISTORY: usize = 1 << 16;

/// Live subscribers and the recent history, under one lock so a batch is
/// either in the history a new subscriber copies or sent to it live, never
/// both and never neither.
#[derive(Default)]
struct Fanout {
    live: Vec<tokio::sync::mpsc::Sender<Arc<EngineBatch>>>,
    history: std::collections::VecDeque<Arc<EngineBatch>>,
    /// Sequence number of the last batch published (0: none).
    last_seq: Seq,
    /// Highest sequence number dropped from the history (0: none).
    forgotten: Seq,
}

impl Fanout {
    fn record(&mut self, batch: &Arc<EngineBatch>) {
        if self.history.len() == IN_PROCESS_HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.forgotten = old.seq;
            }
        }
        self.history.push_back(batch.clone());
        self.last_seq = batch.seq;
    }
}

type Subscribers = Arc<Mutex<Fanout>>;

/// A [`FastEngine`] on a dedicated thread.
pub struct InProcessEngine {
    tx: SyncSender<EngineRequest>,
    subscribers: Subscribers,
    instruments: Arc<RwLock<Vec<InstrumentSpec>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl InProcessEngine {
    /// Start the engine thread. `setup` commands (instruments, deposits) are
    /// applied first, before anything is submitted. `queue` bounds the
    /// inbound command queue.
    pub fn start(limits: Limits, setup: &[Command], queue: usize) -> Arc<InProcessEngine> {
        // No polling by default: see `start_with_spin`.
        Self::start_with_spin(limits, setup, queue, Duration::ZERO)
    }

    /// Like [`InProcessEngine::start`]; `spin` is how long the engine thread
    /// polls its queue before blocking. Polling saves the wake-up (tens of
    /// microseconds on a VM) when commands come back to back, but burns a
    /// core that a small machine may need for the gateway itself (measured
    /// on the 2-core VM: 20 us of polling per command cost more CPU than the
    /// wake-up it saved under load; see BENCHMARKS.md).
    pub fn start_with_spin(limits: Limits, setup: &[Command], queue: usize, spin: Duration) -> Arc<InProcessEngine> {
        let mut engine: FastEngine = Engine::new(limits);
        let instruments = Arc::new(RwLock::new(Vec::new()));
        let mut out = Vec::new();
        let mut fanout = Fanout::default();
        for c in setup {
            out.clear();
            let ts = now_nanos();
            let seq = engine.apply(ts, c, &mut out);
            // Set-up commands are part of the stream: a consumer resuming
            // from 0 (settlement, market data) must see the deposits too.
            fanout.record(&Arc::new(EngineBatch { origin: None, seq, ts, events: out.clone() }));
        }
        refresh_instruments(&engine, &instruments);
        let (tx, rx) = sync_channel::<EngineRequest>(queue.max(1));
        let subscribers: Subscribers = Arc::new(Mutex::new(fanout));
        let subs = subscribers.clone();
        let instr = instruments.clone();
        let thread = std::thread::Builder::new()
            .name("castle-engine".into())
            .spawn(move || engine_loop(engine, rx, subs, instr, spin))
            .expect("spawn engine thread");
        Arc::new(InProcessEngine { tx, subscribers, instruments, thread: Mutex::new(Some(thread)) })
    }
}

fn refresh_instruments(engine: &FastEngine, instruments: &RwLock<Vec<InstrumentSpec>>) {
    let specs: Vec<InstrumentSpec> =
        (0..engine.limits().max_instruments).filter_map(|id| engine.instrument(id).copied()).collect();
    if let Ok(mut w) = instruments.write() {
        *w = specs;
    }
}

fn engine_loop(
    mut engine: FastEngine,
    rx: Receiver<EngineRequest>,
    subs: Subscribers,
    instruments: Arc<RwLock<Vec<InstrumentSpec>>>,
    spin: Duration,
) {
    let mut out: Vec<Event> = Vec::with_capacity(256);
    let mut last_tick = now_nanos();
    loop {
        // Spin briefly before blocking: a futex wake-up costs tens of
        // microseconds, which is the whole latency budget of a round trip.
        let mut req = None;
        let spin_start = std::time::Instant::now();
        loop {
            match rx.try_recv() {
                Ok(r) => {
                    req = Some(r);
                    break;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) if spin_start.elapsed() < spin => std::hint::spin_loop(),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let req = match req {
            Some(r) => Some(r),
            None => match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        let now = now_nanos();
        let (origin, cmd) = match req {
            Some(r) => (Some(r.origin), r.command),
            None => (None, Command::Tick),
        };
        // GTD expiry needs time to pass inside the engine even when busy.
        let batches: &[(Option<Origin>, Command)] = if origin.is_some() && now.saturating_sub(last_tick) > 100_000_000 {
            &[(None, Command::Tick), (origin, cmd)]
        } else {
            &[(origin, cmd)]
        };
        for (origin, cmd) in batches {
            if matches!(cmd, Command::Tick) {
                last_tick = now;
            }
            out.clear();
            let seq = engine.apply(now, cmd, &mut out);
            if out.iter().any(|e| matches!(e.kind, EventKind::InstrumentAdded { .. })) {
                refresh_instruments(&engine, &instruments);
            }
            if out.is_empty() && origin.is_none() {
                continue;
            }
            let batch = Arc::new(EngineBatch { origin: *origin, seq, ts: now, events: out.clone() });
            let list: Vec<_> = match subs.lock() {
                Ok(mut f) => {
                    f.record(&batch);
                    f.live.retain(|s| !s.is_closed());
                    f.live.clone()
                }
                Err(_) => return,
            };
            for s in list {
                // Blocking send: never drop an event (see EngineLink::subscribe).
                let _ = s.blocking_send(batch.clone());
            }
        }
    }
}

impl EngineLink for InProcessEngine {
    fn submit(&self, req: EngineRequest) -> Result<(), LinkError> {
        self.tx.try_send(req).map_err(|e| match e {
            TrySendError::Full(_) => LinkError::Busy,
            TrySendError::Disconnected(_) => LinkError::Stopped,
        })
    }

    fn subscribe(&self, capacity: usize) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        self.subscribers.lock().map_err(|_| LinkError::Stopped)?.live.push(tx);
        Ok(rx)
    }

    fn subscribe_after(
        &self,
        after: Seq,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let mut f = self.subscribers.lock().map_err(|_| LinkError::Stopped)?;
        // Resuming is possible when nothing after `after` has been forgotten
        // and `after` is not in this engine's future (a consumer that outlived
        // a restart of this non-durable engine).
        if after > f.last_seq || after < f.forgotten {
            return Err(LinkError::CannotResume(after));
        }
        let backlog: Vec<_> = f.history.iter().filter(|b| b.seq > after).cloned().collect();
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1) + backlog.len());
        for b in backlog {
            // Cannot fail: the channel was sized for the backlog.
            let _ = tx.try_send(b);
        }
        f.live.push(tx);
        Ok(rx)
    }

    fn instruments(&self) -> Vec<InstrumentSpec> {
        self.instruments.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn last_seq(&self) -> Option<Seq> {
        self.subscribers.lock().ok().map(|f| f.last_seq)
    }
}

impl Drop for InProcessEngine {
    fn drop(&mut self) {
        // The thread ends when the last sender (ours) is dropped; do not join
        // here, the thread may be blocked on a subscriber.
        if let Ok(mut t) = self.thread.lock() {
            t.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_engine::InstrumentSpec;

    fn setup() -> Vec<Command> {
        vec![
            Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)),
            Command::Deposit { account: 1, asset: 2, amount: 1_000_000_000 },
        ]
    }

    #[test]
    fn subscribe_after_replays_setup_and_continues_live() {
        let engine = InProcessEngine::start(Limits::default(), &setup(), 16);
        let mut from_zero = engine.subscribe_after(0, 16).unwrap();
        let first = from_zero.try_recv().unwrap();
        assert_eq!(first.seq, 1);
        let second = from_zero.try_recv().unwrap();
        assert_eq!(second.seq, 2);
        assert!(from_zero.try_recv().is_err(), "only the set-up commands so far");
        let mut from_one = engine.subscribe_after(1, 16).unwrap();
        assert_eq!(from_one.try_recv().unwrap().seq, 2);
        assert!(matches!(engine.subscribe_after(99, 16), Err(LinkError::CannotResume(99))));
        let deposit = Command::Deposit { account: 2, asset: 2, amount: 5 };
        engine.submit(EngineRequest { origin: Origin { gateway: 7, request: 1 }, command: deposit }).unwrap();
        let live = from_zero.blocking_recv().unwrap();
        assert_eq!(live.seq, 3);
        assert_eq!(live.origin, Some(Origin { gateway: 7, request: 1 }));
        assert_eq!(from_one.blocking_recv().unwrap().seq, 3);
    }
}
