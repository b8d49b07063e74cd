//! Deterministic bilevel algorithms: one AID-type algorithm whose configurations are AID-BiO,
//! AmIGO-GD/CG and the AID-GD/CG/CG-WS/FP/N baselines, and ITD-BiO.
//!
//! **AID-type** (one outer step k, full batch):
//! ```text
//! y ← y_{k−1} (warm start) or y_0;   T steps y ← y − α ∂y g(x_k, y)          (inner solver A_k)
//! v ← v_{k−1} (warm start) or 0;     N steps of the adjoint solver on ∂yy g·v = ∂y f   (B_k)
//! x_{k+1} = x_k − γ (∂x f(x_k, y) − ∂x∂y g(x_k, y)·v)
//! ```
//! - **AID-BiO** — Ji, Yang & Liang, *Provably Faster Algorithms for Bilevel Optimization*,
//!   Alg. 1 (AID branch) with eq. (3): warm-started inner GD, warm-started CG, outer GD; claimed
//!   complexity O(κ³ε⁻¹) gradient and O(κ^3.5 ε⁻¹) HVP calls in the nonconvex case (Thm 1).
//!   Deviation: Alg. 1 line 8 prints ∂f/∂x_k; we use eq. (3) (the notes' reading).
//! - **AmIGO** — Arbel & Mairal, *Amortized Implicit Differentiation for Stochastic Bilevel
//!   Optimization*, Alg. 1 with A_k = Alg. 2 (GD on g, warm start of y) and B_k = Alg. 3 (GD on
//!   the adjoint, warm start of z = −v: AmIGO-GD) or CG (AmIGO-CG); claimed O(κ_L κ_g log 1/ε)
//!   for strongly convex L (Table 1, Cor. 1). We solve for v = −z (same iterates).
//! - The §5 baselines as configurations: AID-GD (adjoint GD from 0), AID-CG (CG from 0),
//!   AID-CG-WS (CG warm-started, y *not* warm-started: the notes' reading of "All methods except
//!   AID-CG-WS warm-start A_k"), AID-FP (fixed-point adjoint from 0), AID-N (Neumann).
//!
//! **ITD-BiO** (Ji et al., Alg. 1, ITD branch): T warm-started inner steps, the hypergradient
//! by reverse mode through them (Prop. 2), outer GD; O(T·d_y) memory for the trajectory.
//!
//! Step sizes from the problem constants ([`StepSizes::from_constants`]): α = 1/L_g for the
//! inner and adjoint GD, γ = 1/L_L for the outer step, the theory's choices in both papers for
//! the strongly convex case (paper 000 Cor. 1; paper 002 uses α ≤ 1/L, β ≤ 1/L_Φ).

use crate::hypergrad::{AdjointSolver, Aid, AidConfig, Itd};
use bilevel_kernels::{check_len, Batch, BilevelProblem, KernelError, Result};

/// The step sizes of an algorithm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSizes {
    /// Inner GD step α (and the adjoint GD/FP/Neumann step).
    pub inner: f64,
    /// Outer step γ.
    pub outer: f64,
}

impl StepSizes {
    /// α = 1/L_g, γ = 1/L_L from the smoothness constants of g (in y) and of L.
    pub fn from_constants(l_g: f64, l_outer: f64) -> Result<Self> {
        for (name, v) in [("l_g", l_g), ("l_outer", l_outer)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(KernelError::InvalidParameter { name, reason: format!("must be finite and > 0, got {v}") });
            }
        }
        Ok(Self { inner: 1.0 / l_g, outer: 1.0 / l_outer })
    }
}

/// The AID-type algorithms by name (paper 000 §5 and paper 002).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AidVariant {
    AidBio,
    AmigoGd,
    AmigoCg,
    AidGd,
    AidCg,
    AidCgWs,
    AidFp,
    AidNeumann,
}

/// Configuration of [`AidBilevel`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AidBilevelConfig {
    pub inner_steps: usize,
    pub adjoint_steps: usize,
    pub steps: StepSizes,
    pub adjoint: AdjointSolver,
    pub warm_start_y: bool,
    pub warm_start_v: bool,
}

