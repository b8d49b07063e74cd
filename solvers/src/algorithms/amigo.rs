//! AmIGO — Arbel & Mairal, *Amortized Implicit Differentiation for Stochastic Bilevel
//! Optimization* (ICLR 2022), Algorithm 1 with A_k = Algorithm 2 (GD on g from the previous y)
//! and B_k = Algorithm 3 (GD on the adjoint quadratic from the previous z: AmIGO-GD) or CG
//! (AmIGO-CG, §5); and the paper's §5 baselines AID-GD, AID-CG, AID-CG-WS, AID-FP, AID-N as
//! configurations of the same loop ([`super::aid::AidBilevel`], built by [`super::build`]).
//!
//! Algorithm 1 (deterministic form, the notes' clean order of its garbled indices):
//! ```text
//! y_k = A_k(x_k, y_{k−1});   z_k = B_k(x_k, y_k, ∂y f(x_k, y_k), z_{k−1})
//! ψ_k = ∂x f(x_k, y_k) + ∂x∂y g(x_k, y_k)·z_k;   x_{k+1} = x_k − γ ψ_k
//! ```
//! We solve for v = −z (same iterates, the sign of eq. (3) of paper 002).
//!
//! Claimed complexity (Table 1, Cor. 1): O(κ_L κ_g log(1/ε)) oracle calls for a strongly convex
//! L, deterministic; T = O(κ_g) and N = O(κ_g) up to log κ_g (Prop. 10).
//!
//! Step sizes:
//! - [`StepRule::Theory`](super::StepRule::Theory): Theorem 1 / Proposition 10: α = 1/L_g, β = 1/(2L_g), γ = 1/L_L;
//! - [`StepRule::Experiments`](super::StepRule::Experiments): §5.1 (synthetic quadratic): α = β = 1/L_g, γ = 1/L_L (β twice the
//!   theory's, as the notes point out).
//!
//! The baselines have no theorem of their own in the paper: under `Theory` they get AmIGO's.
//! AID-CG-WS is read as "CG warm-started, y not" (the notes' reading of "All methods except
//! AID-CG-WS warm-start A_k").

use super::StepFractions;

/// Theorem 1 / Proposition 10: α = 1/L_g, β = 1/(2L_g), γ = 1/L_L.
pub const THEORY: StepFractions = StepFractions { inner: 1.0, adjoint: 0.5, outer: 1.0 };
