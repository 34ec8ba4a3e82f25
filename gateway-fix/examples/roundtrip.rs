//! Round trip NewOrderSingle -> ExecutionReport(new) over loopback TCP at
//! fixed rates, against a raw TCP echo of the same message size in the same
//! run. Latency is measured from each message's *scheduled* send time, so a
//! stall delays every message behind it and shows up in the percentiles
//! (coordinated omission corrected by construction).
//!
//! cargo run --release -p castle-gateway-fix --example roundtrip -- [seconds per rate] [rates,comma,separated] \
//!     [placements] [scheduling modes]
//!
//! Everything runs in this process: each gateway on a current-thread tokio
//! runtime on its own thread, the echo server likewise on another (same
//! runtime shape), the client on two plain threads (sender, receiver; the
//! same client code and message size for the echo and the gateways). Three
//! engine placements are measured in the same run, each behind its own
//! gateway:
//!
//! - `engine thread`: `InProcessEngine` with `Placement::Thread`, the
//!   engine on its own thread behind a queue: two extra thread hand-offs
//!   per order (gateway -> engine -> gateway).
//! - `in-process (inline when idle)`: `InProcessEngine` as it starts by
//!   default (`Placement::InlineWhenIdle`): the submitting thread applies
//!   the command itself when the engine is idle, the engine thread takes
//!   over when commands queue up.
//! - `engine inline`: [`InlineEngine`] below, the same `FastEngine` applied
//!   on the gateway's own thread inside `EngineLink::submit` (one core runs
//!   sessions, order layer and matching, as single-threaded venues do). It
//!   isolates the gateway's own cost: the same number of thread hand-offs
//!   as the echo.
//!
//! None has a journal: no fsync/fdatasync is in the measured path (the FIX
//! store is `FsyncPolicy::OsBuffered`, a copy into a shared mapping).
//!
//! Third argument: a comma-separated subset of `thread`, `idle`, `inline`
//! (default all three). Fourth: scheduling modes, a subset of `shared`
//! (every thread on every CPU, normal priority: the configuration of the
//! numbers before session 5), `pinned` (client threads on CPU 0, server
//! threads on CPU 1, as a venue pins its threads) and `fifo` (pinned and
//! SCHED_FIFO: needs root; other programs on the machine only get the CPU
//! these threads leave, which makes a loaded machine look quieter), default
//! all three, in that order. Every mode measures its own echo first, with
//! the same treatment.
//!
//! Every order rests, so the books grow for the whole run: the gateway's
//! `OrderCapacity` and the engine's lookup tables are sized for every order
//! of the run (`ROUNDTRIP_ORDER_CAPACITY=N` to change; 0 = the defaults,
//! where each doubling of a table is a stall of the gateway thread).
//!
//! Per row, besides the percentiles: the process CPU per round trip, then
//! per thread role the CPU time, the time spent runnable but waiting for a
//! CPU (both from /proc/self/task/*/schedstat) and the involuntary context
//! switches, per round trip, and the minor page faults per 1,000 round
//! trips (/proc/self/task/*/stat; the store's grower and flusher threads
//! are the role `store threads`); the CPU time stolen by the hypervisor
//! during the run (/proc/stat), in % of all CPUs' time; and the five worst
//! stalls (a run of messages whose latency falls by one send interval per
//! message), with the index of the message that met each.
//!
//! Baselines for comparisons, one process each: `CASTLE_FIX_STORE_WRITEBACK=0`
//! (no writeback behind the store's writer) and `ROUNDTRIP_ENGINE_FAULT_IN=0`
//! (the engines' reserved tables not faulted in at start).

