//! Any bilevel problem with g strongly convex in y is a fixed-point problem through its
//! gradient map Φ(y, x) = y − η ∂y g(x, y) (Grazzi, Pontil & Salzo, *Bilevel Optimization with
//! a Lower-level Contraction*, §2: η ≤ 1/L_g makes Φ a q-contraction with q = 1 − ηµ_g). Then
//! ∂yΦᵀv = v − ηHv and ∂xΦᵀv = −η ∂x∂y g·v, and the adjoint system (I − ∂yΦᵀ)v = ∂y f is
//! ηHv = ∂y f: the usual hypergradient, with v scaled by 1/η.

use super::{Batch, BilevelProblem, FixedPointProblem, ProblemMetrics};
use crate::ops;

/// The gradient map of a bilevel problem as a fixed-point problem with one "sample" (the
/// full data, or the batch the caller passes on).
pub struct GradientMap<'a, P: ?Sized> {
    /// The bilevel problem.
    pub problem: &'a P,
    /// The map's step η (≤ 1/L_g makes it a contraction with q = 1 − ηµ_g).
    pub eta: f64,
}

impl<P: BilevelProblem + ?Sized> FixedPointProblem for GradientMap<'_, P> {
    fn dim_lambda(&self) -> usize {
        self.problem.dim_x()
    }
    fn dim_state(&self) -> usize {
        self.problem.dim_y()
    }
    fn n_samples(&self) -> usize {
        1
    }
    fn map(&self, x: &[f64], y: &[f64], b: Batch<'_>, out: &mut [f64]) {
        self.problem.grad_y_g(x, y, b, out);
        ops::axpby(1.0, y, -self.eta, out);
    }
    fn jvp_w(&self, x: &[f64], y: &[f64], v: &[f64], b: Batch<'_>, out: &mut [f64]) {
        self.problem.hvp(x, y, v, b, out);
        ops::axpby(1.0, v, -self.eta, out);
    }
    fn vjp_w(&self, x: &[f64], y: &[f64], v: &[f64], b: Batch<'_>, out: &mut [f64]) {
        self.jvp_w(x, y, v, b, out)
    }
    fn vjp_lambda(&self, x: &[f64], y: &[f64], v: &[f64], b: Batch<'_>, out: &mut [f64]) {
        self.problem.cross(x, y, v, b, out);
        ops::scale(-self.eta, out);
    }
    fn upper(&self, x: &[f64], y: &[f64], b: Batch<'_>) -> f64 {
        self.problem.f(x, y, b)
    }
    fn upper_grad_w(&self, x: &[f64], y: &[f64], b: Batch<'_>, out: &mut [f64]) {
        self.problem.grad_y_f(x, y, b, out)
    }
    fn upper_grad_lambda(&self, x: &[f64], y: &[f64], b: Batch<'_>, out: &mut [f64]) {
        self.problem.grad_x_f(x, y, b, out)
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        self.problem.metrics()
    }
    fn replay(&self, calls: &mut dyn FnMut()) {
        self.problem.replay(calls)
    }
}
