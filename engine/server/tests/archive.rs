//! Journal segments older than the oldest retained snapshot are moved to `JOURNAL/archive`
//! (never deleted); recovery does not need them, and replays from before the journal's oldest
//! segment (`castle replay`, a subscriber resuming from 0) read them from the archive.

use std::time::{Duration, Instant};

use castle_engine::Command;
use castle_engine_server::state::archive_dir;
use castle_engine_server::{replay_dir, Config, DurableLink};
use castle_journal::list_segments;
use castle_link::{EngineLink, EngineRequest, LinkError, Origin};

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir, "");
    c.journal_segment_size = 64 << 10; // many small segments
    c.snapshot_every = 2_000;
    c.snapshots_kept = 2;
    c
}

#[test]
fn old_segments_are_archived_and_still_replayed() {
    const N: u64 = 20_000;
    let tmp = tempfile::tempdir().expect("tmp");
    let journal = tmp.path().join("journal");
    let link = DurableLink::start(config(&journal)).expect("start");
    for i in 0..N {
        let req = EngineRequest {
            origin: Origin { gateway: 3, request: i + 1 },
            command: Command::Deposit { account: 1 + (i % 20) as u32, asset: 1, amount: 1 },
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match link.submit(req) {
                Ok(()) => break,
                Err(LinkError::Busy) if Instant::now() < deadline => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }
    let st = link.status().expect("status");
    assert_eq!(st.seq, N);
    // Snapshots are written by their own thread: wait for the archive to appear.
    let deadline = Instant::now() + Duration::from_secs(60);
    while list_segments(&archive_dir(&journal)).expect("list").len() < 2 {
        assert!(Instant::now() < deadline, "no segment archived after {N} commands with snapshots every 2,000");
        std::thread::sleep(Duration::from_millis(20));
    }
    let archived = list_segments(&archive_dir(&journal)).expect("list");
    let live = list_segments(&journal).expect("list");
    assert_eq!(archived[0].first_seq, 1, "the oldest segment went first");
    assert!(live[0].first_seq > 1, "and is no longer in the journal directory");
    assert!(archived.iter().all(|a| live.iter().all(|l| l.first_seq != a.first_seq)), "moved, not copied");
    let oldest_snapshot = castle_journal::list_snapshots(castle_engine_server::state::snapshot_dir(&journal))
        .expect("snapshots")
        .first()
        .map(|s| s.seq)
        .expect("a snapshot");
    assert!(live[0].first_seq <= oldest_snapshot + 1, "recovery still has every record after the oldest snapshot");

    // A subscriber resuming from 0 reads the archive, then the journal, without a gap.
    let mut rx = link.subscribe_after(0, 1 << 12).expect("subscribe");
    for seq in 1..=N {
        let b = rx.blocking_recv().expect("stream ended early");
        assert_eq!(b.seq, seq);
        assert_eq!(b.origin, Some(Origin { gateway: 3, request: seq }));
    }
    drop(rx);
    drop(link);

    // `castle replay` (from scratch: archive + journal) and a restart (snapshot + journal) agree.
    let replayed = replay_dir(&journal, Config::new(&journal, "").limits, &mut |_, _| {}).expect("replay");
    assert_eq!((replayed.seq, replayed.hash), (st.seq, st.hash));
    let link = DurableLink::start(config(&journal)).expect("restart");
    assert_eq!((link.recovered().seq, link.recovered().hash), (st.seq, st.hash));
}
