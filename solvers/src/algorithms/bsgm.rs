//! BSGM — Grazzi, Pontil & Salzo, *Bilevel Optimization with a Lower-level Contraction:
//! Optimal Sample Complexity without Warm-start* (JMLR), Algorithm 2, deterministic form
//! (Theorem 17), on any bilevel problem through its gradient map
//! ([`bilevel_kernels::GradientMap`]), with SID ([`crate::estimators::sid`]) for
//! the hypergradient:
//!
//! ```text
//! λ_{s+1} = P_Λ(λ_s − α ∇̂f(λ_s)),   ∇̂f = SID(λ_s; t_s, k_s),  t_s = k_s = ⌈c₃ log(s+1)⌉   (eq. (20))
//! ```
//! No warm start of w or v (the paper's point). Claimed complexity (Thm 17, α ≤ 1/L_f, c₃ ≥
//! 1/log(1/q)): O(ε⁻¹ log ε⁻¹) in ε; O(ε⁻¹ log(ε⁻¹) κ⁵) with c₃ = Θ(κ) (Remark 18).
//! The printed schedule gives t_0 = ⌈c₃ log 1⌉ = 0 steps; we take at least one. Paper 001
//! §7.1's experiments instead fix t_s = k_s = 2 ([`Bsgm::with_fixed_steps`], [`Schedule`]).
//!
//! **Stochastic form** ([`Bsgm::stochastic`], Algorithm 2 with SID's stochastic Algorithm 1,
//! Theorem 16): t_s = k_s = J_s = ⌈c₃(s+1)⌉ (anytime, (i)) or ⌈c₃S⌉ (finite horizon S, (ii));
//! the lower-level and linear-system steps η_i = β/(γ + i), restarted in every SID call, with
//! Remark 18's β = 2/(1−q²) and Theorem 8's γ = β(1 + σ̃₂), σ̃₂ = max{2σ′₁/(1−q)², σ₂} the
//! variance constants of the sampled map ([`build`]: a bound under the theory rule; 0, i.e.
//! γ = β and η_0 = 1, under the default rule — ours, the reading under which the deterministic
//! limit is the fixed-point iteration, outside Theorem 8). Batches: the lower-level and linear-system steps on batches of
//! `batches.inner` and `batches.hvp` samples (1 in the paper), ∇E and ∂λΦ on J_s samples
//! each; four independent streams. Claimed complexity: O(ε⁻²) samples (ii), Õ(ε⁻²) (i).
//!
//! **Batched form on a fixed-point problem with one state per sample** ([`Bsgm::batched`],
//! paper 001 §7.1, the equilibrium model): per outer step a batch of J examples is drawn from
//! one [`BatchStream`] (seeded from the run's seed, stream [`EXAMPLE_STREAM`], with or without
//! replacement); SID runs on those examples' states only
//! ([`Sid::hypergradient_batch`](crate::estimators::Sid::hypergradient_batch): states J × h,
//! every oracle on `Batch::Rows(indices)`), the lower level and the linear system
//! deterministic per example with step 1 (the map itself) from w = v = 0, ∇E and ∂λΦᵀ on the
//! same J examples, then λ ← P_Λ(λ − α∇̂f). J_s = J is fixed (§7.1's batch sizes 600, 6000;
//! no size: all examples, "Det", the deterministic iterates bit for bit). t_s = k_s follow
//! [`Bsgm::with_fixed_steps`] (§7.1: 2) or Theorem 17's log schedule. Counts per outer step
//! (calls, each on J examples; see `Counted`): t_s maps (`grad_y_g`), k_s ∂wΦᵀ products
//! (`hvp`), one ∂λΦᵀ product (`cross`), one ∇wE (`grad_y_f`) and one ∇λE (`grad_x_f`);
//! samples J·(t_s + k_s + 1) lower and 2J upper. [`Iterates::y`] holds the last batch's states
//! (J·h values, row p the state of example [`Bsgm::last_batch`]`[p]`), not all samples'; the
//! equilibrium metrics recompute the states of all samples from w = 0 and do not read it.
//!
//! **Projection**: the [`Projection`] given to [`Bsgm::new`], and the problem's own Λ
//! ([`FixedPointProblem::project`]; the equilibrium model's ‖θ‖_∞ ≤ 1 (read entrywise) ×
//! ‖A‖₂ ≤ 0.5, an SVD clip) after every outer step and on λ_0, unless
//! [`Bsgm::with_problem_projection`]`(false)`. Both at once on a problem with its own Λ is an
//! error (their composition is not the projection onto the intersection).
//!
//! Deviations from the paper, with the reasons:
//! - t_0 = max(1, ⌈c₃ log 1⌉) = 1 in Theorem 17's schedule (printed: 0 steps at s = 0);
//! - the default rule's stochastic form takes σ̃₂ = 0, so γ = β and η_0 = 1 (see above; the
//!   theory rule bounds σ̃₂);
//! - the batched form's batch drives all four of SID's oracles (the states exist only for the
//!   drawn examples), where Algorithm 1 samples them independently: §7.1's own setting, in
//!   which the lower level is deterministic per example and only the examples are sampled;
//! - the batched form takes J > n (§7.1's batches are subsets of the training set; a larger
//!   batch repeats examples, each with its own copy of the state);
//! - Λ's ‖θ‖_∞ ≤ 1 is read entrywise (a box); the paper does not say which ∞-norm.
//!
//! Parameters on a bilevel problem ([`build`]; the map's step η makes Φ(y) = y − η∂y g a
//! q-contraction, q = 1 − ηµ_g; on the equilibrium model `bilevel solve` sets them, see there):
//! - [`StepRule::Default`]: α = 1/L_L, η = 1/L_g (1/L_max on mini-batches: every sampled map
//!   then contracts), deterministic: Theorem 17's schedule with its smallest c₃ = 1/log(1/q)
//!   (or `--fixed-steps`); stochastic: Theorem 16's anytime schedule with c₃ = 1 (Remark 18's
//!   Θ(1), its constant taken as 1) and σ̃₂ = 0 (ours, see above), α = 1/(2L_L) (Gower et al.
//!   2019's 1/(2ℒ) for a stochastic estimate, as the AID family's; α = 1/L_L with σ̃₂ = 0 left
//!   the rank-one `benchopt` quadratic at batch 64 at a noise floor above its start), and t_s =
//!   k_s floored at the cold start's time constant (the smallest T with q^T ≤ 1/10, at most
//!   1000; `Stochastic::min_steps`): SID restarts from w = v = 0, and with Theorem 16's t_s =
//!   s + 1 the early estimates are ∂x f near w = 0, not the hypergradient (J_s stays Theorem
//!   16's);
//! - [`StepRule::Experiments`]: paper 001's experiments are the equilibrium models (§7.1),
//!   meta-learning with CNNs (§7.2) and data poisoning (§7.3): on a bilevel problem of this
//!   catalogue, an error;
//! - [`StepRule::Theory`]: Theorem 17 (deterministic): α = 1/L_f (L_L), η = 1/L_g, c₃ ≥
//!   1/log(1/q) (the default c₃ is the bound, a smaller one is an error); Theorem 16
//!   (stochastic): α = 1/L_f, c₃ = 1 (Remark 18, Θ(1) read as 1), β = 2/(1−q²) and γ = β(1 +
//!   σ̃₂) with σ̃₂ = 2η²L_max·L_g/((1−q)²b) ≥ max{2σ′₁/(1−q)², σ₂}: for convex samples
//!   E(A_i − Ā)² ⪯ E A_i² ⪯ L_max Ā, so the variance of a b-sample map's Jacobian is at most
//!   η²L_max L_g/b (σ′₁) and σ₂ ≤ 2σ′₁/(1−q)² (‖w − w(λ)‖ ≤ ‖Φ(w) − w‖/(1−q)). The run length S
//!   (Thm 16 (ii), Thm 17) needs constants the problems do not give (B, L_E, σ₁): the user's
//!   `--max-iters` or `--horizon`.

