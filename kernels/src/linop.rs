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
    fn dim(&self) -> usize;
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
/// Column j of the lower triangle is used twice in one pass ([`ops::dot_axpy`]):
/// `out_j += A[j.., j]ᵀ v[j..]` and `out[j+1..] += v_j A[j+1.., j]`.
#[derive(Clone, Debug)]
pub struct DenseSym {
    a: Mat<f64>,
}

impl DenseSym {
    /// Takes ownership of a symmetric matrix; checks symmetry and finiteness.
    pub fn new(a: Mat<f64>) -> Result<Self> {
        check_symmetric(a.as_ref())?;
        Ok(Self { a })
    }
    pub fn matrix(&self) -> MatRef<'_, f64> {
        self.a.as_ref()
    }
    pub fn into_inner(self) -> Mat<f64> {
        self.a
    }
}

/// `out = A v` for a symmetric column-major `a`, reading only its lower triangle.
pub fn sym_lower_matvec(a: MatRef<'_, f64>, v: &[f64], out: &mut [f64]) {
    let n = a.nrows();
    out.fill(0.0);
    for j in 0..n {
        let col = a.col(j).try_as_col_major().expect("dense operators are stored column-major");
        let col = &col.as_slice()[j..];
        let (head, tail) = out[j..].split_at_mut(1);
        let below = ops::dot_axpy(&col[1..], &v[j + 1..], v[j], tail);
        head[0] += col[0] * v[j] + below;
    }
}

impl Operator for DenseSym {
    fn dim(&self) -> usize {
        self.a.nrows()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        sym_lower_matvec(self.a.as_ref(), v, out)
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
    pub fn new(a: Mat<f64>, par: Par) -> Result<Self> {
        check_len("matrix columns", a.nrows(), a.ncols())?;
        for j in 0..a.ncols() {
            check_finite("matrix", a.col(j).try_as_col_major().expect("owned Mat is column-major").as_slice())?;
        }
        Ok(Self { a, par })
    }
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
    pub fn new(d: Vec<f64>) -> Result<Self> {
        check_finite("diagonal", &d)?;
        Ok(Self(d))
    }
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
