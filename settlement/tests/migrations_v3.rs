//! Migration V3 (history fields and cheaper history indexes) on both backends: orders and
//! fills written by the previous version read back with their notional derived from the
//! fills, the new lookups work on them, changed orders are still updated in place, history
//! readers are read-only and refuse a schema that is not migrated yet, and PostgreSQL's
//! history queries use indexes (EXPLAIN). Migration V4: new journal rows are compressed
//! with LZ4. Migration V5: account history goes through the map tables (EXPLAIN below; the
//! V4 -> V5 upgrade itself is tested in `migrations_v5`).

use std::sync::Arc;

use castle_settlement::history::History;
use castle_settlement::ledger::status;
use castle_settlement::store::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use castle_settlement::testkit::{self, pg};
use castle_settlement::{Flush, LedgerUrl, OrderRow, PgConfig, PgStore, SqliteStore, Store, StoreError};

/// Orders 1 (account 2, sell, rests partly filled) and 2 (account 1, buy, filled), trade 1
/// between them: 4 lots at 6_000_000, then trade 2: 1 lot at 6_000_001 for order 1 again.
const OLD_ROWS: &str = "INSERT INTO orders (order_id, account, instrument, client_order_id, side, kind, price, \
     stop_price, qty, tif, status, cancel_reason, filled, leaves, created_seq, created_ts, updated_seq, updated_ts) VALUES \
     (1, 2, 0, 'a', 1, 0, 6000000, 0, 10, 0, 0, 0, 5, 5, 1, 10, 3, 30), \
     (2, 1, 0, 'b', 0, 0, 6000000, 0, 4, 1, 1, 0, 4, 0, 2, 20, 2, 20), \
     (3, 1, 0, 'c', 0, 0, 6000001, 0, 1, 1, 1, 0, 1, 0, 3, 30, 3, 30); \
     INSERT INTO fills VALUES (1, 2, 3, 20, 0, 6000000, 4, 0, 1, 2, 2, 1, 0, 0), \
     (2, 3, 3, 30, 0, 6000001, 1, 0, 1, 3, 2, 1, 0, 0); \
     UPDATE settlement_cursor SET applied_seq = 3";

fn check_old_rows(orders: &[OrderRow]) {
    let by_id = |id| orders.iter().find(|o| o.order_id == id).expect("order kept");
    assert_eq!(by_id(1).notional, 6_000_000 * 4 + 6_000_001, "both fills of the maker");
    assert_eq!(by_id(2).notional, 6_000_000 * 4);
    assert_eq!(by_id(3).notional, 6_000_001);
    for o in orders {
        assert_eq!((o.expire_ts, o.post_only, o.display_qty, o.stp), (0, None, None, None), "unknown before V3");
    }
}

/// The maker (order 1) fills completely in a later flush: an update of a stored order.
fn fill_the_rest(mut o: OrderRow) -> Flush {
    o.filled = 10;
    o.leaves = 0;
    o.status = status::FILLED;
    o.notional += 5 * 6_000_000;
    o.updated_seq = 4;
    Flush { prev_seq: 3, seq: 4, batches: 1, orders: vec![o], ..Flush::default() }
}

async fn exercise<S: Store>(s: &S) {
    let mut orders = s.orders_by_account(1, None, None, 10).await.unwrap().rows;
    orders.extend(s.orders_by_account(2, None, None, 10).await.unwrap().rows);
    assert_eq!(orders.len(), 3);
    check_old_rows(&orders);
    assert_eq!(s.order_by_client_id(1, "c").await.unwrap().map(|o| o.order_id), Some(3));
    let fills = s.fills_by_account(2, None, None, 10).await.unwrap().rows;
    assert_eq!(fills.iter().map(|f| (f.fill_id(), f.order_id())).collect::<Vec<_>>(), vec![(4, 1), (2, 1)]);
    let o1 = s.order(2, 1).await.unwrap().unwrap();
    s.apply(Arc::new(fill_the_rest(o1.clone()))).await.unwrap();
    let after = s.order(2, 1).await.unwrap().unwrap();
    assert_eq!((after.status, after.leaves, after.notional), (status::FILLED, 0, o1.notional + 30_000_000));
    assert!(s.load().await.unwrap().open_orders.is_empty(), "no open order is left");
}

