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
//! Step sizes ([`schedule`]), L the smoothness every batch Hessian respects
//! ([`stocbio::batch_smoothness`]: the per-sample `l_g_sample` on
//! mini-batches, else L_g):
//! - [`StepRule::Theory`]: η_t = 2/(µ_g t + 2L) (Θ(1/t), the classical strongly convex SGD
//!   step, equal to 1/L at t = 0 so that no step overshoots), N_k = max(1, ⌈(L/µ_g) ln √(k+1)⌉)
//!   (the bias (1 − µ_g/L)^{N_k} ≤ 1/√(k+1) then matches the 1/√k outer accuracy; paper 004
//!   Lemma 2.1 for the bias), γ_k = 1/(L_L √(k+1)). The constants in front of the Θ's are not
//!   in the sources (the original theorem is not in the repository): these are the smallest
//!   choices the stated rates need, ours.
//! - [`StepRule::Experiments`]: paper 000 §5.1's α = 1/L_g, γ = 1/L_L (paper 000 adds BSA in
//!   §5.2–5.3 without stating its steps; paper 002's MNIST grid η ∈ {0.5·2^i}, Q ∈ {3, 6, 12, 24}
//!   does not say which values won) as the constants of the same schedules: η_t = 1/(L_g(t+1)),
//!   γ_k = 1/(L_L √(k+1)), and a fixed horizon N = `adjoint_steps` (paper 002's Q). The
//!   estimator's L stays the batch smoothness in both rules: with a smaller L a sample Hessian
//!   can make ‖I − H_i/L‖ > 1 and the product grow geometrically in q.
//!
//! Deviations and ambiguities: paper 001 writes α_s = Θ(1/√S) (constant, from the horizon S);
//! the driver does not tell an algorithm its horizon, so γ_k decreases with k (the brief's and
//! benchopt's reading: outer exponent 0.5). benchopt's `bsa.py` warm-starts y; paper 001's table
//! says it does not, and we follow the table. The output x̄ (a random iterate) is not drawn: the
//! trace reports every x_k. The kernel's estimator ([`RandomizedTruncation`](bilevel_kernels::linsolve::RandomizedTruncation)) fixes its horizon
//! at construction; for a growing N_k we keep one built with the cap [`MAX_HORIZON`] and rescale
//! its output by N_k/cap (the same vector up to one rounding), so that `step` does not allocate.

use super::{initialised, stocbio, Algorithm, Iterates, Settings, StepRule, StepSizes};
use crate::constants::{Constant, Constants};
use crate::estimators::TruncatedHypergradient;
use crate::sampling::{BatchSizes, BatchStream};
use bilevel_kernels::{check_len, ops, BilevelProblem, KernelError, Result};

/// The constants of the theory rule.
pub const NEEDS_THEORY: &[Constant] = &[Constant::MuG, Constant::LG, Constant::LOuter];
/// The constants of the experiments rule.
pub const NEEDS_EXPERIMENTS: &[Constant] = &[Constant::LG, Constant::LOuter];

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
    /// N_k = max(1, ⌈κ ln √(k+1)⌉), capped at [`MAX_HORIZON`].
    Logarithmic {
        /// κ = L/µ_g.
        kappa: f64,
    },
}

impl Horizon {
    /// N_k at outer step k (0-based).
    pub fn at(self, k: usize) -> usize {
        match self {
            Horizon::Fixed(n) => n,
            Horizon::Logarithmic { kappa } => {
                let n = (kappa * 0.5 * ((k + 1) as f64).ln()).ceil();
                if n.is_finite() {
                    (n as usize).clamp(1, MAX_HORIZON)
                } else {
                    MAX_HORIZON
                }
            }
        }
    }
    /// The largest N_k the estimator must hold.
    pub(crate) fn cap(self) -> usize {
        match self {
            Horizon::Fixed(n) => n,
            Horizon::Logarithmic { .. } => MAX_HORIZON,
        }
    }
    pub(crate) fn check(self) -> Result<()> {
        let ok = match self {
            Horizon::Fixed(n) => (1..=MAX_HORIZON).contains(&n),
            Horizon::Logarithmic { kappa } => kappa.is_finite() && kappa >= 1.0,
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

/// BSA's configuration under `rule` (see the module doc); `settings.outer_step` replaces γ_0.
pub fn schedule(rule: StepRule, c: &Constants, settings: &Settings) -> Result<BsaConfig> {
    let l = stocbio::batch_smoothness(c, settings)?;
    let outer0 = match settings.outer_step {
        Some(g) => g,
        None => 1.0 / c.l_outer()?,
    };
    let (inner_a, inner_b, horizon) = match rule {
        StepRule::Theory => {
            let mu = c.mu_g()?;
            (l, mu / 2.0, Horizon::Logarithmic { kappa: (l / mu).max(1.0) })
        }
        StepRule::Experiments => {
            let l_g = c.l_g()?;
            (l_g, l_g, Horizon::Fixed(settings.adjoint_steps))
        }
    };
    let config = BsaConfig {
        inner_a,
        inner_b,
        outer0,
        lipschitz: l,
        horizon,
        restart_y: true,
        batches: settings.batches,
        seed: settings.seed,
    };
    config.check()?;
    Ok(config)
}

/// BSA under `rule`, as the registry builds it.
pub fn build(rule: StepRule, c: &Constants, settings: &Settings) -> Result<Box<dyn Algorithm>> {
    Ok(Box::new(Bsa::new(schedule(rule, c, settings)?)?))
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
}

/// BSA (see the module doc).
pub type Bsa = GwLoop<BsaConfig>;

impl<C: GwSchedule> GwLoop<C> {
    /// The algorithm with `config`; [`Algorithm::init`] sizes it for a problem.
    pub fn new(config: C) -> Result<Self> {
        config.check()?;
        Ok(Self { config, it: Iterates::default(), state: None })
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
        for t in 0..c.inner_steps(s.k) {
            problem.grad_y_g(&it.x, &it.y, s.inner.draw(), &mut s.work);
            ops::axpy(-c.inner_step_at(s.k, t), &s.work, &mut it.y);
        }
        let horizon = c.estimator().1;
        s.est.estimate(problem, &it.x, &it.y, horizon.at(s.k), &mut it.grad)?;
        it.outer_step(c.outer_step(s.k));
        s.k += 1;
        Ok(())
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
}
