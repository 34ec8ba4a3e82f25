//! One archive line per engine event: the JSON row the Glue table `events`
//! (infra/terraform/modules/analytics) declares, newline-terminated so that
//! Firehose's concatenation of Kinesis records is a valid JSON-lines object.
//!
//! `{"seq":..,"shard":"a","ts_ns":..,"kind":"trade","instrument":"BTC-USD","body":"{..}"}`
//!
//! Sans-IO: plain functions from an [`EngineBatch`] to bytes. Values stay in
//! engine units (ticks, lots, minor units) so that nothing is rounded; the
//! instrument's scaling is reference data (exchange info), not per event.

use std::collections::HashMap;

use castle_engine::{EventKind, InstrumentId, InstrumentSpec};
use castle_link::EngineBatch;
use serde_json::{json, Value};

/// Instrument id -> symbol, refreshed when the stream lists a new instrument.
#[derive(Default, Clone, Debug)]
pub struct Symbols {
    by_id: HashMap<InstrumentId, String>,
}

impl Symbols {
    pub fn from_specs(specs: &[InstrumentSpec]) -> Self {
        let mut s = Self::default();
        s.refresh(specs);
        s
    }

    pub fn refresh(&mut self, specs: &[InstrumentSpec]) {
        for spec in specs {
            self.by_id.insert(spec.id, spec.symbol.as_str().to_string());
        }
    }

