//! Solvers for the non-symmetric adjoint system of a fixed-point lower level,
//! `(I − Jᵀ) v = b` with `J = ∂wΦ(w, λ)` a q-contraction (Grazzi, Pontil, Salzo, "Bilevel
//! Optimization with a Lower-level Contraction: Optimal Sample Complexity without Warm-start",
//! SID Alg. 1 step 3, eq. (7)/(12); also Grazzi et al. 2020, AID-FP):
//!
//! - [`fixed_point_solve`]: `v ← v + η(Jᵀv + b − v)` (η = 1: `v ← Jᵀv + b`, the paper's LS solver
//!   with η_i ≡ 1). With ‖J‖ ≤ q < 1 the residual contracts by q per step: `⌈ln(1/ε)/ln(1/q)⌉`
//!   steps for relative residual ε. One `Jᵀ` product and one fused pass per step.
//! - [`gmres_solve`]: restarted GMRES(m) (Saad & Schultz 1986) on any [`Operator`], with modified
//!   Gram–Schmidt Arnoldi and Givens rotations; the residual is non-increasing. Applied to
//!   `I − Jᵀ` through [`IdentityMinus`]. Since `⟨(I − Jᵀ)v, v⟩ ≥ (1 − q)‖v‖²`, GMRES(m) converges
//!   for every m ≥ 1 on these systems, and needs far fewer products than the fixed-point iteration
//!   when q is close to 1.

use super::{
    check_divergence, check_tolerances, history_capacity, stationary_iteration, target, History, OperatorSequence,
    Repeated, SolveReport, Stationary,
};
use crate::error::{check_finite, check_len, KernelError, Result};
use crate::linop::{FnOp, Operator};
use crate::ops;

/// The operator `v ↦ v − A v` for an operator A (typically `A v = Jᵀv`, the transposed Jacobian
/// of a fixed-point map): the matrix `I − Jᵀ` of the adjoint system, for [`gmres_solve`].
pub struct IdentityMinus<O>(pub O);

impl<F: Fn(&[f64], &mut [f64]) + Sync> IdentityMinus<FnOp<F>> {
    /// `I − Jᵀ` from a closure `|v, out| out = Jᵀv` of dimension `dim`.
    pub fn from_fn(dim: usize, jt: F) -> Self {
        Self(FnOp::new(dim, jt))
    }
}

impl<O: Operator> Operator for IdentityMinus<O> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.0.apply(v, out);
        ops::axpby(1.0, v, -1.0, out);
    }
    fn diagonal(&self, out: &mut [f64]) -> bool {
        if !self.0.diagonal(out) {
            return false;
        }
        out.iter_mut().for_each(|d| *d = 1.0 - *d);
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed-point iteration
// ---------------------------------------------------------------------------------------------

/// Parameters of [`fixed_point_solve`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FixedPointParams {
    /// The (Krasnoselskii–Mann) step η > 0 of `v ← v + η(Jᵀv + b − v)`. Default 1.
    pub step: f64,
    /// Default 1e-10.
    pub rel_tol: f64,
    /// Default 0.
    pub abs_tol: f64,
    /// Step cap, ≥ 1. Default 1000.
    pub max_iters: usize,
    /// Default false.
    pub record_history: bool,
}

impl Default for FixedPointParams {
    fn default() -> Self {
        Self { step: 1.0, rel_tol: 1e-10, abs_tol: 0.0, max_iters: 1000, record_history: false }
    }
}

impl FixedPointParams {
    /// Sets [`step`](Self::step).
    pub fn with_step(mut self, step: f64) -> Self {
        self.step = step;
        self
    }
    /// Sets [`rel_tol`](Self::rel_tol).
    pub fn with_rel_tol(mut self, rel_tol: f64) -> Self {
        self.rel_tol = rel_tol;
        self
    }
    /// Sets [`abs_tol`](Self::abs_tol).
    pub fn with_abs_tol(mut self, abs_tol: f64) -> Self {
        self.abs_tol = abs_tol;
        self
    }
    /// Sets [`max_iters`](Self::max_iters).
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.max_iters = max_iters;
        self
    }
    /// Sets [`record_history`](Self::record_history).
    pub fn with_history(mut self, record_history: bool) -> Self {
        self.record_history = record_history;
        self
    }
}

