//! kill -9 a writer process at random points; after each kill, recovery must keep every record
//! that was reported durable, keep sequence continuity, and continue appending.
//! (A process kill leaves the page cache intact; power loss is simulated by the torn-tail tests.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use castle_journal::{Journal, JournalOptions, JournalReader};

fn payload(seq: u64) -> Vec<u8> {
    vec![(seq % 251) as u8; (seq % 97) as usize]
}

/// Child: append forever, printing the durable sequence after each pipelined submit.
#[test]
#[ignore = "run by crash_kill9_recovery as a child process"]
fn child_writer() {
    let Some(dir) = std::env::var_os("JOURNAL_CRASH_DIR") else { return };
    let mut o = JournalOptions::new(dir);
    o.segment_size = 256 << 10;
    o.batch_capacity = 64 << 10;
    let (mut j, rep) = Journal::open(o).unwrap();
    let mut seq = rep.next_seq;
    loop {
        for _ in 0..(seq % 300 + 1) {
            match j.append(seq, &payload(seq)) {
                Ok(s) => {
                    assert_eq!(s, seq);
                    seq += 1;
                }
                Err(castle_journal::JournalError::BatchFull { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        j.submit().unwrap();
        println!("{}", j.durable_seq());
    }
}

#[test]
fn crash_kill9_recovery() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = 0u64;
    for round in 0..8u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("JOURNAL_CRASH_DIR", d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_millis(150 + round * 97 % 400);
        let mut last = acked;
        for line in out.lines() {
            if let Ok(v) = line.unwrap().trim().parse::<u64>() {
                assert!(v >= last, "durable went backwards");
                last = v;
            }
            // Kill at a random point after the child has made some progress.
            if Instant::now() > deadline && last > acked {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(last > acked, "round {round}: child made no progress");
        acked = last;

        let mut o = JournalOptions::new(d.path());
        o.segment_size = 256 << 10;
        let (j, rep) = Journal::open(o).unwrap();
        assert!(rep.next_seq > acked, "round {round}: lost acknowledged records ({} <= {acked})", rep.next_seq);
        drop(j);
        let mut n = 0;
        for (i, r) in JournalReader::open(d.path(), 1).unwrap().enumerate() {
            let r = r.unwrap();
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(r.ts, r.seq);
            assert_eq!(r.payload, payload(r.seq));
            n += 1;
        }
        assert_eq!(n + 1, rep.next_seq);
    }
}
