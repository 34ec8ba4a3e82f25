//! Engine snapshots: the whole state as bytes, and back.
//!
//! Recovery is "latest snapshot + journal replay", so a snapshot must rebuild an engine that
//! produces exactly the events an uninterrupted one would. The format stores the primary state
//! (what [`Engine::state_hash`] covers) plus the one derived structure whose *exact contents*
//! influence outputs, the GTD expiry queue (its length, stale entries included, decides when a
//! sweep runs and when `TooManyTimedOrders` is returned). The client-id index is rebuilt from
//! the orders. The state hash of the snapshotted engine is stored and checked on restore, and
//! the invariants are checked, so a snapshot that decodes but is wrong is refused.
//!
//! # Layout (little-endian, version 1; field encodings as in [`crate::codec`])
//!
//! ```text
//! magic "CSTLENG\0" | version u32 = 1
//! limits: max_instruments u32, max_assets u32, max_accounts u32,
//!         max_orders_per_instrument u64, max_open_orders u64, max_stops_per_instrument u64, max_timed_orders u64
//! seq u64 | now u64 | next_order_id u64 | next_trade_id u64 | next_priority u64 | state hash [32]
//! markets: count u32, each: spec (codec layout), status u8, last_price i64,
//!          bids: count u32 + orders in priority order, asks: same,
//!          stops: count u32 + (stop_price i64, is_limit bool, order) in arrival order
//! accounts: count u32, each in creation order: id u32, stp u8, killed bool, max_assets x (available i64, locked i64)
//! supply: max_assets x i64
//! expiries: count u32 + (time u64, order id u64, instrument u32), ascending
//! order: id u64, account u32, client order id, side, price, visible, hidden, display, qty, filled, hold, budget (i64),
//!        tif, stp, post_only bool, is_market bool, priority u64
//! ```
//!
//! Taking a snapshot walks the state once (about the cost of [`Engine::state_hash`]), so the
//! caller decides when; the server serialises on the engine thread and writes the bytes on
//! another thread.

use std::cmp::Reverse;

use crate::account::Balance;
use crate::book::OrderBook;
use crate::codec::{put_spec, status_, stp_code, tif_, CodecError, Reader};
use crate::engine::{Engine, Limits, Market};
use crate::hash::StateHash;
use crate::order::{Order, StopOrder};
use crate::risk::Scale;
use crate::types::Side;

const MAGIC: [u8; 8] = *b"CSTLENG\0";
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not an engine snapshot (bad magic)")]
    Magic,
    #[error("unsupported snapshot version {0}")]
    Version(u32),
    #[error("snapshot taken with limits {found:?}, engine configured with {expected:?}")]
    Limits { expected: Limits, found: Limits },
    #[error("snapshot decode: {0}")]
    Codec(#[from] CodecError),
    #[error("snapshot inconsistent: {0}")]
    Inconsistent(String),
    #[error("restored state hash {restored} differs from the snapshot's {stored}")]
    HashMismatch { stored: String, restored: String },
}

