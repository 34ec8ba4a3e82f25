//! Order layer tests written as tables:
//! - FIX message in -> expected engine command (or expected local reject);
//! - FIX messages in, through a real engine, -> expected FIX fields out.

#![allow(clippy::type_complexity)] // the tables are the point

use castle_engine::*;
use castle_gateway_fix::frame::{checksum, Parser};
use castle_gateway_fix::link::{EngineBatch, Origin};
use castle_gateway_fix::orders::{OrderLayer, Outbound, Output, SessionProfile};
use castle_gateway_fix::Dictionary;

const GW: u32 = 1;
const BTC: u32 = 1;
const USDT: u32 = 2;

fn frame(body: &str) -> Vec<u8> {
    let body = format!("35={body}").replace('|', "\x01");
    let body = if body.ends_with('\x01') { body } else { format!("{body}\x01") };
    let mut v = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
    let cs = checksum(&v);
    v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
    v
}

struct H {
    layer: OrderLayer,
    engine: FastEngine,
    parser: Parser,
    ts: u64,
    /// Validate every produced message (off for input the session layer
    /// would have refused: the layer may echo its garbage back).
    check: bool,
}

impl H {
    fn new() -> H {
        let mut engine = FastEngine::new(Limits::small());
        let mut out = Vec::new();
        let spec = InstrumentSpec::demo(0, "BTC-USDT", BTC, USDT, 6_000_000);
        engine.apply(1, &Command::AddInstrument(spec), &mut out);
        for account in [7, 8] {
            for asset in [BTC, USDT] {
                engine.apply(1, &Command::Deposit { account, asset, amount: 1_000_000_000_000_000 }, &mut out);
            }
        }
        let mut layer = OrderLayer::new(GW, &[spec]);
        let mut p = SessionProfile::order_entry(7);
        p.max_open_orders = 3;
        layer.add_session(p); // 0: account 7, at most 3 open orders
        layer.add_session(SessionProfile::order_entry(8)); // 1: account 8
        layer.add_session(SessionProfile::drop_copy(vec![7])); // 2: drop copy of 7
        let mut t = SessionProfile::order_entry(8);
        t.max_messages_per_sec = 2;
        layer.add_session(t); // 3: throttled
        H { layer, engine, parser: Parser::default(), ts: 1_704_067_200_000_000_000, check: true }
    }

    /// Parse and hand to the layer; return its raw outputs.
    fn input(&mut self, session: usize, body: &str) -> Vec<Output> {
        let bytes = frame(body);
        let msg = self.parser.parse(&bytes, Dictionary::fix44()).expect("test frame parses");
        let mut out = Vec::new();
        self.layer.on_message(session, &msg, 1, self.ts, &mut out);
        for o in &out {
            if let Output::Send(m) = o {
                if self.check {
                    assert_valid(m);
                }
            }
        }
        out
    }

    /// Like `input`, but run every submitted command through the engine and
    /// return everything sent to sessions.
    fn run(&mut self, session: usize, body: &str) -> Vec<Outbound> {
        let first = self.input(session, body);
        self.drive(first)
    }

    fn drive(&mut self, first: Vec<Output>) -> Vec<Outbound> {
        let mut sent = Vec::new();
        let mut queue = first;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for o in queue {
                match o {
                    Output::Send(m) => {
                        if self.check {
                            assert_valid(&m);
                        }
                        sent.push(m)
                    }
                    Output::Submit { request, command } => {
                        self.ts += 1_000;
                        let mut events = Vec::new();
                        let seq = self.engine.apply(self.ts, &command, &mut events);
                        let batch =
                            EngineBatch { origin: Some(Origin { gateway: GW, request }), seq, ts: self.ts, events };
                        self.layer.on_engine(&batch, &mut next);
                    }
                    Output::Done { .. } => {}
                }
            }
            queue = next;
        }
        sent
    }
}

