//! Hypergradient estimators: given x and an approximate inner solution y, estimate
//! `∇L(x) = ∂x f(x, y) − ∂x∂y g(x, y)·v` with `∂yy g(x, y)·v = ∂y f(x, y)`.
//!
//! - [`Aid`] — approximate implicit differentiation (Ji, Yang & Liang, *Provably Faster
//!   Algorithms for Bilevel Optimization*, eq. (3); Arbel & Mairal, *Amortized Implicit
//!   Differentiation*, §5 variants): the adjoint v from N steps of CG, gradient descent
//!   (AID-GD, Richardson), the fixed-point iteration (AID-FP, Grazzi et al.) or a truncated
//!   Neumann series (AID-N), each with or without a warm start of v from the previous call
//!   (Neumann has none: a series starts from 0). Cost: 1 ∂y f, N HVPs (+1 for CG's initial
//!   residual, +0 otherwise), 1 ∂x f, 1 cross product.
//! - [`Itd`] — iterative differentiation in reverse mode (Ji et al., Prop. 2; Arbel & Mairal
//!   "Reverse"): differentiate through T inner steps y_{t+1} = y_t − α ∂y g(x, y_t) with the
//!   stored trajectory, using HVPs and cross products only. Memory O(T·d_y): the trajectory.
//!   Cost: T ∂y g, T HVPs, T cross products, 1 (∂x f, ∂y f).
//! - [`exact_hypergradient`] — the problem's closed form (a dense solve), the reference.
//!
//! AID-FP and AID-GD produce the same iterates on a symmetric Hessian (the fixed-point map is
//! the gradient step Φ(y) = y − β∂y g, so (I − ∂yΦᵀ)v = β∂y f is βH v = β∂y f): both are here
//! because the papers compare them by name; FP runs through the non-symmetric fixed-point solver.
//!
//! Workspaces are allocated once by the constructors; an estimate allocates nothing.

use bilevel_kernels::linop::FnOp;
use bilevel_kernels::linsolve::{
    cg_solve_with_workspace, fixed_point_solve_with_workspace, neumann_series_with_workspace,
    richardson_solve_with_workspace, CgParams, CgWorkspace, FixedPointParams, FixedPointWorkspace, NeumannParams,
    NeumannWorkspace, RichardsonParams, RichardsonWorkspace,
};
use bilevel_kernels::{check_len, ops, Batch, BilevelProblem, KernelError, Result};

/// How the adjoint system ∂yy g·v = ∂y f is solved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AdjointSolver {
    /// Conjugate gradient (AID-CG, AID-BiO): O(√κ log 1/ε) steps.
    Cg,
    /// Gradient descent / Richardson with step β ≤ 1/L (AID-GD, AmIGO's B_k): O(κ log 1/ε).
    Gd { step: f64 },
    /// The fixed-point iteration of the gradient map with step β (AID-FP).
    FixedPoint { step: f64 },
    /// Truncated Neumann series η Σ_{k=0..N} (I − ηH)^k ∂y f (AID-N; stocBiO's Alg. 3 form).
    Neumann { step: f64 },
}

/// Configuration of an [`Aid`] estimator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AidConfig {
    pub solver: AdjointSolver,
    /// Adjoint steps N (CG iterations, GD/FP steps, Neumann terms beyond the first).
    pub steps: usize,
    /// Start the adjoint solve from the previous call's v (not for Neumann).
    pub warm_start: bool,
}

/// What an estimate cost and how far the adjoint solve got.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EstimateReport {
    /// Adjoint-solver iterations run.
    pub iterations: usize,
    /// The solver's last residual norm ‖H v − ∂y f‖ (as the solver measures it).
    pub residual_norm: f64,
}

enum Workspace {
    Cg(CgWorkspace),
    Gd(RichardsonWorkspace),
    Fp(FixedPointWorkspace),
    Neumann(NeumannWorkspace),
}

/// The AID estimator (see the module doc); holds v between calls for the warm start.
pub struct Aid {
    config: AidConfig,
    v: Vec<f64>,
    fy: Vec<f64>,
    gx: Vec<f64>,
    ws: Workspace,
}

impl Aid {
    /// An estimator for problems with `dim_y` inner variables and `dim_x` outer ones.
    pub fn new(config: AidConfig, dim_x: usize, dim_y: usize) -> Result<Self> {
        if config.steps == 0 {
            return Err(KernelError::InvalidParameter { name: "steps", reason: "must be >= 1".into() });
        }
        let ws = match config.solver {
            AdjointSolver::Cg => Workspace::Cg(CgWorkspace::new(dim_y)),
            AdjointSolver::Gd { step } | AdjointSolver::FixedPoint { step } | AdjointSolver::Neumann { step }
                if !(step.is_finite() && step > 0.0) =>
            {
                return Err(KernelError::InvalidParameter { name: "step", reason: format!("must be > 0, got {step}") })
            }
            AdjointSolver::Gd { .. } => Workspace::Gd(RichardsonWorkspace::new(dim_y)),
            AdjointSolver::FixedPoint { .. } => Workspace::Fp(FixedPointWorkspace::new(dim_y)),
            AdjointSolver::Neumann { .. } => Workspace::Neumann(NeumannWorkspace::new(dim_y)),
        };
        Ok(Self { config, v: vec![0.0; dim_y], fy: vec![0.0; dim_y], gx: vec![0.0; dim_x], ws })
    }

    pub fn config(&self) -> &AidConfig {
        &self.config
    }

