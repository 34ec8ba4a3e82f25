//! WebSocket streams over a real loopback socket: depth diffs that chain onto
//! a REST snapshot, trades, the authenticated user stream, and the limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use castle_engine::{Command, InstrumentSpec, Limits};
use castle_gateway_rest::auth::{canonical, sign};
use castle_gateway_rest::gateway::now_ms;
use castle_gateway_rest::{routes, serve, Gateway, RestConfig, Scopes, Tls, DEMO_MASTER_KEY};
use castle_link::InProcessEngine;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

fn setup_cmds() -> Vec<Command> {
    let mut cmds = vec![Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000))];
    for account in [1, 2] {
        cmds.push(Command::Deposit { account, asset: 1, amount: 10 * 100_000_000 });
        cmds.push(Command::Deposit { account, asset: 2, amount: 1_000_000 * 100_000_000 });
    }
    cmds
}

async fn start(cfg: impl FnOnce(&mut RestConfig)) -> (Arc<Gateway>, castle_gateway_rest::RestServer, [String; 2]) {
    let mut c = RestConfig::new(3, DEMO_MASTER_KEY.to_vec());
    cfg(&mut c);
    let gw = Gateway::new(c, InProcessEngine::start(Limits::default(), &setup_cmds(), 1024), None);
    let s1 = gw.add_key("k1", 1, Scopes::ALL).expect("configured key");
    let s2 = gw.add_key("k2", 2, Scopes::ALL).expect("configured key");
    let srv = serve(gw.clone(), "127.0.0.1:0".parse().unwrap(), Tls::Off).await.unwrap();
    (gw, srv, [s1, s2])
}

