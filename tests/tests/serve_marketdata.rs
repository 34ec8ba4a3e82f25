//! Market data of `castle serve`, end to end: trade over FIX, rebuild the
//! book from the multicast feed with the feed handler library (`castle
//! feed`'s), join late through the TCP snapshot service, read the exchange
//! statistics from the Prometheus endpoint, and see End of Session at stop.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use castle_marketdata::handler::{FeedClient, FeedClientConfig, HandlerConfig};
use castle_marketdata::itch::InstrumentDefinition;
use castle_marketdata::redis_fanout::RedisReader;
use castle_tests::fix_client::FixClient;
use castle_tests::Proc;

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 67, 9);

/// The value after `key` in the startup line, up to the next space, ')' or ','.
fn field(line: &str, key: &str) -> String {
    let rest = line.split(key).nth(1).unwrap_or_else(|| panic!("{key:?} not in {line}"));
    rest.split([' ', ')', ',']).next().expect("value").to_string()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|s| s.local_addr()).expect("free port").port()
}

/// A book side as (price in ticks, shown qty in lots), priority order.
type Side = Vec<(i64, i64)>;

fn book_of(client: &FeedClient, symbol: &str) -> Option<(Side, Side, InstrumentDefinition)> {
    let i = client
        .core
        .book
        .instruments()
        .find(|i| i.definition.is_some_and(|d| castle_marketdata::itch::alpha_str(&d.symbol) == symbol))?;
    let side = |s| i.book.orders(s).map(|o| (o.price, o.qty)).collect::<Vec<_>>();
    Some((side(castle_engine::Side::Buy), side(castle_engine::Side::Sell), i.definition?))
}

/// Decimal string -> integer count of `mantissa x 10^-scale` units (exact or panic).
fn units(s: &str, mantissa: i64, scale: u8) -> i64 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= scale as usize, "{s} has more decimals than the scale {scale}");
    let digits = format!("{int}{frac:0<width$}", width = scale as usize);
    let v: i64 = digits.parse().expect("number");
    assert_eq!(v % mantissa, 0, "{s} is off the grid");
    v / mantissa
}

