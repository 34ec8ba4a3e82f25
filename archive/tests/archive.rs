//! The archiver against a live in-process engine: into a local folder
//! (exactly once across restarts) and into Kinesis on the moto AWS emulator
//! (every event arrives; a repeated flush after a lost cursor is the only
//! duplication, and `seq` removes it).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use castle_archive::chunk::Limits;
use castle_archive::cursor::{Cursor, CursorFile};
use castle_archive::record::{encode_batch, Symbols};
use castle_archive::testkit::Moto;
use castle_archive::{kinesis, ArchiverConfig, DirSink, KinesisConfig, KinesisSink, Sink, Stats};
use castle_engine::{
    ClientOrderId, Command, InstrumentSpec, Limits as EngineLimits, NewOrder, OrderSize, OrderType, Side, TimeInForce,
};
use castle_link::{EngineBatch, EngineLink, EngineRequest, InProcessEngine, Origin};
use tokio::sync::mpsc::Receiver;

fn engine() -> Arc<dyn EngineLink> {
    let mut setup = vec![Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000))];
    for account in 1..=4 {
        setup.push(Command::Deposit { account, asset: 1, amount: 100_000_000 });
        setup.push(Command::Deposit { account, asset: 2, amount: 1 << 50 });
    }
    InProcessEngine::start(EngineLimits::default(), &setup, 4_096)
}

/// Crossing limit orders from four accounts: accepts, trades, balance changes.
async fn trade(link: &Arc<dyn EngineLink>, from: u64, n: u64) {
    for i in from..from + n {
        let command = Command::PlaceOrder(NewOrder {
            account: 1 + (i % 4) as u32,
            instrument: 0,
            client_order_id: ClientOrderId::from_u64(i),
            side: if i % 2 == 0 { Side::Sell } else { Side::Buy },
            order_type: OrderType::Limit { price: 6_000_000 + (i % 7) as i64 - 3 },
            size: OrderSize::Base(1 + (i % 3) as i64),
            tif: TimeInForce::Gtc,
            post_only: false,
            display_qty: 0,
            stp: None,
        });
        let req = EngineRequest { origin: Origin { gateway: 1, request: i + 1 }, command };
        while link.submit(req).is_err() {
            tokio::task::yield_now().await;
        }
    }
}

/// The lines an independent subscriber expects, by seq, until it has seen `commands` of gateway 1's.
async fn expect(rx: &mut Receiver<Arc<EngineBatch>>, symbols: &Symbols, commands: u64) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut seen = 0;
    while seen < commands {
        let b = rx.recv().await.expect("stream");
        if b.origin.is_some() {
            seen += 1;
        }
        let mut lines = Vec::new();
        encode_batch("a", symbols, &b, &mut lines);
        out.insert(b.seq, lines);
    }
    out
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config() -> ArchiverConfig {
    // Small records and flushes so that the runs cross many flush boundaries.
    ArchiverConfig {
        linger: Duration::from_millis(5),
        limits: Limits { record_bytes: 8 << 10, records_per_flush: 8, flush_bytes: 48 << 10 },
        ..ArchiverConfig::default()
    }
}

/// Runs an archiver until it holds `last`, then stops it cleanly.
async fn archive_until(link: &Arc<dyn EngineLink>, sink: Sink, last: u64) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(castle_archive::run(link.clone(), sink, config(), stats.clone(), stop_rx));
    let s = stats.clone();
    wait_until("the archive to catch up", || s.archived_seq.load(Ordering::Relaxed) >= last).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    stats
}

