//! Quadratic forms in (x, y) and the quadratic bilevel problem with its closed-form references.
//!
//! ```text
//! q(x, y) = ½ yᵀA y + yᵀB x + cᵀy + ½ xᵀP x + dᵀx
//! ∂y q = A y + B x + c,   ∂x q = Bᵀy + P x + d,   ∂yy q·v = A v,   ∂x∂y q·v = Bᵀv
//! ```
//!
//! [`QuadraticBilevel`] is the synthetic problem of Arbel & Mairal, *Amortized Implicit
//! Differentiation for Stochastic Bilevel Optimization* (AmIGO, ICLR 2022), App. F.1:
//! f(x, y) = ½ xᵀA_f x + yᵀC_f, g(x, y) = ½ yᵀA_g y + yᵀB_g x, generalized to two full
//! quadratic forms. Its lower-level solution, adjoint, value and hypergradient are known in
//! closed form (one dense Cholesky of A_g), which is what the solvers are measured against.
//!
//! Products with the dense d_y×d_x matrix B: B x by panels of four columns over row blocks (one
//! per thread; each entry's chain of multiply-adds does not depend on the blocks), Bᵀv over
//! fixed blocks of [`B_BLOCK`] columns, each a sequential faer product (the blocks are the same
//! whatever the thread count). Either way results are bitwise identical with 1 or N threads,
//! and with `Par::Seq`.
//! (faer's own `Par::Rayon` column-major matrix-vector product splits the inner dimension by the
//! thread count and sums per-thread partials, and allocates: not deterministic across thread
//! counts, hence not used.)

use crate::error::{check_finite, check_len, KernelError, Result};
use crate::linop::{check_symmetric, DenseSym, Operator};
use crate::ops;
use crate::par::PAR_MIN_LEN;
use crate::problem::{Batch, BilevelProblem, ExactReference, StepBatches};
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::{Llt, Solve};
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;
use std::sync::{Mutex, OnceLock};

/// Columns of B per block of the parallel Bᵀv. A multiple of every SIMD width, so a block
/// boundary never changes how an entry is computed.
pub const B_BLOCK: usize = 256;

/// A quadratic form q(x, y) = ½ yᵀA y + yᵀB x + cᵀy + ½ xᵀP x + dᵀx (see the module doc).
///
/// Every term is optional (absent = 0): the upper-level f of AmIGO App. F.1 has no yᵀAy term,
/// and storing a zero d_y×d_y matrix would cost a useless product per ∂y f call.
/// A and P are symmetric ([`DenseSym`], products read one triangle); B is d_y×d_x.
///
/// The derivative methods are hot-path calls: they do not allocate and take as a precondition
/// (validated once by the constructor for the data, by the caller for the arguments) that
/// `x.len() == dim_x()`, `y.len() == dim_y()` and outputs have the length of their space;
/// a mismatch panics (slice length contract of [`ops`]).
#[derive(Debug)]
pub struct QuadraticForm {
    dim_x: usize,
    dim_y: usize,
    a: Option<DenseSym>,
    b: Option<Mat<f64>>,
    p: Option<DenseSym>,
    c: Option<Vec<f64>>,
    d: Option<Vec<f64>>,
    par: Option<Par>,
    /// d_y buffer holding B x + c in [`grad_y`](Self::grad_y) and the hoisted inner loop.
    scratch: Mutex<Vec<f64>>,
}

impl Clone for QuadraticForm {
    fn clone(&self) -> Self {
        Self {
            dim_x: self.dim_x,
            dim_y: self.dim_y,
            a: self.a.clone(),
            b: self.b.clone(),
            p: self.p.clone(),
            c: self.c.clone(),
            d: self.d.clone(),
            par: self.par,
            scratch: Mutex::new(vec![0.0; self.dim_y]),
        }
    }
}