    pub fn knows(&self, id: InstrumentId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The symbol, or the numeric id when the instrument is unknown (it is never dropped).
    fn name(&self, id: InstrumentId) -> String {
        self.by_id.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }
}

/// `CamelCase` Debug names of the engine's closed enums as `snake_case`:
/// the enum variant names are the stable vocabulary (reject reasons carry
/// stable numeric codes too, kept in the body as `reason_code`).
fn snake<T: std::fmt::Debug>(v: T) -> String {
    let name = format!("{v:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The event's kind, instrument (if it has one) and body.
fn describe(kind: &EventKind) -> (&'static str, Option<InstrumentId>, Value) {
    match *kind {
        EventKind::OrderAccepted {
            order_id,
            account,
            instrument,
            client_order_id,
            side,
            kind,
            price,
            stop_price,
            qty,
            tif,
            post_only,
            display_qty,
            stp,
        } => (
            "order_accepted",
            Some(instrument),
            // `stp` null: the account's self-trade prevention mode applies;
            // `display_qty` 0: not an iceberg.
            json!({"order_id": order_id, "account": account, "client_order_id": client_order_id.as_str(),
                   "side": snake(side), "order_kind": snake(kind), "price": price, "stop_price": stop_price,
                   "qty": qty, "tif": snake(tif), "post_only": post_only, "display_qty": display_qty,
                   "stp": stp.map(snake)}),
        ),
        EventKind::Rejected { account, instrument, client_order_id, order_id, reason } => (
            "rejected",
            Some(instrument),
            json!({"account": account, "client_order_id": client_order_id.as_str(), "order_id": order_id,
                   "reason": snake(reason), "reason_code": reason as u16}),
        ),
        EventKind::Trade {
            trade_id,
            instrument,
            price,
            qty,
            aggressor,
            maker_order,
            taker_order,
            maker_account,
            taker_account,
            maker_fee,
            taker_fee,
            maker_leaves,
            taker_leaves,
        } => (
            "trade",
            Some(instrument),
            json!({"trade_id": trade_id, "price": price, "qty": qty, "aggressor": snake(aggressor),
                   "maker_order": maker_order, "taker_order": taker_order, "maker_account": maker_account,
                   "taker_account": taker_account, "maker_fee": maker_fee, "taker_fee": taker_fee,
                   "maker_leaves": maker_leaves, "taker_leaves": taker_leaves}),
        ),
        EventKind::OrderCancelled { order_id, account, instrument, leaves, reason } => (
            "order_cancelled",
            Some(instrument),
            json!({"order_id": order_id, "account": account, "leaves": leaves, "reason": snake(reason)}),
        ),
        EventKind::OrderReplaced {
            order_id,
            account,
            instrument,
            client_order_id,
            price,
            qty,
            leaves,
            priority_kept,
        } => (
            "order_replaced",
            Some(instrument),
            json!({"order_id": order_id, "account": account, "client_order_id": client_order_id.as_str(),
                       "price": price, "qty": qty, "leaves": leaves, "priority_kept": priority_kept}),
        ),
        EventKind::OrderTriggered { order_id, account, instrument } => {
            ("order_triggered", Some(instrument), json!({"order_id": order_id, "account": account}))
        }
        EventKind::OrderFilled { order_id, account, instrument } => {
            ("order_filled", Some(instrument), json!({"order_id": order_id, "account": account}))
        }
        EventKind::BookAdd { instrument, order_id, side, price, qty } => (
            "book_add",
            Some(instrument),
            json!({"order_id": order_id, "side": snake(side), "price": price, "qty": qty}),
        ),
        EventKind::BookReduce { instrument, order_id, by } => {
            ("book_reduce", Some(instrument), json!({"order_id": order_id, "by": by}))
        }
        EventKind::BookRemove { instrument, order_id } => {
            ("book_remove", Some(instrument), json!({"order_id": order_id}))
        }
        EventKind::BalanceChanged { account, asset, available, locked } => (
            "balance_changed",
            None,
            json!({"account": account, "asset": asset, "available": available, "locked": locked}),
        ),
        EventKind::Transfer { account, asset, amount } => {
            ("transfer", None, json!({"account": account, "asset": asset, "amount": amount}))
        }
        EventKind::InstrumentAdded { instrument } => ("instrument_added", Some(instrument), json!({})),
        EventKind::TradingStatusChanged { instrument, status } => {
            ("trading_status_changed", Some(instrument), json!({"status": snake(status)}))
        }
        EventKind::KillSwitchChanged { account, engaged } => {
            ("kill_switch_changed", None, json!({"account": account, "engaged": engaged}))
        }
        EventKind::AccountStpChanged { account, mode } => {
            ("account_stp_changed", None, json!({"account": account, "mode": snake(mode)}))
        }
    }
}

/// Appends one line per event of `batch` to `out` and returns how many.
/// The origin (gateway, request) of the command goes into every body, so an
/// auditor can tie an event to the request that caused it.
pub fn encode_batch(shard: &str, symbols: &Symbols, batch: &EngineBatch, out: &mut Vec<u8>) -> usize {
    for event in &batch.events {
        let (kind, instrument, mut body) = describe(&event.kind);
        if let (Some(origin), Value::Object(map)) = (batch.origin, &mut body) {
            map.insert("gateway".into(), origin.gateway.into());
            map.insert("request".into(), origin.request.into());
        }
        let line = json!({
            "seq": batch.seq,
            "shard": shard,
            "ts_ns": batch.ts,
            "kind": kind,
            "instrument": instrument.map(|i| symbols.name(i)),
            "body": body.to_string(),
        });
        // Writing a `Value` into a Vec cannot fail (no I/O, keys are strings).
        serde_json::to_writer(&mut *out, &line).expect("JSON into memory");
        out.push(b'\n');
    }
    batch.events.len()
}

/// Whether the batch lists a new instrument (the symbol table must be refreshed).
pub fn adds_instrument(batch: &EngineBatch, symbols: &Symbols) -> bool {
    batch
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::InstrumentAdded { instrument } if !symbols.knows(instrument)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_engine::{ClientOrderId, Event, OrderKind, RejectReason, Side, TimeInForce};
    use castle_link::Origin;

    fn batch(kinds: Vec<EventKind>) -> EngineBatch {
        EngineBatch {
            origin: Some(Origin { gateway: 3, request: 77 }),
            seq: 42,
            ts: 1_764_115_200_123_456_789,
            events: kinds.into_iter().map(|kind| Event { seq: 42, ts: 1, kind }).collect(),
        }
    }

    #[test]
    fn one_json_line_per_event_with_the_glue_columns() {
        let b = batch(vec![
            EventKind::OrderAccepted {
                order_id: 9,
                account: 1,
                instrument: 5,
                client_order_id: ClientOrderId::new("c-1").unwrap(),
                side: Side::Buy,
                kind: OrderKind::StopLimit,
                price: 100,
                stop_price: 99,
                qty: 2,
                tif: TimeInForce::Gtc,
                post_only: false,
                display_qty: 0,
                stp: None,
            },
            EventKind::Rejected {
                account: 1,
                instrument: 6,
                client_order_id: ClientOrderId::new("c-2").unwrap(),
                order_id: 0,
                reason: RejectReason::InsufficientBalance,
            },
            EventKind::Transfer { account: 1, asset: 2, amount: -5 },
        ]);
        let mut out = Vec::new();
        let symbols = Symbols { by_id: [(5, "BTC-USD".to_string())].into_iter().collect() };
        assert_eq!(encode_batch("a", &symbols, &b, &mut out), 3);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert!(text.ends_with('\n'));
        for l in &lines {
            let keys: Vec<&str> = l.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(keys, ["body", "instrument", "kind", "seq", "shard", "ts_ns"]);
            assert_eq!(l["seq"], 42);
            assert_eq!(l["shard"], "a");
            assert_eq!(l["ts_ns"], 1_764_115_200_123_456_789u64);
        }
        assert_eq!(lines[0]["kind"], "order_accepted");
        assert_eq!(lines[0]["instrument"], "BTC-USD");
        let body: Value = serde_json::from_str(lines[0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["order_kind"], "stop_limit");
        assert_eq!(body["side"], "buy");
        assert_eq!(body["client_order_id"], "c-1");
        assert_eq!(
            (&body["post_only"], &body["display_qty"], &body["stp"]),
            (&Value::Bool(false), &Value::from(0), &Value::Null)
        );
        assert_eq!(body["gateway"], 3);
        assert_eq!(body["request"], 77);
        // Unknown instruments keep their id rather than vanish.
        assert_eq!(lines[1]["instrument"], "6");
        let body: Value = serde_json::from_str(lines[1]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["reason"], "insufficient_balance");
        assert_eq!(body["reason_code"], RejectReason::InsufficientBalance as u16);
        assert_eq!(lines[2]["instrument"], Value::Null);
        let body: Value = serde_json::from_str(lines[2]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["amount"], -5);
    }

    /// Post-only, iceberg and self-trade prevention as placed are archived.
    #[test]
    fn order_accepted_carries_the_order_options() {
        let b = batch(vec![EventKind::OrderAccepted {
            order_id: 10,
            account: 2,
            instrument: 5,
            client_order_id: ClientOrderId::new("ice").unwrap(),
            side: Side::Sell,
            kind: OrderKind::Limit,
            price: 100,
            stop_price: 0,
            qty: 50,
            tif: TimeInForce::Gtc,
            post_only: true,
            display_qty: 5,
            stp: Some(castle_engine::StpMode::CancelBoth),
        }]);
        let mut out = Vec::new();
        encode_batch("a", &Symbols::default(), &b, &mut out);
        let line: Value = serde_json::from_slice(out.strip_suffix(b"\n").unwrap()).unwrap();
        let body: Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["post_only"], true);
        assert_eq!(body["display_qty"], 5);
        assert_eq!(body["stp"], "cancel_both");
    }

    #[test]
    fn snake_case_names() {
        assert_eq!(snake(RejectReason::PostOnlyWouldCross), "post_only_would_cross");
        assert_eq!(snake(Side::Sell), "sell");
    }

    #[test]
    fn new_instruments_are_noticed() {
        let b = batch(vec![EventKind::InstrumentAdded { instrument: 8 }]);
        let mut symbols = Symbols::default();
        assert!(adds_instrument(&b, &symbols));
        symbols.by_id.insert(8, "ETH-USD".into());
        assert!(!adds_instrument(&b, &symbols));
    }
}
