//! Hostile input to the re-request server: any datagram, against a buffer
//! holding some messages. Replies must be valid packets within the bounds.
#![no_main]

use std::sync::Mutex;

use castle_marketdata::feedbook::FeedBook;
use castle_marketdata::mold::{self, Packet};
use castle_marketdata::publisher::{answer_request, FeedCore, RetransBuffer, Shared};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let session = mold::session("FUZZ");
    let mut core = FeedCore::new(session, 200, 64);
    let msgs: Vec<_> = (0..100u64).map(|i| FeedCore::system_event(b'O', i)).collect();
    core.publish_messages(&msgs, &mut |_| {});
    let shared = core.shared();
    let mut sent = 0usize;
    let _ = answer_request(&shared, session, data, 50, 200, &mut |p| {
        let pkt = Packet::parse(p).expect("replies are valid packets");
        sent += pkt.messages().count();
        assert!(p.len() <= 200);
    });
    assert!(sent <= 50);
    let empty = Mutex::new(Shared { retrans: RetransBuffer::new(1), book: FeedBook::new(), next_seq: 1 });
    let _ = answer_request(&empty, session, data, 50, 200, &mut |_| {});
});
