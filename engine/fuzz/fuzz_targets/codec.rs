//! Hostile bytes into the command and event decoders: no panic, and whatever decodes
//! re-encodes to exactly the same bytes (one message, one encoding). Decoded commands are
//! then applied to an engine, since on the wire and in the journal they come from outside.
#![no_main]
use castle_engine::codec::{command_bytes, decode_command, decode_event, encode_event};
use castle_engine::{FastEngine, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = decode_command(data) {
        assert_eq!(command_bytes(&c), data, "non-canonical command encoding accepted");
        let mut e = FastEngine::new(Limits::small());
        let mut out = Vec::new();
        for s in castle_engine::workload::Chaos::setup() {
            e.apply(1, &s, &mut out);
        }
        e.apply(2, &c, &mut out);
        if let Err(err) = e.check_invariants() {
            panic!("{err}");
        }
    }
    if let Ok(ev) = decode_event(data) {
        let mut again = Vec::new();
        encode_event(&ev, &mut again);
        assert_eq!(again, data, "non-canonical event encoding accepted");
    }
});
