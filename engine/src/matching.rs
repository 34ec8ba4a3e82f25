//! Order admission, price-time matching, self-trade prevention, stops,
//! cancels and replaces.
//!
//! Rules in brief (ARCHITECTURE.md has the full list):
//! - every fill is at the resting (maker) order's price;
//! - an incoming order matches best price first, oldest first within a price;
//! - an iceberg shows `display` lots; when a shown slice is used up the next
//!   slice joins the BACK of its level (it loses time priority);
//! - market orders trade only inside the price band (their protection price);
//! - post-only orders that would take liquidity are rejected (never slid);
//! - stop orders wait outside the book and enter it, in trigger-price then
//!   arrival order, when the last trade price reaches their stop price.

use std::cmp::Reverse;

use crate::account::AccountIx;
use crate::book::OrderBook;
use crate::command::{NewOrder, OrderRef, OrderSize, OrderType, Replace, StpMode, TimeInForce};
use crate::engine::Engine;
use crate::event::{CancelReason, Event, EventKind, OrderKind, RejectReason};
use crate::instrument::TradingStatus;
use crate::order::{Order, StopOrder};
use crate::risk::{band, Scale};
use crate::types::{
    AccountId, Amount, AssetId, ClientOrderId, InstrumentId, OrderId, Price, Qty, Side, FEE_ACCOUNT, MAX_VALUE,
};

/// Index of the fee account: it is the first account the engine creates.
const FEE_IX: AccountIx = 0;

/// Why matching of an incoming order stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchEnd {
    Filled,
    /// The other side is empty.
    NoLiquidity,
    /// The best opposite price is beyond the order's limit or protection price.
    PriceLimit,
    /// A quote budget cannot buy one more lot.
    BudgetSpent,
    /// Self-trade prevention cancelled the incoming order.
    SelfTrade,
}

/// An order that passed every check, ready to be accepted.
struct Admission {
    ix: AccountIx,
    order: Order,
    kind: OrderKind,
    stop: Option<Price>,
}

const fn rests(tif: TimeInForce) -> bool {
    matches!(tif, TimeInForce::Gtc | TimeInForce::Gtd(_) | TimeInForce::Day)
}

impl<B: OrderBook> Engine<B> {
    fn hold_asset(&self, instrument: InstrumentId, side: Side) -> AssetId {
        let spec = &self.market(instrument).expect("known instrument").spec;
        match side {
            Side::Buy => spec.quote,
            Side::Sell => spec.base,
        }
    }

    fn check_price(p: Price) -> Result<Price, RejectReason> {
        if p <= 0 || p >= MAX_VALUE {
            return Err(RejectReason::InvalidPrice);
        }
        Ok(p)
    }

