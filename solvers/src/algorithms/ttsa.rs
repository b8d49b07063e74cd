//! TTSA — Hong, Wai, Wang & Yang, *A Two-Timescale Framework for Bilevel Optimization:
//! Complexity Analysis and Application to Actor-Critic* (SIAM J. Optim. 2023; arXiv 2007.05170),
//! as the comparison tables of papers 000 (Table 1, Prop. 11), 001 (Table 1, row "TTSA"), 002
//! (Table 2) and 004 (Table 1) configure it. The original paper is not in the repository: what
//! follows is what those tables and papers state.
//!
//! One step k (0-based), single loop:
//! ```text
//! y_{k+1} = y_k − β_k ∂y g(x_k, y_k; S_k)                       (one SGD step, warm start)
//! x_{k+1} = x_k − α_k ĝ_k,   ĝ_k = the Ghadimi–Wang estimate at (x_k, y_{k+1})
//! β_k = β_0 (k+1)^{−2/5},   α_k = α_0 (k+1)^{−3/5}
//! ```
//! with the estimator [`TruncatedHypergradient`](crate::estimators::TruncatedHypergradient) (one ξ for ∂x f
//! and ∂y f, a fresh ζ_i per HVP, ζ_0 for the cross product, q ~ U{0, …, N_k − 1}), batch size
//! Θ(1) (papers 001, 004; paper 002's MNIST experiment: batch 1).
//!
//! Cost per step: one ∂y g; one ∂x f and one ∂y f; q HVPs (random, E q = (N_k − 1)/2;
//! [`Ttsa::last_depth`]); one cross product.
//!
//! Claimed complexity: Õ(ε^{−5/2}) samples of f and g to E‖∇L‖² ≤ ε (papers 001, 002, 004;
//! paper 004's text also calls it Õ(ε^{−1.5}) in the strongly convex case); paper 000 Prop. 11:
//! O(κ_g^{16} ε^{−5/2} log ε⁻¹) (non-convex) and O((κ_g^{17/2}κ_L^{1/2} + κ_L^{7/2}) ε^{−3/2}
//! log ε⁻¹) (strongly convex L), with N = Θ(κ_g log 1/ε) Neumann terms.
//!
//! Parameters ([`schedule`]; L_b the smoothness every batch Hessian respects, ℒ(b) the
//! expected smoothness of [`super::lower`]):
//! - [`StepRule::Default`]: our constants on the decreasing schedules benchopt's `ttsa.py` runs
//!   (exponents inner 0.4, outer 0.6): β_0 = 1/(2ℒ(b)) (1/L_g on full batches: each SGD step
//!   then contracts in expectation, Gower et al. Thm 3.1), α_0 = 1/(4L_L) (the outer scale of
//!   stocBiO's Theorem 3; α_k/β_k → 0 is the two-timescale separation), N_k = max(1,
//!   ⌈(L_b/µ_g) ln √(k+1)⌉) (paper 001: Θ(log √s); bias (1 − µ_g/L_b)^{N_k} ≤ 1/√(k+1)).
//!   Hong et al.'s constants are not in the sources; these are ours.
//! - [`StepRule::Experiments`] and [`StepRule::Theory`]: refused (see [`super::bsa`]): paper
//!   000 §5.2–5.3 and paper 002 App. A run TTSA without reporting its values (paper 003's
//!   tuned rates are for its RNNs), and Hong et al.'s theorem is not in the repository. (Its
//!   non-convex theorem takes horizon-constant steps α ∝ K^{−3/5}, β ∝ K^{−2/5}; paper 000's
//!   Prop. 11 proof implies α_k ∝ 1/k, β_k ∝ k^{−2/3} in the strongly convex case.)
//!
//! The theorems bound a uniformly drawn iterate: the output is x_a uniform over x_0..x_{K−1}.
//!
//! Deviations and ambiguities:
//! - Exponents: the brief and benchopt's `ttsa.py` (decay exponents inner 0.4, outer 0.6) give
//!   the inner (fast) step k^{−2/5} and the outer (slow) step k^{−3/5}. Paper 001's Table 1
//!   lists α_s = Θ(S^{−2/5}) under "UL step" and η = Θ(S^{−3/5}) under "LL step", the other
//!   way round; that order would move x faster than y tracks y*(x), against the two-timescale
//!   analysis, so we take inner 2/5, outer 3/5.
//! - Paper 001 writes the steps with the horizon S (constant steps, Hong et al.'s non-convex
//!   theorem); the driver does not tell an algorithm its horizon, so the steps decrease with k
//!   (benchopt's exponents; neither of Hong et al.'s forms, see above).
//! - The hypergradient is taken at the new y_{k+1} (Gauss–Seidel, as in Hong et al.'s
//!   Algorithm 1 as benchopt implements it); paper 004's SUSTAIN, which it says reduces to TTSA
//!   when η ≡ 1, reads y_t (Jacobi). [`Iterates::x_at_y`](super::Iterates::x_at_y) is x_k, the point y_{k+1} was
//!   computed for.
//! - No projection of x (the problems here are unconstrained).

use super::bsa::{GwLoop, GwSchedule, Horizon};
use super::lower::{over_l_outer, user_or, Lower};
use super::{Algorithm, Context, Settings, StepRule, StepSizes};
use crate::params::{Params, Source};
use crate::sampling::BatchSizes;
use bilevel_kernels::Result;

/// Decay exponent of the inner step β_k.
pub const INNER_EXPONENT: f64 = 0.4;
/// Decay exponent of the outer step α_k.
pub const OUTER_EXPONENT: f64 = 0.6;

