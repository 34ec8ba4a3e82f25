//! The TCP front ends' limits, on both front ends (io_uring and the std threads): a connection
//! that says no Hello within `Config::hello_timeout` gets `Goodbye(ProtocolError)` and is closed
//! while one that said Hello stays served; a connection beyond `Config::max_connections` gets
//! `Goodbye(Unavailable, "too many connections")` and is closed, and once a connection has
//! closed a new one is served again. No sleeps as synchronisation: reads block with a timeout,
//! and the one asynchronous step (the server noticing a close) is polled with a deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use castle_engine::codec::encode_command;
use castle_engine::Command;
use castle_engine_server::net_uring::NetChoice;
use castle_engine_server::proto::{self, AckStatus, FrameDecoder, GoodbyeReason, Role, ServerFrame};
use castle_engine_server::{Config, Server};

fn frame(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    proto::frame_header(&mut f, ty, body.len());
    f.extend_from_slice(body);
    f
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s
}

/// Every frame the server sends until it closes the connection.
fn frames_until_closed(s: &mut TcpStream) -> Vec<ServerFrame> {
    let mut d = FrameDecoder::new(proto::MAX_SERVER_FRAME);
    let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => d.extend(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no close within the read timeout: {e} (frames so far: {out:?})"),
        }
        while let Some((ty, body)) = d.next_frame().expect("frame") {
            out.push(proto::parse_server_frame(ty, body).expect("server frame"));
        }
    }
    out
}

/// The next frame (blocking with the socket's read timeout).
fn next_frame(s: &mut TcpStream) -> ServerFrame {
    let mut buf = Vec::new();
    let ty = proto::read_frame(s, &mut buf, proto::MAX_SERVER_FRAME).expect("read").expect("a frame, not a close");
    proto::parse_server_frame(ty, &buf).expect("server frame")
}

fn hello_gateway(addr: &str, gateway: u32) -> (TcpStream, ServerFrame) {
    let mut s = connect(addr);
    s.write_all(&frame(proto::HELLO, &proto::hello(Role::Gateway, gateway, 0))).expect("hello");
    let f = next_frame(&mut s);
    (s, f)
}

fn deposit_applies(s: &mut TcpStream, request: u64) {
    let mut b = request.to_le_bytes().to_vec();
    encode_command(&Command::Deposit { account: 1, asset: 2, amount: 5 }, &mut b);
    s.write_all(&frame(proto::SUBMIT, &b)).expect("submit");
    match next_frame(s) {
        ServerFrame::Ack { request: r, status: AckStatus::Applied, .. } if r == request => {}
        other => panic!("expected the Applied ack of {request}, got {other:?}"),
    }
}

fn start(net: NetChoice, dir: &std::path::Path, tune: impl FnOnce(&mut Config)) -> (Server, String) {
    let mut cfg = Config::new(dir.join("journal"), "127.0.0.1:0");
    cfg.net = net;
    tune(&mut cfg);
    let server = Server::start(cfg).expect("server");
    let addr = server.local_addr().expect("tcp").to_string();
    (server, addr)
}

fn hello_timeout(net: NetChoice) {
    let tmp = tempfile::tempdir().expect("tmp");
    // The good connection below must get its Hello in within this limit of connecting: short
    // enough to keep the test quick, and far beyond the time a loaded 2-core machine may leave
    // the test thread unscheduled between its connect and its write (300 ms had little margin).
    let limit = Duration::from_secs(2);
    let (server, addr) = start(net, tmp.path(), |c| c.hello_timeout = limit);
    let t0 = Instant::now();
    let mut silent = connect(&addr);
    let (mut good, welcome) = hello_gateway(&addr, 7);
    assert!(matches!(welcome, ServerFrame::Welcome { .. }), "{welcome:?}");

    let frames = frames_until_closed(&mut silent);
    let waited = t0.elapsed();
    assert!(waited >= limit, "closed after {waited:?}, before the Hello timeout of {limit:?}");
    assert!(
        matches!(&frames[..], [ServerFrame::Goodbye { reason, text, .. }]
            if *reason == GoodbyeReason::ProtocolError as u8 && text.contains("Hello")),
        "{net:?}: expected one Goodbye(ProtocolError) about the Hello, got {frames:?}"
    );
    // The connection that said Hello in time is served past the limit.
    deposit_applies(&mut good, 1);
    server.shutdown().expect("shutdown");
}

fn too_many_connections(net: NetChoice) {
    let tmp = tempfile::tempdir().expect("tmp");
    let (server, addr) = start(net, tmp.path(), |c| c.max_connections = 2);
    let (a, wa) = hello_gateway(&addr, 1);
    let (mut b, wb) = hello_gateway(&addr, 2);
    assert!(matches!((&wa, &wb), (ServerFrame::Welcome { .. }, ServerFrame::Welcome { .. })), "{wa:?} {wb:?}");

    let mut third = connect(&addr);
    let frames = frames_until_closed(&mut third);
    assert!(
        matches!(&frames[..], [ServerFrame::Goodbye { reason, text, .. }]
            if *reason == GoodbyeReason::Unavailable as u8 && text == "too many connections"),
        "{net:?}: expected one Goodbye(Unavailable, too many connections), got {frames:?}"
    );
    assert_eq!(server.connections(), 2, "the refused connection is not counted");

    // One closes: once the server has noticed, a new connection is served.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = loop {
        let mut s = connect(&addr);
        s.write_all(&frame(proto::HELLO, &proto::hello(Role::Gateway, 3, 0))).expect("hello");
        let mut buf = Vec::new();
        // A refused connection may close before it reads the Hello: a reset is a refusal too.
        match proto::read_frame(&mut s, &mut buf, proto::MAX_SERVER_FRAME) {
            Ok(Some(ty)) => match proto::parse_server_frame(ty, &buf).expect("server frame") {
                ServerFrame::Welcome { .. } => break s,
                ServerFrame::Goodbye { reason, .. } if reason == GoodbyeReason::Unavailable as u8 => {}
                other => panic!("expected a Welcome or a refusal, got {other:?}"),
            },
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("reading the answer to a Hello: {e}"),
        }
        assert!(Instant::now() < deadline, "{net:?}: no connection served again after one closed");
        std::thread::sleep(Duration::from_millis(10));
    };
    deposit_applies(&mut c, 1);
    deposit_applies(&mut b, 1);
    server.shutdown().expect("shutdown");
}

#[test]
fn hello_timeout_io_uring_front_end() {
    hello_timeout(NetChoice::IoUring);
}

#[test]
fn hello_timeout_std_front_end() {
    hello_timeout(NetChoice::Std);
}

#[test]
fn too_many_connections_io_uring_front_end() {
    too_many_connections(NetChoice::IoUring);
}

#[test]
fn too_many_connections_std_front_end() {
    too_many_connections(NetChoice::Std);
}
