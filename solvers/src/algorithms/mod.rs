//! The papers' deterministic bilevel algorithms, one file each, behind one [`Algorithm`] trait
//! that the [`driver`](crate::driver) runs.
//!
//! - [`aid`]: the AID-type outer loop (inner GD, an adjoint solve, an outer step), whose
//!   configurations are [`amigo`] (AmIGO-GD/CG and paper 000's baselines AID-GD/CG/CG-WS/FP/N)
//!   and [`aid_bio`] (AID-BiO);
//! - [`itd_bio`] (ITD-BiO) and [`bsgm`] (BSGM through SID, no warm start).
//!
//! Every algorithm offers two step-size rules ([`StepRule`]): its theorem's and its paper's
//! experiments'; each file says which theorem and which section. Construction takes the
//! configuration only; [`Algorithm::init`] sizes the state for a problem and a starting point
//! (as argmin's `Solver::init`), so one configured algorithm runs on many problems.

pub mod aid;
pub mod aid_bio;
pub mod amigo;
pub mod bo_rep;
pub mod bsa;
pub mod bsgm;
pub mod itd_bio;
pub mod stocbio;
pub mod sustain;
pub mod ttsa;

use crate::constants::{Constant, Constants};
use bilevel_kernels::{check_len, ops, BilevelProblem, FixedPointProblem, KernelError, Result};

/// One outer iteration at a time; the driver ([`crate::driver::run`]) calls [`init`](Self::init)
/// once, then [`step`](Self::step) until a stop rule fires.
pub trait Algorithm {
    /// The algorithm's name (as the CLI spells it).
    fn name(&self) -> &str;
    /// Sizes every buffer for `problem` and sets x_0, y_0 (allocates; `step` does not).
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()>;
    /// One outer iteration: x_k → x_{k+1}.
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()>;
    /// The iterates after the last step (empty before `init`).
    fn iterates(&self) -> &Iterates;
    /// The point the algorithm's theorem makes its claim about, which the driver reports as
    /// [`Trace::output`](crate::Trace::output) (the last iterate unless the file says otherwise).
    fn output(&self) -> Output {
        Output::Last
    }
}

/// Which point a run outputs: the one its convergence theorem bounds. It never changes the
/// iterates; the driver computes or draws it ([`crate::driver::run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    /// The last iterate x_K.
    Last,
    /// The averaged iterate the algorithm maintains ([`Iterates::averaged`]: AmIGO's x̂_k,
    /// paper 000 §4.1 and Corollary 2).
    Averaged,
    /// x_a, with a drawn uniformly from {first, …, K − 1 + first} over the K steps of the run,
    /// from its own stream of `seed` (drawing it changes no batch): first = 0 is stocBiO's x̄
    /// over x_0..x_{K−1} (paper 002 Def. 1) and BO-REP's average over the same iterates (paper
    /// 003 Thm 3.1), first = 1 SUSTAIN's a(T) ~ U{1..T} (paper 004 Thm 3.2). The expectation
    /// over the draw, the mean of ‖∇L(x_t)‖² over those iterates, is reported with it.
    Uniform {
        /// 0 or 1: the first candidate iterate.
        first: usize,
        /// The run's seed.
        seed: u64,
    },
}

/// An algorithm that also runs on a [`FixedPointProblem`] (Grazzi, Pontil & Salzo's setting:
/// λ in the role of x, the states w of all samples in the role of y); the driver's
/// [`run_fixed_point`](crate::driver::run_fixed_point) calls these. Its [`Algorithm`] form runs
/// the same steps on a bilevel problem's [`GradientMap`](bilevel_kernels::GradientMap), so one
/// implementation serves both problem kinds.
pub trait FixedPointAlgorithm: Algorithm {
    /// Sizes every buffer for `problem` and sets λ_0 and the states w_0 (length
    /// `n_samples · dim_state`); refuses a configuration the fixed-point form does not have.
    fn init_fixed_point(&mut self, problem: &dyn FixedPointProblem, lambda0: &[f64], w0: &[f64]) -> Result<()>;
    /// One outer iteration λ_k → λ_{k+1}; [`iterates`](Algorithm::iterates) then holds λ in `x`
    /// and the states in `y`.
    fn step_fixed_point(&mut self, problem: &dyn FixedPointProblem) -> Result<()>;
}

