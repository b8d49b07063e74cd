//! SID — stochastic implicit differentiation: Grazzi, Pontil & Salzo, *Bilevel Optimization
//! with a Lower-level Contraction: Optimal Sample Complexity without Warm-start* (JMLR),
//! Algorithm 1, deterministic form (Theorem 17: η_i = 1, J = 1).
//!
//! ```text
//! w_0 = 0;  t steps w ← Φ(w, λ)                                         (eq. (6), η = 1)
//! v_0 = 0;  k steps v ← ∂wΦ(w_t, λ)ᵀv + ∇wE(w_t, λ)                     (eq. (7), η = 1)
//! ∇̂f(λ) = ∇λE(w_t, λ) + ∂λΦ(w_t, λ)ᵀ v_k
//! ```
//! No warm start of w or v (the paper's point). Cost: t maps, k VJPs in w, one VJP in λ, one
//! ∇wE and one ∇λE. On a bilevel problem through its [`GradientMap`](bilevel_kernels::GradientMap):
//! t ∂y g, k HVPs, one cross product, one ∂x f and one ∂y f.
//!
//! Stochastic form ([`Sid::hypergradient_sampled`], Algorithm 1 as printed): the four
//! samplings mutually independent — step i of the lower-level solver w ← w + η_i(Φ̂(w, ζ_i) − w)
//! and of the linear-system solver v ← v + η_i(∂wΦ̂(w_t, ζ̂_i)ᵀv + ∇wĒ_J − v) each on a fresh
//! batch (single samples in the paper), ∇wĒ_J and ∇λĒ_J on one batch of J upper samples
//! (reused by every LS step), ∂λΦ̄_J on a fresh batch of J. The steps η_i restart at i = 0 in
//! every call (both loops index from 0). With full batches and η_i = 1 it is the deterministic
//! form, bit for bit. The bioptexps code starts v at ∇wĒ_J; we start at 0 as printed.
//!
//! **On a batch of examples** ([`Sid::hypergradient_batch`], paper 001 §7.1's equilibrium
//! runs): on a problem with one state per sample, SID on the states of the batch's examples
//! only — a batch-restricted view: the states are `len × dim_state` (row p for example
//! `batch[p]`, the [`FixedPointProblem`] layout), and every oracle (Φ, ∂wΦᵀ, ∇E, ∂λΦᵀ) is
//! called with that one batch. The lower level and the linear system are deterministic per
//! example (η = 1, the map itself), so the only randomness is which examples are drawn. With
//! [`Batch::Full`] it is [`Sid::hypergradient`], bit for bit.

use crate::sampling::BatchStream;
use bilevel_kernels::{check_len, interrupt, ops, Batch, FixedPointProblem, KernelError, Result};

/// The batch streams of one stochastic SID call (paper 001 Alg. 1, steps 1–4).
#[derive(Clone, Debug)]
pub struct SidStreams {
    /// Step 1: the lower-level solver's batches ζ_i (samples of the map).
    pub lower: BatchStream,
    /// Step 2: the upper samples ξ_j (∇wE and ∇λE on the same J).
    pub upper: BatchStream,
    /// Step 3: the linear-system solver's batches ζ̂_i.
    pub linear: BatchStream,
    /// Step 4: the batch ζ'_j of ∂λΦ.
    pub cross: BatchStream,
}

impl SidStreams {
    /// Full batches (the deterministic form).
    pub fn full() -> Self {
        Self {
            lower: BatchStream::full(),
            upper: BatchStream::full(),
            linear: BatchStream::full(),
            cross: BatchStream::full(),
        }
    }
}

/// w ← w + η(Φ − w) with Φ in `t`; η = 1 takes Φ itself (bit for bit the fixed-point step).
fn relax(eta: f64, w: &mut Vec<f64>, t: &mut Vec<f64>) {
    if eta == 1.0 {
        std::mem::swap(w, t);
    } else {
        ops::axpby(1.0 - eta, w, eta, t);
        std::mem::swap(w, t);
    }
}

/// SID's buffers, sized once for a problem (states of the full batch).
pub struct Sid {
    w: Vec<f64>,
    v: Vec<f64>,
    t: Vec<f64>,
    gw: Vec<f64>,
    gl: Vec<f64>,
    /// Length of the states of the last call (the whole buffer for the full-batch forms).
    used: usize,
}

impl Sid {
    /// Buffers for `n_states` state values (batch length × dim_state) and `dim_lambda`.
    pub fn new(n_states: usize, dim_lambda: usize) -> Self {
        let z = |n| vec![0.0; n];
        Self { w: z(n_states), v: z(n_states), t: z(n_states), gw: z(n_states), gl: z(dim_lambda), used: n_states }
    }

