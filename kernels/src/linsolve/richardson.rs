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

use super::{LinearSolver, OperatorSequence, SolveReport, Stationary, StationaryRule};
use crate::error::Result;
use crate::linop::SymmetricOperator;
use crate::ops;

/// Gradient (Richardson) iteration `z ← z − β(Hz − b)`: the step β, the [`Stopping`](super::Stopping) rule and
/// its one work vector (`Hz`), allocated once by [`Richardson::new`](Stationary::new).
///
/// The step β > 0: the iteration converges iff `β < 2/λ_max(H)`, fastest for `2/(μ + L)`, the
/// usual choice 1/L. One step = one product `Hz_k` (also from z₀ = 0), so N steps cost exactly
/// N operator applications.
pub type Richardson = Stationary<RichardsonRule>;

/// Richardson's update ([`ops::richardson_update`]).
#[derive(Clone, Copy, Debug)]
pub enum RichardsonRule {}

impl StationaryRule for RichardsonRule {
    const ITERATE: &'static str = "z0";
    fn update(step: f64, t: &[f64], b: &[f64], x: &mut [f64]) -> f64 {
        ops::richardson_update(step, t, b, x)
    }
}

impl Richardson {
    /// Richardson iteration `z ← z − β(H_k z − b)` from the warm start in `z`, with `H_k` =
    /// `seq.apply(k, ..)` for k = 0, 1, … in application order: a fixed operator `&H` (the
    /// deterministic iteration), or e.g. the Hessian on a fresh mini-batch per step as in AmIGO's
    /// Alg. 3 (`b` is reused for every step, as there). A sequence with a known
    /// [`count`](OperatorSequence::count) must hold `max_iters` operators.
    ///
    /// Each step is one product `H_k z_k` and one fused pass ([`ops::richardson_update`]) that
    /// measures `‖H_k z_k − b‖` *and* moves to `z_{k+1}`. So the test sees the residual of the
    /// iterate before the last step: `residual_norm` is `‖b − Hz_k‖` and `z` holds `z_{k+1}`,
    /// whose residual is no larger when `0 < β ≤ 2/λ_max` (then `‖I − βH‖ ≤ 1`). A warm start
    /// that meets the tolerance therefore still costs one step (`iterations == 1`).
    /// `history[k] = ‖b − Hz_k‖`, one entry per step. With sampled operators the tolerance tests
    /// the noisy residual; usually run the fixed budget.
    ///
    /// Errors: sizes (`operator`, `rhs`, `z0`), non-finite `b`/`z`, `step ≤ 0`, `max_iters == 0`,
    /// negative tolerances, a sequence shorter than `max_iters`; `Diverged` (e.g. β > 2/λ_max)
    /// when the residual passes [`DIVERGENCE_FACTOR`](super::DIVERGENCE_FACTOR) × the initial one
    /// or becomes non-finite.
    pub fn solve<S: OperatorSequence>(&mut self, mut seq: S, b: &[f64], z: &mut [f64]) -> Result<SolveReport> {
        self.run(&mut seq, b, z)
    }
}

impl LinearSolver for Richardson {
    fn solve(&mut self, op: &dyn SymmetricOperator, b: &[f64], x: &mut [f64]) -> Result<SolveReport> {
        Richardson::solve(self, op, b, x)
    }
}