use super::lower::{over_l_outer, positive, user_or, Lower, LowerScale};
use super::{Context, Iterates, Output, Settings, StepRule};
use crate::constants::{Constant, Constants};
use crate::estimators::{Sid, SidStreams};
use crate::params::{Params, Source};
use crate::sampling::{BatchSizes, BatchStream, Sampling};
use crate::{Algorithm, FixedPointAlgorithm};
use bilevel_kernels::{ops, Batch, BilevelProblem, FixedPointProblem, GradientMap, KernelError, Result};

/// The constants the theory rule needs (µ_g for c₃'s bound).
pub const NEEDS_THEORY: &[Constant] = &[Constant::MuG, Constant::LG, Constant::LOuter];

/// Theorem 17's lower bound on c₃: 1/log(1/q) with q = 1 − ηµ_g and η = 1/L_g (so q = 1 − 1/κ_g).
pub fn c3_bound(c: &Constants) -> Result<f64> {
    let q = 1.0 - c.mu_g()? / c.l_g()?;
    if !(0.0..1.0).contains(&q) {
        return Err(KernelError::InvalidParameter {
            name: "mu_g",
            reason: format!("needs 0 < µ_g <= L_g, got q = {q}"),
        });
    }
    Ok(if q == 0.0 { f64::MIN_POSITIVE } else { 1.0 / (1.0 / q).ln() })
}

/// `Some(bound)` when µ_g is known and `c3` is below Theorem 17's bound.
pub fn c3_below_theorem(c3: f64, c: &Constants) -> Option<f64> {
    c3_bound(c).ok().filter(|&b| c3 < b)
}

