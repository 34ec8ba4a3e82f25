//! The fast book.
//!
//! - Orders live in a fixed arena (`Vec<Node>` allocated once) with a free
//!   list; each price level is an intrusive doubly linked FIFO through the
//!   nodes, so insert at the back and removal anywhere are O(1).
//! - Levels near the action sit in a **price window** per side: an array
//!   indexed by `price - base` (no search, no shifting) with a two-level
//!   bitmap of non-empty levels, so the best price is a couple of
//!   leading/trailing-zero counts away. The window is placed around the first
//!   price that arrives while it is empty.
//! - Levels outside the window (far from the top, or after the market moved
//!   away) go to a `Vec` sorted so the best is last; it is only searched for
//!   those far prices.
//! - An id -> slot hash map (Fx: ids are engine-assigned, not attacker-chosen
//!   keys, so a fast non-DoS-resistant hasher is fine) serves cancels.
//!
//! The arena, the windows and the far vectors are sized up front; the id
//! index starts at [`crate::INDEX_START_CAPACITY`] and grows by doubling up
//! to the book's capacity (see that constant for why).

use rustc_hash::FxHashMap;

use super::OrderBook;
use crate::order::Order;
use crate::types::{OrderId, Price, Side};

const NIL: u32 = u32::MAX;
/// Ticks covered by each side's window.
const WINDOW: usize = 1 << 14;
const WORDS: usize = WINDOW / 64;
const SUMMARY: usize = WORDS.div_ceil(64);

#[derive(Clone, Copy)]
struct Node {
    order: Order,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy)]
struct Level {
    head: u32,
    tail: u32,
}

const EMPTY: Level = Level { head: NIL, tail: NIL };

#[derive(Clone, Copy)]
struct FarLevel {
    price: Price,
    head: u32,
    tail: u32,
}

/// Where a price level lives.
#[derive(Clone, Copy)]
enum At {
    Window(usize),
    Far(usize),
}

struct Ladder {
    side: Side,
    /// Price of window slot 0.
    base: Price,
    window: Box<[Level]>,
    bits: Box<[u64]>,
    summary: [u64; SUMMARY],
    window_levels: usize,
    /// Levels outside the window, sorted so the best is last.
    far: Vec<FarLevel>,
}

impl Ladder {
    fn new(side: Side, capacity: usize) -> Self {
        Ladder {
            side,
            base: 0,
            window: vec![EMPTY; WINDOW].into_boxed_slice(),
            bits: vec![0u64; WORDS].into_boxed_slice(),
            summary: [0; SUMMARY],
            window_levels: 0,
            far: Vec::with_capacity(capacity),
        }
    }

    fn in_window(&self, price: Price) -> Option<usize> {
        let off = price.wrapping_sub(self.base);
        (0..WINDOW as i64).contains(&off).then_some(off as usize)
    }

    fn set_bit(&mut self, i: usize) {
        let w = i / 64;
        self.bits[w] |= 1 << (i % 64);
        self.summary[w / 64] |= 1 << (w % 64);
    }

    fn clear_bit(&mut self, i: usize) {
        let w = i / 64;
        self.bits[w] &= !(1 << (i % 64));
        if self.bits[w] == 0 {
            self.summary[w / 64] &= !(1 << (w % 64));
        }
    }

    fn highest(&self) -> Option<usize> {
        let s = (0..SUMMARY).rev().find(|&s| self.summary[s] != 0)?;
        let w = s * 64 + 63 - self.summary[s].leading_zeros() as usize;
        Some(w * 64 + 63 - self.bits[w].leading_zeros() as usize)
    }

    fn lowest(&self) -> Option<usize> {
        let s = (0..SUMMARY).find(|&s| self.summary[s] != 0)?;
        let w = s * 64 + self.summary[s].trailing_zeros() as usize;
        Some(w * 64 + self.bits[w].trailing_zeros() as usize)
    }

