//! `.npy` files (NumPy format version 1.0), little-endian `<f8` and `<i8`, C order: enough to
//! hand any generated problem to Python (`numpy.load`) and to read it back.

use crate::dataset::{Array, ArrayData};
use std::io::{Read, Write};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// A malformed or unsupported `.npy` file.
#[derive(Debug)]
pub enum NpyError {
    Io(std::io::Error),
    Format(String),
}

impl std::fmt::Display for NpyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "npy I/O error: {e}"),
            Self::Format(reason) => write!(f, "npy format: {reason}"),
        }
    }
}

impl std::error::Error for NpyError {}

impl From<std::io::Error> for NpyError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

fn descr(data: &ArrayData) -> &'static str {
    match data {
        ArrayData::F64(_) => "<f8",
        ArrayData::I64(_) => "<i8",
    }
}

/// Writes one array as a `.npy` stream.
pub fn write_npy(array: &Array, mut w: impl Write) -> Result<(), NpyError> {
    let len = match &array.data {
        ArrayData::F64(v) => v.len(),
        ArrayData::I64(v) => v.len(),
    };
    if array.shape.iter().product::<usize>() != len {
        return Err(NpyError::Format(format!("`{}`: shape {:?} does not hold {len} values", array.name, array.shape)));
    }
    let shape = match array.shape.as_slice() {
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", descr(&array.data));
    // Pad with spaces so that magic (6) + version (2) + length (2) + header ends on 64 bytes.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    w.write_all(MAGIC)?;
    w.write_all(&[1, 0])?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    let mut buf = Vec::with_capacity(len * 8);
    match &array.data {
        ArrayData::F64(v) => v.iter().for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        ArrayData::I64(v) => v.iter().for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
    }
    w.write_all(&buf)?;
    Ok(())
}

/// Value of `'key': ...` in a header dictionary (up to the next top-level comma or brace).
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}':"))? + key.len() + 3;
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(rest[..end].trim())
}

/// Reads a `.npy` stream written in C order as `<f8` or `<i8`.
pub fn read_npy(name: &str, mut r: impl Read) -> Result<Array, NpyError> {
    let bad = |reason: String| NpyError::Format(format!("`{name}`: {reason}"));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic[..6] != MAGIC {
        return Err(bad("not an .npy file (bad magic)".into()));
    }
    let header_len = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    if header_len > 1 << 20 {
        return Err(bad(format!("header of {header_len} bytes")));
    }
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header)?;
    let header = String::from_utf8(header).map_err(|_| bad("header is not UTF-8".into()))?;
    let descr = header_field(&header, "descr").ok_or_else(|| bad("header has no descr".into()))?;
    let fortran = header_field(&header, "fortran_order").ok_or_else(|| bad("header has no fortran_order".into()))?;
    if fortran != "False" {
        return Err(bad("Fortran-ordered arrays are not supported (save with C order)".into()));
    }
    let shape_txt = header_field(&header, "shape").ok_or_else(|| bad("header has no shape".into()))?;
    let shape: Vec<usize> = shape_txt
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(format!("shape {shape_txt} is not a tuple of sizes"))))
        .collect::<Result<_, _>>()?;
    let len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows".into()))?;
    let bytes = len.checked_mul(8).ok_or_else(|| bad("shape overflows".into()))?;
    let mut raw = Vec::new();
    r.take(bytes as u64 + 1).read_to_end(&mut raw)?;
    if raw.len() != bytes {
        return Err(bad(format!("{} data bytes for shape {shape:?} ({bytes} expected)", raw.len())));
    }
    let words = raw.chunks_exact(8).map(|c| <[u8; 8]>::try_from(c).expect("chunks of 8"));
    let data = match descr.trim_matches('\'') {
        "<f8" => ArrayData::F64(words.map(f64::from_le_bytes).collect()),
        "<i8" => ArrayData::I64(words.map(i64::from_le_bytes).collect()),
        other => return Err(bad(format!("dtype {other} is not supported (use <f8 or <i8)"))),
    };
    Ok(Array { name: name.to_string(), shape, data })
}