/// BSGM's c₃ of the deterministic schedule under `rule`: `c3: None` takes Theorem 17's bound
/// (needs µ_g); under the theory rule a value below the bound is an error.
pub fn c3(rule: StepRule, c: &Constants, c3: Option<f64>) -> Result<f64> {
    Ok(match (rule, c3) {
        (StepRule::Theory, Some(v)) => {
            let bound = c3_bound(c)?;
            if v < bound {
                return Err(KernelError::InvalidParameter {
                    name: "c3",
                    reason: format!("Theorem 17 needs c3 >= 1/log(1/q) = {bound:.4e}, got {v}"),
                });
            }
            v
        }
        (_, Some(v)) => v,
        (_, None) => c3_bound(c)?,
    })
}

/// P_Λ of BSGM (eq. (20)).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Projection {
    /// Λ = R^m.
    None,
    /// Every coordinate clipped to [lo, hi].
    Box {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// The Euclidean ball of this radius.
    Ball {
        /// The radius (> 0).
        radius: f64,
    },
    /// Rows of the `rows × cols` row-major block starting at `offset` each projected onto the
    /// ball of this radius (a per-row constraint on a matrix-valued part of λ).
    RowBalls {
        /// Where the block starts in λ.
        offset: usize,
        /// Rows of the block.
        rows: usize,
        /// Columns of the block.
        cols: usize,
        /// The radius of each row's ball (> 0).
        radius: f64,
    },
}

impl Projection {
    /// Checks the parameters: a box with lo ≤ hi, radii finite and > 0.
    pub fn validate(&self) -> Result<()> {
        let radius = |r: f64| {
            if r.is_finite() && r > 0.0 {
                Ok(())
            } else {
                Err(KernelError::InvalidParameter {
                    name: "radius",
                    reason: format!("must be finite and > 0, got {r}"),
                })
            }
        };
        match *self {
            Projection::None => Ok(()),
            Projection::Box { lo, hi } if lo.is_nan() || hi.is_nan() || lo > hi => {
                Err(KernelError::InvalidParameter { name: "box", reason: format!("needs lo <= hi, got [{lo}, {hi}]") })
            }
            Projection::Box { .. } => Ok(()),
            Projection::Ball { radius: r } | Projection::RowBalls { radius: r, .. } => radius(r),
        }
    }

    /// Projects `x` onto Λ in place.
    pub fn apply(&self, x: &mut [f64]) -> Result<()> {
        self.validate()?;
        let shrink = |v: &mut [f64], r: f64| {
            let n = ops::norm2(v);
            if n > r {
                ops::scale(r / n, v);
            }
        };
        match *self {
            Projection::None => {}
            Projection::Box { lo, hi } => x.iter_mut().for_each(|v| *v = v.clamp(lo, hi)),
            Projection::Ball { radius } => shrink(x, radius),
            Projection::RowBalls { offset, rows, cols, radius } => {
                let end = offset + rows * cols;
                if end > x.len() {
                    return Err(KernelError::DimensionMismatch {
                        what: "projected block",
                        expected: x.len(),
                        got: end,
                    });
                }
                x[offset..end].chunks_exact_mut(cols.max(1)).for_each(|r| shrink(r, radius));
            }
        }
        Ok(())
    }
}

/// BSGM on a fixed-point problem ([`FixedPointAlgorithm`]), and on a bilevel problem through
/// its gradient map ([`Algorithm`]): both run the same step on a `FixedPointProblem`.
pub struct Bsgm {
    alpha: f64,
    eta: f64,
    c3: f64,
    projection: Projection,
    s: usize,
    it: Iterates,
    sid: Option<Sid>,
    stochastic: Option<Stochastic>,
    streams: SidStreams,
    fixed_steps: Option<usize>,
    batched: Option<Batched>,
    examples: BatchStream,
    problem_projection: bool,
    scale: LowerScale,
    output_seed: u64,
}

/// The batched form on a fixed-point problem with one state per sample (paper 001 §7.1's
/// equilibrium runs; see the module doc): each outer step draws J examples and runs SID on
/// their states only.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Batched {
    /// J_s = J examples every outer step (§7.1's fixed batch sizes); `None`: all examples in
    /// order ([`Batch::Full`], the paper's "Det", the deterministic iterates bit for bit).
    pub size: Option<usize>,
    /// With or without replacement (epochs).
    pub sampling: Sampling,
    /// Seed of the example stream (its own stream number, [`EXAMPLE_STREAM`]).
    pub seed: u64,
}

