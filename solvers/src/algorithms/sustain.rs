//! SUSTAIN and Adam-SUSTAIN — Khanduri, Zeng, Hong, Wai, Wang & Yang, *A Near-Optimal Algorithm
//! for Stochastic Bilevel Optimization via Double-Momentum* (NeurIPS 2021; paper 004),
//! Algorithm 1 (SUSTAIN) and Algorithm 2 (Adam-SUSTAIN, App. A, options I and II of eq. (20)).
//!
//! ```text
//! η^f_0 = η^g_0 = 1;  for t = 0..T−1:
//!   h^g_t = ∇y g(x_t,y_t;ζ_t) + (1−η^g_t)(h^g_{t−1} − ∇y g(x_{t−1},y_{t−1};ζ_t))        (13)
//!   h^f_t = ∇̄f(x_t,y_t;ξ̄_t) + (1−η^f_t)(h^f_{t−1} − ∇̄f(x_{t−1},y_{t−1};ξ̄_t))        (14)
//!   y_{t+1} = y_t − β_t h^g_t,   x_{t+1} = x_t − α_t h^f_t
//! ∇̄f(x,y;ξ̄) = ∇x f(x,y;ξ) − (K/L_g) ∇xy g(x,y;ζ(0)) Π_{i=1..k} (I − ∇yy g(x,y;ζ(i))/L_g) ∇y f(x,y;ξ)   (7)
//! ```
//!
//! with k ~ U{0..K−1}. Both momentum recursions are STORM's: the two points of (13) share ζ_t,
//! the two points of (14) share ξ̄_t entirely (ξ, ζ(0), every ζ(i) and k: Lemma 3.1 needs the
//! same sample): the sample is drawn once and replayed ([`TruncatedHypergradient`]). The
//! product of (7) is the kernel's [`RandomizedTruncation`](bilevel_kernels::linsolve::RandomizedTruncation) (not a second implementation).
//!
//! Cost per iteration t ≥ 1 with η^f_t, η^g_t < 1 (§2.9 of the notes, Table 1's "per-iteration
//! complexity" in oracle calls): 2 ∂y g, 2 (∂x f, ∂y f) pairs, 2k_t HVPs (k_t ≤ K − 1), 2 cross
//! products; at t = 0 (η = 1, the (x_{−1}, y_{−1}) terms vanish and are not evaluated) and
//! whenever a clipped η equals 1: half of that. Adam-SUSTAIN option I costs the same; option II
//! evaluates (7) once per iteration (1 pair, k_t HVPs, 1 cross).
//!
//! Claimed complexity (Theorem 3.2, Table 1; squared-norm ε: E‖∇ℓ(x_{a(T)})‖² ≤ ε):
//! Õ(ε^{-3/2}) samples of both levels, O(1) batch, K = (L_g/µ_g) log(C_gxy C_fy T/µ_g) Hessian
//! samples per iteration. Theorem 3.2 returns x_{a(T)} with a(T) ~ U{1..T}: SUSTAIN's
//! [`Algorithm::output`] is that draw ([`Output::Uniform`] from x_1, drawn by the driver from
//! its own stream, with the mean of ‖∇L(x_t)‖² over t = 1..T beside it); Adam-SUSTAIN has no
//! theorem in the paper and reports its last iterate.
//!
//! Parameters ([`build`]; α_t = a/(w + t)^{1/3}, β_t = c_β α_t, η^•_t = min(1, c_η• α_t²) for
//! t ≥ 1, η_0 = 1 by Algorithm 1's input; K the horizon of (7); L_b its scale):
//! - [`StepRule::Default`]: paper 004 §4's shape (w = 1, η_t = min(1, 2/(1+t)^{2/3}), which is
//!   c_η α_t² with §4's α_0 = 0.1 and c_η = 200) with the scales written in the problem's
//!   constants: a = 1/L_L (α_0 = 1/L_L, the gradient step of the value function), c_β = L_L·β_0
//!   with β_0 = 1/(2ℒ(b)) (1/L_g on full batches; [`super::lower`]), c_η = 2L_L², K = 10, L_b =
//!   L_max on mini-batches (L_g on full ones); β_t and L_b follow the problem's constants
//!   along the run where they depend on x. Adam-SUSTAIN: α_t = 0.005 constant (paper 004 App. A;
//!   Adam's step is a length, no 1/L form applies), option II, its lower level as SUSTAIN's.
//! - [`StepRule::Experiments`]: SUSTAIN on data hyper-cleaning (`hyperclean`), §4:
//!   α_t = β_t = 0.1/(1 + t)^{1/3} (a = 0.1, w = 1, c_β = 1); the tuned c_ηf, c_ηg are not
//!   reported: we take the meta-learning grid's smallest η_t = c̄ α_t²/κ² with c̄ = 2,
//!   κ = 0.1 (the hyper-cleaning scale), i.e. c_η = 200. Adam-SUSTAIN on meta-learning
//!   (`meta_learning`), App. A: α_t = 0.005, option II (η^f, which option II does not read,
//!   and the lower level as SUSTAIN's default).
//! - [`StepRule::Theory`]: Theorem 3.2's (17) with (29), (36): a = 1, w, c_β, c_ηf, c_ηg from
//!   the constants of Assumptions 1–3 ([`TheoryConstants::from_problem`],
//!   [`Schedule::theorem_3_2`]) and K = ⌈(L_g/µ_g) log(C_gxy C_fy T/µ_g)⌉ with T the run's
//!   horizon (`--max-iters`). The constants are the problem's bounds (the F.1 quadratic has
//!   every one: C_fy = ‖C_f‖, C_gxy = ‖B_g‖, L_gxy = L_gyy = 0); a problem without one (a
//!   quadratic f in y has no C_fy) is refused, naming it. Where the value function ℓ is known
//!   µ_f-strongly convex (the problem reports µ_L: the F.1 quadratic), Theorem 3.3 instead
//!   ([`Schedule::theorem_3_3`]): K = ⌈(L_g/(2µ_g)) log(C_gxy² C_fy² T/µ_g²)⌉, a constant α (the
//!   least of its five bounds), β = ĉ_β α with ĉ_β = 8L_y² + 8L² + 2µ_f/µ_g, η^f = (µ_f + 1)α,
//!   η^g ≡ 1, and the last iterate reported ((19) bounds E[ℓ(x_t) − ℓ*] at every t; claimed
//!   Õ(ε⁻¹) samples). Both theorems' steps are tiny on a κ_g = 10 quadratic (Theorem 3.3's α ≈
//!   1.7·10⁻⁸ on the F.1 `tiny` preset, Theorem 3.2's w ≈ 7·10¹⁵): they are the theorems', not
//!   tuned. Adam-SUSTAIN has no theorem (the paper: "we do not have any theoretical performance
//!   guarantees"): refused.
//! - The paper's upper-level-only momentum (η^g ≡ 1, a remark deferring to MSTSA) is reachable
//!   with `SustainOptions::upper_only` (`--upper-momentum-only`); c_η = ∞ on both levels is
//!   TTSA-type updates.
//!
//! Ambiguities resolved (notes §2.4–2.7): η_t = min(1, c α_t²) at index t (App. D.5 writes
//! η_{t+1} = c α_t²); (14) evaluates (7) at (x_t, y_t), not y_{t+1} (Algorithm 1 as printed:
//! a Jacobi update); η > 1 is clipped to 1 (the experiments' η exceeds 1 early on); Adam keeps
//! its raw moments and bias-corrects copies (standard Adam; Alg. 2 lines 6 and 8 literally
//! overwrite them; its footnote says PyTorch's defaults, which do not); the lower level of
//! Adam-SUSTAIN is (13) unchanged (Alg. 2 is an update direction for x only). The inner error
//! of a row is ‖y_{t+1} − y*(x_t)‖ (the house convention of [`Iterates::x_at_y`]: y_{t+1} was
//! computed at x_t). `settings.outer_step` replaces the scale a (β_t = c_β α_t and η_t follow).
//!
//! Deviations: none in the recursions. The stochastic quadratics' samples are rank one, so a
//! single sample g(·;ζ) is not µ_g-strongly convex (Assumption 3 asks it to be): µ_g is the
//! mean's; the estimator's products stay contractive (‖I − H_ζ/L_g‖ ≤ 1 with L_g per-sample).

