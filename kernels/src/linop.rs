//! Square linear operators `v ↦ Hv`: dense (one triangle read for symmetric matrices), sparse
//! CSR, diagonal and closures, with an adapter to faer's [`faer::matrix_free::LinOp`] so that
//! faer's own Krylov solvers and partial eigen-solvers run on any of them.

use crate::error::{check_finite, check_len, KernelError, Result};
use crate::ops;
use crate::sparse::CsrMatrix;
use faer::dyn_stack::{MemStack, StackReq};
use faer::mat::AsMatMut;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, MatRef, Par};

/// A square linear operator of dimension [`dim`](Operator::dim).
///
/// `apply` overwrites `out` with `H v`; both slices have length `dim()` (the solvers check this
/// once, up front). It must not allocate: it runs inside solver iterations.
pub trait Operator: Sync {
    /// The dimension n of the square operator.
    fn dim(&self) -> usize;
    /// Overwrites `out` with `H v` (both of length `dim()`); must not allocate.
    fn apply(&self, v: &[f64], out: &mut [f64]);
    /// Writes the diagonal of H into `out` and returns true, or returns false if it is not
    /// available cheaply (then a Jacobi preconditioner cannot be built).
    fn diagonal(&self, out: &mut [f64]) -> bool {
        let _ = out;
        false
    }
}

/// Marker: the operator is symmetric (`⟨Hu, v⟩ = ⟨u, Hv⟩`). CG, Richardson and Neumann need it.
pub trait SymmetricOperator: Operator {}

impl<O: Operator + ?Sized> Operator for &O {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        (**self).apply(v, out)
    }
    fn diagonal(&self, out: &mut [f64]) -> bool {
        (**self).diagonal(out)
    }
}
impl<O: SymmetricOperator + ?Sized> SymmetricOperator for &O {}

/// Largest relative asymmetry `|A_ij − A_ji| / max(|A_ij|, |A_ji|, 1)` accepted as symmetric.
pub const SYMMETRY_TOL: f64 = 1e-12;

/// Checks that `a` is square, finite and symmetric to [`SYMMETRY_TOL`].
pub fn check_symmetric(a: MatRef<'_, f64>) -> Result<()> {
    check_len("matrix columns", a.nrows(), a.ncols())?;
    for j in 0..a.ncols() {
        for i in j..a.nrows() {
            let (x, y) = (a[(i, j)], a[(j, i)]);
            if !x.is_finite() {
                return Err(KernelError::NonFinite { what: "matrix", index: i + j * a.nrows() });
            }
            let asym = (x - y).abs();
            if asym > SYMMETRY_TOL * x.abs().max(y.abs()).max(1.0) {
                return Err(KernelError::NotSymmetric { row: i, col: j, asymmetry: asym });
            }
        }
    }
    Ok(())
}

/// A dense symmetric matrix whose product reads only the lower triangle: half the bytes of a
/// general matrix-vector product, which is what a bandwidth-bound product costs.
///
/// Above [`DenseSym::PAR_MIN_DIM`] the columns are cut into [`DenseSym::BLOCKS`] blocks of equal
/// triangle area (a count fixed independently of the thread count), each block accumulating
/// into its own buffer, summed in block order: the same bits with 1 or N threads.
#[derive(Debug)]
pub struct DenseSym {
    a: Mat<f64>,
    /// BLOCKS output buffers for the parallel product (empty below PAR_MIN_DIM).
    scratch: std::sync::Mutex<Vec<f64>>,
}

impl Clone for DenseSym {
    fn clone(&self) -> Self {
        Self::from_checked(self.a.clone())
    }
}

impl DenseSym {
    /// Column blocks of the parallel product.
    pub const BLOCKS: usize = 4;
    /// Smallest dimension for which the product runs in parallel (an 800² matrix is 5 MiB; below, thread start-up costs more than it saves).
    pub const PAR_MIN_DIM: usize = 800;

