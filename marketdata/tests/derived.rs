//! The L3 book rebuilt from events equals the engine's own book after every
//! command; tickers and candles agree with a brute-force recomputation.

mod common;

use castle_engine::EventKind;
use castle_marketdata::derived::CANDLE_INTERVALS;
use castle_marketdata::MarketData;
use common::{engine_book, our_book, Run};

fn check_run(mut run: Run, steps: usize, instruments: &[u32]) -> MarketData {
    let mut md = MarketData::new();
    for step in 0..steps {
        let (events, _) = run.step();
        md.apply(&events).unwrap_or_else(|e| panic!("step {step}: {e}"));
        for &i in instruments {
            let ours = md.instrument(i).map(|d| our_book(&d.book)).unwrap_or_default();
            let want = engine_book(&run.engine, i);
            assert_eq!(ours, want, "instrument {i} after step {step}");
            // L2 is exactly the aggregation of the engine's orders.
            if let Some(d) = md.instrument(i) {
                let depth = d.book.depth(usize::MAX);
                for (levels, orders) in [(&depth.bids, &want[0]), (&depth.asks, &want[1])] {
                    let mut agg: Vec<(i64, i64, u32)> = Vec::new();
                    for &(_, p, q) in orders {
                        match agg.last_mut() {
                            Some(l) if l.0 == p => {
                                l.1 += q;
                                l.2 += 1;
                            }
                            _ => agg.push((p, q, 1)),
                        }
                    }
                    let got: Vec<_> = levels.iter().map(|l| (l.price, l.qty, l.orders)).collect();
                    assert_eq!(got, agg, "L2 of instrument {i} after step {step}");
                }
            }
        }
    }
    md
}

#[test]
fn l3_book_equals_engine_after_every_chaos_command() {
    for seed in 1..=6 {
        check_run(Run::chaos(seed), 4_000, &[0, 1]);
    }
}

#[test]
fn l3_book_equals_engine_after_every_workload_command() {
    let md = check_run(Run::workload(7, 500), 20_000, &[0]);
    let d = md.instrument(0).unwrap();
    assert!(!d.book.is_empty());
    // L2 totals agree with the L3 orders.
    let depth = d.book.depth(usize::MAX);
    let total: i64 = depth.bids.iter().chain(&depth.asks).map(|l| l.qty).sum();
    let l3: i64 = [castle_engine::Side::Buy, castle_engine::Side::Sell]
        .into_iter()
        .flat_map(|s| d.book.orders(s).map(|o| o.qty).collect::<Vec<_>>())
        .sum();
    assert_eq!(total, l3);
    let top = d.book.top();
    assert_eq!(top.bid.map(|b| b.0), depth.bids.first().map(|l| l.price));
    assert!(top.bid.unwrap().0 < top.ask.unwrap().0, "book must not be crossed");
}

#[test]
fn ticker_and_candles_match_recomputation() {
    let mut run = Run::chaos(11);
    let mut md = MarketData::new();
    let mut trades = Vec::new();
    for _ in 0..6_000 {
        let (events, _) = run.step();
        for e in &events {
            if let EventKind::Trade { instrument: 0, price, qty, .. } = e.kind {
                trades.push((e.seq, e.ts, price, qty));
            }
        }
        md.apply(&events).unwrap();
    }
    assert!(trades.len() > 50, "chaos should trade");
    let d = md.instrument(0).unwrap();
    let t = d.ticker();
    let (last_seq, last_ts, last_price, _) = *trades.last().unwrap();
    // All trades of this run fall within 24h, so the window holds them all.
    assert!(last_ts - trades[0].1 < 86_400_000_000_000);
    assert_eq!(t.last, last_price);
    assert_eq!(t.open, trades[0].2);
    assert_eq!(t.high, trades.iter().map(|x| x.2).max().unwrap());
    assert_eq!(t.low, trades.iter().map(|x| x.2).min().unwrap());
    assert_eq!(t.volume, trades.iter().map(|x| x.3).sum::<i64>());
    assert_eq!(t.quote_volume, trades.iter().map(|x| x.2 as i128 * x.3 as i128).sum::<i128>());
    assert_eq!(t.change, t.last - t.open);
    assert_eq!(t.trades, trades.len() as u64);
    assert!(t.seq >= last_seq);
    for &iv in &CANDLE_INTERVALS {
        let series = d.candles(iv).unwrap();
        let cur = series.current.unwrap();
        let len = iv * 1_000_000_000;
        let start = last_ts - last_ts % len;
        let inside: Vec<_> = trades.iter().filter(|x| x.1 >= start).collect();
        assert_eq!(cur.open_time, start);
        assert_eq!(cur.open, inside[0].2);
        assert_eq!(cur.close, last_price);
        assert_eq!(cur.volume, inside.iter().map(|x| x.3).sum::<i64>());
        assert_eq!(cur.trades, inside.len() as u64);
        assert_eq!(cur.seq, last_seq);
        // Closed candles are contiguous in time and complete the volume.
        let closed_vol: i64 = series.closed.iter().map(|c| c.volume).sum();
        if series.closed.len() < castle_marketdata::derived::CANDLE_HISTORY {
            assert_eq!(closed_vol + cur.volume, trades.iter().map(|x| x.3).sum::<i64>());
        }
    }
    assert_eq!(d.trades.back().map(|t| t.price), Some(last_price));
}
