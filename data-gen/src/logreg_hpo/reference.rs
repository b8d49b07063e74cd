//! High-accuracy references for a problem without a closed form: y*(x) by inexact Newton with
//! CG inner solves on the full-batch HVP, then v*(x) by CG, L(x) and ∇L(x) = ∂x f − ∂x∂y g·v*.
//! Works for any [`BilevelProblem`] whose g is strongly convex in y.

use bilevel_kernels::linop::FnOp;
use bilevel_kernels::linsolve::{Cg, Stopping};
use bilevel_kernels::{ops, Batch, BilevelProblem, KernelError, Result};

/// Parameters of [`newton_y_star`] / [`reference_at`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewtonParams {
    /// Stop when ‖∂y g(x, y)‖ ≤ `grad_tol` (full batch). Default 1e-10.
    pub grad_tol: f64,
    /// Most Newton steps. Default 100.
    pub max_iters: usize,
    /// Most CG iterations per Newton step and for v*. Default 10,000.
    pub max_cg_iters: usize,
    /// Relative residual of the CG solve for v*. Default 1e-12.
    pub v_rel_tol: f64,
}

impl Default for NewtonParams {
    fn default() -> Self {
        Self { grad_tol: 1e-10, max_iters: 100, max_cg_iters: 10_000, v_rel_tol: 1e-12 }
    }
}

impl NewtonParams {
    /// Sets [`grad_tol`](Self::grad_tol).
    pub fn with_grad_tol(mut self, grad_tol: f64) -> Self {
        self.grad_tol = grad_tol;
        self
    }
    /// Sets [`max_iters`](Self::max_iters).
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.max_iters = max_iters;
        self
    }
}

/// What [`newton_y_star`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct NewtonReport {
    /// Newton steps taken.
    pub iterations: usize,
    /// CG iterations (HVPs) over all steps.
    pub cg_iterations: usize,
    /// ‖∂y g(x, y)‖ at the returned y.
    pub grad_norm: f64,
    /// Whether `grad_norm ≤ grad_tol`.
    pub converged: bool,
}

/// Minimizes y ↦ g(x, y) (full batch) from the warm start in `y` by inexact Newton: each step
/// solves ∂yy g·d = ∂y g by CG (the kernels' [`Cg`](bilevel_kernels::linsolve::Cg), relative tolerance
/// min(0.1, ‖∂y g‖), the usual forcing term for superlinear convergence) and backtracks
/// (Armijo, c = 1e-4). Near the optimum, where g's decrease falls below its rounding, a step
/// is also accepted when g does not grow beyond rounding and the gradient norm decreases.
/// Allocates (a reference computation, not an oracle). Errors: CG failures (a non-positive
/// curvature, divergence), non-finite values, wrong lengths.
pub fn newton_y_star<P: BilevelProblem + ?Sized>(
    p: &P,
    x: &[f64],
    y: &mut [f64],
    params: &NewtonParams,
) -> Result<NewtonReport> {
    use bilevel_kernels::error::{check_finite, check_len};
    let dy = p.dim_y();
    check_len("x", p.dim_x(), x.len())?;
    check_len("y", dy, y.len())?;
    check_finite("x", x)?;
    check_finite("y", y)?;
    let (mut grad, mut step, mut trial, mut trial_grad) = (vec![0.0; dy], vec![0.0; dy], vec![0.0; dy], vec![0.0; dy]);
    let nonfinite = |what| KernelError::NonFinite { what, index: 0 };
    let mut value = p.g(x, y, Batch::Full);
    p.grad_y_g(x, y, Batch::Full, &mut grad);
    let mut grad_norm = ops::norm2(&grad);
    if !(value.is_finite() && grad_norm.is_finite()) {
        return Err(nonfinite("g or its gradient at the warm start"));
    }
    let mut report =
        NewtonReport { iterations: 0, cg_iterations: 0, grad_norm, converged: grad_norm <= params.grad_tol };
    while !report.converged && report.iterations < params.max_iters {
        let yy: &[f64] = y;
        let hess = FnOp::symmetric(dy, |v: &[f64], out: &mut [f64]| p.hvp(x, yy, v, Batch::Full, out));
        step.fill(0.0);
        let mut cg =
            Cg::new(dy, Stopping::default().with_rel_tol(grad_norm.min(0.1)).with_max_iters(params.max_cg_iters));
        report.cg_iterations += cg.solve(&hess, &grad, &mut step)?.iterations;
        let slope = ops::dot(&grad, &step); // g decreases along −step at rate `slope` > 0
        let mut t = 1.0;
        loop {
            trial.copy_from_slice(y);
            ops::axpy(-t, &step, &mut trial);
            let trial_value = p.g(x, &trial, Batch::Full);
            p.grad_y_g(x, &trial, Batch::Full, &mut trial_grad);
            let trial_norm = ops::norm2(&trial_grad);
            let armijo = trial_value <= value - 1e-4 * t * slope;
            let flat = trial_value <= value + 1e-14 * value.abs().max(1.0) && trial_norm < grad_norm;
            if trial_value.is_finite() && trial_norm.is_finite() && (armijo || flat) {
                y.copy_from_slice(&trial);
                grad.copy_from_slice(&trial_grad);
                (value, grad_norm) = (trial_value, trial_norm);
                break;
            }
            t *= 0.5;
            if t < 1e-12 {
                report.grad_norm = grad_norm;
                return Ok(report); // no further progress possible in floating point
            }
        }
        report.iterations += 1;
        report.grad_norm = grad_norm;
        report.converged = grad_norm <= params.grad_tol;
    }
    Ok(report)
}

