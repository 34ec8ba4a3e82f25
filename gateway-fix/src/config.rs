//! Session configuration file, in the style of QuickFIX settings files: a
//! `[DEFAULT]` block with gateway-wide settings and defaults, then one
//! `[SESSION]` block per counterparty. `Key=Value` lines, `#` comments.
//! Keys are documented in gateway-fix/README.md.

use crate::orders::{SessionKind, SessionProfile};
use crate::store::FsyncPolicy;
use castle_engine::AccountId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: unknown key {key:?}")]
    UnknownKey { line: usize, key: String },
    #[error("line {line}: invalid value {value:?} for {key}: {expected}")]
    InvalidValue { line: usize, key: String, value: String, expected: &'static str },
    #[error("session {session}: missing {key}")]
    Missing { session: String, key: &'static str },
    #[error("session {0} is configured twice")]
    DuplicateSession(String),
    #[error("no [SESSION] block")]
    NoSessions,
    #[error("no listener: set ListenAddress and/or TlsListenAddress")]
    NoListener,
    #[error("TlsListenAddress needs TlsCertificate and TlsPrivateKey")]
    TlsIncomplete,
}

/// One configured session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    pub begin_string: String,
    pub sender_comp_id: String,
    pub target_comp_id: String,
    pub profile: SessionProfile,
    pub username: Option<String>,
    pub password: Option<String>,
    pub reset_on_logon: bool,
    /// SendingTime tolerance; `None` disables the check.
    pub sending_time_tolerance: Option<Duration>,
    pub store_dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// Refuse this session on the plain TCP listener.
    pub require_tls: bool,
    /// Accept undefined tags >= 5000 (needed for SelfTradePrevention 7928).
    pub allow_user_defined_tags: bool,
    /// FIXT.1.1 sessions: the application version agreed at Logon (1137);
    /// only 9 (FIX 5.0SP2).
    pub default_appl_ver_id: Option<String>,
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Gateway id carried in every engine request (unique per gateway process).
    pub gateway_id: u32,
    pub listen: Option<SocketAddr>,
    pub tls_listen: Option<SocketAddr>,
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// CA bundle for client certificates; when set, clients on the TLS
    /// listener must present a certificate it signed.
    pub tls_client_ca: Option<PathBuf>,
    pub sessions: Vec<SessionSettings>,
    /// Open orders the order layer's tables hold before they first grow
    /// (`OrderCapacity`, default [`DEFAULT_ORDER_CAPACITY`]). Growing a
    /// table rehashes every entry in one go: at 100k orders that stalls
    /// the gateway thread for milliseconds, so size it for the expected
    /// peak of resting orders.
    pub order_capacity: usize,
}

/// Default `OrderCapacity`: small enough that an idle gateway stays small
/// (the tables are allocated at start; pages are touched as they fill).
pub const DEFAULT_ORDER_CAPACITY: usize = 16_384;
/// Upper bound on `OrderCapacity` (a typo must not reserve terabytes).
pub const MAX_ORDER_CAPACITY: usize = 1 << 24;

const GLOBAL_KEYS: &[&str] = &[
    "GatewayId",
    "ListenAddress",
    "TlsListenAddress",
    "TlsCertificate",
    "TlsPrivateKey",
    "TlsClientCA",
    "OrderCapacity",
];
const SESSION_KEYS: &[&str] = &[
    "BeginString",
    "SenderCompID",
    "TargetCompID",
    "SessionType",
    "Account",
    "Accounts",
    "Username",
    "Password",
    "MaxMessagesPerSecond",
    "MaxOpenOrders",
    "CancelOnDisconnect",
    "ResetOnLogon",
    "SendingTimeTolerance",
    "StoreDir",
    "FsyncPolicy",
    "RequireTls",
    "AllowUserDefinedTags",
    "OnBehalfOf",
    "DeliverTo",
    "DefaultApplVerID",
];

