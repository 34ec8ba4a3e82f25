//! Hostile datagrams into the packet decoder, the message decoder, the book
//! and the whole feed handler (including its snapshot loader).
#![no_main]

use std::time::Instant;

use castle_marketdata::feedbook::FeedBook;
use castle_marketdata::handler::{HandlerConfig, HandlerCore};
use castle_marketdata::itch::Message;
use castle_marketdata::mold::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        let mut book = FeedBook::new();
        for (_, m) in p.messages() {
            if let Ok(m) = Message::decode(m) {
                let mut v = Vec::new();
                m.encode_to_vec(&mut v);
                assert_eq!(Message::decode(&v), Ok(m));
                let _ = book.apply(&m);
            }
        }
    }
    let mut h = HandlerCore::new(HandlerConfig::default());
    // Two datagrams from one input: split anywhere, so sequencing state is exercised.
    let cut = data.first().map_or(0, |&b| b as usize).min(data.len());
    h.on_packet(&data[..cut], Instant::now(), &mut |_, _| {});
    h.on_packet(&data[cut..], Instant::now(), &mut |_, _| {});
    let _ = h.poll(Instant::now());
    let _ = h.load_snapshot(data, &mut |_, _| {});
});
