use std::fs;
use std::path::{Path, PathBuf};

use castle_journal::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use castle_journal::*;
use proptest::prelude::*;

fn opts(dir: &Path, writer: WriterChoice) -> JournalOptions {
    let mut o = JournalOptions::new(dir);
    o.writer = writer;
    o.segment_size = 1 << 20;
    o.batch_capacity = 256 << 10;
    o
}

fn payload(seq: u64) -> Vec<u8> {
    // Varying sizes, content derived from seq.
    let len = (seq * 37 % 301) as usize;
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

/// Write `batches` (record counts) with one commit each; returns the last seq.
fn write_batches(o: JournalOptions, batches: &[usize]) -> u64 {
    let (mut j, rep) = Journal::open(o).expect("open");
    let mut seq = rep.next_seq;
    for &n in batches {
        for _ in 0..n {
            let s = j.append(seq * 1000, &payload(seq)).expect("append");
            assert_eq!(s, seq);
            seq += 1;
        }
        assert_eq!(j.commit().expect("commit"), seq - 1);
    }
    j.close().expect("close");
    seq - 1
}

fn read_all(dir: &Path, from: u64) -> Vec<Record> {
    JournalReader::open(dir, from).expect("reader").collect::<Result<Vec<_>>>().expect("read")
}

fn check_records(recs: &[Record], from: u64, to: u64) {
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (from..=to).collect::<Vec<_>>());
    for r in recs {
        assert_eq!(r.ts, r.seq * 1000);
        assert_eq!(r.payload, payload(r.seq), "payload of {}", r.seq);
    }
}

fn uring_ok() -> bool {
    let d = tempfile::tempdir().unwrap();
    match Journal::open(opts(d.path(), WriterChoice::IoUring)) {
        Ok(_) => true,
        Err(JournalError::UringUnavailable(e)) => {
            eprintln!("io_uring unavailable here ({e}); io_uring cases skipped");
            false
        }
        Err(e) => panic!("{e}"),
    }
}

fn writers() -> Vec<WriterChoice> {
    let mut v = vec![WriterChoice::Portable];
    if uring_ok() {
        v.push(WriterChoice::IoUring);
    }
    v
}

fn last_segment(dir: &Path) -> PathBuf {
    list_segments(dir).unwrap().last().unwrap().path.clone()
}

