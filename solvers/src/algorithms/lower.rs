//! The lower-level step sizes of the default rules, written in the problem's constants, on
//! full batches and on mini-batches, and their rescaling along the run for problems whose
//! constants depend on x.
//!
//! - **An SGD step on mini-batches of b of n samples** is 1/(2ℒ(b)), Gower, Loizou, Qian,
//!   Sailanbayev, Shulgin & Richtárik, *SGD: General Analysis and Improved Rates* (ICML 2019),
//!   Theorem 3.1 (γ ≤ 1/(2ℒ)), with the expected smoothness ℒ of a b-sample average of
//!   functions of mean smoothness L and per-sample smoothness L_max:
//!   without replacement (b-nice sampling, their Prop. 3.8) ℒ = n(b−1)/(b(n−1))·L +
//!   (n−b)/(b(n−1))·L_max; with replacement (b independent indices: E‖∇f_B(x) − ∇f_B(x*)‖² =
//!   (1/b)E‖∇f_i(x) − ∇f_i(x*)‖² + (1 − 1/b)‖∇f(x) − ∇f(x*)‖², ours) ℒ = L_max/b + (1 − 1/b)·L.
//!   Both are L_max at b = 1; without replacement ℒ = L at b = n. On full batches the step is
//!   the gradient step 1/L.
//! - **A step that must contract on every batch** (a Neumann term, the fixed-point and GD
//!   adjoint steps, the randomized-truncation estimator's 1/L) is 1/L_max on mini-batches: every
//!   batch Hessian is a mean of sample Hessians, so its λ_max ≤ L_max (paper 002 Prop. 3 takes
//!   η ≤ 1/L with L per sample); 1/L_g on full batches.
//! - **Along the run** ([`LowerScale`]): where the problem's constants depend on x
//!   ([`BilevelProblem::constants_at`]: a regularizer exp(λ), an embedding), every lower-level
//!   step set at x_0 is multiplied at x_k by min(L_g(x_0)/L_g(x_k), L_max(x_0)/L_max(x_k)): the
//!   same fraction of the bound at x_k, so a step that was stable at x_0 stays stable where the
//!   curvature grows.

use super::Settings;
use crate::constants::Constants;
use crate::params::Source;
use crate::sampling::Sampling;
use bilevel_kernels::{BilevelProblem, KernelError, Result};

/// ℒ(b) of a b-sample average of n functions of mean smoothness `l` and per-sample smoothness
/// `l_max` (see the module doc); `l` at b ≥ n without replacement.
pub fn expected_smoothness(l: f64, l_max: f64, n: usize, b: usize, sampling: Sampling) -> f64 {
    let (nf, bf) = (n as f64, b.max(1) as f64);
    match sampling {
        Sampling::Replacement => l_max / bf + (1.0 - 1.0 / bf) * l,
        Sampling::Epochs if b >= n || n <= 1 => l,
        Sampling::Epochs => nf * (bf - 1.0) / (bf * (nf - 1.0)) * l + (nf - bf) / (bf * (nf - 1.0)) * l_max,
    }
}

/// The smallest T ≥ `floor` with (1 − 1/κ)^T ≤ 1/10, at most `cap` (a cold start's error
/// shrinks tenfold in T gradient steps of 1/L on a κ-conditioned problem).
pub fn cold_steps_at(kappa: f64, floor: usize, cap: usize) -> usize {
    let rho = (1.0 - 1.0 / kappa).max(0.0);
    let n = if rho <= 0.0 { 1.0 } else { (0.1f64.ln() / rho.ln()).ceil() };
    if n.is_finite() {
        (n as usize).clamp(floor, cap)
    } else {
        cap
    }
}

/// The most inner steps, linear-system steps or Neumann terms per outer step a theory rule may
/// prescribe: past it the theorem's prescription is infeasible and refused with its number.
pub const MAX_THEORY_STEPS: f64 = 1e8;

/// A theorem's step count `v` (already rounded as the theorem rounds it) as a count, at least
/// 1; refused with the number when it is not finite or past [`MAX_THEORY_STEPS`].
pub fn theory_steps(name: &'static str, what: &str, v: f64) -> Result<usize> {
    if v <= MAX_THEORY_STEPS {
        Ok(v.max(1.0) as usize)
    } else {
        Err(KernelError::InvalidParameter {
            name,
            reason: format!(
                "the theorem prescribes {what} = {v:.3e} per outer step on this problem, past {MAX_THEORY_STEPS:.0e}: \
                 infeasible (use --steps default, or set it yourself)"
            ),
        })
    }
}

