//! `castle engine` as a separate process: kill -9 under load, journal damage, subscriber
//! resume, hot standby and promotion. Needs the castle binary (`cargo build -p castle`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use castle_engine::workload::Rng;
use castle_tests::durable::{commands, journal_requests, pump, replay, subscribe, EngineProc};

const GATEWAY: u32 = 7;

fn segment(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("journal dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.to_string_lossy().contains("stderr") && p.extension().is_some_and(|e| e != "tmp"))
        .collect();
    v.sort();
    v.pop().expect("a journal segment")
}

/// Offset just past the last non-zero byte of a (pre-allocated, zero-filled) segment.
fn data_end(path: &Path) -> u64 {
    let mut b = Vec::new();
    std::fs::File::open(path).expect("open").read_to_end(&mut b).expect("read");
    b.iter().rposition(|&x| x != 0).map_or(0, |i| i as u64 + 1)
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).expect("open segment");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("sync");
}

/// Loads a fresh journal with `n` commands through a gateway; returns the final seq.
fn load(dir: &Path, n: usize, extra: &[&str]) -> u64 {
    let e = EngineProc::start(dir, extra).unwrap_or_else(|x| panic!("engine did not start: {x:?}"));
    let cmds = commands(11, n);
    let acks = pump(&e.addr, GATEWAY, &cmds, 1, 256, Instant::now() + Duration::from_secs(120));
    assert_eq!(acks.applied.len(), n, "every command acknowledged");
    let (_, _, seq, _) = e.status();
    e.kill9();
    seq
}

#[test]
fn kill_dash_nine_under_load_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("journal");
    let cmds = commands(5, 200_000);
    let mut rng = Rng::new(0xC0FFEE);
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new(); // request -> seq
    let mut next_request = 1u64;
    let rounds = 8;
    for round in 0..rounds {
        let e = EngineProc::start(&dir, &["--snapshot-every", "3000"])
            .unwrap_or_else(|x| panic!("round {round}: engine refused to restart: {x:?}"));
        // What survived must include every acknowledged request.
        let w = castle_engine_server::client::Connection::connect(
            &e.addr,
            castle_engine_server::proto::Role::Gateway,
            GATEWAY,
            0,
        )
        .expect("gateway hello");
        let last = w.welcome.last_request;
        drop(w);
        if let Some((&max_acked, _)) = acked.iter().next_back() {
            assert!(
                last >= max_acked,
                "round {round}: request {max_acked} was acknowledged but the engine only has {last}"
            );
        }
        // Resend the tail of what was applied: must come back Duplicate, never applied twice.
        let from = last.saturating_sub(3).max(1);
        let resent = pump(&e.addr, GATEWAY, &cmds[..last as usize], from, 8, Instant::now() + Duration::from_secs(30));
        assert!(resent.applied.is_empty(), "round {round}: resent requests applied again: {:?}", resent.applied);
        next_request = last + 1;
        // Steady load, then kill -9 at a seeded random moment.
        let kill_after = Duration::from_millis(100 + rng.below(700));
        let addr = e.addr.clone();
        let cmds2 = cmds.clone();
        let from = next_request;
        let loader = std::thread::spawn(move || {
            pump(&addr, GATEWAY, &cmds2, from, 512, Instant::now() + Duration::from_secs(60))
        });
        std::thread::sleep(kill_after);
        e.kill9();
        let acks = loader.join().expect("loader");
        for (req, seq) in acks.applied {
            assert!(acked.insert(req, seq).is_none(), "request {req} acknowledged twice");
        }
        eprintln!("round {round}: killed after {kill_after:?}, {} requests acknowledged in total", acked.len());
    }
    assert!(acked.len() > 1_000, "the load was too light to prove anything: {} acks", acked.len());
    // Recovery once more, then compare with a from-scratch replay of the same journal.
    let e = EngineProc::start(&dir, &[]).expect("final restart");
    let (_, _, seq, hash) = e.status();
    e.kill9();
    let (rseq, rhash) = replay(&dir);
    assert_eq!((rseq, &rhash), (seq, &hash), "recovered state differs from a from-scratch replay");
    // Every acknowledged request is in the journal exactly once, at the seq it was acknowledged with.
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for (s, g, req) in journal_requests(&dir) {
        if g == GATEWAY {
            assert!(seen.insert(req, s).is_none(), "request {req} journaled twice");
        }
    }
    for (req, s) in &acked {
        assert_eq!(seen.get(req), Some(s), "acknowledged request {req} (seq {s}) missing or moved");
    }
    let _ = next_request;
}

