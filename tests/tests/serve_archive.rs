//! `castle serve` archives every engine event: into `<data-dir>/archive` by
//! default (resumed exactly once across a restart), and into a Kinesis
//! stream on the moto AWS emulator with `--archive-kinesis-stream`; and
//! `castle archive` as its own process against `castle engine`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use castle_archive::testkit::{read_stream, Moto};
use castle_tests::Proc;

/// The set-up of `castle serve`: 2 instruments + 6 deposits.
const SETUP: u64 = 8;

fn serve(data: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["serve", "--fix-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0", "--data-dir", data];
    args.extend_from_slice(extra);
    let mut p = Proc::castle(&args);
    p.wait_for_line("castle is up");
    p
}

fn stop(mut p: Proc) {
    p.signal("TERM");
    p.wait_for_line("castle stopped");
    assert!(p.child.wait().unwrap().success());
}

fn cursor_seq(root: &Path) -> u64 {
    std::fs::read_to_string(root.join("CURSOR"))
        .ok()
        .and_then(|t| t.strip_prefix("seq=")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

/// Lines by seq; panics on a line that is not JSON with the archive's columns.
fn by_seq(text: &[u8]) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).expect("JSON line");
        assert_eq!(v["shard"], "a");
        assert!(v["ts_ns"].as_u64().unwrap() > 0);
        out.entry(v["seq"].as_u64().unwrap()).or_default().push(v["kind"].as_str().unwrap().to_string());
    }
    out
}

fn check_setup(lines: &BTreeMap<u64, Vec<String>>) {
    assert_eq!(lines.keys().copied().collect::<Vec<_>>(), (1..=SETUP).collect::<Vec<_>>());
    assert_eq!(lines[&1], ["instrument_added"]);
    assert_eq!(lines[&2], ["instrument_added"]);
    for seq in 3..=SETUP {
        assert_eq!(lines[&seq], ["transfer", "balance_changed"], "seq {seq}, once");
    }
}

#[test]
fn serve_archives_into_the_data_dir_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let root = dir.path().join("archive").join("stream=events");
    for run in 0..2 {
        let p = serve(&data, &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while cursor_seq(&root) < SETUP {
            assert!(Instant::now() < deadline, "run {run}: the archive did not reach seq {SETUP}");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop(p);
    }
    check_setup(&by_seq(&read_folder(&root)));
}

/// Every archive file under `root`, concatenated in name order.
fn read_folder(root: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in &files {
        all.extend(std::fs::read(f).unwrap());
    }
    all
}

#[test]
fn archive_process_follows_the_engine_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = castle_tests::durable::EngineProc::start(&dir.path().join("journal"), &["--demo"])
        .unwrap_or_else(|e| panic!("castle engine: {e:?}"));
    let data = dir.path().join("archiver");
    let data = data.to_str().unwrap();
    let root = dir.path().join("archiver").join("archive").join("stream=events");
    for run in 0..2 {
        let mut p = Proc::castle(&["archive", "--engine", &engine.addr, "--data-dir", data]);
        p.wait_for_line("castle archive is up");
        let deadline = Instant::now() + Duration::from_secs(30);
        while cursor_seq(&root) < SETUP {
            assert!(Instant::now() < deadline, "run {run}: the archive did not reach seq {SETUP}");
            std::thread::sleep(Duration::from_millis(20));
        }
        p.signal("TERM");
        p.wait_for_line("castle archive stopped");
        assert!(p.child.wait().unwrap().success());
    }
    check_setup(&by_seq(&read_folder(&root)));
}

#[test]
fn serve_archives_into_kinesis_on_the_emulator() {
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = "castle-test-events";
    // The emulator takes any credentials; castle finds these through the SDK's usual sources.
    let env = [("AWS_ACCESS_KEY_ID", "castle-test"), ("AWS_SECRET_ACCESS_KEY", "castle-test")];
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let client = rt.block_on(castle_archive::kinesis::client(Some("eu-west-1"), Some(&moto.endpoint)));
    rt.block_on(client.create_stream().stream_name(stream).shard_count(1).send()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let p = serve(
        &data,
        &["--archive-kinesis-stream", stream, "--aws-endpoint", &moto.endpoint, "--aws-region", "eu-west-1"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = by_seq(&rt.block_on(read_stream(&client, stream)));
        if lines.keys().next_back() == Some(&SETUP) {
            check_setup(&lines);
            break;
        }
        assert!(Instant::now() < deadline, "Kinesis did not receive the set-up (has {:?})", lines.keys());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(p);

    // A stream that does not exist stops the start with its name.
    let out = std::process::Command::new(castle_tests::castle_bin())
        .args(["serve", "--check", "--fix-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0", "--data-dir", &data])
        .args([
            "--archive-kinesis-stream",
            "no-such-stream",
            "--aws-endpoint",
            &moto.endpoint,
            "--aws-region",
            "eu-west-1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-stream"), "{err}");
}
