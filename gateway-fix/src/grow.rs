//! Growing a store's body file ahead of its writer, off the session's thread.
//!
//! Growing the file is file-system work: extending it, allocating its
//! blocks (fallocate, which may read block bitmaps from disk: traced in D
//! state on this VM's shared disk) and faulting the new pages in. Done by
//! the writer it was a call of 1-34 ms on the session's thread once per MiB
//! (every ~4,000 messages; `examples/store_pace.rs`). So one process-wide
//! thread, the *grower*, keeps every body file in use (from its first store
//! or reset on) grown, allocated and its pages faulted in [`AHEAD`] bytes
//! past the writer's end; the writer only stores into memory below
//! [`BodyFile::ready`]. When the writer
//! catches up anyway (a record larger than the lead, a grower stuck behind
//! another file or the disk), it grows the file itself, as before, and
//! counts that ([`crate::store::GrowthStats`]).
//!
//! Growth changes the file's length, so it is serialised by one mutex per
//! file, held for one step ([`STEP`]) at a time: a writer that catches up
//! waits at most for the step in progress. Crash safety is unchanged: the
//! tail grown ahead reads as zeros, which the next open cuts.
//!
//! **Writeback behind the writer.** Stores into the mapping dirty the page
//! cache; left alone, the kernel writes a file's dirty pages back only when
//! they are 30 s old (`dirty_expire_centisecs`) or the machine's dirty
//! memory passes its background threshold, and then all at once: ~170 MB
//! of one message file at 20k reports/s, written back in a burst that
//! stalled the session thread (`examples/store_pace.rs`). So each time the
//! grower is asked to grow a file it also hands the file to a second
//! process-wide thread, *the flusher* (`fix-store-flush`), which starts
//! writeback (`sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts it, does not
//! wait for it) of the whole pages the writer has passed since the last
//! time. Those pages are final (records are only appended; a reset starts a
//! new file), so writing them back early never write-protects a page the
//! writer still stores into. A file's dirty pages stay at about the lead
//! grown ahead plus one step. The flusher is a thread of its own, so a slow
//! or congested disk (a full request queue blocks `sync_file_range`) delays
//! neither growth nor the session. Durability is unchanged (this only
//! starts writeback earlier; `FsyncPolicy::Always` still syncs), and so is
//! crash safety. `CASTLE_FIX_STORE_WRITEBACK=0` turns it off (the baseline
//! for comparisons).

use crate::mapped::Mapping;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// The page size the store grows, faults in and writes back by.
pub(crate) const PAGE: u64 = 4096;
/// How far ahead of the writer's end the grower keeps the file ready.
pub(crate) const AHEAD: u64 = 4 << 20;
/// One growth step: the file grows by at least this much at a time.
pub(crate) const STEP: u64 = 1 << 20;
/// Files waiting for the grower (a full queue only means their writers may
/// have to grow themselves).
const QUEUE: usize = 4096;

/// The state only changed under the lock.
#[derive(Debug)]
pub(crate) struct GrowState {
    /// The file's length on disk.
    pub(crate) len: u64,
    /// The writer's mapping of the file (address, length), for prefaulting
    /// grown pages. Replaced (under this lock) when the writer remaps.
    pub(crate) map_addr: usize,
    pub(crate) map_len: usize,
    /// The store is closed (or closing): grow no more.
    pub(crate) closed: bool,
}

/// A body file shared by its store (the writer) and the grower.
#[derive(Debug)]
pub(crate) struct BodyFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    state: Mutex<GrowState>,
    /// Bytes from the start of the file that are grown, allocated and
    /// mapped: the writer may store below this without a system call.
    /// Only raised while growing, set back only by a reset (under the lock).
    ready: AtomicU64,
    /// Length the grower is asked to reach.
    want: AtomicU64,
    /// In the grower's queue (not sent twice).
    queued: AtomicBool,
    /// Growth steps done by the grower.
    pub(crate) grower_steps: AtomicU64,
    /// End of the writer's last record when it last asked for growth: the
    /// whole pages below it are final (see the module documentation).
    passed: AtomicU64,
    /// Writeback started (by the flusher) for `[0, flushed)`; page aligned.
    flushed: AtomicU64,
    /// In the flusher's queue (not sent twice).
    flush_queued: AtomicBool,
    /// Whether the flusher writes this file back behind its writer.
    write_back: bool,
}