    /// Every pre-trade check of a new order, in a fixed order (the first
    /// failing check names the reject reason).
    fn admit(&self, o: &NewOrder) -> Result<Admission, RejectReason> {
        use RejectReason as R;
        let m = self.market(o.instrument).ok_or(R::UnknownInstrument)?;
        match m.status {
            TradingStatus::Open => {}
            TradingStatus::Halted => return Err(R::InstrumentHalted),
            TradingStatus::Closed => return Err(R::InstrumentClosed),
        }
        if o.account == FEE_ACCOUNT {
            return Err(R::ReservedAccount);
        }
        let ix = self.accounts.ix(o.account).ok_or(R::UnknownAccount)?;
        if self.accounts.killed(ix) {
            return Err(R::AccountKilled);
        }
        if o.client_order_id.is_empty() {
            return Err(R::InvalidOrderOptions);
        }
        if self.client_ids.contains_key(&(o.account, o.client_order_id)) {
            return Err(R::DuplicateClientOrderId);
        }
        let s = m.scale;
        let (lo, hi) = band(m.last_price, m.spec.band_bps);
        let protection = |reference: Price| {
            let (l, h) = band(reference, m.spec.band_bps);
            match o.side {
                Side::Buy => h,
                Side::Sell => l,
            }
        };
        let would_trigger = |stop: Price| match o.side {
            Side::Buy => stop <= m.last_price,
            Side::Sell => stop >= m.last_price,
        };
        // (limit or protection price, stop price, kind, price used for notional)
        let (price, stop, kind, reference) = match o.order_type {
            OrderType::Limit { price } => {
                let p = Self::check_price(price)?;
                if p < lo || p > hi {
                    return Err(R::PriceOutsideBand);
                }
                (p, None, OrderKind::Limit, p)
            }
            OrderType::Market => (protection(m.last_price), None, OrderKind::Market, m.last_price),
            OrderType::StopMarket { stop } => {
                let st = Self::check_price(stop)?;
                if would_trigger(st) {
                    return Err(R::StopWouldTriggerImmediately);
                }
                (protection(st), Some(st), OrderKind::StopMarket, st)
            }
            OrderType::StopLimit { stop, price } => {
                let st = Self::check_price(stop)?;
                let p = Self::check_price(price)?;
                if would_trigger(st) {
                    return Err(R::StopWouldTriggerImmediately);
                }
                let (l, h) = band(st, m.spec.band_bps);
                if p < l || p > h {
                    return Err(R::PriceOutsideBand);
                }
                (p, Some(st), OrderKind::StopLimit, p)
            }
        };
        let is_market = matches!(kind, OrderKind::Market | OrderKind::StopMarket);
        let (qty, budget) = match o.size {
            OrderSize::Base(q) => {
                if q <= 0 || q >= MAX_VALUE {
                    return Err(R::InvalidQuantity);
                }
                if q < m.spec.min_qty {
                    return Err(R::BelowMinQuantity);
                }
                (q, 0)
            }
            OrderSize::QuoteBudget(b) => {
                if !(is_market && o.side == Side::Buy) || o.tif == TimeInForce::Fok {
                    return Err(R::InvalidOrderOptions);
                }
                if b <= 0 || b >= MAX_VALUE {
                    return Err(R::InvalidQuantity);
                }
                (0, b)
            }
        };
        match (kind, o.tif) {
            (_, TimeInForce::Gtd(t)) if t <= self.now => return Err(R::ExpireTimeInPast),
            (OrderKind::Market, TimeInForce::Ioc | TimeInForce::Fok) => {}
            (OrderKind::Market, _) => return Err(R::InvalidTimeInForce),
            (OrderKind::StopMarket, TimeInForce::Ioc | TimeInForce::Fok) => return Err(R::InvalidTimeInForce),
            _ => {}
        }
        if o.post_only && (kind != OrderKind::Limit || !rests(o.tif)) {
            return Err(R::InvalidOrderOptions);
        }
        if o.display_qty != 0
            && (is_market
                || !rests(o.tif)
                || o.display_qty < 0
                || o.display_qty >= qty
                || o.display_qty < m.spec.min_qty)
        {
            return Err(R::InvalidDisplayQuantity);
        }
        if budget == 0 {
            let n = s.notional(reference, qty).ok_or(R::InvalidQuantity)?;
            if n < m.spec.min_notional {
                return Err(R::BelowMinNotional);
            }
        } else if budget < m.spec.min_notional {
            return Err(R::BelowMinNotional);
        }
        let hold = match o.side {
            Side::Sell => s.base_units(qty),
            Side::Buy if budget > 0 => Some(budget),
            Side::Buy => s.buy_hold(price, qty),
        }
        .ok_or(R::InvalidQuantity)?;
        let asset = match o.side {
            Side::Buy => m.spec.quote,
            Side::Sell => m.spec.base,
        };
        if self.accounts.balance(ix, asset).available < hold {
            return Err(R::InsufficientBalance);
        }
        if o.post_only && m.book.best_price(o.side.opposite()).is_some_and(|b| o.side.crosses(price, b)) {
            return Err(R::PostOnlyWouldCross);
        }
        if self.client_ids.len() >= self.limits.max_open_orders {
            return Err(R::BookFull);
        }
        if stop.is_some() {
            if m.stops.len() >= self.limits.max_stops_per_instrument {
                return Err(R::TooManyStopOrders);
            }
        } else if rests(o.tif) && m.book.is_full() {
            return Err(R::BookFull);
        }
        if matches!(o.tif, TimeInForce::Gtd(_)) && self.expiries.len() >= self.limits.max_timed_orders {
            return Err(R::TooManyTimedOrders);
        }
        let order = Order {
            id: 0,
            account: o.account,
            client_order_id: o.client_order_id,
            side: o.side,
            price,
            visible: qty,
            hidden: 0,
            display: o.display_qty,
            qty,
            filled: 0,
            hold,
            budget,
            tif: o.tif,
            stp: o.stp.unwrap_or(self.accounts.stp(ix)),
            post_only: o.post_only,
            is_market,
            priority: 0,
        };
        Ok(Admission { ix, order, kind, stop })
    }