async fn rest(gw: &Arc<Gateway>, method: &str, uri: &str, body: Value, key: &str, secret: &str) -> Value {
    let app = routes::router(gw.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let b = if body.is_null() { String::new() } else { body.to_string() };
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let ts = now_ms().to_string();
    let sig = sign(secret, &canonical(&ts, method, path, query, b.as_bytes()));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-api-key", key)
        .header("x-timestamp", ts)
        .header("x-signature", sig)
        .header("content-type", "application/json")
        .body(Body::from(b))
        .unwrap();
    let r = app.oneshot(req).await.unwrap();
    serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m =
            tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("message in time").unwrap().unwrap();
        match m {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_diffs_chain_onto_the_snapshot_and_user_stream_is_private() {
    let (gw, srv, [s1, s2]) = start(|_| {}).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", srv.addr)).await.unwrap();
    send(&mut ws, json!({"op": "subscribe", "channels": ["depth@BTC-USDT", "trades@BTC-USDT", "ticker@BTC-USDT"]}))
        .await;
    assert_eq!(next_json(&mut ws).await["op"], "subscribed");
    let ts = now_ms();
    let sig = sign(&s1, &canonical(&ts.to_string(), "GET", "/api/v1/ws", "", b""));
    send(&mut ws, json!({"op": "login", "api_key": "k1", "timestamp": ts, "signature": sig})).await;
    assert_eq!(next_json(&mut ws).await, json!({"op": "login", "account": 1}));
    // A bad login is refused with the REST error code.
    let (mut bad, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", srv.addr)).await.unwrap();
    send(&mut bad, json!({"op": "login", "api_key": "k1", "timestamp": ts, "signature": "00"})).await;
    assert_eq!(next_json(&mut bad).await["code"], 1102);

    let snap = rest(&gw, "GET", "/api/v1/account", Value::Null, "k1", &s1).await;
    assert_eq!(snap["account"], 1);
    let app = routes::router(gw.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let depth = app.oneshot(Request::get("/api/v1/depth?symbol=BTC-USDT").body(Body::empty()).unwrap()).await.unwrap();
    let depth: Value = serde_json::from_slice(&depth.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let snap_seq = depth["seq"].as_u64().unwrap();

    let sell = rest(
        &gw,
        "POST",
        "/api/v1/order",
        json!({"symbol": "BTC-USDT", "side": "SELL", "type": "LIMIT",
        "price": "60000", "quantity": "0.5", "client_order_id": "acct2-secret"}),
        "k2",
        &s2,
    )
    .await;
    assert_eq!(sell["status"], "NEW");
    let buy = rest(
        &gw,
        "POST",
        "/api/v1/order",
        json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT",
        "price": "60000", "quantity": "0.2"}),
        "k1",
        &s1,
    )
    .await;
    assert_eq!(buy["status"], "FILLED");

    let (mut book_ask, mut last, mut got_trade, mut got_fill, mut got_order, mut got_balance, mut got_ticker) =
        (None, snap_seq, false, false, false, false, false);
    let mut first = true;
    while !(got_trade && got_fill && got_order && got_balance && got_ticker && book_ask == Some("0.3".to_string())) {
        let m = next_json(&mut ws).await;
        assert_ne!(m["client_order_id"], "acct2-secret", "account 2's orders never reach account 1");
        match m["stream"].as_str().unwrap() {
            "depth" => {
                let (prev, l) = (m["prev_seq"].as_u64().unwrap(), m["last_seq"].as_u64().unwrap());
                if first {
                    assert!(prev <= snap_seq && l > snap_seq, "first diff straddles the snapshot");
                    first = false;
                } else {
                    assert_eq!(prev, last, "diffs chain");
                }
                last = l;
                if let Some(a) = m["asks"].as_array().and_then(|a| a.first()) {
                    assert_eq!(a[0], "60000");
                    book_ask = Some(a[1].as_str().unwrap().to_string());
                }
            }
            "trades" => {
                assert_eq!((m["price"].as_str(), m["quantity"].as_str()), (Some("60000"), Some("0.2")));
                got_trade = true;
            }
            "ticker" => got_ticker = m["last"] == "60000",
            "fills" => {
                assert_eq!(m["maker"], false);
                got_fill = true;
            }
            "orders" => got_order |= m["status"] == "FILLED",
            "balances" => got_balance = true,
            s => panic!("unexpected stream {s}"),
        }
    }
    send(&mut ws, json!({"op": "ping"})).await;
    // Stream messages still in flight may come first.
    while next_json(&mut ws).await["op"] != "pong" {}
    srv.shutdown().await;
}

async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_close_with_a_reason() {
    let (_gw, srv, _) = start(|c| {
        c.ws.max_subscriptions = 2;
        c.ws.max_messages_per_sec = 5;
        // Long enough that the first connection reaches the rate limit first
        // even on a loaded machine.
        c.ws.max_lifetime = Duration::from_secs(3);
    })
    .await;
    let url = format!("ws://{}/api/v1/ws", srv.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    send(&mut ws, json!({"op": "subscribe", "channels": ["depth@BTC-USDT", "trades@BTC-USDT", "ticker@BTC-USDT"]}))
        .await;
    assert_eq!(next_json(&mut ws).await["code"], 1302, "too many subscriptions");
    send(&mut ws, json!({"op": "subscribe", "channels": ["candles@BTC-USDT@7m"]})).await;
    assert_eq!(next_json(&mut ws).await["code"], 1302);
    send(&mut ws, json!({"op": "subscribe", "channels": ["depth@BTC-USDT"], "extra": 1})).await;
    assert_eq!(next_json(&mut ws).await["code"], 1301);
    for _ in 0..5 {
        send(&mut ws, json!({"op": "ping"})).await;
    }
    assert_eq!(close_code(&mut ws).await, 1008, "message rate");
    let (mut idle, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(close_code(&mut idle).await, 1000, "max lifetime");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_dropped_with_a_reason() {
    use castle_engine::{Event, EventKind, Side};
    use castle_link::EngineBatch;
    let (gw, srv, _) = start(|c| c.ws.send_buffer = 16).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", srv.addr)).await.unwrap();
    send(&mut ws, json!({"op": "subscribe", "channels": ["depth@BTC-USDT"]})).await;
    assert_eq!(next_json(&mut ws).await["op"], "subscribed");
    // Far more batches than the buffer holds, faster than any socket drains
    // them (synthetic book additions straight into the stream consumer).
    let base = gw.read().seq + 1_000_000;
    for i in 0..20_000u64 {
        let e = Event {
            seq: base + i,
            ts: 0,
            kind: EventKind::BookAdd {
                instrument: 0,
                order_id: 1_000_000 + i,
                side: Side::Buy,
                price: 1 + i as i64,
                qty: 1,
            },
        };
        gw.on_batch(Arc::new(EngineBatch { origin: None, seq: base + i, ts: 0, events: vec![e] }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let code = loop {
        assert!(std::time::Instant::now() < deadline, "no close frame");
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("a message") {
            Some(Ok(Message::Close(Some(f)))) => break (u16::from(f.code), f.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code.0, 1008, "{}", code.1);
    assert!(code.1.contains("slow consumer"));
    srv.shutdown().await;
}