    /// Best slot in the window.
    fn window_best(&self) -> Option<usize> {
        if self.window_levels == 0 {
            return None;
        }
        match self.side {
            Side::Buy => self.highest(),
            Side::Sell => self.lowest(),
        }
    }

    /// Next non-empty slot after `i` in priority order.
    fn window_next(&self, i: usize) -> Option<usize> {
        match self.side {
            Side::Buy => {
                let mut w = i / 64;
                let mut word = self.bits[w] & ((1u64 << (i % 64)) - 1);
                loop {
                    if word != 0 {
                        return Some(w * 64 + 63 - word.leading_zeros() as usize);
                    }
                    if w == 0 {
                        return None;
                    }
                    w -= 1;
                    word = self.bits[w];
                }
            }
            Side::Sell => {
                let mut w = i / 64;
                let mut word = if i % 64 == 63 { 0 } else { self.bits[w] & !((2u64 << (i % 64)) - 1) };
                loop {
                    if word != 0 {
                        return Some(w * 64 + word.trailing_zeros() as usize);
                    }
                    w += 1;
                    if w == WORDS {
                        return None;
                    }
                    word = self.bits[w];
                }
            }
        }
    }

    fn far_find(&self, price: Price) -> Result<usize, usize> {
        match self.side {
            Side::Buy => self.far.binary_search_by(|l| l.price.cmp(&price)),
            Side::Sell => self.far.binary_search_by(|l| price.cmp(&l.price)),
        }
    }

    fn find(&self, price: Price) -> Option<At> {
        match self.in_window(price) {
            Some(i) => (self.window[i].head != NIL).then_some(At::Window(i)),
            None => self.far_find(price).ok().map(At::Far),
        }
    }

    fn ends(&self, at: At) -> (u32, u32) {
        match at {
            At::Window(i) => (self.window[i].head, self.window[i].tail),
            At::Far(i) => (self.far[i].head, self.far[i].tail),
        }
    }

    fn set_ends(&mut self, at: At, head: u32, tail: u32) {
        match at {
            At::Window(i) => self.window[i] = Level { head, tail },
            At::Far(i) => {
                self.far[i].head = head;
                self.far[i].tail = tail;
            }
        }
    }

    /// Moves the empty window so `price` is in its middle, pulling in far
    /// levels that now fall inside it.
    fn recenter(&mut self, price: Price) {
        debug_assert_eq!(self.window_levels, 0);
        self.base = price.saturating_sub(WINDOW as i64 / 2);
        let mut far = std::mem::take(&mut self.far);
        far.retain(|l| match self.in_window(l.price) {
            Some(i) => {
                self.window[i] = Level { head: l.head, tail: l.tail };
                self.set_bit(i);
                self.window_levels += 1;
                false
            }
            None => true,
        });
        self.far = far;
    }

    /// The level for `price`, created empty if missing.
    fn level_for_insert(&mut self, price: Price) -> At {
        if self.window_levels == 0 && self.in_window(price).is_none() {
            self.recenter(price);
        }
        match self.in_window(price) {
            Some(i) => {
                if self.window[i].head == NIL {
                    self.set_bit(i);
                    self.window_levels += 1;
                }
                At::Window(i)
            }
            None => match self.far_find(price) {
                Ok(i) => At::Far(i),
                Err(i) => {
                    self.far.insert(i, FarLevel { price, head: NIL, tail: NIL });
                    At::Far(i)
                }
            },
        }
    }

    fn drop_level(&mut self, at: At) {
        match at {
            At::Window(i) => {
                self.window[i] = EMPTY;
                self.clear_bit(i);
                self.window_levels -= 1;
            }
            At::Far(i) => {
                self.far.remove(i);
            }
        }
    }

