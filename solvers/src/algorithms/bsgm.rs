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
//! Deviation: the printed schedule gives t_0 = ⌈c₃ log 1⌉ = 0 steps; we take at least one.
//!
//! **Stochastic form** ([`Bsgm::stochastic`], Algorithm 2 with SID's stochastic Algorithm 1,
//! Theorem 16): t_s = k_s = J_s = ⌈c₃(s+1)⌉ (anytime, (i)) or ⌈c₃S⌉ (finite horizon S, (ii));
//! the lower-level and linear-system steps η_i = β/(γ + i), restarted in every SID call, with
//! Remark 18's β = 2/(1−q²) and γ = β(1 + σ̃₂); σ̃₂ (a variance bound) is not known, so we take
//! σ̃₂ = 0, i.e. γ = β and η_0 = 1 — the reading under which the deterministic limit is the
//! fixed-point iteration. Batches: the lower-level and linear-system steps on batches of
//! `batches.inner` and `batches.hvp` samples (1 in the paper), ∇E and ∂λΦ on J_s samples
//! each; four independent streams. Claimed complexity: O(ε⁻²) samples (ii), Õ(ε⁻²) (i).
//!
//! Step sizes (the map's step η makes Φ(y) = y − η∂y g a q-contraction, q = 1 − ηµ_g):
//! - [`StepRule::Theory`]: Theorem 17: α = 1/L_f (L_f = L_L), η = 1/L_g, and c₃ ≥ 1/log(1/q)
//!   (needs µ_g): the default c₃ is that bound, a smaller one is an error;
//! - [`StepRule::Experiments`]: the paper runs no quadratic; we use paper 000 §5.1's
//!   α = 1/L_L, η = 1/L_g, and c₃ as given (a c₃ below Thm 17's bound, where µ_g is known, is
//!   reported by [`c3_below_theorem`] so the caller can warn).

use super::{Iterates, StepRule};
use crate::constants::{Constant, Constants};
use crate::estimators::{Sid, SidStreams};
use crate::sampling::{BatchSizes, BatchStream};
use crate::{Algorithm, FixedPointAlgorithm};
use bilevel_kernels::{ops, BilevelProblem, FixedPointProblem, GradientMap, KernelError, Result};

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

/// BSGM's c₃ under `rule`: `c3: None` takes Theorem 17's bound (needs µ_g); under the theory
/// rule a value below the bound is an error.
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
}

/// The most lower-level (and linear-system) steps one outer step may take: a c₃ that asks for
/// more (e.g. 1e308) stops the run as `Failed` with the figure instead of running for ever.
pub const MAX_SCHEDULE_STEPS: usize = 100_000_000;

/// Stream numbers of SID's four samplings.
const STREAMS: [u64; 4] = [0, 1, 2, 3];

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
        })
    }

    /// The stochastic form (Theorem 16) with these batches, seed, q and schedule.
    pub fn stochastic(self, stochastic: Stochastic) -> Result<Self> {
        if !(0.0..1.0).contains(&stochastic.q) {
            return Err(KernelError::InvalidParameter {
                name: "q",
                reason: format!("must be in [0, 1), got {}", stochastic.q),
            });
        }
        Ok(Self { stochastic: Some(stochastic), ..self })
    }

    /// c₃.
    pub fn c3(&self) -> f64 {
        self.c3
    }

    /// t_s = k_s: max(1, ⌈c₃ log(s+1)⌉) (deterministic), ⌈c₃(s+1)⌉ or ⌈c₃S⌉ (stochastic).
    pub fn inner_steps(&self, s: usize) -> usize {
        let steps = match self.stochastic.map(|st| st.horizon) {
            None => self.c3 * ((s + 1) as f64).ln(),
            Some(None) => self.c3 * (s + 1) as f64,
            Some(Some(horizon)) => self.c3 * horizon as f64,
        };
        (steps.ceil() as usize).max(1)
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
        let t = self.inner_steps(self.s);
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
            None => sid.hypergradient(map, &it.x, t, t, &mut it.grad)?,
            Some(st) => {
                // η_i = β/(γ + i) with β = 2/(1−q²), γ = β (see the module doc); J_s = t_s.
                let beta = 2.0 / (1.0 - st.q * st.q);
                let eta = |i: usize| beta / (beta + i as f64);
                self.streams.upper.set_size(t);
                self.streams.cross.set_size(t);
                sid.hypergradient_sampled(map, &it.x, t, t, &eta, &mut self.streams, &mut it.grad)?
            }
        }
        // SID's inner state w_t is this step's y (copied: dim_y, against t map evaluations).
        it.y.copy_from_slice(sid.state());
        it.outer_step(self.alpha);
        self.projection.apply(&mut it.x)?;
        self.s += 1;
        Ok(())
    }
}

impl Algorithm for Bsgm {
    fn name(&self) -> &str {
        "bsgm"
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        let x = self.projected_start(x0)?;
        self.it = Iterates::new(problem, &x, y0)?;
        self.start(problem.dim_y(), problem.dim_x(), problem.n_samples_f(), problem.n_samples_g())
    }
    /// BSGM on the problem's gradient map Φ(y, x) = y − η ∂y g(x, y).
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        self.step_on(&GradientMap { problem, eta: self.eta })
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
}

/// BSGM on a fixed-point problem itself (paper 001's setting; the map's step η is not used).
/// Only the deterministic form (Theorem 17): the stochastic one samples the map's rows, and on
/// a problem with one state per sample SID's states would have to follow its batches.
impl FixedPointAlgorithm for Bsgm {
    fn init_fixed_point(&mut self, problem: &dyn FixedPointProblem, lambda0: &[f64], w0: &[f64]) -> Result<()> {
        if self.stochastic.is_some() && problem.n_samples() > 1 {
            return Err(KernelError::InvalidParameter {
                name: "batches",
                reason: "BSGM runs on a fixed-point problem with one state per sample in its deterministic form \
                         only (full batches; the stochastic form is not implemented there)"
                    .into(),
            });
        }
        let x = self.projected_start(lambda0)?;
        self.it = Iterates::for_fixed_point(problem, &x, w0)?;
        let n = problem.n_samples();
        self.start(n * problem.dim_state(), problem.dim_lambda(), n, n)
    }
    fn step_fixed_point(&mut self, problem: &dyn FixedPointProblem) -> Result<()> {
        self.step_on(problem)
    }
}
