//! Gradient (Richardson) iteration for `H z = b`: `z ← z − β(Hz − b)`, gradient descent with step
//! β on the quadratic `½zᵀHz − bᵀz`.
//!
//! This one kernel is the adjoint solver of several papers (see notes/paper-000_001.md): AmIGO's
//! B_k (Arbel & Mairal, "Amortized implicit differentiation for stochastic bilevel optimization",
//! Alg. 3: z^n = z^{n−1} − β(∂yy ĝ(B_n) z^{n−1} + v), i.e. b = −v, with a fresh Hessian batch
//! per step and a warm start z^0 = z_{k−1}), AID-GD, and AID-FP (Grazzi et al.) for a gradient
//! fixed-point map. Truncated Neumann sums from z = 0 are the same iterates (see [`super::neumann`]).
//!
//! Complexity: one operator application and one fused pass per step. With β = 1/L for
//! `μI ⪯ H ⪯ LI`, `‖z_k − z*‖ ≤ (1 − 1/κ)^k ‖z_0 − z*‖`, so `⌈κ·ln(1/ε)⌉` steps give relative error ε.

use super::{stationary_iteration, OperatorSequence, Repeated, SolveReport, Stationary};
use crate::error::Result;
use crate::linop::SymmetricOperator;
use crate::ops;

/// Parameters of [`richardson_solve`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RichardsonParams {
    /// The step β > 0; the iteration converges iff `β < 2/λ_max(H)`, fastest contraction for
    /// `2/(μ + L)`, the usual choice 1/L. Default 1 (the right value when H is scaled to L = 1).
    pub step: f64,
    /// Default 0 (run `max_iters` steps unless the residual reaches `abs_tol`).
    pub rel_tol: f64,
    /// Default 0.
    pub abs_tol: f64,
    /// Number of steps (the fixed budget of AmIGO's N) or the cap when a tolerance is set.
    /// Must be ≥ 1. Default 100.
    pub max_iters: usize,
    /// Record the residual of every iterate that was measured. Default false.
    pub record_history: bool,
}

impl Default for RichardsonParams {
    fn default() -> Self {
        Self { step: 1.0, rel_tol: 0.0, abs_tol: 0.0, max_iters: 100, record_history: false }
    }
}

impl RichardsonParams {
    /// Defaults with step β.
    pub fn new(step: f64) -> Self {
        Self { step, ..Self::default() }
    }
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

/// The one temporary of the Richardson iteration: `Hz`.
#[derive(Clone, Debug)]
pub struct RichardsonWorkspace {
    hz: Vec<f64>,
}

impl RichardsonWorkspace {
    /// A workspace for systems of dimension `dim` (allocates once).
    pub fn new(dim: usize) -> Self {
        Self { hz: vec![0.0; dim] }
    }
    /// The dimension this workspace was built for.
    pub fn dim(&self) -> usize {
        self.hz.len()
    }
}

/// Richardson iteration on a fixed symmetric operator, allocating its workspace.
/// See [`richardson_solve_with_workspace`].
pub fn richardson_solve<O: SymmetricOperator>(
    op: &O,
    b: &[f64],
    z: &mut [f64],
    params: &RichardsonParams,
) -> Result<SolveReport> {
    richardson_solve_with_workspace(op, b, z, params, &mut RichardsonWorkspace::new(op.dim()))
}

/// Richardson iteration `z ← z − β(Hz − b)` from the warm start in `z`.
///
/// Each step is one product `Hz_k` and one fused pass ([`ops::richardson_update`]) that measures
/// `‖Hz_k − b‖` *and* moves to `z_{k+1}`. So the test sees the residual of the iterate before the
/// last step: `residual_norm` is `‖b − Hz_{k}‖` and `z` holds `z_{k+1}`, whose residual is no larger
/// when `0 < β ≤ 2/λ_max` (then `‖I − βH‖ ≤ 1`). A warm start that meets the tolerance therefore
/// still costs one step (`iterations == 1`). `history[k] = ‖b − Hz_k‖`, one entry per step.
///
/// Errors: sizes, non-finite `b`/`z`, `step ≤ 0`, `max_iters == 0`, negative tolerances; `Diverged`
/// (e.g. β > 2/λ_max) when the residual passes [`DIVERGENCE_FACTOR`](super::DIVERGENCE_FACTOR) ×
/// the initial one or becomes non-finite.
pub fn richardson_solve_with_workspace<O: SymmetricOperator>(
    op: &O,
    b: &[f64],
    z: &mut [f64],
    params: &RichardsonParams,
    ws: &mut RichardsonWorkspace,
) -> Result<SolveReport> {
    richardson_impl(&mut Repeated(op), b, z, params, ws)
}

/// Stochastic Richardson: step k uses `H_k` from `ops` (index k = 0, 1, … in application order),
/// e.g. the Hessian on a fresh mini-batch as in AmIGO's Alg. 3; `b` is reused for every step, as
/// there. The tolerance tests the measured (noisy) residual `‖H_k z_k − b‖`; usually leave both
/// tolerances at 0 and run the fixed budget `max_iters`.
pub fn richardson_solve_stochastic<S: OperatorSequence>(
    ops: &mut S,
    b: &[f64],
    z: &mut [f64],
    params: &RichardsonParams,
    ws: &mut RichardsonWorkspace,
) -> Result<SolveReport> {
    richardson_impl(ops, b, z, params, ws)
}

fn richardson_impl(
    seq: &mut dyn OperatorSequence,
    b: &[f64],
    z: &mut [f64],
    params: &RichardsonParams,
    ws: &mut RichardsonWorkspace,
) -> Result<SolveReport> {
    let p = Stationary {
        step: params.step,
        rel_tol: params.rel_tol,
        abs_tol: params.abs_tol,
        max_iters: params.max_iters,
        record_history: params.record_history,
    };
    stationary_iteration(seq, b, z, "z0", p, &mut ws.hz, ops::richardson_update)
}
