//! Authentication (sans-IO): API keys with HMAC-SHA256 request signatures,
//! and bearer JWTs verified against a JWKS.
//!
//! Signed request: headers `X-API-KEY`, `X-TIMESTAMP` (ms since the epoch),
//! `X-SIGNATURE` (lowercase hex) and optionally `X-RECV-WINDOW` (ms, default
//! 5000, at most 60000). The signature is HMAC-SHA256, keyed with the key's
//! secret (its ASCII text), over
//!
//! ```text
//! timestamp + METHOD + path + ("?" + query, when the query is not empty) + body
//! ```
//!
//! with the path and query exactly as sent on the request line.
//!
//! Secrets: a key created through the API gets 32 random bytes (base64url),
//! shown once at creation. With a [`KeyVault`] attached (`castle serve`) the
//! key is persisted with its secret sealed (ChaCha20-Poly1305, see
//! [`crate::vault`]), so it survives a restart; revocations persist too.
//! Configured keys (the demo accounts) have secrets derived from the gateway's
//! master key and the key id (`HMAC-SHA256(master, "castle/api-secret/v1/" + id)`,
//! base64url), recomputed at start. Secrets are never logged and `Debug`
//! never prints them.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{ApiError, Code};
use crate::hashing::{Map, Set};
use crate::vault::{KeyVault, VaultError};

type HmacSha256 = Hmac<Sha256>;

pub const DEFAULT_RECV_WINDOW_MS: u64 = 5_000;
pub const MAX_RECV_WINDOW_MS: u64 = 60_000;
/// A timestamp may run ahead of our clock by this much (clock skew).
pub const MAX_CLOCK_AHEAD_MS: u64 = 1_000;
/// API keys per account.
pub const MAX_KEYS_PER_ACCOUNT: usize = 20;
/// Signatures remembered per key to refuse exact replays inside the window.
pub const REPLAY_CACHE_PER_KEY: usize = 100_000;
/// The documented master key of the demo (`castle serve` without a configured
/// master key): demo secrets are reproducible from it. Never use in production.
pub const DEMO_MASTER_KEY: &[u8] = b"castle-demo-master-key-not-for-production";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Scopes {
    pub read: bool,
    pub trade: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Read,
    Trade,
}

impl Scopes {
    pub const ALL: Scopes = Scopes { read: true, trade: true };
    pub fn has(&self, s: Scope) -> bool {
        match s {
            Scope::Read => self.read,
            Scope::Trade => self.trade,
        }
    }
    pub fn contains(&self, other: Scopes) -> bool {
        (self.read || !other.read) && (self.trade || !other.trade)
    }
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.read {
            v.push("read");
        }
        if self.trade {
            v.push("trade");
        }
        v
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub account: u32,
    pub scopes: Scopes,
    /// Addresses and CIDR ranges (IPv4 and IPv6) allowed to use the key; empty: any address.
    pub allowed_ips: Vec<IpNet>,
    pub label: String,
    pub created_ms: u64,
}

/// Who a verified request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account: u32,
    pub scopes: Scopes,
    /// The API key used, or None for a bearer token.
    pub key_id: Option<String>,
}

/// The canonical string a signature covers.
pub fn canonical(timestamp: &str, method: &str, path: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(timestamp.len() + method.len() + path.len() + query.len() + body.len() + 1);
    v.extend_from_slice(timestamp.as_bytes());
    v.extend_from_slice(method.as_bytes());
    v.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        v.push(b'?');
        v.extend_from_slice(query.as_bytes());
    }
    v.extend_from_slice(body);
    v
}