/// The most terms [`Lower::terms`] and [`Lower::cold_steps`] prescribe.
pub const MAX_DEFAULT_TERMS: usize = 1000;

/// The lower-level constants the default steps are written in, at x_0.
#[derive(Clone, Copy, Debug)]
pub struct Lower {
    /// L_g, the mean (full-batch) smoothness.
    pub l: f64,
    /// L_max, a bound on every sample's (hence every batch's) smoothness.
    pub l_max: f64,
    /// Where L_max comes from.
    pub l_max_known: bool,
    /// The number of lower-level samples.
    pub n: usize,
}

impl Lower {
    /// From the resolved constants: L_g, and the per-sample `l_g_sample` (on full batches not
    /// needed: L_max = L_g).
    pub fn new(c: &Constants, problem: &dyn BilevelProblem) -> Result<Self> {
        let l = c.l_g()?;
        let sample = c.known.l_g_sample;
        Ok(Self { l, l_max: sample.unwrap_or(l).max(l), l_max_known: sample.is_some(), n: problem.n_samples_g() })
    }

    /// The SGD step on batches of `batch` (None: full batches) and where it comes from.
    pub fn sgd_step(&self, batch: Option<usize>, sampling: Sampling) -> (f64, Source) {
        match batch {
            None => (1.0 / self.l, Source::default_because("1/L_g: the gradient step of an L_g-smooth function")),
            Some(b) => (
                1.0 / (2.0 * expected_smoothness(self.l, self.l_max, self.n, b, sampling)),
                Source::default_because(format!(
                    "1/(2ℒ(b)), b = {b} ({}): Gower et al. 2019 Thm 3.1 with the expected smoothness of a \
                     {b}-sample average (L_g, L_max = {:.3e})",
                    sampling_name(sampling),
                    self.l_max
                )),
            ),
        }
    }

    /// The step that contracts on every batch of `batch` samples (None: full batches).
    pub fn contraction_step(&self, batch: Option<usize>) -> (f64, Source) {
        match batch {
            None => (1.0 / self.l, Source::default_because("1/L_g: ‖I − H/L_g‖ ≤ 1 on the full batch")),
            Some(_) => (
                1.0 / self.l_max,
                Source::default_because("1/L_max: ‖I − H_B/L_max‖ ≤ 1 on every batch (L_max bounds each sample)"),
            ),
        }
    }

    /// The number of terms of a solve whose step is 1/L_b on batches of `batch` (a Neumann
    /// series, the GD or fixed-point adjoint, the randomized truncation's horizon, ITD's
    /// unrolled steps on one batch): 10 on full batches, and ⌈10·L_b/L_g⌉ on mini-batches, so that
    /// its bias (1 − µ/L_b)^N (paper 002 Prop. 3 (8)) is at most that of 10 full-batch terms
    /// (1 − µ/L_g)^10 whatever µ — the smaller step 1/L_max needs L_max/L_g times the terms. At
    /// most [`MAX_DEFAULT_TERMS`].
    pub fn terms(&self, batch: Option<usize>) -> (usize, Source) {
        let Some(_) = batch else {
            return (super::DEFAULT_STEPS, Source::default_because("10: paper 000 §5.2 and paper 002 App. A"));
        };
        let ratio = self.l_max / self.l;
        let n = (super::DEFAULT_STEPS as f64 * ratio).ceil();
        let n =
            if n.is_finite() { (n as usize).clamp(super::DEFAULT_STEPS, MAX_DEFAULT_TERMS) } else { MAX_DEFAULT_TERMS };
        (
            n,
            Source::default_because(format!(
                "⌈10·L_max/L_g⌉ (L_max/L_g = {ratio:.3e}, at most {MAX_DEFAULT_TERMS}): the bias (1 − µ/L_max)^N of the \
                 step 1/L_max no larger than that of 10 full-batch terms (paper 002 Prop. 3 (8))"
            )),
        )
    }

    /// The inner steps of a loop that restarts y from y_0 every outer step (AID-CG-WS): the
    /// smallest T ≥ 10 with (1 − µ_g/L)^T ≤ 1/10 (the cold start's error shrinks tenfold), at
    /// most [`MAX_DEFAULT_TERMS`]; 10 when µ_g is not known.
    pub fn cold_steps(&self, per_batch: f64, mu: Option<f64>) -> (usize, Source) {
        let Some(mu) = mu.filter(|m| *m > 0.0 && m.is_finite()) else {
            return (super::DEFAULT_STEPS, Source::default_because("10 (µ_g is not known)"));
        };
        let n = cold_steps_at(per_batch / mu, super::DEFAULT_STEPS, MAX_DEFAULT_TERMS);
        (
            n,
            Source::default_because(format!(
                "the smallest T ≥ 10 with (1 − µ_g/L)^T ≤ 1/10, L/µ_g = {:.3e}: y restarts from y_0 at every outer step, \
                 at most {MAX_DEFAULT_TERMS}",
                per_batch / mu
            )),
        )
    }