/// Where t_s = k_s comes from (named after its source; [`Bsgm::schedule`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind")]
pub enum Schedule {
    /// Paper 001 §7.1's experiments: t_s = k_s = `steps` at every outer step (2 there).
    #[serde(rename = "fixed_paper001_sec7_1")]
    Fixed {
        /// t.
        steps: usize,
    },
    /// Theorem 17 (deterministic): t_s = k_s = max(1, ⌈c₃ log(s+1)⌉).
    #[serde(rename = "theorem17_log")]
    Theorem17 {
        /// c₃.
        c3: f64,
    },
    /// Theorem 16 (i) (stochastic, anytime): t_s = k_s = J_s = ⌈c₃(s+1)⌉.
    #[serde(rename = "theorem16_anytime")]
    Theorem16Anytime {
        /// c₃.
        c3: f64,
    },
    /// Theorem 16 (ii) (stochastic, finite horizon S): t_s = k_s = J_s = ⌈c₃S⌉.
    #[serde(rename = "theorem16_horizon")]
    Theorem16Horizon {
        /// c₃.
        c3: f64,
        /// S.
        horizon: usize,
    },
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Schedule::Fixed { steps } => write!(f, "t_s = k_s = {steps} (fixed, paper 001 §7.1's experiments)"),
            Schedule::Theorem17 { c3 } => write!(f, "t_s = k_s = max(1, ⌈c₃ log(s+1)⌉), c₃ = {c3:.4e} (Theorem 17)"),
            Schedule::Theorem16Anytime { c3 } => {
                write!(f, "t_s = k_s = J_s = ⌈c₃(s+1)⌉, c₃ = {c3:.4e} (Theorem 16 (i))")
            }
            Schedule::Theorem16Horizon { c3, horizon } => {
                write!(f, "t_s = k_s = J_s = ⌈c₃S⌉, c₃ = {c3:.4e}, S = {horizon} (Theorem 16 (ii))")
            }
        }
    }
}

/// The stochastic form's settings (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stochastic {
    /// Batch sizes of the lower-level and linear-system steps (`inner`, `hvp`); the J_s batches
    /// follow the schedule.
    pub batches: BatchSizes,
    /// Seed of the four streams.
    pub seed: u64,
    /// q, the contraction factor of the map (1 − ηµ_g), for β = 2/(1−q²).
    pub q: f64,
    /// `Some(S)`: the finite-horizon schedule ⌈c₃S⌉ of Theorem 16 (ii); `None`: ⌈c₃(s+1)⌉.
    pub horizon: Option<usize>,
    /// σ̃₂ of Theorem 8's γ = β(1 + σ̃₂) in the steps η_i = β/(γ + i) (0: γ = β, η_0 = 1).
    pub sigma2: f64,
    /// A floor on t_s = k_s (not on J_s): 0 for Theorem 16's schedule as printed; the default
    /// rule's is the cold start's time constant (see [`build`]).
    pub min_steps: usize,
}

/// The most lower-level (and linear-system) steps one outer step may take: a c₃ that asks for
/// more (e.g. 1e308) stops the run as `Failed` with the figure instead of running for ever.
pub const MAX_SCHEDULE_STEPS: usize = 100_000_000;

/// Stream numbers of SID's four samplings.
const STREAMS: [u64; 4] = [0, 1, 2, 3];
/// Stream number of the batched form's example batches (apart from SID's four).
pub const EXAMPLE_STREAM: u64 = 4;

