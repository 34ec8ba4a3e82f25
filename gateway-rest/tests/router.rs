//! Router tests without sockets (tower's `oneshot`) against an in-process
//! engine: every endpoint, signatures, scopes, cross-account access, strict
//! input, idempotency, pagination, rate limits, bearer JWTs, engine busy and
//! status unknown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use castle_engine::{Command, InstrumentSpec, Limits};
use castle_gateway_rest::auth::{canonical, sign, JwtVerifier};
use castle_gateway_rest::gateway::now_ms;
use castle_gateway_rest::{routes, Gateway, RestConfig, Scopes, DEMO_MASTER_KEY};
use castle_link::{EngineBatch, EngineLink, EngineRequest, InProcessEngine, LinkError};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const JWKS: &str = include_str!("fixtures/jwks.json");
const JWT_KEY: &str = include_str!("fixtures/jwt-test-key.pem");

fn setup_cmds() -> Vec<Command> {
    let mut cmds = vec![
        Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)),
        Command::AddInstrument(InstrumentSpec::demo(1, "ETH-USDT", 3, 2, 300_000)),
    ];
    for account in [1, 2] {
        for (asset, amount) in [(1, 10 * 100_000_000), (2, 1_000_000 * 100_000_000), (3, 100 * 100_000_000)] {
            cmds.push(Command::Deposit { account, asset, amount });
        }
    }
    cmds
}

struct T {
    gw: Arc<Gateway>,
    app: Router,
    k1: String,
    k2: String,
    kr: String,
}

fn jwt() -> JwtVerifier {
    JwtVerifier::new(JWKS, Some("https://idp.test"), Some("castle"), Default::default()).unwrap()
}

