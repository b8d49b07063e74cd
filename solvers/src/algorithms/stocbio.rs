//! stocBiO — Ji, Yang & Liang, *Provably Faster Algorithms for Bilevel Optimization* (the ICLR
//! 2021 submission text in the repository, paper 002; ICML 2021 as *Bilevel Optimization:
//! Convergence Analysis and Enhanced Design*), Algorithm 2 with the Neumann estimator of
//! Algorithm 3:
//!
//! ```text
//! y_k^0 = y_{k−1}^T;  y_k^t = y_k^{t−1} − α ∇y G(x_k, y_k^{t−1}; S_{t−1}),  t = 1..T   (fresh S_t)
//! v_0 = ∇y F(x_k, y_k^T; D_F)
//! v_Q = η Σ_{q=−1}^{Q−1} Π_{j=Q−q}^{Q} (I − η∇²yy G(x_k, y_k^T; B_j)) v_0               (eq. (5))
//! ĝ_k = ∇x F(x_k, y_k^T; D_F) − ∇x∇y G(x_k, y_k^T; D_G) v_Q                            (eq. (6))
//! x_{k+1} = x_k − β ĝ_k
//! ```
//! A configuration of the AID loop ([`super::aid`]): warm-started y, the Neumann adjoint with
//! Q = `adjoint_steps` terms beyond v_0 on independent per-term batches B_j, no warm start of v;
//! batches S (`batches.inner`), D_F (`outer`, one batch for ∇x F and ∇y F: its samples count
//! once), B (`hvp`), D_G (`cross`), each its own stream. With `neumann_decay`, Prop. 3's sizes
//! |B_{Q+1−j}| = ⌈B·Q·(1−ημ)^{j−1}⌉, the largest (B_Q) applied first (rounded up: the paper
//! leaves rounding open; a B below Prop. 3's bound is refused, not raised).
//!
//! Claimed complexity (Theorem 3, Table 2; E‖∇Φ(x̄)‖² ≤ ε): K = O(κ³ε⁻¹) outer steps,
//! Gc(F) = O(κ⁵ε⁻²) gradients of F, Gc(G) = O(κ⁹ε⁻²) of G, JV = O(κ⁵ε⁻²) cross products and
//! HV = Õ(κ⁶ε⁻²) Hessian-vector products — the notes (§3.4, §6 item 6) find O(κ⁷ε⁻²
//! log(κ²/ε)) from the paper's own settings; the harness measures it. The output x̄ is drawn
//! uniformly from x_0..x_{K−1} (Def. 1): the driver draws it ([`Output::Uniform`](crate::Output)).
//!
//! Parameters ([`build`]):
//! - [`StepRule::Default`]: α = 1/(2ℒ(S)) on mini-batches (1/L_g full), the Neumann step
//!   η = 1/L_max (every batch's Hessian then has ‖I − ηH_B‖ ≤ 1; 1/L_g on full batches),
//!   β = 1/L_L, T = Q = 10 ([`super::lower`]); α and η follow the problem's constants along the
//!   run where they depend on x.
//! - [`StepRule::Experiments`]: on 20 Newsgroups (`logreg_text`), paper 002 App. A (and paper
//!   000 §5.2, which runs stocBiO with the same values): α = β = 100 (inner and outer steps),
//!   η = 0.5, T = Q = 10. Paper 002's MNIST hyper-cleaning reports a grid, not the values that
//!   won; no paper runs stocBiO on the quadratics.
//! - [`StepRule::Theory`]: Theorem 3 with Lemma 9 and Prop. 3 ([`theorem_3`]): α = 2/(L + µ)
//!   (Lemma 9 needs it; Theorem 3 does not state it — notes §6 item 3), η = (1 − 10⁻³)/L
//!   (Theorem 3's strict η < 1/L), β = 1/(4L_Φ) with L_Φ of eq. (13), T from both of its terms
//!   (Θ(κ log κ)), Q, K, S, D_f, D_g, B from eq. (10) with each of its six terms at most ε/6,
//!   from the per-sample µ, L, M, τ, ρ and σ. Refused where a sample's Hessian is singular
//!   (Assumption 1 per sample: the rank-one stochastic quadratic), and where the problem does
//!   not bound σ, M, τ, ρ (every finite sum here); on a one-sample problem (the F.1 quadratic:
//!   σ = 0, M = ‖C_f‖, τ = ρ = 0) every prescribed batch is the full batch.
//!
//! Deviations: the official code uses one Hessian batch for all Q terms and drops the v_0 term
//! and the factor η (notes §7); we follow Algorithm 3.

