//! The two durable writers behind one trait.
//!
//! A writer receives a batch as an ordered list of [`WriteOp`]s (one per segment the batch
//! touches). For each op in order it writes the bytes at the offset and then `fdatasync`s the file;
//! op *n + 1* is not started before op *n*'s sync has completed, so a batch that spans two
//! segments never leaves later data durable behind a torn earlier part. Exactly one batch is in
//! flight at a time; [`BatchWriter::submit`] starts it and [`BatchWriter::wait`] waits for it, so
//! the caller can fill its next buffer in between.
//!
//! * [`UringWriter`]: io_uring with the journal's two buffers registered
//!   (`IORING_OP_WRITE_FIXED`), each write linked (`IOSQE_IO_LINK`) to an `IORING_OP_FSYNC` with
//!   `IORING_FSYNC_DATASYNC`, the whole chain submitted with one syscall.
//! * [`PortableWriter`]: `pwrite` + `fdatasync` on a dedicated I/O thread.

use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring, Probe};

use crate::error::{JournalError, Result};

/// Which writer implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriterKind {
    IoUring,
    Portable,
}

impl std::fmt::Display for WriterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriterKind::IoUring => "io_uring",
            WriterKind::Portable => "portable (pwrite + fdatasync)",
        })
    }
}

/// One write of a batch: `len` bytes from `ptr` at `offset` of `file`, then fdatasync.
#[derive(Debug)]
pub struct WriteOp {
    pub(crate) file: Arc<File>,
    pub(crate) path: Arc<PathBuf>,
    pub(crate) offset: u64,
    pub(crate) ptr: *const u8,
    pub(crate) len: usize,
    /// Index of the registered buffer `ptr` lies in.
    pub(crate) buf_index: u16,
}

// SAFETY: the pointer refers to a journal buffer that the `BatchWriter::submit` contract keeps
// alive and unmodified until the batch completes.
unsafe impl Send for WriteOp {}

impl WriteOp {
    /// # Safety
    /// `ptr..ptr+len` must be valid for reads for as long as the op is alive.
    unsafe fn bytes(&self) -> &[u8] {
        std::slice::from_raw_parts(self.ptr, self.len)
    }
}

/// A durable batch writer (see the module docs).
pub trait BatchWriter: Send {
    fn kind(&self) -> WriterKind;

    /// Start writing and syncing `ops`, in order. Must not be called while a batch is in flight.
    ///
    /// # Safety
    /// Every op's memory must stay valid and unmodified until [`wait`](Self::wait) has returned
    /// (either way) or the writer has been dropped.
    unsafe fn submit(&mut self, ops: Vec<WriteOp>) -> Result<()>;

    /// Block until the batch in flight (if any) is durable.
    fn wait(&mut self) -> Result<()>;

    /// Non-blocking: `Ok(true)` when nothing is in flight any more (the batch, if any, is durable).
    fn try_wait(&mut self) -> Result<bool>;

    /// True when a batch never completed: the kernel may still read the batch buffers, which
    /// must then be leaked rather than freed.
    fn wedged(&self) -> bool {
        false
    }
}

