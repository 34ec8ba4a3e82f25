//! Order history and fills served from the settlement ledger (when
//! `RestConfig::history` is set): ledger rows to the gateway's records, and
//! the merge of a ledger page with what the gateway holds in memory.
//!
//! The ledger is complete but behind the engine (the settlement consumer
//! batches its writes); the gateway's memory is current but bounded (the last
//! `max_history` closed orders and `max_fills` fills per account). A page is
//! the newest `limit` rows of the union of both below the cursor, the memory
//! copy winning for a row in both (it is fresher and knows the quote budget,
//! which the ledger does not store).
//!
//! The gateway reads the ledger through [`OrderHistory`], so routes never name
//! a backend: `castle serve` hands it the settlement [`History`] handle
//! (SQLite by default, PostgreSQL when the ledger URL says so), and router
//! tests hand it a fake that fails or answers from a vector.

use std::future::Future;
use std::pin::Pin;

use castle_engine::{AccountId, CancelReason, InstrumentId, OrderId, OrderKind, Side, StpMode, TimeInForce};
use castle_settlement::history::History;
use castle_settlement::{AccountFill, OrderRow, Page, StoreError};

use crate::accounts::{Fill, OrderRecord, Status};
use crate::error::{ApiError, Code};

/// A ledger query in flight (boxed: the trait is used as `dyn`, and a ledger
/// round trip dwarfs one allocation).
pub type Query<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The ledger reads the gateway needs: pages newest first with an exclusive
/// cursor (order ids; fill ids for fills), at most `limit` rows, `next` set
/// exactly when older rows exist; every query scoped to one account.
pub trait OrderHistory: Send + Sync + std::fmt::Debug {
    fn orders(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Query<'_, Page<OrderRow>>;
    fn order(&self, account: AccountId, order_id: OrderId) -> Query<'_, Option<OrderRow>>;
    /// The newest order of `account` with this client order id.
    fn order_by_client_id<'a>(&'a self, account: AccountId, client_order_id: &'a str) -> Query<'a, Option<OrderRow>>;
    fn fills(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Query<'_, Page<AccountFill>>;
}

impl OrderHistory for History {
    fn orders(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Query<'_, Page<OrderRow>> {
        Box::pin(History::orders(self, account, instrument, before, limit))
    }
    fn order(&self, account: AccountId, order_id: OrderId) -> Query<'_, Option<OrderRow>> {
        Box::pin(History::order(self, account, order_id))
    }
    fn order_by_client_id<'a>(&'a self, account: AccountId, client_order_id: &'a str) -> Query<'a, Option<OrderRow>> {
        Box::pin(History::order_by_client_id(self, account, client_order_id))
    }
    fn fills(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Query<'_, Page<AccountFill>> {
        Box::pin(History::fills(self, account, instrument, before, limit))
    }
}

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

/// The ledger's STP code (the engine codec's: 0 none, 1 cancel newest,
/// 2 cancel oldest, 3 cancel both, 4 decrement and cancel).
fn stp(v: i16) -> Option<StpMode> {
    Some(match v {
        0 => StpMode::None,
        1 => StpMode::CancelNewest,
        2 => StpMode::CancelOldest,
        3 => StpMode::CancelBoth,
        4 => StpMode::DecrementAndCancel,
        _ => return None,
    })
}

/// A ledger order as the gateway shows it. `filled_notional` is the ledger's
/// fill notional. The ledger keeps no quote budget: it shows as absent.
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
        3 => TimeInForce::Gtd(o.expire_ts),
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
        // Absent in rows the ledger wrote before the engine's acceptance
        // carried the options: shown as the defaults.
        post_only: o.post_only.unwrap_or(false),
        display_qty: o.display_qty.unwrap_or(0),
        stp: o.stp.and_then(stp),
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
