//! `RemoteLink`, the gateway's engine link over TCP: events come with their origin, a cut
//! connection is resumed (submissions and the stream) without a lost, doubled or reordered
//! request or event, and a restarted gateway numbers its requests after the engine's last.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use castle_engine::{Command, EventKind, InstrumentSpec};
use castle_engine_server::net_uring::NetChoice;
use castle_engine_server::{Config, RemoteConfig, RemoteLink, Server};
use castle_link::{EngineBatch, EngineLink, EngineRequest, LinkError, Origin};

const GW: u32 = 7;

/// A TCP proxy between the link and the engine whose connections the test can cut.
struct Proxy {
    addr: String,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = l.local_addr().expect("addr").to_string();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                {
                    let mut c = c2.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
        });
        Proxy { addr, conns, stop }
    }

    /// Cuts every connection made so far (both directions, at once).
    fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(&self.addr);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

fn submit(link: &RemoteLink, request: u64, command: Command) {
    let req = EngineRequest { origin: Origin { gateway: GW, request }, command };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match link.submit(req) {
            Ok(()) => return,
            Err(LinkError::Busy) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("submit {request}: {e}"),
        }
    }
}

/// Receives batches until one with `seq >= until` (panics at the deadline).
fn collect(rx: &mut tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, until: u64, out: &mut Vec<Arc<EngineBatch>>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.last().map_or(0, |b| b.seq) < until {
        match rx.try_recv() {
            Ok(b) => out.push(b),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(
                    Instant::now() < deadline,
                    "stream stuck at {:?} waiting for {until}",
                    out.last().map(|b| b.seq)
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("stream ended: {e}"),
        }
    }
}

fn deposit(amount: i64) -> Command {
    Command::Deposit { account: 1, asset: 2, amount }
}

#[test]
fn remote_link_resumes_after_cuts_io_uring_front_end() {
    resumes_after_cuts(NetChoice::IoUring);
}

#[test]
fn remote_link_resumes_after_cuts_std_front_end() {
    resumes_after_cuts(NetChoice::Std);
}

fn resumes_after_cuts(net: NetChoice) {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::new(tmp.path().join("journal"), "127.0.0.1:0");
    cfg.net = net;
    let server = Server::start(cfg).expect("start");
    let addr = server.local_addr().expect("addr").to_string();
    let proxy = Proxy::start(addr.clone());
    let link = RemoteLink::connect(RemoteConfig::new(proxy.addr.clone(), GW)).expect("connect");
    assert_eq!(link.instruments(), vec![], "nothing listed yet");
    assert_eq!(link.first_request(GW), 1);
    let mut rx = link.subscribe_after(0, 64).expect("subscribe");

    submit(&link, 1, Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)));
    let mut got = Vec::new();
    collect(&mut rx, 1, &mut got);
    assert_eq!(got[0].origin, Some(Origin { gateway: GW, request: 1 }), "Events2 carries the origin");
    assert!(got[0].events.iter().any(|e| matches!(e.kind, EventKind::InstrumentAdded { instrument: 0 })));
    // The subscription saw InstrumentAdded: the list is asked again.
    assert_eq!(link.instruments().len(), 1);

    // Three rounds: submit, cut every connection (gateway and stream) mid-flight, submit more.
    let mut request = 1;
    for round in 0..3 {
        for _ in 0..300 {
            request += 1;
            submit(&link, request, deposit(request as i64));
        }
        proxy.cut();
        for _ in 0..300 {
            request += 1;
            submit(&link, request, deposit(request as i64));
        }
        assert!(link.flush(Duration::from_secs(60)), "round {round}: requests still unacknowledged");
    }
    collect(&mut rx, request, &mut got);
    // Every seq once, in order, and every request exactly once, with its own origin.
    let seqs: Vec<u64> = got.iter().map(|b| b.seq).collect();
    assert_eq!(seqs, (1..=request).collect::<Vec<_>>(), "stream with a gap, a repeat or a reorder");
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for b in &got {
        let o = b.origin.expect("every command here came from the gateway");
        assert_eq!(o.gateway, GW);
        assert!(seen.insert(o.request, b.seq).is_none(), "request {} applied twice", o.request);
    }
    assert_eq!(seen.len() as u64, request);
    assert!(link.stats().connects.load(Ordering::Relaxed) >= 4, "the link reconnected after each cut");
    assert_eq!(link.last_seq(), Some(request));

    // A new link for the same gateway (a restarted gateway process) numbers after the engine's last.
    drop(rx);
    drop(link);
    let again = RemoteLink::connect(RemoteConfig::new(addr, GW)).expect("reconnect");
    assert_eq!(again.first_request(GW), request + 1);
    assert_eq!(again.instruments().len(), 1, "the instrument list is fetched at connect");
    // A resend of an old request is not applied again; a fresh one is.
    submit(&again, request, deposit(1));
    submit(&again, request + 1, deposit(1));
    assert!(again.flush(Duration::from_secs(30)));
    assert_eq!(again.stats().duplicates.load(Ordering::Relaxed), 1);
    assert_eq!(again.last_seq(), Some(request + 1));
    drop(again);
    drop(proxy);
    server.shutdown().expect("shutdown");
}
