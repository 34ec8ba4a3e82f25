//! Parse + validate of the codec benchmark's messages in a plain loop, for
//! instruction counts (criterion's harness would dominate a callgrind run):
//!
//! valgrind --tool=callgrind target/release/examples/codec_cost 100000 [nos|er]
//!
//! (bench-quickfix/count.sh compares the count per message with QuickFIX's.)
//!
//! Prints nanoseconds per message as well (noisy on a shared machine; the
//! criterion bench `codec` is the reference for time).

use castle_gateway_fix::frame::{checksum, next_frame, FrameStatus, Parser};
use castle_gateway_fix::validate::{ValidationOptions, Validator};
use castle_gateway_fix::Dictionary;
use std::hint::black_box;
use std::time::Instant;

// The same messages as benches/codec.rs and bench-quickfix/bench.cpp.
const NOS_BODY: &str = "35=D|34=1234|49=CLIENT1|52=20240101-12:00:00.123|56=CASTLE|\
11=ORD-000123|1=ACC1|21=1|55=BTC-USD|54=1|60=20240101-12:00:00.123|38=0.5|40=2|44=43250.50|59=1|";
const ER_BODY: &str = "35=8|34=5678|49=CASTLE|52=20240101-12:00:00.124|56=CLIENT1|\
37=O-98765|11=ORD-000123|17=E-445566|150=F|39=2|1=ACC1|55=BTC-USD|54=1|38=0.5|40=2|44=43250.50|\
59=1|32=0.5|31=43250.50|151=0|14=0.5|6=43250.50|60=20240101-12:00:00.124|";

fn frame(body: &str) -> Vec<u8> {
    let body = body.replace('|', "\x01");
    let mut v = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
    let cs = checksum(&v);
    v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
    v
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let only = std::env::args().nth(2);
    let dict = Dictionary::fix44();
    let mut p = Parser::default();
    let mut v = Validator::new(dict, ValidationOptions::default());
    for (key, name, body) in [("nos", "NewOrderSingle", NOS_BODY), ("er", "ExecutionReport", ER_BODY)] {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        let m = frame(body);
        let t0 = Instant::now();
        for _ in 0..n {
            let buf = black_box(&m[..]);
            let FrameStatus::Complete { len } = next_frame(buf, 65536) else { panic!("bad frame") };
            let msg = p.parse(&buf[..len], dict).expect("parses");
            black_box(v.validate(&msg).expect("valid"));
        }
        println!("parse+validate {name}: {:.0} ns/message", t0.elapsed().as_nanos() as f64 / n as f64);
    }
}
