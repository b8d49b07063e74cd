//! The papers' deterministic bilevel algorithms, one file each, behind one [`Algorithm`] trait
//! that the [`driver`](crate::driver) runs.
//!
//! - [`aid`]: the AID-type outer loop (inner GD, an adjoint solve, an outer step), whose
//!   configurations are [`amigo`] (AmIGO-GD/CG and paper 000's baselines AID-GD/CG/CG-WS/FP/N)
//!   and [`aid_bio`] (AID-BiO);
//! - [`itd_bio`] (ITD-BiO) and [`bsgm`] (BSGM through SID, no warm start).
//!
//! Every algorithm's parameters are resolved once by [`build`] under a rule ([`StepRule`]):
//! our default (written in the problem's constants, aware of mini-batches, followed along the
//! run where the constants depend on x: [`lower`]), its paper's experiments (where a paper ran
//! that problem), or its theorem; each number is recorded with its source in a
//! [`Params`](crate::params::Params) list that the CLI prints and writes to its JSON. Each
//! file says which theorem and which section. Construction takes the configuration only;
//! [`Algorithm::init`] sizes the state for a problem and a starting point (as argmin's
//! `Solver::init`), so one configured algorithm runs on many problems.

pub mod aid;
pub mod aid_bio;
pub mod amigo;
pub mod bo_rep;
pub mod bsa;
pub mod bsgm;
pub mod itd_bio;
pub mod lower;
pub mod stocbio;
pub mod sustain;
pub mod ttsa;

use crate::constants::{Constant, Constants};
use crate::params::{Params, Source};
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
    /// Copies `other` into these buffers (no allocation once the lengths match).
    pub fn copy_from(&mut self, other: &Iterates) {
        self.x.clone_from(&other.x);
        self.y.clone_from(&other.y);
        self.x_at_y.clone_from(&other.x_at_y);
        self.grad.clone_from(&other.grad);
        match (&mut self.averaged, &other.averaged) {
            (Some(a), Some(b)) => a.clone_from(b),
            (a, b) => *a = b.clone(),
        }
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

/// Where the parameters come from (each algorithm's file says what each rule sets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRule {
    /// Our default: written in the problem's constants (1/L-type steps, the expected
    /// smoothness of mini-batches, followed along the run where the constants depend on x);
    /// each parameter's source says why, and cites the paper where the values are a paper's.
    #[default]
    Default,
    /// The values of the paper's own experiments on this problem (the section cited); an error
    /// where no paper ran the algorithm on the problem.
    Experiments,
    /// The algorithm's convergence theorem: every parameter it prescribes, from the problem's
    /// constants (each file names the theorem and what it bounds or refuses).
    Theory,
}

impl StepRule {
    /// The rule's name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            StepRule::Default => "default",
            StepRule::Experiments => "experiments",
            StepRule::Theory => "theory",
        }
    }
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
            lower::positive(name, v)?;
        }
        Ok(self)
    }
}

/// The settings every algorithm of [`build`] may read (each reads those it has). `None`: the
/// rule's value.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Settings {
    /// Inner steps T (AID types, ITD, stocBiO).
    pub inner_steps: Option<usize>,
    /// Adjoint steps N (CG iterations, GD steps, Neumann terms Q; SUSTAIN's K).
    pub adjoint_steps: Option<usize>,
    /// The inner (lower-level) step α.
    pub inner_step: Option<f64>,
    /// The adjoint step (β of AmIGO's Alg. 3, η of a Neumann series).
    pub adjoint_step: Option<f64>,
    /// The outer step γ.
    pub outer_step: Option<f64>,
    /// BSGM's c₃ (`None`: the rule's).
    pub c3: Option<f64>,
    /// BSGM's projection.
    pub projection: bsgm::Projection,
    /// Mini-batch sizes per oracle (full batches by default: the deterministic algorithms).
    pub batches: crate::sampling::BatchSizes,
    /// Which of (inner, outer, hvp, cross) the user set on its own (`--batch-size-hvp`, ...):
    /// a rule may raise a batch set only through the shared `--batch-size` to the size its
    /// source needs (AmIGO's Hessian batch, [`lower::Lower::batch_floor`]), never one of these.
    pub explicit_batches: [bool; 4],
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
    /// The theory rules' target ε (each theorem's measure, its file says which).
    pub epsilon: Option<f64>,
    /// The run's iteration budget, for the theorems that fix their horizon in advance
    /// (SUSTAIN's Theorem 3.2: T).
    pub iterations: Option<usize>,
    /// Which of the overrides `inner_step`, `outer_step` came from `--steps search` (their
    /// source says so), not the user.
    pub searched: [bool; 2],
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            inner_steps: None,
            adjoint_steps: None,
            inner_step: None,
            adjoint_step: None,
            outer_step: None,
            c3: None,
            projection: bsgm::Projection::None,
            batches: crate::sampling::BatchSizes::full(),
            explicit_batches: [false; 4],
            seed: 0,
            neumann_decay: false,
            horizon: None,
            fixed_steps: None,
            sustain: sustain::SustainOptions::default(),
            bo_rep: bo_rep::BoRepOptions::default(),
            average: false,
            epsilon: None,
            iterations: None,
            searched: [false; 2],
        }
    }
}

