//! Read-only order and fill history for gateways (the REST gateway's
//! `allOrders` and `myTrades` when it is configured to read the ledger).
//!
//! It reads only the `orders` and `fills` tables, on its own connections,
//! which are opened read-only (SQLite `SQLITE_OPEN_READ_ONLY`; PostgreSQL
//! `default_transaction_read_only=on`), so a reader can never disturb the
//! consumer's writes. Pages are newest first with an exclusive cursor:
//! order ids for orders, fill ids (`trade_id * 2 + 1` for the taker side,
//! `trade_id * 2` for the maker side, unique per account even for a
//! self-trade) for fills. A page holds at most [`MAX_HISTORY_PAGE`] rows and
//! its `next` cursor is set exactly when older rows exist.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use castle_engine::{AccountId, InstrumentId};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rusqlite::OpenFlags;
use tokio_postgres::config::SslMode;

use crate::any::LedgerUrl;

/// Largest page served.
pub const MAX_HISTORY_PAGE: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

/// One order as the ledger stores it (integers: ticks, lots, ns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistOrder {
    pub order_id: u64,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub client_order_id: String,
    /// 0 buy, 1 sell.
    pub side: i16,
    /// 0 limit, 1 market, 2 stop-market, 3 stop-limit.
    pub kind: i16,
    pub price: i64,
    pub stop_price: i64,
    pub qty: i64,
    /// 0 GTC, 1 IOC, 2 FOK, 3 GTD, 4 DAY.
    pub tif: i16,
    /// 0 open, 1 filled, 2 cancelled.
    pub status: i16,
    /// Engine cancel reason code when cancelled.
    pub cancel_reason: i16,
    pub filled: i64,
    pub leaves: i64,
    pub created_seq: u64,
    pub created_ts: u64,
    pub updated_seq: u64,
    pub updated_ts: u64,
}

/// One side of a trade, as seen by one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistFill {
    pub fill_id: u64,
    pub trade_id: u64,
    pub order_id: u64,
    pub instrument: InstrumentId,
    /// This account's side: 0 buy, 1 sell.
    pub side: i16,
    pub price: i64,
    pub qty: i64,
    pub fee: i64,
    pub maker: bool,
    pub ts: u64,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistPage<T> {
    pub rows: Vec<T>,
    /// Cursor of the next (older) page; None: no older rows.
    pub next: Option<u64>,
}

/// A read-only view of a ledger's history.
#[derive(Clone)]
pub enum History {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(Pool),
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            History::Sqlite(_) => "History(sqlite)",
            History::Postgres(_) => "History(postgres)",
        })
    }
}

const ORDER_COLUMNS: &str = "order_id, account, instrument, client_order_id, side, kind, price, stop_price, qty, tif, \
                             status, cancel_reason, filled, leaves, created_seq, created_ts, updated_seq, updated_ts";

/// A raw fills row: trade_id, seq, ts, instrument, price, qty, aggressor, order, fee.
type RawFill = (i64, i64, i64, i64, i64, i64, i16, i64, i64);

fn u(v: i64) -> Result<u64, HistoryError> {
    u64::try_from(v).map_err(|_| HistoryError::Corrupt(format!("negative id, seq or time {v}")))
}

fn u32c(v: i64) -> Result<u32, HistoryError> {
    u32::try_from(v).map_err(|_| HistoryError::Corrupt(format!("{v} is not a 32-bit id")))
}

/// Cursors are below 2^63 (engine ids are); anything larger means "from the newest".
fn cursor(before: Option<u64>) -> i64 {
    before.map(|b| i64::try_from(b).unwrap_or(i64::MAX)).unwrap_or(i64::MAX)
}

fn fill_of(r: RawFill, maker: bool) -> Result<HistFill, HistoryError> {
    let (trade_id, seq, ts, instrument, price, qty, aggressor, order, fee) = r;
    let trade_id = u(trade_id)?;
    Ok(HistFill {
        fill_id: trade_id * 2 + u64::from(!maker),
        trade_id,
        order_id: u(order)?,
        instrument: u32c(instrument)?,
        // The maker is on the other side of the aggressor.
        side: if maker { 1 - aggressor } else { aggressor },
        price,
        qty,
        fee,
        maker,
        ts: u(ts)?,
        seq: u(seq)?,
    })
}

/// Merges the maker-side and taker-side pages (each newest first, each up to
/// `limit + 1` rows) into one page of at most `limit` fills.
fn merge_fills(maker: Vec<HistFill>, taker: Vec<HistFill>, limit: usize) -> HistPage<HistFill> {
    let mut all = maker;
    all.extend(taker);
    all.sort_by_key(|f| std::cmp::Reverse(f.fill_id));
    let next = (all.len() > limit).then(|| all[limit - 1].fill_id);
    all.truncate(limit);
    HistPage { rows: all, next }
}

