//! A design matrix (one sample per row), dense row-major or sparse CSR, with the row-wise
//! primitives the model kernels are made of.

use crate::error::{check_finite, KernelError, Result};
use crate::ops;
use crate::problem::Batch;
use crate::sparse::CsrMatrix;

/// A dense row-major matrix: row i is `data[i*ncols..(i+1)*ncols]`, contiguous, so a
/// per-sample kernel streams one row.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseRows {
    nrows: usize,
    ncols: usize,
    data: Vec<f64>,
}

impl DenseRows {
    /// From row-major values; errors on a length that is not nrows·ncols or a non-finite value.
    pub fn new(nrows: usize, ncols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != nrows * ncols {
            return Err(KernelError::InvalidData {
                what: "dense rows",
                reason: format!("{} values for a {nrows}x{ncols} matrix", data.len()),
            });
        }
        check_finite("dense rows", &data)?;
        Ok(Self { nrows, ncols, data })
    }
    /// From a faer matrix (copied to row-major).
    pub fn from_faer(a: faer::MatRef<'_, f64>) -> Result<Self> {
        let data = (0..a.nrows()).flat_map(|i| (0..a.ncols()).map(move |j| a[(i, j)])).collect();
        Self::new(a.nrows(), a.ncols(), data)
    }
    /// Number of rows (samples).
    pub fn nrows(&self) -> usize {
        self.nrows
    }
    /// Number of columns (features).
    pub fn ncols(&self) -> usize {
        self.ncols
    }
    /// Row i.
    #[inline]
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.ncols..(i + 1) * self.ncols]
    }
    /// The row-major values.
    pub fn data(&self) -> &[f64] {
        &self.data
    }
}

/// Samples as rows, dense or sparse.
#[derive(Clone, Debug, PartialEq)]
pub enum Design {
    /// Dense rows.
    Dense(DenseRows),
    /// Sparse rows (CSR).
    Sparse(CsrMatrix),
}

impl Design {
    /// Number of rows (samples).
    pub fn nrows(&self) -> usize {
        match self {
            Design::Dense(d) => d.nrows(),
            Design::Sparse(s) => s.nrows(),
        }
    }
    /// Number of columns (features).
    pub fn ncols(&self) -> usize {
        match self {
            Design::Dense(d) => d.ncols(),
            Design::Sparse(s) => s.ncols(),
        }
    }
    /// Stored entries (n·d when dense).
    pub fn nnz(&self) -> usize {
        match self {
            Design::Dense(d) => d.nrows() * d.ncols(),
            Design::Sparse(s) => s.nnz(),
        }
    }
    /// `x_iᵀ v`.
    #[inline]
    pub fn row_dot(&self, i: usize, v: &[f64]) -> f64 {
        match self {
            Design::Dense(d) => ops::dot_seq(d.row(i), v),
            Design::Sparse(s) => s.row_dot(i, v),
        }
    }
    /// `out += alpha · x_i`.
    #[inline]
    pub fn row_axpy(&self, i: usize, alpha: f64, out: &mut [f64]) {
        match self {
            Design::Dense(d) => ops::axpy_seq(alpha, d.row(i), out),
            Design::Sparse(s) => s.row_axpy(i, alpha, out),
        }
    }
    /// `out = x_iᵀ M` for a row-major `ncols × k` matrix `M` (`k = out.len()`): the sum of the
    /// K-blocks `M[j, ·]` weighted by the entries of row i, each block read contiguously.
    /// Precondition: `m.len() == ncols · out.len()`.
    #[inline]
    pub fn row_gemv_t(&self, i: usize, m: &[f64], out: &mut [f64]) {
        let k = out.len();
        match self {
            Design::Dense(d) => {
                out.fill(0.0);
                ops::rows_matvec_t_add(&m[..d.row(i).len() * k], d.row(i), out)
            }
            Design::Sparse(s) => {
                let (cols, vals) = s.row(i);
                ops::gather_set(cols, vals, m, out);
            }
        }
    }
    /// `out += x_i ⊗ g` for a row-major `ncols × k` output (`k = g.len()`): block `out[j, ·]`
    /// gets `x_ij · g`, touching only the stored entries of row i.
    /// Precondition: `out.len() == ncols · g.len()`.
    #[inline]
    pub fn row_outer_axpy(&self, i: usize, g: &[f64], out: &mut [f64]) {
        let k = g.len();
        match self {
            Design::Dense(d) => ops::outer_add(d.row(i), g, &mut out[..d.row(i).len() * k]),
            Design::Sparse(s) => {
                let (cols, vals) = s.row(i);
                ops::scatter_axpy(cols, vals, g, out);
            }
        }
    }
    /// Average number of stored entries per row (at least 1), a cost estimate for row kernels.
    pub fn mean_row_nnz(&self) -> usize {
        self.nnz().div_ceil(self.nrows().max(1)).max(1)
    }
    /// Checks that a batch only names existing rows.
    pub fn check_batch(&self, batch: Batch<'_>) -> Result<()> {
        if let Batch::Rows(rows) = batch {
            if let Some(&r) = rows.iter().find(|&&r| r >= self.nrows()) {
                return Err(KernelError::InvalidData {
                    what: "batch",
                    reason: format!("row index {r} >= number of samples {}", self.nrows()),
                });
            }
        }
        Ok(())
    }
}

/// The data row at position `position` of a batch (`position` itself for `Batch::Full`): the one
/// row accessor of the model passes.
#[inline]
pub fn batch_row(batch: Batch<'_>, position: usize) -> usize {
    match batch {
        Batch::Full => position,
        Batch::Rows(r) => r[position],
    }
}

/// Iterates over the row indices of a batch (all rows for `Batch::Full`).
pub fn batch_rows(batch: Batch<'_>, n: usize) -> impl Iterator<Item = usize> + Clone + '_ {
    let (full, rows) = match batch {
        Batch::Full => (0..n, &[][..]),
        Batch::Rows(r) => (0..0, r),
    };
    full.chain(rows.iter().copied())
}