async fn setup_with(cfg: impl FnOnce(&mut RestConfig), link: Option<Arc<dyn EngineLink>>) -> T {
    let mut c = RestConfig::new(3, DEMO_MASTER_KEY.to_vec());
    cfg(&mut c);
    let link: Arc<dyn EngineLink> =
        link.unwrap_or_else(|| InProcessEngine::start(Limits::default(), &setup_cmds(), 1024));
    let gw = Gateway::new(c, link, Some(jwt()));
    let k1 = gw.add_key("k1", 1, Scopes::ALL).expect("configured key");
    let k2 = gw.add_key("k2", 2, Scopes::ALL).expect("configured key");
    let kr = gw.add_key("kr", 1, Scopes { read: true, trade: false }).expect("configured key");
    gw.start_stream().unwrap();
    let app = routes::router(gw.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let t = T { gw, app, k1, k2, kr };
    // The set-up deposits arrive through the stream.
    wait_for(|| t.gw.read().accounts.get(2).is_some_and(|a| a.balances.len() == 3)).await;
    t
}

async fn setup() -> T {
    setup_with(|_| {}, None).await
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl T {
    fn secret(&self, key: &str) -> &str {
        match key {
            "k1" => &self.k1,
            "k2" => &self.k2,
            _ => &self.kr,
        }
    }

    async fn raw(&self, req: Request<Body>) -> Resp {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { status, headers, body }
    }

    async fn get(&self, uri: &str) -> Resp {
        self.raw(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    fn signed(&self, method: &str, uri: &str, body: &str, key: &str, ts: u64) -> Request<Body> {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let ts = ts.to_string();
        let sig = sign(self.secret(key), &canonical(&ts, method, path, query, body.as_bytes()));
        Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", key)
            .header("x-timestamp", ts)
            .header("x-signature", sig)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    async fn call(&self, method: &str, uri: &str, body: Value, key: &str) -> Resp {
        let b = if body.is_null() { String::new() } else { body.to_string() };
        self.raw(self.signed(method, uri, &b, key, now_ms())).await
    }
}

fn limit(side: &str, price: &str, qty: &str) -> Value {
    json!({"symbol": "BTC-USDT", "side": side, "type": "LIMIT", "price": price, "quantity": qty})
}

#[tokio::test]
async fn public_endpoints() {
    let t = setup().await;
    let r = t.get("/api/v1/time").await;
    assert_eq!(r.status, 200);
    assert!(r.body["server_time"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(r.headers.contains_key("x-ratelimit-used-weight-1m"));
    // The load balancer's probe: the gateway's engine seq, and never charged to a rate limit.
    let r = t.get("/api/v1/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    assert!(r.body["seq"].as_u64().unwrap() > 0, "{}", r.body);
    assert!(!r.headers.contains_key("x-ratelimit-used-weight-1m"));
    let r = t.get("/api/v1/exchangeInfo").await;
    assert_eq!(r.status, 200);
    let s = &r.body["symbols"][0];
    assert_eq!(
        (s["symbol"].as_str(), s["tick_size"].as_str(), s["lot_size"].as_str()),
        (Some("BTC-USDT"), Some("0.01"), Some("0.00001"))
    );
    assert_eq!(s["status"], "OPEN");
    assert_eq!(s["base_asset"], "BTC");
    for uri in [
        "/api/v1/depth?symbol=BTC-USDT&limit=5",
        "/api/v1/trades?symbol=BTC-USDT",
        "/api/v1/klines?symbol=BTC-USDT&interval=1m",
        "/api/v1/ticker/24hr",
        "/api/v1/ticker/24hr?symbol=ETH-USDT",
    ] {
        assert_eq!(t.get(uri).await.status, 200, "{uri}");
    }
    assert_eq!(t.get("/api/v1/depth?symbol=NOPE").await.body["code"], 1307);
    assert_eq!(t.get("/api/v1/depth?symbol=BTC-USDT&limit=0").await.body["code"], 1302);
    assert_eq!(t.get("/api/v1/depth?symbol=BTC-USDT&limit=1001").await.body["code"], 1302);
    assert_eq!(t.get("/api/v1/depth?symbol=BTC-USDT&bogus=1").await.body["code"], 1302);
    assert_eq!(t.get("/api/v1/klines?symbol=BTC-USDT&interval=2m").await.body["code"], 1302);
    let empty = t.get("/api/v1/klines?symbol=BTC-USDT&interval=1m&start_time=5&end_time=4").await;
    assert_eq!(empty.body, json!([]), "an empty range holds no candles");
    let r = t.get("/api/v1/nope").await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (404, Some(1309)));
    let r = t.raw(Request::put("/api/v1/time").body(Body::empty()).unwrap()).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (405, Some(1310)));
    let long = format!("/api/v1/depth?symbol={}", "A".repeat(2000));
    assert_eq!(t.get(&long).await.status, 414);
    let doc = t.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, 200);
    for p in [
        "/api/v1/order",
        "/api/v1/order/client/{client_order_id}/replace",
        "/api/v1/depth",
        "/api/v1/apiKeys/{key_id}",
        "/api/v1/myTrades",
    ] {
        assert!(doc.body["paths"][p].is_object(), "{p} documented");
    }
    assert_eq!(t.raw(Request::get("/").body(Body::empty()).unwrap()).await.status, 200);
}

#[tokio::test]
async fn order_lifecycle_book_cross_account_and_trade() {
    let t = setup().await;
    let r = t
        .call(
            "POST",
            "/api/v1/order",
            json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "59000.5",
        "quantity": "0.25", "client_order_id": "my-1"}),
            "k1",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "NEW");
    assert_eq!(r.body["price"], "59000.5");
    assert_eq!(r.body["quantity"], "0.25");
    assert_eq!(r.body["client_order_id"], "my-1");
    let id = r.body["order_id"].as_u64().unwrap();
    // In the book.
    let d = t.get("/api/v1/depth?symbol=BTC-USDT").await;
    assert_eq!(d.body["bids"][0], json!(["59000.5", "0.25"]));
    assert!(d.body["seq"].as_u64().unwrap() > 0);
    // Query by id and by client id, and in open orders.
    let q = t.call("GET", &format!("/api/v1/order/{id}"), Value::Null, "k1").await;
    assert_eq!(q.body["order_id"].as_u64(), Some(id));
    let q = t.call("GET", "/api/v1/order/client/my-1?symbol=BTC-USDT", Value::Null, "k1").await;
    assert_eq!(q.body["order_id"].as_u64(), Some(id));
    let o = t.call("GET", "/api/v1/openOrders?symbol=BTC-USDT", Value::Null, "k1").await;
    assert_eq!(o.body["orders"].as_array().unwrap().len(), 1);
    // Another account: 404, not 403, for query and cancel.
    let q = t.call("GET", &format!("/api/v1/order/{id}"), Value::Null, "k2").await;
    assert_eq!((q.status.as_u16(), q.body["code"].as_u64()), (404, Some(1308)));
    let c = t.call("DELETE", &format!("/api/v1/order/{id}?symbol=BTC-USDT"), Value::Null, "k2").await;
    assert_eq!(c.status, 404);
    assert_eq!(t.call("GET", "/api/v1/openOrders", Value::Null, "k2").await.body["orders"], json!([]));
    // Idempotent retry: the same order, no second one.
    let again = t
        .call(
            "POST",
            "/api/v1/order",
            json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "59000.5",
        "quantity": "0.25", "client_order_id": "my-1"}),
            "k1",
        )
        .await;
    assert_eq!(again.body["order_id"].as_u64(), Some(id));
    assert_eq!(
        t.call("GET", "/api/v1/openOrders", Value::Null, "k1").await.body["orders"].as_array().unwrap().len(),
        1
    );
    // Cancel it.
    let c = t.call("DELETE", "/api/v1/order/client/my-1", Value::Null, "k1").await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["status"], "CANCELED");
    assert_eq!(c.body["cancel_reason"], "REQUESTED");
    assert_eq!(t.get("/api/v1/depth?symbol=BTC-USDT").await.body["bids"], json!([]));
    let c = t.call("DELETE", &format!("/api/v1/order/{id}"), Value::Null, "k1").await;
    assert_eq!((c.status.as_u16(), c.body["code"].as_u64()), (404, Some(2003)));
    // A resting sell from account 2, a crossing buy from account 1: a trade.
    let s = t.call("POST", "/api/v1/order", limit("SELL", "60000", "0.1"), "k2").await;
    assert_eq!(s.status, 200);
    let b = t.call("POST", "/api/v1/order", limit("BUY", "60100", "0.04"), "k1").await;
    assert_eq!(b.body["status"], "FILLED", "{}", b.body);
    assert_eq!(b.body["executed_quantity"], "0.04");
    assert_eq!(b.body["cumulative_quote"], "2400");
    let fills = b.body["fills"].as_array().unwrap();
    assert_eq!(fills.len(), 1);
    assert_eq!((fills[0]["price"].as_str(), fills[0]["maker"].as_bool()), (Some("60000"), Some(false)));
    assert_eq!(fills[0]["fee"], "4.8", "20 bps taker fee on 2400");
    let tr = t.get("/api/v1/trades?symbol=BTC-USDT").await;
    assert_eq!(tr.body[0]["price"], "60000");
    assert_eq!(tr.body[0]["taker_side"], "BUY");
    let tk = t.get("/api/v1/ticker/24hr?symbol=BTC-USDT").await;
    assert_eq!(tk.body[0]["last"], "60000");
    assert_eq!(tk.body[0]["volume"], "0.04");
    let k = t.get("/api/v1/klines?symbol=BTC-USDT&interval=1m").await;
    assert_eq!(k.body[0]["close"], "60000");
    let mt = t.call("GET", "/api/v1/myTrades", Value::Null, "k2").await;
    assert_eq!(mt.body["fills"][0]["maker"], true);
    assert_eq!(mt.body["fills"][0]["side"], "SELL");
    let s_open = t.call("GET", "/api/v1/openOrders", Value::Null, "k2").await;
    assert_eq!(s_open.body["orders"][0]["status"], "PARTIALLY_FILLED");
    assert_eq!(s_open.body["orders"][0]["leaves_quantity"], "0.06");
    let acct = t.call("GET", "/api/v1/account", Value::Null, "k1").await;
    let btc = acct.body["balances"].as_array().unwrap().iter().find(|b| b["asset"] == "BTC").unwrap().clone();
    assert_eq!(btc["available"], "10.04");
    let hist = t.call("GET", "/api/v1/allOrders", Value::Null, "k1").await;
    let statuses: Vec<_> =
        hist.body["orders"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses, vec!["FILLED", "CANCELED"], "newest first");
}

