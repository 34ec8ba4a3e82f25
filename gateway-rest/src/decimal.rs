//! Strict decimal strings at the edge: prices, quantities and amounts arrive
//! as JSON strings ("60000.01"), are parsed exactly and then mapped onto the
//! instrument's grid by the engine's `Scaling` (off-grid values are refused,
//! never rounded). Every conversion between the engine's integers and the
//! API's decimal strings in this crate goes through this module (one place
//! to switch when castle-engine grows its shared scaling helper).

use castle_engine::{ConversionError, InstrumentSpec, Scaling};
use rust_decimal::Decimal;
use std::str::FromStr;

use crate::error::{ApiError, Code};

/// Longest accepted decimal string (more digits than any instrument needs).
pub const MAX_DECIMAL_LEN: usize = 40;

/// Parses a plain positive-or-zero decimal: digits, optionally one dot and
/// more digits. No sign, exponent, spaces, or leading/trailing dot.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    if s.is_empty() || s.len() > MAX_DECIMAL_LEN {
        return None;
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 28 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    Decimal::from_str(s).ok()
}

fn grid_error(field: &str, e: ConversionError, code: Code) -> ApiError {
    let why = match e {
        ConversionError::OffGrid => "is not a multiple of the increment",
        ConversionError::NotPositive => "must be positive",
        ConversionError::TooLarge => "is too large",
        ConversionError::InexactScaling => "cannot be represented",
    };
    ApiError::new(code, format!("{field} {why}"))
}

fn decimal_field(field: &str, s: &str) -> Result<Decimal, ApiError> {
    parse_decimal(s).ok_or_else(|| ApiError::param(format!("{field} must be a decimal string like \"1.25\"")))
}

/// Price string -> ticks on the instrument's grid.
pub fn price_ticks(spec: &InstrumentSpec, field: &str, s: &str) -> Result<i64, ApiError> {
    let d = decimal_field(field, s)?;
    spec.scaling.price_to_ticks(d).map_err(|e| grid_error(field, e, Code::PriceOffGrid))
}

/// Quantity string -> lots on the instrument's grid.
pub fn qty_lots(spec: &InstrumentSpec, field: &str, s: &str) -> Result<i64, ApiError> {
    let d = decimal_field(field, s)?;
    spec.scaling.qty_to_lots(d).map_err(|e| grid_error(field, e, Code::QuantityOffGrid))
}

/// Quote amount string -> quote minor units.
pub fn quote_units(spec: &InstrumentSpec, field: &str, s: &str) -> Result<i64, ApiError> {
    let d = decimal_field(field, s)?;
    Scaling::amount_to_units(d, spec.scaling.quote_decimals).map_err(|e| grid_error(field, e, Code::InvalidParameter))
}

/// Renders a decimal without trailing zeros beyond what the grid needs.
pub fn show(d: Decimal) -> String {
    d.normalize().to_string()
}

