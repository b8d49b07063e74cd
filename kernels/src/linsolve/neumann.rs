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

use super::{
    check_divergence, check_tolerances, history_capacity, target, History, OperatorSequence, Repeated, SolveReport,
};
use crate::error::{check_finite, check_len, check_positive, KernelError, Result};
use crate::linop::SymmetricOperator;
use crate::ops;

/// Parameters of [`neumann_series`] and [`stochastic_neumann`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NeumannParams {
    /// η > 0 (the papers take η ≤ 1/L). Default 1 (H scaled to L = 1).
    pub step: f64,
    /// Q, the number of operator applications; the sum has Q + 1 terms. Default 100.
    pub terms: usize,
    /// Stop early once a term `‖(I − ηH)^k b‖ ≤ rel_tol·‖b‖`: that term is the residual of the
    /// previous partial sum (see [`neumann_series_with_workspace`]). Default 0 (all Q terms).
    pub rel_tol: f64,
    /// Same, absolute. Default 0.
    pub abs_tol: f64,
    /// Record the term norms `‖r_k‖`, k = 0..=iterations. Default false.
    pub record_history: bool,
}

impl Default for NeumannParams {
    fn default() -> Self {
        Self { step: 1.0, terms: 100, rel_tol: 0.0, abs_tol: 0.0, record_history: false }
    }
}

impl NeumannParams {
    /// Defaults with step η and Q terms after the first.
    pub fn new(step: f64, terms: usize) -> Self {
        Self { step, terms, ..Self::default() }
    }
    /// Sets [`step`](Self::step).
    pub fn with_step(mut self, step: f64) -> Self {
        self.step = step;
        self
    }
    /// Sets [`terms`](Self::terms).
    pub fn with_terms(mut self, terms: usize) -> Self {
        self.terms = terms;
        self
    }
    /// Sets [`rel_tol`](Self::rel_tol).
    pub fn with_rel_tol(mut self, rel_tol: f64) -> Self {
        self.rel_tol = rel_tol;
        self
    }
    /// Sets [`abs_tol`](Self::abs_tol).
    pub fn with_abs_tol(mut self, abs_tol: f64) -> Self {
        self.abs_tol = abs_tol;
        self
    }
    /// Sets [`record_history`](Self::record_history).
    pub fn with_history(mut self, record_history: bool) -> Self {
        self.record_history = record_history;
        self
    }
}

/// The temporaries of the Neumann series: the current term `r` and `Hr`.
#[derive(Clone, Debug)]
pub struct NeumannWorkspace {
    r: Vec<f64>,
    hr: Vec<f64>,
}

impl NeumannWorkspace {
    /// A workspace for systems of dimension `dim` (allocates once).
    pub fn new(dim: usize) -> Self {
        Self { r: vec![0.0; dim], hr: vec![0.0; dim] }
    }
    /// The dimension this workspace was built for.
    pub fn dim(&self) -> usize {
        self.r.len()
    }
}

/// Deterministic Neumann series, allocating its workspace. See [`neumann_series_with_workspace`].
pub fn neumann_series<O: SymmetricOperator>(
    op: &O,
    b: &[f64],
    v: &mut [f64],
    params: &NeumannParams,
) -> Result<SolveReport> {
    neumann_series_with_workspace(op, b, v, params, &mut NeumannWorkspace::new(op.dim()))
}

/// Writes `v = η Σ_{k=0..Q} (I − ηH)^k b` into `v` (its input content is ignored: a series has no
/// warm start; a warm-started version of the same iteration is [`super::richardson`]).
///
/// Since `b − H·η Σ_{j<k} r_j = r_k` with `r_k = (I − ηH)^k b`, each term is the residual of the
/// partial sum before it: `residual_norm` is `‖r_K‖ = ‖b − H v_{K−1}‖` for the last term K added,
/// an upper bound on the returned sum's residual when `‖I − ηH‖ ≤ 1` (η ≤ 2/λ_max).
/// `iterations` is the number of operator applications (K ≤ Q).
///
/// Errors: sizes, non-finite `b`, `step ≤ 0`, negative tolerances; `Diverged` if a term's norm
/// passes [`DIVERGENCE_FACTOR`](super::DIVERGENCE_FACTOR) × ‖b‖ (η too large) or is non-finite.
pub fn neumann_series_with_workspace<O: SymmetricOperator>(
    op: &O,
    b: &[f64],
    v: &mut [f64],
    params: &NeumannParams,
    ws: &mut NeumannWorkspace,
) -> Result<SolveReport> {
    neumann_impl(&mut Repeated(op), b, v, params, ws)
}