/// Every message the layer produces must pass our own FIX 4.4 dictionary
/// validation (the same checks a strict counterparty such as QuickFIX runs).
fn assert_valid(m: &Outbound) {
    let mut e = castle_gateway_fix::Encoder::new("FIX.4.4");
    e.start(m.msg_type).str(49, b"CASTLE").str(56, b"DESK").u64(34, 1).str(52, b"20240101-00:00:00.000").raw(&m.body);
    let bytes = e.finish().to_vec();
    let mut p = Parser::default();
    let msg = p.parse(&bytes, Dictionary::fix44()).expect("own message parses");
    let mut v = castle_gateway_fix::validate::Validator::new(Dictionary::fix44(), Default::default());
    if let Err(r) = v.validate(&msg) {
        panic!("invalid outbound {:?}: {r:?}", String::from_utf8_lossy(&bytes).replace('\x01', "|"));
    }
}

fn submitted(out: &[Output]) -> Option<Command> {
    out.iter().find_map(|o| match o {
        Output::Submit { command, .. } => Some(*command),
        _ => None,
    })
}

fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::new(s).unwrap()
}

fn limit(side: Side, price: Price, qty: Qty) -> NewOrder {
    NewOrder {
        account: 7,
        instrument: 0,
        client_order_id: cid("A1"),
        side,
        order_type: OrderType::Limit { price },
        size: OrderSize::Base(qty),
        tif: TimeInForce::Day,
        post_only: false,
        display_qty: 0,
        stp: None,
    }
}

const NOS: &str = "D|11=A1|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.5|40=2|44=60000.01";

