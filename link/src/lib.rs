//! The seam between the gateways (and other consumers) and the engine.
//!
//! The gateway never owns the engine: it submits [`Command`]s tagged with its
//! gateway id and a request id, and it consumes the engine's output stream,
//! one [`EngineBatch`] per command in sequence order, for *every* command
//! (not only its own): a resting order placed through this gateway is filled
//! by someone else's command, and drop-copy sessions follow accounts whatever
//! gateway they trade through.
//!
//! [`InProcessEngine`] runs a [`FastEngine`] behind a bounded queue: on the
//! submitter's thread when the engine is idle, on its own thread otherwise
//! (see [`Placement`]); the tests, examples and benchmarks use it. `castle
//! serve` runs the journal-backed `DurableLink` (engine/server), which
//! implements the same trait.

use castle_engine::{Command, Engine, Event, EventKind, FastEngine, InstrumentSpec, Limits, Seq};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, RwLock};
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

/// Host time ticks: the engine needs time to pass (GTD expiry) even when no
/// command arrives, and at least this often when commands keep coming.
const TICK_NANOS: u64 = 100_000_000;

type Subscriber = tokio::sync::mpsc::Sender<Arc<EngineBatch>>;

/// Live subscribers and the recent history, under the engine's lock so a
/// batch is either in the history a new subscriber copies or sent to it
/// live, never both and never neither.
#[derive(Default)]
struct Fanout {
    /// Replaced (never mutated in place) when a subscriber joins or leaves:
    /// whoever delivers takes the current list with one reference count
    /// instead of copying it per batch.
    live: Arc<Vec<Subscriber>>,
    history: VecDeque<Arc<EngineBatch>>,
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

    fn add(&mut self, tx: Subscriber) {
        let mut live: Vec<Subscriber> = self.live.iter().filter(|s| !s.is_closed()).cloned().collect();
        live.push(tx);
        self.live = Arc::new(live);
    }

    fn drop_closed(&mut self) {
        if self.live.iter().any(|s| s.is_closed()) {
            self.live = Arc::new(self.live.iter().filter(|s| !s.is_closed()).cloned().collect());
        }
    }
}

/// Where commands are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Always on the engine thread: two thread hand-offs per command
    /// (submitter -> engine thread -> subscriber).
    Thread,
    /// On the submitting thread, inside `submit`, when the engine is idle
    /// (nothing queued, nothing being delivered, room in every subscriber's
    /// channel); on the engine thread otherwise. An idle engine then costs a
    /// lock instead of two wake-ups, which on a small VM are most of a
    /// loopback round trip; under contention it degrades to `Thread`.
    /// Order is kept: a command is applied inline only when every command
    /// submitted before it has been applied and delivered.
    ///
    /// The lock is held only to apply: the submitter delivers (wakes the
    /// subscribers' tasks, a futex call each when they sleep on other
    /// threads) after releasing it, as the engine thread does. A submitter
    /// preempted in that wake-up (the woken thread often takes its CPU)
    /// therefore never holds up other submitters or the engine thread: they
    /// queue behind its `delivering` mark instead of sleeping on the lock.
    InlineWhenIdle,
}

/// Options of [`InProcessEngine::start_with`].
#[derive(Clone, Copy, Debug)]
pub struct InProcessOptions {
    /// Bound of the inbound queue (commands waiting for the engine thread).
    pub queue: usize,
    /// How long the engine thread polls its queue before blocking. Polling
    /// saves a wake-up when commands come back to back, but burns a core
    /// that a small machine may need for the gateway itself (measured on
    /// the 2-core VM: 20 us of polling per command cost more CPU than the
    /// wake-up it saved under load; see BENCHMARKS.md).
    pub spin: Duration,
    pub placement: Placement,
    /// Open orders the engine's lookup tables are sized for at start
    /// ([`castle_engine::Engine::reserve_order_index`], after the set-up
    /// commands, so it covers the instruments they list). 0: they start
    /// small and grow by doubling, each growth a stall that moves every
    /// entry.
    pub reserve_orders: usize,
    /// Also fault the reserved tables in at start
    /// ([`castle_engine::Engine::fault_in_order_index`]; default on): with
    /// `Placement::InlineWhenIdle` the first orders would otherwise
    /// page-fault on the submitting (gateway) thread. Only with
    /// `reserve_orders > 0`.
    pub fault_in: bool,
}

