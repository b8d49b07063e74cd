//! Linear-system solvers for the adjoint of a bilevel problem, `H v = b` (H = ∂yy g, SPD) or
//! `(I − Jᵀ) v = b` (J = ∂wΦ of a contractive fixed-point map), all matrix-free.
//!
//! - [`Cg`]: conjugate gradient with warm start and Jacobi preconditioner (AID-CG, AmIGO-CG);
//! - [`Richardson`]: gradient / Richardson iteration `z ← z − β(Hz − b)` (AmIGO's B_k, AID-GD),
//!   with a fixed operator or a fresh one (mini-batch) per step;
//! - [`Neumann`]: the truncated Neumann series of stocBiO (Alg. 3), deterministic or with one
//!   mini-batch Hessian per term, and Proposition 3's batch sizes
//!   ([`stochastic_neumann_batch_sizes`]);
//! - [`RandomizedTruncation`]: the randomized-truncation estimator of BSA / TTSA / SUSTAIN;
//! - [`FixedPoint`] and [`Gmres`]: fixed-point iteration and restarted GMRES(m) for
//!   `(I − Jᵀ) v = b` (see [`nonsym`]).
//!
//! # One shape
//!
//! Every solver is a value built once for a dimension, owning its parameters and every
//! temporary it needs (the faer style: the workspace is stated and allocated up front), with ONE
//! entry point, `solve(&mut self, op, b, x) -> Result<SolveReport>`:
//!
//! ```
//! use bilevel_kernels::linop::Diagonal;
//! use bilevel_kernels::linsolve::{Cg, Neumann, Richardson, Sampled, Stopping};
//! use bilevel_kernels::Operator;
//!
//! let h = Diagonal::new(vec![1.0, 2.0, 4.0]).unwrap();
//! let b = [1.0, 1.0, 1.0];
//! let mut x = [0.0; 3];
//! // CG: a fixed symmetric operator; 3 steps cost exactly 3 products from x₀ = 0.
//! let mut cg = Cg::new(3, Stopping::fixed_steps(3));
//! let report = cg.solve(&h, &b, &mut x).unwrap();
//! assert!(report.converged && report.operator_applications <= 3);
//!
//! // Richardson: the same call for a fixed operator ...
//! let mut gd = Richardson::new(3, 0.25, Stopping::fixed_steps(50));
//! gd.solve(&h, &b, &mut x).unwrap();
//! // ... and for a sequence of sampled ones (step k applies operator k).
//! gd.solve(Sampled(|_k: usize, v: &[f64], out: &mut [f64]| h.apply(v, out)), &b, &mut x).unwrap();
//!
//! // Neumann: Q = 20 terms beyond the first, 20 products.
//! let mut neumann = Neumann::new(3, 0.25, Stopping::fixed_steps(20));
//! assert_eq!(neumann.solve(&h, &b, &mut x).unwrap().operator_applications, 20);
//! ```
//!
//! - **Operators.** The Krylov methods ([`Cg`], [`Gmres`]) take one fixed operator (`&O`; CG
//!   requires [`SymmetricOperator`], so a non-symmetric operator does not compile). The series
//!   and stationary methods ([`Richardson`], [`Neumann`], [`FixedPoint`],
//!   [`RandomizedTruncation`]) take any [`OperatorSequence`]: a fixed operator `&O` is one (the
//!   same operator for every index), as are [`Repeated`], [`OperatorList`], [`Sampled`]
//!   (a closure of the index, e.g. a fresh mini-batch) and `&mut S` for a sequence `S`.
//! - **Stopping.** One rule for all, [`Stopping`]: stop on `‖r‖ ≤ max(abs_tol, rel_tol·‖b‖)` with
//!   `r = b − A x`, or after `max_iters` steps, optionally recording the residual history.
//! - **One trait.** [`LinearSolver`] is the object-safe view "solve `H x = b` for a fixed
//!   symmetric H", implemented by [`Cg`], [`Richardson`], [`Neumann`], [`FixedPoint`] (on
//!   `Jᵀ = I − H`) and [`Gmres`]: a caller may hold a `Box<dyn LinearSolver>`.
//! - **Cost.** [`SolveReport::operator_applications`] counts every operator application the
//!   call made. A cold start (`x₀ = 0`) costs CG and GMRES no product for the initial residual
//!   (`r₀ = b`): N CG steps are exactly N products from zero, N + 1 from a non-zero warm start.
//!   Richardson, the fixed point and Neumann cost one product per step or term.
//!
//! Conventions shared by every solver:
//! - the solution slice is in/out: its initial content is the warm start (Neumann and the
//!   truncation estimator, which are series and not iterations, only write it);
//! - after construction a solve never allocates, except the residual history when requested
//!   (one buffer of `max_iters + 1` entries, reserved before iterating);
//! - inputs are validated before the first operator application: sizes, finiteness of the
//!   right-hand side and warm start, parameters, all as [`KernelError`];
//! - a residual that becomes non-finite or exceeds [`DIVERGENCE_FACTOR`] times the initial one
//!   gives [`KernelError::Diverged`]. On any error the solution slice's content is unspecified.