#[test]
fn torn_tail_is_truncated_and_logged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("journal");
    let seq = load(&dir, 2_000, &[]);
    let seg = segment(&dir);
    let end = data_end(&seg);
    // Garbage over the end of the last record, as a torn write leaves it.
    write_at(&seg, end - 7, &[0xAB; 7]);
    let e = EngineProc::start(&dir, &[]).expect("a torn tail must not stop the engine");
    let (_, _, after, hash) = e.status();
    assert_eq!(after, seq - 1, "exactly the torn record is dropped");
    assert!(e.stderr().contains("truncat"), "truncation is logged: {}", e.stderr());
    e.kill9();
    assert_eq!(replay(&dir), (after, hash));
}

#[test]
fn flipped_byte_in_the_middle_refuses_to_start_unless_told_to_truncate() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("journal");
    let seq = load(&dir, 3_000, &[]);
    let seg = segment(&dir);
    let mid = data_end(&seg) / 2;
    let mut b = [0u8; 1];
    std::fs::File::open(&seg)
        .and_then(|mut f| f.seek(SeekFrom::Start(mid)).and_then(|_| f.read_exact(&mut b)))
        .expect("read");
    write_at(&seg, mid, &[b[0] ^ 0x10]);
    let refused = EngineProc::start(&dir, &[]).err().expect("must refuse to start");
    assert!(!refused.success);
    let name = seg.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(refused.stderr.contains(name), "error names the file: {}", refused.stderr);
    assert!(refused.stderr.contains("offset"), "error names the offset: {}", refused.stderr);
    assert!(refused.stderr.contains("--truncate-corrupt"), "error says how to proceed: {}", refused.stderr);
    let e = EngineProc::start(&dir, &["--truncate-corrupt"]).expect("starts when told to truncate");
    let (_, _, after, hash) = e.status();
    assert!(after < seq && after > 0, "kept the records before the damage: {after} of {seq}");
    e.kill9();
    assert_eq!(replay(&dir), (after, hash));
}

#[test]
fn subscriber_resuming_from_n_sees_exactly_what_an_uninterrupted_one_sees() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("journal");
    // A small ring and frequent snapshots: old resumes are served by replay from a snapshot.
    let e = EngineProc::start(&dir, &["--ring", "256", "--snapshot-every", "700"]).expect("start");
    let cmds = commands(3, 5_000);
    let acks = pump(&e.addr, GATEWAY, &cmds, 1, 256, Instant::now() + Duration::from_secs(120));
    assert_eq!(acks.applied.len(), cmds.len());
    let (_, _, end, _) = e.status();
    let whole = subscribe(&e.addr, 0, end);
    assert!(whole.iter().map(|(_, ev)| ev.len()).sum::<usize>() > cmds.len(), "events flowed");
    let mut rng = Rng::new(42);
    for _ in 0..6 {
        let cut = rng.below(end);
        let mut pieced = subscribe(&e.addr, 0, cut);
        pieced.extend(subscribe(&e.addr, cut, end));
        assert!(pieced == whole, "resume from {cut} differs from the uninterrupted stream");
    }
    // Live: a subscriber attached before more load follows it to the end.
    let addr = e.addr.clone();
    let live = std::thread::spawn(move || subscribe(&addr, end, end + 500));
    let more = commands(4, 500);
    let acks = pump(&e.addr, GATEWAY + 1, &more, 1, 64, Instant::now() + Duration::from_secs(60));
    assert_eq!(acks.applied.len(), 500);
    let live = live.join().expect("live subscriber");
    assert_eq!(live, subscribe(&e.addr, end, end + 500));
}