    /// Takes ownership of a symmetric matrix; checks symmetry and finiteness.
    pub fn new(a: Mat<f64>) -> Result<Self> {
        check_symmetric(a.as_ref())?;
        Ok(Self::from_checked(a))
    }
    fn from_checked(a: Mat<f64>) -> Self {
        let n = a.nrows();
        let len = if n >= Self::PAR_MIN_DIM { Self::BLOCKS * n } else { 0 };
        Self { a, scratch: std::sync::Mutex::new(vec![0.0; len]) }
    }
    /// The matrix.
    pub fn matrix(&self) -> MatRef<'_, f64> {
        self.a.as_ref()
    }
    /// Gives the matrix back.
    pub fn into_inner(self) -> Mat<f64> {
        self.a
    }
}

/// `out = A v` for a symmetric column-major `a`, reading only its lower triangle (sequential).
pub fn sym_lower_matvec(a: MatRef<'_, f64>, v: &[f64], out: &mut [f64]) {
    out.fill(0.0);
    sym_lower_columns(a, v, 0..a.ncols(), out);
}

/// `out += A v` for a symmetric column-major `a`, reading only its lower triangle (sequential):
/// the per-sample kernel of sums of small symmetric matrices (a row-major symmetric matrix is
/// its own column-major form, so either storage works).
pub fn sym_lower_matvec_add(a: MatRef<'_, f64>, v: &[f64], out: &mut [f64]) {
    sym_lower_columns(a, v, 0..a.ncols(), out);
}

/// [`sym_lower_matvec_add`] that also prefetches the lower triangle of `next` (the
/// column-major storage of another matrix of the same size), one column per column done: for
/// sums over many small matrices stored apart, whose next one the hardware cannot anticipate.
pub fn sym_lower_matvec_add_prefetching(a: MatRef<'_, f64>, v: &[f64], out: &mut [f64], next: &[f64]) {
    ops::arch().dispatch(SymLowerColumns { a, v, cols: 0..a.ncols(), out, next: Some(next) })
}

/// Adds the contribution of lower-triangle columns `cols` of a symmetric `a` to `out = A v`.
///
/// Columns go by panels of four ([`ops::sym_panel4_simd`]): one pass over the rows below the
/// panel adds the panel's contribution to `out` and takes the four dots `A[i.., j]ᵀ v[i..]` that
/// stand for the (unread) upper triangle. The 4×4 diagonal blocks and the last < 4 columns
/// are done in scalar code. One SIMD dispatch for all the panels.
fn sym_lower_columns(a: MatRef<'_, f64>, v: &[f64], cols: std::ops::Range<usize>, out: &mut [f64]) {
    ops::arch().dispatch(SymLowerColumns { a, v, cols, out, next: None })
}

struct SymLowerColumns<'a> {
    a: MatRef<'a, f64>,
    v: &'a [f64],
    cols: std::ops::Range<usize>,
    out: &'a mut [f64],
    /// A matrix to prefetch column by column (see [`sym_lower_matvec_add_prefetching`]).
    next: Option<&'a [f64]>,
}

impl ops::WithSimd for SymLowerColumns<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: ops::Simd>(self, simd: S) {
        let Self { a, v, cols, out, next } = self;
        let n = a.nrows();
        let fetch = |c: usize| {
            if let Some(m) = next {
                ops::prefetch(&m[c * n + c..(c + 1) * n]);
            }
        };
        let col = |j: usize| a.col(j).try_as_col_major().expect("dense operators are stored column-major").as_slice();
        let mut j = cols.start;
        while j + 4 <= cols.end {
            (j..j + 4).for_each(fetch);
            let panel = [col(j), col(j + 1), col(j + 2), col(j + 3)];
            // Diagonal block (rows j..j+4): entry (i, k) with i ≥ k is read from column k.
            for k in 0..4 {
                for i in k..4 {
                    let aik = panel[k][j + i];
                    out[j + i] += aik * v[j + k];
                    if i != k {
                        out[j + k] += aik * v[j + i];
                    }
                }
            }
            let below = j + 4;
            let vj = [v[j], v[j + 1], v[j + 2], v[j + 3]];
            let dots = ops::sym_panel4_simd(simd, panel.map(|c| &c[below..]), vj, &v[below..], &mut out[below..]);
            for k in 0..4 {
                out[j + k] += dots[k];
            }
            j += 4;
        }
        for j in j..cols.end {
            fetch(j);
            let c = col(j);
            out[j] += c[j] * v[j];
            for i in j + 1..n {
                out[i] += c[i] * v[j];
                out[j] += c[i] * v[i];
            }
        }
    }
}