/// Hex HMAC-SHA256 of `payload` under `secret` (what a client computes).
pub fn sign(secret: &str, payload: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a hex signature (hmac's `verify_slice` uses `subtle`).
pub fn verify(secret: &str, payload: &[u8], signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex) else { return false };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(payload);
    mac.verify_slice(&sig).is_ok()
}

/// HMAC-SHA256 already keyed with one API key's secret: the padded key
/// blocks are hashed once when the key is loaded, not on every request, and
/// the canonical string is fed piece by piece (no copy of the body).
#[derive(Clone)]
struct KeyedMac(HmacSha256);

impl KeyedMac {
    fn new(secret: &str) -> Self {
        KeyedMac(HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length"))
    }

    /// Constant-time check of `sig` over [`canonical`]'s string.
    fn verify(&self, timestamp: &str, method: &str, path: &str, query: &str, body: &[u8], sig: &[u8; 32]) -> bool {
        let mut mac = self.0.clone();
        mac.update(timestamp.as_bytes());
        mac.update(method.as_bytes());
        mac.update(path.as_bytes());
        if !query.is_empty() {
            mac.update(b"?");
            mac.update(query.as_bytes());
        }
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    }
}

/// The signature headers of one request, as received.
#[derive(Clone, Debug, Default)]
pub struct SignedParts<'a> {
    pub key: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub recv_window: Option<&'a str>,
}

/// Signatures a key used recently, oldest first, with the time they were seen.
type SeenSignatures = (VecDeque<(u64, [u8; 32])>, Set<[u8; 32]>);

pub struct KeyStore {
    master: Vec<u8>,
    keys: Map<String, ApiKey>,
    /// Keyed HMAC per key id (the secret text itself is not kept here).
    secrets: Map<String, KeyedMac>,
    /// Where created keys and revocations are persisted (none: memory only).
    vault: Option<KeyVault>,
    /// Recently seen signatures per key, oldest first, with their timestamps.
    seen: Map<String, SeenSignatures>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the master key.
        f.debug_struct("KeyStore").field("keys", &self.keys.len()).finish()
    }
}

impl KeyStore {
    pub fn new(master: Vec<u8>) -> Self {
        assert!(master.len() >= 16, "master key too short");
        KeyStore { master, keys: Map::default(), secrets: Map::default(), vault: None, seen: Map::default() }
    }

    /// Persists keys from now on and loads the keys already stored (not
    /// revoked); returns how many were loaded.
    pub fn attach_vault(&mut self, vault: KeyVault) -> Result<usize, VaultError> {
        let stored = vault.load()?;
        let n = stored.len();
        for (k, secret) in stored {
            self.secrets.insert(k.id.clone(), KeyedMac::new(&secret));
            self.keys.insert(k.id.clone(), k);
        }
        self.vault = Some(vault);
        Ok(n)
    }

    /// Whether a key id was revoked (persisted revocations only).
    pub fn is_revoked(&self, id: &str) -> bool {
        self.vault.as_ref().is_some_and(|v| v.is_revoked(id).unwrap_or(false))
    }

