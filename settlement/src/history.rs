//! Read-only order and fill history for gateways (the REST gateway's `allOrders`, order
//! lookups and `myTrades` when it is configured to read the ledger).
//!
//! A [`History`] is a read-only handle on the ledger's store: the queries are the
//! [`Store`] read methods every backend implements (and the conformance suite tests), on
//! connections of their own opened read-only (SQLite `SQLITE_OPEN_READ_ONLY`; PostgreSQL
//! `default_transaction_read_only=on`), so a reader can never disturb the consumer's
//! writes. Pages are newest first with an exclusive cursor: order ids for orders,
//! [`AccountFill::fill_id`] for fills; at most [`MAX_PAGE`] rows, `next` set exactly when
//! older rows exist.

use std::path::Path;

use castle_engine::{AccountId, InstrumentId, OrderId};

use crate::any::{AnyStore, LedgerUrl};
use crate::ledger::{AccountFill, OrderRow, Page};
use crate::postgres::{PgConfig, PgStore};
use crate::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

pub use crate::store::MAX_PAGE;

/// A read-only view of a ledger's history.
#[derive(Clone)]
pub struct History(AnyStore);

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "History({})", self.0.backend())
    }
}

impl History {
    /// Opens the ledger read-only; the schema must be migrated already (settlement does
    /// that when it starts). `ca_file` adds a trusted CA for PostgreSQL over TLS.
    pub async fn open(url: &LedgerUrl, ca_file: Option<&Path>) -> Result<History, StoreError> {
        Ok(History(match url {
            LedgerUrl::Sqlite(p) => AnyStore::Sqlite(SqliteStore::open_read_only(p)?),
            LedgerUrl::Postgres(u) => {
                let mut cfg = PgConfig::new(u.clone());
                cfg.ca_file = ca_file.map(Path::to_path_buf);
                AnyStore::Postgres(PgStore::connect_read_only(&cfg).await?)
            }
        }))
    }

    /// The store itself, for the other [`Store`] read methods.
    pub fn store(&self) -> &AnyStore {
        &self.0
    }

    /// See [`Store::orders_by_account`].
    pub async fn orders(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<OrderRow>, StoreError> {
        self.0.orders_by_account(account, instrument, before, limit).await
    }

    /// See [`Store::order`].
    pub async fn order(&self, account: AccountId, order_id: OrderId) -> Result<Option<OrderRow>, StoreError> {
        self.0.order(account, order_id).await
    }

    /// See [`Store::order_by_client_id`].
    pub async fn order_by_client_id(
        &self,
        account: AccountId,
        client_order_id: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        self.0.order_by_client_id(account, client_order_id).await
    }

    /// See [`Store::fills_by_account`].
    pub async fn fills(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<AccountFill>, StoreError> {
        self.0.fills_by_account(account, instrument, before, limit).await
    }
}
