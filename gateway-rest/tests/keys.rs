//! API keys persisted across a gateway restart (secrets sealed at rest),
//! persisted revocation, and IP allow-lists with IPv4/IPv6 CIDR ranges.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use axum::Router;
use castle_engine::{Command, InstrumentSpec, Limits};
use castle_gateway_rest::auth::{canonical, sign};
use castle_gateway_rest::gateway::now_ms;
use castle_gateway_rest::vault::{KeyVault, StorageKey};
use castle_gateway_rest::{routes, Gateway, RestConfig, Scopes, DEMO_MASTER_KEY};
use castle_link::{EngineLink, InProcessEngine};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn setup_cmds() -> Vec<Command> {
    let mut cmds = vec![Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000))];
    for account in [1, 2] {
        cmds.push(Command::Deposit { account, asset: 1, amount: 100_000_000 });
    }
    cmds
}

/// A gateway over the key files in `dir`, as `castle serve` builds it.
async fn gateway(dir: &Path) -> Arc<Gateway> {
    let link: Arc<dyn EngineLink> = InProcessEngine::start(Limits::default(), &setup_cmds(), 1024);
    let gw = Gateway::new(RestConfig::new(3, DEMO_MASTER_KEY.to_vec()), link, None);
    let key = StorageKey::load_or_create(&dir.join("storage.key")).unwrap();
    gw.attach_key_vault(KeyVault::open(&dir.join("keys.sqlite"), key).unwrap()).unwrap();
    gw.start_stream().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while gw.read().accounts.get(2).is_none_or(|a| a.balances.is_empty()) {
        assert!(Instant::now() < deadline, "set-up deposits not seen");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gw
}

fn app(gw: &Arc<Gateway>, peer: &str) -> Router {
    routes::router(gw.clone()).layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()))
}

