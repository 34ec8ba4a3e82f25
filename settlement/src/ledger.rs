//! The rows the ledger stores, as plain structs shared by the projector and every backend.
//!
//! # Posting model
//!
//! Every (account, asset) pair has three sub-ledger accounts: `available`, `locked` (the
//! engine's holds) and `external` (the world outside the venue: a deposit moves money from
//! `external` into `available`, a withdrawal back out). One [`Entry`] row is one movement on
//! one (account, asset) pair and carries its three legs; the legs of all rows of one engine
//! command (one sequence number) sum to zero per asset. That is double entry: a trade's rows
//! move quote from the buyer's `locked` to the seller's and the fee account's `available`, and
//! base the other way, summing to zero; a deposit's single row sums to zero by itself.
//! The running balance of each sub-ledger is in [`BalanceRow`], updated in the same database
//! transaction; `available` and `locked` can never be negative (CHECK constraints),
//! `external` is minus the pair's net deposits.

use castle_engine::{AccountId, Amount, AssetId, InstrumentId, OrderId, Seq};

/// Why an entry was made (stored as a small integer; never renumber).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum EntryKind {
    Deposit = 1,
    Withdrawal = 2,
    /// A fill's movement on the buyer's or seller's balances (reference: trade id).
    Trade = 3,
    /// A fill's fee, credited to the fee account 0 (reference: trade id).
    Fee = 4,
    /// Funds locked for an order (accepted, replaced, triggered; reference: order id).
    Hold = 5,
    /// Funds released from an order's hold (cancelled, expired, ...; reference: order id).
    Release = 6,
    /// A balance change with no preceding cause in the command (never expected; recorded, not lost).
    Other = 7,
}

impl EntryKind {
    pub fn from_i16(v: i16) -> Option<EntryKind> {
        Some(match v {
            1 => EntryKind::Deposit,
            2 => EntryKind::Withdrawal,
            3 => EntryKind::Trade,
            4 => EntryKind::Fee,
            5 => EntryKind::Hold,
            6 => EntryKind::Release,
            7 => EntryKind::Other,
            _ => return None,
        })
    }
}

/// One movement on one (account, asset) pair, with its three legs. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: Seq,
    /// Position of the row within its sequence number (0, 1, ...).
    pub idx: u32,
    pub ts: u64,
    pub account: AccountId,
    pub asset: AssetId,
    pub kind: EntryKind,
    /// Trade id for trades and fees, order id for holds and releases, 0 otherwise.
    pub reference: u64,
    pub available: Amount,
    pub locked: Amount,
    pub external: Amount,
}

/// One fill, exactly as the engine reported it. Unique by trade id and by (seq, idx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillRow {
    pub trade_id: u64,
    pub seq: Seq,
    /// Index of the Trade event within its command's events.
    pub idx: u32,
    pub ts: u64,
    pub instrument: InstrumentId,
    pub price: i64,
    pub qty: i64,
    /// 0 buy, 1 sell.
    pub aggressor: i16,
    pub maker_order: OrderId,
    pub taker_order: OrderId,
    pub maker_account: AccountId,
    pub taker_account: AccountId,
    pub maker_fee: Amount,
    pub taker_fee: Amount,
}

/// Order status codes (stored; never renumber).
pub mod status {
    pub const OPEN: i16 = 0;
    pub const FILLED: i16 = 1;
    pub const CANCELLED: i16 = 2;
}

