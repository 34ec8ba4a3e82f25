//! Drives the acceptor state machine with arbitrary byte chunks, time steps
//! and API calls. A valid Logon is fed first so the fuzzer spends its time
//! in the logged-on state; frames of valid-looking messages are mixed in so
//! sequence handling (gaps, resends, resets) is reached.
//! cargo +nightly fuzz run session   (from gateway-fix/)
#![no_main]
use castle_gateway_fix::field::Timestamp;
use castle_gateway_fix::session::{Action, AllowAll, Session, SessionConfig};
use castle_gateway_fix::store::MemoryStore;
use castle_gateway_fix::{Dictionary, Encoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cfg = SessionConfig::new("ISLD", "TW");
    cfg.max_resend_range = 64;
    cfg.max_queued_messages = 64;
    let mut s = Session::new(cfg, Dictionary::fix44(), MemoryStore::new(), Box::new(AllowAll));
    let mut now = Timestamp::from_unix_secs(1_704_067_200);
    let mut out: Vec<Action> = Vec::new();
    let mut enc = Encoder::new("FIX.4.4");
    let _ = s.on_connect(now);
    enc.start(b"A").u64(34, 1).str(49, b"TW").timestamp(52, now).str(56, b"ISLD").u64(98, 0).u64(108, 5);
    s.on_bytes(enc.finish(), now, &mut out);

    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        match op % 8 {
            // raw chunk
            0 | 1 => {
                let start = (i + 1).min(data.len());
                let n = (*data.get(i).unwrap_or(&0) as usize).min(data.len() - start);
                s.on_bytes(&data[start..start + n], now, &mut out);
                i = start + n;
            }
            // a well-formed message with fuzzed type, seq and flags
            2 | 3 => {
                let b = |k: usize| *data.get(i + k).unwrap_or(&0);
                let types: [&[u8]; 10] = [b"0", b"1", b"2", b"3", b"4", b"5", b"A", b"D", b"8", b"F"];
                let t = types[b(0) as usize % types.len()];
                enc.start(t).u64(34, b(1) as u64 % 40).str(49, b"TW").timestamp(52, now).str(56, b"ISLD");
                if b(2) & 1 != 0 {
                    enc.str(43, b"Y").timestamp(122, now.add_secs(b(2) as i64 % 3 - 1));
                }
                match t {
                    b"1" => {
                        enc.str(112, b"T");
                    }
                    b"2" => {
                        enc.u64(7, b(3) as u64 % 50).u64(16, b(4) as u64 % 60);
                    }
                    b"4" => {
                        enc.u64(36, b(3) as u64 % 50);
                        if b(4) & 1 != 0 {
                            enc.str(123, b"Y");
                        }
                    }
                    b"D" => {
                        enc.str(11, b"X").str(21, b"1").str(40, b"1").str(54, b"1").str(55, b"S").timestamp(60, now);
                    }
                    _ => {}
                }
                s.on_bytes(enc.finish(), now, &mut out);
                i += 5;
            }
            // time passes
            4 => {
                let secs = *data.get(i).unwrap_or(&0) as i64;
                now = now.add_nanos(secs * 250_000_000);
                s.on_timer(now, &mut out);
                i += 1;
            }
            // the order layer sends an execution report
            5 => {
                let _ = s.send_app(b"8", now, &mut out, |e| {
                    e.str(37, b"O").str(17, b"E").str(150, b"0").str(39, b"0");
                });
            }
            // connection drops and comes back
            6 => {
                s.on_disconnected(now);
                let _ = s.on_connect(now);
            }
            _ => s.logout(None, now, &mut out),
        }
        out.clear();
        if let Some(d) = s.next_deadline() {
            assert!(d.unix_nanos() > 0);
        }
    }
});
