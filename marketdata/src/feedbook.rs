//! The book a feed consumer builds from ITCH messages (and the publisher
//! keeps too, to serve snapshots from exactly what it has sent).

use std::collections::BTreeMap;

use castle_engine::{InstrumentId, Seq, Side, TradingStatus};

use crate::book::{BookError, L3Book};
use crate::encoder::{add_order, locate_of, side_byte, trading_state};
use crate::itch::{Header, InstrumentDefinition, Message, StockDirectory};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedBookError {
    #[error("locate {0}: {1}")]
    Book(u16, BookError),
    #[error("locate {0} is not in the directory")]
    UnknownLocate(u16),
    #[error("invalid side byte {0:#04x}")]
    BadSide(u8),
    #[error("invalid trading state {0:#04x}")]
    BadState(u8),
}

#[derive(Clone, Debug)]
pub struct FeedInstrument {
    pub locate: u16,
    pub directory: StockDirectory,
    pub definition: Option<InstrumentDefinition>,
    pub status: TradingStatus,
    pub book: L3Book,
}

impl FeedInstrument {
    /// The engine instrument id (from the definition; else the locate convention).
    pub fn instrument_id(&self) -> InstrumentId {
        self.definition.map_or(self.locate as InstrumentId - 1, |d| d.instrument_id)
    }
}

/// What a message did, for callers that react to boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    Book(u16),
    /// An engine command is complete: the book reflects engine seq `.0`.
    EngineSeq(Seq),
    SnapshotBegin {
        feed_seq: u64,
        engine_seq: Seq,
    },
    SnapshotEnd {
        feed_seq: u64,
        engine_seq: Seq,
        orders: u64,
    },
    EndOfMessages,
}

#[derive(Clone, Debug, Default)]
pub struct FeedBook {
    instruments: BTreeMap<u16, FeedInstrument>,
    /// Last complete engine command seen.
    pub engine_seq: Seq,
    /// Full engine time of `engine_seq`.
    pub ts: u64,
}

fn side(b: u8) -> Result<Side, FeedBookError> {
    match b {
        b'B' => Ok(Side::Buy),
        b'S' => Ok(Side::Sell),
        other => Err(FeedBookError::BadSide(other)),
    }
}

impl FeedBook {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn instruments(&self) -> impl Iterator<Item = &FeedInstrument> {
        self.instruments.values()
    }

    pub fn by_instrument(&self, id: InstrumentId) -> Option<&FeedInstrument> {
        locate_of(id).ok().and_then(|l| self.instruments.get(&l))
    }

    pub fn clear(&mut self) {
        self.instruments.clear();
        self.engine_seq = 0;
        self.ts = 0;
    }

    fn book(&mut self, locate: u16) -> Result<&mut L3Book, FeedBookError> {
        self.instruments.get_mut(&locate).map(|i| &mut i.book).ok_or(FeedBookError::UnknownLocate(locate))
    }

