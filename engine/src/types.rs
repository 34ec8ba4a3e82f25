//! Plain integer identifiers and quantities used throughout the engine.
//!
//! Prices are integer ticks, quantities integer lots and amounts integer minor
//! units of an asset. Floats never appear: conversions from decimal strings
//! happen at the edges through [`crate::instrument::Scaling`].

/// An account (a trading participant's wallet). Chosen by the edges.
pub type AccountId = u32;
/// An asset (BTC, USDT, ...). Dense small integer below [`crate::Limits::max_assets`].
pub type AssetId = u32;
/// An instrument (BTC-USDT). Dense small integer below [`crate::Limits::max_instruments`].
pub type InstrumentId = u32;
/// Engine-assigned order id, unique for the life of the engine and never reused.
pub type OrderId = u64;
/// Price in ticks of the instrument.
pub type Price = i64;
/// Quantity in lots of the instrument's base asset.
pub type Qty = i64;
/// An amount of an asset in its minor units.
pub type Amount = i64;
/// Engine sequence number: one per command, strictly increasing.
pub type Seq = u64;
/// Nanoseconds since the Unix epoch, always supplied by the caller.
pub type Timestamp = u64;

/// The account that receives every fee. It cannot trade.
pub const FEE_ACCOUNT: AccountId = 0;

/// Largest price, quantity or amount the engine accepts. Keeping every value
/// below 2^62 means sums of two never overflow an i64 and products fit an i128.
pub const MAX_VALUE: i64 = 1 << 62;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, arbitrary::Arbitrary)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// True when a resting order at `resting` is at least as good, for an
    /// incoming order on `self` side with limit `limit`, as the limit itself:
    /// i.e. the two prices cross.
    pub const fn crosses(self, limit: Price, resting: Price) -> bool {
        match self {
            Side::Buy => resting <= limit,
            Side::Sell => resting >= limit,
        }
    }

    /// True when `a` is a strictly better price than `b` for an order on this side.
    pub const fn better(self, a: Price, b: Price) -> bool {
        match self {
            Side::Buy => a > b,
            Side::Sell => a < b,
        }
    }
}

/// Client order id: up to 36 ASCII bytes, stored inline so orders and events
/// stay `Copy` and allocation free. Unused bytes are zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, arbitrary::Arbitrary)]
pub struct ClientOrderId(pub [u8; ClientOrderId::LEN]);

impl Default for ClientOrderId {
    fn default() -> Self {
        ClientOrderId([0; Self::LEN])
    }
}

impl ClientOrderId {
    pub const LEN: usize = 36;

    /// Builds an id from printable ASCII (0x21..=0x7e), at most 36 bytes.
    pub fn new(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > Self::LEN || !b.iter().all(|c| (0x21..=0x7e).contains(c)) {
            return None;
        }
        let mut id = [0u8; Self::LEN];
        id[..b.len()].copy_from_slice(b);
        Some(ClientOrderId(id))
    }

    /// An id made from a number, handy for tests and load generators.
    pub fn from_u64(n: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut v = n;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let mut id = [0u8; Self::LEN];
        id[..buf.len() - i].copy_from_slice(&buf[i..]);
        ClientOrderId(id)
    }

    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }

    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(Self::LEN);
        // Only printable ASCII goes in through `new`; fuzzed ids may hold
        // anything, so fall back to an empty string rather than panic.
        std::str::from_utf8(&self.0[..end]).unwrap_or("")
    }
}

impl std::fmt::Debug for ClientOrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Instrument symbol, up to 16 ASCII bytes inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, arbitrary::Arbitrary)]
pub struct Symbol(pub [u8; 16]);

impl Symbol {
    pub fn new(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 16 || !b.iter().all(|c| (0x21..=0x7e).contains(c)) {
            return None;
        }
        let mut id = [0u8; 16];
        id[..b.len()].copy_from_slice(b);
        Some(Symbol(id))
    }

    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        std::str::from_utf8(&self.0[..end]).unwrap_or("")
    }
}

impl std::fmt::Debug for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_order_id_round_trips_and_rejects_bad_input() {
        assert_eq!(ClientOrderId::new("abc-1").unwrap().as_str(), "abc-1");
        assert_eq!(ClientOrderId::from_u64(0).as_str(), "0");
        assert_eq!(ClientOrderId::from_u64(u64::MAX).as_str(), "18446744073709551615");
        assert!(ClientOrderId::new("").is_none());
        assert!(ClientOrderId::new("has space").is_none());
        assert!(ClientOrderId::new(&"x".repeat(37)).is_none());
        assert!(ClientOrderId::new(&"x".repeat(36)).is_some());
    }

    #[test]
    fn crossing_is_inclusive_and_side_aware() {
        assert!(Side::Buy.crosses(100, 100));
        assert!(Side::Buy.crosses(100, 99));
        assert!(!Side::Buy.crosses(100, 101));
        assert!(Side::Sell.crosses(100, 101));
        assert!(!Side::Sell.crosses(100, 99));
    }
}
