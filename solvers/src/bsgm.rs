//! SID and BSGM for lower levels given as contractions: Grazzi, Pontil & Salzo, *Bilevel
//! Optimization with a Lower-level Contraction: Optimal Sample Complexity without Warm-start*
//! (JMLR), Algorithm 1 (SID) and Algorithm 2 (BSGM), deterministic form (Theorem 17).
//!
//! ```text
//! SID(λ; t, k):  w_0 = 0;  t steps w ← w + η(Φ(w, λ) − w)                       (eq. (6), η = 1)
//!                v_0 = 0;  k steps v ← v + η(∂wΦ(w_t, λ)ᵀv + ∇wE(w_t, λ) − v)      (eq. (7))
//!                ∇̂f(λ) = ∇λE(w_t, λ) + ∂λΦ(w_t, λ)ᵀ v_k
//! BSGM:          λ_{s+1} = P_Λ(λ_s − α ∇̂f(λ_s)),  t_s = k_s = max(1, ⌈c₃ log(s+1)⌉)      (eq. (20))
//! ```
//!
//! No warm start of w or v (the paper's point). Claimed complexity (Thm 17, α = 1/L_f,
//! c₃ ≥ 1/log(1/q)): O(ε⁻¹ log(ε⁻¹)) in ε; O(ε⁻¹ log(ε⁻¹) κ⁵) with c₃ = Θ(κ) (Remark 18).
//! Deviation: the printed schedule gives t_0 = ⌈c₃ log 1⌉ = 0 steps; we take at least one.
//!
//! Any [`BilevelProblem`] with g strongly convex is a fixed-point problem through its gradient
//! map Φ(y, x) = y − η∂y g(x, y) ([`GradientMap`]): then ∂yΦᵀv = v − ηHv, ∂xΦᵀv = −η∂x∂y g·v,
//! and SID's linear system ηHv = ∂y f gives the usual hypergradient.

use crate::algorithms::Algorithm;
use bilevel_kernels::{check_len, ops, Batch, BilevelProblem, FixedPointProblem, KernelError, Result};

/// The gradient map of a bilevel problem as a fixed-point problem (one "sample", the full data).
pub struct GradientMap<'a> {
    pub problem: &'a dyn BilevelProblem,
    /// The map's step η (≤ 1/L_g makes it a contraction with q = 1 − ηµ).
    pub eta: f64,
}

impl FixedPointProblem for GradientMap<'_> {
    fn dim_lambda(&self) -> usize {
        self.problem.dim_x()
    }
    fn dim_state(&self) -> usize {
        self.problem.dim_y()
    }
    fn n_samples(&self) -> usize {
        1
    }
    fn map(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.problem.grad_y_g(x, y, Batch::Full, out);
        ops::axpby(1.0, y, -self.eta, out);
    }
    fn jvp_w(&self, x: &[f64], y: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.problem.hvp(x, y, v, Batch::Full, out);
        ops::axpby(1.0, v, -self.eta, out);
    }
    fn vjp_w(&self, x: &[f64], y: &[f64], v: &[f64], b: Batch<'_>, out: &mut [f64]) {
        self.jvp_w(x, y, v, b, out)
    }
    fn vjp_lambda(&self, x: &[f64], y: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.problem.cross(x, y, v, Batch::Full, out);
        ops::scale(-self.eta, out);
    }
    fn upper(&self, x: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        self.problem.f(x, y, Batch::Full)
    }
    fn upper_grad_w(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.problem.grad_y_f(x, y, Batch::Full, out)
    }
    fn upper_grad_lambda(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.problem.grad_x_f(x, y, Batch::Full, out)
    }
}

/// SID's buffers, sized once for a problem (states of the full batch).
pub struct Sid {
    w: Vec<f64>,
    v: Vec<f64>,
    t: Vec<f64>,
    gw: Vec<f64>,
    gl: Vec<f64>,
}

impl Sid {
    /// Buffers for `n_states` state values (batch length × dim_state) and `dim_lambda`.
    pub fn new(n_states: usize, dim_lambda: usize) -> Self {
        let z = |n| vec![0.0; n];
        Self { w: z(n_states), v: z(n_states), t: z(n_states), gw: z(n_states), gl: z(dim_lambda) }
    }

    /// The state w_t of the last call.
    pub fn state(&self) -> &[f64] {
        &self.w
    }

