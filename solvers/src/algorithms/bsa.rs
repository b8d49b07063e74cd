//! BSA — Ghadimi & Wang, *Approximation Methods for Bilevel Programming* (arXiv 1802.02246,
//! 2018), the stochastic double-loop method, as the comparison tables of papers 001 (Table 1,
//! row "BSA"), 002 (Table 2) and 004 (Table 1) configure it, with the Ghadimi–Wang randomized
//! Hessian-inverse estimate ([`crate::estimators::TruncatedHypergradient`], shared with
//! [`super::ttsa`] and SUSTAIN). The original paper is
//! not in the repository: what follows is what those tables and papers state.
//!
//! ```text
//! y ← y_0 (no warm start: paper 001 Table 1, WS = N,N)
//! t = 0..t_k−1:   y ← y − η_t ∂y g(x_k, y; S_t)            (fresh S_t, η_t = Θ(1/t))
//! ĝ_k = ∂x f(x_k, y; ξ) − ∂x∂y g(x_k, y; ζ_0) · p,
//! p   = (N_k/L) ∏_{i=1..q} (I − ∂yy g(x_k, y; ζ_i)/L) ∂y f(x_k, y; ξ),   q ~ U{0, …, N_k − 1}
//! x_{k+1} = x_k − γ_k ĝ_k
//! ```
//! with t_k = ⌈√(k+1)⌉ (paper 001: t_s = Θ(√s)), N_k = Θ(log √k) Neumann terms (paper 001:
//! k_s = Θ(log(√s))), γ_k = Θ(1/√k) (paper 001: α_s = Θ(1/√S)), batch size Θ(1) (papers 001,
//! 004; paper 002's MNIST experiment: batch 1). One ξ for both gradients of f (paper 004
//! eq. (7)'s ∇̄f(x, y; ξ̄)), a fresh ζ_i per HVP, its own ζ_0 for the cross product and an
//! independent stream for q.
//!
//! Cost per outer step k: t_k ∂y g; one ∂x f and one ∂y f; q HVPs (q random, E q = (N_k − 1)/2;
//! [`Bsa::last_depth`]); one cross product.
//!
//! Claimed complexity: O(ε⁻²) samples of f and O(ε⁻³) of g to E‖∇L‖² ≤ ε (paper 004 Table 1;
//! paper 001 Table 1: O(ε⁻³) in all); paper 002 Table 2: O(κ⁶ε⁻²) Gc(f), O(κ⁹ε⁻³) Gc(g),
//! Õ(κ⁶ε⁻²) HVPs (κ⁶ from its Theorem 3, the cell is garbled); paper 000 Table 1: O(κ_L⁴ε⁻²)
//! (strongly convex L) and O(κ_g⁹ε⁻³ + κ_g⁶ε⁻²) (non-convex).
//!
//! Parameters ([`schedule`]; L_b the smoothness every batch Hessian respects, L_max on
//! mini-batches, L_g on full batches; ℒ(b) the expected smoothness of [`super::lower`]):
//! - [`StepRule::Default`]: the structure papers 001, 002 and 004 give BSA, with our constants
//!   (the original theorem is not in the repository): η_t = 1/(2ℒ + µ_g t/2) (Θ(1/t), the
//!   strongly convex SGD step, 1/(2ℒ) at t = 0 by Gower et al.'s Thm 3.1; 1/L_g + … on full
//!   batches), t_k = ⌈√(k+1)⌉ inner steps from y_0, N_k = max(1, ⌈(L_b/µ_g) ln √(k+1)⌉) (the
//!   bias (1 − µ_g/L_b)^{N_k} ≤ 1/√(k+1) matches the 1/√k outer accuracy; paper 004 Lemma 2.1),
//!   γ_k = 1/(L_L √(k+1)).
//! - [`StepRule::Experiments`] and [`StepRule::Theory`]: refused. No paper of the repository
//!   reports the values BSA ran with (paper 000 adds it in §5.2–5.3 without its steps; paper
//!   002's MNIST grid does not say which values won), and Ghadimi & Wang's theorem is not in
//!   the repository, so its constants cannot be checked.
//!
//! The theorems bound a randomly drawn iterate: the output is x_a, a uniform over
//! x_0..x_{K−1} ([`Output::Uniform`](crate::Output)).
//!
//! Deviations and ambiguities: paper 001 writes α_s = Θ(1/√S) (constant, from the horizon S);
//! the driver does not tell an algorithm its horizon, so γ_k decreases with k (the brief's and
//! benchopt's reading: outer exponent 0.5). benchopt's `bsa.py` warm-starts y; paper 001's table
//! says it does not, and we follow the table. The kernel's estimator ([`RandomizedTruncation`](bilevel_kernels::linsolve::RandomizedTruncation)) fixes its horizon
//! at construction; for a growing N_k we keep one built with the cap [`MAX_HORIZON`] and rescale
//! its output by N_k/cap (the same vector up to one rounding), so that `step` does not allocate.