/// The last known state of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: OrderId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub client_order_id: String,
    /// 0 buy, 1 sell.
    pub side: i16,
    /// 0 limit, 1 market, 2 stop-market, 3 stop-limit.
    pub kind: i16,
    pub price: i64,
    pub stop_price: i64,
    /// Base quantity in lots (0 for a quote-budget market order).
    pub qty: i64,
    /// 0 GTC, 1 IOC, 2 FOK, 3 GTD, 4 DAY.
    pub tif: i16,
    pub status: i16,
    /// Engine cancel reason code when cancelled, else 0.
    pub cancel_reason: i16,
    pub filled: i64,
    pub leaves: i64,
    pub created_seq: Seq,
    pub created_ts: u64,
    pub updated_seq: Seq,
    pub updated_ts: u64,
    /// Good-till-date expiry (engine time, ns) for GTD orders, else 0.
    pub expire_ts: u64,
    /// Post-only flag, iceberg display quantity (lots; 0 shows everything) and self-trade
    /// prevention mode (the engine codec's code: 0 none, 1 cancel newest, 2 cancel oldest,
    /// 3 cancel both, 4 decrement and cancel) as the order was placed, from the engine's
    /// `OrderAccepted`. `stp` `None`: the order named no mode (the account's applies).
    /// All `None` in rows written before the event carried the options.
    pub post_only: Option<bool>,
    pub display_qty: Option<i64>,
    pub stp: Option<i16>,
    /// Sum of price * qty over the order's fills (ticks * lots; the quote filled, before
    /// the instrument's tick value), so history needs no index of fills by order.
    /// Saturates at `i64::MAX` (a single fill is at most 2^62; no real order gets there).
    pub notional: i64,
}

impl OrderRow {
    pub fn is_open(&self) -> bool {
        self.status == status::OPEN
    }
}

/// One fill as one account saw it: a trade has two sides, and a self-trade is two fills of
/// the same account (maker and taker), told apart by [`fill_id`](Self::fill_id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountFill {
    pub fill: FillRow,
    /// This account was the maker (else the taker).
    pub maker: bool,
}

impl AccountFill {
    /// `trade_id * 2` for the maker side, `trade_id * 2 + 1` for the taker side: unique per
    /// account and increasing with the trade id, so it is the history cursor for fills.
    pub fn fill_id(&self) -> u64 {
        self.fill.trade_id * 2 + u64::from(!self.maker)
    }
    pub fn order_id(&self) -> OrderId {
        if self.maker {
            self.fill.maker_order
        } else {
            self.fill.taker_order
        }
    }
    pub fn account(&self) -> AccountId {
        if self.maker {
            self.fill.maker_account
        } else {
            self.fill.taker_account
        }
    }
    /// This account's side: 0 buy, 1 sell (the maker is on the other side of the aggressor).
    pub fn side(&self) -> i16 {
        if self.maker {
            1 - self.fill.aggressor
        } else {
            self.fill.aggressor
        }
    }
    /// This account's fee (quote minor units).
    pub fn fee(&self) -> Amount {
        if self.maker {
            self.fill.maker_fee
        } else {
            self.fill.taker_fee
        }
    }
}

/// The running balances of one (account, asset) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BalanceRow {
    pub account: AccountId,
    pub asset: AssetId,
    pub available: Amount,
    pub locked: Amount,
    pub external: Amount,
    /// Sequence number of the last change.
    pub seq: Seq,
}

/// Everything one database transaction writes: the effects of the engine batches with
/// sequence numbers in `(prev_seq, seq]`. Orders and balances are final states (upserts);
/// entries and fills are appended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flush {
    /// The applied sequence number this flush expects to find (compare-and-set).
    pub prev_seq: Seq,
    /// The applied sequence number after it.
    pub seq: Seq,
    /// Engine time of the first and last batch (for lag measurement).
    pub first_ts: u64,
    pub last_ts: u64,
    /// Engine batches folded in.
    pub batches: u64,
    /// Engine time of each batch, for per-command lag (not stored).
    pub batch_ts: Vec<u64>,
    pub entries: Vec<Entry>,
    pub fills: Vec<FillRow>,
    pub orders: Vec<OrderRow>,
    /// The first `new_orders` rows of `orders` were accepted inside this flush, so the
    /// database cannot hold them yet: a backend may insert them without a conflict check.
    pub new_orders: usize,
    pub balances: Vec<BalanceRow>,
}

/// What the consumer needs to resume: the applied seq and the state it projects onto.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerState {
    pub applied_seq: Seq,
    pub balances: Vec<BalanceRow>,
    pub open_orders: Vec<OrderRow>,
}

/// A page of history: rows plus the cursor of the next page (`None`: no more rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next: Option<u64>,
}
