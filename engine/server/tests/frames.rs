//! The engine server's client frames are hostile bytes: whatever arrives,
//! decoding never panics and never allocates past the frame limit, and
//! well-formed frames decode to exactly what was sent. The same check runs
//! under cargo fuzz (engine/server/fuzz, target `client_frames`).

use castle_engine::codec::encode_command;
use castle_engine::workload::Chaos;
use castle_engine_server::proto::{
    self, check_client_bytes, check_server_bytes, frame_header, hello, hello_v, parse_client_frame, parse_server_frame,
    put_events2, put_instruments, ClientFrame, FrameError, Role, ServerFrame,
};
use proptest::prelude::*;

fn submit(request: u64, cmd: &castle_engine::Command) -> Vec<u8> {
    let mut body = request.to_le_bytes().to_vec();
    encode_command(cmd, &mut body);
    let mut f = Vec::new();
    frame_header(&mut f, proto::SUBMIT, body.len());
    f.extend_from_slice(&body);
    f
}

fn hello_frame(role: Role, gateway: u32, from: u64) -> Vec<u8> {
    let body = hello(role, gateway, from);
    let mut f = Vec::new();
    frame_header(&mut f, proto::HELLO, body.len());
    f.extend_from_slice(&body);
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_client_bytes(&data);
    }

    #[test]
    fn a_gateway_session_decodes_frame_for_frame(seed in any::<u64>(), n in 0usize..64, gateway in 1u32.., cut in any::<u16>()) {
        let mut chaos = Chaos::new(seed);
        let cmds: Vec<_> = (0..n).map(|_| chaos.next_command()).collect();
        let mut wire = hello_frame(Role::Gateway, gateway, 0);
        for (i, c) in cmds.iter().enumerate() {
            wire.extend_from_slice(&submit(i as u64 + 1, c));
        }
        prop_assert_eq!(check_client_bytes(&wire), n + 1);
        // A stream cut anywhere decodes the whole frames before the cut and nothing else.
        let cut = cut as usize % (wire.len() + 1);
        let whole = {
            let (mut at, mut k) = (0usize, 0usize);
            while at + 4 <= cut {
                let len = u32::from_le_bytes(wire[at..at + 4].try_into().unwrap()) as usize;
                if at + 4 + len > cut { break; }
                at += 4 + len;
                k += 1;
            }
            k
        };
        prop_assert_eq!(check_client_bytes(&wire[..cut]), whole);
    }
}

#[test]
fn refusals_are_typed() {
    assert_eq!(parse_client_frame(0x7f, &[]), Err(FrameError::UnknownType(0x7f)));
    assert_eq!(parse_client_frame(proto::HELLO, &[1, 0, 0]), Err(FrameError::Short(proto::HELLO)));
    assert_eq!(parse_client_frame(proto::HELLO, &[9; 13]), Err(FrameError::Role(9)));
    let mut long = hello(Role::Subscriber, 3, 42);
    assert_eq!(
        parse_client_frame(proto::HELLO, &long),
        Ok(ClientFrame::Hello { role: Role::Subscriber, gateway: 3, from_seq: 42, version: 1 })
    );
    // The optional version byte: 1 and 2 are known, anything else is refused, and a second
    // byte after it is trailing garbage.
    long.push(2);
    assert_eq!(
        parse_client_frame(proto::HELLO, &long),
        Ok(ClientFrame::Hello { role: Role::Subscriber, gateway: 3, from_seq: 42, version: 2 })
    );
    long.push(0);
    assert_eq!(parse_client_frame(proto::HELLO, &long), Err(FrameError::Trailing(1)));
    assert_eq!(parse_client_frame(proto::HELLO, &hello_v(Role::Subscriber, 3, 42, 0)), Err(FrameError::Version(0)));
    assert_eq!(parse_client_frame(proto::HELLO, &hello_v(Role::Subscriber, 3, 42, 3)), Err(FrameError::Version(3)));
    assert_eq!(parse_client_frame(proto::LIST_INSTRUMENTS, &[]), Ok(ClientFrame::ListInstruments));
    assert_eq!(parse_client_frame(proto::SUBMIT, &[0; 7]), Err(FrameError::Short(proto::SUBMIT)));
    // A Submit whose command does not decode is a per-request refusal, not a protocol error.
    assert!(matches!(
        parse_client_frame(proto::SUBMIT, &[1, 0, 0, 0, 0, 0, 0, 0, 0xff]),
        Ok(ClientFrame::Submit { request: 1, command: Err(_) })
    ));
    // A length prefix beyond the limit is refused before anything is allocated.
    let mut huge = ((proto::MAX_CLIENT_FRAME + 1) as u32).to_le_bytes().to_vec();
    huge.push(proto::SUBMIT);
    assert_eq!(check_client_bytes(&huge), 0);
}