/// Byte offset of record `seq` in a single-segment journal written by `write_batches` from 1.
fn offset_of(seq: u64) -> usize {
    SEGMENT_HEADER_LEN + (1..seq).map(|s| RECORD_HEADER_LEN + payload(s).len()).sum::<usize>()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn round_trip_both_writers() {
    for w in writers() {
        let d = tempfile::tempdir().unwrap();
        let last = write_batches(opts(d.path(), w), &[1, 7, 100, 3, 500]);
        assert_eq!(last, 611);
        check_records(&read_all(d.path(), 1), 1, 611);
        // The file is pre-allocated to the segment size.
        assert_eq!(fs::metadata(last_segment(d.path())).unwrap().len(), 1 << 20);
    }
}

#[test]
fn pipelined_submit_wait() {
    for w in writers() {
        let d = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(opts(d.path(), w)).unwrap();
        let mut seq = 1;
        let mut submitted = Vec::new();
        for batch in 0..50u64 {
            for _ in 0..(batch % 7 + 1) {
                j.append(seq * 1000, &payload(seq)).unwrap();
                seq += 1;
            }
            let before = j.durable_seq();
            let last = j.submit().unwrap().unwrap();
            assert_eq!(last, seq - 1);
            // submit() waited for the previous batch: it is durable now.
            if let Some(&prev) = submitted.last() {
                assert!(j.durable_seq() >= prev && j.durable_seq() >= before);
            }
            assert!(j.in_flight());
            submitted.push(last);
        }
        // poll eventually completes without blocking calls.
        let t = std::time::Instant::now();
        while j.poll().unwrap() < seq - 1 {
            assert!(t.elapsed().as_secs() < 10, "poll never completed");
            std::thread::yield_now();
        }
        assert!(!j.in_flight());
        assert_eq!(j.submit().unwrap(), None, "empty batch submits nothing");
        drop(j);
        check_records(&read_all(d.path(), 1), 1, seq - 1);
    }
}

#[test]
fn roll_over_segments() {
    for w in writers() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path(), w);
        o.segment_size = 16 << 10;
        o.batch_capacity = 64 << 10;
        // ~180 bytes per record: a 16 KiB segment holds ~90; batches of 300 span several.
        let last = write_batches(o.clone(), &[300, 1, 1, 250, 40]);
        let segs = list_segments(d.path()).unwrap();
        assert!(segs.len() >= 7, "only {} segments", segs.len());
        let recs = read_all(d.path(), 1);
        check_records(&recs, 1, last);
        // Each segment is named by its first record and is within the limit.
        for (i, s) in segs.iter().enumerate() {
            let first = JournalReader::open(d.path(), s.first_seq).unwrap().next().unwrap().unwrap();
            assert_eq!(first.seq, s.first_seq);
            let next_first = segs.get(i + 1).map_or(last + 1, |n| n.first_seq);
            let bytes: usize = (s.first_seq..next_first).map(|q| RECORD_HEADER_LEN + payload(q).len()).sum::<usize>()
                + SEGMENT_HEADER_LEN;
            assert!(bytes <= 16 << 10, "segment {} holds {bytes} bytes", s.path.display());
        }
        // Reopen continues in the last segment and rolls again.
        let (mut j, rep) = Journal::open(o).unwrap();
        assert_eq!(rep.next_seq, last + 1);
        assert_eq!(rep.segments, segs.len());
        for s in last + 1..=last + 200 {
            j.append(s * 1000, &payload(s)).unwrap();
        }
        j.close().unwrap();
        check_records(&read_all(d.path(), 1), 1, last + 200);
    }
}

#[test]
fn writers_write_identical_bytes() {
    if !uring_ok() {
        return;
    }
    let mut dirs = Vec::new();
    for (w, direct) in [(WriterChoice::IoUring, true), (WriterChoice::Portable, true), (WriterChoice::Portable, false)]
    {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path(), w);
        o.segment_size = 16 << 10;
        o.direct_io = direct;
        write_batches(o.clone(), &[1, 2, 50, 400, 3]);
        // Reopen and append more (exercises the carried partial block after recovery).
        write_batches(o, &[5, 60]);
        dirs.push(d);
    }
    let listing = |p: &Path| {
        let mut v: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let l0 = listing(dirs[0].path());
    assert!(l0.len() > 3);
    for d in &dirs[1..] {
        assert_eq!(listing(d.path()), l0);
        for name in &l0 {
            let a = fs::read(dirs[0].path().join(name)).unwrap();
            let b = fs::read(d.path().join(name)).unwrap();
            assert!(a == b, "{name:?} differs");
        }
    }
}