/// The one temporary of the fixed-point iteration: `Jᵀv`.
#[derive(Clone, Debug)]
pub struct FixedPointWorkspace {
    t: Vec<f64>,
}

impl FixedPointWorkspace {
    /// A workspace for systems of dimension `dim` (allocates once).
    pub fn new(dim: usize) -> Self {
        Self { t: vec![0.0; dim] }
    }
    /// The dimension this workspace was built for.
    pub fn dim(&self) -> usize {
        self.t.len()
    }
}

/// Fixed-point iteration for `(I − Jᵀ)v = b` given the operator `jt: v ↦ Jᵀv` (not `I − Jᵀ`),
/// from the warm start in `v`, allocating its workspace. See [`fixed_point_solve_with_workspace`].
pub fn fixed_point_solve<O: Operator>(
    jt: &O,
    b: &[f64],
    v: &mut [f64],
    params: &FixedPointParams,
) -> Result<SolveReport> {
    fixed_point_solve_with_workspace(jt, b, v, params, &mut FixedPointWorkspace::new(jt.dim()))
}

/// Fixed-point iteration `v ← v + η(Jᵀv + b − v)` with a caller-held workspace.
///
/// Like [`super::richardson`], each step measures the residual `‖b − (I − Jᵀ)v_k‖ = ‖Jᵀv_k + b − v_k‖`
/// of the incoming iterate in the same pass that moves to `v_{k+1}` ([`ops::fixed_point_update`]):
/// `residual_norm` refers to `v_k`, and `v` holds `v_{k+1}` (residual ≤ q·that for η = 1).
/// `iterations` counts `Jᵀ` products. Errors: sizes, non-finite `b`/`v`, `step ≤ 0`,
/// `max_iters == 0`, negative tolerances; `Diverged` if the residual passes
/// [`DIVERGENCE_FACTOR`](super::DIVERGENCE_FACTOR) × the initial one (J is not a contraction).
pub fn fixed_point_solve_with_workspace<O: Operator>(
    jt: &O,
    b: &[f64],
    v: &mut [f64],
    params: &FixedPointParams,
    ws: &mut FixedPointWorkspace,
) -> Result<SolveReport> {
    fixed_point_impl(&mut Repeated(jt), b, v, params, ws)
}

/// Stochastic fixed-point iteration (SID's LS solver, eq. (7)): step k uses `Jᵀ_k` =
/// `jts.apply(k, ..)` (e.g. one fresh sample ζ̂_k), with `b` reused for every step.
pub fn fixed_point_solve_stochastic<S: OperatorSequence>(
    jts: &mut S,
    b: &[f64],
    v: &mut [f64],
    params: &FixedPointParams,
    ws: &mut FixedPointWorkspace,
) -> Result<SolveReport> {
    fixed_point_impl(jts, b, v, params, ws)
}

fn fixed_point_impl(
    seq: &mut dyn OperatorSequence,
    b: &[f64],
    v: &mut [f64],
    params: &FixedPointParams,
    ws: &mut FixedPointWorkspace,
) -> Result<SolveReport> {
    let p = Stationary {
        step: params.step,
        rel_tol: params.rel_tol,
        abs_tol: params.abs_tol,
        max_iters: params.max_iters,
        record_history: params.record_history,
    };
    stationary_iteration(seq, b, v, "v0", p, &mut ws.t, ops::fixed_point_update)
}

// ---------------------------------------------------------------------------------------------
// Restarted GMRES
// ---------------------------------------------------------------------------------------------

/// Parameters of [`gmres_solve`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GmresParams {
    /// m ≥ 1, the Krylov dimension between restarts (the workspace holds m + 1 basis vectors).
    /// Default 30.
    pub restart: usize,
    /// Default 1e-10.
    pub rel_tol: f64,
    /// Default 0.
    pub abs_tol: f64,
    /// Cap on Arnoldi steps (operator products inside cycles). Default 1000.
    pub max_iters: usize,
    /// Record the residual estimate `|g_{j+1}|` of every Arnoldi step (`history[0] = ‖r_0‖`).
    /// Default false.
    pub record_history: bool,
}

impl Default for GmresParams {
    fn default() -> Self {
        Self { restart: 30, rel_tol: 1e-10, abs_tol: 0.0, max_iters: 1000, record_history: false }
    }
}

