//! `castle serve` wiring of the REST/WebSocket gateway: flags, the demo API
//! keys (derived from the documented demo master key unless one is
//! configured), and the listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use castle_gateway_rest::vault::{KeyVault, StorageKey};
use castle_gateway_rest::{Gateway, RestConfig, RestServer, Scopes, Tls, DEMO_KEYS, DEMO_MASTER_KEY};
use castle_link::EngineLink;
use clap::Args;

#[derive(Args, Clone)]
pub struct RestArgs {
    /// Address of the REST/WebSocket gateway (HTTPS). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub rest_listen: String,
    /// Serve plain HTTP instead of HTTPS (loopback tests and benchmarks).
    #[arg(long)]
    pub rest_plain: bool,
    /// PEM certificate chain and key for HTTPS; a self-signed localhost certificate under --data-dir otherwise.
    #[arg(long, requires = "rest_tls_key")]
    pub rest_tls_cert: Option<PathBuf>,
    #[arg(long, requires = "rest_tls_cert")]
    pub rest_tls_key: Option<PathBuf>,
    /// Origins allowed by CORS (repeatable); none by default (the served page is same-origin).
    #[arg(long)]
    pub rest_cors_origin: Vec<String>,
    /// JWKS file for bearer JWTs (OIDC, e.g. Cognito); tokens carry a `castle_account` claim.
    #[arg(long)]
    pub rest_jwks: Option<PathBuf>,
    #[arg(long)]
    pub rest_jwt_issuer: Option<String>,
    #[arg(long)]
    pub rest_jwt_audience: Option<String>,
    /// Subject map and the page's single sign-on (boxed: `castle`'s subcommand enum stays small).
    #[command(flatten)]
    pub sso: Box<SsoArgs>,
    /// Weight budget per minute per IP and per key (defaults: 6000 and 3000).
    #[arg(long)]
    pub rest_ip_weight: Option<u32>,
    #[arg(long)]
    pub rest_key_weight: Option<u32>,
    /// Where order history (allOrders, order by id) and fills (myTrades) come from:
    /// `ledger` reads the settlement database (read-only; the one settlement writes,
    /// CASTLE_SETTLEMENT_DB or <data-dir>/settlement.sqlite) merged with the gateway's
    /// memory; `memory` serves only the last 1,000 orders and fills per account kept in memory.
    #[arg(long, value_enum, default_value_t = HistorySource::Ledger)]
    pub rest_history: HistorySource,
}