use castle_engine::{Command, Engine, Event, EventKind, FastEngine, InstrumentSpec, Limits, Seq};
use castle_gateway_fix::frame::{checksum, next_frame, FrameStatus, NoDataFields, Parser};
use castle_gateway_fix::link::{EngineBatch, EngineLink, EngineRequest, LinkError};
use castle_gateway_fix::link::{InProcessOptions, Placement};
use castle_gateway_fix::{serve, Config, InProcessEngine, Timestamp};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The engine applied on the submitting thread: `submit` runs the command
/// and pushes its batch to the subscribers before returning. Subscribers
/// are tokio channels; a full one makes `submit` answer `Busy` (checked
/// before applying, so a refused command changes nothing).
struct InlineEngine {
    state: Mutex<InlineState>,
    instruments: RwLock<Vec<InstrumentSpec>>,
}

struct InlineState {
    engine: FastEngine,
    out: Vec<Event>,
    live: Vec<tokio::sync::mpsc::Sender<Arc<EngineBatch>>>,
    /// Recent batches for `subscribe_after` (bounded like `InProcessEngine`'s).
    history: VecDeque<Arc<EngineBatch>>,
    forgotten: Seq,
    last_seq: Seq,
}

const INLINE_HISTORY: usize = 1 << 16;

impl InlineState {
    fn publish(&mut self, batch: EngineBatch) {
        let batch = Arc::new(batch);
        if self.history.len() == INLINE_HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.forgotten = old.seq;
            }
        }
        self.history.push_back(batch.clone());
        self.last_seq = batch.seq;
        self.live.retain(|s| !s.is_closed());
        for s in &self.live {
            // Cannot be full: `submit` checked the capacity under this lock.
            let _ = s.try_send(batch.clone());
        }
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl InlineEngine {
    fn start(limits: Limits, setup: &[Command], reserve_orders: usize) -> Arc<InlineEngine> {
        let engine: FastEngine = Engine::new(limits);
        let mut st = InlineState {
            engine,
            out: Vec::with_capacity(256),
            live: Vec::new(),
            history: VecDeque::new(),
            forgotten: 0,
            last_seq: 0,
        };
        for c in setup {
            st.out.clear();
            let ts = now_nanos();
            let seq = st.engine.apply(ts, c, &mut st.out);
            let events = st.out.clone();
            st.publish(EngineBatch { origin: None, seq, ts, events });
        }
        if reserve_orders > 0 {
            st.engine.reserve_order_index(reserve_orders);
            if engine_fault_in() {
                st.engine.fault_in_order_index();
            }
        }
        let e = Arc::new(InlineEngine { state: Mutex::new(st), instruments: RwLock::new(Vec::new()) });
        e.refresh_instruments();
        e
    }

    fn refresh_instruments(&self) {
        let st = self.state.lock().unwrap();
        let specs =
            (0..st.engine.limits().max_instruments).filter_map(|id| st.engine.instrument(id).copied()).collect();
        *self.instruments.write().unwrap() = specs;
    }
}

impl EngineLink for InlineEngine {
    fn submit(&self, req: EngineRequest) -> std::result::Result<(), LinkError> {
        let mut st = self.state.lock().map_err(|_| LinkError::Stopped)?;
        if st.live.iter().any(|s| s.capacity() == 0 && !s.is_closed()) {
            return Err(LinkError::Busy);
        }
        let ts = now_nanos();
        let mut out = std::mem::take(&mut st.out);
        out.clear();
        let seq = st.engine.apply(ts, &req.command, &mut out);
        let listed = out.iter().any(|e| matches!(e.kind, EventKind::InstrumentAdded { .. }));
        st.publish(EngineBatch { origin: Some(req.origin), seq, ts, events: out.clone() });
        st.out = out;
        drop(st);
        if listed {
            self.refresh_instruments();
        }
        Ok(())
    }

    fn subscribe(
        &self,
        capacity: usize,
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        self.state.lock().map_err(|_| LinkError::Stopped)?.live.push(tx);
        Ok(rx)
    }

