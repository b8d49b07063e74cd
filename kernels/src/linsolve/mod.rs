//! Linear-system solvers for the adjoint of a bilevel problem, `H v = b` (H = ∂yy g, SPD) or
//! `(I − Jᵀ) v = b` (J = ∂wΦ of a contractive fixed-point map), all matrix-free.
//!
//! - [`cg`]: conjugate gradient with warm start and Jacobi preconditioner (AID-CG, AmIGO-CG);
//! - [`richardson`]: gradient / Richardson iteration `z ← z − β(Hz − b)` (AmIGO's B_k, AID-GD, AID-FP),
//!   with a fixed operator or a fresh one (mini-batch) per step;
//! - [`neumann`]: the truncated Neumann series of stocBiO (Alg. 3), deterministic or with one
//!   mini-batch Hessian per term, and Proposition 3's batch sizes;
//! - [`truncation`]: the randomized-truncation estimator of BSA / TTSA / SUSTAIN;
//! - [`nonsym`]: fixed-point iteration and restarted GMRES(m) for `(I − Jᵀ) v = b`.
//!
//! Conventions shared by every solver:
//! - the solution slice is in/out: its initial content is the warm start (Neumann and the
//!   truncation estimator, which are series and not iterations, only write it);
//! - every temporary lives in a workspace struct sized once (`*Workspace::new(dim)`); with it an
//!   iteration never allocates. Each solver also has an entry that allocates its own workspace;
//! - stopping on `‖r‖ ≤ max(abs_tol, rel_tol·‖b‖)` with `r = b − A x` the residual;
//! - inputs are validated before the first operator application: sizes, finiteness of the
//!   right-hand side and warm start, parameters, all as [`KernelError`];
//! - a residual that becomes non-finite or exceeds [`DIVERGENCE_FACTOR`] times the initial one
//!   gives [`KernelError::Diverged`]. On any error the solution slice's content is unspecified;
//! - configs are `#[non_exhaustive]` structs with public fields, `Default`, and `with_*` setters.

pub mod cg;
pub mod neumann;
pub mod nonsym;
pub mod richardson;
pub mod truncation;

pub use cg::{cg_solve, cg_solve_with_workspace, CgParams, CgWorkspace, Preconditioner};
pub use neumann::{
    neumann_series, neumann_series_with_workspace, stochastic_neumann, stochastic_neumann_batch_sizes,
    stochastic_neumann_with_workspace, NeumannParams, NeumannWorkspace,
};
pub use nonsym::{
    fixed_point_solve, fixed_point_solve_stochastic, fixed_point_solve_with_workspace, gmres_solve,
    gmres_solve_with_workspace, FixedPointParams, FixedPointWorkspace, GmresParams, GmresWorkspace, IdentityMinus,
};
pub use richardson::{
    richardson_solve, richardson_solve_stochastic, richardson_solve_with_workspace, RichardsonParams,
    RichardsonWorkspace,
};
pub use truncation::{
    draw_truncation_depth, randomized_truncation, randomized_truncation_with_workspace, truncated_neumann,
    truncated_neumann_with_workspace, TruncationParams, TruncationWorkspace,
};

use crate::error::{check_finite, check_len, check_positive, KernelError, Result};
use crate::linop::Operator;

/// A residual larger than this multiple of the initial residual means the iteration diverged.
pub const DIVERGENCE_FACTOR: f64 = 1e12;

/// Largest `max_iters` for which a residual history may be recorded (its buffer, `max_iters + 1`
/// doubles, is allocated before iterating: this bounds it to 128 MiB).
pub const MAX_HISTORY_LEN: usize = 1 << 24;

/// What a solver did.
#[derive(Clone, Debug, PartialEq)]
pub struct SolveReport {
    /// Iterations performed (each solver's doc says what one iteration is; for all of them it is
    /// one operator application, the unit the papers count).
    pub iterations: usize,
    /// The residual norm `‖b − A x‖` the stopping test saw last (see each solver for which iterate).
    pub residual_norm: f64,
    /// Whether `residual_norm ≤ max(abs_tol, rel_tol·‖b‖)`.
    pub converged: bool,
    /// Residual norms, one per measured iterate (`history[0]`: the warm start), when requested.
    pub history: Option<Vec<f64>>,
}

/// A sequence of operators `H_0, H_1, …` of one dimension, applied one per step or term: "the
/// Hessian on mini-batch B_j". The solver passes the step/term index (each solver documents its
/// indexing); implementations may ignore it and draw a fresh batch per call.
///
/// Implemented for closures `FnMut(index, v, out)`, for [`OperatorList`] (a slice, indexed
/// directly) and for [`Repeated`] (one operator for every index). `apply` must not allocate.
pub trait OperatorSequence {
    /// Writes `H_index · v` into `out`; both have the system's dimension.
    fn apply(&mut self, index: usize, v: &[f64], out: &mut [f64]);
    /// How many operators the sequence holds (`None`: unbounded, e.g. a sampler).
    fn count(&self) -> Option<usize> {
        None
    }
    /// Checks that every operator has dimension `dim` (default: the caller vouches for it).
    fn check_dim(&self, dim: usize) -> Result<()> {
        let _ = dim;
        Ok(())
    }
}

impl<F: FnMut(usize, &[f64], &mut [f64])> OperatorSequence for F {
    fn apply(&mut self, index: usize, v: &[f64], out: &mut [f64]) {
        self(index, v, out)
    }
}

/// A slice of operators as a sequence: index `j` applies `ops[j]`.
#[derive(Clone, Copy, Debug)]
pub struct OperatorList<'a, O>(pub &'a [O]);