    /// The smallest batch whose mean Hessian concentrates around the full one at the scale of
    /// µ_g: ⌈L_max/µ_g⌉, at most n — paper 000 Theorem 1's |D_gyy| ≥ 1 ∨ σ̃²_gyy/(µ_g L_g) with
    /// σ̃²_gyy = ‖E(H_i − H̄)²‖ ≤ L_max·L_g (for convex samples E H_i² ⪯ L_max H̄). `None` when
    /// µ_g is not known.
    pub fn batch_floor(&self, mu: Option<f64>) -> Option<usize> {
        let mu = mu.filter(|m| *m > 0.0 && m.is_finite())?;
        let b = (self.l_max / mu).ceil();
        Some(if b.is_finite() { (b as usize).clamp(1, self.n.max(1)) } else { self.n.max(1) })
    }

    /// The outer step of a default rule: 1/L_L on full batches; on mini-batches Gower et al.
    /// 2019 Thm 3.1's 1/(2ℒ_L(b)) with ℒ_L(b) the expected smoothness of a b-sample average of
    /// the outer objective's samples L_i(x) = f_i(x, y*(x)), from L_L and their per-sample
    /// bound L_L,max where the problem gives it (`l_outer_sample`: the stochastic quadratic,
    /// whose rank-one samples put it at ~60 L_L on `benchopt`, where 1/(2L_L) diverged at
    /// b = 8), else ℒ_L = L_L (said so). `b` is the ∂f batch (n_f samples).
    pub fn outer_step(
        over_l_outer: f64,
        c: &Constants,
        batches: &crate::sampling::BatchSizes,
        n_f: usize,
    ) -> (f64, Source) {
        if batches.is_full() {
            return (
                over_l_outer,
                Source::default_because("1/L_L: the gradient step of the L_L-smooth value function"),
            );
        }
        let bound = c.known.l_outer_sample.zip(c.known.l_outer).filter(|(m, l)| m.is_finite() && *l > 0.0);
        match (batches.outer, bound) {
            (Some(b), Some((l_max, l))) => {
                let factor = expected_smoothness(l, l_max.max(l), n_f, b, batches.sampling) / l;
                (
                    0.5 * over_l_outer / factor,
                    Source::default_because(format!(
                        "1/(2ℒ_L(b)), ℒ_L(b) = {factor:.4}·L_L: Gower et al. 2019 Thm 3.1 with the expected smoothness \
                         of a {b}-sample average of the outer objective's samples ({}, L_L,max = {l_max:.4e})",
                        sampling_name(batches.sampling)
                    )),
                )
            }
            _ => (
                0.5 * over_l_outer,
                Source::default_because(
                    "1/(2L_L): Gower et al. 2019 Thm 3.1's 1/(2ℒ) with ℒ = L_L (the problem bounds no per-sample \
                     outer smoothness)",
                ),
            ),
        }
    }

    /// The smoothness every batch of `batch` samples respects: L_max on mini-batches, L_g on
    /// full batches.
    pub fn per_batch(&self, batch: Option<usize>) -> f64 {
        if batch.is_some() {
            self.l_max
        } else {
            self.l
        }
    }
}

fn sampling_name(s: Sampling) -> &'static str {
    match s {
        Sampling::Replacement => "with replacement",
        Sampling::Epochs => "without replacement",
    }
}

/// The rescaling of lower-level steps along the run (see the module doc): the constants at
/// x_0, and at each step the factor for x_k.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LowerScale {
    /// (L_g(x_0), L_max(x_0)) when the problem's constants depend on x; `None`: factor 1.
    base: Option<(f64, Option<f64>)>,
}

impl LowerScale {
    /// No rescaling (the constants do not depend on x, or the user fixed the steps).
    pub fn none() -> Self {
        Self { base: None }
    }

    /// The rescaling for `problem` from x_0 (none when its constants do not depend on x).
    pub fn at_start(problem: &dyn BilevelProblem, x0: &[f64]) -> Self {
        let base = problem.constants_at(x0).and_then(|c| Some((c.l_g?, c.l_g_sample)));
        Self { base }
    }

