//! `castle serve --fix-threads 1 --fix-cpus 0 --fix-sched fifo:5`: the FIX gateway runs on
//! its own threads (castle-fix-N), pinned to CPU 0 at SCHED_FIFO priority 5, trades, and no
//! other thread of the process (engine, REST, store and link helpers) is pinned or real-time.
//! Read from /proc/PID/task/*: comm, status (Cpus_allowed_list), stat (rt_priority, policy).
//! The same for `castle gateway-fix` against `castle engine` (the engine stream's feeder is
//! then RemoteLink's). Needs root or CAP_SYS_NICE (CI runs as root); without it these tests
//! fail and say so.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use castle_tests::durable::EngineProc;
use castle_tests::fix::{fix, read_until, utc_now};
use castle_tests::{castle_bin, Proc};

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;

/// One thread of a process as /proc shows it.
#[derive(Debug)]
struct Task {
    tid: u32,
    comm: String,
    cpus_allowed: String,
    rt_priority: u32,
    policy: u32,
}

fn tasks(pid: u32) -> Vec<Task> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task") {
        let dir = entry.expect("task entry").path();
        let tid: u32 = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()).expect("tid");
        let (Ok(comm), Ok(status), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let cpus_allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list in status")
            .trim()
            .to_string();
        let (rt_priority, policy) = stat_sched(&stat);
        out.push(Task { tid, comm: comm.trim().to_string(), cpus_allowed, rt_priority, policy });
    }
    out
}

/// Fields 40 (rt_priority) and 41 (policy) of /proc/PID/task/TID/stat. Field 2, the name in
/// parentheses, may hold spaces: count from after its closing parenthesis (field 3 on).
fn stat_sched(stat: &str) -> (u32, u32) {
    let rest = &stat[stat.rfind(')').expect("stat has (comm)") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields[n - 3].parse::<u32>().expect("numeric stat field");
    (field(40), field(41))
}

/// Whether this process may set SCHED_FIFO: CAP_SYS_NICE (bit 23) in its effective set.
fn has_cap_sys_nice() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff in status");
    u64::from_str_radix(eff.trim(), 16).expect("hex CapEff") & (1 << 23) != 0
}

fn assert_may_set_fifo() {
    assert!(
        has_cap_sys_nice(),
        "this test needs root or CAP_SYS_NICE: it starts castle with --fix-sched fifo:5 (SCHED_FIFO)"
    );
}

/// DEMO1 logs on and gets a New execution report for an order: the placed gateway trades.
fn trade(addr: &str) {
    let mut s = TcpStream::connect(addr).expect("connect to the FIX gateway");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut buf = Vec::new();
    s.write_all(&fix(1, "A", "98=0|108=30|141=Y|553=demo1|554=demo|")).expect("send logon");
    read_until(&mut s, &mut buf, &["35=A|"]);
    let order = format!("11=ord-1|1=1|55=BTC-USDT|54=1|60={}|38=0.5|40=2|44=59000.00|59=1|", utc_now());
    s.write_all(&fix(2, "D", &order)).expect("send order");
    let report = read_until(&mut s, &mut buf, &["35=8|", "11=ord-1|"]);
    assert!(report.contains("150=0|") && report.contains("39=0|"), "expected a New execution report: {report}");
}

/// The castle-fix threads of `pid` are on CPU 0 at SCHED_FIFO 5; every other thread has the
/// main thread's (never placed) affinity at normal priority, among them the `helpers`
/// (threads the gateway causes to exist). comm holds 15 bytes: names are cut there.
fn assert_only_fix_threads_placed(pid: u32, helpers: &[&str]) {
    let all = tasks(pid);
    let main = all.iter().find(|t| t.tid == pid).expect("the main thread");
    let (fix_threads, others): (Vec<&Task>, Vec<&Task>) = all.iter().partition(|t| t.comm.starts_with("castle-fix-"));
    assert!(fix_threads.iter().any(|t| t.comm == "castle-fix-0"), "no castle-fix-0 thread: {all:#?}");
    for t in &fix_threads {
        assert_eq!(t.cpus_allowed, "0", "FIX thread not pinned to CPU 0: {t:?}");
        assert_eq!((t.policy, t.rt_priority), (SCHED_FIFO, 5), "FIX thread not SCHED_FIFO 5: {t:?}");
    }
    assert_eq!(main.policy, SCHED_OTHER, "{main:?}");
    let machine_cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if machine_cpus.trim() != "0" {
        assert_ne!(main.cpus_allowed, "0", "the process itself must not be confined to CPU 0: {main:?}");
    }
    for t in &others {
        assert_eq!((t.policy, t.rt_priority), (SCHED_OTHER, 0), "non-FIX thread is real-time: {t:?}");
        assert_eq!(t.cpus_allowed, main.cpus_allowed, "non-FIX thread is pinned: {t:?}");
    }
    for helper in helpers {
        assert!(others.iter().any(|t| t.comm == *helper), "no {helper} thread: {all:#?}");
    }
}

