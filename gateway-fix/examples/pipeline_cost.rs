//! CPU cost of the gateway's sans-IO path for one order, without sockets,
//! threads or channels: session (parse, validate, store) -> order layer ->
//! engine -> order layer -> session (encode, store). Tells how much of a
//! loopback round trip is our code and how much is the kernel and wake-ups.
//!
//! cargo run --release -p castle-gateway-fix --example pipeline_cost -- [orders]

use castle_engine::{Command, FastEngine, InstrumentSpec, Limits};
use castle_gateway_fix::frame::checksum;
use castle_gateway_fix::link::{EngineBatch, Origin};
use castle_gateway_fix::orders::{OrderLayer, Output, SessionProfile};
use castle_gateway_fix::session::{Action, AllowAll, Session, SessionConfig};
use castle_gateway_fix::store::{FileStore, FsyncPolicy, MemoryStore, MessageStore};
use castle_gateway_fix::{Dictionary, Timestamp};
use std::time::Instant;

fn frame(body: &str) -> Vec<u8> {
    let mut v = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
    let cs = checksum(&v);
    v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
    v
}

fn run<S: MessageStore>(store: S, n: u64, label: &str) {
    let mut cfg = SessionConfig::new("CASTLE", "BENCH");
    cfg.sending_time_tolerance = None;
    let mut sess = Session::new(cfg, Dictionary::fix44(), store, Box::new(AllowAll));
    let now = Timestamp::from_unix_secs(1_704_067_200);
    sess.on_connect(now).unwrap();
    let mut actions = Vec::new();
    sess.on_bytes(
        &frame("35=A\x0149=BENCH\x0156=CASTLE\x0134=1\x0152=20240101-00:00:00\x0198=0\x01108=30\x01141=Y\x01"),
        now,
        &mut actions,
    );
    let limits = Limits { max_orders_per_instrument: 1 << 20, max_open_orders: 1 << 21, ..Limits::default() };
    let mut engine = FastEngine::new(limits);
    let spec = InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000);
    let mut events = Vec::new();
    engine.apply(1, &Command::AddInstrument(spec), &mut events);
    engine.apply(1, &Command::Deposit { account: 7, asset: 2, amount: 1 << 61 }, &mut events);
    let mut layer = OrderLayer::new(1, &[spec]);
    let sid = layer.add_session(SessionProfile::order_entry(7));
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            frame(&format!(
                "35=D\x0149=BENCH\x0156=CASTLE\x0134={}\x0152=20240101-00:00:00\x0111={i:012}\x0155=BTC-USDT\x0154=1\x01\
                 60=20240101-00:00:00\x0138=0.001\x0140=2\x0144=59000\x0159=1\x01",
                i + 2
            ))
        })
        .collect();
    let mut out = Vec::new();
    let mut sent = 0u64;
    let t0 = Instant::now();
    for m in &msgs {
        actions.clear();
        sess.on_bytes(m, now, &mut actions);
        for a in actions.drain(..) {
            if let Action::Deliver(app) = a {
                let msg = app.message();
                layer.on_message(sid, &msg, app.seq, 1, &mut out);
            }
        }
        let mut replies = Vec::new();
        for o in out.drain(..) {
            if let Output::Submit { request, command } = o {
                events.clear();
                let seq = engine.apply(2, &command, &mut events);
                let batch =
                    EngineBatch { origin: Some(Origin { gateway: 1, request }), seq, ts: 2, events: events.clone() };
                layer.on_engine(&batch, &mut replies);
            }
        }
        // As the session task does: store the reports, release the finished
        // inbound message, write the marks once per wake-up.
        for r in replies {
            match r {
                Output::Send(m) => {
                    sess.send_app(m.msg_type, now, &mut actions, |e| {
                        e.raw(&m.body);
                    })
                    .unwrap();
                    sess.store_mut().set_engine_mark(m.engine_seq);
                    sent += 1;
                }
                Output::Done { seq, .. } => sess.store_mut().release_inbound(seq),
                _ => {}
            }
        }
        sess.store_mut().flush_marks().unwrap();
    }
    let dt = t0.elapsed();
    println!("{label}: {n} orders, {sent} reports, {:.2} us per order", dt.as_secs_f64() * 1e6 / n as f64);
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    run(MemoryStore::new(), n, "memory store");
    let dir = std::env::temp_dir().join(format!("castle-pipeline-{}", std::process::id()));
    run(FileStore::open(&dir, "CASTLE-BENCH", FsyncPolicy::OsBuffered).unwrap(), n, "file store  ");
    let _ = std::fs::remove_dir_all(&dir);
}
