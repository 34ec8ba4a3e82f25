//! Castle's retail gateway: HTTPS JSON REST under /api/v1 and WebSocket
//! streams, shaped like the large crypto venues' APIs.
//!
//! - [`api`]: wire types; [`routes`]: thin handlers; [`ws`]: streams;
//! - [`auth`]: HMAC-signed API keys and JWTs (sans-IO); [`vault`]: keys persisted, secrets sealed; [`limits`]: weighted rate limits (sans-IO);
//! - [`accounts`]: per-account orders, fills, balances from the engine stream (sans-IO);
//! - [`gateway`]: shared state, the engine stream consumer, pending requests;
//! - [`history`]: order history and fills from the settlement ledger, merged with memory;
//! - [`hashing`]: keyed fast hash maps for request-driven keys;
//! - [`decimal`]: exact decimal strings <-> ticks/lots; [`error`]: `{code, message}`;
//! - [`openapi`]: the generated OpenAPI document; [`page`]: the trading page; [`server`]: TLS listener.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod decimal;
pub mod error;
pub mod fuzzing;
pub mod gateway;
pub mod hashing;
pub mod history;
pub mod limits;
pub mod openapi;
pub mod page;
pub mod routes;
pub mod server;
pub mod vault;
pub mod ws;

pub use auth::{Scopes, DEMO_MASTER_KEY};
pub use gateway::{Gateway, RestConfig};
pub use server::{serve, RestServer, Tls};

/// Demo key ids of `castle serve` (accounts 1 and 2); their secrets derive
/// from [`DEMO_MASTER_KEY`] and are printed at start.
pub const DEMO_KEYS: [(&str, u32); 2] = [("demo-account-1", 1), ("demo-account-2", 2)];
