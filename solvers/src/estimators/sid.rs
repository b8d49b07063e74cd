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

use bilevel_kernels::{check_len, ops, Batch, FixedPointProblem, Result};

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
        check_len("SID dim_lambda", p.dim_lambda(), self.gl.len())?;
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
        Ok(())
    }
}