fn sync_ops(ops: &[WriteOp]) -> Result<()> {
    for op in ops {
        // SAFETY: submit's contract.
        let bytes = unsafe { op.bytes() };
        op.file.write_all_at(bytes, op.offset).map_err(|e| JournalError::io("pwrite", op.path.as_path(), e))?;
        op.file.sync_data().map_err(|e| JournalError::io("fdatasync", op.path.as_path(), e))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Portable writer

type Job = Vec<WriteOp>;

/// pwrite + fdatasync on a background thread.
pub struct PortableWriter {
    tx: Option<SyncSender<Job>>,
    done: Receiver<Result<()>>,
    thread: Option<JoinHandle<()>>,
    in_flight: bool,
}

impl PortableWriter {
    pub fn new() -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(1);
        let (dtx, done) = mpsc::sync_channel::<Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("journal-io".into())
            .spawn(move || {
                while let Ok(ops) = rx.recv() {
                    let r = sync_ops(&ops);
                    drop(ops);
                    if dtx.send(r).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| JournalError::io("spawn journal-io thread", "", e))?;
        Ok(PortableWriter { tx: Some(tx), done, thread: Some(thread), in_flight: false })
    }

    fn thread_gone() -> JournalError {
        JournalError::io("journal-io thread", "", io::Error::other("I/O thread exited"))
    }
}

impl BatchWriter for PortableWriter {
    fn kind(&self) -> WriterKind {
        WriterKind::Portable
    }

    unsafe fn submit(&mut self, ops: Vec<WriteOp>) -> Result<()> {
        assert!(!self.in_flight, "submit while a batch is in flight");
        let tx = self.tx.as_ref().ok_or_else(Self::thread_gone)?;
        tx.send(ops).map_err(|_| Self::thread_gone())?;
        self.in_flight = true;
        Ok(())
    }

    fn wait(&mut self) -> Result<()> {
        if !self.in_flight {
            return Ok(());
        }
        self.in_flight = false;
        self.done.recv().map_err(|_| Self::thread_gone())?
    }

    fn try_wait(&mut self) -> Result<bool> {
        if !self.in_flight {
            return Ok(true);
        }
        match self.done.try_recv() {
            Ok(r) => {
                self.in_flight = false;
                r.map(|_| true)
            }
            Err(mpsc::TryRecvError::Empty) => Ok(false),
            Err(mpsc::TryRecvError::Disconnected) => {
                self.in_flight = false;
                Err(Self::thread_gone())
            }
        }
    }
}

impl Drop for PortableWriter {
    fn drop(&mut self) {
        // The thread may still be reading the caller's buffer: finish the batch first.
        let _ = self.wait();
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// io_uring writer

const RING_ENTRIES: u32 = 64;
/// A batch with no completion for this long is cancelled and redone synchronously.
const STALL_AFTER: Duration = Duration::from_secs(2);
/// ... and a cancelled batch still incomplete after this long wedges the writer (fail-stop).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// A batch may touch at most this many segments (2 SQEs each).
pub(crate) const MAX_OPS_PER_BATCH: usize = 16;

/// io_uring writer with registered buffers and linked write + fdatasync chains.
pub struct UringWriter {
    /// Dropped by hand: a wedged writer leaks it (see `Drop`).
    ring: ManuallyDrop<IoUring>,
    /// Buffers registered (WRITE_FIXED) or not (WRITE).
    fixed: bool,
    ops: Vec<WriteOp>,
    /// CQEs still expected for the batch in flight.
    outstanding: usize,
    /// First failure seen in the batch's CQEs.
    failure: Option<(usize, i32)>,
    /// A write was short or the chain was cancelled: redo with pwrite + fdatasync.
    redo: bool,
    /// A batch never completed, even after cancellation: the kernel may still read the
    /// buffers, so neither the ring nor the buffers may ever be freed (see [`BatchWriter::wedged`]).
    wedged: bool,
    /// When the batch in flight was submitted or last completed a request.
    progress_at: Instant,
    /// The batch in flight has been cancelled once.
    cancelled: bool,
}

impl UringWriter {
    /// Create a ring and register `bufs` (address, length) as fixed buffers 0, 1, ...
    ///
    /// # Safety
    /// The buffers must stay allocated (at the same address) for the life of the writer.
    pub(crate) unsafe fn new(bufs: &[(*const u8, usize)]) -> io::Result<Self> {
        let ring = IoUring::builder().build(RING_ENTRIES)?;
        if !ring.params().is_feature_ext_arg() {
            // Waits are bounded by a timeout (enter_and_wait), which needs IORING_FEAT_EXT_ARG (5.11).
            return Err(io::Error::new(io::ErrorKind::Unsupported, "kernel lacks IORING_FEAT_EXT_ARG"));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::WriteFixed::CODE) || !probe.is_supported(opcode::Fsync::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel lacks IORING_OP_WRITE_FIXED or IORING_OP_FSYNC",
            ));
        }
        let iovecs: Vec<libc::iovec> =
            bufs.iter().map(|&(p, l)| libc::iovec { iov_base: p as *mut libc::c_void, iov_len: l }).collect();
        // Registration pins the buffers and counts against RLIMIT_MEMLOCK; without it the
        // writer still uses io_uring, with plain IORING_OP_WRITE.
        let fixed = match ring.submitter().register_buffers(&iovecs) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "io_uring buffer registration refused (RLIMIT_MEMLOCK?); using unregistered buffers");
                if !probe.is_supported(opcode::Write::CODE) {
                    return Err(e);
                }
                false
            }
        };
        Ok(UringWriter {
            ring: ManuallyDrop::new(ring),
            fixed,
            ops: Vec::new(),
            outstanding: 0,
            failure: None,
            redo: false,
            wedged: false,
            progress_at: Instant::now(),
            cancelled: false,
        })
    }

    /// Submits anything queued and waits for a completion, for at most 100 ms. The wait is
    /// bounded because a test run once stayed asleep in io_cqring_wait with the batch's
    /// completions never arriving and no io-wq worker left: entering the kernel again runs
    /// pending task work and re-reads the completion queue, so a missed wake-up costs at
    /// most one timeout instead of a hang. The caller loops until every CQE is reaped.
    fn enter_and_wait(&mut self) -> io::Result<()> {
        let ts = types::Timespec::new().nsec(100_000_000);
        let args = types::SubmitArgs::new().timespec(&ts);
        self.ring.submitter().submit_with_args(1, &args).map(|_| ())
    }

    /// Reaps until every CQE of the batch in flight has arrived. A batch with no completion
    /// for [`STALL_AFTER`] is cancelled (`IORING_REGISTER_SYNC_CANCEL`, any request): a
    /// request that has not started comes back `-ECANCELED` and [`finish`](Self::finish)
    /// redoes the batch with pwrite + fdatasync; one already running (a write in the block
    /// layer, an fdatasync in an io-wq worker) cannot be interrupted and is waited for. Why:
    /// on this project's CI kernel a linked chain was seen never to complete, with no io-wq
    /// worker left to run it; durability must not depend on that.
    fn wait_all(&mut self) -> io::Result<()> {
        while self.outstanding > 0 {
            self.check_stall()?;
            match self.enter_and_wait() {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::ETIME)) => {}
                Err(e) => return Err(e),
            }
            self.reap();
        }
        Ok(())
    }

    /// The stall clock belongs to the batch (it starts at submit and restarts at each
    /// completion), so a caller that only polls (`try_wait`) under load gets the same
    /// cancellation and fail-stop as one that blocks in `wait`.
    fn check_stall(&mut self) -> io::Result<()> {
        if self.wedged {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "io_uring writer wedged by an earlier stalled batch"));
        }
        if self.outstanding == 0 {
            return Ok(());
        }
        let idle = self.progress_at.elapsed();
        if self.cancelled && idle >= GIVE_UP_AFTER {
            // Fail-stop: the caller poisons the journal; acknowledging nothing more is
            // better than a process that hangs with orders in flight.
            self.wedged = true;
            tracing::error!(
                outstanding = self.outstanding,
                "io_uring batch never completed, even after cancellation; journal writer wedged"
            );
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("io_uring batch: {} completions missing after cancellation", self.outstanding),
            ));
        }
        if !self.cancelled && idle >= STALL_AFTER {
            self.cancelled = true;
            let sq_unconsumed = self.ring.submission().len();
            let cq_overflow = self.ring.completion().overflow();
            let r = self
                .ring
                .submitter()
                .register_sync_cancel(Some(types::Timespec::new().sec(1)), types::CancelBuilder::any());
            tracing::warn!(
                outstanding = self.outstanding, sq_unconsumed, cq_overflow, cancel = ?r,
                "io_uring batch made no progress for {STALL_AFTER:?}; cancelled it (redone with pwrite + fdatasync)"
            );
            self.progress_at = Instant::now();
        }
        Ok(())
    }

    fn reap(&mut self) {
        for cqe in self.ring.completion() {
            self.outstanding -= 1;
            self.progress_at = Instant::now();
            let idx = cqe.user_data() as usize;
            let res = cqe.result();
            let op = &self.ops[idx / 2];
            if idx % 2 == 0 {
                // write
                if (res >= 0 && (res as usize) < op.len) || res == -libc::ECANCELED {
                    self.redo = true;
                } else if res < 0 && res != -libc::ECANCELED && self.failure.is_none() {
                    self.failure = Some((idx, res));
                }
            } else if res == -libc::ECANCELED {
                self.redo = true;
            } else if res < 0 && self.failure.is_none() {
                self.failure = Some((idx, res));
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        let ops = std::mem::take(&mut self.ops);
        let failure = self.failure.take();
        let redo = std::mem::take(&mut self.redo);
        if let Some((idx, res)) = failure {
            let op = &ops[idx / 2];
            let what = if idx % 2 == 0 { "io_uring write" } else { "io_uring fdatasync" };
            return Err(JournalError::io(what, op.path.as_path(), io::Error::from_raw_os_error(-res)));
        }
        if redo {
            tracing::debug!("short io_uring write; redoing batch with pwrite + fdatasync");
            sync_ops(&ops)?;
        }
        Ok(())
    }
}

impl BatchWriter for UringWriter {
    fn kind(&self) -> WriterKind {
        WriterKind::IoUring
    }

    fn wedged(&self) -> bool {
        self.wedged
    }

    unsafe fn submit(&mut self, ops: Vec<WriteOp>) -> Result<()> {
        assert_eq!(self.outstanding, 0, "submit while a batch is in flight");
        assert!(ops.len() <= MAX_OPS_PER_BATCH);
        let n = ops.len();
        {
            let mut sq = self.ring.submission();
            for (i, op) in ops.iter().enumerate() {
                let fd = types::Fd(op.file.as_raw_fd());
                let w = if self.fixed {
                    opcode::WriteFixed::new(fd, op.ptr, op.len as u32, op.buf_index).offset(op.offset).build()
                } else {
                    opcode::Write::new(fd, op.ptr, op.len as u32).offset(op.offset).build()
                };
                let w = w.flags(squeue::Flags::IO_LINK).user_data((2 * i) as u64);
                let mut s =
                    opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data((2 * i + 1) as u64);
                if i + 1 < n {
                    s = s.flags(squeue::Flags::IO_LINK);
                }
                // SAFETY: buffers and fds stay alive until wait() (caller's contract; we hold
                // the Arc<File>s in self.ops).
                sq.push(&w).and_then(|_| sq.push(&s)).expect("ring has room for MAX_OPS_PER_BATCH ops");
            }
        }
        self.ops = ops;
        self.outstanding = 2 * n;
        self.progress_at = Instant::now();
        self.cancelled = false;
        if let Err(e) = self.ring.submit() {
            // Nothing was consumed by the kernel only if submit failed outright.
            self.outstanding = 0;
            self.ops.clear();
            return Err(JournalError::io("io_uring submit", "", e));
        }
        Ok(())
    }

    fn wait(&mut self) -> Result<()> {
        self.wait_all().map_err(|e| JournalError::io("io_uring wait", "", e))?;
        if self.ops.is_empty() {
            return Ok(());
        }
        self.finish()
    }

    fn try_wait(&mut self) -> Result<bool> {
        if self.outstanding > 0 {
            self.reap();
        }
        if self.outstanding > 0 {
            self.check_stall().map_err(|e| JournalError::io("io_uring wait", "", e))?;
            return Ok(false);
        }
        if !self.ops.is_empty() {
            self.finish()?;
        }
        Ok(true)
    }
}

impl Drop for UringWriter {
    fn drop(&mut self) {
        // The kernel may still be reading the buffers: drain before they can be freed.
        if self.wait_all().is_ok() && !self.wedged {
            // SAFETY: dropped once, here; nothing is in flight.
            unsafe { ManuallyDrop::drop(&mut self.ring) };
        }
        // Otherwise the ring (and its pins on the registered buffers) lives as long as the
        // process: the kernel may still read the buffers.
    }
}

/// Writer choice in [`JournalOptions`](crate::JournalOptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriterChoice {
    /// io_uring when the kernel allows it, else the portable writer.
    #[default]
    Auto,
    /// io_uring or an error.
    IoUring,
    /// pwrite + fdatasync.
    Portable,
}

