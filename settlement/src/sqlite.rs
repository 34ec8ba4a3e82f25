//! The SQLite backend: the embedded default (`castle serve`), same schema and semantics as
//! PostgreSQL. WAL journal with `synchronous=FULL`, so a commit is on disk when it returns.
//! rusqlite is blocking: every call runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use castle_engine::{AccountId, InstrumentId, OrderId, Seq};
use rusqlite::{params, Connection, OptionalExtension};

use crate::ledger::{AccountFill, BalanceRow, Entry, EntryKind, FillRow, Flush, LedgerState, OrderRow, Page};
use crate::store::{
    check_schema, cursor, fill_bounds, i, merge_fills, page, EntryTotal, Store, StoreError, MAX_PAGE, SQLITE_MIGRATIONS,
};

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    )?;
    for m in SQLITE_MIGRATIONS {
        // IMMEDIATE: a second process opening the same file waits instead of migrating twice.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: Option<i32> = tx
            .query_row("SELECT version FROM schema_migrations WHERE version = ?1", [m.version], |r| r.get(0))
            .optional()?;
        if done.is_none() {
            tx.execute_batch(m.sql).map_err(|e| StoreError::Migration {
                version: m.version,
                name: m.name,
                reason: e.to_string(),
            })?;
            tx.execute("INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)", params![m.version, m.name])?;
            tracing::info!(version = m.version, name = m.name, "sqlite migration applied");
        }
        tx.commit()?;
    }
    Ok(())
}

fn u(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative id or seq {v}")))
}

fn u32c(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{v} is not a 32-bit id")))
}

impl SqliteStore {
    /// Opens (creating if needed) the ledger file and applies pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // FULL: the WAL is fsynced at every commit (durability equal to synchronous_commit=on).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut conn)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// Opens an existing ledger file read-only (history readers): no migration; the schema
    /// must already be at this build's version. WAL readers do not block the writer.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
                | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        // Wait briefly on a checkpoint rather than failing a request.
        conn.busy_timeout(std::time::Duration::from_secs(2))?;
        let version: Option<i32> = conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| r.get(0))?;
        check_schema(version, SQLITE_MIGRATIONS)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().map_err(|_| StoreError::Config("sqlite connection poisoned".into()))?;
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Config(format!("sqlite task: {e}")))?
    }
}

const ORDER_COLUMNS: &str = "order_id, account, instrument, client_order_id, side, kind, price, stop_price, qty, tif, \
                             status, cancel_reason, filled, leaves, created_seq, created_ts, updated_seq, updated_ts, \
                             expire_ts, post_only, display_qty, stp, notional";

/// The raw columns of one orders row (integers checked when converted).
struct RawOrder {
    ints: [i64; 19],
    client_order_id: String,
    post_only: Option<bool>,
    display_qty: Option<i64>,
    stp: Option<i16>,
}

fn read_order(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawOrder> {
    let mut ints = [0i64; 19];
    for (k, slot) in ints.iter_mut().enumerate() {
        // Column 3 is the client order id (text), columns 19-21 the NULLable fields.
        let col = match k {
            0..=2 => k,
            3..=17 => k + 1,
            _ => 22,
        };
        *slot = r.get(col)?;
    }
    Ok(RawOrder { ints, client_order_id: r.get(3)?, post_only: r.get(19)?, display_qty: r.get(20)?, stp: r.get(21)? })
}

fn order_from(raw: RawOrder) -> Result<OrderRow, StoreError> {
    let v = raw.ints;
    Ok(OrderRow {
        order_id: u(v[0])?,
        account: u32c(v[1])?,
        instrument: u32c(v[2])?,
        client_order_id: raw.client_order_id,
        side: v[3] as i16,
        kind: v[4] as i16,
        price: v[5],
        stop_price: v[6],
        qty: v[7],
        tif: v[8] as i16,
        status: v[9] as i16,
        cancel_reason: v[10] as i16,
        filled: v[11],
        leaves: v[12],
        created_seq: u(v[13])?,
        created_ts: u(v[14])?,
        updated_seq: u(v[15])?,
        updated_ts: u(v[16])?,
        expire_ts: u(v[17])?,
        post_only: raw.post_only,
        display_qty: raw.display_qty,
        stp: raw.stp,
        notional: v[18],
    })
}

fn query_orders(c: &Connection, sql: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<OrderRow>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(p, read_order)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(order_from(row?)?);
    }
    Ok(out)
}

const FILL_COLUMNS: &str = "trade_id, seq, idx, ts, instrument, price, qty, aggressor, maker_order, taker_order, \
                            maker_account, taker_account, maker_fee, taker_fee";

