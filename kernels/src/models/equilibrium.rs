//! The tanh equilibrium map of Grazzi, Pontil & Salzo, "Bilevel Optimization with a Lower-level
//! Contraction: Optimal Sample Complexity without Warm-start" (JMLR 2023), §7.1 eq. (24):
//!
//! ```text
//! Φ(w, λ)_i = tanh(A w_i + B u_i + a),   w_i ∈ R^h,  λ = (A ∈ R^{h×h}, B ∈ R^{h×p}, a ∈ R^h)
//! ```
//!
//! one fixed-point problem `w_i = Φ(w_i, λ)_i` per sample (input `u_i`, row i of a [`Design`]).
//! With `‖A‖₂ < 1` each map is a contraction (|tanh'| ≤ 1), the paper constrains `‖A‖₂ ≤ 0.5`.
//!
//! **λ as one flat vector** (length h² + h·p + h): `A` row-major (`λ[k·h + l] = A_kl`), then `B`
//! row-major (`λ[h² + k·p + j] = B_kj`), then `a`. [`EquilibriumMap::lambda_parts`] splits it.
//!
//! **States of a batch**: `W` holds one row of h values per batch *position* (`len × h`,
//! row-major), row p belonging to sample `batch[p]` (all samples in order for `Batch::Full`). This
//! is the no-warm-start layout of SID/BSGM: a mini-batch's fixed points are solved from scratch.
//!
//! Derivatives at (W, λ), with `D_p = diag(1 − tanh²(A w_p + B u_p + a))` cached once per point
//! (an [`EquilibriumPoint`]):
//! - `∂wΦ·V`: row p is `D_p (A v_p)`; `∂wΦᵀ·V`: row p is `Aᵀ (D_p v_p)` (block-diagonal over p);
//! - `∂λΦ·dλ`: row p is `D_p (dA w_p + dB u_p + da)`;
//! - `∂λΦᵀ·V = Σ_p ((D_p v_p) w_pᵀ, (D_p v_p) u_pᵀ, D_p v_p)`, the exact adjoint of the stacked map:
//!   a **sum** over positions (an average E over samples puts its 1/|B| into V).
//!
//! Cost per product O(len·(h² + h·nnz(u))). Rows are independent, so the row-wise products are
//! trivially deterministic; the λ-adjoint sums per-block accumulators in block order.

use super::blocked::{add_block_sums, for_each_block, Unit};
use super::design::{batch_row, Design};
use crate::error::{check_finite, check_len, KernelError, Result};
use crate::ops::{axpy_seq, dot_seq};
use crate::problem::Batch;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::svd::{self, ComputeSvdVectors};
use faer::{Col, Mat, Par};

/// Parallel sweeps from this many multiply-adds (len·(h² + h·nnz/row)) on.
pub const PAR_MIN_WORK: usize = 1 << 16;
/// Most blocks of a parallel sweep.
pub const MAX_BLOCKS: usize = 8;
/// Budget in f64 values for the per-block λ-accumulators of [`EquilibriumPoint::vjp_lambda`].
pub const ACC_BUDGET: usize = 1 << 23;
/// Per-block statistics slots of a fixed-point solve (most iterations, worst step, all met tol).
const STATS: usize = 3;

/// The per-sample tanh equilibrium map over fixed inputs (samples as rows of a [`Design`]).
#[derive(Clone, Debug)]
pub struct EquilibriumMap {
    u: Design,
    hidden: usize,
}

/// Stopping rule of [`EquilibriumMap::fixed_point`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedPointParams {
    /// Stop a sample once `‖Φ(w) − w‖_∞ ≤ tol` for its current iterate (before the last update).
    pub tol: f64,
    /// Most iterations per sample (a fixed number of steps with `tol = 0`, as SID's t_s).
    pub max_iter: usize,
}

impl Default for FixedPointParams {
    fn default() -> Self {
        Self { tol: 1e-13, max_iter: 1000 }
    }
}