    fn subscribe_after(
        &self,
        after: Seq,
        capacity: usize,
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        let mut st = self.state.lock().map_err(|_| LinkError::Stopped)?;
        if after > st.last_seq || after < st.forgotten {
            return Err(LinkError::CannotResume(after));
        }
        let backlog: Vec<_> = st.history.iter().filter(|b| b.seq > after).cloned().collect();
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1) + backlog.len());
        for b in backlog {
            let _ = tx.try_send(b);
        }
        st.live.push(tx);
        Ok(rx)
    }

    fn instruments(&self) -> Vec<InstrumentSpec> {
        self.instruments.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn last_seq(&self) -> Option<Seq> {
        self.state.lock().ok().map(|s| s.last_seq)
    }
}

/// `ROUNDTRIP_ENGINE_FAULT_IN=0`: the engines' reserved order tables are
/// not faulted in at start (`Engine::fault_in_order_index`; the
/// configuration before session 9), for comparisons.
fn engine_fault_in() -> bool {
    std::env::var("ROUNDTRIP_ENGINE_FAULT_IN").map(|v| v.trim() != "0").unwrap_or(true)
}

fn now_fix() -> String {
    Timestamp::from_unix_nanos(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
    )
    .to_fix_string()
}

fn frame(body: &str) -> Vec<u8> {
    let mut v = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
    let cs = checksum(&v);
    v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
    v
}

fn nos(seq: u64, id: u64, sending_time: &str) -> Vec<u8> {
    // Zero-padded ids keep every message the same size (the echo uses it).
    frame(&format!(
        "35=D\x0149=BENCH\x0156=CASTLE\x0134={seq:09}\x0152={sending_time}\x0111={id:012}\x0155=BTC-USDT\x0154=1\x01\
         60={sending_time}\x0138=0.001\x0140=2\x0144=59000\x0159=1\x01"
    ))
}

/// Process CPU time (user + system, all threads), microseconds.
fn cpu_us() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Scheduler accounting of one thread (from /proc/self/task/TID).
#[derive(Clone, Copy, Default)]
struct ThreadTimes {
    /// Time on a CPU, ns (schedstat field 1).
    run: u64,
    /// Time runnable but waiting for a CPU, ns (schedstat field 2): the
    /// queueing this benchmark cares about.
    wait: u64,
    /// Involuntary context switches (preempted while runnable).
    preempted: u64,
    /// Minor page faults (/proc/.../stat field 10): each a trip into the
    /// kernel, some of them long (a zeroed page, a file page's mkwrite).
    minflt: u64,
}

/// The calling thread's own account.
fn own_times() -> ThreadTimes {
    task_times(std::path::Path::new("/proc/thread-self"))
}

fn task_times(p: &std::path::Path) -> ThreadTimes {
    let sched = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
    let mut f = sched.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    let (run, wait) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
    let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
    let preempted = status
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    ThreadTimes { run, wait, preempted, minflt: minor_faults(p) }
}

/// Minor faults of a task: the 10th field of its `stat`, the 8th after the
/// parenthesised command name (which may contain spaces).
fn minor_faults(p: &std::path::Path) -> u64 {
    let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    after.split_whitespace().nth(7).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// The machine's CPU time stolen by the hypervisor and its total CPU time
/// (all CPUs), in clock ticks, from the `cpu` line of /proc/stat.
fn steal_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0) };
    // user nice system idle iowait irq softirq steal guest guest_nice (guest time is in user)
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    let total = f.iter().take(8).sum();
    (f.get(7).copied().unwrap_or(0), total)
}

/// Every thread of this process, summed by role (see [`role_of`]).
fn thread_times() -> BTreeMap<&'static str, ThreadTimes> {
    let mut by_role: BTreeMap<&'static str, ThreadTimes> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return by_role };
    for task in dir.flatten() {
        let p = task.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let own = task_times(&p);
        let t = by_role.entry(role_of(comm.trim())).or_default();
        t.run += own.run;
        t.wait += own.wait;
        t.preempted += own.preempted;
        t.minflt += own.minflt;
    }
    by_role
}