impl AidBilevelConfig {
    /// The named variant with T inner steps, N adjoint steps and the given step sizes.
    pub fn variant(v: AidVariant, inner_steps: usize, adjoint_steps: usize, steps: StepSizes) -> Self {
        let gd = AdjointSolver::Gd { step: steps.inner };
        let (adjoint, warm_start_y, warm_start_v) = match v {
            AidVariant::AidBio => (AdjointSolver::Cg, true, true),
            AidVariant::AmigoGd => (gd, true, true),
            AidVariant::AmigoCg => (AdjointSolver::Cg, true, true),
            AidVariant::AidGd => (gd, true, false),
            AidVariant::AidCg => (AdjointSolver::Cg, true, false),
            AidVariant::AidCgWs => (AdjointSolver::Cg, false, true),
            AidVariant::AidFp => (AdjointSolver::FixedPoint { step: steps.inner }, true, false),
            AidVariant::AidNeumann => (AdjointSolver::Neumann { step: steps.inner }, true, false),
        };
        Self { inner_steps, adjoint_steps, steps, adjoint, warm_start_y, warm_start_v }
    }
}

/// One step of an algorithm on a problem; the driver ([`crate::driver`]) runs it.
pub trait Algorithm {
    fn name(&self) -> &str;
    /// The current outer iterate x_k.
    fn x(&self) -> &[f64];
    /// The current inner iterate y_k.
    fn y(&self) -> &[f64];
    /// One outer iteration.
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()>;
}

/// The AID-type algorithm (see the module doc).
pub struct AidBilevel {
    name: String,
    config: AidBilevelConfig,
    x: Vec<f64>,
    y: Vec<f64>,
    y0: Vec<f64>,
    aid: Aid,
    grad: Vec<f64>,
    work: Vec<f64>,
}

impl AidBilevel {
    pub fn new(name: &str, config: AidBilevelConfig, x0: &[f64], y0: &[f64]) -> Result<Self> {
        if config.inner_steps == 0 {
            return Err(KernelError::InvalidParameter { name: "inner_steps", reason: "must be >= 1".into() });
        }
        let (dx, dy) = (x0.len(), y0.len());
        let aid = Aid::new(
            AidConfig { solver: config.adjoint, steps: config.adjoint_steps, warm_start: config.warm_start_v },
            dx,
            dy,
        )?;
        Ok(Self {
            name: name.to_string(),
            config,
            x: x0.to_vec(),
            y: y0.to_vec(),
            y0: y0.to_vec(),
            aid,
            grad: vec![0.0; dx],
            work: vec![0.0; dy],
        })
    }
}

impl Algorithm for AidBilevel {
    fn name(&self) -> &str {
        &self.name
    }
    fn x(&self) -> &[f64] {
        &self.x
    }
    fn y(&self) -> &[f64] {
        &self.y
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        check_len("x", problem.dim_x(), self.x.len())?;
        check_len("y", problem.dim_y(), self.y.len())?;
        if !self.config.warm_start_y {
            self.y.copy_from_slice(&self.y0);
        }
        let c = &self.config;
        problem.inner_gradient_steps(&self.x, &mut self.y, c.steps.inner, c.inner_steps, Batch::Full, &mut self.work);
        self.aid.estimate(problem, &self.x, &self.y, &mut self.grad)?;
        bilevel_kernels::ops::axpy(-c.steps.outer, &self.grad, &mut self.x);
        if let Some(i) = self.x.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::NonFinite { what: "outer iterate (the outer step is too large?)", index: i });
        }
        Ok(())
    }
}

/// ITD-BiO (see the module doc).
pub struct ItdBilevel {
    x: Vec<f64>,
    y: Vec<f64>,
    outer: f64,
    itd: Itd,
    grad: Vec<f64>,
}

impl ItdBilevel {
    pub fn new(inner_steps: usize, steps: StepSizes, x0: &[f64], y0: &[f64]) -> Result<Self> {
        let itd = Itd::new(inner_steps, steps.inner, x0.len(), y0.len())?;
        Ok(Self { x: x0.to_vec(), y: y0.to_vec(), outer: steps.outer, itd, grad: vec![0.0; x0.len()] })
    }
}

impl Algorithm for ItdBilevel {
    fn name(&self) -> &str {
        "itd"
    }
    fn x(&self) -> &[f64] {
        &self.x
    }
    fn y(&self) -> &[f64] {
        &self.y
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        self.itd.estimate(problem, &self.x, &mut self.y, &mut self.grad)?;
        bilevel_kernels::ops::axpy(-self.outer, &self.grad, &mut self.x);
        Ok(())
    }
}