/// Build the writer for `choice`; logs which one runs.
///
/// # Safety
/// `bufs` must outlive the writer at a fixed address.
pub(crate) unsafe fn make_writer(choice: WriterChoice, bufs: &[(*const u8, usize)]) -> Result<Box<dyn BatchWriter>> {
    let w: Box<dyn BatchWriter> = match choice {
        WriterChoice::Portable => Box::new(PortableWriter::new()?),
        WriterChoice::IoUring => Box::new(UringWriter::new(bufs).map_err(JournalError::UringUnavailable)?),
        WriterChoice::Auto => match UringWriter::new(bufs) {
            Ok(w) => Box::new(w),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unavailable; falling back to the portable writer");
                Box::new(PortableWriter::new()?)
            }
        },
    };
    tracing::info!(writer = %w.kind(), "journal writer selected");
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    /// A writer with one batch in flight whose write can never complete (a full pipe nobody
    /// reads). The buffer and the pipe's read end are returned to outlive the writer.
    fn stuck_batch() -> (UringWriter, crate::buf::AlignedBuf, File) {
        let mut fds = [0; 2];
        // SAFETY: plain syscall; the fds are owned by the Files below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fresh fds from pipe(2), each owned once.
        let (reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // Fill the pipe (nobody reads it), so the batch's write can never make progress.
        // SAFETY: plain fcntl/write calls on an fd we own.
        unsafe {
            let fl = libc::fcntl(fds[1], libc::F_GETFL);
            assert_eq!(libc::fcntl(fds[1], libc::F_SETFL, fl | libc::O_NONBLOCK), 0);
            let chunk = [0u8; 4096];
            while libc::write(fds[1], chunk.as_ptr().cast(), chunk.len()) > 0 {}
            assert_eq!(libc::fcntl(fds[1], libc::F_SETFL, fl), 0);
        }
        let buf = crate::buf::AlignedBuf::new(4096);
        let len = buf.capacity();
        // SAFETY: the caller drops the writer before the buffer.
        let mut w = match unsafe { UringWriter::new(&[(buf.as_ptr(), len)]) } {
            Ok(w) => w,
            Err(e) => panic!("io_uring unavailable on this machine: {e}"),
        };
        let op = WriteOp {
            file: Arc::new(writer),
            path: Arc::new(PathBuf::from("pipe")),
            offset: 0,
            ptr: buf.as_ptr(),
            len,
            buf_index: 0,
        };
        // SAFETY: the buffer outlives the writer (caller's contract above).
        unsafe { w.submit(vec![op]).expect("submit") };
        (w, buf, reader)
    }

    /// A stalled batch is cancelled after STALL_AFTER and reported as an error (a pipe write
    /// cannot be redone with pwrite): the writer neither hangs nor wedges.
    #[test]
    fn stalled_batch_is_cancelled_not_waited_forever() {
        let (mut w, buf, _reader) = stuck_batch();
        let t0 = Instant::now();
        let r = w.wait();
        let took = t0.elapsed();
        assert!(r.is_err(), "a pipe write cannot be redone with pwrite: expected an error, got {r:?}");
        assert!(took >= STALL_AFTER, "cancelled only after the stall limit, took {took:?}: {r:?}");
        assert!(!w.wedged(), "a cancellable stall must not wedge the writer");
        assert_eq!(w.outstanding, 0);
        drop(w);
        drop(buf);
    }

    /// A caller that only polls (the sequencer under load) gets the same cancellation: the
    /// stall clock starts at submit, not when someone blocks.
    #[test]
    fn polling_alone_cancels_a_stalled_batch() {
        let (mut w, buf, _reader) = stuck_batch();
        let t0 = Instant::now();
        let r = loop {
            match w.try_wait() {
                Ok(false) => {
                    assert!(t0.elapsed() < Duration::from_secs(60), "polling never cancelled the stalled batch");
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other,
            }
        };
        assert!(t0.elapsed() >= STALL_AFTER, "cancelled before the stall limit");
        assert!(r.is_err(), "a pipe write cannot be redone with pwrite: expected an error, got {r:?}");
        assert!(!w.wedged());
        assert_eq!(w.outstanding, 0);
        drop(w);
        drop(buf);
    }
}