impl Bsgm {
    /// `alpha` ≤ 1/L_f (outer step), `eta` ≤ 1/L_g (the gradient map's step, used on bilevel
    /// problems only), `c3` ≥ 1/log(1/q) with q = 1 − η µ_g (or the fixed-point problem's own
    /// contraction factor q) for Theorem 17's guarantee.
    pub fn new(alpha: f64, eta: f64, c3: f64, projection: Projection) -> Result<Self> {
        for (name, v) in [("alpha", alpha), ("eta", eta), ("c3", c3)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(KernelError::InvalidParameter { name, reason: format!("must be finite and > 0, got {v}") });
            }
        }
        projection.validate()?;
        Ok(Self {
            alpha,
            eta,
            c3,
            projection,
            s: 0,
            it: Iterates::default(),
            sid: None,
            stochastic: None,
            streams: SidStreams::full(),
            fixed_steps: None,
            batched: None,
            examples: BatchStream::full(),
            problem_projection: true,
            scale: LowerScale::none(),
            output_seed: 0,
        })
    }

    /// The seed of the reported iterate's draw: λ_a with a uniform over λ_0..λ_{S−1}, the point
    /// whose expected ‖G_α‖² Theorems 16 and 17 bound (their left-hand side, the mean over
    /// those iterates, is reported with it; [`Output::Uniform`]).
    pub fn with_output_seed(mut self, seed: u64) -> Self {
        self.output_seed = seed;
        self
    }

    /// Paper 001 §7.1's fixed schedule t_s = k_s = `steps` (≥ 1, at most
    /// [`MAX_SCHEDULE_STEPS`]) instead of Theorem 16/17's; c₃ is then not used. In the
    /// stochastic form J_s = t_s = `steps` too.
    pub fn with_fixed_steps(self, steps: usize) -> Result<Self> {
        if !(1..=MAX_SCHEDULE_STEPS).contains(&steps) {
            return Err(KernelError::InvalidParameter {
                name: "fixed_steps",
                reason: format!("must be in 1..={MAX_SCHEDULE_STEPS}, got {steps}"),
            });
        }
        Ok(Self { fixed_steps: Some(steps), ..self })
    }

    /// The batched form on a fixed-point problem with one state per sample (see the module
    /// doc); not with [`stochastic`](Self::stochastic).
    pub fn batched(self, batched: Batched) -> Result<Self> {
        if batched.size == Some(0) {
            return Err(KernelError::InvalidParameter { name: "batch_size", reason: "must be >= 1".into() });
        }
        if self.stochastic.is_some() {
            return Err(KernelError::InvalidParameter {
                name: "batches",
                reason: "BSGM's batched form (examples of a fixed-point problem) and its stochastic form (Theorem 16, sampled map rows) exclude each other".into(),
            });
        }
        Ok(Self { batched: Some(batched), ..self })
    }

    /// Whether to project onto the problem's own constraint set
    /// ([`FixedPointProblem::project`], e.g. the equilibrium model's Λ of paper 001 §7.1) after
    /// every outer step and at the start: on by default (Λ is part of the problem's
    /// definition); a problem without one (Λ = R^m, every bilevel problem's gradient map) is
    /// not affected. `false` runs on R^m (the [`Projection`] still applies).
    pub fn with_problem_projection(self, on: bool) -> Self {
        Self { problem_projection: on, ..self }
    }

    /// The gradient map's step η rescaled along the run by `scale` (a bilevel problem whose
    /// lower-level constants depend on x: [`super::lower`]).
    pub fn with_scale(self, scale: LowerScale) -> Self {
        Self { scale, ..self }
    }

    /// The schedule t_s = k_s follows.
    pub fn schedule(&self) -> Schedule {
        match (self.fixed_steps, self.stochastic.map(|st| st.horizon)) {
            (Some(steps), _) => Schedule::Fixed { steps },
            (None, None) => Schedule::Theorem17 { c3: self.c3 },
            (None, Some(None)) => Schedule::Theorem16Anytime { c3: self.c3 },
            (None, Some(Some(horizon))) => Schedule::Theorem16Horizon { c3: self.c3, horizon },
        }
    }

    /// The examples of the last outer step's batch (the batched form; [`Batch::Full`] for the
    /// other forms). Row p of [`Iterates::y`] is the state of example `last_batch()[p]`.
    pub fn last_batch(&self) -> Batch<'_> {
        self.examples.last()
    }

    /// The stochastic form (Theorem 16) with these batches, seed, q and schedule.
    pub fn stochastic(self, stochastic: Stochastic) -> Result<Self> {
        if self.batched.is_some() {
            return Err(KernelError::InvalidParameter {
                name: "batches",
                reason: "BSGM's stochastic form (Theorem 16) and its batched form exclude each other".into(),
            });
        }
        if !(0.0..1.0).contains(&stochastic.q) {
            return Err(KernelError::InvalidParameter {
                name: "q",
                reason: format!("must be in [0, 1), got {}", stochastic.q),
            });
        }
        if !(stochastic.sigma2.is_finite() && stochastic.sigma2 >= 0.0) {
            return Err(KernelError::InvalidParameter {
                name: "sigma2",
                reason: format!("σ̃₂ must be finite and >= 0, got {}", stochastic.sigma2),
            });
        }
        Ok(Self { stochastic: Some(stochastic), ..self })
    }

    /// c₃.
    pub fn c3(&self) -> f64 {
        self.c3
    }

    /// t_s = k_s: the fixed t (paper 001 §7.1), else max(1, ⌈c₃ log(s+1)⌉) (deterministic and
    /// batched forms, Theorem 17), ⌈c₃(s+1)⌉ or ⌈c₃S⌉ (stochastic, Theorem 16).
    pub fn inner_steps(&self, s: usize) -> usize {
        if let Some(t) = self.fixed_steps {
            return t;
        }
        let steps = match self.stochastic.map(|st| st.horizon) {
            None => self.c3 * ((s + 1) as f64).ln(),
            Some(None) => self.c3 * (s + 1) as f64,
            Some(Some(horizon)) => self.c3 * horizon as f64,
        };
        (steps.ceil() as usize).max(1)
    }

    /// J_s, and t_s = k_s with the stochastic form's floor ([`Stochastic::min_steps`]).
    fn steps_and_batch(&self, s: usize) -> (usize, usize) {
        let j = self.inner_steps(s);
        (j.max(self.stochastic.map_or(0, |st| st.min_steps)), j)
    }
}

