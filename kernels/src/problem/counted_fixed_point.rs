//! [`Counted`] of a [`FixedPointProblem`]: the same wrapper and the same
//! [`OracleCounts`](super::OracleCounts) as for a bilevel problem, so both problem kinds have one
//! count type and one trace. Each call is counted in the field its work corresponds to through
//! the gradient map ([`GradientMap`](super::GradientMap): Φ(y, x) = y − η∂y g):
//!
//! | fixed-point oracle | counted as | samples |
//! |---|---|---|
//! | `map` (Φ) | `grad_y_g` | `samples_g` |
//! | `jvp_w`, `vjp_w` (∂wΦ·v, ∂wΦᵀ·v) | `hvp` | `samples_g` |
//! | `vjp_lambda` (∂λΦᵀ·v) | `cross` | `samples_g` |
//! | `upper` (E) | `f` | `samples_f` |
//! | `upper_grad_w` (∇wE) | `grad_y_f` | `samples_f` |
//! | `upper_grad_lambda` (∇λE) | `grad_x_f` | `samples_f` |
//!
//! `g` is never counted, nor the projection [`project`](FixedPointProblem::project) (not an oracle). Each call adds 1 to its field and the batch's length (the problem's
//! [`n_samples`](FixedPointProblem::n_samples) for [`Batch::Full`]) to its sample field: a map on
//! all n samples touches n states. A `GradientMap` of a counted bilevel problem and a counted
//! `GradientMap` count the same calls (the gradient map has one sample: its samples are the
//! bilevel problem's).

use super::{Batch, Counted, FixedPointProblem, ProblemMetrics};
use std::sync::atomic::AtomicU64;

impl<P: FixedPointProblem> Counted<P> {
    fn tick_fp(&self, calls: &AtomicU64, upper: bool, batch: Batch<'_>) {
        self.tick_samples(calls, 1, upper, batch, self.inner.n_samples())
    }
}

impl<P: FixedPointProblem> FixedPointProblem for Counted<P> {
    fn dim_lambda(&self) -> usize {
        self.inner.dim_lambda()
    }
    fn dim_state(&self) -> usize {
        self.inner.dim_state()
    }
    fn n_samples(&self) -> usize {
        self.inner.n_samples()
    }
    fn map(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick_fp(&self.c.grad_y_g, false, batch);
        self.inner.map(lambda, w, batch, out)
    }
    fn jvp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick_fp(&self.c.hvp, false, batch);
        self.inner.jvp_w(lambda, w, v, batch, out)
    }
    fn vjp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick_fp(&self.c.hvp, false, batch);
        self.inner.vjp_w(lambda, w, v, batch, out)
    }
    fn vjp_lambda(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick_fp(&self.c.cross, false, batch);
        self.inner.vjp_lambda(lambda, w, v, batch, out)
    }
    fn upper(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>) -> f64 {
        self.tick_fp(&self.c.f, true, batch);
        self.inner.upper(lambda, w, batch)
    }
    fn upper_grad_w(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick_fp(&self.c.grad_y_f, true, batch);
        self.inner.upper_grad_w(lambda, w, batch, out)
    }
    fn upper_grad_lambda(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick_fp(&self.c.grad_x_f, true, batch);
        self.inner.upper_grad_lambda(lambda, w, batch, out)
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        self.inner.metrics()
    }
    fn constraint_set(&self) -> Option<&str> {
        self.inner.constraint_set()
    }
    /// Not an oracle: not counted.
    fn project(&self, lambda: &mut [f64]) -> crate::Result<()> {
        self.inner.project(lambda)
    }
    fn replay(&self, calls: &mut dyn FnMut()) {
        self.replaying(calls)
    }
}
