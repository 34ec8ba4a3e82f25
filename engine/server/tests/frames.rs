//! The engine server's client frames are hostile bytes: whatever arrives,
//! decoding never panics and never allocates past the frame limit, and
//! well-formed frames decode to exactly what was sent. The same check runs
//! under cargo fuzz (engine/server/fuzz, target `client_frames`).

use castle_engine::codec::encode_command;
use castle_engine::workload::Chaos;
use castle_engine_server::proto::{
    self, check_client_bytes, frame_header, hello, parse_client_frame, ClientFrame, FrameError, Role,
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
        Ok(ClientFrame::Hello { role: Role::Subscriber, gateway: 3, from_seq: 42 })
    );
    long.push(0);
    assert_eq!(parse_client_frame(proto::HELLO, &long), Err(FrameError::Trailing(1)));
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