    /// The secret of a key id under this store's master key.
    pub fn secret_of(&self, key_id: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.master).expect("any key length");
        mac.update(b"castle/api-secret/v1/");
        mac.update(key_id.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Adds a configured key with a chosen id (demo keys), its secret derived
    /// from the master key; returns the secret. A key revoked earlier (and
    /// persisted as such) stays revoked: None.
    pub fn insert(&mut self, key: ApiKey) -> Option<String> {
        if self.is_revoked(&key.id) {
            return None;
        }
        let secret = self.secret_of(&key.id);
        self.secrets.insert(key.id.clone(), KeyedMac::new(&secret));
        self.keys.insert(key.id.clone(), key);
        Some(secret)
    }

    /// Creates a key with a random id; returns (key, secret).
    pub fn create(
        &mut self,
        account: u32,
        scopes: Scopes,
        allowed_ips: Vec<IpNet>,
        label: String,
        now_ms: u64,
    ) -> Result<(ApiKey, String), ApiError> {
        if self.keys.values().filter(|k| k.account == account).count() >= MAX_KEYS_PER_ACCOUNT {
            return Err(ApiError::new(
                Code::TooManyApiKeys,
                format!("at most {MAX_KEYS_PER_ACCOUNT} keys per account"),
            ));
        }
        let id = format!("ck_{}", hex::encode(rand::random::<[u8; 12]>()));
        let key = ApiKey { id, account, scopes, allowed_ips, label, created_ms: now_ms };
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        // Durable before it is usable or shown.
        if let Some(v) = &self.vault {
            v.insert(&key, &secret).map_err(storage_error)?;
        }
        self.secrets.insert(key.id.clone(), KeyedMac::new(&secret));
        self.keys.insert(key.id.clone(), key.clone());
        Ok((key, secret))
    }

    /// Revokes a key of `account` (persisted first); Ok(false): no such key of this account.
    pub fn revoke(&mut self, account: u32, id: &str, now_ms: u64) -> Result<bool, ApiError> {
        let Some(k) = self.keys.get(id).filter(|k| k.account == account) else { return Ok(false) };
        if let Some(v) = &self.vault {
            v.revoke(k, now_ms).map_err(storage_error)?;
        }
        self.keys.remove(id);
        self.secrets.remove(id);
        self.seen.remove(id);
        Ok(true)
    }

    pub fn list(&self, account: u32) -> Vec<ApiKey> {
        let mut v: Vec<_> = self.keys.values().filter(|k| k.account == account).cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn get(&self, id: &str) -> Option<&ApiKey> {
        self.keys.get(id)
    }

    /// Verifies a signed request. Order matters: nothing about scopes is
    /// revealed before the signature is checked. The gateway runs the three
    /// steps itself ([`KeyStore::admit`], [`SignatureCheck::verify`] outside
    /// the store's lock, [`KeyStore::remember`]); this is the same in one call.
    #[allow(clippy::too_many_arguments)]
    pub fn authenticate(
        &mut self,
        parts: &SignedParts<'_>,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<Caller, ApiError> {
        let check = self.admit(parts, ip, now_ms)?;
        check.verify(method, path, query, body)?;
        self.remember(&check, now_ms)?;
        Ok(check.caller)
    }

    /// The checks before the signature: key known, IP allowed, receive
    /// window and timestamp, signature well formed. Returns what verifying
    /// the signature needs, so that the HMAC (the costly part) runs without
    /// the store's lock: with several workers, one lock around every
    /// signature check serialised them.
    pub fn admit<'a>(
        &self,
        parts: &SignedParts<'a>,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<SignatureCheck<'a>, ApiError> {
        let key_id = parts.key.ok_or_else(|| ApiError::new(Code::Unauthorized, "X-API-KEY header required"))?;
        let key = self.keys.get(key_id).ok_or_else(|| ApiError::new(Code::InvalidApiKey, "invalid API key"))?;
        // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d: compare it as IPv4.
        if !key.allowed_ips.is_empty()
            && !ip.is_some_and(|ip| key.allowed_ips.iter().any(|n| n.contains(&ip.to_canonical())))
        {
            return Err(ApiError::new(Code::IpNotAllowed, "this API key does not allow this IP address"));
        }
        let window = match parts.recv_window {
            None => DEFAULT_RECV_WINDOW_MS,
            Some(w) => match w.parse::<u64>() {
                Ok(n) if (1..=MAX_RECV_WINDOW_MS).contains(&n) && w.len() <= 5 => n,
                _ => return Err(ApiError::new(Code::InvalidRecvWindow, "X-RECV-WINDOW must be 1..=60000")),
            },
        };
        let ts_text =
            parts.timestamp.ok_or_else(|| ApiError::new(Code::Unauthorized, "X-TIMESTAMP header required"))?;
        let ts: u64 = match ts_text.parse() {
            Ok(t) if ts_text.len() <= 16 && ts_text.bytes().all(|b| b.is_ascii_digit()) => t,
            _ => return Err(ApiError::new(Code::Unauthorized, "X-TIMESTAMP must be milliseconds since the epoch")),
        };
        if ts + window < now_ms || ts > now_ms + MAX_CLOCK_AHEAD_MS {
            return Err(ApiError::new(
                Code::TimestampOutsideWindow,
                format!("timestamp {ts} outside the receive window ({window} ms) of server time {now_ms}"),
            ));
        }
        let sig = parts.signature.ok_or_else(|| ApiError::new(Code::Unauthorized, "X-SIGNATURE header required"))?;
        let mac = self.secrets.get(key_id).ok_or_else(|| ApiError::new(Code::InvalidApiKey, "invalid API key"))?;
        let mut signature = [0u8; 32];
        if hex::decode_to_slice(sig, &mut signature).is_err() {
            return Err(mismatch());
        }
        Ok(SignatureCheck {
            mac: mac.clone(),
            timestamp: ts_text,
            signature,
            caller: Caller { account: key.account, scopes: key.scopes, key_id: Some(key.id.clone()) },
        })
    }

    /// Refuses an exact replay of a signature inside the window (the window
    /// check already refuses anything older); call after the signature
    /// verified. A key revoked since [`KeyStore::admit`] is refused here.
    pub fn remember(&mut self, check: &SignatureCheck<'_>, now_ms: u64) -> Result<(), ApiError> {
        let Some(key_id) = check.caller.key_id.as_deref().filter(|k| self.keys.contains_key(*k)) else {
            return Err(ApiError::new(Code::InvalidApiKey, "invalid API key"));
        };
        let digest = check.signature;
        if !self.seen.contains_key(key_id) {
            self.seen.insert(key_id.to_string(), Default::default());
        }
        let (queue, set) = self.seen.get_mut(key_id).expect("inserted above");
        while let Some(&(t, d)) = queue.front() {
            if t + MAX_RECV_WINDOW_MS + MAX_CLOCK_AHEAD_MS < now_ms || queue.len() >= REPLAY_CACHE_PER_KEY {
                queue.pop_front();
                set.remove(&d);
            } else {
                break;
            }
        }
        if !set.insert(digest) {
            return Err(ApiError::new(Code::Replayed, "this signed request was already used"));
        }
        queue.push_back((now_ms, digest));
        Ok(())
    }
}

fn mismatch() -> ApiError {
    ApiError::new(Code::InvalidSignature, "signature does not match")
}

/// A request admitted by [`KeyStore::admit`], its signature not yet
/// verified: holds a copy of the key's keyed HMAC, so it is verified
/// without the key store's lock.
pub struct SignatureCheck<'a> {
    mac: KeyedMac,
    timestamp: &'a str,
    signature: [u8; 32],
    /// Who the request acts for once the signature verifies.
    pub caller: Caller,
}

impl SignatureCheck<'_> {
    /// Constant-time check of the signature over the request.
    pub fn verify(&self, method: &str, path: &str, query: &str, body: &[u8]) -> Result<(), ApiError> {
        if self.mac.verify(self.timestamp, method, path, query, body, &self.signature) {
            Ok(())
        } else {
            Err(mismatch())
        }
    }
}

