//! `.npy` files through the maintained [`npyz`] crate: little-endian `<f8` and `<i8`, C order,
//! enough to hand any generated problem to Python (`numpy.load`) and to read it back. The reader
//! also takes `<f4` (converted to f64, exactly) and `<i4` (converted to i64); other dtypes
//! (big-endian, complex, unsigned, `<f2`, records, ...) and Fortran order are refused with an
//! error that names the dtype and the array (the caller adds the file's path).

use crate::dataset::{Array, ArrayData};
use npyz::{DType, NpyFile, Order, TypeStr, WriterBuilder};
use std::io::{Read, Write};

/// A malformed or unsupported `.npy` file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The stream could not be read or written.
    #[error("npy I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The stream is not an `.npy` file this crate reads (the reason says why).
    #[error("npy format: {0}")]
    Format(String),
}

const F8: &str = "<f8";
const I8: &str = "<i8";
const F4: &str = "<f4";
const I4: &str = "<i4";

fn dtype(descr: &str) -> DType {
    DType::Plain(descr.parse::<TypeStr>().expect("a valid type string"))
}

/// Writes one array as a `.npy` stream (format 1.0, header padded to 64 bytes).
pub fn write_npy(array: &Array, w: impl Write) -> Result<(), NpyError> {
    let len = match &array.data {
        ArrayData::F64(v) => v.len(),
        ArrayData::I64(v) => v.len(),
    };
    if array.shape.iter().product::<usize>() != len {
        return Err(NpyError::Format(format!("`{}`: shape {:?} does not hold {len} values", array.name, array.shape)));
    }
    let shape: Vec<u64> = array.shape.iter().map(|&d| d as u64).collect();
    match &array.data {
        ArrayData::F64(v) => {
            let mut out = npyz::WriteOptions::new().dtype(dtype(F8)).shape(&shape).writer(w).begin_nd()?;
            out.extend(v.iter().copied())?;
            out.finish()?;
        }
        ArrayData::I64(v) => {
            let mut out = npyz::WriteOptions::new().dtype(dtype(I8)).shape(&shape).writer(w).begin_nd()?;
            out.extend(v.iter().copied())?;
            out.finish()?;
        }
    }
    Ok(())
}

/// Reads every value of `file` (at most `len`), growing the vector as data arrive, so a header
/// announcing a huge shape cannot make it allocate more than the data it holds.
fn values<T: npyz::Deserialize, R: Read>(name: &str, file: NpyFile<R>, len: u64) -> Result<Vec<T>, NpyError> {
    let reader = file.data::<T>().map_err(|e| NpyError::Format(format!("`{name}`: {e}")))?;
    let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
    for value in reader {
        match value {
            Ok(v) => out.push(v),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(NpyError::Format(format!(
                    "`{name}`: the data bytes end after {} of {len} values",
                    out.len()
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Reads a `.npy` stream written in C order as `<f8`, `<i8`, `<f4` (converted to f64) or `<i4`
/// (converted to i64).
pub fn read_npy(name: &str, r: impl Read) -> Result<Array, NpyError> {
    read_npy_with_dtype(name, r).map(|(array, _)| array)
}

/// [`read_npy`], also returning the dtype the file holds (`"<f4"` for an array converted from
/// it), so a manifest's dtype can be checked against the file rather than the conversion.
pub fn read_npy_with_dtype(name: &str, r: impl Read) -> Result<(Array, String), NpyError> {
    let bad = |reason: String| NpyError::Format(format!("`{name}`: {reason}"));
    let file = NpyFile::new(r).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => bad(format!("not an .npy file ({e})")),
        _ => NpyError::Io(e),
    })?;
    if file.order() == Order::Fortran {
        return Err(bad("Fortran-ordered arrays are not supported (save with C order)".into()));
    }
    let shape: Vec<usize> = file
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad("shape overflows".into())))
        .collect::<Result<_, _>>()?;
    let len = file.len();
    let descr = match file.dtype() {
        DType::Plain(t) => t.to_string(),
        other => other.descr(),
    };
    let data = match descr.as_str() {
        F8 => ArrayData::F64(values(name, file, len)?),
        I8 => ArrayData::I64(values(name, file, len)?),
        F4 => ArrayData::F64(values::<f32, _>(name, file, len)?.into_iter().map(f64::from).collect()),
        I4 => ArrayData::I64(values::<i32, _>(name, file, len)?.into_iter().map(i64::from).collect()),
        other => {
            return Err(bad(format!(
                "dtype {other} is not supported (use {F8}, {I8}, {F4} or {I4}; e.g. numpy's \
                 `a.astype('<f8')`)"
            )))
        }
    };
    Ok((Array { name: name.to_string(), shape, data }, descr))
}