async fn call(app: &Router, method: &str, uri: &str, body: Value, key: &str, secret: &str) -> (u16, Value) {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    // Distinct timestamps keep repeated identical requests from looking like replays.
    static TICK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let ts = (now_ms() - 1_000 + TICK.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 500).to_string();
    let sig = sign(secret, &canonical(&ts, method, uri, "", body.as_bytes()));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-api-key", key)
        .header("x-timestamp", ts)
        .header("x-signature", sig)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status().as_u16();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn create(app: &Router, key: &str, secret: &str, body: Value) -> (String, String) {
    let (s, r) = call(app, "POST", "/api/v1/apiKeys", body, key, secret).await;
    assert_eq!(s, 200, "{r}");
    (r["key_id"].as_str().unwrap().to_string(), r["secret"].as_str().unwrap().to_string())
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[tokio::test]
async fn created_keys_and_revocations_survive_a_restart_and_secrets_are_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (a_id, a_secret, b_id, b_secret);
    {
        let gw = gateway(dir.path()).await;
        let k1 = gw.add_key("k1", 1, Scopes::ALL).unwrap();
        let k2 = gw.add_key("k2", 2, Scopes::ALL).unwrap();
        let app = app(&gw, "127.0.0.1:40000");
        (a_id, a_secret) = create(
            &app,
            "k1",
            &k1,
            json!({"scopes": ["read", "trade"], "label": "bot", "allowed_ips": ["127.0.0.0/8"]}),
        )
        .await;
        (b_id, b_secret) = create(&app, "k1", &k1, json!({"scopes": ["read"]})).await;
        assert_eq!(call(&app, "GET", "/api/v1/account", Value::Null, &b_id, &b_secret).await.1["account"], 1);
        let (s, _) = call(&app, "DELETE", &format!("/api/v1/apiKeys/{b_id}"), Value::Null, "k1", &k1).await;
        assert_eq!(s, 200);
        // A configured (demo) key revoked through the API stays revoked too.
        let (s, _) = call(&app, "DELETE", "/api/v1/apiKeys/k2", Value::Null, "k2", &k2).await;
        assert_eq!(s, 200);
    }
    // Restart: a new gateway over the same files.
    let gw = gateway(dir.path()).await;
    let k1 = gw.add_key("k1", 1, Scopes::ALL).unwrap();
    assert!(gw.add_key("k2", 2, Scopes::ALL).is_none(), "revoked configured key re-added");
    let app = app(&gw, "127.0.0.1:40000");
    let (s, r) = call(&app, "GET", "/api/v1/account", Value::Null, &a_id, &a_secret).await;
    assert_eq!((s, r["account"].clone()), (200, json!(1)), "{r}");
    let (s, r) = call(
        &app,
        "POST",
        "/api/v1/order",
        json!({"symbol": "BTC-USDT", "side": "SELL",
        "type": "LIMIT", "price": "60000", "quantity": "0.01"}),
        &a_id,
        &a_secret,
    )
    .await;
    assert_eq!(s, 200, "the restored key still trades: {r}");
    let (s, r) = call(&app, "GET", "/api/v1/account", Value::Null, &b_id, &b_secret).await;
    assert_eq!((s, r["code"].clone()), (401, json!(1101)), "revoked key works again: {r}");
    let (_, list) = call(&app, "GET", "/api/v1/apiKeys", Value::Null, "k1", &k1).await;
    let ids: Vec<&str> = list["keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&a_id.as_str()) && !ids.contains(&b_id.as_str()), "{list}");
    let a = list["keys"].as_array().unwrap().iter().find(|k| k["key_id"] == a_id.as_str()).unwrap();
    assert_eq!((a["label"].clone(), a["allowed_ips"].clone()), (json!("bot"), json!(["127.0.0.0/8"])));
    drop(app);
    drop(gw);
    // Nothing on disk holds a secret in the clear.
    for secret in [&a_secret, &b_secret] {
        assert!(!files_contain(dir.path(), secret.as_bytes()), "a secret is stored in the clear");
    }
    assert!(files_contain(dir.path(), a_id.as_bytes()), "the scan reads the key database");
    use std::os::unix::fs::PermissionsExt;
    for f in ["keys.sqlite", "storage.key"] {
        let mode = std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[tokio::test]
async fn a_wrong_storage_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let gw = gateway(dir.path()).await;
        let k1 = gw.add_key("k1", 1, Scopes::ALL).unwrap();
        create(&app(&gw, "127.0.0.1:1"), "k1", &k1, json!({"scopes": ["read"]})).await;
    }
    let vault = KeyVault::open(&dir.path().join("keys.sqlite"), StorageKey::from_bytes([1; 32])).unwrap();
    let link: Arc<dyn EngineLink> = InProcessEngine::start(Limits::default(), &setup_cmds(), 1024);
    let gw = Gateway::new(RestConfig::new(3, DEMO_MASTER_KEY.to_vec()), link, None);
    let e = gw.attach_key_vault(vault).unwrap_err();
    assert!(e.to_string().contains("does not decrypt"), "{e}");
}

#[tokio::test]
async fn allow_lists_take_ipv4_ipv6_and_cidr_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;
    let k1 = gw.add_key("k1", 1, Scopes::ALL).unwrap();
    let v4 = app(&gw, "192.0.2.10:5000");
    let v6 = app(&gw, "[2001:db8:1::7]:5000");
    let mapped = app(&gw, "[::ffff:192.0.2.10]:5000");
    let other = app(&gw, "198.51.100.1:5000");
    let (key, secret) = create(
        &v4,
        "k1",
        &k1,
        json!({"scopes": ["read"], "allowed_ips": ["192.0.2.0/24", "2001:db8::/32", "203.0.113.5"]}),
    )
    .await;
    for (app, ok) in [(&v4, true), (&v6, true), (&mapped, true), (&other, false)] {
        let (s, r) = call(app, "GET", "/api/v1/account", Value::Null, &key, &secret).await;
        if ok {
            assert_eq!(s, 200, "{r}");
        } else {
            assert_eq!((s, r["code"].clone()), (403, json!(1107)), "{r}");
        }
    }
    for bad in ["192.0.2.0/33", "2001:db8::/129", "300.1.1.1", "host.example"] {
        let (s, r) =
            call(&v4, "POST", "/api/v1/apiKeys", json!({"scopes": ["read"], "allowed_ips": [bad]}), "k1", &k1).await;
        assert_eq!(s, 400, "{bad}: {r}");
    }
}
