//! Export of a generated problem to a directory: one `.npy` file per array plus
//! `manifest.json` (generator, parameters with the seed, and each array's file, dtype and
//! shape), so results can be checked independently from Python; and loading it back.
//!
//! ```text
//! manifest.json: {"generator": "quadratic", "format": 1, "parameters": {...},
//!                 "arrays": [{"name": "A_g", "file": "A_g.npy", "dtype": "<f8", "shape": [1000, 1000]}, ...]}
//! ```

use crate::dataset::{Array, ArrayData, Dataset};
use crate::npy::{read_npy, read_npy_with_dtype, write_npy, NpyError};
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

/// Writes `dataset` into `dir` (created if needed): `<name>.npy` per array and `manifest.json`.
pub fn write_dir(dataset: &dyn Dataset, dir: &Path) -> Result<(), ExportError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut arrays = Vec::new();
    for array in dataset.arrays() {
        if !valid_name(&array.name) {
            return Err(ExportError::Manifest(format!("array name `{}` is not a plain file name", array.name)));
        }
        let file = format!("{}.npy", array.name);
        let path = dir.join(&file);
        let f = std::fs::File::create(&path).map_err(io_err(&path))?;
        write_npy(&array, std::io::BufWriter::new(f))
            .map_err(|source| ExportError::Npy { path: path.clone(), source })?;
        let dtype = Some(dtype_of(&array.data).to_string());
        arrays.push(Entry { dtype, file, name: array.name, shape: array.shape });
    }
    let manifest =
        Manifest { arrays, format: 1, generator: dataset.generator().to_string(), parameters: dataset.parameters() };
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
    std::fs::write(&path, text + "\n").map_err(io_err(&path))
}

/// Reads one `.npy` file as the array `name`.
pub fn read_array(name: &str, path: &Path) -> Result<Array, ExportError> {
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    read_npy(name, std::io::BufReader::new(f)).map_err(|source| ExportError::Npy { path: path.to_path_buf(), source })
}

/// Reads a directory written by [`write_dir`] (or by hand: see the module doc), checking that
/// every listed file exists and has the dtype and shape the manifest says.
pub fn load_dir(dir: &Path) -> Result<LoadedDataset, ExportError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ExportError::Manifest(e.to_string()))?;
    let mut arrays = Vec::with_capacity(manifest.arrays.len());
    for Entry { dtype, file, name, shape } in manifest.arrays {
        if file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(ExportError::Manifest(format!(
                "`{name}`: file `{file}` must be a plain name in the directory"
            )));
        }
        let path = dir.join(&file);
        let f = std::fs::File::open(&path).map_err(io_err(&path))?;
        let (array, actual) = read_npy_with_dtype(&name, std::io::BufReader::new(f))
            .map_err(|source| ExportError::Npy { path: path.clone(), source })?;
        if array.shape != shape {
            return Err(ExportError::Manifest(format!(
                "`{name}`: the manifest says shape {shape:?}, {file} holds {:?}",
                array.shape
            )));
        }
        if let Some(dtype) = dtype {
            if dtype != actual {
                return Err(ExportError::Manifest(format!(
                    "`{name}`: the manifest says {dtype}, {file} holds {actual}"
                )));
            }
        }
        arrays.push(array);
    }
    Ok(LoadedDataset { generator: manifest.generator, parameters: manifest.parameters, arrays })
}
