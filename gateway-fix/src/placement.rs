//! Thread placement of the FIX gateway: its own tokio runtime whose worker
//! threads are pinned to CPUs and/or run `SCHED_FIFO`.
//!
//! Why: the round-trip latency target (BENCHMARKS.md, the `fifo` rows of
//! `examples/roundtrip.rs`) is met only when the gateway thread is pinned and
//! runs `SCHED_FIFO`; at normal priority the VM's own agent preempts it for
//! 3-4 ms about once a second. On a runtime shared with REST, market data and
//! settlement that placement cannot be given to the gateway alone, so
//! [`FixRuntime`] is a runtime of its own (worker threads `castle-fix-N`) and
//! each worker places itself when it starts.
//!
//! Linux threads inherit the CPU affinity and scheduling policy of the thread
//! that creates them. Threads the gateway causes to be created must not run
//! pinned at real-time priority by accident (a normal-priority thread pinned to
//! the same CPU as a busy FIFO thread only runs when that one sleeps), so:
//! the store's background threads are started before the runtime, by the
//! unplaced caller, and the engine link's stream feeders (started by
//! `subscribe`) are started while the calling worker's placement is lifted
//! ([`FixRuntime::serve`] wraps the link).
//!
//! Parsing and checks are plain functions ([`CpuList::parse`],
//! [`Sched::parse`], [`parse_threads`], [`Placement::check`],
//! [`Placement::fifo_on_every_cpu`]); applying is [`Placement::apply_to_current_thread`].

use crate::config::Config;
use crate::link::{EngineBatch, EngineLink, EngineRequest, LinkError};
use crate::server::{ServeError, Server};
use castle_engine::{InstrumentSpec, Seq};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use thiserror::Error;

/// CPUs a `cpu_set_t` can name (1024 with glibc): higher numbers cannot be
/// passed to `sched_setaffinity` through it.
pub const MAX_CPUS: usize = std::mem::size_of::<libc::cpu_set_t>() * 8;
/// Upper bound of `--fix-threads`: a gateway has a handful of busy tasks
/// (router, sessions, acceptors); more threads than that only add wake-ups.
pub const MAX_THREADS: usize = 256;
/// Where Linux lists the online CPUs (same list syntax as `--fix-cpus`).
const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";
/// How long [`FixRuntime::start`] waits for its workers to report their placement.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A malformed option value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty CPU list (expected e.g. 1 or 2-3,5)")]
    EmptyCpuList,
    #[error("{0:?} is not a CPU number or range (N or N-M, comma-separated)")]
    BadCpuItem(String),
    #[error("CPU range {0}-{1} goes backwards")]
    BackwardsRange(usize, usize),
    #[error("CPU {0} is beyond the {MAX_CPUS} CPUs a CPU set can name")]
    CpuTooHigh(usize),
    #[error("{0:?}: expected other, fifo or fifo:PRIORITY")]
    BadPolicy(String),
    #[error("SCHED_FIFO priority {0:?}: expected 1 to 99")]
    BadPriority(String),
    #[error("thread count {0:?}: expected 1 to {MAX_THREADS}")]
    BadThreads(String),
}

/// A set of CPU numbers, written as the kernel writes them (`0-2,5,7-8`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CpuList(BTreeSet<usize>);

