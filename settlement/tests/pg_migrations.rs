//! Migration V2 (ledger lines as one journal row per command) keeps every version 1 entry:
//! a database holding version 1 rows reads back the same entries, totals and balances after
//! `PgStore::connect` upgrades it, and the consumer carries on from its applied seq.

use std::sync::Arc;

use castle_settlement::store::POSTGRES_MIGRATIONS;
use castle_settlement::testkit::{self, pg};
use castle_settlement::{EntryKind, Flush, PgConfig, PgStore, Store};

#[tokio::test]
async fn version_1_entries_survive_the_journal_migration() {
    let admin = testkit::shared_server().unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let mut db = format!("castle_{}_migrate_v1", std::process::id());
    db.truncate(63);
    let url = pg::create_database(&admin, &db).await.unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));

    // A version 1 ledger, as the previous release left it: two commands' entries, written
    // out of idx order on purpose (the migration must order lines by idx).
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let conn = tokio::spawn(conn);
    let v1 = &POSTGRES_MIGRATIONS[0];
    assert_eq!(v1.version, 1);
    client
        .batch_execute(&format!(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()); {} \
             INSERT INTO schema_migrations (version, name) VALUES (1, 'ledger'); \
             INSERT INTO ledger_entries VALUES \
               (7, 1, 70, 2, 1, 3, 99, 5, 0, 0), (7, 0, 70, 1, 1, 3, 99, 0, -5, 0), \
               (3, 0, 30, 1, 1, 1, 0, 100, 0, -100), (3, 1, 30, 2, 1, 1, 0, 0, 0, 0); \
             INSERT INTO balances VALUES (1, 1, 100, 0, -100, 7), (2, 1, 5, 0, 0, 7); \
             UPDATE settlement_cursor SET applied_seq = 7",
            v1.sql
        ))
        .await
        .expect("version 1 schema and rows");
    drop(client);
    let _ = conn.await;

    let store = PgStore::connect(&PgConfig::new(url.clone())).await.expect("upgrade to the latest version");
    let e = store.entries(0, u64::MAX).await.unwrap();
    let got: Vec<_> = e
        .iter()
        .map(|e| (e.seq, e.idx, e.ts, e.account, e.asset, e.kind, e.reference, e.available, e.locked, e.external))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, 0, 30, 1, 1, EntryKind::Deposit, 0, 100, 0, -100),
            (3, 1, 30, 2, 1, EntryKind::Deposit, 0, 0, 0, 0),
            (7, 0, 70, 1, 1, EntryKind::Trade, 99, 0, -5, 0),
            (7, 1, 70, 2, 1, EntryKind::Trade, 99, 5, 0, 0),
        ]
    );
    let totals = store.entry_totals().await.unwrap();
    assert_eq!(
        totals.iter().map(|t| (t.account, t.available, t.locked, t.external)).collect::<Vec<_>>(),
        vec![(1, 100, -5, -100), (2, 5, 0, 0)]
    );
    assert_eq!(store.applied_seq().await.unwrap(), 7);

    // New flushes land in the journal and read back through the same view.
    let next = Flush {
        prev_seq: 7,
        seq: 8,
        batches: 1,
        entries: vec![castle_settlement::Entry {
            seq: 8,
            idx: 0,
            ts: 80,
            account: 2,
            asset: 1,
            kind: EntryKind::Withdrawal,
            reference: 0,
            available: -5,
            locked: 0,
            external: 5,
        }],
        ..Flush::default()
    };
    store.apply(Arc::new(next.clone())).await.unwrap();
    assert_eq!(store.entries(8, 8).await.unwrap(), next.entries);
    // A second connect finds nothing left to migrate.
    let again = PgStore::connect(&PgConfig::new(url)).await.expect("reconnect");
    assert_eq!(again.entries(0, u64::MAX).await.unwrap().len(), 5);
}