/// First column of block `b` of `blocks` when the lower triangle of an n×n matrix is cut into
/// blocks of equal area (a multiple of 4, so panels stay whole).
fn block_start(n: usize, b: usize, blocks: usize) -> usize {
    if b >= blocks {
        return n;
    }
    let frac = 1.0 - (1.0 - b as f64 / blocks as f64).sqrt();
    (((n as f64 * frac) as usize) / 4 * 4).min(n)
}

fn sym_lower_matvec_par(a: MatRef<'_, f64>, v: &[f64], out: &mut [f64], scratch: &mut [f64]) {
    let n = a.nrows();
    let blocks = scratch.len() / n;
    // Blocks [lo, hi) into their buffers, halves in parallel (rayon::join: no heap allocation).
    fn run(a: MatRef<'_, f64>, v: &[f64], lo: usize, hi: usize, blocks: usize, bufs: &mut [f64]) {
        let n = a.nrows();
        if hi - lo == 1 {
            bufs.fill(0.0);
            return sym_lower_columns(a, v, block_start(n, lo, blocks)..block_start(n, hi, blocks), bufs);
        }
        let mid = (lo + hi) / 2;
        let (l, r) = bufs.split_at_mut((mid - lo) * n);
        rayon::join(|| run(a, v, lo, mid, blocks, l), || run(a, v, mid, hi, blocks, r));
    }
    run(a, v, 0, blocks, blocks, scratch);
    out.copy_from_slice(&scratch[..n]);
    for buf in scratch.chunks_exact(n).skip(1) {
        ops::axpy(1.0, buf, out);
    }
}

impl Operator for DenseSym {
    fn dim(&self) -> usize {
        self.a.nrows()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if scratch.is_empty() {
            sym_lower_matvec(self.a.as_ref(), v, out)
        } else {
            sym_lower_matvec_par(self.a.as_ref(), v, out, &mut scratch)
        }
    }
    fn diagonal(&self, out: &mut [f64]) -> bool {
        out.iter_mut().enumerate().for_each(|(i, d)| *d = self.a[(i, i)]);
        true
    }
}
impl SymmetricOperator for DenseSym {}

/// A dense square matrix applied by faer's general matrix-vector product (the fallback for
/// non-symmetric matrices, e.g. the Jacobian systems of fixed-point problems).
#[derive(Clone, Debug)]
pub struct DenseGeneral {
    a: Mat<f64>,
    par: Par,
}

impl DenseGeneral {
    /// Takes ownership of a square matrix (checked square and finite), applied with parallelism `par`.
    pub fn new(a: Mat<f64>, par: Par) -> Result<Self> {
        check_len("matrix columns", a.nrows(), a.ncols())?;
        for j in 0..a.ncols() {
            check_finite("matrix", a.col(j).try_as_col_major().expect("owned Mat is column-major").as_slice())?;
        }
        Ok(Self { a, par })
    }
    /// The matrix.
    pub fn matrix(&self) -> MatRef<'_, f64> {
        self.a.as_ref()
    }
}

impl Operator for DenseGeneral {
    fn dim(&self) -> usize {
        self.a.nrows()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        let n = v.len();
        let v = MatRef::from_column_major_slice(v, n, 1);
        let out = MatMut::from_column_major_slice_mut(out, n, 1);
        faer::linalg::matmul::matmul(out, faer::Accum::Replace, self.a.as_ref(), v, 1.0, self.par);
    }
    fn diagonal(&self, out: &mut [f64]) -> bool {
        out.iter_mut().enumerate().for_each(|(i, d)| *d = self.a[(i, i)]);
        true
    }
}

/// A square sparse matrix in CSR form, applied row by row (each row one sparse dot).
impl Operator for CsrMatrix {
    fn dim(&self) -> usize {
        self.nrows()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.matvec(v, out)
    }
    fn diagonal(&self, out: &mut [f64]) -> bool {
        CsrMatrix::diagonal(self, out)
    }
}