#[tokio::test]
async fn order_types_and_options() {
    let t = setup().await;
    let place = |v: Value| t.call("POST", "/api/v1/order", v, "k1");
    // Market buy with a quote budget against a resting sell.
    assert_eq!(t.call("POST", "/api/v1/order", limit("SELL", "60000", "1"), "k2").await.status, 200);
    let m = place(json!({"symbol": "BTC-USDT", "side": "BUY", "type": "MARKET", "quote_quantity": "600.12"})).await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.body["quote_quantity"], "600.12");
    assert_eq!(m.body["time_in_force"], "IOC");
    assert!(m.body["executed_quantity"].as_str().unwrap().starts_with("0.00"));
    // Stop-limit resting untriggered, GTD with expiry, iceberg, post-only reject, STP option.
    let sl = place(json!({"symbol": "BTC-USDT", "side": "BUY", "type": "STOP_LIMIT", "stop_price": "61000", "price": "61100", "quantity": "0.01"})).await;
    assert_eq!((sl.status.as_u16(), sl.body["type"].as_str()), (200, Some("STOP_LIMIT")), "{}", sl.body);
    assert_eq!(sl.body["stop_price"], "61000");
    let gtd = place(json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "59000", "quantity": "0.01",
        "time_in_force": "GTD", "expire_time": now_ms() + 3_600_000}))
    .await;
    assert_eq!(gtd.body["time_in_force"], "GTD", "{}", gtd.body);
    let ice = place(json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "59000", "quantity": "1",
        "display_quantity": "0.1", "stp": "CANCEL_BOTH", "time_in_force": "DAY"}))
    .await;
    assert_eq!(
        (ice.body["display_quantity"].as_str(), ice.body["stp"].as_str()),
        (Some("0.1"), Some("CANCEL_BOTH")),
        "{}",
        ice.body
    );
    let d = t.get("/api/v1/depth?symbol=BTC-USDT").await;
    assert_eq!(d.body["bids"][0], json!(["59000", "0.11"]), "iceberg shows 0.1");
    let po = place(json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "60000", "quantity": "0.01", "post_only": true})).await;
    assert_eq!((po.status.as_u16(), po.body["code"].as_u64()), (409, Some(2012)), "a state conflict");
    let fok = place(json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "60000", "quantity": "5", "time_in_force": "FOK"})).await;
    assert_eq!(fok.body["status"], "CANCELED", "{}", fok.body);
    let rich = place(limit("BUY", "59000", "100000")).await;
    assert_eq!(rich.body["code"], 2011, "insufficient balance");
    // Replace: price and quantity of the GTD order.
    let gid = gtd.body["order_id"].as_u64().unwrap();
    let rp = t
        .call(
            "POST",
            &format!("/api/v1/order/{gid}/replace"),
            json!({"symbol": "BTC-USDT", "price": "58000",
        "quantity": "0.02", "new_client_order_id": "moved"}),
            "k1",
        )
        .await;
    assert_eq!(rp.status, 200, "{}", rp.body);
    assert_eq!(
        (rp.body["price"].as_str(), rp.body["quantity"].as_str(), rp.body["client_order_id"].as_str()),
        (Some("58000"), Some("0.02"), Some("moved"))
    );
    let rp = t
        .call(
            "POST",
            &format!("/api/v1/order/{gid}/replace"),
            json!({"symbol": "BTC-USDT", "price": "58000.001", "quantity": "0.02"}),
            "k1",
        )
        .await;
    assert_eq!(rp.body["code"], 1305);
    let rp = t
        .call(
            "POST",
            "/api/v1/order/client/moved/replace",
            json!({"symbol": "BTC-USDT", "price": "58000", "quantity": "0.02"}),
            "k2",
        )
        .await;
    assert_eq!(rp.status, 404);
    // Cancel all on one instrument.
    let ca = t.call("DELETE", "/api/v1/openOrders?symbol=BTC-USDT", Value::Null, "k1").await;
    assert_eq!(ca.body["cancelled"].as_array().unwrap().len(), 3, "{}", ca.body);
    assert_eq!(t.call("GET", "/api/v1/openOrders", Value::Null, "k1").await.body["orders"], json!([]));
}

