//! Instrument definitions and the exact decimal <-> integer conversions used
//! at the edges.
//!
//! Inside the engine a price is a count of ticks and a quantity a count of
//! lots. Balances are in each asset's minor units (10^-decimals). For every
//! instrument the engine needs two integers, derived exactly here:
//! - `lot_units`: base-asset minor units in one lot;
//! - `tick_value`: quote-asset minor units that one tick of price costs for
//!   one lot (tick_size * lot_size * 10^quote_decimals).
//!
//! An instrument whose tick and lot do not give whole minor units is refused,
//! so no trade can ever need rounding of the notional.

use rust_decimal::Decimal;

use crate::types::{Amount, AssetId, InstrumentId, Price, Qty, Symbol, MAX_VALUE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum TradingStatus {
    Open,
    Halted,
    Closed,
}

/// How an instrument's decimal prices and sizes map onto integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scaling {
    /// Smallest price increment, in quote units per whole base unit (e.g. 0.01).
    pub tick_size: Decimal,
    /// Smallest quantity increment, in base units (e.g. 0.00001).
    pub lot_size: Decimal,
    /// Decimal places of the base asset's minor unit (8 for BTC).
    pub base_decimals: u32,
    /// Decimal places of the quote asset's minor unit.
    pub quote_decimals: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error("value is not a multiple of the increment")]
    OffGrid,
    #[error("value must be positive")]
    NotPositive,
    #[error("value is too large")]
    TooLarge,
    #[error("tick or lot size does not give whole minor units")]
    InexactScaling,
}

impl Scaling {
    fn ratio(value: Decimal, step: Decimal) -> Result<i64, ConversionError> {
        if value <= Decimal::ZERO {
            return Err(ConversionError::NotPositive);
        }
        let n = value.checked_div(step).ok_or(ConversionError::TooLarge)?;
        if n.fract() != Decimal::ZERO {
            return Err(ConversionError::OffGrid);
        }
        let n: i64 = n.try_into().map_err(|_| ConversionError::TooLarge)?;
        if n >= MAX_VALUE {
            return Err(ConversionError::TooLarge);
        }
        Ok(n)
    }

    /// Exact decimal price to ticks; off-grid prices are an error, never rounded.
    pub fn price_to_ticks(&self, price: Decimal) -> Result<Price, ConversionError> {
        Self::ratio(price, self.tick_size)
    }

    /// Exact decimal quantity to lots; off-grid quantities are an error.
    pub fn qty_to_lots(&self, qty: Decimal) -> Result<Qty, ConversionError> {
        Self::ratio(qty, self.lot_size)
    }

    pub fn ticks_to_price(&self, ticks: Price) -> Decimal {
        Decimal::from(ticks) * self.tick_size
    }

    pub fn lots_to_qty(&self, lots: Qty) -> Decimal {
        Decimal::from(lots) * self.lot_size
    }

    /// Decimal amount of an asset with `decimals` places to minor units.
    pub fn amount_to_units(amount: Decimal, decimals: u32) -> Result<Amount, ConversionError> {
        let step = Decimal::new(1, decimals);
        Self::ratio(amount, step)
    }

    pub fn units_to_amount(units: Amount, decimals: u32) -> Decimal {
        Decimal::new(units, decimals)
    }

    fn whole(v: Decimal) -> Result<i64, ConversionError> {
        if v <= Decimal::ZERO || v.fract() != Decimal::ZERO {
            return Err(ConversionError::InexactScaling);
        }
        v.try_into().map_err(|_| ConversionError::InexactScaling)
    }

    /// Base minor units per lot.
    pub fn lot_units(&self) -> Result<Amount, ConversionError> {
        let scale = Decimal::from_i128_with_scale(10i128.pow(self.base_decimals.min(18)), 0);
        // Checked: a decoded spec may carry any decimal, and `*` panics on overflow.
        Self::whole(self.lot_size.checked_mul(scale).ok_or(ConversionError::InexactScaling)?)
    }

    /// Quote minor units per tick per lot.
    pub fn tick_value(&self) -> Result<Amount, ConversionError> {
        let scale = Decimal::from_i128_with_scale(10i128.pow(self.quote_decimals.min(18)), 0);
        let v = self
            .tick_size
            .checked_mul(self.lot_size)
            .and_then(|x| x.checked_mul(scale))
            .ok_or(ConversionError::InexactScaling)?;
        Self::whole(v)
    }
}

