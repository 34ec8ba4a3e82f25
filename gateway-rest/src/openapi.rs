//! The OpenAPI 3 document, generated from the handlers' annotations, with
//! the error responses, security schemes and error-code table added.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api::*;
use crate::error::{ErrorBody, CODES};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Castle REST API", version = "1.0.0"),
    paths(
        routes::time, routes::exchange_info, routes::depth, routes::trades, routes::candles, routes::ticker,
        routes::place_order, routes::query_order, routes::cancel_order, routes::replace_order, routes::open_orders,
        routes::cancel_all, routes::all_orders, routes::my_trades, routes::account, routes::list_keys,
        routes::create_key, routes::revoke_key
    ),
    components(schemas(ErrorBody, SideDto, OrderTypeDto, TifDto, StpDto, ScopeDto)),
    modifiers(&Extras),
    tags((name = "market", description = "public market data"), (name = "trading", description = "orders and fills (signed)"),
         (name = "account", description = "balances and API keys (signed)"))
)]
pub struct ApiDoc;

struct Extras;

const STATUSES: &[(&str, &str)] = &[
    ("400", "invalid request (see code)"),
    ("401", "authentication failed"),
    ("403", "scope or IP not allowed"),
    ("404", "not found (also: another account's order)"),
    ("405", "method not allowed"),
    ("413", "body too large"),
    ("414", "query too long"),
    ("415", "unsupported media type"),
    ("429", "rate limited or banned: Retry-After says when to retry"),
    ("500", "internal error"),
    ("503", "engine busy or unavailable: nothing was submitted"),
    ("504", "status unknown: reconcile by client_order_id"),
];

fn description() -> String {
    let mut d = String::from(
        "Castle's retail API, shaped like the large crypto venues' (Binance Spot, Coinbase Advanced Trade).\n\n\
         **Numbers**: prices, quantities and amounts are decimal strings on the instrument's grid \
         (`tick_size`, `lot_size` in /exchangeInfo); anything off the grid is refused, never rounded. \
         Unknown JSON fields and query parameters are refused.\n\n\
         **Signing** (private routes): headers `X-API-KEY`, `X-TIMESTAMP` (ms since the epoch), \
         `X-SIGNATURE` = lowercase hex HMAC-SHA256 keyed with the secret over \
         `timestamp + METHOD + path + (\"?\" + query if not empty) + body`, optional `X-RECV-WINDOW` \
         (ms, default 5000, max 60000). A signed request is accepted once. \
         Alternatively `Authorization: Bearer <JWT>` from the configured identity provider.\n\n\
         **Rate limits**: each route has a weight; responses carry `X-RateLimit-Used-Weight-1m` (per IP) \
         and `X-RateLimit-Key-Used-Weight-1m`; over budget: 429 with `Retry-After`; repeated 429s: a temporary ban.\n\n\
         **Status unknown**: a 504 (code 1002) or a dropped connection on order placement means the order \
         may or may not exist. Always send a `client_order_id`; to reconcile, `GET /api/v1/order?client_order_id=...` \
         (404: it was not placed, retry with the same id) or simply retry the placement with the same \
         `client_order_id`: the existing order is returned, a second one is never created.\n\n\
         **Errors**: JSON `{code, message}`. Codes:\n\n| code | HTTP | meaning |\n|---|---|---|\n",
    );
    for (c, s, m) in CODES {
        d.push_str(&format!("| {} | {} | {} |\n", *c as u16, s, m));
    }
    d.push_str("| 2000 + n | 400 (404 for 2003) | rejected by the engine with reason n (e.g. 2011 insufficient balance, 2012 post-only would cross) |\n");
    d.push_str("\n**WebSocket**: `/api/v1/ws`, see the gateway README (channels depth, trades, ticker, candles, user stream).\n");
    d
}

impl Modify for Extras {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.description = Some(description());
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-KEY",
                "API key id; sign with X-TIMESTAMP and X-SIGNATURE (see the description)",
            ))),
        );
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        let err = || {
            ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody")))).build()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                for (status, desc) in STATUSES {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| {
                        RefOr::T(ResponseBuilder::new().description(*desc).content("application/json", err()).build())
                    });
                }
            }
        }
    }
}

pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default())
}

pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json()).into_response()
}
