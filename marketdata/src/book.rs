//! Order-level (L3) book with aggregated depth (L2) and top of book (L1).
//!
//! One structure serves both consumers: the in-process derived data (driven
//! by engine events) and the feed handler (driven by ITCH messages). Both
//! speak the same four operations, so both books are equal by construction
//! when they are fed the same history.
//!
//! Levels are a `BTreeMap` per side (ordered iteration for depth) holding a
//! FIFO of order ids; orders live in a hash map for O(1) lookups by id.
//! Removing from the middle of a level is linear in the level's length, which
//! is short in practice (crypto books are wide, not deep per tick).

use std::collections::{BTreeMap, VecDeque};

use castle_engine::{OrderId, Price, Qty, Seq, Side};
use rustc_hash::FxHashMap;

/// One resting order as the market sees it: only the shown quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookOrder {
    pub id: OrderId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
}

#[derive(Clone, Debug, Default)]
struct Level {
    orders: VecDeque<OrderId>,
    total: Qty,
}

/// Why a book operation could not be applied. A consistent stream never
/// produces these; a feed handler that sees one has lost sync and must
/// recover from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("order {0} is already on the book")]
    DuplicateOrder(OrderId),
    #[error("order {0} is not on the book")]
    UnknownOrder(OrderId),
    #[error("order {0}: quantity {1} is invalid here")]
    BadQuantity(OrderId, Qty),
}

/// Aggregated price level (L2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthLevel {
    pub price: Price,
    pub qty: Qty,
    pub orders: u32,
}

/// Aggregated depth, best first on each side, stamped with the engine seq it reflects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub seq: Seq,
    pub bids: Vec<DepthLevel>,
    pub asks: Vec<DepthLevel>,
}

/// Top of book (L1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopOfBook {
    pub seq: Seq,
    pub bid: Option<(Price, Qty)>,
    pub ask: Option<(Price, Qty)>,
}

#[derive(Clone, Debug, Default)]
pub struct L3Book {
    orders: FxHashMap<OrderId, BookOrder>,
    bids: BTreeMap<Price, Level>,
    asks: BTreeMap<Price, Level>,
    /// Engine sequence number of the last change applied.
    pub seq: Seq,
}

impl L3Book {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    pub fn get(&self, id: OrderId) -> Option<&BookOrder> {
        self.orders.get(&id)
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Price, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Appends at the back of its price level (a new order or an iceberg refresh).
    pub fn add(&mut self, id: OrderId, side: Side, price: Price, qty: Qty) -> Result<(), BookError> {
        if qty <= 0 {
            return Err(BookError::BadQuantity(id, qty));
        }
        if self.orders.contains_key(&id) {
            return Err(BookError::DuplicateOrder(id));
        }
        // 64-bit feed quantities come off the wire: a level total that would
        // overflow is refused like any other inconsistent message.
        let levels = self.side_mut(side);
        let total = levels.get(&price).map_or(0, |l| l.total);
        if total.checked_add(qty).is_none() {
            return Err(BookError::BadQuantity(id, qty));
        }
        let level = levels.entry(price).or_default();
        level.orders.push_back(id);
        level.total += qty;
        self.orders.insert(id, BookOrder { id, side, price, qty });
        Ok(())
    }

    /// Reduces the shown quantity (cancel of part, or execution). At zero the
    /// order leaves the book, like ITCH "executed" of the whole remainder.
    pub fn reduce(&mut self, id: OrderId, by: Qty) -> Result<(), BookError> {
        let o = self.orders.get_mut(&id).ok_or(BookError::UnknownOrder(id))?;
        if by <= 0 || by > o.qty {
            return Err(BookError::BadQuantity(id, by));
        }
        o.qty -= by;
        let (side, price, left) = (o.side, o.price, o.qty);
        if let Some(level) = self.side_mut(side).get_mut(&price) {
            level.total -= by;
        }
        if left == 0 {
            // `remove` takes the remaining (now zero) quantity off the level.
            self.remove(id)?;
        }
        Ok(())
    }