impl<O: Operator> OperatorSequence for OperatorList<'_, O> {
    fn apply(&mut self, index: usize, v: &[f64], out: &mut [f64]) {
        self.0[index].apply(v, out)
    }
    fn count(&self) -> Option<usize> {
        Some(self.0.len())
    }
    fn check_dim(&self, dim: usize) -> Result<()> {
        self.0.iter().try_for_each(|op| check_len("operator in the sequence", dim, op.dim()))
    }
}

/// One operator for every index: the deterministic case of a stochastic solver.
#[derive(Clone, Copy, Debug)]
pub struct Repeated<O>(pub O);

impl<O: Operator> OperatorSequence for Repeated<O> {
    fn apply(&mut self, _index: usize, v: &[f64], out: &mut [f64]) {
        self.0.apply(v, out)
    }
    fn check_dim(&self, dim: usize) -> Result<()> {
        check_len("operator", dim, self.0.dim())
    }
}

/// `Ok` if both tolerances are finite and ≥ 0.
pub(crate) fn check_tolerances(rel_tol: f64, abs_tol: f64) -> Result<()> {
    for (name, value) in [("rel_tol", rel_tol), ("abs_tol", abs_tol)] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(KernelError::InvalidParameter {
                name,
                reason: format!("must be finite and >= 0, got {value}"),
            });
        }
    }
    Ok(())
}

/// The stopping threshold `max(abs_tol, rel_tol·‖b‖)`.
pub(crate) fn target(rel_tol: f64, abs_tol: f64, b_norm: f64) -> f64 {
    abs_tol.max(rel_tol * b_norm)
}

/// `Err(Diverged)` if `residual` is non-finite or above [`DIVERGENCE_FACTOR`] × `initial`.
pub(crate) fn check_divergence(iteration: usize, residual: f64, initial: f64) -> Result<()> {
    if residual.is_finite() && residual <= DIVERGENCE_FACTOR * initial {
        Ok(())
    } else {
        Err(KernelError::Diverged { iteration, residual })
    }
}

/// A residual history whose buffer is allocated once, before iterating; `push` never reallocates
/// (entries beyond the reserved capacity are dropped, which the solvers never reach).
pub(crate) struct History(Option<Vec<f64>>);

impl History {
    /// Reserves `capacity` entries if `record`; errors if `capacity` exceeds [`MAX_HISTORY_LEN`] + 1.
    pub(crate) fn new(record: bool, capacity: usize) -> Result<Self> {
        if !record {
            return Ok(Self(None));
        }
        if capacity > MAX_HISTORY_LEN + 1 {
            return Err(KernelError::InvalidParameter {
                name: "max_iters",
                reason: format!("recording a history needs max_iters <= {MAX_HISTORY_LEN}, got {}", capacity - 1),
            });
        }
        Ok(Self(Some(Vec::with_capacity(capacity))))
    }

    pub(crate) fn push(&mut self, value: f64) {
        if let Some(h) = &mut self.0 {
            if h.len() < h.capacity() {
                h.push(value);
            }
        }
    }

    pub(crate) fn report(self, iterations: usize, residual_norm: f64, converged: bool) -> SolveReport {
        SolveReport { iterations, residual_norm, converged, history: self.0 }
    }
}

/// `max_iters + 1` without overflow (the history capacity: the warm start plus one per iteration).
pub(crate) fn history_capacity(max_iters: usize) -> usize {
    max_iters.saturating_add(1)
}

/// The settings shared by the stationary iterations (Richardson, fixed point).
pub(crate) struct Stationary {
    pub step: f64,
    pub rel_tol: f64,
    pub abs_tol: f64,
    pub max_iters: usize,
    pub record_history: bool,
}

/// The loop of the stationary iterations: step k applies operator k of `seq` to `x` into `t`,
/// then `update(step, t, b, x)` moves `x` in one fused pass and returns the squared residual of
/// the incoming iterate. Validates everything first; stops on the tolerance, the cap or a
/// divergence.
pub(crate) fn stationary_iteration(
    seq: &mut dyn OperatorSequence,
    b: &[f64],
    x: &mut [f64],
    x_name: &'static str,
    p: Stationary,
    t: &mut [f64],
    update: fn(f64, &[f64], &[f64], &mut [f64]) -> f64,
) -> Result<SolveReport> {
    let n = b.len();
    seq.check_dim(n)?;
    check_len(x_name, n, x.len())?;
    check_len("workspace", n, t.len())?;
    check_finite("rhs", b)?;
    check_finite(x_name, x)?;
    check_positive("step", p.step)?;
    check_tolerances(p.rel_tol, p.abs_tol)?;
    if p.max_iters == 0 {
        return Err(KernelError::InvalidParameter { name: "max_iters", reason: "must be >= 1".into() });
    }
    if let Some(count) = seq.count() {
        if count < p.max_iters {
            return Err(KernelError::InvalidParameter {
                name: "max_iters",
                reason: format!("{} steps need as many operators, the sequence holds {count}", p.max_iters),
            });
        }
    }
    let mut history = History::new(p.record_history, history_capacity(p.max_iters))?;
    let tol = target(p.rel_tol, p.abs_tol, crate::ops::norm2(b));
    let mut initial = f64::INFINITY;
    let mut residual = f64::NAN;
    for k in 0..p.max_iters {
        seq.apply(k, x, t);
        residual = update(p.step, t, b, x).sqrt();
        if k == 0 {
            initial = residual;
        }
        check_divergence(k, residual, initial)?;
        history.push(residual);
        if residual <= tol {
            return Ok(history.report(k + 1, residual, true));
        }
    }
    Ok(history.report(p.max_iters, residual, false))
}
