//! Redis fan-out: one stream per instrument (book changes as L2 deltas and
//! trades), L2/ticker snapshot keys refreshed at a bounded rate, ticker
//! pub/sub. Key names carry a hash tag per instrument (`{md:ID}`), so one
//! instrument's keys live on one Redis Cluster slot and a pipeline per
//! instrument is cluster safe.
//!
//! Redis is never allowed to stop the producer: while it is unreachable the
//! derived state keeps updating, stream entries are dropped (counted), and
//! reconnects back off exponentially; on reconnect every snapshot is
//! republished. Readers detect the gap by the per-stream counter `n` and
//! resync from the snapshot key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use castle_engine::{Event, EventKind, InstrumentId, Side};

use crate::book::DepthLevel;
use crate::derived::MarketData;

#[derive(Debug, thiserror::Error)]
pub enum RedisFanoutError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("malformed snapshot or stream entry: {0}")]
    Malformed(String),
}

pub fn stream_key(prefix: &str, i: InstrumentId) -> String {
    format!("{prefix}:{{md:{i}}}:stream")
}
pub fn depth_key(prefix: &str, i: InstrumentId) -> String {
    format!("{prefix}:{{md:{i}}}:depth")
}
pub fn ticker_key(prefix: &str, i: InstrumentId) -> String {
    format!("{prefix}:{{md:{i}}}:ticker")
}
pub fn ticker_channel(prefix: &str, i: InstrumentId) -> String {
    format!("{prefix}:{{md:{i}}}:ticker:live")
}

#[derive(Clone, Debug)]
pub struct FanoutConfig {
    pub url: String,
    pub prefix: String,
    /// Approximate MAXLEN of each stream.
    pub stream_maxlen: usize,
    /// Snapshot keys and ticker messages at most this often per instrument.
    pub snapshot_interval: Duration,
    /// Commands per pipeline; also the most entries held while Redis is slow.
    pub pipeline_max: usize,
    /// One command per event instead of pipelines (for the benchmark's baseline).
    pub unpipelined: bool,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
}

impl FanoutConfig {
    pub fn new(url: &str) -> Self {
        FanoutConfig {
            url: url.to_string(),
            prefix: "castle".into(),
            stream_maxlen: 100_000,
            snapshot_interval: Duration::from_millis(100),
            pipeline_max: 1_000,
            unpipelined: false,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(200),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutStats {
    pub entries: u64,
    pub dropped: u64,
    pub snapshots: u64,
    pub reconnects: u64,
    pub errors: u64,
}

/// One stream entry: an L2 delta or a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub instrument: InstrumentId,
    /// Contiguous per stream: a reader seeing a jump has missed entries.
    pub n: u64,
    pub seq: u64,
    pub ts: u64,
    /// 'd' level delta, 't' trade (the book delta for a trade comes as its own 'd').
    pub kind: u8,
    pub side: Side,
    pub price: i64,
    /// Level quantity change (d) or traded quantity (t).
    pub qty: i64,
}

pub struct RedisFanout {
    cfg: FanoutConfig,
    client: redis::Client,
    conn: Option<redis::Connection>,
    next_attempt: Instant,
    backoff: Duration,
    md: MarketData,
    counters: BTreeMap<InstrumentId, u64>,
    pipe: redis::Pipeline,
    queued: usize,
    dirty: BTreeSet<InstrumentId>,
    keys: BTreeMap<InstrumentId, String>,
    last_snapshot: Instant,
    republish: bool,
    pub stats: FanoutStats,
}

fn side_str(s: Side) -> &'static str {
    match s {
        Side::Buy => "B",
        Side::Sell => "S",
    }
}

impl RedisFanout {
    pub fn new(cfg: FanoutConfig) -> Result<Self, RedisFanoutError> {
        let client = redis::Client::open(cfg.url.as_str())?;
        let now = Instant::now();
        Ok(RedisFanout {
            backoff: cfg.backoff_min,
            cfg,
            client,
            conn: None,
            next_attempt: now,
            md: MarketData::new(),
            counters: BTreeMap::new(),
            pipe: redis::pipe(),
            queued: 0,
            dirty: BTreeSet::new(),
            keys: BTreeMap::new(),
            last_snapshot: now,
            republish: true,
            stats: FanoutStats::default(),
        })
    }

