//! Hostile bytes from an engine server (or something pretending to be one) into the
//! frame splitter and server-frame decoder that `castle-link` clients (RemoteLink, the
//! settlement source) run: no panic, bounded allocation, Events2 round trip. The first
//! byte picks how the bytes are split into reads.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((step, rest)) = data.split_first() {
        castle_engine_server::proto::check_server_bytes(rest, *step as usize + 1);
    }
});
