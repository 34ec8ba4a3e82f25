//! The state of an open order, as kept on the book or in the stop list.

use crate::command::{StpMode, TimeInForce};
use crate::types::{AccountId, Amount, ClientOrderId, OrderId, Price, Qty, Side};

/// An open order. `Copy` and fixed-size so books can keep them in arenas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Order {
    pub id: OrderId,
    pub account: AccountId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    /// Limit price in ticks. For a market order (or a triggered stop-market)
    /// this is its protection price: it never trades beyond it.
    pub price: Price,
    /// Quantity currently shown on the book.
    pub visible: Qty,
    /// Iceberg reserve not shown yet.
    pub hidden: Qty,
    /// Iceberg slice size (0: not an iceberg).
    pub display: Qty,
    /// Total quantity asked for (base lots; 0 for a quote-budget order).
    pub qty: Qty,
    pub filled: Qty,
    /// Funds still locked for this order (quote units for buys, base units for sells).
    pub hold: Amount,
    /// Quote budget left for a quote-budget market buy (0 otherwise).
    pub budget: Amount,
    pub tif: TimeInForce,
    pub stp: StpMode,
    pub post_only: bool,
    /// Market order (or triggered stop-market): `price` is its protection limit.
    pub is_market: bool,
    /// Time priority stamp: larger is younger. Assigned whenever the order
    /// (re)joins the back of a price level.
    pub priority: u64,
}

impl Order {
    /// Lots still open (shown plus reserve).
    pub const fn leaves(&self) -> Qty {
        self.visible + self.hidden
    }
}

/// A stop order waiting for its trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StopOrder {
    pub stop_price: Price,
    /// True for stop-limit; false for stop-market.
    pub is_limit: bool,
    /// The order it becomes; `price` is the limit, or the protection price of a stop-market.
    pub order: Order,
}