/// A symmetric sparse matrix (checked at construction).
#[derive(Clone, Debug)]
pub struct SparseSym(CsrMatrix);

impl SparseSym {
    /// Takes ownership of a square CSR matrix; checks its symmetry (pattern and values, to
    /// [`SYMMETRY_TOL`]).
    pub fn new(a: CsrMatrix) -> Result<Self> {
        check_len("matrix columns", a.nrows(), a.ncols())?;
        let t = a.transpose();
        for i in 0..a.nrows() {
            let ((c1, v1), (c2, v2)) = (a.row(i), t.row(i));
            // Rows of a CsrMatrix are sorted by column, so A and Aᵀ compare entry by entry.
            if c1 != c2 {
                let k = c1.iter().zip(c2).position(|(p, q)| p != q).unwrap_or(c1.len().min(c2.len()));
                let col = c1.get(k).or(c2.get(k)).map_or(0, |&c| c as usize);
                return Err(KernelError::NotSymmetric { row: i, col, asymmetry: f64::INFINITY });
            }
            for ((&c, x), y) in c1.iter().zip(v1).zip(v2) {
                if (x - y).abs() > SYMMETRY_TOL * x.abs().max(y.abs()).max(1.0) {
                    return Err(KernelError::NotSymmetric { row: i, col: c as usize, asymmetry: (x - y).abs() });
                }
            }
        }
        Ok(Self(a))
    }
    /// The matrix.
    pub fn matrix(&self) -> &CsrMatrix {
        &self.0
    }
}

impl Operator for SparseSym {
    fn dim(&self) -> usize {
        self.0.nrows()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.0.matvec(v, out)
    }
    fn diagonal(&self, out: &mut [f64]) -> bool {
        self.0.diagonal(out)
    }
}
impl SymmetricOperator for SparseSym {}

/// A diagonal operator `diag(d)`.
#[derive(Clone, Debug)]
pub struct Diagonal(Vec<f64>);

impl Diagonal {
    /// `diag(d)`; checks that `d` is finite.
    pub fn new(d: Vec<f64>) -> Result<Self> {
        check_finite("diagonal", &d)?;
        Ok(Self(d))
    }
    /// The diagonal entries.
    pub fn values(&self) -> &[f64] {
        &self.0
    }
}

impl Operator for Diagonal {
    fn dim(&self) -> usize {
        self.0.len()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        out.iter_mut().zip(v).zip(&self.0).for_each(|((o, v), d)| *o = d * v);
    }
    fn diagonal(&self, out: &mut [f64]) -> bool {
        out.copy_from_slice(&self.0);
        true
    }
}
impl SymmetricOperator for Diagonal {}

/// An operator given by a closure `|v, out| ...` (for instance an HVP of a model at a point).
pub struct FnOp<F> {
    dim: usize,
    f: F,
}

impl<F: Fn(&[f64], &mut [f64]) + Sync> FnOp<F> {
    /// A general square operator.
    pub fn new(dim: usize, f: F) -> Self {
        Self { dim, f }
    }
    /// Declares the closure symmetric (the caller vouches for it); usable by CG.
    pub fn symmetric(dim: usize, f: F) -> SymFnOp<F> {
        SymFnOp(Self { dim, f })
    }
}

impl<F: Fn(&[f64], &mut [f64]) + Sync> Operator for FnOp<F> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        (self.f)(v, out)
    }
}

/// A closure declared symmetric by [`FnOp::symmetric`].
pub struct SymFnOp<F>(FnOp<F>);

impl<F: Fn(&[f64], &mut [f64]) + Sync> Operator for SymFnOp<F> {
    fn dim(&self) -> usize {
        self.0.dim
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        (self.0.f)(v, out)
    }
}
impl<F: Fn(&[f64], &mut [f64]) + Sync> SymmetricOperator for SymFnOp<F> {}