impl CpuList {
    /// Parses `N` and `N-M` items separated by commas (`1`, `2-3,5`).
    pub fn parse(s: &str) -> Result<CpuList, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::EmptyCpuList);
        }
        let number = |t: &str| -> Result<usize, ParseError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::BadCpuItem(t.to_string()));
            }
            // All digits: only overflow fails, and such a number is too high anyway.
            let n = t.parse::<usize>().unwrap_or(usize::MAX);
            if n >= MAX_CPUS {
                return Err(ParseError::CpuTooHigh(n));
            }
            Ok(n)
        };
        let mut set = BTreeSet::new();
        for item in s.split(',') {
            match item.split_once('-') {
                None => {
                    set.insert(number(item).map_err(|e| bad_item(e, item))?);
                }
                Some((a, b)) => {
                    let (a, b) = (number(a).map_err(|e| bad_item(e, item))?, number(b).map_err(|e| bad_item(e, item))?);
                    if a > b {
                        return Err(ParseError::BackwardsRange(a, b));
                    }
                    set.extend(a..=b);
                }
            }
        }
        Ok(CpuList(set))
    }

    pub fn from_cpus(cpus: impl IntoIterator<Item = usize>) -> CpuList {
        CpuList(cpus.into_iter().collect())
    }

    pub fn contains(&self, cpu: usize) -> bool {
        self.0.contains(&cpu)
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs of `self` that are not in `other`.
    pub fn minus(&self, other: &CpuList) -> CpuList {
        CpuList(self.0.difference(&other.0).copied().collect())
    }

    fn to_cpu_set(&self) -> libc::cpu_set_t {
        // SAFETY: cpu_set_t is a plain bit array (all zeros = empty), and
        // every CPU here is below MAX_CPUS (checked by parse, filtered here
        // for sets built with from_cpus).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in self.iter().filter(|&c| c < MAX_CPUS) {
                libc::CPU_SET(cpu, &mut set);
            }
            set
        }
    }

    #[cfg(test)]
    fn from_cpu_set(set: &libc::cpu_set_t) -> CpuList {
        // SAFETY: reads bits below MAX_CPUS of a valid set.
        CpuList((0..MAX_CPUS).filter(|&c| unsafe { libc::CPU_ISSET(c, set) }).collect())
    }
}

/// Out-of-range numbers keep their own error; other errors name the whole item.
fn bad_item(e: ParseError, item: &str) -> ParseError {
    match e {
        ParseError::CpuTooHigh(_) => e,
        _ => ParseError::BadCpuItem(item.to_string()),
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut it = self.iter().peekable();
        while let Some(start) = it.next() {
            let mut end = start;
            while it.peek() == Some(&(end + 1)) {
                end += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for CpuList {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CpuList::parse(s)
    }
}

/// Scheduling policy of the FIX threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sched {
    /// `SCHED_OTHER`: the normal time-sharing policy.
    Other,
    /// `SCHED_FIFO` at this priority (1-99): runs before every normal thread
    /// on its CPU until it blocks.
    Fifo(u8),
}

impl Sched {
    pub const DEFAULT_FIFO_PRIORITY: u8 = 10;

    /// `other`, `fifo` (priority 10) or `fifo:PRIORITY` (1-99).
    pub fn parse(s: &str) -> Result<Sched, ParseError> {
        match s.trim() {
            "other" => Ok(Sched::Other),
            "fifo" => Ok(Sched::Fifo(Self::DEFAULT_FIFO_PRIORITY)),
            t => match t.strip_prefix("fifo:") {
                Some(p) => match p.parse::<u8>() {
                    Ok(n @ 1..=99) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(Sched::Fifo(n)),
                    _ => Err(ParseError::BadPriority(p.to_string())),
                },
                None => Err(ParseError::BadPolicy(t.to_string())),
            },
        }
    }
}

impl fmt::Display for Sched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sched::Other => f.write_str("other"),
            Sched::Fifo(p) => write!(f, "fifo:{p}"),
        }
    }
}

impl FromStr for Sched {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sched::parse(s)
    }
}

/// `--fix-threads`: 1 to [`MAX_THREADS`].
pub fn parse_threads(s: &str) -> Result<usize, ParseError> {
    match s.trim().parse::<usize>() {
        Ok(n @ 1..=MAX_THREADS) => Ok(n),
        _ => Err(ParseError::BadThreads(s.to_string())),
    }
}

