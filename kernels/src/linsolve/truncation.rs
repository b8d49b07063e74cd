//! The randomized-truncation estimator of `H⁻¹b` used by BSA (Ghadimi & Wang), TTSA (Hong, Wai,
//! Wang, Yang) and SUSTAIN (Khanduri, Zeng, Hong, Wai, Wang, Yang, "A Near-Optimal Algorithm for
//! Stochastic Bilevel Optimization via Double-Momentum", eq. (7)):
//!
//! ```text
//! k ~ U{0, …, K−1},    p = (K/L_g) ∏_{i=1..k} (I − H_{ζ(i)}/L_g) b      (the identity when k = 0)
//! ```
//!
//! (the hypergradient then subtracts `∂xy g(ζ(0))·p`, which is not part of this kernel). For a
//! fixed H, `E_k p = (1/L_g) Σ_{j<K} (I − H/L_g)^j b = H⁻¹(I − (I − H/L_g)^K) b`: the bias decays like
//! `(1 − μ/L_g)^K` (TTSA Lemma 11, SUSTAIN Lemma 2.1), so `K = κ·log(1/ε)` gives bias O(ε).
//!
//! Cost: k ≤ K − 1 operator applications (HVPs) and k + 1 vector passes, with no allocation.
//! SUSTAIN's momentum evaluates the estimator at two points with the *same* sample, including
//! the same k: draw k once with [`draw_truncation_depth`] and call [`truncated_neumann`] twice.

use crate::error::{check_finite, check_len, check_positive, KernelError, Result};
use crate::linsolve::OperatorSequence;
use crate::ops;
use rand::Rng;

/// Parameters of the estimator.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TruncationParams {
    /// L_g, an upper bound on λ_max(H) (the products need `‖I − H/L_g‖ ≤ 1`). Default 1.
    pub lipschitz: f64,
    /// K ≥ 1, the horizon: k is drawn from {0, …, K−1} and the result scaled by K/L_g. Default 10.
    pub horizon: usize,
}

impl Default for TruncationParams {
    fn default() -> Self {
        Self { lipschitz: 1.0, horizon: 10 }
    }
}

impl TruncationParams {
    /// Parameters with L_g = `lipschitz` and K = `horizon`.
    pub fn new(lipschitz: f64, horizon: usize) -> Self {
        Self { lipschitz, horizon }
    }
    /// Sets [`lipschitz`](Self::lipschitz).
    pub fn with_lipschitz(mut self, lipschitz: f64) -> Self {
        self.lipschitz = lipschitz;
        self
    }
    /// Sets [`horizon`](Self::horizon).
    pub fn with_horizon(mut self, horizon: usize) -> Self {
        self.horizon = horizon;
        self
    }

    fn validate(&self) -> Result<()> {
        check_positive("lipschitz", self.lipschitz)?;
        check_horizon(self.horizon)
    }
}

fn check_horizon(horizon: usize) -> Result<()> {
    if horizon == 0 {
        return Err(KernelError::InvalidParameter { name: "horizon", reason: "K must be >= 1".into() });
    }
    Ok(())
}

/// The one temporary of the estimator: `H v`.
#[derive(Clone, Debug)]
pub struct TruncationWorkspace {
    hv: Vec<f64>,
}

impl TruncationWorkspace {
    /// A workspace for systems of dimension `dim` (allocates once).
    pub fn new(dim: usize) -> Self {
        Self { hv: vec![0.0; dim] }
    }
    /// The dimension this workspace was built for.
    pub fn dim(&self) -> usize {
        self.hv.len()
    }
}

/// Draws the truncation depth `k ~ U{0, …, K−1}` (K = `horizon` ≥ 1).
pub fn draw_truncation_depth<R: Rng + ?Sized>(rng: &mut R, horizon: usize) -> Result<usize> {
    check_horizon(horizon)?;
    Ok(rng.random_range(0..horizon))
}

