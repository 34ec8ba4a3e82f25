//! Framing + field parsing + dictionary validation over arbitrary bytes.
//! cargo +nightly fuzz run parse   (from gateway-fix/)
#![no_main]
use castle_gateway_fix::frame::{next_frame, FrameStatus, Parser};
use castle_gateway_fix::validate::{ValidationOptions, Validator};
use castle_gateway_fix::Dictionary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dict = Dictionary::fix44();
    let mut parser = Parser::default();
    let mut validator = Validator::new(dict, ValidationOptions::default());
    let mut pos = 0;
    while pos < data.len() {
        match next_frame(&data[pos..], 8192) {
            FrameStatus::Incomplete => break,
            FrameStatus::Garbled { skip, .. } => {
                assert!(skip >= 1, "framing must make progress");
                pos += skip;
            }
            FrameStatus::Complete { len } => {
                let frame = &data[pos..pos + len];
                if let Ok(msg) = parser.parse(frame, dict) {
                    // every field view lies inside the frame
                    for f in msg.fields() {
                        let _ = f.value.len();
                    }
                    let _ = validator.validate(&msg);
                }
                pos += len;
            }
        }
    }
});
