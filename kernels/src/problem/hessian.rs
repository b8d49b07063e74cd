//! The Hessian of the lower level, `∂yy g(x, y)` on a batch, as a symmetric operator: what
//! every adjoint solver runs on.

use super::{Batch, BilevelProblem};
use crate::linop::{Operator, SymmetricOperator};

/// `v ↦ ∂yy g(x, y)·v` on `batch`: one [`BilevelProblem::hvp`] per application (counted as
/// one HVP when the problem is [`Counted`](super::Counted)).
pub struct HessianOp<'a, P: ?Sized> {
    problem: &'a P,
    x: &'a [f64],
    y: &'a [f64],
    batch: Batch<'a>,
}

impl<'a, P: BilevelProblem + ?Sized> HessianOp<'a, P> {
    /// The Hessian of `problem`'s g at (x, y) on `batch`.
    pub fn new(problem: &'a P, x: &'a [f64], y: &'a [f64], batch: Batch<'a>) -> Self {
        Self { problem, x, y, batch }
    }
}

impl<P: BilevelProblem + ?Sized> Operator for HessianOp<'_, P> {
    fn dim(&self) -> usize {
        self.problem.dim_y()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.problem.hvp(self.x, self.y, v, self.batch, out)
    }
}

impl<P: BilevelProblem + ?Sized> SymmetricOperator for HessianOp<'_, P> {}
