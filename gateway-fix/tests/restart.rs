//! Gateway restarts against the same engine: the order view is rebuilt from
//! the engine stream, fills made while the gateway was down are reported,
//! and an order caught between the FIX store and the engine is recovered by
//! the client's resend.

mod common;

use castle_engine::{ClientOrderId, Command, NewOrder, OrderSize, OrderType, Side, TimeInForce};
use castle_gateway_fix::{serve, Config, EngineBatch, EngineLink, EngineRequest, InProcessEngine, LinkError, Origin};
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const T: &str = "60=20240101-00:00:00";

fn order(cl: &str, price: &str) -> String {
    format!("D|11={cl}|55=BTC-USDT|54=1|{T}|38=0.5|40=2|44={price}|59=1")
}

/// Reconnect DESK with its next MsgSeqNum; `expected` is the next number the
/// client expects from us. Messages stored while it was away are recovered
/// with a ResendRequest, as a FIX engine does when our Logon is too high.
async fn reconnect(addr: std::net::SocketAddr, next: u64, expected: u64) -> Client<TcpStream> {
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK", "CASTLE");
    c.seq = next;
    let logon = c.logon("|553=desk|554=pw").await;
    let theirs: u64 = get(&logon, 34).unwrap().parse().unwrap();
    if theirs > expected {
        c.send(&format!("2|7={expected}|16=0")).await;
    }
    c
}

