//! ITD-BiO — Ji, Yang & Liang, *Provably Faster Algorithms for Bilevel Optimization* (paper
//! 002), Algorithm 1 (ITD branch): T warm-started inner GD steps, the hypergradient of
//! x ↦ f(x, y_T(x)) by reverse mode through them (Prop. 2, [`crate::estimators::itd`]), an
//! outer gradient step. O(T·d_y) memory for the trajectory.
//!
//! Claimed complexity (Theorem 2): K = O(κ³ε⁻¹) outer steps with T = Θ(κ log(1/ε)): O(κ⁴ε⁻¹
//! log ε⁻¹) gradients of g, JVPs and HVPs (Table 1, reconstructed from the OCR-garbled cells).
//!
//! Mini-batches: paper 002 Theorem 4's task-sampled form (meta-learning with a task batch 𝓑):
//! one batch of lower-level samples per outer step for the T steps and their reverse pass
//! (`batches.inner`), one batch for ∂x f and ∂y f (`batches.outer`); the inner GD runs on a fixed
//! batch, so its step is 1/L_max (the batch's smoothness is at most the per-sample bound).
//! Theorem 4 bounds the error by an extra (1 + L/µ)²M²/(8|𝓑|).
//!
//! Parameters ([`build`]):
//! - [`StepRule::Default`]: α = 1/L_g (1/L_max on mini-batches), γ = 1/L_L, T = 10; α follows
//!   the problem's constants along the run where they depend on x;
//! - [`StepRule::Experiments`]: paper 000 §5.1 (its "ITD" and "Reverse" baselines on the
//!   quadratic): α = 1/L_g, γ = 1/L_L, T = 10 (in its grid); §5.2 and §5.3 as AmIGO's;
//! - [`StepRule::Theory`]: refused. Theorem 2 (α ≤ 1/L, β = 1/(4L_Φ)) sets T = Θ(κ log 1/ε)
//!   from Δ, a uniform bound on the warm-start error ‖y_k^0 − y*(x_k)‖² the paper assumes
//!   without proof (App. F.1): no problem can give it.

use super::amigo::{record_batches, record_scale, INNER_STEP, INNER_STEPS, OUTER_STEP};
use super::lower::{over_l_outer, positive, user_or, Lower, LowerScale, OuterScale};
use super::{no_experiment, Algorithm, Context, Iterates, Settings, StepRule, StepSizes, DEFAULT_STEPS};
use crate::estimators::Itd;
use crate::params::{Params, Source};
use crate::sampling::{BatchSizes, BatchStream};
use bilevel_kernels::{BilevelProblem, Result};

/// ITD-BiO's configuration.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ItdConfig {
    /// T.
    pub inner_steps: usize,
    /// α (inner) and γ (outer); `adjoint` unused.
    pub steps: StepSizes,
    /// The lower-level batch 𝓑 (`inner`) and f's batch (`outer`); full by default.
    pub batches: BatchSizes,
    /// Seed of the two streams.
    pub seed: u64,
    /// α's rescaling along the run.
    pub scale: LowerScale,
    /// L_L(x_0) when the outer step follows the curvature seen along the run ([`OuterScale`]).
    pub outer_scale: Option<f64>,
}

/// ITD-BiO (see the module doc).
pub struct ItdBilevel {
    config: ItdConfig,
    it: Iterates,
    itd: Option<Itd>,
    g: BatchStream,
    f: BatchStream,
    outer: OuterScale,
}

impl ItdBilevel {
    /// T inner steps with the given step sizes, on full batches.
    pub fn new(inner_steps: usize, steps: StepSizes) -> Result<Self> {
        Self::with_config(ItdConfig {
            inner_steps,
            steps,
            batches: BatchSizes::full(),
            seed: 0,
            scale: LowerScale::none(),
            outer_scale: None,
        })
    }
    /// ITD-BiO with `config`.
    pub fn with_config(config: ItdConfig) -> Result<Self> {
        Itd::new(config.inner_steps, config.steps.inner, 0, 0)?;
        config.steps.checked()?;
        let outer = config.outer_scale.map_or_else(OuterScale::none, OuterScale::from_estimate);
        Ok(Self { config, it: Iterates::default(), itd: None, g: BatchStream::full(), f: BatchStream::full(), outer })
    }
}

