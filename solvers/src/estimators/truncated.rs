//! The randomized-truncation hypergradient estimator: the Hessian-inverse estimate of Ghadimi &
//! Wang, *Approximation Methods for Bilevel Programming* (2018; not in the repository), as
//! paper 004 writes it in its eq. (7) (Khanduri et al., SUSTAIN) — the estimator of SUSTAIN, BSA
//! and TTSA:
//!
//! ```text
//! ∇̄f(x, y; ξ̄) = ∇x f(x,y;ξ) − (N/L) ∇xy g(x,y;ζ(0)) Π_{i=1..k} (I − ∇yy g(x,y;ζ(i))/L) ∇y f(x,y;ξ),
//! k ~ U{0, …, N − 1}
//! ```
//!
//! Its mean is `∂x f − ∂x∂y g · H⁻¹(I − (I − H/L)^N) ∂y f`: the hypergradient up to a bias
//! decaying like (1 − µ/L)^N. The sample ξ̄ = {ξ, ζ(0), ζ(1..k), k} is drawn once and replayable
//! (SUSTAIN evaluates two points on the same sample); the horizon N may change between draws
//! up to the capacity K (BSA's and TTSA's N_k grow), at no allocation: the kernel's
//! [`RandomizedTruncation`] is built for K and its result rescaled by N/K. The product is the
//! kernel's, not a second implementation.