pub mod cg;
pub mod neumann;
pub mod nonsym;
pub mod richardson;
pub mod truncation;

pub use cg::{Cg, CgParams, Preconditioner, RESIDUAL_FLOOR};
pub use neumann::{stochastic_neumann_batch_sizes, Neumann};
pub use nonsym::{FixedPoint, FixedPointRule, Gmres, IdentityMinus};
pub use richardson::{Richardson, RichardsonRule};
pub use truncation::{draw_truncation_depth, RandomizedTruncation};

use crate::error::{check_finite, check_len, check_positive, KernelError, Result};
use crate::linop::{Operator, SymmetricOperator};

/// A residual larger than this multiple of the initial residual means the iteration diverged.
pub const DIVERGENCE_FACTOR: f64 = 1e12;

/// Largest `max_iters` for which a residual history may be recorded (its buffer, `max_iters + 1`
/// doubles, is allocated before iterating: this bounds it to 128 MiB).
pub const MAX_HISTORY_LEN: usize = 1 << 24;

// ---------------------------------------------------------------------------------------------
// The stopping rule and the report
// ---------------------------------------------------------------------------------------------

/// When a solver stops, shared by every solver: as converged once
/// `‖r‖ ≤ max(abs_tol, rel_tol·‖b‖)` (`r = b − A x`; each solver says which iterate it measures),
/// otherwise after `max_iters` steps (each solver says what a step is).
///
/// A fixed budget of N steps, as the papers run their inner solvers, is
/// [`Stopping::fixed_steps(N)`](Stopping::fixed_steps).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Stopping {
    /// Relative tolerance, finite and ≥ 0. Default 1e-10.
    pub rel_tol: f64,
    /// Absolute tolerance, finite and ≥ 0. Default 0.
    pub abs_tol: f64,
    /// Step cap (the fixed budget when both tolerances are 0). Default 1000.
    pub max_iters: usize,
    /// Record the residual norms in [`SolveReport::history`] (`history[0]`: the first one
    /// measured; at most [`MAX_HISTORY_LEN`] steps). Default false.
    pub record_history: bool,
}

impl Default for Stopping {
    fn default() -> Self {
        Self { rel_tol: 1e-10, abs_tol: 0.0, max_iters: 1000, record_history: false }
    }
}

impl Stopping {
    /// Exactly `steps` steps: both tolerances 0 (CG still stops at its [`RESIDUAL_FLOOR`]).
    pub fn fixed_steps(steps: usize) -> Self {
        Self { rel_tol: 0.0, abs_tol: 0.0, max_iters: steps, record_history: false }
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

    /// The threshold `max(abs_tol, rel_tol·‖b‖)`.
    pub fn target(&self, b_norm: f64) -> f64 {
        self.abs_tol.max(self.rel_tol * b_norm)
    }

    /// Checks the tolerances (finite, ≥ 0), that `max_iters ≥ 1` when `min_iters_one`, and
    /// reserves the history buffer (`max_iters + 1` entries) when it is recorded.
    pub(crate) fn start(&self, min_iters_one: bool) -> Result<History> {
        for (name, value) in [("rel_tol", self.rel_tol), ("abs_tol", self.abs_tol)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(KernelError::InvalidParameter {
                    name,
                    reason: format!("must be finite and >= 0, got {value}"),
                });
            }
        }
        if min_iters_one && self.max_iters == 0 {
            return Err(KernelError::InvalidParameter { name: "max_iters", reason: "must be >= 1".into() });
        }
        History::new(self.record_history, self.max_iters)
    }
}

/// What a solve did and what it cost.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SolveReport {
    /// Steps performed: CG and GMRES iterations (one product each), Richardson and fixed-point
    /// steps, Neumann terms beyond the first.
    pub iterations: usize,
    /// Every operator application the solve made, the unit the papers count. For Richardson, the
    /// fixed point and Neumann it equals `iterations`. CG: `iterations`, plus one for the initial
    /// residual `b − Hx₀` when the warm start is not all zero (x₀ = 0 gives r₀ = b for free), so
    /// N steps cost N products cold and N + 1 warm. GMRES: `iterations`, plus one per restart
    /// cycle (the true residual at its end), plus one for a non-zero warm start.
    pub operator_applications: usize,
    /// The residual norm `‖b − A x‖` the stopping test saw last (see each solver for which iterate).
    pub residual_norm: f64,
    /// Whether `residual_norm ≤ max(abs_tol, rel_tol·‖b‖)` (for CG, or its rounding floor).
    pub converged: bool,
    /// Residual norms, one per measured iterate, when [`Stopping::record_history`] is set.
    pub history: Option<Vec<f64>>,
}

