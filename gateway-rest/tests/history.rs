//! Order history and fills served from the settlement ledger (SQLite and a
//! real PostgreSQL): the settlement consumer runs on the same engine link as
//! the gateway, whose memory keeps only the last 2 closed orders and fills
//! per account; every order and fill must still be listed, page by page,
//! and an order that aged out of memory is still found by id.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use axum::Router;
use castle_engine::{Command, InstrumentSpec, Limits};
use castle_gateway_rest::accounts::AccountLimits;
use castle_gateway_rest::auth::{canonical, sign};
use castle_gateway_rest::gateway::now_ms;
use castle_gateway_rest::history::{OrderHistory, Query};
use castle_gateway_rest::{routes, Gateway, RestConfig, Scopes, DEMO_MASTER_KEY};
use castle_link::{EngineLink, InProcessEngine};
use castle_settlement::history::History;
use castle_settlement::testkit::{self, pg};
use castle_settlement::{
    AccountFill, AnyStore, ConsumerConfig, LedgerUrl, LinkSource, Metrics, OrderRow, Page, PgConfig, Store, StoreError,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

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
    app: Router,
    secrets: [String; 2],
}

impl T {
    async fn call(&self, method: &str, uri: &str, body: Value, account: usize) -> (u16, Value) {
        static TICK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let ts = (now_ms() - 2_000 + TICK.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000).to_string();
        let key = ["h1", "h2"][account - 1];
        let sig = sign(&self.secrets[account - 1], &canonical(&ts, method, path, query, body.as_bytes()));
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", key)
            .header("x-timestamp", ts)
            .header("x-signature", sig)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status().as_u16();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Every row of a paged listing, following next_cursor with `limit`.
    async fn walk(&self, route: &str, field: &str, account: usize, limit: u32) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let uri = match &cursor {
                None => format!("{route}?limit={limit}"),
                Some(c) => format!("{route}?limit={limit}&cursor={c}"),
            };
            let (s, r) = self.call("GET", &uri, Value::Null, account).await;
            assert_eq!(s, 200, "{uri}: {r}");
            let rows = r[field].as_array().unwrap();
            assert!(rows.len() <= limit as usize);
            out.extend(rows.iter().cloned());
            match r["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
        panic!("pagination did not end");
    }
}

/// The link of an engine that cannot replay (`subscribe_after` answers
/// `CannotResume`): a gateway on it knows only orders placed after it started.
struct LiveOnly(Arc<dyn EngineLink>);

impl EngineLink for LiveOnly {
    fn submit(&self, req: castle_link::EngineRequest) -> Result<(), castle_link::LinkError> {
        self.0.submit(req)
    }
    fn subscribe(
        &self,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<castle_link::EngineBatch>>, castle_link::LinkError> {
        self.0.subscribe(capacity)
    }
    fn instruments(&self) -> Vec<InstrumentSpec> {
        self.0.instruments()
    }
}

async fn scenario(url: LedgerUrl) {
    let link: Arc<dyn EngineLink> = InProcessEngine::start(Limits::default(), &setup_cmds(), 4096);
    let store = AnyStore::open(&url, PgConfig::new).await.expect("open the ledger");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let consumer = tokio::spawn(castle_settlement::consumer::run(
        store.clone(),
        LinkSource(link.clone()),
        ConsumerConfig::default(),
        Arc::new(Metrics::default()),
        rx,
    ));
    let mut cfg = RestConfig::new(3, DEMO_MASTER_KEY.to_vec());
    cfg.accounts = AccountLimits { max_open: 100, max_history: 2, max_fills: 2 };
    cfg.history = Some(Arc::new(History::open(&url, None).await.expect("open the history read-only")));
    let gw = Gateway::new(cfg, link.clone(), None);
    let secrets = [gw.add_key("h1", 1, Scopes::ALL).unwrap(), gw.add_key("h2", 2, Scopes::ALL).unwrap()];
    gw.start_stream().unwrap();
    let t =
        T { app: routes::router(gw.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1)))), secrets };

    // Account 2 rests 6 sells; account 1 lifts 4 of them in one order and
    // places 2 ETH orders; account 2 cancels one BTC sell.
    let mut sells = Vec::new();
    // s0 is post-only with its own STP mode and s4 an iceberg: the ledger
    // learns the options from the engine's acceptance.
    for i in 0..6 {
        let mut body = json!({"symbol": "BTC-USDT", "side": "SELL", "type": "LIMIT", "price": format!("{}", 60_000 + i),
                              "quantity": "0.01", "client_order_id": format!("s{i}")});
        match i {
            0 => {
                body["post_only"] = json!(true);
                body["stp"] = json!("CANCEL_BOTH");
            }
            4 => body["display_quantity"] = json!("0.002"),
            _ => {}
        }
        let (s, r) = t.call("POST", "/api/v1/order", body, 2).await;
        assert_eq!(s, 200, "{r}");
        sells.push(r["order_id"].as_u64().unwrap());
    }
    let (s, r) = t
        .call(
            "POST",
            "/api/v1/order",
            json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "60003", "quantity": "0.04"}),
            1,
        )
        .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("FILLED")), "{r}");
    let buy = r["order_id"].as_u64().unwrap();
    for p in ["2999", "2998"] {
        let body = json!({"symbol": "ETH-USDT", "side": "BUY", "type": "LIMIT", "price": p, "quantity": "0.1"});
        assert_eq!(t.call("POST", "/api/v1/order", body, 1).await.0, 200);
    }
    let (s, _) = t.call("DELETE", &format!("/api/v1/order/{}", sells[5]), Value::Null, 2).await;
    assert_eq!(s, 200);

    // The ledger catches up with the gateway.
    let target = gw.read().seq;
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.applied_seq().await.unwrap() < target {
        assert!(Instant::now() < deadline, "settlement did not reach seq {target}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    {
        let st = gw.read();
        let a2 = st.accounts.get(2).unwrap();
        assert!(a2.history.len() <= 2 && a2.fills.len() <= 2, "memory is bounded, so the ledger must serve the rest");
    }

    // Every order of account 2, newest first, 6 of them, in pages of 4.
    for limit in [1, 4, 100] {
        let orders = t.walk("/api/v1/allOrders", "orders", 2, limit).await;
        let ids: Vec<u64> = orders.iter().map(|o| o["order_id"].as_u64().unwrap()).collect();
        let want: Vec<u64> = sells.iter().rev().copied().collect();
        assert_eq!(ids, want, "limit {limit}");
        let status: Vec<&str> = orders.iter().map(|o| o["status"].as_str().unwrap()).collect();
        assert_eq!(status, ["CANCELED", "NEW", "FILLED", "FILLED", "FILLED", "FILLED"], "limit {limit}");
        // An order read from the ledger shows its executed notional.
        let oldest = orders.last().unwrap();
        assert_eq!(
            (oldest["client_order_id"].as_str(), oldest["cumulative_quote"].as_str()),
            (Some("s0"), Some("600"))
        );
    }
    // Account 1: 3 orders; the symbol filter applies to the ledger too.
    assert_eq!(t.walk("/api/v1/allOrders", "orders", 1, 2).await.len(), 3);
    let (_, r) = t.call("GET", "/api/v1/allOrders?symbol=ETH-USDT&limit=10", Value::Null, 1).await;
    assert_eq!(r["orders"].as_array().unwrap().len(), 2, "{r}");

    // Fills: 4 for each side of the trade, with distinct ids, newest first.
    for (account, maker) in [(1, false), (2, true)] {
        for limit in [1, 3] {
            let fills = t.walk("/api/v1/myTrades", "fills", account, limit).await;
            assert_eq!(fills.len(), 4, "account {account} limit {limit}");
            let ids: Vec<u64> = fills.iter().map(|f| f["fill_id"].as_u64().unwrap()).collect();
            assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
            assert!(fills.iter().all(|f| f["maker"] == maker && f["symbol"] == "BTC-USDT"));
            let orders: BTreeSet<u64> = fills.iter().map(|f| f["order_id"].as_u64().unwrap()).collect();
            if account == 1 {
                assert_eq!(orders, BTreeSet::from([buy]));
            } else {
                assert_eq!(orders, sells[..4].iter().copied().collect());
            }
        }
    }
    let (_, r) = t.call("GET", "/api/v1/myTrades?symbol=ETH-USDT", Value::Null, 1).await;
    assert_eq!(r["fills"].as_array().unwrap().len(), 0, "{r}");

    // An order that aged out of memory is found by id, and only by its owner.
    assert!(gw.read().accounts.get(2).unwrap().order(sells[0]).is_none(), "s0 still in memory");
    let (s, r) = t.call("GET", &format!("/api/v1/order/{}", sells[0]), Value::Null, 2).await;
    assert_eq!((s, r["status"].as_str(), r["executed_quantity"].as_str()), (200, Some("FILLED"), Some("0.01")), "{r}");
    assert_eq!(t.call("GET", &format!("/api/v1/order/{}", sells[0]), Value::Null, 1).await.0, 404);
    assert_eq!(t.call("GET", "/api/v1/order/999999", Value::Null, 2).await.0, 404);
    // ... and by client order id.
    let (s, r) = t.call("GET", "/api/v1/order/client/s0", Value::Null, 2).await;
    assert_eq!((s, r["order_id"].as_u64(), r["status"].as_str()), (200, Some(sells[0]), Some("FILLED")), "{r}");
    assert_eq!((r["post_only"].as_bool(), r["stp"].as_str()), (Some(true), Some("CANCEL_BOTH")), "{r}");
    assert_eq!(r["display_quantity"], Value::Null, "{r}");
    assert_eq!(t.call("GET", "/api/v1/order/client/s0", Value::Null, 1).await.0, 404);
    assert_eq!(t.call("GET", "/api/v1/order/client/nope", Value::Null, 2).await.0, 404);

    // A second gateway on a link without history (it sees only what is
    // applied from now on) never saw s4, which is still open: it finds it in the ledger by client id, answers a retry
    // of its placement with it (no second order), and cancels it without
    // being told the symbol.
    let mut cfg = RestConfig::new(4, DEMO_MASTER_KEY.to_vec());
    cfg.history = Some(Arc::new(History::open(&url, None).await.expect("open the history read-only")));
    let gw2 = Gateway::new(cfg, Arc::new(LiveOnly(link.clone())), None);
    let secrets = [gw2.add_key("h1", 1, Scopes::ALL).unwrap(), gw2.add_key("h2", 2, Scopes::ALL).unwrap()];
    gw2.start_stream().unwrap();
    let t2 =
        T { app: routes::router(gw2.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1)))), secrets };
    assert!(gw2.read().accounts.get(2).is_none_or(|a| a.by_client_id("s4").is_none()));
    let (s, r) = t2.call("GET", "/api/v1/order/client/s4", Value::Null, 2).await;
    assert_eq!((s, r["order_id"].as_u64(), r["status"].as_str()), (200, Some(sells[4]), Some("NEW")), "{r}");
    assert_eq!((r["display_quantity"].as_str(), r["post_only"].as_bool()), (Some("0.002"), Some(false)), "{r}");
    assert_eq!(t2.call("GET", "/api/v1/order/client/s4", Value::Null, 1).await.0, 404);
    let retry = json!({"symbol": "BTC-USDT", "side": "SELL", "type": "LIMIT", "price": "60004",
                       "quantity": "0.01", "client_order_id": "s4"});
    let (s, r) = t2.call("POST", "/api/v1/order", retry, 2).await;
    assert_eq!((s, r["order_id"].as_u64(), r["status"].as_str()), (200, Some(sells[4]), Some("NEW")), "{r}");
    let (s, r) = t2.call("DELETE", "/api/v1/order/client/s4", Value::Null, 2).await;
    assert_eq!((s, r["order_id"].as_u64(), r["status"].as_str()), (200, Some(sells[4]), Some("CANCELED")), "{r}");
    assert_eq!((r["executed_quantity"].as_str(), r["leaves_quantity"].as_str()), (Some("0"), Some("0")), "{r}");
    // Nothing else of account 2 rests: the retry placed no second order
    // (asked of the first gateway once it has applied the cancel).
    let target = gw2.read().seq;
    let deadline = Instant::now() + Duration::from_secs(60);
    while gw.read().seq < target {
        assert!(Instant::now() < deadline, "the first gateway did not reach seq {target}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, r) = t.call("GET", "/api/v1/openOrders", Value::Null, 2).await;
    assert_eq!(r["orders"].as_array().map(Vec::len), Some(0), "{r}");

    // An order placed through the first gateway shows its options in the
    // second one's memory too: they come with the engine's acceptance.
    let body = json!({"symbol": "ETH-USDT", "side": "SELL", "type": "LIMIT", "price": "3100", "quantity": "0.5",
                      "client_order_id": "opts", "post_only": true, "display_quantity": "0.1", "stp": "CANCEL_OLDEST"});
    let (s, r) = t.call("POST", "/api/v1/order", body, 2).await;
    assert_eq!(s, 200, "{r}");
    let target = gw.read().seq;
    let deadline = Instant::now() + Duration::from_secs(60);
    while gw2.read().seq < target {
        assert!(Instant::now() < deadline, "the second gateway did not reach seq {target}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gw2.read().accounts.get(2).and_then(|a| a.by_client_id("opts")).is_some(), "not in memory");
    let (s, r) = t2.call("GET", "/api/v1/order/client/opts", Value::Null, 2).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["post_only"].as_bool(), r["display_quantity"].as_str(), r["stp"].as_str()),
        (Some(true), Some("0.1"), Some("CANCEL_OLDEST")),
        "{r}"
    );

    stop.send(true).unwrap();
    consumer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_sqlite_ledger() {
    let dir = tempfile::tempdir().unwrap();
    scenario(LedgerUrl::Sqlite(dir.path().join("settlement.sqlite"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_postgres_ledger() {
    // Fails (never skips) without PostgreSQL: scripts/test starts one (scripts/services/postgres.sh).
    let admin = testkit::shared_server().unwrap_or_else(|e| panic!("PostgreSQL unavailable (postgresql-15): {e}"));
    let db = format!("castle_rest_history_{}", std::process::id());
    let url = pg::create_database(&admin, &db).await.unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    scenario(LedgerUrl::Postgres(url)).await;
}

/// A ledger whose every query fails (database down).
#[derive(Debug)]
struct DownLedger;

impl OrderHistory for DownLedger {
    fn orders(&self, _: u32, _: Option<u32>, _: Option<u64>, _: usize) -> Query<'_, Page<OrderRow>> {
        Box::pin(async { Err(StoreError::Pool("down".into())) })
    }
    fn order(&self, _: u32, _: u64) -> Query<'_, Option<OrderRow>> {
        Box::pin(async { Err(StoreError::Pool("down".into())) })
    }
    fn order_by_client_id<'a>(&'a self, _: u32, _: &'a str) -> Query<'a, Option<OrderRow>> {
        Box::pin(async { Err(StoreError::Pool("down".into())) })
    }
    fn fills(&self, _: u32, _: Option<u32>, _: Option<u64>, _: usize) -> Query<'_, Page<AccountFill>> {
        Box::pin(async { Err(StoreError::Pool("down".into())) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_down_answers_503_and_memory_still_serves() {
    let link: Arc<dyn EngineLink> = InProcessEngine::start(Limits::default(), &setup_cmds(), 4096);
    let mut cfg = RestConfig::new(3, DEMO_MASTER_KEY.to_vec());
    cfg.history = Some(Arc::new(DownLedger));
    let gw = Gateway::new(cfg, link, None);
    let secrets = [gw.add_key("h1", 1, Scopes::ALL).unwrap(), gw.add_key("h2", 2, Scopes::ALL).unwrap()];
    gw.start_stream().unwrap();
    let t =
        T { app: routes::router(gw.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1)))), secrets };
    let body = json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "price": "59000", "quantity": "0.01",
                      "client_order_id": "mem"});
    let (s, r) = t.call("POST", "/api/v1/order", body, 1).await;
    assert_eq!(s, 200, "{r}");
    // In memory: no ledger query.
    let (s, r) = t.call("GET", "/api/v1/order/client/mem", Value::Null, 1).await;
    assert_eq!((s, r["status"].as_str()), (200, Some("NEW")), "{r}");
    // Not in memory: the ledger must be asked, and it is down.
    for uri in ["/api/v1/order/client/gone", "/api/v1/order/77777", "/api/v1/allOrders", "/api/v1/myTrades"] {
        let (s, r) = t.call("GET", uri, Value::Null, 1).await;
        assert_eq!((s, r["code"].as_u64()), (503, Some(1004)), "{uri}: {r}");
    }
    let (s, r) = t.call("DELETE", "/api/v1/order/client/gone", Value::Null, 1).await;
    assert_eq!((s, r["code"].as_u64()), (503, Some(1004)), "{r}");
}