    pub fn market_data(&self) -> &MarketData {
        &self.md
    }

    /// The last `n` assigned on an instrument's stream.
    pub fn stream_counter(&self, i: InstrumentId) -> u64 {
        self.counters.get(&i).copied().unwrap_or(0)
    }

    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    fn ensure_conn(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        let now = Instant::now();
        if now < self.next_attempt {
            return false;
        }
        match self.client.get_connection_with_timeout(self.cfg.connect_timeout) {
            Ok(c) => {
                // A stalled Redis must not stall the producer for long: fail fast and back off.
                let io = Some(self.cfg.connect_timeout.max(Duration::from_millis(500)));
                if let Err(e) = c.set_write_timeout(io).and_then(|_| c.set_read_timeout(io)) {
                    self.fail(e);
                    return false;
                }
                tracing::info!("redis connected");
                self.conn = Some(c);
                self.backoff = self.cfg.backoff_min;
                self.stats.reconnects += 1;
                // Whatever readers had may be gone (a restarted Redis): give them a fresh base.
                self.republish = true;
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn fail(&mut self, e: redis::RedisError) {
        tracing::warn!(error = %e, backoff_ms = self.backoff.as_millis() as u64, "redis unavailable");
        self.stats.errors += 1;
        self.conn = None;
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
        self.stats.dropped += self.queued as u64;
        self.pipe.clear();
        self.queued = 0;
        self.republish = true;
    }

    /// Applies events to the derived state and queues their stream entries.
    pub fn on_events(&mut self, events: &[Event]) -> Result<(), RedisFanoutError> {
        for e in events {
            // Prices of reduce/remove/trade come from the book before the change.
            let pre = match e.kind {
                EventKind::BookReduce { instrument, order_id, by } => self.level_of(instrument, order_id, -by),
                EventKind::BookRemove { instrument, order_id } => {
                    self.md.instrument(instrument).and_then(|d| d.book.get(order_id)).map(|o| (o.side, o.price, -o.qty))
                }
                EventKind::Trade { instrument, maker_order, qty, .. } => self.level_of(instrument, maker_order, -qty),
                EventKind::BookAdd { side, price, qty, .. } => Some((side, price, qty)),
                _ => None,
            };
            let touched = self.md.apply_one(e).map_err(|x| RedisFanoutError::Malformed(x.to_string()))?;
            let Some((inst, _)) = touched else { continue };
            self.dirty.insert(inst);
            if let Some((side, price, qty)) = pre {
                self.queue(Entry { instrument: inst, n: 0, seq: e.seq, ts: e.ts, kind: b'd', side, price, qty });
            }
            if let EventKind::Trade { price, qty, aggressor, .. } = e.kind {
                let t = Entry { instrument: inst, n: 0, seq: e.seq, ts: e.ts, kind: b't', side: aggressor, price, qty };
                self.queue(t);
            }
        }
        if self.queued >= self.cfg.pipeline_max {
            self.flush();
        }
        if self.last_snapshot.elapsed() >= self.cfg.snapshot_interval {
            self.flush();
        }
        Ok(())
    }

    fn level_of(&self, inst: InstrumentId, order: u64, delta: i64) -> Option<(Side, i64, i64)> {
        self.md.instrument(inst).and_then(|d| d.book.get(order)).map(|o| (o.side, o.price, delta))
    }

    fn queue(&mut self, mut en: Entry) {
        let c = self.counters.entry(en.instrument).or_insert(0);
        *c += 1;
        en.n = *c;
        self.stats.entries += 1;
        if self.conn.is_none() && !self.ensure_conn() {
            // Nothing to send to: readers will see the jump in `n` and resync.
            self.stats.dropped += 1;
            return;
        }
        let prefix = &self.cfg.prefix;
        let key = self.keys.entry(en.instrument).or_insert_with(|| stream_key(prefix, en.instrument));
        // Few fields keep XADD cheap for Redis (each field is a listpack
        // entry): `seq` and `n` stand alone for readers' gap checks, the
        // rest travels as one compact "kind,side,price,qty,ts" value.
        let mut body = itoa_buf::Buf::default();
        body.push_str(if en.kind == b't' { "t," } else { "d," });
        body.push_str(side_str(en.side));
        body.push_i64(en.price);
        body.push_i64(en.qty);
        body.push_i64(en.ts as i64);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key.as_str())
            .arg("MAXLEN")
            .arg("~")
            .arg(self.cfg.stream_maxlen)
            .arg("*")
            .arg("seq")
            .arg(en.seq)
            .arg("n")
            .arg(en.n)
            .arg("e")
            .arg(body.as_bytes());
        if self.cfg.unpipelined {
            if let Some(conn) = self.conn.as_mut() {
                if let Err(e) = cmd.query::<()>(conn) {
                    self.fail(e);
                }
            }
            return;
        }
        self.pipe.add_command(cmd).ignore();
        self.queued += 1;
    }

    /// Sends queued entries and, at the bounded rate, snapshots of changed instruments.
    pub fn flush(&mut self) {
        if !self.ensure_conn() {
            return;
        }
        let snap_due = self.republish || self.last_snapshot.elapsed() >= self.cfg.snapshot_interval;
        if snap_due {
            let all: Vec<InstrumentId> = if self.republish {
                self.md.instruments().map(|d| d.id).collect()
            } else {
                std::mem::take(&mut self.dirty).into_iter().collect()
            };
            for i in all {
                self.queue_snapshot(i);
            }
            self.dirty.clear();
            self.last_snapshot = Instant::now();
        }
        if self.queued == 0 {
            return;
        }
        let Some(conn) = self.conn.as_mut() else { return };
        let res = self.pipe.query::<()>(conn);
        self.pipe.clear();
        let n = self.queued;
        self.queued = 0;
        match res {
            Ok(()) => {
                if snap_due {
                    self.republish = false;
                }
            }
            Err(e) => {
                self.queued = n;
                self.fail(e);
            }
        }
    }

    fn queue_snapshot(&mut self, i: InstrumentId) {
        let Some(d) = self.md.instrument(i) else { return };
        let n = self.counters.get(&i).copied().unwrap_or(0);
        let depth = d.book.depth(usize::MAX);
        let mut s = String::with_capacity(64 + 24 * (depth.bids.len() + depth.asks.len()));
        let _ = write!(s, "{{\"instrument\":{i},\"n\":{n},\"seq\":{},\"bids\":[", d.seq);
        let lv = |s: &mut String, ls: &[DepthLevel]| {
            for (k, l) in ls.iter().enumerate() {
                let _ = write!(s, "{}[{},{},{}]", if k > 0 { "," } else { "" }, l.price, l.qty, l.orders);
            }
        };
        lv(&mut s, &depth.bids);
        s.push_str("],\"asks\":[");
        lv(&mut s, &depth.asks);
        s.push_str("]}");
        let t = d.ticker();
        let ticker = format!(
            "{{\"instrument\":{i},\"seq\":{},\"ts\":{},\"open\":{},\"high\":{},\"low\":{},\"last\":{},\"volume\":{},\"quote_volume\":{},\"change\":{},\"trades\":{}}}",
            t.seq, t.ts, t.open, t.high, t.low, t.last, t.volume, t.quote_volume, t.change, t.trades
        );
        self.pipe.cmd("SET").arg(depth_key(&self.cfg.prefix, i)).arg(s).ignore();
        self.pipe.cmd("SET").arg(ticker_key(&self.cfg.prefix, i)).arg(&ticker).ignore();
        self.pipe.cmd("PUBLISH").arg(ticker_channel(&self.cfg.prefix, i)).arg(&ticker).ignore();
        self.queued += 3;
        self.stats.snapshots += 1;
    }
}

/// Parses the depth snapshot JSON written above (a tiny fixed grammar, so
/// no JSON dependency): returns (n, seq, bids, asks) as price -> qty.
#[allow(clippy::type_complexity)]
pub fn parse_depth(s: &str) -> Result<(u64, u64, BTreeMap<i64, i64>, BTreeMap<i64, i64>), RedisFanoutError> {
    let bad = || RedisFanoutError::Malformed(s.chars().take(80).collect());
    let num = |key: &str| -> Result<u64, RedisFanoutError> {
        let at = s.find(&format!("\"{key}\":")).ok_or_else(bad)? + key.len() + 3;
        let end = s[at..].find([',', '}']).ok_or_else(bad)? + at;
        s[at..end].parse().map_err(|_| bad())
    };
    let levels = |key: &str| -> Result<BTreeMap<i64, i64>, RedisFanoutError> {
        let at = s.find(&format!("\"{key}\":[")).ok_or_else(bad)? + key.len() + 4;
        let end = s[at..].find("]]").map(|e| e + at + 1).unwrap_or(at);
        let mut m = BTreeMap::new();
        for part in s[at..end].split("],").filter(|p| !p.is_empty()) {
            let mut it = part.trim_matches(|c| c == '[' || c == ']').split(',');
            let p: i64 = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
            let q: i64 = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
            m.insert(p, q);
        }
        Ok(m)
    };
    Ok((num("n")?, num("seq")?, levels("bids")?, levels("asks")?))
}

/// A consumer of one instrument's stream keeping L2 depth; resyncs from the
/// snapshot key whenever the per-stream counter jumps.
pub struct RedisReader {
    client: redis::Client,
    conn: Option<redis::Connection>,
    prefix: String,
    instrument: InstrumentId,
    last_id: String,
    pub n: u64,
    pub seq: u64,
    pub bids: BTreeMap<i64, i64>,
    pub asks: BTreeMap<i64, i64>,
    pub resyncs: u64,
    /// Engine timestamp of the last entry applied (for lag measurements).
    pub last_ts: u64,
    synced: bool,
}

impl RedisReader {
    pub fn new(url: &str, prefix: &str, instrument: InstrumentId) -> Result<Self, RedisFanoutError> {
        Ok(RedisReader {
            client: redis::Client::open(url)?,
            conn: None,
            prefix: prefix.into(),
            instrument,
            last_id: "0-0".into(),
            n: 0,
            seq: 0,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            resyncs: 0,
            last_ts: 0,
            synced: false,
        })
    }

    fn conn(&mut self) -> Result<&mut redis::Connection, RedisFanoutError> {
        if self.conn.is_none() {
            self.conn = Some(self.client.get_connection_with_timeout(Duration::from_millis(200))?);
            // A new connection may be a new Redis: our stream position means nothing there.
            self.synced = false;
        }
        self.conn.as_mut().ok_or_else(|| RedisFanoutError::Malformed("no connection".into()))
    }

    fn resync(&mut self) -> Result<bool, RedisFanoutError> {
        let key = depth_key(&self.prefix, self.instrument);
        let conn = self.conn()?;
        let snap: Option<String> = redis::cmd("GET").arg(&key).query(conn)?;
        let Some(snap) = snap else { return Ok(false) };
        let (n, seq, bids, asks) = parse_depth(&snap)?;
        self.bids = bids;
        self.asks = asks;
        self.n = n;
        self.seq = seq;
        // Re-read the retained stream from its start, skipping what the
        // snapshot covers: the snapshot is written after its entries, so
        // entry n+1 on is there unless MAXLEN trimmed it (then: resync again).
        self.last_id = "0-0".into();
        self.synced = true;
        self.resyncs += 1;
        Ok(true)
    }

    /// Reads what is available (blocking up to `block_ms`), applying entries in order.
    pub fn poll(&mut self, block_ms: u64) -> Result<usize, RedisFanoutError> {
        if !self.synced && !self.resync()? {
            return Ok(0);
        }
        let skey = stream_key(&self.prefix, self.instrument);
        let last_id = self.last_id.clone();
        let conn = self.conn()?;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(10_000);
        // BLOCK 0 would wait forever: 0 here means "don't block".
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        let reply: redis::Value = cmd.arg("STREAMS").arg(&skey).arg(&last_id).query(conn)?;
        let entries = parse_xread(reply);
        let mut applied = 0;
        for (id, fields) in entries {
            self.last_id = id;
            let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str()).unwrap_or("");
            let n: u64 = get("n").parse().unwrap_or(0);
            if n <= self.n {
                continue; // covered by the snapshot
            }
            if n != self.n + 1 {
                tracing::info!(expected = self.n + 1, got = n, "redis stream gap; resyncing");
                self.synced = false;
                return Ok(applied);
            }
            self.n = n;
            self.seq = get("seq").parse().unwrap_or(self.seq);
            let mut parts = get("e").split(',');
            let (k, sd, p, q) = (parts.next(), parts.next(), parts.next(), parts.next());
            self.last_ts = parts.next().and_then(|t| t.parse().ok()).unwrap_or(self.last_ts);
            if k == Some("d") {
                let p: i64 = p.and_then(|x| x.parse().ok()).unwrap_or(0);
                let q: i64 = q.and_then(|x| x.parse().ok()).unwrap_or(0);
                let side = if sd == Some("B") { &mut self.bids } else { &mut self.asks };
                let v = side.entry(p).or_insert(0);
                *v += q;
                if *v == 0 {
                    side.remove(&p);
                }
            }
            applied += 1;
        }
        Ok(applied)
    }

    /// Drops the connection after an error so the next poll reconnects (and resyncs).
    pub fn reset(&mut self) {
        self.conn = None;
        self.synced = false;
    }
}

type StreamEntries = Vec<(String, Vec<(String, String)>)>;

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

fn parse_entries(v: &redis::Value) -> StreamEntries {
    let mut out = Vec::new();
    if let redis::Value::Array(items) = v {
        for it in items {
            if let redis::Value::Array(pair) = it {
                if let (Some(id), Some(redis::Value::Array(fv))) = (pair.first(), pair.get(1)) {
                    let fields = fv.chunks(2).filter(|c| c.len() == 2).map(|c| (text(&c[0]), text(&c[1]))).collect();
                    out.push((text(id), fields));
                }
            }
        }
    }
    out
}

fn parse_xread(v: redis::Value) -> StreamEntries {
    // [[key, [[id, [f, v, ...]], ...]]] or nil on timeout.
    match v {
        redis::Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                redis::Value::Array(kv) => kv.get(1).map(parse_entries),
                _ => None,
            })
            .flatten()
            .collect(),
        _ => Vec::new(),
    }
}

/// A tiny stack buffer for the compact entry value: no allocation per entry.
mod itoa_buf {
    pub struct Buf {
        b: [u8; 96],
        len: usize,
    }
    impl Default for Buf {
        fn default() -> Self {
            Buf { b: [0; 96], len: 0 }
        }
    }
    impl Buf {
        pub fn push_str(&mut self, s: &str) {
            let n = s.len().min(self.b.len() - self.len);
            self.b[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
        }
        /// Appends ",<v>".
        pub fn push_i64(&mut self, v: i64) {
            let mut tmp = [0u8; 21];
            let mut i = tmp.len();
            let neg = v < 0;
            let mut u = v.unsigned_abs();
            loop {
                i -= 1;
                tmp[i] = b'0' + (u % 10) as u8;
                u /= 10;
                if u == 0 {
                    break;
                }
            }
            if neg {
                i -= 1;
                tmp[i] = b'-';
            }
            self.push_str(",");
            // Digits and '-' are ASCII.
            self.push_str(std::str::from_utf8(&tmp[i..]).unwrap_or("0"));
        }
        pub fn as_bytes(&self) -> &[u8] {
            &self.b[..self.len]
        }
    }
}