/// The iterates of an outer loop, as the driver reads them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Iterates {
    /// The current outer iterate x_k.
    pub x: Vec<f64>,
    /// The inner iterate of the last step, y_k.
    pub y: Vec<f64>,
    /// The outer point y_k was computed for (x_k of the step that computed it, before the
    /// outer update moved x): the inner error is ‖y_k − y*(x_at_y)‖.
    pub x_at_y: Vec<f64>,
    /// The last hypergradient estimate (length dim_x).
    pub grad: Vec<f64>,
    /// An average of the outer iterates, for algorithms whose theorem reports one
    /// ([`Output::Averaged`]); `None` otherwise.
    pub averaged: Option<Vec<f64>>,
}

impl Iterates {
    /// x_0, y_0 for `problem` (lengths checked), the gradient buffer sized.
    pub fn new(problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<Self> {
        check_len("x0", problem.dim_x(), x0.len())?;
        check_len("y0", problem.dim_y(), y0.len())?;
        Ok(Self::at(x0, y0))
    }
    /// λ_0 (as x) and the states w_0 of all samples (as y) for a fixed-point `problem`
    /// (lengths checked: `dim_lambda` and `n_samples · dim_state`).
    pub fn for_fixed_point(problem: &dyn FixedPointProblem, lambda0: &[f64], w0: &[f64]) -> Result<Self> {
        check_len("lambda0", problem.dim_lambda(), lambda0.len())?;
        check_len("w0 (all samples' states)", problem.n_samples() * problem.dim_state(), w0.len())?;
        Ok(Self::at(lambda0, w0))
    }
    fn at(x0: &[f64], y0: &[f64]) -> Self {
        Self { x: x0.to_vec(), y: y0.to_vec(), x_at_y: x0.to_vec(), grad: vec![0.0; x0.len()], averaged: None }
    }
    /// The outer gradient step x ← x − γ·grad, remembering the x that y belongs to.
    pub fn outer_step(&mut self, gamma: f64) {
        self.x_at_y.copy_from_slice(&self.x);
        ops::axpy(-gamma, &self.grad, &mut self.x);
    }
}

/// The state an algorithm builds in [`Algorithm::init`], or the typed error of a `step` before it.
pub(crate) fn initialised<T>(state: &mut Option<T>) -> Result<&mut T> {
    // `ok_or_else`: the error (a `String`) is built only when it is returned; `ok_or` built it
    // on every step, one allocation per step of every algorithm.
    state
        .as_mut()
        .ok_or_else(|| KernelError::InvalidParameter { name: "algorithm", reason: "init was not called".into() })
}

/// Which source the step sizes come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRule {
    /// The algorithm's convergence theorem (each file names it).
    Theory,
    /// The values its paper's experiments ran with (each file names the section).
    #[default]
    Experiments,
}

/// The step sizes of an algorithm.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct StepSizes {
    /// Inner GD step α.
    pub inner: f64,
    /// Adjoint GD/FP/Neumann step β (unused by CG).
    pub adjoint: f64,
    /// Outer step γ.
    pub outer: f64,
}

impl StepSizes {
    /// Checks every step is finite and > 0.
    pub fn checked(self) -> Result<Self> {
        for (name, v) in [("inner_step", self.inner), ("adjoint_step", self.adjoint), ("outer_step", self.outer)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(KernelError::InvalidParameter { name, reason: format!("must be finite and > 0, got {v}") });
            }
        }
        Ok(self)
    }
}

/// Step sizes as fractions of the inverse smoothness constants: α = `inner`/L_g,
/// β = `adjoint`/L_g, γ = `outer`/L_L — the form every theorem and experiment here states them in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepFractions {
    /// α·L_g.
    pub inner: f64,
    /// β·L_g.
    pub adjoint: f64,
    /// γ·L_L.
    pub outer: f64,
}