    pub(crate) fn place(&mut self, o: &NewOrder, out: &mut Vec<Event>) {
        if matches!(o.tif, TimeInForce::Gtd(_)) && self.expiries.len() >= self.limits.max_timed_orders {
            self.sweep_expiries();
        }
        let a = match self.admit(o) {
            Ok(a) => a,
            Err(reason) => return self.reject(out, o.account, o.instrument, o.client_order_id, 0, reason),
        };
        let inst = o.instrument;
        let mut order = a.order;
        order.id = self.next_order_id;
        self.next_order_id += 1;
        let asset = self.hold_asset(inst, order.side);
        self.accounts.lock(a.ix, asset, order.hold).expect("balance checked at admission");
        self.client_ids.insert((order.account, order.client_order_id), (inst, order.id));
        self.emit(
            out,
            EventKind::OrderAccepted {
                order_id: order.id,
                account: order.account,
                instrument: inst,
                client_order_id: order.client_order_id,
                side: order.side,
                kind: a.kind,
                price: if a.kind == OrderKind::Market { 0 } else { order.price },
                stop_price: a.stop.unwrap_or(0),
                qty: order.qty,
                tif: order.tif,
                post_only: o.post_only,
                display_qty: o.display_qty,
                stp: o.stp,
            },
        );
        self.emit_balance(out, a.ix, asset);
        if let TimeInForce::Gtd(t) = order.tif {
            self.expiries.push(Reverse((t, order.id, inst)));
        }
        if let Some(stop_price) = a.stop {
            let is_limit = a.kind == OrderKind::StopLimit;
            self.market_mut(inst).stops.push(StopOrder { stop_price, is_limit, order });
            return;
        }
        self.take(inst, a.ix, order, out);
        self.run_stops(inst, out);
    }

    /// Drops expiry entries of orders that are no longer open.
    fn sweep_expiries(&mut self) {
        let mut heap = std::mem::take(&mut self.expiries);
        heap.retain(|Reverse((_, id, inst))| self.order(*inst, *id).is_some());
        self.expiries = heap;
    }

    /// Runs an incoming order against the book, then rests or cancels what is left.
    /// While matching, `visible` holds all open lots and `hidden` is zero.
    fn take(&mut self, inst: InstrumentId, ix: AccountIx, mut order: Order, out: &mut Vec<Event>) {
        if order.tif == TimeInForce::Fok && !self.fok_fillable(inst, &order) {
            return self.finish(inst, ix, order, Some(CancelReason::FillOrKill), out);
        }
        let end = self.match_order(inst, ix, &mut order, out);
        debug_assert!(order.tif != TimeInForce::Fok || end == MatchEnd::Filled);
        let reason = match end {
            MatchEnd::Filled => None,
            MatchEnd::BudgetSpent if order.filled > 0 => None,
            MatchEnd::BudgetSpent => Some(CancelReason::ProtectionLimit),
            MatchEnd::SelfTrade => Some(CancelReason::SelfTrade),
            MatchEnd::NoLiquidity | MatchEnd::PriceLimit if rests(order.tif) && order.budget == 0 => {
                if self.market(inst).expect("known").book.is_full() {
                    Some(CancelReason::BookFull)
                } else {
                    return self.rest(inst, order, out);
                }
            }
            MatchEnd::PriceLimit if order.is_market => Some(CancelReason::ProtectionLimit),
            MatchEnd::NoLiquidity | MatchEnd::PriceLimit => Some(CancelReason::Unfilled),
        };
        self.finish(inst, ix, order, reason, out);
    }

    fn rest(&mut self, inst: InstrumentId, mut order: Order, out: &mut Vec<Event>) {
        let leaves = order.visible;
        debug_assert!(order.hidden == 0 && leaves > 0);
        order.visible = if order.display > 0 { order.display.min(leaves) } else { leaves };
        order.hidden = leaves - order.visible;
        order.priority = self.next_priority;
        self.next_priority += 1;
        self.market_mut(inst).book.insert(order);
        self.emit(
            out,
            EventKind::BookAdd {
                instrument: inst,
                order_id: order.id,
                side: order.side,
                price: order.price,
                qty: order.visible,
            },
        );
    }