impl QuadraticForm {
    /// The zero form on R^dim_x × R^dim_y; add terms with the `with_*` builders.
    pub fn new(dim_x: usize, dim_y: usize) -> Self {
        Self {
            dim_x,
            dim_y,
            a: None,
            b: None,
            p: None,
            c: None,
            d: None,
            par: None,
            scratch: Mutex::new(vec![0.0; dim_y]),
        }
    }
    /// Sets A (d_y×d_y, symmetric, finite).
    pub fn with_a(mut self, a: Mat<f64>) -> Result<Self> {
        check_len("A rows", self.dim_y, a.nrows())?;
        check_symmetric(a.as_ref())?;
        self.a = Some(DenseSym::new(a)?);
        Ok(self)
    }
    /// Sets B (d_y×d_x, finite).
    pub fn with_b(mut self, b: Mat<f64>) -> Result<Self> {
        check_len("B rows", self.dim_y, b.nrows())?;
        check_len("B columns", self.dim_x, b.ncols())?;
        for j in 0..b.ncols() {
            if let Some(i) = (0..b.nrows()).find(|&i| !b[(i, j)].is_finite()) {
                return Err(KernelError::NonFinite { what: "B", index: i + j * b.nrows() });
            }
        }
        self.b = Some(b);
        Ok(self)
    }
    /// Sets P (d_x×d_x, symmetric, finite).
    pub fn with_p(mut self, p: Mat<f64>) -> Result<Self> {
        check_len("P rows", self.dim_x, p.nrows())?;
        check_symmetric(p.as_ref())?;
        self.p = Some(DenseSym::new(p)?);
        Ok(self)
    }
    /// Sets c (length d_y, finite).
    pub fn with_c(mut self, c: Vec<f64>) -> Result<Self> {
        check_len("c", self.dim_y, c.len())?;
        check_finite("c", &c)?;
        self.c = Some(c);
        Ok(self)
    }
    /// Sets d (length d_x, finite).
    pub fn with_d(mut self, d: Vec<f64>) -> Result<Self> {
        check_len("d", self.dim_x, d.len())?;
        check_finite("d", &d)?;
        self.d = Some(d);
        Ok(self)
    }
    /// Parallelism of the B products: `Par::Seq`, or any `Par::Rayon(_)` for the fixed-block
    /// parallel product on the current rayon pool (the thread count in it is not used: the
    /// blocks do not depend on it). Default: `Par::Seq` when B has fewer than
    /// [`PAR_MIN_LEN`] entries, else `Par::rayon(0)`.
    pub fn with_par(mut self, par: Par) -> Self {
        self.par = Some(par);
        self
    }

    /// Length of x.
    pub fn dim_x(&self) -> usize {
        self.dim_x
    }
    /// Length of y.
    pub fn dim_y(&self) -> usize {
        self.dim_y
    }
    /// A (d_y × d_y, symmetric), if set.
    pub fn a(&self) -> Option<&DenseSym> {
        self.a.as_ref()
    }
    /// B (d_y × d_x), if set.
    pub fn b(&self) -> Option<MatRef<'_, f64>> {
        self.b.as_ref().map(|b| b.as_ref())
    }
    /// P (d_x × d_x, symmetric), if set.
    pub fn p(&self) -> Option<&DenseSym> {
        self.p.as_ref()
    }
    /// c (length d_y), if set.
    pub fn c(&self) -> Option<&[f64]> {
        self.c.as_deref()
    }
    /// d (length d_x), if set.
    pub fn d(&self) -> Option<&[f64]> {
        self.d.as_deref()
    }
    /// The parallelism the B products use (explicit, or the size-based default).
    pub fn par(&self) -> Par {
        self.par.unwrap_or(if self.dim_x * self.dim_y >= PAR_MIN_LEN { Par::rayon(0) } else { Par::Seq })
    }

    /// q(x, y). One sequential pass over each matrix (one triangle of A and P); no allocation.
    pub fn value(&self, x: &[f64], y: &[f64]) -> f64 {
        let mut q = 0.0;
        if let Some(a) = &self.a {
            q += half_quad_form(a.matrix(), y);
        }
        if let Some(b) = &self.b {
            // yᵀB x = Σ_j x_j (B[:, j]ᵀ y).
            q += (0..self.dim_x).map(|j| x[j] * ops::dot_seq(col(b.as_ref(), j), y)).sum::<f64>();
        }
        if let Some(c) = &self.c {
            q += ops::dot(c, y);
        }
        if let Some(p) = &self.p {
            q += half_quad_form(p.matrix(), x);
        }
        if let Some(d) = &self.d {
            q += ops::dot(d, x);
        }
        q
    }

    /// `out = B x + c`: the part of ∂y q that depends on x only (hoisted out of inner loops).
    pub fn linear_term_y(&self, x: &[f64], out: &mut [f64]) {
        match &self.b {
            Some(b) => b_times(b.as_ref(), x, out, Accum::Replace, self.par()),
            None => out.fill(0.0),
        }
        if let Some(c) = &self.c {
            ops::axpy(1.0, c, out);
        }
    }

    /// `out = A y + bx_c`, with `bx_c` from [`linear_term_y`](Self::linear_term_y).
    pub fn grad_y_with_linear_term(&self, y: &[f64], bx_c: &[f64], out: &mut [f64]) {
        match &self.a {
            Some(a) => {
                a.apply(y, out);
                ops::axpy(1.0, bx_c, out);
            }
            None => out.copy_from_slice(bx_c),
        }
    }

    /// `out = ∂y q = A y + B x + c`, computed as `A y + (B x + c)` so that it has the same bits
    /// as the hoisted pair [`linear_term_y`](Self::linear_term_y) +
    /// [`grad_y_with_linear_term`](Self::grad_y_with_linear_term). Uses the form's internal
    /// d_y buffer (a mutex: concurrent calls on one form wait for each other).
    pub fn grad_y(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        let mut s = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        self.linear_term_y(x, &mut s);
        self.grad_y_with_linear_term(y, &s, out);
    }

    /// `out = ∂x q = Bᵀy + P x + d`.
    pub fn grad_x(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        let accum = match &self.p {
            Some(p) => {
                p.apply(x, out);
                Accum::Add
            }
            None => Accum::Replace,
        };
        match &self.b {
            Some(b) => bt_times(b.as_ref(), y, out, accum, self.par()),
            None if accum == Accum::Replace => out.fill(0.0),
            None => {}
        }
        if let Some(d) = &self.d {
            ops::axpy(1.0, d, out);
        }
    }

    /// `out = ∂yy q · v = A v`.
    pub fn hvp_yy(&self, v: &[f64], out: &mut [f64]) {
        match &self.a {
            Some(a) => a.apply(v, out),
            None => out.fill(0.0),
        }
    }

    /// `out = ∂x∂y q · v = Bᵀ v` (v in y-space, out in x-space).
    pub fn cross_xy(&self, v: &[f64], out: &mut [f64]) {
        match &self.b {
            Some(b) => bt_times(b.as_ref(), v, out, Accum::Replace, self.par()),
            None => out.fill(0.0),
        }
    }
}