#[test]
fn fix_in_command_out() {
    let gtd_ns = 1_704_070_800_000_000_000u64; // 2024-01-01T01:00:00Z
    let rows: Vec<(&str, String, Command)> = vec![
        ("plain limit, DAY by default", NOS.into(), Command::PlaceOrder(limit(Side::Buy, 6_000_001, 50_000))),
        (
            "GTC sell",
            "D|11=A1|55=BTC-USDT|54=2|60=20240101-00:00:00|38=1|40=2|44=59000|59=1".into(),
            Command::PlaceOrder(NewOrder { tif: TimeInForce::Gtc, ..limit(Side::Sell, 5_900_000, 100_000) }),
        ),
        (
            "IOC",
            format!("{NOS}|59=3"),
            Command::PlaceOrder(NewOrder { tif: TimeInForce::Ioc, ..limit(Side::Buy, 6_000_001, 50_000) }),
        ),
        (
            "FOK",
            format!("{NOS}|59=4"),
            Command::PlaceOrder(NewOrder { tif: TimeInForce::Fok, ..limit(Side::Buy, 6_000_001, 50_000) }),
        ),
        (
            "GTD with ExpireTime",
            format!("{NOS}|59=6|126=20240101-01:00:00.000"),
            Command::PlaceOrder(NewOrder { tif: TimeInForce::Gtd(gtd_ns), ..limit(Side::Buy, 6_000_001, 50_000) }),
        ),
        (
            "post-only via ExecInst 6",
            format!("{NOS}|18=6"),
            Command::PlaceOrder(NewOrder { post_only: true, ..limit(Side::Buy, 6_000_001, 50_000) }),
        ),
        (
            "iceberg via MaxFloor",
            format!("{NOS}|111=0.1"),
            Command::PlaceOrder(NewOrder { display_qty: 10_000, ..limit(Side::Buy, 6_000_001, 50_000) }),
        ),
        (
            "STP cancel oldest via 7928=O",
            format!("{NOS}|7928=O"),
            Command::PlaceOrder(NewOrder { stp: Some(StpMode::CancelOldest), ..limit(Side::Buy, 6_000_001, 50_000) }),
        ),
        (
            "STP decrement via 7928=D",
            format!("{NOS}|7928=D"),
            Command::PlaceOrder(NewOrder {
                stp: Some(StpMode::DecrementAndCancel),
                ..limit(Side::Buy, 6_000_001, 50_000)
            }),
        ),
        (
            "market",
            "D|11=A1|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.5|40=1".into(),
            Command::PlaceOrder(NewOrder { order_type: OrderType::Market, ..limit(Side::Buy, 0, 50_000) }),
        ),
        (
            "quote-budget market buy via CashOrderQty",
            "D|11=A1|55=BTC-USDT|54=1|60=20240101-00:00:00|152=1000.5|40=1".into(),
            Command::PlaceOrder(NewOrder {
                order_type: OrderType::Market,
                size: OrderSize::QuoteBudget(100_050_000_000),
                ..limit(Side::Buy, 0, 0)
            }),
        ),
        (
            "stop market",
            "D|11=A1|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.5|40=3|99=55000".into(),
            Command::PlaceOrder(NewOrder {
                order_type: OrderType::StopMarket { stop: 5_500_000 },
                ..limit(Side::Sell, 0, 50_000)
            }),
        ),
        (
            "stop limit",
            "D|11=A1|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.5|40=4|99=55000|44=54999.99".into(),
            Command::PlaceOrder(NewOrder {
                order_type: OrderType::StopLimit { stop: 5_500_000, price: 5_499_999 },
                ..limit(Side::Sell, 0, 50_000)
            }),
        ),
        (
            "cancel by OrigClOrdID",
            "F|41=A1|11=C1|55=BTC-USDT|54=1|60=20240101-00:00:00".into(),
            Command::Cancel { account: 7, instrument: 0, target: OrderRef::Client(cid("A1")) },
        ),
        (
            "cancel by OrderID",
            "F|37=42|41=A1|11=C1|55=BTC-USDT|54=1|60=20240101-00:00:00".into(),
            Command::Cancel { account: 7, instrument: 0, target: OrderRef::Id(42) },
        ),
        (
            "replace",
            "G|41=A1|11=A2|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.25|40=2|44=60000.02".into(),
            Command::Replace(Replace {
                account: 7,
                instrument: 0,
                target: OrderRef::Client(cid("A1")),
                new_client_order_id: Some(cid("A2")),
                price: 6_000_002,
                qty: 25_000,
            }),
        ),
        (
            "mass cancel all",
            "q|11=M1|530=7|60=20240101-00:00:00".into(),
            Command::MassCancel { account: 7, instrument: None, side: None },
        ),
        (
            "mass cancel one symbol, one side",
            "q|11=M1|530=1|55=BTC-USDT|54=2|60=20240101-00:00:00".into(),
            Command::MassCancel { account: 7, instrument: Some(0), side: Some(Side::Sell) },
        ),
    ];
    for (what, fix, expected) in rows {
        let mut h = H::new();
        let out = h.input(0, &fix);
        assert_eq!(submitted(&out), Some(expected), "{what}: {fix}");
    }
}