/// The default T and N of the AID-type loops, stocBiO's T and Q and SUSTAIN's K: 10, paper 000
/// §5.2's and paper 002's experiments (T = N = 10, Q = 10) and inside paper 000 §5.1's grid.
pub const DEFAULT_STEPS: usize = 10;

impl Settings {
    /// T: the user's, else `rule_value` with its source.
    pub(crate) fn inner_steps_or(&self, rule_value: (usize, Source)) -> (usize, Source) {
        match self.inner_steps {
            Some(t) => (t, Source::user("--inner-steps")),
            None => rule_value,
        }
    }
    /// N: the user's, else `rule_value` with its source.
    pub(crate) fn adjoint_steps_or(&self, rule_value: (usize, Source)) -> (usize, Source) {
        match self.adjoint_steps {
            Some(n) => (n, Source::user("--lin-steps")),
            None => rule_value,
        }
    }
}

/// What [`build`] reads besides the settings: the problem (sizes, sample counts, its constants
/// along the run), the catalogue generator it came from (for the experiments rules), the
/// resolved constants and the starting point.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The problem the algorithm will run on.
    pub problem: &'a dyn BilevelProblem,
    /// The catalogue generator's name (`quadratic`, `logreg_text`, ...; empty when unknown).
    pub family: &'a str,
    /// The resolved constants.
    pub constants: &'a Constants,
    /// The starting point x_0.
    pub x0: &'a [f64],
}