use super::lower::{over_l_outer, Lower, LowerScale};
use super::{no_experiment, Context, Iterates, Settings, StepRule, DEFAULT_STEPS};
use crate::constants::Constant;
use crate::estimators::TruncatedHypergradient;
use crate::params::{Params, Source};
use crate::sampling::{BatchSizes, BatchStream};
use crate::{Algorithm, Output};
use bilevel_kernels::{check_len, BilevelProblem, KernelError, Result};

/// Stream numbers of SUSTAIN (independent streams of one seed): ζ_t here, the estimator's
/// (1–4) in [`crate::estimators::truncated`].
const G_STREAM: u64 = 0;

fn invalid(name: &'static str, reason: String) -> KernelError {
    KernelError::InvalidParameter { name, reason }
}

/// Theorem 3.2's K = ⌈(L_g/µ_g) log(C_gxy C_fy T/µ_g)⌉ (‖B_t‖ ≤ 1/T), at least 1.
pub fn theorem_3_2_horizon(l_g: f64, mu_g: f64, c_gxy: f64, c_fy: f64, iterations: usize) -> usize {
    theorem_horizon(l_g / mu_g, c_gxy * c_fy * iterations as f64 / mu_g)
}

/// Theorem 3.3's K = ⌈(L_g/(2µ_g)) log(C_gxy² C_fy² T/µ_g²)⌉, at least 1.
pub fn theorem_3_3_horizon(l_g: f64, mu_g: f64, c_gxy: f64, c_fy: f64, iterations: usize) -> usize {
    theorem_horizon(l_g / (2.0 * mu_g), (c_gxy * c_fy / mu_g).powi(2) * iterations as f64)
}

/// ⌈factor·log(arg)⌉, at least 1 (saturating: an infinite K is refused by the rule).
fn theorem_horizon(factor: f64, arg: f64) -> usize {
    let k = factor * arg.ln();
    if k.is_nan() {
        1
    } else {
        k.ceil().max(1.0) as usize
    }
}

