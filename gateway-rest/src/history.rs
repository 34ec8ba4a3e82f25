//! Order history and fills served from the settlement ledger (when
//! `RestConfig::history` is set): ledger rows to the gateway's records, and
//! the merge of a ledger page with what the gateway holds in memory.
//!
//! The ledger is complete but behind the engine (the settlement consumer
//! batches its writes); the gateway's memory is current but bounded (the last
//! `max_history` closed orders and `max_fills` fills per account). A page is
//! the newest `limit` rows of the union of both below the cursor, the memory
//! copy winning for a row in both (it is fresher and knows options the ledger
//! does not store: post-only, iceberg display, STP, quote budget).

use castle_engine::{CancelReason, OrderKind, Side, TimeInForce};
use castle_settlement::{AccountFill, OrderRow, StoreError};

use crate::accounts::{Fill, OrderRecord, Status};
use crate::error::{ApiError, Code};

pub fn unavailable(e: StoreError) -> ApiError {
    tracing::warn!(%e, "order history query failed");
    ApiError::new(Code::HistoryUnavailable, "order history database unavailable: retry later")
}

fn corrupt(what: &str, v: i16) -> ApiError {
    tracing::error!(what, v, "ledger row with an unknown code");
    ApiError::new(Code::Internal, "order history holds a row this gateway cannot read")
}

fn side(v: i16) -> Result<Side, ApiError> {
    match v {
        0 => Ok(Side::Buy),
        1 => Ok(Side::Sell),
        _ => Err(corrupt("side", v)),
    }
}

fn cancel_reason(v: i16) -> Option<CancelReason> {
    Some(match v {
        1 => CancelReason::Requested,
        2 => CancelReason::MassCancel,
        3 => CancelReason::KillSwitch,
        4 => CancelReason::Unfilled,
        5 => CancelReason::FillOrKill,
        6 => CancelReason::SelfTrade,
        7 => CancelReason::Expired,
        8 => CancelReason::EndOfDay,
        9 => CancelReason::ProtectionLimit,
        10 => CancelReason::BookFull,
        _ => return None,
    })
}

/// A ledger order as the gateway shows it. `filled_notional` comes from the
/// order's fills. The ledger keeps no expiry time, post-only, display
/// quantity, STP mode or quote budget: they show as absent.
pub fn order_record(o: &OrderRow, filled_notional: i128) -> Result<OrderRecord, ApiError> {
    let kind = match o.kind {
        0 => OrderKind::Limit,
        1 => OrderKind::Market,
        2 => OrderKind::StopMarket,
        3 => OrderKind::StopLimit,
        v => return Err(corrupt("kind", v)),
    };
    let tif = match o.tif {
        0 => TimeInForce::Gtc,
        1 => TimeInForce::Ioc,
        2 => TimeInForce::Fok,
        // The expiry time is not in the ledger: 0 renders as absent.
        3 => TimeInForce::Gtd(0),
        4 => TimeInForce::Day,
        v => return Err(corrupt("tif", v)),
    };
    let reason = cancel_reason(o.cancel_reason);
    let status = match o.status {
        0 if o.filled > 0 => Status::PartiallyFilled,
        0 => Status::New,
        1 => Status::Filled,
        2 if matches!(reason, Some(CancelReason::Expired | CancelReason::EndOfDay)) => Status::Expired,
        2 => Status::Canceled,
        v => return Err(corrupt("status", v)),
    };
    Ok(OrderRecord {
        id: o.order_id,
        account: o.account,
        instrument: o.instrument,
        client_order_id: o.client_order_id.clone(),
        side: side(o.side)?,
        kind,
        price: o.price,
        stop_price: o.stop_price,
        qty: o.qty,
        leaves: o.leaves,
        filled: o.filled,
        filled_notional,
        quote_budget: None,
        tif,
        post_only: false,
        display_qty: 0,
        stp: None,
        status,
        cancel_reason: if status.is_open() { None } else { reason },
        triggered: false,
        created: o.created_ts,
        updated: o.updated_ts,
        seq: o.updated_seq,
    })
}

pub fn fill(f: &AccountFill) -> Result<Fill, ApiError> {
    Ok(Fill {
        fill_id: f.fill_id(),
        trade_id: f.fill.trade_id,
        order_id: f.order_id(),
        instrument: f.fill.instrument,
        side: side(f.side())?,
        price: f.fill.price,
        qty: f.fill.qty,
        fee: f.fee(),
        maker: f.maker,
        ts: f.fill.ts,
        seq: f.fill.seq,
    })
}

/// Merges the memory rows (newest first, at most `limit + 1`) with one
/// ledger page (newest first, at most `limit`, `db_more`: older ledger rows
/// exist) into the newest `limit` of their union, memory winning on equal
/// keys; returns the rows and the next cursor.
pub fn merge<T>(
    mem: Vec<T>,
    db: Vec<T>,
    db_more: bool,
    limit: usize,
    key: impl Fn(&T) -> u64,
) -> (Vec<T>, Option<u64>) {
    assert!(limit > 0);
    let mut all: Vec<(u64, bool, T)> = Vec::with_capacity(mem.len() + db.len());
    all.extend(mem.into_iter().map(|t| (key(&t), true, t)));
    all.extend(db.into_iter().map(|t| (key(&t), false, t)));
    // Newest first; for one key the memory copy first, then drop the rest.
    all.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    all.dedup_by(|later, first| later.0 == first.0);
    // When the ledger has older rows, the union has at least `limit` rows.
    let next = (all.len() > limit || db_more).then(|| all.get(limit.min(all.len()) - 1).map(|r| r.0)).flatten();
    all.truncate(limit);
    (all.into_iter().map(|r| r.2).collect(), next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Walking the merged pages of (a bounded recent memory view, the
        // complete ledger) returns exactly every id once, newest first.
        #[test]
        fn merged_pages_walk_the_whole_union(
            ledger in prop::collection::btree_set(1u64..500, 0..80),
            recent in prop::collection::btree_set(400u64..520, 0..30),
            limit in 1usize..12,
        ) {
            let union: std::collections::BTreeSet<u64> = ledger.union(&recent).copied().collect();
            let mut before = u64::MAX;
            let mut got = Vec::new();
            for _ in 0..1000 {
                let mem: Vec<(u64, bool)> = recent.iter().rev().filter(|&&i| i < before).take(limit + 1).map(|&i| (i, true)).collect();
                let below: Vec<u64> = ledger.iter().rev().filter(|&&i| i < before).copied().collect();
                let db: Vec<(u64, bool)> = below.iter().take(limit).map(|&i| (i, false)).collect();
                let (rows, next) = merge(mem, db, below.len() > limit, limit, |r| r.0);
                prop_assert!(rows.len() <= limit);
                for r in &rows {
                    // Memory wins for ids in both.
                    prop_assert_eq!(r.1, recent.contains(&r.0));
                }
                got.extend(rows.iter().map(|r| r.0));
                match next { Some(n) => before = n, None => break }
            }
            let want: Vec<u64> = union.iter().rev().copied().collect();
            prop_assert_eq!(got, want);
        }
    }
}