/// (what, FIX in, expected reply MsgType, expected (tag, value) pairs)
#[test]
fn fix_in_local_reject_out() {
    let rows: Vec<(&str, String, &str, Vec<(u32, &str)>)> = vec![
        ("unknown symbol", NOS.replace("BTC-USDT", "DOGE-USD"), "8", vec![(150, "8"), (39, "8"), (103, "1")]),
        (
            "Symbol missing -> BusinessMessageReject",
            NOS.replace("|55=BTC-USDT", ""),
            "j",
            vec![(380, "5"), (372, "D"), (379, "A1")],
        ),
        ("price off the tick", NOS.replace("44=60000.01", "44=60000.015"), "8", vec![(150, "8"), (103, "99")]),
        ("qty off the lot", NOS.replace("38=0.5", "38=0.000001"), "8", vec![(103, "13")]),
        ("limit without price", NOS.replace("|44=60000.01", ""), "8", vec![(103, "99")]),
        ("unsupported OrdType", NOS.replace("40=2", "40=P"), "8", vec![(103, "11")]),
        ("unsupported TIF", format!("{NOS}|59=2"), "8", vec![(103, "11")]),
        ("GTD without ExpireTime", format!("{NOS}|59=6"), "8", vec![(103, "99")]),
        ("unsupported ExecInst", format!("{NOS}|18=G"), "8", vec![(103, "11")]),
        ("bad STP", format!("{NOS}|7928=Z"), "8", vec![(103, "11")]),
        ("foreign account", format!("{NOS}|1=8"), "8", vec![(103, "15")]),
        ("cash qty on a limit", NOS.replace("38=0.5", "152=100"), "8", vec![(103, "11")]),
        ("both qty kinds", format!("{NOS}|152=100"), "8", vec![(103, "13")]),
        (
            "cancel of an unknown symbol",
            "F|41=A1|11=C1|55=NOPE|54=1|60=20240101-00:00:00".into(),
            "9",
            vec![(434, "1"), (41, "A1"), (11, "C1")],
        ),
        ("mass cancel by security without symbol", "q|11=M1|530=1|60=20240101-00:00:00".into(), "r", vec![(531, "0")]),
        (
            "market data for an unknown symbol",
            "V|262=R1|263=0|264=0|267=1|269=0|146=1|55=NOPE".into(),
            "Y",
            vec![(262, "R1"), (281, "0")],
        ),
        (
            "market data with an unsupported entry type",
            "V|262=R1|263=0|264=0|267=1|269=4|146=1|55=BTC-USDT".into(),
            "Y",
            vec![(281, "8")],
        ),
    ];
    for (what, fix, mt, fields) in rows {
        let mut h = H::new();
        let out = h.input(0, &fix);
        assert!(submitted(&out).is_none(), "{what}: nothing reaches the engine");
        let sent: Vec<&Outbound> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 1, "{what}");
        assert_eq!(sent[0].msg_type, mt.as_bytes(), "{what}: {:?}", String::from_utf8_lossy(&sent[0].body));
        for (tag, v) in fields {
            assert_eq!(sent[0].get(tag), Some(v), "{what}: tag {tag} in {:?}", String::from_utf8_lossy(&sent[0].body));
        }
    }
}

