//! Commands: the only input of the engine. Each is journaled before it is
//! applied, so every field that influences the outcome is in here, including
//! the time (the engine never reads a clock).

use crate::instrument::{InstrumentSpec, TradingStatus};
use crate::types::{AccountId, Amount, AssetId, ClientOrderId, InstrumentId, OrderId, Price, Qty, Side, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel: whatever does not fill at once is cancelled.
    Ioc,
    /// Fill or kill: fills completely at once or not at all.
    Fok,
    /// Good till date: expires at the given time (ns since epoch).
    Gtd(Timestamp),
    /// Expires at the end of the trading day (the `EndOfDay` command).
    Day,
}

/// Self-trade prevention: what happens when an order would trade against a
/// resting order of the same account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum StpMode {
    /// Self-trades are allowed.
    None,
    /// Cancel the incoming order's remainder (the default).
    CancelNewest,
    /// Cancel the resting order and keep matching.
    CancelOldest,
    /// Cancel both.
    CancelBoth,
    /// Reduce both by the smaller quantity; the smaller (or both, if equal) is cancelled.
    DecrementAndCancel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum OrderType {
    Limit {
        price: Price,
    },
    Market,
    /// Becomes a market order when the last trade price reaches `stop`.
    StopMarket {
        stop: Price,
    },
    /// Becomes a limit order at `price` when the last trade price reaches `stop`.
    StopLimit {
        stop: Price,
        price: Price,
    },
}

/// How much an order is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum OrderSize {
    /// A base quantity in lots (every order type).
    Base(Qty),
    /// A quote budget in quote minor units, fees included (market and
    /// stop-market buys only): buy as much as the budget allows.
    QuoteBudget(Amount),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub struct NewOrder {
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub order_type: OrderType,
    pub size: OrderSize,
    pub tif: TimeInForce,
    /// Rejected instead of taking liquidity (the venue rejects; it never slides).
    pub post_only: bool,
    /// Iceberg: lots shown on the book at a time; 0 shows everything.
    pub display_qty: Qty,
    /// Self-trade prevention; `None` takes the account default.
    pub stp: Option<StpMode>,
}

/// Identifies one of an account's orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum OrderRef {
    Id(OrderId),
    Client(ClientOrderId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub struct Replace {
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub target: OrderRef,
    /// New client order id; the old one stays when `None`.
    pub new_client_order_id: Option<ClientOrderId>,
    pub price: Price,
    /// New total quantity (filled quantity included, as in FIX OrderQty).
    pub qty: Qty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum Command {
    /// Admin: list an instrument. Its id must be free and below the limit.
    AddInstrument(#[arbitrary(with = arbitrary_spec)] InstrumentSpec),
    /// Admin: open, halt or close trading.
    SetTradingStatus {
        instrument: InstrumentId,
        status: TradingStatus,
    },
    Deposit {
        account: AccountId,
        asset: AssetId,
        amount: Amount,
    },
    /// Only from the available balance.
    Withdraw {
        account: AccountId,
        asset: AssetId,
        amount: Amount,
    },
    /// The self-trade prevention mode used when an order names none.
    SetAccountStp {
        account: AccountId,
        mode: StpMode,
    },
    PlaceOrder(NewOrder),
    Cancel {
        account: AccountId,
        instrument: InstrumentId,
        target: OrderRef,
    },
    Replace(Replace),
    /// Cancel every open order of the account, optionally only on one
    /// instrument and one side.
    MassCancel {
        account: AccountId,
        instrument: Option<InstrumentId>,
        side: Option<Side>,
    },
    /// Engaged: cancel all of the account's orders and refuse new ones until released.
    KillSwitch {
        account: AccountId,
        engaged: bool,
    },
    /// Expire every DAY order (of one instrument, or all).
    EndOfDay {
        instrument: Option<InstrumentId>,
    },
    /// Time passes: only expires GTD orders. Sent by the sequencer when idle.
    Tick,
}

fn arbitrary_spec(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<InstrumentSpec> {
    use crate::instrument::Scaling;
    use crate::types::Symbol;
    use rust_decimal::Decimal;
    Ok(InstrumentSpec {
        id: u.int_in_range(0..=4)?,
        symbol: Symbol::new("FUZZ").unwrap_or_default(),
        base: u.int_in_range(0..=4)?,
        quote: u.int_in_range(0..=4)?,
        scaling: Scaling {
            tick_size: Decimal::new(u.int_in_range(1..=100)?, u.int_in_range(0..=8)?),
            lot_size: Decimal::new(u.int_in_range(1..=100)?, u.int_in_range(0..=8)?),
            base_decimals: u.int_in_range(0..=12)?,
            quote_decimals: u.int_in_range(0..=12)?,
        },
        min_qty: u.int_in_range(0..=10)?,
        min_notional: u.int_in_range(0..=1000)?,
        band_bps: u.int_in_range(0..=20_000)?,
        reference_price: u.int_in_range(-5..=1_000_000)?,
        maker_fee_bps: u.int_in_range(0..=200)?,
        taker_fee_bps: u.int_in_range(0..=200)?,
    })
}
