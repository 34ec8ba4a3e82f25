//! One scenario per rule, written so a reader can follow the market.
//!
//! Every step runs on the fast engine and on the reference engine, demands
//! identical events from both, and checks every invariant afterwards.
//! Outcomes are compared as short summaries ("trade 5@1005 maker #2"),
//! balance events are checked with explicit numbers where money moves.
//!
//! The instrument: BTC-USDT, tick value 10 quote units per tick per lot,
//! 1 lot = 1000 base units, reference price 1000, band 10%, maker fee 10 bps,
//! taker fee 20 bps. Accounts 1..=4 each hold 10_000_000 quote and 1_000_000
//! base (1000 lots).

use castle_engine::*;

const I: InstrumentId = 0;
const BASE: AssetId = 1;
const QUOTE: AssetId = 2;
const FEES: AccountId = FEE_ACCOUNT;
use Side::{Buy, Sell};

struct V {
    fast: FastEngine,
    reference: ReferenceEngine,
    out: Vec<Event>,
    ts: Timestamp,
    next_client: u64,
}

fn spec() -> InstrumentSpec {
    InstrumentSpec::demo(I, "BTC-USDT", BASE, QUOTE, 1_000)
}

impl V {
    fn new() -> V {
        V::with_spec(spec())
    }

    fn with_spec(spec: InstrumentSpec) -> V {
        let mut v = V {
            fast: FastEngine::new(Limits::small()),
            reference: ReferenceEngine::new(Limits::small()),
            out: Vec::new(),
            ts: 1,
            next_client: 1,
        };
        v.cmd(Command::AddInstrument(spec));
        for a in 1..=4 {
            v.cmd(Command::Deposit { account: a, asset: QUOTE, amount: 10_000_000 });
            v.cmd(Command::Deposit { account: a, asset: BASE, amount: 1_000_000 });
        }
        v
    }

    fn cmd(&mut self, c: Command) -> Vec<EventKind> {
        self.cmd_at(self.ts + 1, c)
    }

    fn cmd_at(&mut self, ts: Timestamp, c: Command) -> Vec<EventKind> {
        self.ts = ts;
        self.out.clear();
        let seq = self.fast.apply(ts, &c, &mut self.out);
        let mut other = Vec::new();
        self.reference.apply(ts, &c, &mut other);
        assert_eq!(self.out, other, "fast and reference engines disagree on {c:?}");
        assert!(self.out.iter().all(|e| e.seq == seq && e.ts == ts), "every event carries its command's seq and time");
        self.fast.check_invariants().unwrap();
        self.reference.check_invariants().unwrap();
        assert_eq!(self.fast.state_hash(), self.reference.state_hash());
        self.out.iter().map(|e| e.kind).collect()
    }

    fn new_order(
        &mut self,
        account: AccountId,
        side: Side,
        order_type: OrderType,
        size: OrderSize,
        tif: TimeInForce,
    ) -> NewOrder {
        self.next_client += 1;
        NewOrder {
            account,
            instrument: I,
            client_order_id: ClientOrderId::from_u64(self.next_client),
            side,
            order_type,
            size,
            tif,
            post_only: false,
            display_qty: 0,
            stp: None,
        }
    }

    fn place(&mut self, o: NewOrder) -> Vec<EventKind> {
        self.cmd(Command::PlaceOrder(o))
    }

    fn limit(&mut self, account: AccountId, side: Side, price: Price, qty: Qty) -> Vec<EventKind> {
        let o = self.new_order(account, side, OrderType::Limit { price }, OrderSize::Base(qty), TimeInForce::Gtc);
        self.place(o)
    }

    fn limit_tif(
        &mut self,
        account: AccountId,
        side: Side,
        price: Price,
        qty: Qty,
        tif: TimeInForce,
    ) -> Vec<EventKind> {
        let o = self.new_order(account, side, OrderType::Limit { price }, OrderSize::Base(qty), tif);
        self.place(o)
    }

    fn market(&mut self, account: AccountId, side: Side, size: OrderSize) -> Vec<EventKind> {
        let o = self.new_order(account, side, OrderType::Market, size, TimeInForce::Ioc);
        self.place(o)
    }

    fn cancel(&mut self, account: AccountId, id: OrderId) -> Vec<EventKind> {
        self.cmd(Command::Cancel { account, instrument: I, target: OrderRef::Id(id) })
    }

    fn replace(&mut self, account: AccountId, id: OrderId, price: Price, qty: Qty) -> Vec<EventKind> {
        self.cmd(Command::Replace(Replace {
            account,
            instrument: I,
            target: OrderRef::Id(id),
            new_client_order_id: None,
            price,
            qty,
        }))
    }

