//! Reconciliation: the ledger against the engine at the same sequence number.
//!
//! The engine side is an [`EngineView`]: balances (available, locked) per (account, asset)
//! and the trade count at a seq, taken from a replay of the engine's journal
//! ([`EngineView::from_journal`]) or from an engine in memory ([`EngineView::from_engine`]).
//! [`reconcile`] reports every difference; an empty report means the ledger is right.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use castle_engine::{AccountId, AssetId, Engine, EventKind, Limits, OrderBook, Seq};

use crate::store::{Store, StoreError};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineView {
    pub seq: Seq,
    /// (available, locked), only pairs that are non-zero.
    pub balances: BTreeMap<(AccountId, AssetId), (i64, i64)>,
    /// Trade events up to `seq` (trade ids run 1..=trades).
    pub trades: u64,
}

impl EngineView {
    /// Reads an engine's balances for `accounts` (every asset) at its current seq.
    pub fn from_engine<B: OrderBook>(
        engine: &Engine<B>,
        accounts: impl IntoIterator<Item = AccountId>,
        trades: u64,
    ) -> EngineView {
        let mut balances = BTreeMap::new();
        for account in accounts {
            for asset in 0..engine.limits().max_assets {
                if let Some(b) = engine.balance(account, asset) {
                    if b.available != 0 || b.locked != 0 {
                        balances.insert((account, asset), (b.available, b.locked));
                    }
                }
            }
        }
        EngineView { seq: engine.seq(), balances, trades }
    }

    /// Folds one engine batch in (the engine's absolute balances as it reported them):
    /// builds a view from the event stream alone, e.g. of a running engine over TCP.
    pub fn observe(&mut self, batch: &castle_link::EngineBatch) {
        for e in &batch.events {
            match e.kind {
                EventKind::BalanceChanged { account, asset, available, locked } => {
                    if available == 0 && locked == 0 {
                        self.balances.remove(&(account, asset));
                    } else {
                        self.balances.insert((account, asset), (available, locked));
                    }
                }
                EventKind::Trade { .. } => self.trades += 1,
                _ => {}
            }
        }
        self.seq = self.seq.max(batch.seq);
    }

    /// Subscribes to a running engine server from the start and folds its stream up to `seq`.
    pub fn from_engine_stream(addr: &str, seq: Seq) -> std::io::Result<EngineView> {
        use castle_engine_server::client::{Connection, Delivery};
        let mut view = EngineView::default();
        if seq == 0 {
            return Ok(view);
        }
        let mut c = Connection::connect(addr, castle_engine_server::proto::Role::Subscriber, 0, 0)?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        while view.seq < seq {
            match c.recv()? {
                Some(Delivery::Events { seq: s, ts, events }) => {
                    let events = events.into_iter().map(|kind| castle_engine::Event { seq: s, ts, kind }).collect();
                    view.observe(&castle_link::EngineBatch { origin: None, seq: s, ts, events });
                }
                Some(Delivery::Goodbye { text, .. }) => return Err(std::io::Error::other(format!("engine: {text}"))),
                Some(_) => {}
                None => return Err(std::io::Error::other("engine closed the stream")),
            }
        }
        Ok(view)
    }

    /// Replays the journal in `dir` from the start up to `seq` (the ledger's applied seq) and
    /// reads the engine's balances there. The engine server must not be writing to `dir`.
    pub fn from_journal(dir: &Path, limits: Limits, seq: Seq) -> Result<EngineView, castle_engine_server::ServerError> {
        let mut r = castle_engine_server::Replica::new(limits, usize::MAX);
        let mut accounts = BTreeSet::new();
        let mut trades = 0u64;
        castle_engine_server::state::replay_into(
            dir,
            &mut r,
            seq,
            |_, _, _, _, events| {
                for e in events {
                    match e.kind {
                        EventKind::BalanceChanged { account, .. } | EventKind::Transfer { account, .. } => {
                            accounts.insert(account);
                        }
                        EventKind::Trade { .. } => trades += 1,
                        _ => {}
                    }
                }
                true
            },
            &mut |_, _| {},
        )?;
        Ok(EngineView::from_engine(&r.engine, accounts, trades))
    }
}

/// The outcome of a reconciliation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub ledger_seq: Seq,
    pub pairs_checked: usize,
    pub fills: u64,
    pub differences: Vec<String>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compares the ledger with `engine`: applied seq, every balance (available and locked),
/// the balances table against the sum of the entries, the per-asset sum of all entries
/// (zero), no negative balance, and the number of fills.
pub async fn reconcile<S: Store>(store: &S, engine: &EngineView) -> Result<Report, StoreError> {
    let mut d = Vec::new();
    let ledger_seq = store.applied_seq().await?;
    if ledger_seq != engine.seq {
        d.push(format!("seq: ledger applied {ledger_seq}, engine view at {}", engine.seq));
    }
    let balances = store.balances().await?;
    let mut ledger: BTreeMap<(AccountId, AssetId), (i64, i64, i64)> = BTreeMap::new();
    for b in &balances {
        if b.available < 0 || b.locked < 0 {
            d.push(format!("account {} asset {}: negative balance {} / {}", b.account, b.asset, b.available, b.locked));
        }
        ledger.insert((b.account, b.asset), (b.available, b.locked, b.external));
    }
    let keys: BTreeSet<_> = ledger.keys().chain(engine.balances.keys()).copied().collect();
    for k in &keys {
        let (la, ll, _) = ledger.get(k).copied().unwrap_or_default();
        let (ea, el) = engine.balances.get(k).copied().unwrap_or_default();
        if (la, ll) != (ea, el) {
            d.push(format!(
                "account {} asset {}: ledger available {la} locked {ll} (total {}), engine available {ea} locked {el} (total {})",
                k.0,
                k.1,
                la as i128 + ll as i128,
                ea as i128 + el as i128
            ));
        }
    }
    let totals = store.entry_totals().await?;
    let mut per_asset: BTreeMap<AssetId, i128> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for t in &totals {
        *per_asset.entry(t.asset).or_default() += t.available + t.locked + t.external;
        seen.insert((t.account, t.asset));
        let (a, l, x) = ledger.get(&(t.account, t.asset)).copied().unwrap_or_default();
        if (t.available, t.locked, t.external) != (a as i128, l as i128, x as i128) {
            d.push(format!(
                "account {} asset {}: entries sum to {}/{}/{} (available/locked/external), balances table says {a}/{l}/{x}",
                t.account, t.asset, t.available, t.locked, t.external
            ));
        }
    }
    for (k, (a, l, x)) in &ledger {
        if !seen.contains(k) && (*a, *l, *x) != (0, 0, 0) {
            d.push(format!("account {} asset {}: balance {a}/{l}/{x} without entries", k.0, k.1));
        }
    }
    for (asset, sum) in &per_asset {
        if *sum != 0 {
            d.push(format!("asset {asset}: entries sum to {sum}, not zero"));
        }
    }
    let (fills, max_trade) = store.fill_stats().await?;
    if fills != engine.trades || max_trade != engine.trades {
        d.push(format!("fills: ledger has {fills} (highest trade id {max_trade}), engine made {}", engine.trades));
    }
    Ok(Report { ledger_seq, pairs_checked: keys.len(), fills, differences: d })
}