/// A high-accuracy reference at one x: y*(x), v*(x), L(x) and ∇L(x).
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// y*(x), the minimizer of g(x, ·).
    pub y_star: Vec<f64>,
    /// v* = [∂yy g(x, y*)]⁻¹ ∂y f(x, y*).
    pub v_star: Vec<f64>,
    /// L(x) = f(x, y*) on the full validation set.
    pub value: f64,
    /// ∇L(x) = ∂x f − ∂x∂y g · v*.
    pub hypergradient: Vec<f64>,
    /// How the Newton solve for y* went.
    pub newton: NewtonReport,
    /// CG iterations of the v* solve.
    pub v_cg_iterations: usize,
}

/// Computes [`Reference`] at x from the warm start `y0` (zeros if `None`), all oracles on the
/// full batch: y* by [`newton_y_star`], v* by CG to `v_rel_tol`, then L and ∇L. Errors: those of
/// the solves, and a Newton solve that did not reach `grad_tol` (`Diverged`, with the
/// gradient norm reached as the residual).
pub fn reference_at<P: BilevelProblem + ?Sized>(
    p: &P,
    x: &[f64],
    y0: Option<&[f64]>,
    params: &NewtonParams,
) -> Result<Reference> {
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let mut y = match y0 {
        Some(y0) => {
            bilevel_kernels::error::check_len("y0", dy, y0.len())?;
            y0.to_vec()
        }
        None => vec![0.0; dy],
    };
    let newton = newton_y_star(p, x, &mut y, params)?;
    if !newton.converged {
        return Err(KernelError::Diverged { iteration: newton.iterations, residual: newton.grad_norm });
    }
    let mut b = vec![0.0; dy];
    p.grad_y_f(x, &y, Batch::Full, &mut b);
    let mut v = vec![0.0; dy];
    let yy: &[f64] = &y;
    let hess = FnOp::symmetric(dy, |u: &[f64], out: &mut [f64]| p.hvp(x, yy, u, Batch::Full, out));
    let mut cg = Cg::new(dy, Stopping::default().with_rel_tol(params.v_rel_tol).with_max_iters(params.max_cg_iters));
    let v_cg_iterations = cg.solve(&hess, &b, &mut v)?.iterations;
    let mut hypergradient = vec![0.0; dx];
    let mut cross = vec![0.0; dx];
    p.grad_x_f(x, &y, Batch::Full, &mut hypergradient);
    p.cross(x, &y, &v, Batch::Full, &mut cross);
    ops::axpy(-1.0, &cross, &mut hypergradient);
    let value = p.f(x, &y, Batch::Full);
    if !value.is_finite() || hypergradient.iter().any(|g| !g.is_finite()) {
        return Err(KernelError::NonFinite { what: "reference value or hypergradient", index: 0 });
    }
    Ok(Reference { y_star: y, v_star: v, value, hypergradient, newton, v_cg_iterations })
}
