//! A reference hypergradient for problems without a closed form: y*(x) by Newton's method on g
//! with the dense Hessian (quadratic convergence, to the rounding floor), v* and ∇L(x) from one
//! dense Cholesky factorisation of ∂yy g(x, y*).
//!
//! Cost: d_y HVPs and a d_y³/3 factorisation per Newton step (typically 5-10 steps): a
//! reference for tests and small problems (d_y up to [`MAX_DIM`]), never for algorithms.

use bilevel_kernels::linop::to_dense;
use bilevel_kernels::{ops, Batch, BilevelProblem, HessianOp, KernelError, Result};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};

/// Largest d_y for which [`reference_hypergradient`] builds the dense Hessian (8 MB at 1000).
pub const MAX_DIM: usize = 1000;

/// Newton stops when ‖∂y g‖ ≤ this × max(1, ‖∂y g(x, y_start)‖).
pub const GRAD_TOL: f64 = 1e-13;

/// Newton steps before giving up.
pub const MAX_NEWTON_STEPS: usize = 100;

/// y*(x), v*(x) and ∇L(x) as the reference computes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// y*(x).
    pub y_star: Vec<f64>,
    /// v*(x) = ∂yy g(x, y*)⁻¹ ∂y f(x, y*).
    pub v_star: Vec<f64>,
    /// ∇L(x) = ∂x f(x, y*) − ∂x∂y g(x, y*)·v*.
    pub hypergradient: Vec<f64>,
    /// Newton steps taken.
    pub newton_steps: usize,
}

fn cholesky(problem: &dyn BilevelProblem, x: &[f64], y: &[f64]) -> Result<faer::linalg::solvers::Llt<f64>> {
    let h = to_dense(&HessianOp::new(problem, x, y, Batch::Full));
    let h = Mat::from_fn(h.nrows(), h.ncols(), |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
    h.llt(Side::Lower).map_err(|_| KernelError::NotPositiveDefinite { iteration: 0, curvature: f64::NAN })
}

fn solve_in_place(llt: &faer::linalg::solvers::Llt<f64>, b: &[f64], out: &mut [f64]) {
    let mut rhs = Mat::from_fn(b.len(), 1, |i, _| b[i]);
    llt.solve_in_place(rhs.as_mut());
    out.iter_mut().enumerate().for_each(|(i, o)| *o = rhs[(i, 0)]);
}

/// The reference at x, starting Newton from `y_start` (any point; zero is fine for the
/// strongly convex problems of this project).
pub fn reference_hypergradient(problem: &dyn BilevelProblem, x: &[f64], y_start: &[f64]) -> Result<Reference> {
    let (dx, dy) = (problem.dim_x(), problem.dim_y());
    bilevel_kernels::check_len("x", dx, x.len())?;
    bilevel_kernels::check_len("y_start", dy, y_start.len())?;
    if dy > MAX_DIM {
        return Err(KernelError::InvalidParameter {
            name: "dim_y",
            reason: format!("the dense Newton reference is for d_y <= {MAX_DIM}, got {dy}"),
        });
    }
    let mut y = y_start.to_vec();
    let mut grad = vec![0.0; dy];
    let mut step = vec![0.0; dy];
    problem.grad_y_g(x, &y, Batch::Full, &mut grad);
    let tol = GRAD_TOL * ops::norm2(&grad).max(1.0);
    let mut newton_steps = 0;
    loop {
        let norm = ops::norm2(&grad);
        if !norm.is_finite() {
            return Err(KernelError::NonFinite { what: "inner gradient in the Newton reference", index: 0 });
        }
        if norm <= tol {
            break;
        }
        if newton_steps == MAX_NEWTON_STEPS {
            return Err(KernelError::Breakdown {
                iteration: newton_steps,
                reason: "the Newton reference did not converge",
            });
        }
        let llt = cholesky(problem, x, &y)?;
        solve_in_place(&llt, &grad, &mut step);
        // Damped Newton: halve the step until g decreases (the problems here are strongly
        // convex, so the full step is taken near y*).
        let g0 = problem.g(x, &y, Batch::Full);
        let mut t = 1.0;
        let mut trial = y.clone();
        loop {
            trial.iter_mut().zip(&y).zip(&step).for_each(|((tr, y), s)| *tr = y - t * s);
            let g1 = problem.g(x, &trial, Batch::Full);
            if g1 <= g0 + 1e-12 * g0.abs() || t < 1e-10 {
                break;
            }
            t *= 0.5;
        }
        std::mem::swap(&mut y, &mut trial);
        problem.grad_y_g(x, &y, Batch::Full, &mut grad);
        newton_steps += 1;
    }
    let llt = cholesky(problem, x, &y)?;
    let mut fy = vec![0.0; dy];
    problem.grad_y_f(x, &y, Batch::Full, &mut fy);
    let mut v_star = vec![0.0; dy];
    solve_in_place(&llt, &fy, &mut v_star);
    let mut hypergradient = vec![0.0; dx];
    let mut cross = vec![0.0; dx];
    problem.grad_x_f(x, &y, Batch::Full, &mut hypergradient);
    problem.cross(x, &y, &v_star, Batch::Full, &mut cross);
    ops::axpy(-1.0, &cross, &mut hypergradient);
    Ok(Reference { y_star: y, v_star, hypergradient, newton_steps })
}