/// Everything the engine needs to trade an instrument. Integer fields only
/// take part in matching; `scaling` is carried for the edges' conversions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstrumentSpec {
    pub id: InstrumentId,
    pub symbol: Symbol,
    pub base: AssetId,
    pub quote: AssetId,
    pub scaling: Scaling,
    /// Smallest order quantity, in lots.
    pub min_qty: Qty,
    /// Smallest order notional, in quote minor units.
    pub min_notional: Amount,
    /// Limit prices must lie within this many basis points of the reference
    /// price (last trade, or `reference_price` before the first trade);
    /// market orders never trade outside it. 1..=10_000.
    pub band_bps: u32,
    /// Initial reference price in ticks.
    pub reference_price: Price,
    /// Fee rates in basis points of the notional, charged in the quote asset.
    /// `maker_fee_bps <= taker_fee_bps`, so the taker rate bounds every hold.
    pub maker_fee_bps: u32,
    pub taker_fee_bps: u32,
}

/// Derived integers of a validated spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Units {
    pub lot_units: Amount,
    pub tick_value: Amount,
}

impl InstrumentSpec {
    /// Validates the spec and derives its integer units.
    pub fn units(&self) -> Result<Units, ConversionError> {
        let lot_units = self.scaling.lot_units()?;
        let tick_value = self.scaling.tick_value()?;
        Ok(Units { lot_units, tick_value })
    }

    /// A BTC-USDT style demo instrument: tick 0.01, lot 0.00001, 8 decimals on both assets.
    pub fn demo(id: InstrumentId, symbol: &str, base: AssetId, quote: AssetId, reference_price: Price) -> Self {
        InstrumentSpec {
            id,
            symbol: Symbol::new(symbol).unwrap_or_default(),
            base,
            quote,
            scaling: Scaling {
                tick_size: Decimal::new(1, 2),
                lot_size: Decimal::new(1, 5),
                base_decimals: 8,
                quote_decimals: 8,
            },
            min_qty: 1,
            min_notional: 0,
            band_bps: 1_000,
            reference_price,
            maker_fee_bps: 10,
            taker_fee_bps: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn conversions_are_exact_and_refuse_off_grid_values() {
        let s = InstrumentSpec::demo(1, "BTC-USDT", 1, 2, 6_000_000).scaling;
        assert_eq!(s.price_to_ticks(d("60000.01")), Ok(6_000_001));
        assert_eq!(s.price_to_ticks(d("60000.015")), Err(ConversionError::OffGrid));
        assert_eq!(s.price_to_ticks(d("0")), Err(ConversionError::NotPositive));
        assert_eq!(s.price_to_ticks(d("-1")), Err(ConversionError::NotPositive));
        assert_eq!(s.qty_to_lots(d("1.5")), Ok(150_000));
        assert_eq!(s.qty_to_lots(d("0.000001")), Err(ConversionError::OffGrid));
        assert_eq!(s.ticks_to_price(6_000_001), d("60000.01"));
        assert_eq!(s.lots_to_qty(150_000), d("1.5"));
        assert_eq!(Scaling::amount_to_units(d("1.23456789"), 8), Ok(123_456_789));
        assert_eq!(Scaling::amount_to_units(d("1.234567891"), 8), Err(ConversionError::OffGrid));
        assert_eq!(s.price_to_ticks(d("79228162514264337593543950335")), Err(ConversionError::TooLarge));
    }

    #[test]
    fn units_are_derived_exactly() {
        let spec = InstrumentSpec::demo(1, "BTC-USDT", 1, 2, 6_000_000);
        // lot 0.00001 BTC = 1000 sat; tick 0.01 * lot 0.00001 * 1e8 = 10 quote units.
        assert_eq!(spec.units(), Ok(Units { lot_units: 1_000, tick_value: 10 }));
        let mut bad = spec;
        bad.scaling.quote_decimals = 2; // 0.01 * 0.00001 * 100 is not whole
        assert_eq!(bad.units(), Err(ConversionError::InexactScaling));
    }
}
