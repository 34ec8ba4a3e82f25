//! Nasdaq TotalView-ITCH 5.0 message layouts plus Castle's own message types
//! (see FEED.md for every byte). Hand-written: decoding reads big-endian
//! fields straight out of the datagram with bounds checked once per message,
//! no allocation and no copies beyond the fixed-size fields themselves.
//!
//! The codec is purely syntactic: alpha fields (side, trading state, ...)
//! are carried as raw bytes so any well-sized message round-trips; meaning
//! is given by [`crate::feedbook`], which refuses values it does not know.

/// Every ITCH message starts with type, stock locate, tracking number, and a
/// 6-byte timestamp (nanoseconds since midnight).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub locate: u16,
    pub tracking: u16,
    /// 48 bits; higher bits are dropped on encode.
    pub timestamp: u64,
}

/// The largest timestamp the 6-byte field holds.
pub const TIMESTAMP_MAX: u64 = (1 << 48) - 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StockDirectory {
    pub h: Header,
    pub stock: [u8; 8],
    pub market_category: u8,
    pub financial_status: u8,
    pub round_lot_size: u32,
    pub round_lots_only: u8,
    pub issue_classification: u8,
    pub issue_sub_type: [u8; 2],
    pub authenticity: u8,
    pub short_sale_threshold: u8,
    pub ipo_flag: u8,
    pub luld_tier: u8,
    pub etp_flag: u8,
    pub etp_leverage_factor: u32,
    pub inverse_indicator: u8,
}

