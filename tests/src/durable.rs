//! Helpers of the engine durability tests: `castle engine` / `castle replay` as child
//! processes, a pipelined gateway load generator, and journal inspection.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use castle_engine::workload::{Workload, WorkloadConfig};
use castle_engine_server::client::{Connection, Delivery};
use castle_engine_server::proto::{AckStatus, Role};

use crate::castle_bin;

/// A running `castle engine`; killed (SIGKILL) when dropped.
pub struct EngineProc {
    pub child: Child,
    pub addr: String,
    pub stderr_path: PathBuf,
    /// Everything the engine printed on stdout so far.
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Output of a `castle` run that was expected to exit.
#[derive(Debug)]
pub struct Exited {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn stderr_file(journal: &Path) -> PathBuf {
    let mut n = 0;
    loop {
        let p = journal
            .with_file_name(format!("{}.stderr.{n}", journal.file_name().and_then(|s| s.to_str()).unwrap_or("engine")));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

impl EngineProc {
    /// Starts `castle engine --journal DIR --listen 127.0.0.1:0 EXTRA...` and waits for it to
    /// listen. `Err` carries the output when it exits instead (e.g. a refused corrupt journal).
    pub fn start(journal: &Path, extra: &[&str]) -> Result<EngineProc, Exited> {
        let stderr_path = stderr_file(journal);
        let err = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = Command::new(castle_bin())
            .arg("engine")
            .arg("--journal")
            .arg(journal)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn castle engine");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = printed.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let mut all = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Err(all));
                        return;
                    }
                    Ok(_) => {
                        all.push_str(&line);
                        if let Some(a) = line.trim().strip_prefix("castle engine listening on ") {
                            let _ = tx.send(Ok(a.to_string()));
                            // Keep draining (and keeping) so the child never blocks on a full pipe.
                            kept.lock().unwrap_or_else(|p| p.into_inner()).push_str(&all);
                            loop {
                                line.clear();
                                match r.read_line(&mut line) {
                                    Ok(0) | Err(_) => return,
                                    Ok(_) => kept.lock().unwrap_or_else(|p| p.into_inner()).push_str(&line),
                                }
                            }
                        }
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(addr)) => Ok(EngineProc { child, addr, stderr_path, stdout: printed }),
            Ok(Err(stdout)) => {
                let status = child.wait().expect("wait");
                Err(Exited {
                    success: status.success(),
                    stdout,
                    stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                })
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "castle engine did not start in time; stderr: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the engine printed on stdout so far (e.g. its metrics address).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// (primary, epoch, seq, hash hex)
    pub fn status(&self) -> (bool, u64, u64, String) {
        let (p, e, s, h) = castle_engine_server::client::status(&self.addr).expect("status");
        (p, e, s, castle_engine_server::hex(&h))
    }
}

impl Drop for EngineProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `castle replay DIR`: (seq, hash hex).
pub fn replay(dir: &Path) -> (u64, String) {
    let out = Command::new(castle_bin()).arg("replay").arg(dir).output().expect("run castle replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "castle replay failed: {}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("seq ")).expect("seq line");
    let mut it = line.split_whitespace();
    let seq = it.nth(1).and_then(|s| s.parse().ok()).expect("seq");
    let hash = it.nth(1).expect("hash").to_string();
    (seq, hash)
}

/// The deterministic command stream the tests submit: request id i+1 is command i.
pub fn commands(seed: u64, n: usize) -> Vec<castle_engine::Command> {
    let cfg = WorkloadConfig { seed, accounts: 40, book_depth: 400, ..WorkloadConfig::default() };
    let mut w = Workload::new(cfg);
    let mut v = w.setup();
    v.extend(w.fill_book());
    while v.len() < n {
        v.push(w.next_command());
    }
    v.truncate(n);
    v
}

/// Acknowledged request ids with their seqs, and how the session ended.
#[derive(Debug, Default)]
pub struct Acks {
    pub applied: Vec<(u64, u64)>,
    pub duplicates: Vec<u64>,
}

/// Submits `cmds[from-1..]` as requests `from..` of `gateway`, pipelined (up to `window`
/// unacknowledged), until everything is acknowledged, `deadline` passes or the connection
/// breaks. Returns the acknowledgements received.
pub fn pump(
    addr: &str,
    gateway: u32,
    cmds: &[castle_engine::Command],
    from: u64,
    window: u64,
    deadline: Instant,
) -> Acks {
    let mut acks = Acks::default();
    let Ok(mut c) = Connection::connect(addr, Role::Gateway, gateway, 0) else { return acks };
    let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
    let mut next = from;
    let mut acked = from - 1;
    let end = cmds.len() as u64;
    while acked < end && Instant::now() < deadline {
        while next <= end && next - acked <= window {
            if c.submit(next, &cmds[next as usize - 1]).is_err() {
                return acks;
            }
            next += 1;
        }
        if c.flush().is_err() {
            return acks;
        }
        match c.recv() {
            Ok(Some(Delivery::Ack { request, seq, status })) => {
                match status {
                    AckStatus::Applied => acks.applied.push((request, seq)),
                    AckStatus::Duplicate => acks.duplicates.push(request),
                    s => panic!("request {request}: unexpected ack status {s:?}"),
                }
                acked = acked.max(request);
            }
            Ok(Some(other)) => panic!("unexpected delivery {other:?}"),
            Ok(None) => return acks,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return acks,
        }
    }
    acks
}

/// Every journal record of `dir`: (seq, gateway, request).
pub fn journal_requests(dir: &Path) -> Vec<(u64, u32, u64)> {
    let mut v = Vec::new();
    let mut r = castle_journal_reader(dir);
    while let Some((seq, payload)) = r() {
        let p = castle_engine_server::payload::Payload::decode(&payload).expect("payload decodes");
        v.push((seq, p.gateway, p.request));
    }
    v
}

fn castle_journal_reader(dir: &Path) -> impl FnMut() -> Option<(u64, Vec<u8>)> {
    let mut it = castle_engine_server::journal_records(dir).expect("open journal");
    move || it.next().map(|r| r.expect("journal record"))
}

/// All `Events` of a subscriber from `from` until seq `until` (inclusive) or `stop_after` frames.
pub fn subscribe(addr: &str, from: u64, until: u64) -> Vec<(u64, Vec<castle_engine::EventKind>)> {
    let mut c = Connection::connect(addr, Role::Subscriber, 0, from).expect("subscribe");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut v = Vec::new();
    let mut expect = from + 1;
    while expect <= until {
        match c.recv().expect("read events") {
            Some(Delivery::Events { seq, events, .. }) => {
                assert_eq!(seq, expect, "gap or repeat in the event stream");
                v.push((seq, events));
                expect += 1;
            }
            other => panic!("subscriber got {other:?}"),
        }
    }
    v
}