#[tokio::test]
async fn strict_input() {
    let t = setup().await;
    let place = |v: Value| t.call("POST", "/api/v1/order", v, "k1");
    let mut v = limit("BUY", "60000", "0.01");
    v["extra"] = json!(1);
    assert_eq!(place(v).await.body["code"], 1301, "unknown field");
    assert_eq!(place(limit("BUY", "60000.001", "0.01")).await.body["code"], 1305);
    assert_eq!(place(limit("BUY", "60000", "0.000001")).await.body["code"], 1306);
    assert_eq!(place(limit("BUY", "-1", "0.01")).await.body["code"], 1302);
    assert_eq!(place(limit("BUY", "1e4", "0.01")).await.body["code"], 1302);
    assert_eq!(place(limit("HOLD", "60000", "0.01")).await.body["code"], 1301, "closed enum");
    let mut v = limit("BUY", "60000", "0.01");
    v["symbol"] = json!("DOGE-USDT");
    assert_eq!(place(v).await.body["code"], 1307);
    assert_eq!(
        place(json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01"})).await.body["code"],
        1302
    );
    assert_eq!(
        place(json!({"symbol": "BTC-USDT", "side": "SELL", "type": "MARKET", "quote_quantity": "10"})).await.body
            ["code"],
        1302
    );
    let mut v = limit("BUY", "60000", "0.01");
    v["client_order_id"] = json!("has space");
    assert_eq!(place(v).await.body["code"], 1302);
    let mut v = limit("BUY", "60000", "0.01");
    v["expire_time"] = json!(1);
    assert_eq!(place(v).await.body["code"], 1302, "expire_time without GTD");
    let big = format!("{{\"symbol\":\"{}\"}}", "A".repeat(17_000));
    let r = t.raw(t.signed("POST", "/api/v1/order", &big, "k1", now_ms())).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (413, Some(1303)));
    let mut req = t.signed("POST", "/api/v1/order", &limit("BUY", "1", "1").to_string(), "k1", now_ms());
    req.headers_mut().insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(t.raw(req).await.status, 415);
    let r = t.call("GET", "/api/v1/order/abc", Value::Null, "k1").await;
    assert_eq!(r.body["code"], 1302, "order ids are integers");
    let r = t.call("GET", "/api/v1/order/client/a%20b", Value::Null, "k1").await;
    assert_eq!(r.body["code"], 1302, "client order id syntax");
}

