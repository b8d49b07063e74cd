//! AmIGO — Arbel & Mairal, *Amortized Implicit Differentiation for Stochastic Bilevel
//! Optimization* (ICLR 2022), Algorithm 1 with A_k = Algorithm 2 (GD on g from the previous y)
//! and B_k = Algorithm 3 (GD on the adjoint quadratic from the previous z: AmIGO-GD) or CG
//! (AmIGO-CG, §5); and the paper's §5 baselines AID-GD, AID-CG, AID-CG-WS, AID-FP, AID-N as
//! configurations of the same loop ([`super::aid::AidBilevel`]); AID-BiO
//! ([`super::aid_bio`]) is resolved here too.
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
//! Parameters ([`build`]):
//! - [`StepRule::Default`]: α = 1/L_g (inner GD), β = 1/L_g (adjoint GD, fixed point,
//!   Neumann), γ = 1/L_L, T = N = 10 on full batches — paper 000 §5.1's settings on its
//!   quadratic (T, N in its grid). On mini-batches ([`super::lower`]): α = 1/(2ℒ(|D_g|)),
//!   AmIGO-GD's adjoint (SGD on the adjoint quadratic with a fresh Hessian batch per step)
//!   β = 1/(2ℒ(|D_gyy|)), the fixed-point and Neumann steps 1/L_max (a contraction on every
//!   batch). Where the problem's lower-level constants depend on x, α and β follow them along
//!   the run.
//! - [`StepRule::Experiments`]: §5.1 on the quadratic (α = β = 1/L_g, γ = 1/L_L, T = N = 10);
//!   §5.2 on 20 Newsgroups (`logreg_text`: α = γ = 100, β = 0.5, T = N = 10, Grazzi et al.'s
//!   settings the paper starts from); §5.3 on dataset distillation (α = β = 0.1, T = N = 10,
//!   γ = 10⁻³, the middle of its grid {10⁻², 10⁻³, 10⁻⁴}). Batch sizes stay the user's.
//! - [`StepRule::Theory`] (full batches): Theorem 1 / Proposition 10 ([`proposition_10`]):
//!   α = 1/L_g, β = 1/(2L_g), γ = 1/L with L Prop. 6's smoothness of the value function (eq.
//!   (13)), T and N of eq. (43) from the constants (19a)–(19f), which need L'_g, L_f, M_g (and
//!   B where M_g > 0): the problem's bounds, or a refusal naming the missing one. AmIGO-CG's N
//!   is the library's (the CG bound in Prop. 10's place). The baselines have no theorem of their
//!   own in the paper: under `Theory` they get AmIGO's, said in their sources. AID-BiO: paper
//!   002's Theorem 1 ([`super::aid_bio::theorem_1`]). The stochastic case needs the oracles'
//!   noise levels, which no problem here bounds: refused. Stochastic AmIGO-CG (one Hessian
//!   batch per CG call) is the library's own construction: no theorem covers it.
//!
//! AID-CG-WS is read as "CG warm-started, y not" (the notes' reading of "All methods except
//! AID-CG-WS warm-start A_k").

use super::aid::{AidBilevel, AidBilevelConfig, AidVariant};
use super::lower::{over_l_outer, positive, theory_steps, user_or, Lower, LowerScale};
use super::{no_experiment, Algorithm, Context, Settings, StepRule, StepSizes, DEFAULT_STEPS};
use crate::params::{Params, Source};
use crate::sampling::BatchSizes;
use bilevel_kernels::Result;

/// The paper's experiment on `family`, as (α, β, γ, citation) in absolute values (`None`: the
/// experiment writes them in 1/L_g, 1/L_L).
fn experiment(v: AidVariant, family: &str) -> Result<Option<(f64, f64, f64, &'static str)>> {
    let paper000 = !matches!(v, AidVariant::AidBio);
    match family {
        "quadratic" if paper000 => Ok(None),
        "logreg_text" if paper000 => {
            Ok(Some((100.0, 0.5, 100.0, "paper 000 §5.2 (20 Newsgroups): α = γ = 100, β = 0.5, T = N = 10")))
        }
        "distillation" if paper000 => Ok(Some((
            0.1,
            0.1,
            1e-3,
            "paper 000 §5.3 (dataset distillation): α = β = 0.1, T = N = 10, γ = 10⁻³ (its grid's middle)",
        ))),
        f => Err(no_experiment(
            v.name(),
            f,
            if paper000 {
                "paper 000 ran it on the quadratic (§5.1), 20 Newsgroups (§5.2) and distillation (§5.3)"
            } else {
                "paper 002 ran AID-BiO on few-shot meta-learning with CNNs only (§5.2)"
            },
        )),
    }
}