/// Why the placement cannot be had. Every variant says which part of the
/// placement failed ([`PlacementError::option`]) and carries the OS error.
#[derive(Debug, Error)]
pub enum PlacementError {
    #[error("no worker threads (at least 1)")]
    NoThreads,
    #[error("CPU {missing} is not online (online CPUs: {online})")]
    Offline { missing: CpuList, online: CpuList },
    #[error("reading the online CPUs from {ONLINE_CPUS}: {0}")]
    OnlineCpus(String),
    #[error("sched_setaffinity to CPU {cpus}: {source}")]
    Affinity {
        cpus: CpuList,
        #[source]
        source: io::Error,
    },
    #[error("sched_setscheduler {sched}: {source}{}", permission_hint(*.sched, .source))]
    Scheduler {
        sched: Sched,
        #[source]
        source: io::Error,
    },
    #[error("reading the starting thread's placement: {0}")]
    ThreadState(#[source] io::Error),
    #[error("starting the FIX runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("the FIX runtime's threads did not start within {0:?}")]
    NotStarted(Duration),
}

fn permission_hint(sched: Sched, e: &io::Error) -> String {
    match sched {
        Sched::Fifo(p) if e.raw_os_error() == Some(libc::EPERM) => {
            format!(" (SCHED_FIFO needs root, CAP_SYS_NICE or an RLIMIT_RTPRIO of at least {p})")
        }
        _ => String::new(),
    }
}

impl PlacementError {
    /// The command-line option whose value this error is about (errors of
    /// the runtime itself name all three).
    pub fn option(&self) -> &'static str {
        match self {
            PlacementError::NoThreads => "--fix-threads",
            PlacementError::Offline { .. } | PlacementError::OnlineCpus(_) | PlacementError::Affinity { .. } => {
                "--fix-cpus"
            }
            PlacementError::Scheduler { .. } => "--fix-sched",
            PlacementError::ThreadState(_) | PlacementError::Runtime(_) | PlacementError::NotStarted(_) => {
                "--fix-threads/--fix-cpus/--fix-sched"
            }
        }
    }
}

/// Where the FIX gateway's threads run. `None` fields are inherited from the
/// process (as started, e.g. under `taskset` or `chrt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Worker threads of the gateway's runtime.
    pub threads: usize,
    /// CPU affinity of each worker.
    pub cpus: Option<CpuList>,
    /// Scheduling policy of each worker.
    pub sched: Option<Sched>,
}

impl Placement {
    /// The placement is possible on a machine with these CPUs online.
    pub fn check(&self, online: &CpuList) -> Result<(), PlacementError> {
        if self.threads == 0 {
            return Err(PlacementError::NoThreads);
        }
        if let Some(cpus) = &self.cpus {
            let missing = cpus.minus(online);
            if !missing.is_empty() || cpus.is_empty() {
                return Err(PlacementError::Offline { missing, online: online.clone() });
            }
        }
        Ok(())
    }

    /// True when the FIFO threads may run on every online CPU: worth a
    /// warning, since the kernel's RT throttle then leaves the rest of the
    /// machine (and the engine, REST, settlement in the same process) only
    /// 5% of a CPU while they are busy.
    pub fn fifo_on_every_cpu(&self, online: &CpuList) -> bool {
        matches!(self.sched, Some(Sched::Fifo(_))) && self.cpus.as_ref().is_none_or(|c| online.minus(c).is_empty())
    }

    /// Applies the affinity, then the policy, to the calling thread.
    pub fn apply_to_current_thread(&self) -> Result<(), PlacementError> {
        if let Some(cpus) = &self.cpus {
            let set = cpus.to_cpu_set();
            // SAFETY: a valid set of its own size; pid 0 is the calling thread.
            if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
                return Err(PlacementError::Affinity { cpus: cpus.clone(), source: io::Error::last_os_error() });
            }
        }
        if let Some(sched) = self.sched {
            let (policy, priority) = match sched {
                Sched::Other => (libc::SCHED_OTHER, 0),
                Sched::Fifo(p) => (libc::SCHED_FIFO, libc::c_int::from(p)),
            };
            set_scheduler(policy, priority).map_err(|source| PlacementError::Scheduler { sched, source })?;
        }
        Ok(())
    }
}