    fn bal(&self, account: AccountId, asset: AssetId) -> (Amount, Amount) {
        let b = self.fast.balance(account, asset).unwrap();
        (b.available, b.locked)
    }

    fn book(&self, side: Side) -> Vec<String> {
        let mut v = Vec::new();
        self.fast.visit_book(I, side, &mut |o| {
            v.push(if o.hidden > 0 {
                format!("#{} {}x{}+{}", o.id, o.price, o.visible, o.hidden)
            } else {
                format!("#{} {}x{}", o.id, o.price, o.visible)
            });
            true
        });
        v
    }
}

/// Everything but balance events, in words.
fn summary(events: &[EventKind]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            Some(match *e {
                EventKind::OrderAccepted { order_id, .. } => format!("accepted #{order_id}"),
                EventKind::Rejected { reason, .. } => format!("rejected {reason:?}"),
                EventKind::Trade { price, qty, maker_order, .. } => format!("trade {qty}@{price} maker #{maker_order}"),
                EventKind::OrderCancelled { order_id, reason, leaves, .. } => {
                    format!("cancelled #{order_id} {reason:?} leaves {leaves}")
                }
                EventKind::OrderReplaced { order_id, priority_kept, .. } => {
                    format!("replaced #{order_id}{}", if priority_kept { " keeps priority" } else { "" })
                }
                EventKind::OrderTriggered { order_id, .. } => format!("triggered #{order_id}"),
                EventKind::OrderFilled { order_id, .. } => format!("filled #{order_id}"),
                EventKind::BookAdd { order_id, price, qty, .. } => format!("book add #{order_id} {qty}@{price}"),
                EventKind::BookReduce { order_id, by, .. } => format!("book reduce #{order_id} by {by}"),
                EventKind::BookRemove { order_id, .. } => format!("book remove #{order_id}"),
                EventKind::BalanceChanged { .. } => return None,
                other => format!("{other:?}"),
            })
        })
        .collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

// ----- matching -----

#[test]
fn price_time_priority_and_fills_at_the_makers_price() {
    let mut v = V::new();
    assert_eq!(summary(&v.limit(1, Sell, 1010, 5)), s(&["accepted #1", "book add #1 5@1010"]));
    v.limit(2, Sell, 1005, 5); // #2: better price
    v.limit(3, Sell, 1005, 5); // #3: same price, later
    assert_eq!(
        summary(&v.limit(4, Buy, 1010, 12)),
        s(&[
            "accepted #4",
            "trade 5@1005 maker #2",
            "filled #2",
            "trade 5@1005 maker #3",
            "filled #3",
            "trade 2@1010 maker #1",
            "filled #4"
        ])
    );
    assert_eq!(v.book(Sell), s(&["#1 1010x3"]));
    assert_eq!(v.fast.last_price(I), Some(1010));
}

#[test]
fn a_limit_that_does_not_cross_rests_and_the_book_never_crosses() {
    let mut v = V::new();
    v.limit(1, Sell, 1005, 5);
    v.limit(2, Buy, 1000, 5);
    v.limit(3, Buy, 1004, 1);
    assert_eq!(v.book(Buy), s(&["#3 1004x1", "#2 1000x5"]));
    assert_eq!(v.fast.best_price(I, Sell), Some(1005));
}

// ----- balances, holds and fees -----

#[test]
fn holds_fees_and_settlement_move_exact_amounts() {
    let mut v = V::new();
    // Seller 1 rests 5 lots at 1000: locks 5 lots = 5000 base units.
    v.limit(1, Sell, 1000, 5);
    assert_eq!(v.bal(1, BASE), (995_000, 5_000));
    // Buyer 2 bids 5 at 1001: locks 1001*5*10 = 50_050 plus taker fee 20 bps = 100 -> 50_150.
    // It trades at the maker's 1000: notional 50_000, taker fee 100, maker fee 50.
    let ev = v.limit(2, Buy, 1001, 5);
    assert_eq!(summary(&ev), s(&["accepted #2", "trade 5@1000 maker #1", "filled #1", "filled #2"]));
    assert_eq!(
        v.bal(2, QUOTE),
        (10_000_000 - 50_000 - 100, 0),
        "buyer pays notional + taker fee, the rest of the hold is released"
    );
    assert_eq!(v.bal(2, BASE), (1_005_000, 0));
    assert_eq!(v.bal(1, BASE), (995_000, 0));
    assert_eq!(v.bal(1, QUOTE), (10_000_000 + 50_000 - 50, 0), "seller receives notional minus maker fee");
    assert_eq!(v.bal(FEES, QUOTE), (150, 0));
    let trade = ev.iter().find_map(|e| {
        if let EventKind::Trade { maker_fee, taker_fee, aggressor, .. } = e {
            Some((*maker_fee, *taker_fee, *aggressor))
        } else {
            None
        }
    });
    assert_eq!(trade, Some((50, 100, Buy)));
}

