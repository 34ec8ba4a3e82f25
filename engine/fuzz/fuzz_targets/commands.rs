//! Arbitrary command sequences through the fast and the reference engine:
//! any panic, disagreement or broken invariant is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = castle_engine::check::fuzz_bytes(data) {
        panic!("{e}");
    }
});