impl Bsgm {
    /// Sizes SID for states of `n_states` values and λ of `dim_lambda`, and the stochastic
    /// form's streams for `n_f` upper and `n_g` lower samples; `self.it` is set.
    fn start(&mut self, n_states: usize, dim_lambda: usize, n_f: usize, n_g: usize) -> Result<()> {
        self.sid = Some(Sid::new(n_states, dim_lambda));
        self.s = 0;
        if let Some(st) = self.stochastic {
            let b = st.batches;
            let j = self.inner_steps(0);
            let stream = |n, size, id| BatchStream::new(n, size, b.sampling, st.seed, id, 0);
            self.streams = SidStreams {
                lower: stream(n_g, Some(b.inner.unwrap_or(1)), STREAMS[0])?,
                upper: stream(n_f, Some(j), STREAMS[1])?,
                linear: stream(n_g, Some(b.hvp.unwrap_or(1)), STREAMS[2])?,
                cross: stream(n_g, Some(j), STREAMS[3])?,
            };
        }
        Ok(())
    }

    /// The starting outer point projected onto Λ.
    fn projected_start(&mut self, x0: &[f64]) -> Result<Vec<f64>> {
        let mut x = x0.to_vec();
        self.projection.apply(&mut x)?;
        Ok(x)
    }

    /// One step of Algorithm 2 on the fixed-point problem `map` (a bilevel problem's gradient
    /// map, or a fixed-point problem itself).
    fn step_on(&mut self, map: &dyn FixedPointProblem) -> Result<()> {
        let (t, j) = self.steps_and_batch(self.s);
        if t > MAX_SCHEDULE_STEPS {
            return Err(KernelError::InvalidParameter {
                name: "c3",
                reason: format!(
                    "the schedule asks for t_s = {t} steps at s = {} (c₃ = {:e}); at most {MAX_SCHEDULE_STEPS}",
                    self.s, self.c3
                ),
            });
        }
        let sid = super::initialised(&mut self.sid)?;
        let it = &mut self.it;
        match self.stochastic {
            // The batched form: SID on the drawn examples' states only, η = 1 (§7.1).
            None if self.batched.is_some() => {
                let batch = self.examples.draw();
                sid.hypergradient_batch(map, &it.x, t, t, batch, &mut it.grad)?
            }
            None => sid.hypergradient(map, &it.x, t, t, &mut it.grad)?,
            Some(st) => {
                // η_i = β/(γ + i) with β = 2/(1−q²), γ = β(1 + σ̃₂) (see the module doc); J_s.
                let beta = 2.0 / (1.0 - st.q * st.q);
                let gamma = beta * (1.0 + st.sigma2);
                let eta = |i: usize| beta / (gamma + i as f64);
                self.streams.upper.set_size(j);
                self.streams.cross.set_size(j);
                sid.hypergradient_sampled(map, &it.x, t, t, &eta, &mut self.streams, &mut it.grad)?
            }
        }
        // SID's inner state w_t is this step's y (copied: dim_y, or the batch's J·h states,
        // against t map evaluations).
        it.y.copy_from_slice(sid.state());
        it.outer_step(self.alpha);
        self.projection.apply(&mut it.x)?;
        if self.problem_projection {
            map.project(&mut it.x)?;
        }
        self.s += 1;
        Ok(())
    }
}

impl Algorithm for Bsgm {
    fn name(&self) -> &str {
        "bsgm"
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        if self.batched.is_some() {
            return Err(KernelError::InvalidParameter {
                name: "batches",
                reason: "BSGM's batched form runs on a fixed-point problem with one state per sample, not on a bilevel problem (use its stochastic form)".into(),
            });
        }
        let x = self.projected_start(x0)?;
        self.it = Iterates::new(problem, &x, y0)?;
        self.start(problem.dim_y(), problem.dim_x(), problem.n_samples_f(), problem.n_samples_g())
    }
    /// BSGM on the problem's gradient map Φ(y, x) = y − η ∂y g(x, y).
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let eta = self.eta * self.scale.factor(problem, &self.it.x);
        self.step_on(&GradientMap { problem, eta })
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
    fn output(&self) -> Output {
        Output::Uniform { first: 0, seed: self.output_seed }
    }
}

