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
//! the same k: draw k once with [`RandomizedTruncation::draw_depth`] and call
//! [`RandomizedTruncation::solve`] twice.

use super::{check_count, OperatorSequence};
use crate::error::{check_finite, check_len, check_positive, KernelError, Result};
use crate::ops;
use rand::Rng;

fn check_horizon(horizon: usize) -> Result<()> {
    if horizon == 0 {
        return Err(KernelError::InvalidParameter { name: "horizon", reason: "K must be >= 1".into() });
    }
    Ok(())
}

/// Draws the truncation depth `k ~ U{0, …, K−1}` (K = `horizon` ≥ 1).
pub fn draw_truncation_depth<R: Rng + ?Sized>(rng: &mut R, horizon: usize) -> Result<usize> {
    check_horizon(horizon)?;
    Ok(rng.random_range(0..horizon))
}

/// The randomized-truncation estimator `(K/L_g) ∏_{i=1..k} (I − H_{ζ(i)}/L_g) b`: L_g, K and its
/// one work vector (`Hv`), allocated once by [`RandomizedTruncation::new`].
///
/// The depth k is an argument of [`solve`](Self::solve), drawn by
/// [`draw_depth`](Self::draw_depth) (or [`draw_truncation_depth`]): SUSTAIN evaluates the
/// estimator twice with the same sample, the same k. A depth k costs exactly k operator
/// applications.
#[derive(Clone, Debug)]
pub struct RandomizedTruncation {
    lipschitz: f64,
    horizon: usize,
    hv: Vec<f64>,
}

impl RandomizedTruncation {
    /// An estimator for systems of dimension `dim` with L_g = `lipschitz` (an upper bound on
    /// λ_max(H), > 0: the products need `‖I − H/L_g‖ ≤ 1`) and K = `horizon` ≥ 1 (k is drawn from
    /// {0, …, K−1} and the result scaled by K/L_g). Both are checked by `draw_depth` and `solve`.
    pub fn new(dim: usize, lipschitz: f64, horizon: usize) -> Self {
        Self { lipschitz, horizon, hv: vec![0.0; dim] }
    }
    /// The dimension this estimator was built for.
    pub fn dim(&self) -> usize {
        self.hv.len()
    }
    /// L_g.
    pub fn lipschitz(&self) -> f64 {
        self.lipschitz
    }
    /// Sets L_g for the next solves (a bound that moves along a run).
    pub fn set_lipschitz(&mut self, lipschitz: f64) {
        self.lipschitz = lipschitz;
    }
    /// K.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    fn validate(&self) -> Result<()> {
        check_positive("lipschitz", self.lipschitz)?;
        check_horizon(self.horizon)
    }

    /// Draws k ~ U{0, …, K−1} from `rng`. The parameters are validated first, so an error
    /// consumes no randomness.
    pub fn draw_depth<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<usize> {
        self.validate()?;
        draw_truncation_depth(rng, self.horizon)
    }

    /// Writes `out = (K/L_g) ∏_{i=1..k} (I − H_{ζ(i)}/L_g) b` for the depth k < K, applying
    /// `seq.apply(i − 1, ..)` for ζ(i), i = 1..k, in that order (each product acts on the result of
    /// the previous one; the ζ(i) are i.i.d., so the order only matters for reproducibility). A
    /// fixed operator `&H` gives `(K/L_g)(I − H/L_g)^k b`. No allocation.
    ///
    /// Errors: sizes (`operator`, `rhs`, `output`), non-finite `b`, `lipschitz ≤ 0`,
    /// `horizon == 0`, `depth ≥ horizon`, a sequence with fewer than k operators; `Diverged` if the
    /// result is non-finite.
    pub fn solve<S: OperatorSequence>(&mut self, mut seq: S, b: &[f64], depth: usize, out: &mut [f64]) -> Result<()> {
        self.solve_dyn(&mut seq, b, depth, out)
    }

    fn solve_dyn(&mut self, seq: &mut dyn OperatorSequence, b: &[f64], depth: usize, out: &mut [f64]) -> Result<()> {
        let n = self.dim();
        self.validate()?;
        seq.check_dim(n)?;
        check_len("rhs", n, b.len())?;
        check_len("output", n, out.len())?;
        check_finite("rhs", b)?;
        if depth >= self.horizon {
            return Err(KernelError::InvalidParameter {
                name: "depth",
                reason: format!("k must be < K = {}, got {depth}", self.horizon),
            });
        }
        check_count(seq, depth, "depth", "products")?;
        let inv_l = 1.0 / self.lipschitz;
        out.copy_from_slice(b);
        for i in 0..depth {
            crate::interrupt::check()?;
            seq.apply(i, out, &mut self.hv);
            ops::axpy(-inv_l, &self.hv, out);
        }
        ops::scale(self.horizon as f64 * inv_l, out);
        let norm = ops::norm2(out);
        if !norm.is_finite() {
            return Err(KernelError::Diverged { iteration: depth, residual: norm });
        }
        Ok(())
    }
}
