//! BO-REP — Hao, Gong & Liu, *Bilevel Optimization under Unbounded Smoothness: A New Algorithm
//! and Convergence Analysis* (ICLR 2024; paper 003), Algorithm 1 (BO-REP) with Algorithm 2
//! (UpdateLower: periodic updates) and Algorithm 3 (Epoch-SGD: initialization refinement).
//!
//! ```text
//! y_0 = Epoch-SGD(x_0, y'_0)                                            (Alg. 3, (28)–(30))
//! for k = 0..K−1:
//!   y_{k+1} = UpdateLower(x_k, y_k)                                      (Alg. 2)
//!   z_{k+1} = z_k − ν(∇²y G(x_k,y_k;ξ_k) z_k − ∇y F(x_k,y_k;ζ_k))
//!   m_{k+1} = β m_k + (1−β)[∇x F(x_k,y_k;ζ_k) − ∇x∇y G(x_k,y_k;ξ_k) z_k]      ((58) in brackets)
//!   x_{k+1} = x_k − η m_{k+1}/‖m_{k+1}‖
//! UpdateLower: if k > 0 and k mod I = 0: from y^0 = y_k, N projected SGD steps
//!   y^{t+1} = Π_{B(y^0,R)}(y^t − γ∇y G(x_k,y^t;ξ̃^t)),  y_{k+1} = (1/N) Σ_{t=1..N} y^t;  else y_{k+1} = y_k
//! Epoch-SGD: epochs s = 0..k†−1 of T_s projected SGD steps with step α_s on the ball
//!   B_s = {½‖y − y^{s,0}‖² ≤ V_0/(µ2^s)}, y^{s+1,0} = the mean of the epoch's T_s iterates
//!   T_s = ⌈max{16L/µ, 32 max(σ², 4λ²σ²)/(µV_0 2^{−(s+2)})}⌉,  α_s = min{1/(2L), √(V_0 2^{−s}/(2µT_s))/σ}
//! ```
//!
//! Jacobi as printed: lines 3–5 all read (x_k, y_k, z_k). One ζ_k feeds ∇x F and ∇y F (one batch
//! of `batches.outer`), one ξ_k feeds the HVP and the cross product (one batch of `batches.hvp`,
//! replayed; `batches.cross` is not read); every ξ̃^t of UpdateLower is a fresh batch of
//! `batches.inner`, and Epoch-SGD's ξ̃^{s,t} come from their own stream of the same size. z is
//! not projected (only y is).
//!
//! Cost per iteration k (in oracle calls, with O(1) batches): one ∂x f and one ∂y f, one HVP,
//! one cross product; plus N ∂y g when k > 0 and k ≡ 0 (mod I). Epoch-SGD runs at the start of
//! the first [`step`](Algorithm::step) (so the driver's trace counts it): Σ_s T_s ∂y g, and one
//! full-batch ∂y g for V_0 under the theory rule.
//!
//! Claimed complexity (Theorem 3.1/E.2, norm convention): (1/K)Σ E‖∇Φ(x_k)‖ ≤ 30ε with
//! probability ≥ 1 − δ after K = 4Δ/(ηε) = Θ(ε⁻⁴) iterations, Õ(ε⁻⁴) oracle calls in all (N/I
//! polylogarithmic), O(1) batch, for an upper level that is (L_{x,0}, L_{x,1}, L_{y,0},
//! L_{y,1})-smooth (unbounded smoothness) and a strongly convex, L-smooth lower level.
//!
//! Parameters ([`resolve`]):
//! - [`StepRule::Default`]: paper 003 App. F's structural values β = 0.9, I = 2, N = 3, R = 0.5
//!   (its three experiments share them), the lower-level and z steps γ = ν = 1/(2ℒ(b))
//!   (1/L_g on full batches: the gradient step; [`super::lower`]), the initialization refinement
//!   as one epoch of Algorithm 3 without its ball (10 SGD steps of γ, y_0 their mean), and the
//!   outer step η = 0.01, §4.1's upper learning rate (a normalized step is a length in x, which
//!   no 1/L form gives).
//! - [`StepRule::Experiments`]: §4.1 (hyper-representation with per-task linear heads, the
//!   catalogue's `meta_learning`): lower-level γ = 0.001, η = 0.01, z step 0.01, β = 0.9, I = 2,
//!   N = 3, R = 0.5, plain SGD refinement; §4.3 (data hyper-cleaning, `hyperclean`): γ = η =
//!   ν = 0.05, the same β, I, N, R. Batch sizes stay the user's (§4.3: 512).
//! - [`StepRule::Theory`]: Theorem 3.1 / E.2's (75) ([`TheoryConstants::theorem_3_1`]) from
//!   the noise levels σ_{f,1}, σ_{g,1}, σ_{g,2} (bounded separately, Assumption 3), C_gxy,
//!   M ≥ ‖∇y f(x, y*(x))‖ and K0 of (16) ([`TheoryConstants::new`]), all the problem's bounds:
//!   on a one-sample problem (the F.1 quadratic) σ = 0 and every constant is known; a finite sum
//!   is refused (no problem here bounds its noise levels). Ours, written down: ν = (1 − β)/µ with
//!   µ/L among (75)'s entries of 1 − β ((57)'s proof needs ν ≤ 1/L); γ ≤ 1/(2L) (Lemma D.1's
//!   condition, which (44)/(80) do not restate) and N ≥ ⌈16L/µ⌉ (its deterministic block).
//! - `settings.outer_step` replaces η, `settings.inner_step` γ, `settings.adjoint_step` ν.
//!
//! Ambiguities resolved:
//! - ‖m_{k+1}‖ = 0 (Algorithm 1 adds no guard): x_{k+1} = x_k (the direction is undefined and
//!   the estimate says stationary; the step is the limit of η m/max(‖m‖, ε) as ε → 0 along m = 0).
//! - I, N rounded up and at least 1; with σ = 0 the formulas give I = N = 0: N is at least
//!   ⌈16L/µ⌉, the deterministic term of (29) (Lemma D.1's P0 = D²/(αT) with the same block), and
//!   γ ≤ 1/(2L) (Lemma D.1's condition α ≤ 1/(2L), which (44)/(80) do not restate).
//! - ν = (1−β)/µ is also capped at 1/L: the z recursion contracts only for ν < 2/L, and the
//!   theorem's cap µ/(16σ²_{g,2}) is vacuous when σ_{g,2} = 0.
//! - η's start terms Δ/‖∇Φ(x_0)‖ and εΔ/(C²_gxy Δ_{z,0}) and λ1 of (46)/(82) (through
//!   K = 4Δ/(ηε)) read the start: the theory rule takes Δ = Φ(x_0) − inf Φ, ‖∇Φ(x_0)‖ and
//!   Δ_{z,0} = ‖z*(x_0)‖² (z_0 = 0) from the problem's closed form ([`StartValues`]) and
//!   records Δ as the `gap` parameter; a problem without one is refused.
//! - z_0 = 0, m_0 = 0, ȳ^0 irrelevant (weight 0). `ξ̃_k` of Alg. 1's footnote is drawn only at
//!   k = jI, j ≥ 1: y is frozen at y_0 for k < I.
//!
//! Reporting: [`Iterates::grad`] is the bias-corrected EMA m_{k+1}/(1 − β^{k+1}) (the same
//! direction as m_{k+1}; m itself starts at (1−β)× the estimate, which the driver's growth test
//! would read as divergence when 1−β is small); [`Iterates::x_at_y`] is the x the current y was
//! last computed at (x_0 for Epoch-SGD, x_{jI} for a refresh), the house convention. No random
//! output iterate is drawn: the trace has every x_k.