#[test]
fn cancel_releases_the_hold() {
    let mut v = V::new();
    v.limit(1, Buy, 990, 10);
    assert_eq!(v.bal(1, QUOTE), (10_000_000 - 99_198, 99_198)); // 99_000 + 198 fee
    assert_eq!(summary(&v.cancel(1, 1)), s(&["cancelled #1 Requested leaves 10", "book remove #1"]));
    assert_eq!(v.bal(1, QUOTE), (10_000_000, 0));
    assert_eq!(summary(&v.cancel(1, 1)), s(&["rejected UnknownOrder"]));
    assert_eq!(summary(&v.cancel(2, 99)), s(&["rejected UnknownOrder"]));
}

#[test]
fn another_accounts_order_cannot_be_cancelled() {
    let mut v = V::new();
    v.limit(1, Buy, 990, 10);
    assert_eq!(summary(&v.cancel(2, 1)), s(&["rejected UnknownOrder"]));
    assert_eq!(v.book(Buy), s(&["#1 990x10"]));
}

#[test]
fn insufficient_balance_is_rejected_before_anything_happens() {
    let mut v = V::new();
    assert_eq!(summary(&v.limit(1, Sell, 1000, 1_001)), s(&["rejected InsufficientBalance"]));
    assert_eq!(summary(&v.limit(1, Buy, 1000, 999)), s(&["rejected InsufficientBalance"])); // 9_990_000 + 19_980 fee > 10M
    assert_eq!(summary(&v.limit(1, Buy, 1000, 998)), s(&["accepted #1", "book add #1 998@1000"])); // 9_999_960
    assert_eq!(summary(&v.limit(5, Buy, 1000, 1)), s(&["rejected UnknownAccount"]));
}

#[test]
fn deposits_and_withdrawals_only_from_available() {
    let mut v = V::new();
    v.limit(1, Sell, 1050, 1_000); // locks all base
    assert_eq!(
        summary(&v.cmd(Command::Withdraw { account: 1, asset: BASE, amount: 1 })),
        s(&["rejected InsufficientBalance"])
    );
    assert_eq!(
        summary(&v.cmd(Command::Withdraw { account: 1, asset: QUOTE, amount: 4_000_000 })),
        s(&["Transfer { account: 1, asset: 2, amount: -4000000 }"])
    );
    assert_eq!(v.bal(1, QUOTE), (6_000_000, 0));
    assert_eq!(
        summary(&v.cmd(Command::Deposit { account: 1, asset: QUOTE, amount: 0 })),
        s(&["rejected InvalidAmount"])
    );
    assert_eq!(summary(&v.cmd(Command::Deposit { account: 1, asset: 99, amount: 5 })), s(&["rejected UnknownAsset"]));
    assert_eq!(
        summary(&v.cmd(Command::Deposit { account: FEES, asset: QUOTE, amount: 5 })),
        s(&["rejected ReservedAccount"])
    );
    assert_eq!(
        summary(&v.cmd(Command::Withdraw { account: 77, asset: QUOTE, amount: 5 })),
        s(&["rejected UnknownAccount"])
    );
}

// ----- order types -----

#[test]
fn market_buy_by_base_quantity_sweeps_within_the_band() {
    let mut v = V::new();
    v.limit(1, Sell, 1000, 2);
    v.limit(1, Sell, 1050, 2);
    v.limit(1, Sell, 1100, 2); // the band's top (1000 + 10%)
    v.limit(2, Buy, 900, 1); // irrelevant bid
                             // Band is measured from the last trade; no trade yet, so from the reference 1000: protection 1100.
    let ev = v.market(3, Buy, OrderSize::Base(10));
    assert_eq!(
        summary(&ev),
        s(&[
            "accepted #5",
            "trade 2@1000 maker #1",
            "filled #1",
            "trade 2@1050 maker #2",
            "filled #2",
            "trade 2@1100 maker #3",
            "filled #3",
            "cancelled #5 Unfilled leaves 4"
        ])
    );
    assert_eq!(v.bal(3, QUOTE).1, 0, "nothing stays locked after a market order");
}

#[test]
fn market_orders_stop_at_the_protection_price() {
    let mut v = V::new();
    v.limit(1, Sell, 1000, 1);
    v.market(2, Buy, OrderSize::Base(1)); // last = 1000
    v.limit(1, Sell, 1100, 1); // inside band (<= 1100)
    v.cmd(Command::SetTradingStatus { instrument: I, status: TradingStatus::Open });
    v.limit(3, Buy, 950, 1);
    // Move the last price down to 950: the band is now 855..1045, the 1100 ask is out of reach.
    v.market(4, Sell, OrderSize::Base(1));
    assert_eq!(v.fast.last_price(I), Some(950));
    let ev = v.market(2, Buy, OrderSize::Base(1));
    assert_eq!(summary(&ev), s(&["accepted #6", "cancelled #6 ProtectionLimit leaves 1"]));
}