use super::lower::{over_l_outer, user_or, Lower, LowerScale};
use super::{initialised, Algorithm, Context, Iterates, Output, Settings, StepRule, StepSizes};
use crate::estimators::TruncatedHypergradient;
use crate::params::{Params, Source};
use crate::sampling::{BatchSizes, BatchStream};
use bilevel_kernels::{check_len, interrupt, ops, BilevelProblem, KernelError, Result};

/// The largest Neumann horizon a growing schedule reaches (N_k is capped there; at κ = 10⁴ the
/// theory schedule reaches it only after e^{2·10²} steps).
pub const MAX_HORIZON: usize = 1 << 20;

/// Stream number of the inner batches S_t (the estimator's ξ, ζ_i, ζ_0 and depth use 1–4).
const INNER_STREAM: u64 = 0;

/// The Neumann horizon N_k of outer step k (0-based).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Horizon {
    /// The same N every step.
    Fixed(usize),
    /// N_k = max(1, ⌈κ ln √(k+1)⌉), capped at `cap` (≤ [`MAX_HORIZON`]).
    Logarithmic {
        /// κ = L/µ_g.
        kappa: f64,
        /// The largest N_k.
        cap: usize,
    },
}

impl Horizon {
    /// N_k at outer step k (0-based).
    pub fn at(self, k: usize) -> usize {
        match self {
            Horizon::Fixed(n) => n,
            Horizon::Logarithmic { kappa, cap } => {
                let n = (kappa * 0.5 * ((k + 1) as f64).ln()).ceil();
                if n.is_finite() {
                    (n as usize).clamp(1, cap)
                } else {
                    cap
                }
            }
        }
    }
    /// The largest N_k the estimator must hold.
    pub(crate) fn cap(self) -> usize {
        match self {
            Horizon::Fixed(n) => n,
            Horizon::Logarithmic { cap, .. } => cap,
        }
    }
    pub(crate) fn check(self) -> Result<()> {
        let ok = match self {
            Horizon::Fixed(n) => (1..=MAX_HORIZON).contains(&n),
            Horizon::Logarithmic { kappa, cap } => {
                kappa.is_finite() && kappa >= 1.0 && (1..=MAX_HORIZON).contains(&cap)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(KernelError::InvalidParameter {
                name: "horizon",
                reason: format!("needs 1 <= N <= {MAX_HORIZON} or a finite kappa >= 1, got {self:?}"),
            })
        }
    }
}

/// BSA's schedules (see the module doc): inner η_t = 1/(a + b t), t_k = ⌈√(k+1)⌉, γ_k =
/// γ_0/√(k+1), the horizon N_k and the estimator's L.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BsaConfig {
    /// a of η_t = 1/(a + b t) (1/a = the first inner step).
    pub inner_a: f64,
    /// b of η_t = 1/(a + b t) (≥ 0; 0 gives a constant inner step).
    pub inner_b: f64,
    /// γ_0 of γ_k = γ_0/√(k+1).
    pub outer0: f64,
    /// The estimator's L (1/L is its step).
    pub lipschitz: f64,
    /// N_k.
    pub horizon: Horizon,
    /// Restart y from y_0 every outer step (paper 001 Table 1: BSA does not warm-start).
    pub restart_y: bool,
    /// Mini-batch sizes (S: `inner`, ξ: `outer`, ζ_i: `hvp`, ζ_0: `cross`).
    pub batches: BatchSizes,
    /// Seed of the streams.
    pub seed: u64,
}