use super::lower::{user_or, Lower};
use super::{initialised, no_experiment, Algorithm, Context, Iterates, Output, Settings, StepRule, StepSizes};
use crate::constants::Constant;
use crate::params::{Params, Source};
use crate::sampling::{BatchSizes, BatchStream};
use bilevel_kernels::{check_len, interrupt, ops, Batch, BilevelProblem, KernelError, Result};

/// The constants of the theory rule.
pub const NEEDS_THEORY: &[Constant] = &[Constant::MuG, Constant::LG, Constant::LOuter];

/// Stream numbers (independent streams of one seed).
const LOWER_STREAM: u64 = 0;
const F_STREAM: u64 = 1;
const G2_STREAM: u64 = 2;
const INIT_STREAM: u64 = 3;

fn invalid(name: &'static str, reason: String) -> KernelError {
    KernelError::InvalidParameter { name, reason }
}

/// Options the shared [`Settings`] do not carry (`None`: the rule's value).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct BoRepOptions {
    /// The period I of the lower-level updates.
    pub period: Option<usize>,
    /// The number N of averaged projected steps per update.
    pub lower_steps: Option<usize>,
    /// The projection radius R (`f64::INFINITY`: no projection).
    pub radius: Option<f64>,
    /// The momentum β.
    pub beta: Option<f64>,
    /// The z step ν.
    pub z_step: Option<f64>,
    /// The lower-level step γ of UpdateLower.
    pub lower_step: Option<f64>,
    /// Experiments rule: the number of plain SGD steps of the initialization refinement
    /// (default `settings.inner_steps`).
    pub init_steps: Option<usize>,
    /// Theory rule: the target ε of Theorem 3.1 (‖∇Φ‖ units; default [`DEFAULT_EPSILON`]).
    pub epsilon: Option<f64>,
    /// Theory rule: the failure probability δ (default [`DEFAULT_DELTA`]).
    pub delta: Option<f64>,
    /// Theory rule: the noise level σ of every oracle (default: 0 on full batches, L/√b on
    /// mini-batches).
    pub sigma: Option<f64>,
}

/// The most lower-level steps one update (N) or the whole Epoch-SGD (Σ_s T_s) may take: the
/// theorem's values for a small ε and σ > 0 run to 10^12 and more (a typed error, not a hang).
pub const MAX_LOWER_STEPS: usize = 100_000_000;

/// The default target ε of the theory rule.
pub const DEFAULT_EPSILON: f64 = 1e-2;
/// The default failure probability δ of the theory rule.
pub const DEFAULT_DELTA: f64 = 0.1;

