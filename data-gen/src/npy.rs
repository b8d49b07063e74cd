//! `.npy` files through the maintained [`npyz`] crate: little-endian `<f8` and `<i8`, C order,
//! enough to hand any generated problem to Python (`numpy.load`) and to read it back. The reader
//! also takes `<f4` (converted to f64, exactly) and `<i4` (converted to i64); other dtypes
//! (big-endian, complex, unsigned, `<f2`, records, ...) and Fortran order are refused with an
//! error that names the dtype and the array (the caller adds the file's path).
//!
//! Reads are bounded by what the file holds, not by what its header says: the header's length
//! is checked against [`MAX_HEADER_BYTES`] (and the file's size, where known) before it is
//! read, its shape's product for overflow before npyz computes it, and the data it declares
//! against the bytes after the header ([`read_npy_sized`]) and the memory available before
//! anything is allocated for them.

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
    /// The array the header declares does not fit in the memory available.
    #[error("npy: {0}")]
    TooLarge(bilevel_kernels::KernelError),
}

/// Longest header text accepted (bytes). numpy writes ~120 and its own `np.load` refuses more
/// than 10 000 by default; the length is a u32 in formats 2 and 3, so a corrupt one would
/// otherwise make the reader allocate up to 4 GiB before reading anything.
pub const MAX_HEADER_BYTES: usize = 1 << 16;

