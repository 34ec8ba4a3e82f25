//! Balances per account and asset, with pre-trade locks.
//!
//! Each account has `available` and `locked` per asset. An order locks what
//! it could spend; a fill spends from `locked` and credits the counterparty's
//! `available`; a cancel returns the rest of the lock. The engine keeps the
//! total supply of each asset (deposits minus withdrawals) so conservation can
//! be checked at any time.

use rustc_hash::FxHashMap;

use crate::command::StpMode;
use crate::event::RejectReason;
use crate::types::{AccountId, Amount, AssetId, MAX_VALUE};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Balance {
    pub available: Amount,
    pub locked: Amount,
}

/// Dense index of an account inside [`Accounts`].
pub type AccountIx = u32;

pub struct Accounts {
    index: FxHashMap<AccountId, AccountIx>,
    ids: Vec<AccountId>,
    /// Row-major: account index * max_assets + asset.
    balances: Vec<Balance>,
    stp: Vec<StpMode>,
    killed: Vec<bool>,
    /// Net deposits per asset. Capped at MAX_VALUE, which bounds every balance.
    supply: Vec<Amount>,
    max_assets: u32,
    max_accounts: u32,
}

impl Accounts {
    pub fn new(max_accounts: u32, max_assets: u32) -> Self {
        Accounts {
            index: FxHashMap::default(),
            ids: Vec::new(),
            balances: Vec::new(),
            stp: Vec::new(),
            killed: Vec::new(),
            supply: vec![0; max_assets as usize],
            max_assets,
            max_accounts,
        }
    }

    pub fn max_assets(&self) -> u32 {
        self.max_assets
    }

    pub fn ix(&self, account: AccountId) -> Option<AccountIx> {
        self.index.get(&account).copied()
    }

    /// Looks the account up, creating it (with empty balances) if new.
    pub fn ix_or_create(&mut self, account: AccountId) -> Result<AccountIx, RejectReason> {
        if let Some(ix) = self.ix(account) {
            return Ok(ix);
        }
        if self.ids.len() >= self.max_accounts as usize {
            return Err(RejectReason::TooManyAccounts);
        }
        let ix = self.ids.len() as AccountIx;
        self.index.insert(account, ix);
        self.ids.push(account);
        self.balances.extend(std::iter::repeat_n(Balance::default(), self.max_assets as usize));
        self.stp.push(StpMode::CancelNewest);
        self.killed.push(false);
        Ok(ix)
    }

    pub fn id(&self, ix: AccountIx) -> AccountId {
        self.ids[ix as usize]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn slot(&self, ix: AccountIx, asset: AssetId) -> usize {
        debug_assert!(asset < self.max_assets);
        ix as usize * self.max_assets as usize + asset as usize
    }

    pub fn balance(&self, ix: AccountIx, asset: AssetId) -> Balance {
        self.balances[self.slot(ix, asset)]
    }

    fn balance_mut(&mut self, ix: AccountIx, asset: AssetId) -> &mut Balance {
        let s = self.slot(ix, asset);
        &mut self.balances[s]
    }

    pub fn supply(&self, asset: AssetId) -> Amount {
        self.supply[asset as usize]
    }

    pub fn stp(&self, ix: AccountIx) -> StpMode {
        self.stp[ix as usize]
    }

    pub fn set_stp(&mut self, ix: AccountIx, mode: StpMode) {
        self.stp[ix as usize] = mode;
    }

    pub fn killed(&self, ix: AccountIx) -> bool {
        self.killed[ix as usize]
    }

    pub fn set_killed(&mut self, ix: AccountIx, killed: bool) {
        self.killed[ix as usize] = killed;
    }

    pub fn deposit(&mut self, ix: AccountIx, asset: AssetId, amount: Amount) -> Result<(), RejectReason> {
        debug_assert!(amount > 0);
        let supply = self.supply[asset as usize];
        if supply > MAX_VALUE - amount {
            return Err(RejectReason::BalanceOverflow);
        }
        self.supply[asset as usize] = supply + amount;
        self.balance_mut(ix, asset).available += amount;
        Ok(())
    }

    pub fn withdraw(&mut self, ix: AccountIx, asset: AssetId, amount: Amount) -> Result<(), RejectReason> {
        let b = self.balance_mut(ix, asset);
        if b.available < amount {
            return Err(RejectReason::InsufficientBalance);
        }
        b.available -= amount;
        self.supply[asset as usize] -= amount;
        Ok(())
    }

    /// Moves `amount` from available to locked.
    pub fn lock(&mut self, ix: AccountIx, asset: AssetId, amount: Amount) -> Result<(), RejectReason> {
        let b = self.balance_mut(ix, asset);
        if b.available < amount {
            return Err(RejectReason::InsufficientBalance);
        }
        b.available -= amount;
        b.locked += amount;
        Ok(())
    }

    /// Returns `amount` of a lock to available.
    pub fn unlock(&mut self, ix: AccountIx, asset: AssetId, amount: Amount) {
        let b = self.balance_mut(ix, asset);
        assert!(amount >= 0 && b.locked >= amount, "unlock beyond the lock");
        b.locked -= amount;
        b.available += amount;
    }

    /// Spends `amount` out of the lock (it leaves the account).
    pub fn spend_locked(&mut self, ix: AccountIx, asset: AssetId, amount: Amount) {
        let b = self.balance_mut(ix, asset);
        assert!(amount >= 0 && b.locked >= amount, "spend beyond the lock");
        b.locked -= amount;
    }

    /// Credits `amount` to available (it came from another account).
    pub fn credit(&mut self, ix: AccountIx, asset: AssetId, amount: Amount) {
        debug_assert!(amount >= 0);
        self.balance_mut(ix, asset).available += amount;
    }

    /// Snapshot restore only: sets a balance and an asset's supply directly (the snapshot's
    /// state hash check vouches for them).
    pub(crate) fn restore_raw(&mut self, ix: AccountIx, asset: AssetId, b: Balance) {
        *self.balance_mut(ix, asset) = b;
    }

    pub(crate) fn restore_supply(&mut self, asset: AssetId, amount: Amount) {
        self.supply[asset as usize] = amount;
    }

    /// Account ids in ascending order (for hashing and reports).
    pub fn sorted_ixs(&self) -> Vec<AccountIx> {
        let mut v: Vec<AccountIx> = (0..self.ids.len() as AccountIx).collect();
        v.sort_by_key(|&ix| self.ids[ix as usize]);
        v
    }
}