/// Thread names set by this example (and castle-link's engine thread).
fn role_of(comm: &str) -> &'static str {
    match comm {
        "rt-send" => "client send",
        "rt-recv" => "client recv",
        "rt-echo" => "echo server",
        "castle-engine" => "engine thread",
        "fix-store-grow" | "fix-store-flush" => "store threads",
        c if c.starts_with("rt-gw") => "gateway",
        _ => "other",
    }
}

/// How the benchmark's threads are scheduled; the echo and the gateways get
/// the same treatment in every mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sched {
    /// Every thread may run on every CPU, normal priority (the
    /// configuration of the numbers before session 5).
    Shared,
    /// Client threads (sender, receiver) on CPU 0, server threads (echo
    /// server, gateways, engine threads) on CPU 1, as a venue pins its
    /// threads: the server never waits behind its own client.
    Pinned,
    /// Pinned, and every benchmark thread SCHED_FIFO: other programs on
    /// the machine (builds) only get the CPU time these threads leave.
    /// Needs root (or CAP_SYS_NICE). The kernel's RT throttle still leaves
    /// 5% of each CPU to everything else: FIFO threads that used 95% of a
    /// CPU within a second are suspended for the rest of it (a stall of up
    /// to 50 ms), so a nearly saturated server CPU shows stalls here.
    PinnedFifo,
}

impl Sched {
    fn parse(s: &str) -> Sched {
        match s {
            "shared" => Sched::Shared,
            "pinned" => Sched::Pinned,
            "fifo" => Sched::PinnedFifo,
            other => panic!("unknown scheduling mode {other:?} (shared, pinned, fifo)"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sched::Shared => "shared",
            Sched::Pinned => "pinned",
            Sched::PinnedFifo => "pinned+fifo",
        }
    }

    /// Apply to one thread (0 = the calling one) of the given role.
    fn apply(self, tid: libc::pid_t, role: &str) {
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        let cpu = match role {
            "client send" | "client recv" => Some(0),
            "echo server" | "gateway" | "engine thread" => Some(1 % cpus),
            _ => None,
        };
        let pin = self != Sched::Shared && cpu.is_some();
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for c in 0..cpus {
                if !pin || Some(c) == cpu {
                    libc::CPU_SET(c, &mut set);
                }
            }
            if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                eprintln!("sched_setaffinity({tid}, {role}): {}", std::io::Error::last_os_error());
            }
            let fifo = self == Sched::PinnedFifo && cpu.is_some();
            // The receiver outranks the sender on their shared CPU: at 50k/s
            // the sender spins between messages, and FIFO threads of equal
            // priority do not preempt each other.
            let priority = if role == "client recv" { 11 } else { 10 };
            let param = libc::sched_param { sched_priority: if fifo { priority } else { 0 } };
            let policy = if fifo { libc::SCHED_FIFO } else { libc::SCHED_OTHER };
            if libc::sched_setscheduler(tid, policy, &param) != 0 {
                eprintln!("sched_setscheduler({tid}, {role}): {}", std::io::Error::last_os_error());
            }
        }
    }

    /// Apply to every thread of the process, by role.
    fn apply_all(self) {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return };
        for task in dir.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                self.apply(tid, role_of(comm.trim()));
            }
        }
    }
}

/// Per round trip: CPU and run-queue wait of each role during one run.
fn times_per_order(
    before: &BTreeMap<&'static str, ThreadTimes>,
    after: &BTreeMap<&'static str, ThreadTimes>,
    n: u64,
) -> String {
    let mut parts = Vec::new();
    for (role, a) in after {
        let b = before.get(role).copied().unwrap_or_default();
        let run = a.run.saturating_sub(b.run) as f64 / n.max(1) as f64 / 1000.0;
        let wait = a.wait.saturating_sub(b.wait) as f64 / n.max(1) as f64 / 1000.0;
        let pre = a.preempted.saturating_sub(b.preempted) as f64 / n.max(1) as f64;
        let flt = a.minflt.saturating_sub(b.minflt) as f64 * 1000.0 / n.max(1) as f64;
        if run >= 0.05 || wait >= 0.05 || flt >= 1.0 {
            parts.push(format!("{role} {run:.1}/{wait:.1}/{pre:.2}/{flt:.0}"));
        }
    }
    parts.join("; ")
}

