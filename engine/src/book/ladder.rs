//! The fast book.
//!
//! - Orders live in a fixed arena (`Vec<Node>` allocated once) with a free
//!   list; each price level is an intrusive doubly linked FIFO through the
//!   nodes, so insert at the back and removal anywhere are O(1).
//! - Each side keeps its non-empty levels in a `Vec` sorted so that the best
//!   price is the LAST element: the top of the book, where nearly all
//!   activity happens, is reached without a search, and adding or removing a
//!   level near the top moves only the few entries above it.
//! - An id -> slot hash map (Fx: ids are engine-assigned, not attacker-chosen
//!   keys, so a fast non-DoS-resistant hasher is fine) serves cancels.
//!
//! Nothing allocates after `with_capacity`: the arena, the map and both level
//! vectors are sized for `capacity` orders up front.

use rustc_hash::FxHashMap;

use super::OrderBook;
use crate::order::Order;
use crate::types::{OrderId, Price, Side};

const NIL: u32 = u32::MAX;

struct Node {
    order: Order,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy)]
struct Level {
    price: Price,
    head: u32,
    tail: u32,
}

pub struct LadderBook {
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: FxHashMap<OrderId, u32>,
    /// Ascending price: best bid last.
    bids: Vec<Level>,
    /// Descending price: best ask last.
    asks: Vec<Level>,
    capacity: usize,
}

impl LadderBook {
    fn levels(&self, side: Side) -> &Vec<Level> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn levels_mut(&mut self, side: Side) -> &mut Vec<Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Position of `price` in the side's level vector (Ok: found, Err: insert here).
    fn find(levels: &[Level], side: Side, price: Price) -> Result<usize, usize> {
        // Fast path: the best level (the last) is the most likely target.
        if let Some(last) = levels.last() {
            if last.price == price {
                return Ok(levels.len() - 1);
            }
            if side.better(price, last.price) {
                return Err(levels.len());
            }
        }
        match side {
            Side::Buy => levels.binary_search_by(|l| l.price.cmp(&price)),
            Side::Sell => levels.binary_search_by(|l| price.cmp(&l.price)),
        }
    }
}

impl OrderBook for LadderBook {
    fn with_capacity(capacity: usize) -> Self {
        assert!(capacity < NIL as usize, "book capacity must fit a u32 slot index");
        LadderBook {
            nodes: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            index: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            bids: Vec::with_capacity(capacity),
            asks: Vec::with_capacity(capacity),
            capacity,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn is_full(&self) -> bool {
        self.index.len() >= self.capacity
    }

    fn insert(&mut self, order: Order) {
        assert!(!self.is_full(), "insert into a full book");
        let node = Node { order, prev: NIL, next: NIL };
        let slot = match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = node;
                s
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let previous = self.index.insert(order.id, slot);
        assert!(previous.is_none(), "order id inserted twice");
        let side = order.side;
        let pos = Self::find(self.levels(side), side, order.price);
        match pos {
            Ok(i) => {
                let tail = self.levels(side)[i].tail;
                self.nodes[tail as usize].next = slot;
                self.nodes[slot as usize].prev = tail;
                self.levels_mut(side)[i].tail = slot;
            }
            Err(i) => {
                self.levels_mut(side).insert(i, Level { price: order.price, head: slot, tail: slot });
            }
        }
    }

    fn get(&self, id: OrderId) -> Option<&Order> {
        self.index.get(&id).map(|&s| &self.nodes[s as usize].order)
    }

    fn get_mut(&mut self, id: OrderId) -> Option<&mut Order> {
        match self.index.get(&id) {
            Some(&s) => Some(&mut self.nodes[s as usize].order),
            None => None,
        }
    }

    fn remove(&mut self, id: OrderId) -> Option<Order> {
        let slot = self.index.remove(&id)?;
        let (order, prev, next) = {
            let n = &self.nodes[slot as usize];
            (n.order, n.prev, n.next)
        };
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        if prev == NIL || next == NIL {
            let side = order.side;
            let i = Self::find(self.levels(side), side, order.price).expect("resting order has a level");
            let levels = self.levels_mut(side);
            if prev == NIL && next == NIL {
                levels.remove(i);
            } else if prev == NIL {
                levels[i].head = next;
            } else {
                levels[i].tail = prev;
            }
        }
        self.free.push(slot);
        Some(order)
    }

    fn best(&self, side: Side) -> Option<&Order> {
        self.levels(side).last().map(|l| &self.nodes[l.head as usize].order)
    }

    fn best_price(&self, side: Side) -> Option<Price> {
        self.levels(side).last().map(|l| l.price)
    }

    fn visit(&self, side: Side, f: &mut dyn FnMut(&Order) -> bool) {
        for level in self.levels(side).iter().rev() {
            let mut s = level.head;
            while s != NIL {
                let n = &self.nodes[s as usize];
                if !f(&n.order) {
                    return;
                }
                s = n.next;
            }
        }
    }
}