    /// Takes the order off the book.
    pub fn remove(&mut self, id: OrderId) -> Result<BookOrder, BookError> {
        let o = self.orders.remove(&id).ok_or(BookError::UnknownOrder(id))?;
        let levels = self.side_mut(o.side);
        if let Some(level) = levels.get_mut(&o.price) {
            if let Some(pos) = level.orders.iter().position(|&x| x == id) {
                level.orders.remove(pos);
            }
            // `total` tracks the quantities still queued; a removed order
            // takes its remaining shown quantity with it.
            level.total -= o.qty;
            if level.orders.is_empty() {
                levels.remove(&o.price);
            }
        }
        Ok(o)
    }

    /// ITCH Order Replace: the old order leaves, a new one joins the back.
    pub fn replace(&mut self, old: OrderId, new: OrderId, price: Price, qty: Qty) -> Result<(), BookError> {
        let o = *self.orders.get(&old).ok_or(BookError::UnknownOrder(old))?;
        if qty <= 0 {
            return Err(BookError::BadQuantity(new, qty));
        }
        if new != old && self.orders.contains_key(&new) {
            return Err(BookError::DuplicateOrder(new));
        }
        self.remove(old)?;
        self.add(new, o.side, price, qty)
    }

    /// Orders of one side in priority order (best price first, then time).
    pub fn orders(&self, side: Side) -> impl Iterator<Item = &BookOrder> + '_ {
        let levels: Box<dyn Iterator<Item = &Level>> = match side {
            Side::Buy => Box::new(self.bids.values().rev()),
            Side::Sell => Box::new(self.asks.values()),
        };
        levels.flat_map(move |l| l.orders.iter().filter_map(move |id| self.orders.get(id)))
    }

    /// Aggregated levels, best first, at most `max` per side.
    pub fn depth(&self, max: usize) -> Depth {
        let agg = |(p, l): (&Price, &Level)| DepthLevel { price: *p, qty: l.total, orders: l.orders.len() as u32 };
        Depth {
            seq: self.seq,
            bids: self.bids.iter().rev().take(max).map(agg).collect(),
            asks: self.asks.iter().take(max).map(agg).collect(),
        }
    }

    pub fn top(&self) -> TopOfBook {
        TopOfBook {
            seq: self.seq,
            bid: self.bids.iter().next_back().map(|(p, l)| (*p, l.total)),
            ask: self.asks.iter().next().map(|(p, l)| (*p, l.total)),
        }
    }

    /// One aggregated level (None when nothing rests at `price` on `side`):
    /// what a depth-diff stream publishes for each price a batch touched.
    pub fn level(&self, side: Side, price: Price) -> Option<DepthLevel> {
        let levels = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        levels.get(&price).map(|l| DepthLevel { price, qty: l.total, orders: l.orders.len() as u32 })
    }

    /// Drops every order (a snapshot is about to be loaded).
    pub fn clear(&mut self) {
        self.orders.clear();
        self.bids.clear();
        self.asks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_depth_and_top() {
        let mut b = L3Book::new();
        b.add(1, Side::Buy, 100, 5).unwrap();
        b.add(2, Side::Buy, 101, 3).unwrap();
        b.add(3, Side::Buy, 100, 2).unwrap();
        b.add(4, Side::Sell, 103, 7).unwrap();
        let ids: Vec<_> = b.orders(Side::Buy).map(|o| o.id).collect();
        assert_eq!(ids, vec![2, 1, 3]);
        assert_eq!(b.top().bid, Some((101, 3)));
        assert_eq!(b.depth(10).bids[1], DepthLevel { price: 100, qty: 7, orders: 2 });
        b.reduce(1, 5).unwrap();
        assert!(b.get(1).is_none());
        assert_eq!(b.depth(10).bids[1], DepthLevel { price: 100, qty: 2, orders: 1 });
        assert_eq!(b.add(3, Side::Buy, 1, 1), Err(BookError::DuplicateOrder(3)));
        assert_eq!(b.reduce(3, 3), Err(BookError::BadQuantity(3, 3)));
        b.replace(3, 9, 104, 1).unwrap();
        assert_eq!(b.top().bid, Some((104, 1)));
        assert_eq!(b.depth(10).bids.len(), 2);
        b.add(20, Side::Sell, 200, i64::MAX - 1).unwrap();
        assert_eq!(b.add(21, Side::Sell, 200, 2), Err(BookError::BadQuantity(21, 2)), "level total would overflow");
        assert!(b.get(21).is_none());
    }
}