use super::aid::{AidBilevel, AidBilevelConfig, AidVariant};
use super::amigo::{record_batches, record_scale, INNER_STEP, INNER_STEPS, OUTER_STEP};
use super::lower::{over_l_outer, positive, user_or, Lower, LowerScale};
use super::{no_experiment, Algorithm, Context, Settings, StepRule, StepSizes, DEFAULT_STEPS};
use crate::constants::Constant;
use crate::params::{Params, Source};
use bilevel_kernels::{KernelError, Result};

/// The constants of the theory rule.
pub const NEEDS_THEORY: &[Constant] = &[Constant::MuG, Constant::LG];

const NEUMANN_STEP: (&str, &str) = ("adjoint_step", "η, the Neumann step");
const TERMS: (&str, &str) = ("adjoint_steps", "Q, Neumann terms beyond v_0");

/// stocBiO under `rule` (see the module doc).
pub fn build(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(Box<dyn Algorithm>, Params)> {
    let (config, params) = resolve(rule, ctx, s)?;
    Ok((Box::new(AidBilevel::new("stocbio", config)?), params))
}

/// stocBiO's configuration under `rule` and its parameters.
pub fn resolve(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(AidBilevelConfig, Params)> {
    let c = ctx.constants;
    let b = s.batches;
    let lower = Lower::new(c, ctx.problem)?;
    let mut p = Params::new(rule.name());
    let ten = |why: &'static str| (DEFAULT_STEPS, Source::default_because(why));
    let (alpha, eta, beta, t, q) = match rule {
        StepRule::Default => {
            let outer = Lower::outer_step(over_l_outer(c, s)?, c, &b, ctx.problem.n_samples_f());
            let eta = lower.contraction_step(b.hvp);
            (lower.sgd_step(b.inner, b.sampling), eta, outer, ten("10: paper 002 App. A's T = 10"), lower.terms(b.hvp))
        }
        StepRule::Experiments => {
            if ctx.family != "logreg_text" {
                return Err(no_experiment(
                    "stocbio",
                    ctx.family,
                    "paper 002 ran it on 20 Newsgroups (App. A) and reports a grid for MNIST hyper-cleaning",
                ));
            }
            let e = || Source::experiments("paper 002 App. A (20 Newsgroups): α = β = 100, η = 0.5, T = Q = 10");
            let steps = (DEFAULT_STEPS, e());
            ((100.0, e()), (0.5, e()), (100.0, e()), steps.clone(), steps)
        }
        StepRule::Theory => return theory(ctx, s),
    };
    let alpha = user_or(s.inner_step, "--inner-step", s, alpha);
    let eta = user_or(s.adjoint_step, "--adjoint-step", s, eta);
    let beta = user_or(s.outer_step, "--outer-step", s, beta);
    let (t, q) = (s.inner_steps_or(t), s.adjoint_steps_or(q));
    p.set(INNER_STEPS.0, INNER_STEPS.1, t.0, t.1);
    p.set(TERMS.0, TERMS.1, q.0, q.1);
    p.set(INNER_STEP.0, INNER_STEP.1, positive("inner_step", alpha.0)?, alpha.1);
    p.set(NEUMANN_STEP.0, NEUMANN_STEP.1, positive("adjoint_step", eta.0)?, eta.1);
    p.set(OUTER_STEP.0, "β, the outer step (paper 002's β)", positive("outer_step", beta.0)?, beta.1);
    record_batches(&mut p, &b, ["S, one per inner step", "D_F (∇x F and ∇y F)", "B, one per Neumann term", "D_G"]);
    let steps = StepSizes { inner: alpha.0, adjoint: eta.0, outer: beta.0 }.checked()?;
    let mut config = AidBilevelConfig::variant(AidVariant::AidNeumann, t.0, q.0, steps).with_batches(b, s.seed);
    if s.neumann_decay {
        let base = b.hvp.ok_or_else(|| KernelError::InvalidParameter {
            name: "neumann_decay",
            reason: "Prop. 3's sizes ⌈B·Q·(1−ημ)^(j−1)⌉ need a base batch B (--batch-size or --batch-size-hvp)".into(),
        })?;
        let mu = c.mu_g()?;
        let mut sizes = super::aid::neumann_batch_sizes(base, q.0, eta.0, mu)?;
        config.neumann_decay = Some(mu);
        sizes.reverse();
        p.set(
            "neumann_batches",
            "|B_Q|, …, |B_1|, Hessian batches in application order",
            sizes,
            Source::theorem("paper 002 Prop. 3: |B_{Q+1−j}| = ⌈B·Q·(1−ημ)^(j−1)⌉, B_Q (the largest) applied first"),
        );
    }
    config.uniform_output = true;
    p.set("output", "the reported point", "x̄ uniform over x_0..x_{K−1}", Source::theorem("paper 002 Def. 1 and Thm 3"));
    if rule == StepRule::Default && s.inner_step.is_none() && s.adjoint_step.is_none() {
        config.scale = LowerScale::at_start(ctx.problem, ctx.x0);
        record_scale(&mut p, &config.scale);
    }
    if rule == StepRule::Default {
        config.outer_scale = super::amigo::outer_tracking(ctx, s, &mut p);
    }
    Ok((config, p))
}

/// The theory rule: every parameter of Theorem 3 from the problem's per-sample constants, or a
/// refusal naming what is missing or how much the prescription would cost (see [`theorem_3`]).
fn theory(ctx: &Context<'_>, s: &Settings) -> Result<(AidBilevelConfig, Params)> {
    let c = ctx.constants;
    let mut p = Params::new(StepRule::Theory.name());
    let refuse = |reason: String| KernelError::InvalidParameter { name: "steps", reason };
    let (n_f, n_g) = (ctx.problem.n_samples_f(), ctx.problem.n_samples_g());
    // Assumption 1 per sample; one sample is the whole problem.
    let mu = if n_g == 1 { c.mu_g()? } else { c.known.mu_g_sample.unwrap_or(0.0) };
    if mu.is_nan() || mu <= 0.0 {
        return Err(refuse(
            "paper 002 Theorem 3 assumes every sample's G(x, ·; ζ) µ-strongly convex (Assumption 1; Prop. 3's proof uses \
             it per batch), and this problem's samples are not (or do not say so): use --steps default, or a per-sample \
             strongly convex instance (stochastic_quadratic tiny/small)"
                .into(),
        ));
    }
    let mut k = super::aid_bio::Paper002Constants::from_problem(c)?;
    k.mu = mu;
    if n_g > 1 {
        k.l = k.l.max(c.known.l_g_sample.unwrap_or(f64::INFINITY));
    }
    // σ² ≥ E‖∇G − ∇g‖² (Assumption 4): 0 for one sample (the oracle is exact).
    if n_g > 1 || n_f > 1 {
        return Err(refuse(
            "paper 002 Theorem 3 needs σ² ≥ E‖∇G(z; ζ) − ∇g(z)‖² for every z (Assumption 4) and per-sample bounds M, τ, ρ; \
             this finite sum does not bound them: use --steps default"
                .into(),
        ));
    }
    let epsilon = s.epsilon.unwrap_or(THEORY_EPSILON);
    let gap = ctx.problem.exact().and_then(|e| {
        let (_, l_star) = e.minimum()?;
        let mut ys = vec![0.0; ctx.problem.dim_y()];
        e.y_star(ctx.x0, &mut ys);
        let d_y: f64 = ys.iter().map(|v| v * v).sum(); // y_0 = 0
        Some(e.value(ctx.x0) - l_star + 2.5 * d_y)
    });
    let th = theorem_3(&k, 0.0, epsilon, gap);
    let cite = |what: &str| Source::theorem(format!("paper 002 Thm 3: {what}"));
    let eps_src = if s.epsilon.is_some() { Source::user("--epsilon") } else { Source::default_because("1e-3 (ours)") };
    p.set("epsilon", "ε, the target of E‖∇Φ(x̄)‖²", epsilon, eps_src);
    p.set("l_phi", "L_Φ of Lemma 2, eq. (13)", th.l_phi, cite("eq. (13)"));
    p.set("l_joint", "L, per-sample smoothness of ∇F and ∇G", k.l, Source::problem("max(L_f, L_g + sup ‖∂x∂y g‖)"));
    if let Some(k_iters) = th.k {
        p.set(
            "outer_iterations",
            "K, outer steps for ε (reported; --max-iters ends the run)",
            k_iters,
            cite("K = ⌈192 L_Φ(Φ(x_0) − inf Φ + 2.5‖y_0 − y*‖²)/ε⌉"),
        );
    }
    // One sample: every prescribed batch is the full batch (its term's variance is 0).
    p.set(
        "batches",
        "S, D_f, D_g, B",
        format!("full (one sample; the theorem's S = {}, D_f = {}, D_g = {}, B = {})", th.s, th.d_f, th.d_g, th.b),
        cite("eq. (10): each term ≤ ε/6; a batch ≥ n is the full batch"),
    );
    let alpha = user_or(s.inner_step, "--inner-step", s, (th.alpha, cite("α = 2/(L + µ) (Lemma 9)")));
    let eta = user_or(s.adjoint_step, "--adjoint-step", s, (th.eta, cite("η = (1 − 10⁻³)/L < 1/L")));
    let beta = user_or(s.outer_step, "--outer-step", s, (th.beta, cite("β = 1/(4L_Φ)")));
    let th_t = super::lower::theory_steps("inner_steps", "T", th.t as f64)?;
    let th_q = super::lower::theory_steps("adjoint_steps", "Q", th.q as f64)?;
    let t = s.inner_steps_or((th_t, cite("T = max(1, ⌈T₁⌉, ⌊T₂⌋ + 1), both terms (Θ(κ log κ))")));
    let q = s.adjoint_steps_or((th_q, cite("Q = ⌈ln(432κ²M²/ε)/(2 ln(1/(1 − ηµ)))⌉")));
    p.set(INNER_STEPS.0, INNER_STEPS.1, t.0, t.1);
    p.set(TERMS.0, TERMS.1, q.0, q.1);
    p.set(INNER_STEP.0, INNER_STEP.1, positive("inner_step", alpha.0)?, alpha.1);
    p.set(NEUMANN_STEP.0, NEUMANN_STEP.1, positive("adjoint_step", eta.0)?, eta.1);
    p.set(OUTER_STEP.0, "β, the outer step (paper 002's β)", positive("outer_step", beta.0)?, beta.1);
    p.set("output", "the reported point", "x̄ uniform over x_0..x_{K−1}", Source::theorem("paper 002 Def. 1 and Thm 3"));
    let steps = StepSizes { inner: alpha.0, adjoint: eta.0, outer: beta.0 }.checked()?;
    let mut config = AidBilevelConfig::variant(AidVariant::AidNeumann, t.0, q.0, steps);
    config.uniform_output = true;
    Ok((config, p))
}

/// The target ε of the theory rules when `--epsilon` is not given (ours).
pub const THEORY_EPSILON: f64 = 1e-3;

/// The most samples a theory rule runs (K times the samples of one outer step): a
/// prescription above is refused with its numbers.
pub const MAX_THEORY_SAMPLES: f64 = 1e12;

/// What Theorem 3 prescribes (each term of eq. (10) at most ε/6).
#[derive(Clone, Debug, PartialEq)]
pub struct Theorem3 {
    /// L_Φ of Lemma 2, eq. (13).
    pub l_phi: f64,
    /// α = 2/(L + µ) (Lemma 9).
    pub alpha: f64,
    /// β = 1/(4L_Φ).
    pub beta: f64,
    /// η = (1 − 10⁻³)/L (Theorem 3's η < 1/L, strict; the proofs use ηL ≤ 1).
    pub eta: f64,
    /// T = max(1, ⌈T₁⌉, ⌊T₂⌋ + 1) with T₁ = ln(12 + 48β²L²C_y²/µ²)/(2 ln((L+µ)/(L−µ))) and
    /// T₂ = ln(√β C_y)/ln((L+µ)/(L−µ)) (λ ≤ 1/6 at L.1445, and eq. (70)'s strict inequality).
    pub t: usize,
    /// Q = ⌈ln(432κ²M²/ε)/(2 ln(1/(1 − ηµ)))⌉ (72κ²M²(1−ημ)^{2Q} ≤ ε/6).
    pub q: usize,
    /// K = ⌈192 L_Φ(Φ(x_0) − inf Φ + (5/2)‖y_0 − y*(x_0)‖²)/ε⌉ (`None` without Φ's gap).
    pub k: Option<usize>,
    /// S = ⌈240 C_y²σ²/(Lµε)⌉.
    pub s: usize,
    /// D_g = ⌈96κ²M²/ε⌉.
    pub d_g: usize,
    /// D_f = ⌈(48 + 192κ²)M²/ε⌉.
    pub d_f: usize,
    /// B = max(⌈384κ²M²/ε⌉, ⌈1/(Q(1 − ηµ)^{Q−1})⌉) (Prop. 3's lower bound).
    pub b: usize,
}

/// Theorem 3 (paper 002, eq. (10), Lemma 9, Prop. 3) for per-sample constants `k`, gradient
/// noise σ of ∇G, target ε and Φ's gap `gap` = Φ(x_0) − inf Φ + (5/2)‖y_0 − y*(x_0)‖²;
/// C_y = L + L²/µ + Mτ/µ + LMρ/µ².
pub fn theorem_3(k: &super::aid_bio::Paper002Constants, sigma: f64, epsilon: f64, gap: Option<f64>) -> Theorem3 {
    let super::aid_bio::Paper002Constants { mu, l, m, tau, rho } = *k;
    let kappa = k.kappa();
    let l_phi = k.l_phi();
    let (alpha, beta, eta) = (2.0 / (l + mu), 1.0 / (4.0 * l_phi), (1.0 - 1e-3) / l);
    let c_y = l + l * l / mu + m * tau / mu + l * m * rho / (mu * mu);
    // Saturating: an infinite count becomes usize::MAX, which the feasibility checks refuse.
    let count = |v: f64| if v > 0.0 { v.ceil().max(1.0) as usize } else { 1 };
    let t = if l > mu {
        let log_r = ((l + mu) / (l - mu)).ln();
        let t1 = (12.0 + 48.0 * beta * beta * l * l * c_y * c_y / (mu * mu)).ln() / (2.0 * log_r);
        let t2 = (beta.sqrt() * c_y).ln() / log_r;
        count(t1).max(if t2 >= 0.0 { count(t2.floor() + 1.0) } else { 1 })
    } else {
        1
    };
    let rho_q = 1.0 - eta * mu;
    let q = count((432.0 * kappa * kappa * m * m / epsilon).ln() / (2.0 * (1.0 / rho_q).ln()));
    let k_iters = gap.map(|g| count(192.0 * l_phi * g / epsilon));
    let s = count(240.0 * c_y * c_y * sigma * sigma / (l * mu * epsilon));
    let d_g = count(96.0 * kappa * kappa * m * m / epsilon);
    let d_f = count((48.0 + 192.0 * kappa * kappa) * m * m / epsilon);
    let b_floor = 1.0 / (q as f64 * rho_q.powi(q as i32 - 1));
    let b = count(384.0 * kappa * kappa * m * m / epsilon).max(count(b_floor));
    Theorem3 { l_phi, alpha, beta, eta, t, q, k: k_iters, s, d_g, d_f, b }
}
