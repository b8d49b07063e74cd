//! LIBSVM / svmlight text format: one sample per line,
//! `<label> [qid:<n>] <index>:<value> <index>:<value> ... [# comment]`.
//!
//! - Labels are read as f64 (binary ±1 or 0/1, multiclass integers, regression targets).
//! - `qid:<n>` (svmlight ranking groups) is accepted after the label and skipped.
//! - Indices are 1-based by default (LIBSVM's convention); [`IndexBase::Zero`] reads 0-based
//!   files, and [`IndexBase::Auto`] takes 0-based if any index is 0, else 1-based.
//! - Within a line indices may come in any order; they are sorted, and a repeated index is an
//!   error. Values must be finite. Blank lines and `#` comment lines are skipped.
//! - At most [`MAX_FEATURES`] features (the CSR matrix's u32 column indices): a larger index is
//!   a line error.
//! - A UTF-8 byte-order mark opening the file (as some Windows editors write) is skipped.
//! - Every malformed line gives a [`LibsvmError`] with its (1-based) line number and the reason,
//!   the offending text quoted with invisible characters escaped (`"\u{a0}"`, `"\t"`); no
//!   input makes the reader panic (a test feeds it thousands of random and mutated byte
//!   strings).
//! - The data remember where each row came from ([`Origin`]: the file and each row's line), so
//!   later errors about the data (a width that cannot fit in memory) can point into the file.
//!
//! The writer prints 1-based indices (or 0-based on request) and values with Rust's shortest
//! round-trip formatting, so `read(write(x)) == x` bit for bit.

use bilevel_kernels::CsrMatrix;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// How feature indices are numbered in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IndexBase {
    /// LIBSVM's convention: the first feature is 1.
    #[default]
    One,
    /// Feature indices start at 0.
    Zero,
    /// 0-based if any index in the file is 0, else 1-based.
    Auto,
}

/// Reader options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Whether feature indices start at 1 (the format's convention) or 0.
    pub index_base: IndexBase,
    /// The number of features; `None` = the largest index seen + 1. A larger index is an error.
    pub n_features: Option<usize>,
}

/// A dataset read from (or to be written to) LIBSVM format.
#[derive(Clone, Debug)]
pub struct LibsvmData {
    /// The samples as CSR rows.
    pub x: CsrMatrix,
    /// One label per row.
    pub labels: Vec<f64>,
    /// Where the rows came from (empty for data built in memory): for error messages only.
    pub origin: Origin,
}

impl LibsvmData {
    /// Data built in memory (no [`Origin`]).
    pub fn new(x: CsrMatrix, labels: Vec<f64>) -> Self {
        Self { x, labels, origin: Origin::default() }
    }
}

/// Equal data: the same matrix and labels, wherever they were read from (a round trip through
/// a file compares equal to the data written).
impl PartialEq for LibsvmData {
    fn eq(&self, other: &Self) -> bool {
        self.x == other.x && self.labels == other.labels
    }
}

/// Where the rows of a [`LibsvmData`] came from, so that an error found after reading (a
/// width too large for memory, in [`crate::from_file`]) can name the file and line to fix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The file ([`read_path`] sets it); `None` for a stream or data built in memory.
    pub path: Option<PathBuf>,
    /// The 1-based line of each row (empty when unknown).
    pub lines: Vec<usize>,
    /// The file's first feature index (0 or 1): column `j` was written as `j + first_index`.
    pub first_index: u64,
}

impl Origin {
    /// Row `row` as a reader can find it: `line 12 of data.libsvm`, `line 12`, or `data row
    /// 12` (1-based) where no line is known.
    pub fn describe_row(&self, row: usize) -> String {
        match (self.lines.get(row), &self.path) {
            (Some(line), Some(path)) => format!("line {line} of {}", path.display()),
            (Some(line), None) => format!("line {line}"),
            (None, _) => format!("data row {}", row + 1),
        }
    }
}

/// A reading or writing error, with the 1-based line number where there is one.
#[derive(Debug, thiserror::Error)]
pub enum LibsvmError {
    /// A malformed line (1-based number) and why.
    #[error("LIBSVM line {line}: {reason}")]
    Line {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The stream could not be read or written.
    #[error("LIBSVM I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The data cannot be written (e.g. a non-finite value).
    #[error("LIBSVM data: {0}")]
    Data(String),
}

/// Most features (columns) a dataset may have: 2^32 − 1, the CSR matrix's u32 column indices.
pub const MAX_FEATURES: u64 = u32::MAX as u64;

/// Longest line accepted (bytes): a guard against unbounded memory on corrupt input.
pub const MAX_LINE_BYTES: usize = 1 << 28;

/// Parses one non-empty, comment-stripped line into its label and (raw index, value) pairs.
fn parse_line(text: &str, line: usize, out: &mut Vec<(u64, f64)>) -> Result<f64, LibsvmError> {
    let err = |reason: String| LibsvmError::Line { line, reason };
    let mut tokens = text.split_ascii_whitespace();
    let label_tok = tokens.next().ok_or_else(|| err("missing label".into()))?;
    let label: f64 = label_tok.parse().map_err(|_| err(format!("label {label_tok:?} is not a number")))?;
    if !label.is_finite() {
        return Err(err(format!("label {label_tok:?} is not finite")));
    }
    out.clear();
    for (k, tok) in tokens.enumerate() {
        let (idx, val) = tok.split_once(':').ok_or_else(|| err(format!("{tok:?} is not `index:value`")))?;
        if k == 0 && idx == "qid" {
            val.parse::<u64>().map_err(|_| err(format!("qid {val:?} is not a non-negative integer")))?;
            continue;
        }
        let index: u64 = idx.parse().map_err(|_| err(format!("index {idx:?} is not a non-negative integer")))?;
        let value: f64 = val.parse().map_err(|_| err(format!("value {val:?} of index {index} is not a number")))?;
        if !value.is_finite() {
            return Err(err(format!("value {val:?} of index {index} is not finite")));
        }
        out.push((index, value));
    }
    Ok(label)
}

/// Why a line is not UTF-8, with the first bad byte and its (1-based) column, since the byte
/// itself cannot be shown; a UTF-16 byte-order mark gets its own hint.
fn not_utf8(bytes: &[u8], e: std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return "not valid UTF-8: the file starts with a UTF-16 byte-order mark (save it as UTF-8)".into();
    }
    match bytes.get(at) {
        Some(b) => format!("not valid UTF-8 (byte 0x{b:02x} at column {})", at + 1),
        None => "not valid UTF-8".into(),
    }
}