/// Castle 'i': how the ITCH integer fields of one instrument map to decimals.
/// A price field is a count of ticks (`tick_mantissa * 10^-tick_scale` each),
/// a shares field a count of lots (`lot_mantissa * 10^-lot_scale` each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstrumentDefinition {
    pub h: Header,
    /// Full symbol, ASCII, right-padded with spaces.
    pub symbol: [u8; 16],
    /// The 8-byte ITCH stock name used by this instrument's other messages.
    pub stock: [u8; 8],
    pub instrument_id: u32,
    pub base_asset: u32,
    pub quote_asset: u32,
    pub tick_mantissa: i64,
    pub tick_scale: u8,
    pub lot_mantissa: i64,
    pub lot_scale: u8,
    pub base_decimals: u8,
    pub quote_decimals: u8,
    /// Minimum order size in lots.
    pub min_qty: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// 'S'
    SystemEvent { h: Header, code: u8 },
    /// 'R'
    StockDirectory(StockDirectory),
    /// 'H'
    TradingAction { h: Header, stock: [u8; 8], state: u8, reserved: u8, reason: [u8; 4] },
    /// 'A' (Add Order, no MPID attribution)
    AddOrder { h: Header, order: u64, side: u8, shares: u32, stock: [u8; 8], price: u32 },
    /// 'E'
    OrderExecuted { h: Header, order: u64, shares: u32, match_number: u64 },
    /// 'C'
    OrderExecutedWithPrice { h: Header, order: u64, shares: u32, match_number: u64, printable: u8, price: u32 },
    /// 'X'
    OrderCancel { h: Header, order: u64, shares: u32 },
    /// 'D'
    OrderDelete { h: Header, order: u64 },
    /// 'U'
    OrderReplace { h: Header, order: u64, new_order: u64, shares: u32, price: u32 },
    /// 'P' (non-cross trade)
    Trade { h: Header, order: u64, side: u8, shares: u32, stock: [u8; 8], price: u32, match_number: u64 },
    /// Castle 'i'
    InstrumentDefinition(InstrumentDefinition),
    /// Castle 'q': every message of engine command `engine_seq` has been sent;
    /// `ts` is the full engine timestamp (ns since the Unix epoch).
    EngineSequence { h: Header, engine_seq: u64, ts: u64 },
    /// Castle 'b': a snapshot follows, consistent with feed sequence `feed_seq`
    /// (the first MoldUDP64 sequence number not included).
    SnapshotBegin { h: Header, feed_seq: u64, engine_seq: u64 },
    /// Castle 'e': "snapshot at sequence N" — apply live messages from `feed_seq` on.
    SnapshotEnd { h: Header, feed_seq: u64, engine_seq: u64, orders: u64 },
    /// Castle 'a': Add Order with 64-bit fields, sent instead of 'A' when
    /// the price (signed) or the quantity does not fit ITCH's 32-bit fields.
    AddOrderWide { h: Header, order: u64, side: u8, shares: u64, stock: [u8; 8], price: i64 },
    /// Castle 'w': Order Executed with a 64-bit quantity (instead of 'E').
    OrderExecutedWide { h: Header, order: u64, shares: u64, match_number: u64 },
    /// Castle 'x': Order Cancel with a 64-bit quantity (instead of 'X').
    OrderCancelWide { h: Header, order: u64, shares: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("message type {ty:?} must be {want} bytes, got {got}")]
    BadLength { ty: char, want: usize, got: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {have} bytes cannot hold a {need}-byte message")]
pub struct BufferTooSmall {
    pub need: usize,
    pub have: usize,
}

/// Message lengths, type byte included.
pub mod len {
    pub const SYSTEM_EVENT: usize = 12;
    pub const STOCK_DIRECTORY: usize = 39;
    pub const TRADING_ACTION: usize = 25;
    pub const ADD_ORDER: usize = 36;
    pub const ORDER_EXECUTED: usize = 31;
    pub const ORDER_EXECUTED_WITH_PRICE: usize = 36;
    pub const ORDER_CANCEL: usize = 23;
    pub const ORDER_DELETE: usize = 19;
    pub const ORDER_REPLACE: usize = 35;
    pub const TRADE: usize = 44;
    pub const INSTRUMENT_DEFINITION: usize = 75;
    pub const ENGINE_SEQUENCE: usize = 27;
    pub const SNAPSHOT_BEGIN: usize = 27;
    pub const SNAPSHOT_END: usize = 35;
    pub const ADD_ORDER_WIDE: usize = 44;
    pub const ORDER_EXECUTED_WIDE: usize = 35;
    pub const ORDER_CANCEL_WIDE: usize = 27;
    /// The longest message: callers size stack buffers with it.
    pub const MAX: usize = 75;
}

/// Big-endian reader over a buffer whose length was checked up front, so
/// the individual reads cannot go out of bounds.
struct R<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> R<'a> {
    #[inline]
    fn arr<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[self.at..self.at + N]);
        self.at += N;
        a
    }
    #[inline]
    fn u8(&mut self) -> u8 {
        let v = self.b[self.at];
        self.at += 1;
        v
    }
    #[inline]
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.arr())
    }
    #[inline]
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.arr())
    }
    #[inline]
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.arr())
    }
    #[inline]
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.arr())
    }
    #[inline]
    fn ts(&mut self) -> u64 {
        let a: [u8; 6] = self.arr();
        let mut w = [0u8; 8];
        w[2..].copy_from_slice(&a);
        u64::from_be_bytes(w)
    }
    #[inline]
    fn header(&mut self) -> Header {
        Header { locate: self.u16(), tracking: self.u16(), timestamp: self.ts() }
    }
}

struct W<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl W<'_> {
    #[inline]
    fn bytes(&mut self, v: &[u8]) {
        self.b[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }
    #[inline]
    fn u8(&mut self, v: u8) {
        self.b[self.at] = v;
        self.at += 1;
    }
    #[inline]
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes())
    }
    #[inline]
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes())
    }
    #[inline]
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes())
    }
    #[inline]
    fn i64(&mut self, v: i64) {
        self.bytes(&v.to_be_bytes())
    }
    #[inline]
    fn header(&mut self, ty: u8, h: &Header) {
        self.u8(ty);
        self.u16(h.locate);
        self.u16(h.tracking);
        self.bytes(&(h.timestamp & TIMESTAMP_MAX).to_be_bytes()[2..]);
    }
}

impl Message {
    pub fn type_byte(&self) -> u8 {
        match self {
            Message::SystemEvent { .. } => b'S',
            Message::StockDirectory(_) => b'R',
            Message::TradingAction { .. } => b'H',
            Message::AddOrder { .. } => b'A',
            Message::OrderExecuted { .. } => b'E',
            Message::OrderExecutedWithPrice { .. } => b'C',
            Message::OrderCancel { .. } => b'X',
            Message::OrderDelete { .. } => b'D',
            Message::OrderReplace { .. } => b'U',
            Message::Trade { .. } => b'P',
            Message::InstrumentDefinition(_) => b'i',
            Message::EngineSequence { .. } => b'q',
            Message::SnapshotBegin { .. } => b'b',
            Message::SnapshotEnd { .. } => b'e',
            Message::AddOrderWide { .. } => b'a',
            Message::OrderExecutedWide { .. } => b'w',
            Message::OrderCancelWide { .. } => b'x',
        }
    }