#[tokio::test]
async fn signatures_scopes_and_replay() {
    let t = setup().await;
    let now = now_ms();
    let r = t.get("/api/v1/account").await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (401, Some(1100)));
    // Stale timestamp (a replay outside the window looks the same).
    let r = t.raw(t.signed("GET", "/api/v1/account", "", "k1", now - 6_000)).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (401, Some(1103)));
    // A larger receive window admits it, up to 60 s.
    let mut req = t.signed("GET", "/api/v1/account", "", "k1", now - 6_000);
    req.headers_mut().insert("x-recv-window", "10000".parse().unwrap());
    assert_eq!(t.raw(req).await.status, 200);
    let mut req = t.signed("GET", "/api/v1/account", "", "k1", now);
    req.headers_mut().insert("x-recv-window", "60001".parse().unwrap());
    assert_eq!(t.raw(req).await.body["code"], 1104);
    // Wrong signature: signed by another key's secret.
    let mut req = t.signed("GET", "/api/v1/account", "", "k2", now);
    req.headers_mut().insert("x-api-key", "k1".parse().unwrap());
    assert_eq!(t.raw(req).await.body["code"], 1102);
    // Tampered query.
    let req = t.signed("GET", "/api/v1/openOrders?limit=5", "", "k1", now);
    let (mut parts, body) = req.into_parts();
    parts.uri = "/api/v1/openOrders?limit=6".parse().unwrap();
    assert_eq!(t.raw(Request::from_parts(parts, body)).await.body["code"], 1102);
    // Exact replay inside the window.
    let a = t.signed("GET", "/api/v1/account", "", "k1", now + 1);
    let b = t.signed("GET", "/api/v1/account", "", "k1", now + 1);
    assert_eq!(t.raw(a).await.status, 200);
    assert_eq!(t.raw(b).await.body["code"], 1105);
    // Read-only key: reads pass, trading is 403.
    assert_eq!(t.call("GET", "/api/v1/account", Value::Null, "kr").await.status, 200);
    let r = t.call("POST", "/api/v1/order", limit("BUY", "60000", "0.01"), "kr").await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (403, Some(1106)));
    let mut req = t.signed("GET", "/api/v1/account", "", "k1", now);
    req.headers_mut().insert("x-api-key", "nobody".parse().unwrap());
    assert_eq!(t.raw(req).await.body["code"], 1101);
}

