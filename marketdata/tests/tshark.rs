//! Real peer: stock tshark dissects a capture of the feed as MoldUDP64 with
//! no malformed packets or expert errors, and with contiguous sequence numbers.

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::Duration;

use castle_marketdata::mold::Packet;
use castle_marketdata::pcap::PcapWriter;
use castle_marketdata::publisher::{Publisher, PublisherConfig};
use common::Run;

fn ensure_tshark() {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "tshark"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tshark is missing and `apt-get install -y tshark` failed: install the Debian package `tshark`");
}

fn tshark(pcap: &std::path::Path, port: u16, extra: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", &format!("udp.port=={port},moldudp64")])
        .args(extra)
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tshark_dissects_the_feed_as_moldudp64() {
    ensure_tshark();
    let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let port = rx.local_addr().unwrap().port();
    let mut cfg = PublisherConfig::loopback(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    cfg.heartbeat = Duration::from_millis(10);
    // Receive concurrently so the socket buffer never overflows.
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 65_536];
        while let Ok((n, from)) = rx.recv_from(&mut buf) {
            let eos = Packet::parse(&buf[..n]).is_ok_and(|p| p.header.is_end_of_session());
            got.push((from, buf[..n].to_vec()));
            if eos {
                break;
            }
        }
        got
    });
    let publisher = Publisher::start(cfg).unwrap();
    let mut run = Run::chaos(31);
    for i in 0..6_000 {
        let (ev, specs) = run.step();
        for s in specs {
            publisher.register(s).unwrap();
        }
        publisher.publish(ev).unwrap();
        if i % 300 == 0 {
            publisher.flush().unwrap();
            // An idle moment so heartbeats are in the capture too.
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    publisher.flush().unwrap();
    publisher.shutdown();

    let dir = std::env::temp_dir().join(format!("castle-md-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("feed.pcap");
    let mut w = PcapWriter::new(std::io::BufWriter::new(std::fs::File::create(&path).unwrap())).unwrap();
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let (mut frames, mut heartbeats, mut ended) = (0u64, 0u64, false);
    for (from, pkt) in receiver.join().unwrap() {
        let SocketAddr::V4(src) = from else { panic!("ipv4 only") };
        w.write_udp(1_700_000_000_000_000_000 + frames * 1_000, src, dst, &pkt).unwrap();
        frames += 1;
        let p = Packet::parse(&pkt).unwrap();
        heartbeats += p.header.is_heartbeat() as u64;
        if p.header.is_end_of_session() {
            ended = true;
            break;
        }
    }
    drop(w.into_inner());
    assert!(ended && heartbeats > 0 && frames > 100, "frames {frames} heartbeats {heartbeats} ended {ended}");

    // Every frame is MoldUDP64.
    let all = tshark(&path, port, &["-T", "fields", "-e", "frame.number"]).lines().count() as u64;
    let mold = tshark(&path, port, &["-Y", "moldudp64", "-T", "fields", "-e", "frame.number"]).lines().count() as u64;
    assert_eq!((all, mold), (frames, frames));
    // Nothing malformed, no expert warnings or errors.
    let bad = tshark(&path, port, &["-Y", "_ws.malformed || _ws.expert.severity >= warning"]);
    assert!(bad.trim().is_empty(), "tshark flagged packets:\n{bad}");
    // Contiguous sequence numbers: each packet starts where the previous one ended.
    let fields = tshark(&path, port, &["-T", "fields", "-e", "moldudp64.sequence", "-e", "moldudp64.count"]);
    let mut next = 1u64;
    let mut total = 0u64;
    for line in fields.lines() {
        let mut it = line.split('\t');
        let seq: u64 = it.next().unwrap().parse().unwrap();
        let count: u64 = it.next().unwrap().parse().unwrap();
        assert_eq!(seq, next, "sequence gap at line {line:?}");
        if count != 0xFFFF {
            next += count;
            total += count;
        }
    }
    assert!(total > 500, "only {total} messages");
    let _ = std::fs::remove_dir_all(&dir);
}
