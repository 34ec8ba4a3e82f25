//! The trading page and the API docs page: static files compiled into the
//! binary, plus the page's sign-in settings (`/oidc.json`).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::routes::Gw;

/// Where the trading page sends a user to sign in (OAuth 2.0 authorization
/// code flow with PKCE, a public client: no client secret in the page).
/// For Cognito: `https://<domain>/oauth2/authorize` and `.../oauth2/token`,
/// the app client id, and the user pool's JWKS given to the gateway's
/// bearer-token verifier (issuer `https://cognito-idp.<region>.amazonaws.com/<pool>`,
/// audience the app client id, which is the `aud` of Cognito ID tokens).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OidcLogin {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub client_id: String,
    /// Space-separated; must include `openid` to get an ID token.
    pub scope: String,
    /// Text of the sign-in button.
    pub label: String,
}

/// What `/oidc.json` answers: whether SSO is on (and its settings), and
/// whether bearer tokens are accepted at all (the page then offers to paste one).
#[derive(Serialize)]
struct OidcDoc<'a> {
    enabled: bool,
    bearer: bool,
    #[serde(flatten)]
    login: Option<&'a OidcLogin>,
}

fn asset(ct: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "no-cache"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        body,
    )
        .into_response()
}

async fn oidc(State(gw): State<Gw>) -> Response {
    let bearer = gw.jwt.is_some();
    let doc = OidcDoc { enabled: gw.cfg.oidc.is_some() && bearer, bearer, login: gw.cfg.oidc.as_ref() };
    let body = serde_json::to_string(&doc).unwrap_or_else(|_| r#"{"enabled":false,"bearer":false}"#.into());
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

pub fn routes() -> Router<Gw> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", include_str!("../web/index.html")) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../web/app.js")) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../web/style.css")) }))
        .route("/docs", get(|| async { asset("text/html; charset=utf-8", include_str!("../web/docs.html")) }))
        .route("/oidc.json", get(oidc))
}
