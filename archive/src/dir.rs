//! The local archive (`castle serve`'s default, no AWS needed): the same
//! Hive-style layout Firehose writes to S3, `stream=<s>/dt=YYYY-MM-DD/hr=HH/`,
//! one JSON-lines file per hour of engine time, named after its first seq.
//!
//! Exactly once: a flush is appended and fdatasync'd, then the cursor
//! records the file and its length. On open, whatever lies past the cursor
//! (a flush written but not recorded before a crash) is cut off, and files
//! begun after it are removed, so the resumed stream continues at the exact
//! byte after the last recorded command.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::chunk::Flush;
use crate::cursor::{sync_dir, Cursor, CursorFile};
use crate::ArchiveError;

pub struct DirSink {
    root: PathBuf,
    stream: String,
    cursor_file: CursorFile,
    cursor: Cursor,
    open: Option<OpenFile>,
}

struct OpenFile {
    /// Relative to `root`.
    name: String,
    hour: (String, String),
    file: File,
    len: u64,
}

/// `("2026-11-26", "04")` for an engine timestamp.
fn partition(ts_ns: u64) -> (String, String) {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ts_ns as i128).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()), format!("{:02}", t.hour()))
}

/// First seq of an archive file named `<stream>-<seq>.jsonl`.
fn first_seq_of(name: &str, stream: &str) -> Option<u64> {
    name.strip_prefix(stream)?.strip_prefix('-')?.strip_suffix(".jsonl")?.parse().ok()
}

impl DirSink {
    /// Opens (or creates) `root/stream=<stream>` and repairs it to its cursor.
    pub fn open(root: &Path, stream: &str) -> Result<Self, ArchiveError> {
        assert!(!stream.is_empty() && stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let root = root.join(format!("stream={stream}"));
        fs::create_dir_all(&root).map_err(|e| ArchiveError::io(&root, e))?;
        let cursor_file = CursorFile::new(root.join("CURSOR"));
        let cursor = cursor_file.load()?;
        let mut sink = Self { root, stream: stream.to_string(), cursor_file, cursor, open: None };
        sink.repair()?;
        Ok(sink)
    }

    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Cuts the recorded file back to its recorded length and removes files begun after the cursor.
    fn repair(&mut self) -> Result<(), ArchiveError> {
        for path in self.files()? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if first_seq_of(name, &self.stream).is_some_and(|s| s > self.cursor.seq) {
                tracing::warn!(file = %path.display(), cursor = self.cursor.seq, "archive: removing a file begun after the cursor");
                fs::remove_file(&path).map_err(|e| ArchiveError::io(&path, e))?;
            }
        }
        if let Some((name, len)) = self.cursor.file.clone() {
            let path = self.root.join(&name);
            let file = OpenOptions::new().write(true).open(&path).map_err(|e| ArchiveError::io(&path, e))?;
            let actual = file.metadata().map_err(|e| ArchiveError::io(&path, e))?.len();
            if actual < len {
                return Err(ArchiveError::Damaged(format!(
                    "{} holds {actual} bytes, the cursor says {len}",
                    path.display()
                )));
            }
            if actual > len {
                tracing::warn!(file = %path.display(), from = actual, to = len, "archive: cutting lines past the cursor");
                file.set_len(len).map_err(|e| ArchiveError::io(&path, e))?;
                file.sync_all().map_err(|e| ArchiveError::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Every archive file of this stream, oldest first.
    pub fn files(&self) -> Result<Vec<PathBuf>, ArchiveError> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).map_err(|e| ArchiveError::io(&dir, e))? {
                let path = entry.map_err(|e| ArchiveError::io(&dir, e))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "jsonl") {
                    out.push(path);
                }
            }
        }
        out.sort_by_key(|p| {
            p.file_name().and_then(|n| n.to_str()).and_then(|n| first_seq_of(n, &self.stream)).unwrap_or(0)
        });
        Ok(out)
    }