impl BodyFile {
    pub(crate) fn new(file: File, path: &Path, len: u64, map_addr: usize, map_len: usize) -> BodyFile {
        BodyFile {
            file,
            path: path.to_path_buf(),
            state: Mutex::new(GrowState { len, map_addr, map_len, closed: false }),
            ready: AtomicU64::new(len),
            want: AtomicU64::new(len),
            queued: AtomicBool::new(false),
            grower_steps: AtomicU64::new(0),
            // What is there at open was written by an earlier run: the
            // kernel writes it back, the flusher starts from its end.
            passed: AtomicU64::new(len),
            flushed: AtomicU64::new(len & !(PAGE - 1)),
            flush_queued: AtomicBool::new(false),
            write_back: write_back_enabled(),
        }
    }

    /// Offset below which writeback of the file has been started.
    pub(crate) fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// What [`BodyFile::set_passed`] last published.
    #[cfg(test)]
    pub(crate) fn passed(&self) -> u64 {
        self.passed.load(Ordering::Acquire)
    }

    /// The writer's end (its records are final below it), published before
    /// it asks the grower for more: the flusher writes back the whole pages
    /// below it.
    pub(crate) fn set_passed(&self, end: u64) {
        // SeqCst like `want` (see `ask`): a grower that takes the file's
        // request after this sees this end.
        self.passed.fetch_max(end, Ordering::SeqCst);
    }

    pub(crate) fn ready(&self) -> u64 {
        self.ready.load(Ordering::Acquire)
    }

    /// The growth lock. Poisoning cannot leave the state inconsistent (it is
    /// plain numbers, each update is complete before the next system call),
    /// so a poisoned lock is taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, GrowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Grow the file (lock held) to at least `to` bytes: length, blocks,
    /// pages. Publishes the new ready length.
    pub(crate) fn grow_locked(&self, st: &mut GrowState, to: u64) -> std::io::Result<()> {
        if to <= st.len {
            return Ok(());
        }
        let from = st.len;
        // fallocate (mode 0) sets the new length and allocates the blocks in
        // one call, under the inode lock only. ftruncate would also take the
        // mapping's invalidate lock for writing (ext4_setattr), and the
        // writer's page faults take that lock for reading: a writer storing
        // into a page that writeback had just cleaned (write-protected) would
        // wait for the whole growth, journal waits included (traced: a
        // writer's fault in down_read < ext4_page_mkwrite). ftruncate only
        // where fallocate is not supported.
        // SAFETY: fallocate on a descriptor we own.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, from as i64, (to - from) as i64) };
        if r != 0 {
            self.file.set_len(to)?;
        }
        st.len = to;
        prefault(st, from, to);
        self.ready.store(to, Ordering::Release);
        Ok(())
    }

    /// Ask the grower to make the file `want` bytes long. False when there
    /// is no grower (it could not be started, or its queue is full).
    ///
    /// SeqCst on `want` and `queued`, here and in the grower: either this
    /// call sees `queued` cleared and queues the file again, or the grower,
    /// which clears `queued` before reading `want`, sees the new `want`.
    pub(crate) fn ask(self: &Arc<Self>, want: u64) -> bool {
        self.want.fetch_max(want, Ordering::SeqCst);
        if self.queued.swap(true, Ordering::SeqCst) {
            return true;
        }
        match grower() {
            Some(tx) => match tx.try_send(Job::Grow(self.clone())) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.queued.store(false, Ordering::Release);
                    false
                }
            },
            None => {
                self.queued.store(false, Ordering::Release);
                false
            }
        }
    }

    /// The grower's work for this file: step by step up to `want`, the
    /// lock released between steps.
    fn grow_ahead(&self) {
        loop {
            let want = self.want.load(Ordering::SeqCst);
            let mut st = self.lock();
            if st.closed || st.len >= want {
                return;
            }
            let to = (st.len + STEP).next_multiple_of(PAGE);
            match self.grow_locked(&mut st, to) {
                Ok(()) => {
                    self.grower_steps.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // The writer will grow itself and report the error if it persists.
                    tracing::warn!(path = %self.path.display(), error = %e, "growing a FIX store file ahead failed");
                    return;
                }
            }
        }
    }
}