    /// Algorithm 1 on the full batch with η = 1: writes ∇̂f(λ) into `out`.
    pub fn hypergradient(
        &mut self,
        p: &dyn FixedPointProblem,
        lambda: &[f64],
        t: usize,
        k: usize,
        out: &mut [f64],
    ) -> Result<()> {
        check_len("lambda", p.dim_lambda(), lambda.len())?;
        check_len("hypergradient", p.dim_lambda(), out.len())?;
        check_len("SID states", p.n_samples() * p.dim_state(), self.w.len())?;
        let b = Batch::Full;
        self.w.fill(0.0);
        for _ in 0..t {
            p.map(lambda, &self.w, b, &mut self.t);
            std::mem::swap(&mut self.w, &mut self.t);
        }
        p.upper_grad_w(lambda, &self.w, b, &mut self.gw);
        self.v.fill(0.0);
        for _ in 0..k {
            p.vjp_w(lambda, &self.w, &self.v, b, &mut self.t);
            ops::axpby(1.0, &self.gw, 1.0, &mut self.t);
            std::mem::swap(&mut self.v, &mut self.t);
        }
        p.upper_grad_lambda(lambda, &self.w, b, out);
        p.vjp_lambda(lambda, &self.w, &self.v, b, &mut self.gl);
        ops::axpy(1.0, &self.gl, out);
        match out.iter().position(|g| !g.is_finite()) {
            Some(index) => Err(KernelError::NonFinite { what: "SID hypergradient", index }),
            None => Ok(()),
        }
    }
}

/// P_Λ of BSGM (eq. (20)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Projection {
    None,
    /// Every coordinate clipped to [lo, hi].
    Box {
        lo: f64,
        hi: f64,
    },
    /// The Euclidean ball of this radius.
    Ball {
        radius: f64,
    },
    /// Rows of the `rows × cols` row-major block starting at `offset` each projected onto the
    /// ball of this radius (a per-row constraint on a matrix-valued part of λ).
    RowBalls {
        offset: usize,
        rows: usize,
        cols: usize,
        radius: f64,
    },
}

impl Projection {
    pub fn apply(&self, x: &mut [f64]) -> Result<()> {
        let shrink = |v: &mut [f64], r: f64| {
            let n = ops::norm2(v);
            if n > r {
                ops::scale(r / n, v);
            }
        };
        match *self {
            Projection::None => {}
            Projection::Box { lo, hi } => {
                if lo.is_nan() || hi.is_nan() || lo > hi {
                    return Err(KernelError::InvalidParameter { name: "box", reason: format!("lo {lo} > hi {hi}") });
                }
                x.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
            }
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

/// BSGM on a bilevel problem through its [`GradientMap`] (deterministic, Thm 17).
pub struct Bsgm {
    x: Vec<f64>,
    alpha: f64,
    eta: f64,
    c3: f64,
    projection: Projection,
    s: usize,
    sid: Sid,
    grad: Vec<f64>,
}

impl Bsgm {
    /// `alpha` ≤ 1/L_f (outer step), `eta` ≤ 1/L_g (the gradient map's step), `c3` ≥ 1/log(1/q)
    /// with q = 1 − η µ_g.
    pub fn new(x0: &[f64], dim_y: usize, alpha: f64, eta: f64, c3: f64, projection: Projection) -> Result<Self> {
        for (name, v) in [("alpha", alpha), ("eta", eta), ("c3", c3)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(KernelError::InvalidParameter { name, reason: format!("must be finite and > 0, got {v}") });
            }
        }
        let mut x = x0.to_vec();
        projection.apply(&mut x)?;
        Ok(Self { x, alpha, eta, c3, projection, s: 0, sid: Sid::new(dim_y, x0.len()), grad: vec![0.0; x0.len()] })
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
    fn x(&self) -> &[f64] {
        &self.x
    }
    fn y(&self) -> &[f64] {
        self.sid.state()
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let t = self.inner_steps(self.s);
        let map = GradientMap { problem, eta: self.eta };
        self.sid.hypergradient(&map, &self.x, t, t, &mut self.grad)?;
        ops::axpy(-self.alpha, &self.grad, &mut self.x);
        self.projection.apply(&mut self.x)?;
        self.s += 1;
        Ok(())
    }
}