/// BSGM on a fixed-point problem itself (paper 001's setting; the map's step η is not used):
/// the deterministic form (Theorem 17, or §7.1's fixed t), or the batched form
/// ([`Bsgm::batched`]) on a problem with one state per sample. The stochastic form of Theorem
/// 16 samples the map's rows, and on a problem with one state per sample SID's states would
/// have to follow its batches: it is refused there (the batched form is what §7.1 runs).
impl FixedPointAlgorithm for Bsgm {
    fn init_fixed_point(&mut self, problem: &dyn FixedPointProblem, lambda0: &[f64], w0: &[f64]) -> Result<()> {
        let n = problem.n_samples();
        if self.stochastic.is_some() && n > 1 {
            return Err(KernelError::InvalidParameter {
                name: "batches",
                reason: "BSGM's stochastic form (Theorem 16, sampled map rows) does not run on a fixed-point problem \
                         with one state per sample; its batched form (Bsgm::batched, paper 001 §7.1) does"
                    .into(),
            });
        }
        if self.problem_projection && problem.constraint_set().is_some() && self.projection != Projection::None {
            return Err(KernelError::InvalidParameter {
                name: "projection",
                reason: format!(
                    "the problem has its own constraint set ({}); turn it off to project onto {:?} instead",
                    problem.constraint_set().unwrap_or_default(),
                    self.projection
                ),
            });
        }
        let mut x = self.projected_start(lambda0)?;
        if self.problem_projection {
            problem.project(&mut x)?;
        }
        self.it = Iterates::for_fixed_point(problem, &x, w0)?;
        let h = problem.dim_state();
        match self.batched {
            None => self.start(n * h, problem.dim_lambda(), n, n),
            Some(b) => {
                // A batch may exceed n: drawn with replacement (or across epochs) it repeats
                // examples, each with its own copy of the state.
                let j = b.size.unwrap_or(n);
                bilevel_kernels::memory::check_fits(
                    || format!("SID's states for a batch of {j} examples"),
                    5 * (j as u128) * (h as u128) * 8,
                )?;
                self.sid = Some(Sid::new(j * h, problem.dim_lambda()));
                self.s = 0;
                self.examples = BatchStream::new(n, b.size, b.sampling, b.seed, EXAMPLE_STREAM, j)?;
                if b.size.is_some() {
                    // y holds the last batch's J·h states (see the module doc).
                    self.it.y = vec![0.0; j * h];
                }
                Ok(())
            }
        }
    }
    fn step_fixed_point(&mut self, problem: &dyn FixedPointProblem) -> Result<()> {
        self.step_on(problem)
    }
}