/// Fault the pages of the grown range `[from, to)` in now, in one go:
/// otherwise the first store to each page of the grown tail faults on the
/// writer's thread (ext4's page_mkwrite, a journal handle per page).
///
/// The pages are faulted in by storing a zero into each (they are zeros
/// already: beyond the last record), not with madvise(MADV_POPULATE_WRITE),
/// which holds the process's mmap_lock for the whole range: a writer thread
/// growing its heap (brk, mprotect: mmap_lock for writing) then waited for
/// it, block I/O included (traced: 444 such waits in one 40 s store_pace
/// run). A page fault takes only its mapping's own lock (per-VMA locks).
/// The page holding `from` is skipped: the writer may be storing into it
/// (it lies below the published ready length); it is faulted in already.
///
/// Storing makes the zero pages ahead dirty page cache (the lead, 4 MiB per
/// file in use). Faulting them in by reading instead keeps them clean and
/// mapped read-only, so the writer's first store into each page is a
/// write-protect fault on the session thread: tried in session 9
/// (`store_pace 40 20000`, 2 runs each): the file's dirty pages 1.1 MB
/// instead of 5-6 MB, but 76 minor faults of the writer per 1,000 records
/// instead of 14, call p99 7.8 us instead of 4.0-4.4 us and one 22 ms call.
/// So the lead stays dirty. (The 14 are not this file: the same with the
/// writeback off; they are the heap growing under the in-memory index.)
fn prefault(st: &GrowState, from: u64, to: u64) {
    let first = from.next_multiple_of(PAGE);
    let end = to.min(st.map_len as u64);
    let mut page = first;
    while page < end {
        // SAFETY: the byte lies inside the current mapping (checked against
        // map_len) and inside the file (just grown to `to`), so the store
        // cannot fault with SIGBUS; the mapping cannot be unmapped meanwhile
        // (replaced or dropped only under the growth lock, which the caller
        // holds); and no one else touches it: it is at or past the ready
        // length published so far, below which alone the writer stores. It
        // is zero (the tail past the last record), so storing zero changes
        // nothing a reader of the file could see.
        unsafe { std::ptr::write_volatile((st.map_addr + page as usize) as *mut u8, 0) };
        page += PAGE;
    }
}

/// Close a body file replaced by a new one (a reset) and unmap it, on the
/// grower's thread: closing the last descriptor of the unlinked file frees
/// its blocks, and on a file system mounted with `discard` (as this VM's)
/// that waits for the disk (traced: the gateway thread asleep in
/// `blkdev_issue_discard < ext4_truncate` when a Logon with 141=Y reset a
/// store). Done here when there is no grower.
pub(crate) fn retire(file: Arc<BodyFile>, map: Mapping) {
    file.lock().closed = true;
    if let Some(tx) = grower() {
        // A full queue gives the job back: then it is done here.
        if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) = tx.try_send(Job::Retire(file, map)) {
            drop(job);
        }
    }
}

/// The grower thread's work.
enum Job {
    /// Grow a file up to what its writer asked for.
    Grow(Arc<BodyFile>),
    /// Drop these (close and unmap a replaced file).
    Retire(Arc<BodyFile>, Mapping),
}

/// The process-wide grower thread's queue, started on first use; None if
/// the thread could not be started (writers then grow their files themselves).
fn grower() -> Option<&'static SyncSender<Job>> {
    static GROWER: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    GROWER
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(QUEUE);
            let spawned = std::thread::Builder::new().name("fix-store-grow".into()).spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Grow(file) => {
                            // Cleared first: a request arriving during the work queues the file again.
                            file.queued.store(false, Ordering::SeqCst);
                            file.grow_ahead();
                            request_write_back(&file);
                        }
                        Job::Retire(file, map) => drop((map, file)),
                    }
                }
            });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "no FIX store grower thread; sessions grow their files themselves");
                    None
                }
            }
        })
        .as_ref()
}

/// Starts the grower and (unless turned off) the flusher now instead of on
/// first use: threads inherit the CPU affinity and scheduling policy of the
/// thread that creates them, and these must not inherit a placed FIX
/// worker's (placement.rs calls this before it starts its runtime).
pub(crate) fn start_threads() {
    grower();
    if write_back_enabled() {
        flusher();
    }
}

