//! The gateway side of the TCP protocol, run against both front ends (io_uring and the std
//! threads): pipelined submits in bursts larger than one inbox message, acknowledgements in
//! order, a refused command, Submits pipelined right behind the Hello, a reconnect that learns
//! the last applied request and gets `Duplicate` for resends, a bad Hello, and a version-2
//! subscriber that sees every command's origin.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use castle_engine::codec::encode_command;
use castle_engine::Command;
use castle_engine_server::client::{Connection, Delivery};
use castle_engine_server::net_uring::NetChoice;
use castle_engine_server::proto::{self, AckStatus, FrameDecoder, Role, ServerFrame};
use castle_engine_server::{Config, Server};

fn deposit(i: u64) -> Command {
    Command::Deposit { account: 1 + (i % 3) as u32, asset: 2, amount: i as i64 }
}

fn acks(c: &mut Connection, n: usize) -> Vec<(u64, u64, AckStatus)> {
    (0..n)
        .map(|_| match c.recv().expect("read") {
            Some(Delivery::Ack { request, seq, status }) => (request, seq, status),
            other => panic!("expected an Ack, got {other:?}"),
        })
        .collect()
}

fn frame(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    proto::frame_header(&mut f, ty, body.len());
    f.extend_from_slice(body);
    f
}

fn submit_frame(request: u64, cmd: &Command) -> Vec<u8> {
    let mut b = request.to_le_bytes().to_vec();
    encode_command(cmd, &mut b);
    frame(proto::SUBMIT, &b)
}

/// Reads server frames from a raw socket until `n` have arrived.
fn raw_frames(s: &mut TcpStream, n: usize) -> Vec<ServerFrame> {
    let mut d = FrameDecoder::new(proto::MAX_SERVER_FRAME);
    let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
    while out.len() < n {
        while let Some((ty, body)) = d.next_frame().expect("frame") {
            out.push(proto::parse_server_frame(ty, body).expect("server frame"));
        }
        if out.len() >= n {
            break;
        }
        let k = s.read(&mut buf).expect("read (10 s timeout)");
        assert!(k > 0, "server closed after {} frames: {out:?}", out.len());
        d.extend(&buf[..k]);
    }
    out
}

fn gateway_protocol(net: NetChoice) {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::new(tmp.path().join("journal"), "127.0.0.1:0");
    cfg.net = net;
    let server = Server::start(cfg).expect("start");
    let addr = server.local_addr().expect("addr").to_string();

    let mut c = Connection::connect(&addr, Role::Gateway, 9, 0).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    assert_eq!((c.welcome.primary, c.welcome.last_request), (true, 0));
    // 1,000 submits in one burst (several inbox messages, several recvs), then the acks.
    for i in 1..=1_000 {
        c.submit(i, &deposit(i)).expect("submit");
    }
    c.flush().expect("flush");
    let got = acks(&mut c, 1_000);
    for (i, (request, seq, status)) in got.iter().enumerate() {
        assert_eq!((*request, *seq, *status), (i as u64 + 1, i as u64 + 1, AckStatus::Applied));
    }
    // A command that does not decode is refused, the connection stays.
    c.socket().write_all(&frame(proto::SUBMIT, &[77, 0, 0, 0, 0, 0, 0, 0, 0xff])).expect("bad submit");
    assert_eq!(acks(&mut c, 1), vec![(77, 0, AckStatus::Invalid)]);
    drop(c);

    // Reconnect: the Welcome says what was applied; resends are Duplicate, the next is applied.
    let mut c = Connection::connect(&addr, Role::Gateway, 9, 0).expect("reconnect");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    assert_eq!((c.welcome.last_request, c.welcome.last_request_seq), (1_000, 1_000));
    for i in [999, 1_000, 1_001] {
        c.submit(i, &deposit(i)).expect("submit");
    }
    c.flush().expect("flush");
    assert_eq!(
        acks(&mut c, 3),
        // A Duplicate carries the seq of the gateway's last applied request.
        vec![
            (999, 1_000, AckStatus::Duplicate),
            (1_000, 1_000, AckStatus::Duplicate),
            (1_001, 1_001, AckStatus::Applied)
        ]
    );
    drop(c);

    // Hello and Submits in one write, before the Welcome.
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut burst = frame(proto::HELLO, &proto::hello(Role::Gateway, 10, 0));
    burst.extend(submit_frame(1, &deposit(1)));
    burst.extend(submit_frame(2, &deposit(2)));
    s.write_all(&burst).expect("write");
    let f = raw_frames(&mut s, 3);
    assert!(matches!(f[0], ServerFrame::Welcome { last_request: 0, .. }), "{f:?}");
    assert_eq!(f[1], ServerFrame::Ack { request: 1, seq: 1_002, status: AckStatus::Applied });
    assert_eq!(f[2], ServerFrame::Ack { request: 2, seq: 1_003, status: AckStatus::Applied });

    // Anything but a Hello first: Goodbye(ProtocolError) and the connection closes.
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(&submit_frame(1, &deposit(1))).expect("write");
    let f = raw_frames(&mut s, 1);
    assert!(matches!(f[0], ServerFrame::Goodbye { reason: 1, .. }), "{f:?}");

    // A version-2 subscriber: every command's origin.
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(&frame(proto::HELLO, &proto::hello_v(Role::Subscriber, 0, 998, 2))).expect("hello");
    let f = raw_frames(&mut s, 6);
    let origins: Vec<_> = f[1..]
        .iter()
        .map(|x| match x {
            ServerFrame::Events { seq, origin: Some(o), .. } => (*seq, o.gateway, o.request),
            other => panic!("expected Events2 with an origin, got {other:?}"),
        })
        .collect();
    assert_eq!(origins, vec![(999, 9, 999), (1_000, 9, 1_000), (1_001, 9, 1_001), (1_002, 10, 1), (1_003, 10, 2)]);
    server.shutdown().expect("shutdown");
}

#[test]
fn gateway_protocol_io_uring_front_end() {
    gateway_protocol(NetChoice::IoUring);
}

#[test]
fn gateway_protocol_std_front_end() {
    gateway_protocol(NetChoice::Std);
}

/// A sequencer inbox of one message: the front end must hold what it read (io_uring: and stop
/// reading) until there is room, never drop or reorder a command.
fn backpressure(net: NetChoice) {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::new(tmp.path().join("journal"), "127.0.0.1:0");
    cfg.net = net;
    cfg.inbox_capacity = 1;
    let server = Server::start(cfg).expect("start");
    let addr = server.local_addr().expect("addr").to_string();
    let mut gateways: Vec<Connection> = (0..3)
        .map(|g| {
            let c = Connection::connect(&addr, Role::Gateway, 20 + g, 0).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
            c
        })
        .collect();
    for c in gateways.iter_mut() {
        for i in 1..=3_000 {
            c.submit(i, &deposit(i)).expect("submit");
        }
        c.flush().expect("flush");
    }
    let mut seqs = Vec::new();
    for c in gateways.iter_mut() {
        for (i, (request, seq, status)) in acks(c, 3_000).into_iter().enumerate() {
            assert_eq!((request, status), (i as u64 + 1, AckStatus::Applied), "in request order, all applied");
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=9_000).collect::<Vec<_>>(), "every command applied exactly once");
    server.shutdown().expect("shutdown");
}

#[test]
fn backpressure_io_uring_front_end() {
    backpressure(NetChoice::IoUring);
}

#[test]
fn backpressure_std_front_end() {
    backpressure(NetChoice::Std);
}