#[tokio::test]
async fn postgres_version_2_orders_and_fills_survive_version_3() {
    let admin = testkit::shared_server().unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let mut db = format!("castle_{}_migrate_v3", std::process::id());
    db.truncate(63);
    let url = pg::create_database(&admin, &db).await.unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let conn = tokio::spawn(conn);
    let [v1, v2] = [&POSTGRES_MIGRATIONS[0], &POSTGRES_MIGRATIONS[1]];
    assert_eq!((v1.version, v2.version), (1, 2));
    client
        .batch_execute(&format!(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()); {} {} \
             INSERT INTO schema_migrations (version, name) VALUES (1, 'ledger'), (2, 'journal'); {OLD_ROWS}",
            v1.sql, v2.sql
        ))
        .await
        .expect("version 2 schema and rows");

    // A history reader refuses the old schema instead of failing on every request.
    let early = History::open(&LedgerUrl::Postgres(url.clone()), None).await;
    assert!(matches!(early, Err(StoreError::Config(_))), "{early:?}");

    let store = PgStore::connect(&PgConfig::new(url.clone())).await.expect("upgrade to version 3");
    exercise(&store).await;

    // History: read-only connections over the same read methods.
    let h = History::open(&LedgerUrl::Postgres(url.clone()), None).await.expect("history");
    assert_eq!(h.order(2, 1).await.unwrap(), store.order(2, 1).await.unwrap());
    let again = h.store().apply(Arc::new(Flush { prev_seq: 4, seq: 5, batches: 1, ..Flush::default() })).await;
    assert!(again.is_err(), "a history handle cannot write");
    assert_eq!(store.applied_seq().await.unwrap(), 4);

    // A large flush: one journal row per ~128 lines of whole commands, compressed inline.
    let entries: Vec<_> = (5..=304u64)
        .map(|seq| castle_settlement::Entry {
            seq,
            idx: 0,
            ts: seq * 10,
            account: 3,
            asset: 1,
            kind: castle_settlement::EntryKind::Deposit,
            reference: 0,
            available: 1_000,
            locked: 0,
            external: -1_000,
        })
        .collect();
    let big = Flush { prev_seq: 4, seq: 304, batches: 300, entries: entries.clone(), ..Flush::default() };
    store.apply(Arc::new(big)).await.unwrap();
    let r = client
        .query_one(
            "SELECT count(*), bool_and(pg_column_size(available) < 8 * cardinality(available)), \
             bool_and(pg_column_compression(available) = 'lz4' AND pg_column_compression(seq) = 'lz4') \
             FROM ledger_journal WHERE first_seq >= 5 AND cardinality(seq) >= 128",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, Option<bool>>(1)), (2, Some(true)), "two full rows, compressed");
    // Migration V4: with LZ4 (the test server is built with it; pglz is only the fallback).
    assert_eq!(r.get::<_, Option<bool>>(2), Some(true), "journal rows compressed with lz4");
    assert_eq!(store.entries(5, 304).await.unwrap(), entries, "read back in (seq, idx) order");
    assert_eq!(store.entries(100, 100).await.unwrap(), entries[95..96]);

    // The history queries use indexes (planner told not to prefer sequential scans on a
    // tiny table; what matters is that an index can serve each query).
    client.batch_execute("SET enable_seqscan = off").await.unwrap();
    for (sql, index) in [
        (
            "SELECT * FROM account_orders WHERE account = 1 AND first_order_id < 100 \
             ORDER BY first_order_id DESC LIMIT 8",
            "account_orders_pkey",
        ),
        ("SELECT * FROM orders WHERE order_id = ANY('{1,3}')", "orders_pkey"),
        (
            "SELECT * FROM orders WHERE account = 1 AND client_order_id COLLATE \"C\" = 'c' AND client_order_id <> ''",
            "orders_client_order_id",
        ),
        ("SELECT * FROM orders WHERE status = 0", "orders_open"),
        ("SELECT * FROM orders WHERE instrument = 0 AND created_ts BETWEEN 10 AND 20", "orders_created_ts"),
        (
            "SELECT * FROM account_fills WHERE account = 2 AND first_trade_id < 100 \
             ORDER BY first_trade_id DESC LIMIT 8",
            "account_fills_pkey",
        ),
        ("SELECT * FROM fills WHERE trade_id = ANY('{1,2}')", "fills_pkey"),
        ("SELECT * FROM fills WHERE instrument = 0 AND ts BETWEEN 10 AND 20", "fills_ts"),
        ("SELECT * FROM fills WHERE trade_id = 1", "fills_pkey"),
    ] {
        // V3 builds the orders indexes after updating rows in the same transaction, so
        // PostgreSQL marks them `indcheckxmin`: a query whose snapshot is older than the
        // migration (any transaction still running on the server since before it, e.g. another
        // test's) may not use them yet. Poll, with a deadline, until no such snapshot is left.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let plan: Vec<String> =
                client.query(&format!("EXPLAIN {sql}"), &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
            let plan = plan.join("\n");
            // The index must bound the scan (an Index Cond), not just be walked under a filter;
            // the partial index of open orders is the condition itself.
            let bounded = plan.contains("Index Cond") || index == "orders_open";
            if plan.contains(index) && bounded {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{sql}\nshould use {index}:\n{plan}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    drop(client);
    let _ = conn.await;
}

#[tokio::test]
async fn sqlite_version_1_orders_and_fills_survive_version_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(SQLITE_MIGRATIONS[0].version, 1);
        c.execute_batch(&format!(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP); {} \
             INSERT INTO schema_migrations (version, name) VALUES (1, 'ledger'); {OLD_ROWS}",
            SQLITE_MIGRATIONS[0].sql
        ))
        .unwrap();
    }
    let early = History::open(&LedgerUrl::Sqlite(path.clone()), None).await;
    assert!(matches!(early, Err(StoreError::Config(_))), "{early:?}");
    let store = SqliteStore::open(&path).expect("upgrade to version 3");
    exercise(&store).await;
    let h = History::open(&LedgerUrl::Sqlite(path.clone()), None).await.expect("history");
    assert_eq!(h.order(2, 1).await.unwrap(), store.order(2, 1).await.unwrap());
    let again = h.store().apply(Arc::new(Flush { prev_seq: 4, seq: 5, batches: 1, ..Flush::default() })).await;
    assert!(again.is_err(), "a history handle cannot write");
    assert_eq!(store.applied_seq().await.unwrap(), 4);
}