    /// The state w_t of the last call (for [`hypergradient_batch`](Self::hypergradient_batch):
    /// the batch's states, `len × dim_state`).
    pub fn state(&self) -> &[f64] {
        &self.w[..self.used]
    }

    /// Algorithm 1 on the examples of `batch` only (see the module doc): t map steps and k
    /// linear-system steps with η = 1 from w = v = 0 on the batch's `len × dim_state` states,
    /// ∇E and ∂λΦᵀ on the same batch. The buffers must hold the batch's states (`Sid::new`
    /// with at least `len · dim_state`); an empty batch or one too large is an error. No
    /// allocation. Cost: t maps, k ∂wΦᵀ products, one ∂λΦᵀ product, one ∇wE and one ∇λE, each
    /// one call on `len` examples.
    pub fn hypergradient_batch(
        &mut self,
        p: &dyn FixedPointProblem,
        lambda: &[f64],
        t: usize,
        k: usize,
        batch: Batch<'_>,
        out: &mut [f64],
    ) -> Result<()> {
        check_len("lambda", p.dim_lambda(), lambda.len())?;
        check_len("hypergradient", p.dim_lambda(), out.len())?;
        check_len("SID dim_lambda", p.dim_lambda(), self.gl.len())?;
        let len = batch.len(p.n_samples());
        let m = len * p.dim_state();
        if len == 0 || m > self.w.len() {
            return Err(KernelError::InvalidParameter {
                name: "batch",
                reason: format!(
                    "SID holds states for {} values; a batch of {len} examples needs {m} (and at least one example)",
                    self.w.len()
                ),
            });
        }
        self.used = m;
        self.w[..m].fill(0.0);
        for _ in 0..t {
            interrupt::check()?;
            p.map(lambda, &self.w[..m], batch, &mut self.t[..m]);
            std::mem::swap(&mut self.w, &mut self.t);
        }
        p.upper_grad_w(lambda, &self.w[..m], batch, &mut self.gw[..m]);
        // ∇λE on ∇wE's examples at the same point: counted once (paper 001, Thm 16's proof).
        let w = &self.w[..m];
        p.replay(&mut || p.upper_grad_lambda(lambda, w, batch, out));
        self.v[..m].fill(0.0);
        for _ in 0..k {
            interrupt::check()?;
            p.vjp_w(lambda, &self.w[..m], &self.v[..m], batch, &mut self.t[..m]);
            ops::axpby(1.0, &self.gw[..m], 1.0, &mut self.t[..m]);
            std::mem::swap(&mut self.v, &mut self.t);
        }
        p.vjp_lambda(lambda, &self.w[..m], &self.v[..m], batch, &mut self.gl);
        ops::axpy(1.0, &self.gl, out);
        Ok(())
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
        self.hypergradient_sampled(p, lambda, t, k, &|_| 1.0, &mut SidStreams::full(), out)
    }

    /// Algorithm 1 on the batches of `streams` with steps η_i = `eta(i)` (see the module doc).
    #[allow(clippy::too_many_arguments)]
    pub fn hypergradient_sampled(
        &mut self,
        p: &dyn FixedPointProblem,
        lambda: &[f64],
        t: usize,
        k: usize,
        eta: &dyn Fn(usize) -> f64,
        streams: &mut SidStreams,
        out: &mut [f64],
    ) -> Result<()> {
        check_len("lambda", p.dim_lambda(), lambda.len())?;
        check_len("hypergradient", p.dim_lambda(), out.len())?;
        check_len("SID states", p.n_samples() * p.dim_state(), self.w.len())?;
        check_len("SID dim_lambda", p.dim_lambda(), self.gl.len())?;
        self.used = self.w.len();
        self.w.fill(0.0);
        for i in 0..t {
            interrupt::check()?;
            p.map(lambda, &self.w, streams.lower.draw(), &mut self.t);
            relax(eta(i), &mut self.w, &mut self.t);
        }
        let upper = streams.upper.draw();
        p.upper_grad_w(lambda, &self.w, upper, &mut self.gw);
        let w = &self.w;
        p.replay(&mut || p.upper_grad_lambda(lambda, w, upper, out));
        self.v.fill(0.0);
        for i in 0..k {
            interrupt::check()?;
            p.vjp_w(lambda, &self.w, &self.v, streams.linear.draw(), &mut self.t);
            ops::axpby(1.0, &self.gw, 1.0, &mut self.t);
            relax(eta(i), &mut self.v, &mut self.t);
        }
        p.vjp_lambda(lambda, &self.w, &self.v, streams.cross.draw(), &mut self.gl);
        ops::axpy(1.0, &self.gl, out);
        Ok(())
    }
}
