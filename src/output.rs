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

/// Refuses two outputs on the same file, or an output on an input (`inputs`: a file, or a
/// problem directory, whose manifest.json and .npy files are its input): compared after
/// resolving links and `..`, so a symlink between two names is seen.
pub fn check_distinct(outputs: &[(&str, Option<&Path>)], inputs: &[Option<&Path>]) -> Result<(), DynError> {
    let resolved: Vec<(&str, PathBuf)> =
        outputs.iter().filter_map(|(flag, p)| p.map(|p| (*flag, resolve(p)))).collect();
    for (i, (flag, path)) in resolved.iter().enumerate() {
        if let Some((other, _)) = resolved[..i].iter().find(|(_, q)| q == path) {
            return Err(format!(
                "{other} and {flag} name the same file ({}): one would overwrite the other",
                path.display()
            )
            .into());
        }
        for input in inputs.iter().flatten() {
            let input = resolve(input);
            // A problem directory's own files: manifest.json and the .npy arrays.
            let own_file = path.parent() == Some(input.as_path())
                && (path.file_name().is_some_and(|n| n == "manifest.json")
                    || path.extension().is_some_and(|e| e == "npy"));
            if *path == input || own_file {
                return Err(format!(
                    "{flag} {} would overwrite the problem's input ({})",
                    path.display(),
                    input.display()
                )
                .into());
            }
        }
    }
    Ok(())
}

/// `path` with links and `..` resolved: the whole path where it exists, else its parent's
/// resolution and its file name.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
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