#[test]
fn standby_matches_primary_and_takes_over_without_a_gap() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = EngineProc::start(&tmp.path().join("primary"), &[]).expect("primary");
    let s = EngineProc::start(&tmp.path().join("standby"), &["--follow", &p.addr]).expect("standby");
    let cmds = commands(9, 6_000);
    let acks = pump(&p.addr, GATEWAY, &cmds[..4_000], 1, 256, Instant::now() + Duration::from_secs(120));
    assert_eq!(acks.applied.len(), 4_000);
    let (primary, epoch, pseq, phash) = p.status();
    assert!(primary && epoch == 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (sp, _, sseq, shash) = s.status();
        assert!(!sp, "standby claims to be primary");
        if sseq == pseq {
            assert_eq!(shash, phash, "same seq, different state");
            break;
        }
        assert!(Instant::now() < deadline, "standby stuck at {sseq}, primary at {pseq}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Orders sent to a standby are refused, not applied.
    let refused = castle_engine_server::client::Connection::connect(
        &s.addr,
        castle_engine_server::proto::Role::Gateway,
        GATEWAY,
        0,
    )
    .expect("gateway to standby");
    assert!(!refused.welcome.primary);
    drop(refused);
    p.kill9();
    let (primary, epoch, seq, _) = castle_engine_server::client::status(&s.addr).expect("status");
    assert!(!primary);
    let (primary, new_epoch, promoted_seq, _) = castle_engine_server::client::promote(&s.addr).expect("promote");
    assert!(primary && new_epoch == epoch + 1, "promotion bumps the epoch");
    assert_eq!(promoted_seq, seq + 1, "the promotion marker takes the next seq");
    // The gateway learns what was applied (the dedup index was replicated) and continues.
    let acks = pump(&s.addr, GATEWAY, &cmds, 4_001, 256, Instant::now() + Duration::from_secs(120));
    assert_eq!(acks.applied.len(), 2_000);
    let seqs: Vec<u64> = acks.applied.iter().map(|&(_, s)| s).collect();
    assert_eq!(seqs, (promoted_seq + 1..=promoted_seq + 2_000).collect::<Vec<_>>(), "no gap in sequence numbers");
    let (_, _, fseq, fhash) = s.status();
    s.kill9();
    assert_eq!(
        replay(&tmp.path().join("standby")),
        (fseq, fhash.clone()),
        "the standby's own journal replays to its state"
    );

    // Fencing: the deposed primary comes back (epoch 1, it never saw the promotion). A node that
    // has seen epoch 2 (the promoted journal) refuses to follow it, so its stale stream cannot
    // reach anyone who knows better: the node keeps its own state.
    let old = EngineProc::start(&tmp.path().join("primary"), &[]).expect("deposed primary restarts");
    let (old_primary, old_epoch, _, _) = old.status();
    assert!(old_primary && old_epoch == 1, "the deposed primary only knows epoch 1");
    let f = EngineProc::start(&tmp.path().join("standby"), &["--follow", &old.addr]).expect("fenced standby");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&f.stderr_path).unwrap_or_default().contains("fenced, not following") {
        assert!(Instant::now() < deadline, "the epoch-2 node did not refuse the epoch-1 primary");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (fp, fepoch, seq_after, hash_after) = f.status();
    assert!(!fp && fepoch == new_epoch, "still a standby at epoch {new_epoch}: {fp} {fepoch}");
    assert_eq!((seq_after, hash_after), (fseq, fhash), "nothing of the stale primary was applied");
}
