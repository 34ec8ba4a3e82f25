//! Events: the only output of the engine. Plain `Copy` structs written into a
//! caller-owned buffer, so producing them never allocates once the buffer has
//! reached its high-water mark.

use crate::command::TimeInForce;
use crate::types::{
    AccountId, Amount, AssetId, ClientOrderId, InstrumentId, OrderId, Price, Qty, Seq, Side, Timestamp,
};

/// Why a command was refused. Stable codes: the gateways map them to their
/// protocols' reject reasons, so never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RejectReason {
    UnknownInstrument = 1,
    UnknownAccount = 2,
    UnknownOrder = 3,
    InstrumentHalted = 4,
    InstrumentClosed = 5,
    InvalidPrice = 6,
    InvalidQuantity = 7,
    BelowMinQuantity = 8,
    BelowMinNotional = 9,
    PriceOutsideBand = 10,
    InsufficientBalance = 11,
    PostOnlyWouldCross = 12,
    DuplicateClientOrderId = 13,
    AccountKilled = 14,
    InvalidTimeInForce = 15,
    InvalidDisplayQuantity = 16,
    ExpireTimeInPast = 17,
    StopWouldTriggerImmediately = 18,
    BookFull = 19,
    TooManyStopOrders = 20,
    InvalidOrderOptions = 21,
    ReplaceQuantityBelowFilled = 22,
    NotReplaceable = 23,
    InvalidAmount = 24,
    BalanceOverflow = 25,
    InvalidInstrument = 26,
    DuplicateInstrument = 27,
    ReservedAccount = 28,
    TooManyAccounts = 29,
    UnknownAsset = 30,
    TooManyTimedOrders = 31,
}

/// Why an order left the book without filling completely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CancelReason {
    /// The owner asked (cancel request).
    Requested = 1,
    MassCancel = 2,
    KillSwitch = 3,
    /// IOC or market remainder that could not fill at once.
    Unfilled = 4,
    /// FOK that could not fill completely.
    FillOrKill = 5,
    /// Self-trade prevention.
    SelfTrade = 6,
    /// GTD time reached.
    Expired = 7,
    /// DAY order at end of day.
    EndOfDay = 8,
    /// A market order or quote budget ran out of price band or money.
    ProtectionLimit = 9,
    /// A triggered stop-limit could not rest: the book is at capacity.
    BookFull = 10,
}

/// What kind of order an acceptance was for, in brief.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderKind {
    Limit,
    Market,
    StopMarket,
    StopLimit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new order passed every check. `price` is the limit (0 for market),
    /// `qty` the base quantity (0 for a quote-budget order). `post_only`,
    /// `display_qty` (iceberg: the quantity shown, 0 shows all) and `stp`
    /// (None: the account's mode applies) are the command's options as
    /// placed, so a consumer of the stream alone knows them.
    OrderAccepted {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        client_order_id: ClientOrderId,
        side: Side,
        kind: OrderKind,
        price: Price,
        stop_price: Price,
        qty: Qty,
        tif: TimeInForce,
        post_only: bool,
        display_qty: Qty,
        stp: Option<crate::command::StpMode>,
    },
    /// A command was refused. `order_id` is 0 for new orders.
    Rejected {
        account: AccountId,
        instrument: InstrumentId,
        client_order_id: ClientOrderId,
        order_id: OrderId,
        reason: RejectReason,
    },
    /// A fill, at the maker's price. Fees are in quote minor units.
    Trade {
        trade_id: u64,
        instrument: InstrumentId,
        price: Price,
        qty: Qty,
        aggressor: Side,
        maker_order: OrderId,
        taker_order: OrderId,
        maker_account: AccountId,
        taker_account: AccountId,
        maker_fee: Amount,
        taker_fee: Amount,
        /// Quantities still open after this fill.
        maker_leaves: Qty,
        taker_leaves: Qty,
    },
    OrderCancelled {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        leaves: Qty,
        reason: CancelReason,
    },
    /// Cancel-replace applied. `priority_kept` is true for a same-price quantity reduction.
    OrderReplaced {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        client_order_id: ClientOrderId,
        price: Price,
        qty: Qty,
        leaves: Qty,
        priority_kept: bool,
    },
    /// A stop order's trigger price was reached; it now trades as a market or limit order.
    OrderTriggered {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
    },
    /// An order was fully filled.
    OrderFilled {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
    },
    /// Order-level book changes, enough for an ITCH-style feed. A Trade
    /// reduces the maker's shown quantity (ITCH "executed"); at zero the
    /// order is off the book unless a BookAdd (iceberg refresh) follows.
    BookAdd {
        instrument: InstrumentId,
        order_id: OrderId,
        side: Side,
        price: Price,
        qty: Qty,
    },
    /// Shown quantity reduced without a trade (replace down, self-trade decrement).
    BookReduce {
        instrument: InstrumentId,
        order_id: OrderId,
        by: Qty,
    },
    BookRemove {
        instrument: InstrumentId,
        order_id: OrderId,
    },
    BalanceChanged {
        account: AccountId,
        asset: AssetId,
        available: Amount,
        locked: Amount,
    },
    /// A deposit (positive) or withdrawal (negative).
    Transfer {
        account: AccountId,
        asset: AssetId,
        amount: Amount,
    },
    InstrumentAdded {
        instrument: InstrumentId,
    },
    TradingStatusChanged {
        instrument: InstrumentId,
        status: crate::instrument::TradingStatus,
    },
    KillSwitchChanged {
        account: AccountId,
        engaged: bool,
    },
    AccountStpChanged {
        account: AccountId,
        mode: crate::command::StpMode,
    },
}

/// One event, stamped with the sequence number and time of the command that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: Seq,
    pub ts: Timestamp,
    pub kind: EventKind,
}