    /// Whether steps are rescaled along the run.
    pub fn is_tracking(&self) -> bool {
        self.base.is_some()
    }

    /// The factor for the lower-level steps at x (1 without tracking).
    pub fn factor(&self, problem: &dyn BilevelProblem, x: &[f64]) -> f64 {
        let Some((l0, s0)) = self.base else { return 1.0 };
        let Some(now) = problem.constants_at(x) else { return 1.0 };
        ratio(l0, now.l_g).min(s0.map_or(1.0, |s0| ratio(s0, now.l_g_sample)))
    }
}

/// l0/l (1 when l is unknown or not a positive finite number: a non-finite x is the driver's
/// to detect).
fn ratio(l0: f64, l: Option<f64>) -> f64 {
    match l {
        Some(l) if l.is_finite() && l > 0.0 => l0 / l,
        _ => 1.0,
    }
}

/// 1/L_L for a rule's γ; when the user set γ (which replaces the rule's) L_L may be unknown and
/// this returns 1, a value that is never used.
pub fn over_l_outer(c: &Constants, s: &Settings) -> Result<f64> {
    if s.outer_step.is_some() {
        Ok(1.0)
    } else {
        Ok(1.0 / c.l_outer()?)
    }
}

/// The user's step, or the rule's, with its source.
pub fn user_or(user: Option<f64>, flag: &'static str, settings: &Settings, rule: (f64, Source)) -> (f64, Source) {
    let searched = match flag {
        "--inner-step" => settings.searched[0],
        "--outer-step" => settings.searched[1],
        _ => false,
    };
    match user {
        Some(v) if searched => (v, Source::search(format!("{flag} chosen by --steps search"))),
        Some(v) => (v, Source::user(flag)),
        None => rule,
    }
}

/// Checks a step is finite and > 0.
pub fn positive(name: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(KernelError::InvalidParameter { name, reason: format!("must be finite and > 0, got {v}") })
    }
}

/// The outer step along the run, for a deterministic run whose L_L is an estimate at x_0 (a
/// non-quadratic problem): γ_k = γ · min(1, L_L(x_0)/L̂_k) with L̂_k the largest curvature of
/// the hypergradient estimates seen so far, the secants ‖ψ_j − ψ_{j−1}‖/‖x_j − x_{j−1}‖ (the
/// local smoothness estimate of Malitsky & Mishchenko, *Adaptive Gradient Descent without
/// Descent*, ICML 2020, without their step increase): the step stays below 1/L̂ where the
/// curvature away from x_0 is larger than at x_0. Ours; off where L_L is exact or the user set
/// γ. On mini-batches a secant also measures the estimates' noise, which only makes the step
/// smaller (safe, possibly slow). Buffers sized by
/// [`OuterScale::init`]; no allocation per step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OuterScale {
    /// L_L(x_0); `None`: no rescaling.
    base: Option<f64>,
    largest: f64,
    prev_x: Vec<f64>,
    prev_g: Vec<f64>,
    started: bool,
}

impl OuterScale {
    /// No rescaling.
    pub fn none() -> Self {
        Self::default()
    }

    /// Rescaling from L_L(x_0) = `l_outer`.
    pub fn from_estimate(l_outer: f64) -> Self {
        Self { base: Some(l_outer), largest: l_outer, ..Self::default() }
    }

    /// Whether the step is rescaled along the run.
    pub fn is_tracking(&self) -> bool {
        self.base.is_some()
    }

    /// Sizes the buffers for x of length `dim_x` and forgets the run so far.
    pub fn init(&mut self, dim_x: usize) {
        if let Some(l) = self.base {
            self.largest = l;
            self.prev_x = vec![0.0; dim_x];
            self.prev_g = vec![0.0; dim_x];
            self.started = false;
        }
    }

    /// The factor of the outer step at x_k with the estimate ψ_k (1 without rescaling).
    pub fn factor(&mut self, x: &[f64], grad: &[f64]) -> f64 {
        let Some(l0) = self.base else { return 1.0 };
        if self.started {
            let (mut dx, mut dg) = (0.0, 0.0);
            for i in 0..x.len() {
                dx += (x[i] - self.prev_x[i]).powi(2);
                dg += (grad[i] - self.prev_g[i]).powi(2);
            }
            let secant = (dg / dx).sqrt();
            if dx > 0.0 && secant.is_finite() {
                self.largest = self.largest.max(secant);
            }
        }
        self.prev_x.copy_from_slice(x);
        self.prev_g.copy_from_slice(grad);
        self.started = true;
        l0 / self.largest
    }
}
