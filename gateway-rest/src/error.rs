//! API errors: JSON `{code, message}` with stable numeric codes.
//!
//! Codes never change meaning once published (clients switch on them); the
//! table is documented in the OpenAPI description (see `openapi.rs`).
//! Engine rejections map to `2000 + RejectReason` so the engine's own stable
//! numbering shows through.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use castle_engine::RejectReason;
use serde::Serialize;

/// Gateway error codes (engine rejections are `2000 + reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Code {
    Internal = 1000,
    EngineBusy = 1001,
    /// The engine did not answer in time: the order's status is unknown;
    /// reconcile by querying the client order id.
    StatusUnknown = 1002,
    EngineStopped = 1003,
    /// The settlement database serving order history and fills did not answer.
    HistoryUnavailable = 1004,
    Unauthorized = 1100,
    InvalidApiKey = 1101,
    InvalidSignature = 1102,
    TimestampOutsideWindow = 1103,
    InvalidRecvWindow = 1104,
    Replayed = 1105,
    MissingScope = 1106,
    IpNotAllowed = 1107,
    InvalidToken = 1108,
    RateLimited = 1200,
    Banned = 1201,
    BadRequest = 1300,
    InvalidJson = 1301,
    InvalidParameter = 1302,
    BodyTooLarge = 1303,
    QueryTooLong = 1304,
    PriceOffGrid = 1305,
    QuantityOffGrid = 1306,
    UnknownSymbol = 1307,
    NotFound = 1308,
    NoSuchRoute = 1309,
    MethodNotAllowed = 1310,
    InvalidCursor = 1311,
    UnsupportedMediaType = 1312,
    TooManyOpenOrders = 1400,
    TooManyApiKeys = 1401,
}