#[test]
fn market_buy_by_quote_budget_spends_at_most_the_budget() {
    let mut v = V::new();
    v.limit(1, Sell, 1000, 3);
    v.limit(1, Sell, 1010, 5);
    // Budget 50_000: 3 lots at 1000 cost 30_060 with fee; then 1010*10 = 10_100 + 20 per lot -> 1 more lot (10_120); 9_820 left < one lot.
    let ev = v.market(2, Buy, OrderSize::QuoteBudget(50_000));
    assert_eq!(
        summary(&ev),
        s(&["accepted #3", "trade 3@1000 maker #1", "filled #1", "trade 1@1010 maker #2", "filled #3"])
    );
    assert_eq!(v.bal(2, QUOTE), (10_000_000 - 30_060 - 10_120, 0));
    assert_eq!(v.bal(2, BASE), (1_004_000, 0));
}

#[test]
fn stop_orders_trigger_on_the_last_trade_price() {
    let mut v = V::new();
    // A buy stop-limit at 1020 (limit 1030) and a buy stop-market at 1010.
    let o = v.new_order(1, Buy, OrderType::StopLimit { stop: 1020, price: 1030 }, OrderSize::Base(2), TimeInForce::Gtc);
    assert_eq!(summary(&v.place(o)), s(&["accepted #1"]));
    let o = v.new_order(1, Buy, OrderType::StopMarket { stop: 1010 }, OrderSize::Base(1), TimeInForce::Gtc);
    assert_eq!(summary(&v.place(o)), s(&["accepted #2"]));
    let o = v.new_order(1, Buy, OrderType::StopMarket { stop: 990 }, OrderSize::Base(1), TimeInForce::Gtc);
    assert_eq!(summary(&v.place(o)), s(&["rejected StopWouldTriggerImmediately"]));
    assert!(v.book(Buy).is_empty(), "stops wait outside the book");
    v.limit(3, Sell, 1025, 5); // #3
    v.limit(2, Sell, 1010, 1); // #4
                               // A trade at 1010 triggers the stop-market (1010 <= 1010) but not the 1020 stop yet.
                               // The stop-market lifts 1025, which then triggers the stop-limit, which buys the rest at 1025.
    let ev = v.limit(4, Buy, 1010, 1);
    assert_eq!(
        summary(&ev),
        s(&[
            "accepted #5",
            "trade 1@1010 maker #4",
            "filled #4",
            "filled #5",
            "triggered #2",
            "trade 1@1025 maker #3",
            "filled #2",
            "triggered #1",
            "trade 2@1025 maker #3",
            "filled #1",
        ])
    );
    assert_eq!(v.book(Sell), s(&["#3 1025x2"]));
    assert_eq!(v.bal(1, QUOTE).1, 0);
}

#[test]
fn iceberg_shows_a_slice_and_refreshes_at_the_back() {
    let mut v = V::new();
    let mut o = v.new_order(1, Sell, OrderType::Limit { price: 1000 }, OrderSize::Base(10), TimeInForce::Gtc);
    o.display_qty = 3;
    assert_eq!(summary(&v.place(o)), s(&["accepted #1", "book add #1 3@1000"]));
    v.limit(2, Sell, 1000, 2); // #2 behind the first slice
    assert_eq!(v.book(Sell), s(&["#1 1000x3+7", "#2 1000x2"]));
    // Taking 4: 3 from the iceberg slice, the refreshed slice goes behind #2, then 1 from #2.
    let ev = v.limit(3, Buy, 1000, 4);
    assert_eq!(
        summary(&ev),
        s(&["accepted #3", "trade 3@1000 maker #1", "book add #1 3@1000", "trade 1@1000 maker #2", "filled #3"])
    );
    assert_eq!(v.book(Sell), s(&["#2 1000x1", "#1 1000x3+4"]));
    // An incoming iceberg uses its whole quantity as a taker.
    let mut big = v.new_order(4, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(20), TimeInForce::Gtc);
    big.display_qty = 5;
    let ev = v.place(big);
    assert_eq!(
        summary(&ev),
        s(&[
            "accepted #4",
            "trade 1@1000 maker #2",
            "filled #2",
            "trade 3@1000 maker #1",
            "book add #1 3@1000",
            "trade 3@1000 maker #1",
            "book add #1 1@1000",
            "trade 1@1000 maker #1",
            "filled #1",
            "book add #4 5@1000",
        ])
    );
    assert_eq!(v.book(Buy), s(&["#4 1000x5+7"]));
}

