//! Per-account order, fill and balance state built from the engine stream
//! (sans-IO), for the query endpoints and the user stream.
//!
//! Memory is bounded per account: at most `max_open` open orders tracked,
//! the last `max_history` closed orders and the last `max_fills` fills; the
//! client-order-id index covers exactly the orders still held, so an id
//! whose order has aged out of the history can be reused.

use std::collections::{BTreeMap, VecDeque};

use castle_engine::{
    AccountId, Amount, AssetId, CancelReason, Event, EventKind, InstrumentId, OrderId, OrderKind, Price, Qty, Seq,
    Side, StpMode, TimeInForce, Timestamp,
};

use crate::hashing::Map;

/// Quote-budget orders placed here and not yet accepted or rejected, whose budget is remembered.
pub const MAX_PLACED: usize = 65_536;

#[derive(Clone, Copy, Debug)]
pub struct AccountLimits {
    pub max_open: usize,
    pub max_history: usize,
    pub max_fills: usize,
}

impl Default for AccountLimits {
    fn default() -> Self {
        AccountLimits { max_open: 10_000, max_history: 1_000, max_fills: 1_000 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    Expired,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::PartiallyFilled => "PARTIALLY_FILLED",
            Status::Filled => "FILLED",
            Status::Canceled => "CANCELED",
            Status::Expired => "EXPIRED",
        }
    }
    pub fn is_open(self) -> bool {
        matches!(self, Status::New | Status::PartiallyFilled)
    }
}

/// What the gateway knows about an order. The quote budget of a market
/// order, which the engine's acceptance event does not carry, is filled in
/// for orders placed through this gateway; post-only, iceberg display and
/// STP come from the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: OrderId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub client_order_id: String,
    pub side: Side,
    pub kind: OrderKind,
    pub price: Price,
    pub stop_price: Price,
    /// Total quantity in lots (0 for a quote-budget order).
    pub qty: Qty,
    pub leaves: Qty,
    pub filled: Qty,
    /// Sum of price * qty of the fills, in tick-lots.
    pub filled_notional: i128,
    pub quote_budget: Option<Amount>,
    pub tif: TimeInForce,
    pub post_only: bool,
    pub display_qty: Qty,
    pub stp: Option<StpMode>,
    pub status: Status,
    pub cancel_reason: Option<CancelReason>,
    pub triggered: bool,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub seq: Seq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// trade_id * 2 + (1 when this side was the taker): unique per account
    /// even for a self-trade, and ordered like the trades.
    pub fill_id: u64,
    pub trade_id: u64,
    pub order_id: OrderId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub fee: Amount,
    pub maker: bool,
    pub ts: Timestamp,
    pub seq: Seq,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalanceRecord {
    pub available: Amount,
    pub locked: Amount,
    pub seq: Seq,
}

/// What the acceptance event of an order placed here does not carry,
/// handed over before submission: only a market order's quote budget (so
/// orders sized in base quantity, nearly all, cost no table entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacedOptions {
    pub quote_budget: Amount,
}

#[derive(Default, Debug)]
pub struct Account {
    pub open: BTreeMap<OrderId, OrderRecord>,
    pub history: VecDeque<OrderRecord>,
    pub fills: VecDeque<Fill>,
    pub balances: BTreeMap<AssetId, BalanceRecord>,
    by_client: Map<String, OrderId>,
}

impl Account {
    pub fn order(&self, id: OrderId) -> Option<&OrderRecord> {
        self.open.get(&id).or_else(|| self.history.iter().rev().find(|o| o.id == id))
    }
    pub fn by_client_id(&self, cl: &str) -> Option<&OrderRecord> {
        self.by_client.get(cl).and_then(|id| self.order(*id))
    }
}

/// What one batch changed, for the user stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub orders: Vec<(AccountId, OrderId)>,
    pub fills: Vec<(AccountId, Fill)>,
    pub balances: Vec<(AccountId, AssetId)>,
}

#[derive(Default, Debug)]
pub struct Accounts {
    pub limits: AccountLimits,
    accounts: Map<AccountId, Account>,
    /// Budgets of quote-budget orders placed here, by (account, client order id), until accepted.
    placed: Map<(AccountId, String), PlacedOptions>,
    pub seq: Seq,
}

impl Accounts {
    pub fn new(limits: AccountLimits) -> Self {
        Accounts { limits, ..Default::default() }
    }

