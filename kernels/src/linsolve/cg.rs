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

use super::{check_divergence, check_tolerances, history_capacity, target, History, SolveReport};
use crate::error::{check_finite, check_len, KernelError, Result};
use crate::linop::SymmetricOperator;
use crate::ops;

/// The preconditioner of [`cg_solve`].
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

/// Parameters of [`cg_solve`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CgParams {
    /// Stop when `‖r‖ ≤ rel_tol·‖b‖` (or the absolute test). Default 1e-10.
    pub rel_tol: f64,
    /// Stop when `‖r‖ ≤ abs_tol`. Default 0.
    pub abs_tol: f64,
    /// Iteration cap. Default 1000.
    pub max_iters: usize,
    /// Record `‖r_k‖` for k = 0..=iterations in [`SolveReport::history`]. Default false.
    pub record_history: bool,
    /// Default [`Preconditioner::None`].
    pub preconditioner: Preconditioner,
}

impl Default for CgParams {
    fn default() -> Self {
        Self {
            rel_tol: 1e-10,
            abs_tol: 0.0,
            max_iters: 1000,
            record_history: false,
            preconditioner: Preconditioner::None,
        }
    }
}

impl CgParams {
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
    /// Sets [`preconditioner`](Self::preconditioner).
    pub fn with_preconditioner(mut self, preconditioner: Preconditioner) -> Self {
        self.preconditioner = preconditioner;
        self
    }
}

/// Every temporary of [`cg_solve_with_workspace`]: five vectors of the system's dimension.
#[derive(Clone, Debug)]
pub struct CgWorkspace {
    r: Vec<f64>,
    p: Vec<f64>,
    hp: Vec<f64>,
    z: Vec<f64>,
    inv_diag: Vec<f64>,
}

impl CgWorkspace {
    /// A workspace for systems of dimension `dim` (allocates once).
    pub fn new(dim: usize) -> Self {
        Self { r: vec![0.0; dim], p: vec![0.0; dim], hp: vec![0.0; dim], z: vec![0.0; dim], inv_diag: vec![0.0; dim] }
    }
    /// The dimension this workspace was built for.
    pub fn dim(&self) -> usize {
        self.r.len()
    }
}

/// Solves `H x = b` by CG from the warm start in `x`, allocating its workspace.
/// See [`cg_solve_with_workspace`].
pub fn cg_solve<O: SymmetricOperator>(op: &O, b: &[f64], x: &mut [f64], params: &CgParams) -> Result<SolveReport> {
    let mut ws = CgWorkspace::new(op.dim());
    cg_solve_with_workspace(op, b, x, params, &mut ws)
}

/// Solves `H x = b` by (preconditioned) CG from the warm start in `x`; no allocation after
/// validation except the history buffer (reserved once when requested).
///
/// One iteration = one product `Hp`. `iterations` counts them; the initial residual `b − Hx_0`
/// costs one more product. `residual_norm` is the recursively updated residual (it tracks
/// `‖b − Hx‖` up to rounding). A warm start that already meets the tolerance returns after 0
/// iterations.
///
/// Errors: size mismatches, non-finite `b`/`x`, negative tolerances; `NotPositiveDefinite` when a
/// direction has `pᵀHp ≤ 0`; `Diverged` when the residual becomes non-finite or grows past
/// [`DIVERGENCE_FACTOR`](super::DIVERGENCE_FACTOR) × the initial one.
pub fn cg_solve_with_workspace<O: SymmetricOperator>(
    op: &O,
    b: &[f64],
    x: &mut [f64],
    params: &CgParams,
    ws: &mut CgWorkspace,
) -> Result<SolveReport> {
    cg_impl(op, b, x, params, ws)
}

// Non-generic body: one copy of the solver however many operator types call it.
fn cg_impl(
    op: &dyn SymmetricOperator,
    b: &[f64],
    x: &mut [f64],
    params: &CgParams,
    ws: &mut CgWorkspace,
) -> Result<SolveReport> {
    let n = op.dim();
    check_len("rhs", n, b.len())?;
    check_len("x0", n, x.len())?;
    check_len("workspace", n, ws.dim())?;
    check_finite("rhs", b)?;
    check_finite("x0", x)?;
    check_tolerances(params.rel_tol, params.abs_tol)?;
    let mut history = History::new(params.record_history, history_capacity(params.max_iters))?;

    let CgWorkspace { r, p, hp, z, inv_diag } = ws;
    let jacobi = match params.preconditioner {
        Preconditioner::None => false,
        Preconditioner::Jacobi => {
            setup_jacobi(op, inv_diag)?;
            true
        }
    };

    // r = b − H x
    op.apply(x, hp);
    r.copy_from_slice(b);
    ops::axpy(-1.0, hp, r);
    let mut rr = ops::norm_sq(r);
    let r0 = rr.sqrt();
    if !r0.is_finite() {
        return Err(KernelError::Diverged { iteration: 0, residual: r0 });
    }
    // Below the rounding floor another step only divides by a vanishing pᵀHp (it would report a
    // false `NotPositiveDefinite`), so a fixed-step run (rel_tol = 0) stops there as converged.
    let b_norm = ops::norm2(b);
    let tol = target(params.rel_tol, params.abs_tol, b_norm).max(RESIDUAL_FLOOR * b_norm);
    history.push(r0);
    if r0 <= tol {
        return Ok(history.report(0, r0, true));
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

    let mut residual = r0;
    for k in 1..=params.max_iters {
        op.apply(p, hp);
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
            return Ok(history.report(k, residual, true));
        }
        // The direction is built from the NEW residual (updating it with the old one was Betty's bug).
        let rz_new = if jacobi { ops::hadamard_dot(inv_diag, r, z) } else { rr };
        let beta = rz_new / rz;
        rz = rz_new;
        ops::xpby(if jacobi { z } else { r }, beta, p);
    }
    Ok(history.report(params.max_iters, residual, false))
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
