//! The backend seam: one trait, implemented for PostgreSQL ([`crate::postgres::PgStore`]) and
//! SQLite ([`crate::sqlite::SqliteStore`]), exercised by one conformance suite
//! (`settlement/tests/conformance.rs`) against both.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use castle_engine::{AccountId, AssetId, InstrumentId, OrderId, Seq};

use crate::ledger::{AccountFill, BalanceRow, Entry, FillRow, Flush, LedgerState, OrderRow, Page};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored applied seq is not the one the flush expected: another writer (or an
    /// earlier attempt whose commit we did not see) applied it. Nothing was written.
    #[error("compare-and-set failed: expected applied seq {expected}, found {found}")]
    Conflict { expected: Seq, found: Seq },
    /// The flush before this one failed, so this one was not applied (it is retried after
    /// the reload that failure causes).
    #[error("the flush before this one failed")]
    PreviousFailed,
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration {version} ({name}): {reason}")]
    Migration { version: i32, name: &'static str, reason: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Errors after which a retry can succeed (the database went away, a conflict resolved
    /// by reloading); the others (constraint violations, corrupt data) need a human.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Conflict { .. } | StoreError::Pool(_) | StoreError::PreviousFailed => true,
            StoreError::Postgres(e) => match e.as_db_error() {
                // I/O and protocol errors: the connection is gone.
                None => true,
                // Connection exceptions (08), insufficient resources (53), operator
                // intervention such as shutdown or "starting up" (57), serialization
                // failure and deadlock (40): retry. Everything else (constraints!) is final.
                Some(db) => {
                    let code = db.code().code();
                    ["08", "53", "57", "40"].iter().any(|class| code.starts_with(class))
                }
            },
            _ => false,
        }
    }
}

/// Sums of all entries of one (account, asset) pair, per leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EntryTotal {
    pub account: AccountId,
    pub asset: AssetId,
    pub available: i128,
    pub locked: i128,
    pub external: i128,
}

/// A versioned schema migration, embedded in the binary.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "ledger", sql: include_str!("../migrations/postgres/V1__ledger.sql") },
    Migration { version: 2, name: "journal", sql: include_str!("../migrations/postgres/V2__journal.sql") },
    Migration { version: 3, name: "history", sql: include_str!("../migrations/postgres/V3__history.sql") },
    Migration { version: 4, name: "journal_lz4", sql: include_str!("../migrations/postgres/V4__journal_lz4.sql") },
    Migration { version: 5, name: "history_maps", sql: include_str!("../migrations/postgres/V5__history_maps.sql") },
];
/// SQLite has no version 2 (PostgreSQL's version 2 only changed how it stores ledger lines);
/// version numbers stay aligned with PostgreSQL's for the same model.
pub const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "ledger", sql: include_str!("../migrations/sqlite/V1__ledger.sql") },
    Migration { version: 3, name: "history", sql: include_str!("../migrations/sqlite/V3__history.sql") },
];

/// A read-only handle needs the schema its queries were written for: at least the last
/// migration this build knows (`found` is the highest applied version, if any).
pub(crate) fn check_schema(found: Option<i32>, migrations: &[Migration]) -> Result<(), StoreError> {
    let want = migrations.last().map(|m| m.version).unwrap_or(0);
    match found {
        Some(v) if v >= want => Ok(()),
        v => Err(StoreError::Config(format!(
            "the ledger schema is at version {}, this build reads version {want}: start settlement (it migrates) first",
            v.unwrap_or(0)
        ))),
    }
}

/// Where one flush's time went inside the backend, in the order the steps happen: `begin`
/// (a pooled connection and `BEGIN`), `append` (the rows only this flush can hold),
/// `wait` (for the previous flush's commit), `settle` (changed orders, balances, the
/// compare-and-set) and `commit`. The consumer adds the time the flush's first batch spent
/// queued before the flush started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStages {
    pub begin: Duration,
    pub append: Duration,
    pub wait: Duration,
    pub settle: Duration,
    pub commit: Duration,
}

/// Largest page a history query returns.
pub const MAX_PAGE: usize = 1_000;