    /// Price and head of the best level.
    fn best(&self) -> Option<(Price, u32)> {
        let w = self.window_best().map(|i| (self.base + i as i64, self.window[i].head));
        let f = self.far.last().map(|l| (l.price, l.head));
        match (w, f) {
            (Some(w), Some(f)) => Some(if self.side.better(f.0, w.0) { f } else { w }),
            (w, f) => w.or(f),
        }
    }

    /// Heads of all levels in priority order, until `f` returns false.
    fn for_each_level(&self, f: &mut dyn FnMut(u32) -> bool) {
        // Far levels better than the whole window come first, then the
        // window, then the remaining (worse) far levels; `far` is best-last.
        let mut k = self.far.len();
        let window_edge = match self.side {
            Side::Buy => self.base + WINDOW as i64 - 1,
            Side::Sell => self.base,
        };
        let window_used = self.window_levels > 0;
        while k > 0 && (!window_used || self.side.better(self.far[k - 1].price, window_edge)) {
            k -= 1;
            if !f(self.far[k].head) {
                return;
            }
        }
        let mut slot = self.window_best();
        while let Some(i) = slot {
            if !f(self.window[i].head) {
                return;
            }
            slot = self.window_next(i);
        }
        while k > 0 {
            k -= 1;
            if !f(self.far[k].head) {
                return;
            }
        }
    }
}

pub struct LadderBook {
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: FxHashMap<OrderId, u32>,
    bids: Ladder,
    asks: Ladder,
    capacity: usize,
}

