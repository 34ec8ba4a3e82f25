//! Loopback load generator for the REST gateway (one process):
//! a minimal axum handler as the same-run baseline, then public depth GETs
//! and signed order placements (signature check and engine round trip
//! included), closed loop with `--connections` clients; then WebSocket
//! fan-out of trades to `--subscribers` clients, latency from the taker
//! order's submission to delivery at each subscriber.
//!
//! Two baselines, both minimal axum handlers on their own listener: `GET
//! /baseline` (empty request, `{"ok":true}`), and the same-request baseline
//! `POST /api/v1/order` that receives exactly the bytes an order placement
//! sends (same headers, same JSON body, signed by the client the same way)
//! and answers `{"ok":true}` without looking at them. The order placement's
//! ratio is to the same-request baseline (client work and request bytes are
//! equal on both sides, so the ratio measures the gateway's server-side work:
//! signature check, JSON, risk, engine round trip, response); the ratio to
//! the GET baseline is printed too (the figure earlier sessions reported).
//!
//! Every REST case runs over plain HTTP and over HTTPS (rustls on both
//! ends, the gateway's self-signed certificate); with `--wrk`, wrk (Debian's
//! `wrk`) also loads both baselines, the depth GET and the order placement,
//! as a separate process; `wrk-order.lua` signs every request afresh with
//! HMAC-SHA256 through LuaJIT's FFI into the libcrypto wrk is linked with.
//!
//! `cargo run --release -p castle-gateway-rest --example bench -- [--seconds 5] [--connections 32] [--subscribers 1000] [--rounds 3] [--wrk] [--orders-only | --post-baseline-only]`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use castle_engine::{Command, InstrumentSpec, Limits};
use castle_gateway_rest::auth::{canonical, sign};
use castle_gateway_rest::gateway::now_ms;
use castle_gateway_rest::{serve, Gateway, RestConfig, Scopes, Tls, DEMO_MASTER_KEY};
use castle_link::InProcessEngine;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn arg(name: &str, default: u64) -> u64 {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Run {
    hist: Histogram<u64>,
    count: u64,
    errors: u64,
    secs: f64,
}

fn report(name: &str, r: &Run, baseline: Option<f64>) {
    let rps = r.count as f64 / r.secs;
    let h = &r.hist;
    let ratio = baseline.map(|b| format!(" ({:.0}% of baseline)", rps / b * 100.0)).unwrap_or_default();
    println!(
        "{name:<34} {rps:>9.0} req/s{ratio}  p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  max {:>6} us  errors {}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        r.errors
    );
}

type Make = Arc<dyn Fn(u64) -> Request<Body> + Send + Sync>;

/// Where a case sends its requests: plain HTTP or HTTPS (rustls client
/// trusting the self-signed certificate).
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// One HTTP/1.1 keep-alive connection (TLS handshake included when asked).
async fn connect(t: &Target) -> hyper::client::conn::http1::SendRequest<Body> {
    let tcp = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    match &t.tls {
        None => {
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn);
            send
        }
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await.expect("TLS handshake");
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            send
        }
    }
}

