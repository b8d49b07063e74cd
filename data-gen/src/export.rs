//! Export of a generated problem to a directory: one `.npy` file per array plus
//! `manifest.json` (generator, parameters with the seed, and each array's file, dtype and
//! shape), so results can be checked independently from Python; and loading it back.
//!
//! ```text
//! manifest.json: {"generator": "quadratic", "format": 1, "parameters": {...},
//!                 "arrays": [{"name": "A_g", "file": "A_g.npy", "dtype": "<f8", "shape": [1000, 1000]}, ...]}
//! ```

use crate::dataset::{Array, ArrayData, Dataset};
use crate::npy::{read_npy, write_npy, NpyError};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Why an export or a load failed.
#[derive(Debug)]
pub enum ExportError {
    Io { path: PathBuf, source: std::io::Error },
    Npy { path: PathBuf, source: NpyError },
    Manifest(String),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Npy { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Manifest(reason) => write!(f, "manifest.json: {reason}"),
        }
    }
}

impl std::error::Error for ExportError {}

/// A problem directory read back: the manifest's generator and parameters, and the arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedDataset {
    pub generator: String,
    pub parameters: Map<String, Value>,
    pub arrays: Vec<Array>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_path_buf(), source }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Writes `dataset` into `dir` (created if needed): `<name>.npy` per array and `manifest.json`.
pub fn write_dir(dataset: &dyn Dataset, dir: &Path) -> Result<(), ExportError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut entries = Vec::new();
    for array in dataset.arrays() {
        if !valid_name(&array.name) {
            return Err(ExportError::Manifest(format!("array name `{}` is not a plain file name", array.name)));
        }
        let file = format!("{}.npy", array.name);
        let path = dir.join(&file);
        let f = std::fs::File::create(&path).map_err(io_err(&path))?;
        write_npy(&array, std::io::BufWriter::new(f))
            .map_err(|source| ExportError::Npy { path: path.clone(), source })?;
        let dtype = match array.data {
            ArrayData::F64(_) => "<f8",
            ArrayData::I64(_) => "<i8",
        };
        entries.push(json!({"name": array.name, "file": file, "dtype": dtype, "shape": array.shape}));
    }
    let manifest = json!({
        "generator": dataset.generator(),
        "format": 1,
        "parameters": Value::Object(dataset.parameters()),
        "arrays": entries,
    });
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).expect("a JSON value serializes");
    std::fs::write(&path, text + "\n").map_err(io_err(&path))
}

/// Reads a directory written by [`write_dir`] (or by hand: see the module doc), checking that
/// every listed file exists and has the dtype and shape the manifest says.
pub fn load_dir(dir: &Path) -> Result<LoadedDataset, ExportError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let manifest: Value = serde_json::from_str(&text).map_err(|e| ExportError::Manifest(format!("not JSON: {e}")))?;
    let field = |key: &str| manifest.get(key).ok_or_else(|| ExportError::Manifest(format!("missing field `{key}`")));
    let generator = field("generator")?
        .as_str()
        .ok_or_else(|| ExportError::Manifest("`generator` is not a string".into()))?
        .to_string();
    let parameters = match manifest.get("parameters") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ExportError::Manifest("`parameters` is not an object".into())),
    };
    let list = field("arrays")?.as_array().ok_or_else(|| ExportError::Manifest("`arrays` is not a list".into()))?;
    let mut arrays = Vec::with_capacity(list.len());
    for entry in list {
        let get = |key: &str| entry.get(key).ok_or_else(|| ExportError::Manifest(format!("an array has no `{key}`")));
        let name = get("name")?.as_str().ok_or_else(|| ExportError::Manifest("array `name` is not a string".into()))?;
        let file =
            get("file")?.as_str().ok_or_else(|| ExportError::Manifest(format!("`{name}`: `file` is not a string")))?;
        if file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(ExportError::Manifest(format!(
                "`{name}`: file `{file}` must be a plain name in the directory"
            )));
        }
        let shape: Vec<usize> = get("shape")?
            .as_array()
            .and_then(|s| s.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| ExportError::Manifest(format!("`{name}`: `shape` is not a list of sizes")))?;
        let path = dir.join(file);
        let f = std::fs::File::open(&path).map_err(io_err(&path))?;
        let array = read_npy(name, std::io::BufReader::new(f))
            .map_err(|source| ExportError::Npy { path: path.clone(), source })?;
        if array.shape != shape {
            return Err(ExportError::Manifest(format!(
                "`{name}`: the manifest says shape {shape:?}, {file} holds {:?}",
                array.shape
            )));
        }
        if let Some(dtype) = entry.get("dtype").and_then(Value::as_str) {
            let actual = match array.data {
                ArrayData::F64(_) => "<f8",
                ArrayData::I64(_) => "<i8",
            };
            if dtype != actual {
                return Err(ExportError::Manifest(format!(
                    "`{name}`: the manifest says {dtype}, {file} holds {actual}"
                )));
            }
        }
        arrays.push(array);
    }
    Ok(LoadedDataset { generator, parameters, arrays })
}