    pub fn header(&self) -> &Header {
        match self {
            Message::SystemEvent { h, .. }
            | Message::TradingAction { h, .. }
            | Message::AddOrder { h, .. }
            | Message::OrderExecuted { h, .. }
            | Message::OrderExecutedWithPrice { h, .. }
            | Message::OrderCancel { h, .. }
            | Message::OrderDelete { h, .. }
            | Message::OrderReplace { h, .. }
            | Message::Trade { h, .. }
            | Message::EngineSequence { h, .. }
            | Message::SnapshotBegin { h, .. }
            | Message::SnapshotEnd { h, .. }
            | Message::AddOrderWide { h, .. }
            | Message::OrderExecutedWide { h, .. }
            | Message::OrderCancelWide { h, .. } => h,
            Message::StockDirectory(d) => &d.h,
            Message::InstrumentDefinition(d) => &d.h,
        }
    }

    /// Encoded length, type byte included.
    pub fn encoded_len(&self) -> usize {
        expected_len(self.type_byte()).unwrap_or(0)
    }

    /// Writes the message at the start of `buf`; returns its length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let need = self.encoded_len();
        if buf.len() < need {
            return Err(BufferTooSmall { need, have: buf.len() });
        }
        let mut w = W { b: &mut buf[..need], at: 0 };
        w.header(self.type_byte(), self.header());
        match *self {
            Message::SystemEvent { code, .. } => w.u8(code),
            Message::StockDirectory(d) => {
                w.bytes(&d.stock);
                w.u8(d.market_category);
                w.u8(d.financial_status);
                w.u32(d.round_lot_size);
                w.u8(d.round_lots_only);
                w.u8(d.issue_classification);
                w.bytes(&d.issue_sub_type);
                w.u8(d.authenticity);
                w.u8(d.short_sale_threshold);
                w.u8(d.ipo_flag);
                w.u8(d.luld_tier);
                w.u8(d.etp_flag);
                w.u32(d.etp_leverage_factor);
                w.u8(d.inverse_indicator);
            }
            Message::TradingAction { stock, state, reserved, reason, .. } => {
                w.bytes(&stock);
                w.u8(state);
                w.u8(reserved);
                w.bytes(&reason);
            }
            Message::AddOrder { order, side, shares, stock, price, .. } => {
                w.u64(order);
                w.u8(side);
                w.u32(shares);
                w.bytes(&stock);
                w.u32(price);
            }
            Message::OrderExecuted { order, shares, match_number, .. } => {
                w.u64(order);
                w.u32(shares);
                w.u64(match_number);
            }
            Message::OrderExecutedWithPrice { order, shares, match_number, printable, price, .. } => {
                w.u64(order);
                w.u32(shares);
                w.u64(match_number);
                w.u8(printable);
                w.u32(price);
            }
            Message::OrderCancel { order, shares, .. } => {
                w.u64(order);
                w.u32(shares);
            }
            Message::OrderDelete { order, .. } => w.u64(order),
            Message::OrderReplace { order, new_order, shares, price, .. } => {
                w.u64(order);
                w.u64(new_order);
                w.u32(shares);
                w.u32(price);
            }
            Message::Trade { order, side, shares, stock, price, match_number, .. } => {
                w.u64(order);
                w.u8(side);
                w.u32(shares);
                w.bytes(&stock);
                w.u32(price);
                w.u64(match_number);
            }
            Message::InstrumentDefinition(d) => {
                w.bytes(&d.symbol);
                w.bytes(&d.stock);
                w.u32(d.instrument_id);
                w.u32(d.base_asset);
                w.u32(d.quote_asset);
                w.i64(d.tick_mantissa);
                w.u8(d.tick_scale);
                w.i64(d.lot_mantissa);
                w.u8(d.lot_scale);
                w.u8(d.base_decimals);
                w.u8(d.quote_decimals);
                w.u64(d.min_qty);
            }
            Message::EngineSequence { engine_seq, ts, .. } => {
                w.u64(engine_seq);
                w.u64(ts);
            }
            Message::SnapshotBegin { feed_seq, engine_seq, .. } => {
                w.u64(feed_seq);
                w.u64(engine_seq);
            }
            Message::SnapshotEnd { feed_seq, engine_seq, orders, .. } => {
                w.u64(feed_seq);
                w.u64(engine_seq);
                w.u64(orders);
            }
            Message::AddOrderWide { order, side, shares, stock, price, .. } => {
                w.u64(order);
                w.u8(side);
                w.u64(shares);
                w.bytes(&stock);
                w.i64(price);
            }
            Message::OrderExecutedWide { order, shares, match_number, .. } => {
                w.u64(order);
                w.u64(shares);
                w.u64(match_number);
            }
            Message::OrderCancelWide { order, shares, .. } => {
                w.u64(order);
                w.u64(shares);
            }
        }
        debug_assert_eq!(w.at, need);
        Ok(need)
    }

    /// Appends the encoded message to `out`.
    pub fn encode_to_vec(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; len::MAX];
        // The stack buffer holds the longest message, so this cannot fail.
        if let Ok(n) = self.encode(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Decodes one message (exactly one: the length must match its type).
    pub fn decode(b: &[u8]) -> Result<Message, DecodeError> {
        let ty = *b.first().ok_or(DecodeError::Empty)?;
        let want = expected_len(ty).ok_or(DecodeError::UnknownType(ty))?;
        if b.len() != want {
            return Err(DecodeError::BadLength { ty: ty as char, want, got: b.len() });
        }
        let mut r = R { b, at: 1 };
        let h = r.header();
        Ok(match ty {
            b'S' => Message::SystemEvent { h, code: r.u8() },
            b'R' => Message::StockDirectory(StockDirectory {
                h,
                stock: r.arr(),
                market_category: r.u8(),
                financial_status: r.u8(),
                round_lot_size: r.u32(),
                round_lots_only: r.u8(),
                issue_classification: r.u8(),
                issue_sub_type: r.arr(),
                authenticity: r.u8(),
                short_sale_threshold: r.u8(),
                ipo_flag: r.u8(),
                luld_tier: r.u8(),
                etp_flag: r.u8(),
                etp_leverage_factor: r.u32(),
                inverse_indicator: r.u8(),
            }),
            b'H' => Message::TradingAction { h, stock: r.arr(), state: r.u8(), reserved: r.u8(), reason: r.arr() },
            b'A' => {
                Message::AddOrder { h, order: r.u64(), side: r.u8(), shares: r.u32(), stock: r.arr(), price: r.u32() }
            }
            b'E' => Message::OrderExecuted { h, order: r.u64(), shares: r.u32(), match_number: r.u64() },
            b'C' => Message::OrderExecutedWithPrice {
                h,
                order: r.u64(),
                shares: r.u32(),
                match_number: r.u64(),
                printable: r.u8(),
                price: r.u32(),
            },
            b'X' => Message::OrderCancel { h, order: r.u64(), shares: r.u32() },
            b'D' => Message::OrderDelete { h, order: r.u64() },
            b'U' => Message::OrderReplace { h, order: r.u64(), new_order: r.u64(), shares: r.u32(), price: r.u32() },
            b'P' => Message::Trade {
                h,
                order: r.u64(),
                side: r.u8(),
                shares: r.u32(),
                stock: r.arr(),
                price: r.u32(),
                match_number: r.u64(),
            },
            b'i' => Message::InstrumentDefinition(InstrumentDefinition {
                h,
                symbol: r.arr(),
                stock: r.arr(),
                instrument_id: r.u32(),
                base_asset: r.u32(),
                quote_asset: r.u32(),
                tick_mantissa: r.i64(),
                tick_scale: r.u8(),
                lot_mantissa: r.i64(),
                lot_scale: r.u8(),
                base_decimals: r.u8(),
                quote_decimals: r.u8(),
                min_qty: r.u64(),
            }),
            b'q' => Message::EngineSequence { h, engine_seq: r.u64(), ts: r.u64() },
            b'b' => Message::SnapshotBegin { h, feed_seq: r.u64(), engine_seq: r.u64() },
            b'e' => Message::SnapshotEnd { h, feed_seq: r.u64(), engine_seq: r.u64(), orders: r.u64() },
            b'a' => Message::AddOrderWide {
                h,
                order: r.u64(),
                side: r.u8(),
                shares: r.u64(),
                stock: r.arr(),
                price: r.i64(),
            },
            b'w' => Message::OrderExecutedWide { h, order: r.u64(), shares: r.u64(), match_number: r.u64() },
            b'x' => Message::OrderCancelWide { h, order: r.u64(), shares: r.u64() },
            // `expected_len` knows exactly the types matched above.
            other => return Err(DecodeError::UnknownType(other)),
        })
    }
}