/// The constants of Assumptions 1–3 that Theorem 3.2's parameters (29), (36) are written in.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct TheoryConstants {
    /// µ_g: strong convexity of g(·;ζ) in y.
    pub mu_g: f64,
    /// L_g: Lipschitz constant of ∇y g(·;ζ) (bounds every sample Hessian).
    pub l_g: f64,
    /// L_fx: Lipschitz constant of ∇x f.
    pub l_fx: f64,
    /// L_fy: Lipschitz constant of ∇y f.
    pub l_fy: f64,
    /// C_fy: bound on ‖∇y f‖ (only multiplies L_gxy, L_gyy).
    pub c_fy: f64,
    /// C_gxy: bound on ‖∇²xy g‖.
    pub c_gxy: f64,
    /// L_gxy: Lipschitz constant of ∇²xy g (0 for a quadratic g).
    pub l_gxy: f64,
    /// L_gyy: Lipschitz constant of ∇²yy g (0 for a quadratic g).
    pub l_gyy: f64,
}

impl TheoryConstants {
    /// From a problem's bounds ([`bilevel_kernels::ProblemConstants`]): µ_g, L_g = `l_g` (the
    /// per-batch bound), L_fx and L_fy bounded by L_f, C_fy = sup ‖∂y f‖, C_gxy = sup ‖∂x∂y g‖,
    /// L_gxy and L_gyy; `Err` naming the first the problem does not bound (never a stand-in).
    pub fn from_problem(c: &crate::Constants, l_g: f64) -> Result<Self> {
        let k = &c.known;
        let need = |v: Option<f64>, what: &str| {
            v.ok_or_else(|| {
                invalid(
                    "steps",
                    format!(
                        "paper 004's Theorem 3.2 needs {what}, which this problem does not bound: use --steps default"
                    ),
                )
            })
        };
        let l_f = need(k.l_f, "L_fx and L_fy (Assumption 1 (i))")?;
        Ok(Self {
            mu_g: c.mu_g()?,
            l_g,
            l_fx: l_f,
            l_fy: l_f,
            c_fy: need(k.grad_y_f_bound, "C_fy = sup ‖∇y f‖ (Assumption 1 (ii); a quadratic f in y has none)")?,
            c_gxy: need(k.cross_bound, "C_gxy = sup ‖∇xy g‖ (Assumption 2 (v))")?,
            l_gxy: need(k.cross_lipschitz, "L_gxy (Assumption 2 (iv))")?,
            l_gyy: need(k.hess_lipschitz, "L_gyy (Assumption 2 (iv))")?,
        })
    }

    /// Lemma 2.2's (L, L_f, L_y): L = L_fx + L_fy C_gxy/µ_g + C_fy(L_gxy/µ_g + L_gyy C_gxy/µ_g²),
    /// L_f = L + L C_gxy/µ_g, L_y = C_gxy/µ_g.
    pub fn lemma_2_2(&self) -> (f64, f64, f64) {
        let c = self;
        let curv = product(c.c_fy, c.l_gxy / c.mu_g + c.l_gyy * c.c_gxy / (c.mu_g * c.mu_g));
        let l = c.l_fx + c.l_fy * c.c_gxy / c.mu_g + curv;
        (l, l + l * c.c_gxy / c.mu_g, c.c_gxy / c.mu_g)
    }

    /// Lemma 3.1 / C.2's L_K² for K = `horizon` (with L²_gyy in the last term, as its proof and
    /// (15) have it).
    pub fn l_k_squared(&self, horizon: usize) -> f64 {
        let c = self;
        let k = horizon as f64;
        let den = 2.0 * c.mu_g * c.l_g - c.mu_g * c.mu_g;
        let gap = (c.l_g - c.mu_g).powi(2);
        2.0 * c.l_fx.powi(2)
            + 6.0 * (c.c_gxy * c.l_fy).powi(2) * k / den
            + 6.0 * product(c.c_fy * c.c_fy, c.l_gxy * c.l_gxy) * k / den
            + 6.0 * product((c.c_gxy * c.c_fy).powi(2), c.l_gyy * c.l_gyy) * k.powi(3) / (gap * den)
    }
}

/// a·b with 0·anything = 0 (a term whose Lipschitz constant is 0 vanishes even if C_fy = ∞).
fn product(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        0.0
    } else {
        a * b
    }
}

/// α_t = `scale`/(w + t)^{1/3} (`constant`: α_t = `scale`, Theorem 3.3), β_t = c_β α_t,
/// η^f_t = min(1, c_ηf α_t²), η^g_t = min(1, c_ηg α_t²) for t ≥ 1, η_0 = 1 (Algorithm 1's
/// input). An infinite c_η gives η ≡ 1: no momentum on that level (c_ηg = ∞: the paper's
/// "upper-level momentum only"; both: TTSA).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Schedule {
    /// a (1 in Theorem 3.2).
    pub scale: f64,
    /// w.
    pub w: f64,
    /// c_β.
    pub c_beta: f64,
    /// c_ηf.
    pub c_eta_f: f64,
    /// c_ηg.
    pub c_eta_g: f64,
    /// Constant steps (Theorem 3.3: α_t ≡ a, so β and η are constant too); w is not read.
    pub constant: bool,
}

/// The step sizes and momentum weights of one iteration.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ScheduleAt {
    /// α_t (x).
    pub alpha: f64,
    /// β_t (y).
    pub beta: f64,
    /// η^f_t.
    pub eta_f: f64,
    /// η^g_t.
    pub eta_g: f64,
}