#[tokio::test]
async fn api_keys_lifecycle() {
    let t = setup().await;
    let r = t
        .call(
            "POST",
            "/api/v1/apiKeys",
            json!({"scopes": ["read"], "label": "bot", "allowed_ips": ["127.0.0.1"]}),
            "k1",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["key_id"].as_str().unwrap().to_string();
    let secret = r.body["secret"].as_str().unwrap().to_string();
    let list = t.call("GET", "/api/v1/apiKeys", Value::Null, "k1").await;
    assert!(list.body["keys"].as_array().unwrap().iter().any(|k| k["key_id"] == id.as_str()));
    assert!(!list.body.to_string().contains(&secret), "secrets are never listed");
    // Use the new key.
    let ts = now_ms().to_string();
    let sig = sign(&secret, &canonical(&ts, "GET", "/api/v1/account", "", b""));
    let req = || {
        Request::get("/api/v1/account")
            .header("x-api-key", id.as_str())
            .header("x-timestamp", ts.as_str())
            .header("x-signature", sig.as_str())
    };
    let r = t.raw(req().body(Body::empty()).unwrap()).await;
    assert_eq!(r.body["account"], 1, "{} {}", r.status, r.body);
    // A read key cannot mint a trade key; another account cannot revoke it.
    let r = t.call("POST", "/api/v1/apiKeys", json!({"scopes": ["trade"]}), "kr").await;
    assert_eq!(r.status, 403);
    assert_eq!(t.call("DELETE", &format!("/api/v1/apiKeys/{id}"), Value::Null, "k2").await.status, 404);
    assert_eq!(t.call("DELETE", &format!("/api/v1/apiKeys/{id}"), Value::Null, "k1").await.body["revoked"], true);
    let ts2 = (now_ms() + 1).to_string();
    let sig2 = sign(&secret, &canonical(&ts2, "GET", "/api/v1/account", "", b""));
    let r = t
        .raw(
            Request::get("/api/v1/account")
                .header("x-api-key", id.as_str())
                .header("x-timestamp", ts2)
                .header("x-signature", sig2)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.body["code"], 1101, "revoked");
    assert_eq!(t.call("POST", "/api/v1/apiKeys", json!({"scopes": []}), "k1").await.status, 400);
    assert_eq!(
        t.call("POST", "/api/v1/apiKeys", json!({"scopes": ["read"], "allowed_ips": ["x"]}), "k1").await.status,
        400
    );
}

#[tokio::test]
async fn pagination_is_bounded_and_complete() {
    let t = setup().await;
    for i in 0..7 {
        let r = t.call("POST", "/api/v1/order", limit("BUY", &format!("5900{i}"), "0.01"), "k1").await;
        assert_eq!(r.status, 200);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/api/v1/openOrders?limit=3&cursor={c}"),
            None => "/api/v1/openOrders?limit=3".to_string(),
        };
        let r = t.call("GET", &uri, Value::Null, "k1").await;
        let page = r.body["orders"].as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|o| o["order_id"].as_u64().unwrap()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let h = t.call("GET", "/api/v1/allOrders?limit=4", Value::Null, "k1").await;
    let next = h.body["next_cursor"].as_str().unwrap().to_string();
    let h2 = t.call("GET", &format!("/api/v1/allOrders?limit=4&cursor={next}"), Value::Null, "k1").await;
    assert_eq!(h.body["orders"].as_array().unwrap().len() + h2.body["orders"].as_array().unwrap().len(), 7);
    assert!(h2.body["next_cursor"].is_null());
    assert_eq!(t.call("GET", "/api/v1/openOrders?limit=501", Value::Null, "k1").await.body["code"], 1302);
    assert_eq!(t.call("GET", "/api/v1/myTrades?cursor=abc", Value::Null, "k1").await.body["code"], 1311);
}

#[tokio::test]
async fn rate_limits_429_and_ban() {
    let t = setup_with(
        |c| {
            c.rate.ip_weight_per_min = 5;
            c.rate.strikes_to_ban = 3;
        },
        None,
    )
    .await;
    for i in 1..=5 {
        let r = t.get("/api/v1/time").await;
        assert_eq!(r.headers["x-ratelimit-used-weight-1m"], i.to_string().as_str());
    }
    let r = t.get("/api/v1/time").await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (429, Some(1200)));
    assert!(r.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.headers["x-ratelimit-used-weight-1m"], "5", "a 429 shows the weight used");
    t.get("/api/v1/time").await;
    let r = t.get("/api/v1/time").await;
    assert_eq!(r.body["code"], 1201, "banned after repeated 429s");
}