/// Length of a message of type `ty`, or None for a type this codec does not know.
pub const fn expected_len(ty: u8) -> Option<usize> {
    Some(match ty {
        b'S' => len::SYSTEM_EVENT,
        b'R' => len::STOCK_DIRECTORY,
        b'H' => len::TRADING_ACTION,
        b'A' => len::ADD_ORDER,
        b'E' => len::ORDER_EXECUTED,
        b'C' => len::ORDER_EXECUTED_WITH_PRICE,
        b'X' => len::ORDER_CANCEL,
        b'D' => len::ORDER_DELETE,
        b'U' => len::ORDER_REPLACE,
        b'P' => len::TRADE,
        b'i' => len::INSTRUMENT_DEFINITION,
        b'q' => len::ENGINE_SEQUENCE,
        b'b' => len::SNAPSHOT_BEGIN,
        b'e' => len::SNAPSHOT_END,
        b'a' => len::ADD_ORDER_WIDE,
        b'w' => len::ORDER_EXECUTED_WIDE,
        b'x' => len::ORDER_CANCEL_WIDE,
        _ => return None,
    })
}

/// Space-padded fixed-width ASCII, as ITCH alpha fields are.
pub fn alpha<const N: usize>(s: &str) -> [u8; N] {
    let mut a = [b' '; N];
    for (d, c) in a.iter_mut().zip(s.bytes()) {
        *d = c;
    }
    a
}

