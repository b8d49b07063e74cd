//! The AID-type outer loop shared by AmIGO ([`super::amigo`]), AID-BiO ([`super::aid_bio`]) and
//! paper 000's AID baselines: they differ only in the adjoint solver and the warm starts, so
//! they are configurations of this one loop, not copies.
//!
//! One outer step k, full batch:
//! ```text
//! y ← y_{k−1} (warm start) or y_0;   T steps y ← y − α ∂y g(x_k, y)                 (A_k)
//! v ← v_{k−1} (warm start) or 0;     N steps of the adjoint solver on ∂yy g·v = ∂y f   (B_k)
//! x_{k+1} = x_k − γ (∂x f(x_k, y) − ∂x∂y g(x_k, y)·v)
//! ```
//! Cost per outer step: T ∂y g; one ∂x f and one ∂y f; N HVPs (N + 1 for CG warm-started from a
//! non-zero v); one cross product.
//!
//! Stochastic form (paper 000 Alg. 1–3, paper 002 Alg. 2–3), with [`AidBilevelConfig::batches`]:
//! a fresh batch D_g per inner step (Alg. 2; x-only work is hoisted only on full batches), one
//! batch D_f for ∂x f and ∂y f, a fresh Hessian batch per adjoint step (per Neumann term; one
//! per call for CG, our reading), a batch D_gxy for the cross product — each from its own
//! stream of the run's seed ([`crate::sampling`]). Full batches give the deterministic
//! iterates, bit for bit.

use crate::estimators::{AdjointSolver, Aid, AidConfig, AidStreams};
use crate::sampling::{BatchSizes, BatchStream};
use crate::{Algorithm, Iterates, Output};
use bilevel_kernels::{check_len, interrupt, ops, BilevelProblem, KernelError, Result};

use super::lower::{LowerScale, OuterScale};
use super::StepSizes;

/// The AID-type algorithms by name (paper 000 §5 and paper 002).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AidVariant {
    /// AID-BiO (paper 002 Alg. 1): warm-started y and CG.
    AidBio,
    /// AmIGO-GD (paper 000 Alg. 1 with Alg. 3): warm-started y and adjoint GD.
    AmigoGd,
    /// AmIGO-CG (paper 000 §5): warm-started y and CG.
    AmigoCg,
    /// AID-GD: warm-started y, adjoint GD from 0.
    AidGd,
    /// AID-CG: warm-started y, CG from 0.
    AidCg,
    /// AID-CG-WS: CG warm-started, y restarted from y_0.
    AidCgWs,
    /// AID-FP: warm-started y, the fixed-point adjoint from 0.
    AidFp,
    /// AID-N: warm-started y, a truncated Neumann series.
    AidNeumann,
}

impl AidVariant {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            AidVariant::AidBio => "aid-bio",
            AidVariant::AmigoGd => "amigo-gd",
            AidVariant::AmigoCg => "amigo-cg",
            AidVariant::AidGd => "aid-gd",
            AidVariant::AidCg => "aid-cg",
            AidVariant::AidCgWs => "aid-cg-ws",
            AidVariant::AidFp => "aid-fp",
            AidVariant::AidNeumann => "aid-n",
        }
    }
}

/// Configuration of [`AidBilevel`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AidBilevelConfig {
    /// Inner GD steps T per outer step.
    pub inner_steps: usize,
    /// Adjoint steps N per outer step.
    pub adjoint_steps: usize,
    /// α, β, γ.
    pub steps: StepSizes,
    /// The adjoint solver (its step is `steps.adjoint` for GD/FP/Neumann).
    pub adjoint: AdjointSolver,
    /// Warm start of y from the previous outer step.
    pub warm_start_y: bool,
    /// Warm start of v from the previous outer step.
    pub warm_start_v: bool,
    /// Mini-batch sizes per oracle (full: the deterministic algorithm).
    pub batches: BatchSizes,
    /// Seed of the batch streams.
    pub seed: u64,
    /// Per-term Hessian batch sizes of the Neumann adjoint: paper 002 Prop. 3's
    /// `|B_{Q+1−j}| = ⌈B·Q·(1−ημ)^{j−1}⌉` with B = `batches.hvp`, η the Neumann step and this µ
    /// ([`neumann_batch_sizes`]; `None`: B for every term).
    pub neumann_decay: Option<f64>,
    /// AmIGO's averaged output (paper 000 §4.1, Corollary 2): x̂_k = (1 − δ)x̂_{k−1} + δx_k
    /// with x̂_0 = x_0 and this δ ∈ (0, 1] — the recursion with u = 1 (the stochastic
    /// setting) and η_k ≡ µ_L, so δ = γµ_L. Reported as [`Output::Averaged`]; the iterates
    /// do not change.
    pub average: Option<f64>,
    /// Report stocBiO's x̄, drawn uniformly from x_0..x_{K−1} (paper 002 Def. 1, Thm 3), as
    /// [`Output::Uniform`].
    pub uniform_output: bool,
    /// The rescaling of α and β along the run ([`LowerScale`]; none by default).
    pub scale: LowerScale,
    /// L_L(x_0) when it is an estimate and the outer step follows the curvature seen along the
    /// run ([`OuterScale`]; `None` by default).
    pub outer_scale: Option<f64>,
    /// For a loop that restarts y from y_0 (AID-CG-WS) on a problem whose constants depend on
    /// x: T_k = [`cold_steps_at`](super::lower::cold_steps_at)(κ_g(x_k)) ≥ `inner_steps`, at most
    /// this cap (`None`: T fixed).
    pub cold_inner_cap: Option<usize>,
}