#[tokio::test]
async fn bearer_jwt() {
    let t = setup().await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(JWT_KEY.as_bytes()).unwrap();
    let token = |kid: &str, exp: u64, aud: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(kid.into());
        let claims = json!({"sub": "user-7", "castle_account": 2, "iss": "https://idp.test", "aud": aud, "exp": exp});
        jsonwebtoken::encode(&h, &claims, &key).unwrap()
    };
    let exp = now_ms() / 1000 + 600;
    let get = |tok: String| {
        Request::get("/api/v1/account").header("authorization", format!("Bearer {tok}")).body(Body::empty()).unwrap()
    };
    let r = t.raw(get(token("test-key-1", exp, "castle"))).await;
    assert_eq!((r.status.as_u16(), r.body["account"].as_u64()), (200, Some(2)), "{}", r.body);
    for bad in [
        token("test-key-1", now_ms() / 1000 - 600, "castle"),
        token("other", exp, "castle"),
        token("test-key-1", exp, "other"),
        "x.y.z".into(),
    ] {
        let r = t.raw(get(bad)).await;
        assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (401, Some(1108)));
    }
}

/// Cognito ID tokens name the account in the custom attribute
/// `custom:castle_account`, a string; tokens without either claim map
/// their subject; a non-numeric attribute is refused.
#[tokio::test]
async fn bearer_jwt_cognito_claims_and_subject_map() {
    let subjects = [("user-9".to_string(), 1u32)].into_iter().collect();
    let verifier = JwtVerifier::new(JWKS, Some("https://idp.test"), Some("castle"), subjects).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(JWT_KEY.as_bytes()).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("test-key-1".into());
    let exp = now_ms() / 1000 + 600;
    let token = |extra: Value| {
        let mut claims = json!({"sub": "user-7", "iss": "https://idp.test", "aud": "castle", "exp": exp});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        jsonwebtoken::encode(&h, &claims, &key).unwrap()
    };
    let account = |tok: String| verifier.verify(&tok).map(|c| c.account).map_err(|e| e.code);
    assert_eq!(account(token(json!({"custom:castle_account": "2"}))), Ok(2));
    assert_eq!(account(token(json!({"castle_account": 2, "custom:castle_account": "1"}))), Ok(2));
    assert_eq!(account(token(json!({"sub": "user-9"}))), Ok(1), "subject map");
    for bad in [json!({"custom:castle_account": "two"}), json!({"custom:castle_account": "-1"}), json!({})] {
        assert_eq!(account(token(bad.clone())), Err(1108), "{bad}");
    }
}

/// The page's sign-in settings: off without OIDC configured, the
/// provider's endpoints and client id when it is.
#[tokio::test]
async fn page_oidc_settings() {
    let t = setup().await;
    let r = t.get("/oidc.json").await;
    assert_eq!((r.status.as_u16(), &r.body), (200, &json!({"enabled": false, "bearer": true})));
    let login = castle_gateway_rest::page::OidcLogin {
        authorization_endpoint: "https://idp.test/oauth2/authorize".into(),
        token_endpoint: "https://idp.test/oauth2/token".into(),
        client_id: "castle-web".into(),
        scope: "openid".into(),
        label: "Sign in".into(),
    };
    let t = setup_with(|c| c.oidc = Some(login), None).await;
    let r = t.get("/oidc.json").await;
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["authorization_endpoint"], "https://idp.test/oauth2/authorize");
    assert_eq!(r.body["token_endpoint"], "https://idp.test/oauth2/token");
    assert_eq!(r.body["client_id"], "castle-web");
    assert_eq!(r.body["scope"], "openid");
}

/// An engine that refuses everything (full queue) or swallows commands.
struct StubLink {
    busy: bool,
    inner: Arc<InProcessEngine>,
}

