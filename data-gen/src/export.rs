//! Export of a generated problem to a directory: one `.npy` file per array plus
//! `manifest.json` (generator, parameters with the seed, and each array's file, dtype and
//! shape), so results can be checked independently from Python; and loading it back.
//!
//! ```text
//! manifest.json: {"generator": "quadratic", "format": 1, "parameters": {...},
//!                 "arrays": [{"name": "A_g", "file": "A_g.npy", "dtype": "<f8", "shape": [1000, 1000]}, ...]}
//! ```

use crate::dataset::{Array, ArrayData, Dataset};
use crate::npy::{read_npy_sized, write_npy, NpyError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Why an export or a load failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A `.npy` file is malformed or unsupported.
    #[error("{}: {source}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: NpyError,
    },
    /// `manifest.json` is malformed or disagrees with the files.
    #[error("manifest.json: {0}")]
    Manifest(String),
    /// A file is larger than anything of its kind can be (manifest.json past
    /// [`MAX_MANIFEST_BYTES`]): refused before it is read.
    #[error("{}: {size} bytes, more than the {limit} a {what} may have", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
        /// Its length.
        size: u64,
        /// The most accepted.
        limit: u64,
    },
    /// The export's target is in the way: a non-empty directory (without `force`) or not a
    /// directory at all.
    #[error("{}: {reason}", path.display())]
    TargetExists {
        /// The target directory.
        path: PathBuf,
        /// Why it cannot be written, and what to do.
        reason: String,
    },
}

/// `manifest.json` (format 1), as written and read (fields in the alphabetical order the
/// hand-written JSON had).
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    arrays: Vec<Entry>,
    #[serde(default = "format_version")]
    format: u32,
    generator: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn format_version() -> u32 {
    1
}

/// One array of the manifest: its name, file, dtype (optional when read) and shape.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dtype: Option<String>,
    file: String,
    name: String,
    shape: Vec<usize>,
}

/// A problem directory read back: the manifest's generator and parameters, and the arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedDataset {
    /// The generator's name.
    pub generator: String,
    /// The parameters it was generated with (the seed included).
    pub parameters: Map<String, Value>,
    /// Every array the manifest lists, in its order.
    pub arrays: Vec<Array>,
}

/// The largest manifest.json read (a real one is a few KiB).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Opens `path` for reading if it is a regular file (after links), with its length: a device
/// such as /dev/zero would be read without end, and opening a FIFO blocks until some writer
/// comes. Checked before opening (so a FIFO is never opened) and again on the open file (the
/// path may have changed in between).
fn open_regular(path: &Path) -> Result<(std::fs::File, u64), ExportError> {
    let not_regular = || {
        let source = std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a device, FIFO, socket or directory): refused, it could be read without end",
        );
        ExportError::Io { path: path.to_path_buf(), source }
    };
    if !std::fs::metadata(path).map_err(io_err(path))?.is_file() {
        return Err(not_regular());
    }
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let meta = f.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok((f, meta.len()))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_path_buf(), source }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn dtype_of(data: &ArrayData) -> &'static str {
    match data {
        ArrayData::F64(_) => "<f8",
        ArrayData::I64(_) => "<i8",
    }
}

/// Writes `dataset` into the directory `dir`: `<name>.npy` per array and `manifest.json`.
///
/// The files are written into a temporary sibling directory `.NAME.tmp-PID` (same parent, so
/// the same filesystem), synced, and renamed to `dir` at the end: a failed export leaves no
/// half-written `dir` (the temporary is removed on error, best effort), and a reader never sees
/// a manifest beside files of another export. `dir`'s parents are created if needed.
///
/// An existing `dir` must be an empty directory, unless `force`: then the old directory is
/// replaced whole (renamed away to `.NAME.old-PID`, the new one renamed in, the old one
/// removed), so no stale file of an earlier export stays beside the new ones. The swap is two
/// renames, atomic each (POSIX `rename`), not together: a crash between them leaves the
/// old export under `.NAME.old-PID` and the new one under `.NAME.tmp-PID`. If the new one is
/// in place but the old one cannot be removed, the error names the old one's path.
///
/// Errors: [`ExportError::TargetExists`] for a non-empty directory without `force` or a `dir`
/// that is not a directory (checked before anything is written); [`ExportError::Manifest`] for
/// an array name that is not a plain file name; [`ExportError::Io`] and [`ExportError::Npy`]
/// naming the path that failed.
pub fn write_dir(dataset: &dyn Dataset, dir: &Path, force: bool) -> Result<(), ExportError> {
    let arrays = dataset.arrays();
    if let Some(a) = arrays.iter().find(|a| !valid_name(&a.name)) {
        return Err(ExportError::Manifest(format!("array name {:?} is not a plain file name", a.name)));
    }
    let exists = |reason: &str| ExportError::TargetExists { path: dir.to_path_buf(), reason: reason.to_string() };
    let name =
        dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| exists("has no plain final name to export to"))?;
    let replace = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err(dir)(e)),
        Ok(m) if !m.is_dir() => return Err(exists("exists and is not a directory; export to another path")),
        Ok(_) => {
            let non_empty = std::fs::read_dir(dir).map_err(io_err(dir))?.next().is_some();
            if non_empty && !force {
                return Err(exists(
                    "already exists and is not empty; export into a new or empty directory, or pass force (the \
                     CLI's --force) to replace it whole",
                ));
            }
            true
        }
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.tmp-{pid}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let written = write_files(dataset, arrays, &tmp).and_then(|()| {
        if !replace {
            return std::fs::rename(&tmp, dir).map_err(io_err(dir));
        }
        let old = parent.join(format!(".{name}.old-{pid}"));
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
        if let Err(e) = std::fs::rename(&tmp, dir) {
            let _ = std::fs::rename(&old, dir);
            return Err(io_err(dir)(e));
        }
        std::fs::remove_dir_all(&old).map_err(io_err(&old))
    });
    if written.is_err() && tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