impl BsaConfig {
    /// The inner step η_t of inner step t (0-based).
    pub fn inner_step(&self, t: usize) -> f64 {
        1.0 / (self.inner_a + self.inner_b * t as f64)
    }
    /// The number of inner steps t_k = ⌈√(k+1)⌉ of outer step k (0-based).
    pub fn inner_steps(k: usize) -> usize {
        ((k + 1) as f64).sqrt().ceil() as usize
    }
    /// The outer step γ_k of outer step k (0-based).
    pub fn outer_step(&self, k: usize) -> f64 {
        self.outer0 / ((k + 1) as f64).sqrt()
    }
    fn check(&self) -> Result<()> {
        StepSizes { inner: 1.0 / self.inner_a, adjoint: 1.0 / self.lipschitz, outer: self.outer0 }.checked()?;
        if !(self.inner_b.is_finite() && self.inner_b >= 0.0) {
            return Err(KernelError::InvalidParameter { name: "inner_b", reason: "must be finite and >= 0".into() });
        }
        self.horizon.check()
    }
}

/// The refusal of BSA's and TTSA's experiments and theory rules (see the module docs).
pub(crate) fn refused(name: &str, rule: StepRule) -> KernelError {
    let why = match rule {
        StepRule::Experiments => {
            "no paper of the repository reports the values it ran with (paper 000 §5.2–5.3 and paper 002 App. A add it \
             without them)"
        }
        _ => "its theorem's paper is not in the repository, so its constants cannot be checked",
    };
    KernelError::InvalidParameter {
        name: "steps",
        reason: format!(
            "`{name}` has no `{}` rule: {why}; --steps default runs its structure with our constants",
            rule.name()
        ),
    }
}