impl GmresParams {
    /// Sets [`restart`](Self::restart).
    pub fn with_restart(mut self, restart: usize) -> Self {
        self.restart = restart;
        self
    }
    /// Sets [`rel_tol`](Self::rel_tol).
    pub fn with_rel_tol(mut self, rel_tol: f64) -> Self {
        self.rel_tol = rel_tol;
        self
    }
    /// Sets [`abs_tol`](Self::abs_tol).
    pub fn with_abs_tol(mut self, abs_tol: f64) -> Self {
        self.abs_tol = abs_tol;
        self
    }
    /// Sets [`max_iters`](Self::max_iters).
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.max_iters = max_iters;
        self
    }
    /// Sets [`record_history`](Self::record_history).
    pub fn with_history(mut self, record_history: bool) -> Self {
        self.record_history = record_history;
        self
    }
}

/// Every temporary of GMRES(m): the Krylov basis (m + 1 vectors), the Hessenberg matrix, the
/// Givens rotations and the small least-squares system.
#[derive(Clone, Debug)]
pub struct GmresWorkspace {
    dim: usize,
    restart: usize,
    /// (m + 1) basis vectors of length dim, contiguous.
    basis: Vec<f64>,
    /// The (m + 1) × m Hessenberg matrix, column-major; reduced in place to upper triangular R.
    hess: Vec<f64>,
    cos: Vec<f64>,
    sin: Vec<f64>,
    /// Right-hand side `β e_1` of the least-squares problem, rotated along.
    g: Vec<f64>,
    y: Vec<f64>,
}

impl GmresWorkspace {
    /// A workspace for systems of dimension `dim` and restart lengths up to `restart`.
    pub fn new(dim: usize, restart: usize) -> Self {
        let m = restart;
        Self {
            dim,
            restart: m,
            basis: vec![0.0; (m + 1) * dim],
            hess: vec![0.0; (m + 1) * m],
            cos: vec![0.0; m],
            sin: vec![0.0; m],
            g: vec![0.0; m + 1],
            y: vec![0.0; m],
        }
    }
    /// The dimension this workspace was built for.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The largest restart length this workspace holds.
    pub fn restart(&self) -> usize {
        self.restart
    }
}

/// Restarted GMRES(m) for `A x = b`, allocating its workspace. See [`gmres_solve_with_workspace`].
pub fn gmres_solve<O: Operator>(op: &O, b: &[f64], x: &mut [f64], params: &GmresParams) -> Result<SolveReport> {
    gmres_solve_with_workspace(op, b, x, params, &mut GmresWorkspace::new(op.dim(), params.restart))
}

/// Restarted GMRES(m) for a general square `A x = b` from the warm start in `x`.
///
/// One iteration = one Arnoldi step (one product `A v_j`); each cycle of at most m steps ends by
/// updating x and recomputing the true residual `b − Ax` (one more product, not counted), which is
/// what the convergence test and `residual_norm` use. Within a cycle the (monotone) residual
/// estimate `|g_{j+1}|` ends the cycle early when it meets the tolerance.
///
/// Errors: sizes (the workspace must be built for this dimension and at least this restart),
/// non-finite `b`/`x`, `restart == 0`, negative tolerances; `Breakdown` when the Hessenberg
/// column is zero to working precision, i.e. A is singular on the Krylov subspace (a lucky
/// breakdown, where the subspace is invariant and the solution exact, is not an error);
/// `Diverged` on non-finite values.
pub fn gmres_solve_with_workspace<O: Operator>(
    op: &O,
    b: &[f64],
    x: &mut [f64],
    params: &GmresParams,
    ws: &mut GmresWorkspace,
) -> Result<SolveReport> {
    gmres_impl(op, b, x, params, ws)
}

