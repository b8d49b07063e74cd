//! ITD-BiO — Ji, Yang & Liang, *Provably Faster Algorithms for Bilevel Optimization* (ICML
//! 2021), Algorithm 1 (ITD branch): T warm-started inner GD steps, the hypergradient of
//! x ↦ f(x, y_T(x)) by reverse mode through them (Prop. 2, [`crate::estimators::itd`]), an
//! outer gradient step. O(T·d_y) memory for the trajectory.
//!
//! Claimed complexity (Theorem 2): K = O(κ³ε⁻¹) outer steps with T = Θ(κ log(1/ε)): O(κ⁴ε⁻¹
//! log ε⁻¹) gradients of g, JVPs and HVPs (Table 1, reconstructed from the OCR-garbled cells).
//!
//! Step sizes:
//! - [`StepRule::Theory`](super::StepRule::Theory): Theorem 2: α = 1/L_g, outer 1/(4L_Φ) with L_Φ = L_L;
//! - [`StepRule::Experiments`](super::StepRule::Experiments): paper 000 §5.1 (its "Reverse" baseline): α = 1/L_g, γ = 1/L_L.

use super::{Iterates, StepFractions, StepSizes};
use crate::estimators::Itd;
use crate::Algorithm;
use bilevel_kernels::{BilevelProblem, Result};

/// Theorem 2: α = 1/L_g, outer 1/(4L_Φ).
pub const THEORY: StepFractions = StepFractions { inner: 1.0, adjoint: 1.0, outer: 0.25 };

/// ITD-BiO (see the module doc).
pub struct ItdBilevel {
    inner_steps: usize,
    steps: StepSizes,
    it: Iterates,
    itd: Option<Itd>,
}

impl ItdBilevel {
    /// T inner steps with the given step sizes.
    pub fn new(inner_steps: usize, steps: StepSizes) -> Result<Self> {
        Itd::new(inner_steps, steps.inner, 0, 0)?;
        let steps = steps.checked()?;
        Ok(Self { inner_steps, steps, it: Iterates::default(), itd: None })
    }
}

impl Algorithm for ItdBilevel {
    fn name(&self) -> &str {
        "itd"
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        self.it = Iterates::new(problem, x0, y0)?;
        self.itd = Some(Itd::new(self.inner_steps, self.steps.inner, problem.dim_x(), problem.dim_y())?);
        Ok(())
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let itd = super::initialised(&mut self.itd)?;
        let it = &mut self.it;
        itd.estimate(problem, &it.x, &mut it.y, &mut it.grad)?;
        it.outer_step(self.steps.outer);
        Ok(())
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
}