fn fill_from(v: [i64; 14]) -> Result<FillRow, StoreError> {
    Ok(FillRow {
        trade_id: u(v[0])?,
        seq: u(v[1])?,
        idx: u32c(v[2])?,
        ts: u(v[3])?,
        instrument: u32c(v[4])?,
        price: v[5],
        qty: v[6],
        aggressor: v[7] as i16,
        maker_order: u(v[8])?,
        taker_order: u(v[9])?,
        maker_account: u32c(v[10])?,
        taker_account: u32c(v[11])?,
        maker_fee: v[12],
        taker_fee: v[13],
    })
}

fn apply_tx(c: &mut Connection, f: &Flush) -> Result<(), StoreError> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Compare-and-set first: the write lock is held from here to commit.
    let n = tx.execute(
        "UPDATE settlement_cursor SET applied_seq = ?2, updated_at = CURRENT_TIMESTAMP WHERE id = 1 AND applied_seq = ?1",
        params![i(f.prev_seq), i(f.seq)],
    )?;
    if n != 1 {
        let found: i64 = tx.query_row("SELECT applied_seq FROM settlement_cursor WHERE id = 1", [], |r| r.get(0))?;
        return Err(StoreError::Conflict { expected: f.prev_seq, found: u(found)? });
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO ledger_entries (seq, idx, ts, account, asset, kind, reference, available, locked, external) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for e in &f.entries {
            st.execute(params![
                i(e.seq),
                e.idx,
                i(e.ts),
                e.account,
                e.asset,
                e.kind as i16,
                i(e.reference),
                e.available,
                e.locked,
                e.external
            ])?;
        }
        let mut st = tx.prepare_cached(&format!(
            "INSERT INTO fills ({FILL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))?;
        for x in &f.fills {
            st.execute(params![
                i(x.trade_id),
                i(x.seq),
                x.idx,
                i(x.ts),
                x.instrument,
                x.price,
                x.qty,
                x.aggressor,
                i(x.maker_order),
                i(x.taker_order),
                x.maker_account,
                x.taker_account,
                x.maker_fee,
                x.taker_fee
            ])?;
        }
        let mut st = tx.prepare_cached(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
             ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23) ON CONFLICT (order_id) DO UPDATE SET \
             client_order_id = excluded.client_order_id, price = excluded.price, qty = excluded.qty, \
             status = excluded.status, cancel_reason = excluded.cancel_reason, filled = excluded.filled, \
             leaves = excluded.leaves, updated_seq = excluded.updated_seq, updated_ts = excluded.updated_ts, \
             notional = excluded.notional"
        ))?;
        for o in &f.orders {
            st.execute(params![
                i(o.order_id),
                o.account,
                o.instrument,
                o.client_order_id,
                o.side,
                o.kind,
                o.price,
                o.stop_price,
                o.qty,
                o.tif,
                o.status,
                o.cancel_reason,
                o.filled,
                o.leaves,
                i(o.created_seq),
                i(o.created_ts),
                i(o.updated_seq),
                i(o.updated_ts),
                i(o.expire_ts),
                o.post_only,
                o.display_qty,
                o.stp,
                o.notional
            ])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO balances (account, asset, available, locked, external, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (account, asset) DO UPDATE SET available = excluded.available, locked = excluded.locked, \
             external = excluded.external, seq = excluded.seq",
        )?;
        for b in &f.balances {
            st.execute(params![b.account, b.asset, b.available, b.locked, b.external, i(b.seq)])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn balances_of(c: &Connection) -> Result<Vec<BalanceRow>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT account, asset, available, locked, external, seq FROM balances ORDER BY account, asset",
    )?;
    let rows = st.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, i64>(5)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (a, s, available, locked, external, seq) = row?;
        out.push(BalanceRow { account: u32c(a)?, asset: u32c(s)?, available, locked, external, seq: u(seq)? });
    }
    Ok(out)
}

