//! AID-BiO — Ji, Yang & Liang, *Provably Faster Algorithms for Bilevel Optimization* (ICML
//! 2021), Algorithm 1 (AID branch) with eq. (3): T warm-started inner GD steps, N warm-started
//! CG steps for v, an outer gradient step. The same loop as AmIGO-CG ([`super::aid`]).
//!
//! ```text
//! y_k^0 = y_{k−1}^T;  y_k^t = y_k^{t−1} − α ∂y g(x_k, y_k^{t−1}),  t = 1..T
//! v_k = N CG steps on ∂yy g(x_k, y_k^T) v = ∂y f(x_k, y_k^T) from v_{k−1}
//! x_{k+1} = x_k − β (∂x f(x_k, y_k^T) − ∂x∂y g(x_k, y_k^T) v_k)                       (eq. (3))
//! ```
//! Deviation: line 8 of Alg. 1 prints ∂f/∂x_k; we use eq. (3) (the notes' reading).
//!
//! Claimed complexity (Theorem 1, nonconvex): K = O(κ³ε⁻¹) outer steps, O(κ⁴ε⁻¹) gradients
//! of g, O(κ³ε⁻¹) of f, O(κ^3.5 ε⁻¹) HVPs (Table 1), T = Θ(κ), N = Θ(√κ).
//!
//! Step sizes (the paper calls the outer step β):
//! - [`StepRule::Theory`](super::StepRule::Theory): Theorem 1: α = 1/L_g (α ≤ 1/L), outer 1/(8L_Φ) with L_Φ = L_L;
//! - [`StepRule::Experiments`](super::StepRule::Experiments): the paper's experiments tune per data set (no value for the
//!   quadratic); on the quadratics we use paper 000 §5.1's α = 1/L_g, γ = 1/L_L, with which
//!   paper 000 runs this same configuration (AmIGO-CG).

use super::StepFractions;

/// Theorem 1: α = 1/L_g, outer 1/(8L_Φ) (CG needs no adjoint step: β is set to α).
pub const THEORY: StepFractions = StepFractions { inner: 1.0, adjoint: 1.0, outer: 0.125 };