async fn load(target: Target, connections: u64, secs: u64, make: Make) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..connections {
        let (stop, seq, make, target) = (stop.clone(), seq.clone(), make.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut send = connect(&target).await;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let (mut n, mut errors) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let mut req = make(seq.fetch_add(1, Ordering::Relaxed));
                req.headers_mut().insert("host", "localhost".parse().unwrap());
                let t = Instant::now();
                if send.ready().await.is_err() {
                    send = connect(&target).await;
                }
                match send.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        if !ok {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
                hist.record(t.elapsed().as_micros().max(1) as u64).unwrap();
                n += 1;
            }
            (hist, n, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run { hist: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(), count: 0, errors: 0, secs: 0.0 };
    for t in tasks {
        let (h, n, e) = t.await.unwrap();
        run.hist.add(h).unwrap();
        run.count += n;
        run.errors += e;
    }
    run.secs = start.elapsed().as_secs_f64();
    run
}

/// What wrk sends: plain GETs of the URL, or signed order placements
/// (`wrk-order.lua`: key id, secret, client order id prefix).
enum WrkLoad<'a> {
    Get,
    Orders { key: &'a str, secret: &'a str, prefix: &'a str },
}

/// wrk against `url` (the Lua scripts print one report line); None when wrk is missing.
fn wrk(url: &str, connections: u64, secs: u64, load: WrkLoad<'_>) -> Option<(f64, u64, u64, u64, u64)> {
    let (name, text) = match load {
        WrkLoad::Get => ("report", include_str!("wrk-report.lua").to_string()),
        WrkLoad::Orders { .. } => {
            ("order", format!("{}\n{}", include_str!("wrk-order.lua"), include_str!("wrk-report.lua")))
        }
    };
    let script = std::env::temp_dir().join(format!("castle-wrk-{name}-{}.lua", std::process::id()));
    std::fs::write(&script, text).unwrap();
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s"), "-s"]).arg(&script).arg(url);
    if let WrkLoad::Orders { key, secret, prefix } = load {
        cmd.args(["--", key, secret, prefix]);
    }
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("WRK "))?;
    let v: Vec<f64> = line[4..].split_whitespace().filter_map(|x| x.parse().ok()).collect();
    (v.len() == 6).then(|| (v[0] / v[1], v[2] as u64, v[3] as u64, v[4] as u64, v[5] as u64))
}

fn report_wrk(name: &str, r: (f64, u64, u64, u64, u64), baseline: Option<f64>) {
    let ratio = baseline.map(|b| format!(" ({:.0}% of baseline)", r.0 / b * 100.0)).unwrap_or_default();
    println!(
        "{name:<34} {:>9.0} req/s{ratio}  p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  errors {}",
        r.0, r.1, r.2, r.3, r.4
    );
}

fn setup() -> Vec<Command> {
    let mut cmds = vec![Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000))];
    for account in 1..=2 {
        cmds.push(Command::Deposit { account, asset: 1, amount: 1_000_000 * 100_000_000 });
        cmds.push(Command::Deposit { account, asset: 2, amount: 1_000_000_000 * 100_000_000 });
    }
    cmds
}

/// The order request both the gateway and the same-request baseline receive.
fn order_request(key: &str, secret: &str, n: u64) -> Request<Body> {
    // IOC far below the market: accepted, then cancelled unfilled by the
    // engine, so the book does not grow; every request is signed afresh.
    let body = format!(
        r#"{{"symbol":"BTC-USDT","side":"BUY","type":"LIMIT","time_in_force":"IOC","price":"55000","quantity":"0.01","client_order_id":"b{n}"}}"#
    );
    signed("POST", "/api/v1/order", body, key, secret, now_ms())
}

