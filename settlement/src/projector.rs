//! Sans-IO projection of engine batches into ledger rows.
//!
//! The projector keeps, in memory, what it needs to turn the engine's absolute
//! `BalanceChanged` values into movements: the running balance of every (account, asset)
//! pair and the open orders (both bounded by the engine's own limits). Entries are derived
//! without knowing instrument specifications (which a TCP subscriber does not receive):
//!
//! - `Transfer` produces the deposit/withdrawal row at once (available +/-, external -/+);
//! - every `BalanceChanged` produces a row with the difference to the running balance,
//!   attributed to the last cause seen in the command (a trade, an order, a transfer);
//! - per command, the legs must sum to zero per asset, or the batch is refused
//!   ([`ProjectError::Unbalanced`]): the ledger never records money appearing or vanishing.

use rustc_hash::FxHashMap;

use castle_engine::{
    AccountId, AssetId, CancelReason, EventKind, OrderId, OrderKind, Seq, Side, TimeInForce, FEE_ACCOUNT,
};
use castle_link::EngineBatch;

use crate::ledger::{status, BalanceRow, Entry, EntryKind, FillRow, Flush, LedgerState, OrderRow};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProjectError {
    #[error("engine seq {seq}: asset {asset} legs sum to {sum}, not zero")]
    Unbalanced { seq: Seq, asset: AssetId, sum: i128 },
    #[error(
        "engine seq {seq}: account {account} asset {asset} would go negative (available {available}, locked {locked})"
    )]
    Negative { seq: Seq, account: AccountId, asset: AssetId, available: i64, locked: i64 },
}

/// What a command's balance changes are attributed to.
#[derive(Clone, Copy)]
struct Cause {
    kind: EntryKind,
    reference: u64,
}

pub struct Projector {
    /// Highest seq projected (applied or pending in the current flush).
    seq: Seq,
    /// Applied seq at the start of the pending flush.
    flushed_seq: Seq,
    // Why Fx maps and unsorted dirty sets: the projector runs once per engine event on the
    // consumer's one thread, and SipHash plus a BTreeMap insert per event were its largest
    // costs (callgrind, BENCHMARKS.md settle6). The keys are engine ids, not attacker-chosen
    // strings, and the dirty sets are sorted once per flush instead of kept sorted per event.
    balances: FxHashMap<(AccountId, AssetId), HeldBalance>,
    orders: FxHashMap<OrderId, OrderRow>,
    pending: Flush,
    /// Balances changed in the pending flush (each once: see `HeldBalance::dirty`).
    dirty_balances: Vec<(AccountId, AssetId)>,
    /// Orders changed in the pending flush; `true` when accepted inside it (not stored yet).
    dirty_orders: FxHashMap<OrderId, bool>,
    /// Per-asset sums of the current command's legs (reused; a command touches few assets).
    sums: Vec<(AssetId, i128)>,
}

/// A running balance and whether it is already listed in `Projector::dirty_balances`.
struct HeldBalance {
    row: BalanceRow,
    dirty: bool,
}

