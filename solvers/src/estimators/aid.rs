//! AID — approximate implicit differentiation: Ji, Yang & Liang, *Provably Faster Algorithms
//! for Bilevel Optimization* (ICML 2021), eq. (3); Arbel & Mairal, *Amortized Implicit
//! Differentiation for Stochastic Bilevel Optimization* (ICLR 2022), §5's variants.
//!
//! ```text
//! v ← v_prev (warm start) or 0;  N steps of the adjoint solver on ∂yy g(x, y)·v = ∂y f(x, y)
//! ∇̂L(x) = ∂x f(x, y) − ∂x∂y g(x, y)·v
//! ```
//! The adjoint solver is CG (AID-CG, AID-BiO), gradient descent (AID-GD, Richardson; AmIGO's
//! B_k), the fixed-point iteration (AID-FP, Grazzi et al.) or a truncated Neumann series
//! (AID-N; stocBiO's Alg. 3 form). Cost of one estimate: one ∂y f, N HVPs (N + 1 for CG with a
//! non-zero warm start, which needs its initial residual), one ∂x f, one cross product.
//! A Neumann series starts from 0 by definition: asking it for a warm start is an error.
//!
//! Stochastic form ([`Aid::estimate_sampled`], paper 000 Alg. 1 lines 5–8 and Alg. 3; paper 002
//! Alg. 2 and Alg. 3): ∂x f and ∂y f on one batch D_f; the GD, fixed-point and Neumann adjoint
//! solvers draw a fresh Hessian batch per step (per term; paper 002 Prop. 3's decreasing sizes
//! when given); the cross product on its own batch D_gxy. CG needs one operator for its whole
//! run: it takes one Hessian batch per call (our reading; paper 000 gives no stochastic CG).
//! With full-batch streams the estimate is the deterministic one, bit for bit.
//!
//! AID-FP and AID-GD produce the same iterates on a symmetric Hessian (the fixed-point map is
//! the gradient step Φ(y) = y − β∂y g, so (I − ∂yΦᵀ)v = β∂y f is βH v = β∂y f): both are here
//! because the papers compare them by name; FP runs through the non-symmetric fixed-point solver.

use super::EstimateReport;
use crate::sampling::BatchStream;
use bilevel_kernels::linsolve::{Cg, FixedPoint, Neumann, Richardson, Sampled, Stopping};
use bilevel_kernels::{ops, BilevelProblem, HessianOp, KernelError, Result};

/// How the adjoint system ∂yy g·v = ∂y f is solved.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdjointSolver {
    /// Conjugate gradient (AID-CG, AID-BiO): O(√κ log 1/ε) steps.
    Cg,
    /// Gradient descent / Richardson with step β ≤ 1/L (AID-GD, AmIGO's B_k): O(κ log 1/ε).
    Gd {
        /// The step β.
        step: f64,
    },
    /// The fixed-point iteration of the gradient map with step β (AID-FP).
    FixedPoint {
        /// The step β of the gradient map.
        step: f64,
    },
    /// Truncated Neumann series η Σ_{k=0..N} (I − ηH)^k ∂y f (AID-N; stocBiO's Alg. 3 form).
    Neumann {
        /// The step η.
        step: f64,
    },
}

/// Configuration of an [`Aid`] estimator.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AidConfig {
    /// The adjoint solver.
    pub solver: AdjointSolver,
    /// Adjoint steps N (CG iterations, GD/FP steps, Neumann terms beyond the first).
    pub steps: usize,
    /// Start the adjoint solve from the previous call's v (not for Neumann).
    pub warm_start: bool,
}

/// The AID estimator (see the module doc); holds v between calls for the warm start.
pub struct Aid {
    config: AidConfig,
    v: Vec<f64>,
    fy: Vec<f64>,
    gx: Vec<f64>,
    solver: Adjoint,
}

/// The adjoint solver, concrete: the stochastic forms need each solver's operator sequences.
enum Adjoint {
    Cg(Cg),
    Gd(Richardson),
    FixedPoint(FixedPoint),
    Neumann(Neumann),
}

/// The batch streams of one stochastic AID estimate (see the module doc).
#[derive(Clone, Debug)]
pub struct AidStreams {
    /// D_f: ∂x f and ∂y f.
    pub outer: BatchStream,
    /// The Hessian batches of the adjoint solve.
    pub hvp: BatchStream,
    /// Per-step Hessian batch sizes (paper 002 Prop. 3 for the Neumann terms); empty: the
    /// stream's size for every step.
    pub hvp_sizes: Vec<usize>,
    /// D_gxy: the cross product.
    pub cross: BatchStream,
}

impl AidStreams {
    /// Full batches (the deterministic estimate).
    pub fn full() -> Self {
        Self { outer: BatchStream::full(), hvp: BatchStream::full(), hvp_sizes: Vec::new(), cross: BatchStream::full() }
    }
}