/// Algorithm 3's initialization refinement.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum InitRefinement {
    /// No refinement: y_0 = y'_0.
    None,
    /// Plain SGD (the experiments, App. F.1): `steps` unprojected steps of size `step`, y_0 the
    /// mean of the iterates y^1..y^steps (Algorithm 3 line 6 with one epoch and no ball).
    Sgd {
        /// The number of steps.
        steps: usize,
        /// The step size.
        step: f64,
    },
    /// Epoch-SGD with the schedules (28)–(30) (V_0 computed at the start, see the module doc).
    Epochs(EpochSchedule),
}

/// The constants of (28)–(30) and Lemma 3.2.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EpochSchedule {
    /// µ.
    pub mu: f64,
    /// L (bounds every batch Hessian).
    pub l: f64,
    /// σ_{g,1}.
    pub sigma: f64,
    /// K0 (Lemma 3.2's k†).
    pub k0: f64,
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

/// One epoch s of Epoch-SGD: its ball radius √(2V_0/(µ2^s)), length T_s (29) and step α_s (30).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epoch {
    /// The radius of B_s (28).
    pub radius: f64,
    /// T_s (29).
    pub steps: usize,
    /// α_s (30).
    pub step: f64,
}

impl EpochSchedule {
    /// k† = ⌈log2(128K0²V_0/(µε²))⌉, at least 1 (Lemma 3.2).
    pub fn epochs(&self, v0: f64) -> usize {
        let k = (128.0 * self.k0 * self.k0 * v0 / (self.mu * self.epsilon * self.epsilon)).log2().ceil();
        if k.is_finite() && k >= 1.0 {
            k as usize
        } else {
            1
        }
    }
    /// λ = max(√(3 ln(2k†/δ)), ln(2k†/δ)) ((38)/(43)).
    pub fn lambda(&self, epochs: usize) -> f64 {
        lambda_of(2.0 * epochs as f64 / self.delta)
    }
    /// Epoch s for the bound V_0 (k† epochs).
    pub fn epoch(&self, v0: f64, epochs: usize, s: usize) -> Epoch {
        let (mu, l, sigma) = (self.mu, self.l, self.sigma);
        let lam = self.lambda(epochs);
        let scale = 0.5f64.powi(s as i32);
        let sig2 = sigma * sigma;
        let noise = 32.0 * sig2.max(4.0 * lam * lam * sig2) / (mu * v0 * scale * 0.25);
        let steps = (16.0 * l / mu).max(if sig2 > 0.0 { noise } else { 0.0 }).ceil().max(1.0);
        let step = if sigma > 0.0 { (v0 * scale / (2.0 * mu * steps)).sqrt() / sigma } else { f64::INFINITY };
        Epoch {
            radius: (2.0 * v0 * scale / mu).sqrt(),
            steps: steps.min(usize::MAX as f64) as usize,
            step: step.min(1.0 / (2.0 * l)),
        }
    }
}

fn lambda_of(a: f64) -> f64 {
    let ln = a.max(1.0).ln();
    (3.0 * ln).sqrt().max(ln)
}

/// The constants Theorem 3.1 / E.2's (75) is written in.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct TheoryConstants {
    /// µ (Assumption 2(iii)).
    pub mu: f64,
    /// L (Assumption 2(iv)).
    pub l: f64,
    /// K0 of Lemma C.3.
    pub k0: f64,
    /// K1 of Lemma C.3.
    pub k1: f64,
    /// C_gxy (Assumption 2(ii)).
    pub c_gxy: f64,
    /// M (Assumption 2(i)).
    pub m: f64,
    /// σ_{f,1}.
    pub sigma_f1: f64,
    /// σ_{g,1}.
    pub sigma_g1: f64,
    /// σ_{g,2}.
    pub sigma_g2: f64,
}

/// The values at the start that (75) reads: Δ = Φ(x_0) − inf Φ, ‖∇Φ(x_0)‖ and Δ_{z,0} =
/// ‖z_0 − z*(x_0)‖² (z_0 = 0).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct StartValues {
    /// Δ.
    pub gap: f64,
    /// ‖∇Φ(x_0)‖.
    pub grad_norm: f64,
    /// Δ_{z,0}.
    pub z_gap: f64,
}

impl TheoryConstants {
    /// From µ, L (= `l`), an L_f-smooth f (so (L_{x,0}, L_{x,1}) = (L_{y,0}, L_{y,1}) = (L_f, 0):
    /// K1 = 0), C_gxy, M = sup ‖∇y f‖ ≥ ‖∇y f(x, y*(x))‖, ρ and τ, and the noise levels
    /// σ_{f,1}, σ_{g,1}, σ_{g,2}: K0 of (16) = √(1 + C²/µ²)·(L_f + (C/µ)L_f + M(Cρ + τµ)/µ²).
    #[allow(clippy::too_many_arguments)]
    pub fn new(mu: f64, l: f64, l_f: f64, c_gxy: f64, m: f64, rho: f64, tau: f64, sigmas: [f64; 3]) -> Self {
        let k0 = (1.0 + c_gxy * c_gxy / (mu * mu)).sqrt()
            * (l_f + c_gxy / mu * l_f + m * (c_gxy * rho + tau * mu) / (mu * mu));
        Self { mu, l, k0, k1: 0.0, c_gxy, m, sigma_f1: sigmas[0], sigma_g1: sigmas[1], sigma_g2: sigmas[2] }
    }