/// Draws k and writes `out = (K/L_g) ∏_{i=1..k} (I − H_{ζ(i)}/L_g) b`; returns k.
/// See [`truncated_neumann_with_workspace`] for the indexing of `hessians`. Allocates its workspace.
pub fn randomized_truncation<S: OperatorSequence, R: Rng + ?Sized>(
    hessians: &mut S,
    b: &[f64],
    params: &TruncationParams,
    rng: &mut R,
    out: &mut [f64],
) -> Result<usize> {
    randomized_truncation_with_workspace(hessians, b, params, rng, out, &mut TruncationWorkspace::new(b.len()))
}

/// [`randomized_truncation`] with a caller-held workspace (no allocation).
/// Parameters are validated before k is drawn, so an error consumes no randomness.
pub fn randomized_truncation_with_workspace<S: OperatorSequence, R: Rng + ?Sized>(
    hessians: &mut S,
    b: &[f64],
    params: &TruncationParams,
    rng: &mut R,
    out: &mut [f64],
    ws: &mut TruncationWorkspace,
) -> Result<usize> {
    params.validate()?;
    let k = draw_truncation_depth(rng, params.horizon)?;
    truncated_neumann_with_workspace(hessians, b, k, params, out, ws)?;
    Ok(k)
}

/// The estimator for a given depth k, allocating its workspace.
/// See [`truncated_neumann_with_workspace`].
pub fn truncated_neumann<S: OperatorSequence>(
    hessians: &mut S,
    b: &[f64],
    depth: usize,
    params: &TruncationParams,
    out: &mut [f64],
) -> Result<()> {
    truncated_neumann_with_workspace(hessians, b, depth, params, out, &mut TruncationWorkspace::new(b.len()))
}

/// Writes `out = (K/L_g) ∏_{i=1..k} (I − H_{ζ(i)}/L_g) b` for the given depth k < K, applying
/// `hessians.apply(i − 1, ..)` for ζ(i), i = 1..k, in that order (each product acts on the
/// result of the previous one; the ζ(i) are i.i.d., so the order only matters for reproducibility).
///
/// Errors: sizes, non-finite `b`, `lipschitz ≤ 0`, `horizon == 0`, `depth ≥ horizon`, a sequence
/// with fewer than k operators; `Diverged` if the result is non-finite.
pub fn truncated_neumann_with_workspace<S: OperatorSequence>(
    hessians: &mut S,
    b: &[f64],
    depth: usize,
    params: &TruncationParams,
    out: &mut [f64],
    ws: &mut TruncationWorkspace,
) -> Result<()> {
    truncation_impl(hessians, b, depth, params, out, ws)
}

fn truncation_impl(
    seq: &mut dyn OperatorSequence,
    b: &[f64],
    depth: usize,
    params: &TruncationParams,
    out: &mut [f64],
    ws: &mut TruncationWorkspace,
) -> Result<()> {
    let n = b.len();
    params.validate()?;
    seq.check_dim(n)?;
    check_len("output", n, out.len())?;
    check_len("workspace", n, ws.dim())?;
    check_finite("rhs", b)?;
    if depth >= params.horizon {
        return Err(KernelError::InvalidParameter {
            name: "depth",
            reason: format!("k must be < K = {}, got {depth}", params.horizon),
        });
    }
    if let Some(count) = seq.count() {
        if count < depth {
            return Err(KernelError::InvalidParameter {
                name: "depth",
                reason: format!("k = {depth} products need k Hessians, the sequence holds {count}"),
            });
        }
    }
    let inv_l = 1.0 / params.lipschitz;
    out.copy_from_slice(b);
    for i in 0..depth {
        seq.apply(i, out, &mut ws.hv);
        ops::axpy(-inv_l, &ws.hv, out);
    }
    ops::scale(params.horizon as f64 * inv_l, out);
    let norm = ops::norm2(out);
    if !norm.is_finite() {
        return Err(KernelError::Diverged { iteration: depth, residual: norm });
    }
    Ok(())
}