    /// Ends an order that is not (or no longer) on the book: filled when
    /// `reason` is None, else cancelled. Returns its remaining hold.
    fn finish(
        &mut self,
        inst: InstrumentId,
        ix: AccountIx,
        order: Order,
        reason: Option<CancelReason>,
        out: &mut Vec<Event>,
    ) {
        let (order_id, account) = (order.id, order.account);
        match reason {
            None => self.emit(out, EventKind::OrderFilled { order_id, account, instrument: inst }),
            Some(reason) => self.emit(
                out,
                EventKind::OrderCancelled { order_id, account, instrument: inst, leaves: order.leaves(), reason },
            ),
        }
        self.client_ids.remove(&(account, order.client_order_id));
        if order.hold > 0 {
            let asset = self.hold_asset(inst, order.side);
            self.accounts.unlock(ix, asset, order.hold);
            self.emit_balance(out, ix, asset);
        }
    }

    /// Whether a FOK order can fill completely right now. Exact, including
    /// self-trade prevention: an own order that would cancel the taker blocks
    /// everything behind it; iceberg reserves count only at levels fully
    /// reachable before such a blocker (a refreshed slice rejoins the back).
    fn fok_fillable(&self, inst: InstrumentId, t: &Order) -> bool {
        let m = self.market(inst).expect("known");
        let need = t.visible;
        let mut done_levels: Qty = 0;
        let (mut level_price, mut level_shown, mut level_all): (Price, Qty, Qty) = (0, 0, 0);
        let mut blocked = false;
        m.book.visit(t.side.opposite(), &mut |o| {
            if !t.side.crosses(t.price, o.price) {
                return false;
            }
            if o.price != level_price {
                done_levels += level_all;
                (level_price, level_shown, level_all) = (o.price, 0, 0);
                if done_levels >= need {
                    return false;
                }
            }
            if o.account == t.account && t.stp != StpMode::None {
                if t.stp == StpMode::CancelOldest {
                    return true;
                }
                blocked = true;
                return false;
            }
            level_shown += o.visible;
            level_all += o.leaves();
            // Shown quantities ahead of any later blocker are certainly reachable.
            done_levels + level_shown < need
        });
        let fillable = done_levels + if blocked { level_shown } else { level_all };
        fillable >= need
    }

    fn match_order(&mut self, inst: InstrumentId, tix: AccountIx, t: &mut Order, out: &mut Vec<Event>) -> MatchEnd {
        let opp = t.side.opposite();
        let by_budget = t.budget > 0;
        loop {
            if !by_budget && t.visible == 0 {
                return MatchEnd::Filled;
            }
            let m = self.market(inst).expect("known");
            let Some(&maker) = m.book.best(opp) else {
                return MatchEnd::NoLiquidity;
            };
            if !t.side.crosses(t.price, maker.price) {
                return MatchEnd::PriceLimit;
            }
            let q = if by_budget {
                let a = m.scale.affordable(t.budget, maker.price, m.scale.taker_fee_bps);
                if a == 0 {
                    return MatchEnd::BudgetSpent;
                }
                a.min(maker.visible)
            } else {
                t.visible.min(maker.visible)
            };
            if maker.account == t.account && t.stp != StpMode::None {
                match t.stp {
                    StpMode::CancelNewest => return MatchEnd::SelfTrade,
                    StpMode::CancelOldest => self.cancel_resting(inst, maker.id, CancelReason::SelfTrade, out),
                    StpMode::CancelBoth => {
                        self.cancel_resting(inst, maker.id, CancelReason::SelfTrade, out);
                        return MatchEnd::SelfTrade;
                    }
                    StpMode::DecrementAndCancel if by_budget => return MatchEnd::SelfTrade,
                    StpMode::DecrementAndCancel => {
                        let d = t.visible.min(maker.leaves());
                        if d == maker.leaves() {
                            self.cancel_resting(inst, maker.id, CancelReason::SelfTrade, out);
                        } else {
                            self.decrement_resting(inst, maker.id, d, out);
                        }
                        t.visible -= d;
                        t.qty -= d;
                        self.release_excess(inst, tix, t, out);
                        if t.visible == 0 {
                            return MatchEnd::SelfTrade;
                        }
                    }
                    StpMode::None => unreachable!("checked above"),
                }
                continue;
            }
            self.fill(inst, tix, t, maker.id, q, out);
        }
    }