#[test]
fn batch_full_and_record_too_large() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path(), WriterChoice::Auto);
    o.batch_capacity = 8192;
    let (mut j, _) = Journal::open(o).unwrap();
    assert!(matches!(j.append(0, &vec![0u8; j.max_payload() + 1]), Err(JournalError::RecordTooLarge { .. })));
    j.append(0, &vec![1u8; j.max_payload()]).unwrap();
    let mut n = 1;
    loop {
        match j.append(0, &[2u8; 100]) {
            Ok(_) => n += 1,
            Err(JournalError::BatchFull { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(n < 1000);
    }
    // A full batch always accepts the record after a submit.
    j.submit().unwrap();
    for _ in 0..200 {
        if let Err(JournalError::BatchFull { .. }) = j.append(0, &[3u8; 100]) {
            j.submit().unwrap();
            j.append(0, &[3u8; 100]).unwrap();
        }
    }
    let last = j.close().unwrap();
    assert_eq!(read_all(d.path(), 1).len() as u64, last);
}

/// Cut the journal at `cut` (zeroing everything after it, like a write that stopped there).
fn cut_at(dir: &Path, cut: usize) {
    let p = last_segment(dir);
    let mut b = fs::read(&p).unwrap();
    b[cut..].fill(0);
    fs::write(&p, b).unwrap();
}

#[test]
fn torn_tail_truncated_at_several_points() {
    let tmpl = tempfile::tempdir().unwrap();
    let last = write_batches(opts(tmpl.path(), WriterChoice::Portable), &[10, 10, 10]);
    assert_eq!(last, 30);
    let r28 = offset_of(28);
    let r29 = offset_of(29);
    let end = offset_of(31);
    // (cut offset, records that survive, whether a truncation is reported)
    let cases = [
        (end, 30, false),                        // nothing lost
        (end - 1, 29, true),                     // last byte of the last payload
        (r29, 28, false),                        // exactly at a record boundary: clean end
        (r29 + 3, 28, true),                     // inside a length field
        (r29 + RECORD_HEADER_LEN - 1, 28, true), // inside the CRC
        (r29 + 20, 28, true),                    // inside the timestamp
        (r28 + RECORD_HEADER_LEN + 1, 27, true), // inside a payload
        (offset_of(21), 20, false),              // a whole batch missing
    ];
    for (cut, survive, reported) in cases {
        let d = tempfile::tempdir().unwrap();
        copy_dir(tmpl.path(), d.path());
        cut_at(d.path(), cut);
        let (mut j, rep) = Journal::open(opts(d.path(), WriterChoice::Auto)).unwrap();
        assert_eq!(rep.next_seq, survive + 1, "cut {cut}");
        assert_eq!(!rep.truncations.is_empty(), reported, "cut {cut}: {rep:?}");
        if reported {
            let t = &rep.truncations[0];
            assert_eq!(t.offset as usize, offset_of(survive + 1));
            assert!(t.file.ends_with("00000000000000000001.wal"));
            assert!(!t.corruption);
        }
        // Continue appending where it stopped.
        for s in survive + 1..=survive + 15 {
            assert_eq!(j.append(s * 1000, &payload(s)).unwrap(), s);
        }
        j.close().unwrap();
        check_records(&read_all(d.path(), 1), 1, survive + 15);
        // A second recovery finds nothing to repair.
        let (_, rep2) = Journal::open(opts(d.path(), WriterChoice::Auto)).unwrap();
        assert!(rep2.truncations.is_empty());
        assert_eq!(rep2.next_seq, survive + 16);
    }
}

#[test]
fn torn_last_batch_with_later_records_intact() {
    // Blocks of the last batch may reach the disk out of order: a bad record followed by valid
    // records of the same batch is a torn tail, not corruption.
    let d = tempfile::tempdir().unwrap();
    write_batches(opts(d.path(), WriterChoice::Auto), &[10, 20]);
    let p = last_segment(d.path());
    let mut b = fs::read(&p).unwrap();
    b[offset_of(15) + 30] ^= 0xff;
    fs::write(&p, &b).unwrap();
    let (j, rep) = Journal::open(opts(d.path(), WriterChoice::Auto)).unwrap();
    assert_eq!(rep.next_seq, 15);
    assert_eq!(rep.truncations.len(), 1);
    assert_eq!(rep.truncations[0].discarded_valid_records, 15);
    drop(j);
    // The discarded bytes are zero now.
    let b = fs::read(&p).unwrap();
    assert!(b[offset_of(15)..].iter().all(|&x| x == 0));
}

#[test]
fn mid_file_corruption_refused_then_truncated_on_request() {
    let tmpl = tempfile::tempdir().unwrap();
    write_batches(opts(tmpl.path(), WriterChoice::Auto), &[10, 10, 10]);
    let off = offset_of(5) + RECORD_HEADER_LEN + 2;
    let corrupt = |d: &Path| {
        let p = last_segment(d);
        let mut b = fs::read(&p).unwrap();
        b[off] ^= 0x01;
        fs::write(&p, &b).unwrap();
    };
    let d = tempfile::tempdir().unwrap();
    copy_dir(tmpl.path(), d.path());
    corrupt(d.path());
    let err = Journal::open(opts(d.path(), WriterChoice::Auto)).err().expect("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, JournalError::Corrupt { offset, .. } if offset as usize == offset_of(5)), "{msg}");
    assert!(msg.contains("00000000000000000001.wal"), "{msg}");
    assert!(msg.contains(&format!("byte offset {}", offset_of(5))), "{msg}");
    assert!(msg.contains("CRC"), "{msg}");
    // The reader refuses too.
    let rerr = JournalReader::open(d.path(), 1).unwrap().collect::<Result<Vec<_>>>().unwrap_err();
    assert!(rerr.to_string().contains(&format!("byte offset {}", offset_of(5))));
    // The files were not touched by the refused open.
    let mut t = fs::read(last_segment(tmpl.path())).unwrap();
    t[off] ^= 0x01;
    assert_eq!(fs::read(last_segment(d.path())).unwrap(), t);

    // Explicit truncate: cut at the bad record, keep the cut bytes aside.
    let mut o = opts(d.path(), WriterChoice::Auto);
    o.recovery = RecoveryMode::Truncate;
    let (mut j, rep) = Journal::open(o).unwrap();
    assert_eq!(rep.next_seq, 5);
    assert!(rep.truncations[0].corruption);
    assert_eq!(j.append(5000, &payload(5)).unwrap(), 5);
    j.close().unwrap();
    check_records(&read_all(d.path(), 1), 1, 5);
    let side = fs::read_dir(d.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".discarded-"))
        .count();
    assert_eq!(side, 1);
}

#[test]
fn corruption_in_non_last_segment_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path(), WriterChoice::Auto);
    o.segment_size = 16 << 10;
    let last = write_batches(o.clone(), &[200, 200]);
    let segs = list_segments(d.path()).unwrap();
    assert!(segs.len() >= 4);
    // Damage the *last* record of the second segment: the segment ends in "garbage" but it is
    // not the last one, so it cannot be a torn tail.
    let victim = &segs[1];
    let mut b = fs::read(&victim.path).unwrap();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut s = victim.first_seq;
    while s + 1 < segs[2].first_seq {
        pos += RECORD_HEADER_LEN + payload(s).len();
        s += 1;
    }
    b[pos + 9] ^= 0x80; // seq field of the last record
    fs::write(&victim.path, &b).unwrap();
    let err = Journal::open(o.clone()).err().expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains(&victim.path.file_name().unwrap().to_string_lossy().to_string()), "{msg}");
    assert!(msg.contains(&format!("byte offset {pos}")), "{msg}");

    // Truncate mode keeps everything before, renames later segments away.
    o.recovery = RecoveryMode::Truncate;
    let (j, rep) = Journal::open(o).unwrap();
    assert_eq!(rep.next_seq, s);
    assert_eq!(rep.segments, 2);
    assert_eq!(rep.removed_segments.len(), segs.len() - 2);
    drop(j);
    check_records(&read_all(d.path(), 1), 1, s - 1);
    assert!(s - 1 < last);
}