fn gmres_impl(
    op: &dyn Operator,
    b: &[f64],
    x: &mut [f64],
    params: &GmresParams,
    ws: &mut GmresWorkspace,
) -> Result<SolveReport> {
    let n = op.dim();
    check_len("rhs", n, b.len())?;
    check_len("x0", n, x.len())?;
    check_len("workspace", n, ws.dim())?;
    check_finite("rhs", b)?;
    check_finite("x0", x)?;
    check_tolerances(params.rel_tol, params.abs_tol)?;
    let m = params.restart;
    if m == 0 {
        return Err(KernelError::InvalidParameter { name: "restart", reason: "must be >= 1".into() });
    }
    if ws.restart() < m {
        return Err(KernelError::InvalidParameter {
            name: "restart",
            reason: format!("the workspace was built for restart <= {}, got {m}", ws.restart()),
        });
    }
    let mut history = History::new(params.record_history, history_capacity(params.max_iters))?;
    let tol = target(params.rel_tol, params.abs_tol, ops::norm2(b));
    let ld = ws.restart + 1; // leading dimension of the Hessenberg storage
    let GmresWorkspace { basis, hess, cos, sin, g, y, .. } = ws;

    let mut beta = residual_into(op, b, x, &mut basis[..n]);
    if !beta.is_finite() {
        return Err(KernelError::Diverged { iteration: 0, residual: beta });
    }
    let initial = beta;
    history.push(beta);
    let mut iters = 0;
    loop {
        if beta <= tol {
            return Ok(history.report(iters, beta, true));
        }
        if iters >= params.max_iters {
            return Ok(history.report(iters, beta, false));
        }
        // One cycle: Arnoldi from v_0 = r/β, least squares min ‖β e_1 − H y‖ by Givens rotations.
        ops::scale(1.0 / beta, &mut basis[..n]);
        g[..=m].fill(0.0);
        g[0] = beta;
        let mut k = 0;
        while k < m && iters < params.max_iters {
            let j = k;
            let (head, tail) = basis.split_at_mut((j + 1) * n);
            let w = &mut tail[..n];
            op.apply(&head[j * n..], w);
            iters += 1;
            let w_norm = ops::norm2(w);
            if !w_norm.is_finite() {
                return Err(KernelError::Diverged { iteration: iters, residual: w_norm });
            }
            let col = &mut hess[j * ld..j * ld + j + 2];
            for (i, vi) in head.chunks_exact(n).enumerate() {
                let hij = ops::dot(w, vi);
                col[i] = hij;
                ops::axpy(-hij, vi, w);
            }
            let h_next = ops::norm2(w);
            for i in 0..j {
                let (a, c) = (col[i], col[i + 1]);
                col[i] = cos[i] * a + sin[i] * c;
                col[i + 1] = -sin[i] * a + cos[i] * c;
            }
            let denom = col[j].hypot(h_next);
            if !denom.is_finite() {
                return Err(KernelError::Diverged { iteration: iters, residual: denom });
            }
            if denom <= f64::EPSILON * w_norm {
                return Err(KernelError::Breakdown {
                    iteration: iters,
                    reason: "GMRES: the operator is singular on the Krylov subspace (zero Hessenberg column)",
                });
            }
            cos[j] = col[j] / denom;
            sin[j] = h_next / denom;
            col[j] = denom;
            col[j + 1] = 0.0;
            g[j + 1] = -sin[j] * g[j];
            g[j] *= cos[j];
            let estimate = g[j + 1].abs();
            history.push(estimate);
            k += 1;
            // A lucky breakdown: A maps the Krylov subspace into itself, the cycle's solution is exact.
            let invariant = h_next <= f64::EPSILON * w_norm;
            if !invariant {
                ops::scale(1.0 / h_next, w);
            }
            if estimate <= tol || invariant {
                break;
            }
        }
        // x += V_k R⁻¹ g[..k] (back substitution on the rotated Hessenberg matrix).
        for i in (0..k).rev() {
            let s = g[i] - (i + 1..k).map(|l| hess[l * ld + i] * y[l]).sum::<f64>();
            y[i] = s / hess[i * ld + i];
        }
        for (yi, vi) in y[..k].iter().zip(basis.chunks_exact(n)) {
            ops::axpy(*yi, vi, x);
        }
        beta = residual_into(op, b, x, &mut basis[..n]);
        check_divergence(iters, beta, initial)?;
    }
}

/// `r = b − A x` into `r`; returns `‖r‖`.
fn residual_into(op: &dyn Operator, b: &[f64], x: &[f64], r: &mut [f64]) -> f64 {
    op.apply(x, r);
    ops::axpby(1.0, b, -1.0, r);
    ops::norm2(r)
}
