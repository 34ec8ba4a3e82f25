//! The decoders' robustness check, shared by the cargo-fuzz target
//! (gateway-rest/fuzz) and a property test here: hostile bytes through the
//! order body parser and builder, decimal parsing, signature verification
//! and the WebSocket client message parser never panic, and whatever is
//! accepted is on the instrument's grid.

use castle_engine::{InstrumentSpec, OrderSize, OrderType};

use crate::api::PlaceOrderRequest;
use crate::auth::{canonical, verify, KeyStore, SignedParts, DEMO_MASTER_KEY};
use crate::decimal::parse_decimal;

pub fn check(data: &[u8]) {
    let spec = InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000);
    if let Ok(r) = serde_json::from_slice::<PlaceOrderRequest>(data) {
        if let Ok((order, _, cl)) = crate::routes::build_order(&spec, &r, 1, "~gen") {
            assert!(!cl.is_empty() && cl.len() <= 36);
            match order.order_type {
                OrderType::Limit { price } => assert!(price > 0),
                OrderType::StopLimit { stop, price } => assert!(stop > 0 && price > 0),
                OrderType::StopMarket { stop } => assert!(stop > 0),
                OrderType::Market => {}
            }
            match order.size {
                OrderSize::Base(q) => assert!(q > 0),
                OrderSize::QuoteBudget(b) => assert!(b > 0),
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Some(d) = parse_decimal(&text) {
        assert!(d >= rust_decimal::Decimal::ZERO);
        if let Ok(t) = spec.scaling.price_to_ticks(d) {
            assert_eq!(spec.scaling.ticks_to_price(t), d, "on-grid prices round-trip exactly");
        }
    }
    let _ = crate::ws::parse_client(&text);
    // Signature headers from the same bytes: never a panic, never accepted.
    let mut keys = KeyStore::new(DEMO_MASTER_KEY.to_vec());
    keys.insert(crate::auth::ApiKey {
        id: "k".into(),
        account: 1,
        scopes: crate::auth::Scopes::ALL,
        allowed_ips: vec![],
        label: String::new(),
        created_ms: 0,
    })
    .expect("no vault, never revoked");
    let mut parts = text.splitn(4, '\n');
    let (ts, sig, rw) = (parts.next(), parts.next(), parts.next());
    let p = SignedParts { key: Some("k"), timestamp: ts, signature: sig, recv_window: rw };
    let now = ts.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    assert!(keys.authenticate(&p, "GET", "/x", "", data, None, now).is_err(), "a forged signature passed");
    let _ = verify("secret", &canonical(ts.unwrap_or(""), "POST", "/", "", data), sig.unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            super::check(&data);
        }

        #[test]
        fn order_shaped_json(
            ty in prop::sample::select(vec!["LIMIT", "MARKET", "STOP_MARKET", "STOP_LIMIT", "X"]),
            side in prop::sample::select(vec!["BUY", "SELL"]),
            price in "[0-9]{0,7}(\\.[0-9]{0,4})?",
            qty in "[0-9]{0,4}(\\.[0-9]{0,7})?",
            tif in prop::sample::select(vec!["GTC", "IOC", "FOK", "GTD", "DAY"]),
            extra in prop::sample::select(vec!["", r#","post_only":true"#, r#","display_quantity":"0.1""#, r#","expire_time":1"#, r#","quote_quantity":"10""#, r#","stop_price":"60000""#]),
        ) {
            let body = format!(r#"{{"symbol":"BTC-USDT","side":"{side}","type":"{ty}","price":"{price}","quantity":"{qty}","time_in_force":"{tif}"{extra}}}"#);
            super::check(body.as_bytes());
        }
    }
}