fn signed(method: &str, path: &str, body: String, key: &str, secret: &str, ts: u64) -> Request<Body> {
    let sig = sign(secret, &canonical(&ts.to_string(), method, path, "", body.as_bytes()));
    Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key)
        .header("x-timestamp", ts.to_string())
        .header("x-signature", sig)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let secs = arg("--seconds", 5);
    let conns = arg("--connections", 32);
    let subs = arg("--subscribers", 1000);
    let use_wrk = std::env::args().any(|a| a == "--wrk");
    // For profiling (valgrind --tool=callgrind): plain HTTP order placement
    // only, or the same-request POST baseline only (same client work, so the
    // two profiles differ by the server side).
    let orders_only = std::env::args().any(|a| a == "--orders-only");
    let post_baseline_only = std::env::args().any(|a| a == "--post-baseline-only");
    let orders_only = orders_only || post_baseline_only;
    println!("castle-gateway-rest bench: loopback, HTTP/1.1 keep-alive, {conns} connections, {secs} s per case");

    // Baselines: the smallest axum handlers, same runtime, same clients,
    // plain and TLS. The POST one takes the order request's bytes (it reads
    // the body, as any handler must) and answers without looking at them.
    let base = axum::Router::new()
        .route("/baseline", axum::routing::get(|| async { axum::Json(serde_json::json!({"ok": true})) }))
        .route(
            "/api/v1/order",
            axum::routing::post(|body: axum::body::Bytes| async move {
                std::hint::black_box(body);
                axum::Json(serde_json::json!({"ok": true}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_addr = listener.local_addr().unwrap();
    let b2 = base.clone();
    tokio::spawn(async move { axum::serve(listener, b2).await.unwrap() });
    let cert_dir = std::env::temp_dir().join(format!("castle-rest-bench-{}", std::process::id()));
    let (cert, key) = castle_gateway_rest::server::self_signed(&cert_dir).unwrap();
    let server_tls = castle_gateway_rest::server::rustls_config(&cert, &key).unwrap();
    let client_tls = {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let tls_listen = |app: axum::Router| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let cfg = axum_server::tls_rustls::RustlsConfig::from_config(server_tls.clone());
        let svc = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum_server::from_tcp_rustls(l, cfg).serve(svc).await.unwrap() });
        addr
    };
    let base_tls_addr = tls_listen(base);

    let mut cfg = RestConfig::new(3, DEMO_MASTER_KEY.to_vec());
    cfg.rate.ip_weight_per_min = u32::MAX / 2;
    cfg.rate.key_weight_per_min = u32::MAX / 2;
    cfg.max_open_orders = 1_000_000;
    cfg.ws.max_connections = 100_000;
    let engine = InProcessEngine::start(Limits::default(), &setup(), 65_536);
    let gw = Gateway::new(cfg, engine, None);
    let s1 = gw.add_key("k1", 1, Scopes::ALL).expect("configured key");
    let s2 = gw.add_key("k2", 2, Scopes::ALL).expect("configured key");
    let srv = serve(gw.clone(), "127.0.0.1:0".parse().unwrap(), Tls::Off).await.unwrap();
    let addr = srv.addr;
    // The same gateway (one stream consumer) also behind a TLS listener.
    let tls_addr = tls_listen(castle_gateway_rest::routes::router(gw.clone()));
    // A book of 200 levels a side for the depth GETs.
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    for i in 0..200u64 {
        for (side, price) in [("BUY", 59_000 - i), ("SELL", 61_000 + i)] {
            let body =
                format!(r#"{{"symbol":"BTC-USDT","side":"{side}","type":"LIMIT","price":"{price}","quantity":"0.5"}}"#);
            let mut req = signed("POST", "/api/v1/order", body, "k2", &s2, now_ms());
            *req.uri_mut() = format!("http://{addr}/api/v1/order").parse().unwrap();
            let r = client.request(req).await.unwrap();
            assert!(r.status().is_success(), "seeding the book: {}", r.status());
            let _ = r.into_body().collect().await;
        }
    }

    let s1c = s1.clone();
    // Client order ids unique across cases and rounds: a repeated id of an
    // order still in the gateway's memory would be answered without the
    // engine (idempotent retry), which would flatter the order path.
    let order_seq = Arc::new(AtomicU64::new(0));
    let place: Make = Arc::new(move |_| order_request("k1", &s1c, order_seq.fetch_add(1, Ordering::Relaxed)));
    let base_req: Make = Arc::new(|_| Request::get("/baseline").body(Body::empty()).unwrap());
    let depth_path = "/api/v1/depth?symbol=BTC-USDT&limit=100";
    let depth_req: Make = Arc::new(move |_| Request::get(depth_path).body(Body::empty()).unwrap());
    // Rounds of every case back to back, so each ratio compares cases
    // measured under the same background load.
    let rounds = arg("--rounds", 3);
    let mut ratios: BTreeMap<String, Vec<f64>> = Default::default();
    let mut note = |name: String, v: f64| ratios.entry(name).or_default().push(v);
    for round in 1..=rounds {
        println!("round {round}");
        for (mode, b_addr, g_addr, tls) in
            [("http", base_addr, addr, None), ("https", base_tls_addr, tls_addr, Some(client_tls.clone()))]
        {
            let bt = Target { addr: b_addr, tls: tls.clone() };
            let gt = Target { addr: g_addr, tls };
            if orders_only {
                if mode == "http" && post_baseline_only {
                    let r = load(bt, conns, secs, place.clone()).await;
                    report("  http baseline axum POST, same request", &r, None);
                } else if mode == "http" {
                    report("  http POST /order (signed, IOC)", &load(gt, conns, secs, place.clone()).await, None);
                }
                continue;
            }
            let rate = |r: &Run| r.count as f64 / r.secs;
            let get_base = load(bt.clone(), conns, secs, base_req.clone()).await;
            report(&format!("  {mode} baseline axum GET"), &get_base, None);
            let post_base = load(bt, conns, secs, place.clone()).await;
            report(&format!("  {mode} baseline axum POST, same request"), &post_base, Some(rate(&get_base)));
            let depth = load(gt.clone(), conns, secs, depth_req.clone()).await;
            report(&format!("  {mode} GET /depth limit=100"), &depth, Some(rate(&get_base)));
            let orders = load(gt, conns, secs, place.clone()).await;
            report(&format!("  {mode} POST /order (signed, IOC)"), &orders, Some(rate(&post_base)));
            println!("  {mode} POST /order vs the GET baseline: {:.0}%", rate(&orders) / rate(&get_base) * 100.0);
            note(format!("{mode} depth (vs GET baseline)"), rate(&depth) / rate(&get_base));
            note(format!("{mode} order (vs same-request POST baseline)"), rate(&orders) / rate(&post_base));
            note(format!("{mode} order (vs GET baseline)"), rate(&orders) / rate(&get_base));
            note(format!("{mode} same-request POST baseline (vs GET baseline)"), rate(&post_base) / rate(&get_base));
            if use_wrk {
                let Some(wb) =
                    wrk(&format!("{mode}://localhost:{}/baseline", b_addr.port()), conns, secs, WrkLoad::Get)
                else {
                    panic!("wrk not found: apt-get install wrk")
                };
                report_wrk(&format!("  {mode} wrk baseline axum GET"), wb, None);
                let order_url = |port: u16| format!("{mode}://localhost:{port}/api/v1/order");
                let prefix = format!("w{round}{mode}b");
                let orders = WrkLoad::Orders { key: "k1", secret: &s1, prefix: &prefix };
                let wp = wrk(&order_url(b_addr.port()), conns, secs, orders).expect("wrk");
                report_wrk(&format!("  {mode} wrk baseline axum POST, same request"), wp, Some(wb.0));
                let wd = wrk(&format!("{mode}://localhost:{}{depth_path}", g_addr.port()), conns, secs, WrkLoad::Get)
                    .expect("wrk");
                report_wrk(&format!("  {mode} wrk GET /depth limit=100"), wd, Some(wb.0));
                let prefix = format!("w{round}{mode}o");
                let orders = WrkLoad::Orders { key: "k1", secret: &s1, prefix: &prefix };
                let wo = wrk(&order_url(g_addr.port()), conns, secs, orders).expect("wrk");
                report_wrk(&format!("  {mode} wrk POST /order (signed, IOC)"), wo, Some(wp.0));
                println!("  {mode} wrk POST /order vs the wrk GET baseline: {:.0}%", wo.0 / wb.0 * 100.0);
                note(format!("{mode} wrk depth (vs wrk GET baseline)"), wd.0 / wb.0);
                note(format!("{mode} wrk order (vs wrk same-request POST baseline)"), wo.0 / wp.0);
                note(format!("{mode} wrk order (vs wrk GET baseline)"), wo.0 / wb.0);
            }
        }
    }
    for (name, v) in ratios.iter_mut() {
        v.sort_by(|a, b| a.total_cmp(b));
        let all: Vec<String> = v.iter().map(|x| format!("{:.0}", x * 100.0)).collect();
        println!(
            "median of {rounds} rounds: {name} {:.0}% (rounds sorted: {})",
            v[v.len() / 2] * 100.0,
            all.join(" / ")
        );
    }

    if !orders_only {
        fanout(addr, subs, &s1, &s2).await;
    }
    srv.shutdown().await;
    let _ = std::fs::remove_dir_all(&cert_dir);
}

/// `subs` WebSocket clients on trades@BTC-USDT; 200 trades, one every 20 ms;
/// latency from the taker order's submission to each subscriber's receipt.
async fn fanout(addr: SocketAddr, subs: u64, s1: &str, s2: &str) {
    let trades = 200u64;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; 4096]));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap()));
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..subs {
        let (sent, hist, received, ready) = (sent.clone(), hist.clone(), received.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) =
                tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/ws")).await.expect("ws connect");
            ws.send(tokio_tungstenite::tungstenite::Message::Text(
                r#"{"op":"subscribe","channels":["trades@BTC-USDT"]}"#.into(),
            ))
            .await
            .unwrap();
            let _ = ws.next().await; // subscribed
            ready.fetch_add(1, Ordering::Relaxed);
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut n = 0;
            while n < trades {
                let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await else { break };
                if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                    let now = Instant::now();
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    if let Some(id) = v["trade_id"].as_u64() {
                        if let Some(Some(at)) = sent.lock().unwrap().get(id as usize).copied() {
                            local.record(now.duration_since(at).as_micros().max(1) as u64).unwrap();
                        }
                        n += 1;
                    }
                }
            }
            received.fetch_add(n, Ordering::Relaxed);
            hist.lock().unwrap().add(local).unwrap();
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < subs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let post = |body: String, key: &str, secret: &str| {
        let mut r = signed("POST", "/api/v1/order", body, key, secret, now_ms());
        *r.uri_mut() = format!("http://{addr}/api/v1/order").parse().unwrap();
        r
    };
    // Trade ids continue from whatever traded before: learn the next one from the first trade.
    let mut next_id = None;
    let (mut untraded, mut timed) = (0u64, 0u64);
    for i in 0..trades {
        let maker = format!(
            r#"{{"symbol":"BTC-USDT","side":"SELL","type":"LIMIT","price":"60000","quantity":"0.01","client_order_id":"fm{i}"}}"#
        );
        let r = client.request(post(maker, "k2", s2)).await.unwrap();
        let maker_status = r.status();
        let maker_body = r.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if let Some(id) = next_id {
            sent.lock().unwrap()[id as usize] = Some(Instant::now());
            timed += 1;
        }
        let taker = format!(
            r#"{{"symbol":"BTC-USDT","side":"BUY","type":"LIMIT","time_in_force":"IOC","price":"60000","quantity":"0.01","client_order_id":"ft{i}"}}"#
        );
        let r = client.request(post(taker, "k1", s1)).await.unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
        // A taker without a trade is reported (with both answers) and the
        // next trade is not timed; it does not end the run.
        match body["fills"][0]["trade_id"].as_u64() {
            Some(id) => next_id = Some(id + 1),
            None => {
                untraded += 1;
                next_id = None;
                println!(
                    "fan-out: taker {i} did not trade; maker answered {maker_status} {}; taker answered {body}",
                    String::from_utf8_lossy(&maker_body)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let h = hist.lock().unwrap();
    println!(
        "WS fan-out: {subs} subscribers, {} trades timed ({untraded} takers without a trade), {} deliveries: submit-to-delivery p50 {} us  p99 {} us  p99.9 {} us  max {} us",
        timed,
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
    let _ = received;
}
