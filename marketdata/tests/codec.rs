//! Property tests: decode(encode(x)) == x for every message type and for
//! whole packets; hostile bytes never panic the decoders, the handler or
//! the re-request server.

use std::sync::Mutex;
use std::time::Instant;

use castle_marketdata::feedbook::FeedBook;
use castle_marketdata::handler::{HandlerConfig, HandlerCore};
use castle_marketdata::itch::{Header, InstrumentDefinition, Message, StockDirectory, TIMESTAMP_MAX};
use castle_marketdata::mold::{self, Packet, PacketBuilder, Request};
use castle_marketdata::publisher::{answer_request, RetransBuffer, Shared};
use proptest::prelude::*;

fn header() -> impl Strategy<Value = Header> + Clone {
    (any::<u16>(), any::<u16>(), 0..=TIMESTAMP_MAX).prop_map(|(locate, tracking, timestamp)| Header {
        locate,
        tracking,
        timestamp,
    })
}

fn message() -> impl Strategy<Value = Message> {
    let h = header();
    prop_oneof![
        (h.clone(), any::<u8>()).prop_map(|(h, code)| Message::SystemEvent { h, code }),
        (h.clone(), any::<[u8; 8]>(), any::<[u8; 4]>(), any::<u32>(), any::<[u8; 2]>(), any::<u32>(), any::<u8>())
            .prop_map(|(h, stock, f, round_lot_size, issue_sub_type, etp_leverage_factor, inv)| {
                Message::StockDirectory(StockDirectory {
                    h,
                    stock,
                    market_category: f[0],
                    financial_status: f[1],
                    round_lot_size,
                    round_lots_only: f[2],
                    issue_classification: f[3],
                    issue_sub_type,
                    authenticity: inv,
                    short_sale_threshold: f[0],
                    ipo_flag: f[1],
                    luld_tier: f[2],
                    etp_flag: f[3],
                    etp_leverage_factor,
                    inverse_indicator: inv,
                })
            }),
        (h.clone(), any::<[u8; 8]>(), any::<u8>(), any::<u8>(), any::<[u8; 4]>()).prop_map(
            |(h, stock, state, reserved, reason)| Message::TradingAction { h, stock, state, reserved, reason }
        ),
        (h.clone(), any::<u64>(), any::<u8>(), any::<u32>(), any::<[u8; 8]>(), any::<u32>()).prop_map(
            |(h, order, side, shares, stock, price)| Message::AddOrder { h, order, side, shares, stock, price }
        ),
        (h.clone(), any::<u64>(), any::<u32>(), any::<u64>())
            .prop_map(|(h, order, shares, match_number)| Message::OrderExecuted { h, order, shares, match_number }),
        (h.clone(), any::<u64>(), any::<u32>(), any::<u64>(), any::<u8>(), any::<u32>()).prop_map(
            |(h, order, shares, match_number, printable, price)| Message::OrderExecutedWithPrice {
                h,
                order,
                shares,
                match_number,
                printable,
                price
            }
        ),
        (h.clone(), any::<u64>(), any::<u32>()).prop_map(|(h, order, shares)| Message::OrderCancel {
            h,
            order,
            shares
        }),
        (h.clone(), any::<u64>()).prop_map(|(h, order)| Message::OrderDelete { h, order }),
        (h.clone(), any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(h, order, new_order, shares, price)| Message::OrderReplace { h, order, new_order, shares, price }
        ),
        (h.clone(), any::<u64>(), any::<u8>(), any::<u32>(), any::<[u8; 8]>(), any::<u32>(), any::<u64>()).prop_map(
            |(h, order, side, shares, stock, price, match_number)| Message::Trade {
                h,
                order,
                side,
                shares,
                stock,
                price,
                match_number
            }
        ),
        (
            h.clone(),
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            any::<[u32; 3]>(),
            any::<[i64; 2]>(),
            any::<[u8; 4]>(),
            any::<u64>()
        )
            .prop_map(|(h, symbol, stock, ids, m, sc, min_qty)| {
                Message::InstrumentDefinition(InstrumentDefinition {
                    h,
                    symbol,
                    stock,
                    instrument_id: ids[0],
                    base_asset: ids[1],
                    quote_asset: ids[2],
                    tick_mantissa: m[0],
                    tick_scale: sc[0],
                    lot_mantissa: m[1],
                    lot_scale: sc[1],
                    base_decimals: sc[2],
                    quote_decimals: sc[3],
                    min_qty,
                })
            }),
        (h.clone(), any::<u64>(), any::<u64>()).prop_map(|(h, engine_seq, ts)| Message::EngineSequence {
            h,
            engine_seq,
            ts
        }),
        (h.clone(), any::<u64>(), any::<u64>()).prop_map(|(h, feed_seq, engine_seq)| Message::SnapshotBegin {
            h,
            feed_seq,
            engine_seq
        }),
        (h.clone(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(h, feed_seq, engine_seq, orders)| { Message::SnapshotEnd { h, feed_seq, engine_seq, orders } }),
        (h.clone(), any::<u64>(), any::<u8>(), any::<u64>(), any::<[u8; 8]>(), any::<i64>()).prop_map(
            |(h, order, side, shares, stock, price)| Message::AddOrderWide { h, order, side, shares, stock, price }
        ),
        (h.clone(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(h, order, shares, match_number)| Message::OrderExecutedWide { h, order, shares, match_number }),
        (h, any::<u64>(), any::<u64>()).prop_map(|(h, order, shares)| Message::OrderCancelWide { h, order, shares }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn message_round_trips(m in message()) {
        let mut v = Vec::new();
        m.encode_to_vec(&mut v);
        prop_assert_eq!(v.len(), m.encoded_len());
        prop_assert_eq!(Message::decode(&v), Ok(m));
        // Any other length for the same type is refused, never misread.
        prop_assert!(Message::decode(&v[..v.len() - 1]).is_err());
        v.push(0);
        prop_assert!(Message::decode(&v).is_err());
    }

    /// Any engine price and positive quantity reaches a feed book exactly:
    /// 'A' when both fit 32 bits, Castle 'a' otherwise, never truncated.
    #[test]
    fn add_order_picks_the_narrow_or_wide_message_and_keeps_the_values(
        price in prop_oneof![0i64..=u32::MAX as i64, any::<i64>()],
        qty in prop_oneof![1i64..=u32::MAX as i64, 1i64..i64::MAX],
    ) {
        let h = Header { locate: 1, tracking: 0, timestamp: 0 };
        let stock = castle_marketdata::itch::alpha("X");
        let m = castle_marketdata::encoder::add_order(h, 7, b'B', qty, stock, price, 1).unwrap();
        let narrow = u32::try_from(price).is_ok() && u32::try_from(qty).is_ok();
        prop_assert_eq!(m.type_byte(), if narrow { b'A' } else { b'a' });
        let mut v = Vec::new();
        m.encode_to_vec(&mut v);
        let mut book = FeedBook::new();
        let dir = Message::StockDirectory(StockDirectory { h, stock, ..StockDirectory::default() });
        book.apply(&dir).unwrap();
        book.apply(&Message::decode(&v).unwrap()).unwrap();
        let o = *book.instruments().next().unwrap().book.get(7).unwrap();
        prop_assert_eq!((o.price, o.qty), (price, qty));
    }

    #[test]
    fn packet_round_trips(msgs in proptest::collection::vec(message(), 0..60), seq in 1u64..u64::MAX / 2) {
        let mut b = PacketBuilder::new(mold::session("PROPTEST"), 1_400);
        let mut decoded = Vec::new();
        let mut next = seq;
        b.start(seq);
        let flush = |b: &mut PacketBuilder, decoded: &mut Vec<(u64, Message)>| {
            let bytes = b.finish().to_vec();
            let p = Packet::parse(&bytes).unwrap();
            for (s, m) in p.messages() {
                decoded.push((s, Message::decode(m).unwrap()));
            }
        };
        for m in &msgs {
            let mut v = Vec::new();
            m.encode_to_vec(&mut v);
            if !b.push(&v) {
                flush(&mut b, &mut decoded);
                b.start(next);
                prop_assert!(b.push(&v));
            }
            next += 1;
        }
        flush(&mut b, &mut decoded);
        let want: Vec<_> = msgs.iter().enumerate().map(|(i, m)| (seq + i as u64, *m)).collect();
        prop_assert_eq!(decoded, want);
    }

    #[test]
    fn hostile_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(p) = Packet::parse(&data) {
            for (_, m) in p.messages() {
                if let Ok(m) = Message::decode(m) {
                    let _ = FeedBook::new().apply(&m);
                }
            }
        }
        let _ = Request::parse(&data);
        let mut h = HandlerCore::new(HandlerConfig::default());
        h.on_packet(&data, Instant::now(), &mut |_, _| {});
        let _ = h.load_snapshot(&data, &mut |_, _| {});
        let shared = Mutex::new(Shared { retrans: RetransBuffer::new(16), book: FeedBook::new(), next_seq: 1 });
        let _ = answer_request(&shared, mold::session("X"), &data, 100, 1_400, &mut |_| {});
    }

    #[test]
    fn hostile_packets_with_valid_framing_never_panic(
        blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..20),
        types in proptest::collection::vec(proptest::sample::select(b"SRHAECXDUPiqbe".to_vec()), 20),
    ) {
        let mut b = PacketBuilder::new(mold::session("X"), 1_400);
        b.start(1);
        for (i, mut blk) in blocks.into_iter().enumerate() {
            blk.insert(0, types[i]);
            if let Some(l) = castle_marketdata::itch::expected_len(types[i]) {
                blk.resize(l, 7);
            }
            b.push(&blk);
        }
        let pkt = b.finish().to_vec();
        let mut h = HandlerCore::new(HandlerConfig::default());
        h.on_packet(&pkt, Instant::now(), &mut |_, _| {});
    }
}
