//! A problem wrapper that logs every oracle call with its mini-batch, so that another
//! implementation (the Python sides of `bench/peers/`) can replay a stochastic algorithm on
//! exactly the batches the Rust run drew. Used on an untimed pass only.

use bilevel_kernels::{Batch, BilevelProblem, ExactReference, ProblemConstants, ProblemMetrics};
use std::sync::Mutex;

/// Which oracle a call was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oracle {
    /// f(x, y)
    F,
    /// g(x, y)
    G,
    /// ∂x f
    GradXF,
    /// ∂y f
    GradYF,
    /// ∂y g
    GradYG,
    /// ∂yy g · v
    Hvp,
    /// ∂x∂y g · v
    Cross,
}

/// One logged call: the oracle and its rows (`None`: the full batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The oracle.
    pub oracle: Oracle,
    /// The batch's rows, or `None` for [`Batch::Full`].
    pub rows: Option<Vec<usize>>,
}

/// `inner` with every oracle call logged in order. `inner_gradient_steps` runs the trait's
/// default loop (one `grad_y_g` per step, logged), which is what a problem's mini-batch loop
/// does; a problem whose override differs on mini-batches would not replay to the same bits,
/// which the caller checks.
pub struct Recorder<'a> {
    inner: &'a dyn BilevelProblem,
    log: Mutex<Vec<Call>>,
}

impl<'a> Recorder<'a> {
    /// An empty log over `inner`.
    pub fn new(inner: &'a dyn BilevelProblem) -> Self {
        Self { inner, log: Mutex::new(Vec::new()) }
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, oracle: Oracle, batch: Batch<'_>) {
        let rows = match batch {
            Batch::Full => None,
            Batch::Rows(r) => Some(r.to_vec()),
        };
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(Call { oracle, rows });
    }
}

impl BilevelProblem for Recorder<'_> {
    fn dim_x(&self) -> usize {
        self.inner.dim_x()
    }
    fn dim_y(&self) -> usize {
        self.inner.dim_y()
    }
    fn n_samples_f(&self) -> usize {
        self.inner.n_samples_f()
    }
    fn n_samples_g(&self) -> usize {
        self.inner.n_samples_g()
    }
    fn f(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        self.push(Oracle::F, batch);
        self.inner.f(x, y, batch)
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        self.push(Oracle::G, batch);
        self.inner.g(x, y, batch)
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.push(Oracle::GradXF, batch);
        self.inner.grad_x_f(x, y, batch, out)
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.push(Oracle::GradYF, batch);
        self.inner.grad_y_f(x, y, batch, out)
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.push(Oracle::GradYG, batch);
        self.inner.grad_y_g(x, y, batch, out)
    }
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.push(Oracle::Hvp, batch);
        self.inner.hvp(x, y, v, batch, out)
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.push(Oracle::Cross, batch);
        self.inner.cross(x, y, v, batch, out)
    }
    fn exact(&self) -> Option<&dyn ExactReference> {
        self.inner.exact()
    }
    fn constants(&self) -> ProblemConstants {
        self.inner.constants()
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        self.inner.metrics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bilevel_data::stochastic_quadratic::{generate, Config};

    #[test]
    fn logs_each_call_with_its_rows_and_forwards_the_result() {
        let p = generate(&Config::preset("tiny").unwrap(), 0).unwrap();
        let rec = Recorder::new(&p);
        let (x, y) = (vec![0.5; p.dim_x()], vec![-0.25; p.dim_y()]);
        let (mut a, mut b) = (vec![0.0; p.dim_y()], vec![0.0; p.dim_y()]);
        rec.hvp(&x, &y, &y, Batch::Rows(&[3, 1]), &mut a);
        p.hvp(&x, &y, &y, Batch::Rows(&[3, 1]), &mut b);
        assert_eq!(a, b);
        rec.grad_y_g(&x, &y, Batch::Full, &mut a);
        assert_eq!(
            rec.calls(),
            vec![Call { oracle: Oracle::Hvp, rows: Some(vec![3, 1]) }, Call { oracle: Oracle::GradYG, rows: None }]
        );
    }
}