/// What a fixed-point solve did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedPointInfo {
    /// Most iterations any sample of the batch took.
    pub iterations: usize,
    /// Largest last step `‖Φ(w_{t}) − w_{t}‖_∞` over the batch (∞ if `max_iter = 0`); the
    /// returned `w_{t+1} = Φ(w_t)` has residual at most `q` times this.
    pub residual: f64,
    /// Whether every sample met `tol` within `max_iter`.
    pub converged: bool,
    /// The contraction bound used (see [`ContractionCheck`]).
    pub contraction: ContractionCheck,
}

/// The outcome of the contraction check on A.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContractionCheck {
    /// `q`: a bound or estimate of ‖A‖₂ (and so of the Lipschitz constant of Φ in w).
    pub q: f64,
    /// True when `q` is a proven upper bound, `min(‖A‖_F, √(‖A‖₁‖A‖_∞))`; false when it is a
    /// converged power-iteration estimate (a lower bound of ‖A‖₂, accurate to ~1e-10 relative).
    pub certified: bool,
}

impl EquilibriumMap {
    /// `inputs`: n × p (sample i = row i); `hidden` = h ≥ 1.
    pub fn new(inputs: Design, hidden: usize) -> Result<Self> {
        if hidden == 0 {
            return Err(KernelError::InvalidParameter { name: "hidden", reason: "must be >= 1".into() });
        }
        Ok(Self { u: inputs, hidden })
    }
    /// The inputs u_i (samples as rows).
    pub fn inputs(&self) -> &Design {
        &self.u
    }
    /// h, the state dimension.
    pub fn hidden(&self) -> usize {
        self.hidden
    }
    /// p, the input dimension.
    pub fn input_dim(&self) -> usize {
        self.u.ncols()
    }
    /// n.
    pub fn n_samples(&self) -> usize {
        self.u.nrows()
    }
    /// h² + h·p + h.
    pub fn dim_lambda(&self) -> usize {
        let h = self.hidden;
        h * h + h * self.input_dim() + h
    }
    /// Splits a flat λ into (A, B, a) (layout in the module doc). Precondition: length dim λ.
    pub fn lambda_parts<'l>(&self, lambda: &'l [f64]) -> (&'l [f64], &'l [f64], &'l [f64]) {
        let (h, p) = (self.hidden, self.input_dim());
        let (a_mat, rest) = lambda.split_at(h * h);
        let (b_mat, a_vec) = rest.split_at(h * p);
        (a_mat, b_mat, a_vec)
    }
    /// A workspace for batches of at most `capacity` positions.
    pub fn workspace(&self, capacity: usize) -> EquilibriumWorkspace {
        let h = self.hidden;
        let m = self.dim_lambda().max(1);
        let blocks = (ACC_BUDGET / m).clamp(1, MAX_BLOCKS);
        EquilibriumWorkspace {
            hidden: h,
            input_dim: self.input_dim(),
            capacity,
            blocks,
            phi: vec![0.0; capacity * h],
            dphi: vec![0.0; capacity * h],
            block_scratch: vec![0.0; blocks * (2 * h + STATS)],
            power: vec![0.0; 2 * h],
            acc: if blocks > 1 { vec![0.0; blocks * m] } else { Vec::new() },
        }
    }

    /// Checks that `w ↦ Φ(w, λ)` is a contraction through ‖A‖₂ < 1 (sufficient since |tanh'| ≤ 1).
    /// First the cheap proven bound `min(‖A‖_F, √(‖A‖₁‖A‖_∞))`; if it is not below 1, power
    /// iteration on AᵀA (deterministic start, up to 1000 steps, relative change < 1e-12). Errors
    /// with `InvalidParameter { name: "A" }` when the estimate is ≥ 1. An estimate below 1 is a
    /// lower bound of ‖A‖₂ (`certified = false`); the fixed-point solve then still stops at
    /// `max_iter`, so a wrong estimate cannot hang it. O(h²) per power step; not a hot call.
    pub fn check_contraction(&self, lambda: &[f64], ws: &mut EquilibriumWorkspace) -> Result<ContractionCheck> {
        check_len("lambda", self.dim_lambda(), lambda.len())?;
        check_len("workspace hidden", self.hidden, ws.hidden)?;
        check_finite("lambda", lambda)?;
        let h = self.hidden;
        let (a, _, _) = self.lambda_parts(lambda);
        let frob = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let row_sum = a.chunks_exact(h).map(|r| r.iter().map(|x| x.abs()).sum::<f64>()).fold(0.0, f64::max);
        let col_sum = (0..h).map(|l| (0..h).map(|k| a[k * h + l].abs()).sum::<f64>()).fold(0.0, f64::max);
        let upper = frob.min((row_sum * col_sum).sqrt());
        if upper < 1.0 {
            return Ok(ContractionCheck { q: upper, certified: true });
        }
        let (x, y) = ws.power.split_at_mut(h);
        // A start vector with no special structure, so it is not orthogonal to the top singular
        // vector of a structured A (all-ones would be for some).
        for (k, v) in x.iter_mut().enumerate() {
            *v = 1.0 + 0.5 * ((k as f64) * 0.618_033_988_749_895).fract();
        }
        let mut sigma = 0.0;
        for _ in 0..1000 {
            let nx = dot_seq(x, x).sqrt();
            x.iter_mut().for_each(|v| *v /= nx);
            // y = A x, then x ← Aᵀ y: ‖A x‖ → σ_max for unit x.
            for (yk, row) in y.iter_mut().zip(a.chunks_exact(h)) {
                *yk = dot_seq(row, x);
            }
            let next = dot_seq(y, y).sqrt();
            x.fill(0.0);
            for (yk, row) in y.iter().zip(a.chunks_exact(h)) {
                axpy_seq(*yk, row, x);
            }
            let done = (next - sigma).abs() <= 1e-12 * next;
            sigma = next;
            if done || next == 0.0 {
                break;
            }
        }
        if sigma >= 1.0 {
            return Err(KernelError::InvalidParameter {
                name: "A",
                reason: format!("spectral norm estimate {sigma} >= 1: w -> tanh(Aw + Bu + a) is not a contraction"),
            });
        }
        Ok(ContractionCheck { q: sigma, certified: false })
    }

    /// `out = Φ(W, λ)` for the batch (`W`, `out`: len × h). Errors on wrong lengths, non-finite
    /// inputs, batch indices out of range.
    pub fn map(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let len = self.check_point(lambda, w, batch)?;
        check_len("out", len * self.hidden, out.len())?;
        let (parallel, blocks) = self.schedule(len, MAX_BLOCKS);
        let h = self.hidden;
        for_each_block(len, blocks, parallel, [(out, Unit::PerRow(h))], &|_, r, [o]| {
            for (local, p) in r.enumerate() {
                let o = &mut o[local * h..(local + 1) * h];
                self.preactivation(lambda, batch_row(batch, p), &w[p * h..(p + 1) * h], o);
                o.iter_mut().for_each(|v| *v = v.tanh());
            }
        });
        Ok(())
    }

    /// Solves `w_p = Φ(w_p, λ)_p` for every position of the batch by Picard iteration
    /// `w ← Φ(w)` (SID's LL solver, Grazzi et al. Alg. 1 step 1, with step η = 1 and the exact
    /// map), starting from the given `w` (len × h; zeros for no warm start), overwritten with the
    /// result. Each sample iterates independently until its step `‖Φ(w) − w‖_∞ ≤ tol` or
    /// `max_iter`; `B u_p + a` is computed once per sample, so a step costs h². Linear rate q.
    /// Errors: the contraction check of [`check_contraction`](Self::check_contraction), bad
    /// lengths or values, a negative or NaN `tol`, a batch beyond the workspace capacity.
    pub fn fixed_point(
        &self,
        lambda: &[f64],
        batch: Batch<'_>,
        w: &mut [f64],
        params: FixedPointParams,
        ws: &mut EquilibriumWorkspace,
    ) -> Result<FixedPointInfo> {
        if params.tol.is_nan() || params.tol < 0.0 {
            return Err(KernelError::InvalidParameter {
                name: "tol",
                reason: format!("must be >= 0, got {}", params.tol),
            });
        }
        let len = self.check_point(lambda, w, batch)?;
        self.check_ws(len, ws)?;
        let contraction = self.check_contraction(lambda, ws)?;
        let h = self.hidden;
        // A solve costs several map evaluations per row: weigh the work by a typical 8.
        let (parallel, blocks) = self.schedule(len.saturating_mul(8), ws.blocks);
        let slot = 2 * h + STATS;
        let (a_mat, _, _) = self.lambda_parts(lambda);
        let bufs = [(w, Unit::PerRow(h)), (&mut ws.block_scratch[..blocks * slot], Unit::PerBlock(slot))];
        for_each_block(len, blocks, parallel, bufs, &|_, r, [w, scratch]| {
            let (c, rest) = scratch.split_at_mut(h);
            let (next, stats) = rest.split_at_mut(h);
            let (mut most_iter, mut worst, mut all_met) = (0usize, 0.0f64, true);
            for (local, p) in r.enumerate() {
                let wp = &mut w[local * h..(local + 1) * h];
                // c = B u_i + a (A-free part of the pre-activation).
                self.input_term(lambda, batch_row(batch, p), c);
                let (mut it, mut step) = (0, f64::INFINITY);
                while it < params.max_iter && step > params.tol {
                    step = 0.0;
                    for ((nk, row), ck) in next.iter_mut().zip(a_mat.chunks_exact(h)).zip(&*c) {
                        *nk = (dot_seq(row, wp) + ck).tanh();
                    }
                    for (wk, nk) in wp.iter_mut().zip(&*next) {
                        step = step.max((nk - *wk).abs());
                        *wk = *nk;
                    }
                    it += 1;
                }
                most_iter = most_iter.max(it);
                worst = worst.max(step);
                all_met &= step <= params.tol;
            }
            stats[0] = most_iter as f64;
            stats[1] = worst;
            stats[2] = if all_met { 1.0 } else { 0.0 };
        });
        let (mut iterations, mut residual, mut converged) = (0usize, 0.0f64, true);
        for s in ws.block_scratch[..blocks * slot].chunks_exact(slot) {
            iterations = iterations.max(s[2 * h] as usize);
            residual = residual.max(s[2 * h + 1]);
            converged &= s[2 * h + 2] == 1.0;
        }
        Ok(FixedPointInfo { iterations, residual, converged, contraction })
    }

    /// Caches Φ(W, λ) and D = 1 − Φ² for the batch in `ws` and returns the point that gives the
    /// Jacobian products. Errors on bad lengths, non-finite values, indices out of range, or a
    /// batch beyond the workspace capacity. No contraction check (products are valid for any A).
    pub fn point<'a>(
        &'a self,
        lambda: &'a [f64],
        w: &'a [f64],
        batch: Batch<'a>,
        ws: &'a mut EquilibriumWorkspace,
    ) -> Result<EquilibriumPoint<'a>> {
        let len = self.check_point(lambda, w, batch)?;
        self.check_ws(len, ws)?;
        let h = self.hidden;
        let (parallel, blocks) = self.schedule(len, ws.blocks);
        let bufs = [(&mut ws.phi[..len * h], Unit::PerRow(h)), (&mut ws.dphi[..len * h], Unit::PerRow(h))];
        for_each_block(len, blocks, parallel, bufs, &|_, r, [phi, dphi]| {
            for (local, p) in r.enumerate() {
                let t = &mut phi[local * h..(local + 1) * h];
                self.preactivation(lambda, batch_row(batch, p), &w[p * h..(p + 1) * h], t);
                for (t, d) in t.iter_mut().zip(&mut dphi[local * h..(local + 1) * h]) {
                    *t = t.tanh();
                    *d = 1.0 - *t * *t;
                }
            }
        });
        Ok(EquilibriumPoint { map: self, lambda, w, batch, ws, len, parallel, blocks })
    }

    fn check_point(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>) -> Result<usize> {
        check_len("lambda", self.dim_lambda(), lambda.len())?;
        check_finite("lambda", lambda)?;
        self.u.check_batch(batch)?;
        let len = batch.len(self.n_samples());
        check_len("w", len * self.hidden, w.len())?;
        check_finite("w", w)?;
        Ok(len)
    }

    fn check_ws(&self, len: usize, ws: &EquilibriumWorkspace) -> Result<()> {
        check_len("workspace hidden", self.hidden, ws.hidden)?;
        check_len("workspace input_dim", self.input_dim(), ws.input_dim)?;
        if len > ws.capacity {
            return Err(KernelError::InvalidParameter {
                name: "batch",
                reason: format!("{len} positions exceed the workspace capacity {}", ws.capacity),
            });
        }
        Ok(())
    }

    /// (parallel, blocks) from the sizes only.
    fn schedule(&self, len: usize, blocks: usize) -> (bool, usize) {
        let h = self.hidden;
        let per_row = h * h + h * self.u.mean_row_nnz();
        if blocks > 1 && len.saturating_mul(per_row) >= PAR_MIN_WORK {
            (true, blocks)
        } else {
            (false, 1)
        }
    }

    /// `c = B u_i + a`.
    #[inline]
    fn input_term(&self, lambda: &[f64], i: usize, c: &mut [f64]) {
        let (_, b_mat, a_vec) = self.lambda_parts(lambda);
        for ((ck, brow), ak) in c.iter_mut().zip(b_mat.chunks_exact(self.input_dim().max(1))).zip(a_vec) {
            *ck = self.u.row_dot(i, brow) + ak;
        }
        if self.input_dim() == 0 {
            c.copy_from_slice(a_vec);
        }
    }

    /// `out = A w + B u_i + a`.
    #[inline]
    fn preactivation(&self, lambda: &[f64], i: usize, w: &[f64], out: &mut [f64]) {
        self.input_term(lambda, i, out);
        let (a_mat, _, _) = self.lambda_parts(lambda);
        for (o, row) in out.iter_mut().zip(a_mat.chunks_exact(self.hidden)) {
            *o += dot_seq(row, w);
        }
    }
}

