//! Hostile bytes from a gateway, subscriber, standby or control client into
//! the engine server's frame reader and decoder (the code its connection
//! threads run): no panic, bounded allocation, canonical re-encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castle_engine_server::proto::check_client_bytes(data);
});