    /// Unlocks whatever an order holds beyond what its open quantity needs.
    fn release_excess(&mut self, inst: InstrumentId, ix: AccountIx, o: &mut Order, out: &mut Vec<Event>) {
        let required = self.market(inst).expect("known").scale.required_hold(o);
        let excess = o.hold - required;
        assert!(excess >= 0, "hold below requirement: order {} hold {} required {}", o.id, o.hold, required);
        if excess > 0 {
            o.hold = required;
            let asset = self.hold_asset(inst, o.side);
            self.accounts.unlock(ix, asset, excess);
            self.emit_balance(out, ix, asset);
        }
    }

    /// One fill of `q` lots between the incoming order `t` and the resting `maker_id`.
    fn fill(
        &mut self,
        inst: InstrumentId,
        tix: AccountIx,
        t: &mut Order,
        maker_id: OrderId,
        q: Qty,
        out: &mut Vec<Event>,
    ) {
        let m = self.market_mut(inst);
        let s = m.scale;
        let (base, quote) = (m.spec.base, m.spec.quote);
        let mut mk = *m.book.get(maker_id).expect("maker on book");
        let price = mk.price;
        m.last_price = price;
        let n = s.notional(price, q).expect("bounded by the maker's hold");
        let base_amt = s.base_units(q).expect("bounded by the sell hold");
        let maker_fee = Scale::fee(n, s.maker_fee_bps);
        let taker_fee = Scale::fee(n, s.taker_fee_bps);
        let mix = self.accounts.ix(mk.account).expect("maker account exists");
        let (bix, six, bfee, sfee) = match t.side {
            Side::Buy => (tix, mix, taker_fee, maker_fee),
            Side::Sell => (mix, tix, maker_fee, taker_fee),
        };
        self.accounts.spend_locked(bix, quote, n + bfee);
        self.accounts.credit(bix, base, base_amt);
        self.accounts.spend_locked(six, base, base_amt);
        self.accounts.credit(six, quote, n - sfee);
        self.accounts.credit(FEE_IX, quote, bfee + sfee);
        let spent = |o: &Order, fee: Amount| match o.side {
            Side::Buy => n + fee,
            Side::Sell => base_amt,
        };
        t.filled += q;
        t.hold -= spent(t, taker_fee);
        if t.budget > 0 {
            t.budget -= n + taker_fee;
        } else {
            t.visible -= q;
        }
        mk.visible -= q;
        mk.filled += q;
        mk.hold -= spent(&mk, maker_fee);
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        self.emit(
            out,
            EventKind::Trade {
                trade_id,
                instrument: inst,
                price,
                qty: q,
                aggressor: t.side,
                maker_order: mk.id,
                taker_order: t.id,
                maker_account: mk.account,
                taker_account: t.account,
                maker_fee,
                taker_fee,
                maker_leaves: mk.leaves(),
                taker_leaves: t.visible,
            },
        );
        // Bring both holds down to what their open quantity needs (without
        // emitting: the balance events below carry the result).
        for (o, ix) in [(&mut *t, tix), (&mut mk, mix)] {
            let required = s.required_hold(o);
            let excess = o.hold - required;
            assert!(excess >= 0, "hold below requirement after fill: order {}", o.id);
            if excess > 0 {
                o.hold = required;
                let asset = if o.side == Side::Buy { quote } else { base };
                self.accounts.unlock(ix, asset, excess);
            }
        }
        if mk.leaves() == 0 {
            debug_assert_eq!(mk.hold, 0);
            self.market_mut(inst).book.remove(mk.id);
            self.client_ids.remove(&(mk.account, mk.client_order_id));
            self.emit(out, EventKind::OrderFilled { order_id: mk.id, account: mk.account, instrument: inst });
        } else if mk.visible == 0 {
            // Iceberg refresh: the next slice goes to the back of the level.
            let book = &mut self.market_mut(inst).book;
            book.remove(mk.id);
            mk.visible = mk.display.min(mk.hidden);
            mk.hidden -= mk.visible;
            mk.priority = self.next_priority;
            self.next_priority += 1;
            self.market_mut(inst).book.insert(mk);
            self.emit(
                out,
                EventKind::BookAdd { instrument: inst, order_id: mk.id, side: mk.side, price, qty: mk.visible },
            );
        } else {
            *self.market_mut(inst).book.get_mut(mk.id).expect("maker on book") = mk;
        }
        self.emit_balance(out, bix, quote);
        self.emit_balance(out, bix, base);
        self.emit_balance(out, six, base);
        self.emit_balance(out, six, quote);
        self.emit_balance(out, FEE_IX, quote);
    }

