//! Exchange statistics from engine events (sans-IO), rendered in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! Counters per venue and per instrument: trades, traded volume in base and
//! quote units, orders accepted, cancelled and rejected, and the last engine
//! sequence number seen. Open interest (resting orders per side) is read
//! from the derived L3 book at render time, so it can never drift from it.
//!
//! Volumes are kept as exact integers (lots and tick-lots) and printed as
//! exact decimal strings; Prometheus parses them as floats, but nothing in
//! Castle computes with them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use castle_engine::{ClientOrderId, Event, EventKind, InstrumentId, InstrumentSpec, RejectReason, Seq, Side};
use rust_decimal::Decimal;

use crate::derived::MarketData;

/// Counters of one instrument (or, summed, of the venue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub trades: u64,
    /// Lots traded.
    pub volume_lots: i128,
    /// Sum of price x qty over trades, in tick-lots.
    pub volume_tick_lots: i128,
    pub accepted: u64,
    pub cancelled: u64,
    /// Rejects of commands that name an order (new, cancel, replace).
    pub rejected: u64,
    pub last_seq: Seq,
}

#[derive(Clone, Debug, Default)]
pub struct ExchangeStats {
    pub venue: Counters,
    pub instruments: BTreeMap<InstrumentId, Counters>,
    /// Every reject by reason code, whatever the command (deposits and withdrawals too).
    pub rejects_by_reason: BTreeMap<u16, (RejectReason, u64)>,
}

impl ExchangeStats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn on_events(&mut self, events: &[Event]) {
        for e in events {
            self.on_event(e);
        }
    }

    fn on_event(&mut self, e: &Event) {
        self.venue.last_seq = self.venue.last_seq.max(e.seq);
        let inst = match e.kind {
            EventKind::InstrumentAdded { instrument } => Some(instrument),
            EventKind::OrderAccepted { instrument, .. } => {
                self.venue.accepted += 1;
                self.of(instrument).accepted += 1;
                Some(instrument)
            }
            EventKind::OrderCancelled { instrument, .. } => {
                self.venue.cancelled += 1;
                self.of(instrument).cancelled += 1;
                Some(instrument)
            }
            EventKind::Rejected { instrument, client_order_id, order_id, reason, .. } => {
                self.rejects_by_reason.entry(reason as u16).or_insert((reason, 0)).1 += 1;
                // Account-level commands (deposits, withdrawals) are rejected
                // with instrument 0 and no order: only order commands count
                // towards an instrument (and the venue's order rejects).
                if order_id != 0 || client_order_id != ClientOrderId::default() {
                    self.venue.rejected += 1;
                    self.of(instrument).rejected += 1;
                    Some(instrument)
                } else {
                    None
                }
            }
            EventKind::Trade { instrument, price, qty, .. } => {
                for c in [&mut self.venue, self.instruments.entry(instrument).or_default()] {
                    c.trades += 1;
                    c.volume_lots += qty as i128;
                    c.volume_tick_lots += price as i128 * qty as i128;
                }
                Some(instrument)
            }
            EventKind::BookAdd { instrument, .. }
            | EventKind::BookReduce { instrument, .. }
            | EventKind::BookRemove { instrument, .. }
            | EventKind::TradingStatusChanged { instrument, .. } => Some(instrument),
            _ => None,
        };
        if let Some(i) = inst {
            let c = self.of(i);
            c.last_seq = c.last_seq.max(e.seq);
        }
    }

    fn of(&mut self, i: InstrumentId) -> &mut Counters {
        self.instruments.entry(i).or_default()
    }

    /// Appends the metrics in Prometheus text format. `specs` name the
    /// instruments and give their scaling; `md` gives open interest.
    pub fn render(&self, md: &MarketData, specs: &[InstrumentSpec], out: &mut String) {
        let spec = |i: InstrumentId| specs.iter().find(|s| s.id == i);
        let label = |i: InstrumentId| match spec(i) {
            Some(s) => escape_label(s.symbol.as_str()),
            None => format!("id-{i}"),
        };
        let v = &self.venue;
        for (name, help, kind, value) in [
            ("castle_venue_trades_total", "Trades on the venue.", "counter", v.trades),
            ("castle_venue_orders_accepted_total", "Orders accepted.", "counter", v.accepted),
            ("castle_venue_orders_cancelled_total", "Orders cancelled (any reason).", "counter", v.cancelled),
            ("castle_venue_orders_rejected_total", "Order commands rejected.", "counter", v.rejected),
            ("castle_venue_last_seq", "Engine sequence number of the last event counted.", "gauge", v.last_seq),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP castle_venue_rejects_total Rejected commands by reason.\n# TYPE castle_venue_rejects_total counter"
        );
        for (reason, n) in self.rejects_by_reason.values() {
            let _ = writeln!(out, "castle_venue_rejects_total{{reason=\"{reason:?}\"}} {n}");
        }

        type Getter = fn(&Counters) -> String;
        let per: [(&str, &str, &str, Getter); 5] = [
            ("castle_instrument_trades_total", "Trades.", "counter", |c| c.trades.to_string()),
            ("castle_instrument_orders_accepted_total", "Orders accepted.", "counter", |c| c.accepted.to_string()),
            ("castle_instrument_orders_cancelled_total", "Orders cancelled.", "counter", |c| c.cancelled.to_string()),
            ("castle_instrument_orders_rejected_total", "Order commands rejected.", "counter", |c| {
                c.rejected.to_string()
            }),
            ("castle_instrument_last_seq", "Engine seq of the last event on the instrument.", "gauge", |c| {
                c.last_seq.to_string()
            }),
        ];
        for (name, help, kind, get) in per {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (&i, c) in &self.instruments {
                let _ = writeln!(out, "{name}{{instrument=\"{}\"}} {}", label(i), get(c));
            }
        }
        let _ = writeln!(
            out,
            "# HELP castle_instrument_volume_base_total Traded volume in base units.\n\
             # TYPE castle_instrument_volume_base_total counter"
        );
        for (&i, c) in &self.instruments {
            let lot = spec(i).map(|s| s.scaling.lot_size);
            let _ = writeln!(
                out,
                "castle_instrument_volume_base_total{{instrument=\"{}\"}} {}",
                label(i),
                scaled(c.volume_lots, lot)
            );
        }
        let _ = writeln!(
            out,
            "# HELP castle_instrument_volume_quote_total Traded volume in quote units (sum of price x quantity).\n\
             # TYPE castle_instrument_volume_quote_total counter"
        );
        for (&i, c) in &self.instruments {
            let unit = spec(i).and_then(|s| s.scaling.tick_size.checked_mul(s.scaling.lot_size));
            let _ = writeln!(
                out,
                "castle_instrument_volume_quote_total{{instrument=\"{}\"}} {}",
                label(i),
                scaled(c.volume_tick_lots, unit)
            );
        }
        let _ = writeln!(
            out,
            "# HELP castle_instrument_open_orders Resting orders on the book (open interest), per side.\n\
             # TYPE castle_instrument_open_orders gauge"
        );
        for d in md.instruments() {
            for (side, name) in [(Side::Buy, "buy"), (Side::Sell, "sell")] {
                let n = d.book.orders(side).count();
                let _ = writeln!(
                    out,
                    "castle_instrument_open_orders{{instrument=\"{}\",side=\"{name}\"}} {n}",
                    label(d.id)
                );
            }
        }
    }
}

