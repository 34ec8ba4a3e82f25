//! Shared helpers for Castle's cross-process tests (`tests/tests/*.rs`).
//!
//! The tests run the real `castle` binary as a child process. The test
//! script builds it first (`cargo build -p castle`); `castle_bin()` finds it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

/// Path of the `castle` binary: `$CASTLE_BIN`, else `<target dir>/debug/castle`.
/// Panics with the command to run when it has not been built.
pub fn castle_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CASTLE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug").join("castle");
    assert!(
        bin.exists(),
        "castle binary not found at {}: run `cargo build -p castle` first (scripts/test does), or set CASTLE_BIN",
        bin.display()
    );
    bin
}

/// A child process that is killed when dropped, so a failing test leaves nothing running.
pub struct Proc {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
}

impl Proc {
    /// Starts `castle` with `args`, stdout piped.
    pub fn castle(args: &[&str]) -> Proc {
        let mut child = Command::new(castle_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn castle");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Proc { child, stdout }
    }

    /// Reads stdout lines until one contains `needle` (blocking; no sleeps),
    /// returning it. Panics if the process closes stdout first.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("read child stdout");
            assert!(n > 0, "castle exited before printing {needle:?}");
            if line.contains(needle) {
                return line.trim_end().to_string();
            }
        }
    }

    /// Sends a signal by number through `kill(1)` (no libc binding needed).
    pub fn signal(&self, sig: &str) {
        let ok =
            Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().expect("run kill");
        assert!(ok.success(), "kill -{sig} failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod durable;
pub mod fix;
pub mod fix_client;
pub mod redis;