    /// Removes a resting order and returns its hold.
    fn cancel_resting(&mut self, inst: InstrumentId, id: OrderId, reason: CancelReason, out: &mut Vec<Event>) {
        let o = self.market_mut(inst).book.remove(id).expect("resting order");
        let ix = self.accounts.ix(o.account).expect("owner exists");
        self.emit(
            out,
            EventKind::OrderCancelled {
                order_id: id,
                account: o.account,
                instrument: inst,
                leaves: o.leaves(),
                reason,
            },
        );
        self.emit(out, EventKind::BookRemove { instrument: inst, order_id: id });
        self.client_ids.remove(&(o.account, o.client_order_id));
        let asset = self.hold_asset(inst, o.side);
        self.accounts.unlock(ix, asset, o.hold);
        self.emit_balance(out, ix, asset);
    }

    /// Self-trade decrement of a resting order by `d` lots (less than its
    /// open quantity): reserve first, so the shown part keeps its priority.
    fn decrement_resting(&mut self, inst: InstrumentId, id: OrderId, d: Qty, out: &mut Vec<Event>) {
        let mut o = *self.market(inst).expect("known").book.get(id).expect("resting order");
        debug_assert!(d < o.leaves());
        let from_hidden = o.hidden.min(d);
        let from_shown = d - from_hidden;
        o.hidden -= from_hidden;
        o.visible -= from_shown;
        o.qty -= d;
        let ix = self.accounts.ix(o.account).expect("owner exists");
        if from_shown > 0 {
            self.emit(out, EventKind::BookReduce { instrument: inst, order_id: id, by: from_shown });
        }
        self.release_excess(inst, ix, &mut o, out);
        *self.market_mut(inst).book.get_mut(id).expect("resting order") = o;
    }

    /// Cancels an open order wherever it waits (book or stop list).
    pub(crate) fn cancel_any(&mut self, inst: InstrumentId, id: OrderId, reason: CancelReason, out: &mut Vec<Event>) {
        let m = self.market_mut(inst);
        if m.book.get(id).is_some() {
            return self.cancel_resting(inst, id, reason, out);
        }
        let Some(i) = m.stops.iter().position(|s| s.order.id == id) else {
            return;
        };
        let o = m.stops.remove(i).order;
        let ix = self.accounts.ix(o.account).expect("owner exists");
        self.finish(inst, ix, o, Some(reason), out);
    }

    /// Triggers waiting stops while the last price reaches them: lowest
    /// buy-stop / highest sell-stop first, then oldest.
    pub(crate) fn run_stops(&mut self, inst: InstrumentId, out: &mut Vec<Event>) {
        loop {
            let m = self.market(inst).expect("known");
            if m.stops.is_empty() {
                return;
            }
            let last = m.last_price;
            let triggered = |s: &StopOrder| match s.order.side {
                Side::Buy => s.stop_price <= last,
                Side::Sell => s.stop_price >= last,
            };
            let first = |a: &StopOrder, b: &StopOrder| {
                if a.stop_price != b.stop_price {
                    a.order.side.better(b.stop_price, a.stop_price)
                } else {
                    a.order.id < b.order.id
                }
            };
            let mut pick: Option<usize> = None;
            for (i, s) in m.stops.iter().enumerate() {
                if triggered(s) && pick.is_none_or(|j| first(s, &m.stops[j])) {
                    pick = Some(i);
                }
            }
            let Some(i) = pick else { return };
            let stop = self.market_mut(inst).stops.remove(i);
            let mut order = stop.order;
            self.emit(out, EventKind::OrderTriggered { order_id: order.id, account: order.account, instrument: inst });
            if !stop.is_limit {
                order.tif = TimeInForce::Ioc;
            }
            let ix = self.accounts.ix(order.account).expect("owner exists");
            self.take(inst, ix, order, out);
        }
    }