struct Result {
    /// Process CPU per round trip (client threads included), microseconds.
    cpu: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    sent: u64,
    /// Per-role CPU / run-queue wait (us per round trip) / preemptions per
    /// round trip / minor faults per 1,000 round trips.
    threads: String,
    /// CPU time stolen by the hypervisor during the run, % of all CPUs' time.
    steal: f64,
    /// The worst stalls: where they began (message index) and how long.
    stalls: String,
}

/// A stall shows as a run of messages whose latency falls by one send
/// interval per message (they queued behind it): report the peak of the
/// five longest such runs, with the index of the message that met it and
/// the CLOCK_MONOTONIC time (s) that message was due to be sent.
fn stalls(by_index: &[u32], interval_ns: f64, origin_mono: f64) -> String {
    let mut peaks: Vec<(u32, usize)> = Vec::new();
    let mut i = 0;
    while i < by_index.len() {
        let peak = by_index[i];
        // Skip the messages this peak explains (latency decreasing).
        let mut j = i + 1;
        while j < by_index.len()
            && by_index[j] < by_index[j - 1] + (interval_ns / 1000.0) as u32 + 50
            && by_index[j] > 500
        {
            j += 1;
        }
        if peak >= 1000 {
            peaks.push((peak, i));
        }
        i = j;
    }
    peaks.sort_unstable_by(|a, b| b.cmp(a));
    peaks
        .iter()
        .take(5)
        .map(|(us, at)| {
            let due = origin_mono + *at as f64 * interval_ns / 1e9;
            format!("{:.1} ms at #{at} (t {due:.3})", *us as f64 / 1000.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Send `n` messages at `rate`/s built by `make(i)`; `id_of` extracts the
/// index from a received message (None: not a reply to count).
#[allow(clippy::too_many_arguments)]
fn run<F, G>(
    sched_mode: Sched,
    mut tx: TcpStream,
    mut rx: TcpStream,
    rate: u64,
    n: u64,
    make: F,
    id_of: G,
    framed: bool,
) -> Result
where
    F: Fn(u64) -> Vec<u8> + Send + 'static,
    G: Fn(&[u8]) -> Option<u64> + Send + 'static,
{
    let sched: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let cpu0 = cpu_us();
    let threads0 = thread_times();
    let steal0 = steal_ticks();
    let origin = Instant::now() + Duration::from_millis(20);
    // The same instant on CLOCK_MONOTONIC (what Instant reads on Linux), so
    // a stall can be found in a `perf record -k CLOCK_MONOTONIC` trace.
    let origin_mono = monotonic_secs() + 0.020;
    let interval = 1e9 / rate as f64;
    let s2 = sched.clone();
    let sender = std::thread::Builder::new().name("rt-send".into()).spawn(move || {
        // Sleep precisely instead of spinning: on a small shared machine a
        // spinning client steals the CPU the gateway needs. Timer slack
        // (50 us by default) would otherwise round every sleep up.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
        }
        sched_mode.apply(0, "client send");
        let own0 = own_times();
        for i in 0..n {
            let at = (i as f64 * interval) as u64;
            let msg = make(i);
            loop {
                let now = origin.elapsed_nanos_signed();
                if now >= at as i64 {
                    break;
                }
                let gap = at as i64 - now;
                if gap > 15_000 {
                    std::thread::sleep(Duration::from_nanos((gap - 8_000) as u64));
                } else {
                    std::hint::spin_loop();
                }
            }
            s2[i as usize].store(at, Ordering::Relaxed);
            if tx.write_all(&msg).is_err() {
                break;
            }
        }
        // This thread's account ends with it: read it here.
        let own = own_times();
        (
            tx,
            ThreadTimes {
                run: own.run - own0.run,
                wait: own.wait - own0.wait,
                preempted: own.preempted - own0.preempted,
                minflt: own.minflt - own0.minflt,
            },
        )
    });
    let sender = sender.expect("spawn sender");
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3).unwrap();
    // Latency of every message by index, to find stalls (see `stalls`).
    let mut by_index = vec![0u32; n as usize];
    let mut buf = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(n / rate + 30);
    rx.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let msg_len = make_len();
    while got < n && Instant::now() < deadline {
        match rx.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => continue,
        }
        let mut pos = 0;
        loop {
            let len = if framed {
                match next_frame(&buf[pos..], 1 << 20) {
                    FrameStatus::Complete { len } => len,
                    FrameStatus::Incomplete => break,
                    FrameStatus::Garbled { skip, .. } => {
                        pos += skip;
                        continue;
                    }
                }
            } else if buf.len() - pos >= msg_len {
                msg_len
            } else {
                break;
            };
            let m = &buf[pos..pos + len];
            pos += len;
            if let Some(i) = id_of(m) {
                if let Some(s) = sched.get(i as usize) {
                    let lat = origin.elapsed_nanos_signed() - s.load(Ordering::Relaxed) as i64;
                    hist.saturating_record(lat.max(1) as u64);
                    by_index[i as usize] = (lat.max(0) / 1000).min(u32::MAX as i64) as u32;
                    got += 1;
                }
            }
        }
        buf.drain(..pos);
    }
    let mut threads1 = thread_times();
    if let Ok((_, sent)) = sender.join() {
        threads1.insert("client send", sent);
    }
    let threads = times_per_order(&threads0, &threads1, got);
    let steal1 = steal_ticks();
    let steal = (steal1.0 - steal0.0) as f64 * 100.0 / (steal1.1 - steal0.1).max(1) as f64;
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Result {
        cpu: (cpu_us() - cpu0) / got.max(1) as f64,
        p50: us(0.5),
        p99: us(0.99),
        p999: us(0.999),
        max: hist.max() as f64 / 1000.0,
        sent: got,
        threads,
        steal,
        stalls: stalls(&by_index, interval, origin_mono),
    }
}

fn monotonic_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: plain clock read into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn make_len() -> usize {
    nos(1, 0, &now_fix()).len()
}

trait Elapsed {
    fn elapsed_nanos_signed(&self) -> i64;
}
impl Elapsed for Instant {
    fn elapsed_nanos_signed(&self) -> i64 {
        let now = Instant::now();
        if now >= *self {
            (now - *self).as_nanos() as i64
        } else {
            -((*self - now).as_nanos() as i64)
        }
    }
}

/// One gateway (own thread, own store directory) in front of `link`; returns its address.
/// `order_capacity`: the gateway's `OrderCapacity` (its order tables are
/// sized for that many resting orders; every order of this benchmark rests).
fn start_gateway(link: Arc<dyn EngineLink>, dir: &std::path::Path, order_capacity: u64) -> SocketAddr {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = Config::parse(&format!(
        "[DEFAULT]\nListenAddress=127.0.0.1:0\nSenderCompID=CASTLE\nStoreDir={}\nSendingTimeTolerance=0\n\
         OrderCapacity={order_capacity}\n[SESSION]\nTargetCompID=BENCH\nAccount=7\nResetOnLogon=Y\n",
        dir.display()
    ))
    .unwrap();
    // Each gateway gets one thread with a current-thread runtime
    // (CASTLE_GATEWAY_THREADS=N for a multi-thread runtime instead): on a
    // 2-core machine every extra hand-off between threads is a wake-up that
    // waits for a CPU.
    let threads: usize = std::env::var("CASTLE_GATEWAY_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let (atx, arx) = std::sync::mpsc::channel();
    let name = format!("rt-gw-{}", dir.file_name().and_then(|n| n.to_str()).unwrap_or("x"));
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let rt = if threads <= 1 {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name(name)
                    .enable_all()
                    .build()
                    .unwrap()
            };
            rt.block_on(async move {
                let server = serve(cfg, link).await.unwrap();
                atx.send(server.local_addr().unwrap()).unwrap();
                server.wait().await;
            });
        })
        .expect("spawn gateway thread");
    arx.recv().unwrap()
}