/// BSA's configuration under `rule` (see the module doc) and its parameters.
pub fn schedule(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(BsaConfig, Params)> {
    if rule != StepRule::Default {
        return Err(refused("bsa", rule));
    }
    let c = ctx.constants;
    let b = s.batches;
    let lower = Lower::new(c, ctx.problem)?;
    let mut p = Params::new(rule.name());
    let l_b = lower.per_batch(b.hvp.or(b.inner));
    let mu = c.mu_g()?;
    let (sgd, _) = lower.sgd_step(b.inner, b.sampling);
    let (inner_a, inner_b) = match s.inner_step {
        Some(a0) => (1.0 / a0, mu / 2.0),
        None => (1.0 / sgd, mu / 2.0),
    };
    let outer0 =
        user_or(s.outer_step, "--outer-step", s, (over_l_outer(c, s)?, Source::default_because("γ_0 = 1/L_L")));
    let horizon = match s.adjoint_steps {
        Some(n) => Horizon::Fixed(n),
        None => Horizon::Logarithmic { kappa: (l_b / mu).max(1.0), cap: super::lower::MAX_DEFAULT_TERMS },
    };
    p.set(
        "inner_steps",
        "t_k = ⌈√(k+1)⌉, inner SGD steps from y_0",
        "⌈√(k+1)⌉",
        Source::default_because("paper 001 Table 1: t_s = Θ(√s), no warm start"),
    );
    p.set(
        "inner_step",
        "η_t = 1/(a + b t), the inner SGD step",
        format!("1/({inner_a:.4e} + {inner_b:.4e} t)"),
        match s.inner_step {
            Some(_) => Source::user("--inner-step (η_0)"),
            None => {
                Source::default_because("Θ(1/t) (paper 001 Table 1), η_0 = 1/(2ℒ) (1/L_g on full batches), b = µ_g/2")
            }
        },
    );
    p.set("outer_step", "γ_k = γ_0/√(k+1), the outer step", format!("{:.4e}/√(k+1)", outer0.0), outer0.1.clone());
    p.set("outer_step0", "γ_0", outer0.0, outer0.1);
    let inner_src = super::lower::user_or(
        s.inner_step,
        "--inner-step",
        s,
        (0.0, Source::default_because("1/(2ℒ(b)) (1/L_g on full batches)")),
    )
    .1;
    p.set("inner_step0", "η_0", 1.0 / inner_a, inner_src);
    p.set(
        "adjoint_steps",
        "N_k, the estimator's Neumann horizon",
        match horizon {
            Horizon::Fixed(n) => format!("{n}"),
            Horizon::Logarithmic { kappa, cap } => format!("min({cap}, max(1, ⌈{kappa:.4e}·ln √(k+1)⌉))"),
        },
        match s.adjoint_steps {
            Some(_) => Source::user("--lin-steps"),
            None => Source::default_because(
                "paper 001 Table 1: k_s = Θ(log √s); bias (1 − µ_g/L_b)^N ≤ 1/√(k+1); at most 1000 (cost, ours)",
            ),
        },
    );
    p.set(
        "estimator_scale",
        "L_b, the estimator's 1/L",
        l_b,
        Source::default_because("L_max on mini-batches (‖I − H_B/L_b‖ ≤ 1 on every batch), L_g on full batches"),
    );
    super::amigo::record_batches(
        &mut p,
        &b,
        ["S_t, one per inner step", "ξ (∂x f and ∂y f)", "ζ_i, one per product", "ζ_0"],
    );
    p.set(
        "output",
        "the reported point",
        "x_a uniform over x_0..x_{K−1}",
        Source::default_because("the theorems bound a randomly drawn iterate (papers 001, 002 on BSA)"),
    );
    let config = BsaConfig {
        inner_a,
        inner_b,
        outer0: outer0.0,
        lipschitz: l_b,
        horizon,
        restart_y: true,
        batches: b,
        seed: s.seed,
    };
    config.check()?;
    Ok((config, p))
}

/// BSA under `rule`, as the registry builds it.
pub fn build(rule: StepRule, ctx: &Context<'_>, s: &Settings) -> Result<(Box<dyn Algorithm>, Params)> {
    let (config, mut p) = schedule(rule, ctx, s)?;
    let scale = tracking(ctx, s, &mut p);
    Ok((Box::new(Bsa::new(config)?.with_scale(scale)), p))
}

/// The default rule's rescaling along the run of BSA's and TTSA's lower-level steps (none
/// when the user set the inner step).
pub(crate) fn tracking(ctx: &Context<'_>, s: &Settings, p: &mut Params) -> LowerScale {
    if s.inner_step.is_some() {
        return LowerScale::none();
    }
    let scale = LowerScale::at_start(ctx.problem, ctx.x0);
    super::amigo::record_scale(p, &scale);
    scale
}

/// The run state of a [`GwLoop`]: the estimator, the inner stream, y_0, a work vector and k.
struct State {
    est: TruncatedHypergradient,
    inner: BatchStream,
    y0: Vec<f64>,
    work: Vec<f64>,
    k: usize,
}

impl State {
    /// Sized for `problem`, streams from `seed` (the inner one is [`INNER_STREAM`]).
    fn new(
        problem: &dyn BilevelProblem,
        y0: &[f64],
        lipschitz: f64,
        horizon: Horizon,
        b: BatchSizes,
        seed: u64,
    ) -> Result<Self> {
        Ok(Self {
            est: TruncatedHypergradient::new(problem, lipschitz, horizon.cap(), &b, seed)?,
            inner: BatchStream::new(problem.n_samples_g(), b.inner, b.sampling, seed, INNER_STREAM, 0)?,
            y0: y0.to_vec(),
            work: vec![0.0; problem.dim_y()],
            k: 0,
        })
    }
}

/// The schedule of a loop on the Ghadimi–Wang estimate ([`GwLoop`]): BSA's ([`BsaConfig`])
/// or TTSA's ([`super::ttsa::TtsaConfig`]). The two algorithms are configurations of one loop:
/// `inner_steps(k)` SGD steps on g (from y_0 when `restart_y`), the estimate with N_k terms,
/// an outer step.
pub trait GwSchedule {
    /// The CLI name.
    const NAME: &'static str;
    /// Inner SGD steps at outer step k (0-based).
    fn inner_steps(&self, k: usize) -> usize;
    /// The step of inner step t at outer step k.
    fn inner_step_at(&self, k: usize, t: usize) -> f64;
    /// The outer step at k.
    fn outer_step(&self, k: usize) -> f64;
    /// Whether y restarts from y_0 at every outer step.
    fn restart_y(&self) -> bool;
    /// The estimator's L, N_k, the batch sizes and the seed.
    fn estimator(&self) -> (f64, Horizon, BatchSizes, u64);
    /// Checks every parameter.
    fn check(&self) -> Result<()>;
}

impl GwSchedule for BsaConfig {
    const NAME: &'static str = "bsa";
    fn inner_steps(&self, k: usize) -> usize {
        BsaConfig::inner_steps(k)
    }
    fn inner_step_at(&self, _: usize, t: usize) -> f64 {
        self.inner_step(t)
    }
    fn outer_step(&self, k: usize) -> f64 {
        BsaConfig::outer_step(self, k)
    }
    fn restart_y(&self) -> bool {
        self.restart_y
    }
    fn estimator(&self) -> (f64, Horizon, BatchSizes, u64) {
        (self.lipschitz, self.horizon, self.batches, self.seed)
    }
    fn check(&self) -> Result<()> {
        BsaConfig::check(self)
    }
}

/// A loop on the Ghadimi–Wang estimate with schedule `C` (see [`GwSchedule`]).
pub struct GwLoop<C> {
    config: C,
    it: Iterates,
    state: Option<State>,
    scale: LowerScale,
}

/// BSA (see the module doc).
pub type Bsa = GwLoop<BsaConfig>;

impl<C: GwSchedule> GwLoop<C> {
    /// The algorithm with `config`; [`Algorithm::init`] sizes it for a problem.
    pub fn new(config: C) -> Result<Self> {
        config.check()?;
        Ok(Self { config, it: Iterates::default(), state: None, scale: LowerScale::none() })
    }
    /// The same loop with its lower-level steps (the inner step and the estimator's 1/L)
    /// rescaled along the run by `scale` ([`super::lower`]).
    pub fn with_scale(self, scale: LowerScale) -> Self {
        Self { scale, ..self }
    }
    /// The configuration.
    pub fn config(&self) -> &C {
        &self.config
    }
    /// The truncation depth q of the last step (its number of HVPs).
    pub fn last_depth(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.est.depth())
    }
}

