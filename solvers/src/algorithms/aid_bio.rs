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
//! - [`StepRule::Theory`](super::StepRule::Theory) (full batches): Theorem 1 with eq. (18),
//!   (22) and condition (31) ([`theorem_1`]): α = 1/L (one L for ∇f and ∇g jointly), outer
//!   1/(8L_Φ) with L_Φ of eq. (13), T = Θ(κ) and N = Θ(√κ) as the larger of (22) and (31), from
//!   µ, L, M = sup ‖∇y f‖, τ, ρ ([`Paper002Constants::from_problem`]; a refusal naming the
//!   first the problem does not bound).

/// The constants of paper 002's Assumptions 1–3: µ, one L for ∇f and ∇g jointly in (x, y),
/// M (sup ‖∇y f‖, the bound its proofs use), τ and ρ (the Lipschitz constants of ∂x∂y g and
/// ∂yy g).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paper002Constants {
    /// µ.
    pub mu: f64,
    /// L.
    pub l: f64,
    /// M.
    pub m: f64,
    /// τ.
    pub tau: f64,
    /// ρ.
    pub rho: f64,
}

impl Paper002Constants {
    /// κ = L/µ.
    pub fn kappa(&self) -> f64 {
        self.l / self.mu
    }
    /// Lemma 2, eq. (13): L_Φ = L + (2L² + τM²)/µ + (ρLM + L³ + τML)/µ² + ρL²M/µ³.
    pub fn l_phi(&self) -> f64 {
        let Self { mu, l, m, tau, rho } = *self;
        l + (2.0 * l * l + tau * m * m) / mu
            + (rho * l * m + l.powi(3) + tau * m * l) / (mu * mu)
            + rho * l * l * m / mu.powi(3)
    }
    /// From a problem's constants: µ_g, L = max(L_f, L_g + C_gxy) (the block bound on the
    /// joint Hessian of g with ∂xx g = 0, as on the F.1 quadratic, the one problem here that
    /// reports every constant), M = sup ‖∇y f‖, τ, ρ; `Err` naming the first constant missing.
    pub fn from_problem(c: &crate::Constants) -> bilevel_kernels::Result<Self> {
        let k = &c.known;
        let need = |v: Option<f64>, what: &str| {
            v.ok_or_else(|| bilevel_kernels::KernelError::InvalidParameter {
                name: "steps",
                reason: format!(
                    "paper 002's theorems need {what}, which this problem does not bound: use --steps default"
                ),
            })
        };
        let mu = c.mu_g()?;
        let l = need(k.l_f, "L_f (Assumption 2: ∇f L-Lipschitz)")?
            .max(c.l_g()? + need(k.cross_bound, "sup ‖∂x∂y g‖ (Assumption 2)")?);
        Ok(Self {
            mu,
            l,
            m: need(k.grad_y_f_bound, "M = sup ‖∇y f‖ (Assumption 2)")?,
            tau: need(k.cross_lipschitz, "τ, the Lipschitz constant of ∂x∂y g (Assumption 3)")?,
            rho: need(k.hess_lipschitz, "ρ, the Lipschitz constant of ∂yy g (Assumption 3)")?,
        })
    }
}

/// What Theorem 1 prescribes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Theorem1 {
    /// L_Φ of eq. (13).
    pub l_phi: f64,
    /// α = 1/L.
    pub alpha: f64,
    /// β = 1/(8L_Φ).
    pub beta: f64,
    /// T: the larger of eq. (22)'s and condition (31)'s (split equally between its two terms),
    /// before the feasibility check.
    pub t: f64,
    /// N: the larger of eq. (22)'s and condition (31)'s.
    pub n: f64,
}

/// Theorem 1 with eq. (18), (22) and condition (31) (paper 002, App. E): α = 1/L, β =
/// 1/(8L_Φ), κ = L/µ, q = (√κ − 1)/(√κ + 1), Γ = 3L² + 3τ²M²/µ² + 6L²(1 + √κ)²(κ + ρM/µ²)²,
/// Ω = 8(βκ² + 2βML/µ² + 2βLMκ/µ²)²;
/// T_(22) = log(36κ(κ + ρM/µ²)² + 16(κ² + 4LMκ/µ²)²β²Γ)/log(1/(1 − αµ)) (the printed
/// log(1/(1 − α)) read as log(1/(1 − αµ)): notes §6 item 4), N_(22) = ½ log(8κ + 48(κ² +
/// 2ML/µ² + 2LMκ/µ²)²β²L²κ)/log(1/q); (31): δ_{T,N} = Γ(1 − αµ)^T + 6L²κq^{2N} ≤ min(1,
/// 1/(5Ω)), each term at most half: T_(31) = log(2Γ max(1, 5Ω))/log(1/(1 − αµ)), N_(31) =
/// log(12L²κ max(1, 5Ω))/(2 log(1/q)) — (22) does not imply (31) (the spec's check).
pub fn theorem_1(k: &Paper002Constants) -> Theorem1 {
    let Paper002Constants { mu, l, m, tau, rho } = *k;
    let kappa = k.kappa();
    let l_phi = k.l_phi();
    let (alpha, beta) = (1.0 / l, 1.0 / (8.0 * l_phi));
    let gamma = 3.0 * l * l
        + 3.0 * tau * tau * m * m / (mu * mu)
        + 6.0 * l * l * (1.0 + kappa.sqrt()).powi(2) * (kappa + rho * m / (mu * mu)).powi(2);
    let omega =
        8.0 * (beta * kappa * kappa + 2.0 * beta * m * l / (mu * mu) + 2.0 * beta * l * m * kappa / (mu * mu)).powi(2);
    let contract = (1.0 / (1.0 - alpha * mu)).ln();
    let t22 = (36.0 * kappa * (kappa + rho * m / (mu * mu)).powi(2)
        + 16.0 * (kappa * kappa + 4.0 * l * m * kappa / (mu * mu)).powi(2) * beta * beta * gamma)
        .ln()
        / contract;
    let t31 = (2.0 * gamma * (5.0 * omega).max(1.0)).ln() / contract;
    let (n22, n31) = if kappa > 1.0 {
        let log_q = ((kappa.sqrt() + 1.0) / (kappa.sqrt() - 1.0)).ln();
        let v = kappa * kappa + 2.0 * m * l / (mu * mu) + 2.0 * l * m * kappa / (mu * mu);
        (
            0.5 * (8.0 * kappa + 48.0 * v * v * beta * beta * l * l * kappa).ln() / log_q,
            (12.0 * l * l * kappa * (5.0 * omega).max(1.0)).ln() / (2.0 * log_q),
        )
    } else {
        (1.0, 1.0)
    };
    // NaN (a log of a non-positive number) only where κ ≤ 1 makes a term vacuous.
    let count = |a: f64, b: f64| a.max(b).ceil().max(1.0);
    Theorem1 { l_phi, alpha, beta, t: count(t22, t31), n: count(n22, n31) }
}
