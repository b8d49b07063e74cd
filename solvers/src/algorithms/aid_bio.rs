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
//! Parameters (the paper calls the outer step β; resolved by [`super::amigo::resolve`]):
//! - [`StepRule::Default`](super::StepRule::Default): AmIGO-CG's (α = 1/L_g, γ = 1/L_L, T = N = 10;
//!   mini-batch aware);
//! - [`StepRule::Experiments`](super::StepRule::Experiments): the paper runs AID-BiO only on
//!   few-shot meta-learning with CNNs (§5.2, a grid): no setting of this catalogue, an error;
//! - [`StepRule::Theory`](super::StepRule::Theory): Theorem 1: α = 1/L_g (α ≤ 1/L), outer
//!   1/(8L_Φ) with L_Φ = L_L.

/// Theorem 1: α = 1/L_g, (CG: no β), outer 1/(8L_Φ) (fractions of 1/L_g, 1/L_g, 1/L_L).
pub const THEORY: (f64, f64, f64) = (1.0, 1.0, 0.125);