/// Scratch for [`EquilibriumMap`], sized once: Φ and D for up to `capacity` positions, block
/// scratch, power-iteration vectors and the per-block λ-accumulators.
#[derive(Clone, Debug)]
pub struct EquilibriumWorkspace {
    hidden: usize,
    input_dim: usize,
    capacity: usize,
    blocks: usize,
    phi: Vec<f64>,
    dphi: Vec<f64>,
    block_scratch: Vec<f64>,
    power: Vec<f64>,
    acc: Vec<f64>,
}

impl EquilibriumWorkspace {
    /// Most batch positions a point or solve can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Blocks of a parallel sweep: min(MAX_BLOCKS, ACC_BUDGET / dim λ), fixed by the sizes.
    pub fn blocks(&self) -> usize {
        self.blocks
    }
}

/// The map at (W, λ, batch) with Φ and D cached: Jacobian-vector products in both directions.
/// All `V`/`out` in w-space are len × h (rows = batch positions).
pub struct EquilibriumPoint<'a> {
    map: &'a EquilibriumMap,
    lambda: &'a [f64],
    w: &'a [f64],
    batch: Batch<'a>,
    ws: &'a mut EquilibriumWorkspace,
    len: usize,
    parallel: bool,
    blocks: usize,
}

impl EquilibriumPoint<'_> {
    /// Φ(W, λ), len × h.
    pub fn phi(&self) -> &[f64] {
        &self.ws.phi[..self.len * self.map.hidden]
    }
    /// D = 1 − Φ², len × h (the diagonal of ∂wΦ's tanh factor).
    pub fn jacobian_diag(&self) -> &[f64] {
        &self.ws.dphi[..self.len * self.map.hidden]
    }

    fn check_w_space(&self, v: &[f64], out: &[f64]) -> Result<()> {
        let n = self.len * self.map.hidden;
        check_len("v", n, v.len())?;
        check_len("out", n, out.len())?;
        check_finite("v", v)
    }

    /// Row-wise product: `out_p = f(p, i, D_p, v_p)` over blocks.
    fn rowwise(&self, out: &mut [f64], f: &(impl Fn(usize, usize, &[f64], &mut [f64]) + Sync)) {
        let h = self.map.hidden;
        let (d, batch) = (&self.ws.dphi, self.batch);
        for_each_block(self.len, self.blocks, self.parallel, [(out, Unit::PerRow(h))], &|_, r, [o]| {
            for (local, p) in r.enumerate() {
                f(p, batch_row(batch, p), &d[p * h..(p + 1) * h], &mut o[local * h..(local + 1) * h]);
            }
        });
    }

    /// `∂wΦ·V`: row p is `D_p (A v_p)`.
    pub fn jvp_w(&self, v: &[f64], out: &mut [f64]) -> Result<()> {
        self.check_w_space(v, out)?;
        let h = self.map.hidden;
        let (a_mat, _, _) = self.map.lambda_parts(self.lambda);
        self.rowwise(out, &|p, _, d, o| {
            let vp = &v[p * h..(p + 1) * h];
            for ((o, row), dk) in o.iter_mut().zip(a_mat.chunks_exact(h)).zip(d) {
                *o = dk * dot_seq(row, vp);
            }
        });
        Ok(())
    }

    /// `∂wΦᵀ·V`: row p is `Aᵀ (D_p v_p)`, accumulated as Σ_k (D_p v_p)_k A[k, ·] (rows of A are
    /// contiguous).
    pub fn vjp_w(&self, v: &[f64], out: &mut [f64]) -> Result<()> {
        self.check_w_space(v, out)?;
        let h = self.map.hidden;
        let (a_mat, _, _) = self.map.lambda_parts(self.lambda);
        self.rowwise(out, &|p, _, d, o| {
            o.fill(0.0);
            for ((row, dk), vk) in a_mat.chunks_exact(h).zip(d).zip(&v[p * h..(p + 1) * h]) {
                axpy_seq(dk * vk, row, o);
            }
        });
        Ok(())
    }

    /// `∂λΦ·dλ` (dλ flat like λ, out len × h): row p is `D_p (dA w_p + dB u_p + da)`.
    pub fn jvp_lambda(&self, dlambda: &[f64], out: &mut [f64]) -> Result<()> {
        let m = self.map;
        check_len("dlambda", m.dim_lambda(), dlambda.len())?;
        check_len("out", self.len * m.hidden, out.len())?;
        check_finite("dlambda", dlambda)?;
        let h = m.hidden;
        let w = self.w;
        self.rowwise(out, &|p, i, d, o| {
            m.preactivation(dlambda, i, &w[p * h..(p + 1) * h], o);
            o.iter_mut().zip(d).for_each(|(o, d)| *o *= d);
        });
        Ok(())
    }

    /// `∂λΦᵀ·V` (V len × h, out flat like λ) = Σ_p ((D_p v_p) w_pᵀ, (D_p v_p) u_pᵀ, D_p v_p): per-block
    /// accumulators summed in block order (deterministic). O(len·(h² + h·nnz(u))) + O(blocks·dim λ).
    pub fn vjp_lambda(&mut self, v: &[f64], out: &mut [f64]) -> Result<()> {
        let m = self.map;
        let (h, pdim) = (m.hidden, m.input_dim());
        let dim = m.dim_lambda();
        check_len("v", self.len * h, v.len())?;
        check_len("out", dim, out.len())?;
        check_finite("v", v)?;
        let (blocks, batch, w) = (self.blocks, self.batch, self.w);
        let ws = &mut *self.ws;
        let d = &ws.dphi;
        let target: &mut [f64] = if blocks == 1 { &mut *out } else { &mut ws.acc[..blocks * dim] };
        for_each_block(self.len, blocks, self.parallel, [(target, Unit::PerBlock(dim))], &|_, r, [acc]| {
            acc.fill(0.0);
            let (ga, rest) = acc.split_at_mut(h * h);
            let (gb, gvec) = rest.split_at_mut(h * pdim);
            for p in r {
                let i = batch_row(batch, p);
                let wp = &w[p * h..(p + 1) * h];
                for k in 0..h {
                    let g = d[p * h + k] * v[p * h + k];
                    axpy_seq(g, wp, &mut ga[k * h..(k + 1) * h]);
                    m.u.row_axpy(i, g, &mut gb[k * pdim..(k + 1) * pdim]);
                    gvec[k] += g;
                }
            }
        });
        if blocks > 1 {
            out.fill(0.0);
            add_block_sums(&ws.acc[..blocks * dim], blocks, out);
        }
        Ok(())
    }
}

