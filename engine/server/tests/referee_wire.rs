//! `castle referee`'s transport ([`castle_engine_server::referee::serve`]) on loopback: a
//! malformed request gets a refusal frame and the same connection goes on; a frame whose length
//! breaks the framing gets a refusal and the connection is closed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use castle_engine_server::proto;
use castle_engine_server::referee::{self, encode_request, parse_response, Request, Response, MAX_FRAME};

fn read_response(s: &mut TcpStream) -> Option<Response> {
    let mut buf = Vec::new();
    let ty = proto::read_frame(s, &mut buf, MAX_FRAME).expect("read a response")?;
    Some(parse_response(ty, &buf).expect("a response frame"))
}

#[test]
fn malformed_requests_are_refused_with_a_frame_and_the_connection_goes_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let (state, flag) = (tmp.path().join("referee.state"), stop.clone());
    let server = std::thread::spawn(move || referee::serve(listener, &state, 2_000, flag));

    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    // Node 0 is reserved: refused, nothing decided.
    s.write_all(&encode_request(&Request::Lease { node: 0, epoch: 1, addr: String::new() })).expect("write");
    assert_eq!(read_response(&mut s), Some(Response::Refused { code: 4 }));
    // An unknown request type, then a good request on the same connection: granted.
    let lease = Request::Lease { node: 1, epoch: 1, addr: "127.0.0.1:7400".into() };
    let mut unknown = encode_request(&lease);
    unknown[4] = 0x7f;
    s.write_all(&unknown).expect("write");
    assert_eq!(read_response(&mut s), Some(Response::Refused { code: 1 }));
    s.write_all(&encode_request(&lease)).expect("write");
    assert_eq!(read_response(&mut s), Some(Response::Granted { epoch: 1, lease_ms: 2_000 }));
    // A length the framing cannot skip: refused, then the referee closes the connection.
    s.write_all(&(MAX_FRAME as u32 + 1).to_le_bytes()).expect("write");
    assert_eq!(read_response(&mut s), Some(Response::Refused { code: 6 }));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("closed by the referee");
    assert!(rest.is_empty(), "nothing after a closing refusal: {rest:?}");
    // The client side reports a refusal as an error naming it.
    let err = referee::call(
        &addr.to_string(),
        &Request::Lease { node: 0, epoch: 1, addr: String::new() },
        Duration::from_secs(30),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("node id 0"), "{err}");

    stop.store(true, Ordering::SeqCst);
    server.join().expect("referee thread").expect("referee served");
}

/// Polls `what` until it holds, failing with `msg` after `secs`.
fn wait_until(secs: u64, msg: &str, mut what: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !what() {
        assert!(std::time::Instant::now() < deadline, "{msg}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_lease_gauge_shows_the_lease_held_then_run_out_and_none_without_a_referee() {
    use castle_engine_server::{Config, Server};
    let tmp = tempfile::tempdir().expect("tmp");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let raddr = listener.local_addr().expect("addr").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (state, flag) = (tmp.path().join("referee.state"), stop.clone());
    let referee_thread = std::thread::spawn(move || referee::serve(listener, &state, 2_000, flag));

    let mut cfg = Config::new(tmp.path().join("node"), "127.0.0.1:0");
    cfg.referee = Some(referee::NodeConfig { referee: raddr, node: 1, advertise: String::new() });
    let node = Server::start(cfg).expect("node");
    let gauge = node.lease_gauge();
    wait_until(30, "the lease was never shown as held", || gauge.remaining_ms().is_some_and(|ms| ms > 0));
    assert!(gauge.remaining_ms().expect("a referee is configured") <= 2_000, "never more than one lease");
    // The referee goes away: the lease runs out on the node's own count.
    stop.store(true, Ordering::SeqCst);
    referee_thread.join().expect("referee thread").expect("referee served");
    wait_until(30, "the lease never ran out", || gauge.remaining_ms() == Some(0));
    node.shutdown().expect("node shutdown");

    let alone = Server::start(Config::new(tmp.path().join("alone"), "127.0.0.1:0")).expect("single node");
    assert_eq!(alone.lease_gauge().remaining_ms(), None, "no referee: no lease to run out");
    alone.shutdown().expect("shutdown");
}