fn side_code(s: Side) -> i16 {
    match s {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn kind_code(k: OrderKind) -> i16 {
    match k {
        OrderKind::Limit => 0,
        OrderKind::Market => 1,
        OrderKind::StopMarket => 2,
        OrderKind::StopLimit => 3,
    }
}

fn tif_code(t: TimeInForce) -> i16 {
    match t {
        TimeInForce::Gtc => 0,
        TimeInForce::Ioc => 1,
        TimeInForce::Fok => 2,
        TimeInForce::Gtd(_) => 3,
        TimeInForce::Day => 4,
    }
}

/// Adds one fill's price * qty to an order's notional, saturating (see `OrderRow::notional`).
fn add_notional(price: i64, qty: i64) -> impl Fn(i64) -> i64 {
    move |sum| {
        let total = sum as i128 + price as i128 * qty as i128;
        total.clamp(0, i64::MAX as i128) as i64
    }
}

fn client_id_string(c: &castle_engine::ClientOrderId) -> String {
    let end = c.0.iter().position(|&b| b == 0).unwrap_or(c.0.len());
    String::from_utf8_lossy(&c.0[..end]).into_owned()
}

impl Projector {
    pub fn new(state: LedgerState) -> Projector {
        Projector {
            seq: state.applied_seq,
            flushed_seq: state.applied_seq,
            balances: state
                .balances
                .into_iter()
                .map(|b| ((b.account, b.asset), HeldBalance { row: b, dirty: false }))
                .collect(),
            orders: state.open_orders.into_iter().map(|o| (o.order_id, o)).collect(),
            pending: Flush { prev_seq: state.applied_seq, seq: state.applied_seq, ..Flush::default() },
            dirty_balances: Vec::new(),
            dirty_orders: FxHashMap::default(),
            sums: Vec::new(),
        }
    }

    /// Highest sequence number projected so far.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Rows pending in the current flush (entries + fills), for flush sizing.
    pub fn pending_rows(&self) -> usize {
        self.pending.entries.len() + self.pending.fills.len()
    }

    pub fn pending_batches(&self) -> u64 {
        self.pending.batches
    }

    pub fn balance(&self, account: AccountId, asset: AssetId) -> Option<&BalanceRow> {
        self.balances.get(&(account, asset)).map(|h| &h.row)
    }

    pub fn open_orders(&self) -> usize {
        self.orders.len()
    }

    /// Projects one command's events. Returns `Ok(false)` (and changes nothing) for a batch
    /// at or below the projected seq: a duplicate or replayed delivery is a no-op.
    /// On `Err` the projector is unusable (the caller rebuilds it from the database).
    pub fn project(&mut self, batch: &EngineBatch) -> Result<bool, ProjectError> {
        if batch.seq <= self.seq {
            return Ok(false);
        }
        let seq = batch.seq;
        let ts = batch.ts;
        let first_entry = self.pending.entries.len();
        let mut cause = Cause { kind: EntryKind::Other, reference: 0 };
        let mut idx = 0u32;
        for (i, ev) in batch.events.iter().enumerate() {
            match ev.kind {
                EventKind::Transfer { account, asset, amount } => {
                    cause = Cause {
                        kind: if amount >= 0 { EntryKind::Deposit } else { EntryKind::Withdrawal },
                        reference: 0,
                    };
                    let b = self.balance_mut(account, asset);
                    b.available += amount;
                    b.external -= amount;
                    b.seq = seq;
                    self.push_entry(seq, ts, &mut idx, account, asset, cause, (amount, 0, -amount));
                }
                EventKind::BalanceChanged { account, asset, available, locked } => {
                    let b = self.balance_mut(account, asset);
                    let d = (available - b.available, locked - b.locked);
                    if d == (0, 0) {
                        continue;
                    }
                    b.available = available;
                    b.locked = locked;
                    b.seq = seq;
                    if available < 0 || locked < 0 {
                        return Err(ProjectError::Negative { seq, account, asset, available, locked });
                    }
                    let c = if cause.kind == EntryKind::Trade && account == FEE_ACCOUNT {
                        Cause { kind: EntryKind::Fee, ..cause }
                    } else {
                        cause
                    };
                    self.push_entry(seq, ts, &mut idx, account, asset, c, (d.0, d.1, 0));
                }
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
                } => {
                    cause = Cause { kind: EntryKind::Trade, reference: trade_id };
                    self.pending.fills.push(FillRow {
                        trade_id,
                        seq,
                        idx: i as u32,
                        ts,
                        instrument,
                        price,
                        qty,
                        aggressor: side_code(aggressor),
                        maker_order,
                        taker_order,
                        maker_account,
                        taker_account,
                        maker_fee,
                        taker_fee,
                    });
                    let notional = add_notional(price, qty);
                    self.order_update(maker_order, seq, ts, |o| {
                        o.filled += qty;
                        o.leaves = maker_leaves;
                        o.notional = notional(o.notional);
                    });
                    self.order_update(taker_order, seq, ts, |o| {
                        o.filled += qty;
                        o.leaves = taker_leaves;
                        o.notional = notional(o.notional);
                    });
                }
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
                } => {
                    cause = Cause { kind: EntryKind::Hold, reference: order_id };
                    self.orders.insert(
                        order_id,
                        OrderRow {
                            order_id,
                            account,
                            instrument,
                            client_order_id: client_id_string(&client_order_id),
                            side: side_code(side),
                            kind: kind_code(kind),
                            price,
                            stop_price,
                            qty,
                            tif: tif_code(tif),
                            status: status::OPEN,
                            cancel_reason: 0,
                            filled: 0,
                            leaves: qty,
                            created_seq: seq,
                            created_ts: ts,
                            updated_seq: seq,
                            updated_ts: ts,
                            expire_ts: match tif {
                                TimeInForce::Gtd(t) => t,
                                _ => 0,
                            },
                            post_only: Some(post_only),
                            display_qty: Some(display_qty),
                            // NULL: the account's mode applies.
                            stp: stp.map(|s| i16::from(castle_engine::codec::stp_code(s))),
                            notional: 0,
                        },
                    );
                    self.dirty_orders.insert(order_id, true);
                }
                EventKind::OrderReplaced { order_id, client_order_id, price, qty, leaves, .. } => {
                    cause = Cause { kind: EntryKind::Hold, reference: order_id };
                    self.order_update(order_id, seq, ts, |o| {
                        o.client_order_id = client_id_string(&client_order_id);
                        o.price = price;
                        o.qty = qty;
                        o.leaves = leaves;
                    });
                }
                EventKind::OrderTriggered { order_id, .. } => {
                    cause = Cause { kind: EntryKind::Hold, reference: order_id };
                }
                EventKind::OrderCancelled { order_id, leaves, reason, .. } => {
                    cause = Cause { kind: EntryKind::Release, reference: order_id };
                    self.order_update(order_id, seq, ts, |o| {
                        o.status = status::CANCELLED;
                        o.cancel_reason = reason as u8 as i16;
                        o.leaves = leaves;
                    });
                    let _: CancelReason = reason;
                }
                EventKind::OrderFilled { order_id, .. } => {
                    self.order_update(order_id, seq, ts, |o| {
                        o.status = status::FILLED;
                        o.leaves = 0;
                    });
                }
                EventKind::Rejected { .. }
                | EventKind::BookAdd { .. }
                | EventKind::BookReduce { .. }
                | EventKind::BookRemove { .. }
                | EventKind::InstrumentAdded { .. }
                | EventKind::TradingStatusChanged { .. }
                | EventKind::KillSwitchChanged { .. }
                | EventKind::AccountStpChanged { .. } => {}
            }
        }
        // Double entry: this command's legs sum to zero per asset.
        self.sums.clear();
        for e in &self.pending.entries[first_entry..] {
            let leg = e.available as i128 + e.locked as i128 + e.external as i128;
            match self.sums.iter_mut().find(|(a, _)| *a == e.asset) {
                Some((_, sum)) => *sum += leg,
                None => self.sums.push((e.asset, leg)),
            }
        }
        // The lowest unbalanced asset, as the sorted map used to report.
        if let Some(&(asset, sum)) = self.sums.iter().filter(|(_, s)| *s != 0).min_by_key(|(a, _)| *a) {
            return Err(ProjectError::Unbalanced { seq, asset, sum });
        }
        self.seq = seq;
        self.pending.seq = seq;
        if self.pending.batches == 0 {
            self.pending.first_ts = ts;
        }
        self.pending.last_ts = ts;
        self.pending.batches += 1;
        self.pending.batch_ts.push(ts);
        Ok(true)
    }

    fn balance_mut(&mut self, account: AccountId, asset: AssetId) -> &mut BalanceRow {
        let held = self
            .balances
            .entry((account, asset))
            .or_insert(HeldBalance { row: BalanceRow { account, asset, ..BalanceRow::default() }, dirty: false });
        if !held.dirty {
            held.dirty = true;
            self.dirty_balances.push((account, asset));
        }
        &mut held.row
    }

    #[allow(clippy::too_many_arguments)]
    fn push_entry(
        &mut self,
        seq: Seq,
        ts: u64,
        idx: &mut u32,
        account: AccountId,
        asset: AssetId,
        cause: Cause,
        legs: (i64, i64, i64),
    ) {
        self.pending.entries.push(Entry {
            seq,
            idx: *idx,
            ts,
            account,
            asset,
            kind: cause.kind,
            reference: cause.reference,
            available: legs.0,
            locked: legs.1,
            external: legs.2,
        });
        *idx += 1;
    }

    /// Applies `f` to a known order. An order the projector never saw accepted cannot
    /// exist when the stream is complete from seq 1; it is skipped (history only, no money).
    fn order_update(&mut self, id: OrderId, seq: Seq, ts: u64, f: impl FnOnce(&mut OrderRow)) {
        if let Some(o) = self.orders.get_mut(&id) {
            f(o);
            o.updated_seq = seq;
            o.updated_ts = ts;
            self.dirty_orders.entry(id).or_insert(false);
        } else {
            tracing::warn!(order = id, seq, "order update for an order never seen accepted");
        }
    }

    /// Takes the pending flush (`None` when nothing was projected since the last one).
    /// Terminal orders leave the in-memory state here: the flush carries their final row.
    pub fn take_flush(&mut self) -> Option<Flush> {
        if self.pending.seq == self.flushed_seq {
            return None;
        }
        // Balances in (account, asset) order: every flush locks their rows in one order.
        let mut dirty_balances = std::mem::take(&mut self.dirty_balances);
        dirty_balances.sort_unstable();
        for key in dirty_balances.drain(..) {
            if let Some(h) = self.balances.get_mut(&key) {
                h.dirty = false;
                self.pending.balances.push(h.row);
            }
        }
        self.dirty_balances = dirty_balances;
        // New orders first (see `Flush::new_orders`), each group in order id order.
        let mut dirty: Vec<(OrderId, bool)> = self.dirty_orders.drain().collect();
        dirty.sort_unstable_by_key(|&(id, _)| id);
        self.pending.orders.reserve(dirty.len());
        for new in [true, false] {
            for &(id, _) in dirty.iter().filter(|&&(_, n)| n == new) {
                // A terminal order leaves the map: its row moves into the flush (no clone of
                // its client id string); an open one stays and is copied.
                let row = match self.orders.get(&id) {
                    Some(o) if o.is_open() => Some(o.clone()),
                    Some(_) => self.orders.remove(&id),
                    None => None,
                };
                if let Some(row) = row {
                    self.pending.orders.push(row);
                }
                if new {
                    self.pending.new_orders = self.pending.orders.len();
                }
            }
        }
        // The next flush starts with this one's capacities: growing its vectors from empty by
        // doubling cost about 900 instructions per fill in reallocation copies (callgrind).
        let next = Flush {
            prev_seq: self.seq,
            seq: self.seq,
            batch_ts: Vec::with_capacity(self.pending.batch_ts.len()),
            entries: Vec::with_capacity(self.pending.entries.len()),
            fills: Vec::with_capacity(self.pending.fills.len()),
            ..Flush::default()
        };
        let f = std::mem::replace(&mut self.pending, next);
        self.flushed_seq = self.seq;
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_engine::Event;

    fn batch(seq: Seq, kinds: &[EventKind]) -> EngineBatch {
        EngineBatch {
            origin: None,
            seq,
            ts: seq,
            events: kinds.iter().map(|&kind| Event { seq, ts: seq, kind }).collect(),
        }
    }

    #[test]
    fn money_appearing_without_a_transfer_is_refused() {
        let mut p = Projector::new(LedgerState::default());
        let b = batch(1, &[EventKind::BalanceChanged { account: 1, asset: 2, available: 5, locked: 0 }]);
        assert_eq!(p.project(&b), Err(ProjectError::Unbalanced { seq: 1, asset: 2, sum: 5 }));
    }

    #[test]
    fn a_negative_balance_is_refused() {
        let mut p = Projector::new(LedgerState::default());
        let b = batch(
            1,
            &[
                EventKind::BalanceChanged { account: 1, asset: 2, available: -5, locked: 0 },
                EventKind::BalanceChanged { account: 2, asset: 2, available: 5, locked: 0 },
            ],
        );
        assert!(matches!(p.project(&b), Err(ProjectError::Negative { account: 1, .. })));
    }

    #[test]
    fn a_flush_lists_each_changed_balance_once_in_account_asset_order() {
        let mut p = Projector::new(LedgerState::default());
        let t = |account, asset, amount| EventKind::Transfer { account, asset, amount };
        assert_eq!(p.project(&batch(1, &[t(3, 1, 5), t(1, 2, 7)])), Ok(true));
        assert_eq!(p.project(&batch(2, &[t(1, 1, 2), t(3, 1, 4)])), Ok(true));
        let f = p.take_flush().unwrap();
        let got: Vec<_> = f.balances.iter().map(|b| (b.account, b.asset, b.available, b.seq)).collect();
        assert_eq!(got, vec![(1, 1, 2, 2), (1, 2, 7, 1), (3, 1, 9, 2)]);
        // The dirty marks are cleared by the flush: the next one holds only what changed since.
        assert_eq!(p.project(&batch(3, &[t(1, 2, 1)])), Ok(true));
        let f = p.take_flush().unwrap();
        let got: Vec<_> = f.balances.iter().map(|b| (b.account, b.asset, b.available)).collect();
        assert_eq!(got, vec![(1, 2, 8)]);
    }

    #[test]
    fn replayed_and_old_batches_are_no_ops() {
        let mut p = Projector::new(LedgerState { applied_seq: 10, ..LedgerState::default() });
        let b = batch(10, &[EventKind::Transfer { account: 1, asset: 2, amount: 5 }]);
        assert_eq!(p.project(&b), Ok(false));
        assert!(p.take_flush().is_none());
        let b = batch(11, &[EventKind::Transfer { account: 1, asset: 2, amount: 5 }]);
        assert_eq!(p.project(&b), Ok(true));
        assert_eq!(p.project(&b), Ok(false));
        let f = p.take_flush().unwrap();
        assert_eq!((f.prev_seq, f.seq, f.entries.len(), f.balances.len()), (10, 11, 1, 1));
    }
}