impl Schedule {
    /// §4's data hyper-cleaning values, η from the meta-learning grid (see the module doc).
    pub const EXPERIMENTS: Schedule =
        Schedule { scale: 0.1, w: 1.0, c_beta: 1.0, c_eta_f: 200.0, c_eta_g: 200.0, constant: false };

    /// Theorem 3.2: a = 1 and (29), (36) with L_µg = µ_g L_g/(µ_g + L_g):
    /// c_β = 6√2 L_y L/L_µg; c_ηf = 1/(3L_f) + max{36L_K², 4L_K² L_µg(µ_g + L_g)c_β²/L²};
    /// c_ηg = 1/(3L_f) + 8L_g²c_β² + [8L²/L_µg² + 2L²/(L_µg(µ_g + L_g))]·max{36L_g²,
    /// 4L_g² L_µg(µ_g + L_g)c_β²/L²}; w = max{2, 27L_f³, 8L_µg³c_β³, (µ_g + L_g)³c_β³,
    /// c_ηf^{3/2}, c_ηg^{3/2}} (the notes' reading of the extracted layout).
    pub fn theorem_3_2(c: &TheoryConstants, horizon: usize) -> Result<Self> {
        let (l, l_f, l_y) = c.lemma_2_2();
        let (mu, lg) = (c.mu_g, c.l_g);
        let l_mu = mu * lg / (mu + lg);
        let c_beta = 6.0 * 2f64.sqrt() * l_y * l / l_mu;
        let lk2 = c.l_k_squared(horizon);
        let c_eta_f = 1.0 / (3.0 * l_f) + (36.0 * lk2).max(4.0 * lk2 * l_mu * (mu + lg) * c_beta * c_beta / (l * l));
        let bar_g = (36.0 * lg * lg).max(4.0 * lg * lg * l_mu * (mu + lg) * c_beta * c_beta / (l * l));
        let c_eta_g = 1.0 / (3.0 * l_f)
            + 8.0 * lg * lg * c_beta * c_beta
            + (8.0 * l * l / (l_mu * l_mu) + 2.0 * l * l / (l_mu * (mu + lg))) * bar_g;
        let w = [
            2.0,
            27.0 * l_f.powi(3),
            8.0 * (l_mu * c_beta).powi(3),
            ((mu + lg) * c_beta).powi(3),
            c_eta_f.powf(1.5),
            c_eta_g.powf(1.5),
        ]
        .into_iter()
        .fold(0.0, f64::max);
        Schedule { scale: 1.0, w, c_beta, c_eta_f, c_eta_g, constant: false }.checked()
    }

    /// Theorem 3.3 (ℓ also µ_f-strongly convex), for the estimator's horizon `k`: constant steps
    /// α = min{1/(µ_f + 1), 1/(2µ_g ĉ_β), µ_g/(ĉ_β L_g²), 1/(8L_K² + L_f), (L² + 2L_y²)/(4L_K² L_g²
    /// ĉ_β²)}, β = ĉ_β α with ĉ_β = 8L_y² + 8L² + 2µ_f/µ_g, η^f = (µ_f + 1)α (c_ηf = (µ_f + 1)/α)
    /// and η^g ≡ 1 (no lower-level momentum). Returns the schedule and α.
    pub fn theorem_3_3(c: &TheoryConstants, mu_f: f64, k: usize) -> Result<Self> {
        let (l, l_f, l_y) = c.lemma_2_2();
        let (mu, lg) = (c.mu_g, c.l_g);
        let c_beta = 8.0 * l_y * l_y + 8.0 * l * l + 2.0 * mu_f / mu;
        let lk2 = c.l_k_squared(k);
        let alpha = [
            1.0 / (mu_f + 1.0),
            1.0 / (2.0 * mu * c_beta),
            mu / (c_beta * lg * lg),
            1.0 / (8.0 * lk2 + l_f),
            (l * l + 2.0 * l_y * l_y) / (4.0 * lk2 * lg * lg * c_beta * c_beta),
        ]
        .into_iter()
        .fold(f64::INFINITY, f64::min);
        let c_eta_f = (mu_f + 1.0) / alpha;
        Schedule { scale: alpha, w: 1.0, c_beta, c_eta_f, c_eta_g: f64::INFINITY, constant: true }.checked()
    }

    /// No momentum on either level (η ≡ 1), the same steps: TTSA-type updates.
    pub fn without_momentum(self) -> Self {
        Self { c_eta_f: f64::INFINITY, c_eta_g: f64::INFINITY, ..self }
    }