fn set_scheduler(policy: libc::c_int, priority: libc::c_int) -> io::Result<()> {
    // SAFETY: sched_param is plain data (zeroed: the fields some libcs add);
    // pid 0 is the calling thread.
    unsafe {
        let mut param: libc::sched_param = std::mem::zeroed();
        param.sched_priority = priority;
        if libc::sched_setscheduler(0, policy, &param) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs Linux has online.
pub fn online_cpus() -> Result<CpuList, PlacementError> {
    let text = std::fs::read_to_string(ONLINE_CPUS).map_err(|e| PlacementError::OnlineCpus(e.to_string()))?;
    CpuList::parse(&text).map_err(|e| PlacementError::OnlineCpus(e.to_string()))
}

/// A thread's affinity and policy, to put back.
#[derive(Clone, Copy)]
struct ThreadState {
    mask: libc::cpu_set_t,
    policy: libc::c_int,
    priority: libc::c_int,
}

impl ThreadState {
    fn current() -> io::Result<ThreadState> {
        // SAFETY: out-parameters of their own size; pid 0 is the calling thread.
        unsafe {
            let mut mask: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) != 0 {
                return Err(io::Error::last_os_error());
            }
            let policy = libc::sched_getscheduler(0);
            if policy < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut param: libc::sched_param = std::mem::zeroed();
            if libc::sched_getparam(0, &mut param) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(ThreadState { mask, policy, priority: param.sched_priority })
        }
    }

    fn apply(&self) -> io::Result<()> {
        // SAFETY: as in Placement::apply_to_current_thread.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.mask) } != 0 {
            return Err(io::Error::last_os_error());
        }
        set_scheduler(self.policy, self.priority)
    }
}

thread_local! {
    /// Set on the threads [`FixRuntime`] placed.
    static PLACED: Cell<bool> = const { Cell::new(false) };
}

/// The placement of the FIX workers and the state of the thread that
/// started them (what threads they create should get instead).
struct Unplace {
    placement: Placement,
    before: ThreadState,
}

impl Unplace {
    /// Runs `f` with the calling thread's placement lifted when it is a
    /// placed FIX worker, so threads `f` creates inherit the unplaced state.
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        if !PLACED.with(Cell::get) {
            return f();
        }
        if let Err(e) = self.before.apply() {
            tracing::error!(error = %e, "lifting a FIX thread's placement failed: a thread started now inherits it");
        }
        let r = f();
        if let Err(e) = self.placement.apply_to_current_thread() {
            tracing::error!(error = %e, option = e.option(), "restoring a FIX thread's placement failed");
        }
        r
    }
}

/// The engine link as the gateway sees it on a placed runtime: `subscribe`
/// starts the link's feeder thread (DurableLink, RemoteLink), which must not
/// inherit the worker's placement.
struct UnplacedSpawns {
    inner: Arc<dyn EngineLink>,
    unplace: Arc<Unplace>,
}

impl EngineLink for UnplacedSpawns {
    fn submit(&self, req: EngineRequest) -> Result<(), LinkError> {
        self.inner.submit(req)
    }
    fn subscribe(&self, capacity: usize) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        self.unplace.run(|| self.inner.subscribe(capacity))
    }
    fn subscribe_after(
        &self,
        after: Seq,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        self.unplace.run(|| self.inner.subscribe_after(after, capacity))
    }
    fn instruments(&self) -> Vec<InstrumentSpec> {
        self.inner.instruments()
    }
    fn first_request(&self, gateway: u32) -> u64 {
        self.inner.first_request(gateway)
    }
    fn last_seq(&self) -> Option<Seq> {
        self.inner.last_seq()
    }
}

/// Workers started so far and the placement errors they met.
#[derive(Default)]
struct Started {
    threads: usize,
    errors: Vec<PlacementError>,
}

/// The FIX gateway's own tokio runtime, its workers placed.
pub struct FixRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    unplace: Arc<Unplace>,
}

