//! `castle engine` as the engine AMI's systemd unit runs it: no flags, every
//! setting from `CASTLE_*` environment variables (infra/terraform writes them
//! to /etc/castle/engine.env), with Prometheus metrics and the /live and
//! /ready probes the load balancers and operators use.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use castle_tests::{castle_bin, Proc};

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: castle\r\nConnection: close\r\n\r\n").as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    out
}

fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn engine_runs_from_the_environment_with_metrics_and_probes() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let mut child = Command::new(castle_bin())
        .arg("engine")
        .env("CASTLE_JOURNAL_DIR", &journal)
        .env("CASTLE_LISTEN", "127.0.0.1:0")
        .env("CASTLE_METRICS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn castle engine");
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut engine = Proc { child, stdout };
    let listening = engine.wait_for_line("castle engine listening on");
    assert!(listening.contains("127.0.0.1:"), "{listening}");
    let line = engine.wait_for_line("castle engine metrics on http://");
    let addr = line.rsplit("http://").next().unwrap().trim_end_matches("/metrics").to_string();
    assert!(journal.is_dir(), "the journal directory comes from CASTLE_JOURNAL_DIR");

    assert!(http_get(&addr, "/live").starts_with("HTTP/1.1 200"));
    assert!(http_get(&addr, "/ready").starts_with("HTTP/1.1 200"));
    // The gauges appear once the main loop has read the engine's status.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = http_get(&addr, "/metrics");
        if gauge(&text, "castle_engine_seq").is_some() {
            break text;
        }
        assert!(Instant::now() < deadline, "no castle_engine_seq in {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("# TYPE castle_engine_seq gauge"), "{text}");
    assert_eq!(gauge(&text, "castle_engine_primary"), Some(1), "{text}");
    assert!(gauge(&text, "castle_engine_epoch").is_some(), "{text}");
    assert!(http_get(&addr, "/nope").starts_with("HTTP/1.1 404"));

    engine.signal("TERM");
    let status = engine.child.wait().unwrap();
    assert!(status.success(), "castle engine exits cleanly on SIGTERM: {status}");
}