/// [`show`] written into a JSON buffer as a string (`"60000.01"`), without
/// an intermediate `String` (the order response's hot path). The digits
/// come straight from the mantissa and scale (trailing zeros dropped, as
/// `normalize` does): `normalize` and `Display` cost about 600 instructions
/// a value, and an order's answer has half a dozen. A test holds the output
/// equal to [`show`]'s for any decimal.
pub fn write_json_decimal(out: &mut Vec<u8>, d: Decimal) {
    let mut scale = d.scale() as usize;
    let mut m = d.mantissa().unsigned_abs();
    // Digits, least significant first, into the end of `buf` (a decimal's
    // mantissa has at most 29 digits).
    let mut buf = [0u8; 40];
    let mut at = buf.len();
    // The same digit loop twice on purpose: typical prices and quantities fit a
    // u64, whose division is much cheaper than u128's (kept as two plain
    // loops rather than one generic over both integer types).
    if let Ok(mut v) = u64::try_from(m) {
        while scale > 0 && v != 0 && v.is_multiple_of(10) {
            v /= 10;
            scale -= 1;
        }
        loop {
            at -= 1;
            buf[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
    } else {
        while scale > 0 && m.is_multiple_of(10) {
            m /= 10;
            scale -= 1;
        }
        loop {
            at -= 1;
            buf[at] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
    }
    let digits = &buf[at..];
    out.push(b'"');
    // Zero prints as "0" whatever its sign and scale (as `normalize` makes it).
    if digits == b"0" {
        out.extend_from_slice(b"0\"");
        return;
    }
    if d.is_sign_negative() {
        out.push(b'-');
    }
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
    out.push(b'"');
}

pub fn price_dec(spec: &InstrumentSpec, ticks: i64) -> Decimal {
    spec.scaling.ticks_to_price(ticks)
}

pub fn qty_dec(spec: &InstrumentSpec, lots: i64) -> Decimal {
    spec.scaling.lots_to_qty(lots)
}

pub fn units_dec(units: i64, decimals: u32) -> Decimal {
    Scaling::units_to_amount(units, decimals)
}

/// Quote amount of `tick_lots` (see [`notional_str`]).
pub fn notional_dec(spec: &InstrumentSpec, tick_lots: i128) -> Decimal {
    // Nothing filled (most answers): no need to derive the tick value.
    if tick_lots == 0 {
        return Decimal::ZERO;
    }
    let tv = spec.units().map(|u| u.tick_value).unwrap_or(0) as i128;
    let units = tick_lots.saturating_mul(tv);
    let units = i64::try_from(units).unwrap_or(i64::MAX);
    units_dec(units, spec.scaling.quote_decimals)
}

pub fn price_str(spec: &InstrumentSpec, ticks: i64) -> String {
    show(spec.scaling.ticks_to_price(ticks))
}

pub fn qty_str(spec: &InstrumentSpec, lots: i64) -> String {
    show(spec.scaling.lots_to_qty(lots))
}

pub fn units_str(units: i64, decimals: u32) -> String {
    show(Scaling::units_to_amount(units, decimals))
}

/// Quote amount of `tick_lots` (price ticks times lots), via the tick value
/// in quote minor units.
pub fn notional_str(spec: &InstrumentSpec, tick_lots: i128) -> String {
    show(notional_dec(spec, tick_lots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec() -> InstrumentSpec {
        InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)
    }

    #[test]
    fn strict_syntax() {
        for bad in ["", ".", "1.", ".5", "-1", "+1", "1e5", " 1", "1 ", "1,5", "0x10", "1.2.3", "NaN", "∞"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert_eq!(parse_decimal("60000.01"), Some(Decimal::new(6_000_001, 2)));
        assert_eq!(parse_decimal("0"), Some(Decimal::ZERO));
        assert_eq!(parse_decimal(&"9".repeat(41)), None);
    }

    #[test]
    fn grid() {
        let s = spec();
        assert_eq!(price_ticks(&s, "price", "60000.01"), Ok(6_000_001));
        assert_eq!(price_ticks(&s, "price", "60000.015").unwrap_err().code, Code::PriceOffGrid as u16);
        assert_eq!(price_ticks(&s, "price", "0").unwrap_err().code, Code::PriceOffGrid as u16);
        assert_eq!(qty_lots(&s, "quantity", "0.000001").unwrap_err().code, Code::QuantityOffGrid as u16);
        assert_eq!(qty_lots(&s, "quantity", "1.5"), Ok(150_000));
        assert_eq!(quote_units(&s, "quote_quantity", "100.5"), Ok(10_050_000_000));
        assert_eq!(price_str(&s, 6_000_001), "60000.01");
        assert_eq!(qty_str(&s, 150_000), "1.5");
    }

    proptest! {
        // Any on-grid value survives ticks -> string -> ticks exactly, and
        // anything with a digit past the grid is refused.
        #[test]
        fn round_trip_and_off_grid(ticks in 1i64..1_000_000_000_000, lots in 1i64..1_000_000_000_000, extra in 1u32..10) {
            let s = spec();
            let p = price_str(&s, ticks);
            prop_assert_eq!(price_ticks(&s, "price", &p), Ok(ticks));
            let q = qty_str(&s, lots);
            prop_assert_eq!(qty_lots(&s, "quantity", &q), Ok(lots));
            let off = if p.contains('.') { format!("{p}{extra}") } else { format!("{p}.{extra}") };
            // Appending a non-zero digit beyond the tick's 2 places is off grid
            // unless it landed inside the 2 places.
            let parsed = parse_decimal(&off).unwrap();
            if (parsed * Decimal::from(100)).fract() != Decimal::ZERO {
                prop_assert!(price_ticks(&s, "price", &off).is_err());
            }
        }

        /// The JSON writer prints exactly what `show` does, for any decimal
        /// (every mantissa size, scale and sign, zeros included).
        #[test]
        fn json_decimal_is_show(lo in any::<u32>(), mid in any::<u32>(), hi in any::<u32>(), neg in any::<bool>(),
            scale in 0u32..=28, small in any::<bool>())
        {
            let d = if small {
                Decimal::from_i128_with_scale(i128::from(lo % 1000) * if neg { -1 } else { 1 }, scale)
            } else {
                Decimal::from_parts(lo, mid, hi, neg, scale)
            };
            let mut out = Vec::new();
            write_json_decimal(&mut out, d);
            prop_assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", show(d)));
        }

        // The parser never panics and only accepts what Decimal parses identically.
        #[test]
        fn parser_total(s in "[0-9.+eE -]{0,45}") {
            if let Some(d) = parse_decimal(&s) {
                prop_assert_eq!(Some(d), Decimal::from_str(&s).ok());
                prop_assert!(!s.contains(['e', 'E', '+', '-', ' ']));
            }
        }
    }
}