    pub fn get(&self, account: AccountId) -> Option<&Account> {
        self.accounts.get(&account)
    }

    pub fn open_count(&self, account: AccountId) -> usize {
        self.accounts.get(&account).map(|a| a.open.len()).unwrap_or(0)
    }

    pub fn note_placed(&mut self, account: AccountId, cl: &str, o: PlacedOptions) {
        // Entries leave on acceptance or rejection; requests that never got
        // an answer could leave some behind, so the table has a hard cap
        // (past it, an order's extra options are simply not shown).
        if self.placed.len() < MAX_PLACED {
            self.placed.insert((account, cl.to_string()), o);
        }
    }

    pub fn forget_placed(&mut self, account: AccountId, cl: &str) {
        if !self.placed.is_empty() {
            self.placed.remove(&(account, cl.to_string()));
        }
    }

    fn close(&mut self, account: AccountId, id: OrderId) {
        let max_history = self.limits.max_history;
        let Some(a) = self.accounts.get_mut(&account) else { return };
        if let Some(o) = a.open.remove(&id) {
            if a.history.len() == max_history {
                if let Some(old) = a.history.pop_front() {
                    if a.by_client.get(&old.client_order_id) == Some(&old.id) {
                        a.by_client.remove(&old.client_order_id);
                    }
                }
            }
            a.history.push_back(o);
        }
    }

    fn open_mut(&mut self, account: AccountId, id: OrderId) -> Option<&mut OrderRecord> {
        self.accounts.get_mut(&account).and_then(|a| a.open.get_mut(&id))
    }

    /// Applies one batch of engine events; returns what changed.
    pub fn apply(&mut self, events: &[Event]) -> Changes {
        let mut ch = Changes::default();
        for e in events {
            self.seq = e.seq;
            self.apply_one(e, &mut ch);
        }
        ch
    }