/// Column j of a column-major matrix as a slice.
fn col(m: MatRef<'_, f64>, j: usize) -> &[f64] {
    m.col(j).try_as_col_major().expect("owned faer matrices are column-major").as_slice()
}

/// ½ vᵀA v for symmetric A, reading the lower triangle: Σ_j v_j (½ A_jj v_j + A[j+1.., j]ᵀ v[j+1..]).
fn half_quad_form(a: MatRef<'_, f64>, v: &[f64]) -> f64 {
    (0..a.ncols())
        .map(|j| {
            let c = col(a, j);
            v[j] * (0.5 * c[j] * v[j] + ops::dot_seq(&c[j + 1..], &v[j + 1..]))
        })
        .sum()
}

/// `out (=|+=) B x` for a column-major B: four columns per pass of the output
/// ([`ops::axpy_panel4`]); with `par` Rayon the rows are cut into one block per thread (a
/// multiple of 8 rows each). Every entry is the same chain of multiply-adds over the columns in
/// order whatever the blocks, so the bits do not depend on the thread count. Long blocks matter:
/// the loop streams 4 column segments at once, and 256-row segments (2 KB) ran at 0.7× the
/// speed of whole columns; a faer product per row block was slower still (its strided path).
fn b_times(b: MatRef<'_, f64>, x: &[f64], out: &mut [f64], accum: Accum, par: Par) {
    let n = b.ncols();
    let rows_per = match par {
        Par::Seq => out.len().max(1),
        _ => out.len().div_ceil(rayon::current_num_threads()).next_multiple_of(8).max(8),
    };
    let block = |(k, o): (usize, &mut [f64])| {
        if accum == Accum::Replace {
            o.fill(0.0);
        }
        let rows = k * rows_per..k * rows_per + o.len();
        let col = |j: usize| &col(b, j)[rows.clone()];
        let mut j = 0;
        while j + 4 <= n {
            ops::axpy_panel4([col(j), col(j + 1), col(j + 2), col(j + 3)], [x[j], x[j + 1], x[j + 2], x[j + 3]], o);
            j += 4;
        }
        for (j, &xj) in x.iter().enumerate().skip(j) {
            ops::axpy_seq(xj, col(j), o);
        }
    };
    match par {
        Par::Seq => out.chunks_mut(rows_per).enumerate().for_each(block),
        _ => out.par_chunks_mut(rows_per).enumerate().for_each(block),
    }
}