impl InProcessOptions {
    pub fn new(queue: usize) -> InProcessOptions {
        InProcessOptions {
            queue,
            spin: Duration::ZERO,
            placement: Placement::InlineWhenIdle,
            reserve_orders: 0,
            fault_in: true,
        }
    }
}

/// Everything the engine thread and the submitters share, under one lock.
struct State {
    engine: FastEngine,
    queue: VecDeque<EngineRequest>,
    queue_limit: usize,
    placement: Placement,
    /// The engine thread, or a submitter that applied inline, is delivering
    /// batches outside the lock: nothing else may be applied or delivered
    /// until it is done (delivery stays in seq order; one sender at a time).
    delivering: bool,
    /// The engine thread waits on the condition variable: a submitter that
    /// queues must wake it (and only then: no futex call otherwise).
    parked: bool,
    /// The last handle is gone: the engine thread ends.
    stopped: bool,
    fanout: Fanout,
    last_tick: u64,
    out: Vec<Event>,
}

impl State {
    /// Apply one command (preceded by a host tick when the last one is
    /// older than [`TICK_NANOS`]), record its batches and append them to
    /// `batches`. A host command without events makes no batch.
    fn apply(
        &mut self,
        origin: Option<Origin>,
        cmd: &Command,
        now: u64,
        shared: &Shared,
        batches: &mut Vec<Arc<EngineBatch>>,
    ) {
        if origin.is_some() && now.saturating_sub(self.last_tick) > TICK_NANOS {
            self.apply_one(None, &Command::Tick, now, shared, batches);
        }
        self.apply_one(origin, cmd, now, shared, batches);
    }

    fn apply_one(
        &mut self,
        origin: Option<Origin>,
        cmd: &Command,
        now: u64,
        shared: &Shared,
        batches: &mut Vec<Arc<EngineBatch>>,
    ) {
        if matches!(cmd, Command::Tick) {
            self.last_tick = now;
        }
        self.out.clear();
        let seq = self.engine.apply(now, cmd, &mut self.out);
        if self.out.iter().any(|e| matches!(e.kind, EventKind::InstrumentAdded { .. })) {
            refresh_instruments(&self.engine, &shared.instruments);
        }
        if self.out.is_empty() && origin.is_none() {
            return;
        }
        let batch = Arc::new(EngineBatch { origin, seq, ts: now, events: self.out.clone() });
        self.fanout.record(&batch);
        batches.push(batch);
    }

    /// Every live subscriber can take `n` more batches without waiting.
    fn room_for(&self, n: usize) -> bool {
        self.fanout.live.iter().all(|s| s.is_closed() || s.capacity() >= n)
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    instruments: RwLock<Vec<InstrumentSpec>>,
}

/// A [`FastEngine`] behind a bounded queue, with an engine thread; see
/// [`Placement`] for where commands run.
pub struct InProcessEngine {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl InProcessEngine {
    /// Start the engine (placement [`Placement::InlineWhenIdle`]). `setup`
    /// commands (instruments, deposits) are applied first, before anything
    /// is submitted. `queue` bounds the inbound command queue.
    pub fn start(limits: Limits, setup: &[Command], queue: usize) -> Arc<InProcessEngine> {
        Self::start_with(limits, setup, InProcessOptions::new(queue))
    }

    /// Like [`InProcessEngine::start`], with the engine thread polling for
    /// `spin` before it blocks (see [`InProcessOptions::spin`]).
    pub fn start_with_spin(limits: Limits, setup: &[Command], queue: usize, spin: Duration) -> Arc<InProcessEngine> {
        Self::start_with(limits, setup, InProcessOptions { spin, ..InProcessOptions::new(queue) })
    }

