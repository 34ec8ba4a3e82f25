//! Migration V5 (account history through per-(account, flush) map rows): a populated version 4
//! ledger answers every history query the same after the upgrade as the version 4 queries
//! answered before it, through pages of several sizes and with instrument filters; flushes
//! written after the upgrade come first in the history; single-order lookups still check
//! the account.

use std::collections::BTreeMap;
use std::sync::Arc;

use castle_settlement::store::POSTGRES_MIGRATIONS;
use castle_settlement::testkit::{self, pg};
use castle_settlement::{FillRow, Flush, PgConfig, PgStore, Store};

const ACCOUNTS: i64 = 5;

/// One account's fills (fill id, trade id) and order ids, newest first.
type History = (Vec<(u64, u64)>, Vec<u64>);

/// 3,000 fills and 2,000 orders over 5 accounts and 3 instruments, written as version 4 left
/// them; every 7th fill is a self-trade, trade and order ids have gaps.
const V4_ROWS: &str = "\
    INSERT INTO orders (order_id, account, instrument, client_order_id, side, kind, price, stop_price, qty, tif, \
        status, cancel_reason, filled, leaves, created_seq, created_ts, updated_seq, updated_ts, notional) \
    SELECT 3 * n, n % 5, n % 3, 'c' || n, n % 2, 0, 100 + n, 0, 10, 0, (n % 3)::int2, 0, 0, 10, n, 10 * n, n, 10 * n, 0 \
    FROM generate_series(1, 2000) n; \
    INSERT INTO fills (trade_id, seq, idx, ts, instrument, price, qty, aggressor, maker_order, taker_order, \
        maker_account, taker_account, maker_fee, taker_fee) \
    SELECT 2 * n + (n % 2), n, 0, 10 * n, n % 3, 100, 1, 0, 3 * (1 + n % 2000), 3 * (1 + (n + 1) % 2000), n % 5, \
        CASE WHEN n % 7 = 0 THEN n % 5 ELSE (n + 1 + n % 3) % 5 END, 0, 0 \
    FROM generate_series(1, 3000) n; \
    UPDATE settlement_cursor SET applied_seq = 3000";

