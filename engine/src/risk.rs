//! Money arithmetic for pre-trade risk: notionals, fees and holds.
//!
//! All products are computed in i128 and bounded by `MAX_VALUE`, so nothing
//! here can overflow. Fees are rounded DOWN (the venue gives up less than one
//! minor unit per fill). Rounding down is what makes holds safe: for a buy
//! the hold is `n + floor(n * taker / 10^4)` for the open quantity at the
//! limit price, and because `floor(a + b) >= floor(a) + floor(b)` the hold of
//! the remainder after any fill (at the limit or a better price, with a fee
//! rate at most the taker rate) is never more than what is left locked.

use crate::order::Order;
use crate::types::{Amount, Price, Qty, Side, MAX_VALUE};

pub const BPS: i128 = 10_000;

/// Integer scale of one instrument (see `instrument::Units`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    pub lot_units: Amount,
    pub tick_value: Amount,
    pub taker_fee_bps: u32,
    pub maker_fee_bps: u32,
}

impl Scale {
    /// Quote minor units for `qty` lots at `price` ticks, if representable.
    pub fn notional(&self, price: Price, qty: Qty) -> Option<Amount> {
        // i64 fast path; i128 only when the product might not fit.
        if let Some(n) = price.checked_mul(qty).and_then(|x| x.checked_mul(self.tick_value)) {
            return (0..=MAX_VALUE).contains(&n).then_some(n);
        }
        let n = price as i128 * qty as i128 * self.tick_value as i128;
        (0..=MAX_VALUE as i128).contains(&n).then_some(n as Amount)
    }

    pub fn fee(notional: Amount, bps: u32) -> Amount {
        // notional < 2^62 and bps <= 10^4 < 2^14 would overflow i64, so use
        // the i64 path (a multiply-by-reciprocal division) when it fits.
        match notional.checked_mul(bps as i64) {
            Some(x) => x / BPS as i64,
            None => (notional as i128 * bps as i128 / BPS) as Amount,
        }
    }

    /// Base minor units for `qty` lots.
    pub fn base_units(&self, qty: Qty) -> Option<Amount> {
        let n = qty as i128 * self.lot_units as i128;
        (0..=MAX_VALUE as i128).contains(&n).then_some(n as Amount)
    }

    /// What a buy of `qty` at `price` must lock: notional plus the taker fee.
    pub fn buy_hold(&self, price: Price, qty: Qty) -> Option<Amount> {
        let n = self.notional(price, qty)?;
        let h = n as i128 + Self::fee(n, self.taker_fee_bps) as i128;
        (h <= MAX_VALUE as i128).then_some(h as Amount)
    }

    /// The hold an open order needs for what is still open.
    pub fn required_hold(&self, o: &Order) -> Amount {
        match o.side {
            Side::Sell => self.base_units(o.leaves()).expect("bounded at admission"),
            Side::Buy if o.budget > 0 || o.qty == 0 => o.budget,
            Side::Buy => self.buy_hold(o.price, o.leaves()).expect("bounded at admission"),
        }
    }

    /// Cost of buying `qty` at `price` with fee rate `bps`.
    pub fn buy_cost(&self, price: Price, qty: Qty, bps: u32) -> Option<Amount> {
        let n = self.notional(price, qty)?;
        Some(n + Self::fee(n, bps))
    }

    /// Most lots a quote budget buys at `price`, fees included at `bps`.
    pub fn affordable(&self, budget: Amount, price: Price, bps: u32) -> Qty {
        let unit = price as i128 * self.tick_value as i128;
        if unit <= 0 || budget <= 0 {
            return 0;
        }
        let mut q = (budget as i128 * BPS / (unit * (BPS + bps as i128))) as Qty;
        // The floor in the fee may leave room for one more lot.
        while self.buy_cost(price, q + 1, bps).is_some_and(|c| c <= budget) {
            q += 1;
        }
        q
    }
}

/// Symmetric price band around `reference`: (low, high), low at least one tick.
pub fn band(reference: Price, band_bps: u32) -> (Price, Price) {
    let delta = match reference.checked_mul(band_bps as i64) {
        Some(x) => x / BPS as i64,
        None => (reference as i128 * band_bps as i128 / BPS) as Price,
    };
    ((reference - delta).max(1), reference.saturating_add(delta).min(MAX_VALUE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Scale = Scale { lot_units: 1_000, tick_value: 10, taker_fee_bps: 20, maker_fee_bps: 10 };

    #[test]
    fn fees_round_down_and_holds_cover_the_taker_fee() {
        assert_eq!(S.notional(100, 3), Some(3_000));
        assert_eq!(Scale::fee(3_000, 20), 6);
        assert_eq!(Scale::fee(4_999, 1), 0);
        assert_eq!(S.buy_hold(100, 3), Some(3_006));
        assert_eq!(S.notional(MAX_VALUE, 2), None);
    }

    #[test]
    fn affordable_is_the_largest_quantity_within_budget() {
        for budget in [0, 1, 999, 1_000, 1_002, 1_003, 10_019, 10_020, 123_456] {
            let q = S.affordable(budget, 100, 20);
            assert!(S.buy_cost(100, q, 20).unwrap() <= budget || q == 0);
            assert!(S.buy_cost(100, q + 1, 20).unwrap() > budget);
        }
    }

    #[test]
    fn remainder_hold_never_exceeds_what_is_left() {
        // Exhaustive over small values: hold(q0) - cost(q at p<=L, maker or taker) >= hold(q0 - q).
        for l in 1..40 {
            for q0 in 1..25 {
                for q in 1..=q0 {
                    for p in 1..=l {
                        for bps in [0, 10, 20] {
                            let s = Scale { lot_units: 1, tick_value: 7, taker_fee_bps: 20, maker_fee_bps: 10 };
                            let left = s.buy_hold(l, q0).unwrap() - s.buy_cost(p, q, bps).unwrap();
                            assert!(left >= s.buy_hold(l, q0 - q).unwrap());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn band_is_symmetric_and_positive() {
        assert_eq!(band(1_000, 1_000), (900, 1_100));
        assert_eq!(band(5, 10_000), (1, 10));
        assert_eq!(band(1, 500), (1, 1));
    }
}
