//! Engine events -> ITCH messages.
//!
//! Mapping (FEED.md has the full table): BookAdd -> 'A', Trade -> 'E' on the
//! maker (its shown quantity drops; at zero ITCH semantics remove it, and an
//! iceberg refresh arrives as a fresh 'A'), BookReduce -> 'X', BookRemove ->
//! 'D', InstrumentAdded -> 'R' + Castle 'i' + 'H', TradingStatusChanged ->
//! 'H'. A price or quantity that does not fit ITCH's 32-bit fields goes in
//! Castle's 64-bit variant of the same message ('a', 'w', 'x'), never
//! truncated and never dropped. After the messages of each engine command comes a Castle 'q' so a
//! feed handler knows where the engine's command boundaries are.

use castle_engine::{Event, EventKind, InstrumentId, InstrumentSpec, Seq, Side, Timestamp, TradingStatus};
use rustc_hash::FxHashMap;

use crate::itch::{alpha, Header, InstrumentDefinition, Message, StockDirectory};

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("instrument {0} was not registered with the encoder")]
    UnknownInstrument(InstrumentId),
    #[error("instrument {0} does not fit a 16-bit stock locate")]
    LocateOverflow(InstrumentId),
    #[error("{what} {value} does not fit the 32-bit ITCH field (engine seq {seq})")]
    OutOfRange { what: &'static str, value: i64, seq: Seq },
    #[error("instrument {0}: tick or lot size cannot be expressed as mantissa and scale")]
    Scaling(InstrumentId),
}

/// Stock locate of an instrument: ITCH reserves 0 for system-wide messages.
pub fn locate_of(instrument: InstrumentId) -> Result<u16, EncodeError> {
    u16::try_from(instrument as u64 + 1).map_err(|_| EncodeError::LocateOverflow(instrument))
}

/// ITCH timestamps are nanoseconds since midnight; the full time travels in 'q'.
pub fn itch_timestamp(ts: Timestamp) -> u64 {
    ts % NS_PER_DAY
}

pub fn side_byte(s: Side) -> u8 {
    match s {
        Side::Buy => b'B',
        Side::Sell => b'S',
    }
}

/// Trading Action state and reason for a status ('H' + "CLSD" tells closed from halted).
pub fn trading_state(status: TradingStatus) -> (u8, [u8; 4]) {
    match status {
        TradingStatus::Open => (b'T', *b"    "),
        TradingStatus::Halted => (b'H', *b"HALT"),
        TradingStatus::Closed => (b'H', *b"CLSD"),
    }
}

/// Whether a value goes in ITCH's 32-bit field (else the Castle wide message is used).
pub fn fits_u32(value: i64) -> bool {
    u32::try_from(value).is_ok()
}

/// A quantity for a 64-bit field: only a negative one (never produced by the
/// engine) cannot be sent, and that is an error, not a silent skip.
fn qty_field(value: i64, seq: Seq) -> Result<u64, EncodeError> {
    u64::try_from(value).map_err(|_| EncodeError::OutOfRange { what: "quantity", value, seq })
}

/// 'A' when price and quantity both fit the 32-bit ITCH fields, else Castle 'a'.
pub fn add_order(
    h: Header,
    order: u64,
    side: u8,
    qty: i64,
    stock: [u8; 8],
    price: i64,
    seq: Seq,
) -> Result<Message, EncodeError> {
    if fits_u32(qty) && fits_u32(price) {
        return Ok(Message::AddOrder { h, order, side, shares: qty as u32, stock, price: price as u32 });
    }
    Ok(Message::AddOrderWide { h, order, side, shares: qty_field(qty, seq)?, stock, price })
}

fn decimal_parts(d: rust_decimal::Decimal) -> Option<(i64, u8)> {
    let n = d.normalize();
    Some((i64::try_from(n.mantissa()).ok()?, u8::try_from(n.scale()).ok()?))
}

/// The Castle 'i' message for a spec.
pub fn definition(spec: &InstrumentSpec, h: Header) -> Result<InstrumentDefinition, EncodeError> {
    let (tick_mantissa, tick_scale) = decimal_parts(spec.scaling.tick_size).ok_or(EncodeError::Scaling(spec.id))?;
    let (lot_mantissa, lot_scale) = decimal_parts(spec.scaling.lot_size).ok_or(EncodeError::Scaling(spec.id))?;
    Ok(InstrumentDefinition {
        h,
        symbol: alpha(spec.symbol.as_str()),
        stock: alpha(spec.symbol.as_str()),
        instrument_id: spec.id,
        base_asset: spec.base,
        quote_asset: spec.quote,
        tick_mantissa,
        tick_scale,
        lot_mantissa,
        lot_scale,
        base_decimals: spec.scaling.base_decimals.min(255) as u8,
        quote_decimals: spec.scaling.quote_decimals.min(255) as u8,
        min_qty: spec.min_qty.max(0) as u64,
    })
}

