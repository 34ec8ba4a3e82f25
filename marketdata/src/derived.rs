//! Derived market data from engine events (sans-IO): L3/L2/L1 books, recent
//! trades, 24-hour rolling ticker and candles, per instrument.
//!
//! Everything is integer ticks and lots, and everything carries the engine
//! sequence number it reflects, so a reader can tell staleness and gaps.

use std::collections::{BTreeMap, VecDeque};

use castle_engine::{Event, EventKind, InstrumentId, Price, Qty, Seq, Side, Timestamp, TradingStatus};

use crate::book::{BookError, L3Book};

const NS_PER_SEC: u64 = 1_000_000_000;
/// Candle intervals in seconds: 1m, 5m, 15m, 1h, 4h, 1d.
pub const CANDLE_INTERVALS: [u64; 6] = [60, 300, 900, 3_600, 14_400, 86_400];
/// Closed candles kept per interval (a bounded history; older ones are dropped).
pub const CANDLE_HISTORY: usize = 1_000;
/// Recent trades kept per instrument.
pub const TRADE_HISTORY: usize = 1_000;
/// The ticker's rolling window is kept as per-minute buckets: exact to the
/// minute and bounded (1440 buckets) however many trades a day brings.
const TICKER_BUCKET_NS: u64 = 60 * NS_PER_SEC;
const TICKER_WINDOW_NS: u64 = 24 * 3_600 * NS_PER_SEC;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicTrade {
    pub seq: Seq,
    pub ts: Timestamp,
    pub trade_id: u64,
    pub price: Price,
    pub qty: Qty,
    pub aggressor: Side,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    /// Interval length in seconds.
    pub interval: u64,
    /// Start of the interval, ns since the epoch.
    pub open_time: Timestamp,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    /// Lots traded.
    pub volume: Qty,
    /// Sum of price * qty in tick-lots (multiply by the instrument's
    /// `tick_value` for quote minor units).
    pub quote_volume: i128,
    pub trades: u64,
    /// Engine seq of the last trade included.
    pub seq: Seq,
}

impl Candle {
    fn new(interval: u64, open_time: Timestamp, t: &PublicTrade) -> Self {
        Candle {
            interval,
            open_time,
            open: t.price,
            high: t.price,
            low: t.price,
            close: t.price,
            volume: 0,
            quote_volume: 0,
            trades: 0,
            seq: t.seq,
        }
    }

    fn add(&mut self, t: &PublicTrade) {
        self.high = self.high.max(t.price);
        self.low = self.low.min(t.price);
        self.close = t.price;
        self.volume += t.qty;
        self.quote_volume += t.price as i128 * t.qty as i128;
        self.trades += 1;
        self.seq = t.seq;
    }
}

/// One interval's candles: the open one plus a bounded history.
#[derive(Clone, Debug)]
pub struct CandleSeries {
    pub interval: u64,
    pub current: Option<Candle>,
    pub closed: VecDeque<Candle>,
}

impl CandleSeries {
    fn new(interval: u64) -> Self {
        CandleSeries { interval, current: None, closed: VecDeque::new() }
    }

