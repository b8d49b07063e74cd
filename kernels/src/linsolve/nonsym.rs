//! Solvers for the non-symmetric adjoint system of a fixed-point lower level,
//! `(I − Jᵀ) v = b` with `J = ∂wΦ(w, λ)` a q-contraction (Grazzi, Pontil, Salzo, "Bilevel
//! Optimization with a Lower-level Contraction: Optimal Sample Complexity without Warm-start",
//! SID Alg. 1 step 3, eq. (7)/(12); also Grazzi et al. 2020, AID-FP):
//!
//! - [`FixedPoint`]: `v ← v + η(Jᵀv + b − v)` (η = 1: `v ← Jᵀv + b`, the paper's LS solver
//!   with η_i ≡ 1). With ‖J‖ ≤ q < 1 the residual contracts by q per step: `⌈ln(1/ε)/ln(1/q)⌉`
//!   steps for relative residual ε. One `Jᵀ` product and one fused pass per step.
//! - [`Gmres`]: restarted GMRES(m) (Saad & Schultz 1986) on any [`Operator`], with modified
//!   Gram–Schmidt Arnoldi and Givens rotations; the residual is non-increasing. Applied to
//!   `I − Jᵀ` through [`IdentityMinus`]. Since `⟨(I − Jᵀ)v, v⟩ ≥ (1 − q)‖v‖²`, GMRES(m) converges
//!   for every m ≥ 1 on these systems, and needs far fewer products than the fixed-point iteration
//!   when q is close to 1.

use super::{
    check_divergence, is_zero, LinearSolver, OperatorSequence, SolveReport, Stationary, StationaryRule, Stopping,
};
use crate::error::{check_finite, check_len, KernelError, Result};
use crate::linop::{FnOp, Operator, SymmetricOperator};
use crate::ops;

/// The operator `v ↦ v − A v` for an operator A (typically `A v = Jᵀv`, the transposed Jacobian
/// of a fixed-point map): the matrix `I − Jᵀ` of the adjoint system, for [`Gmres`].
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

/// The fixed-point iteration `v ← v + η(Jᵀv + b − v)` for `(I − Jᵀ)v = b`, given the operator
/// `Jᵀ` (not `I − Jᵀ`): the (Krasnoselskii–Mann) step η (1: `v ← Jᵀv + b`, the paper's LS
/// solver), the [`Stopping`] rule and its one work vector (`Jᵀv`), allocated once by
/// [`FixedPoint::new`](Stationary::new). One step = one product `Jᵀv_k`: N steps cost exactly N
/// applications.
pub type FixedPoint = Stationary<FixedPointRule>;

/// The fixed point's update ([`ops::fixed_point_update`]).
#[derive(Clone, Copy, Debug)]
pub enum FixedPointRule {}

impl StationaryRule for FixedPointRule {
    const ITERATE: &'static str = "v0";
    fn update(step: f64, t: &[f64], b: &[f64], x: &mut [f64]) -> f64 {
        ops::fixed_point_update(step, t, b, x)
    }
}

impl FixedPoint {
    /// Fixed-point iteration from the warm start in `v`, step k using `Jᵀ_k` = `jts.apply(k, ..)`:
    /// a fixed operator `&Jᵀ`, or one fresh sample ζ̂_k per step (SID's LS solver, eq. (7)), with
    /// `b` reused for every step. A sequence with a known count must hold `max_iters` operators.
    ///
    /// Like [`Richardson`](super::Richardson), each step measures the residual
    /// `‖b − (I − Jᵀ)v_k‖ = ‖Jᵀv_k + b − v_k‖` of the incoming iterate in the same pass that moves
    /// to `v_{k+1}` ([`ops::fixed_point_update`]): `residual_norm` refers to `v_k`, and `v` holds
    /// `v_{k+1}` (residual ≤ q·that for η = 1). `iterations` counts `Jᵀ` products.
    ///
    /// Errors: sizes (`operator`, `rhs`, `v0`), non-finite `b`/`v`, `step ≤ 0`, `max_iters == 0`,
    /// negative tolerances, a sequence shorter than `max_iters`; `Diverged` if the residual passes
    /// [`DIVERGENCE_FACTOR`](super::DIVERGENCE_FACTOR) × the initial one (J is not a contraction).
    pub fn solve<S: OperatorSequence>(&mut self, mut jts: S, b: &[f64], v: &mut [f64]) -> Result<SolveReport> {
        self.run(&mut jts, b, v)
    }
}

/// As a solver of `H x = b`: the fixed point of `Jᵀ = I − H` (applied as `v − Hv`, no
/// allocation), i.e. `x ← x + η(b − Hx)`, the Richardson iterates with step η.
impl LinearSolver for FixedPoint {
    fn solve(&mut self, op: &dyn SymmetricOperator, b: &[f64], x: &mut [f64]) -> Result<SolveReport> {
        FixedPoint::solve(self, &IdentityMinus(op), b, x)
    }
}

// ---------------------------------------------------------------------------------------------
// Restarted GMRES
// ---------------------------------------------------------------------------------------------