impl EngineLink for StubLink {
    fn submit(&self, _: EngineRequest) -> Result<(), LinkError> {
        if self.busy {
            Err(LinkError::Busy)
        } else {
            Ok(())
        }
    }
    fn subscribe(&self, c: usize) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        self.inner.subscribe(c)
    }
    fn subscribe_after(&self, a: u64, c: usize) -> Result<tokio::sync::mpsc::Receiver<Arc<EngineBatch>>, LinkError> {
        self.inner.subscribe_after(a, c)
    }
    fn instruments(&self) -> Vec<InstrumentSpec> {
        self.inner.instruments()
    }
}

#[tokio::test]
async fn engine_busy_is_503_and_silence_is_status_unknown() {
    let inner = InProcessEngine::start(Limits::default(), &setup_cmds(), 16);
    let t = setup_with(|_| {}, Some(Arc::new(StubLink { busy: true, inner: inner.clone() }))).await;
    let r = t.call("POST", "/api/v1/order", limit("BUY", "60000", "0.01"), "k1").await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (503, Some(1001)));
    let t =
        setup_with(|c| c.order_timeout = Duration::from_millis(100), Some(Arc::new(StubLink { busy: false, inner })))
            .await;
    let mut v = limit("BUY", "60000", "0.01");
    v["client_order_id"] = json!("unsure-1");
    let r = t.call("POST", "/api/v1/order", v, "k1").await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (504, Some(1002)));
    // Reconcile: the order is unknown here, so the client retries with the same id.
    let q = t.call("GET", "/api/v1/order/client/unsure-1", Value::Null, "k1").await;
    assert_eq!(q.status, 404);
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let t = setup_with(|c| c.cors_origins = vec!["https://app.example".into()], None).await;
    let pre = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/api/v1/order")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key,x-signature,x-timestamp,content-type")
            .body(Body::empty())
            .unwrap()
    };
    let ok = t.raw(pre("https://app.example")).await;
    assert_eq!(ok.headers["access-control-allow-origin"], "https://app.example");
    let other = t.raw(pre("https://evil.example")).await;
    assert!(!other.headers.contains_key("access-control-allow-origin"));
    let r =
        t.raw(Request::get("/api/v1/time").header("origin", "https://evil.example").body(Body::empty()).unwrap()).await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
    // A simple request from the allowed origin gets the header; one
    // without Origin (API clients) skips the CORS layer but carries the
    // same Vary header either way.
    let vary = "origin, access-control-request-method, access-control-request-headers";
    let r =
        t.raw(Request::get("/api/v1/time").header("origin", "https://app.example").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["access-control-allow-origin"], "https://app.example");
    assert_eq!(r.headers.get_all("vary").iter().collect::<Vec<_>>(), [vary]);
    let r = t.raw(Request::get("/api/v1/time").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert!(!r.headers.contains_key("access-control-allow-origin"));
    assert_eq!(r.headers.get_all("vary").iter().collect::<Vec<_>>(), [vary]);
    // A preflight without Origin is still answered by the CORS layer.
    let r = t.raw(Request::builder().method("OPTIONS").uri("/api/v1/order").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.contains_key("access-control-allow-methods"));
}

/// A body sent in pieces without Content-Length: read whole when it fits,
/// refused with 413 as soon as it passes the limit.
#[tokio::test]
async fn body_in_pieces() {
    let t = setup().await;
    let in_pieces = |req: Request<Body>, body: String, piece: usize| {
        let (mut parts, _) = req.into_parts();
        parts.headers.remove("content-length");
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.as_bytes().chunks(piece).map(|c| Ok(c.to_vec())).collect();
        Request::from_parts(parts, Body::from_stream(futures_util::stream::iter(chunks)))
    };
    let mut v = limit("BUY", "60000", "0.01");
    v["client_order_id"] = json!("pieces-1");
    let body = v.to_string();
    let req = t.signed("POST", "/api/v1/order", &body, "k1", now_ms());
    let r = t.raw(in_pieces(req, body, 7)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["client_order_id"], "pieces-1");
    let big = format!("{{\"symbol\":\"{}\"}}", "A".repeat(17_000));
    let req = t.signed("POST", "/api/v1/order", &big, "k1", now_ms());
    let r = t.raw(in_pieces(req, big, 4096)).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_u64()), (413, Some(1303)));
}