#[test]
fn sequence_gap_between_segments_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path(), WriterChoice::Auto);
    o.segment_size = 16 << 10;
    write_batches(o.clone(), &[400]);
    let segs = list_segments(d.path()).unwrap();
    fs::remove_file(&segs[2].path).unwrap();
    let err = Journal::open(o).err().expect("gap");
    assert!(matches!(err, JournalError::SequenceGap { expected, .. } if expected == segs[2].first_seq), "{err}");
}

#[test]
fn crash_between_segment_creation_and_first_write() {
    let d = tempfile::tempdir().unwrap();
    let o = opts(d.path(), WriterChoice::Auto);
    write_batches(o.clone(), &[5]);
    // An empty pre-allocated segment named 6 (created, never written).
    let f = fs::File::create(d.path().join(segment_file_name(6))).unwrap();
    f.set_len(1 << 20).unwrap();
    let (mut j, rep) = Journal::open(o).unwrap();
    assert_eq!(rep.next_seq, 6);
    assert_eq!(rep.removed_segments.len(), 1);
    j.append(6000, &payload(6)).unwrap();
    j.close().unwrap();
    check_records(&read_all(d.path(), 1), 1, 6);
}

#[test]
fn reopen_continues_with_next_sequence() {
    for w in writers() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path(), w);
        o.segment_size = 64 << 10;
        let mut last = 0;
        for round in 0..6 {
            let (mut j, rep) = Journal::open(o.clone()).unwrap();
            assert_eq!(rep.next_seq, last + 1, "round {round}");
            assert_eq!(j.next_seq(), last + 1);
            assert_eq!(j.durable_seq(), last);
            for _ in 0..(round * 37 + 1) {
                last += 1;
                assert_eq!(j.append(last * 1000, &payload(last)).unwrap(), last);
            }
            // Leave the last round's final batch unsubmitted: it must vanish, not corrupt.
            if round == 5 {
                j.commit().unwrap();
                j.append(0, b"never committed").unwrap();
                drop(j);
            } else {
                j.close().unwrap();
            }
        }
        check_records(&read_all(d.path(), 1), 1, last);
    }
}