/// The Euclidean (Frobenius) projection of a square h × h matrix onto the spectral-norm ball
/// `{‖A‖₂ ≤ r}` (paper 001 §7.1's constraint on A): with `A = U Σ Vᵀ`,
/// `P(A) = U min(Σ, r) Vᵀ`, computed as `A − Σ_{k: σ_k > r} (σ_k − r) u_k v_kᵀ` (only the clipped
/// directions change). Buffers (the column-major copy, U, V, σ and faer's SVD scratch) are
/// allocated once by [`new`](Self::new); [`project`](Self::project) calls faer's
/// `svd` with that scratch and `Par::Seq` (faer 0.24.4's SVD path takes its temporaries from
/// the scratch: the no-allocation test of `solvers/tests/bsgm_equilibrium.rs` measures it, at h = 4).
pub struct SpectralProjector {
    h: usize,
    m: Mat<f64>,
    u: Mat<f64>,
    v: Mat<f64>,
    s: Col<f64>,
    mem: MemBuffer,
}

impl std::fmt::Debug for SpectralProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectralProjector").field("h", &self.h).finish_non_exhaustive()
    }
}

impl SpectralProjector {
    /// Buffers for h × h matrices (h ≥ 1). O(h²) memory.
    pub fn new(h: usize) -> Result<Self> {
        if h == 0 {
            return Err(KernelError::InvalidParameter { name: "hidden", reason: "must be >= 1".into() });
        }
        let req = svd::svd_scratch::<f64>(
            h,
            h,
            ComputeSvdVectors::Full,
            ComputeSvdVectors::Full,
            Par::Seq,
            Default::default(),
        );
        Ok(Self {
            h,
            m: Mat::zeros(h, h),
            u: Mat::zeros(h, h),
            v: Mat::zeros(h, h),
            s: Col::zeros(h),
            mem: MemBuffer::new(req),
        })
    }