impl FixRuntime {
    /// Checks the placement against the online CPUs, starts the runtime and
    /// waits until every worker has placed itself: a placement the OS
    /// refuses (EPERM for SCHED_FIFO without CAP_SYS_NICE, a CPU outside the
    /// process's cpuset) is an error here, not a silently unplaced gateway.
    /// Call it from a thread that is not placed (its state is what threads
    /// the gateway starts get).
    pub fn start(placement: Placement) -> Result<FixRuntime, PlacementError> {
        let online = online_cpus()?;
        placement.check(&online)?;
        if placement.fifo_on_every_cpu(&online) {
            tracing::warn!(
                cpus = %placement.cpus.as_ref().unwrap_or(&online),
                online = %online,
                "--fix-sched fifo on every online CPU: while the FIX threads are busy the kernel's RT throttle \
                 leaves everything else (the engine, REST, settlement in this process too) 5% of the CPU time; \
                 give them fewer CPUs with --fix-cpus"
            );
        }
        let before = ThreadState::current().map_err(PlacementError::ThreadState)?;
        // Started now, by this unplaced thread, rather than lazily by the
        // first session thread that writes (whose placement they would inherit).
        crate::grow::start_threads();
        let started = Arc::new((Mutex::new(Started::default()), Condvar::new()));
        let next = AtomicUsize::new(0);
        let on_start = {
            let (started, placement) = (started.clone(), placement.clone());
            move || {
                let result = placement.apply_to_current_thread();
                PLACED.with(|p| p.set(result.is_ok()));
                let (lock, cv) = &*started;
                let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
                s.threads += 1;
                if let Err(e) = result {
                    // After start-up (a blocking-pool thread) nobody waits for this: say it.
                    tracing::error!(error = %e, option = e.option(), "a FIX thread could not be placed");
                    s.errors.push(e);
                }
                cv.notify_all();
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(placement.threads)
            .enable_all()
            .thread_name_fn(move || format!("castle-fix-{}", next.fetch_add(1, Ordering::Relaxed)))
            .on_thread_start(on_start)
            .build()
            .map_err(PlacementError::Runtime)?;
        // tokio starts its workers in build(); each reports from on_thread_start.
        let (lock, cv) = &*started;
        let s = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (mut s, timeout) = cv
            .wait_timeout_while(s, START_TIMEOUT, |s| s.threads < placement.threads && s.errors.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        let failed = s.errors.drain(..).next();
        drop(s);
        let fix = FixRuntime { runtime: Some(runtime), unplace: Arc::new(Unplace { placement, before }) };
        if let Some(e) = failed {
            return Err(e);
        }
        if timeout.timed_out() {
            return Err(PlacementError::NotStarted(START_TIMEOUT));
        }
        let p = &fix.unplace.placement;
        tracing::info!(
            threads = p.threads,
            cpus = %p.cpus.as_ref().map_or("inherited".to_string(), |c| c.to_string()),
            sched = %p.sched.map_or("inherited".to_string(), |s| s.to_string()),
            "FIX gateway on its own runtime"
        );
        Ok(fix)
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("runtime present until drop").handle()
    }

    pub fn placement(&self) -> &Placement {
        &self.unplace.placement
    }

    /// [`crate::serve`] on this runtime: listeners, sessions and router run
    /// on its workers. May be awaited from another runtime.
    pub async fn serve(&self, config: Config, link: Arc<dyn EngineLink>) -> Result<Server, ServeError> {
        let link: Arc<dyn EngineLink> = Arc::new(UnplacedSpawns { inner: link, unplace: self.unplace.clone() });
        self.handle().spawn(crate::server::serve(config, link)).await.map_err(|e| ServeError::Runtime(e.to_string()))?
    }
}

impl Drop for FixRuntime {
    fn drop(&mut self) {
        // Not waiting: dropping may happen inside another runtime (blocking
        // there panics), and Server::shutdown has stopped the tasks already.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cpus(s: &str) -> CpuList {
        CpuList::parse(s).unwrap()
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(cpus("1"), CpuList::from_cpus([1]));
        assert_eq!(cpus("2-3,5"), CpuList::from_cpus([2, 3, 5]));
        assert_eq!(cpus("0-1\n"), CpuList::from_cpus([0, 1]), "the kernel's file ends with a newline");
        assert_eq!(cpus("3,1,3"), CpuList::from_cpus([1, 3]));
        assert_eq!(cpus("4-4"), CpuList::from_cpus([4]));
        assert_eq!(cpus("1023"), CpuList::from_cpus([1023]));
    }

    #[test]
    fn bad_cpu_lists_are_refused() {
        assert_eq!(CpuList::parse(""), Err(ParseError::EmptyCpuList));
        assert_eq!(CpuList::parse(" "), Err(ParseError::EmptyCpuList));
        for bad in [",", "1,", ",1", "1,,2", "1-", "-1", "1-2-3", "a", "1 2", "+1", "0x1", "1-b", "--"] {
            assert!(matches!(CpuList::parse(bad), Err(ParseError::BadCpuItem(_))), "{bad:?}");
        }
        assert_eq!(CpuList::parse("3-2"), Err(ParseError::BackwardsRange(3, 2)));
        assert_eq!(CpuList::parse("1024"), Err(ParseError::CpuTooHigh(1024)));
        assert_eq!(CpuList::parse("0-5000"), Err(ParseError::CpuTooHigh(5000)));
        assert_eq!(CpuList::parse("99999999999999999999999"), Err(ParseError::CpuTooHigh(usize::MAX)));
    }

    #[test]
    fn cpu_lists_print_as_the_kernel_does() {
        assert_eq!(CpuList::from_cpus([0, 1, 2, 5, 7, 8]).to_string(), "0-2,5,7-8");
        assert_eq!(CpuList::from_cpus([3]).to_string(), "3");
        assert_eq!(CpuList::default().to_string(), "");
    }

    #[test]
    fn policies_parse() {
        assert_eq!(Sched::parse("other"), Ok(Sched::Other));
        assert_eq!(Sched::parse("fifo"), Ok(Sched::Fifo(10)));
        assert_eq!(Sched::parse("fifo:1"), Ok(Sched::Fifo(1)));
        assert_eq!(Sched::parse("fifo:99"), Ok(Sched::Fifo(99)));
        for bad in ["fifo:0", "fifo:100", "fifo:", "fifo:x", "fifo:+5", "fifo:-1", "fifo:256"] {
            assert!(matches!(Sched::parse(bad), Err(ParseError::BadPriority(_))), "{bad:?}");
        }
        for bad in ["", "rr", "FIFO", "fifo5", "other:1", "batch"] {
            assert!(matches!(Sched::parse(bad), Err(ParseError::BadPolicy(_))), "{bad:?}");
        }
        assert_eq!(Sched::Fifo(7).to_string(), "fifo:7");
    }

    #[test]
    fn thread_counts_parse() {
        assert_eq!(parse_threads("1"), Ok(1));
        assert_eq!(parse_threads("256"), Ok(256));
        for bad in ["0", "257", "", "-1", "two"] {
            assert!(parse_threads(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placement_is_checked_against_the_online_cpus() {
        let online = cpus("0-3");
        let p = |c: Option<&str>, s: Option<Sched>| Placement { threads: 1, cpus: c.map(cpus), sched: s };
        assert!(p(Some("0"), Some(Sched::Fifo(5))).check(&online).is_ok());
        assert!(p(None, None).check(&online).is_ok());
        match p(Some("2-5"), None).check(&online) {
            Err(e @ PlacementError::Offline { .. }) => {
                assert_eq!(e.to_string(), "CPU 4-5 is not online (online CPUs: 0-3)");
                assert_eq!(e.option(), "--fix-cpus");
            }
            other => panic!("{other:?}"),
        }
        let none = Placement { threads: 0, cpus: None, sched: None };
        assert!(matches!(none.check(&online), Err(PlacementError::NoThreads)));
    }

    #[test]
    fn fifo_on_every_online_cpu_is_noticed() {
        let online = cpus("0-1");
        let p = |c: Option<&str>, s: Option<Sched>| Placement { threads: 1, cpus: c.map(cpus), sched: s };
        assert!(p(None, Some(Sched::Fifo(10))).fifo_on_every_cpu(&online), "unpinned FIFO may run anywhere");
        assert!(p(Some("0-1"), Some(Sched::Fifo(10))).fifo_on_every_cpu(&online));
        assert!(!p(Some("1"), Some(Sched::Fifo(10))).fifo_on_every_cpu(&online));
        assert!(!p(None, Some(Sched::Other)).fifo_on_every_cpu(&online));
        assert!(!p(Some("0-1"), None).fifo_on_every_cpu(&online));
    }

    #[test]
    fn the_online_cpus_are_read() {
        let online = online_cpus().unwrap();
        assert!(!online.is_empty(), "{online}");
    }

    /// An affinity the kernel refuses is an error naming the option and the
    /// OS error (here a CPU that cannot exist on this machine; check() would
    /// refuse it before, so this reaches the system call).
    #[test]
    fn a_refused_affinity_is_an_error() {
        let online = online_cpus().unwrap();
        let absent = (0..MAX_CPUS).rev().find(|c| !online.contains(*c)).expect("a machine without 1024 CPUs");
        let p = Placement { threads: 1, cpus: Some(CpuList::from_cpus([absent])), sched: None };
        let e = std::thread::spawn(move || p.apply_to_current_thread()).join().unwrap().unwrap_err();
        assert_eq!(e.option(), "--fix-cpus");
        assert!(e.to_string().starts_with(&format!("sched_setaffinity to CPU {absent}: ")), "{e}");
        assert!(matches!(&e, PlacementError::Affinity { source, .. } if source.raw_os_error() == Some(libc::EINVAL)));
    }

    /// Drops CAP_SYS_NICE from the calling thread's effective set (Linux
    /// capabilities are per thread; threads it creates inherit the drop).
    fn drop_cap_sys_nice() {
        const CAP_SYS_NICE: u32 = 23;
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut h = Header { version: 0x2008_0522, pid: 0 };
        let mut d = [Data::default(); 2];
        // SAFETY: the kernel's capget/capset ABI (version 3: two data words).
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()), 0, "{}", io::Error::last_os_error());
            d[0].effective &= !(1 << CAP_SYS_NICE);
            assert_eq!(libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()), 0, "{}", io::Error::last_os_error());
        }
        // Without the capability RLIMIT_RTPRIO decides; the tests ask for 99.
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: out-parameter.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut lim) }, 0);
        assert!(lim.rlim_cur < 99, "this test needs RLIMIT_RTPRIO below 99 (it is {})", lim.rlim_cur);
    }

