//! Castle settlement: an exactly-once, double-entry ledger of the engine's event stream.
//!
//! - [`ledger`]: the rows (entries with available/locked/external legs, fills, orders,
//!   balances) and the posting model;
//! - [`projector`]: sans-IO, engine batches to rows, checking that every command's legs
//!   sum to zero per asset;
//! - [`store`]: the backend trait, with [`postgres`] (tokio-postgres + deadpool, rustls,
//!   binary COPY or unnest) and [`sqlite`] (the embedded default) and versioned migrations
//!   (`settlement/migrations/`);
//! - [`consumer`]: resume from the stored seq, batch, compare-and-set, retry;
//! - [`source`]: the in-process link or the engine server over TCP;
//! - [`reconcile`]: the ledger against the engine at the same seq;
//! - [`metrics`]: lag and counters in Prometheus text.

pub mod any;
pub mod consumer;
pub mod history;
pub mod ledger;
pub mod metrics;
pub mod postgres;
pub mod projector;
pub mod reconcile;
pub mod source;
pub mod sqlite;
pub mod store;
pub mod testkit;

pub use any::{AnyStore, LedgerUrl};
pub use consumer::{run, ConsumerConfig, ConsumerError};
pub use ledger::{AccountFill, BalanceRow, Entry, EntryKind, FillRow, Flush, LedgerState, OrderRow, Page};
pub use metrics::Metrics;
pub use postgres::{PgConfig, PgStore, WriteMode};
pub use projector::{ProjectError, Projector};
pub use reconcile::{reconcile, EngineView, Report};
pub use source::{LinkSource, Source, SourceError, TcpSource};
pub use sqlite::SqliteStore;
pub use store::{EntryTotal, FlushStages, Store, StoreError};
