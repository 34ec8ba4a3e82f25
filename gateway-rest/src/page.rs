//! The trading page and the API docs page: static files compiled into the binary.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::routes::Gw;

fn asset(ct: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "no-cache"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        body,
    )
        .into_response()
}

pub fn routes() -> Router<Gw> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", include_str!("../web/index.html")) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../web/app.js")) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../web/style.css")) }))
        .route("/docs", get(|| async { asset("text/html; charset=utf-8", include_str!("../web/docs.html")) }))
}
