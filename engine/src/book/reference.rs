//! The reference book: one `Vec` per side sorted by (price, time priority).
//! Every operation is a linear scan. Slow on purpose: it is the oracle.

use super::OrderBook;
use crate::order::Order;
use crate::types::{OrderId, Side};

pub struct ReferenceBook {
    bids: Vec<Order>,
    asks: Vec<Order>,
    capacity: usize,
}

impl ReferenceBook {
    fn side(&self, side: Side) -> &Vec<Order> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }
}

impl OrderBook for ReferenceBook {
    fn with_capacity(capacity: usize) -> Self {
        ReferenceBook { bids: Vec::with_capacity(capacity), asks: Vec::with_capacity(capacity), capacity }
    }

    fn len(&self) -> usize {
        self.bids.len() + self.asks.len()
    }

    fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    fn insert(&mut self, order: Order) {
        let side = order.side;
        let v = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        // First position holding an order that the new one does not precede.
        let pos = v
            .iter()
            .position(|o| side.better(order.price, o.price) || (o.price == order.price && o.priority > order.priority))
            .unwrap_or(v.len());
        v.insert(pos, order);
    }

    fn get(&self, id: OrderId) -> Option<&Order> {
        self.bids.iter().chain(self.asks.iter()).find(|o| o.id == id)
    }

    fn get_mut(&mut self, id: OrderId) -> Option<&mut Order> {
        self.bids.iter_mut().chain(self.asks.iter_mut()).find(|o| o.id == id)
    }

    fn remove(&mut self, id: OrderId) -> Option<Order> {
        for v in [&mut self.bids, &mut self.asks] {
            if let Some(i) = v.iter().position(|o| o.id == id) {
                return Some(v.remove(i));
            }
        }
        None
    }

    fn best(&self, side: Side) -> Option<&Order> {
        self.side(side).first()
    }

    fn visit(&self, side: Side, f: &mut dyn FnMut(&Order) -> bool) {
        for o in self.side(side) {
            if !f(o) {
                return;
            }
        }
    }
}
