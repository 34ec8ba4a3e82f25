//! Persisted API keys: one small SQLite file, secrets encrypted at rest.
//!
//! HMAC verification needs each key's raw secret, so a secret cannot be
//! stored hashed. It is sealed with ChaCha20-Poly1305 under a 32-byte
//! storage key that never goes into the database: it comes from the
//! configuration (`CASTLE_REST_STORAGE_KEY`, hex) or from a key file created
//! on first start with mode 0600 next to the database. The associated data
//! binds each ciphertext to its key id and account, so copying one row's
//! sealed secret onto another row does not open.
//!
//! Revocation is a timestamp on the row (the row stays, so an id is never
//! reused and the audit trail remains); revoked keys are not loaded.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension};
use zeroize::Zeroizing;

use crate::auth::{ApiKey, Scopes};

pub const STORAGE_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// Version of the sealing scheme, part of the associated data.
const AAD_PREFIX: &[u8] = b"castle/api-key/v1/";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("key database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("storage key file {0}: {1}")]
    KeyFile(PathBuf, std::io::Error),
    #[error("storage key: {0}")]
    BadKey(String),
    #[error("stored key {0} does not decrypt (wrong storage key or tampered row)")]
    Decrypt(String),
    #[error("stored key {0} is invalid: {1}")]
    Corrupt(String, String),
}

/// The 32-byte key that seals secrets (zeroed when dropped; never printed).
pub struct StorageKey(Zeroizing<[u8; STORAGE_KEY_LEN]>);

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

impl StorageKey {
    pub fn from_bytes(b: [u8; STORAGE_KEY_LEN]) -> Self {
        StorageKey(Zeroizing::new(b))
    }

    /// 64 hex digits.
    pub fn from_hex(h: &str) -> Result<Self, VaultError> {
        let mut b = Zeroizing::new([0u8; STORAGE_KEY_LEN]);
        hex::decode_to_slice(h.trim(), &mut b[..])
            .map_err(|_| VaultError::BadKey(format!("must be {} hex digits", STORAGE_KEY_LEN * 2)))?;
        Ok(StorageKey(b))
    }

    /// Reads the key file, or creates it (random, mode 0600) when it does not exist.
    /// A key file readable by others is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, VaultError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let err = |e| VaultError::KeyFile(path.to_path_buf(), e);
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path).map_err(err)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(VaultError::BadKey(format!(
                        "{} is readable by group or others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    )));
                }
                Self::from_hex(&Zeroizing::new(text))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(err)?;
                }
                let key = StorageKey(Zeroizing::new(rand::random::<[u8; STORAGE_KEY_LEN]>()));
                // create_new: two processes starting at once cannot both write one.
                let mut f =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
                f.write_all(Zeroizing::new(hex::encode(&key.0[..])).as_bytes()).map_err(err)?;
                f.sync_all().map_err(err)?;
                tracing::info!(path = %path.display(), "created the API key storage key");
                Ok(key)
            }
            Err(e) => Err(err(e)),
        }
    }
}

fn aad(id: &str, account: u32) -> Vec<u8> {
    let mut v = AAD_PREFIX.to_vec();
    v.extend_from_slice(id.as_bytes());
    v.push(0);
    v.extend_from_slice(&account.to_be_bytes());
    v
}

/// Seals `secret` for the key `id` of `account`: nonce || ciphertext+tag.
pub fn seal(key: &StorageKey, id: &str, account: u32, secret: &str) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0[..]));
    // Random 96-bit nonces: the number of keys ever sealed under one storage
    // key is tiny compared with the 2^32 where collisions start to matter.
    let nonce = rand::random::<[u8; NONCE_LEN]>();
    let aad = aad(id, account);
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: &aad })
        .expect("ChaCha20-Poly1305 encrypts any message below 256 GiB");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

pub fn open(key: &StorageKey, id: &str, account: u32, sealed: &[u8]) -> Result<Zeroizing<String>, VaultError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(VaultError::Decrypt(id.to_string()));
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0[..]));
    let aad = aad(id, account);
    let pt = cipher
        .decrypt(Nonce::from_slice(&sealed[..NONCE_LEN]), Payload { msg: &sealed[NONCE_LEN..], aad: &aad })
        .map_err(|_| VaultError::Decrypt(id.to_string()))?;
    String::from_utf8(pt).map(Zeroizing::new).map_err(|_| VaultError::Decrypt(id.to_string()))
}