    /// Applies one message. An error means the stream and the book disagree
    /// (a lost message): the caller must resynchronise from a snapshot.
    pub fn apply(&mut self, m: &Message) -> Result<Applied, FeedBookError> {
        let loc = m.header().locate;
        let be = |e| FeedBookError::Book(loc, e);
        Ok(match *m {
            Message::SystemEvent { code, .. } => {
                if code == b'C' {
                    Applied::EndOfMessages
                } else {
                    Applied::Nothing
                }
            }
            Message::StockDirectory(d) => {
                self.instruments.entry(loc).or_insert_with(|| FeedInstrument {
                    locate: loc,
                    directory: d,
                    definition: None,
                    status: TradingStatus::Open,
                    book: L3Book::new(),
                });
                Applied::Nothing
            }
            Message::InstrumentDefinition(d) => {
                self.instruments.get_mut(&loc).ok_or(FeedBookError::UnknownLocate(loc))?.definition = Some(d);
                Applied::Nothing
            }
            Message::TradingAction { state, reason, .. } => {
                let status = match (state, &reason) {
                    (b'T', _) => TradingStatus::Open,
                    (b'H', b"CLSD") => TradingStatus::Closed,
                    (b'H' | b'P' | b'Q', _) => TradingStatus::Halted,
                    (other, _) => return Err(FeedBookError::BadState(other)),
                };
                self.instruments.get_mut(&loc).ok_or(FeedBookError::UnknownLocate(loc))?.status = status;
                Applied::Nothing
            }
            Message::AddOrder { order, side: s, shares, price, .. } => {
                let s = side(s)?;
                self.book(loc)?.add(order, s, price as i64, shares as i64).map_err(be)?;
                Applied::Book(loc)
            }
            Message::AddOrderWide { order, side: s, shares, price, .. } => {
                let s = side(s)?;
                let qty = i64::try_from(shares).map_err(|_| be(BookError::BadQuantity(order, i64::MAX)))?;
                self.book(loc)?.add(order, s, price, qty).map_err(be)?;
                Applied::Book(loc)
            }
            Message::OrderExecuted { order, shares, .. }
            | Message::OrderExecutedWithPrice { order, shares, .. }
            | Message::OrderCancel { order, shares, .. } => {
                self.book(loc)?.reduce(order, shares as i64).map_err(be)?;
                Applied::Book(loc)
            }
            Message::OrderExecutedWide { order, shares, .. } | Message::OrderCancelWide { order, shares, .. } => {
                let qty = i64::try_from(shares).map_err(|_| be(BookError::BadQuantity(order, i64::MAX)))?;
                self.book(loc)?.reduce(order, qty).map_err(be)?;
                Applied::Book(loc)
            }
            Message::OrderDelete { order, .. } => {
                self.book(loc)?.remove(order).map_err(be)?;
                Applied::Book(loc)
            }
            Message::OrderReplace { order, new_order, shares, price, .. } => {
                self.book(loc)?.replace(order, new_order, price as i64, shares as i64).map_err(be)?;
                Applied::Book(loc)
            }
            // A trade against non-displayed liquidity: the book does not change.
            Message::Trade { .. } => Applied::Nothing,
            Message::EngineSequence { engine_seq, ts, .. } => {
                self.engine_seq = engine_seq;
                self.ts = ts;
                for i in self.instruments.values_mut() {
                    i.book.seq = engine_seq;
                }
                Applied::EngineSeq(engine_seq)
            }
            Message::SnapshotBegin { feed_seq, engine_seq, .. } => Applied::SnapshotBegin { feed_seq, engine_seq },
            Message::SnapshotEnd { feed_seq, engine_seq, orders, .. } => {
                self.engine_seq = engine_seq;
                Applied::SnapshotEnd { feed_seq, engine_seq, orders }
            }
        })
    }

    /// The whole state as a message sequence: 'b', then per instrument 'R',
    /// 'i', 'H' and an 'A' per order in priority order, then 'e'.
    pub fn snapshot_messages(&self, feed_seq: u64, out: &mut Vec<Message>) {
        let h0 = Header { locate: 0, tracking: 0, timestamp: crate::encoder::itch_timestamp(self.ts) };
        out.push(Message::SnapshotBegin { h: h0, feed_seq, engine_seq: self.engine_seq });
        let mut orders = 0u64;
        for i in self.instruments.values() {
            let h = Header { locate: i.locate, ..h0 };
            out.push(Message::StockDirectory(StockDirectory { h, ..i.directory }));
            if let Some(d) = i.definition {
                out.push(Message::InstrumentDefinition(InstrumentDefinition { h, ..d }));
            }
            let (state, reason) = trading_state(i.status);
            out.push(Message::TradingAction { h, stock: i.directory.stock, state, reserved: b' ', reason });
            for s in [Side::Buy, Side::Sell] {
                for o in i.book.orders(s) {
                    orders += 1;
                    // The book holds only positive quantities, so this is 'A' or 'a', never an error.
                    match add_order(h, o.id, side_byte(s), o.qty, i.directory.stock, o.price, self.engine_seq) {
                        Ok(m) => out.push(m),
                        Err(e) => tracing::error!(error = %e, order = o.id, "order left out of the snapshot"),
                    }
                }
            }
        }
        out.push(Message::SnapshotEnd { h: h0, feed_seq, engine_seq: self.engine_seq, orders });
    }
}
