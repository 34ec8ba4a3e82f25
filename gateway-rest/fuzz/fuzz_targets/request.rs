//! Hostile request bytes through the gateway's decoders: order bodies,
//! decimal strings, signature headers, WebSocket client messages.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castle_gateway_rest::fuzzing::check(data));
