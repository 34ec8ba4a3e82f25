#![no_main]
//! Feeds arbitrary bytes to the record decoder, the segment cursor and the torn-tail classifier.
//! The same check runs as a proptest in `cargo test` (tests/journal.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castle_journal::format::check_decode_records(data);
});