#[test]
fn first_seq_option_and_seek() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path(), WriterChoice::Auto);
    o.segment_size = 16 << 10;
    let (mut j, _) = Journal::open(JournalOptions { first_seq: 1, ..o.clone() }).unwrap();
    for s in 1..=600u64 {
        j.append(s * 1000, &payload(s)).unwrap();
        if s % 50 == 0 {
            j.submit().unwrap();
        }
    }
    j.close().unwrap();
    let segs = list_segments(d.path()).unwrap();
    assert!(segs.len() > 3);
    let mut probes = vec![1, 2, 599, 600, 300];
    for s in &segs {
        probes.extend([s.first_seq, s.first_seq - 1, s.first_seq + 1]);
    }
    for from in probes {
        let from = from.max(1);
        check_records(&read_all(d.path(), from), from, 600);
    }
    assert!(read_all(d.path(), 601).is_empty());
    assert!(read_all(d.path(), 10_000).is_empty());

    // Retention: drop whole segments below seq 400; reading from before fails clearly.
    let removed = delete_segments_before(d.path(), 400).unwrap();
    let left = list_segments(d.path()).unwrap();
    assert_eq!(removed.len() + left.len(), segs.len());
    assert!(left[0].first_seq <= 400 && left.len() >= 2);
    assert!(matches!(JournalReader::open(d.path(), 1), Err(JournalError::SeqNotAvailable { requested: 1, .. })));
    check_records(&read_all(d.path(), 400), 400, 600);
    // Opening after retention still works.
    let (_, rep) = Journal::open(o.clone()).unwrap();
    assert_eq!(rep.next_seq, 601);

    // A journal that starts at an arbitrary sequence.
    let d2 = tempfile::tempdir().unwrap();
    let (mut j, rep) =
        Journal::open(JournalOptions { first_seq: 1_000_000, ..opts(d2.path(), WriterChoice::Auto) }).unwrap();
    assert_eq!(rep.next_seq, 1_000_000);
    assert_eq!(j.append(1, b"x").unwrap(), 1_000_000);
    j.close().unwrap();
    assert_eq!(list_segments(d2.path()).unwrap()[0].first_seq, 1_000_000);
}