    /// The parameters of (75) for target ε and failure probability δ. `start` gives (75)'s
    /// terms that depend on the start: η's Δ/‖∇Φ(x_0)‖ and εΔ/(C²_gxy Δ_{z,0}), and λ₁ of (46)/(82)
    /// through K = 4Δ/(ηε). Without it those two η terms are left out (η is then larger than
    /// the theorem's: for checking the other entries' algebra only), and σ_{g,1} > 0 is refused
    /// (λ₁ needs K).
    pub fn theorem_3_1(&self, epsilon: f64, delta: f64, start: Option<StartValues>) -> Result<BoRepParams> {
        let c = self;
        if c.sigma_g1 > 0.0 && start.is_none() {
            return Err(invalid(
                "sigma",
                "λ₁ of Lemma D.3 needs K = 4Δ/(ηε), Δ = Φ(x_0) − inf Φ: give the start's values".into(),
            ));
        }
        if !(epsilon.is_finite() && epsilon > 0.0 && delta > 0.0 && delta < 1.0) {
            return Err(invalid("epsilon", format!("needs ε > 0 and δ in (0, 1), got ε = {epsilon}, δ = {delta}")));
        }
        let (mu, eps, k0) = (c.mu, epsilon, c.k0);
        let var = c.sigma_f1.powi(2) + 2.0 * c.m * c.m * c.sigma_g2.powi(2) / (mu * mu);
        let s2 = c.sigma_g2.powi(2);
        // (75)'s four entries, and µ/L: a step of (57)'s proof needs ν = (1 − β)/µ ≤ 1/L (the z
        // recursion contracts), which (75) does not restate.
        let one_minus_beta = [
            eps * eps / var * (mu * mu / (32.0 * c.c_gxy * c.c_gxy)).min(1.0),
            c.c_gxy * c.c_gxy / (8.0 * s2),
            mu * mu / (16.0 * s2),
            0.25,
            mu / c.l,
        ]
        .into_iter()
        .fold(f64::INFINITY, f64::min);
        let nu = one_minus_beta / mu;
        let sig1 = c.sigma_g1.powi(2);
        let period = (sig1 * k0 * k0 / (mu * mu * eps * eps)).ceil().max(1.0);
        // min(1/K1, ε/K0, Δ/‖∇Φ(x_0)‖, εΔ/(C²_gxy Δ_{z,0})) (a term with a zero denominator is
        // no constraint).
        let mut first = (1.0 / c.k1).min(eps / k0);
        if let Some(st) = start {
            first = first.min(st.gap / st.grad_norm).min(eps * st.gap / (c.c_gxy * c.c_gxy * st.z_gap));
        }
        let eta_terms = [
            0.125 * first * one_minus_beta,
            // 1/√(2(1 + C²/µ²)(L²_{x,1} + L²_{y,1})): infinite with L_{x,1} = L_{y,1} = 0.
            mu * eps / (8.0 * k0 * period * c.c_gxy),
        ];
        let eta = eta_terms.into_iter().fold(f64::INFINITY, f64::min);
        let init = EpochSchedule { mu, l: c.l, sigma: c.sigma_g1, k0, epsilon: eps, delta };
        // λ1 of (46)/(82): max(√(3 ln(2K/(δI))), ln(2K/(δI))) with K = 4Δ/(ηε); it multiplies
        // σ_{g,1} only (γ and N below).
        let lam = match start {
            Some(st) => lambda_of(2.0 * (4.0 * st.gap / (eta * eps)) / (delta * period)),
            None => 0.0,
        };
        let root = (lam + 1.0).sqrt();
        let gamma =
            if sig1 > 0.0 { mu * eps * eps / (512.0 * k0 * k0 * sig1 * root * (lam + root)) } else { f64::INFINITY }
                .min(1.0 / (2.0 * c.l));
        let n = (4096.0 * sig1 * k0 * k0 * (lam + root).powi(2) / (mu * mu * eps * eps)).max(16.0 * c.l / mu).ceil();
        BoRepParams {
            eta,
            nu,
            gamma,
            beta: 1.0 - one_minus_beta,
            period: to_count(period),
            lower_steps: to_count(n),
            radius: eps / (4.0 * k0),
            init: InitRefinement::Epochs(init),
        }
        .checked()
    }
}

fn to_count(v: f64) -> usize {
    v.min(usize::MAX as f64) as usize
}

/// BO-REP's parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BoRepParams {
    /// The x step η (the length of every outer step).
    pub eta: f64,
    /// The z step ν.
    pub nu: f64,
    /// The lower-level step γ of UpdateLower.
    pub gamma: f64,
    /// The momentum β ∈ [0, 1).
    pub beta: f64,
    /// The period I ≥ 1.
    pub period: usize,
    /// The averaged steps N ≥ 1 per update.
    pub lower_steps: usize,
    /// The projection radius R > 0 (infinite: no projection).
    pub radius: f64,
    /// The initialization refinement.
    pub init: InitRefinement,
}

