//! Service bureaus and hubs: one session trading for several clients with
//! OnBehalfOfCompID (115), addressing venue desks with DeliverToCompID
//! (128); answers carry them swapped, unknown ones are refused.

mod common;

use castle_gateway_fix::{serve, Config};
use common::*;
use tokio::net::TcpStream;

const T: &str = "60=20240101-00:00:00";

fn config(store: &std::path::Path) -> String {
    config_text(store, "ListenAddress=127.0.0.1:0")
        + "[SESSION]\nTargetCompID=HUB\nAccount=9\nOnBehalfOf=CLIENTA:7, CLIENTB:8\nDeliverTo=CASTLE-EU\n"
}

fn pos(f: &Fields, tag: u32) -> usize {
    f.iter().position(|(t, _)| *t == tag).unwrap_or_else(|| panic!("no tag {tag} in {f:?}"))
}

/// Routing fields are header fields: right after TargetCompID, before the body.
fn assert_routed(f: &Fields, deliver_to: &str, on_behalf_of: Option<&str>) {
    assert_eq!(get(f, 128), Some(deliver_to), "{f:?}");
    assert_eq!(get(f, 115), on_behalf_of, "{f:?}");
    assert!(pos(f, 128) < pos(f, 11).min(pos(f, 37)), "128 in the header: {f:?}");
}

async fn er_for(c: &mut Client<TcpStream>, cl: &str) -> Fields {
    loop {
        let f = c.recv_type("8").await;
        if get(&f, 11) == Some(cl) {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_sessions_trade_on_behalf_of_their_clients() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path());
    let eng = engine();
    let server = serve(Config::parse(&text).unwrap(), eng.clone()).await.unwrap();
    let mut hub = Client::new(TcpStream::connect(server.local_addr().unwrap()).await.unwrap(), "HUB", "CASTLE");
    hub.logon("").await;
    let mut dc = Client::new(TcpStream::connect(server.local_addr().unwrap()).await.unwrap(), "DROP", "CASTLE");
    dc.logon("").await;

    // Client A buys through the hub, addressed to the EU desk.
    let buy = format!("D|115=CLIENTA|128=CASTLE-EU|11=A1|55=BTC-USDT|54=1|{T}|38=0.5|40=2|44=59000|59=1");
    hub.send(&buy).await;
    let a1 = er_for(&mut hub, "A1").await;
    assert_eq!((get(&a1, 150), get(&a1, 1)), (Some("0"), Some("7")), "client A's account: {a1:?}");
    assert_routed(&a1, "CLIENTA", Some("CASTLE-EU"));
    // The drop copy of account 7 sees it without the hub's routing.
    let copy = er_for(&mut dc, "A1").await;
    assert_eq!((get(&copy, 128), get(&copy, 115)), (None, None), "{copy:?}");

    // Client B sells into it: each client's reports go back to that client.
    hub.send(&format!("D|115=CLIENTB|11=B1|55=BTC-USDT|54=2|{T}|38=0.2|40=2|44=59000|59=3")).await;
    let b1 = er_for(&mut hub, "B1").await;
    assert_eq!((get(&b1, 150), get(&b1, 1)), (Some("0"), Some("8")));
    assert_routed(&b1, "CLIENTB", None);
    let mut fills = Vec::new();
    for _ in 0..2 {
        let f = hub.recv_type("8").await;
        assert_eq!(get(&f, 150), Some("F"), "{f:?}");
        fills.push((get(&f, 11).unwrap().to_string(), get(&f, 128).unwrap().to_string()));
    }
    fills.sort();
    assert_eq!(fills, [("A1".to_string(), "CLIENTA".to_string()), ("B1".to_string(), "CLIENTB".to_string())]);

    // A client sees only its own orders.
    hub.send("H|115=CLIENTB|11=A1|55=BTC-USDT|54=1").await;
    let st = er_for(&mut hub, "A1").await;
    assert_eq!((get(&st, 150), get(&st, 39), get(&st, 58)), (Some("I"), Some("8"), Some("Unknown order")));
    assert_routed(&st, "CLIENTB", None);

    // Unknown OnBehalfOfCompID: the order is rejected, routed back to whoever it claimed to be.
    hub.send(&format!("D|115=WHO|11=W1|55=BTC-USDT|54=1|{T}|38=0.5|40=2|44=59000")).await;
    let w1 = er_for(&mut hub, "W1").await;
    assert_eq!((get(&w1, 150), get(&w1, 103)), (Some("8"), Some("15")), "{w1:?}");
    assert_eq!(get(&w1, 128), Some("WHO"));
    // Unknown DeliverToCompID: BusinessMessageReject "DeliverTo firm not available".
    hub.send(&format!("D|115=CLIENTA|128=ELSEWHERE|11=E1|55=BTC-USDT|54=1|{T}|38=0.5|40=2|44=59000")).await;
    let j = hub.recv_type("j").await;
    assert_eq!(
        (get(&j, 380), get(&j, 379), get(&j, 115), get(&j, 128)),
        (Some("7"), Some("E1"), Some("ELSEWHERE"), Some("CLIENTA"))
    );

    // After a gateway restart the route of an older order comes from its account.
    server.shutdown().await;
    let server = serve(Config::parse(&text).unwrap(), eng).await.unwrap();
    let mut hub2 = Client::new(TcpStream::connect(server.local_addr().unwrap()).await.unwrap(), "HUB", "CASTLE");
    hub2.seq = hub.seq;
    hub2.logon("").await;
    hub2.send(&format!("F|115=CLIENTA|41=A1|11=A2|55=BTC-USDT|54=1|{T}")).await;
    let cx = er_for(&mut hub2, "A2").await;
    assert_eq!((get(&cx, 150), get(&cx, 41)), (Some("4"), Some("A1")), "{cx:?}");
    assert_eq!(get(&cx, 128), Some("CLIENTA"), "{cx:?}");
    server.shutdown().await;
}

#[test]
fn on_behalf_of_configuration_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let base = config_text(dir.path(), "ListenAddress=127.0.0.1:0");
    for bad in ["OnBehalfOf=CLIENTA", "OnBehalfOf=CLIENTA:x", "OnBehalfOf=A:7,A:8", "OnBehalfOf=A:7,B:7"] {
        let text = format!("{base}[SESSION]\nTargetCompID=HUB\nAccount=9\n{bad}\n");
        assert!(Config::parse(&text).is_err(), "{bad} must be refused");
    }
    let text = format!("{base}[SESSION]\nTargetCompID=HUB2\nSessionType=drop-copy\nAccounts=7\nOnBehalfOf=A:7\n");
    assert!(Config::parse(&text).is_err(), "no OnBehalfOf on a drop copy");
}