// ----- time in force -----

#[test]
fn ioc_cancels_the_remainder() {
    let mut v = V::new();
    v.limit(1, Sell, 1000, 2);
    let ev = v.limit_tif(2, Buy, 1000, 5, TimeInForce::Ioc);
    assert_eq!(
        summary(&ev),
        s(&["accepted #2", "trade 2@1000 maker #1", "filled #1", "cancelled #2 Unfilled leaves 3"])
    );
    assert!(v.book(Buy).is_empty());
}

#[test]
fn fok_fills_completely_or_not_at_all() {
    let mut v = V::new();
    v.limit(1, Sell, 1000, 2);
    v.limit(1, Sell, 1001, 2);
    assert_eq!(
        summary(&v.limit_tif(2, Buy, 1001, 5, TimeInForce::Fok)),
        s(&["accepted #3", "cancelled #3 FillOrKill leaves 5"])
    );
    assert_eq!(v.book(Sell).len(), 2, "a killed FOK leaves the book untouched");
    let ev = v.limit_tif(2, Buy, 1001, 4, TimeInForce::Fok);
    assert_eq!(
        summary(&ev),
        s(&["accepted #4", "trade 2@1000 maker #1", "filled #1", "trade 2@1001 maker #2", "filled #2", "filled #4"])
    );
}

#[test]
fn fok_counts_iceberg_reserve_but_not_liquidity_behind_a_self_trade() {
    let mut v = V::new();
    let mut ice = v.new_order(1, Sell, OrderType::Limit { price: 1000 }, OrderSize::Base(6), TimeInForce::Gtc);
    ice.display_qty = 2;
    v.place(ice); // #1 shows 2 of 6
    v.limit(2, Sell, 1000, 1); // #2: own order of the FOK's account, behind the first slice
    let mut fok = v.new_order(2, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(3), TimeInForce::Fok);
    fok.stp = Some(StpMode::CancelNewest);
    // Only the 2 shown lots are reachable before #2 would cancel the FOK.
    assert_eq!(summary(&v.place(fok)), s(&["accepted #3", "cancelled #3 FillOrKill leaves 3"]));
    fok.client_order_id = ClientOrderId::from_u64(900);
    fok.stp = Some(StpMode::CancelOldest);
    // Cancel-oldest removes #2 and the iceberg's reserve becomes reachable.
    let ev = v.place(fok);
    assert_eq!(summary(&ev)[0], "accepted #4");
    assert!(summary(&ev).contains(&"filled #4".to_string()), "{:?}", summary(&ev));
}

#[test]
fn gtd_expires_at_its_time_and_day_at_end_of_day() {
    let mut v = V::new();
    let t = v.ts + 1_000;
    assert_eq!(summary(&v.limit_tif(1, Buy, 990, 1, TimeInForce::Gtd(v.ts))), s(&["rejected ExpireTimeInPast"]));
    v.limit_tif(1, Buy, 990, 1, TimeInForce::Gtd(t)); // #1
    v.limit_tif(1, Buy, 991, 1, TimeInForce::Day); // #2
    assert_eq!(summary(&v.cmd_at(t - 1, Command::Tick)), Vec::<String>::new());
    assert_eq!(summary(&v.cmd_at(t, Command::Tick)), s(&["cancelled #1 Expired leaves 1", "book remove #1"]));
    assert_eq!(
        summary(&v.cmd(Command::EndOfDay { instrument: None })),
        s(&["cancelled #2 EndOfDay leaves 1", "book remove #2"])
    );
    assert_eq!(v.bal(1, QUOTE), (10_000_000, 0));
}

#[test]
fn post_only_is_rejected_when_it_would_take() {
    let mut v = V::new();
    v.limit(1, Sell, 1000, 1);
    let mut o = v.new_order(2, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(1), TimeInForce::Gtc);
    o.post_only = true;
    assert_eq!(summary(&v.place(o)), s(&["rejected PostOnlyWouldCross"]));
    o.order_type = OrderType::Limit { price: 999 };
    assert_eq!(summary(&v.place(o)), s(&["accepted #2", "book add #2 1@999"]));
    // A post-only order cannot be replaced into a cross either.
    assert_eq!(summary(&v.replace(2, 2, 1000, 1)), s(&["rejected PostOnlyWouldCross"]));
}

// ----- validation -----