    fn file_for(&mut self, flush: &Flush) -> Result<&mut OpenFile, ArchiveError> {
        let hour = partition(flush.first_ts);
        if self.open.as_ref().is_none_or(|o| o.hour != hour) {
            // Continue the cursor's file after a restart if it is this hour's.
            let (name, len) = match &self.cursor.file {
                Some((name, len)) if name.starts_with(&format!("dt={}/hr={}/", hour.0, hour.1)) => (name.clone(), *len),
                _ => (format!("dt={}/hr={}/{}-{:020}.jsonl", hour.0, hour.1, self.stream, flush.first_seq), 0),
            };
            let path = self.root.join(&name);
            let dir = path.parent().expect("archive files live in a partition directory");
            let fresh = !dir.exists();
            fs::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
            if fresh {
                sync_dir(dir.parent().expect("dt= directory"))?;
            }
            let file =
                OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ArchiveError::io(&path, e))?;
            if len == 0 {
                sync_dir(dir)?; // the new file's name must survive a crash before the cursor names it
            }
            self.open = Some(OpenFile { name, hour, file, len });
        }
        Ok(self.open.as_mut().expect("just opened"))
    }

    /// Appends the flush durably, then moves the cursor past it.
    pub fn put(&mut self, flush: &Flush) -> Result<(), ArchiveError> {
        assert!(flush.first_seq > self.cursor.seq, "flush {}.. at cursor {}", flush.first_seq, self.cursor.seq);
        let root = self.root.clone();
        let open = self.file_for(flush)?;
        let path = root.join(&open.name);
        for record in &flush.records {
            open.file.write_all(record).map_err(|e| ArchiveError::io(&path, e))?;
            open.len += record.len() as u64;
        }
        open.file.sync_data().map_err(|e| ArchiveError::io(&path, e))?;
        let cursor = Cursor { seq: flush.last_seq, file: Some((open.name.clone(), open.len)) };
        self.cursor_file.store(&cursor)?;
        self.cursor = cursor;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flush(first: u64, last: u64, ts: u64, text: &str) -> Flush {
        Flush { first_seq: first, last_seq: last, first_ts: ts, records: vec![text.as_bytes().to_vec()], events: 1 }
    }

    const H04: u64 = 1_795_665_600_000_000_000; // 2026-11-26T04:00:00Z

    #[test]
    fn partitions_by_engine_hour() {
        assert_eq!(partition(H04), ("2026-11-26".to_string(), "04".to_string()));
        assert_eq!(partition(H04 - 1), ("2026-11-26".to_string(), "03".to_string()));
    }

    #[test]
    fn resumes_exactly_after_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DirSink::open(dir.path(), "events").unwrap();
        s.put(&flush(1, 2, H04, "a\nb\n")).unwrap();
        s.put(&flush(3, 3, H04 + 1, "c\n")).unwrap();
        s.put(&flush(4, 4, H04 + 3_600_000_000_000, "d\n")).unwrap();
        assert_eq!(s.cursor().seq, 4);
        let files = s.files().unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].ends_with("stream=events/dt=2026-11-26/hr=04/events-00000000000000000001.jsonl"));
        assert!(files[1].ends_with("stream=events/dt=2026-11-26/hr=05/events-00000000000000000004.jsonl"));
        assert_eq!(fs::read_to_string(&files[0]).unwrap(), "a\nb\nc\n");

        // A crash after the data but before the cursor: an appended tail and a new hour's file.
        let mut f = OpenOptions::new().append(true).open(&files[1]).unwrap();
        f.write_all(b"e-not-recorded\n").unwrap();
        let stray = s.root().join("dt=2026-11-26/hr=06/events-00000000000000000005.jsonl");
        fs::create_dir_all(stray.parent().unwrap()).unwrap();
        fs::write(&stray, "f\n").unwrap();
        drop(s);

        let mut s = DirSink::open(dir.path(), "events").unwrap();
        assert_eq!(s.cursor().seq, 4);
        assert_eq!(fs::read_to_string(&files[1]).unwrap(), "d\n");
        assert!(!stray.exists());
        s.put(&flush(5, 5, H04 + 3_600_000_000_001, "e\n")).unwrap();
        assert_eq!(fs::read_to_string(&files[1]).unwrap(), "d\ne\n");
    }

    #[test]
    fn a_file_shorter_than_its_cursor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DirSink::open(dir.path(), "events").unwrap();
        s.put(&flush(1, 1, H04, "abc\n")).unwrap();
        let file = s.files().unwrap().remove(0);
        drop(s);
        fs::write(&file, "ab").unwrap();
        assert!(matches!(DirSink::open(dir.path(), "events"), Err(ArchiveError::Damaged(_))));
    }
}