impl BoRepParams {
    /// Paper 003 App. F's structural values β = 0.9, I = 2, N = 3, R = 0.5 with the lower-level
    /// and z steps γ = ν = `step`, the outer step η = 0.01 (§4.1's upper learning rate) and the
    /// initialization refinement as `init_steps` plain SGD steps of `step` (y_0 their mean).
    pub fn structural(step: f64, init_steps: usize) -> Self {
        Self {
            eta: 0.01,
            nu: step,
            gamma: step,
            beta: 0.9,
            period: 2,
            lower_steps: 3,
            radius: 0.5,
            init: InitRefinement::Sgd { steps: init_steps, step },
        }
    }

    /// Checks every parameter's range.
    pub fn checked(self) -> Result<Self> {
        StepSizes { inner: self.gamma, adjoint: self.nu, outer: self.eta }.checked()?;
        if !(0.0..1.0).contains(&self.beta) {
            return Err(invalid("beta", format!("must be in [0, 1), got {}", self.beta)));
        }
        if self.period == 0 || self.lower_steps == 0 {
            return Err(invalid("period", "I and N must be >= 1".into()));
        }
        if self.lower_steps > MAX_LOWER_STEPS {
            let reason =
                format!("N = {} exceeds {MAX_LOWER_STEPS} (a larger epsilon or a smaller sigma)", self.lower_steps);
            return Err(invalid("lower_steps", reason));
        }
        if self.radius.is_nan() || self.radius <= 0.0 {
            return Err(invalid("radius", format!("must be > 0, got {}", self.radius)));
        }
        match self.init {
            InitRefinement::Sgd { step, .. } if !(step.is_finite() && step > 0.0) => {
                Err(invalid("init_step", format!("must be finite and > 0, got {step}")))
            }
            InitRefinement::Epochs(e) if !(e.mu > 0.0 && e.l >= e.mu && e.sigma >= 0.0 && e.k0 > 0.0) => {
                Err(invalid("init", format!("Epoch-SGD needs 0 < µ ≤ L, σ ≥ 0, K0 > 0: {e:?}")))
            }
            _ => Ok(self),
        }
    }
}

/// BO-REP's configuration: its parameters, batches and seed.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BoRepConfig {
    /// The parameters.
    pub params: BoRepParams,
    /// Mini-batch sizes (ξ̃: `inner`, ζ: `outer`, ξ: `hvp`).
    pub batches: BatchSizes,
    /// Seed of the streams.
    pub seed: u64,
}

