//! Exactly-once double-entry ledger of fills and balance changes (PostgreSQL, SQLite). Filled by the settlement issue.