type Block = BTreeMap<String, (usize, String)>;

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut default: Block = BTreeMap::new();
        let mut sessions: Vec<Block> = Vec::new();
        let mut current: Option<usize> = None; // None = DEFAULT
        let mut seen_block = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if l.starts_with('[') {
                match l {
                    "[DEFAULT]" => current = None,
                    "[SESSION]" => {
                        sessions.push(BTreeMap::new());
                        current = Some(sessions.len() - 1);
                    }
                    _ => {
                        return Err(ConfigError::Syntax {
                            line,
                            message: format!("unknown block {l}; expected [DEFAULT] or [SESSION]"),
                        })
                    }
                }
                seen_block = true;
                continue;
            }
            if !seen_block {
                return Err(ConfigError::Syntax { line, message: "key before any [DEFAULT] or [SESSION]".into() });
            }
            let Some((k, v)) = l.split_once('=') else {
                return Err(ConfigError::Syntax { line, message: "expected Key=Value".into() });
            };
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            let global = GLOBAL_KEYS.contains(&k.as_str());
            if !(global || SESSION_KEYS.contains(&k.as_str())) || (global && current.is_some()) {
                return Err(ConfigError::UnknownKey { line, key: k });
            }
            let block = match current {
                None => &mut default,
                Some(ix) => &mut sessions[ix],
            };
            if block.insert(k.clone(), (line, v)).is_some() {
                return Err(ConfigError::Syntax { line, message: format!("{k} given twice in the block") });
            }
        }
        if sessions.is_empty() {
            return Err(ConfigError::NoSessions);
        }
        let g = |k: &str| default.get(k);
        let gateway_id = match g("GatewayId") {
            Some((line, v)) => parse_num(*line, "GatewayId", v)?,
            None => 1,
        };
        let addr = |k: &str| -> Result<Option<SocketAddr>, ConfigError> {
            g(k).map(|(line, v)| {
                v.parse().map_err(|_| ConfigError::InvalidValue {
                    line: *line,
                    key: k.into(),
                    value: v.clone(),
                    expected: "host:port",
                })
            })
            .transpose()
        };
        let order_capacity = match g("OrderCapacity") {
            Some((line, v)) => {
                let n: usize = parse_num(*line, "OrderCapacity", v)?;
                if n > MAX_ORDER_CAPACITY {
                    return Err(ConfigError::InvalidValue {
                        line: *line,
                        key: "OrderCapacity".into(),
                        value: v.clone(),
                        expected: "at most 16777216",
                    });
                }
                n
            }
            None => DEFAULT_ORDER_CAPACITY,
        };
        let path = |k: &str| g(k).map(|(_, v)| PathBuf::from(v));
        let cfg_listen = addr("ListenAddress")?;
        let tls_listen = addr("TlsListenAddress")?;
        if cfg_listen.is_none() && tls_listen.is_none() {
            return Err(ConfigError::NoListener);
        }
        let (tls_certificate, tls_private_key) = (path("TlsCertificate"), path("TlsPrivateKey"));
        if tls_listen.is_some() && (tls_certificate.is_none() || tls_private_key.is_none()) {
            return Err(ConfigError::TlsIncomplete);
        }
        let mut out = Vec::new();
        for s in &sessions {
            let get = |k: &str| s.get(k).or_else(|| default.get(k));
            let target = get("TargetCompID").map(|(_, v)| v.clone()).unwrap_or_default();
            let name = if target.is_empty() { "?".to_string() } else { target.clone() };
            let req = |k: &'static str| {
                get(k).filter(|(_, v)| !v.is_empty()).ok_or(ConfigError::Missing { session: name.clone(), key: k })
            };
            let sender = req("SenderCompID")?.1.clone();
            let target = req("TargetCompID")?.1.clone();
            let kind = match get("SessionType") {
                None => SessionKind::OrderEntry,
                Some((_, v)) if v == "order-entry" => SessionKind::OrderEntry,
                Some((_, v)) if v == "drop-copy" => SessionKind::DropCopy,
                Some((line, v)) => {
                    return Err(ConfigError::InvalidValue {
                        line: *line,
                        key: "SessionType".into(),
                        value: v.clone(),
                        expected: "order-entry or drop-copy",
                    })
                }
            };
            let mut profile = match kind {
                SessionKind::OrderEntry => {
                    let (line, v) = req("Account")?;
                    SessionProfile::order_entry(parse_num(*line, "Account", v)?)
                }
                SessionKind::DropCopy => {
                    let (line, v) = req("Accounts")?;
                    let accounts = v
                        .split(',')
                        .map(|a| parse_num::<AccountId>(*line, "Accounts", a.trim()))
                        .collect::<Result<Vec<_>, _>>()?;
                    SessionProfile::drop_copy(accounts)
                }
            };
            if let Some((line, v)) = get("OnBehalfOf") {
                if kind == SessionKind::DropCopy {
                    return Err(ConfigError::InvalidValue {
                        line: *line,
                        key: "OnBehalfOf".into(),
                        value: v.clone(),
                        expected: "no OnBehalfOf on a drop-copy session",
                    });
                }
                for item in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                    let bad = || ConfigError::InvalidValue {
                        line: *line,
                        key: "OnBehalfOf".into(),
                        value: item.into(),
                        expected: "COMPID:ACCOUNT[,COMPID:ACCOUNT...] with distinct CompIDs and accounts",
                    };
                    let (comp, acct) = item.split_once(':').ok_or_else(bad)?;
                    let acct: AccountId = acct.trim().parse().map_err(|_| bad())?;
                    let comp = comp.trim();
                    if comp.is_empty() || profile.on_behalf_of.iter().any(|(c, a)| c == comp || *a == acct) {
                        return Err(bad());
                    }
                    profile = profile.with_on_behalf_of(comp, acct);
                }
            }
            if let Some((_, v)) = get("DeliverTo") {
                profile.deliver_to =
                    v.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect();
            }
            if let Some((line, v)) = get("MaxMessagesPerSecond") {
                profile.max_messages_per_sec = parse_num(*line, "MaxMessagesPerSecond", v)?;
            }
            if let Some((line, v)) = get("MaxOpenOrders") {
                profile.max_open_orders = parse_num(*line, "MaxOpenOrders", v)?;
            }
            if let Some((line, v)) = get("CancelOnDisconnect") {
                profile.cancel_on_disconnect = parse_bool(*line, "CancelOnDisconnect", v)?;
            }
            let flag = |k: &str, d: bool| get(k).map_or(Ok(d), |(line, v)| parse_bool(*line, k, v));
            let tolerance = match get("SendingTimeTolerance") {
                None => Some(Duration::from_secs(120)),
                Some((line, v)) => match parse_num::<u64>(*line, "SendingTimeTolerance", v)? {
                    0 => None,
                    n => Some(Duration::from_secs(n)),
                },
            };
            let fsync = match get("FsyncPolicy") {
                None => FsyncPolicy::OsBuffered,
                Some((_, v)) if v == "os" => FsyncPolicy::OsBuffered,
                Some((_, v)) if v == "always" => FsyncPolicy::Always,
                Some((line, v)) => {
                    return Err(ConfigError::InvalidValue {
                        line: *line,
                        key: "FsyncPolicy".into(),
                        value: v.clone(),
                        expected: "os or always",
                    })
                }
            };
            let settings = SessionSettings {
                begin_string: get("BeginString").map_or("FIX.4.4".to_string(), |(_, v)| v.clone()),
                sender_comp_id: sender,
                target_comp_id: target,
                profile,
                username: get("Username").map(|(_, v)| v.clone()),
                password: get("Password").map(|(_, v)| v.clone()),
                reset_on_logon: flag("ResetOnLogon", false)?,
                sending_time_tolerance: tolerance,
                store_dir: get("StoreDir").map_or(PathBuf::from("fix-store"), |(_, v)| PathBuf::from(v)),
                fsync,
                require_tls: flag("RequireTls", false)?,
                allow_user_defined_tags: flag("AllowUserDefinedTags", true)?,
                default_appl_ver_id: None,
            };
            let mut settings = settings;
            if !["FIX.4.2", "FIX.4.4", "FIXT.1.1"].contains(&settings.begin_string.as_str()) {
                let (line, v) = get("BeginString").cloned().unwrap_or_default();
                return Err(ConfigError::InvalidValue {
                    line,
                    key: "BeginString".into(),
                    value: v,
                    expected: "FIX.4.2, FIX.4.4 or FIXT.1.1",
                });
            }
            match get("DefaultApplVerID") {
                _ if settings.begin_string != "FIXT.1.1" => {}
                None => settings.default_appl_ver_id = Some("9".into()),
                Some((_, v)) if v == "9" => settings.default_appl_ver_id = Some(v.clone()),
                Some((line, v)) => {
                    return Err(ConfigError::InvalidValue {
                        line: *line,
                        key: "DefaultApplVerID".into(),
                        value: v.clone(),
                        expected: "9 (FIX 5.0SP2)",
                    })
                }
            }
            if out.iter().any(|o: &SessionSettings| {
                o.sender_comp_id == settings.sender_comp_id && o.target_comp_id == settings.target_comp_id
            }) {
                return Err(ConfigError::DuplicateSession(format!(
                    "{}->{}",
                    settings.target_comp_id, settings.sender_comp_id
                )));
            }
            out.push(settings);
        }
        Ok(Config {
            gateway_id,
            listen: cfg_listen,
            tls_listen,
            tls_certificate,
            tls_private_key,
            tls_client_ca: path("TlsClientCA"),
            sessions: out,
            order_capacity,
        })
    }
}