/// TTSA's schedules (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct TtsaConfig {
    /// β_0 of β_k = β_0 (k+1)^{−2/5}.
    pub inner0: f64,
    /// α_0 of α_k = α_0 (k+1)^{−3/5}.
    pub outer0: f64,
    /// The estimator's L (1/L is its step).
    pub lipschitz: f64,
    /// N_k.
    pub horizon: Horizon,
    /// Mini-batch sizes (S: `inner`, ξ: `outer`, ζ_i: `hvp`, ζ_0: `cross`).
    pub batches: BatchSizes,
    /// Seed of the streams.
    pub seed: u64,
}

impl TtsaConfig {
    /// β_k (k 0-based).
    pub fn inner_step(&self, k: usize) -> f64 {
        self.inner0 * ((k + 1) as f64).powf(-INNER_EXPONENT)
    }
    /// α_k (k 0-based).
    pub fn outer_step(&self, k: usize) -> f64 {
        self.outer0 * ((k + 1) as f64).powf(-OUTER_EXPONENT)
    }
    fn check(&self) -> Result<()> {
        StepSizes { inner: self.inner0, adjoint: 1.0 / self.lipschitz, outer: self.outer0 }.checked()?;
        self.horizon.check()
    }
}

/// TTSA's configuration under `rule` (see the module doc) and its parameters.
pub fn schedule(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(TtsaConfig, Params)> {
    if rule != StepRule::Default {
        return Err(super::bsa::refused("ttsa", rule));
    }
    let c = ctx.constants;
    let b = s.batches;
    let lower = Lower::new(c, ctx.problem)?;
    let mut p = Params::new(rule.name());
    let l_b = lower.per_batch(b.hvp.or(b.inner));
    let mu = c.mu_g()?;
    let (sgd, sgd_source) = lower.sgd_step(b.inner, b.sampling);
    let inner0 = user_or(s.inner_step, "--inner-step", s, (sgd, sgd_source));
    let outer0 = user_or(
        s.outer_step,
        "--outer-step",
        s,
        (
            0.25 * over_l_outer(c, s)?,
            Source::default_because("1/(4L_L): stocBiO's Theorem 3 outer scale (ours for TTSA)"),
        ),
    );
    let horizon = match s.adjoint_steps {
        Some(n) => Horizon::Fixed(n),
        None => Horizon::Logarithmic { kappa: (l_b / mu).max(1.0), cap: super::lower::MAX_DEFAULT_TERMS },
    };
    p.set(
        "inner_step",
        "β_k = β_0 (k+1)^(−2/5), the inner step",
        format!("{:.4e}·(k+1)^(−0.4)", inner0.0),
        inner0.1.clone(),
    );
    p.set(
        "outer_step",
        "α_k = α_0 (k+1)^(−3/5), the outer step",
        format!("{:.4e}·(k+1)^(−0.6)", outer0.0),
        outer0.1.clone(),
    );
    p.set("inner_step0", "β_0", inner0.0, inner0.1.clone());
    p.set("outer_step0", "α_0", outer0.0, outer0.1);
    p.set(
        "adjoint_steps",
        "N_k, the estimator's Neumann horizon",
        match horizon {
            Horizon::Fixed(n) => format!("{n}"),
            Horizon::Logarithmic { kappa, cap } => format!("min({cap}, max(1, ⌈{kappa:.4e}·ln √(k+1)⌉))"),
        },
        match s.adjoint_steps {
            Some(_) => Source::user("--lin-steps"),
            None => Source::default_because(
                "paper 001 Table 1: k_s = Θ(log √s); bias (1 − µ_g/L_b)^N ≤ 1/√(k+1); at most 1000 (cost, ours)",
            ),
        },
    );
    p.set(
        "estimator_scale",
        "L_b, the estimator's 1/L",
        l_b,
        Source::default_because("L_max on mini-batches, L_g on full batches"),
    );
    super::amigo::record_batches(&mut p, &b, ["S_k", "ξ (∂x f and ∂y f)", "ζ_i, one per product", "ζ_0"]);
    p.set(
        "output",
        "the reported point",
        "x_a uniform over x_0..x_{K−1}",
        Source::default_because("Hong et al.'s theorem bounds a uniformly drawn iterate (paper 000 Prop. 11)"),
    );
    let config = TtsaConfig { inner0: inner0.0, outer0: outer0.0, lipschitz: l_b, horizon, batches: b, seed: s.seed };
    config.check()?;
    Ok((config, p))
}

/// TTSA under `rule`, as the registry builds it.
pub fn build(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(Box<dyn Algorithm>, Params)> {
    let (config, mut p) = schedule(rule, ctx, s)?;
    let scale = super::bsa::tracking(ctx, s, &mut p);
    Ok((Box::new(Ttsa::new(config)?.with_scale(scale)), p))
}

/// TTSA (see the module doc): the Ghadimi–Wang loop of [`super::bsa`] with TTSA's schedule.
pub type Ttsa = GwLoop<TtsaConfig>;

impl GwSchedule for TtsaConfig {
    const NAME: &'static str = "ttsa";
    fn inner_steps(&self, _: usize) -> usize {
        1
    }
    fn inner_step_at(&self, k: usize, _: usize) -> f64 {
        self.inner_step(k)
    }
    fn outer_step(&self, k: usize) -> f64 {
        TtsaConfig::outer_step(self, k)
    }
    fn restart_y(&self) -> bool {
        false
    }
    fn estimator(&self) -> (f64, Horizon, BatchSizes, u64) {
        (self.lipschitz, self.horizon, self.batches, self.seed)
    }
    fn check(&self) -> Result<()> {
        TtsaConfig::check(self)
    }
}