fn storage_error(e: VaultError) -> ApiError {
    tracing::error!(%e, "API key storage failed");
    ApiError::new(Code::Internal, "API key storage failed; nothing was changed")
}

/// Checks a route's scope.
pub fn require(caller: &Caller, scope: Scope) -> Result<(), ApiError> {
    if caller.scopes.has(scope) {
        Ok(())
    } else {
        let name = if scope == Scope::Read { "read" } else { "trade" };
        Err(ApiError::new(Code::MissingScope, format!("this route needs the '{name}' scope")))
    }
}

/// Bearer JWTs (e.g. Cognito ID/access tokens) verified against a JWKS.
pub struct JwtVerifier {
    keys: HashMap<String, jsonwebtoken::DecodingKey>,
    validation: jsonwebtoken::Validation,
    /// Subjects mapped to accounts when the token carries no `castle_account` claim.
    subjects: HashMap<String, u32>,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    castle_account: Option<u32>,
    /// Cognito puts user-pool custom attributes in ID tokens under
    /// `custom:<name>`, always as strings: `"custom:castle_account": "7"`.
    #[serde(default, rename = "custom:castle_account")]
    cognito_account: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// The account a token names: `castle_account`, else Cognito's
/// `custom:castle_account` (a decimal string), else the subject map.
fn account_of(c: &Claims, subjects: &HashMap<String, u32>) -> Result<u32, &'static str> {
    if let Some(a) = c.castle_account {
        return Ok(a);
    }
    if let Some(text) = &c.cognito_account {
        return match text.parse::<u32>() {
            Ok(a) if text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(a),
            _ => Err("custom:castle_account is not an account number"),
        };
    }
    subjects.get(&c.sub).copied().ok_or("token subject is not mapped to an account")
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JWKS key {0}: {1}")]
    Key(String, jsonwebtoken::errors::Error),
    #[error("JWKS key without kid")]
    NoKid,
}