fn hex(h: &StateHash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn put_order(out: &mut Vec<u8>, o: &Order) {
    out.extend_from_slice(&o.id.to_le_bytes());
    out.extend_from_slice(&o.account.to_le_bytes());
    let n = o.client_order_id.0.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    out.push(n as u8);
    out.extend_from_slice(&o.client_order_id.0[..n]);
    out.push(matches!(o.side, Side::Sell) as u8);
    for v in [o.price, o.visible, o.hidden, o.display, o.qty, o.filled, o.hold, o.budget] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    tif_(out, o.tif);
    out.push(stp_code(o.stp));
    out.push(o.post_only as u8);
    out.push(o.is_market as u8);
    out.extend_from_slice(&o.priority.to_le_bytes());
}

fn get_order(r: &mut Reader<'_>) -> Result<Order, CodecError> {
    Ok(Order {
        id: r.u64()?,
        account: r.u32()?,
        client_order_id: r.client_order_id()?,
        side: r.side()?,
        price: r.i64()?,
        visible: r.i64()?,
        hidden: r.i64()?,
        display: r.i64()?,
        qty: r.i64()?,
        filled: r.i64()?,
        hold: r.i64()?,
        budget: r.i64()?,
        tif: r.tif()?,
        stp: r.stp()?,
        post_only: r.bool()?,
        is_market: r.bool()?,
        priority: r.u64()?,
    })
}

fn put_limits(out: &mut Vec<u8>, l: &Limits) {
    for v in [l.max_instruments, l.max_assets, l.max_accounts] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [l.max_orders_per_instrument, l.max_open_orders, l.max_stops_per_instrument, l.max_timed_orders] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
}

fn get_limits(r: &mut Reader<'_>) -> Result<Limits, CodecError> {
    Ok(Limits {
        max_instruments: r.u32()?,
        max_assets: r.u32()?,
        max_accounts: r.u32()?,
        max_orders_per_instrument: r.u64()? as usize,
        max_open_orders: r.u64()? as usize,
        max_stops_per_instrument: r.u64()? as usize,
        max_timed_orders: r.u64()? as usize,
    })
}

/// Reads a count and checks it against a bound before anything is allocated for it.
fn count(r: &mut Reader<'_>, max: usize, what: &str) -> Result<usize, SnapshotError> {
    let n = r.u32()? as usize;
    if n > max {
        return Err(SnapshotError::Inconsistent(format!("{n} {what}, limit {max}")));
    }
    Ok(n)
}

impl<B: OrderBook> Engine<B> {
    /// The whole state, in the versioned format described in the module docs.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4_096 + self.open_orders() * 128);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        put_limits(&mut out, &self.limits);
        for v in [self.seq, self.now, self.next_order_id, self.next_trade_id, self.next_priority] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.state_hash());
        let present = self.markets.iter().filter(|m| m.is_some()).count() as u32;
        out.extend_from_slice(&present.to_le_bytes());
        for m in self.markets.iter().flatten() {
            put_spec(&mut out, &m.spec);
            status_(&mut out, m.status);
            out.extend_from_slice(&m.last_price.to_le_bytes());
            for side in [Side::Buy, Side::Sell] {
                let at = out.len();
                out.extend_from_slice(&0u32.to_le_bytes());
                let mut n = 0u32;
                m.book.visit(side, &mut |o| {
                    put_order(&mut out, o);
                    n += 1;
                    true
                });
                out[at..at + 4].copy_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&(m.stops.len() as u32).to_le_bytes());
            for s in &m.stops {
                out.extend_from_slice(&s.stop_price.to_le_bytes());
                out.push(s.is_limit as u8);
                put_order(&mut out, &s.order);
            }
        }
        let accounts = self.accounts.len() as u32;
        out.extend_from_slice(&accounts.to_le_bytes());
        for ix in 0..accounts {
            out.extend_from_slice(&self.accounts.id(ix).to_le_bytes());
            out.push(stp_code(self.accounts.stp(ix)));
            out.push(self.accounts.killed(ix) as u8);
            for asset in 0..self.limits.max_assets {
                let b = self.accounts.balance(ix, asset);
                out.extend_from_slice(&b.available.to_le_bytes());
                out.extend_from_slice(&b.locked.to_le_bytes());
            }
        }
        for asset in 0..self.limits.max_assets {
            out.extend_from_slice(&self.accounts.supply(asset).to_le_bytes());
        }
        let mut exp: Vec<_> = self.expiries.iter().map(|Reverse(e)| *e).collect();
        exp.sort_unstable();
        out.extend_from_slice(&(exp.len() as u32).to_le_bytes());
        for (t, id, inst) in exp {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&inst.to_le_bytes());
        }
        out
    }

    /// Rebuilds an engine from [`snapshot`](Self::snapshot) bytes. `limits` must be the ones the
    /// snapshot was taken with. Hostile-input safe: any inconsistency is an error, never a panic.
    pub fn restore(limits: Limits, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = Reader::new(bytes);
        if r.bytes::<8>()? != MAGIC {
            return Err(SnapshotError::Magic);
        }
        match r.u32()? {
            SNAPSHOT_VERSION => {}
            v => return Err(SnapshotError::Version(v)),
        }
        let found = get_limits(&mut r)?;
        if found != limits {
            return Err(SnapshotError::Limits { expected: limits, found });
        }
        let bad = |s: String| SnapshotError::Inconsistent(s);
        let mut e = Engine::<B>::new(limits);
        e.seq = r.u64()?;
        e.now = r.u64()?;
        e.next_order_id = r.u64()?;
        e.next_trade_id = r.u64()?;
        e.next_priority = r.u64()?;
        let stored: StateHash = r.bytes()?;
        let markets = count(&mut r, limits.max_instruments as usize, "markets")?;
        for _ in 0..markets {
            let spec = r.spec()?;
            let id = spec.id as usize;
            if id >= e.markets.len() || e.markets[id].is_some() {
                return Err(bad(format!("market id {id} out of range or repeated")));
            }
            let units = spec.units().map_err(|err| bad(format!("market {id}: {err}")))?;
            let status = r.status()?;
            let last_price = r.i64()?;
            let mut book = B::with_capacity(limits.max_orders_per_instrument);
            for side in [Side::Buy, Side::Sell] {
                let n = count(&mut r, limits.max_orders_per_instrument, "resting orders")?;
                for _ in 0..n {
                    let o = get_order(&mut r)?;
                    if o.side != side || book.is_full() || book.get(o.id).is_some() {
                        return Err(bad(format!("market {id}: order {} misplaced or repeated", o.id)));
                    }
                    book.insert(o);
                }
            }
            let n = count(&mut r, limits.max_stops_per_instrument, "stop orders")?;
            let mut stops = Vec::with_capacity(limits.max_stops_per_instrument);
            for _ in 0..n {
                let stop_price = r.i64()?;
                let is_limit = r.bool()?;
                stops.push(StopOrder { stop_price, is_limit, order: get_order(&mut r)? });
            }
            // The client-id index is a function of the open orders: rebuild it.
            let mut index = |o: &Order| {
                if e.client_ids.len() >= limits.max_open_orders
                    || e.client_ids.insert((o.account, o.client_order_id), (spec.id, o.id)).is_some()
                {
                    Err(bad(format!("market {id}: client order id of order {} repeated or over the limit", o.id)))
                } else {
                    Ok(())
                }
            };
            let mut problem = Ok(());
            for side in [Side::Buy, Side::Sell] {
                book.visit(side, &mut |o| {
                    problem = index(o);
                    problem.is_ok()
                });
                problem.clone()?;
            }
            for s in &stops {
                index(&s.order)?;
            }
            e.markets[id] = Some(Market {
                spec,
                scale: Scale {
                    lot_units: units.lot_units,
                    tick_value: units.tick_value,
                    taker_fee_bps: spec.taker_fee_bps,
                    maker_fee_bps: spec.maker_fee_bps,
                },
                status,
                last_price,
                book,
                stops,
            });
        }
        let accounts = count(&mut r, limits.max_accounts as usize, "accounts")?;
        for i in 0..accounts {
            let id = r.u32()?;
            let ix = e.accounts.ix_or_create(id).map_err(|_| bad(format!("account {id} over the limit")))?;
            // The fee account is created by `new`, so creation order must put it first.
            if ix as usize != i {
                return Err(bad(format!("account {id} repeated or out of creation order")));
            }
            let stp = r.stp()?;
            e.accounts.set_stp(ix, stp);
            let killed = r.bool()?;
            e.accounts.set_killed(ix, killed);
            for asset in 0..limits.max_assets {
                let b = Balance { available: r.i64()?, locked: r.i64()? };
                e.accounts.restore_raw(ix, asset, b);
            }
        }
        for asset in 0..limits.max_assets {
            let s = r.i64()?;
            e.accounts.restore_supply(asset, s);
        }
        let n = count(&mut r, limits.max_timed_orders, "expiries")?;
        for _ in 0..n {
            e.expiries.push(Reverse((r.u64()?, r.u64()?, r.u32()?)));
        }
        r.finish()?;
        let restored = e.state_hash();
        if restored != stored {
            return Err(SnapshotError::HashMismatch { stored: hex(&stored), restored: hex(&restored) });
        }
        e.check_invariants().map_err(SnapshotError::Inconsistent)?;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Chaos, Rng};
    use crate::{Command, Event, FastEngine, Limits, ReferenceEngine};

    fn stream(seed: u64, n: usize) -> Vec<(u64, Command)> {
        let mut chaos = Chaos::new(seed);
        let mut shadow = FastEngine::new(Limits::small());
        let mut out = Vec::new();
        let mut v: Vec<(u64, Command)> = Chaos::setup().into_iter().map(|c| (1, c)).collect();
        for (ts, c) in &v {
            shadow.apply(*ts, c, &mut out);
        }
        for _ in 0..n {
            let (ts, c) = (chaos.next_ts(), chaos.next_command());
            out.clear();
            shadow.apply(ts, &c, &mut out);
            chaos.observe(&out);
            v.push((ts, c));
        }
        v
    }

    fn continue_from<B: OrderBook>(mut e: Engine<B>, rest: &[(u64, Command)]) -> (Vec<Event>, StateHash) {
        let mut out = Vec::new();
        for (ts, c) in rest {
            e.apply(*ts, c, &mut out);
        }
        (out, e.state_hash())
    }

    #[test]
    fn restore_continues_exactly_like_an_uninterrupted_engine() {
        let mut rng = Rng::new(7);
        for seed in 1..=12u64 {
            let cmds = stream(seed, 4_000);
            let mut whole = FastEngine::new(Limits::small());
            let mut out = Vec::new();
            let mut events_after: Vec<Vec<Event>> = Vec::new();
            // Snapshot points chosen at random; compare the rest of the run.
            let cuts: Vec<usize> = (0..3).map(|_| rng.below(cmds.len() as u64) as usize).collect();
            let mut snaps = Vec::new();
            for (i, (ts, c)) in cmds.iter().enumerate() {
                if cuts.contains(&i) {
                    snaps.push((i, whole.snapshot(), whole.state_hash()));
                }
                out.clear();
                whole.apply(*ts, c, &mut out);
                events_after.push(out.clone());
            }
            let final_hash = whole.state_hash();
            for (i, snap, hash) in snaps {
                let expect: Vec<Event> = events_after[i..].iter().flatten().copied().collect();
                let fast = FastEngine::restore(Limits::small(), &snap).expect("restore fast");
                assert_eq!(fast.state_hash(), hash);
                let (ev, h) = continue_from(fast, &cmds[i..]);
                assert!(ev == expect, "seed {seed} cut {i}: fast engine diverged after restore");
                assert_eq!(h, final_hash);
                let reference = ReferenceEngine::restore(Limits::small(), &snap).expect("restore reference");
                let (ev, h) = continue_from(reference, &cmds[i..]);
                assert!(ev == expect, "seed {seed} cut {i}: reference engine diverged after restore");
                assert_eq!(h, final_hash);
                // A snapshot of the restored engine is byte-identical.
                assert_eq!(FastEngine::restore(Limits::small(), &snap).unwrap().snapshot(), snap);
            }
        }
    }

    #[test]
    fn damaged_snapshots_are_refused_without_panicking() {
        let cmds = stream(3, 2_000);
        let mut e = FastEngine::new(Limits::small());
        let mut out = Vec::new();
        for (ts, c) in &cmds {
            e.apply(*ts, c, &mut out);
        }
        let snap = e.snapshot();
        // The expiry queue (at the end) is not part of the state hash; the snapshot file's CRC
        // covers it. Flip bits only before it.
        let covered = snap.len() - 4 - 20 * e.expiries.len();
        assert!(matches!(FastEngine::restore(Limits::default(), &snap), Err(SnapshotError::Limits { .. })));
        for cut in [0, 7, 12, snap.len() / 2, snap.len() - 1] {
            assert!(FastEngine::restore(Limits::small(), &snap[..cut]).is_err());
        }
        let mut rng = Rng::new(1);
        for _ in 0..2_000 {
            let mut bad = snap.clone();
            let at = rng.below(covered as u64) as usize;
            bad[at] ^= 1 << rng.below(8);
            // Any single flipped bit is caught: decode error, inconsistency or hash mismatch.
            assert!(FastEngine::restore(Limits::small(), &bad).is_err(), "flip at {at} accepted");
        }
    }
}