/// Check the messages a step produced: (session, MsgType, fields).
fn expect(step: &str, got: &[Outbound], want: &[(usize, &str, &[(u32, &str)])]) {
    let show = || {
        got.iter()
            .map(|m| {
                format!("{}:{} {}", m.session, String::from_utf8_lossy(m.msg_type), String::from_utf8_lossy(&m.body))
                    .replace('\x01', "|")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(got.len(), want.len(), "{step}: got\n{}", show());
    for (m, (session, mt, fields)) in got.iter().zip(want) {
        assert_eq!(m.session, *session, "{step}: session\n{}", show());
        assert_eq!(m.msg_type, mt.as_bytes(), "{step}: MsgType\n{}", show());
        for (tag, v) in fields.iter() {
            assert_eq!(m.get(*tag), Some(*v), "{step}: tag {tag}\n{}", show());
        }
    }
}

#[test]
fn engine_events_to_execution_reports() {
    let mut h = H::new();
    type Step<'a> = (&'a str, usize, String, Vec<(usize, &'a str, &'a [(u32, &'a str)])>);
    let steps: Vec<Step> = vec![
        (
            "new limit buy rests: ER new to owner and drop copy",
            0,
            NOS.into(),
            vec![
                (0, "8", &[(150, "0"), (39, "0"), (11, "A1"), (37, "1"), (151, "0.5"), (14, "0"), (44, "60000.01")]),
                (2, "8", &[(150, "0"), (11, "A1")]),
            ],
        ),
        (
            "replace price and qty",
            0,
            "G|41=A1|11=A2|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.4|40=2|44=60000.02".into(),
            vec![
                (0, "8", &[(150, "5"), (39, "0"), (11, "A2"), (41, "A1"), (38, "0.4"), (44, "60000.02"), (151, "0.4")]),
                (2, "8", &[(150, "5")]),
            ],
        ),
        (
            "replace changing side is refused",
            0,
            "G|41=A2|11=A3|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.4|40=2|44=60000.02".into(),
            vec![(0, "9", &[(434, "2"), (41, "A2"), (11, "A3"), (39, "0"), (37, "1")])],
        ),
        (
            "account 8 sells into it: partial fill for both sides",
            1,
            "D|11=B1|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.1|40=2|44=60000".into(),
            vec![
                (1, "8", &[(150, "0"), (11, "B1")]),
                (
                    0,
                    "8",
                    &[
                        (150, "F"),
                        (39, "1"),
                        (11, "A2"),
                        (31, "60000.02"),
                        (32, "0.1"),
                        (14, "0.1"),
                        (151, "0.3"),
                        (6, "60000.02"),
                    ],
                ),
                (2, "8", &[(150, "F"), (39, "1")]),
                (1, "8", &[(150, "F"), (39, "2"), (11, "B1"), (14, "0.1"), (151, "0"), (6, "60000.02")]),
            ],
        ),
        (
            "order status request",
            0,
            "H|11=A2|55=BTC-USDT|54=1|790=S1".into(),
            vec![(0, "8", &[(150, "I"), (39, "1"), (14, "0.1"), (790, "S1")])],
        ),
        (
            "cancel: ER canceled with the cancel's ClOrdID",
            0,
            "F|41=A2|11=C1|55=BTC-USDT|54=1|60=20240101-00:00:00".into(),
            vec![
                (0, "8", &[(150, "4"), (39, "4"), (11, "C1"), (41, "A2"), (151, "0"), (14, "0.1")]),
                (2, "8", &[(150, "4")]),
            ],
        ),
        (
            "cancel of an unknown order: OrderCancelReject unknown order",
            0,
            "F|41=ZZ|11=C2|55=BTC-USDT|54=1|60=20240101-00:00:00".into(),
            vec![(0, "9", &[(434, "1"), (102, "1"), (39, "8")])],
        ),
        (
            "engine reject: duplicate ClOrdID is 103=6",
            0,
            NOS.replace("A1", "C1"),
            vec![(0, "8", &[(150, "0"), (11, "C1")]), (2, "8", &[(150, "0")])],
        ),
        (
            "post-only that would cross: 103=11",
            1,
            "D|11=B2|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.1|40=2|44=60000|18=6".into(),
            // The reject echoes the order as sent (ClOrdID, symbol, side, OrderQty).
            vec![(1, "8", &[(150, "8"), (39, "8"), (103, "11"), (11, "B2"), (55, "BTC-USDT"), (54, "2"), (38, "0.1")])],
        ),
        (
            "IOC that cannot fill: new then canceled",
            1,
            "D|11=B3|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.1|40=2|44=59000|59=3".into(),
            vec![(1, "8", &[(150, "0")]), (1, "8", &[(150, "4"), (39, "4"), (151, "0")])],
        ),
        (
            "mass cancel: report, then the canceled orders",
            0,
            "q|11=M1|530=7|60=20240101-00:00:00".into(),
            vec![
                (0, "r", &[(531, "7"), (533, "1"), (11, "M1")]),
                (0, "8", &[(150, "4"), (11, "C1")]),
                (2, "8", &[(150, "4")]),
            ],
        ),
        ("drop copy may not send orders", 2, NOS.into(), vec![(2, "j", &[(380, "6")])]),
        (
            "mass status with no open orders",
            0,
            "AF|584=MS1|585=7".into(),
            vec![(0, "8", &[(150, "I"), (912, "Y"), (584, "MS1")])],
        ),
        (
            "security list",
            0,
            "x|320=SL1|559=4".into(),
            vec![(0, "y", &[(320, "SL1"), (560, "0"), (146, "1"), (55, "BTC-USDT"), (561, "0.00001")])],
        ),
    ];
    for (what, session, fix, want) in steps {
        let got = h.run(session, &fix);
        expect(what, &got, &want);
    }
}

#[test]
fn duplicate_clordid_and_open_order_limit() {
    let mut h = H::new();
    h.run(0, NOS);
    let got = h.run(0, NOS);
    expect("duplicate ClOrdID", &got, &[(0, "8", &[(150, "8"), (103, "6")])]);
    h.run(0, &NOS.replace("A1", "A2"));
    h.run(0, &NOS.replace("A1", "A3"));
    assert_eq!(h.layer.open_orders(0), 3);
    let got = h.run(0, &NOS.replace("A1", "A4"));
    expect("open order limit", &got, &[(0, "8", &[(150, "8"), (103, "3")])]);
}

#[test]
fn throttle_rejects_excess_with_a_reason() {
    let mut h = H::new();
    let d = "D|11=T1|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.1|40=2|44=59000";
    assert_eq!(h.run(3, d)[0].get(150), Some("0"));
    assert_eq!(h.run(3, &d.replace("T1", "T2"))[0].get(150), Some("0"));
    let got = h.run(3, &d.replace("T1", "T3"));
    expect("third within a second", &got, &[(3, "8", &[(150, "8"), (103, "99")])]);
    assert!(got[0].get(58).unwrap().contains("rate limit"));
    h.ts += 1_000_000_000;
    assert_eq!(h.run(3, &d.replace("T1", "T4"))[0].get(150), Some("0"), "tokens refill");
}

#[test]
fn cancel_on_disconnect_cancels_only_that_sessions_orders() {
    let mut h = H::new();
    let mut p = SessionProfile::order_entry(7);
    p.cancel_on_disconnect = true;
    let s = h.layer.add_session(p);
    h.run(s, NOS);
    h.run(0, &NOS.replace("A1", "K1"));
    let mut out = Vec::new();
    h.layer.on_disconnect(s, &mut out);
    let got = h.drive(out);
    expect("cancel on disconnect", &got, &[(s, "8", &[(150, "4"), (11, "A1")]), (2, "8", &[(150, "4")])]);
    let mut out = Vec::new();
    h.layer.on_disconnect(0, &mut out);
    assert!(out.is_empty(), "session 0 has cancel-on-disconnect off");
}

#[test]
fn stop_trigger_expiry_and_market_data() {
    let mut h = H::new();
    // Subscribe account 8's session to the book and trades.
    let got = h.run(1, "V|262=MD1|263=1|264=0|265=1|267=3|269=0|269=1|269=2|146=1|55=BTC-USDT");
    expect("snapshot of an empty book", &got, &[(1, "W", &[(262, "MD1"), (268, "0")])]);
    let got = h.run(0, "D|11=S1|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.1|40=3|99=59999");
    expect("stop accepted, not on the book", &got, &[(0, "8", &[(150, "0"), (40, "3"), (99, "59999")]), (2, "8", &[])]);
    let got = h.run(0, "D|11=R1|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.2|40=2|44=59999|59=1");
    assert_eq!(got[0].get(150), Some("0"));
    let x: Vec<_> = got.iter().filter(|m| m.msg_type == b"X").collect();
    assert_eq!(x.len(), 1, "incremental for the new bid level");
    assert_eq!(
        (x[0].get(279), x[0].get(269), x[0].get(270), x[0].get(271)),
        (Some("0"), Some("0"), Some("59999"), Some("0.2"))
    );
    // A sell from account 8 trades at 59999: the stop (sell, stop 59999) triggers.
    let got = h.run(1, "D|11=B9|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.05|40=2|44=59999");
    let types: Vec<_> = got.iter().map(|m| (m.session, m.get(150).unwrap_or("-").to_string())).collect();
    assert!(types.contains(&(0, "D".to_string())), "stop triggered restatement: {types:?}");
    assert!(got.iter().any(|m| m.msg_type == b"X" && m.fields().any(|f| f == (269, "2"))), "trade entry");
    // GTD expiry through the engine's Tick.
    let got = h.run(0, "D|11=G1|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.1|40=2|44=59000|59=6|126=20000101-00:00:01");
    expect("GTD in the past", &got, &[(0, "8", &[(150, "8"), (103, "4")])]);
    let t = h.ts + 5_000_000_000;
    let got = h.run(
        0,
        &format!(
            "D|11=G2|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.1|40=2|44=59000|59=6|126={}",
            castle_gateway_fix::Timestamp::from_unix_nanos(t as i64).to_fix_string()
        ),
    );
    assert_eq!(got[0].get(150), Some("0"));
    h.ts = t + 1;
    let mut events = Vec::new();
    let seq = h.engine.apply(h.ts, &Command::Tick, &mut events);
    let mut out = Vec::new();
    h.layer.on_engine(&EngineBatch { origin: None, seq, ts: h.ts, events }, &mut out);
    let got = h.drive(out);
    assert!(
        got.iter()
            .any(|m| m.session == 0 && m.get(150) == Some("C") && m.get(39) == Some("C") && m.get(11) == Some("G2")),
        "expired"
    );
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    const TAGS: &[u32] = &[
        1, 11, 18, 37, 38, 40, 41, 44, 54, 55, 59, 60, 99, 111, 126, 146, 152, 262, 263, 264, 265, 267, 269, 320, 530,
        559, 584, 585, 790, 7928,
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,25}",
            "-?[0-9]{0,20}\\.[0-9]{0,30}",
            "[A-Za-z0-9 .:-]{0,40}",
            Just("BTC-USDT".to_string()),
            Just("20240101-00:00:00".to_string()),
            Just("99999999999999999999999999999999".to_string()),
        ]
    }

    const TEMPLATES: &[&str] = &[
        NOS,
        "D|11=S1|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.1|40=4|99=59999|44=59998|59=6|126=20300101-00:00:00|111=0.01|18=6|7928=B",
        "D|11=M1|55=BTC-USDT|54=1|60=20240101-00:00:00|152=100|40=1",
        "F|41=A1|11=C1|55=BTC-USDT|54=1|60=20240101-00:00:00",
        "G|41=A1|11=A2|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.25|40=2|44=60000.02",
        "H|11=A1|55=BTC-USDT|54=1|790=S1",
        "q|11=M1|530=1|55=BTC-USDT|54=2|60=20240101-00:00:00",
        "AF|584=MS1|585=7",
        "x|320=SL1|559=0|55=BTC-USDT",
        "V|262=MD1|263=1|264=5|265=1|267=3|269=0|269=1|269=2|146=1|55=BTC-USDT",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Whatever fields arrive (the session layer may let odd values
        /// through for types it does not check), the order layer neither
        /// panics nor produces a message our own dictionary refuses.
        #[test]
        fn any_fields_no_panic_and_valid_output(
            template in prop::sample::select(TEMPLATES.to_vec()),
            mutations in prop::collection::vec((any::<prop::sample::Index>(), value()), 0..4),
            extra in prop::collection::vec((prop::sample::select(TAGS.to_vec()), value()), 0..3),
            session in 0usize..4,
        ) {
            let mut h = H::new();
            // Start from a valid message, replace some values, add fields.
            let mut parts: Vec<String> = template.split('|').map(str::to_string).collect();
            for (ix, v) in &mutations {
                let i = 1 + ix.index(parts.len().max(2) - 1);
                if let Some(p) = parts.get_mut(i) {
                    let tag = p.split('=').next().unwrap_or("58").to_string();
                    *p = format!("{tag}={v}");
                }
            }
            parts.extend(extra.iter().map(|(t, v)| format!("{t}={v}")));
            parts.insert(1, "49=DESK|56=CASTLE|34=2|52=20240101-00:00:00".to_string());
            let body = parts.join("|");
            // What the session layer would let through must give valid output;
            // anything else must at least not panic.
            let bytes = frame(&body);
            let msg = Parser::default().parse(&bytes, Dictionary::fix44()).map(|_| ()).ok();
            let valid = msg.is_some() && {
                let mut p = Parser::default();
                let m = p.parse(&bytes, Dictionary::fix44()).unwrap();
                let mut v = castle_gateway_fix::validate::Validator::new(Dictionary::fix44(), Default::default());
                v.validate(&m).is_ok()
            };
            h.check = valid;
            let _ = h.run(session, &body);
        }
    }
}
