//! Conjugate gradient for `H x = b` with H symmetric positive definite (Hestenes & Stiefel 1952),
//! with warm start and an optional Jacobi (diagonal) preconditioner.
//!
//! This is the adjoint solver of AID-BiO (Ji, Yang, Liang, "Provably Faster Algorithms for Bilevel
//! Optimization", Alg. 1, CG branch: N = Θ(√κ) steps) and of AmIGO-CG (Arbel & Mairal, "Amortized
//! implicit differentiation for stochastic bilevel optimization", B_k = CG warm-started at z_{k−1}).
//!
//! Complexity: one operator application and three vector passes per iteration (`pᵀHp`, the fused
//! [`ops::cg_update`], the direction update; a fourth, [`ops::hadamard_dot`], with the
//! preconditioner). In exact arithmetic the H-norm error contracts as
//! `‖x_k − x*‖_H ≤ 2((√κ − 1)/(√κ + 1))^k ‖x_0 − x*‖_H`, so `⌈½√κ·ln(2/ε)⌉` iterations reach a
//! relative H-norm error ε.

use super::{check_divergence, is_zero, LinearSolver, SolveReport, Stopping};
use crate::error::{check_finite, check_len, KernelError, Result};
use crate::linop::SymmetricOperator;
use crate::ops;

/// The preconditioner of [`Cg`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preconditioner {
    /// Plain CG.
    #[default]
    None,
    /// `M = diag(H)`, from [`Operator::diagonal`](crate::linop::Operator::diagonal). The solve fails
    /// with `InvalidParameter` if the operator cannot give its diagonal, and with
    /// `NotPositiveDefinite` (iteration 0) if an entry is ≤ 0 (then `e_iᵀHe_i ≤ 0`).
    Jacobi,
}

/// CG stops as converged once `‖r‖ ≤ RESIDUAL_FLOOR·‖b‖`, whatever the tolerances: past that
/// the residual is rounding noise and the curvature pᵀHp of the next direction can vanish.
pub const RESIDUAL_FLOOR: f64 = 1e-15;

/// Parameters of [`Cg`]: the shared [`Stopping`] rule (default: `rel_tol` 1e-10, 1000
/// iterations) and the preconditioner. A `Stopping` converts into `CgParams` with no
/// preconditioner, so `Cg::new(dim, Stopping::fixed_steps(n))` works.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct CgParams {
    /// When to stop; `max_iters` counts iterations (products `Hp`).
    pub stopping: Stopping,
    /// Default [`Preconditioner::None`].
    pub preconditioner: Preconditioner,
}

impl CgParams {
    /// Plain CG with this stopping rule.
    pub fn new(stopping: Stopping) -> Self {
        Self { stopping, preconditioner: Preconditioner::None }
    }
    /// Sets [`preconditioner`](Self::preconditioner).
    pub fn with_preconditioner(mut self, preconditioner: Preconditioner) -> Self {
        self.preconditioner = preconditioner;
        self
    }
}

impl From<Stopping> for CgParams {
    fn from(stopping: Stopping) -> Self {
        Self::new(stopping)
    }
}

/// Conjugate gradient for `H x = b`, H symmetric positive definite: its parameters and its five
/// work vectors (`r`, `p`, `Hp`, `M⁻¹r`, `M⁻¹`), allocated once by [`Cg::new`].
///
/// # Cost
///
/// One iteration = one product `Hp`. The initial residual `r₀ = b − Hx₀` costs one more product
/// **only when the warm start is not all zero**: from x₀ = 0, r₀ = b is taken without a product.
/// So N iterations cost exactly N operator applications cold and N + 1 warm
/// ([`SolveReport::operator_applications`]).
#[derive(Clone, Debug)]
pub struct Cg {
    params: CgParams,
    r: Vec<f64>,
    p: Vec<f64>,
    hp: Vec<f64>,
    z: Vec<f64>,
    inv_diag: Vec<f64>,
}

impl Cg {
    /// A solver for systems of dimension `dim` (allocates its five vectors once).
    pub fn new(dim: usize, params: impl Into<CgParams>) -> Self {
        let v = || vec![0.0; dim];
        Self { params: params.into(), r: v(), p: v(), hp: v(), z: v(), inv_diag: v() }
    }
    /// The dimension this solver was built for.
    pub fn dim(&self) -> usize {
        self.r.len()
    }
    /// The parameters of the next solve.
    pub fn params(&self) -> &CgParams {
        &self.params
    }
    /// The parameters, to change between solves (no reallocation).
    pub fn params_mut(&mut self) -> &mut CgParams {
        &mut self.params
    }