/// The key table. Writes are synchronous and durable (synchronous=FULL)
/// before the API answers; key management is rare, so this is cheap overall.
pub struct KeyVault {
    conn: Connection,
    key: StorageKey,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyVault(..)")
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    key_id        TEXT    PRIMARY KEY,
    account       INTEGER NOT NULL,
    scope_read    INTEGER NOT NULL,
    scope_trade   INTEGER NOT NULL,
    allowed_ips   TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    sealed_secret BLOB    NOT NULL,
    revoked_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys (account);
";

impl KeyVault {
    pub fn open(path: &Path, key: StorageKey) -> Result<Self, VaultError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| VaultError::KeyFile(dir.to_path_buf(), e))?;
        }
        let conn = Connection::open(path)?;
        // Owner-only, like the storage key: the rows hold no secret in the clear,
        // but key ids, accounts and allow-lists are nobody else's business.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| VaultError::KeyFile(path.to_path_buf(), e))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(KeyVault { conn, key })
    }

    /// Stores a new key with its sealed secret.
    pub fn insert(&self, k: &ApiKey, secret: &str) -> Result<(), VaultError> {
        let ips = k.allowed_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        self.conn.execute(
            "INSERT INTO api_keys (key_id, account, scope_read, scope_trade, allowed_ips, label, created_ms, sealed_secret) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                k.id,
                k.account,
                k.scopes.read,
                k.scopes.trade,
                ips,
                k.label,
                k.created_ms as i64,
                seal(&self.key, &k.id, k.account, secret)
            ],
        )?;
        Ok(())
    }

    /// Marks a key revoked. A configured key (not stored here, e.g. a demo
    /// key) gets a revoked row without a secret, so it stays revoked after a
    /// restart re-adds the configured keys.
    pub fn revoke(&self, k: &ApiKey, now_ms: u64) -> Result<(), VaultError> {
        let n = self.conn.execute(
            "UPDATE api_keys SET revoked_ms = ?2 WHERE key_id = ?1 AND revoked_ms IS NULL",
            params![k.id, now_ms as i64],
        )?;
        if n == 0 {
            self.conn.execute(
                "INSERT OR IGNORE INTO api_keys \
                 (key_id, account, scope_read, scope_trade, allowed_ips, label, created_ms, sealed_secret, revoked_ms) \
                 VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, x'', ?7)",
                params![k.id, k.account, k.scopes.read, k.scopes.trade, k.label, k.created_ms as i64, now_ms as i64],
            )?;
        }
        Ok(())
    }

    pub fn is_revoked(&self, id: &str) -> Result<bool, VaultError> {
        let r: Option<Option<i64>> =
            self.conn.query_row("SELECT revoked_ms FROM api_keys WHERE key_id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(matches!(r, Some(Some(_))))
    }

    /// Every key not revoked, with its secret.
    pub fn load(&self) -> Result<Vec<(ApiKey, Zeroizing<String>)>, VaultError> {
        let mut stmt = self.conn.prepare(
            "SELECT key_id, account, scope_read, scope_trade, allowed_ips, label, created_ms, sealed_secret \
             FROM api_keys WHERE revoked_ms IS NULL ORDER BY key_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Vec<u8>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, account, read, trade, ips, label, created, sealed) = row?;
            let allowed_ips = if ips.is_empty() {
                Vec::new()
            } else {
                ips.split(',')
                    .map(parse_net)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| VaultError::Corrupt(id.clone(), format!("allowed_ips {ips:?}")))?
            };
            let secret = open(&self.key, &id, account, &sealed)?;
            let key = ApiKey {
                id,
                account,
                scopes: Scopes { read, trade },
                allowed_ips,
                label,
                created_ms: created.max(0) as u64,
            };
            out.push((key, secret));
        }
        Ok(out)
    }
}

/// An allow-list entry: an IPv4/IPv6 address (a single host) or a CIDR range.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if s.contains('/') {
        // Host bits are dropped: "10.1.2.3/8" means 10.0.0.0/8 (shown so in the key list).
        s.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_bind_id_and_account() {
        let k = StorageKey::from_bytes([9; 32]);
        let s = seal(&k, "ck_1", 5, "the-secret");
        assert_eq!(&*open(&k, "ck_1", 5, &s).unwrap(), "the-secret");
        assert!(open(&k, "ck_2", 5, &s).is_err(), "moved to another id");
        assert!(open(&k, "ck_1", 6, &s).is_err(), "moved to another account");
        assert!(open(&StorageKey::from_bytes([8; 32]), "ck_1", 5, &s).is_err(), "wrong storage key");
        let mut t = s.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(open(&k, "ck_1", 5, &t).is_err(), "tampered");
        assert!(open(&k, "ck_1", 5, &s[..20]).is_err(), "truncated");
        assert_ne!(seal(&k, "ck_1", 5, "the-secret"), s, "fresh nonce each time");
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/storage.key");
        let a = StorageKey::load_or_create(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = StorageKey::load_or_create(&p).unwrap();
        assert_eq!(&a.0[..], &b.0[..]);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(StorageKey::load_or_create(&p), Err(VaultError::BadKey(_))));
        assert!(!format!("{a:?}").contains("09"));
    }

    #[test]
    fn allow_list_entries() {
        assert_eq!(parse_net("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_net("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("::ffff:10.0.0.1").unwrap().to_string(), "::ffff:10.0.0.1/128");
        for bad in ["10.0.0.0/33", "x", "", "1.2.3", "2001:db8::/129", "10.0.0.0/"] {
            assert!(parse_net(bad).is_none(), "{bad}");
        }
    }
}
