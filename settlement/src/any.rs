//! [`AnyStore`]: either backend behind one type, chosen by the configured URL.

use std::path::PathBuf;
use std::sync::Arc;

use castle_engine::{AccountId, InstrumentId, OrderId, Seq};

use crate::ledger::{AccountFill, BalanceRow, Entry, Flush, LedgerState, OrderRow, Page};
use crate::postgres::{PgConfig, PgStore};
use crate::sqlite::SqliteStore;
use crate::store::{EntryTotal, FlushStages, Store, StoreError};

#[derive(Clone)]
pub enum AnyStore {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

/// Where the ledger lives: `postgres://...` / `postgresql://...` is PostgreSQL, `sqlite:PATH`
/// or any other string is an SQLite file path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl LedgerUrl {
    pub fn parse(s: &str) -> LedgerUrl {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            LedgerUrl::Postgres(s.to_string())
        } else {
            LedgerUrl::Sqlite(PathBuf::from(s.strip_prefix("sqlite:").unwrap_or(s)))
        }
    }
}

impl AnyStore {
    /// Opens the ledger (applying migrations). `pg` supplies pool and TLS settings for PostgreSQL.
    pub async fn open(url: &LedgerUrl, pg: impl FnOnce(String) -> PgConfig) -> Result<AnyStore, StoreError> {
        Ok(match url {
            LedgerUrl::Postgres(u) => AnyStore::Postgres(PgStore::connect(&pg(u.clone())).await?),
            LedgerUrl::Sqlite(p) => AnyStore::Sqlite(SqliteStore::open(p)?),
        })
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Postgres($s) => $e,
            AnyStore::Sqlite($s) => $e,
        }
    };
}

impl Store for AnyStore {
    fn backend(&self) -> &'static str {
        each!(self, s => s.backend())
    }
    async fn load(&self) -> Result<LedgerState, StoreError> {
        each!(self, s => s.load().await)
    }
    async fn apply(&self, flush: Arc<Flush>) -> Result<(), StoreError> {
        each!(self, s => s.apply(flush).await)
    }
    async fn apply_after<P>(&self, flush: Arc<Flush>, previous: P) -> Result<FlushStages, StoreError>
    where
        P: std::future::Future<Output = Result<(), StoreError>> + Send,
    {
        each!(self, s => s.apply_after(flush, previous).await)
    }
    async fn applied_seq(&self) -> Result<Seq, StoreError> {
        each!(self, s => s.applied_seq().await)
    }
    async fn balances(&self) -> Result<Vec<BalanceRow>, StoreError> {
        each!(self, s => s.balances().await)
    }
    async fn entry_totals(&self) -> Result<Vec<EntryTotal>, StoreError> {
        each!(self, s => s.entry_totals().await)
    }
    async fn entries(&self, from: Seq, to: Seq) -> Result<Vec<Entry>, StoreError> {
        each!(self, s => s.entries(from, to).await)
    }
    async fn fill_stats(&self) -> Result<(u64, u64), StoreError> {
        each!(self, s => s.fill_stats().await)
    }
    async fn fills_by_account(
        &self,
        a: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        n: usize,
    ) -> Result<Page<AccountFill>, StoreError> {
        each!(self, s => s.fills_by_account(a, instrument, before, n).await)
    }
    async fn orders_by_account(
        &self,
        a: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        n: usize,
    ) -> Result<Page<OrderRow>, StoreError> {
        each!(self, s => s.orders_by_account(a, instrument, before, n).await)
    }
    async fn order(&self, a: AccountId, order_id: OrderId) -> Result<Option<OrderRow>, StoreError> {
        each!(self, s => s.order(a, order_id).await)
    }
    async fn order_by_client_id(&self, a: AccountId, client_order_id: &str) -> Result<Option<OrderRow>, StoreError> {
        each!(self, s => s.order_by_client_id(a, client_order_id).await)
    }
}
