//! A compressed-sparse-row matrix with `u32` column indices (12 bytes per non-zero instead of
//! faer's 16: a sparse product is bandwidth-bound, so index bytes count).

use crate::error::{KernelError, Result};
use crate::par::PAR_MIN_LEN;
use rayon::prelude::*;

/// CSR matrix: row i holds `indices[indptr[i]..indptr[i+1]]` (strictly increasing columns)
/// and the matching `values`.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrMatrix {
    nrows: usize,
    ncols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f64>,
}

impl CsrMatrix {
    /// Builds from raw CSR arrays, validating the structure (monotone `indptr`, in-range and
    /// strictly increasing column indices per row, finite values).
    pub fn new(nrows: usize, ncols: usize, indptr: Vec<usize>, indices: Vec<u32>, values: Vec<f64>) -> Result<Self> {
        let bad = |reason: String| Err(KernelError::InvalidData { what: "CSR matrix", reason });
        if ncols > u32::MAX as usize {
            return bad(format!("{ncols} columns exceed the u32 index range"));
        }
        if indptr.len() != nrows + 1 {
            return bad(format!("indptr has length {}, expected nrows + 1 = {}", indptr.len(), nrows + 1));
        }
        if indptr[0] != 0 || indptr[nrows] != indices.len() || indices.len() != values.len() {
            return bad(format!(
                "indptr must start at 0 and end at nnz; got {}..{} with {} indices and {} values",
                indptr[0],
                indptr[nrows],
                indices.len(),
                values.len()
            ));
        }
        for i in 0..nrows {
            if indptr[i] > indptr[i + 1] {
                return bad(format!("indptr decreases at row {i}"));
            }
            let cols = &indices[indptr[i]..indptr[i + 1]];
            if let Some(&c) = cols.iter().find(|&&c| c as usize >= ncols) {
                return bad(format!("row {i} has column {c} >= ncols = {ncols}"));
            }
            if cols.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("row {i} has unsorted or repeated column indices"));
            }
        }
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::NonFinite { what: "CSR values", index: k });
        }
        Ok(Self { nrows, ncols, indptr, indices, values })
    }

    /// Builds from `(row, col, value)` triplets in any order; duplicates are summed.
    pub fn from_triplets(nrows: usize, ncols: usize, triplets: &[(usize, usize, f64)]) -> Result<Self> {
        if let Some(&(r, c, _)) = triplets.iter().find(|(r, c, _)| *r >= nrows || *c >= ncols) {
            return Err(KernelError::InvalidData {
                what: "triplets",
                reason: format!("entry ({r}, {c}) outside a {nrows}x{ncols} matrix"),
            });
        }
        let mut t = triplets.to_vec();
        t.sort_by_key(|&(r, c, _)| (r, c));
        let mut indptr = vec![0usize; nrows + 1];
        let (mut indices, mut values) = (Vec::with_capacity(t.len()), Vec::with_capacity(t.len()));
        let mut last: Option<(usize, usize)> = None;
        for (r, c, v) in t {
            if last == Some((r, c)) {
                *values.last_mut().expect("a previous entry exists") += v;
                continue;
            }
            indices.push(c as u32);
            values.push(v);
            indptr[r + 1] += 1;
            last = Some((r, c));
        }
        for i in 0..nrows {
            indptr[i + 1] += indptr[i];
        }
        Self::new(nrows, ncols, indptr, indices, values)
    }

    /// Converts a dense matrix, keeping the non-zeros.
    pub fn from_dense(a: faer::MatRef<'_, f64>) -> Result<Self> {
        let mut t = Vec::new();
        for i in 0..a.nrows() {
            for j in 0..a.ncols() {
                if a[(i, j)] != 0.0 {
                    t.push((i, j, a[(i, j)]));
                }
            }
        }
        Self::from_triplets(a.nrows(), a.ncols(), &t)
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }
    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }
    /// Row pointers: row `i` is `indptr[i]..indptr[i + 1]` (`nrows + 1` entries).
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }
    /// Column index of each stored entry (sorted within a row).
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    /// Value of each stored entry.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Column indices and values of row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[r.clone()], &self.values[r])
    }

    /// `x_iᵀ v` for row i. Four partial sums: a single accumulator would make every non-zero
    /// wait for the previous multiply-add (4 cycles of latency), which, not memory, was the
    /// limit of the sparse HVP.
    #[inline]
    pub fn row_dot(&self, i: usize, v: &[f64]) -> f64 {
        let (c, x) = self.row(i);
        let (c4, c1) = c.as_chunks::<4>();
        let (x4, x1) = x.as_chunks::<4>();
        let mut acc = [0.0; 4];
        for (c, x) in c4.iter().zip(x4) {
            for k in 0..4 {
                acc[k] += x[k] * v[c[k] as usize];
            }
        }
        let tail: f64 = c1.iter().zip(x1).map(|(&c, x)| x * v[c as usize]).sum();
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    }

    /// `out += alpha · x_i` for row i.
    #[inline]
    pub fn row_axpy(&self, i: usize, alpha: f64, out: &mut [f64]) {
        let (c, x) = self.row(i);
        c.iter().zip(x).for_each(|(&c, x)| out[c as usize] += alpha * x);
    }

    /// `out = A v`, rows in parallel when nnz is large (each row is independent: deterministic).
    pub fn matvec(&self, v: &[f64], out: &mut [f64]) {
        assert_eq!(v.len(), self.ncols, "vector lengths differ");
        assert_eq!(out.len(), self.nrows, "vector lengths differ");
        if self.nnz() >= PAR_MIN_LEN {
            out.par_iter_mut().with_min_len(256).enumerate().for_each(|(i, o)| *o = self.row_dot(i, v));
        } else {
            out.iter_mut().enumerate().for_each(|(i, o)| *o = self.row_dot(i, v));
        }
    }

    /// `out = Aᵀ v`, row by row (scatter; sequential).
    pub fn transpose_matvec(&self, v: &[f64], out: &mut [f64]) {
        assert_eq!(v.len(), self.nrows, "vector lengths differ");
        assert_eq!(out.len(), self.ncols, "vector lengths differ");
        out.fill(0.0);
        for (i, &vi) in v.iter().enumerate() {
            self.row_axpy(i, vi, out);
        }
    }

    /// The transpose, as a new CSR matrix (rows sorted).
    pub fn transpose(&self) -> Self {
        let mut counts = vec![0usize; self.ncols + 1];
        self.indices.iter().for_each(|&c| counts[c as usize + 1] += 1);
        for j in 0..self.ncols {
            counts[j + 1] += counts[j];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0.0; self.nnz()];
        for i in 0..self.nrows {
            let (c, x) = self.row(i);
            for (&c, &x) in c.iter().zip(x) {
                let k = next[c as usize];
                indices[k] = i as u32;
                values[k] = x;
                next[c as usize] += 1;
            }
        }
        Self { nrows: self.ncols, ncols: self.nrows, indptr, indices, values }
    }

    /// A new matrix made of the given rows, in the given order (a mini-batch as its own matrix).
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.nrows) {
            return Err(KernelError::InvalidData {
                what: "row selection",
                reason: format!("row {r} >= {}", self.nrows),
            });
        }
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        indptr.push(0);
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        for &r in rows {
            let (c, x) = self.row(r);
            indices.extend_from_slice(c);
            values.extend_from_slice(x);
            indptr.push(indices.len());
        }
        Ok(Self { nrows: rows.len(), ncols: self.ncols, indptr, indices, values })
    }

    /// Writes the diagonal; true.
    pub fn diagonal(&self, out: &mut [f64]) -> bool {
        for (i, d) in out.iter_mut().enumerate() {
            let (c, x) = self.row(i);
            *d = c.binary_search(&(i as u32)).map_or(0.0, |k| x[k]);
        }
        true
    }

    /// As a dense faer matrix (tests, small problems).
    pub fn to_dense(&self) -> faer::Mat<f64> {
        let mut m = faer::Mat::zeros(self.nrows, self.ncols);
        for i in 0..self.nrows {
            let (c, x) = self.row(i);
            c.iter().zip(x).for_each(|(&c, &x)| m[(i, c as usize)] = x);
        }
        m
    }

    /// As a faer sparse matrix (for faer's sparse factorizations).
    pub fn to_faer(&self) -> faer::sparse::SparseRowMat<usize, f64> {
        let t: Vec<faer::sparse::Triplet<usize, usize, f64>> = (0..self.nrows)
            .flat_map(|i| {
                let (c, x) = self.row(i);
                c.iter().zip(x).map(move |(&c, &x)| faer::sparse::Triplet::new(i, c as usize, x)).collect::<Vec<_>>()
            })
            .collect();
        faer::sparse::SparseRowMat::try_new_from_triplets(self.nrows, self.ncols, &t)
            .expect("a valid CsrMatrix converts to faer")
    }
}
