//! Castle's archive of every engine event.
//!
//! ```text
//! engine stream --subscribe_after(cursor)--> archiver --JSON lines--> Kinesis --Firehose--> S3 (dt=/hr= partitions)
//!                                                     \-------------> local folder, same layout (castle serve)
//! ```
//!
//! * [`record`]: one JSON line per event with the columns of the Glue table
//!   `events` (seq, shard, ts_ns, kind, instrument, body). Sans-IO.
//! * [`chunk`]: lines into records and flushes within the sink's limits.
//! * [`dir`]: the local sink, exactly once (cursor with file and length; the tail past it is cut on open).
//! * [`kinesis`]: the AWS sink (aws-sdk-kinesis, PutRecords), at least once, deduplicated by `seq`.
//! * [`archiver`]: the task that follows the stream and flushes.

pub mod archiver;
pub mod chunk;
pub mod cursor;
pub mod dir;
pub mod kinesis;
pub mod record;
pub mod testkit;

use std::path::{Path, PathBuf};

pub use archiver::{run, ArchiverConfig, Sink, Stats};
pub use dir::DirSink;
pub use kinesis::{KinesisConfig, KinesisSink};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("archive cursor {0} is damaged (expected `seq=N [file=F len=L]`)")]
    BadCursor(PathBuf),
    #[error("archive damaged: {0}")]
    Damaged(String),
    #[error("archive sink: {0}")]
    Sink(String),
    #[error("engine link: {0}")]
    Link(castle_link::LinkError),
}

impl ArchiveError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ArchiveError::Io { path: path.to_path_buf(), source }
    }
}