/// Adapter: any [`Operator`] as a faer [`LinOp`](faer::matrix_free::LinOp) (and, for symmetric
/// operators, a [`BiLinOp`](faer::matrix_free::BiLinOp)), so faer's `conjugate_gradient`,
/// `bicgstab` and partial eigen-solvers run on it.
pub struct FaerOp<O>(pub O);

impl<O> std::fmt::Debug for FaerOp<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaerOp")
    }
}

impl<O: Operator> FaerOp<O> {
    fn apply_cols(&self, mut out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, stack: &mut MemStack) {
        let n = self.0.dim();
        let (mut tmp, _) = faer::linalg::temp_mat_zeroed::<f64, _, _>(n, 2, stack);
        let mut tmp = tmp.as_mat_mut();
        for j in 0..rhs.ncols() {
            let (mut vin, mut vout) = tmp.rb_mut().split_at_col_mut(1);
            vin.rb_mut().col_mut(0).copy_from(rhs.col(j));
            let vin = vin.rb().col(0).try_as_col_major().unwrap().as_slice();
            let vout_s = vout.rb_mut().col_mut(0).try_as_col_major_mut().unwrap().as_slice_mut();
            self.0.apply(vin, vout_s);
            out.rb_mut().col_mut(j).copy_from(vout.rb().col(0));
        }
    }
}

impl<O: Operator> faer::matrix_free::LinOp<f64> for FaerOp<O> {
    fn apply_scratch(&self, _rhs_ncols: usize, _par: Par) -> StackReq {
        faer::linalg::temp_mat_scratch::<f64>(self.0.dim(), 2)
    }
    fn nrows(&self) -> usize {
        self.0.dim()
    }
    fn ncols(&self) -> usize {
        self.0.dim()
    }
    fn apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, _par: Par, stack: &mut MemStack) {
        self.apply_cols(out, rhs, stack)
    }
    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, _par: Par, stack: &mut MemStack) {
        self.apply_cols(out, rhs, stack)
    }
}

impl<O: SymmetricOperator> faer::matrix_free::BiLinOp<f64> for FaerOp<O> {
    fn transpose_apply_scratch(&self, _rhs_ncols: usize, _par: Par) -> StackReq {
        faer::linalg::temp_mat_scratch::<f64>(self.0.dim(), 2)
    }
    fn transpose_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, _par: Par, stack: &mut MemStack) {
        self.apply_cols(out, rhs, stack)
    }
    fn adjoint_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, _par: Par, stack: &mut MemStack) {
        self.apply_cols(out, rhs, stack)
    }
}