/// BO-REP's parameters under `rule` (see the module doc), with the options' overrides.
pub fn resolve(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(BoRepParams, Params)> {
    let o = &s.bo_rep;
    let c = ctx.constants;
    let b = s.batches;
    let mut p = Params::new(rule.name());
    let lower = Lower::new(c, ctx.problem)?;
    let init_steps = o.init_steps.unwrap_or(s.inner_steps.unwrap_or(super::DEFAULT_STEPS));
    let structural = |src: Source| (0.9, 2usize, 3usize, 0.5, src);
    let (params, src_eta, src_low, src_z, src_struct) = match rule {
        StepRule::Default => {
            let (g, sg) = lower.sgd_step(b.inner, b.sampling);
            let (nu, sn) = lower.sgd_step(b.hvp, b.sampling);
            let params = BoRepParams { nu, ..BoRepParams::structural(g, init_steps) };
            let st = structural(Source::default_because(
                "paper 003 App. F's β = 0.9, I = 2, N = 3, R = 0.5 (all three experiments)",
            ));
            let eta = Source::experiments(
                "paper 003 §4.1's upper learning rate 0.01: a normalized step is a length in x, which no 1/L form gives",
            );
            (params, eta, sg, sn, st)
        }
        StepRule::Experiments => {
            let (lr_low, lr_up, lr_z, cite) = match ctx.family {
                "meta_learning" => (0.001, 0.01, 0.01, "paper 003 §4.1 (hyper-representation): (lower, upper) = (0.001, 0.01), z 0.01"),
                "hyperclean" => (0.05, 0.05, 0.05, "paper 003 §4.3 (data hyper-cleaning): (lower, upper) = (0.05, 0.05), z 0.05"),
                f => {
                    return Err(no_experiment(
                        "bo-rep",
                        f,
                        "paper 003 ran it on hyper-representation (§4.1), scalar-λ HPO with RNNs (§4.2) and data hyper-cleaning (§4.3)",
                    ))
                }
            };
            let params = BoRepParams { eta: lr_up, nu: lr_z, ..BoRepParams::structural(lr_low, init_steps) };
            let e = || Source::experiments(cite);
            (params, e(), e(), e(), structural(Source::experiments("paper 003 §4: β = 0.9, I = 2, N = 3, R = 0.5")))
        }
        StepRule::Theory => {
            if ctx.problem.n_samples_g() > 1 || ctx.problem.n_samples_f() > 1 {
                return Err(KernelError::InvalidParameter {
                    name: "steps",
                    reason:
                        "paper 003 Theorem 3.1 needs the noise levels σ_{f,1}, σ_{g,1}, σ_{g,2} (Assumption 3) bounded \
                             separately, and this finite sum does not bound them (a quadratic f's ∇y f is unbounded): \
                             use --steps default"
                            .into(),
                });
            }
            let k = &c.known;
            let need = |v: Option<f64>, what: &str| {
                v.ok_or_else(|| {
                    invalid("steps", format!("paper 003 Theorem 3.1 needs {what}, which this problem does not bound"))
                })
            };
            // One sample: the oracles are exact, σ = 0.
            let t = TheoryConstants::new(
                c.mu_g()?,
                c.l_g()?,
                need(k.l_f, "L_f")?,
                need(k.cross_bound, "C_gxy = sup ‖∇xy g‖ (Assumption 2 (ii))")?,
                need(k.grad_y_f_bound, "M ≥ ‖∇y f(x, y*(x))‖ (Assumption 2 (i))")?,
                need(k.hess_lipschitz, "ρ")?,
                need(k.cross_lipschitz, "τ")?,
                [0.0; 3],
            );
            let eps = s.epsilon.or(o.epsilon).unwrap_or(DEFAULT_EPSILON);
            // Δ, ‖∇Φ(x_0)‖ and ‖z*(x_0)‖² from the problem's exact reference (z = v*, z_0 = 0).
            let exact = ctx.problem.exact().ok_or_else(|| {
                invalid(
                    "steps",
                    "paper 003 Theorem 3.1's η needs Φ(x_0) − inf Φ: a problem with its closed form".into(),
                )
            })?;
            let (_, l_star) = exact.minimum().ok_or_else(|| {
                invalid("steps", "paper 003 Theorem 3.1's η needs inf Φ, which this problem does not give".into())
            })?;
            let (mut g, mut z) = (vec![0.0; ctx.x0.len()], vec![0.0; ctx.problem.dim_y()]);
            exact.hypergradient(ctx.x0, &mut g);
            exact.v_star(ctx.x0, &mut z);
            let start = StartValues {
                gap: exact.value(ctx.x0) - l_star,
                grad_norm: g.iter().map(|v| v * v).sum::<f64>().sqrt(),
                z_gap: z.iter().map(|v| v * v).sum::<f64>(),
            };
            p.set("gap", "Δ = Φ(x_0) − inf Φ", start.gap, Source::problem("the closed form"));
            let params = t.theorem_3_1(eps, o.delta.unwrap_or(DEFAULT_DELTA), Some(start))?;
            p.set("k0", "K0 of (16)", t.k0, Source::theorem("paper 003 (16) with L-smooth f (K1 = 0)"));
            let th = || Source::theorem("paper 003 Thm 3.1 / E.2, (75) (σ = 0: one sample)");
            (params, th(), th(), th(), structural(th()))
        }
    };
    let mut params = params;
    let (_, _, _, _, struct_src) = src_struct;
    let eta = user_or(s.outer_step, "--outer-step", s, (params.eta, src_eta));
    let gamma = user_or(s.inner_step, "--inner-step", s, (params.gamma, src_low));
    let nu = user_or(s.adjoint_step.or(o.z_step), "--z-step", s, (params.nu, src_z));
    let lower_step = user_or(o.lower_step, "--lower-step", s, gamma.clone());
    params.eta = eta.0;
    params.nu = nu.0;
    params.gamma = lower_step.0;
    if let InitRefinement::Sgd { step, .. } = &mut params.init {
        *step = gamma.0;
    }
    let pick = |v: Option<usize>, d: usize, flag: &'static str| match v {
        Some(v) => (v, Source::user(flag)),
        None => (d, struct_src.clone()),
    };
    let period = pick(o.period, params.period, "--period");
    let lower_steps = pick(o.lower_steps, params.lower_steps, "--lower-steps");
    params.period = period.0;
    params.lower_steps = lower_steps.0;
    params.radius = o.radius.unwrap_or(params.radius);
    params.beta = o.beta.unwrap_or(params.beta);
    let params = params.checked()?;
    p.set("outer_step", "η, the length of every outer step", params.eta, eta.1);
    p.set("inner_step", "γ, the lower-level step of UpdateLower", params.gamma, lower_step.1);
    p.set("adjoint_step", "ν, the z step", params.nu, nu.1);
    let beta_src = if o.beta.is_some() { Source::user("--momentum-beta") } else { struct_src.clone() };
    p.set("momentum", "β, the momentum of the normalized step", params.beta, beta_src);
    p.set("period", "I, the period of the lower-level updates", params.period, period.1);
    p.set("lower_steps", "N, averaged projected steps per update", params.lower_steps, lower_steps.1);
    let radius_src = if o.radius.is_some() { Source::user("--radius") } else { struct_src };
    p.set("radius", "R, the radius of the moving ball", params.radius, radius_src);
    if let InitRefinement::Sgd { steps, step } = params.init {
        let src = match (o.init_steps, s.inner_steps) {
            (Some(_), _) => Source::user("--init-steps"),
            (None, Some(_)) => Source::user("--inner-steps"),
            (None, None) => Source::default_because("10 steps (the paper does not give the number)"),
        };
        p.set("init_steps", "initialization refinement: SGD steps (y_0 their mean)", steps, src);
        p.set("init_step", "initialization refinement: SGD step", step, gamma.1);
    }
    super::amigo::record_batches(
        &mut p,
        &b,
        ["ξ̃ (UpdateLower, one per step)", "ζ_k (∇x F and ∇y F)", "ξ_k (HVP and cross product)", "(ξ_k)"],
    );
    p.params.retain(|q| q.name != "batch_cross");
    p.set(
        "output",
        "the reported point",
        "x_a uniform over x_0..x_{K−1}",
        Source::theorem("paper 003 Thm 3.1 bounds (1/K)Σ E‖∇Φ(x_k)‖"),
    );
    Ok((params, p))
}