#[test]
fn every_rejection_has_a_reason() {
    let mut v = V::new();
    let cases: Vec<(NewOrder, RejectReason)> = vec![
        (
            {
                let mut o = v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(1), TimeInForce::Gtc);
                o.instrument = 7;
                o
            },
            RejectReason::UnknownInstrument,
        ),
        (
            v.new_order(1, Buy, OrderType::Limit { price: 0 }, OrderSize::Base(1), TimeInForce::Gtc),
            RejectReason::InvalidPrice,
        ),
        (
            v.new_order(1, Buy, OrderType::Limit { price: 1101 }, OrderSize::Base(1), TimeInForce::Gtc),
            RejectReason::PriceOutsideBand,
        ),
        (
            v.new_order(1, Buy, OrderType::Limit { price: 899 }, OrderSize::Base(1), TimeInForce::Gtc),
            RejectReason::PriceOutsideBand,
        ),
        (
            v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(0), TimeInForce::Gtc),
            RejectReason::InvalidQuantity,
        ),
        (
            v.new_order(1, Buy, OrderType::Market, OrderSize::Base(1), TimeInForce::Gtc),
            RejectReason::InvalidTimeInForce,
        ),
        (
            v.new_order(1, Sell, OrderType::Market, OrderSize::QuoteBudget(100), TimeInForce::Ioc),
            RejectReason::InvalidOrderOptions,
        ),
        (
            v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::QuoteBudget(100), TimeInForce::Gtc),
            RejectReason::InvalidOrderOptions,
        ),
        (
            {
                let mut o = v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(5), TimeInForce::Ioc);
                o.post_only = true;
                o
            },
            RejectReason::InvalidOrderOptions,
        ),
        (
            {
                let mut o = v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(5), TimeInForce::Gtc);
                o.display_qty = 5;
                o
            },
            RejectReason::InvalidDisplayQuantity,
        ),
        (
            {
                let mut o = v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(5), TimeInForce::Ioc);
                o.display_qty = 2;
                o
            },
            RejectReason::InvalidDisplayQuantity,
        ),
        (
            {
                let mut o = v.new_order(0, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(5), TimeInForce::Gtc);
                o.account = FEES;
                o
            },
            RejectReason::ReservedAccount,
        ),
        (
            {
                let mut o = v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(5), TimeInForce::Gtc);
                o.client_order_id = ClientOrderId::default();
                o
            },
            RejectReason::InvalidOrderOptions,
        ),
        (
            v.new_order(1, Buy, OrderType::StopLimit { stop: 1100, price: 1300 }, OrderSize::Base(1), TimeInForce::Gtc),
            RejectReason::PriceOutsideBand,
        ),
        (
            v.new_order(1, Buy, OrderType::StopMarket { stop: 1100 }, OrderSize::Base(1), TimeInForce::Ioc),
            RejectReason::InvalidTimeInForce,
        ),
    ];
    for (o, reason) in cases {
        assert_eq!(summary(&v.place(o)), vec![format!("rejected {reason:?}")], "{o:?}");
    }
    let mut tight = spec();
    tight.min_qty = 3;
    tight.min_notional = 40_000;
    let mut v = V::with_spec(tight);
    assert_eq!(summary(&v.limit(1, Buy, 1000, 2)), s(&["rejected BelowMinQuantity"]));
    assert_eq!(summary(&v.limit(1, Buy, 1000, 3)), s(&["rejected BelowMinNotional"])); // 30_000 < 40_000
    assert_eq!(summary(&v.limit(1, Buy, 1000, 4)), s(&["accepted #1", "book add #1 4@1000"]));
}

#[test]
fn client_order_ids_are_unique_among_open_orders_only() {
    let mut v = V::new();
    let o = v.new_order(1, Buy, OrderType::Limit { price: 990 }, OrderSize::Base(1), TimeInForce::Gtc);
    assert_eq!(summary(&v.place(o))[0], "accepted #1");
    assert_eq!(summary(&v.place(o)), s(&["rejected DuplicateClientOrderId"]));
    let mut other = o;
    other.account = 2;
    assert_eq!(summary(&v.place(other))[0], "accepted #2", "another account may use the same id");
    v.cmd(Command::Cancel { account: 1, instrument: I, target: OrderRef::Client(o.client_order_id) });
    assert_eq!(summary(&v.place(o))[0], "accepted #3", "free again once the order is closed");
}

// ----- self-trade prevention -----

fn stp_case(mode: StpMode) -> (Vec<String>, Vec<String>) {
    let mut v = V::new();
    v.limit(2, Sell, 1000, 2); // #1 someone else, first in line
    v.limit(1, Sell, 1000, 3); // #2 own order
    v.limit(2, Sell, 1000, 4); // #3 someone else, behind
    let mut o = v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(5), TimeInForce::Gtc);
    o.stp = Some(mode);
    let ev = v.place(o);
    (summary(&ev), v.book(Sell))
}