/// Stream numbers of the AID-type loop (independent streams of one seed).
const INNER_STREAM: u64 = 0;
/// The most sample indices one draw of the inner loop's batches holds (T·size otherwise: a
/// buffer larger than any one batch).
const INNER_CHUNK_INDICES: usize = 1 << 16;

/// Inner steps per draw for batches of `size` (0: full) over `t` steps: as many as fit in
/// [`INNER_CHUNK_INDICES`], at least one, at most `t`.
fn inner_chunk(size: usize, t: usize) -> usize {
    (INNER_CHUNK_INDICES / size.max(1)).clamp(1, t.max(1))
}
const OUTER_STREAM: u64 = 1;
const HVP_STREAM: u64 = 2;
const CROSS_STREAM: u64 = 3;

impl AidBilevelConfig {
    /// The named variant with T inner steps, N adjoint steps and the given step sizes.
    pub fn variant(v: AidVariant, inner_steps: usize, adjoint_steps: usize, steps: StepSizes) -> Self {
        let gd = AdjointSolver::Gd { step: steps.adjoint };
        let (adjoint, warm_start_y, warm_start_v) = match v {
            AidVariant::AidBio | AidVariant::AmigoCg => (AdjointSolver::Cg, true, true),
            AidVariant::AmigoGd => (gd, true, true),
            AidVariant::AidGd => (gd, true, false),
            AidVariant::AidCg => (AdjointSolver::Cg, true, false),
            AidVariant::AidCgWs => (AdjointSolver::Cg, false, true),
            AidVariant::AidFp => (AdjointSolver::FixedPoint { step: steps.adjoint }, true, false),
            AidVariant::AidNeumann => (AdjointSolver::Neumann { step: steps.adjoint }, true, false),
        };
        Self {
            inner_steps,
            adjoint_steps,
            steps,
            adjoint,
            warm_start_y,
            warm_start_v,
            batches: BatchSizes::full(),
            seed: 0,
            neumann_decay: None,
            average: None,
            uniform_output: false,
            scale: LowerScale::none(),
            outer_scale: None,
            cold_inner_cap: None,
        }
    }

    /// The same configuration on mini-batches drawn from streams of `seed`.
    pub fn with_batches(self, batches: BatchSizes, seed: u64) -> Self {
        Self { batches, seed, ..self }
    }
}

/// Paper 002 Prop. 3's Neumann batch sizes for Q = `terms` terms with base B = `base`, step η
/// and µ, indexed by the Neumann solver's labels (`sizes[i − 1] = |B_i|`): B_Q, applied first
/// and present in Q of the Q + 1 terms, is the largest. One function for the sizes: the
/// kernels' [`stochastic_neumann_batch_sizes`](bilevel_kernels::linsolve::stochastic_neumann_batch_sizes),
/// which refuses a B below Prop. 3's bound 1/(Q(1−ημ)^{Q−1}) (an empty batch is never raised
/// to one sample silently).
pub fn neumann_batch_sizes(base: usize, terms: usize, step: f64, mu: f64) -> Result<Vec<usize>> {
    bilevel_kernels::linsolve::stochastic_neumann_batch_sizes(base as f64, terms, step, mu)
}

/// The AID-type algorithm (see the module doc).
pub struct AidBilevel {
    name: String,
    config: AidBilevelConfig,
    it: Iterates,
    y0: Vec<f64>,
    aid: Option<Aid>,
    inner: BatchStream,
    streams: AidStreams,
    work: Vec<f64>,
    outer: OuterScale,
}