fn lines_by_seq(text: &[u8]) -> BTreeMap<u64, Vec<u8>> {
    let mut out: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        let v: serde_json::Value = serde_json::from_slice(line).expect("every line is JSON");
        out.entry(v["seq"].as_u64().expect("seq")).or_default().extend_from_slice(line);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_archive_holds_every_event_exactly_once_across_restarts() {
    let link = engine();
    let symbols = Symbols::from_specs(&link.instruments());
    let mut observer = link.subscribe_after(0, 1 << 16).unwrap();
    let dir = tempfile::tempdir().unwrap();

    trade(&link, 0, 400).await;
    let mut want = expect(&mut observer, &symbols, 400).await;
    let first_last = *want.keys().last().unwrap();
    let sink = Sink::Dir(Box::new(DirSink::open(dir.path(), "events").unwrap()));
    let stats = archive_until(&link, sink, first_last).await;
    assert!(stats.flushes.load(Ordering::Relaxed) > 1, "several flushes");

    // Restart on the same folder: it resumes after its cursor.
    trade(&link, 400, 300).await;
    want.append(&mut expect(&mut observer, &symbols, 300).await);
    let last = *want.keys().last().unwrap();
    let sink = DirSink::open(dir.path(), "events").unwrap();
    assert_eq!(sink.cursor().seq, stats.archived_seq.load(Ordering::Relaxed));
    let files = sink.files().unwrap();
    let stats = archive_until(&link, Sink::Dir(Box::new(sink)), last).await;
    assert!(stats.archived_seq.load(Ordering::Relaxed) >= last);

    let sink = DirSink::open(dir.path(), "events").unwrap();
    let mut all = Vec::new();
    for f in sink.files().unwrap() {
        all.extend(std::fs::read(f).unwrap());
    }
    assert!(sink.files().unwrap().len() >= files.len());
    let got = lines_by_seq(&all);
    // Byte for byte what an independent subscriber encodes, each seq once, nothing else.
    let want: BTreeMap<u64, Vec<u8>> = want.into_iter().filter(|(_, l)| !l.is_empty()).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the archive differs from the stream");
    let kinds: std::collections::BTreeSet<String> = all
        .split_inclusive(|&b| b == b'\n')
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    for k in ["order_accepted", "trade", "balance_changed", "book_add"] {
        assert!(kinds.contains(k), "no {k} among {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_archive_on_moto_holds_every_event() {
    let moto = Moto::start();
    // The emulator accepts any credentials; the SDK's usual sources must find some.
    std::env::set_var("AWS_ACCESS_KEY_ID", "castle-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "castle-test");
    let client = kinesis::client(Some("eu-west-1"), Some(&moto.endpoint)).await;
    let stream = "castle-test-events";
    client.create_stream().stream_name(stream).shard_count(2).send().await.unwrap();

    let link = engine();
    let symbols = Symbols::from_specs(&link.instruments());
    let mut observer = link.subscribe_after(0, 1 << 16).unwrap();
    trade(&link, 0, 300).await;
    let want = expect(&mut observer, &symbols, 300).await;
    let last = *want.keys().last().unwrap();

    let state = tempfile::tempdir().unwrap();
    let cfg = KinesisConfig {
        stream: stream.into(),
        region: Some("eu-west-1".into()),
        endpoint: Some(moto.endpoint.clone()),
        cursor_path: state.path().join("kinesis.cursor"),
        key_prefix: "a".into(),
        max_attempts: 5,
    };
    let sink = KinesisSink::connect(cfg.clone()).await.unwrap();
    let stats = archive_until(&link, Sink::Kinesis(Box::new(sink)), last).await;
    assert!(stats.flushes.load(Ordering::Relaxed) > 1);

    let want: BTreeMap<u64, Vec<u8>> = want.into_iter().filter(|(_, l)| !l.is_empty()).collect();
    let first = castle_archive::testkit::read_stream(&client, stream).await;
    assert!(lines_by_seq(&first) == want, "Kinesis holds exactly the stream's lines");

    // A crash after PutRecords but before the cursor write: the cursor is behind what Kinesis holds.
    let behind = *want.keys().nth(want.len() / 2).unwrap();
    CursorFile::new(&cfg.cursor_path).store(&Cursor { seq: behind, file: None }).unwrap();
    let sink = KinesisSink::connect(cfg.clone()).await.unwrap();
    archive_until(&link, Sink::Kinesis(Box::new(sink)), last).await;
    let again = castle_archive::testkit::read_stream(&client, stream).await;
    assert!(again.len() > first.len(), "the lines after the old cursor were sent again");
    // Readers deduplicate on seq: each seq's lines arrived once, or twice if after the old cursor.
    let got = lines_by_seq(&again);
    assert!(got.keys().eq(want.keys()), "every seq, nothing else");
    for (seq, lines) in &got {
        let w = &want[seq];
        let copies = if *seq > behind { 2 } else { 1 };
        assert_eq!(lines.len(), w.len() * copies, "seq {seq}");
        assert!(lines.chunks(w.len()).all(|c| c == &w[..]), "seq {seq}: copies are identical");
    }

    // A flush larger than one PutRecords call (500 records) goes out in several calls.
    let big = "castle-test-big";
    client.create_stream().stream_name(big).shard_count(1).send().await.unwrap();
    let mut sink = KinesisSink::connect(KinesisConfig {
        stream: big.into(),
        cursor_path: state.path().join("big.cursor"),
        ..cfg.clone()
    })
    .await
    .unwrap();
    let records: Vec<Vec<u8>> = (1..=1_200u64).map(|seq| format!("{{\"seq\":{seq}}}\n").into_bytes()).collect();
    let flush = castle_archive::chunk::Flush { first_seq: 1, last_seq: 1_200, first_ts: 1, records, events: 1_200 };
    sink.put(&flush).await.unwrap();
    assert_eq!(sink.cursor().seq, 1_200);
    let got = lines_by_seq(&castle_archive::testkit::read_stream(&client, big).await);
    assert!(got.keys().copied().eq(1..=1_200u64), "all 1,200 records, once each");
    assert!(got.values().all(|l| l.ends_with(b"}\n") && l.iter().filter(|&&b| b == b'\n').count() == 1));

    // A stream that does not exist is refused at start, by name.
    let missing = KinesisSink::connect(KinesisConfig { stream: "no-such-stream".into(), ..cfg }).await;
    let err = missing.err().expect("a missing stream is an error").to_string();
    assert!(err.contains("no-such-stream"), "{err}");
}