impl StepFractions {
    /// The step sizes for the constants `c` (needs L_g, and L_L unless `outer` sets γ by hand:
    /// [`STEP_FRACTIONS_NEED`]).
    pub fn at(self, c: &Constants, outer: Option<f64>) -> Result<StepSizes> {
        let l_g = c.l_g()?;
        let outer = match outer {
            Some(gamma) => gamma,
            None => self.outer / c.l_outer()?,
        };
        StepSizes { inner: self.inner / l_g, adjoint: self.adjoint / l_g, outer }.checked()
    }
}

/// The constants [`StepFractions::at`] needs.
pub const STEP_FRACTIONS_NEED: &[Constant] = &[Constant::LG, Constant::LOuter];

/// Paper 000 §5.1 (the synthetic quadratic): α = β = 1/L_g, γ = 1/L_L. Every algorithm's
/// experiments rule on the quadratics is this one: paper 000 runs all of them with it.
pub const PAPER000_EXPERIMENTS: StepFractions = StepFractions { inner: 1.0, adjoint: 1.0, outer: 1.0 };

/// The settings every algorithm of [`build`] may read (each reads those it has).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Settings {
    /// Inner steps T (AID types, ITD).
    pub inner_steps: usize,
    /// Adjoint steps N (AID types).
    pub adjoint_steps: usize,
    /// BSGM's c₃ (`None`: Theorem 17's bound).
    pub c3: Option<f64>,
    /// BSGM's projection.
    pub projection: bsgm::Projection,
    /// Replaces the rule's outer step γ when set.
    pub outer_step: Option<f64>,
    /// Mini-batch sizes per oracle (full batches by default: the deterministic algorithms).
    pub batches: crate::sampling::BatchSizes,
    /// Seed of the batch streams (the problem's own seed is separate).
    pub seed: u64,
    /// stocBiO's Neumann batches: paper 002 Prop. 3's decreasing sizes instead of uniform ones.
    pub neumann_decay: bool,
    /// Stochastic BSGM: the finite-horizon schedule ⌈c₃S⌉ with this S (Theorem 16 (ii)).
    pub horizon: Option<usize>,
    /// BSGM: paper 001 §7.1's fixed t_s = k_s = t instead of Theorem 16/17's schedules (not
    /// with `c3` or `horizon`, nor under the theory rule).
    pub fixed_steps: Option<usize>,
    /// SUSTAIN's and Adam-SUSTAIN's own options (Adam option, momentum constants).
    pub sustain: sustain::SustainOptions,
    /// BO-REP's own options (period, averaged steps, radius, momentum, ...; `None`: the rule's).
    pub bo_rep: bo_rep::BoRepOptions,
    /// AmIGO's averaged output x̂_k (paper 000 Corollary 2; `amigo-gd`, `amigo-cg` only; needs
    /// µ_L for δ = γµ_L).
    pub average: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            adjoint_steps: 10,
            c3: None,
            projection: bsgm::Projection::None,
            outer_step: None,
            batches: crate::sampling::BatchSizes::full(),
            seed: 0,
            neumann_decay: false,
            horizon: None,
            fixed_steps: None,
            sustain: sustain::SustainOptions::default(),
            bo_rep: bo_rep::BoRepOptions::default(),
            average: false,
        }
    }
}

/// Every algorithm [`build`] knows, by CLI name.
pub const NAMES: &[&str] = &[
    "amigo-cg",
    "amigo-gd",
    "aid-bio",
    "aid-cg",
    "aid-gd",
    "aid-cg-ws",
    "aid-fp",
    "aid-n",
    "itd",
    "bsgm",
    "stocbio",
    "bsa",
    "ttsa",
    "sustain",
    "adam-sustain",
    "bo-rep",
];

fn aid_variant(name: &str) -> Option<aid::AidVariant> {
    use aid::AidVariant::*;
    [AidBio, AmigoGd, AmigoCg, AidGd, AidCg, AidCgWs, AidFp, AidNeumann].into_iter().find(|v| v.name() == name)
}