/// BSGM on a bilevel problem (its gradient map) under `rule` (see the module doc).
pub fn build(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(Box<dyn crate::Algorithm>, Params)> {
    let c = ctx.constants;
    let b = s.batches;
    let mut p = Params::new(rule.name());
    if rule == StepRule::Experiments {
        return Err(super::no_experiment(
            "bsgm",
            ctx.family,
            "paper 001 runs it on equilibrium models (§7.1: `--problem equilibrium`), meta-learning with CNNs (§7.2) \
             and data poisoning (§7.3)",
        ));
    }
    if let Some(t) = s.fixed_steps {
        if rule == StepRule::Theory {
            return Err(KernelError::InvalidParameter {
                name: "fixed_steps",
                reason: format!(
                    "t = {t}: it is paper 001 §7.1's experiments schedule; the theory rule runs Theorem 16/17's"
                ),
            });
        }
        if s.c3.is_some() || s.horizon.is_some() {
            return Err(KernelError::InvalidParameter {
                name: "fixed_steps",
                reason: format!("t = {t}: c3 and horizon set Theorem 16/17's schedules, not a fixed one"),
            });
        }
    }
    let lower = Lower::new(c, ctx.problem)?;
    let mini = !b.is_full();
    let theory = rule == StepRule::Theory;
    let cite17 = "paper 001 Thm 17: α ≤ 1/L_f, η_j = 1 on the map of step 1/L_g, c₃ ≥ 1/log(1/q)";
    let cite16 = "paper 001 Thm 16 / Remark 18: α = 1/L_f, c₃ = Θ(1) (constant 1), η_i = β/(γ+i)";
    let src = |default: &'static str| {
        if theory {
            Source::theorem(if mini { cite16 } else { cite17 })
        } else {
            Source::default_because(default)
        }
    };
    let alpha = if mini && !theory {
        (
            0.5 * over_l_outer(c, s)?,
            Source::default_because(
                "1/(2L_L): the largest step Gower et al. 2019 Thm 3.1's 1/(2ℒ) allows for a stochastic outer estimate \
                 (ℒ ≥ L_L), as the AID family's",
            ),
        )
    } else {
        (over_l_outer(c, s)?, src("1/L_L: the gradient step of the L_L-smooth value function (Thm 17's 1/L_f)"))
    };
    let alpha = user_or(s.outer_step, "--outer-step", s, alpha);
    let map_l = lower.per_batch(b.inner.or(b.hvp));
    let eta = user_or(
        s.inner_step,
        "--inner-step",
        s,
        (
            1.0 / map_l,
            src(if mini { "1/L_max: every sampled map contracts" } else { "1/L_g: the gradient map contracts" }),
        ),
    );
    p.set("outer_step", "α, the outer step (paper 001's α)", positive("outer_step", alpha.0)?, alpha.1);
    p.set("inner_step", "η, the gradient map's step (Φ = y − η∂y g)", positive("inner_step", eta.0)?, eta.1);
    let mut bsgm = if mini {
        let mu = c.mu_g()?;
        let q = 1.0 - eta.0 * mu;
        let c3 = match s.c3 {
            Some(v) => (v, Source::user("--c3")),
            None => (1.0, src("Remark 18: c₃ = Θ(1) in the stochastic case, its constant taken as 1")),
        };
        let lower_batch = b.inner.unwrap_or(1).min(b.hvp.unwrap_or(1)).max(1) as f64;
        let sigma2 = if theory {
            let (l_max, l) = (lower.l_max, lower.l);
            let s2 = 2.0 * eta.0 * eta.0 * l_max * l / ((1.0 - q).powi(2) * lower_batch);
            p.set(
                "sigma2",
                "σ̃₂, the sampled map's variance constant",
                s2,
                Source::theorem(
                    "paper 001 Thm 8's σ̃₂ = max{2σ′₁/(1−q)², σ₂} ≤ 2η²L_max L_g/((1−q)²b) (convex samples)",
                ),
            );
            if !lower.l_max_known {
                p.note("L_max is an estimate over batches at x_0, not a bound: σ̃₂ is not a bound either");
            }
            s2
        } else {
            p.set("sigma2", "σ̃₂, the sampled map's variance constant", 0.0, Source::default_because(
                "0 (γ = β, η_0 = 1): the deterministic limit's fixed-point step; outside Theorem 8, which needs γ ≥ β(1 + σ̃₂)",
            ));
            0.0
        };
        let beta = 2.0 / (1.0 - q * q);
        p.set(
            "lower_steps",
            "η_i = β/(γ + i), the SID steps",
            format!("β = 2/(1−q²) = {beta:.4e}, γ = β(1 + σ̃₂) = {:.4e}", beta * (1.0 + sigma2)),
            src("Remark 18's β, Theorem 8's γ"),
        );
        p.set("c3", "c₃ of t_s = k_s = J_s", c3.0, c3.1);
        // SID starts from w = v = 0 at every outer step (the paper's point): with t_s = s + 1
        // steps of a map that contracts by q ≈ 1 − ηµ_g the early estimates are ∂x f near
        // w = 0, not the hypergradient. The default floors t_s = k_s at the cold start's time
        // constant (q^T ≤ 1/10, at most 1000); J_s stays Theorem 16's.
        let min_steps = if rule == StepRule::Default && s.fixed_steps.is_none() {
            let t = super::lower::cold_steps_at(1.0 / (1.0 - q), 1, super::lower::MAX_DEFAULT_TERMS);
            p.set(
                "min_steps",
                "a floor on t_s = k_s (not J_s)",
                t,
                Source::default_because(
                    "SID restarts from w = 0: the smallest T with q^T ≤ 1/10 (at most 1000), below which the estimate \
                     is ∂x f near w = 0; Theorem 16's schedule has none",
                ),
            );
            t
        } else {
            0
        };
        let st = Stochastic { batches: b, seed: s.seed, q, horizon: s.horizon, sigma2, min_steps };
        let bsgm = Bsgm::new(alpha.0, eta.0, c3.0, s.projection)?;
        let bsgm = match s.fixed_steps {
            Some(t) => bsgm.with_fixed_steps(t)?,
            None => bsgm,
        };
        bsgm.stochastic(st)?
    } else if let Some(t) = s.fixed_steps {
        p.set("fixed_steps", "t_s = k_s, fixed", t, Source::user("--fixed-steps"));
        Bsgm::new(alpha.0, eta.0, 1.0, s.projection)?.with_fixed_steps(t)?
    } else {
        let c3v = c3(rule, c, s.c3)?;
        let source = match s.c3 {
            Some(_) => Source::user("--c3"),
            None => src("Theorem 17's smallest c₃ = 1/log(1/q), q = 1 − ηµ_g"),
        };
        p.set("c3", "c₃ of t_s = k_s = max(1, ⌈c₃ log(s+1)⌉)", c3v, source);
        Bsgm::new(alpha.0, eta.0, c3v, s.projection)?
    };
    bsgm = bsgm.with_problem_projection(true).with_output_seed(s.seed);
    p.set(
        "output",
        "the reported point",
        "λ_a, a uniform over λ_0..λ_{S−1}, with the mean of ‖∇L(λ_s)‖² over them",
        Source::theorem("paper 001 Thm 16/17 bound (1/S)Σ_s ‖G_α(λ_s)‖² (= ‖∇L‖² without a projection)"),
    );
    if rule == StepRule::Default && s.inner_step.is_none() {
        let scale = LowerScale::at_start(ctx.problem, ctx.x0);
        super::amigo::record_scale(&mut p, &scale);
        bsgm = bsgm.with_scale(scale);
    }
    p.set(
        "schedule",
        "t_s = k_s (= J_s)",
        bsgm.schedule().to_string(),
        Source::default_because("the schedule the rule runs"),
    );
    if !b.is_full() {
        super::amigo::record_batches(
            &mut p,
            &BatchSizes { outer: None, cross: None, ..b },
            [
                "the lower-level steps' batch (1 in the paper)",
                "J_s (the schedule)",
                "the linear-system steps' batch (1 in the paper)",
                "J_s (the schedule)",
            ],
        );
        p.params.retain(|q| !matches!(q.name, "batch_outer" | "batch_cross"));
    }
    Ok((Box::new(bsgm), p))
}
