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
        routes::health, routes::time, routes::exchange_info, routes::depth, routes::trades, routes::candles, routes::ticker,
        routes::place_order, routes::query_order, routes::query_order_client, routes::cancel_order,
        routes::cancel_order_client, routes::replace_order, routes::replace_order_client, routes::open_orders,
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
    ("409", "refused by the current state: balance, book, price band, limits (see code)"),
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
         may or may not exist. Always send a `client_order_id`; to reconcile, `GET /api/v1/order/client/{client_order_id}` \
         (404: it was not placed, retry with the same id) or simply retry the placement with the same \
         `client_order_id`: the existing order is returned, a second one is never created while the order is \
         open or among the account's last 1,000 closed orders. A retry with the id of a closed order that aged \
         out of the gateway's memory is placed again: use a fresh `client_order_id` for every new order.\n\n\
         **Errors**: JSON `{code, message}`. Codes:\n\n| code | HTTP | meaning |\n|---|---|---|\n",
    );
    for (c, s, m) in CODES {
        d.push_str(&format!("| {} | {} | {} |\n", *c as u16, s, m));
    }
    d.push_str(
        "| 2000 + n | 400, 409 or 404 | rejected by the engine with reason n: 400 when the request is invalid for the \
         instrument (2006 price, 2007 quantity, 2008 min quantity, 2009 min notional, 2015 time in force, 2016 display \
         quantity, 2021 options), 404 for 2003 unknown order, 409 when the current state refuses it (2010 price band, \
         2011 insufficient balance, 2012 post-only would cross, 2013 duplicate client order id, 2004 halted, ...) |\n",
    );
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

/// A positive decimal with at most `d` decimals (and at most 9 integer digits).
fn positive_decimal(d: u32) -> String {
    if d == 0 {
        return "^[1-9][0-9]{0,8}$".into();
    }
    format!("^([1-9][0-9]{{0,8}}(\\.[0-9]{{1,{d}}})?|0\\.[0-9]{{0,{}}}[1-9])$", d - 1)
}

/// Decimal places of a power-of-ten step (0.01 -> 2), None for other steps.
fn power_of_ten_places(step: rust_decimal::Decimal) -> Option<u32> {
    let n = step.normalize();
    (n.mantissa() == 1).then(|| n.scale())
}

/// The document with what only the running gateway knows: the listed
/// symbols as an enum, and the price/quantity grids as patterns when every
/// instrument's tick and lot are the same power of ten.
pub fn document_for(ins: &crate::gateway::Instruments) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut doc: Value = serde_json::from_str(json()).unwrap_or_default();
    let symbols: Vec<&str> = ins.specs.values().map(|s| s.symbol.as_str()).collect();
    let uniform = |f: &dyn Fn(&castle_engine::InstrumentSpec) -> rust_decimal::Decimal| {
        let mut it = ins.specs.values().map(|s| power_of_ten_places(f(s)));
        let first = it.next().flatten()?;
        it.all(|x| x == Some(first)).then_some(first)
    };
    let price = uniform(&|s| s.scaling.tick_size).map(positive_decimal);
    let qty = uniform(&|s| s.scaling.lot_size).map(positive_decimal);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for op in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
                for p in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                    if p["name"] == "symbol" {
                        p["schema"] = json!({"type": "string", "enum": symbols});
                    }
                    if p["name"] == "client_order_id" {
                        p["schema"] = json!({"type": "string", "pattern": "^[A-Za-z0-9._:/-]{1,36}$"});
                    }
                    if p["name"] == "key_id" {
                        p["schema"] = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
                    }
                }
            }
        }
    }
    for schema in ["PlaceOrderRequest", "ReplaceOrderRequest"] {
        let Some(props) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties")) else { continue };
        props["symbol"] = json!({"type": "string", "enum": symbols});
        for (field, pat) in [("price", &price), ("stop_price", &price), ("quantity", &qty), ("display_quantity", &qty)]
        {
            if let (Some(pat), Some(f)) = (pat, props.get_mut(field)) {
                f["pattern"] = json!(pat);
            }
        }
    }
    if let Some(props) = doc.pointer_mut("/components/schemas/CreateKeyRequest/properties") {
        // IPv4 addresses and ranges only in the document (a pattern for IPv6
        // would be unreadable); the gateway also takes IPv6 addresses and ranges.
        let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
        props["allowed_ips"] = json!({"type": "array", "maxItems": 16,
            "description": "IPv4/IPv6 addresses or CIDR ranges (e.g. 203.0.113.7, 10.0.0.0/8, 2001:db8::/32); empty: any",
            "items": {"type": "string", "pattern": format!("^{octet}(\\.{octet}){{3}}(/(3[0-2]|[12]?[0-9]))?$")}});
        props["label"] = json!({"type": ["string", "null"], "pattern": "^[ -~]{0,64}$"});
    }
    doc
}

pub async fn document(axum::extract::State(gw): axum::extract::State<crate::routes::Gw>) -> Response {
    let doc = document_for(&gw.read().instruments);
    ([(header::CONTENT_TYPE, "application/json")], doc.to_string()).into_response()
}