fn page_orders(mut rows: Vec<HistOrder>, limit: usize) -> HistPage<HistOrder> {
    let next = (rows.len() > limit).then(|| rows[limit - 1].order_id);
    rows.truncate(limit);
    HistPage { rows, next }
}

/// Fills with a fill id below `before`, for the maker and the taker side: the
/// trade id bounds (exclusive) that select them.
fn fill_bounds(before: Option<u64>) -> (i64, i64) {
    match before {
        None => (i64::MAX, i64::MAX),
        // maker: trade*2 < b  <=> trade < ceil(b/2); taker: trade*2+1 < b <=> trade < floor(b/2).
        Some(b) => (cursor(Some(b.div_ceil(2))), cursor(Some(b / 2))),
    }
}

impl History {
    /// Opens the ledger read-only. The SQLite file must exist (settlement
    /// creates it); `ca_file` adds a trusted CA for PostgreSQL over TLS.
    pub async fn open(url: &LedgerUrl, ca_file: Option<&Path>) -> Result<History, HistoryError> {
        match url {
            LedgerUrl::Sqlite(p) => Self::open_sqlite(p),
            LedgerUrl::Postgres(u) => Self::open_postgres(u, ca_file.map(Path::to_path_buf)).await,
        }
    }

    pub fn open_sqlite(path: &Path) -> Result<History, HistoryError> {
        let c = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        // WAL readers do not block the writer; wait briefly on a checkpoint.
        c.busy_timeout(std::time::Duration::from_secs(2))?;
        c.query_row("SELECT count(*) FROM orders WHERE 0", [], |_| Ok(()))?;
        Ok(History::Sqlite(Arc::new(Mutex::new(c))))
    }

    async fn open_postgres(url: &str, ca_file: Option<PathBuf>) -> Result<History, HistoryError> {
        let mut pg: tokio_postgres::Config =
            url.parse().map_err(|e| HistoryError::Config(format!("database url: {e}")))?;
        // Every transaction of these connections is read-only.
        let opts = format!("{} -c default_transaction_read_only=on", pg.get_options().unwrap_or("")).trim().to_string();
        pg.options(&opts);
        let mgr_cfg = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let mgr = if pg.get_ssl_mode() == SslMode::Disable {
            Manager::from_config(pg, tokio_postgres::NoTls, mgr_cfg)
        } else {
            Manager::from_config(pg, tokio_postgres_rustls::MakeRustlsConnect::new(tls(ca_file.as_deref())?), mgr_cfg)
        };
        let pool = Pool::builder(mgr).max_size(4).build().map_err(|e| HistoryError::Pool(e.to_string()))?;
        let h = History::Postgres(pool);
        // Fail at start, not on the first request, when the database is unreachable.
        h.pg().await?.query_one("SELECT count(*) FROM orders WHERE false", &[]).await?;
        Ok(h)
    }

    async fn pg(&self) -> Result<deadpool_postgres::Object, HistoryError> {
        let History::Postgres(pool) = self else { unreachable!("pg() on a SQLite history") };
        pool.get().await.map_err(|e| {
            let mut t = e.to_string();
            let mut s = std::error::Error::source(&e);
            while let Some(x) = s {
                t.push_str(": ");
                t.push_str(&x.to_string());
                s = x.source();
            }
            HistoryError::Pool(t)
        })
    }

    async fn sqlite<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let History::Sqlite(c) = self else { unreachable!("sqlite() on a PostgreSQL history") };
        let c = c.clone();
        tokio::task::spawn_blocking(move || f(&c.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|e| HistoryError::Config(format!("history query task: {e}")))?
    }