    #[test]
    fn fifo_without_permission_is_an_error() {
        let e = std::thread::spawn(|| {
            drop_cap_sys_nice();
            Placement { threads: 1, cpus: None, sched: Some(Sched::Fifo(99)) }.apply_to_current_thread()
        })
        .join()
        .unwrap()
        .unwrap_err();
        assert_eq!(e.option(), "--fix-sched");
        assert!(e.to_string().contains("sched_setscheduler fifo:99: "), "{e}");
        assert!(e.to_string().contains("CAP_SYS_NICE"), "{e}");
    }

    /// The same refusal met by the runtime's workers is a start-up error,
    /// not a panic and not an unplaced runtime.
    #[test]
    fn a_runtime_whose_workers_cannot_be_placed_does_not_start() {
        let r = std::thread::spawn(|| {
            drop_cap_sys_nice();
            FixRuntime::start(Placement { threads: 2, cpus: None, sched: Some(Sched::Fifo(99)) }).map(|_| ())
        })
        .join()
        .unwrap();
        let e = r.unwrap_err();
        assert!(matches!(e, PlacementError::Scheduler { sched: Sched::Fifo(99), .. }), "{e}");
        let offline = FixRuntime::start(Placement { threads: 1, cpus: Some(CpuList::from_cpus([1023])), sched: None });
        assert!(matches!(offline.map(|_| ()), Err(PlacementError::Offline { .. })));
    }