/// BO-REP under `rule`, as the registry builds it.
pub fn build(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(Box<dyn Algorithm>, Params)> {
    let (params, p) = resolve(rule, ctx, s)?;
    let config = BoRepConfig { params, batches: s.batches, seed: s.seed };
    Ok((Box::new(BoRep::new(config)?), p))
}

/// y ← Π_{B(center, radius)}(y).
pub fn project_ball(y: &mut [f64], center: &[f64], radius: f64) {
    if radius.is_infinite() {
        return;
    }
    let dist = y.iter().zip(center).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    if dist > radius {
        let s = radius / dist;
        y.iter_mut().zip(center).for_each(|(a, b)| *a = b + s * (*a - b));
    }
}

/// x ← x − η m/‖m‖, and x unchanged when ‖m‖ = 0 (the module doc). Returns the step length.
pub fn normalized_step(eta: f64, m: &[f64], x: &mut [f64]) -> f64 {
    let norm = ops::norm2(m);
    if norm > 0.0 {
        ops::axpy(-eta / norm, m, x);
        eta
    } else {
        0.0
    }
}

struct State {
    z: Vec<f64>,
    m: Vec<f64>,
    fx: Vec<f64>,
    fy: Vec<f64>,
    hz: Vec<f64>,
    cz: Vec<f64>,
    center: Vec<f64>,
    mean: Vec<f64>,
    work: Vec<f64>,
    lower: BatchStream,
    f: BatchStream,
    g2: BatchStream,
    init: BatchStream,
    k: usize,
    beta_pow: f64,
    refreshes: usize,
}

/// BO-REP (see the module doc).
pub struct BoRep {
    config: BoRepConfig,
    it: Iterates,
    state: Option<State>,
}

impl BoRep {
    /// BO-REP with `config`; [`Algorithm::init`] sizes it for a problem.
    pub fn new(config: BoRepConfig) -> Result<Self> {
        config.params.checked()?;
        Ok(Self { config, it: Iterates::default(), state: None })
    }
    /// The configuration.
    pub fn config(&self) -> &BoRepConfig {
        &self.config
    }
    /// The momentum m_{k+1} of the last step.
    pub fn momentum(&self) -> &[f64] {
        self.state.as_ref().map_or(&[], |s| &s.m)
    }
    /// The z iterate.
    pub fn z(&self) -> &[f64] {
        self.state.as_ref().map_or(&[], |s| &s.z)
    }
    /// The number of lower-level updates (UpdateLower refreshes) so far.
    pub fn refreshes(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.refreshes)
    }
}

/// `steps` projected SGD steps of size `step` on B(center, radius) from y, with their running
/// mean in `mean` (Algorithm 2 lines 3–5, Algorithm 3 lines 3–6).
#[allow(clippy::too_many_arguments)]
fn projected_sgd(
    problem: &dyn BilevelProblem,
    x: &[f64],
    y: &mut [f64],
    steps: usize,
    step: f64,
    radius: f64,
    stream: &mut BatchStream,
    bufs: (&[f64], &mut [f64], &mut [f64]),
) -> Result<()> {
    let (center, mean, work) = bufs;
    for t in 0..steps {
        interrupt::check()?;
        problem.grad_y_g(x, y, stream.draw(), work);
        ops::axpy(-step, work, y);
        project_ball(y, center, radius);
        // ȳ^{t+1} = (t/(t+1)) ȳ^t + y^{t+1}/(t+1).
        let w = 1.0 / (t + 1) as f64;
        ops::axpby(w, y, 1.0 - w, mean);
    }
    Ok(())
}