/// Every fill of `account` (as (fill id, trade id)) by the version 4 queries: one per side on
/// its (side_account, trade_id) index, newest first.
async fn v4_fills(c: &tokio_postgres::Client, account: i64, instrument: Option<i64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (side, taker) in [("maker", 1), ("taker", 0)] {
        let sql = format!(
            "SELECT trade_id FROM fills WHERE {side}_account = $1 AND trade_id < $2 \
             AND ($3::int8 IS NULL OR instrument = $3) ORDER BY trade_id DESC LIMIT $4"
        );
        for r in c.query(&sql, &[&account, &i64::MAX, &instrument, &100_000i64]).await.unwrap() {
            let t = r.get::<_, i64>(0) as u64;
            out.push((t * 2 + (1 - taker), t));
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

async fn v4_orders(c: &tokio_postgres::Client, account: i64, instrument: Option<i64>) -> Vec<u64> {
    let sql = "SELECT order_id FROM orders WHERE account = $1 AND order_id < $2 \
               AND ($3::int8 IS NULL OR instrument = $3) ORDER BY order_id DESC LIMIT $4";
    c.query(sql, &[&account, &i64::MAX, &instrument, &100_000i64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect()
}

/// Every page of the account's fills, walked with `page` rows at a time.
async fn paged_fills(s: &PgStore, account: u32, instrument: Option<u32>, page: usize) -> Vec<(u64, u64)> {
    let (mut out, mut cursor) = (Vec::new(), None);
    loop {
        let p = s.fills_by_account(account, instrument, cursor, page).await.unwrap();
        assert!(p.rows.len() <= page);
        out.extend(p.rows.iter().map(|f| (f.fill_id(), f.fill.trade_id)));
        match p.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

async fn paged_orders(s: &PgStore, account: u32, instrument: Option<u32>, page: usize) -> Vec<u64> {
    let (mut out, mut cursor) = (Vec::new(), None);
    loop {
        let p = s.orders_by_account(account, instrument, cursor, page).await.unwrap();
        assert!(p.rows.len() <= page);
        assert!(p.rows.iter().all(|o| o.account == account));
        out.extend(p.rows.iter().map(|o| o.order_id));
        match p.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn postgres_version_4_history_reads_the_same_after_version_5() {
    let admin = testkit::shared_server().unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let mut db = format!("castle_{}_migrate_v5", std::process::id());
    db.truncate(63);
    let url = pg::create_database(&admin, &db).await.unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let conn = tokio::spawn(conn);
    let v4: Vec<_> = POSTGRES_MIGRATIONS.iter().take_while(|m| m.version <= 4).collect();
    assert_eq!(v4.len(), 4);
    let mut setup = String::from(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
    );
    for m in &v4 {
        setup.push_str(m.sql);
        setup.push_str(&format!(
            "; INSERT INTO schema_migrations (version, name) VALUES ({}, '{}');",
            m.version, m.name
        ));
    }
    setup.push_str(V4_ROWS);
    client.batch_execute(&setup).await.expect("version 4 schema and rows");

    // The answers of the version 4 queries, per account and instrument filter.
    let mut before: BTreeMap<(i64, Option<i64>), History> = BTreeMap::new();
    for a in 0..ACCOUNTS {
        for inst in [None, Some(0), Some(2)] {
            before.insert((a, inst), (v4_fills(&client, a, inst).await, v4_orders(&client, a, inst).await));
        }
    }
    assert!(before.values().all(|(f, o)| !f.is_empty() && !o.is_empty()), "every account has history");
    let self_trades: usize = before[&(0, None)].0.windows(2).filter(|w| w[0].1 == w[1].1).count();
    assert!(self_trades > 10, "self-trades are two fills of one account ({self_trades})");

    let store = PgStore::connect(&PgConfig::new(url.clone())).await.expect("upgrade to version 5");
    for ((a, inst), (fills, orders)) in &before {
        let (acct, filter) = (*a as u32, inst.map(|i| i as u32));
        for page in [3, 100, 1_000] {
            if page == 3 && inst.is_some() {
                continue; // small pages over every filter would only repeat the same walk slowly
            }
            assert_eq!(&paged_fills(&store, acct, filter, page).await, fills, "fills of {a} on {inst:?}, page {page}");
            assert_eq!(
                &paged_orders(&store, acct, filter, page).await,
                orders,
                "orders of {a} on {inst:?}, page {page}"
            );
        }
    }
    // Single orders: by id with the account checked, and by client id, as before.
    assert_eq!(store.order(3, 9).await.unwrap().map(|o| (o.order_id, o.account)), Some((9, 3)));
    assert_eq!(store.order(2, 9).await.unwrap(), None, "another account's order is not found");
    assert_eq!(store.order_by_client_id(3, "c3").await.unwrap().map(|o| o.order_id), Some(9));

    // A flush after the upgrade: a new order of account 1 and a fill between accounts 1 and 4,
    // listed in the maps and first in the history.
    let mut order = store.order(1, 3).await.unwrap().expect("order 3 of account 1");
    order.order_id = 7_000;
    order.client_order_id = "new".into();
    let fill = FillRow {
        trade_id: 9_000,
        seq: 3_001,
        idx: 0,
        ts: 30_010,
        instrument: 1,
        price: 100,
        qty: 1,
        aggressor: 0,
        maker_order: 3,
        taker_order: 7_000,
        maker_account: 4,
        taker_account: 1,
        maker_fee: 0,
        taker_fee: 0,
    };
    let f = Flush {
        prev_seq: 3_000,
        seq: 3_001,
        batches: 1,
        fills: vec![fill],
        orders: vec![order],
        new_orders: 1,
        ..Flush::default()
    };
    store.apply(Arc::new(f)).await.unwrap();
    let p = store.fills_by_account(1, None, None, 2).await.unwrap();
    assert_eq!(p.rows.iter().map(|f| f.fill_id()).collect::<Vec<_>>()[0], 9_000 * 2 + 1, "the taker side first");
    assert_eq!(p.rows[1].fill_id(), before[&(1, None)].0[0].0, "then the newest fill before the upgrade");
    let p = store.fills_by_account(4, Some(1), None, 1).await.unwrap();
    assert_eq!((p.rows[0].fill_id(), p.next.is_some()), (9_000 * 2, true));
    let o = store.orders_by_account(1, None, None, 2).await.unwrap();
    assert_eq!(o.rows.iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![7_000, before[&(1, None)].1[0]]);
    drop(client);
    let _ = conn.await;
}