impl Aid {
    /// An estimator for problems with `dim_y` inner variables and `dim_x` outer ones.
    pub fn new(config: AidConfig, dim_x: usize, dim_y: usize) -> Result<Self> {
        if config.steps == 0 {
            return Err(KernelError::InvalidParameter { name: "steps", reason: "must be >= 1".into() });
        }
        if config.warm_start && matches!(config.solver, AdjointSolver::Neumann { .. }) {
            return Err(KernelError::InvalidParameter {
                name: "warm_start",
                reason: "a Neumann series starts from 0 and cannot be warm-started".into(),
            });
        }
        // N steps exactly (no tolerance): the papers' fixed budgets.
        let stop = Stopping::fixed_steps(config.steps);
        let solver = match config.solver {
            AdjointSolver::Gd { step } | AdjointSolver::FixedPoint { step } | AdjointSolver::Neumann { step }
                if !(step.is_finite() && step > 0.0) =>
            {
                return Err(KernelError::InvalidParameter { name: "step", reason: format!("must be > 0, got {step}") })
            }
            AdjointSolver::Cg => Adjoint::Cg(Cg::new(dim_y, stop)),
            AdjointSolver::Gd { step } => Adjoint::Gd(Richardson::new(dim_y, step, stop)),
            // v ← v + β(Jᵀv + ∂y f − v) with Jᵀ = I − H: the fixed point of the gradient map.
            AdjointSolver::FixedPoint { step } => Adjoint::FixedPoint(FixedPoint::new(dim_y, step, stop)),
            AdjointSolver::Neumann { step } => Adjoint::Neumann(Neumann::new(dim_y, step, stop)),
        };
        Ok(Self { config, v: vec![0.0; dim_y], fy: vec![0.0; dim_y], gx: vec![0.0; dim_x], solver })
    }

    /// The configuration.
    pub fn config(&self) -> &AidConfig {
        &self.config
    }

    /// Multiplies the configured step of the GD, fixed-point or Neumann solver by `factor` for
    /// the next estimates (the algorithms' rescaling along the run; CG has no step).
    pub fn scale_steps(&mut self, factor: f64) {
        let step = match self.config.solver {
            AdjointSolver::Cg => return,
            AdjointSolver::Gd { step } | AdjointSolver::FixedPoint { step } | AdjointSolver::Neumann { step } => step,
        };
        match &mut self.solver {
            Adjoint::Cg(_) => {}
            Adjoint::Gd(gd) => gd.set_step(step * factor),
            Adjoint::FixedPoint(fp) => fp.set_step(step * factor),
            Adjoint::Neumann(n) => n.set_step(step * factor),
        }
    }

    /// The adjoint v of the last estimate.
    pub fn adjoint(&self) -> &[f64] {
        &self.v
    }

    /// Writes the estimate of ∇L(x) at the inner point y into `out` (full batches).
    pub fn estimate(
        &mut self,
        problem: &dyn BilevelProblem,
        x: &[f64],
        y: &[f64],
        out: &mut [f64],
    ) -> Result<EstimateReport> {
        self.estimate_sampled(problem, x, y, &mut AidStreams::full(), out)
    }

    /// The estimate on the batches drawn from `streams` (see the module doc).
    pub fn estimate_sampled(
        &mut self,
        problem: &dyn BilevelProblem,
        x: &[f64],
        y: &[f64],
        streams: &mut AidStreams,
        out: &mut [f64],
    ) -> Result<EstimateReport> {
        super::check_sizes(problem, x, y, out, (self.gx.len(), self.v.len()))?;
        let d_f = streams.outer.draw();
        problem.grad_y_f(x, y, d_f, &mut self.fy);
        if !self.config.warm_start {
            self.v.fill(0.0);
        }
        let (hvp, sizes) = (&mut streams.hvp, &streams.hvp_sizes);
        let mut hessian = |k: usize, v: &[f64], o: &mut [f64]| {
            let batch = if sizes.is_empty() { hvp.draw() } else { hvp.draw_sized(sizes[k]) };
            problem.hvp(x, y, v, batch, o)
        };
        let (b, v) = (&self.fy, &mut self.v);
        let report = match &mut self.solver {
            Adjoint::Cg(cg) => cg.solve(&HessianOp::new(problem, x, y, streams.hvp.draw()), b, v)?,
            Adjoint::Gd(gd) => gd.solve(Sampled(&mut hessian), b, v)?,
            Adjoint::Neumann(n) => n.solve(Sampled(&mut hessian), b, v)?,
            // Jᵀ = I − H_k, applied as v − H_k v.
            Adjoint::FixedPoint(fp) => fp.solve(
                Sampled(|k: usize, v: &[f64], o: &mut [f64]| {
                    hessian(k, v, o);
                    ops::axpby(1.0, v, -1.0, o);
                }),
                b,
                v,
            )?,
        };
        problem.cross(x, y, &self.v, streams.cross.draw(), &mut self.gx);
        // ∂x f last: the cross product then reads ∂xy g while the adjoint solve's products
        // have left ∂yy g's neighbour in cache, and a large ∂x f (the quadratic's A_f) does not
        // evict both from the cache between them. Same bits in either order.
        // On ∂y f's batch D_f at the same point: its samples count once (paper 002: Gc(F) = K·D_f).
        let d_f = streams.outer.last();
        problem.replay(&mut || problem.grad_x_f(x, y, d_f, out));
        ops::axpy(-1.0, &self.gx, out);
        Ok(EstimateReport { iterations: report.iterations, residual_norm: report.residual_norm })
    }
}