    fn on_trade(&mut self, t: &PublicTrade) {
        let len = self.interval * NS_PER_SEC;
        let start = t.ts - t.ts % len;
        match &mut self.current {
            Some(c) if c.open_time == start => c.add(t),
            // Engine time never goes backwards, so a different start is a later one.
            cur => {
                if let Some(done) = cur.take() {
                    if self.closed.len() == CANDLE_HISTORY {
                        self.closed.pop_front();
                    }
                    self.closed.push_back(done);
                }
                let mut c = Candle::new(self.interval, start, t);
                c.add(t);
                self.current = Some(c);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    start: Timestamp,
    open: Price,
    high: Price,
    low: Price,
    close: Price,
    volume: Qty,
    quote_volume: i128,
}

/// 24-hour rolling statistics (to minute granularity).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticker {
    pub instrument: InstrumentId,
    pub seq: Seq,
    pub ts: Timestamp,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub last: Price,
    pub volume: Qty,
    /// Tick-lots; see [`Candle::quote_volume`].
    pub quote_volume: i128,
    /// last - open, in ticks.
    pub change: Price,
    pub trades: u64,
    pub best_bid: Option<(Price, Qty)>,
    pub best_ask: Option<(Price, Qty)>,
}

#[derive(Clone, Debug, Default)]
struct RollingWindow {
    buckets: VecDeque<Bucket>,
    trades: u64,
    trade_ts: VecDeque<(Timestamp, u64)>,
}

impl RollingWindow {
    fn on_trade(&mut self, t: &PublicTrade) {
        let start = t.ts - t.ts % TICKER_BUCKET_NS;
        match self.buckets.back_mut() {
            Some(b) if b.start == start => {
                b.high = b.high.max(t.price);
                b.low = b.low.min(t.price);
                b.close = t.price;
                b.volume += t.qty;
                b.quote_volume += t.price as i128 * t.qty as i128;
                if let Some(c) = self.trade_ts.back_mut() {
                    c.1 += 1;
                }
            }
            _ => {
                self.buckets.push_back(Bucket {
                    start,
                    open: t.price,
                    high: t.price,
                    low: t.price,
                    close: t.price,
                    volume: t.qty,
                    quote_volume: t.price as i128 * t.qty as i128,
                });
                self.trade_ts.push_back((start, 1));
            }
        }
        self.trades += 1;
        self.expire(t.ts);
    }

    fn expire(&mut self, now: Timestamp) {
        let cutoff = now.saturating_sub(TICKER_WINDOW_NS);
        while self.buckets.front().is_some_and(|b| b.start + TICKER_BUCKET_NS <= cutoff) {
            self.buckets.pop_front();
            if let Some((_, n)) = self.trade_ts.pop_front() {
                self.trades -= n;
            }
        }
    }
}

/// Everything derived for one instrument.
#[derive(Clone, Debug)]
pub struct InstrumentData {
    pub id: InstrumentId,
    pub book: L3Book,
    pub status: TradingStatus,
    pub trades: VecDeque<PublicTrade>,
    pub candles: Vec<CandleSeries>,
    window: RollingWindow,
    /// Last trade price, kept after the window empties.
    last: Option<Price>,
    /// Engine seq of the last event that touched this instrument.
    pub seq: Seq,
    pub ts: Timestamp,
}

impl InstrumentData {
    fn new(id: InstrumentId) -> Self {
        InstrumentData {
            id,
            book: L3Book::new(),
            status: TradingStatus::Open,
            trades: VecDeque::new(),
            candles: CANDLE_INTERVALS.iter().map(|&i| CandleSeries::new(i)).collect(),
            window: RollingWindow::default(),
            last: None,
            seq: 0,
            ts: 0,
        }
    }

    /// The rolling ticker as of the last event seen (call [`MarketData::on_time`] to age it).
    pub fn ticker(&self) -> Ticker {
        let w = &self.window.buckets;
        let top = self.book.top();
        let mut t = Ticker {
            instrument: self.id,
            seq: self.seq,
            ts: self.ts,
            best_bid: top.bid,
            best_ask: top.ask,
            trades: self.window.trades,
            last: self.last.unwrap_or(0),
            ..Ticker::default()
        };
        if let (Some(first), Some(last)) = (w.front(), w.back()) {
            t.open = first.open;
            t.last = last.close;
            t.high = w.iter().map(|b| b.high).max().unwrap_or(0);
            t.low = w.iter().map(|b| b.low).min().unwrap_or(0);
            t.volume = w.iter().map(|b| b.volume).sum();
            t.quote_volume = w.iter().map(|b| b.quote_volume).sum();
            t.change = t.last - t.open;
        }
        t
    }

    pub fn candles(&self, interval_secs: u64) -> Option<&CandleSeries> {
        self.candles.iter().find(|c| c.interval == interval_secs)
    }
}

/// What changed for one instrument in a batch of events, so publishers
/// refresh only what moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub book: bool,
    pub trades: bool,
    pub status: bool,
}

/// The derived-data state machine: feed it engine events in order.
#[derive(Clone, Debug, Default)]
pub struct MarketData {
    instruments: BTreeMap<InstrumentId, InstrumentData>,
    /// Engine seq of the last event applied.
    pub seq: Seq,
}

/// An event that does not fit the state built so far: a gap or a bug
/// upstream. The state is left as it was before that event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("event seq {seq} on instrument {instrument}: {source}")]
    Book { seq: Seq, instrument: InstrumentId, source: BookError },
    #[error("event seq {got} is older than the last applied {last}")]
    Stale { got: Seq, last: Seq },
}