    fn affinity_of_current_thread() -> CpuList {
        CpuList::from_cpu_set(&ThreadState::current().unwrap().mask)
    }

    /// Workers run on the CPUs asked for and are named castle-fix-N; a
    /// thread a worker starts through the unplaced link keeps the starter's
    /// affinity. Affinity only: needs no privilege.
    #[test]
    fn workers_are_placed_and_their_threads_are_not() {
        let online = online_cpus().unwrap();
        let cpu = online.iter().last().unwrap();
        let fix =
            FixRuntime::start(Placement { threads: 1, cpus: Some(CpuList::from_cpus([cpu])), sched: None }).unwrap();
        let starter = affinity_of_current_thread();
        let unplace = fix.unplace.clone();
        let (name, placed, child, child_direct) = fix.handle().block_on_free(async move {
            let name = std::thread::current().name().map(str::to_string);
            let placed = affinity_of_current_thread();
            let child = unplace.run(|| std::thread::spawn(affinity_of_current_thread).join().unwrap());
            let direct = std::thread::spawn(affinity_of_current_thread).join().unwrap();
            (name, placed, child, direct)
        });
        assert_eq!(name.as_deref(), Some("castle-fix-0"));
        assert_eq!(placed, CpuList::from_cpus([cpu]));
        assert_eq!(child, starter, "a thread started with the placement lifted is not pinned");
        assert_eq!(child_direct, placed, "(inheritance is real: a thread started directly is pinned)");
    }