    /// GTD orders whose time has come.
    pub(crate) fn expire_due(&mut self, out: &mut Vec<Event>) {
        while let Some(&Reverse((t, id, inst))) = self.expiries.peek() {
            if t > self.now {
                return;
            }
            self.expiries.pop();
            if self.order(inst, id).is_some() {
                self.cancel_any(inst, id, CancelReason::Expired, out);
            }
        }
    }

    fn resolve(&self, account: AccountId, inst: InstrumentId, target: OrderRef) -> Option<OrderId> {
        match target {
            OrderRef::Id(id) => self.order(inst, id).filter(|o| o.account == account).map(|o| o.id),
            OrderRef::Client(c) => match self.client_ids.get(&(account, c)) {
                Some(&(i, id)) if i == inst => Some(id),
                _ => None,
            },
        }
    }

    pub(crate) fn cancel_request(
        &mut self,
        account: AccountId,
        inst: InstrumentId,
        target: OrderRef,
        out: &mut Vec<Event>,
    ) {
        let cid = match target {
            OrderRef::Client(c) => c,
            OrderRef::Id(_) => ClientOrderId::default(),
        };
        if self.market(inst).is_none() {
            return self.reject(out, account, inst, cid, 0, RejectReason::UnknownInstrument);
        }
        match self.resolve(account, inst, target) {
            Some(id) => self.cancel_any(inst, id, CancelReason::Requested, out),
            None => {
                let id = if let OrderRef::Id(id) = target { id } else { 0 };
                self.reject(out, account, inst, cid, id, RejectReason::UnknownOrder)
            }
        }
    }

    /// Cancels, in ascending order id, every open order matching the filters.
    pub(crate) fn cancel_matching(
        &mut self,
        account: Option<AccountId>,
        instrument: Option<InstrumentId>,
        side: Option<Side>,
        day_only: bool,
        reason: CancelReason,
        out: &mut Vec<Event>,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let wanted = |o: &Order| {
            account.is_none_or(|a| a == o.account)
                && side.is_none_or(|s| s == o.side)
                && (!day_only || o.tif == TimeInForce::Day)
        };
        for (inst, m) in self.markets.iter().enumerate() {
            let Some(m) = m else { continue };
            let inst = inst as InstrumentId;
            if instrument.is_some_and(|i| i != inst) {
                continue;
            }
            for s in [Side::Buy, Side::Sell] {
                m.book.visit(s, &mut |o| {
                    if wanted(o) {
                        scratch.push((o.id, inst));
                    }
                    true
                });
            }
            scratch.extend(m.stops.iter().filter(|s| wanted(&s.order)).map(|s| (s.order.id, inst)));
        }
        scratch.sort_unstable();
        for &(id, inst) in &scratch {
            self.cancel_any(inst, id, reason, out);
        }
        self.scratch = scratch;
    }

    pub(crate) fn replace(&mut self, r: &Replace, out: &mut Vec<Event>) {
        let cid = r.new_client_order_id.unwrap_or_default();
        match self.check_replace(r) {
            Err((id, reason)) => self.reject(out, r.account, r.instrument, cid, id, reason),
            Ok((o, ix, new_hold)) => self.apply_replace(r, o, ix, new_hold, out),
        }
    }