/// Restarted GMRES(m) for a general square `A x = b`: the restart length m, the [`Stopping`]
/// rule (`max_iters` caps Arnoldi steps) and every temporary (the Krylov basis of m + 1
/// vectors, the Hessenberg matrix, the Givens rotations, the small least-squares system),
/// allocated once by [`Gmres::new`].
///
/// # Cost
///
/// One iteration = one Arnoldi step (one product `A v_j`). Each cycle of at most m steps ends by
/// recomputing the true residual `b − Ax` (one more product); the initial residual costs one
/// product only for a non-zero warm start (from x₀ = 0, r₀ = b). So
/// `operator_applications = iterations + cycles + [x₀ ≠ 0]`.
#[derive(Clone, Debug)]
pub struct Gmres {
    restart: usize,
    stopping: Stopping,
    dim: usize,
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

impl Gmres {
    /// A solver for systems of dimension `dim` with restart length m = `restart` (≥ 1, checked by
    /// [`solve`](Self::solve); 30 is a common choice) and a stopping rule.
    pub fn new(dim: usize, restart: usize, stopping: Stopping) -> Self {
        let m = restart;
        Self {
            restart,
            stopping,
            dim,
            basis: vec![0.0; (m + 1) * dim],
            hess: vec![0.0; (m + 1) * m],
            cos: vec![0.0; m],
            sin: vec![0.0; m],
            g: vec![0.0; m + 1],
            y: vec![0.0; m],
        }
    }
    /// The dimension this solver was built for.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The restart length m.
    pub fn restart(&self) -> usize {
        self.restart
    }

    /// Restarted GMRES(m) for `A x = b` from the warm start in `x`, with modified Gram–Schmidt
    /// Arnoldi and Givens rotations; the residual is non-increasing. For `(I − Jᵀ)v = b` pass
    /// [`IdentityMinus`]`(&jt)`.
    ///
    /// The true residual `b − Ax` recomputed at the end of each cycle is what the convergence
    /// test and `residual_norm` use; within a cycle the (monotone) residual estimate `|g_{j+1}|`
    /// ends the cycle early when it meets the tolerance. `history[0] = ‖r_0‖`, then one estimate
    /// per Arnoldi step. See the [type doc](Gmres#cost) for the products counted.
    ///
    /// Errors: sizes (`operator`, `rhs`, `x0`), non-finite `b`/`x`, `restart == 0`, negative
    /// tolerances; `Breakdown` when the Hessenberg column is zero to working precision, i.e. A is
    /// singular on the Krylov subspace (a lucky breakdown, where the subspace is invariant and the
    /// solution exact, is not an error); `Diverged` on non-finite values.
    pub fn solve(&mut self, op: &dyn Operator, b: &[f64], x: &mut [f64]) -> Result<SolveReport> {
        let n = self.dim;
        check_len("operator", n, op.dim())?;
        check_len("rhs", n, b.len())?;
        check_len("x0", n, x.len())?;
        check_finite("rhs", b)?;
        check_finite("x0", x)?;
        let m = self.restart;
        if m == 0 {
            return Err(KernelError::InvalidParameter { name: "restart", reason: "must be >= 1".into() });
        }
        let mut history = self.stopping.start(false)?;
        let max_iters = self.stopping.max_iters;
        let tol = self.stopping.target(ops::norm2(b));
        let ld = m + 1; // leading dimension of the Hessenberg storage
        let Self { basis, hess, cos, sin, g, y, .. } = self;

        let mut applications = 0;
        let mut beta = if is_zero(x) {
            basis[..n].copy_from_slice(b);
            ops::norm2(b)
        } else {
            applications += 1;
            residual_into(op, b, x, &mut basis[..n])
        };
        if !beta.is_finite() {
            return Err(KernelError::Diverged { iteration: 0, residual: beta });
        }
        let initial = beta;
        history.push(beta);
        let mut iters = 0;
        loop {
            if beta <= tol {
                return Ok(history.report(iters, applications, beta, true));
            }
            if iters >= max_iters {
                return Ok(history.report(iters, applications, beta, false));
            }
            // One cycle: Arnoldi from v_0 = r/β, least squares min ‖β e_1 − H y‖ by Givens rotations.
            ops::scale(1.0 / beta, &mut basis[..n]);
            g[..=m].fill(0.0);
            g[0] = beta;
            let mut k = 0;
            while k < m && iters < max_iters {
                crate::interrupt::check()?;
                let j = k;
                let (head, tail) = basis.split_at_mut((j + 1) * n);
                let w = &mut tail[..n];
                op.apply(&head[j * n..], w);
                iters += 1;
                applications += 1;
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
            applications += 1;
            check_divergence(iters, beta, initial)?;
        }
    }
}

impl LinearSolver for Gmres {
    fn solve(&mut self, op: &dyn SymmetricOperator, b: &[f64], x: &mut [f64]) -> Result<SolveReport> {
        Gmres::solve(self, op, b, x)
    }
}

/// `r = b − A x` into `r`; returns `‖r‖`.
fn residual_into(op: &dyn Operator, b: &[f64], x: &[f64], r: &mut [f64]) -> f64 {
    op.apply(x, r);
    ops::axpby(1.0, b, -1.0, r);
    ops::norm2(r)
}