/// The names and meanings of the AID loop's parameters.
pub(crate) const INNER_STEP: (&str, &str) = ("inner_step", "α, the inner GD step");
pub(crate) const ADJOINT_STEP: (&str, &str) = ("adjoint_step", "β, the adjoint step");
pub(crate) const OUTER_STEP: (&str, &str) = ("outer_step", "γ, the outer step");
pub(crate) const INNER_STEPS: (&str, &str) = ("inner_steps", "T, inner steps per outer step");
pub(crate) const ADJOINT_STEPS: (&str, &str) = ("adjoint_steps", "N, adjoint steps per outer step");

/// Records the batch sizes of a loop (one line when every oracle runs on the full batch).
pub(crate) fn record_batches(p: &mut Params, b: &BatchSizes, names: [&'static str; 4]) {
    let full = Source::default_because("no --batch-size: the full batch (the deterministic algorithm)");
    if b.is_full() {
        p.set("batches", "batches", "full", full);
        return;
    }
    p.set(
        "sampling",
        "batches drawn",
        match b.sampling {
            crate::sampling::Sampling::Replacement => "with replacement",
            crate::sampling::Sampling::Epochs => "without replacement (shuffled epochs)",
        },
        Source::user("--sampling"),
    );
    for ((key, meaning), size) in ["batch_inner", "batch_outer", "batch_hvp", "batch_cross"]
        .into_iter()
        .zip(names)
        .zip([b.inner, b.outer, b.hvp, b.cross])
    {
        match size {
            Some(s) => p.set(key, meaning, s, Source::user("--batch-size")),
            None => p.set(key, meaning, "full", full.clone()),
        }
    }
}

/// Records the lower-level rescaling along the run.
pub(crate) fn record_scale(p: &mut Params, scale: &LowerScale) {
    if scale.is_tracking() {
        p.set(
            "lower_steps_along_run",
            "lower-level steps at x_k",
            "× min(L_g(x_0)/L_g(x_k), L_max(x_0)/L_max(x_k))",
            Source::default_because(
                "the problem's lower-level constants depend on x: each step stays the same fraction of the bound at x_k",
            ),
        );
    }
}

/// L_L(x_0) for [`OuterScale`] under the default rule: when L_L was estimated at x_0 (not the
/// problem's, not the user's) and the user did not set γ; recorded.
pub(crate) fn outer_tracking(ctx: &Context<'_>, s: &Settings, p: &mut Params) -> Option<f64> {
    let c = ctx.constants;
    let on = s.outer_step.is_none() && c.is_estimated(crate::Constant::LOuter);
    let l = c.known.l_outer.filter(|_| on)?;
    p.set(
        "outer_step_along_run",
        "the outer step at x_k",
        "× min(1, L_L(x_0)/L̂_k), L̂_k the largest secant ‖ψ_j − ψ_{j−1}‖/‖x_j − x_{j−1}‖ so far",
        Source::default_because(
            "L_L is an estimate at x_0, not a bound: the step follows the largest curvature seen along the run \
             (Malitsky & Mishchenko 2020's local estimate)",
        ),
    );
    Some(l)
}

/// The theory rule's (α, β, γ, (T, N)) with their sources, for full batches: paper 002's
/// Theorem 1 for AID-BiO, paper 000's Theorem 1 / Proposition 10 for AmIGO (and, labelled
/// so, for the baselines the paper gives no theorem of their own).
#[allow(clippy::type_complexity)]
fn theory(
    v: AidVariant,
    c: &crate::Constants,
    p: &mut Params,
) -> Result<((f64, Source), (f64, Source), (f64, Source), ((usize, Source), (usize, Source)))> {
    if v == AidVariant::AidBio {
        let k = super::aid_bio::Paper002Constants::from_problem(c)?;
        let th = super::aid_bio::theorem_1(&k);
        let t = |what: &'static str| Source::theorem(format!("paper 002 Thm 1: {what}"));
        p.set("l_phi", "L_Φ of Lemma 2, eq. (13)", th.l_phi, Source::theorem("paper 002 eq. (13)"));
        p.set("l_joint", "L, ∇f and ∇g Lipschitz in (x, y)", k.l, Source::problem("max(L_f, L_g + sup ‖∂x∂y g‖)"));
        return Ok((
            (th.alpha, t("α = 1/L")),
            (th.alpha, t("(CG: no step)")),
            (th.beta, t("β = 1/(8L_Φ)")),
            (
                (theory_steps("inner_steps", "T", th.t)?, t("T from eq. (22) and condition (31)")),
                (theory_steps("adjoint_steps", "N", th.n)?, t("N from eq. (22) and condition (31)")),
            ),
        ));
    }
    let k = &c.known;
    let need = |v: Option<f64>, what: &str| {
        v.ok_or_else(|| bilevel_kernels::KernelError::InvalidParameter {
            name: "steps",
            reason: format!(
                "paper 000's Proposition 10 needs {what}, which this problem does not bound: use --steps default"
            ),
        })
    };
    let m_g = need(k.cross_lipschitz, "M_g (Assumption 3)")?.max(need(k.hess_lipschitz, "M_g (Assumption 3)")?);
    let constants = Paper000Constants {
        mu_g: c.mu_g()?,
        l_g: c.l_g()?,
        l_prime_g: need(k.cross_bound, "L'_g = sup ‖∂x∂y g‖ (Assumption 2)")?,
        l_f: need(k.l_f, "L_f (Assumption 1)")?,
        m_g,
        // B multiplies M_g only: with M_g = 0 it does not enter.
        b: if m_g == 0.0 { k.grad_y_f_bound.unwrap_or(0.0) } else { need(k.grad_y_f_bound, "B = sup ‖∂y f‖")? },
    };
    let pr = proposition_10(&constants, k.mu_outer);
    let whose = match v {
        AidVariant::AmigoGd | AidVariant::AmigoCg => "paper 000",
        _ => "paper 000 (AmIGO's: the paper gives this baseline no theorem of its own)",
    };
    let t = |what: &str| Source::theorem(format!("{whose} Thm 1 / Prop. 10: {what}"));
    p.set("l_value", "L of Prop. 6, eq. (13): the value function's smoothness", pr.l, t("eq. (13)"));
    let n = if matches!(v, AidVariant::AmigoCg | AidVariant::AidCg | AidVariant::AidCgWs) {
        (
            theory_steps("adjoint_steps", "N", pr.n_cg)?,
            Source::default_because(
                "the library's: Prop. 10's constants with the CG bound 4κ_g q^{2N} (paper 000 gives no CG formula)",
            ),
        )
    } else {
        (theory_steps("adjoint_steps", "N", pr.n)?, t("N of eq. (43)"))
    };
    p.note(if k.mu_outer.is_some() {
        "strongly convex value function (µ_L known): η ≡ µ_L, δ_0 = µ_Lγ (the reading under which Cor. 1's rate holds)"
    } else {
        "non-convex case: η_0 = L"
    });
    Ok((
        (pr.alpha, t("α = 1/L_g")),
        (pr.beta, t("β = 1/(2L_g)")),
        (pr.gamma, t("γ = 1/L")),
        ((theory_steps("inner_steps", "T", pr.t)?, t("T of eq. (43)")), n),
    ))
}

/// The AID-type algorithm `v` under `rule` (see the module doc).
pub fn build(v: AidVariant, rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(Box<dyn Algorithm>, Params)> {
    let (config, params) = resolve(v, rule, ctx, s)?;
    Ok((Box::new(AidBilevel::new(v.name(), config)?), params))
}

/// The configuration of `v` under `rule` and its parameters.
pub fn resolve(v: AidVariant, rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(AidBilevelConfig, Params)> {
    let c = ctx.constants;
    let mut p = Params::new(rule.name());
    let mut b = s.batches;
    let lower = Lower::new(c, ctx.problem)?;
    // AmIGO's Hessian batch (and our stochastic CG's, whose one batch per call is biased
    // below it): Theorem 1's floor, unless the user set it on its own.
    let floor_applies = matches!(
        v,
        AidVariant::AmigoGd | AidVariant::AmigoCg | AidVariant::AidBio | AidVariant::AidCg | AidVariant::AidCgWs
    );
    let mut raised = None;
    if let (Some(hvp), true, false, false) =
        (b.hvp, floor_applies, s.explicit_batches[2], rule == StepRule::Experiments)
    {
        // A floor of all n samples is the full batch (drawn with replacement, n or more indices
        // would miss some).
        let n = ctx.problem.n_samples_g();
        if let Some(floor) = lower.batch_floor(c.known.mu_g).filter(|f| *f > hvp || *f >= n) {
            b.hvp = (floor < n).then_some(floor);
            raised = Some(floor);
        }
    }
    // Our stochastic CG runs one batch Hessian per call and needs it positive definite: where
    // the samples are singular (per-sample µ = 0, the rank-one stochastic quadratic) a batch
    // Hessian can be singular too, so the CG Hessian is the full batch unless the user set it.
    let cg = matches!(v, AidVariant::AmigoCg | AidVariant::AidBio | AidVariant::AidCg | AidVariant::AidCgWs);
    let mut cg_full = false;
    if cg && b.hvp.is_some() && c.known.mu_g_sample.is_some_and(|m| m <= 0.0) {
        if s.explicit_batches[2] {
            return Err(bilevel_kernels::KernelError::InvalidParameter {
                name: "batches",
                reason: format!(
                    "`{}` on mini-batches runs CG on one batch Hessian per call, which needs it positive definite; this \
                     problem's samples are not strongly convex (per-sample µ = 0: a batch Hessian can be singular): use \
                     amigo-gd (SGD on the adjoint), leave --batch-size-hvp out (the CG Hessian is then the full batch) \
                     or a per-sample strongly convex instance",
                    v.name()
                ),
            });
        }
        (b.hvp, cg_full, raised) = (None, true, None);
    }
    let uses_beta = !cg;
    let contraction = matches!(v, AidVariant::AidFp | AidVariant::AidNeumann);
    let ten = |what: &'static str| (DEFAULT_STEPS, Source::default_because(what));
    let (mut alpha, mut beta, mut gamma, mut steps) = match rule {
        StepRule::Default => {
            let (a, sa) = lower.sgd_step(b.inner, b.sampling);
            let (bt, sb) = if contraction { lower.contraction_step(b.hvp) } else { lower.sgd_step(b.hvp, b.sampling) };
            let st = ten("10: paper 000 §5.2's T = N = 10, inside §5.1's grid {1, 10, 100, 1000}");
            // A cold-started fixed-point or Neumann adjoint of step 1/L_max needs more terms.
            let sn = if contraction { lower.terms(b.hvp) } else { st.clone() };
            // AID-CG-WS restarts y from y_0: its inner loop must solve from scratch.
            let st = if v == AidVariant::AidCgWs { lower.cold_steps(1.0 / a, c.known.mu_g) } else { st };
            if ctx.family == "quadratic" && v != AidVariant::AidBio {
                p.note("on this quadratic α = 1/L_g and γ = 1/L_L are paper 000 §5.1's own settings");
            }
            let (gamma, sg) = Lower::outer_step(over_l_outer(c, s)?, c, &b, ctx.problem.n_samples_f());
            ((a, sa), (bt, sb), (gamma, sg), (st, sn))
        }
        StepRule::Experiments => {
            let cite_steps = ten("paper 000 §5: T = N = 10");
            match experiment(v, ctx.family)? {
                None => {
                    let cite = "paper 000 §5.1 (the quadratic): α = β = 1/L_g, γ = 1/L_L";
                    let l = c.l_g()?;
                    let e = || Source::experiments(cite);
                    ((1.0 / l, e()), (1.0 / l, e()), (over_l_outer(c, s)?, e()), (cite_steps.clone(), cite_steps))
                }
                Some((a, bt, g, cite)) => {
                    let e = || Source::experiments(cite);
                    ((a, e()), (bt, e()), (g, e()), (cite_steps.clone(), cite_steps))
                }
            }
        }
        StepRule::Theory => {
            if !b.is_full() {
                return Err(bilevel_kernels::KernelError::InvalidParameter {
                    name: "steps",
                    reason: format!(
                        "the stochastic case of {} needs the oracles' noise levels (σ_g, σ_f, σ_gxy of paper 000's \
                         Assumption 4; paper 002's σ), which no problem here bounds: --steps theory runs on full \
                         batches, or use --steps default",
                        if v == AidVariant::AidBio {
                            "paper 002's Theorem 1"
                        } else {
                            "paper 000's Theorem 1 / Prop. 10"
                        }
                    ),
                });
            }
            theory(v, c, &mut p)?
        }
    };
    alpha = user_or(s.inner_step, "--inner-step", s, alpha);
    beta = user_or(s.adjoint_step, "--adjoint-step", s, beta);
    gamma = user_or(s.outer_step, "--outer-step", s, gamma);
    steps = (s.inner_steps_or(steps.0), s.adjoint_steps_or(steps.1));
    let (t, n) = (steps.0 .0, steps.1 .0);
    p.set(INNER_STEPS.0, INNER_STEPS.1, t, steps.0 .1);
    p.set(ADJOINT_STEPS.0, ADJOINT_STEPS.1, n, steps.1 .1);
    p.set(INNER_STEP.0, INNER_STEP.1, positive("inner_step", alpha.0)?, alpha.1);
    if uses_beta {
        p.set(ADJOINT_STEP.0, ADJOINT_STEP.1, positive("adjoint_step", beta.0)?, beta.1);
    }
    p.set(OUTER_STEP.0, OUTER_STEP.1, positive("outer_step", gamma.0)?, gamma.1);
    record_batches(&mut p, &b, ["|D_g|, one per inner step", "|D_f|", "|D_gyy|, one per adjoint step", "|D_gxy|"]);
    if let Some(floor) = raised {
        p.set(
            "batch_hvp",
            "|D_gyy|, one per adjoint step",
            b.hvp.map_or_else(|| format!("full ({floor} ≥ n)"), |h| h.to_string()),
            Source::theorem(format!(
                "paper 000 Thm 1's |D_gyy| ≥ σ̃²_gyy/(µ_g L_g) ≥ … with σ̃²_gyy ≤ L_max L_g: ⌈L_max/µ_g⌉ = {floor} \
                 (raised from --batch-size; --batch-size-hvp sets it)"
            )),
        );
    }
    let steps = StepSizes { inner: alpha.0, adjoint: beta.0, outer: gamma.0 }.checked()?;
    let mut config = AidBilevelConfig::variant(v, t, n, steps).with_batches(b, s.seed);
    if s.average {
        // δ = η_kγ_k with η_k ≡ µ_L (paper 000 §4.1; at most 1).
        let delta = (steps.outer * c.mu_outer()?).min(1.0);
        config.average = Some(delta);
        p.set("average_weight", "δ = γµ_L, the averaging weight", delta, Source::theorem("paper 000 §4.1, Cor. 2"));
    }
    if rule == StepRule::Default && s.inner_step.is_none() && s.adjoint_step.is_none() {
        config.scale = LowerScale::at_start(ctx.problem, ctx.x0);
        record_scale(&mut p, &config.scale);
    }
    if rule == StepRule::Default {
        config.outer_scale = outer_tracking(ctx, s, &mut p);
        if v == AidVariant::AidCgWs && s.inner_steps.is_none() && config.scale.is_tracking() {
            config.cold_inner_cap = Some(super::lower::MAX_DEFAULT_TERMS);
            p.set(
                INNER_STEPS.0,
                INNER_STEPS.1,
                format!(
                    "T_k: the smallest T ≥ {t} with (1 − µ_g(x_k)/L_g(x_k))^T ≤ 1/10, at most {}",
                    super::lower::MAX_DEFAULT_TERMS
                ),
                Source::default_because(
                    "y restarts from y_0: the inner loop follows κ_g(x_k), the problem's bounds at x_k",
                ),
            );
        }
    }
    if cg_full {
        p.set(
            "batch_hvp",
            "|D_gyy|, one per adjoint step",
            "full",
            Source::default_because(
                "CG needs a positive definite operator and this problem's samples are singular (per-sample µ = 0): \
                 the CG Hessian is the full batch (--batch-size-hvp sets a batch, refused here)",
            ),
        );
    }
    if cg && b.hvp.is_some() {
        p.note("stochastic CG (one Hessian batch per CG call) is the library's own construction: no paper gives it");
    }
    Ok((config, p))
}

/// The constants paper 000's Theorem 1 and Proposition 10 are written in (Assumptions 1–3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paper000Constants {
    /// µ_g.
    pub mu_g: f64,
    /// L_g.
    pub l_g: f64,
    /// L'_g: the Lipschitz constant of ∂y g in x (sup ‖∂x∂y g‖).
    pub l_prime_g: f64,
    /// L_f: the smoothness of f.
    pub l_f: f64,
    /// M_g: the Lipschitz constant of ∂x∂y g and ∂yy g.
    pub m_g: f64,
    /// B: sup ‖∂y f‖.
    pub b: f64,
}

/// What Theorem 1 / Proposition 10 prescribe for the deterministic AmIGO (u = 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proposition10 {
    /// Prop. 6's L (eq. (13)), the smoothness of the value function the theorem uses.
    pub l: f64,
    /// α = 1/L_g.
    pub alpha: f64,
    /// β = 1/(2L_g).
    pub beta: f64,
    /// γ = 1/L.
    pub gamma: f64,
    /// T = ⌊α⁻¹µ_g⁻¹ max(C1, C2, C3)⌋ + 1 (eq. (43)), before the feasibility check.
    pub t: f64,
    /// N = ⌊2β⁻¹µ_g⁻¹(max(C1, C2, C3) + max(C1', C2', C3'))⌋ + 1 (eq. (43)).
    pub n: f64,
    /// AmIGO-CG's N (the library's: the CG bound ‖e_N‖² ≤ 4κ_g q^{2N}‖e_0‖² in place of GD's
    /// (1 − βµ_g/2)^N): ⌈(max C + max C' + log(4κ_g))/(2 log((√κ_g + 1)/(√κ_g − 1)))⌉.
    pub n_cg: f64,
}

/// Theorem 1 / Proposition 10 (paper 000, deterministic: σ's = 0, u = 0) for constants `k`;
/// `mu_outer`: µ of the value function when it is strongly convex (η ≡ µ, δ_0 = µγ, the
/// reading under which the rate is 1 − 1/(2κ_L): notes), else the non-convex case (η_0 = L).
/// With α = 1/L_g, β = 1/(2L_g): L_y = L'_g/µ_g, L_z = M_g B/µ_g² + L_f/µ_g, L_ψ = max(L_f +
/// M_g B/µ_g + L'_g L_z, L'_g), ζ_0 = 2L, and the constants (19a)–(19f); C3' drops its
/// −2 log(γ(σ²_gxy + L'_g²)) term when L'_g = 0 (it only bounds a term multiplied by it).
pub fn proposition_10(k: &Paper000Constants, mu_outer: Option<f64>) -> Proposition10 {
    let (mu, lg, lp, lf, mg, b) = (k.mu_g, k.l_g, k.l_prime_g, k.l_f, k.m_g, k.b);
    // Prop. 6, eq. (13).
    let l = (lf + mg * lp * b / (mu * mu) + (lp * lf + mg * b) / mu) * (1.0 + lp / mu);
    let (alpha, beta, gamma) = (1.0 / lg, 0.5 / lg, 1.0 / l);
    let l_y = lp / mu;
    let l_z = mg * b / (mu * mu) + lf / mu;
    let l_psi = (lf + mg * b / mu + lp * l_z).max(lp);
    let eta0 = mu_outer.filter(|m| *m > 0.0).unwrap_or(l);
    let zeta0 = 2.0 * l;
    let c1 = 1.0 + 2.0 * (6.0 + 24.0 * l_psi * l_psi / eta0).ln();
    let c2 = 2.0 * (1.0 + 4.0 * l_y * l_y / (l * l) * eta0.max(8.0 * zeta0)).ln();
    let c3 = [0.0, -2.0 * (5.0 * l_psi * l_psi / eta0).ln(), -2.0 * (l / (4.0 * l_y * l_y)).ln()]
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let c1p = 1.0 + 2.0 * (4.0 + 12.0 / eta0 * 2.0 * l_psi * l_psi).ln();
    let c2p = if l_y > 0.0 { 2.0 * (1.0 + 2.0 * l_z * l_z / (l_y * l_y) * (1.0 + 16.0 * l_y * l_y)).ln() } else { 0.0 };
    let mut c3p = [0.0, -2.0 * (l_psi * l_psi / (4.0 * l_z * l_z * eta0)).ln()].into_iter().fold(0.0, f64::max);
    if lp > 0.0 {
        c3p = c3p.max(-2.0 * (gamma * lp * lp).ln());
    }
    let cmax = c1.max(c2).max(c3);
    let cpmax = c1p.max(c2p).max(c3p);
    let t = (cmax / (alpha * mu)).floor() + 1.0;
    let n = (2.0 * (cmax + cpmax) / (beta * mu)).floor() + 1.0;
    let kappa = lg / mu;
    let n_cg = if kappa <= 1.0 {
        1.0
    } else {
        let q = (kappa.sqrt() + 1.0) / (kappa.sqrt() - 1.0);
        ((cmax + cpmax + (4.0 * kappa).ln()) / (2.0 * q.ln())).ceil().max(1.0)
    };
    Proposition10 { l, alpha, beta, gamma, t, n, n_cg }
}