    /// The checks of a replace, in order; on success the resting order (a copy) and what it
    /// must hold after the replace.
    fn check_replace(&self, r: &Replace) -> Result<(Order, AccountIx, Amount), (OrderId, RejectReason)> {
        use RejectReason as R;
        let m = self.market(r.instrument).ok_or((0, R::UnknownInstrument))?;
        let ix = self.accounts.ix(r.account).ok_or((0, R::UnknownAccount))?;
        // One book lookup serves both the resolution and the resting order (the hot path:
        // replaces by order id); `resolve` is the same rule for every other case.
        let (id, resting) = match r.target {
            OrderRef::Id(id) => match m.book.get(id) {
                Some(o) if o.account == r.account => (id, Some(o)),
                Some(_) => return Err((0, R::UnknownOrder)),
                None => {
                    let id = self.resolve(r.account, r.instrument, r.target).ok_or((0, R::UnknownOrder))?;
                    (id, None)
                }
            },
            OrderRef::Client(_) => {
                let id = self.resolve(r.account, r.instrument, r.target).ok_or((0, R::UnknownOrder))?;
                (id, m.book.get(id))
            }
        };
        let e = |reason| (id, reason);
        match m.status {
            TradingStatus::Open => {}
            TradingStatus::Halted => return Err(e(R::InstrumentHalted)),
            TradingStatus::Closed => return Err(e(R::InstrumentClosed)),
        }
        if self.accounts.killed(ix) {
            return Err(e(R::AccountKilled));
        }
        let o = resting.ok_or(e(R::NotReplaceable))?;
        let price = Self::check_price(r.price).map_err(e)?;
        let (lo, hi) = band(m.last_price, m.spec.band_bps);
        if price < lo || price > hi {
            return Err(e(R::PriceOutsideBand));
        }
        if r.qty <= 0 || r.qty >= MAX_VALUE {
            return Err(e(R::InvalidQuantity));
        }
        if r.qty <= o.filled {
            return Err(e(R::ReplaceQuantityBelowFilled));
        }
        if r.qty < m.spec.min_qty {
            return Err(e(R::BelowMinQuantity));
        }
        if let Some(c) = r.new_client_order_id {
            if c.is_empty() {
                return Err(e(R::InvalidOrderOptions));
            }
            if c != o.client_order_id && self.client_ids.contains_key(&(r.account, c)) {
                return Err(e(R::DuplicateClientOrderId));
            }
        }
        let n = m.scale.notional(price, r.qty).ok_or(e(R::InvalidQuantity))?;
        if n < m.spec.min_notional {
            return Err(e(R::BelowMinNotional));
        }
        let leaves = r.qty - o.filled;
        let new_hold = match o.side {
            Side::Sell => m.scale.base_units(leaves),
            Side::Buy => m.scale.buy_hold(price, leaves),
        }
        .ok_or(e(R::InvalidQuantity))?;
        let asset = self.hold_asset(r.instrument, o.side);
        if new_hold - o.hold > self.accounts.balance(ix, asset).available {
            return Err(e(R::InsufficientBalance));
        }
        if o.post_only && m.book.best_price(o.side.opposite()).is_some_and(|b| o.side.crosses(price, b)) {
            return Err(e(R::PostOnlyWouldCross));
        }
        Ok((*o, ix, new_hold))
    }

    fn apply_replace(&mut self, r: &Replace, mut o: Order, ix: AccountIx, new_hold: Amount, out: &mut Vec<Event>) {
        let inst = r.instrument;
        let id = o.id;
        let asset = self.hold_asset(inst, o.side);
        if let Some(c) = r.new_client_order_id {
            self.client_ids.remove(&(o.account, o.client_order_id));
            self.client_ids.insert((o.account, c), (inst, id));
            o.client_order_id = c;
        }
        let leaves = r.qty - o.filled;
        let keep = r.price == o.price && leaves <= o.leaves();
        let delta = new_hold - o.hold;
        if delta > 0 {
            self.accounts.lock(ix, asset, delta).expect("checked");
        } else {
            self.accounts.unlock(ix, asset, -delta);
        }
        o.hold = new_hold;
        o.qty = r.qty;
        self.emit(
            out,
            EventKind::OrderReplaced {
                order_id: id,
                account: o.account,
                instrument: inst,
                client_order_id: o.client_order_id,
                price: r.price,
                qty: r.qty,
                leaves,
                priority_kept: keep,
            },
        );
        if keep {
            let d = o.leaves() - leaves;
            let from_hidden = o.hidden.min(d);
            let from_shown = d - from_hidden;
            o.hidden -= from_hidden;
            o.visible -= from_shown;
            *self.market_mut(inst).book.get_mut(id).expect("checked") = o;
            if from_shown > 0 {
                self.emit(out, EventKind::BookReduce { instrument: inst, order_id: id, by: from_shown });
            }
            self.emit_balance(out, ix, asset);
        } else {
            self.market_mut(inst).book.remove(id);
            self.emit(out, EventKind::BookRemove { instrument: inst, order_id: id });
            self.emit_balance(out, ix, asset);
            o.price = r.price;
            o.visible = leaves;
            o.hidden = 0;
            self.take(inst, ix, o, out);
            self.run_stops(inst, out);
        }
    }
}