fn applied(c: &Connection) -> Result<Seq, StoreError> {
    let v: i64 = c.query_row("SELECT applied_seq FROM settlement_cursor WHERE id = 1", [], |r| r.get(0))?;
    u(v)
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn load(&self) -> Result<LedgerState, StoreError> {
        self.with(|c| {
            // One read transaction: seq, balances and orders from the same commit.
            let tx = c.transaction()?;
            let applied_seq = applied(&tx)?;
            let balances = balances_of(&tx)?;
            let open_orders = query_orders(
                &tx,
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE status = 0 ORDER BY order_id"),
                &[],
            )?;
            tx.commit()?;
            Ok(LedgerState { applied_seq, balances, open_orders })
        })
        .await
    }

    async fn apply(&self, flush: Arc<Flush>) -> Result<(), StoreError> {
        self.with(move |c| apply_tx(c, &flush)).await
    }

    async fn applied_seq(&self) -> Result<Seq, StoreError> {
        self.with(|c| applied(c)).await
    }

    async fn balances(&self) -> Result<Vec<BalanceRow>, StoreError> {
        self.with(|c| balances_of(c)).await
    }

    async fn entry_totals(&self) -> Result<Vec<EntryTotal>, StoreError> {
        self.with(|c| {
            // SQLite's SUM of integers errors on overflow rather than wrapping: safe.
            let mut st = c.prepare_cached(
                "SELECT account, asset, SUM(available), SUM(locked), SUM(external) FROM ledger_entries \
                 GROUP BY account, asset ORDER BY account, asset",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (a, s, av, lo, ex) = row?;
                out.push(EntryTotal {
                    account: u32c(a)?,
                    asset: u32c(s)?,
                    available: av as i128,
                    locked: lo as i128,
                    external: ex as i128,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn entries(&self, from: Seq, to: Seq) -> Result<Vec<Entry>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, idx, ts, account, asset, kind, reference, available, locked, external FROM ledger_entries \
                 WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq, idx",
            )?;
            let rows = st.query_map(params![i(from), i(to.min(i64::MAX as u64))], |r| {
                let mut v = [0i64; 10];
                for (k, s) in v.iter_mut().enumerate() {
                    *s = r.get(k)?;
                }
                Ok(v)
            })?;
            let mut out = Vec::new();
            for row in rows {
                let v = row?;
                out.push(Entry {
                    seq: u(v[0])?,
                    idx: u32c(v[1])?,
                    ts: u(v[2])?,
                    account: u32c(v[3])?,
                    asset: u32c(v[4])?,
                    kind: EntryKind::from_i16(v[5] as i16)
                        .ok_or_else(|| StoreError::Corrupt(format!("entry kind {}", v[5])))?,
                    reference: u(v[6])?,
                    available: v[7],
                    locked: v[8],
                    external: v[9],
                });
            }
            Ok(out)
        })
        .await
    }

    async fn fill_stats(&self) -> Result<(u64, u64), StoreError> {
        self.with(|c| {
            let (n, max): (i64, i64) =
                c.query_row("SELECT COUNT(*), COALESCE(MAX(trade_id), 0) FROM fills", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            Ok((u(n)?, u(max)?))
        })
        .await
    }

    async fn fills_by_account(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<AccountFill>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (bm, bt) = fill_bounds(before);
        self.with(move |c| {
            let inst = instrument.map(i64::from);
            // One query per side, each on its (side_account, trade_id) index, merged after.
            let side = |side: &str, b: i64| -> Result<Vec<FillRow>, StoreError> {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {FILL_COLUMNS} FROM fills WHERE {side}_account = ?1 AND trade_id < ?2 \
                     AND (?3 IS NULL OR instrument = ?3) ORDER BY trade_id DESC LIMIT ?4"
                ))?;
                let rows = st.query_map(params![account, b, inst, (limit + 1) as i64], |r| {
                    let mut v = [0i64; 14];
                    for (k, s) in v.iter_mut().enumerate() {
                        *s = r.get(k)?;
                    }
                    Ok(v)
                })?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(fill_from(row?)?);
                }
                Ok(out)
            };
            let maker = side("maker", bm)?;
            let taker = side("taker", bt)?;
            Ok(merge_fills(maker, taker, limit))
        })
        .await
    }

    async fn orders_by_account(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<OrderRow>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.with(move |c| {
            let rows = query_orders(
                c,
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE account = ?1 AND order_id < ?2 \
                     AND (?3 IS NULL OR instrument = ?3) ORDER BY order_id DESC LIMIT ?4"
                ),
                &[&account, &cursor(before), &instrument.map(i64::from), &((limit + 1) as i64)],
            )?;
            Ok(page(rows, limit, |o| o.order_id))
        })
        .await
    }

    async fn order(&self, account: AccountId, order_id: OrderId) -> Result<Option<OrderRow>, StoreError> {
        let Ok(id) = i64::try_from(order_id) else { return Ok(None) };
        self.with(move |c| {
            let rows = query_orders(
                c,
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE account = ?1 AND order_id = ?2"),
                &[&account, &id],
            )?;
            Ok(rows.into_iter().next())
        })
        .await
    }

    async fn order_by_client_id(
        &self,
        account: AccountId,
        client_order_id: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        if client_order_id.is_empty() {
            return Ok(None);
        }
        let cid = client_order_id.to_string();
        self.with(move |c| {
            let rows = query_orders(
                c,
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE account = ?1 AND client_order_id = ?2 \
                     AND client_order_id <> '' ORDER BY order_id DESC LIMIT 1"
                ),
                &[&account, &cid],
            )?;
            Ok(rows.into_iter().next())
        })
        .await
    }
}