    pub fn start_with(limits: Limits, setup: &[Command], options: InProcessOptions) -> Arc<InProcessEngine> {
        let state = State {
            engine: Engine::new(limits),
            queue: VecDeque::new(),
            queue_limit: options.queue.max(1),
            placement: options.placement,
            delivering: false,
            parked: false,
            stopped: false,
            fanout: Fanout::default(),
            last_tick: now_nanos(),
            out: Vec::with_capacity(256),
        };
        let shared =
            Arc::new(Shared { state: Mutex::new(state), wake: Condvar::new(), instruments: RwLock::new(Vec::new()) });
        {
            let mut st = shared.state.lock().expect("fresh lock");
            for c in setup {
                // Set-up commands are part of the stream (recorded in the
                // history): a consumer resuming from 0 (settlement, market
                // data) must see the deposits too.
                let ts = now_nanos();
                st.out.clear();
                let mut out = std::mem::take(&mut st.out);
                let seq = st.engine.apply(ts, c, &mut out);
                let batch = Arc::new(EngineBatch { origin: None, seq, ts, events: out.clone() });
                st.out = out;
                st.fanout.record(&batch);
            }
            if options.reserve_orders > 0 {
                st.engine.reserve_order_index(options.reserve_orders);
                if options.fault_in {
                    st.engine.fault_in_order_index();
                }
            }
            refresh_instruments(&st.engine, &shared.instruments);
        }
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("castle-engine".into())
            .spawn(move || engine_loop(&s, options.spin))
            .expect("spawn engine thread");
        Arc::new(InProcessEngine { shared, thread: Mutex::new(Some(thread)) })
    }
}

fn refresh_instruments(engine: &FastEngine, instruments: &RwLock<Vec<InstrumentSpec>>) {
    let specs: Vec<InstrumentSpec> =
        (0..engine.limits().max_instruments).filter_map(|id| engine.instrument(id).copied()).collect();
    if let Ok(mut w) = instruments.write() {
        *w = specs;
    }
}

/// The engine thread: applies everything queued in one go per wake-up,
/// then delivers the batches outside the lock (a subscriber that is full
/// blocks this thread, never a submitter), and ticks when idle. It never
/// applies while an inline submitter is delivering (`State::delivering`).
fn engine_loop(shared: &Shared, spin: Duration) {
    let mut batches: Vec<Arc<EngineBatch>> = Vec::with_capacity(64);
    let Ok(mut st) = shared.state.lock() else { return };
    loop {
        if st.stopped {
            return;
        }
        if st.queue.is_empty() && !spin.is_zero() {
            // Poll briefly before blocking (see InProcessOptions::spin).
            let t0 = std::time::Instant::now();
            while st.queue.is_empty() && !st.stopped && t0.elapsed() < spin {
                drop(st);
                std::hint::spin_loop();
                st = match shared.state.lock() {
                    Ok(g) => g,
                    Err(_) => return,
                };
            }
        }
        // A submitter delivering its inline batches outside the lock goes
        // first (seq order): apply nothing until it is done; it wakes this
        // thread if commands queued meanwhile.
        if st.queue.is_empty() || st.delivering {
            st.parked = true;
            let (g, timeout) = match shared.wake.wait_timeout(st, Duration::from_nanos(TICK_NANOS)) {
                Ok(x) => x,
                Err(_) => return,
            };
            st = g;
            st.parked = false;
            if st.stopped {
                return;
            }
            if st.delivering {
                continue;
            }
            if st.queue.is_empty() {
                if timeout.timed_out() || now_nanos().saturating_sub(st.last_tick) > TICK_NANOS {
                    // Idle: time passes inside the engine anyway (GTD expiry).
                    let now = now_nanos();
                    st.apply_one(None, &Command::Tick, now, shared, &mut batches);
                } else {
                    continue;
                }
            }
        }
        let now = now_nanos();
        while let Some(r) = st.queue.pop_front() {
            st.apply(Some(r.origin), &r.command, now, shared, &mut batches);
        }
        if batches.is_empty() {
            continue;
        }
        st.fanout.drop_closed();
        let live = st.fanout.live.clone();
        st.delivering = true;
        drop(st);
        for b in batches.drain(..) {
            for s in live.iter() {
                // Blocking send: never drop an event (see EngineLink::subscribe).
                let _ = s.blocking_send(b.clone());
            }
        }
        st = match shared.state.lock() {
            Ok(g) => g,
            Err(_) => return,
        };
        st.delivering = false;
    }
}

impl EngineLink for InProcessEngine {
    fn submit(&self, req: EngineRequest) -> Result<(), LinkError> {
        let mut st = self.shared.state.lock().map_err(|_| LinkError::Stopped)?;
        if st.stopped {
            return Err(LinkError::Stopped);
        }
        // Inline: up to two batches (a host tick may precede the command),
        // delivered with try_send, which cannot fail for want of room: the
        // room is checked under this lock, and only the thread that set
        // `delivering` (excluded here) sends.
        let now = now_nanos();
        let batches_needed = if now.saturating_sub(st.last_tick) > TICK_NANOS { 2 } else { 1 };
        if st.placement == Placement::InlineWhenIdle
            && !st.delivering
            && st.queue.is_empty()
            && st.room_for(batches_needed)
        {
            let mut batches: Vec<Arc<EngineBatch>> = Vec::with_capacity(2);
            st.apply(Some(req.origin), &req.command, now, &self.shared, &mut batches);
            // Deliver outside the lock (see Placement::InlineWhenIdle). While
            // `delivering` is set nothing else is applied or delivered, so the
            // batches still reach every subscriber in seq order, and the room
            // checked above is still there.
            let live = st.fanout.live.clone();
            st.delivering = true;
            drop(st);
            for b in batches {
                for s in live.iter() {
                    let _ = s.try_send(b.clone());
                }
            }
            let mut st = self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            st.delivering = false;
            // Commands queued meanwhile wait for the engine thread, which
            // went back to sleep if it saw this delivery in progress.
            let wake = !st.queue.is_empty() && std::mem::replace(&mut st.parked, false);
            drop(st);
            if wake {
                self.shared.wake.notify_one();
            }
            return Ok(());
        }
        if st.queue.len() >= st.queue_limit {
            return Err(LinkError::Busy);
        }
        st.queue.push_back(req);
        let wake = std::mem::replace(&mut st.parked, false);
        // Notify after unlocking: the woken thread would otherwise find the
        // lock still held and go back to sleep on it (two more futex calls).
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    fn subscribe(&self, capacity: usize) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        self.shared.state.lock().map_err(|_| LinkError::Stopped)?.fanout.add(tx);
        Ok(rx)
    }