/// Next execution report with ClOrdID `cl` (others, e.g. resent older ones, skipped).
async fn er_for(c: &mut Client<TcpStream>, cl: &str) -> Fields {
    loop {
        let f = c.recv_type("8").await;
        if get(&f, 11) == Some(cl) {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_orders_and_reports_fills_made_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let eng = engine();
    let text = config_text(dir.path(), "ListenAddress=127.0.0.1:0");
    let server = serve(Config::parse(&text).unwrap(), eng.clone()).await.unwrap();
    let mut c = Client::new(TcpStream::connect(server.local_addr().unwrap()).await.unwrap(), "DESK", "CASTLE");
    c.logon("|553=desk|554=pw").await;
    c.send(&order("O1", "59000")).await;
    assert_eq!(get(&er_for(&mut c, "O1").await, 150), Some("0"));
    c.send(&order("O2", "58000")).await;
    let er2 = er_for(&mut c, "O2").await;
    let expected = get(&er2, 34).unwrap().parse::<u64>().unwrap() + 1;
    server.shutdown().await;

    // While the gateway is down, account 8 sells 0.2 into O1 through another gateway.
    let mut stream = eng.subscribe(64).unwrap();
    let sc = eng.instruments()[0].scaling;
    let dec = |v: &str| rust_decimal::Decimal::from_str_exact(v).unwrap();
    let sell = NewOrder {
        account: 8,
        instrument: 0,
        client_order_id: ClientOrderId::new("S1").unwrap(),
        side: Side::Sell,
        order_type: OrderType::Limit { price: sc.price_to_ticks(dec("59000")).unwrap() },
        size: OrderSize::Base(sc.qty_to_lots(dec("0.2")).unwrap()),
        tif: TimeInForce::Ioc,
        post_only: false,
        display_qty: 0,
        stp: None,
    };
    let origin = Origin { gateway: 99, request: 1 };
    eng.submit(EngineRequest { origin, command: Command::PlaceOrder(sell) }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let b = tokio::time::timeout_at(deadline.into(), stream.recv()).await.expect("sell applied").unwrap();
        if b.origin == Some(origin) {
            assert!(
                b.events.iter().any(|e| matches!(e.kind, castle_engine::EventKind::Trade { .. })),
                "the sell trades: {:?}",
                b.events
            );
            break;
        }
    }

    let server = serve(Config::parse(&text).unwrap(), eng.clone()).await.unwrap();
    let mut c = reconnect(server.local_addr().unwrap(), c.seq, expected).await;
    // The fill made while the gateway was down is reported (live or resent).
    let fill = er_for(&mut c, "O1").await;
    assert_eq!(
        (get(&fill, 150), get(&fill, 39), get(&fill, 14), get(&fill, 151), get(&fill, 31)),
        (Some("F"), Some("1"), Some("0.2"), Some("0.3"), Some("59000")),
        "{fill:?}"
    );

    // Order status by ClOrdID of an order placed before the restart.
    c.send("H|11=O1|55=BTC-USDT|54=1").await;
    let st = er_for(&mut c, "O1").await;
    assert_eq!((get(&st, 150), get(&st, 39), get(&st, 14)), (Some("I"), Some("1"), Some("0.2")), "{st:?}");

    // Both orders are open for the session.
    c.send("AF|584=M1|585=7").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = c.recv_type("8").await;
        assert_eq!((get(&r, 584), get(&r, 911)), (Some("M1"), Some("2")), "{r:?}");
        seen.push(get(&r, 11).unwrap().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["O1", "O2"]);

    // Cancel and replace by ClOrdID of orders placed before the restart.
    c.send(&format!("F|41=O2|11=C2|55=BTC-USDT|54=1|{T}")).await;
    let cx = er_for(&mut c, "C2").await;
    assert_eq!((get(&cx, 150), get(&cx, 41)), (Some("4"), Some("O2")), "{cx:?}");
    c.send(&format!("G|41=O1|11=R1|55=BTC-USDT|54=1|{T}|38=0.4|40=2|44=59000")).await;
    let rp = er_for(&mut c, "R1").await;
    assert_eq!(
        (get(&rp, 150), get(&rp, 41), get(&rp, 14), get(&rp, 151)),
        (Some("5"), Some("O1"), Some("0.2"), Some("0.2"))
    );

    // A second restart reports nothing twice: the next report is the new order's.
    let expected = get(&rp, 34).unwrap().parse::<u64>().unwrap() + 1;
    server.shutdown().await;
    let server = serve(Config::parse(&text).unwrap(), eng).await.unwrap();
    let mut c = reconnect(server.local_addr().unwrap(), c.seq, expected).await;
    c.send(&order("O3", "57000")).await;
    let next = c.recv_type("8").await;
    assert_eq!((get(&next, 11), get(&next, 150)), (Some("O3"), Some("0")), "no duplicate reports: {next:?}");
    assert_eq!(get(&next, 34).unwrap().parse::<u64>().unwrap(), expected + 1, "right after our Logon");
    server.shutdown().await;
}

/// A link that loses the commands submitted while `lose` is set, as a crash
/// between the FIX store and the engine's journal would.
struct LosingLink {
    inner: Arc<InProcessEngine>,
    lose: AtomicBool,
    lost: AtomicUsize,
}

impl EngineLink for LosingLink {
    fn submit(&self, req: EngineRequest) -> Result<(), LinkError> {
        if self.lose.load(Ordering::SeqCst) && matches!(req.command, Command::PlaceOrder(_)) {
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        self.inner.submit(req)
    }
    fn subscribe(&self, capacity: usize) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        self.inner.subscribe(capacity)
    }
    fn subscribe_after(
        &self,
        after: castle_engine::Seq,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        self.inner.subscribe_after(after, capacity)
    }
    fn instruments(&self) -> Vec<castle_engine::InstrumentSpec> {
        self.inner.instruments()
    }
    // No `last_seq`: the gateway marks the end of its replay with a barrier command.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_lost_before_the_engine_is_recovered_by_resend() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(LosingLink { inner: engine(), lose: AtomicBool::new(false), lost: AtomicUsize::new(0) });
    let text = config_text(dir.path(), "ListenAddress=127.0.0.1:0");
    let server = serve(Config::parse(&text).unwrap(), link.clone()).await.unwrap();
    let mut c = Client::new(TcpStream::connect(server.local_addr().unwrap()).await.unwrap(), "DESK", "CASTLE");
    c.logon("|553=desk|554=pw").await;
    c.send(&order("O1", "59000")).await;
    let er1 = er_for(&mut c, "O1").await;
    let expected = get(&er1, 34).unwrap().parse::<u64>().unwrap() + 1;

    // O2 passes the session layer (its MsgSeqNum is consumed) and is lost on the way.
    link.lose.store(true, Ordering::SeqCst);
    let o2_seq = c.seq;
    c.send(&order("O2", "58000")).await;
    // A heartbeat after it: the session moves on past O2 in memory.
    c.send("0").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while link.lost.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "O2 never reached the link");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.shutdown().await;
    link.lose.store(false, Ordering::SeqCst);

    let server = serve(Config::parse(&text).unwrap(), link.clone()).await.unwrap();
    let mut c2 = Client::new(TcpStream::connect(server.local_addr().unwrap()).await.unwrap(), "DESK", "CASTLE");
    c2.seq = c.seq;
    let logon = c2.logon("|553=desk|554=pw").await;
    assert_eq!(get(&logon, 34).unwrap().parse::<u64>().unwrap(), expected, "nothing new from us");
    // The gateway asks for O2 again: it was never finished.
    let rr = c2.recv_type("2").await;
    assert_eq!((get(&rr, 7), get(&rr, 16)), (Some(o2_seq.to_string().as_str()), Some("0")), "{rr:?}");
    // The client resends O2 (PossDup) and gap-fills the heartbeat; O1 comes along as a PossDup
    // copy too (as if the client resent more than asked): it is recognised and dropped.
    let orig = format!("|43=Y|122={}", now().to_fix_string());
    c2.send_as(&order("O2", "58000"), o2_seq, &orig).await;
    c2.send_as(&format!("4|123=Y|36={}", o2_seq + 2), o2_seq + 1, &orig).await;
    c2.send(&order("O1", "59000")).await;
    let er2 = er_for(&mut c2, "O2").await;
    assert_eq!((get(&er2, 150), get(&er2, 39)), (Some("0"), Some("0")), "O2 reaches the engine: {er2:?}");
    // O1 sent again without PossDup is a new order with a duplicate ClOrdID: the engine says so.
    let dup = er_for(&mut c2, "O1").await;
    assert_eq!(get(&dup, 150), Some("8"), "{dup:?}");
    // A PossDup copy of O1 is dropped silently; the next answer is the status request's.
    c2.send_as(&order("O1", "59000"), c2.seq, &orig).await;
    c2.seq += 1;
    c2.send("H|11=O2|55=BTC-USDT|54=1").await;
    let st = c2.recv_type("8").await;
    assert_eq!((get(&st, 11), get(&st, 150)), (Some("O2"), Some("I")), "the PossDup O1 got no answer: {st:?}");
    server.shutdown().await;
}