/// Deepest bracket nesting accepted in a header (a plain array's is 2, a record dtype's 4):
/// the header's parser recurses once per level, so deep nesting would overflow the stack.
const MAX_HEADER_DEPTH: usize = 16;

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
        return Err(NpyError::Format(format!(
            "{}: shape {:?} does not hold {len} values",
            named(&array.name),
            array.shape
        )));
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
    let reader =
        file.data::<T>().map_err(|e| NpyError::Format(format!("{}: {}", named(name), shown(&e.to_string()))))?;
    let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
    for value in reader {
        match value {
            Ok(v) => out.push(v),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(NpyError::Format(format!(
                    "{}: the data bytes end after {} of {len} values",
                    named(name),
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
    read_npy_sized(name, r, None)
}

/// Text from a file as it goes into a message: every character Rust's `{:?}` would escape
/// (controls, invisible and format characters such as `\u{200b}` or a byte-order mark) shown
/// escaped, so the reader sees what is there; quotes and backslashes stay as they are.
fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\'' | '\\') {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
}

/// An array's name in a message, in backquotes ([`shown`]: a name comes from a hand-written
/// manifest).
fn named(name: &str) -> String {
    format!("`{}`", shown(name))
}

/// `read_exact`, with an end of stream reported as `eof` (a truncated file, not an I/O fault).
fn read_all(r: &mut impl Read, buf: &mut [u8], eof: impl FnOnce() -> NpyError) -> Result<(), NpyError> {
    r.read_exact(buf).map_err(|e| if e.kind() == std::io::ErrorKind::UnexpectedEof { eof() } else { NpyError::Io(e) })
}

/// The header text's checks that must come before npyz parses it: bracket nesting at most
/// [`MAX_HEADER_DEPTH`], and a shape whose nonzero dimensions multiply without overflowing u64
/// (npyz multiplies them unchecked, for the length and the strides). Malformed text is left
/// to npyz's parser, which reports it.
fn check_header(text: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    for &b in text {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_DEPTH {
                    return Err(format!("the header nests brackets deeper than {MAX_HEADER_DEPTH}: a corrupt file"));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(text);
    let Some(at) = text.find("'shape'").or_else(|| text.find("\"shape\"")) else { return Ok(()) };
    let rest = text[at + 7..].trim_start().strip_prefix(':').unwrap_or("").trim_start();
    let Some(open) = rest.chars().next().filter(|c| *c == '(' || *c == '[') else { return Ok(()) };
    let close = if open == '(' { ')' } else { ']' };
    let Some(end) = rest.find(close) else { return Ok(()) };
    let mut product = 1u64;
    for dim in rest[1..end].split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let Ok(dim) = dim.trim_end_matches('L').parse::<u64>() else { return Ok(()) };
        if dim != 0 {
            product = product.checked_mul(dim).ok_or_else(|| {
                format!("the header's shape {} holds more than 2^64 values: a corrupt file", shown(&rest[..=end]))
            })?;
        }
    }
    Ok(())
}

/// [`read_npy_with_dtype`] from a stream of `size` bytes where that is known (a regular
/// file's length): a header or data longer than the file are refused before they are read or
/// allocated, naming both sizes. Without a size, the header is still bounded
/// ([`MAX_HEADER_BYTES`]) and the data are read as they arrive (the vector grows with them, so
/// a short stream cannot make it allocate what the header claims).
pub fn read_npy_sized(name: &str, mut r: impl Read, size: Option<u64>) -> Result<(Array, String), NpyError> {
    let bad = |reason: String| NpyError::Format(format!("{}: {reason}", named(name)));
    // The pre-header: magic (6 bytes), version (2), header length (u16 in format 1, u32 in 2
    // and 3), read here so that the length is checked before anything of that size.
    let mut pre = [0u8; 12];
    read_all(&mut r, &mut pre[..8], || bad("not an .npy file (magic not found for NPY file)".into()))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file (magic not found for NPY file)".into()));
    }
    let pre_len = match pre[6] {
        1 => 10,
        2 | 3 => 12,
        major => return Err(bad(format!("not an .npy file this reader knows (format version {major}.{})", pre[7]))),
    };
    read_all(&mut r, &mut pre[8..pre_len], || bad("not an .npy file (it ends inside its pre-header)".into()))?;
    let header_len = if pre_len == 10 {
        u16::from_le_bytes([pre[8], pre[9]]) as usize
    } else {
        u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "the header declares {header_len} bytes, more than the {MAX_HEADER_BYTES} an .npy header may have here: a \
             corrupt file"
        )));
    }
    let header_end = (pre_len + header_len) as u64;
    if let Some(size) = size.filter(|&s| s < header_end) {
        return Err(bad(format!("the header declares {header_len} bytes but the file holds {size} bytes in all")));
    }
    let mut header = vec![0u8; pre_len + header_len];
    header[..pre_len].copy_from_slice(&pre[..pre_len]);
    read_all(&mut r, &mut header[pre_len..], || bad("not an .npy file (it ends inside its header)".into()))?;
    check_header(&header[pre_len..]).map_err(bad)?;
    let file = NpyFile::new(std::io::Cursor::new(header).chain(r)).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
            bad(format!("not an .npy file ({})", shown(&e.to_string())))
        }
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
    if let Some(size) = size {
        let in_file = size - header_end;
        let declared = file.dtype().num_bytes().and_then(|b| len.checked_mul(b as u64));
        if declared.is_none_or(|b| b > in_file) {
            return Err(bad(format!(
                "the header declares shape {shape:?} of {} ({}), but the file holds {in_file} bytes after its \
                 header",
                shown(&descr),
                declared.map_or_else(|| "more than 2^64 bytes".to_string(), |b| format!("{b} bytes of data"))
            )));
        }
    }
    // The values as f64 or i64, 8 bytes each, whatever the file's dtype.
    let values_bytes = bilevel_kernels::memory::f64_bytes(&[usize::try_from(len).unwrap_or(usize::MAX)]);
    bilevel_kernels::memory::check_fits(|| format!("{} (shape {shape:?}, {len} values)", named(name)), values_bytes)
        .map_err(NpyError::TooLarge)?;
    let data = match descr.as_str() {
        F8 => ArrayData::F64(values(name, file, len)?),
        I8 => ArrayData::I64(values(name, file, len)?),
        F4 => ArrayData::F64(values::<f32, _>(name, file, len)?.into_iter().map(f64::from).collect()),
        I4 => ArrayData::I64(values::<i32, _>(name, file, len)?.into_iter().map(i64::from).collect()),
        other => {
            return Err(bad(format!(
                "dtype {} is not supported (use {F8}, {I8}, {F4} or {I4}; e.g. numpy's \
                 `a.astype('<f8')`)",
                shown(other)
            )))
        }
    };
    Ok((Array { name: name.to_string(), shape, data }, descr))
}