/// Every gateway code with its HTTP status and meaning (for the docs and tests).
pub const CODES: &[(Code, u16, &str)] = &[
    (Code::Internal, 500, "internal error"),
    (Code::EngineBusy, 503, "engine busy: nothing was submitted, retry later"),
    (Code::StatusUnknown, 504, "no answer from the engine in time: status unknown, query by client_order_id"),
    (Code::EngineStopped, 503, "engine unavailable"),
    (Code::HistoryUnavailable, 503, "order history database unavailable: retry later"),
    (Code::Unauthorized, 401, "authentication required"),
    (Code::InvalidApiKey, 401, "unknown or revoked API key"),
    (Code::InvalidSignature, 401, "signature does not match"),
    (Code::TimestampOutsideWindow, 401, "timestamp outside the receive window"),
    (Code::InvalidRecvWindow, 400, "recv window must be 1..=60000 ms"),
    (Code::Replayed, 401, "this signed request was already used"),
    (Code::MissingScope, 403, "the key lacks the scope this route needs"),
    (Code::IpNotAllowed, 403, "the key does not allow this IP address"),
    (Code::InvalidToken, 401, "bearer token invalid or expired"),
    (Code::RateLimited, 429, "request weight limit exceeded: see Retry-After"),
    (Code::Banned, 429, "temporarily banned after repeated limit violations: see Retry-After"),
    (Code::BadRequest, 400, "malformed request"),
    (Code::InvalidJson, 400, "body is not valid JSON for this route (unknown fields are refused)"),
    (Code::InvalidParameter, 400, "a parameter is missing or invalid"),
    (Code::BodyTooLarge, 413, "body larger than 16 KiB"),
    (Code::QueryTooLong, 414, "query string too long"),
    (Code::PriceOffGrid, 400, "price is not a positive multiple of the tick size"),
    (Code::QuantityOffGrid, 400, "quantity is not a positive multiple of the lot size"),
    (Code::UnknownSymbol, 400, "unknown symbol"),
    (Code::NotFound, 404, "no such order or key for this account"),
    (Code::NoSuchRoute, 404, "no such route"),
    (Code::MethodNotAllowed, 405, "method not allowed"),
    (Code::InvalidCursor, 400, "invalid pagination cursor"),
    (Code::UnsupportedMediaType, 415, "body must be application/json"),
    (Code::TooManyOpenOrders, 409, "too many open orders for this account at this gateway"),
    (Code::TooManyApiKeys, 409, "too many API keys for this account"),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u16,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
    /// For 429: the used-weight header (per IP or per key) and its value.
    pub used_weight: Option<(&'static str, u32)>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable numeric code (see the API description).
    pub code: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        let status = CODES.iter().find(|c| c.0 == code).map(|c| c.1).unwrap_or(500);
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code as u16,
            message: message.into(),
            retry_after: None,
            used_weight: None,
        }
    }

    pub fn param(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidParameter, message)
    }

    pub fn not_found() -> Self {
        Self::new(Code::NotFound, "order not found")
    }

    pub fn rejected(reason: RejectReason) -> Self {
        use RejectReason as R;
        // 400: the request itself is wrong for this instrument; 409: a valid
        // request that the current state refuses (balance, book, band, ...).
        let status = match reason {
            R::UnknownOrder => StatusCode::NOT_FOUND,
            R::UnknownInstrument
            | R::UnknownAccount
            | R::InvalidPrice
            | R::InvalidQuantity
            | R::BelowMinQuantity
            | R::BelowMinNotional
            | R::InvalidTimeInForce
            | R::InvalidDisplayQuantity
            | R::InvalidOrderOptions
            | R::InvalidAmount
            | R::InvalidInstrument
            | R::ReservedAccount
            | R::UnknownAsset => StatusCode::BAD_REQUEST,
            _ => StatusCode::CONFLICT,
        };
        ApiError {
            status,
            code: 2000 + reason as u16,
            message: format!("rejected by the engine: {}", reject_text(reason)),
            retry_after: None,
            used_weight: None,
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

pub fn reject_text(r: RejectReason) -> &'static str {
    use RejectReason as R;
    match r {
        R::UnknownInstrument => "unknown instrument",
        R::UnknownAccount => "unknown account",
        R::UnknownOrder => "unknown order",
        R::InstrumentHalted => "instrument halted",
        R::InstrumentClosed => "instrument closed",
        R::InvalidPrice => "invalid price",
        R::InvalidQuantity => "invalid quantity",
        R::BelowMinQuantity => "below minimum quantity",
        R::BelowMinNotional => "below minimum notional",
        R::PriceOutsideBand => "price outside the band",
        R::InsufficientBalance => "insufficient balance",
        R::PostOnlyWouldCross => "post-only order would take liquidity",
        R::DuplicateClientOrderId => "duplicate client order id",
        R::AccountKilled => "account kill switch engaged",
        R::InvalidTimeInForce => "time in force not valid for this order type",
        R::InvalidDisplayQuantity => "invalid display quantity",
        R::ExpireTimeInPast => "expire time in the past",
        R::StopWouldTriggerImmediately => "stop would trigger immediately",
        R::BookFull => "book full",
        R::TooManyStopOrders => "too many stop orders",
        R::InvalidOrderOptions => "invalid combination of order options",
        R::ReplaceQuantityBelowFilled => "new quantity below filled quantity",
        R::NotReplaceable => "order cannot be replaced",
        R::InvalidAmount => "invalid amount",
        R::BalanceOverflow => "balance overflow",
        R::InvalidInstrument => "invalid instrument",
        R::DuplicateInstrument => "duplicate instrument",
        R::ReservedAccount => "reserved account",
        R::TooManyAccounts => "too many accounts",
        R::UnknownAsset => "unknown asset",
        R::TooManyTimedOrders => "too many GTD orders",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody { code: self.code, message: self.message }).unwrap_or_default();
        let mut r = (self.status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        if let Some((name, used)) = self.used_weight {
            if let Ok(v) = HeaderValue::from_str(&used.to_string()) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_mapped() {
        let mut seen = std::collections::HashSet::new();
        for (c, s, _) in CODES {
            assert!(seen.insert(*c as u16), "duplicate code {}", *c as u16);
            assert_eq!(ApiError::new(*c, "x").status.as_u16(), *s);
        }
        assert_eq!(ApiError::rejected(RejectReason::InsufficientBalance).code, 2011);
    }
}