impl State {
    /// Algorithm 3 (or the experiments' plain SGD) at x_0, from y = y'_0.
    fn refine(&mut self, problem: &dyn BilevelProblem, init: InitRefinement, x: &[f64], y: &mut [f64]) -> Result<()> {
        match init {
            InitRefinement::None => {}
            InitRefinement::Sgd { steps, step } => {
                // One epoch of Algorithm 3 without its ball: y_0 is the mean of the iterates.
                self.center.copy_from_slice(y);
                let bufs = (&self.center[..], &mut self.mean[..], &mut self.work[..]);
                projected_sgd(problem, x, y, steps, step, f64::INFINITY, &mut self.init, bufs)?;
                if steps > 0 {
                    y.copy_from_slice(&self.mean);
                }
            }
            InitRefinement::Epochs(e) => {
                problem.grad_y_g(x, y, Batch::Full, &mut self.work);
                let v0 = ops::norm_sq(&self.work) / (2.0 * e.mu);
                if v0 == 0.0 {
                    return Ok(());
                }
                let epochs = e.epochs(v0);
                let total = (0..epochs).fold(0usize, |a, s| a.saturating_add(e.epoch(v0, epochs, s).steps));
                if total > MAX_LOWER_STEPS {
                    let reason = format!(
                        "Epoch-SGD needs {total} steps for V0 = {v0:e} (k† = {epochs}), more than {MAX_LOWER_STEPS} \
                         (a larger epsilon or a smaller sigma)"
                    );
                    return Err(invalid("init", reason));
                }
                for s in 0..epochs {
                    let ep = e.epoch(v0, epochs, s);
                    self.center.copy_from_slice(y);
                    let bufs = (&self.center[..], &mut self.mean[..], &mut self.work[..]);
                    projected_sgd(problem, x, y, ep.steps, ep.step, ep.radius, &mut self.init, bufs)?;
                    y.copy_from_slice(&self.mean);
                }
            }
        }
        Ok(())
    }
}

impl Algorithm for BoRep {
    fn name(&self) -> &str {
        "bo-rep"
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        self.it = Iterates::new(problem, x0, y0)?;
        let (b, seed) = (self.config.batches, self.config.seed);
        let (dx, dy, n_f, n_g) = (problem.dim_x(), problem.dim_y(), problem.n_samples_f(), problem.n_samples_g());
        self.state = Some(State {
            z: vec![0.0; dy],
            m: vec![0.0; dx],
            fx: vec![0.0; dx],
            fy: vec![0.0; dy],
            hz: vec![0.0; dy],
            cz: vec![0.0; dx],
            center: vec![0.0; dy],
            mean: vec![0.0; dy],
            work: vec![0.0; dy],
            lower: BatchStream::new(n_g, b.inner, b.sampling, seed, LOWER_STREAM, 0)?,
            f: BatchStream::new(n_f, b.outer, b.sampling, seed, F_STREAM, 0)?,
            g2: BatchStream::new(n_g, b.hvp, b.sampling, seed, G2_STREAM, 0)?,
            init: BatchStream::new(n_g, b.inner, b.sampling, seed, INIT_STREAM, 0)?,
            k: 0,
            beta_pow: 1.0,
            refreshes: 0,
        });
        Ok(())
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let s = initialised(&mut self.state)?;
        let (p, it) = (&self.config.params, &mut self.it);
        check_len("x", problem.dim_x(), it.x.len())?;
        if s.k == 0 {
            s.refine(problem, p.init, &it.x, &mut it.y)?;
            it.x_at_y.copy_from_slice(&it.x);
        }
        let (x, y) = (&it.x[..], &it.y[..]);
        // Lines 4–5 at (x_k, y_k, z_k): one ζ_k for ∇x F and ∇y F, one ξ_k for both products
        // (each batch's samples counted once).
        {
            let batch = s.f.draw();
            problem.grad_y_f(x, y, batch, &mut s.fy);
            let fx = &mut s.fx;
            problem.replay(&mut || problem.grad_x_f(x, y, batch, fx));
        }
        {
            let batch = s.g2.draw();
            problem.hvp(x, y, &s.z, batch, &mut s.hz);
            let (z, cz) = (&s.z, &mut s.cz);
            problem.replay(&mut || problem.cross(x, y, z, batch, cz));
        }
        // m_{k+1} = βm_k + (1−β)(∇x F − ∇x∇y G z_k);  z_{k+1} = z_k − ν(∇²y G z_k − ∇y F).
        ops::axpy(-1.0, &s.cz, &mut s.fx);
        ops::axpby(1.0 - p.beta, &s.fx, p.beta, &mut s.m);
        ops::axpy(-1.0, &s.fy, &mut s.hz);
        ops::axpy(-p.nu, &s.hz, &mut s.z);
        // Line 3: UpdateLower(x_k, y_k) (after lines 4–5 read y_k).
        if s.k > 0 && s.k % p.period == 0 {
            s.center.copy_from_slice(&it.y);
            let bufs = (&s.center[..], &mut s.mean[..], &mut s.work[..]);
            projected_sgd(problem, &it.x, &mut it.y, p.lower_steps, p.gamma, p.radius, &mut s.lower, bufs)?;
            it.y.copy_from_slice(&s.mean);
            it.x_at_y.copy_from_slice(&it.x);
            s.refreshes += 1;
        }
        // Line 6, and the reported estimate m_{k+1}/(1 − β^{k+1}).
        s.beta_pow *= p.beta;
        it.grad.copy_from_slice(&s.m);
        ops::scale(1.0 / (1.0 - s.beta_pow), &mut it.grad);
        normalized_step(p.eta, &s.m, &mut it.x);
        s.k += 1;
        Ok(())
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
    /// Theorem 3.1 bounds (1/K) Σ_{k<K} E‖∇Φ(x_k)‖: a uniform draw from x_0..x_{K−1}, with
    /// the mean of ‖∇L(x_k)‖ over them beside it.
    fn output(&self) -> Output {
        Output::Uniform { first: 0, seed: self.config.seed }
    }
}