impl MarketData {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn instrument(&self, id: InstrumentId) -> Option<&InstrumentData> {
        self.instruments.get(&id)
    }

    pub fn instruments(&self) -> impl Iterator<Item = &InstrumentData> {
        self.instruments.values()
    }

    fn data(&mut self, id: InstrumentId) -> &mut InstrumentData {
        self.instruments.entry(id).or_insert_with(|| InstrumentData::new(id))
    }

    /// Applies a batch of events, in order.
    pub fn apply(&mut self, events: &[Event]) -> Result<(), ApplyError> {
        for e in events {
            self.apply_one(e)?;
        }
        Ok(())
    }

    /// Applies one event; returns the instrument it touched and what changed.
    pub fn apply_one(&mut self, e: &Event) -> Result<Option<(InstrumentId, Changed)>, ApplyError> {
        if e.seq < self.seq {
            return Err(ApplyError::Stale { got: e.seq, last: self.seq });
        }
        let (seq, ts) = (e.seq, e.ts);
        let bk = |instrument, source| ApplyError::Book { seq, instrument, source };
        let (inst, changed) = match e.kind {
            EventKind::InstrumentAdded { instrument } => {
                self.data(instrument);
                (instrument, Changed { status: true, ..Changed::default() })
            }
            EventKind::TradingStatusChanged { instrument, status } => {
                self.data(instrument).status = status;
                (instrument, Changed { status: true, ..Changed::default() })
            }
            EventKind::BookAdd { instrument, order_id, side, price, qty } => {
                self.data(instrument).book.add(order_id, side, price, qty).map_err(|s| bk(instrument, s))?;
                (instrument, Changed { book: true, ..Changed::default() })
            }
            EventKind::BookReduce { instrument, order_id, by } => {
                self.data(instrument).book.reduce(order_id, by).map_err(|s| bk(instrument, s))?;
                (instrument, Changed { book: true, ..Changed::default() })
            }
            EventKind::BookRemove { instrument, order_id } => {
                self.data(instrument).book.remove(order_id).map_err(|s| bk(instrument, s))?;
                (instrument, Changed { book: true, ..Changed::default() })
            }
            EventKind::Trade { trade_id, instrument, price, qty, aggressor, maker_order, .. } => {
                let d = self.data(instrument);
                d.book.reduce(maker_order, qty).map_err(|s| bk(instrument, s))?;
                let t = PublicTrade { seq, ts, trade_id, price, qty, aggressor };
                if d.trades.len() == TRADE_HISTORY {
                    d.trades.pop_front();
                }
                d.trades.push_back(t);
                for c in &mut d.candles {
                    c.on_trade(&t);
                }
                d.window.on_trade(&t);
                d.last = Some(price);
                (instrument, Changed { book: true, trades: true, ..Changed::default() })
            }
            _ => {
                self.seq = seq;
                return Ok(None);
            }
        };
        self.seq = seq;
        let d = self.data(inst);
        d.seq = seq;
        d.ts = ts;
        d.book.seq = seq;
        Ok(Some((inst, changed)))
    }

    /// Ages the rolling windows to `now` (the ticker is otherwise as of the last trade).
    pub fn on_time(&mut self, now: Timestamp) {
        for d in self.instruments.values_mut() {
            d.window.expire(now);
        }
    }
}