    fn apply_one(&mut self, e: &Event, ch: &mut Changes) {
        let (seq, ts) = (e.seq, e.ts);
        match e.kind {
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
                let cl = client_order_id.as_str().to_string();
                // Only a quote-budget market order (qty 0) has an entry.
                let opts = match (kind, qty) {
                    (OrderKind::Market, 0) if !self.placed.is_empty() => self.placed.remove(&(account, cl.clone())),
                    _ => None,
                };
                let max_open = self.limits.max_open;
                let a = self.accounts.entry(account).or_default();
                if a.open.len() >= max_open {
                    // Only orders from other gateways can get here (admission
                    // refuses at the limit): the oldest leaves our view.
                    tracing::warn!(account, "open-order view full; forgetting the oldest open order");
                    if let Some((&old, _)) = a.open.iter().next() {
                        a.open.remove(&old);
                    }
                }
                let rec = OrderRecord {
                    id: order_id,
                    account,
                    instrument,
                    client_order_id: cl.clone(),
                    side,
                    kind,
                    price,
                    stop_price,
                    qty,
                    leaves: qty,
                    filled: 0,
                    filled_notional: 0,
                    quote_budget: opts.map(|o| o.quote_budget),
                    tif,
                    post_only,
                    display_qty,
                    stp,
                    status: Status::New,
                    cancel_reason: None,
                    triggered: false,
                    created: ts,
                    updated: ts,
                    seq,
                };
                a.open.insert(order_id, rec);
                if !cl.is_empty() {
                    a.by_client.insert(cl, order_id);
                }
                ch.orders.push((account, order_id));
            }
            EventKind::Rejected { account, client_order_id, .. } => {
                self.forget_placed(account, client_order_id.as_str());
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
                let max_fills = self.limits.max_fills;
                for (account, order, side, fee, maker, leaves) in [
                    (maker_account, maker_order, aggressor.opposite(), maker_fee, true, maker_leaves),
                    (taker_account, taker_order, aggressor, taker_fee, false, taker_leaves),
                ] {
                    if let Some(o) = self.open_mut(account, order) {
                        o.filled += qty;
                        o.filled_notional += price as i128 * qty as i128;
                        o.leaves = leaves;
                        o.status = Status::PartiallyFilled;
                        o.updated = ts;
                        o.seq = seq;
                        ch.orders.push((account, order));
                    }
                    let fill = Fill {
                        fill_id: trade_id * 2 + u64::from(!maker),
                        trade_id,
                        order_id: order,
                        instrument,
                        side,
                        price,
                        qty,
                        fee,
                        maker,
                        ts,
                        seq,
                    };
                    let a = self.accounts.entry(account).or_default();
                    if a.fills.len() == max_fills {
                        a.fills.pop_front();
                    }
                    a.fills.push_back(fill);
                    ch.fills.push((account, fill));
                }
            }
            EventKind::OrderFilled { order_id, account, .. } => {
                if let Some(o) = self.open_mut(account, order_id) {
                    o.status = Status::Filled;
                    o.leaves = 0;
                    o.updated = ts;
                    o.seq = seq;
                }
                self.close(account, order_id);
                ch.orders.push((account, order_id));
            }
            EventKind::OrderCancelled { order_id, account, reason, .. } => {
                if let Some(o) = self.open_mut(account, order_id) {
                    o.status = match reason {
                        CancelReason::Expired | CancelReason::EndOfDay => Status::Expired,
                        _ => Status::Canceled,
                    };
                    o.cancel_reason = Some(reason);
                    o.updated = ts;
                    o.seq = seq;
                }
                self.close(account, order_id);
                ch.orders.push((account, order_id));
            }
            EventKind::OrderReplaced { order_id, account, client_order_id, price, qty, leaves, .. } => {
                let cl = client_order_id.as_str().to_string();
                if let Some(a) = self.accounts.get_mut(&account) {
                    if let Some(o) = a.open.get_mut(&order_id) {
                        if o.client_order_id != cl {
                            a.by_client.remove(&o.client_order_id);
                            a.by_client.insert(cl.clone(), order_id);
                            o.client_order_id = cl;
                        }
                        o.price = price;
                        o.qty = qty;
                        o.leaves = leaves;
                        o.updated = ts;
                        o.seq = seq;
                        ch.orders.push((account, order_id));
                    }
                }
            }
            EventKind::OrderTriggered { order_id, account, .. } => {
                if let Some(o) = self.open_mut(account, order_id) {
                    o.triggered = true;
                    o.updated = ts;
                    o.seq = seq;
                    ch.orders.push((account, order_id));
                }
            }
            EventKind::BalanceChanged { account, asset, available, locked } => {
                let a = self.accounts.entry(account).or_default();
                a.balances.insert(asset, BalanceRecord { available, locked, seq });
                ch.balances.push((account, asset));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_engine::{
        ClientOrderId, Command, Engine, FastEngine, InstrumentSpec, Limits, NewOrder, OrderSize, OrderType,
    };

    fn order(account: u32, cl: &str, side: Side, price: i64, qty: i64) -> Command {
        Command::PlaceOrder(NewOrder {
            account,
            instrument: 0,
            client_order_id: ClientOrderId::new(cl).unwrap(),
            side,
            order_type: OrderType::Limit { price },
            size: OrderSize::Base(qty),
            tif: TimeInForce::Gtc,
            post_only: false,
            display_qty: 0,
            stp: None,
        })
    }

    fn run(cmds: &[Command], acc: &mut Accounts) {
        let mut e: FastEngine = Engine::new(Limits::small());
        let mut out = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            out.clear();
            e.apply(i as u64 + 1, c, &mut out);
            acc.apply(&out);
        }
    }

    #[test]
    fn orders_fills_balances_and_bounded_history() {
        let mut cmds = vec![Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000))];
        for a in [1, 2] {
            cmds.push(Command::Deposit { account: a, asset: 1, amount: 100_000_000_000 });
            cmds.push(Command::Deposit { account: a, asset: 2, amount: 100_000_000_000_000 });
        }
        for i in 0..5 {
            cmds.push(order(1, &format!("b{i}"), Side::Buy, 6_000_000, 10));
        }
        cmds.push(order(2, "s1", Side::Sell, 6_000_000, 25));
        let mut acc = Accounts::new(AccountLimits { max_open: 100, max_history: 2, max_fills: 3 });
        run(&cmds, &mut acc);
        let a1 = acc.get(1).unwrap();
        assert_eq!(a1.open.len(), 3, "two filled, one partially filled, two untouched");
        assert_eq!(a1.history.len(), 2);
        let partial = a1.by_client_id("b2").unwrap();
        assert_eq!((partial.status, partial.filled, partial.leaves), (Status::PartiallyFilled, 5, 5));
        assert_eq!(a1.fills.len(), 3);
        let a2 = acc.get(2).unwrap();
        assert_eq!(a2.history[0].status, Status::Filled);
        assert!(a1.balances[&2].locked > 0);
    }
}