/// An alpha field without its padding.
pub fn alpha_str(a: &[u8]) -> &str {
    let end = a.iter().rposition(|&c| c != b' ' && c != 0).map_or(0, |i| i + 1);
    std::str::from_utf8(&a[..end]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_the_spec() {
        let h = Header { locate: 1, tracking: 0, timestamp: 5 };
        let add = Message::AddOrder { h, order: 7, side: b'B', shares: 100, stock: alpha("BTC-USDT"), price: 123 };
        let mut v = Vec::new();
        add.encode_to_vec(&mut v);
        assert_eq!(v.len(), 36);
        assert_eq!(&v[..3], &[b'A', 0, 1]);
        assert_eq!(&v[5..11], &[0, 0, 0, 0, 0, 5]);
        assert_eq!(Message::decode(&v), Ok(add));
        assert_eq!(Message::decode(&v[..35]), Err(DecodeError::BadLength { ty: 'A', want: 36, got: 35 }));
        assert_eq!(Message::decode(b"Z"), Err(DecodeError::UnknownType(b'Z')));
        assert_eq!(Message::decode(b""), Err(DecodeError::Empty));
        assert_eq!(alpha_str(&alpha::<8>("BTC")), "BTC");
        for (ty, want) in [(b'a', 44), (b'w', 35), (b'x', 27)] {
            assert_eq!(expected_len(ty), Some(want));
        }
        let wide =
            Message::AddOrderWide { h, order: 7, side: b'S', shares: 1 << 40, stock: alpha("X"), price: -(1 << 35) };
        let mut v = Vec::new();
        wide.encode_to_vec(&mut v);
        assert_eq!(v.len(), 44);
        assert_eq!(&v[20..28], &(1u64 << 40).to_be_bytes());
        assert_eq!(&v[36..44], &(-(1i64 << 35)).to_be_bytes());
        assert_eq!(Message::decode(&v), Ok(wide));
    }
}