impl LadderBook {
    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

/// Written into arena slots by [`LadderBook::fault_in`] (and cut again).
const FILLER: Order = Order {
    id: 0,
    account: 0,
    client_order_id: crate::types::ClientOrderId([0; crate::types::ClientOrderId::LEN]),
    side: Side::Buy,
    price: 0,
    visible: 0,
    hidden: 0,
    display: 0,
    qty: 0,
    filled: 0,
    hold: 0,
    budget: 0,
    tif: crate::command::TimeInForce::Gtc,
    stp: crate::command::StpMode::CancelNewest,
    post_only: false,
    is_market: false,
    priority: 0,
};

/// Write the spare capacity of `v` for `upto` elements in all (elements
/// already there count), then cut `v` back to its length.
fn touch_spare<T: Copy>(v: &mut Vec<T>, upto: usize, filler: T) {
    let len = v.len();
    let to = upto.min(v.capacity()).max(len);
    v.resize(to, filler);
    v.truncate(len);
}

impl OrderBook for LadderBook {
    fn with_capacity(capacity: usize) -> Self {
        assert!(capacity < NIL as usize, "book capacity must fit a u32 slot index");
        LadderBook {
            nodes: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            index: FxHashMap::with_capacity_and_hasher(capacity.min(crate::INDEX_START_CAPACITY), Default::default()),
            bids: Ladder::new(Side::Buy, capacity),
            asks: Ladder::new(Side::Sell, capacity),
            capacity,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn reserve(&mut self, orders: usize) {
        let want = orders.min(self.capacity);
        self.index.reserve(want.saturating_sub(self.index.len()));
    }

    fn fault_in(&mut self, orders: usize) {
        let n = orders.min(self.capacity);
        // The arena and the free list are allocated at capacity: write the
        // slots the first `n` orders use (appended and cut again, within
        // capacity: no reallocation, slots in use untouched).
        let filler = Node { order: FILLER, prev: NIL, next: NIL };
        touch_spare(&mut self.nodes, n, filler);
        touch_spare(&mut self.free, n, NIL);
        // Order ids count up from 1: ids from the top cannot clash (and
        // entries already there are set aside anyway).
        crate::fault_in_map(&mut self.index, |i| OrderId::MAX - i, &NIL);
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
        let ladder = self.ladder_mut(order.side);
        let at = ladder.level_for_insert(order.price);
        let (head, tail) = ladder.ends(at);
        if tail == NIL {
            ladder.set_ends(at, slot, slot);
        } else {
            ladder.set_ends(at, head, slot);
            self.nodes[tail as usize].next = slot;
            self.nodes[slot as usize].prev = tail;
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
            let ladder = self.ladder_mut(order.side);
            let at = ladder.find(order.price).expect("resting order has a level");
            let (head, tail) = ladder.ends(at);
            match (prev == NIL, next == NIL) {
                (true, true) => ladder.drop_level(at),
                (true, false) => ladder.set_ends(at, next, tail),
                (false, _) => ladder.set_ends(at, head, prev),
            }
        }
        self.free.push(slot);
        Some(order)
    }

    fn best(&self, side: Side) -> Option<&Order> {
        self.ladder(side).best().map(|(_, head)| &self.nodes[head as usize].order)
    }

    fn best_price(&self, side: Side) -> Option<Price> {
        self.ladder(side).best().map(|(p, _)| p)
    }

    fn visit(&self, side: Side, f: &mut dyn FnMut(&Order) -> bool) {
        self.ladder(side).for_each_level(&mut |head| {
            let mut s = head;
            while s != NIL {
                let n = &self.nodes[s as usize];
                if !f(&n.order) {
                    return false;
                }
                s = n.next;
            }
            true
        });
    }
}

#[cfg(test)]
impl LadderBook {
    /// Entries the id index holds before it grows (tests of the engine's reserve).
    pub(crate) fn index_capacity(&self) -> usize {
        self.index.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::tests::{ids, order};
    use crate::book::ReferenceBook;
    use crate::workload::Rng;

    /// Prices spread far wider than the window, drifting, so orders move
    /// between window and far levels and the window recentres: the ladder
    /// must always agree with the reference book.
    #[test]
    fn window_and_far_levels_agree_with_the_reference() {
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let mut fast = LadderBook::with_capacity(2_000);
            let mut reference = ReferenceBook::with_capacity(2_000);
            let mut live: Vec<OrderId> = Vec::new();
            let mut mid: Price = 1_000_000;
            for id in 1..20_000u64 {
                mid += rng.range(-400, 400);
                if !live.is_empty() && (rng.chance(45) || fast.is_full()) {
                    let i = rng.below(live.len() as u64) as usize;
                    let gone = live.swap_remove(i);
                    assert_eq!(fast.remove(gone), reference.remove(gone));
                } else {
                    let side = if rng.chance(50) { Side::Buy } else { Side::Sell };
                    let spread = if rng.chance(10) { 60_000 } else { 3_000 };
                    let p = (mid + rng.range(-spread, spread)).max(1);
                    fast.insert(order(id, side, p, 1));
                    reference.insert(order(id, side, p, 1));
                    live.push(id);
                }
                for side in [Side::Buy, Side::Sell] {
                    assert_eq!(fast.best_price(side), reference.best_price(side), "seed {seed} id {id}");
                    assert_eq!(fast.best(side).map(|o| o.id), reference.best(side).map(|o| o.id));
                }
                if id % 997 == 0 {
                    assert_eq!(ids(&fast, Side::Buy), ids(&reference, Side::Buy));
                    assert_eq!(ids(&fast, Side::Sell), ids(&reference, Side::Sell));
                }
            }
        }
    }

    /// After `reserve`, the id index holds that many orders without growing
    /// (no rehash stall), capped at the book's capacity.
    #[test]
    fn reserve_sizes_the_id_index() {
        let mut book = LadderBook::with_capacity(100_000);
        book.reserve(50_000);
        let cap = book.index.capacity();
        assert!(cap >= 50_000, "capacity {cap}");
        for id in 1..=50_000u64 {
            book.insert(order(id, Side::Buy, 1_000 + (id % 7) as Price, 1));
        }
        assert_eq!(book.index.capacity(), cap, "the index grew");
        let mut small = LadderBook::with_capacity(1_000);
        small.reserve(1 << 30);
        assert!(small.index.capacity() < 1 << 20, "reserve must stay within the book's capacity");
    }
}
