//! ITD-BiO — Ji, Yang & Liang, *Provably Faster Algorithms for Bilevel Optimization* (ICML
//! 2021), Algorithm 1 (ITD branch): T warm-started inner GD steps, the hypergradient of
//! x ↦ f(x, y_T(x)) by reverse mode through them (Prop. 2, [`crate::estimators::itd`]), an
//! outer gradient step. O(T·d_y) memory for the trajectory.
//!
//! Claimed complexity (Theorem 2): K = O(κ³ε⁻¹) outer steps with T = Θ(κ log(1/ε)): O(κ⁴ε⁻¹
//! log ε⁻¹) gradients of g, JVPs and HVPs (Table 1, reconstructed from the OCR-garbled cells).
//!
//! Step sizes:
//! - [`StepRule::Theory`]: Theorem 2: α = 1/L_g, outer 1/(4L_Φ) with L_Φ = L_L;
//! - [`StepRule::Experiments`]: paper 000 §5.1 (its "Reverse" baseline): α = 1/L_g, γ = 1/L_L.

use super::{StepRule, StepSizes};
use crate::constants::{Constant, Constants};
use crate::estimators::Itd;
use crate::Algorithm;
use bilevel_kernels::{check_len, ops, BilevelProblem, Result};

/// The constants either rule needs.
pub const NEEDS: &[Constant] = &[Constant::LG, Constant::LOuter];

/// ITD-BiO's step sizes under `rule`.
pub fn step_sizes(rule: StepRule, c: &Constants) -> Result<StepSizes> {
    match rule {
        StepRule::Experiments => StepSizes::paper000_experiments(c),
        StepRule::Theory => {
            let (l_g, l) = (c.l_g()?, c.l_outer()?);
            StepSizes { inner: 1.0 / l_g, adjoint: 1.0 / l_g, outer: 1.0 / (4.0 * l) }.checked()
        }
    }
}

/// ITD-BiO (see the module doc).
pub struct ItdBilevel {
    inner_steps: usize,
    steps: StepSizes,
    x: Vec<f64>,
    x_at_y: Vec<f64>,
    y: Vec<f64>,
    itd: Option<Itd>,
    grad: Vec<f64>,
}

impl ItdBilevel {
    /// T inner steps with the given step sizes.
    pub fn new(inner_steps: usize, steps: StepSizes) -> Result<Self> {
        Itd::new(inner_steps, steps.inner, 0, 0)?;
        let steps = steps.checked()?;
        Ok(Self { inner_steps, steps, x: vec![], x_at_y: vec![], y: vec![], itd: None, grad: vec![] })
    }
}

impl Algorithm for ItdBilevel {
    fn name(&self) -> &str {
        "itd"
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        let (dx, dy) = (problem.dim_x(), problem.dim_y());
        check_len("x0", dx, x0.len())?;
        check_len("y0", dy, y0.len())?;
        self.itd = Some(Itd::new(self.inner_steps, self.steps.inner, dx, dy)?);
        (self.x, self.x_at_y, self.y, self.grad) = (x0.to_vec(), x0.to_vec(), y0.to_vec(), vec![0.0; dx]);
        Ok(())
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let itd = super::initialised(&mut self.itd)?;
        itd.estimate(problem, &self.x, &mut self.y, &mut self.grad)?;
        self.x_at_y.copy_from_slice(&self.x);
        ops::axpy(-self.steps.outer, &self.grad, &mut self.x);
        Ok(())
    }
    fn x(&self) -> &[f64] {
        &self.x
    }
    fn y(&self) -> &[f64] {
        &self.y
    }
    fn x_at_y(&self) -> &[f64] {
        &self.x_at_y
    }
}