/// `out (=|+=) Bᵀ v`, over fixed blocks of [`B_BLOCK`] columns of B.
fn bt_times(b: MatRef<'_, f64>, v: &[f64], out: &mut [f64], accum: Accum, par: Par) {
    let vm = MatRef::from_column_major_slice(v, v.len(), 1);
    let block = |(k, o): (usize, &mut [f64])| {
        let cols = o.len();
        let om = MatMut::from_column_major_slice_mut(o, cols, 1);
        matmul(om, accum, b.subcols(k * B_BLOCK, cols).transpose(), vm, 1.0, Par::Seq);
    };
    match par {
        Par::Seq => out.chunks_mut(B_BLOCK).enumerate().for_each(block),
        _ => out.par_chunks_mut(B_BLOCK).enumerate().for_each(block),
    }
}

/// The deterministic quadratic bilevel problem: upper level `f`, lower level `g`, both
/// [`QuadraticForm`]s (AmIGO App. F.1 is the case f = ½xᵀA_f x + yᵀC_f, g = ½yᵀA_g y + yᵀB_g x,
/// see [`QuadraticBilevel::amigo_f1`]). Batches are ignored (one sample per level).
///
/// Closed forms (the [`ExactReference`]), with A_g = LLᵀ factored once at construction:
/// y*(x) = −A_g⁻¹(B_g x + c_g), v*(x) = A_g⁻¹ ∂y f(x, y*), ∇L(x) = ∂x f(x, y*) − B_gᵀ v*.
/// The reference methods allocate (they measure errors; they are not on any hot path).
#[derive(Debug)]
pub struct QuadraticBilevel {
    f: QuadraticForm,
    g: QuadraticForm,
    /// Cholesky factor of A_g.
    llt_g: Llt<f64>,
    /// (x*, L*), computed on first request.
    minimum: OnceLock<Option<(Vec<f64>, f64)>>,
}

impl QuadraticBilevel {
    /// Checks that f and g live on the same spaces and that A_g is positive definite
    /// (g strongly convex in y), and factors A_g.
    pub fn new(f: QuadraticForm, g: QuadraticForm) -> Result<Self> {
        check_len("dim_x of g", f.dim_x(), g.dim_x())?;
        check_len("dim_y of g", f.dim_y(), g.dim_y())?;
        let not_pd = || KernelError::InvalidParameter {
            name: "A_g",
            reason: "the lower-level Hessian must be positive definite (Cholesky failed)".into(),
        };
        let a_g = g.a().ok_or_else(not_pd)?;
        let llt_g = a_g.matrix().llt(Side::Lower).map_err(|_| not_pd())?;
        Ok(Self { f, g, llt_g, minimum: OnceLock::new() })
    }

    /// AmIGO App. F.1: f(x, y) = ½ xᵀA_f x + yᵀC_f, g(x, y) = ½ yᵀA_g y + yᵀB_g x, with
    /// A_f (d_x×d_x) and A_g (d_y×d_y) symmetric positive definite, B_g d_y×d_x, C_f ∈ R^{d_y}.
    pub fn amigo_f1(a_f: Mat<f64>, c_f: Vec<f64>, a_g: Mat<f64>, b_g: Mat<f64>) -> Result<Self> {
        let (dx, dy) = (a_f.nrows(), a_g.nrows());
        let f = QuadraticForm::new(dx, dy).with_p(a_f)?.with_c(c_f)?;
        let g = QuadraticForm::new(dx, dy).with_a(a_g)?.with_b(b_g)?;
        Self::new(f, g)
    }

    /// The upper-level objective f.
    pub fn upper(&self) -> &QuadraticForm {
        &self.f
    }
    /// The lower-level objective g.
    pub fn lower(&self) -> &QuadraticForm {
        &self.g
    }

    /// Solves A_g z = rhs in place.
    fn solve_g(&self, rhs: &mut [f64]) {
        let n = rhs.len();
        self.llt_g.solve_in_place(MatMut::from_column_major_slice_mut(rhs, n, 1));
    }

