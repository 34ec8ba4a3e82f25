//! Castle's write-ahead journal.
//!
//! Records are opaque byte payloads with a sequence number (assigned by the journal, strictly
//! increasing by one) and a caller-supplied timestamp, framed with a CRC32C and written into
//! pre-allocated segment files. The format is documented in [`format`](mod@format).
//!
//! # Group commit
//!
//! ```no_run
//! use castle_journal::{Journal, JournalOptions, JournalError};
//! # fn main() -> Result<(), JournalError> {
//! let (mut j, report) = Journal::open(JournalOptions::new("/var/lib/castle/journal"))?;
//! let mut next = report.next_seq;
//! loop {
//!     // Fill the batch while the previous one is being written and synced.
//!     for cmd in [&b"order"[..]; 100] {
//!         match j.append(0, cmd) {
//!             Ok(seq) => next = seq + 1,
//!             Err(JournalError::BatchFull { .. }) => { j.submit()?; }
//!             Err(e) => return Err(e),
//!         }
//!     }
//!     // Waits for the previous batch (making it durable) and starts writing this one.
//!     j.submit()?;
//!     let durable = j.durable_seq(); // release events of commands <= durable
//!     # let _ = (durable, next); break;
//! }
//! j.close()?;
//! # Ok(()) }
//! ```
//!
//! * [`Journal::append`] only copies into the current batch buffer (bounded: two buffers of
//!   [`JournalOptions::batch_capacity`] bytes).
//! * [`Journal::submit`] waits for the batch in flight (at most one) and starts writing the
//!   current one; [`Journal::wait`] / [`Journal::poll`] complete it; [`Journal::commit`] is
//!   submit + wait. After `wait` returns, every record up to [`Journal::durable_seq`] is on disk.
//! * Writers ([`writer`]): io_uring (registered buffers, linked write + fdatasync) or a portable
//!   pwrite + fdatasync thread, chosen by [`WriterChoice`] (auto: io_uring when available, with a
//!   log line saying which runs). Both write byte-identical files.
//!
//! # Recovery
//!
//! [`Journal::open`] scans the segments. A torn tail (the unacknowledged last batch: partial
//! records, zeros, garbage) is truncated to the last good record and logged with file and
//! offset. Corruption anywhere else fails with [`JournalError::Corrupt`] naming file and byte
//! offset, unless [`RecoveryMode::Truncate`] is given. [`JournalReader`] iterates from any
//! sequence number. [`snapshot`] writes and loads state snapshots atomically and deletes old
//! segments.

mod buf;
pub mod error;
pub mod format;
mod journal;
pub mod reader;
pub mod segment;
pub mod snapshot;
pub mod writer;

pub use error::{JournalError, Result};
pub use journal::{Journal, JournalOptions, RecoveryMode, RecoveryReport, Truncation, Verify};
pub use reader::{JournalReader, Record};
pub use segment::{list_segments, segment_file_name, SegmentInfo};
pub use snapshot::{
    archive_segments_before, delete_segments_before, list_snapshots, load_latest_snapshot, load_snapshot,
    prune_snapshots, write_snapshot, Snapshot, SnapshotInfo, SnapshotWriter,
};
pub use writer::{BatchWriter, WriterChoice, WriterKind};
