//! The archive's resume point: the last engine sequence number whose lines
//! the sink holds, plus (for the local sink) the file and byte offset they
//! end at. Replaced atomically (write, fsync, rename, fsync the directory),
//! so after a crash it is either the old or the new cursor, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use castle_engine::Seq;

use crate::ArchiveError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub seq: Seq,
    /// Local sink: the file written last, relative to the stream directory, and its durable length.
    pub file: Option<(String, u64)>,
}

impl Cursor {
    fn render(&self) -> String {
        match &self.file {
            Some((name, len)) => format!("seq={} file={} len={}\n", self.seq, name, len),
            None => format!("seq={}\n", self.seq),
        }
    }

    fn parse(text: &str) -> Option<Cursor> {
        let line = text.strip_suffix('\n')?;
        let mut cursor = Cursor::default();
        let (mut name, mut len) = (None, None);
        for part in line.split(' ') {
            let (k, v) = part.split_once('=')?;
            match k {
                "seq" => cursor.seq = v.parse().ok()?,
                "file" if !v.is_empty() && !v.contains("..") => name = Some(v.to_string()),
                "len" => len = Some(v.parse().ok()?),
                _ => return None,
            }
        }
        match (name, len) {
            (Some(n), Some(l)) => cursor.file = Some((n, l)),
            (None, None) => {}
            _ => return None,
        }
        Some(cursor)
    }
}

/// A cursor file on local disk.
#[derive(Debug)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored cursor; a missing file is the start (seq 0), a damaged one an error (never guessed).
    pub fn load(&self) -> Result<Cursor, ArchiveError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Cursor::parse(&text).ok_or_else(|| ArchiveError::BadCursor(self.path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
            Err(e) => Err(ArchiveError::io(&self.path, e)),
        }
    }

    pub fn store(&self, cursor: &Cursor) -> Result<(), ArchiveError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?;
        f.write_all(cursor.render().as_bytes()).map_err(|e| ArchiveError::io(&tmp, e))?;
        f.sync_data().map_err(|e| ArchiveError::io(&tmp, e))?;
        fs::rename(&tmp, &self.path).map_err(|e| ArchiveError::io(&self.path, e))?;
        sync_dir(dir)
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ArchiveError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let f = CursorFile::new(dir.path().join("cursor"));
        assert_eq!(f.load().unwrap(), Cursor::default());
        let c = Cursor { seq: 12, file: Some(("dt=2026-11-26/hr=04/events-00000000000000000001.jsonl".into(), 345)) };
        f.store(&c).unwrap();
        assert_eq!(f.load().unwrap(), c);
        let c2 = Cursor { seq: 13, file: None };
        f.store(&c2).unwrap();
        assert_eq!(f.load().unwrap(), c2);
        for bad in ["", "seq=x\n", "seq=1", "seq=1 file=a\n", "seq=1 file=../x len=3\n", "seq=1 what=2\n"] {
            fs::write(f.path(), bad).unwrap();
            assert!(matches!(f.load(), Err(ArchiveError::BadCursor(_))), "{bad:?}");
        }
    }
}