/// Materializes an operator as a dense matrix (column j = H e_j); for tests and small problems.
pub fn to_dense(op: &impl Operator) -> Mat<f64> {
    let n = op.dim();
    let mut m = Mat::zeros(n, n);
    let mut e = vec![0.0; n];
    let mut col = vec![0.0; n];
    for j in 0..n {
        e[j] = 1.0;
        op.apply(&e, &mut col);
        e[j] = 0.0;
        m.col_mut(j).iter_mut().zip(&col).for_each(|(m, c)| *m = *c);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(d: usize) -> Mat<f64> {
        Mat::from_fn(d, d, |i, j| ((i.min(j) * 7 + i.max(j) * 3) as f64 * 0.1).sin())
    }

    #[test]
    fn one_triangle_product_matches_the_full_product() {
        for d in [0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 64, 101] {
            let a = sym(d);
            let v: Vec<f64> = (0..d).map(|i| (i as f64 * 0.3).cos()).collect();
            let mut got = vec![f64::NAN; d];
            DenseSym::new(a.clone()).unwrap().apply(&v, &mut got);
            for i in 0..d {
                let want: f64 = (0..d).map(|j| a[(i, j)] * v[j]).sum();
                assert!((got[i] - want).abs() <= 1e-12 * (d as f64).max(1.0), "d={d} i={i}");
            }
        }
    }

    #[test]
    fn parallel_product_matches_and_is_deterministic() {
        let d = DenseSym::PAR_MIN_DIM + 5;
        let a = sym(d);
        let v: Vec<f64> = (0..d).map(|i| (i as f64 * 0.01).sin()).collect();
        let mut want = vec![0.0; d];
        sym_lower_matvec(a.as_ref(), &v, &mut want);
        let op = DenseSym::new(a).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = vec![0.0; d];
            pool.install(|| op.apply(&v, &mut out));
            out
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        for i in 0..d {
            assert!((one[i] - want[i]).abs() < 1e-10, "row {i}");
        }
    }

    #[test]
    fn only_the_lower_triangle_is_read() {
        let d = 11;
        let a = sym(d);
        let v: Vec<f64> = (0..d).map(|i| i as f64 - 5.0).collect();
        let mut want = vec![0.0; d];
        DenseSym::new(a.clone()).unwrap().apply(&v, &mut want);
        let mut poisoned = a.clone();
        (0..d).for_each(|j| (0..j).for_each(|i| poisoned[(i, j)] = f64::NAN));
        let mut got = vec![0.0; d];
        sym_lower_matvec(poisoned.as_ref(), &v, &mut got);
        assert_eq!(got, want);
    }

    #[test]
    fn operators_report_bad_input() {
        let mut a = sym(4);
        a[(0, 3)] += 1.0;
        assert!(matches!(DenseSym::new(a), Err(KernelError::NotSymmetric { .. })));
        assert!(matches!(DenseSym::new(Mat::zeros(2, 3)), Err(KernelError::DimensionMismatch { .. })));
        assert!(matches!(Diagonal::new(vec![1.0, f64::NAN]), Err(KernelError::NonFinite { index: 1, .. })));
        let ns = CsrMatrix::from_triplets(2, 2, &[(0, 1, 1.0)]).unwrap();
        assert!(matches!(SparseSym::new(ns), Err(KernelError::NotSymmetric { .. })));
    }

    #[test]
    fn sparse_diagonal_and_closure_operators_match_dense() {
        let a = sym(9);
        let dense = DenseSym::new(a.clone()).unwrap();
        let sparse = SparseSym::new(CsrMatrix::from_dense(a.as_ref()).unwrap()).unwrap();
        let closure = FnOp::symmetric(9, |v: &[f64], out: &mut [f64]| dense.apply(v, out));
        let want = to_dense(&dense);
        for m in [to_dense(&sparse), to_dense(&closure)] {
            assert!((&m - &want).norm_max() < 1e-14);
        }
        let (mut d1, mut d2) = (vec![0.0; 9], vec![0.0; 9]);
        assert!(dense.diagonal(&mut d1) && sparse.diagonal(&mut d2));
        assert_eq!(d1, d2);
        let diag = Diagonal::new(d1.clone()).unwrap();
        assert_eq!(to_dense(&diag).diagonal().column_vector().iter().copied().collect::<Vec<_>>(), d1);
    }

    #[test]
    fn faer_conjugate_gradient_runs_on_our_operator() {
        use faer::linalg::solvers::Solve;
        use faer::matrix_free::conjugate_gradient::{conjugate_gradient, conjugate_gradient_scratch, CgParams};
        let d = 30;
        let a = Mat::from_fn(d, d, |i, j| if i == j { 2.0 + i as f64 / d as f64 } else { 0.01 / (1 + i + j) as f64 });
        let a = Mat::from_fn(d, d, |i, j| 0.5 * (a[(i, j)] + a[(j, i)]));
        let b = Mat::from_fn(d, 1, |i, _| (i as f64).sin());
        let op = FaerOp(DenseSym::new(a.clone()).unwrap());
        let precond = faer::matrix_free::IdentityPrecond { dim: d };
        let mut x = Mat::zeros(d, 1);
        let mut mem = faer::dyn_stack::MemBuffer::new(conjugate_gradient_scratch(precond, &op, 1, Par::Seq));
        let params = CgParams { abs_tolerance: 1e-13, rel_tolerance: 1e-13, max_iters: 200, ..Default::default() };
        conjugate_gradient(x.as_mut(), precond, &op, b.as_ref(), params, |_| {}, Par::Seq, MemStack::new(&mut mem))
            .unwrap();
        let exact = a.llt(faer::Side::Lower).unwrap().solve(&b);
        assert!((&x - &exact).norm_max() < 1e-10);
    }
}
