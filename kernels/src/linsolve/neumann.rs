//! Truncated Neumann series for `H v = b`:
//! `v_Q = η Σ_{k=0..Q} (I − ηH)^k b` (Q + 1 terms, including k = 0), which tends to `H⁻¹b` as
//! Q → ∞ when `0 < η < 2/λ_max(H)`.
//!
//! Ji, Yang, Liang, "Provably Faster Algorithms for Bilevel Optimization" (stocBiO), Alg. 3 and
//! eq. (5): with one mini-batch Hessian per term,
//!
//! ```text
//! r_Q = b;   r_{i−1} = r_i − η H_{B_i} r_i   for i = Q, Q−1, …, 1;   v_Q = η Σ_{i=0..Q} r_i
//! ```
//!
//! so `H_{B_Q}` is applied first and appears in Q of the Q + 1 terms. Proposition 3: with η ≤ 1/L
//! the bias is `‖E v_Q − H⁻¹b‖ ≤ μ⁻¹(1 − ημ)^{Q+1}‖b‖`-like (eq. 8), and the exponentially decaying
//! batch sizes of [`stochastic_neumann_batch_sizes`] use `O(ε⁻¹ log 1/ε)` Hessian samples in all.
//! (stocBiO's official code computes a different sum; this follows the paper, as benchopt's `shia`.)
//!
//! Complexity: Q operator applications and Q fused passes ([`ops::neumann_update`]), plus one
//! scaling pass. Deterministic H with η = 1/L: `‖v_Q − H⁻¹b‖ ≤ (1 − 1/κ)^{Q+1}‖H⁻¹b‖`, so
//! `Q = ⌈κ·ln(1/ε)⌉` gives relative error ε.

use super::{check_count, check_divergence, LinearSolver, OperatorSequence, SolveReport, Stopping};
use crate::error::{check_finite, check_len, check_positive, KernelError, Result};
use crate::linop::SymmetricOperator;
use crate::ops;

/// The truncated Neumann series `v = η Σ_{k=0..Q} (I − ηH)^k b`, deterministic or with one
/// operator per term (stocBiO Alg. 3): the step η, the [`Stopping`] rule and its two work
/// vectors (the current term `r` and `Hr`), allocated once by [`Neumann::new`].
///
/// `stopping.max_iters` is Q, the number of terms after the first (one operator application
/// each: Q terms beyond the first cost exactly Q applications); the tolerances stop the series
/// early once a term is small (both 0, as [`Stopping::fixed_steps(Q)`](Stopping::fixed_steps),
/// computes the paper's estimator).
#[derive(Clone, Debug)]
pub struct Neumann {
    step: f64,
    stopping: Stopping,
    r: Vec<f64>,
    hr: Vec<f64>,
}

impl Neumann {
    /// A series for systems of dimension `dim` with step η (> 0; the papers take η ≤ 1/L) and
    /// `stopping.max_iters` = Q terms beyond the first. The step is checked by
    /// [`solve`](Self::solve).
    pub fn new(dim: usize, step: f64, stopping: Stopping) -> Self {
        Self { step, stopping, r: vec![0.0; dim], hr: vec![0.0; dim] }
    }
    /// The dimension this solver was built for.
    pub fn dim(&self) -> usize {
        self.r.len()
    }
    /// The step η.
    pub fn step(&self) -> f64 {
        self.step
    }
    /// Sets the step η of the next solves.
    pub fn set_step(&mut self, step: f64) {
        self.step = step;
    }
    /// Q, the number of terms after the first (`stopping.max_iters`).
    pub fn terms(&self) -> usize {
        self.stopping.max_iters
    }

    /// Writes `v = η Σ_{i=0..Q} r_i` into `v` (its input content is ignored: a series has no warm
    /// start; a warm-started version of the same iteration is [`Richardson`](super::Richardson)),
    /// with Alg. 3's recursion `r_Q = b`, `r_{i−1} = r_i − η H_{B_i} r_i` for i = Q down to 1 and
    /// `H_{B_i}` = `seq.apply(i − 1, ..)`.
    ///
    /// Indices are 0-based labels of the paper's batches: index `j` is B_{j+1}, and the calls come
    /// in the order j = Q−1, Q−2, …, 0 (B_Q first). The sizes of [`stochastic_neumann_batch_sizes`]
    /// use the same labels. A fixed operator `&H` gives the deterministic series
    /// `η Σ_{k=0..Q} (I − ηH)^k b`. A sequence with a known [`count`](OperatorSequence::count) must
    /// hold at least Q operators.
    ///
    /// Since `b − H·η Σ_{j<k} r_j = r_k` for a fixed H, each term is the residual of the partial sum
    /// before it: `residual_norm` is `‖r_K‖ = ‖b − H v_{K−1}‖` for the last term K added, an upper
    /// bound on the returned sum's residual when `‖I − ηH‖ ≤ 1` (η ≤ 2/λ_max). `iterations` =
    /// `operator_applications` = K ≤ Q; `history` holds `‖r_k‖`, k = 0..=K.
    ///
    /// Errors: sizes (`operator`, `rhs`, `solution`), non-finite `b`, `step ≤ 0`, negative
    /// tolerances, a sequence shorter than Q (`terms`); `Diverged` if a term's norm passes
    /// [`DIVERGENCE_FACTOR`](super::DIVERGENCE_FACTOR) × ‖b‖ (η too large) or is non-finite.
    pub fn solve<S: OperatorSequence>(&mut self, mut seq: S, b: &[f64], v: &mut [f64]) -> Result<SolveReport> {
        self.solve_dyn(&mut seq, b, v)
    }