    /// Checks a, c_β, c_η > 0 (c_η may be +∞), a and c_β finite, w ≥ 0 finite.
    pub fn checked(self) -> Result<Self> {
        let finite = [("scale", self.scale), ("c_beta", self.c_beta)];
        for (name, v) in finite {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(name, format!("must be finite and > 0, got {v}")));
            }
        }
        if !(self.w.is_finite() && self.w >= 0.0) {
            return Err(invalid("w", format!("must be finite and >= 0, got {}", self.w)));
        }
        for (name, v) in [("c_eta_f", self.c_eta_f), ("c_eta_g", self.c_eta_g)] {
            if v.is_nan() || v <= 0.0 {
                return Err(invalid(name, format!("must be > 0 (+inf: no momentum), got {v}")));
            }
        }
        if self.w == 0.0 {
            // α_0 = a/0^{1/3} would be infinite.
            return Err(invalid("w", "must be > 0 (α_0 = a/w^{1/3})".into()));
        }
        Ok(self)
    }

    /// α_t, β_t, η^f_t, η^g_t at iteration t.
    pub fn at(&self, t: usize) -> ScheduleAt {
        let alpha = if self.constant { self.scale } else { self.scale / (self.w + t as f64).cbrt() };
        let eta = |c: f64| if t == 0 || c.is_infinite() { 1.0 } else { (c * alpha * alpha).min(1.0) };
        ScheduleAt { alpha, beta: self.c_beta * alpha, eta_f: eta(self.c_eta_f), eta_g: eta(self.c_eta_g) }
    }
}

/// Which vectors of eq. (20) Adam-SUSTAIN's h̄^f reuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdamOption {
    /// Option I: (14), the old point on the new sample ξ̄_t (two estimates per iteration).
    I,
    /// Option II: the cached previous estimate ∇̄f(x_{t−1}, y_{t−1}; ξ̄_{t−1}) (one per
    /// iteration; the paper's reported runs). With η_0 = 1, h̄ equals the raw estimate (7)
    /// at every t (notes §2.7 (derived)): Adam on (7).
    #[default]
    II,
}

/// Adam's parameters (Alg. 2 line 1: PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AdamParams {
    /// γ1 (β1 in PyTorch).
    pub gamma1: f64,
    /// γ2.
    pub gamma2: f64,
    /// ε.
    pub eps: f64,
}

impl Default for AdamParams {
    fn default() -> Self {
        Self { gamma1: 0.9, gamma2: 0.999, eps: 1e-8 }
    }
}

/// The outer update direction.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// SUSTAIN: x_{t+1} = x_t − α_t h^f_t with h^f of (14).
    Storm,
    /// Adam-SUSTAIN (Algorithm 2): x_{t+1} = x_t − α_t m̂_t/(√v̂_t + ε).
    Adam(AdamOption, AdamParams),
}

/// Configuration of [`Sustain`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SustainConfig {
    /// α_t, β_t, η_t.
    pub schedule: Schedule,
    /// K of (7).
    pub horizon: usize,
    /// L_g of (7) (bounds every batch Hessian).
    pub lipschitz: f64,
    /// The outer direction.
    pub direction: Direction,
    /// Batches: ζ_t (`inner`), ξ (`outer`), ζ(1..k) (`hvp`, per factor), ζ(0) (`cross`).
    pub batches: BatchSizes,
    /// Seed of the streams.
    pub seed: u64,
    /// The rescaling of β_t and the estimator's L_g along the run ([`super::lower`]).
    pub scale: LowerScale,
    /// Adam-SUSTAIN: the x step is the schedule's constant `scale` (α_t = a), not a/(w + t)^{1/3}
    /// (paper 004 App. A's constant α).
    pub adam_alpha: bool,
    /// Report the last iterate (Theorem 3.3 bounds E[ℓ(x_t) − ℓ*] at every t) instead of
    /// Theorem 3.2's x_{a(T)}.
    pub last_iterate: bool,
}

struct State {
    est: TruncatedHypergradient,
    g: BatchStream,
    x_prev: Vec<f64>,
    y_prev: Vec<f64>,
    h_g: Vec<f64>,
    d_new: Vec<f64>,
    d_old: Vec<f64>,
    e_new: Vec<f64>,
    e_old: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    step: Vec<f64>,
    t: usize,
}

/// SUSTAIN / Adam-SUSTAIN (see the module doc).
pub struct Sustain {
    name: String,
    config: SustainConfig,
    it: Iterates,
    state: Option<State>,
}

impl Sustain {
    /// The algorithm `name` with `config`; [`Algorithm::init`] sizes it for a problem.
    pub fn new(name: &str, config: SustainConfig) -> Result<Self> {
        config.schedule.checked()?;
        if config.horizon == 0 {
            return Err(invalid("horizon", "K must be >= 1".into()));
        }
        if !(config.lipschitz.is_finite() && config.lipschitz > 0.0) {
            return Err(invalid("lipschitz", format!("L_g must be finite and > 0, got {}", config.lipschitz)));
        }
        if let Direction::Adam(_, a) = config.direction {
            let ok = (0.0..1.0).contains(&a.gamma1) && (0.0..1.0).contains(&a.gamma2) && a.eps > 0.0;
            if !(ok && a.eps.is_finite()) {
                return Err(invalid("adam", format!("needs γ1, γ2 in [0, 1) and ε > 0, got {a:?}")));
            }
        }
        Ok(Self { name: name.to_string(), config, it: Iterates::default(), state: None })
    }

    /// The configuration.
    pub fn config(&self) -> &SustainConfig {
        &self.config
    }

    /// The depth k_t of the sample of the last step (0 before the first).
    pub fn last_depth(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.est.depth())
    }

    /// Iterations done.
    pub fn iteration(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.t)
    }
}