use crate::sampling::{stream_rng, BatchSizes, BatchStream};
use bilevel_kernels::linsolve::{draw_truncation_depth, RandomizedTruncation, Sampled};
use bilevel_kernels::{check_len, ops, Batch, BilevelProblem, KernelError, Result};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Stream numbers of the estimator (0 is left for the algorithm's inner batches).
const F_STREAM: u64 = 1;
const HVP_STREAM: u64 = 2;
const CROSS_STREAM: u64 = 3;
const DEPTH_STREAM: u64 = 4;

fn invalid(name: &'static str, reason: String) -> KernelError {
    KernelError::InvalidParameter { name, reason }
}

/// The estimator on a replayable sample ξ̄ = {ξ, ζ(0), ζ(1..k), k}: [`draw`](Self::draw)
/// draws it, [`evaluate`](Self::evaluate) evaluates (7) at any (x, y) on the sample drawn last
/// (as often as needed). Streams: ξ (∂x f and ∂y f, `batches.outer`), ζ(0) (cross,
/// `batches.cross`), ζ(1..k) (one fresh batch of `batches.hvp` per factor), k (its own
/// generator), all of `seed`. Allocates in `new` only.
pub struct TruncatedHypergradient {
    trunc: RandomizedTruncation,
    /// The horizon N of the sample drawn last (≤ the capacity K).
    n: usize,
    outer: BatchStream,
    hvp: BatchStream,
    cross: BatchStream,
    depth_rng: Xoshiro256PlusPlus,
    depth: usize,
    drawn: bool,
    v: Vec<f64>,
    p: Vec<f64>,
    c: Vec<f64>,
}

impl TruncatedHypergradient {
    /// The estimator for `problem` with Neumann scale L_g = `lipschitz` (it must bound every
    /// batch Hessian) and K = `horizon` ≥ 1.
    pub fn new(
        problem: &dyn BilevelProblem,
        lipschitz: f64,
        horizon: usize,
        batches: &BatchSizes,
        seed: u64,
    ) -> Result<Self> {
        if !(lipschitz.is_finite() && lipschitz > 0.0) {
            return Err(invalid("lipschitz", format!("L_g must be finite and > 0, got {lipschitz}")));
        }
        if horizon == 0 {
            return Err(invalid("horizon", "K must be >= 1".into()));
        }
        let (n_f, n_g, s) = (problem.n_samples_f(), problem.n_samples_g(), batches.sampling);
        // Room for the deepest sample up to 2^16 indices up front; deeper ones grow the buffer
        // (to powers of two: a few times in a run), so a large capacity K costs no memory it
        // does not use.
        let hvp_capacity = (horizon - 1).saturating_mul(batches.hvp.unwrap_or(0)).min(1 << 16);
        Ok(Self {
            trunc: RandomizedTruncation::new(problem.dim_y(), lipschitz, horizon),
            n: horizon,
            outer: BatchStream::new(n_f, batches.outer, s, seed, F_STREAM, 0)?,
            hvp: BatchStream::new(n_g, batches.hvp, s, seed, HVP_STREAM, hvp_capacity)?,
            cross: BatchStream::new(n_g, batches.cross, s, seed, CROSS_STREAM, 0)?,
            depth_rng: stream_rng(seed, DEPTH_STREAM),
            depth: 0,
            drawn: false,
            v: vec![0.0; problem.dim_y()],
            p: vec![0.0; problem.dim_y()],
            c: vec![0.0; problem.dim_x()],
        })
    }

    /// Draws a fresh sample ξ̄ with horizon K (k first, then ξ, ζ(0), ζ(1..k)); returns k.
    pub fn draw(&mut self) -> Result<usize> {
        self.draw_up_to(self.trunc.horizon())
    }

    /// Draws a fresh sample with horizon N = `horizon` (1 ≤ N ≤ K): k ~ U{0..N−1}; returns k.
    pub fn draw_up_to(&mut self, horizon: usize) -> Result<usize> {
        let cap = self.trunc.horizon();
        if horizon == 0 || horizon > cap {
            return Err(invalid("horizon", format!("must be in 1..={cap}, got {horizon}")));
        }
        self.n = horizon;
        self.depth = draw_truncation_depth(&mut self.depth_rng, horizon)?;
        self.outer.draw();
        self.cross.draw();
        let size = self.hvp.size();
        self.hvp.draw_sized(self.depth * size);
        self.drawn = true;
        Ok(self.depth)
    }

    /// Sets the Neumann scale L_g of the next evaluations (a bound followed along the run).
    pub fn set_lipschitz(&mut self, lipschitz: f64) {
        self.trunc.set_lipschitz(lipschitz);
    }

    /// The Neumann scale L_g.
    pub fn lipschitz(&self) -> f64 {
        self.trunc.lipschitz()
    }

    /// The depth k of the sample drawn last.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// K.
    pub fn horizon(&self) -> usize {
        self.trunc.horizon()
    }

    /// Writes (7) at (x, y) on the sample drawn last into `out` (length d_x): one ∂y f, k HVPs,
    /// one cross product, one ∂x f. No allocation.
    pub fn evaluate(&mut self, problem: &dyn BilevelProblem, x: &[f64], y: &[f64], out: &mut [f64]) -> Result<()> {
        if !self.drawn {
            return Err(invalid("sample", "draw a sample before evaluating the estimator".into()));
        }
        check_len("x", self.c.len(), x.len())?;
        check_len("y", self.v.len(), y.len())?;
        check_len("output", self.c.len(), out.len())?;
        let xi = self.outer.last();
        problem.grad_y_f(x, y, xi, &mut self.v);
        let (size, rows) = (self.hvp.size(), self.hvp.last());
        let factor = |i: usize| match rows {
            Batch::Full => Batch::Full,
            Batch::Rows(r) => Batch::Rows(&r[i * size..(i + 1) * size]),
        };
        let seq = Sampled(|i: usize, v: &[f64], o: &mut [f64]| problem.hvp(x, y, v, factor(i), o));
        self.trunc.solve(seq, &self.v, self.depth, &mut self.p)?;
        if self.n != self.trunc.horizon() {
            ops::scale(self.n as f64 / self.trunc.horizon() as f64, &mut self.p);
        }
        problem.cross(x, y, &self.p, self.cross.last(), &mut self.c);
        // ∂x f on ∂y f's sample ξ at the same point: its samples count once.
        problem.replay(&mut || problem.grad_x_f(x, y, xi, out));
        ops::axpy(-1.0, &self.c, out);
        Ok(())
    }

    /// A fresh sample with horizon `horizon` and the estimate at (x, y) on it; returns k (the
    /// number of HVPs spent).
    pub fn estimate(
        &mut self,
        problem: &dyn BilevelProblem,
        x: &[f64],
        y: &[f64],
        horizon: usize,
        out: &mut [f64],
    ) -> Result<usize> {
        let depth = self.draw_up_to(horizon)?;
        self.evaluate(problem, x, y, out)?;
        Ok(depth)
    }
}