/// Reads a LIBSVM file from any buffered reader.
pub fn read<R: BufRead>(mut reader: R, options: ReadOptions) -> Result<LibsvmData, LibsvmError> {
    let mut labels = Vec::new();
    let mut rows: Vec<Vec<(u64, f64)>> = Vec::new();
    let mut line_no_of_row = Vec::new();
    let mut pairs = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line += 1;
        if buf.len() > MAX_LINE_BYTES {
            return Err(LibsvmError::Line { line, reason: format!("longer than {MAX_LINE_BYTES} bytes") });
        }
        let text = std::str::from_utf8(&buf).map_err(|e| LibsvmError::Line { line, reason: not_utf8(&buf, e) })?;
        // A UTF-8 byte-order mark (as some editors write) opens the first line: not data.
        let text = if line == 1 { text.strip_prefix('\u{feff}').unwrap_or(text) } else { text };
        let text = text.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        labels.push(parse_line(text, line, &mut pairs)?);
        rows.push(pairs.clone());
        line_no_of_row.push(line);
    }
    let zero_based = match options.index_base {
        IndexBase::Zero => true,
        IndexBase::One => false,
        IndexBase::Auto => rows.iter().flatten().any(|&(i, _)| i == 0),
    };
    let shift = u64::from(!zero_based);
    let mut n_cols = 0u64;
    for (row, &line) in rows.iter_mut().zip(&line_no_of_row) {
        for (i, _) in row.iter_mut() {
            if *i < shift {
                return Err(LibsvmError::Line { line, reason: "index 0 in a 1-based file".into() });
            }
            *i -= shift;
            // The CSR column indices are u32, so at most 2^32 − 1 features (index ≤ 2^32 − 2);
            // checked here, with the line, before `i + 1` could overflow at i = 2^64 − 1.
            let needed = i.checked_add(1).filter(|&n| n <= MAX_FEATURES).ok_or_else(|| LibsvmError::Line {
                line,
                reason: format!("index {} needs more than the supported {MAX_FEATURES} features", *i + shift),
            })?;
            n_cols = n_cols.max(needed);
        }
        row.sort_by_key(|&(i, _)| i);
        if let Some(w) = row.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(LibsvmError::Line { line, reason: format!("index {} repeated", w[0].0 + shift) });
        }
    }
    let ncols = match options.n_features {
        Some(d) if (d as u64) < n_cols => {
            return Err(LibsvmError::Data(format!("an index needs {n_cols} features, {d} were declared")));
        }
        Some(d) => d,
        None => n_cols as usize,
    };
    if ncols as u64 > MAX_FEATURES {
        return Err(LibsvmError::Data(format!("{ncols} features declared, more than the supported {MAX_FEATURES}")));
    }
    let mut indptr = Vec::with_capacity(rows.len() + 1);
    indptr.push(0);
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for row in &rows {
        indices.extend(row.iter().map(|&(i, _)| i as u32));
        values.extend(row.iter().map(|&(_, v)| v));
        indptr.push(indices.len());
    }
    let x = CsrMatrix::new(rows.len(), ncols, indptr, indices, values).map_err(|e| LibsvmError::Data(e.to_string()))?;
    let origin = Origin { path: None, lines: line_no_of_row, first_index: shift };
    Ok(LibsvmData { x, labels, origin })
}

/// Writes a dataset in LIBSVM format (1-based indices unless `zero_based`).
pub fn write(data: &LibsvmData, mut w: impl Write, zero_based: bool) -> Result<(), LibsvmError> {
    if data.labels.len() != data.x.nrows() {
        return Err(LibsvmError::Data(format!("{} labels for {} rows", data.labels.len(), data.x.nrows())));
    }
    if let Some(l) = data.labels.iter().find(|l| !l.is_finite()) {
        return Err(LibsvmError::Data(format!("label {l:?} is not finite")));
    }
    let shift = u64::from(!zero_based);
    for (i, label) in data.labels.iter().enumerate() {
        write!(w, "{label:?}")?;
        let (cols, vals) = data.x.row(i);
        for (&c, v) in cols.iter().zip(vals) {
            write!(w, " {}:{v:?}", c as u64 + shift)?;
        }
        writeln!(w)?;
    }
    w.flush()?;
    Ok(())
}

/// [`read`] from a file; the data's [`Origin`] names it.
pub fn read_path(path: impl AsRef<Path>, options: ReadOptions) -> Result<LibsvmData, LibsvmError> {
    let path = path.as_ref();
    let mut data = read(std::io::BufReader::new(std::fs::File::open(path)?), options)?;
    data.origin.path = Some(path.to_path_buf());
    Ok(data)
}

/// [`write()`] to a file (1-based indices).
pub fn write_path(data: &LibsvmData, path: impl AsRef<Path>) -> Result<(), LibsvmError> {
    write(data, std::io::BufWriter::new(std::fs::File::create(path)?), false)
}