fn unknown(name: &str) -> KernelError {
    KernelError::InvalidParameter {
        name: "algorithm",
        reason: format!("unknown `{name}`; one of {}", NAMES.join(", ")),
    }
}

/// The constants algorithm `name` needs under `rule` (to resolve them before [`build`]); L_L
/// is not needed when `settings.outer_step` sets γ.
pub fn needs(name: &str, rule: StepRule, settings: &Settings) -> Result<Vec<Constant>> {
    theory_fractions(name)?;
    let all = match (name, rule) {
        ("bsgm", StepRule::Theory) => bsgm::NEEDS_THEORY,
        ("bsgm", _) if !settings.batches.is_full() => bsgm::NEEDS_THEORY,
        ("stocbio", StepRule::Theory) => stocbio::NEEDS_THEORY,
        ("bsa", StepRule::Theory) => bsa::NEEDS_THEORY,
        ("bsa", StepRule::Experiments) => bsa::NEEDS_EXPERIMENTS,
        ("ttsa", StepRule::Theory) => ttsa::NEEDS_THEORY,
        ("ttsa", StepRule::Experiments) => ttsa::NEEDS_EXPERIMENTS,
        // --outer-step replaces SUSTAIN's scale a only: its theory still needs L_L.
        ("sustain" | "adam-sustain", StepRule::Theory) => return Ok(sustain::NEEDS_THEORY.to_vec()),
        ("sustain" | "adam-sustain", StepRule::Experiments) => sustain::NEEDS_EXPERIMENTS,
        // --outer-step replaces η only: K0 = L_L still sets I, R and the Epoch-SGD schedule.
        ("bo-rep", StepRule::Theory) => return Ok(bo_rep::NEEDS_THEORY.to_vec()),
        ("bo-rep", StepRule::Experiments) => bo_rep::NEEDS_EXPERIMENTS,
        _ if settings.neumann_decay && name == "stocbio" => stocbio::NEEDS_THEORY,
        _ => STEP_FRACTIONS_NEED,
    };
    let mut needs: Vec<Constant> =
        all.iter().copied().filter(|k| !(*k == Constant::LOuter && settings.outer_step.is_some())).collect();
    if settings.average {
        needs.push(Constant::MuOuter);
    }
    Ok(needs)
}

/// The theorem's step sizes of algorithm `name` (BSGM's Theorem 17 fixes c₃, not the steps).
fn theory_fractions(name: &str) -> Result<StepFractions> {
    match name {
        // Their theorems fix something else (BSGM's c₃) or more than fractions of 1/L (stocBiO).
        "bsgm" | "stocbio" | "bsa" | "ttsa" | "sustain" | "adam-sustain" | "bo-rep" => Ok(PAPER000_EXPERIMENTS),
        "itd" => Ok(itd_bio::THEORY),
        "aid-bio" => Ok(aid_bio::THEORY),
        n if aid_variant(n).is_some() => Ok(amigo::THEORY),
        n => Err(unknown(n)),
    }
}

/// The step sizes algorithm `name` runs with under `rule` and `settings.outer_step`.
pub fn step_sizes(name: &str, rule: StepRule, c: &Constants, settings: &Settings) -> Result<StepSizes> {
    if name == "stocbio" {
        return stocbio::step_sizes(rule, c, settings);
    }
    if matches!(name, "sustain" | "adam-sustain") {
        return sustain::step_sizes(rule, c, settings, &settings.sustain);
    }
    if name == "bo-rep" {
        return bo_rep::step_sizes(rule, c, settings, &settings.bo_rep);
    }
    // The baselines' schedules decrease with k: their k = 0 values.
    if name == "bsa" {
        let s = bsa::schedule(rule, c, settings)?;
        return StepSizes { inner: s.inner_step(0), adjoint: 1.0 / s.lipschitz, outer: s.outer0 }.checked();
    }
    if name == "ttsa" {
        let s = ttsa::schedule(rule, c, settings)?;
        return StepSizes { inner: s.inner0, adjoint: 1.0 / s.lipschitz, outer: s.outer0 }.checked();
    }
    let theory = theory_fractions(name)?;
    match rule {
        StepRule::Experiments => PAPER000_EXPERIMENTS.at(c, settings.outer_step),
        StepRule::Theory => theory.at(c, settings.outer_step),
    }
}

