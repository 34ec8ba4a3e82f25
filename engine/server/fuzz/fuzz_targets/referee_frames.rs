//! Hostile bytes into the referee's request decoder (what `castle referee` reads from the
//! network): no panic, and every request that decodes re-encodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castle_engine_server::referee::check_request_bytes(data);
});