/// Every command's events as the server sends them to a version-2 subscriber.
fn events2_stream(seed: u64, n: usize, origins: &[(u32, u64)]) -> (Vec<u8>, Vec<ServerFrame>) {
    let mut chaos = Chaos::new(seed);
    let mut engine: castle_engine::FastEngine = castle_engine::Engine::new(castle_engine::Limits::default());
    let (mut wire, mut frames, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        out.clear();
        let seq = engine.apply(i as u64, &chaos.next_command(), &mut out);
        let (gateway, request) = origins[i % origins.len().max(1)];
        let origin = (gateway != 0).then_some(castle_link::Origin { gateway, request });
        put_events2(&mut wire, seq, i as u64, origin, out.iter().map(|e| &e.kind));
        let events = out.iter().map(|e| e.kind).collect();
        frames.push(ServerFrame::Events { seq, ts: i as u64, origin, events });
    }
    (wire, frames)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_server_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), step in 1usize..64) {
        check_server_bytes(&data, step);
    }

    #[test]
    fn events2_frames_carry_the_origin_whatever_the_split(
        seed in any::<u64>(),
        n in 1usize..48,
        origins in proptest::collection::vec((0u32..4, any::<u64>()), 1..4),
        step in 1usize..300,
    ) {
        let (wire, frames) = events2_stream(seed, n, &origins);
        prop_assert_eq!(check_server_bytes(&wire, step), n);
        let mut d = proto::FrameDecoder::new(proto::MAX_SERVER_FRAME);
        let mut got = Vec::new();
        for piece in wire.chunks(step) {
            d.extend(piece);
            while let Some((ty, body)) = d.next_frame().unwrap() {
                got.push(parse_server_frame(ty, body).unwrap());
            }
        }
        prop_assert_eq!(got, frames);
    }
}

#[test]
fn instrument_lists_round_trip_and_lies_are_refused() {
    let specs = vec![
        castle_engine::InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000),
        castle_engine::InstrumentSpec::demo(1, "ETH-USDT", 3, 2, 300_000),
    ];
    let mut f = Vec::new();
    put_instruments(&mut f, &specs);
    assert_eq!(parse_server_frame(proto::INSTRUMENTS, &f[5..]), Ok(ServerFrame::Instruments(specs)));
    // A count larger than the body, a truncated entry, trailing bytes: typed refusals.
    let mut lie = f[5..].to_vec();
    lie[0] = 200;
    assert!(parse_server_frame(proto::INSTRUMENTS, &lie).is_err());
    assert!(parse_server_frame(proto::INSTRUMENTS, &f[5..f.len() - 1]).is_err());
    let mut more = f[5..].to_vec();
    more.push(0);
    assert!(parse_server_frame(proto::INSTRUMENTS, &more).is_err());
    // A frame length beyond the decoder's limit ends the stream.
    let mut d = proto::FrameDecoder::new(16);
    d.extend(&[17, 0, 0, 0, proto::ACK]);
    assert_eq!(d.next_frame(), Err(FrameError::Length(17)));
}

// The referee's frames (engine/server/src/referee.rs): the same hostile-bytes rule.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_referee_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
        castle_engine_server::referee::check_request_bytes(&data);
        castle_engine_server::referee::check_request_bytes_split(&data, split);
    }

    #[test]
    fn referee_answers_every_framed_request_in_order_even_after_malformed_ones(
        frames in proptest::collection::vec(
            (any::<bool>(), 1u32..5, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40), any::<u8>()), 1..8)
    ) {
        use castle_engine_server::referee::{encode_request, Incoming, RefereeInbox, Request};
        let mut bytes = Vec::new();
        let mut sent = Vec::new();
        for (good, node, epoch, junk, ty) in frames {
            if good {
                let r = Request::Lease { node, epoch, addr: String::new() };
                bytes.extend(encode_request(&r));
                sent.push(Some(r));
            } else {
                // Well framed, body of junk (shorter than the frame limit: the framing survives).
                bytes.extend(((junk.len() + 1) as u32).to_le_bytes());
                bytes.push(ty);
                bytes.extend(&junk);
                sent.push(None);
            }
        }
        let mut inbox = RefereeInbox::default();
        inbox.extend(&bytes);
        let mut answers = Vec::new();
        while let Some(i) = inbox.next_incoming() {
            answers.push(i);
        }
        prop_assert_eq!(answers.len(), sent.len(), "one answer per frame");
        for (a, s) in answers.iter().zip(&sent) {
            match (a, s) {
                (Incoming::Request(r), Some(want)) => prop_assert_eq!(r, want),
                (Incoming::Refuse { close, .. }, None) => prop_assert!(!close, "a malformed body does not close"),
                (Incoming::Request(_), None) => {} // junk that happens to be a request
                (other, want) => prop_assert!(false, "{:?} for {:?}", other, want),
            }
        }
        prop_assert!(!inbox.closed());
    }

    #[test]
    fn referee_requests_round_trip(node in 1u32.., epoch in any::<u64>(), seq in any::<u64>(), addr in "[a-z0-9.:]{0,40}", claim in any::<bool>()) {
        use castle_engine_server::referee::{encode_request, parse_request, Request};
        let r = if claim { Request::Claim { node, epoch, seq, addr } } else { Request::Lease { node, epoch, addr } };
        let f = encode_request(&r);
        prop_assert_eq!(parse_request(f[4], &f[5..]), Ok(r.clone()));
        castle_engine_server::referee::check_request_bytes(&f);
    }
}