/// What the consumer, reconciliation and the history API need from a database.
/// Implementations apply migrations when they are opened.
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    /// The applied seq, every balance and the open orders (what the projector resumes from).
    fn load(&self) -> impl Future<Output = Result<LedgerState, StoreError>> + Send;
    /// Writes a flush in one transaction, compare-and-set on the applied seq.
    fn apply(&self, flush: Arc<Flush>) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Like [`apply`](Self::apply), for the flush after one still committing: `previous`
    /// resolves when that one committed (`Ok`) or failed (`Err`, then this one must not be
    /// applied). A backend may write the rows no other flush can touch before that; the
    /// compare-and-set still happens only after it. Returns where the flush's time went.
    /// Default: wait (timed), then apply (all of it counted as [`FlushStages::commit`]); a
    /// backend that knows its steps overrides it.
    fn apply_after<P>(
        &self,
        flush: Arc<Flush>,
        previous: P,
    ) -> impl Future<Output = Result<FlushStages, StoreError>> + Send
    where
        P: Future<Output = Result<(), StoreError>> + Send,
    {
        async move {
            let t = Instant::now();
            previous.await?;
            let wait = t.elapsed();
            self.apply(flush).await?;
            Ok(FlushStages { wait, commit: t.elapsed().saturating_sub(wait), ..FlushStages::default() })
        }
    }
    fn applied_seq(&self) -> impl Future<Output = Result<Seq, StoreError>> + Send;
    fn balances(&self) -> impl Future<Output = Result<Vec<BalanceRow>, StoreError>> + Send;
    /// Per (account, asset): the sum of every entry's legs (must equal the balances table).
    fn entry_totals(&self) -> impl Future<Output = Result<Vec<EntryTotal>, StoreError>> + Send;
    /// Entries with `from <= seq <= to`, in (seq, idx) order.
    fn entries(&self, from: Seq, to: Seq) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;
    /// (number of fills, highest trade id).
    fn fill_stats(&self) -> impl Future<Output = Result<(u64, u64), StoreError>> + Send;
    /// The fills of `account` (optionally on one instrument), newest first, with
    /// [`AccountFill::fill_id`] below `before`; a self-trade is two fills. At most `limit`
    /// (clamped to 1..=[`MAX_PAGE`]) rows; `next` is set exactly when older fills exist.
    fn fills_by_account(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<AccountFill>, StoreError>> + Send;
    /// Orders of `account` (optionally on one instrument), newest first, order ids below
    /// `before`; paged like [`fills_by_account`](Self::fills_by_account).
    fn orders_by_account(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<OrderRow>, StoreError>> + Send;
    /// One order of `account` (`None`: unknown, or another account's).
    fn order(
        &self,
        account: AccountId,
        order_id: OrderId,
    ) -> impl Future<Output = Result<Option<OrderRow>, StoreError>> + Send;
    /// The newest order of `account` with this client order id (`None`: none, or empty id).
    fn order_by_client_id(
        &self,
        account: AccountId,
        client_order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderRow>, StoreError>> + Send;
}

/// Fills with a fill id below `before`: the exclusive trade-id bounds (maker side, taker
/// side) that select them. `maker: trade*2 < b <=> trade < ceil(b/2)`;
/// `taker: trade*2+1 < b <=> trade < floor(b/2)`.
pub(crate) fn fill_bounds(before: Option<u64>) -> (i64, i64) {
    match before {
        None => (i64::MAX, i64::MAX),
        Some(b) => (cursor(Some(b.div_ceil(2))), cursor(Some(b / 2))),
    }
}

/// A cursor as a BIGINT bound: ids are below 2^63, anything larger means "from the newest".
pub(crate) fn cursor(before: Option<u64>) -> i64 {
    before.map(|b| i64::try_from(b).unwrap_or(i64::MAX)).unwrap_or(i64::MAX)
}

/// Merges the maker-side and taker-side rows (each newest first, each up to `limit + 1`)
/// into one page of at most `limit` fills.
pub(crate) fn merge_fills(maker: Vec<FillRow>, taker: Vec<FillRow>, limit: usize) -> Page<AccountFill> {
    let mut all: Vec<AccountFill> = maker.into_iter().map(|fill| AccountFill { fill, maker: true }).collect();
    all.extend(taker.into_iter().map(|fill| AccountFill { fill, maker: false }));
    all.sort_by_key(|f| std::cmp::Reverse(f.fill_id()));
    page(all, limit, |f| f.fill_id())
}

/// Builds a page from `limit + 1` fetched rows.
pub(crate) fn page<T>(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> u64) -> Page<T> {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(key)
    } else {
        None
    };
    Page { rows, next }
}

pub(crate) fn i(v: u64) -> i64 {
    // Engine values are below 2^62 (engine types::MAX_VALUE); ids and seqs never reach 2^63.
    i64::try_from(v).expect("engine values fit in BIGINT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(trade_id: u64) -> FillRow {
        FillRow {
            trade_id,
            seq: 1,
            idx: 0,
            ts: 0,
            instrument: 0,
            price: 1,
            qty: 1,
            aggressor: 0,
            maker_order: 1,
            taker_order: 2,
            maker_account: 7,
            taker_account: 7,
            maker_fee: 0,
            taker_fee: 0,
        }
    }

    #[test]
    fn fill_cursor_bounds_select_exactly_the_older_fills() {
        for before in 0..40u64 {
            let (bm, bt) = fill_bounds(Some(before));
            for trade in 0..20i64 {
                assert_eq!(trade < bm, (trade as u64) * 2 < before, "maker trade {trade} before {before}");
                assert_eq!(trade < bt, (trade as u64) * 2 + 1 < before, "taker trade {trade} before {before}");
            }
        }
    }

    #[test]
    fn merged_pages_are_the_newest_of_both_sides() {
        // Maker fills have even ids, taker fills odd ones; a self-trade has both.
        let maker: Vec<_> = [10, 7, 5].into_iter().map(fill).collect();
        let taker: Vec<_> = [10, 7, 4].into_iter().map(fill).collect();
        let p = merge_fills(maker, taker, 4);
        assert_eq!(p.rows.iter().map(|x| x.fill_id()).collect::<Vec<_>>(), vec![21, 20, 15, 14]);
        assert_eq!(p.next, Some(14));
        let p = merge_fills(vec![fill(2)], vec![fill(1)], 2);
        assert_eq!((p.rows.len(), p.next), (2, None));
    }
}