// ---------------------------------------------------------------------------------------------
// Operators: fixed, sequences of sampled ones
// ---------------------------------------------------------------------------------------------

/// A sequence of operators `H_0, H_1, …` of one dimension, applied one per step or term: "the
/// Hessian on mini-batch B_j". The solver passes the step/term index (each solver documents its
/// indexing); implementations may ignore it and draw a fresh batch per call.
///
/// Implemented for a fixed operator `&O` (every index applies it, like [`Repeated`]), for
/// [`OperatorList`] (a slice, indexed directly), for [`Sampled`] (a closure `FnMut(index, v, out)`)
/// and for `&mut S`. `apply` must not allocate.
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

impl<O: Operator + ?Sized> OperatorSequence for &O {
    fn apply(&mut self, _index: usize, v: &[f64], out: &mut [f64]) {
        Operator::apply(*self, v, out)
    }
    fn check_dim(&self, dim: usize) -> Result<()> {
        check_len("operator", dim, self.dim())
    }
}

impl<S: OperatorSequence + ?Sized> OperatorSequence for &mut S {
    fn apply(&mut self, index: usize, v: &[f64], out: &mut [f64]) {
        (**self).apply(index, v, out)
    }
    fn count(&self) -> Option<usize> {
        (**self).count()
    }
    fn check_dim(&self, dim: usize) -> Result<()> {
        (**self).check_dim(dim)
    }
}

/// Operators given by a closure `|index, v, out| out = H_index · v` (e.g. the Hessian on a
/// mini-batch drawn at each call); unbounded, of the dimension the caller vouches for.
#[derive(Clone, Copy, Debug)]
pub struct Sampled<F>(pub F);