/// Bearer-token subjects and single sign-on on the trading page.
#[derive(Args, Clone)]
pub struct SsoArgs {
    /// Map a token subject to an account (repeatable, SUB=ACCOUNT), for tokens
    /// without a `castle_account` (or Cognito `custom:castle_account`) claim.
    #[arg(long, value_name = "SUB=ACCOUNT")]
    pub rest_jwt_subject: Vec<String>,
    /// Single sign-on on the trading page: the OIDC provider's authorization
    /// endpoint (Cognito: https://<domain>/oauth2/authorize). Needs --rest-jwks,
    /// --rest-oidc-token and --rest-oidc-client-id.
    #[arg(long, requires_all = ["rest_oidc_token", "rest_oidc_client_id"])]
    pub rest_oidc_authorize: Option<String>,
    /// The provider's token endpoint (Cognito: https://<domain>/oauth2/token).
    #[arg(long, requires = "rest_oidc_authorize")]
    pub rest_oidc_token: Option<String>,
    /// The page's OAuth client id (a public client: PKCE, no secret).
    #[arg(long, requires = "rest_oidc_authorize")]
    pub rest_oidc_client_id: Option<String>,
    #[arg(long, default_value = "openid")]
    pub rest_oidc_scope: String,
    #[arg(long, default_value = "Sign in with SSO")]
    pub rest_oidc_label: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistorySource {
    Ledger,
    Memory,
}

/// Starts the gateway; returns it and the lines to print at start.
pub async fn start(args: &RestArgs, link: Arc<dyn EngineLink>, data_dir: &Path) -> Result<(RestServer, Vec<String>)> {
    // CASTLE_REST_MASTER_KEY (hex, >= 16 bytes) replaces the demo master key.
    let master = match std::env::var("CASTLE_REST_MASTER_KEY") {
        Ok(h) => hex_decode(&h).context("CASTLE_REST_MASTER_KEY must be hex of at least 16 bytes")?,
        Err(_) => DEMO_MASTER_KEY.to_vec(),
    };
    let demo = master == DEMO_MASTER_KEY;
    let mut cfg = RestConfig::new(3, master);
    cfg.cors_origins = args.rest_cors_origin.clone();
    if let Some(w) = args.rest_ip_weight {
        cfg.rate.ip_weight_per_min = w;
    }
    if let Some(w) = args.rest_key_weight {
        cfg.rate.key_weight_per_min = w;
    }
    if args.rest_history == HistorySource::Ledger {
        // Settlement starts first in `castle serve`, so the ledger exists.
        let url = crate::serve_settlement::ledger_url(data_dir);
        let h = castle_settlement::history::History::open(&url, None)
            .await
            .context("opening the settlement ledger for order history (--rest-history memory to do without)")?;
        cfg.history = Some(Arc::new(h));
    }
    let jwt = match &args.rest_jwks {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(
                castle_gateway_rest::auth::JwtVerifier::new(
                    &text,
                    args.rest_jwt_issuer.as_deref(),
                    args.rest_jwt_audience.as_deref(),
                    subjects(&args.sso.rest_jwt_subject)?,
                )
                .context("loading the JWKS")?,
            )
        }
        None => None,
    };
    let sso = &args.sso;
    if let (Some(authorization_endpoint), Some(token_endpoint), Some(client_id)) =
        (&sso.rest_oidc_authorize, &sso.rest_oidc_token, &sso.rest_oidc_client_id)
    {
        anyhow::ensure!(args.rest_jwks.is_some(), "--rest-oidc-authorize needs --rest-jwks (to verify the ID tokens)");
        cfg.oidc = Some(castle_gateway_rest::page::OidcLogin {
            authorization_endpoint: authorization_endpoint.clone(),
            token_endpoint: token_endpoint.clone(),
            client_id: client_id.clone(),
            scope: sso.rest_oidc_scope.clone(),
            label: sso.rest_oidc_label.clone(),
        });
    }
    let gw = Gateway::new(cfg, link, jwt);
    // API keys created through the API persist in <data-dir>/rest/keys.sqlite,
    // secrets sealed under CASTLE_REST_STORAGE_KEY (64 hex digits) or the 0600
    // key file <data-dir>/rest/storage.key created on first start.
    let storage_key = match std::env::var("CASTLE_REST_STORAGE_KEY") {
        Ok(h) => StorageKey::from_hex(&h).context("CASTLE_REST_STORAGE_KEY")?,
        Err(_) => StorageKey::load_or_create(&data_dir.join("rest/storage.key"))?,
    };
    let vault = KeyVault::open(&data_dir.join("rest/keys.sqlite"), storage_key)?;
    let loaded = gw.attach_key_vault(vault)?;
    tracing::info!(loaded, "REST API keys loaded");
    let mut lines = Vec::new();
    for (id, account) in DEMO_KEYS {
        match gw.add_key(id, account, Scopes::ALL) {
            Some(secret) if demo => {
                lines.push(format!("REST demo key for account {account}: key {id} secret {secret}"))
            }
            Some(_) => {}
            None => lines.push(format!("REST demo key {id} was revoked; not re-added")),
        }
    }
    let tls = match (&args.rest_tls_cert, &args.rest_tls_key) {
        _ if args.rest_plain => Tls::Off,
        (Some(c), Some(k)) => Tls::Files { cert: c.clone(), key: k.clone() },
        _ => Tls::SelfSigned(data_dir.join("tls")),
    };
    let listen = args.rest_listen.parse().with_context(|| format!("--rest-listen {}", args.rest_listen))?;
    let server = castle_gateway_rest::serve(gw, listen, tls).await.context("starting the REST gateway")?;
    lines.push(format!(
        "REST API {}/api/v1 , trading page {}/ , docs {}/docs",
        server.url(),
        server.url(),
        server.url()
    ));
    Ok((server, lines))
}

/// `--rest-jwt-subject SUB=ACCOUNT` entries.
fn subjects(list: &[String]) -> Result<std::collections::HashMap<String, u32>> {
    list.iter()
        .map(|e| {
            let (sub, account) =
                e.rsplit_once('=').with_context(|| format!("--rest-jwt-subject {e}: want SUB=ACCOUNT"))?;
            let account =
                account.parse().with_context(|| format!("--rest-jwt-subject {e}: account is not a number"))?;
            Ok((sub.to_string(), account))
        })
        .collect()
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    let s = s.trim();
    anyhow::ensure!(s.len() >= 32 && s.len() & 1 == 0, "too short");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(anyhow::Error::from)).collect()
}