/// Connect and log on (ResetOnLogon: MsgSeqNum 1).
fn logon(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let t = now_fix();
    s.write_all(&frame(&format!("35=A\x0149=BENCH\x0156=CASTLE\x0134=1\x0152={t}\x0198=0\x01108=30\x01141=Y\x01")))
        .unwrap();
    let mut b = [0u8; 4096];
    let n = s.read(&mut b).unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).contains("35=A"), "logon refused");
    s
}

/// A gateway under test: its connection, next MsgSeqNum and next ClOrdID.
struct Target {
    label: &'static str,
    conn: TcpStream,
    seq: Arc<AtomicU64>,
    next_id: u64,
}

fn main() {
    // The receiving client runs on this thread.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"rt-recv".as_ptr() as libc::c_ulong, 0u64, 0u64, 0u64);
    }
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let rates: Vec<u64> = args
        .get(2)
        .map(|s| s.split(',').filter_map(|r| r.parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 20_000, 50_000]);
    let kinds: Vec<String> = args
        .get(3)
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| vec!["thread".into(), "idle".into(), "inline".into()]);
    let modes: Vec<Sched> = args
        .get(4)
        .map(|s| s.split(',').map(Sched::parse).collect())
        .unwrap_or_else(|| vec![Sched::Shared, Sched::Pinned, Sched::PinnedFifo]);
    let dir = tempfile_dir();
    let total: u64 = rates.iter().map(|r| r * secs).sum::<u64>() * modes.len() as u64 + 1000;
    let mut limits = Limits::default();
    limits.max_orders_per_instrument = (total as usize).next_power_of_two().max(1 << 18);
    limits.max_open_orders = limits.max_orders_per_instrument;
    let setup = [
        Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)),
        Command::Deposit { account: 7, asset: 2, amount: 1 << 61 },
    ];
    // ROUNDTRIP_ORDER_CAPACITY: resting orders the gateway's tables
    // (OrderCapacity) and the engine's lookup tables are sized for at start.
    // Default: every order of the run, as a venue sizes for its expected
    // peak. 0 = the configuration before session 5 (gateway default 16384,
    // engine indexes from 16k), where every doubling of a table was a stall.
    let capacity = std::env::var("ROUNDTRIP_ORDER_CAPACITY").ok().and_then(|v| v.parse().ok()).unwrap_or(total);
    let mut targets = Vec::new();
    for kind in &kinds {
        let (label, link): (&'static str, Arc<dyn EngineLink>) = match kind.as_str() {
            "thread" => {
                // CASTLE_ENGINE_SPIN_US: how long the engine thread polls before blocking.
                let spin = std::env::var("CASTLE_ENGINE_SPIN_US").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
                let options = InProcessOptions {
                    spin: Duration::from_micros(spin),
                    placement: Placement::Thread,
                    queue: 1 << 16,
                    reserve_orders: capacity as usize,
                    fault_in: engine_fault_in(),
                };
                ("FIX D -> 8, engine thread", InProcessEngine::start_with(limits, &setup, options))
            }
            "idle" => (
                "FIX D -> 8, in-process (inline when idle)",
                InProcessEngine::start_with(
                    limits,
                    &setup,
                    InProcessOptions {
                        reserve_orders: capacity as usize,
                        fault_in: engine_fault_in(),
                        ..InProcessOptions::new(1 << 16)
                    },
                ),
            ),
            "inline" => ("FIX D -> 8, engine inline", InlineEngine::start(limits, &setup, capacity as usize)),
            other => panic!("unknown engine placement {other:?} (thread, idle, inline)"),
        };
        // ROUNDTRIP_ORDER_CAPACITY: the gateway's OrderCapacity (default:
        // every order of the run, as a venue sizes for its expected peak;
        // 16384 is the gateway's default, the configuration before session 5).
        let capacity = std::env::var("ROUNDTRIP_ORDER_CAPACITY").ok().and_then(|v| v.parse().ok()).unwrap_or(total);
        let addr = start_gateway(link, &dir.join(kind), if capacity == 0 { 16_384 } else { capacity });
        targets.push(Target { label, conn: logon(addr), seq: Arc::new(AtomicU64::new(2)), next_id: 0 });
    }
    let (etx, erx) = std::sync::mpsc::channel();
    let echo_thread = std::thread::Builder::new().name("rt-echo".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            etx.send(l.local_addr().unwrap()).unwrap();
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut b = vec![0u8; 1 << 16];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    });
    echo_thread.expect("spawn echo thread");
    let echo_addr: SocketAddr = erx.recv().unwrap();

    println!("message size: NewOrderSingle {} bytes; {} s per rate", make_len(), secs);
    println!(
        "| rate (orders/s) | path | p50 us | p99 us | p99.9 us | max us | replies | CPU us/round trip | \
         CPU steal % | per thread role: CPU us / run-queue wait us / preemptions per round trip / minor \
         faults per 1k round trips |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for &mode in &modes {
        mode.apply_all();
        for &rate in &rates {
            let n = rate * secs;
            // Raw echo of the same bytes.
            let e = TcpStream::connect(echo_addr).unwrap();
            e.set_nodelay(true).unwrap();
            let (etx, erx) = (e.try_clone().unwrap(), e);
            let echo = run(
                mode,
                etx,
                erx,
                rate,
                n,
                |i| nos(1, i, "20240101-00:00:00.000"),
                |m| std::str::from_utf8(m).ok()?.split("\x0111=").nth(1)?.get(..12)?.parse().ok(),
                false,
            );
            print_row(rate, mode, "raw TCP echo", &echo, n);
            for t in &mut targets {
                // ClOrdIDs continue across rates so they stay unique.
                let base = t.next_id;
                t.next_id += n;
                let seq2 = t.seq.clone();
                let (ftx, frx) = (t.conn.try_clone().unwrap(), t.conn.try_clone().unwrap());
                let fix = run(
                    mode,
                    ftx,
                    frx,
                    rate,
                    n,
                    move |i| nos(seq2.fetch_add(1, Ordering::Relaxed), base + i, &now_fix()),
                    move |m| {
                        let mut p = Parser::default();
                        let msg = p.parse(m, &NoDataFields).ok()?;
                        if msg.msg_type() != b"8" || msg.get(150) != Some(b"0") {
                            return None;
                        }
                        let id: u64 = std::str::from_utf8(msg.get(11)?).ok()?.parse().ok()?;
                        id.checked_sub(base)
                    },
                    true,
                );
                print_row(rate, mode, t.label, &fix, n);
                println!(
                    "| {rate} | {}: ratio ({}) / echo | {:.2}x | {:.2}x | {:.2}x | | | | | |",
                    mode.label(),
                    t.label,
                    fix.p50 / echo.p50,
                    fix.p99 / echo.p99,
                    fix.p999 / echo.p999
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn print_row(rate: u64, mode: Sched, path: &str, r: &Result, n: u64) {
    println!(
        "| {rate} | {}: {path} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{n} | {:.1} | {:.1} | {} |",
        mode.label(),
        r.p50,
        r.p99,
        r.p999,
        r.max,
        r.sent,
        r.cpu,
        r.steal,
        r.threads
    );
    if !r.stalls.is_empty() {
        println!("|  | stalls: {} | | | | | | | | |", r.stalls);
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("castle-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