impl<F: FnMut(usize, &[f64], &mut [f64])> OperatorSequence for Sampled<F> {
    fn apply(&mut self, index: usize, v: &[f64], out: &mut [f64]) {
        (self.0)(index, v, out)
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

/// One owned operator for every index: the deterministic case of a stochastic solver (`&O` does
/// the same for a borrowed one).
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

// ---------------------------------------------------------------------------------------------
// The object-safe view
// ---------------------------------------------------------------------------------------------

/// Any solver of `H x = b` for one fixed symmetric operator H, object safe: an estimator that
/// lets its user pick CG, gradient descent, the fixed point or Neumann holds a
/// `Box<dyn LinearSolver>` and calls [`solve`](LinearSolver::solve), with no workspace to match.
///
/// Each method forwards to the solver's own `solve` (same semantics, same report); the
/// stochastic forms (one operator per step) are reached through the concrete types.
pub trait LinearSolver {
    /// Solves `H x = b` from the warm start in `x` (ignored by the series: Neumann).
    fn solve(&mut self, op: &dyn SymmetricOperator, b: &[f64], x: &mut [f64]) -> Result<SolveReport>;
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the solvers
// ---------------------------------------------------------------------------------------------

/// `Err(Diverged)` if `residual` is non-finite or above [`DIVERGENCE_FACTOR`] × `initial`.
pub(crate) fn check_divergence(iteration: usize, residual: f64, initial: f64) -> Result<()> {
    if residual.is_finite() && residual <= DIVERGENCE_FACTOR * initial {
        Ok(())
    } else {
        Err(KernelError::Diverged { iteration, residual })
    }
}

/// `Err(InvalidParameter(name))` if a sequence with a known count holds fewer than `needed`
/// operators.
pub(crate) fn check_count(seq: &dyn OperatorSequence, needed: usize, name: &'static str, what: &str) -> Result<()> {
    match seq.count() {
        Some(count) if count < needed => Err(KernelError::InvalidParameter {
            name,
            reason: format!("{needed} {what} need as many operators, the sequence holds {count}"),
        }),
        _ => Ok(()),
    }
}

/// A residual history whose buffer is allocated once, before iterating; `push` never reallocates
/// (entries beyond the reserved capacity are dropped, which the solvers never reach).
pub(crate) struct History(Option<Vec<f64>>);

impl History {
    /// Reserves `max_iters + 1` entries if `record`; errors if `max_iters` exceeds
    /// [`MAX_HISTORY_LEN`].
    fn new(record: bool, max_iters: usize) -> Result<Self> {
        if !record {
            return Ok(Self(None));
        }
        if max_iters > MAX_HISTORY_LEN {
            return Err(KernelError::InvalidParameter {
                name: "max_iters",
                reason: format!("recording a history needs max_iters <= {MAX_HISTORY_LEN}, got {max_iters}"),
            });
        }
        Ok(Self(Some(Vec::with_capacity(max_iters + 1))))
    }

    pub(crate) fn push(&mut self, value: f64) {
        if let Some(h) = &mut self.0 {
            if h.len() < h.capacity() {
                h.push(value);
            }
        }
    }

    /// The report of a solve that made `iterations` steps and `applications` products.
    pub(crate) fn report(
        self,
        iterations: usize,
        applications: usize,
        residual_norm: f64,
        converged: bool,
    ) -> SolveReport {
        SolveReport { iterations, operator_applications: applications, residual_norm, converged, history: self.0 }
    }
}

/// Whether every entry is ±0 (a cold start, whose residual is `b` with no product).
pub(crate) fn is_zero(x: &[f64]) -> bool {
    x.iter().all(|&v| v == 0.0)
}

/// A stationary iteration `x ← x + step·(update of A_k x, b, x)` with its update rule `K`
/// ([`Richardson`], [`FixedPoint`]): the step, the [`Stopping`] rule and the one work vector
/// `t = A_k x`, allocated once by [`new`](Self::new). The step is checked by `solve`.
#[derive(Clone, Debug)]
pub struct Stationary<K> {
    step: f64,
    stopping: Stopping,
    t: Vec<f64>,
    rule: std::marker::PhantomData<K>,
}

/// The fused pass of a stationary iteration: `update(step, A_k x, b, x)` moves `x` and returns
/// the squared residual of the incoming iterate.
pub trait StationaryRule {
    /// The name of the iterate in error messages (`z0`, `v0`).
    const ITERATE: &'static str;
    /// The fused update.
    fn update(step: f64, t: &[f64], b: &[f64], x: &mut [f64]) -> f64;
}

impl<K: StationaryRule> Stationary<K> {
    /// A solver for systems of dimension `dim` with the step and a stopping rule (a fixed
    /// budget, as AmIGO's N: [`Stopping::fixed_steps`]).
    pub fn new(dim: usize, step: f64, stopping: Stopping) -> Self {
        Self { step, stopping, t: vec![0.0; dim], rule: std::marker::PhantomData }
    }
    /// The dimension this solver was built for.
    pub fn dim(&self) -> usize {
        self.t.len()
    }
    /// The step (β of Richardson, η of the fixed point).
    pub fn step(&self) -> f64 {
        self.step
    }
    /// Sets the step of the next solves.
    pub fn set_step(&mut self, step: f64) {
        self.step = step;
    }
    /// The stopping rule of the next solves, to change between them.
    pub fn stopping_mut(&mut self) -> &mut Stopping {
        &mut self.stopping
    }

    /// The loop: step k applies operator k of `seq` to `x` into `t`, then `update(step, t, b, x)`
    /// moves `x` in one fused pass and returns the squared residual of the incoming iterate.
    /// Validates everything first; stops on the tolerance, the cap or a divergence. One product
    /// per step.
    pub(crate) fn run(&mut self, seq: &mut dyn OperatorSequence, b: &[f64], x: &mut [f64]) -> Result<SolveReport> {
        let (x_name, update) = (K::ITERATE, K::update);
        let Self { step, stopping, t, .. } = self;
        let n = t.len();
        seq.check_dim(n)?;
        check_len("rhs", n, b.len())?;
        check_len(x_name, n, x.len())?;
        check_finite("rhs", b)?;
        check_finite(x_name, x)?;
        check_positive("step", *step)?;
        let mut history = stopping.start(true)?;
        check_count(seq, stopping.max_iters, "max_iters", "steps")?;
        let tol = stopping.target(crate::ops::norm2(b));
        let mut initial = f64::INFINITY;
        let mut residual = f64::NAN;
        for k in 0..stopping.max_iters {
            crate::interrupt::check()?;
            seq.apply(k, x, t);
            residual = update(*step, t, b, x).sqrt();
            if k == 0 {
                initial = residual;
            }
            check_divergence(k, residual, initial)?;
            history.push(residual);
            if residual <= tol {
                return Ok(history.report(k + 1, k + 1, residual, true));
            }
        }
        Ok(history.report(stopping.max_iters, stopping.max_iters, residual, false))
    }
}