/// Algorithm `name` configured by `rule`, the constants and `settings`.
pub fn build(name: &str, rule: StepRule, c: &Constants, settings: &Settings) -> Result<Box<dyn Algorithm>> {
    match name {
        "bsa" => return bsa::build(rule, c, settings),
        "sustain" | "adam-sustain" => return sustain::build(name, rule, c, settings, &settings.sustain),
        "ttsa" => return ttsa::build(rule, c, settings),
        "bo-rep" => return bo_rep::build(rule, c, settings, &settings.bo_rep),
        _ => {}
    }
    if settings.average && !matches!(name, "amigo-gd" | "amigo-cg") {
        return Err(KernelError::InvalidParameter {
            name: "average",
            reason: format!(
                "the averaged output is AmIGO's (paper 000 Corollary 2: amigo-gd, amigo-cg), not `{name}`'s"
            ),
        });
    }
    let steps = step_sizes(name, rule, c, settings)?;
    let (t, n) = (settings.inner_steps, settings.adjoint_steps);
    if !settings.batches.is_full() && name == "itd" {
        return Err(KernelError::InvalidParameter {
            name: "batches",
            reason: format!("`{name}` runs on full batches here (its stochastic form is not implemented yet)"),
        });
    }
    if let Some(t) = settings.fixed_steps {
        let clash = match () {
            _ if name != "bsgm" => Some(format!("`{name}` has no t_s schedule")),
            _ if rule == StepRule::Theory => {
                Some("it is paper 001 §7.1's experiments schedule; the theory rule runs Theorem 16/17's".to_string())
            }
            _ if settings.c3.is_some() || settings.horizon.is_some() => {
                Some("c3 and horizon set Theorem 16/17's schedules, not a fixed one".to_string())
            }
            _ => None,
        };
        if let Some(why) = clash {
            return Err(KernelError::InvalidParameter { name: "fixed_steps", reason: format!("t = {t}: {why}") });
        }
    }
    let fixed = |b: bsgm::Bsgm| match settings.fixed_steps {
        Some(t) => b.with_fixed_steps(t),
        None => Ok(b),
    };
    Ok(match name {
        "bsgm" if !settings.batches.is_full() => {
            // Theorem 16: c₃ > 0 tunable, Θ(1) in Remark 18.
            let c3 = settings.c3.unwrap_or(1.0);
            let q = 1.0 - steps.inner * c.mu_g()?;
            let stochastic =
                bsgm::Stochastic { batches: settings.batches, seed: settings.seed, q, horizon: settings.horizon };
            Box::new(
                fixed(bsgm::Bsgm::new(steps.outer, steps.inner, c3, settings.projection)?)?.stochastic(stochastic)?,
            )
        }
        "bsgm" if settings.fixed_steps.is_some() => {
            // c₃ is not used by a fixed schedule (nor its Theorem 17 bound, which needs µ_g).
            fixed(bsgm::Bsgm::new(steps.outer, steps.inner, 1.0, settings.projection)?).map(Box::new)?
        }
        "bsgm" => {
            let c3 = bsgm::c3(rule, c, settings.c3)?;
            Box::new(bsgm::Bsgm::new(steps.outer, steps.inner, c3, settings.projection)?)
        }
        "itd" => Box::new(itd_bio::ItdBilevel::new(t, steps)?),
        "stocbio" => Box::new(stocbio::build(c, settings, steps)?),
        n_ => {
            let v = aid_variant(n_).ok_or_else(|| unknown(n_))?;
            let mut config =
                aid::AidBilevelConfig::variant(v, t, n, steps).with_batches(settings.batches, settings.seed);
            if settings.average {
                // δ = η_kγ_k with η_k ≡ µ_L (paper 000 §4.1; at most 1).
                config.average = Some((steps.outer * c.mu_outer()?).min(1.0));
            }
            Box::new(aid::AidBilevel::new(v.name(), config)?)
        }
    })
}
