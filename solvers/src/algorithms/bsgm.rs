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
//! Step sizes (the map's step η makes Φ(y) = y − η∂y g a q-contraction, q = 1 − ηµ_g):
//! - [`StepRule::Theory`]: Theorem 17: α = 1/L_f (L_f = L_L), η = 1/L_g, and c₃ ≥ 1/log(1/q)
//!   (needs µ_g): the default c₃ is that bound, a smaller one is an error;
//! - [`StepRule::Experiments`]: the paper runs no quadratic; we use paper 000 §5.1's
//!   α = 1/L_L, η = 1/L_g, and c₃ as given (a c₃ below Thm 17's bound, where µ_g is known, is
//!   reported by [`c3_below_theorem`] so the caller can warn).

use super::{Iterates, StepRule};
use crate::constants::{Constant, Constants};
use crate::estimators::Sid;
use crate::Algorithm;
use bilevel_kernels::{ops, BilevelProblem, GradientMap, KernelError, Result};

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

/// BSGM on a bilevel problem through its gradient map (deterministic, Thm 17).
pub struct Bsgm {
    alpha: f64,
    eta: f64,
    c3: f64,
    projection: Projection,
    s: usize,
    it: Iterates,
    sid: Option<Sid>,
}

impl Bsgm {
    /// `alpha` ≤ 1/L_f (outer step), `eta` ≤ 1/L_g (the gradient map's step), `c3` ≥ 1/log(1/q)
    /// with q = 1 − η µ_g for Theorem 17's guarantee.
    pub fn new(alpha: f64, eta: f64, c3: f64, projection: Projection) -> Result<Self> {
        for (name, v) in [("alpha", alpha), ("eta", eta), ("c3", c3)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(KernelError::InvalidParameter { name, reason: format!("must be finite and > 0, got {v}") });
            }
        }
        projection.validate()?;
        Ok(Self { alpha, eta, c3, projection, s: 0, it: Iterates::default(), sid: None })
    }

    /// c₃.
    pub fn c3(&self) -> f64 {
        self.c3
    }

    /// t_s = k_s = max(1, ⌈c₃ log(s+1)⌉).
    pub fn inner_steps(&self, s: usize) -> usize {
        ((self.c3 * ((s + 1) as f64).ln()).ceil() as usize).max(1)
    }
}

impl Algorithm for Bsgm {
    fn name(&self) -> &str {
        "bsgm"
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        let mut x = x0.to_vec();
        self.projection.apply(&mut x)?;
        self.it = Iterates::new(problem, &x, y0)?;
        self.sid = Some(Sid::new(problem.dim_y(), problem.dim_x()));
        self.s = 0;
        Ok(())
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let t = self.inner_steps(self.s);
        let sid = super::initialised(&mut self.sid)?;
        let map = GradientMap { problem, eta: self.eta };
        let it = &mut self.it;
        sid.hypergradient(&map, &it.x, t, t, &mut it.grad)?;
        // SID's inner state w_t is this step's y (copied: dim_y, against t map evaluations).
        it.y.copy_from_slice(sid.state());
        it.outer_step(self.alpha);
        self.projection.apply(&mut it.x)?;
        self.s += 1;
        Ok(())
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
}
