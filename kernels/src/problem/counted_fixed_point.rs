//! [`CountedFixedPoint`]: the counting wrapper of a [`FixedPointProblem`], sharing
//! [`OracleCounts`] with [`Counted`](super::Counted) so both problem kinds have one count type
//! and one trace.

use super::{Batch, Counters, FixedPointProblem, OracleCounts, ProblemMetrics};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A fixed-point problem whose every oracle call is counted (atomics: usable from parallel
/// code), into the fields of [`OracleCounts`] its calls correspond to through the gradient map
/// ([`GradientMap`](super::GradientMap): Φ(y, x) = y − η∂y g), so that one count means the same
/// work on both problem kinds:
///
/// | fixed-point oracle | counted as | samples |
/// |---|---|---|
/// | `map` (Φ) | `grad_y_g` | `samples_g` |
/// | `jvp_w`, `vjp_w` (∂wΦ·v, ∂wΦᵀ·v) | `hvp` | `samples_g` |
/// | `vjp_lambda` (∂λΦᵀ·v) | `cross` | `samples_g` |
/// | `upper` (E) | `f` | `samples_f` |
/// | `upper_grad_w` (∇wE) | `grad_y_f` | `samples_f` |
/// | `upper_grad_lambda` (∇λE) | `grad_x_f` | `samples_f` |
///
/// `g` is never counted. Each call adds 1 to its field and the batch's length (the problem's
/// [`n_samples`](FixedPointProblem::n_samples) for [`Batch::Full`]) to its sample field: a map
/// on all n samples touches n states. A `GradientMap` of a [`Counted`](super::Counted) problem
/// and a `CountedFixedPoint` of a `GradientMap` count the same calls (the gradient map has one
/// sample: its samples are the bilevel problem's, counted by `Counted`).
pub struct CountedFixedPoint<P> {
    inner: P,
    c: Counters,
}

impl<P: FixedPointProblem> CountedFixedPoint<P> {
    /// Wraps `inner` with all counts at zero.
    pub fn new(inner: P) -> Self {
        Self { inner, c: Counters::default() }
    }
    /// The wrapped problem (calls to it are not counted).
    pub fn inner(&self) -> &P {
        &self.inner
    }
    /// Unwraps the problem.
    pub fn into_inner(self) -> P {
        self.inner
    }
    /// The counts so far, in the fields of the table above.
    pub fn counts(&self) -> OracleCounts {
        self.c.snapshot()
    }
    /// Sets every count to zero.
    pub fn reset(&self) {
        self.c.reset()
    }
    fn tick(&self, calls: &AtomicU64, upper: bool, batch: Batch<'_>) {
        calls.fetch_add(1, Relaxed);
        let samples = if upper { &self.c.samples_f } else { &self.c.samples_g };
        samples.fetch_add(batch.len(self.inner.n_samples()) as u64, Relaxed);
    }
}

impl<P: FixedPointProblem> FixedPointProblem for CountedFixedPoint<P> {
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
        self.tick(&self.c.grad_y_g, false, batch);
        self.inner.map(lambda, w, batch, out)
    }
    fn jvp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.hvp, false, batch);
        self.inner.jvp_w(lambda, w, v, batch, out)
    }
    fn vjp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.hvp, false, batch);
        self.inner.vjp_w(lambda, w, v, batch, out)
    }
    fn vjp_lambda(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.cross, false, batch);
        self.inner.vjp_lambda(lambda, w, v, batch, out)
    }
    fn upper(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>) -> f64 {
        self.tick(&self.c.f, true, batch);
        self.inner.upper(lambda, w, batch)
    }
    fn upper_grad_w(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.grad_y_f, true, batch);
        self.inner.upper_grad_w(lambda, w, batch, out)
    }
    fn upper_grad_lambda(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.grad_x_f, true, batch);
        self.inner.upper_grad_lambda(lambda, w, batch, out)
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        self.inner.metrics()
    }
}
