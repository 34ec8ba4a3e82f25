//! The order path allocates nothing once warm: a counting global allocator
//! watches the engine apply a realistic mix (place, cross, cancel, replace,
//! IOC) on a deep book. This file holds one test so no other thread allocates
//! while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use castle_engine::workload::{Workload, WorkloadConfig};
use castle_engine::{EventKind, FastEngine};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn order_path_does_not_allocate_after_warm_up() {
    let cfg = WorkloadConfig { book_depth: 5_000, ..WorkloadConfig::default() };
    let mut w = Workload::new(cfg);
    let mut cmds = w.setup();
    cmds.extend(w.fill_book());
    let warm = cmds.len() + 20_000;
    while cmds.len() < warm + 100_000 {
        cmds.push(w.next_command());
    }
    let mut engine = FastEngine::new(Workload::limits(&cfg));
    let mut out = Vec::with_capacity(4_096);
    for (i, c) in cmds[..warm].iter().enumerate() {
        out.clear();
        engine.apply(i as u64 + 1, c, &mut out);
    }
    let mut trades = 0u64;
    let mut replaces = 0u64;
    COUNTING.store(true, Ordering::SeqCst);
    for (i, c) in cmds[warm..].iter().enumerate() {
        out.clear();
        engine.apply((warm + i) as u64 + 1, c, &mut out);
        for e in &out {
            match e.kind {
                EventKind::Trade { .. } => trades += 1,
                EventKind::OrderReplaced { .. } => replaces += 1,
                _ => {}
            }
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    let n = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(
        trades > 1_000 && replaces > 50_000,
        "the mix must match and replace: {trades} trades, {replaces} replaces"
    );
    assert_eq!(n, 0, "{n} allocations on the order path");
}