    /// The adjoint v of the last estimate.
    pub fn adjoint(&self) -> &[f64] {
        &self.v
    }

    /// Writes the estimate of ∇L(x) at the inner point y into `out` (full batch).
    pub fn estimate(
        &mut self,
        problem: &dyn BilevelProblem,
        x: &[f64],
        y: &[f64],
        out: &mut [f64],
    ) -> Result<EstimateReport> {
        let (dx, dy) = (problem.dim_x(), problem.dim_y());
        check_len("x", dx, x.len())?;
        check_len("y", dy, y.len())?;
        check_len("hypergradient", dx, out.len())?;
        check_len("estimator's dim_y", dy, self.v.len())?;
        check_len("estimator's dim_x", dx, self.gx.len())?;
        problem.grad_y_f(x, y, Batch::Full, &mut self.fy);
        if !self.config.warm_start {
            self.v.fill(0.0);
        }
        let hess = FnOp::symmetric(dy, |v: &[f64], out: &mut [f64]| problem.hvp(x, y, v, Batch::Full, out));
        let n = self.config.steps;
        let report = match (&mut self.ws, self.config.solver) {
            (Workspace::Cg(ws), AdjointSolver::Cg) => {
                let params = CgParams::default().with_rel_tol(0.0).with_max_iters(n);
                cg_solve_with_workspace(&hess, &self.fy, &mut self.v, &params, ws)?
            }
            (Workspace::Gd(ws), AdjointSolver::Gd { step }) => {
                let params = RichardsonParams::new(step).with_max_iters(n);
                richardson_solve_with_workspace(&hess, &self.fy, &mut self.v, &params, ws)?
            }
            (Workspace::Fp(ws), AdjointSolver::FixedPoint { step }) => {
                // v ← Jᵀv + β∂y f with J = I − βH (the Jacobian of the gradient map).
                let jt = FnOp::new(dy, |v: &[f64], out: &mut [f64]| {
                    problem.hvp(x, y, v, Batch::Full, out);
                    ops::axpby(1.0, v, -step, out);
                });
                ops::scale(step, &mut self.fy);
                let params = FixedPointParams::default().with_rel_tol(0.0).with_max_iters(n);
                fixed_point_solve_with_workspace(&jt, &self.fy, &mut self.v, &params, ws)?
            }
            (Workspace::Neumann(ws), AdjointSolver::Neumann { step }) => {
                neumann_series_with_workspace(&hess, &self.fy, &mut self.v, &NeumannParams::new(step, n), ws)?
            }
            _ => unreachable!("the workspace is built from the solver"),
        };
        problem.grad_x_f(x, y, Batch::Full, out);
        problem.cross(x, y, &self.v, Batch::Full, &mut self.gx);
        ops::axpy(-1.0, &self.gx, out);
        Ok(EstimateReport { iterations: report.iterations, residual_norm: report.residual_norm })
    }
}

/// The ITD estimator (reverse mode through T inner gradient steps); see the module doc.
pub struct Itd {
    steps: usize,
    alpha: f64,
    /// y_0 … y_{T−1}, row t at `t·d_y`.
    trajectory: Vec<f64>,
    v: Vec<f64>,
    hv: Vec<f64>,
    gx: Vec<f64>,
}

impl Itd {
    /// T inner steps of size α (T ≥ 1, α > 0).
    pub fn new(steps: usize, alpha: f64, dim_x: usize, dim_y: usize) -> Result<Self> {
        if steps == 0 {
            return Err(KernelError::InvalidParameter { name: "steps", reason: "must be >= 1".into() });
        }
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(KernelError::InvalidParameter { name: "alpha", reason: format!("must be > 0, got {alpha}") });
        }
        Ok(Self {
            steps,
            alpha,
            trajectory: vec![0.0; steps * dim_y],
            v: vec![0.0; dim_y],
            hv: vec![0.0; dim_y],
            gx: vec![0.0; dim_x],
        })
    }

    /// Runs T inner steps from `y` (overwritten with y_T) and writes the exact gradient of
    /// x ↦ f(x, y_T(x)) into `out`.
    pub fn estimate(&mut self, problem: &dyn BilevelProblem, x: &[f64], y: &mut [f64], out: &mut [f64]) -> Result<()> {
        let (dx, dy) = (problem.dim_x(), problem.dim_y());
        check_len("x", dx, x.len())?;
        check_len("y", dy, y.len())?;
        check_len("hypergradient", dx, out.len())?;
        check_len("estimator's dim_y", dy, self.v.len())?;
        for t in 0..self.steps {
            self.trajectory[t * dy..(t + 1) * dy].copy_from_slice(y);
            problem.grad_y_g(x, y, Batch::Full, &mut self.hv);
            ops::axpy(-self.alpha, &self.hv, y);
        }
        problem.grad_y_f(x, y, Batch::Full, &mut self.v);
        problem.grad_x_f(x, y, Batch::Full, out);
        for t in (0..self.steps).rev() {
            let yt = &self.trajectory[t * dy..(t + 1) * dy];
            problem.cross(x, yt, &self.v, Batch::Full, &mut self.gx);
            ops::axpy(-self.alpha, &self.gx, out);
            problem.hvp(x, yt, &self.v, Batch::Full, &mut self.hv);
            ops::axpy(-self.alpha, &self.hv, &mut self.v);
        }
        if let Some(i) = out.iter().position(|g| !g.is_finite()) {
            return Err(KernelError::NonFinite { what: "ITD hypergradient", index: i });
        }
        Ok(())
    }
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