impl<C: GwSchedule> Algorithm for GwLoop<C> {
    fn name(&self) -> &str {
        C::NAME
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        self.it = Iterates::new(problem, x0, y0)?;
        let (lipschitz, horizon, batches, seed) = self.config.estimator();
        self.state = Some(State::new(problem, y0, lipschitz, horizon, batches, seed)?);
        Ok(())
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let s = initialised(&mut self.state)?;
        let (c, it) = (&self.config, &mut self.it);
        check_len("x", problem.dim_x(), it.x.len())?;
        if c.restart_y() {
            it.y.copy_from_slice(&s.y0);
        }
        let r = self.scale.factor(problem, &it.x);
        let (lipschitz, horizon, ..) = c.estimator();
        s.est.set_lipschitz(lipschitz / r);
        for t in 0..c.inner_steps(s.k) {
            interrupt::check()?;
            problem.grad_y_g(&it.x, &it.y, s.inner.draw(), &mut s.work);
            ops::axpy(-c.inner_step_at(s.k, t) * r, &s.work, &mut it.y);
        }
        s.est.estimate(problem, &it.x, &it.y, horizon.at(s.k), &mut it.grad)?;
        it.outer_step(c.outer_step(s.k));
        s.k += 1;
        Ok(())
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
    /// The theorems bound a randomly drawn iterate: x_a uniform over x_0..x_{K−1}.
    fn output(&self) -> Output {
        Output::Uniform { first: 0, seed: self.config.estimator().3 }
    }
}