/// Stochastic Neumann series (stocBiO Alg. 3), allocating its workspace.
/// See [`stochastic_neumann_with_workspace`].
pub fn stochastic_neumann<S: OperatorSequence>(
    hessians: &mut S,
    b: &[f64],
    v: &mut [f64],
    params: &NeumannParams,
) -> Result<SolveReport> {
    stochastic_neumann_with_workspace(hessians, b, v, params, &mut NeumannWorkspace::new(b.len()))
}

/// Stochastic Neumann series, Alg. 3 of stocBiO: `r_Q = b`, `r_{i−1} = r_i − η H_{B_i} r_i` for
/// i = Q down to 1, `v = η Σ_{i=0..Q} r_i`, with `H_{B_i}` = `hessians.apply(i − 1, ..)`.
///
/// Indices are 0-based labels of the paper's batches: index `j` is B_{j+1}, and the calls come in
/// the order j = Q−1, Q−2, …, 0 (B_Q first). The sizes of
/// [`stochastic_neumann_batch_sizes`] use the same labels. A sequence with a known
/// [`count`](OperatorSequence::count) must hold at least Q operators. The report is as for
/// [`neumann_series_with_workspace`], with noisy terms; leave the tolerances at 0 to compute the
/// paper's estimator.
pub fn stochastic_neumann_with_workspace<S: OperatorSequence>(
    hessians: &mut S,
    b: &[f64],
    v: &mut [f64],
    params: &NeumannParams,
    ws: &mut NeumannWorkspace,
) -> Result<SolveReport> {
    if let Some(count) = hessians.count() {
        if count < params.terms {
            return Err(KernelError::InvalidParameter {
                name: "terms",
                reason: format!("Q = {} terms need Q Hessians, the sequence holds {count}", params.terms),
            });
        }
    }
    neumann_impl(hessians, b, v, params, ws)
}

fn neumann_impl(
    seq: &mut dyn OperatorSequence,
    b: &[f64],
    v: &mut [f64],
    params: &NeumannParams,
    ws: &mut NeumannWorkspace,
) -> Result<SolveReport> {
    let n = b.len();
    seq.check_dim(n)?;
    check_len("solution", n, v.len())?;
    check_len("workspace", n, ws.dim())?;
    check_finite("rhs", b)?;
    check_positive("step", params.step)?;
    check_tolerances(params.rel_tol, params.abs_tol)?;
    let mut history = History::new(params.record_history, history_capacity(params.terms))?;

    let NeumannWorkspace { r, hr } = ws;
    r.copy_from_slice(b);
    v.copy_from_slice(b);
    let b_norm = ops::norm2(b);
    let tol = target(params.rel_tol, params.abs_tol, b_norm);
    let q = params.terms;

    let mut residual = b_norm;
    let mut iterations = 0;
    history.push(residual);
    while residual > tol && iterations < q {
        iterations += 1;
        // Term t = `iterations` applies B_{Q−t+1}: label Q − t.
        seq.apply(q - iterations, r, hr);
        residual = ops::neumann_update(params.step, hr, r, v).sqrt();
        check_divergence(iterations, residual, b_norm)?;
        history.push(residual);
    }
    ops::scale(params.step, v);
    Ok(history.report(iterations, residual, residual <= tol))
}

/// Proposition 3's batch sizes for the stochastic Neumann series (stocBiO, Ji, Yang, Liang):
/// `|B_{Q+1−j}| = ⌈B·Q·(1 − ημ)^{j−1}⌉` for j = 1..Q, returned with the labels of
/// [`stochastic_neumann_with_workspace`]: `sizes[i − 1] = |B_i|`, so `sizes[Q−1] = ⌈BQ⌉` (B_Q,
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