#[test]
fn self_trade_prevention_modes() {
    assert_eq!(
        stp_case(StpMode::CancelNewest),
        (
            s(&["accepted #4", "trade 2@1000 maker #1", "filled #1", "cancelled #4 SelfTrade leaves 3"]),
            s(&["#2 1000x3", "#3 1000x4"])
        )
    );
    assert_eq!(
        stp_case(StpMode::CancelOldest),
        (
            s(&[
                "accepted #4",
                "trade 2@1000 maker #1",
                "filled #1",
                "cancelled #2 SelfTrade leaves 3",
                "book remove #2",
                "trade 3@1000 maker #3",
                "filled #4"
            ]),
            s(&["#3 1000x1"])
        )
    );
    assert_eq!(
        stp_case(StpMode::CancelBoth),
        (
            s(&[
                "accepted #4",
                "trade 2@1000 maker #1",
                "filled #1",
                "cancelled #2 SelfTrade leaves 3",
                "book remove #2",
                "cancelled #4 SelfTrade leaves 3"
            ]),
            s(&["#3 1000x4"])
        )
    );
    // Decrement: both lose 3 (the smaller); the resting #2 is used up and cancelled, the taker goes on with 0 left -> cancelled too.
    assert_eq!(
        stp_case(StpMode::DecrementAndCancel),
        (
            s(&[
                "accepted #4",
                "trade 2@1000 maker #1",
                "filled #1",
                "cancelled #2 SelfTrade leaves 3",
                "book remove #2",
                "cancelled #4 SelfTrade leaves 0"
            ]),
            s(&["#3 1000x4"])
        )
    );
    let (events, book) = stp_case(StpMode::None);
    assert!(events.contains(&"trade 3@1000 maker #2".to_string()), "self-trades allowed: {events:?}");
    assert_eq!(book, s(&["#3 1000x4"]));
}

#[test]
fn decrement_reduces_the_larger_resting_order() {
    let mut v = V::new();
    v.limit(1, Sell, 1000, 10); // #1 own
    let mut o = v.new_order(1, Buy, OrderType::Limit { price: 1000 }, OrderSize::Base(4), TimeInForce::Gtc);
    o.stp = Some(StpMode::DecrementAndCancel);
    assert_eq!(summary(&v.place(o)), s(&["accepted #2", "book reduce #1 by 4", "cancelled #2 SelfTrade leaves 0"]));
    assert_eq!(v.book(Sell), s(&["#1 1000x6"]));
    assert_eq!(v.bal(1, BASE), (994_000, 6_000));
}

#[test]
fn account_default_stp_applies_when_the_order_names_none() {
    let mut v = V::new();
    v.cmd(Command::SetAccountStp { account: 1, mode: StpMode::CancelOldest });
    v.limit(1, Sell, 1000, 1); // #1
    assert_eq!(
        summary(&v.limit(1, Buy, 1000, 1)),
        s(&["accepted #2", "cancelled #1 SelfTrade leaves 1", "book remove #1", "book add #2 1@1000"])
    );
}

// ----- cancel-replace -----

#[test]
fn replace_down_keeps_priority_other_changes_lose_it() {
    let mut v = V::new();
    v.limit(1, Buy, 990, 5); // #1
    v.limit(2, Buy, 990, 5); // #2
    assert_eq!(summary(&v.replace(1, 1, 990, 3)), s(&["replaced #1 keeps priority", "book reduce #1 by 2"]));
    assert_eq!(v.book(Buy), s(&["#1 990x3", "#2 990x5"]));
    assert_eq!(summary(&v.replace(1, 1, 990, 4)), s(&["replaced #1", "book remove #1", "book add #1 4@990"]));
    assert_eq!(v.book(Buy), s(&["#2 990x5", "#1 990x4"]));
    v.replace(2, 2, 989, 5);
    assert_eq!(v.book(Buy), s(&["#1 990x4", "#2 989x5"]));
    assert_eq!(v.bal(2, QUOTE).1, 49_548, "hold follows the new price: 989*5*10 + floor(98.9)");
}

#[test]
fn replace_can_cross_and_checks_filled_quantity() {
    let mut v = V::new();
    v.limit(1, Buy, 990, 5); // #1
    v.limit(2, Sell, 990, 2); // partially fills #1
    assert_eq!(summary(&v.replace(1, 1, 990, 2)), s(&["rejected ReplaceQuantityBelowFilled"]));
    v.limit(3, Sell, 995, 1); // #3
    let ev = v.replace(1, 1, 995, 5);
    assert_eq!(
        summary(&ev),
        s(&["replaced #1", "book remove #1", "trade 1@995 maker #3", "filled #3", "book add #1 2@995"])
    );
    assert_eq!(summary(&v.replace(1, 1, 2_000, 5)), s(&["rejected PriceOutsideBand"]));
    assert_eq!(summary(&v.replace(2, 1, 990, 5)), s(&["rejected UnknownOrder"]));
}

