//! Codec throughput: parse+validate and encode of a typical NewOrderSingle
//! and ExecutionReport.
//!
//! cargo bench -p castle-gateway-fix --bench codec
//!
//! The same messages are used by bench-quickfix/ (QuickFIX C++ baseline).

use castle_gateway_fix::field::Timestamp;
use castle_gateway_fix::frame::{next_frame, FrameStatus, Parser};
use castle_gateway_fix::validate::{ValidationOptions, Validator};
use castle_gateway_fix::{Dictionary, Encoder};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const NOS_BODY: &str = "35=D|34=1234|49=CLIENT1|52=20240101-12:00:00.123|56=CASTLE|\
11=ORD-000123|1=ACC1|21=1|55=BTC-USD|54=1|60=20240101-12:00:00.123|38=0.5|40=2|44=43250.50|59=1|";
const ER_BODY: &str = "35=8|34=5678|49=CASTLE|52=20240101-12:00:00.124|56=CLIENT1|\
37=O-98765|11=ORD-000123|17=E-445566|150=F|39=2|1=ACC1|55=BTC-USD|54=1|38=0.5|40=2|44=43250.50|\
59=1|32=0.5|31=43250.50|151=0|14=0.5|6=43250.50|60=20240101-12:00:00.124|";

fn frame(body: &str) -> Vec<u8> {
    let body = body.replace('|', "\x01");
    let mut v = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
    let cs = castle_gateway_fix::frame::checksum(&v);
    v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
    v
}

fn parse_validate(c: &mut Criterion) {
    let dict = Dictionary::fix44();
    let mut p = Parser::default();
    let mut v = Validator::new(dict, ValidationOptions::default());
    let mut g = c.benchmark_group("parse_validate");
    g.throughput(Throughput::Elements(1));
    for (name, body) in [("NewOrderSingle", NOS_BODY), ("ExecutionReport", ER_BODY)] {
        let m = frame(body);
        g.bench_function(name, |b| {
            b.iter(|| {
                let buf = black_box(&m[..]);
                let FrameStatus::Complete { len } = next_frame(buf, 65536) else { panic!() };
                let msg = p.parse(&buf[..len], dict).unwrap();
                let def = v.validate(&msg).unwrap();
                black_box(def);
            })
        });
    }
    g.finish();
}

fn parse_only(c: &mut Criterion) {
    let dict = Dictionary::fix44();
    let mut p = Parser::default();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for (name, body) in [("NewOrderSingle", NOS_BODY), ("ExecutionReport", ER_BODY)] {
        let m = frame(body);
        g.bench_function(name, |b| {
            b.iter(|| {
                let buf = black_box(&m[..]);
                let FrameStatus::Complete { len } = next_frame(buf, 65536) else { panic!() };
                black_box(p.parse(&buf[..len], dict).unwrap().len());
            })
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut e = Encoder::new("FIX.4.4");
    let now = Timestamp::from_unix_millis(1_704_110_400_123);
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("NewOrderSingle", |b| {
        b.iter(|| {
            e.start(b"D")
                .u64(34, black_box(1234))
                .str(49, b"CLIENT1")
                .timestamp(52, now)
                .str(56, b"CASTLE")
                .str(11, b"ORD-000123")
                .str(1, b"ACC1")
                .char(21, b'1')
                .str(55, b"BTC-USD")
                .char(54, b'1')
                .timestamp(60, now)
                .decimal(38, 5, 1)
                .char(40, b'2')
                .decimal(44, 4_325_050, 2)
                .char(59, b'1');
            black_box(e.finish().len());
        })
    });
    g.bench_function("ExecutionReport", |b| {
        b.iter(|| {
            e.start(b"8")
                .u64(34, black_box(5678))
                .str(49, b"CASTLE")
                .timestamp(52, now)
                .str(56, b"CLIENT1")
                .str(37, b"O-98765")
                .str(11, b"ORD-000123")
                .str(17, b"E-445566")
                .char(150, b'F')
                .char(39, b'2')
                .str(1, b"ACC1")
                .str(55, b"BTC-USD")
                .char(54, b'1')
                .decimal(38, 5, 1)
                .char(40, b'2')
                .decimal(44, 4_325_050, 2)
                .char(59, b'1')
                .decimal(32, 5, 1)
                .decimal(31, 4_325_050, 2)
                .decimal(151, 0, 0)
                .decimal(14, 5, 1)
                .decimal(6, 4_325_050, 2)
                .timestamp(60, now);
            black_box(e.finish().len());
        })
    });
    g.finish();
}

criterion_group!(benches, parse_validate, parse_only, encode);
criterion_main!(benches);
