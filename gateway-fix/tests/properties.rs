//! Property tests: encode(parse(x)) == x, and hostile input never panics
//! (framing, parsing, validation and the whole session state machine).

use castle_gateway_fix::field::Timestamp;
use castle_gateway_fix::frame::{next_frame, FrameStatus, NoDataFields, Parser};
use castle_gateway_fix::session::{Action, AllowAll, Session, SessionConfig};
use castle_gateway_fix::store::MemoryStore;
use castle_gateway_fix::validate::{ValidationOptions, Validator};
use castle_gateway_fix::{Dictionary, Encoder};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Vec<u8>> {
    // Any bytes except SOH (plain fields cannot carry it), '=' included.
    prop::collection::vec(any::<u8>().prop_filter("no SOH", |b| *b != 1), 0..24)
}

fn fields() -> impl Strategy<Value = Vec<(u32, Vec<u8>)>> {
    prop::collection::vec(
        ((1u32..20_000).prop_filter("envelope tags", |t| !matches!(t, 8 | 9 | 10 | 35)), value()),
        0..40,
    )
}

fn msg_type() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"0123456789ABCDEFGHIJabcdefghij".to_vec()), 1..3)
}

fn encode(enc: &mut Encoder, mt: &[u8], fields: &[(u32, Vec<u8>)]) -> Vec<u8> {
    enc.start(mt);
    for (t, v) in fields {
        enc.str(*t, v);
    }
    enc.finish().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_parse_round_trip(mt in msg_type(), fs in fields()) {
        let mut enc = Encoder::new("FIX.4.4");
        let x = encode(&mut enc, &mt, &fs);
        prop_assert_eq!(next_frame(&x, 1 << 20), FrameStatus::Complete { len: x.len() });
        let mut p = Parser::default();
        let m = p.parse(&x, &NoDataFields).unwrap();
        prop_assert_eq!(m.msg_type(), &mt[..]);
        let parsed: Vec<(u32, Vec<u8>)> = m
            .fields()
            .filter(|f| !matches!(f.tag, 8 | 9 | 10 | 35))
            .map(|f| (f.tag, f.value.to_vec()))
            .collect();
        prop_assert_eq!(&parsed, &fs);
        // and back: encode(parse(x)) == x, byte for byte
        let y = encode(&mut enc, m.msg_type(), &parsed);
        prop_assert_eq!(x, y);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        drive_codec(&data);
        drive_session(&data, 13);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        fs in fields(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        chunk in 1usize..64,
    ) {
        let mut enc = Encoder::new("FIX.4.4");
        let now = Timestamp::from_unix_secs(1_704_067_200);
        let mut stream = Vec::new();
        enc.start(b"A").u64(34, 1).str(49, b"TW").timestamp(52, now).str(56, b"ISLD")
            .u64(98, 0).u64(108, 30);
        stream.extend_from_slice(enc.finish());
        let mut d = encode(&mut enc, b"D", &fs);
        for (i, b, op) in edits {
            let at = i.index(d.len() + 1);
            match op {
                0 if at < d.len() => d[at] = b,
                1 => d.insert(at, b),
                _ if at < d.len() => { d.remove(at); }
                _ => {}
            }
        }
        stream.extend_from_slice(&d);
        drive_codec(&stream);
        drive_session(&stream, chunk);
    }
}

fn drive_codec(data: &[u8]) {
    let dict = Dictionary::fix44();
    let mut p = Parser::default();
    let mut v = Validator::new(dict, ValidationOptions::default());
    let mut pos = 0;
    let mut steps = 0;
    while pos < data.len() {
        steps += 1;
        assert!(steps <= data.len() + 1, "framing must always make progress");
        match next_frame(&data[pos..], 4096) {
            FrameStatus::Incomplete => break,
            FrameStatus::Garbled { skip, .. } => {
                assert!(skip >= 1);
                pos += skip;
            }
            FrameStatus::Complete { len } => {
                if let Ok(m) = p.parse(&data[pos..pos + len], dict) {
                    let _ = v.validate(&m);
                }
                pos += len;
            }
        }
    }
}

fn drive_session(data: &[u8], chunk: usize) {
    let mut s =
        Session::new(SessionConfig::new("ISLD", "TW"), Dictionary::fix44(), MemoryStore::new(), Box::new(AllowAll));
    let mut now = Timestamp::from_unix_secs(1_704_067_200);
    s.on_connect(now).unwrap();
    let mut out: Vec<Action> = Vec::new();
    for c in data.chunks(chunk) {
        s.on_bytes(c, now, &mut out);
        now = now.add_secs(7);
        s.on_timer(now, &mut out);
    }
}