#[test]
fn snapshots_atomic_latest_valid() {
    let d = tempfile::tempdir().unwrap();
    assert!(load_latest_snapshot(d.path()).unwrap().is_none());
    write_snapshot(d.path(), 100, b"state at 100").unwrap();
    let p200 = write_snapshot(d.path(), 200, &vec![7u8; 100_000]).unwrap();
    let s = load_latest_snapshot(d.path()).unwrap().unwrap();
    assert_eq!((s.seq, s.data.len()), (200, 100_000));
    // Corrupt the newest: the older one is used.
    let mut b = fs::read(&p200).unwrap();
    b[500] ^= 1;
    fs::write(&p200, &b).unwrap();
    let s = load_latest_snapshot(d.path()).unwrap().unwrap();
    assert_eq!((s.seq, &s.data[..]), (100, &b"state at 100"[..]));
    assert!(load_snapshot(&p200).unwrap_err().to_string().contains("CRC"));
    // A truncated one too.
    let p300 = write_snapshot(d.path(), 300, b"three hundred").unwrap();
    let b = fs::read(&p300).unwrap();
    fs::write(&p300, &b[..b.len() - 1]).unwrap();
    assert_eq!(load_latest_snapshot(d.path()).unwrap().unwrap().seq, 100);
    // An interrupted write (temp file only) is invisible.
    let mut w = SnapshotWriter::create(d.path(), 400).unwrap();
    std::io::Write::write_all(&mut w, b"partial").unwrap();
    drop(w);
    assert_eq!(list_snapshots(d.path()).unwrap().len(), 3);
    write_snapshot(d.path(), 500, b"five").unwrap();
    assert_eq!(load_latest_snapshot(d.path()).unwrap().unwrap().seq, 500);
    assert!(!fs::read_dir(d.path()).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
    assert_eq!(prune_snapshots(d.path(), 1).unwrap().len(), 3);
    assert_eq!(list_snapshots(d.path()).unwrap().len(), 1);
}

// -----------------------------------------------------------------------------------------------
// Property tests

struct Template {
    _dir: tempfile::TempDir,
    path: PathBuf,
    last: u64,
    /// Offset of the first record of the last batch.
    last_batch_at: usize,
    end: usize,
}

fn template() -> &'static Template {
    static T: std::sync::OnceLock<Template> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().to_path_buf();
        let last = write_batches(opts(&path, WriterChoice::Portable), &[20, 30, 25]);
        Template { _dir: d, path, last, last_batch_at: offset_of(51), end: offset_of(last + 1) }
    })
}

/// Number of records wholly before byte `pos`.
fn records_before(pos: usize) -> u64 {
    let mut s = 1;
    while s <= 1000 && offset_of(s + 1) <= pos {
        s += 1;
    }
    s - 1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// A write torn anywhere in the last batch, with random garbage after the cut and possibly
    /// the rest of the batch still present, recovers exactly the records before the damage and
    /// continues from there.
    #[test]
    fn torn_tail_recovers_prefix(
        cut_frac in 0.0f64..1.0,
        keep_rest in any::<bool>(),
        flips in proptest::collection::vec((0usize..4096, 1u8..=255), 0..8),
    ) {
        let t = template();
        let d = tempfile::tempdir().unwrap();
        copy_dir(&t.path, d.path());
        let p = last_segment(d.path());
        let mut b = fs::read(&p).unwrap();
        let cut = t.last_batch_at + ((t.end - t.last_batch_at) as f64 * cut_frac) as usize;
        if !keep_rest {
            b[cut..].fill(0);
        }
        let mut first_damage = usize::MAX;
        for (off, x) in &flips {
            let at = cut + off;
            b[at] ^= x;
            first_damage = first_damage.min(at);
        }
        let damage = if keep_rest { first_damage } else { cut.min(first_damage) };
        fs::write(&p, &b).unwrap();
        let survive = records_before(damage).min(t.last);
        prop_assert!(survive >= 50);

        let (mut j, rep) = Journal::open(opts(d.path(), WriterChoice::Auto)).unwrap();
        prop_assert_eq!(rep.next_seq, survive + 1);
        let extra = 5;
        for s in survive + 1..=survive + extra {
            prop_assert_eq!(j.append(s * 1000, &payload(s)).unwrap(), s);
        }
        j.close().unwrap();
        check_records(&read_all(d.path(), 1), 1, survive + extra);
    }

    /// The fuzz target's check on arbitrary bytes.
    #[test]
    fn decode_check_arbitrary(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        format::check_decode_records(&data);
    }

    /// The fuzz target's check on real segments with random damage.
    #[test]
    fn decode_check_mutated_segment(
        n in 0usize..40,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = format::encode_segment_header(1).to_vec();
        for s in 1..=n as u64 {
            format::encode_record(&mut data, s, s, (s % 5) as u32, &payload(s));
        }
        data.resize(data.len() + 200, 0);
        for (i, x) in flips {
            let at = i.index(data.len());
            data[at] ^= x;
        }
        let len = data.len();
        data.truncate(cut.index(len + 1).max(len / 2));
        format::check_decode_records(&data);
    }
}