/// The files of [`write_dir`] in `dir` (an empty directory), each synced to disk.
fn write_files(dataset: &dyn Dataset, arrays: Vec<Array>, dir: &Path) -> Result<(), ExportError> {
    use std::io::Write;
    let mut entries = Vec::with_capacity(arrays.len());
    for array in arrays {
        let file = format!("{}.npy", array.name);
        let path = dir.join(&file);
        let f = std::fs::File::create(&path).map_err(io_err(&path))?;
        let mut w = std::io::BufWriter::new(f);
        write_npy(&array, &mut w).map_err(|source| ExportError::Npy { path: path.clone(), source })?;
        let f = w.into_inner().map_err(|e| io_err(&path)(e.into_error()))?;
        f.sync_all().map_err(io_err(&path))?;
        let dtype = Some(dtype_of(&array.data).to_string());
        entries.push(Entry { dtype, file, name: array.name, shape: array.shape });
    }
    let manifest = Manifest {
        arrays: entries,
        format: 1,
        generator: dataset.generator().to_string(),
        parameters: dataset.parameters(),
    };
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| ExportError::Manifest(e.to_string()))?;
    let mut f = std::fs::File::create(&path).map_err(io_err(&path))?;
    f.write_all((text + "\n").as_bytes()).and_then(|()| f.sync_all()).map_err(io_err(&path))
}

/// Reads one `.npy` file as the array `name`.
pub fn read_array(name: &str, path: &Path) -> Result<Array, ExportError> {
    let (f, size) = open_regular(path)?;
    read_npy_sized(name, std::io::BufReader::new(f), Some(size))
        .map(|(array, _)| array)
        .map_err(|source| ExportError::Npy { path: path.to_path_buf(), source })
}

/// Reads a directory written by [`write_dir`] (or by hand: see the module doc), checking that
/// every listed file exists and has the dtype and shape the manifest says.
pub fn load_dir(dir: &Path) -> Result<LoadedDataset, ExportError> {
    let path = dir.join("manifest.json");
    let (f, size) = open_regular(&path)?;
    let too_large =
        |size| ExportError::TooLarge { path: path.clone(), what: "manifest", size, limit: MAX_MANIFEST_BYTES };
    if size > MAX_MANIFEST_BYTES {
        return Err(too_large(size));
    }
    // Bounded again while reading: the file may grow after its length was taken.
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_MANIFEST_BYTES + 1), &mut text)
        .map_err(io_err(&path))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large(text.len() as u64));
    }
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ExportError::Manifest(e.to_string()))?;
    let mut arrays = Vec::with_capacity(manifest.arrays.len());
    for Entry { dtype, file, name, shape } in manifest.arrays {
        if file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(ExportError::Manifest(format!(
                "{name:?}: file {file:?} must be a plain name in the directory"
            )));
        }
        let path = dir.join(&file);
        let (f, size) = open_regular(&path)?;
        let (array, actual) = read_npy_sized(&name, std::io::BufReader::new(f), Some(size))
            .map_err(|source| ExportError::Npy { path: path.clone(), source })?;
        if array.shape != shape {
            return Err(ExportError::Manifest(format!(
                "{name:?}: the manifest says shape {shape:?}, {file:?} holds {:?}",
                array.shape
            )));
        }
        if let Some(dtype) = dtype {
            if dtype != actual {
                return Err(ExportError::Manifest(format!(
                    "{name:?}: the manifest says {dtype:?}, {file:?} holds {actual:?}"
                )));
            }
        }
        arrays.push(array);
    }
    Ok(LoadedDataset { generator: manifest.generator, parameters: manifest.parameters, arrays })
}