    /// (x*, L*) in closed form: y*(x) = M x + m with M = −A_g⁻¹B_g, so L is quadratic with
    /// Hessian H_L = P_f + MᵀA_f M + B_fᵀM + MᵀB_f and gradient ∇L(0) at 0; x* = −H_L⁻¹∇L(0)
    /// when H_L is positive definite (Cholesky succeeds), else None.
    fn compute_minimum(&self) -> Option<(Vec<f64>, f64)> {
        let (dx, dy) = (self.f.dim_x(), self.f.dim_y());
        let par = self.g.par();
        // M = −A_g⁻¹ B_g (d_y×d_x).
        let mut m = match self.g.b() {
            Some(b) => -b.to_owned(),
            None => Mat::zeros(dy, dx),
        };
        self.llt_g.solve_in_place(m.as_mut());
        let mut h = match self.f.p() {
            Some(p) => p.matrix().to_owned(),
            None => Mat::zeros(dx, dx),
        };
        if let Some(a_f) = self.f.a() {
            let mut am = Mat::zeros(dy, dx);
            matmul(am.as_mut(), Accum::Replace, a_f.matrix(), m.as_ref(), 1.0, par);
            matmul(h.as_mut(), Accum::Add, m.transpose(), am.as_ref(), 1.0, par);
        }
        if let Some(b_f) = self.f.b() {
            let mut bm = Mat::zeros(dx, dx);
            matmul(bm.as_mut(), Accum::Replace, b_f.transpose(), m.as_ref(), 1.0, par);
            h += &bm + bm.transpose();
        }
        // Symmetrize the rounding before factoring.
        let h = Mat::from_fn(dx, dx, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
        let llt = h.llt(Side::Lower).ok()?;
        let mut x = vec![0.0; dx];
        let zero = vec![0.0; dx];
        self.hypergradient(&zero, &mut x);
        ops::scale(-1.0, &mut x);
        llt.solve_in_place(MatMut::from_column_major_slice_mut(&mut x, dx, 1));
        let value = self.value(&x);
        (value.is_finite() && x.iter().all(|v| v.is_finite())).then_some((x, value))
    }
}

impl BilevelProblem for QuadraticBilevel {
    fn dim_x(&self) -> usize {
        self.f.dim_x()
    }
    fn dim_y(&self) -> usize {
        self.f.dim_y()
    }
    fn f(&self, x: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        self.f.value(x, y)
    }
    fn g(&self, x: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        self.g.value(x, y)
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.f.grad_x(x, y, out)
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.f.grad_y(x, y, out)
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.g.grad_y(x, y, out)
    }
    fn hvp(&self, _: &[f64], _: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.g.hvp_yy(v, out)
    }
    fn cross(&self, _: &[f64], _: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.g.cross_xy(v, out)
    }
    /// B_g x + c_g is computed once per call, then each step is one product with A_g:
    /// `y ← y − α (A_g y + (B_g x + c_g))`, the same bits as the per-step loop.
    fn inner_gradient_steps(&self, x: &[f64], y: &mut [f64], alpha: f64, batches: StepBatches<'_>, work: &mut [f64]) {
        let steps = batches.steps();
        if steps == 0 {
            return;
        }
        let mut s = self.g.scratch.lock().unwrap_or_else(|e| e.into_inner());
        self.g.linear_term_y(x, &mut s);
        for _ in 0..steps {
            self.g.grad_y_with_linear_term(y, &s, work);
            ops::axpy(-alpha, work, y);
        }
    }
    fn exact(&self) -> Option<&dyn ExactReference> {
        Some(self)
    }
}

impl ExactReference for QuadraticBilevel {
    fn y_star(&self, x: &[f64], out: &mut [f64]) {
        self.g.linear_term_y(x, out);
        self.solve_g(out);
        ops::scale(-1.0, out);
    }
    fn v_star(&self, x: &[f64], out: &mut [f64]) {
        let mut y = vec![0.0; self.f.dim_y()];
        self.y_star(x, &mut y);
        self.f.grad_y(x, &y, out);
        self.solve_g(out);
    }
    fn value(&self, x: &[f64]) -> f64 {
        let mut y = vec![0.0; self.f.dim_y()];
        self.y_star(x, &mut y);
        self.f.value(x, &y)
    }
    fn hypergradient(&self, x: &[f64], out: &mut [f64]) {
        let dy = self.f.dim_y();
        let (mut y, mut v) = (vec![0.0; dy], vec![0.0; dy]);
        self.y_star(x, &mut y);
        self.f.grad_y(x, &y, &mut v);
        self.solve_g(&mut v);
        self.f.grad_x(x, &y, out);
        if let Some(b_g) = self.g.b() {
            // ∇L = ∂x f − B_gᵀ v* = ∂x f + B_gᵀ(−v*).
            ops::scale(-1.0, &mut v);
            bt_times(b_g, &v, out, Accum::Add, Par::Seq);
        }
    }
    fn minimum(&self) -> Option<(&[f64], f64)> {
        self.minimum.get_or_init(|| self.compute_minimum()).as_ref().map(|(x, v)| (x.as_slice(), *v))
    }
}
