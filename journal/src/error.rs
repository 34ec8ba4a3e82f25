//! Typed errors.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Bad data before the end of the journal (or anywhere in a segment that is not the last).
    #[error(
        "corrupt journal: {file} at byte offset {offset}: {reason}{follow}; refusing to continue (open with RecoveryMode::Truncate to discard everything from this offset on)",
        follow = match valid_after { Some((at, seq)) => format!(", followed by a valid record (seq {seq}) at byte offset {at}"), None => String::new() }
    )]
    Corrupt { file: PathBuf, offset: u64, reason: String, valid_after: Option<(u64, u64)> },
    /// The first sequence number of a segment does not continue the previous segment.
    #[error("sequence gap: {file} starts at sequence {found}, expected {expected}")]
    SequenceGap { file: PathBuf, expected: u64, found: u64 },
    /// The current batch has no room for this record: call `submit()`/`commit()` first.
    #[error("batch full: record needs {needed} bytes, batch buffer holds {capacity}")]
    BatchFull { needed: usize, capacity: usize },
    /// A record can never fit in a batch or segment with the configured sizes.
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    /// An earlier write or sync failed; the journal refuses further work (the page cache state
    /// after a failed fsync is unknowable). Reopen to recover from what is on disk.
    #[error("journal poisoned by an earlier I/O error; reopen it")]
    Poisoned,
    /// io_uring was requested explicitly but cannot be used here.
    #[error("io_uring unavailable: {0}")]
    UringUnavailable(#[source] io::Error),
    /// Bad configuration.
    #[error("invalid journal options: {0}")]
    Config(String),
    /// A read asked for a sequence number the journal no longer (or never) had.
    #[error("sequence {requested} is not in the journal (first available: {first})")]
    SeqNotAvailable { requested: u64, first: u64 },
}

impl JournalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        JournalError::Io { op, path: path.into(), source }
    }
}

/// Result alias.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;