// ----- mass cancel, kill switch, halt -----

#[test]
fn mass_cancel_by_account_instrument_and_side() {
    let mut v = V::new();
    v.limit(1, Buy, 990, 1); // #1
    v.limit(1, Sell, 1010, 1); // #2
    v.limit(1, Buy, 991, 1); // #3
    v.limit(2, Buy, 992, 1); // #4
    let ev = v.cmd(Command::MassCancel { account: 1, instrument: Some(I), side: Some(Buy) });
    assert_eq!(
        summary(&ev),
        s(&[
            "cancelled #1 MassCancel leaves 1",
            "book remove #1",
            "cancelled #3 MassCancel leaves 1",
            "book remove #3"
        ])
    );
    let ev = v.cmd(Command::MassCancel { account: 1, instrument: None, side: None });
    assert_eq!(summary(&ev), s(&["cancelled #2 MassCancel leaves 1", "book remove #2"]));
    assert_eq!(v.book(Buy), s(&["#4 992x1"]));
}

#[test]
fn kill_switch_cancels_everything_and_blocks_until_released() {
    let mut v = V::new();
    v.limit(1, Buy, 990, 1); // #1
    let o = v.new_order(1, Buy, OrderType::StopMarket { stop: 1050 }, OrderSize::Base(1), TimeInForce::Gtc);
    v.place(o); // #2
    let ev = v.cmd(Command::KillSwitch { account: 1, engaged: true });
    assert_eq!(
        summary(&ev),
        s(&[
            "KillSwitchChanged { account: 1, engaged: true }",
            "cancelled #1 KillSwitch leaves 1",
            "book remove #1",
            "cancelled #2 KillSwitch leaves 1"
        ])
    );
    assert_eq!(summary(&v.limit(1, Buy, 990, 1)), s(&["rejected AccountKilled"]));
    v.cmd(Command::KillSwitch { account: 1, engaged: false });
    assert_eq!(summary(&v.limit(1, Buy, 990, 1))[0], "accepted #3");
    assert_eq!(v.bal(1, QUOTE).1, 9_919);
}

#[test]
fn halt_refuses_new_orders_but_allows_cancels() {
    let mut v = V::new();
    v.limit(1, Buy, 990, 1);
    v.cmd(Command::SetTradingStatus { instrument: I, status: TradingStatus::Halted });
    assert_eq!(summary(&v.limit(2, Sell, 990, 1)), s(&["rejected InstrumentHalted"]));
    assert_eq!(summary(&v.replace(1, 1, 991, 1)), s(&["rejected InstrumentHalted"]));
    assert_eq!(summary(&v.cancel(1, 1))[0], "cancelled #1 Requested leaves 1");
    v.cmd(Command::SetTradingStatus { instrument: I, status: TradingStatus::Closed });
    assert_eq!(summary(&v.limit(2, Sell, 990, 1)), s(&["rejected InstrumentClosed"]));
    v.cmd(Command::SetTradingStatus { instrument: I, status: TradingStatus::Open });
    assert_eq!(summary(&v.limit(2, Sell, 990, 1))[0], "accepted #2");
}

// ----- instruments and state hash -----

#[test]
fn instruments_are_validated() {
    let mut v = V::new();
    assert_eq!(summary(&v.cmd(Command::AddInstrument(spec()))), s(&["rejected DuplicateInstrument"]));
    let mut bad = spec();
    bad.id = 1;
    bad.scaling.quote_decimals = 2;
    assert_eq!(summary(&v.cmd(Command::AddInstrument(bad))), s(&["rejected InvalidInstrument"]));
    let mut bad = spec();
    bad.id = 1;
    bad.maker_fee_bps = 30;
    assert_eq!(summary(&v.cmd(Command::AddInstrument(bad))), s(&["rejected InvalidInstrument"]));
    let mut bad = spec();
    bad.id = 100;
    assert_eq!(summary(&v.cmd(Command::AddInstrument(bad))), s(&["rejected InvalidInstrument"]));
}

#[test]
fn state_hash_tracks_state() {
    let mut a = V::new();
    let mut b = V::new();
    assert_eq!(a.fast.state_hash(), b.fast.state_hash());
    a.limit(1, Buy, 990, 1);
    assert_ne!(a.fast.state_hash(), b.fast.state_hash());
    b.limit(1, Buy, 990, 1);
    assert_eq!(a.fast.state_hash(), b.fast.state_hash());
    a.limit(1, Buy, 990, 1);
    b.limit(1, Buy, 990, 2);
    assert_ne!(a.fast.state_hash(), b.fast.state_hash());
}