const PLACEMENT: [&str; 6] = ["--fix-threads", "1", "--fix-cpus", "0", "--fix-sched", "fifo:5"];

#[test]
fn serve_places_the_fix_threads_and_only_them() {
    assert_may_set_fifo();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let mut args = vec!["serve", "--fix-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0", "--data-dir", data];
    args.extend_from_slice(&PLACEMENT);
    // The session store's helpers and the engine stream's feeders (DurableLink's; the FIX
    // gateway's is subscribed to by a castle-fix thread) are normal threads.
    trade_and_check_placement(&args, "castle", &["fix-store-grow", "fix-store-flush", "castle-link-fee"]);
}

#[test]
fn gateway_fix_places_the_fix_threads_and_only_them() {
    assert_may_set_fifo();
    let dir = tempfile::tempdir().expect("temp dir");
    let engine =
        EngineProc::start(&dir.path().join("journal"), &["--demo"]).unwrap_or_else(|e| panic!("castle engine: {e:?}"));
    let data = dir.path().join("fix-gateway");
    let data = data.to_str().expect("utf-8 path");
    let mut args = vec!["gateway-fix", "--engine", &engine.addr, "--fix-listen", "127.0.0.1:0", "--data-dir", data];
    // --fix-threads left to its default (1 when a placement is given).
    args.extend_from_slice(&PLACEMENT[2..]);
    // RemoteLink's stream feeder (subscribed to by a castle-fix thread) and its connection.
    trade_and_check_placement(&args, "castle gateway-fix", &["fix-store-grow", "castle-remote-s", "castle-remote-g"]);
}

/// Starts `castle ARGS` (which prints "NAME is up: ... FIX 4.4 on ADDR ..." and "NAME stopped"),
/// trades over FIX, checks that only the castle-fix threads are placed (`unplaced`: helper
/// threads that must exist and must not be), then stops it with SIGTERM.
fn trade_and_check_placement(args: &[&str], name: &str, unplaced: &[&str]) {
    let mut p = Proc::castle(args);
    let up = p.wait_for_line(&format!("{name} is up"));
    let addr = up.split("FIX 4.4 on ").nth(1).and_then(|r| r.split(' ').next()).expect("FIX address").to_string();
    trade(&addr);
    assert_only_fix_threads_placed(p.child.id(), unplaced);
    p.signal("TERM");
    p.wait_for_line(&format!("{name} stopped"));
    assert!(p.child.wait().expect("wait").success());
}

/// A CPU that is not online is a start-up error naming the option, not a silent fallback.
#[test]
fn an_offline_cpu_is_a_startup_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(castle_bin())
        .args(["serve", "--check", "--fix-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0", "--fix-cpus", "1023"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run castle");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "castle serve started on an offline CPU: {stderr}");
    assert!(stderr.contains("--fix-cpus") && stderr.contains("1023 is not online"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!Path::new(&dir.path().join("journal")).exists(), "nothing started before the check");
}

/// A malformed value is refused by the argument parser, naming the option.
#[test]
fn malformed_placement_values_are_refused() {
    for (opt, value) in [("--fix-cpus", "3-1"), ("--fix-sched", "fifo:100"), ("--fix-threads", "0")] {
        let out = Command::new(castle_bin()).args(["gateway-fix", opt, value]).output().expect("run castle");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{opt} {value}: {stderr}");
        assert!(stderr.contains(opt), "{opt} {value}: {stderr}");
    }
}