/// A configured algorithm and the parameters it was configured with.
pub struct Built {
    /// The algorithm.
    pub algorithm: Box<dyn Algorithm>,
    /// Every parameter, with its source.
    pub params: Params,
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

/// The error of an experiments rule where no paper ran `algo` on `family`, naming where its
/// paper's experiments are.
pub(crate) fn no_experiment(algo: &str, family: &str, where_: &str) -> KernelError {
    KernelError::InvalidParameter {
        name: "steps",
        reason: format!(
            "no paper ran `{algo}` on `{family}` with settings to reproduce ({where_}); \
             use --steps default (written in the problem's constants) or theory"
        ),
    }
}

/// The constants algorithm `name` needs under `rule` (to resolve them before [`build`]).
pub fn needs(name: &str, rule: StepRule, settings: &Settings) -> Result<Vec<Constant>> {
    use Constant::*;
    let mut all: Vec<Constant> = match (name, rule) {
        ("bsgm", _) if settings.fixed_steps.is_some() && settings.batches.is_full() => vec![LG, LOuter],
        ("bsgm", _) => vec![MuG, LG, LOuter],
        ("stocbio", StepRule::Theory) => stocbio::NEEDS_THEORY.to_vec(),
        (n, StepRule::Theory) if aid_variant(n).is_some() => vec![MuG, LG],
        ("stocbio", _) if settings.neumann_decay => vec![MuG, LG, LOuter],
        ("bsa" | "ttsa", _) => vec![MuG, LG, LOuter],
        ("sustain", StepRule::Theory) => sustain::NEEDS_THEORY.to_vec(),
        ("adam-sustain", _) => vec![LG],
        ("bo-rep", StepRule::Theory) => bo_rep::NEEDS_THEORY.to_vec(),
        ("bo-rep", _) => vec![LG],
        (n, _) if aid_variant(n).is_some() || n == "itd" || n == "stocbio" || n == "sustain" => vec![LG, LOuter],
        (n, _) => return Err(unknown(n)),
    };
    // --outer-step replaces the γ written in L_L (not SUSTAIN's or BO-REP's theory, whose
    // other parameters need it).
    let keeps_l_outer = rule == StepRule::Theory && matches!(name, "sustain" | "bo-rep");
    if settings.outer_step.is_some() && !keeps_l_outer {
        all.retain(|k| *k != LOuter);
    }
    if settings.average {
        all.push(MuOuter);
    }
    Ok(all)
}

impl Settings {
    /// These settings without the step counts and schedule constants `name` would not read
    /// under `rule` (`inner_steps`, `adjoint_steps`, `c3`, `fixed_steps`, `horizon`), so that
    /// one `Settings` can be passed to several algorithms; the others stay (and
    /// [`check_used`] refuses them).
    pub fn keep_used(mut self, name: &str, rule: StepRule) -> Self {
        for _ in 0..5 {
            match check_used(name, rule, &self) {
                Err(KernelError::InvalidParameter { name: "inner_steps", .. }) => self.inner_steps = None,
                Err(KernelError::InvalidParameter { name: "adjoint_steps", .. }) => self.adjoint_steps = None,
                Err(KernelError::InvalidParameter { name: "c3", .. }) => self.c3 = None,
                Err(KernelError::InvalidParameter { name: "fixed_steps", .. }) => self.fixed_steps = None,
                Err(KernelError::InvalidParameter { name: "horizon", .. }) => self.horizon = None,
                _ => break,
            }
        }
        self
    }
}

/// Refuses a setting `name` would not read under `rule` (a flag that changes nothing makes two
/// identical runs look different): the error names the setting, its flag and who reads it.
/// [`build`] calls it; `bilevel solve` also before estimating any constant (early).
/// [`Settings::keep_used`] clears what `name` would not read, for a program that shares one
/// `Settings` across algorithms.
pub fn check_used(name: &str, rule: StepRule, s: &Settings) -> Result<()> {
    let aid = aid_variant(name).is_some();
    let batched = !s.batches.is_full();
    let theory = rule == StepRule::Theory;
    let o = &s.sustain;
    let b = &s.bo_rep;
    let bo_rep_set = b.period.is_some()
        || b.lower_steps.is_some()
        || b.radius.is_some()
        || b.beta.is_some()
        || b.z_step.is_some()
        || b.lower_step.is_some()
        || b.init_steps.is_some();
    // (given, read, setting, flag, who reads it)
    let checks: [(bool, bool, &'static str, &str, &str); 13] = [
        (
            s.inner_steps.is_some(),
            aid || matches!(name, "itd" | "stocbio" | "bo-rep"),
            "inner_steps",
            "--inner-steps",
            "the AID/AmIGO family, itd, stocbio (T) and bo-rep (its refinement's default length)",
        ),
        (
            s.adjoint_steps.is_some(),
            aid || matches!(name, "stocbio" | "sustain" | "adam-sustain" | "bsa" | "ttsa"),
            "adjoint_steps",
            "--lin-steps",
            "the AID/AmIGO family (N), stocbio (Q), sustain and adam-sustain (K), bsa and ttsa (the truncation's horizon)",
        ),
        (
            s.adjoint_step.is_some(),
            aid || matches!(name, "stocbio" | "bo-rep"),
            "adjoint_step",
            "--adjoint-step",
            "the AID/AmIGO family (β), stocbio (η) and bo-rep (ν)",
        ),
        (s.c3.is_some(), name == "bsgm", "c3", "--c3", "bsgm"),
        (s.fixed_steps.is_some(), name == "bsgm", "fixed_steps", "--fixed-steps", "bsgm"),
        (s.horizon.is_some(), name == "bsgm" && batched, "horizon", "--horizon", "bsgm on mini-batches (Theorem 16 (ii))"),
        (
            s.neumann_decay,
            name == "stocbio" && batched,
            "neumann_decay",
            "--neumann-decay",
            "stocbio on mini-batches (paper 002 Prop. 3)",
        ),
        (
            s.average,
            matches!(name, "amigo-gd" | "amigo-cg"),
            "average",
            "--average",
            "amigo-gd and amigo-cg (AmIGO's averaged output, paper 000 Corollary 2)",
        ),
        (
            s.epsilon.is_some(),
            theory && matches!(name, "stocbio" | "bo-rep"),
            "epsilon",
            "--epsilon",
            "the theory rules of stocbio (Thm 3) and bo-rep (Thm 3.1)",
        ),
        (
            o.w.is_some() || o.c_eta.is_some() || o.c_beta.is_some(),
            matches!(name, "sustain" | "adam-sustain"),
            "sustain",
            "--momentum-w/--momentum-c-eta/--momentum-c-beta",
            "sustain and adam-sustain",
        ),
        (o.upper_only, name == "sustain", "upper_only", "--upper-momentum-only", "sustain"),
        (
            o.adam_option != sustain::AdamOption::II,
            name == "adam-sustain",
            "adam_option",
            "--adam-option",
            "adam-sustain",
        ),
        (bo_rep_set, name == "bo-rep", "bo_rep", "--period/--lower-steps/--radius/--momentum-beta/--z-step/--lower-step/--init-steps", "bo-rep"),
    ];
    for (given, read, setting, flag, who) in checks {
        if given && !read {
            let rule = rule.name();
            return Err(KernelError::InvalidParameter {
                name: setting,
                reason: format!(
                    "{flag} is not used by `{name}` (rule {rule}{}); it is read by {who}",
                    if batched { ", mini-batches" } else { ", full batches" }
                ),
            });
        }
    }
    Ok(())
}

/// Algorithm `name` configured by `rule`, the problem and its constants (`ctx`) and
/// `settings`, with every parameter and its source.
pub fn build(name: &str, rule: StepRule, ctx: &Context<'_>, settings: &Settings) -> Result<Built> {
    check_used(name, rule, settings)?;
    let (algorithm, params): (Box<dyn Algorithm>, Params) = match name {
        "bsa" => bsa::build(rule, ctx, settings)?,
        "ttsa" => ttsa::build(rule, ctx, settings)?,
        "sustain" | "adam-sustain" => sustain::build(name, rule, ctx, settings)?,
        "bo-rep" => bo_rep::build(rule, ctx, settings)?,
        "bsgm" => bsgm::build(rule, ctx, settings)?,
        "itd" => itd_bio::build(rule, ctx, settings)?,
        "stocbio" => stocbio::build(rule, ctx, settings)?,
        n => {
            let v = aid_variant(n).ok_or_else(|| unknown(n))?;
            amigo::build(v, rule, ctx, settings)?
        }
    };
    Ok(Built { algorithm, params })
}

/// The constants algorithm `name` needs under `rule` ([`needs`], resolved by
/// [`crate::constants::resolve`] from the problem, `overrides` and estimates at (x_0, y_0)),
/// and on mini-batches of a problem that reports no per-sample bound, L_max estimated over a
/// few batches at x_0 ([`crate::constants::batch_smoothness_at`]); with notes saying what was
/// estimated (for the parameters' list).
#[allow(clippy::too_many_arguments)]
pub fn constants_for(
    name: &str,
    rule: StepRule,
    problem: &dyn BilevelProblem,
    x0: &[f64],
    y0: &[f64],
    overrides: &crate::constants::Overrides,
    settings: &Settings,
) -> Result<(Constants, Vec<String>)> {
    use crate::constants::{self, SMOOTHNESS_DRAWS};
    let needs = needs(name, rule, settings)?;
    let mut c = constants::resolve(problem, x0, y0, &needs, overrides)?;
    let mut notes = Vec::new();
    let g_batch = [settings.batches.inner, settings.batches.hvp].into_iter().flatten().min();
    if let Some(b) = g_batch.filter(|_| c.known.l_g_sample.is_none() && c.known.l_g.is_some()) {
        let l = constants::batch_smoothness_at(problem, x0, y0, b, settings.seed)?;
        c.known.l_g_sample = Some(l.max(c.known.l_g.unwrap_or(0.0)));
        notes.push(format!(
            "L_max = {l:.4e}: the problem reports no per-sample bound; the largest λ_max of ∂yy g over \
             {SMOOTHNESS_DRAWS} batches of {b} at x0 (an estimate, not a bound)"
        ));
    }
    let estimated: Vec<&str> = [Constant::MuG, Constant::LG, Constant::LOuter]
        .into_iter()
        .filter(|k| c.is_estimated(*k))
        .map(|k| k.name())
        .collect();
    if !estimated.is_empty() {
        notes.push(format!(
            "estimated at x0: {} (a step from a constant at x0 may be too large where the curvature grows: the run \
             stops as Diverged; set --outer-step or --l-outer)",
            estimated.join(", ")
        ));
    }
    if c.at_x0 {
        notes.push("the lower-level constants are the problem's bounds at x0; they move with x".into());
    }
    Ok((c, notes))
}

/// [`constants_for`] then [`build`]: everything `bilevel solve` does before a run, as one call
/// (the notes go to the parameters' list).
#[allow(clippy::too_many_arguments)]
pub fn configure(
    name: &str,
    rule: StepRule,
    problem: &dyn BilevelProblem,
    family: &str,
    x0: &[f64],
    y0: &[f64],
    overrides: &crate::constants::Overrides,
    settings: &Settings,
) -> Result<(Built, Constants)> {
    let (c, notes) = constants_for(name, rule, problem, x0, y0, overrides, settings)?;
    let ctx = Context { problem, family, constants: &c, x0 };
    let mut built = build(name, rule, &ctx, settings)?;
    built.params.notes.extend(notes);
    Ok((built, c))
}