    /// Orders of `account` (optionally one instrument), newest first, ids below `before`.
    pub async fn orders(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HistPage<HistOrder>, HistoryError> {
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        let (a, inst, b, n) = (account as i64, instrument.map(i64::from), cursor(before), limit as i64 + 1);
        let rows = match self {
            History::Sqlite(_) => {
                self.sqlite(move |c| {
                    let mut st = c.prepare_cached(&format!(
                        "SELECT {ORDER_COLUMNS} FROM orders WHERE account = ?1 AND order_id < ?2 \
                         AND (?3 IS NULL OR instrument = ?3) ORDER BY order_id DESC LIMIT ?4"
                    ))?;
                    let raw = st.query_map(rusqlite::params![a, b, inst, n], |r| {
                        Ok((
                            [r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?],
                            r.get::<_, String>(3)?,
                            [r.get::<_, i16>(4)?, r.get(5)?],
                            [r.get::<_, i64>(6)?, r.get(7)?, r.get(8)?],
                            [r.get::<_, i16>(9)?, r.get(10)?, r.get(11)?],
                            [r.get::<_, i64>(12)?, r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?, r.get(17)?],
                        ))
                    })?;
                    raw.map(|r| order_of(r?)).collect::<Result<Vec<_>, _>>()
                })
                .await?
            }
            History::Postgres(_) => {
                let c = self.pg().await?;
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {ORDER_COLUMNS} FROM orders WHERE account = $1 AND order_id < $2 \
                         AND ($3::int8 IS NULL OR instrument = $3) ORDER BY order_id DESC LIMIT $4"
                    ))
                    .await?;
                let mut v = Vec::new();
                for r in c.query(&st, &[&a, &b, &inst, &n]).await? {
                    v.push(order_of((
                        [r.try_get::<_, i64>(0)?, r.try_get(1)?, r.try_get(2)?],
                        r.try_get::<_, String>(3)?,
                        [r.try_get::<_, i16>(4)?, r.try_get(5)?],
                        [r.try_get::<_, i64>(6)?, r.try_get(7)?, r.try_get(8)?],
                        [r.try_get::<_, i16>(9)?, r.try_get(10)?, r.try_get(11)?],
                        [
                            r.try_get::<_, i64>(12)?,
                            r.try_get(13)?,
                            r.try_get(14)?,
                            r.try_get(15)?,
                            r.try_get(16)?,
                            r.try_get(17)?,
                        ],
                    ))?);
                }
                v
            }
        };
        Ok(page_orders(rows, limit))
    }

    /// Sum of price * qty (tick-lots) of the fills of each of `orders` (orders of
    /// `account`; at most [`MAX_HISTORY_PAGE`]). This scans the account's fills
    /// (the ledger has no index by order id), so it is for one page at a time.
    pub async fn filled_notional(
        &self,
        account: AccountId,
        orders: &[u64],
    ) -> Result<std::collections::HashMap<u64, i128>, HistoryError> {
        let mut out = std::collections::HashMap::new();
        if orders.is_empty() {
            return Ok(out);
        }
        assert!(orders.len() <= MAX_HISTORY_PAGE, "one page of orders at a time");
        let (lo, hi) = (*orders.iter().min().expect("not empty"), *orders.iter().max().expect("not empty"));
        let (a, lo, hi) = (account as i64, cursor(Some(lo)), cursor(Some(hi)));
        let sql = |p: [&str; 3]| {
            format!(
                "SELECT maker_order, price, qty FROM fills WHERE maker_account = {0} AND maker_order BETWEEN {1} AND {2} \
                 UNION ALL SELECT taker_order, price, qty FROM fills WHERE taker_account = {0} \
                 AND taker_order BETWEEN {1} AND {2}",
                p[0], p[1], p[2]
            )
        };
        let rows: Vec<(i64, i64, i64)> = match self {
            History::Sqlite(_) => {
                let q = sql(["?1", "?2", "?3"]);
                self.sqlite(move |c| {
                    let mut st = c.prepare_cached(&q)?;
                    let rows = st.query_map(rusqlite::params![a, lo, hi], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            History::Postgres(_) => {
                let c = self.pg().await?;
                let st = c.prepare_cached(&sql(["$1", "$2", "$3"])).await?;
                let mut v = Vec::new();
                for r in c.query(&st, &[&a, &lo, &hi]).await? {
                    v.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
                }
                v
            }
        };
        let wanted: std::collections::HashSet<u64> = orders.iter().copied().collect();
        for (o, price, qty) in rows {
            let o = u(o)?;
            if wanted.contains(&o) {
                *out.entry(o).or_insert(0) += price as i128 * qty as i128;
            }
        }
        Ok(out)
    }

    /// One order of `account` (None: not in the ledger, or another account's).
    pub async fn order(&self, account: AccountId, order_id: u64) -> Result<Option<HistOrder>, HistoryError> {
        let Ok(id) = i64::try_from(order_id) else { return Ok(None) };
        let p = self.orders(account, None, Some(id as u64 + 1), 1).await?;
        Ok(p.rows.into_iter().find(|o| o.order_id == order_id))
    }

    /// Fills of `account` (optionally one instrument), newest first, fill ids below `before`.
    pub async fn fills(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HistPage<HistFill>, HistoryError> {
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        let (a, inst, n) = (account as i64, instrument.map(i64::from), limit as i64 + 1);
        let (bm, bt) = fill_bounds(before);
        // One query per side, each on its (account, trade_id) index, merged here.
        let side_sql = |side: &str| {
            format!(
                "SELECT trade_id, seq, ts, instrument, price, qty, aggressor, {side}_order, {side}_fee FROM fills \
                 WHERE {side}_account = {{a}} AND trade_id < {{b}} AND ({{i}} IS NULL OR instrument = {{i}}) \
                 ORDER BY trade_id DESC LIMIT {{n}}"
            )
        };
        let (maker, taker) = match self {
            History::Sqlite(_) => {
                let q = |side: &str| {
                    side_sql(side).replace("{a}", "?1").replace("{b}", "?2").replace("{i}", "?3").replace("{n}", "?4")
                };
                let (qm, qt) = (q("maker"), q("taker"));
                self.sqlite(move |c| {
                    let run = |sql: &str, b: i64| -> Result<Vec<RawFill>, HistoryError> {
                        let mut st = c.prepare_cached(sql)?;
                        let rows = st.query_map(rusqlite::params![a, b, inst, n], |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                                r.get(6)?,
                                r.get(7)?,
                                r.get(8)?,
                            ))
                        })?;
                        Ok(rows.collect::<Result<Vec<_>, _>>()?)
                    };
                    Ok((run(&qm, bm)?, run(&qt, bt)?))
                })
                .await?
            }
            History::Postgres(_) => {
                let q = |side: &str| {
                    side_sql(side)
                        .replace("{a}", "$1")
                        .replace("{b}", "$2")
                        .replace("{i}", "$3::int8")
                        .replace("{n}", "$4")
                };
                let c = self.pg().await?;
                let mut out: [Vec<RawFill>; 2] = [Vec::new(), Vec::new()];
                for (k, (sql, b)) in [(q("maker"), bm), (q("taker"), bt)].into_iter().enumerate() {
                    let st = c.prepare_cached(&sql).await?;
                    for r in c.query(&st, &[&a, &b, &inst, &n]).await? {
                        out[k].push((
                            r.try_get(0)?,
                            r.try_get(1)?,
                            r.try_get(2)?,
                            r.try_get(3)?,
                            r.try_get(4)?,
                            r.try_get(5)?,
                            r.try_get(6)?,
                            r.try_get(7)?,
                            r.try_get(8)?,
                        ));
                    }
                }
                let [m, t] = out;
                (m, t)
            }
        };
        let maker = maker.into_iter().map(|r| fill_of(r, true)).collect::<Result<Vec<_>, _>>()?;
        let taker = taker.into_iter().map(|r| fill_of(r, false)).collect::<Result<Vec<_>, _>>()?;
        Ok(merge_fills(maker, taker, limit))
    }
}

type RawOrder = ([i64; 3], String, [i16; 2], [i64; 3], [i16; 3], [i64; 6]);

fn order_of(r: RawOrder) -> Result<HistOrder, HistoryError> {
    let ([id, account, instrument], client_order_id, [side, kind], [price, stop_price, qty], [tif, status, cr], t) = r;
    Ok(HistOrder {
        order_id: u(id)?,
        account: u32c(account)?,
        instrument: u32c(instrument)?,
        client_order_id,
        side,
        kind,
        price,
        stop_price,
        qty,
        tif,
        status,
        cancel_reason: cr,
        filled: t[0],
        leaves: t[1],
        created_seq: u(t[2])?,
        created_ts: u(t[3])?,
        updated_seq: u(t[4])?,
        updated_ts: u(t[5])?,
    })
}

fn tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, HistoryError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| HistoryError::Config(format!("{}: {e}", path.display())))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| HistoryError::Config(format!("{}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| HistoryError::Config(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HistoryError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fill_id: u64) -> HistFill {
        HistFill {
            fill_id,
            trade_id: fill_id / 2,
            order_id: 1,
            instrument: 0,
            side: 0,
            price: 1,
            qty: 1,
            fee: 0,
            maker: fill_id.is_multiple_of(2),
            ts: 0,
            seq: 0,
        }
    }

    #[test]
    fn fill_cursor_bounds_select_exactly_the_older_fills() {
        for before in 0..40u64 {
            let (bm, bt) = fill_bounds(Some(before));
            for trade in 0..20i64 {
                assert_eq!(trade < bm, (trade as u64) * 2 < before, "maker trade {trade} before {before}");
                assert_eq!(trade < bt, (trade as u64) * 2 + 1 < before, "taker trade {trade} before {before}");
            }
        }
    }

    #[test]
    fn merged_pages_are_the_newest_of_both_sides() {
        // maker fills at even ids, taker at odd ids; a self-trade has both.
        let maker: Vec<_> = [20, 14, 10].into_iter().map(f).collect();
        let taker: Vec<_> = [21, 15, 9].into_iter().map(f).collect();
        let p = merge_fills(maker, taker, 4);
        assert_eq!(p.rows.iter().map(|x| x.fill_id).collect::<Vec<_>>(), vec![21, 20, 15, 14]);
        assert_eq!(p.next, Some(14));
        let p = merge_fills(vec![f(4)], vec![f(3)], 2);
        assert_eq!((p.rows.len(), p.next), (2, None));
    }
}
