//! stocBiO — Ji, Yang & Liang, *Bilevel Optimization: Convergence Analysis and Enhanced Design*
//! (ICML 2021; paper 002), Algorithm 2 with the Neumann estimator of Algorithm 3:
//!
//! ```text
//! y_k^0 = y_{k−1}^T;  y_k^t = y_k^{t−1} − α ∇y G(x_k, y_k^{t−1}; S_{t−1}),  t = 1..T   (fresh S_t)
//! v_0 = ∇y F(x_k, y_k^T; D_F)
//! v_Q = η Σ_{q=−1}^{Q−1} Π_{j=Q−q}^{Q} (I − η∇²yy G(x_k, y_k^T; B_j)) v_0               (eq. (5))
//! ĝ_k = ∇x F(x_k, y_k^T; D_F) − ∇x∇y G(x_k, y_k^T; D_G) v_Q                            (eq. (6))
//! x_{k+1} = x_k − β ĝ_k
//! ```
//! A configuration of the AID loop ([`super::aid`]): warm-started y, the Neumann adjoint with
//! Q = `adjoint_steps` terms beyond v_0 on independent per-term batches B_j, no warm start of v;
//! batches S (`batches.inner`), D_F (`outer`, one batch for ∇x F and ∇y F), B (`hvp`), D_G
//! (`cross`), each its own stream. With `neumann_decay`, Prop. 3's sizes
//! |B_{Q+1−j}| = ⌈B·Q·(1−ημ)^{j−1}⌉ (rounded up: the paper leaves rounding open).
//!
//! Claimed complexity (Theorem 3, Table 2): K = O(κ³ε⁻¹) outer steps, O(κ⁵ε⁻²) gradients of G,
//! O(κ⁴ε⁻²) of F, Õ(κ⁶ε⁻²) Hessian-vector products — the notes (§3.4, §6 item 6) find
//! O(κ⁷ε⁻² log(κ²/ε)) from the paper's own settings; the harness measures it.
//!
//! Step sizes ([`step_sizes`]):
//! - [`StepRule::Theory`]: Theorem 3 with Lemma 9: inner α = 2/(L + µ) (Lemma 9 needs it;
//!   Theorem 3 does not state α — notes §6 item 3), Neumann η = 1/L (Prop. 3: η ≤ 1/L; Theorem
//!   3 writes η < 1/L), outer β = 1/(4L_Φ) with L_Φ = L_L. On mini-batches L is the per-sample
//!   smoothness (`l_g_sample`, which bounds every batch Hessian) where the problem reports it,
//!   else L_g (which then may not bound a batch Hessian: said in the output).
//! - [`StepRule::Experiments`]: paper 000 §5.1's α = η = 1/L_g, γ = 1/L_L on the quadratics
//!   (paper 000 runs stocBiO with them); the official code's 20-Newsgroups defaults (T = Q = 10,
//!   η = 0.5, batch 100, steps 100) are problem-specific and not applied here.
//!
//! Deviations: the official code uses one Hessian batch for all Q terms and drops the v_0 term
//! and the factor η (notes §7); we follow Algorithm 3. The output x̄ (uniform over the
//! iterates) is not drawn: the trace reports every x_k.

use super::aid::{AidBilevel, AidBilevelConfig, AidVariant};
use super::{Settings, StepRule, StepSizes};
use crate::constants::{Constant, Constants};
use bilevel_kernels::Result;

/// The constants of the theory rule.
pub const NEEDS_THEORY: &[Constant] = &[Constant::MuG, Constant::LG, Constant::LOuter];

/// The smoothness a step on one batch must respect: the per-sample bound on mini-batches where
/// the problem reports it, else L_g.
pub fn batch_smoothness(c: &Constants, settings: &Settings) -> Result<f64> {
    let sample = c.known.l_g_sample.filter(|_| !settings.batches.is_full());
    sample.map_or_else(|| c.l_g(), Ok)
}

/// stocBiO's step sizes under `rule` (α inner, η as the adjoint step, β outer).
pub fn step_sizes(rule: StepRule, c: &Constants, settings: &Settings) -> Result<StepSizes> {
    match rule {
        StepRule::Experiments => super::PAPER000_EXPERIMENTS.at(c, settings.outer_step),
        StepRule::Theory => {
            let (l, mu) = (batch_smoothness(c, settings)?, c.mu_g()?);
            let outer = match settings.outer_step {
                Some(g) => g,
                None => 1.0 / (4.0 * c.l_outer()?),
            };
            StepSizes { inner: 2.0 / (l + mu), adjoint: 1.0 / l, outer }.checked()
        }
    }
}

/// stocBiO with `settings` (T, Q, batches, seed, Prop. 3's sizes) and the step sizes.
pub fn build(c: &Constants, settings: &Settings, steps: StepSizes) -> Result<AidBilevel> {
    let mut config =
        AidBilevelConfig::variant(AidVariant::AidNeumann, settings.inner_steps, settings.adjoint_steps, steps)
            .with_batches(settings.batches, settings.seed);
    if settings.neumann_decay {
        config.neumann_decay = Some(steps.adjoint * c.mu_g()?);
    }
    config.uniform_output = true;
    AidBilevel::new("stocbio", config)
}
