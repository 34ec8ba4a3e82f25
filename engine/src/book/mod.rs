//! Order books: resting orders of one instrument in price-time priority.
//!
//! [`OrderBook`] is the interface the matching logic uses. Two implementations:
//! - [`LadderBook`]: the fast one (sorted level index, arena of orders with
//!   intrusive FIFO links, id -> slot hash map);
//! - [`ReferenceBook`]: a plain sorted `Vec`, obviously correct and slow, the
//!   oracle for property tests and the baseline for benchmarks.
//!
//! Both must present exactly the same order sequence for every operation.

mod ladder;
mod reference;

pub use ladder::LadderBook;
pub use reference::ReferenceBook;

use crate::order::Order;
use crate::types::{OrderId, Price, Side};

pub trait OrderBook {
    /// An empty book that can hold `capacity` orders without allocating again.
    fn with_capacity(capacity: usize) -> Self
    where
        Self: Sized;
    fn len(&self) -> usize;
    /// Make room in the lookup structures for `orders` orders in all, so
    /// that inserting up to that many does not grow them (no-op where
    /// everything is sized up front).
    fn reserve(&mut self, _orders: usize) {}
    /// Write the memory the book uses for its first `orders` orders (arena
    /// slots, free list, id index) once, so that inserting them does not
    /// page-fault on the thread applying commands. Contents unchanged.
    /// No-op where nothing is allocated ahead.
    fn fault_in(&mut self, _orders: usize) {}
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn is_full(&self) -> bool;
    /// Appends at the back of its price level. The caller checks `is_full`
    /// and that the id is new.
    fn insert(&mut self, order: Order);
    fn get(&self, id: OrderId) -> Option<&Order>;
    /// Changes quantities or bookkeeping of a resting order in place (time
    /// priority kept). Price, side and id must not change.
    fn get_mut(&mut self, id: OrderId) -> Option<&mut Order>;
    fn remove(&mut self, id: OrderId) -> Option<Order>;
    /// The order first in priority on `side` (head of its best level).
    fn best(&self, side: Side) -> Option<&Order>;
    fn best_price(&self, side: Side) -> Option<Price> {
        self.best(side).map(|o| o.price)
    }
    /// Visits orders of `side` in priority order until `f` returns false.
    fn visit(&self, side: Side, f: &mut dyn FnMut(&Order) -> bool);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{StpMode, TimeInForce};
    use crate::types::ClientOrderId;

    /// A plain GTC limit order for book tests.
    pub(crate) fn order(id: OrderId, side: Side, price: Price, qty: i64) -> Order {
        Order {
            id,
            account: 1,
            client_order_id: ClientOrderId::from_u64(id),
            side,
            price,
            visible: qty,
            hidden: 0,
            display: 0,
            qty,
            filled: 0,
            hold: 0,
            budget: 0,
            tif: TimeInForce::Gtc,
            stp: StpMode::CancelNewest,
            post_only: false,
            is_market: false,
            priority: id,
        }
    }

    /// Order ids of one side in priority order.
    pub(crate) fn ids<B: OrderBook>(b: &B, side: Side) -> Vec<OrderId> {
        let mut v = Vec::new();
        b.visit(side, &mut |o| {
            v.push(o.id);
            true
        });
        v
    }

    fn priority_is_price_then_time<B: OrderBook>() {
        let mut b = B::with_capacity(16);
        b.insert(order(1, Side::Buy, 100, 1));
        b.insert(order(2, Side::Buy, 101, 1));
        b.insert(order(3, Side::Buy, 100, 1));
        b.insert(order(4, Side::Sell, 105, 1));
        b.insert(order(5, Side::Sell, 103, 1));
        b.insert(order(6, Side::Sell, 103, 1));
        assert_eq!(ids(&b, Side::Buy), vec![2, 1, 3]);
        assert_eq!(ids(&b, Side::Sell), vec![5, 6, 4]);
        assert_eq!(b.best(Side::Buy).map(|o| o.id), Some(2));
        assert_eq!(b.best_price(Side::Sell), Some(103));
        assert_eq!(b.remove(5).map(|o| o.id), Some(5));
        assert_eq!(b.remove(5), None);
        assert_eq!(ids(&b, Side::Sell), vec![6, 4]);
        b.remove(6);
        assert_eq!(b.best_price(Side::Sell), Some(105));
        b.get_mut(1).unwrap().visible = 7;
        assert_eq!(b.get(1).unwrap().visible, 7);
        assert_eq!(b.len(), 4);
        b.remove(2);
        b.remove(1);
        b.remove(3);
        b.remove(4);
        assert!(b.is_empty());
        assert_eq!(b.best(Side::Buy), None);
        assert_eq!(b.best(Side::Sell), None);
    }

    fn capacity_is_reported<B: OrderBook>() {
        let mut b = B::with_capacity(2);
        b.insert(order(1, Side::Buy, 100, 1));
        assert!(!b.is_full());
        b.insert(order(2, Side::Sell, 100, 1));
        assert!(b.is_full());
        b.remove(1);
        assert!(!b.is_full());
        b.insert(order(3, Side::Buy, 99, 1));
        assert_eq!(ids(&b, Side::Buy), vec![3]);
    }

    #[test]
    fn ladder_priority() {
        priority_is_price_then_time::<LadderBook>();
        capacity_is_reported::<LadderBook>();
    }

    #[test]
    fn reference_priority() {
        priority_is_price_then_time::<ReferenceBook>();
        capacity_is_reported::<ReferenceBook>();
    }
}
