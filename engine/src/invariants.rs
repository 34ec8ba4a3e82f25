//! Invariants of the engine state, checked by tests and fuzzing after every
//! command. Slow (it walks everything and allocates): never on the hot path.

use std::collections::BTreeMap;

use crate::book::OrderBook;
use crate::engine::Engine;
use crate::order::Order;
use crate::types::{AccountId, Amount, AssetId, Side};

impl<B: OrderBook> Engine<B> {
    /// Returns the first violated invariant, described.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut holds: BTreeMap<(AccountId, AssetId), Amount> = BTreeMap::new();
        let mut open = 0usize;
        for (id, m) in self.markets.iter().enumerate() {
            let Some(m) = m else { continue };
            if let (Some(bid), Some(ask)) = (m.book.best_price(Side::Buy), m.book.best_price(Side::Sell)) {
                if bid >= ask {
                    return Err(format!("instrument {id}: crossed book at rest, bid {bid} >= ask {ask}"));
                }
            }
            let mut problem: Option<String> = None;
            let mut check = |o: &Order, resting: bool, problem: &mut Option<String>| {
                let asset = if o.side == Side::Buy { m.spec.quote } else { m.spec.base };
                *holds.entry((o.account, asset)).or_default() += o.hold;
                open += 1;
                let required = m.scale.required_hold(o);
                let bad = if o.hold != required {
                    Some(format!("hold {} != required {}", o.hold, required))
                } else if resting && (o.visible <= 0 || o.hidden < 0) {
                    Some(format!("resting with visible {} hidden {}", o.visible, o.hidden))
                } else if resting && o.display > 0 && o.visible > o.display {
                    Some(format!("iceberg shows {} > display {}", o.visible, o.display))
                } else if o.budget == 0 && o.filled + o.leaves() != o.qty {
                    Some(format!("filled {} + leaves {} != qty {}", o.filled, o.leaves(), o.qty))
                } else if self.client_ids.get(&(o.account, o.client_order_id)) != Some(&(id as u32, o.id)) {
                    Some("client order id index does not point at the order".to_string())
                } else {
                    None
                };
                if let (Some(b), None) = (bad, &*problem) {
                    *problem = Some(format!("instrument {id} order {}: {b}", o.id));
                }
            };
            for side in [Side::Buy, Side::Sell] {
                let mut prev: Option<(i64, u64)> = None;
                m.book.visit(side, &mut |o| {
                    if o.side != side {
                        problem.get_or_insert(format!("order {} on the wrong side", o.id));
                    }
                    if let Some((p, pr)) = prev {
                        if side.better(o.price, p) || (o.price == p && o.priority <= pr) {
                            problem.get_or_insert(format!("order {} out of priority", o.id));
                        }
                    }
                    prev = Some((o.price, o.priority));
                    check(o, true, &mut problem);
                    true
                });
            }
            for s in &m.stops {
                check(&s.order, false, &mut problem);
            }
            if let Some(p) = problem {
                return Err(p);
            }
        }
        if open != self.client_ids.len() {
            return Err(format!("{} open orders but {} client ids indexed", open, self.client_ids.len()));
        }
        let assets = self.accounts.max_assets();
        let mut totals = vec![0i128; assets as usize];
        for ix in self.accounts.sorted_ixs() {
            let account = self.accounts.id(ix);
            for asset in 0..assets {
                let b = self.accounts.balance(ix, asset);
                if b.available < 0 || b.locked < 0 {
                    return Err(format!("account {account} asset {asset}: negative balance {b:?}"));
                }
                let held = holds.get(&(account, asset)).copied().unwrap_or(0);
                if b.locked != held {
                    return Err(format!(
                        "account {account} asset {asset}: locked {} != open orders' holds {held}",
                        b.locked
                    ));
                }
                totals[asset as usize] += b.available as i128 + b.locked as i128;
            }
        }
        for asset in 0..assets {
            let supply = self.accounts.supply(asset) as i128;
            if totals[asset as usize] != supply {
                return Err(format!(
                    "asset {asset}: balances sum to {} but supply is {supply}",
                    totals[asset as usize]
                ));
            }
        }
        Ok(())
    }
}
