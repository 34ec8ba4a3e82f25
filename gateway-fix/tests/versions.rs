//! FIX 4.2 and FIXT.1.1 / FIX 5.0SP2 sessions end to end, next to FIX 4.4:
//! Logon, orders, fills and status with the version-correct fields; every
//! message received is valid against the session's own dictionary.

mod common;

use castle_gateway_fix::frame::Parser;
use castle_gateway_fix::validate::Validator;
use castle_gateway_fix::{serve, Config, Dictionary};
use common::*;
use tokio::net::TcpStream;

const T: &str = "60=20240101-00:00:00";

fn config(store: &std::path::Path) -> String {
    config_text(store, "ListenAddress=127.0.0.1:0")
        + "[SESSION]\nBeginString=FIX.4.2\nTargetCompID=DESK42\nAccount=7\n\
           [SESSION]\nBeginString=FIXT.1.1\nDefaultApplVerID=9\nTargetCompID=DESK50\nAccount=8\n"
}

/// Next message of type `mt`, checked against `dict` as a strict counterparty would.
async fn recv_valid(c: &mut Client<TcpStream>, mt: &str, dict: &'static Dictionary) -> Fields {
    let f = c.recv_type(mt).await;
    let mut p = Parser::default();
    let msg = p.parse(&c.last_raw, dict).expect("parses");
    let mut v = Validator::new(dict, Default::default());
    if let Err(r) = v.validate(&msg) {
        panic!("invalid for {}: {r:?}: {f:?}", dict.begin_string());
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix42_and_fix50sp2_sessions_trade_with_version_correct_reports() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(Config::parse(&config(dir.path())).unwrap(), engine()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let d42 = Dictionary::builtin("FIX42").unwrap();
    let d50 = Dictionary::builtin("FIX50SP2").unwrap();

    let mut c42 = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK42", "CASTLE");
    c42.begin = "FIX.4.2".into();
    let logon = c42.logon("").await;
    assert_eq!(get(&logon, 8), Some("FIX.4.2"));

    // FIXT.1.1 needs DefaultApplVerID at Logon.
    let mut bad = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK50", "CASTLE");
    bad.begin = "FIXT.1.1".into();
    bad.send("A|98=0|108=30").await;
    let out = bad.recv().await.expect("an answer");
    assert_eq!(get(&out, 35), Some("5"), "refused without 1137: {out:?}");
    drop(bad);
    let mut c50 = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK50", "CASTLE");
    c50.begin = "FIXT.1.1".into();
    let logon = c50.logon("|1137=9").await;
    assert_eq!((get(&logon, 8), get(&logon, 1137)), (Some("FIXT.1.1"), Some("9")), "{logon:?}");

    // FIX 4.2: HandlInst (21) is required on orders; reports carry ExecTransType (20).
    c42.send(&format!("D|11=A1|21=1|55=BTC-USDT|54=1|{T}|38=0.5|40=2|44=59000|59=1")).await;
    let new = recv_valid(&mut c42, "8", d42).await;
    assert_eq!((get(&new, 20), get(&new, 150), get(&new, 39)), (Some("0"), Some("0"), Some("0")), "{new:?}");

    // FIX 5.0SP2 sells 0.2 into it.
    c50.send(&format!("D|11=B1|55=BTC-USDT|54=2|{T}|38=0.2|40=2|44=59000|59=3")).await;
    let b_new = recv_valid(&mut c50, "8", d50).await;
    assert_eq!((get(&b_new, 150), get(&b_new, 20)), (Some("0"), None), "no ExecTransType in 5.0: {b_new:?}");
    let b_fill = recv_valid(&mut c50, "8", d50).await;
    assert_eq!((get(&b_fill, 150), get(&b_fill, 39), get(&b_fill, 32)), (Some("F"), Some("2"), Some("0.2")));
    assert!(get(&b_fill, 527).is_some(), "5.0 keeps SecondaryExecID: {b_fill:?}");

    // 4.2 has no ExecType F: a partial fill is 1, without the 4.3+ SecondaryExecID.
    let a_fill = recv_valid(&mut c42, "8", d42).await;
    assert_eq!(
        (get(&a_fill, 20), get(&a_fill, 150), get(&a_fill, 39), get(&a_fill, 14), get(&a_fill, 151)),
        (Some("0"), Some("1"), Some("1"), Some("0.2"), Some("0.3")),
        "{a_fill:?}"
    );
    assert_eq!(get(&a_fill, 527), None);

    // Order status: 4.2 says it with ExecTransType 3 and the current status as ExecType; 5.0 with I.
    c42.send("H|11=A1|55=BTC-USDT|54=1").await;
    let st = recv_valid(&mut c42, "8", d42).await;
    assert_eq!((get(&st, 20), get(&st, 150), get(&st, 39)), (Some("3"), Some("1"), Some("1")), "{st:?}");
    c50.send("H|11=B1|55=BTC-USDT|54=2").await;
    let st = recv_valid(&mut c50, "8", d50).await;
    assert_eq!((get(&st, 150), get(&st, 39)), (Some("I"), Some("2")), "{st:?}");

    // A 4.2 cancel: 4.4 CxlRejReason values fall back to 4.2's.
    c42.send(&format!("F|41=NOPE|11=C1|55=BTC-USDT|54=1|{T}")).await;
    let rej = recv_valid(&mut c42, "9", d42).await;
    assert_eq!((get(&rej, 434), get(&rej, 102)), (Some("1"), Some("1")), "{rej:?}");
    c42.send(&format!("F|41=A1|11=C2|55=BTC-USDT|54=1|{T}")).await;
    let cx = recv_valid(&mut c42, "8", d42).await;
    assert_eq!((get(&cx, 20), get(&cx, 150), get(&cx, 41)), (Some("0"), Some("4"), Some("A1")), "{cx:?}");

    // OrderMassStatusRequest does not exist in 4.2: an invalid MsgType for that session.
    c42.send("AF|584=M1|585=7").await;
    let r = c42.recv_type("3").await;
    assert_eq!(get(&r, 373), Some("11"), "{r:?}");
    server.shutdown().await;
}
