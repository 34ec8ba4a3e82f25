//! Hostile bytes into the referee's request decoder (what `castle referee` reads from the
//! network, through `RefereeInbox`): no panic, every request that decodes re-encodes to itself,
//! every malformed one gets a refusal frame that decodes to itself, nothing is answered after a
//! refusal that closes, and the answers do not depend on how the bytes are split into reads.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castle_engine_server::referee::check_request_bytes(data);
});
