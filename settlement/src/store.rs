//! The backend seam: one trait, implemented for PostgreSQL ([`crate::postgres::PgStore`]) and
//! SQLite ([`crate::sqlite::SqliteStore`]), exercised by one conformance suite
//! (`settlement/tests/conformance.rs`) against both.

use std::future::Future;
use std::sync::Arc;

use castle_engine::{AccountId, AssetId, Seq};

use crate::ledger::{BalanceRow, Entry, FillRow, Flush, LedgerState, OrderRow, Page};

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
];
pub const SQLITE_MIGRATIONS: &[Migration] =
    &[Migration { version: 1, name: "ledger", sql: include_str!("../migrations/sqlite/V1__ledger.sql") }];

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
    /// compare-and-set still happens only after it. Default: wait, then apply.
    fn apply_after<P>(&self, flush: Arc<Flush>, previous: P) -> impl Future<Output = Result<(), StoreError>> + Send
    where
        P: Future<Output = Result<(), StoreError>> + Send,
    {
        async move {
            previous.await?;
            self.apply(flush).await
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
    /// Fills where `account` was maker or taker, newest first, trade ids below `before`.
    fn fills_by_account(
        &self,
        account: AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<FillRow>, StoreError>> + Send;
    /// Orders of `account`, newest first, order ids below `before`.
    fn orders_by_account(
        &self,
        account: AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<OrderRow>, StoreError>> + Send;
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