/// Runs the feed client until `cond` holds (deadline 60 s), returning the last book.
fn run_until(client: &mut FeedClient, what: &str, mut cond: impl FnMut(&FeedClient) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond(client) {
        assert!(
            Instant::now() < deadline,
            "feed client: timed out waiting for {what}; stats {:?}, next seq {}",
            client.core.stats,
            client.core.next_seq()
        );
        client.run_for(Duration::from_millis(50), &mut |_, _| {}).expect("feed client");
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: castle\r\nConnection: close\r\n\r\n").as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    out
}

/// DEMO1 buys 0.5 at 59000 and 0.3 at 58900, DEMO2 sells 0.2 at 59000 (a
/// trade) and 1 at 60000, DEMO1 cancels the 58900 order. Left on the book:
/// a bid of 0.3 at 59000 and an ask of 1 at 60000.
fn trade(fix_addr: &str) {
    let mut buyer = FixClient::logon(fix_addr, "DEMO1", "demo1", "demo", 1);
    let mut seller = FixClient::logon(fix_addr, "DEMO2", "demo2", "demo", 2);
    let r = buyer.limit("b1", true, "0.5", "59000.00");
    assert!(r.contains("150=0|"), "{r}");
    let r = buyer.limit("b2", true, "0.3", "58900.00");
    assert!(r.contains("150=0|"), "{r}");
    let r = seller.limit("s1", false, "0.2", "59000.00");
    assert!(r.contains("150=0|"), "{r}");
    let r = seller.read_until(&["35=8|", "11=s1|", "150=F|"]);
    assert!(r.contains("39=2|"), "s1 fills completely against b1: {r}");
    let r = seller.limit("s2", false, "1", "60000.00");
    assert!(r.contains("150=0|"), "{r}");
    let now = castle_tests::fix_client::utc_now();
    buyer.send("F", &format!("41=b2|11=b2-cancel|1=1|55=BTC-USDT|54=1|60={now}|38=0.3|"));
    let r = buyer.read_until(&["35=8|", "11=b2-cancel|"]);
    assert!(r.contains("150=4|"), "b2 cancelled: {r}");
}

#[test]
fn feed_rebuilds_what_was_traded_over_fix_and_late_joiners_use_the_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    let port = free_udp_port();
    let dest = format!("{GROUP}:{port}");
    let mut p = Proc::castle(&[
        "serve",
        "--fix-listen",
        "127.0.0.1:0",
        "--rest-listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--feed-dest",
        &dest,
    ]);
    let up = p.wait_for_line("castle is up");
    assert!(up.contains(&format!("market data feed on {dest}")), "{up}");
    assert!(up.contains("Redis off"), "{up}");
    let fix_addr = field(&up, "FIX 4.4 on ");
    let rerequest: SocketAddr = field(&up, "re-request ").parse().expect("re-request address");
    let snapshot: SocketAddr = field(&up, "snapshot ").parse().expect("snapshot address");
    let metrics = field(&up, "metrics on http://").trim_end_matches("/metrics").to_string();

    // Joins now: it missed the start of the session (directory, definitions)
    // and recovers it by re-request.
    let join = |rerequest| {
        FeedClient::new(FeedClientConfig {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            group: Some((GROUP, Ipv4Addr::LOCALHOST)),
            rerequest,
            snapshot: Some(snapshot),
            handler: HandlerConfig::default(),
        })
        .expect("join the feed")
    };
    let mut early = join(Some(rerequest));

    trade(&fix_addr);

    // What was traded: b1 rests with 0.3 left at 59000, s2 rests at 60000; b2 is gone.
    let expected = |d: &InstrumentDefinition| {
        let px = |s| units(s, d.tick_mantissa, d.tick_scale);
        let qty = |s| units(s, d.lot_mantissa, d.lot_scale);
        (vec![(px("59000.00"), qty("0.3"))], vec![(px("60000.00"), qty("1"))])
    };
    let matches = |c: &FeedClient| {
        c.core.in_sync()
            && book_of(c, "BTC-USDT").is_some_and(|(bids, asks, d)| (bids, asks) == expected(&d))
            && book_of(c, "ETH-USDT").is_some_and(|(bids, asks, _)| bids.is_empty() && asks.is_empty())
    };
    run_until(&mut early, "the traded book (early joiner)", matches);
    let (_, _, def) = book_of(&early, "BTC-USDT").expect("BTC-USDT on the feed");
    assert_eq!((def.tick_mantissa, def.tick_scale, def.lot_mantissa, def.lot_scale), (1, 2, 1, 5), "{def:?}");
    assert!(early.core.stats.rerequests >= 1, "the missed session start was re-requested: {:?}", early.core.stats);

    // Joins after the fact without a re-request server: the snapshot service brings it up to date.
    let mut late = join(None);
    run_until(&mut late, "the traded book (late joiner)", matches);
    assert!(late.core.stats.snapshots >= 1, "joined by snapshot: {:?}", late.core.stats);

    // Exchange statistics on the Prometheus endpoint.
    let text = http_get(&metrics, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for line in [
        "castle_venue_trades_total 1",
        "castle_instrument_trades_total{instrument=\"BTC-USDT\"} 1",
        "castle_instrument_orders_accepted_total{instrument=\"BTC-USDT\"} 4",
        "castle_instrument_orders_cancelled_total{instrument=\"BTC-USDT\"} 1",
        "castle_instrument_volume_base_total{instrument=\"BTC-USDT\"} 0.2",
        "castle_instrument_volume_quote_total{instrument=\"BTC-USDT\"} 11800",
        "castle_instrument_open_orders{instrument=\"BTC-USDT\",side=\"buy\"} 1",
        "castle_instrument_open_orders{instrument=\"BTC-USDT\",side=\"sell\"} 1",
        "castle_marketdata_lost{consumer=\"feed\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    assert!(http_get(&metrics, "/other").starts_with("HTTP/1.1 404"));
    // The orchestrator's probes on the same listener.
    assert!(http_get(&metrics, "/ready").starts_with("HTTP/1.1 200"));
    assert!(http_get(&metrics, "/live").starts_with("HTTP/1.1 200"));

    // Shutdown ends the session: the early joiner hears End of Session.
    p.signal("TERM");
    p.wait_for_line("castle stopped");
    run_until(&mut early, "End of Session", |c| c.core.end_of_session);
    assert!(p.child.wait().expect("wait").success());
}

#[test]
fn redis_url_fans_market_data_out_to_redis() {
    let redis = castle_tests::redis::RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    let dest = format!("{GROUP}:{}", free_udp_port());
    let args = [
        "serve",
        "--fix-listen",
        "127.0.0.1:0",
        "--rest-listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--feed-dest",
        &dest,
        "--redis-url",
        &redis.url,
    ];
    let mut p = Proc::castle(&args);
    let up = p.wait_for_line("castle is up");
    assert!(up.contains(&format!("Redis fan-out to {}", redis.url)), "{up}");
    trade(&field(&up, "FIX 4.4 on "));
    // The demo BTC-USDT has tick 0.01 and lot 0.00001 (checked on the feed above).
    let mut reader = RedisReader::new(&redis.url, "castle", 0).expect("redis client");
    let want_bids = BTreeMap::from([(5_900_000, 30_000)]);
    let want_asks = BTreeMap::from([(6_000_000, 100_000)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(reader.bids == want_bids && reader.asks == want_asks) {
        assert!(
            Instant::now() < deadline,
            "Redis depth never matched: bids {:?} asks {:?} (n {}, seq {})",
            reader.bids,
            reader.asks,
            reader.n,
            reader.seq
        );
        if reader.poll(50).is_err() {
            reader.reset();
        }
    }
    let text = http_get(field(&up, "metrics on http://").trim_end_matches("/metrics"), "/metrics");
    for line in ["castle_redis_connected 1", "castle_marketdata_lost{consumer=\"redis\"} 0"] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    let entries = text.lines().find_map(|l| l.strip_prefix("castle_redis_entries_total ")).expect("entries metric");
    assert!(entries.parse::<u64>().expect("a count") >= 6, "stream entries for the trades above: {entries}");
    p.signal("TERM");
    p.wait_for_line("castle stopped");
    assert!(p.child.wait().expect("wait").success());
}