impl Algorithm for ItdBilevel {
    fn name(&self) -> &str {
        "itd"
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        self.it = Iterates::new(problem, x0, y0)?;
        let c = &self.config;
        self.itd = Some(Itd::new(c.inner_steps, c.steps.inner, problem.dim_x(), problem.dim_y())?);
        let b = c.batches;
        self.g = BatchStream::new(problem.n_samples_g(), b.inner, b.sampling, c.seed, 0, 0)?;
        self.f = BatchStream::new(problem.n_samples_f(), b.outer, b.sampling, c.seed, 1, 0)?;
        self.outer.init(problem.dim_x());
        Ok(())
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let itd = super::initialised(&mut self.itd)?;
        let (c, it) = (&self.config, &mut self.it);
        itd.set_alpha(c.steps.inner * c.scale.factor(problem, &it.x));
        it.x_at_y.copy_from_slice(&it.x);
        itd.estimate_on(problem, &it.x, &mut it.y, self.g.draw(), self.f.draw(), &mut it.grad)?;
        it.outer_step(c.steps.outer * self.outer.factor(&it.x, &it.grad));
        Ok(())
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
}

/// ITD-BiO under `rule` (see the module doc).
pub fn build(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(Box<dyn Algorithm>, Params)> {
    let c = ctx.constants;
    let mut b = s.batches;
    let lower = Lower::new(c, ctx.problem)?;
    // The batch problem's solution is biased away from the full one below ⌈L_max/µ_g⌉ samples
    // (Theorem 4's task batches are exact only for a lower level that separates by task).
    let mut raised = None;
    if let (Some(inner), false, true) = (b.inner, s.explicit_batches[0], rule == StepRule::Default) {
        let n = ctx.problem.n_samples_g();
        if let Some(floor) = lower.batch_floor(c.known.mu_g).filter(|f| *f > inner || *f >= n) {
            b.inner = (floor < n).then_some(floor);
            raised = Some(floor);
        }
    }
    let mut p = Params::new(rule.name());
    let (alpha, gamma, t) = match rule {
        StepRule::Default => {
            let alpha = match b.inner {
                None => lower.sgd_step(None, b.sampling),
                Some(_) => (
                    1.0 / lower.l_max,
                    Source::default_because(
                        "1/L_max: GD on one batch, whose smoothness is at most the per-sample bound",
                    ),
                ),
            };
            // Lemma 6's truncation bias LM(1 − αµ)^T/µ does not shrink with the warm start: the
            // smaller step of a batch needs more steps.
            let gamma = Lower::outer_step(over_l_outer(c, s)?, c, &b, ctx.problem.n_samples_f());
            (alpha, gamma, lower.terms(b.inner))
        }
        StepRule::Experiments => match ctx.family {
            "quadratic" => {
                let e = || Source::experiments("paper 000 §5.1 (ITD/Reverse on the quadratic): α = 1/L_g, γ = 1/L_L");
                ((1.0 / c.l_g()?, e()), (over_l_outer(c, s)?, e()), (DEFAULT_STEPS, e()))
            }
            "logreg_text" => {
                let e = || Source::experiments("paper 000 §5.2 (20 Newsgroups): α = γ = 100, T = 10");
                ((100.0, e()), (100.0, e()), (DEFAULT_STEPS, e()))
            }
            "distillation" => {
                let e = || Source::experiments("paper 000 §5.3: α = 0.1, T = 10, γ = 10⁻³ (its grid's middle)");
                ((0.1, e()), (1e-3, e()), (DEFAULT_STEPS, e()))
            }
            f => {
                return Err(no_experiment(
                    "itd",
                    f,
                    "paper 000 ran it on the quadratic (§5.1), 20 Newsgroups (§5.2) and distillation (§5.3)",
                ))
            }
        },
        StepRule::Theory => {
            return Err(bilevel_kernels::KernelError::InvalidParameter {
                name: "steps",
                reason: "paper 002's Theorem 2 sets T = Θ(κ log 1/ε) from Δ, a bound on the warm-start error \
                         ‖y_k^0 − y*(x_k)‖² at every k that the paper assumes and does not prove (App. F.1): no problem \
                         can give it, so the rule is refused; use --steps default"
                    .into(),
            });
        }
    };
    let alpha = user_or(s.inner_step, "--inner-step", s, alpha);
    let gamma = user_or(s.outer_step, "--outer-step", s, gamma);
    let t = s.inner_steps_or(t);
    p.set(INNER_STEPS.0, INNER_STEPS.1, t.0, t.1);
    p.set(INNER_STEP.0, INNER_STEP.1, positive("inner_step", alpha.0)?, alpha.1);
    p.set(OUTER_STEP.0, OUTER_STEP.1, positive("outer_step", gamma.0)?, gamma.1);
    let shown = BatchSizes { hvp: None, cross: None, ..b };
    record_batches(&mut p, &shown, ["𝓑, the lower-level batch of an outer step", "|D_f|", "(𝓑)", "(𝓑)"]);
    p.params.retain(|q| !matches!(q.name, "batch_hvp" | "batch_cross"));
    if let Some(floor) = raised {
        p.set(
            "batch_inner",
            "𝓑, the lower-level batch of an outer step",
            b.inner.map_or_else(|| format!("full ({floor} ≥ n)"), |h| h.to_string()),
            Source::default_because(format!(
                "⌈L_max/µ_g⌉ = {floor}, raised from --batch-size: below it the batch problem's solution is biased away \
                 from the full one (paper 000 Thm 1's Hessian-batch floor; --batch-size-inner sets it)"
            )),
        );
    }
    let steps = StepSizes { inner: alpha.0, adjoint: alpha.0, outer: gamma.0 }.checked()?;
    let mut config =
        ItdConfig { inner_steps: t.0, steps, batches: b, seed: s.seed, scale: LowerScale::none(), outer_scale: None };
    if rule == StepRule::Default && s.inner_step.is_none() {
        config.scale = LowerScale::at_start(ctx.problem, ctx.x0);
        record_scale(&mut p, &config.scale);
    }
    if rule == StepRule::Default {
        config.outer_scale = super::amigo::outer_tracking(ctx, s, &mut p);
    }
    Ok((Box::new(ItdBilevel::with_config(config)?), p))
}