    /// Solves `H x = b` by (preconditioned) CG from the warm start in `x`; no allocation except
    /// the history buffer (reserved once when requested).
    ///
    /// `iterations` counts products `Hp`; see the [type doc](Cg#cost) for the initial residual.
    /// `residual_norm` is the recursively updated residual (it tracks `‖b − Hx‖` up to
    /// rounding). A warm start that already meets the tolerance returns after 0 iterations. The
    /// solve stops as converged at the [`RESIDUAL_FLOOR`] whatever the tolerances.
    ///
    /// Errors: size mismatches (`operator`, `rhs`, `x0` against [`dim`](Self::dim)), non-finite
    /// `b`/`x`, negative tolerances, a history longer than
    /// [`MAX_HISTORY_LEN`](super::MAX_HISTORY_LEN); `NotPositiveDefinite` when a direction has
    /// `pᵀHp ≤ 0`; `Diverged` when the residual becomes non-finite or grows past
    /// [`DIVERGENCE_FACTOR`](super::DIVERGENCE_FACTOR) × the initial one.
    ///
    /// The operator is taken as `&dyn` (any `&O` with `O: SymmetricOperator` coerces): one copy of
    /// the solver however many operator types call it.
    pub fn solve(&mut self, op: &dyn SymmetricOperator, b: &[f64], x: &mut [f64]) -> Result<SolveReport> {
        let n = self.dim();
        check_len("operator", n, op.dim())?;
        check_len("rhs", n, b.len())?;
        check_len("x0", n, x.len())?;
        check_finite("rhs", b)?;
        check_finite("x0", x)?;
        let Self { params, r, p, hp, z, inv_diag } = self;
        let mut history = params.stopping.start(false)?;
        let jacobi = match params.preconditioner {
            Preconditioner::None => false,
            Preconditioner::Jacobi => {
                setup_jacobi(op, inv_diag)?;
                true
            }
        };

        // r = b − H x; from x = 0 that is b, with no product.
        r.copy_from_slice(b);
        let mut applications = 0;
        if !is_zero(x) {
            op.apply(x, hp);
            ops::axpy(-1.0, hp, r);
            applications += 1;
        }
        let mut rr = ops::norm_sq(r);
        let r0 = rr.sqrt();
        if !r0.is_finite() {
            return Err(KernelError::Diverged { iteration: 0, residual: r0 });
        }
        // Below the rounding floor another step only divides by a vanishing pᵀHp (it would report a
        // false `NotPositiveDefinite`), so a fixed-step run (rel_tol = 0) stops there as converged.
        let b_norm = ops::norm2(b);
        let tol = params.stopping.target(b_norm).max(RESIDUAL_FLOOR * b_norm);
        history.push(r0);
        if r0 <= tol {
            return Ok(history.report(0, applications, r0, true));
        }

        // rz = rᵀM⁻¹r, p = M⁻¹r.
        let mut rz = if jacobi {
            let rz = ops::hadamard_dot(inv_diag, r, z);
            p.copy_from_slice(z);
            rz
        } else {
            p.copy_from_slice(r);
            rr
        };

        let max_iters = params.stopping.max_iters;
        let mut residual = r0;
        for k in 1..=max_iters {
            crate::interrupt::check()?;
            op.apply(p, hp);
            applications += 1;
            let curvature = ops::dot(p, hp);
            if !curvature.is_finite() {
                return Err(KernelError::Diverged { iteration: k, residual });
            }
            if curvature <= 0.0 {
                return Err(KernelError::NotPositiveDefinite { iteration: k, curvature });
            }
            let alpha = rz / curvature;
            rr = ops::cg_update(alpha, p, hp, x, r);
            residual = rr.sqrt();
            check_divergence(k, residual, r0)?;
            history.push(residual);
            if residual <= tol {
                return Ok(history.report(k, applications, residual, true));
            }
            // The direction is built from the NEW residual (updating it with the old one was Betty's bug).
            let rz_new = if jacobi { ops::hadamard_dot(inv_diag, r, z) } else { rr };
            let beta = rz_new / rz;
            rz = rz_new;
            ops::xpby(if jacobi { z } else { r }, beta, p);
        }
        Ok(history.report(max_iters, applications, residual, false))
    }
}

impl LinearSolver for Cg {
    fn solve(&mut self, op: &dyn SymmetricOperator, b: &[f64], x: &mut [f64]) -> Result<SolveReport> {
        Cg::solve(self, op, b, x)
    }
}

/// Fills `inv_diag` with `1 / diag(H)`, checking the diagonal exists, is finite and positive.
fn setup_jacobi(op: &dyn SymmetricOperator, inv_diag: &mut [f64]) -> Result<()> {
    if !op.diagonal(inv_diag) {
        return Err(KernelError::InvalidParameter {
            name: "preconditioner",
            reason: "the Jacobi preconditioner needs the operator's diagonal, which this operator does not provide"
                .into(),
        });
    }
    check_finite("operator diagonal", inv_diag)?;
    if let Some(&d) = inv_diag.iter().find(|&&d| d <= 0.0) {
        // e_iᵀ H e_i = d ≤ 0 proves H is not positive definite.
        return Err(KernelError::NotPositiveDefinite { iteration: 0, curvature: d });
    }
    inv_diag.iter_mut().for_each(|d| *d = 1.0 / *d);
    Ok(())
}