impl AidBilevel {
    /// The algorithm `name` with `config`; [`Algorithm::init`] sizes it for a problem.
    pub fn new(name: &str, config: AidBilevelConfig) -> Result<Self> {
        if config.inner_steps == 0 {
            return Err(KernelError::InvalidParameter { name: "inner_steps", reason: "must be >= 1".into() });
        }
        config.steps.checked()?;
        if let Some(delta) = config.average.filter(|d| !(*d > 0.0 && *d <= 1.0)) {
            return Err(KernelError::InvalidParameter {
                name: "average",
                reason: format!("the averaging weight δ = γµ_L must be in (0, 1], got {delta}"),
            });
        }
        if config.average.is_some() && config.uniform_output {
            return Err(KernelError::InvalidParameter {
                name: "average",
                reason: "one output: the averaged iterate or a uniformly drawn one, not both".into(),
            });
        }
        // Validate the adjoint configuration now (sizes come with init).
        Aid::new(
            AidConfig { solver: config.adjoint, steps: config.adjoint_steps, warm_start: config.warm_start_v },
            0,
            0,
        )?;
        Ok(Self {
            name: name.to_string(),
            config,
            it: Iterates::default(),
            y0: Vec::new(),
            aid: None,
            inner: BatchStream::full(),
            streams: AidStreams::full(),
            work: Vec::new(),
            outer: config.outer_scale.map_or_else(OuterScale::none, OuterScale::from_estimate),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AidBilevelConfig {
        &self.config
    }
}

impl Algorithm for AidBilevel {
    fn name(&self) -> &str {
        &self.name
    }
    fn init(&mut self, problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<()> {
        let (dx, dy) = (problem.dim_x(), problem.dim_y());
        self.it = Iterates::new(problem, x0, y0)?;
        let c = &self.config;
        self.it.averaged = c.average.map(|_| x0.to_vec());
        self.aid = Some(Aid::new(
            AidConfig { solver: c.adjoint, steps: c.adjoint_steps, warm_start: c.warm_start_v },
            dx,
            dy,
        )?);
        (self.y0, self.work) = (y0.to_vec(), vec![0.0; dy]);
        self.outer.init(dx);
        let (b, seed) = (c.batches, c.seed);
        let (n_f, n_g) = (problem.n_samples_f(), problem.n_samples_g());
        let t = c.cold_inner_cap.unwrap_or(c.inner_steps).max(c.inner_steps);
        let capacity = b.inner.map_or(0, |s| s * inner_chunk(s, t));
        self.inner = BatchStream::new(n_g, b.inner, b.sampling, seed, INNER_STREAM, capacity)?;
        let hvp_sizes = match (c.neumann_decay, b.hvp, c.adjoint) {
            (Some(mu), Some(base), AdjointSolver::Neumann { step }) => {
                neumann_batch_sizes(base, c.adjoint_steps, step, mu)?
            }
            _ => Vec::new(),
        };
        let largest = hvp_sizes.iter().copied().max().unwrap_or(0);
        self.streams = AidStreams {
            outer: BatchStream::new(n_f, b.outer, b.sampling, seed, OUTER_STREAM, 0)?,
            hvp: BatchStream::new(n_g, b.hvp, b.sampling, seed, HVP_STREAM, largest)?,
            hvp_sizes,
            cross: BatchStream::new(n_g, b.cross, b.sampling, seed, CROSS_STREAM, 0)?,
        };
        Ok(())
    }
    fn step(&mut self, problem: &dyn BilevelProblem) -> Result<()> {
        let aid = super::initialised(&mut self.aid)?;
        let (c, it) = (&self.config, &mut self.it);
        check_len("x", problem.dim_x(), it.x.len())?;
        if !c.warm_start_y {
            it.y.copy_from_slice(&self.y0);
        }
        let r = c.scale.factor(problem, &it.x);
        aid.scale_steps(r);
        let t = match (c.cold_inner_cap, problem.constants_at(&it.x)) {
            (Some(cap), Some(k)) => match (k.mu_g, k.l_g) {
                (Some(mu), Some(l)) => super::lower::cold_steps_at(l / mu, c.inner_steps, cap),
                _ => c.inner_steps,
            },
            _ => c.inner_steps,
        };
        // In chunks of at most INNER_CHUNK_INDICES sample indices (one step at least): the
        // batch buffer stays small and the watch is checked between chunks (the streams draw
        // the same indices as one T·size draw would).
        let chunk = inner_chunk(self.inner.size(), t);
        let mut left = t;
        while left > 0 {
            let n = left.min(chunk);
            interrupt::check()?;
            problem.inner_gradient_steps(&it.x, &mut it.y, c.steps.inner * r, self.inner.steps(n), &mut self.work);
            left -= n;
        }
        aid.estimate_sampled(problem, &it.x, &it.y, &mut self.streams, &mut it.grad)?;
        it.outer_step(c.steps.outer * self.outer.factor(&it.x, &it.grad));
        if let (Some(delta), Some(avg)) = (c.average, it.averaged.as_mut()) {
            ops::axpby(delta, &it.x, 1.0 - delta, avg);
        }
        Ok(())
    }
    fn iterates(&self) -> &Iterates {
        &self.it
    }
    fn output(&self) -> Output {
        match (self.config.average, self.config.uniform_output) {
            (Some(_), _) => Output::Averaged,
            (None, true) => Output::Uniform { first: 0, seed: self.config.seed },
            (None, false) => Output::Last,
        }
    }
}