/// Writeback is started once at least this much is final behind the writer
/// and not yet written back (fewer, larger requests; the writer asks the
/// grower once per [`STEP`] anyway).
const FLUSH_MIN: u64 = 256 << 10;

/// `CASTLE_FIX_STORE_WRITEBACK=0` (read once): no writeback behind the
/// writer, the kernel's own writeback only (the behaviour before session 9).
pub(crate) fn write_back_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("CASTLE_FIX_STORE_WRITEBACK").map(|v| v.trim() != "0").unwrap_or(true))
}

/// Hand `file` to the flusher if enough of it is final and not yet written
/// back. Called on the grower's thread; never blocks (a full queue only
/// postpones the writeback to the next request).
fn request_write_back(file: &Arc<BodyFile>) {
    if !file.write_back {
        return;
    }
    let passed = file.passed.load(Ordering::SeqCst) & !(PAGE - 1);
    if passed < file.flushed() + FLUSH_MIN || file.flush_queued.swap(true, Ordering::SeqCst) {
        return;
    }
    match flusher() {
        Some(tx) => {
            if tx.try_send(file.clone()).is_err() {
                file.flush_queued.store(false, Ordering::Release);
            }
        }
        None => file.flush_queued.store(false, Ordering::Release),
    }
}

/// The flusher's work for one file: start writeback of the whole pages the
/// writer has passed since last time. Not under the growth lock: the call
/// may block on a congested disk.
fn write_back(file: &BodyFile) {
    let from = file.flushed();
    let to = file.passed.load(Ordering::SeqCst) & !(PAGE - 1);
    if to <= from || file.lock().closed {
        return;
    }
    // SAFETY: sync_file_range on a descriptor we own (kept open by the Arc);
    // a range past the end of a file truncated meanwhile is ignored.
    let r = unsafe {
        libc::sync_file_range(file.file.as_raw_fd(), from as i64, (to - from) as i64, libc::SYNC_FILE_RANGE_WRITE)
    };
    if r != 0 {
        // Nothing is lost: the kernel's own writeback still applies.
        let e = std::io::Error::last_os_error();
        tracing::debug!(path = %file.path.display(), error = %e, "starting writeback of a FIX store file failed");
    }
    file.flushed.store(to, Ordering::Release);
    let (lock, cv) = flushed_signal();
    drop(lock.lock().unwrap_or_else(|p| p.into_inner()));
    cv.notify_all();
}

/// Signalled after every writeback the flusher starts (for
/// [`wait_flushed`]).
fn flushed_signal() -> &'static (Mutex<()>, Condvar) {
    static SIGNAL: OnceLock<(Mutex<()>, Condvar)> = OnceLock::new();
    SIGNAL.get_or_init(|| (Mutex::new(()), Condvar::new()))
}

/// Wait until writeback of `file` was started up to at least `offset`, at
/// most `timeout`; whether it was.
#[cfg(test)]
pub(crate) fn wait_flushed(file: &BodyFile, offset: u64, timeout: std::time::Duration) -> bool {
    use std::time::Instant;
    let deadline = Instant::now() + timeout;
    let (lock, cv) = flushed_signal();
    let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    while file.flushed() < offset {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        guard = cv.wait_timeout(guard, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
    }
    true
}

/// The process-wide flusher thread's queue, started on first use; None if
/// the thread could not be started (the kernel's writeback then applies).
fn flusher() -> Option<&'static SyncSender<Arc<BodyFile>>> {
    static FLUSHER: OnceLock<Option<SyncSender<Arc<BodyFile>>>> = OnceLock::new();
    FLUSHER
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Arc<BodyFile>>(QUEUE);
            let spawned = std::thread::Builder::new().name("fix-store-flush".into()).spawn(move || {
                while let Ok(file) = rx.recv() {
                    // Cleared first: a request arriving during the work queues the file again.
                    file.flush_queued.store(false, Ordering::SeqCst);
                    write_back(&file);
                }
            });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "no FIX store flusher thread; the kernel writes the files back alone");
                    None
                }
            }
        })
        .as_ref()
}