    /// h.
    pub fn dim(&self) -> usize {
        self.h
    }

    /// Projects the row-major h × h matrix `a` onto `{‖A‖₂ ≤ radius}` in place; returns whether
    /// it changed. A matrix already inside is left bit for bit as it is: first the cheap proven
    /// bound `min(‖A‖_F, √(‖A‖₁‖A‖_∞)) ≤ radius`, then the SVD's σ_max ≤ radius. A matrix with a
    /// non-finite entry is left as it is (`Ok(false)`: the caller's non-finite check reports
    /// it). Errors: `a.len() != h²`, a radius that is not finite and > 0, an SVD that does not
    /// converge (`Breakdown`). O(h³).
    pub fn project(&mut self, a: &mut [f64], radius: f64) -> Result<bool> {
        let h = self.h;
        check_len("spectral-ball matrix", h * h, a.len())?;
        if !(radius.is_finite() && radius > 0.0) {
            return Err(KernelError::InvalidParameter {
                name: "radius",
                reason: format!("must be finite and > 0, got {radius}"),
            });
        }
        if a.iter().any(|x| !x.is_finite()) {
            return Ok(false);
        }
        let frob = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let row_sum = a.chunks_exact(h).map(|r| r.iter().map(|x| x.abs()).sum::<f64>()).fold(0.0, f64::max);
        let col_sum = (0..h).map(|l| (0..h).map(|k| a[k * h + l].abs()).sum::<f64>()).fold(0.0, f64::max);
        if frob.min((row_sum * col_sum).sqrt()) <= radius {
            return Ok(false);
        }
        for i in 0..h {
            for j in 0..h {
                self.m[(i, j)] = a[i * h + j];
            }
        }
        let stack = MemStack::new(&mut self.mem);
        svd::svd(
            self.m.as_ref(),
            self.s.as_mut().as_diagonal_mut(),
            Some(self.u.as_mut()),
            Some(self.v.as_mut()),
            Par::Seq,
            stack,
            Default::default(),
        )
        .map_err(|_| KernelError::Breakdown {
            iteration: 0,
            reason: "the SVD of A (spectral-ball projection) did not converge",
        })?;
        let mut changed = false;
        for k in 0..h {
            let excess = self.s[k] - radius;
            if excess > 0.0 {
                changed = true;
                for i in 0..h {
                    let ui = excess * self.u[(i, k)];
                    let row = &mut a[i * h..(i + 1) * h];
                    for (j, aij) in row.iter_mut().enumerate() {
                        *aij -= ui * self.v[(j, k)];
                    }
                }
            }
        }
        Ok(changed)
    }
}