    fn solve_dyn(&mut self, seq: &mut dyn OperatorSequence, b: &[f64], v: &mut [f64]) -> Result<SolveReport> {
        let n = self.dim();
        seq.check_dim(n)?;
        check_len("rhs", n, b.len())?;
        check_len("solution", n, v.len())?;
        check_finite("rhs", b)?;
        check_positive("step", self.step)?;
        let Self { step, stopping, r, hr } = self;
        let mut history = stopping.start(false)?;
        let q = stopping.max_iters;
        check_count(seq, q, "terms", "terms")?;

        r.copy_from_slice(b);
        v.copy_from_slice(b);
        let b_norm = ops::norm2(b);
        let tol = stopping.target(b_norm);
        let mut residual = b_norm;
        let mut iterations = 0;
        history.push(residual);
        while residual > tol && iterations < q {
            crate::interrupt::check()?;
            iterations += 1;
            // Term t = `iterations` applies B_{Q−t+1}: label Q − t.
            seq.apply(q - iterations, r, hr);
            residual = ops::neumann_update(*step, hr, r, v).sqrt();
            check_divergence(iterations, residual, b_norm)?;
            history.push(residual);
        }
        ops::scale(*step, v);
        Ok(history.report(iterations, iterations, residual, residual <= tol))
    }
}

impl LinearSolver for Neumann {
    fn solve(&mut self, op: &dyn SymmetricOperator, b: &[f64], x: &mut [f64]) -> Result<SolveReport> {
        Neumann::solve(self, op, b, x)
    }
}

/// Proposition 3's batch sizes for the stochastic Neumann series (stocBiO, Ji, Yang, Liang):
/// `|B_{Q+1−j}| = ⌈B·Q·(1 − ημ)^{j−1}⌉` for j = 1..Q, returned with the labels of
/// [`Neumann::solve`]: `sizes[i − 1] = |B_i|`, so `sizes[Q−1] = ⌈BQ⌉` (B_Q,
/// applied first, the largest) and `sizes[0] = ⌈BQ(1 − ημ)^{Q−1}⌉` the smallest.
///
/// Requires Q ≥ 1, η > 0, μ > 0, ημ < 1 and `B ≥ 1/(Q(1 − ημ)^{Q−1})` (every batch then has at
/// least one sample before rounding); rounding up is our choice (the paper leaves it open). The
/// total is at most `BQ/(ημ) + Q`.
pub fn stochastic_neumann_batch_sizes(base: f64, terms: usize, step: f64, mu: f64) -> Result<Vec<usize>> {
    check_positive("base batch size B", base)?;
    check_positive("step", step)?;
    check_positive("mu", mu)?;
    if terms == 0 {
        return Err(KernelError::InvalidParameter { name: "terms", reason: "Q must be >= 1".into() });
    }
    let rho = 1.0 - step * mu;
    if rho <= 0.0 {
        return Err(KernelError::InvalidParameter {
            name: "step",
            reason: format!("Proposition 3 needs η·μ < 1, got η·μ = {}", step * mu),
        });
    }
    let q = terms as f64;
    let smallest = base * q * rho.powf((terms - 1) as f64);
    // Accept B at the bound up to rounding of the product.
    if smallest < 1.0 - 1e-12 {
        let needed = 1.0 / (q * rho.powf((terms - 1) as f64));
        return Err(KernelError::InvalidParameter {
            name: "base batch size B",
            reason: format!(
                "Proposition 3 needs B >= 1/(Q(1-ημ)^(Q-1)) = {needed:e} so that every batch is non-empty, got B = {base}"
            ),
        });
    }
    let largest = (base * q).ceil();
    if largest >= usize::MAX as f64 {
        return Err(KernelError::InvalidParameter {
            name: "base batch size B",
            reason: format!("the largest batch B·Q = {largest:e} does not fit in usize"),
        });
    }
    // sizes[i − 1] = |B_i| with i = Q + 1 − j, i.e. exponent j − 1 = Q − i.
    Ok((1..=terms).map(|i| ((base * q * rho.powf((terms - i) as f64)).ceil() as usize).max(1)).collect())
}