    fn subscribe_after(
        &self,
        after: Seq,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let mut st = self.shared.state.lock().map_err(|_| LinkError::Stopped)?;
        let f = &mut st.fanout;
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
        f.add(tx);
        Ok(rx)
    }

    fn instruments(&self) -> Vec<InstrumentSpec> {
        self.shared.instruments.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn last_seq(&self) -> Option<Seq> {
        self.shared.state.lock().ok().map(|s| s.fanout.last_seq)
    }
}

impl Drop for InProcessEngine {
    fn drop(&mut self) {
        // Tell the thread to end; do not join here, it may be blocked on a
        // subscriber (it ends once that one takes the batch or goes away).
        if let Ok(mut st) = self.shared.state.lock() {
            st.stopped = true;
        }
        self.shared.wake.notify_one();
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

    fn deposit(gateway: u32, request: u64) -> EngineRequest {
        EngineRequest {
            origin: Origin { gateway, request },
            command: Command::Deposit { account: 2, asset: 2, amount: 1 },
        }
    }

    fn options(queue: usize, placement: Placement) -> InProcessOptions {
        InProcessOptions { placement, ..InProcessOptions::new(queue) }
    }

    /// Several threads submit at once, with a subscriber small enough that
    /// some commands are applied inline and some on the engine thread:
    /// every request is delivered once, in seq order, and each submitter's
    /// requests in the order it submitted them.
    fn concurrent_submitters_keep_order(placement: Placement) {
        let engine = InProcessEngine::start_with(Limits::default(), &setup(), options(1 << 14, placement));
        let mut rx = engine.subscribe(8).unwrap();
        const PER: u64 = 2_000;
        let threads: Vec<_> = (0..3u32)
            .map(|g| {
                let e = engine.clone();
                std::thread::spawn(move || {
                    for r in 1..=PER {
                        while let Err(err) = e.submit(deposit(g, r)) {
                            assert_eq!(err, LinkError::Busy);
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut last_seq = 2;
        let mut next = [1u64; 3];
        while next.iter().any(|&n| n <= PER) {
            let b = rx.blocking_recv().expect("stream ended early");
            assert!(b.seq > last_seq, "seq {} after {last_seq}", b.seq);
            last_seq = b.seq;
            if let Some(o) = b.origin {
                assert_eq!(o.request, next[o.gateway as usize], "gateway {} out of order", o.gateway);
                next[o.gateway as usize] += 1;
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(engine.last_seq(), Some(last_seq));
    }

    #[test]
    fn concurrent_submitters_keep_order_inline_when_idle() {
        concurrent_submitters_keep_order(Placement::InlineWhenIdle);
    }

    #[test]
    fn concurrent_submitters_keep_order_on_the_engine_thread() {
        concurrent_submitters_keep_order(Placement::Thread);
    }

    #[test]
    fn idle_engine_applies_on_the_submitting_thread() {
        let engine = InProcessEngine::start(Limits::default(), &setup(), 16);
        let mut rx = engine.subscribe(16).unwrap();
        engine.submit(deposit(1, 1)).unwrap();
        // Delivered before submit returned: no other thread was involved.
        let b = rx.try_recv().expect("applied inline");
        assert_eq!((b.seq, b.origin), (3, Some(Origin { gateway: 1, request: 1 })));
    }

    #[test]
    fn a_full_subscriber_slows_the_engine_and_submitters_get_busy() {
        let engine = InProcessEngine::start(Limits::default(), &setup(), 4);
        let mut rx = engine.subscribe(1).unwrap();
        // The first fills the subscriber; the engine thread then blocks
        // delivering the second; the next 4 fill the queue; then Busy.
        let mut accepted = 0u64;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match engine.submit(deposit(1, accepted + 1)) {
                Ok(()) => accepted += 1,
                Err(LinkError::Busy) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(std::time::Instant::now() < deadline, "never busy");
        }
        assert!((5..=6).contains(&accepted), "accepted {accepted}");
        // Nothing was lost: draining the subscriber delivers every accepted command, in order.
        for r in 1..=accepted {
            let b = rx.blocking_recv().unwrap();
            assert_eq!(b.origin, Some(Origin { gateway: 1, request: r }));
        }
    }

    /// A waker that blocks inside its first `wake` until released: a
    /// submitter delivering to this subscriber stands for one preempted in
    /// the futex call that wakes a subscriber's thread.
    struct StuckWaker {
        entered: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl std::task::Wake for StuckWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            let first = self.entered.lock().unwrap().take();
            if let Some(entered) = first {
                let _ = entered.send(());
                let _ = self.release.lock().unwrap().recv();
            }
        }
    }

    /// The inline submitter delivers after releasing the engine's lock: while
    /// it is stuck waking a subscriber, another submitter is not held up (its
    /// command queues for the engine thread), and both reach the subscriber
    /// in order once the first is done.
    #[test]
    fn a_submitter_stuck_delivering_does_not_block_other_submitters() {
        let engine = InProcessEngine::start(Limits::default(), &setup(), 16);
        let mut rx = engine.subscribe(16).unwrap();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let waker = std::task::Waker::from(Arc::new(StuckWaker {
            entered: Mutex::new(Some(entered_tx)),
            release: Mutex::new(release_rx),
        }));
        // Register the waker: the channel is empty, so this poll parks it.
        assert!(rx.poll_recv(&mut std::task::Context::from_waker(&waker)).is_pending());
        let e = engine.clone();
        let first = std::thread::spawn(move || e.submit(deposit(1, 1)));
        entered_rx.recv_timeout(Duration::from_secs(10)).expect("the first submit never woke the subscriber");
        // The first submitter is now inside the wake-up. Another submits.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let e = engine.clone();
        let second = std::thread::spawn(move || {
            let r = e.submit(deposit(2, 1));
            let _ = done_tx.send(r.clone());
            r
        });
        let outcome = done_rx.recv_timeout(Duration::from_secs(10));
        let _ = release_tx.send(());
        assert_eq!(outcome, Ok(Ok(())), "the second submit waited for the first one's delivery");
        assert_eq!(first.join().unwrap(), Ok(()));
        assert_eq!(second.join().unwrap(), Ok(()));
        let a = rx.blocking_recv().unwrap();
        let b = rx.blocking_recv().unwrap();
        assert_eq!((a.seq, a.origin), (3, Some(Origin { gateway: 1, request: 1 })));
        assert_eq!((b.seq, b.origin), (4, Some(Origin { gateway: 2, request: 1 })));
    }

    #[test]
    fn dropping_the_engine_ends_the_stream() {
        let engine = InProcessEngine::start(Limits::default(), &setup(), 4);
        let mut rx = engine.subscribe(4).unwrap();
        drop(engine);
        // The engine thread owns the senders through the shared state: it
        // ends, the state goes, the channel closes.
        assert!(rx.blocking_recv().is_none());
    }
}