/// `n` units of `unit` as an exact decimal string; `NaN` (and an error log)
/// when the scaling is unknown or the product does not fit a decimal, so a
/// bad value is visible instead of silently wrong.
fn scaled(n: i128, unit: Option<Decimal>) -> String {
    let product = unit.and_then(|u| i64::try_from(n).ok().map(Decimal::from).and_then(|d| d.checked_mul(u)));
    match product {
        Some(d) => d.normalize().to_string(),
        None => {
            tracing::error!(n, "volume cannot be expressed as a decimal");
            "NaN".into()
        }
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_engine::{Command, Engine, FastEngine, Limits, NewOrder, OrderSize, OrderType, TimeInForce};

    #[test]
    fn counts_and_renders_what_the_engine_did() {
        let btc = InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000);
        let mut e: FastEngine = Engine::new(Limits::default());
        let mut events = Vec::new();
        let mut run = |e: &mut FastEngine, c: Command| {
            let mut out = Vec::new();
            e.apply(1_700_000_000_000_000_000, &c, &mut out);
            events.extend(out);
        };
        run(&mut e, Command::AddInstrument(btc));
        for account in [1, 2] {
            run(&mut e, Command::Deposit { account, asset: 1, amount: 10 * 100_000_000 });
            run(&mut e, Command::Deposit { account, asset: 2, amount: 10_000_000 * 100_000_000 });
        }
        let order = |account, side, price, qty, cid: &str| {
            Command::PlaceOrder(NewOrder {
                account,
                instrument: 0,
                client_order_id: ClientOrderId::new(cid).unwrap(),
                side,
                order_type: OrderType::Limit { price },
                size: OrderSize::Base(qty),
                tif: TimeInForce::Gtc,
                post_only: false,
                display_qty: 0,
                stp: None,
            })
        };
        run(&mut e, order(1, Side::Buy, 5_900_000, 50_000, "b1"));
        run(&mut e, order(1, Side::Buy, 5_800_000, 10_000, "b2"));
        run(&mut e, order(2, Side::Sell, 5_900_000, 20_000, "s1"));
        // Off the price band: rejected.
        run(&mut e, order(2, Side::Sell, 1, 20_000, "s2"));
        run(&mut e, Command::Withdraw { account: 9, asset: 1, amount: 1 });

        let mut md = MarketData::new();
        md.apply(&events).unwrap();
        let mut st = ExchangeStats::new();
        st.on_events(&events);
        assert_eq!(st.venue.trades, 1);
        assert_eq!(st.venue.accepted, 3);
        assert_eq!(st.venue.rejected, 1, "the withdrawal reject is not an order reject");
        assert_eq!(st.rejects_by_reason.values().map(|r| r.1).sum::<u64>(), 2);
        assert_eq!(st.instruments[&0].volume_lots, 20_000);
        assert_eq!(st.venue.last_seq, e.seq());

        let mut text = String::new();
        st.render(&md, &[btc], &mut text);
        for line in [
            "castle_venue_trades_total 1",
            "castle_instrument_trades_total{instrument=\"BTC-USDT\"} 1",
            "castle_instrument_orders_accepted_total{instrument=\"BTC-USDT\"} 3",
            "castle_instrument_orders_rejected_total{instrument=\"BTC-USDT\"} 1",
            // 20,000 lots of 0.00001 BTC at 59,000.00 USDT.
            "castle_instrument_volume_base_total{instrument=\"BTC-USDT\"} 0.2",
            "castle_instrument_volume_quote_total{instrument=\"BTC-USDT\"} 11800",
            "castle_instrument_open_orders{instrument=\"BTC-USDT\",side=\"buy\"} 2",
            "castle_instrument_open_orders{instrument=\"BTC-USDT\",side=\"sell\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE castle_venue_trades_total")).count(), 1);
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once(' ').expect("sample has a value");
            assert!(value == "NaN" || value.parse::<f64>().is_ok(), "bad sample {l:?}");
        }
    }
}
