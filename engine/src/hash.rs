//! State hash: a BLAKE3 digest of everything that decides future outputs.
//!
//! The encoding walks the state in a canonical order (instruments by id,
//! each book side in priority order, stops in arrival order, accounts by id,
//! assets by id), so two engines agree on the hash exactly when they agree
//! on the state, whatever their internal layout: the fast and the reference
//! book hash the same. Derived indexes (client ids, the expiry queue) are
//! left out: they are functions of the hashed state.
//!
//! Cost is linear in the state (about a microsecond per thousand orders),
//! which is why the caller decides how often to take it.

use crate::book::OrderBook;
use crate::command::{StpMode, TimeInForce};
use crate::engine::Engine;
use crate::instrument::TradingStatus;
use crate::order::Order;
use crate::types::Side;

pub type StateHash = [u8; 32];

struct Writer(blake3::Hasher);

impl Writer {
    fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.update(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }
    fn tif(&mut self, t: TimeInForce) {
        let (tag, v) = match t {
            TimeInForce::Gtc => (0, 0),
            TimeInForce::Ioc => (1, 0),
            TimeInForce::Fok => (2, 0),
            TimeInForce::Gtd(ts) => (3, ts),
            TimeInForce::Day => (4, 0),
        };
        self.u64(tag);
        self.u64(v);
    }
    fn stp(&mut self, s: StpMode) {
        self.u64(s as u64);
    }
    fn order(&mut self, o: &Order) {
        self.u64(o.id);
        self.u64(o.account as u64);
        self.bytes(&o.client_order_id.0);
        self.u64(o.side as u64);
        for v in [o.price, o.visible, o.hidden, o.display, o.qty, o.filled, o.hold, o.budget] {
            self.i64(v);
        }
        self.tif(o.tif);
        self.stp(o.stp);
        self.u64(o.post_only as u64);
        self.u64(o.is_market as u64);
        self.u64(o.priority);
    }
}

impl<B: OrderBook> Engine<B> {
    /// Digest of the whole state. Equal hashes mean equal states.
    pub fn state_hash(&self) -> StateHash {
        let mut w = Writer(blake3::Hasher::new());
        w.bytes(b"castle-engine-state-v1");
        for v in [self.seq, self.now, self.next_order_id, self.next_trade_id, self.next_priority] {
            w.u64(v);
        }
        for (id, m) in self.markets.iter().enumerate() {
            let Some(m) = m else { continue };
            w.u64(id as u64);
            let s = &m.spec;
            w.bytes(&s.symbol.0);
            for v in [s.base as u64, s.quote as u64, s.band_bps as u64, s.maker_fee_bps as u64, s.taker_fee_bps as u64]
            {
                w.u64(v);
            }
            for v in [s.min_qty, s.min_notional, s.reference_price, m.scale.lot_units, m.scale.tick_value, m.last_price]
            {
                w.i64(v);
            }
            w.bytes(&s.scaling.tick_size.serialize());
            w.bytes(&s.scaling.lot_size.serialize());
            w.u64(s.scaling.base_decimals as u64);
            w.u64(s.scaling.quote_decimals as u64);
            w.u64(match m.status {
                TradingStatus::Open => 0,
                TradingStatus::Halted => 1,
                TradingStatus::Closed => 2,
            });
            for side in [Side::Buy, Side::Sell] {
                w.u64(side as u64);
                m.book.visit(side, &mut |o| {
                    w.order(o);
                    true
                });
                w.u64(u64::MAX);
            }
            for st in &m.stops {
                w.i64(st.stop_price);
                w.u64(st.is_limit as u64);
                w.order(&st.order);
            }
            w.u64(u64::MAX);
        }
        for ix in self.accounts.sorted_ixs() {
            w.u64(self.accounts.id(ix) as u64);
            w.stp(self.accounts.stp(ix));
            w.u64(self.accounts.killed(ix) as u64);
            for asset in 0..self.accounts.max_assets() {
                let b = self.accounts.balance(ix, asset);
                w.i64(b.available);
                w.i64(b.locked);
            }
        }
        for asset in 0..self.accounts.max_assets() {
            w.i64(self.accounts.supply(asset));
        }
        *w.0.finalize().as_bytes()
    }
}