fn parse_num<T: std::str::FromStr>(line: usize, key: &str, v: &str) -> Result<T, ConfigError> {
    v.parse().map_err(|_| ConfigError::InvalidValue {
        line,
        key: key.into(),
        value: v.into(),
        expected: "a non-negative integer",
    })
}

fn parse_bool(line: usize, key: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "Y" | "y" | "true" | "yes" => Ok(true),
        "N" | "n" | "false" | "no" => Ok(false),
        _ => Err(ConfigError::InvalidValue { line, key: key.into(), value: v.into(), expected: "Y or N" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "
# Castle FIX gateway
[DEFAULT]
GatewayId=3
ListenAddress=127.0.0.1:9876
SenderCompID=CASTLE
StoreDir=/tmp/fixstore
MaxMessagesPerSecond=500

[SESSION]
TargetCompID=DESK1
Account=7
Username=desk1
Password=secret
CancelOnDisconnect=Y
MaxOpenOrders=100

[SESSION]
TargetCompID=DESK1-DC
SessionType=drop-copy
Accounts=7, 8
";

    #[test]
    fn parses_blocks_with_defaults() {
        let c = Config::parse(SAMPLE).unwrap();
        assert_eq!(c.gateway_id, 3);
        assert_eq!(c.order_capacity, DEFAULT_ORDER_CAPACITY);
        assert_eq!(c.sessions.len(), 2);
        let s = &c.sessions[0];
        assert_eq!((s.sender_comp_id.as_str(), s.target_comp_id.as_str()), ("CASTLE", "DESK1"));
        assert_eq!(s.profile.account, 7);
        assert!(s.profile.cancel_on_disconnect);
        assert_eq!(s.profile.max_open_orders, 100);
        assert_eq!(s.profile.max_messages_per_sec, 500);
        assert_eq!(s.password.as_deref(), Some("secret"));
        assert_eq!(c.sessions[1].profile.kind, SessionKind::DropCopy);
        assert_eq!(c.sessions[1].profile.accounts, vec![7, 8]);
    }

    /// The example in README.md is a valid file.
    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("```ini\n").expect("ini block") + 7;
        let end = start + readme[start..].find("```").expect("block end");
        let c = Config::parse(&readme[start..end]).unwrap();
        assert_eq!(c.sessions.len(), 3);
        assert!(c.tls_client_ca.is_some() && c.sessions[0].require_tls);
        assert_eq!(c.sessions[1].profile.accounts, vec![7, 8]);
        let hub = &c.sessions[2].profile;
        assert_eq!(hub.on_behalf_of, vec![("CLIENTA".to_string(), 11), ("CLIENTB".to_string(), 12)]);
        assert_eq!(
            (hub.account, &hub.accounts[..], &hub.deliver_to[..]),
            (9, &[9, 11, 12][..], &["CASTLE-EU".to_string()][..])
        );
    }

    #[test]
    fn typed_errors() {
        let e = |t: &str| Config::parse(t).unwrap_err();
        assert!(matches!(e("[DEFAULT]\nListenAddress=1.2.3.4:1\n"), ConfigError::NoSessions));
        assert!(matches!(e("[DEFAULT]\nFoo=1\n"), ConfigError::UnknownKey { line: 2, .. }));
        assert!(matches!(e("[SESSION]\nListenAddress=1.2.3.4:1\n"), ConfigError::UnknownKey { .. }));
        assert!(matches!(e("Account=1\n"), ConfigError::Syntax { line: 1, .. }));
        assert!(matches!(e("[WHAT]\n"), ConfigError::Syntax { .. }));
        assert!(matches!(e("[DEFAULT]\nListenAddress=x\n[SESSION]\n"), ConfigError::InvalidValue { line: 2, .. }));
        assert!(matches!(
            e("[DEFAULT]\nListenAddress=127.0.0.1:1\n[SESSION]\nSenderCompID=A\nTargetCompID=B\n"),
            ConfigError::Missing { key: "Account", .. }
        ));
        assert!(matches!(
            e("[DEFAULT]\nListenAddress=127.0.0.1:1\n[SESSION]\nSenderCompID=A\nTargetCompID=B\nAccount=-1\n"),
            ConfigError::InvalidValue { line: 6, .. }
        ));
        assert!(matches!(
            e("[DEFAULT]\nListenAddress=127.0.0.1:1\nSenderCompID=A\nAccount=1\n[SESSION]\nTargetCompID=B\n[SESSION]\nTargetCompID=B\n"),
            ConfigError::DuplicateSession(_)
        ));
        assert!(matches!(e("[DEFAULT]\nTlsListenAddress=127.0.0.1:1\n[SESSION]\n"), ConfigError::TlsIncomplete));
        let one = "[DEFAULT]\nListenAddress=127.0.0.1:1\nOrderCapacity=N\n[SESSION]\nSenderCompID=A\nTargetCompID=B\nAccount=1\n";
        assert_eq!(Config::parse(&one.replace("=N", "=1000000")).unwrap().order_capacity, 1_000_000);
        assert!(matches!(Config::parse(&one.replace("=N", "=-1")), Err(ConfigError::InvalidValue { line: 3, .. })));
        assert!(matches!(
            Config::parse(&one.replace("=N", "=16777217")),
            Err(ConfigError::InvalidValue { line: 3, .. })
        ));
        // A gateway-wide key, not a session one.
        assert!(matches!(
            Config::parse(&one.replace("OrderCapacity=N\n", "").replace("Account=1", "Account=1\nOrderCapacity=5")),
            Err(ConfigError::UnknownKey { .. })
        ));
    }
}