impl JwtVerifier {
    /// `jwks`: the provider's key set JSON. Only RS256 is accepted.
    pub fn new(
        jwks: &str,
        issuer: Option<&str>,
        audience: Option<&str>,
        subjects: HashMap<String, u32>,
    ) -> Result<Self, JwksError> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks)?;
        let mut keys = HashMap::new();
        for k in &set.keys {
            let kid = k.common.key_id.clone().ok_or(JwksError::NoKid)?;
            let dk = jsonwebtoken::DecodingKey::from_jwk(k).map_err(|e| JwksError::Key(kid.clone(), e))?;
            keys.insert(kid, dk);
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = 5;
        match issuer {
            Some(i) => validation.set_issuer(&[i]),
            None => validation.iss = None,
        }
        match audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        Ok(JwtVerifier { keys, validation, subjects })
    }

    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let bad = |m: &str| ApiError::new(Code::InvalidToken, m.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed bearer token"))?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err(bad("only RS256 tokens are accepted"));
        }
        let kid = header.kid.ok_or_else(|| bad("token without kid"))?;
        let key = self.keys.get(&kid).ok_or_else(|| bad("token signed by an unknown key"))?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| bad(&format!("invalid token: {e}")))?;
        let c = data.claims;
        let account = account_of(&c, &self.subjects).map_err(bad)?;
        let scopes = match c.scope {
            None => Scopes::ALL,
            Some(s) => {
                let words: Vec<&str> = s.split_whitespace().collect();
                Scopes { read: words.contains(&"read") || words.contains(&"trade"), trade: words.contains(&"trade") }
            }
        };
        Ok(Caller { account, scopes, key_id: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store() -> (KeyStore, String) {
        let mut s = KeyStore::new(DEMO_MASTER_KEY.to_vec());
        let secret = s
            .insert(ApiKey {
                id: "k1".into(),
                account: 1,
                scopes: Scopes { read: true, trade: false },
                allowed_ips: vec![],
                label: String::new(),
                created_ms: 0,
            })
            .unwrap();
        (s, secret)
    }

    fn parts<'a>(ts: &'a str, sig: &'a str) -> SignedParts<'a> {
        SignedParts { key: Some("k1"), timestamp: Some(ts), signature: Some(sig), recv_window: None }
    }

    #[test]
    fn signature_edge_cases() {
        let (mut s, secret) = store();
        let now = 1_700_000_000_000u64;
        let ts = now.to_string();
        let sig = sign(&secret, &canonical(&ts, "GET", "/api/v1/account", "a=1", b""));
        let ok = s.authenticate(&parts(&ts, &sig), "GET", "/api/v1/account", "a=1", b"", None, now).unwrap();
        assert_eq!(ok.account, 1);
        // replay inside the window
        let e = s.authenticate(&parts(&ts, &sig), "GET", "/api/v1/account", "a=1", b"", None, now + 10).unwrap_err();
        assert_eq!(e.code, Code::Replayed as u16);
        // other query: signature no longer matches
        let e = s.authenticate(&parts(&ts, &sig), "GET", "/api/v1/account", "a=2", b"", None, now).unwrap_err();
        assert_eq!(e.code, Code::InvalidSignature as u16);
        // stale, and replay outside the window
        let e = s.authenticate(&parts(&ts, &sig), "GET", "/api/v1/account", "a=1", b"", None, now + 5_001).unwrap_err();
        assert_eq!(e.code, Code::TimestampOutsideWindow as u16);
        // from the future
        let e = s.authenticate(&parts(&ts, &sig), "GET", "/api/v1/account", "a=1", b"", None, now - 1_001).unwrap_err();
        assert_eq!(e.code, Code::TimestampOutsideWindow as u16);
        let mut p = parts(&ts, &sig);
        p.recv_window = Some("60001");
        assert_eq!(
            s.authenticate(&p, "GET", "/x", "", b"", None, now).unwrap_err().code,
            Code::InvalidRecvWindow as u16
        );
        let p = SignedParts { key: Some("nope"), ..parts(&ts, &sig) };
        assert_eq!(s.authenticate(&p, "GET", "/x", "", b"", None, now).unwrap_err().code, Code::InvalidApiKey as u16);
        let p = parts(&ts, "zz");
        assert_eq!(
            s.authenticate(&p, "GET", "/x", "", b"", None, now).unwrap_err().code,
            Code::InvalidSignature as u16
        );
        assert!(require(&ok, Scope::Read).is_ok());
        assert_eq!(require(&ok, Scope::Trade).unwrap_err().code, Code::MissingScope as u16);
    }

    #[test]
    fn ip_allow_list_and_revoke() {
        let mut s = KeyStore::new(vec![7; 32]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (k, secret) = s.create(5, Scopes::ALL, vec![IpNet::from(ip)], "bot".into(), 0).unwrap();
        let ts = "1000";
        let sig = sign(&secret, &canonical(ts, "GET", "/p", "", b""));
        let p = SignedParts { key: Some(&k.id), timestamp: Some(ts), signature: Some(&sig), recv_window: None };
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            s.authenticate(&p, "GET", "/p", "", b"", Some(other), 1000).unwrap_err().code,
            Code::IpNotAllowed as u16
        );
        assert!(s.authenticate(&p, "GET", "/p", "", b"", Some(ip), 1000).is_ok());
        assert!(!s.revoke(6, &k.id, 0).unwrap(), "another account cannot revoke it");
        assert!(s.revoke(5, &k.id, 0).unwrap());
        assert_eq!(
            s.authenticate(&p, "GET", "/p", "", b"", Some(ip), 1000).unwrap_err().code,
            Code::InvalidApiKey as u16
        );
        assert!(!format!("{s:?}").contains(&secret));
    }

    proptest! {
        // Canonicalisation is injective enough that moving bytes between
        // the query and the body, or changing the method, breaks the signature.
        #[test]
        fn canonical_binds_every_part(q in "[a-z=&0-9]{0,20}", body in "[a-z{}:\"0-9]{0,20}", m in prop::sample::select(vec!["GET", "POST", "DELETE"])) {
            let secret = "s3cret";
            let sig = sign(secret, &canonical("1", m, "/api/v1/order", &q, body.as_bytes()));
            prop_assert!(verify(secret, &canonical("1", m, "/api/v1/order", &q, body.as_bytes()), &sig));
            let other = if m == "GET" { "POST" } else { "GET" };
            prop_assert!(!verify(secret, &canonical("1", other, "/api/v1/order", &q, body.as_bytes()), &sig));
            prop_assert!(!verify(secret, &canonical("1", m, "/api/v1/orders", &q, body.as_bytes()), &sig));
            prop_assert!(!verify(secret, &canonical("2", m, "/api/v1/order", &q, body.as_bytes()), &sig));
            prop_assert!(!verify("s3creT", &canonical("1", m, "/api/v1/order", &q, body.as_bytes()), &sig));
            if !q.is_empty() {
                // The "?" separator keeps "query + body" from sliding into "path".
                let mut moved = q.clone();
                moved.push_str(&body);
                prop_assert!(!verify(secret, &canonical("1", m, "/api/v1/order", "", moved.as_bytes()), &sig));
            }
        }
    }
}