/// The 'R' message for a spec: a crypto pair as an ITCH "stock".
pub fn directory(spec: &InstrumentSpec, h: Header) -> StockDirectory {
    StockDirectory {
        h,
        stock: alpha(spec.symbol.as_str()),
        market_category: b' ',
        financial_status: b' ',
        round_lot_size: 1,
        round_lots_only: b'N',
        issue_classification: b'Z',
        issue_sub_type: *b"Z ",
        authenticity: b'P',
        short_sale_threshold: b' ',
        ipo_flag: b' ',
        luld_tier: b' ',
        etp_flag: b' ',
        etp_leverage_factor: 0,
        inverse_indicator: b' ',
    }
}

#[derive(Debug, Default)]
pub struct FeedEncoder {
    specs: FxHashMap<InstrumentId, ([u8; 8], InstrumentSpec)>,
}

impl FeedEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes an instrument known; call before its InstrumentAdded event is encoded.
    pub fn register(&mut self, spec: InstrumentSpec) {
        self.specs.insert(spec.id, (alpha(spec.symbol.as_str()), spec));
    }

    pub fn spec(&self, id: InstrumentId) -> Option<&InstrumentSpec> {
        self.specs.get(&id).map(|(_, s)| s)
    }

    fn stock(&self, id: InstrumentId) -> Result<[u8; 8], EncodeError> {
        self.specs.get(&id).map(|(s, _)| *s).ok_or(EncodeError::UnknownInstrument(id))
    }

    /// Encodes whole engine commands' events (a slice must not end in the
    /// middle of a command: the 'q' marker after it says the command is complete).
    /// An event that cannot be represented is skipped and reported as the
    /// first error once the rest has been encoded, so one bad value does not
    /// stall the feed.
    pub fn encode(&mut self, events: &[Event], out: &mut Vec<Message>) -> Result<(), EncodeError> {
        let mut first_err = None;
        let mut pending: Option<(Seq, Timestamp)> = None;
        for e in events {
            if let Some((seq, ts)) = pending {
                if seq != e.seq {
                    out.push(Self::marker(seq, ts));
                    pending = None;
                }
            }
            let before = out.len();
            if let Err(err) = self.encode_one(e, out) {
                out.truncate(before);
                tracing::error!(error = %err, "event not representable on the feed");
                first_err.get_or_insert(err);
            }
            if out.len() > before {
                pending = Some((e.seq, e.ts));
            }
        }
        if let Some((seq, ts)) = pending {
            out.push(Self::marker(seq, ts));
        }
        first_err.map_or(Ok(()), Err)
    }

    fn marker(seq: Seq, ts: Timestamp) -> Message {
        Message::EngineSequence {
            h: Header { locate: 0, tracking: 0, timestamp: itch_timestamp(ts) },
            engine_seq: seq,
            ts,
        }
    }

    fn encode_one(&self, e: &Event, out: &mut Vec<Message>) -> Result<(), EncodeError> {
        let hdr = |inst: InstrumentId| -> Result<Header, EncodeError> {
            Ok(Header { locate: locate_of(inst)?, tracking: 0, timestamp: itch_timestamp(e.ts) })
        };
        let seq = e.seq;
        match e.kind {
            EventKind::InstrumentAdded { instrument } => {
                let h = hdr(instrument)?;
                let spec = self.spec(instrument).ok_or(EncodeError::UnknownInstrument(instrument))?;
                out.push(Message::StockDirectory(directory(spec, h)));
                out.push(Message::InstrumentDefinition(definition(spec, h)?));
                let (state, reason) = trading_state(TradingStatus::Open);
                out.push(Message::TradingAction { h, stock: self.stock(instrument)?, state, reserved: b' ', reason });
            }
            EventKind::TradingStatusChanged { instrument, status } => {
                let (state, reason) = trading_state(status);
                out.push(Message::TradingAction {
                    h: hdr(instrument)?,
                    stock: self.stock(instrument)?,
                    state,
                    reserved: b' ',
                    reason,
                });
            }
            EventKind::BookAdd { instrument, order_id, side, price, qty } => {
                let stock = self.stock(instrument)?;
                out.push(add_order(hdr(instrument)?, order_id, side_byte(side), qty, stock, price, seq)?)
            }
            EventKind::BookReduce { instrument, order_id, by } => {
                let (h, order) = (hdr(instrument)?, order_id);
                out.push(if fits_u32(by) {
                    Message::OrderCancel { h, order, shares: by as u32 }
                } else {
                    Message::OrderCancelWide { h, order, shares: qty_field(by, seq)? }
                })
            }
            EventKind::BookRemove { instrument, order_id } => {
                out.push(Message::OrderDelete { h: hdr(instrument)?, order: order_id })
            }
            EventKind::Trade { trade_id, instrument, qty, maker_order, .. } => {
                let (h, order, match_number) = (hdr(instrument)?, maker_order, trade_id);
                out.push(if fits_u32(qty) {
                    Message::OrderExecuted { h, order, shares: qty as u32, match_number }
                } else {
                    Message::OrderExecutedWide { h, order, shares: qty_field(qty, seq)?, match_number }
                })
            }
            _ => {}
        }
        Ok(())
    }
}