    trait BlockOnFree {
        fn block_on_free<F: std::future::Future + Send + 'static>(&self, f: F) -> F::Output
        where
            F::Output: Send + 'static;
    }

    impl BlockOnFree for tokio::runtime::Handle {
        /// Runs `f` on a worker (block_on would run it on the calling thread).
        fn block_on_free<F: std::future::Future + Send + 'static>(&self, f: F) -> F::Output
        where
            F::Output: Send + 'static,
        {
            let (tx, rx) = std::sync::mpsc::channel();
            self.spawn(async move {
                let _ = tx.send(f.await);
            });
            rx.recv().unwrap()
        }
    }

    proptest! {
        #[test]
        fn cpu_lists_round_trip(set in proptest::collection::btree_set(0usize..MAX_CPUS, 1..40)) {
            let list = CpuList(set);
            prop_assert_eq!(CpuList::parse(&list.to_string()), Ok(list.clone()));
            prop_assert_eq!(CpuList::from_cpu_set(&list.to_cpu_set()), list);
        }

        #[test]
        fn ranges_are_inclusive(a in 0usize..MAX_CPUS, len in 0usize..64) {
            let b = (a + len).min(MAX_CPUS - 1);
            prop_assert_eq!(CpuList::parse(&format!("{a}-{b}")), Ok(CpuList::from_cpus(a..=b)));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(s in "[0-9,\\- a]{0,16}") {
            if let Ok(list) = CpuList::parse(&s) {
                prop_assert!(!list.is_empty() && list.iter().all(|c| c < MAX_CPUS));
            }
            let _ = Sched::parse(&s);
            let _ = parse_threads(&s);
        }

        #[test]
        fn fifo_priorities_are_1_to_99(p in 0u32..300) {
            let r = Sched::parse(&format!("fifo:{p}"));
            if (1..=99).contains(&p) {
                prop_assert_eq!(r, Ok(Sched::Fifo(p as u8)));
            } else {
                prop_assert!(r.is_err());
            }
        }

        #[test]
        fn online_check_is_subset(online in proptest::collection::btree_set(0usize..16, 1..16),
                                  asked in proptest::collection::btree_set(0usize..16, 1..16)) {
            let (online, asked) = (CpuList(online), CpuList(asked));
            let p = Placement { threads: 1, cpus: Some(asked.clone()), sched: None };
            prop_assert_eq!(p.check(&online).is_ok(), asked.minus(&online).is_empty());
        }
    }
}