impl Algorithm for Sustain {
    fn name(&self) -> &str {
        &self.name
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        self.it = Iterates::new(problem, x0, y0)?;
        let c = &self.config;
        let (dx, dy) = (problem.dim_x(), problem.dim_y());
        let b = c.batches;
        self.state = Some(State {
            est: TruncatedHypergradient::new(problem, c.lipschitz, c.horizon, &b, c.seed)?,
            g: BatchStream::new(problem.n_samples_g(), b.inner, b.sampling, c.seed, G_STREAM, 0)?,
            x_prev: x0.to_vec(),
            y_prev: y0.to_vec(),
            h_g: vec![0.0; dy],
            d_new: vec![0.0; dy],
            d_old: vec![0.0; dy],
            e_new: vec![0.0; dx],
            e_old: vec![0.0; dx],
            m: vec![0.0; dx],
            v: vec![0.0; dx],
            step: vec![0.0; dx],
            t: 0,
        });
        Ok(())
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let st = super::initialised(&mut self.state)?;
        let (c, it) = (&self.config, &mut self.it);
        check_len("x", problem.dim_x(), it.x.len())?;
        let mut s = c.schedule.at(st.t);
        if c.adam_alpha {
            s.alpha = c.schedule.scale;
        }
        let r = c.scale.factor(problem, &it.x);
        s.beta *= r;
        st.est.set_lipschitz(c.lipschitz / r);

        // Lower level, (13): ζ_t at (x_t, y_t) and, replayed, at (x_{t−1}, y_{t−1}) (the same
        // samples: counted once).
        let zeta = st.g.draw();
        problem.grad_y_g(&it.x, &it.y, zeta, &mut st.d_new);
        if s.eta_g < 1.0 {
            let (last, d_old) = (st.g.last(), &mut st.d_old);
            problem.replay(&mut || problem.grad_y_g(&st.x_prev, &st.y_prev, last, d_old));
            storm(&mut st.h_g, &st.d_new, &st.d_old, s.eta_g);
        } else {
            st.h_g.copy_from_slice(&st.d_new);
        }

        // Upper level, (14) / (20): ξ̄_t drawn once, read at two points (counted once).
        st.est.draw()?;
        st.est.evaluate(problem, &it.x, &it.y, &mut st.e_new)?;
        let option_two = matches!(c.direction, Direction::Adam(AdamOption::II, _));
        if s.eta_f >= 1.0 {
            it.grad.copy_from_slice(&st.e_new);
        } else if option_two {
            // e_old holds ∇̄f(x_{t−1}, y_{t−1}; ξ̄_{t−1}), cached last step.
            storm(&mut it.grad, &st.e_new, &st.e_old, s.eta_f);
        } else {
            let mut old = Ok(());
            let (est, e_old) = (&mut st.est, &mut st.e_old);
            problem.replay(&mut || old = est.evaluate(problem, &st.x_prev, &st.y_prev, e_old));
            old?;
            storm(&mut it.grad, &st.e_new, &st.e_old, s.eta_f);
        }
        if option_two {
            st.e_old.copy_from_slice(&st.e_new);
        }
        let direction: &[f64] = match c.direction {
            Direction::Storm => &it.grad,
            Direction::Adam(_, a) => {
                let t = (st.t + 1) as i32;
                let (b1, b2) = (1.0 - a.gamma1.powi(t), 1.0 - a.gamma2.powi(t));
                for i in 0..st.step.len() {
                    let g = it.grad[i];
                    st.m[i] = a.gamma1 * st.m[i] + (1.0 - a.gamma1) * g;
                    st.v[i] = a.gamma2 * st.v[i] + (1.0 - a.gamma2) * g * g;
                    st.step[i] = (st.m[i] / b1) / ((st.v[i] / b2).sqrt() + a.eps);
                }
                &st.step
            }
        };

        // Jacobi update from (x_t, y_t).
        st.x_prev.copy_from_slice(&it.x);
        st.y_prev.copy_from_slice(&it.y);
        it.x_at_y.copy_from_slice(&it.x);
        for (y, h) in it.y.iter_mut().zip(&st.h_g) {
            *y -= s.beta * h;
        }
        for (x, h) in it.x.iter_mut().zip(direction) {
            *x -= s.alpha * h;
        }
        st.t += 1;
        Ok(())
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
    fn output(&self) -> Output {
        match self.config.direction {
            Direction::Storm if !self.config.last_iterate => Output::Uniform { first: 1, seed: self.config.seed },
            Direction::Storm | Direction::Adam(..) => Output::Last,
        }
    }
}

/// h ← new + (1 − η)(h − old), element-wise (STORM).
fn storm(h: &mut [f64], new: &[f64], old: &[f64], eta: f64) {
    let keep = 1.0 - eta;
    for ((h, n), o) in h.iter_mut().zip(new).zip(old) {
        *h = n + keep * (*h - o);
    }
}

/// The constants of the theory rule.
pub const NEEDS_THEORY: &[Constant] = &[Constant::MuG, Constant::LG, Constant::LOuter];

/// Adam-SUSTAIN's constant α_t (paper 004 App. A).
pub const ADAM_ALPHA: f64 = 0.005;
/// c_η = 2/α_0² of Adam-SUSTAIN's lower level: η^g_t = min(1, 2/(1+t)^{2/3}), SUSTAIN's
/// default shape (option II does not read η^f).
const ADAM_C_ETA: f64 = 2.0 / (ADAM_ALPHA * ADAM_ALPHA);

/// SUSTAIN's or Adam-SUSTAIN's configuration under `rule` (see the module doc) and its
/// parameters.
pub fn resolve(name: &str, rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(SustainConfig, Params)> {
    let o = &s.sustain;
    let c = ctx.constants;
    let b = s.batches;
    let lower = Lower::new(c, ctx.problem)?;
    let mut p = Params::new(rule.name());
    let adam = match name {
        "sustain" => false,
        "adam-sustain" => true,
        n => return Err(invalid("algorithm", format!("`{n}` is not sustain or adam-sustain"))),
    };
    let l_b = lower.per_batch(b.hvp.or(b.inner));
    let (beta0, _) = lower.sgd_step(b.inner, b.sampling);
    let (sched, k, src): (Schedule, (usize, Source), Source) = match rule {
        StepRule::Default if adam => (
            Schedule {
                scale: ADAM_ALPHA,
                w: 1.0,
                c_beta: beta0 / ADAM_ALPHA,
                c_eta_f: ADAM_C_ETA,
                c_eta_g: ADAM_C_ETA,
                constant: false,
            },
            lower.terms(b.hvp),
            Source::default_because("paper 004 App. A's α = 0.005 for x; the lower level as SUSTAIN's default"),
        ),
        StepRule::Default => {
            let a = over_l_outer(c, s)?;
            (
                Schedule {
                    scale: a,
                    w: 1.0,
                    c_beta: beta0 / a,
                    c_eta_f: 2.0 / (a * a),
                    c_eta_g: 2.0 / (a * a),
                    constant: false,
                },
                lower.terms(b.hvp),
                Source::default_because(
                    "paper 004 §4's shape (w = 1, η_t = min(1, 2/(1+t)^(2/3))) scaled by the constants: α_0 = 1/L_L, \
                     β_0 = 1/(2ℒ(b)) (1/L_g on full batches)",
                ),
            )
        }
        StepRule::Experiments => {
            let cite = match (adam, ctx.family) {
                (false, "hyperclean") => {
                    "paper 004 §4 (hyper-cleaning): α_t = β_t = 0.1/(1+t)^(1/3); c_η = 200 (its meta-learning grid's smallest η)"
                }
                (true, "meta_learning") => "paper 004 App. A (meta-learning): α_t = 0.005, option II",
                (_, f) => {
                    return Err(no_experiment(
                        name,
                        f,
                        if adam {
                            "paper 004 runs Adam-SUSTAIN on meta-learning (App. A)"
                        } else {
                            "paper 004 runs SUSTAIN on data hyper-cleaning (§4)"
                        },
                    ))
                }
            };
            let sched = if adam {
                Schedule {
                    scale: ADAM_ALPHA,
                    w: 1.0,
                    c_beta: beta0 / ADAM_ALPHA,
                    c_eta_f: ADAM_C_ETA,
                    c_eta_g: ADAM_C_ETA,
                    constant: false,
                }
            } else {
                Schedule::EXPERIMENTS
            };
            (sched, (DEFAULT_STEPS, Source::default_because("10: §4 does not report K")), Source::experiments(cite))
        }
        StepRule::Theory => {
            if adam {
                return Err(invalid(
                    "steps",
                    "Adam-SUSTAIN has no theorem (paper 004: \"we do not have any theoretical performance guarantees\"): \
                     use --steps default or experiments"
                        .into(),
                ));
            }
            let k = TheoryConstants::from_problem(c, l_b)?;
            let horizon = s.iterations.ok_or_else(|| {
                invalid(
                    "steps",
                    "Theorem 3.2 fixes the horizon T in advance (its K and x_a(T) use it): give the run's length"
                        .into(),
                )
            })?;
            // Theorem 3.3 where ℓ is known µ_f-strongly convex, Theorem 3.2 otherwise.
            let mu_f = c.known.mu_outer.filter(|m| *m > 0.0);
            let (kk, cite_k) = match mu_f {
                Some(_) => (
                    theorem_3_3_horizon(l_b, k.mu_g, k.c_gxy, k.c_fy, horizon),
                    "paper 004 Thm 3.3: K = ⌈(L_g/(2µ_g)) log(C_gxy² C_fy² T/µ_g²)⌉",
                ),
                None => (
                    theorem_3_2_horizon(l_b, k.mu_g, k.c_gxy, k.c_fy, horizon),
                    "paper 004 Thm 3.2: K = ⌈(L_g/µ_g) log(C_gxy C_fy T/µ_g)⌉ (‖B_t‖ ≤ 1/T)",
                ),
            };
            let kk = super::lower::theory_steps("adjoint_steps", "K", kk as f64)?;
            p.set("horizon", "T, the run's horizon (the theorem fixes it)", horizon, Source::user("--max-iters"));
            match mu_f {
                Some(mu_f) => {
                    p.set("mu_f", "µ_f, the value function's strong convexity", mu_f, Source::problem("µ_L"));
                    (
                        Schedule::theorem_3_3(&k, mu_f, kk)?,
                        (kk, Source::theorem(cite_k)),
                        Source::theorem(
                            "paper 004 Thm 3.3 (ℓ µ_f-strongly convex): constant α (its five bounds), β = ĉ_β α, \
                             η^f = (µ_f + 1)α, η^g = 1",
                        ),
                    )
                }
                None => (
                    Schedule::theorem_3_2(&k, kk)?,
                    (kk, Source::theorem(cite_k)),
                    Source::theorem("paper 004 Thm 3.2, (17) with (29) and (36): a = 1"),
                ),
            }
        }
    };
    let mut sched = sched;
    sched.scale = s.outer_step.unwrap_or(sched.scale);
    sched.w = o.w.unwrap_or(sched.w);
    sched.c_beta = o.c_beta.unwrap_or(sched.c_beta);
    if let Some(beta0) = s.inner_step {
        // β_0 = c_β a/w^{1/3} (c_β a with constant steps).
        sched.c_beta = if sched.constant { beta0 / sched.scale } else { beta0 * sched.w.cbrt() / sched.scale };
    }
    if let Some(e) = o.c_eta {
        (sched.c_eta_f, sched.c_eta_g) = (e, e);
    }
    if o.upper_only {
        sched.c_eta_g = f64::INFINITY;
    }
    let sched = sched.checked()?;
    let k = s.adjoint_steps_or(k);
    let from = |set: bool, flag: &'static str| if set { Source::user(flag) } else { src.clone() };
    let outer_src = match s.outer_step {
        Some(_) => super::lower::user_or(s.outer_step, "--outer-step", s, (0.0, src.clone())).1,
        None => src.clone(),
    };
    if adam {
        p.set("outer_step", "α_t, Adam's step for x", sched.scale, outer_src);
    } else if sched.constant {
        p.set("outer_step", "α, the constant x step", sched.scale, outer_src);
    } else {
        p.set("outer_scale", "a of α_t = a/(w + t)^(1/3), the x step", sched.scale, outer_src);
        p.set("w", "w of α_t = a/(w + t)^(1/3)", sched.w, from(o.w.is_some(), "--momentum-w"));
    }
    p.set("c_beta", "c_β of β_t = c_β α_t, the y step", sched.c_beta, from(o.c_beta.is_some(), "--momentum-c-beta"));
    let beta_src = match s.inner_step {
        Some(_) => super::lower::user_or(s.inner_step, "--inner-step", s, (0.0, src.clone())).1,
        None => src.clone(),
    };
    p.set("inner_step", "β_0, the first y step", sched.at(0).beta, beta_src);
    p.set("c_eta_f", "c_ηf of η^f_t = min(1, c_ηf α_t²)", sched.c_eta_f, from(o.c_eta.is_some(), "--momentum-c-eta"));
    let g_flag = if o.upper_only { "--upper-momentum-only" } else { "--momentum-c-eta" };
    p.set(
        "c_eta_g",
        "c_ηg of η^g_t = min(1, c_ηg α_t²)",
        sched.c_eta_g,
        from(o.c_eta.is_some() || o.upper_only, g_flag),
    );
    p.set("adjoint_steps", "K, the horizon of the estimator (7)", k.0, k.1);
    p.set(
        "estimator_scale",
        "L_g of (7), the estimator's scale",
        l_b,
        Source::default_because("L_max on mini-batches (it bounds every batch Hessian), L_g on full batches"),
    );
    super::amigo::record_batches(
        &mut p,
        &b,
        ["ζ_t (lower level)", "ξ (∂x f and ∂y f)", "ζ(1..k), one per product", "ζ(0)"],
    );
    let direction = if adam { Direction::Adam(o.adam_option, AdamParams::default()) } else { Direction::Storm };
    if adam {
        p.set(
            "adam_option",
            "Adam-SUSTAIN's option (eq. (20))",
            format!("{:?}", o.adam_option),
            Source::experiments("paper 004 App. A: option II in its runs"),
        );
    } else if sched.constant {
        p.set("output", "the reported point", "x_T, the last iterate", Source::theorem("paper 004 Thm 3.3, (19)"));
    } else {
        p.set("output", "the reported point", "x_a(T), a ~ U{1..T}", Source::theorem("paper 004 Thm 3.2"));
    }
    let mut config = SustainConfig {
        schedule: sched,
        horizon: k.0,
        lipschitz: l_b,
        direction,
        batches: b,
        seed: s.seed,
        scale: LowerScale::none(),
        adam_alpha: adam,
        last_iterate: sched.constant,
    };
    if rule == StepRule::Default && o.c_beta.is_none() {
        config.scale = LowerScale::at_start(ctx.problem, ctx.x0);
        super::amigo::record_scale(&mut p, &config.scale);
    }
    Ok((config, p))
}

/// `sustain` or `adam-sustain` under `rule` (see [`resolve`]).
pub fn build(name: &str, rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(Box<dyn Algorithm>, Params)> {
    let (config, p) = resolve(name, rule, ctx, s)?;
    Ok((Box::new(Sustain::new(name, config)?), p))
}

/// Options the shared [`Settings`] do not carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SustainOptions {
    /// Adam-SUSTAIN's option (default II, the paper's runs).
    pub adam_option: AdamOption,
    /// Replaces the rule's w.
    pub w: Option<f64>,
    /// Replaces the rule's c_ηf and c_ηg (both).
    pub c_eta: Option<f64>,
    /// Replaces the rule's c_β.
    pub c_beta: Option<f64>,
    /// Momentum on the upper level only (η^g ≡ 1, c_ηg = ∞): the paper's remark's variant.
    pub upper_only: bool,
}
