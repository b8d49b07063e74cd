//! Hypergradient estimators: given x and an approximate inner solution y, estimate
//! `∇L(x) = ∂x f(x, y) − ∂x∂y g(x, y)·v` with `∂yy g(x, y)·v = ∂y f(x, y)`.
//!
//! - [`Aid`] ([`aid`]): approximate implicit differentiation, the adjoint by CG, GD, the
//!   fixed-point iteration or a truncated Neumann series;
//! - [`Itd`] ([`itd`]): iterative differentiation in reverse mode through T inner steps;
//! - [`Sid`] ([`sid`]): SID for lower levels given as contractions (no warm start);
//! - [`TruncatedHypergradient`] ([`truncated`]): the randomized-truncation estimator of
//!   Ghadimi & Wang and SUSTAIN (BSA, TTSA, SUSTAIN);
//! - [`exact_hypergradient`]: the problem's closed form, and [`crate::reference`] for problems
//!   without one.
//!
//! Workspaces are sized by `init`/the constructors; an estimate allocates nothing.

pub mod aid;
pub mod itd;
pub mod sid;
pub mod truncated;

pub use aid::{AdjointSolver, Aid, AidConfig, AidStreams};
pub use itd::Itd;
pub use sid::{Sid, SidStreams};
pub use truncated::TruncatedHypergradient;

use bilevel_kernels::{check_len, BilevelProblem, KernelError, Result};

/// What an AID estimate cost and how far its adjoint solve got.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EstimateReport {
    /// Adjoint-solver iterations run.
    pub iterations: usize,
    /// The solver's last residual norm ‖H v − ∂y f‖ (as the solver measures it).
    pub residual_norm: f64,
}

/// The sizes of an estimate's arguments against `problem`, and of the estimator's workspace
/// (sized at construction: `(dim_x, dim_y)`).
fn check_sizes(problem: &dyn BilevelProblem, x: &[f64], y: &[f64], out: &[f64], ws: (usize, usize)) -> Result<()> {
    let (dx, dy) = (problem.dim_x(), problem.dim_y());
    check_len("x", dx, x.len())?;
    check_len("y", dy, y.len())?;
    check_len("hypergradient", dx, out.len())?;
    check_len("estimator's dim_x", dx, ws.0)?;
    check_len("estimator's dim_y", dy, ws.1)
}

/// The exact hypergradient ∇L(x) from the problem's closed form, or an error if it has none.
pub fn exact_hypergradient(problem: &dyn BilevelProblem, x: &[f64], out: &mut [f64]) -> Result<()> {
    check_len("x", problem.dim_x(), x.len())?;
    check_len("hypergradient", problem.dim_x(), out.len())?;
    let exact = problem.exact().ok_or_else(|| KernelError::InvalidParameter {
        name: "problem",
        reason: "has no exact reference (no closed-form hypergradient)".into(),
    })?;
    exact.hypergradient(x, out);
    Ok(())
}
