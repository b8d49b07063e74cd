//! The output files of `hypergrad` and `solve`: created before the run (so a path that cannot
//! be written fails at once, not after an hour of work), each written on its own (a failing
//! `--trace` does not lose `--json`), every error naming the flag and the path.

use bilevel_solvers::{CsvRows, TraceRow};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

type DynError = Box<dyn std::error::Error>;

/// An output file created (truncated) before the run. One that is dropped unwritten (the run
/// was refused after it was created) is removed again if it is an empty regular file.
pub struct OutFile {
    flag: &'static str,
    path: PathBuf,
    file: File,
    written: bool,
}

impl Drop for OutFile {
    fn drop(&mut self) {
        let empty_file = std::fs::metadata(&self.path).is_ok_and(|m| m.is_file() && m.len() == 0);
        if !self.written && empty_file {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl OutFile {
    /// Creates `path` for `flag` (e.g. `--json`), or an error naming both and the OS reason.
    pub fn create(flag: &'static str, path: &Path) -> Result<Self, DynError> {
        let file = File::create(path).map_err(|e| format!("{flag} {}: cannot create the file: {e}", path.display()))?;
        Ok(Self { flag, path: path.to_path_buf(), file, written: false })
    }

    /// Creates the file of an optional flag.
    pub fn maybe(flag: &'static str, path: Option<&PathBuf>) -> Result<Option<Self>, DynError> {
        path.map(|p| Self::create(flag, p)).transpose()
    }

    fn error(&self, e: impl std::fmt::Display) -> DynError {
        format!("{} {}: {e}", self.flag, self.path.display()).into()
    }

    /// Writes `value` as pretty JSON and a newline.
    pub fn write_json(mut self, value: &serde_json::Value) -> Result<(), DynError> {
        self.written = true;
        let mut w = BufWriter::new(&self.file);
        serde_json::to_writer_pretty(&mut w, value).map_err(|e| self.error(e))?;
        writeln!(w).and_then(|()| w.flush()).map_err(|e| self.error(e))?;
        self.file.sync_all().map_err(|e| self.error(e))
    }

    /// This file as a CSV trace written a row at a time (header now).
    pub fn into_trace(mut self, metric_names: &[&str]) -> Result<TraceFile, DynError> {
        self.written = true;
        let rows = CsvRows::new(BufWriter::new(self.file.try_clone().map_err(|e| self.error(e))?), metric_names)
            .map_err(|e| self.error(e))?;
        Ok(TraceFile { out: self, rows, failed: None })
    }
}

/// A CSV trace being written during a run. A write that fails is remembered (and the run goes
/// on, so the JSON summary is still written); [`finish`](Self::finish) reports it.
pub struct TraceFile {
    out: OutFile,
    rows: CsvRows<BufWriter<File>>,
    failed: Option<String>,
}

impl TraceFile {
    /// Writes and flushes one row (after a failure, nothing).
    pub fn write(&mut self, row: &TraceRow) {
        if self.failed.is_none() {
            if let Err(e) = self.rows.write(row) {
                self.failed = Some(e.to_string());
            }
        }
    }

    /// The first write error, naming the flag and the path.
    pub fn finish(self) -> Result<(), DynError> {
        match self.failed {
            Some(e) => Err(self.out.error(e)),
            None => Ok(()),
        }
    }
}
