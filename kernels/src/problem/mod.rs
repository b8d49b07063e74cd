//! The bilevel problem as a set of oracles, and a wrapper that counts every oracle call.
//!
//! ```text
//! min_x L(x) = f(x, y*(x)),   y*(x) = argmin_y g(x, y)   (g strongly convex in y)
//! ∇L(x) = ∂x f(x, y*) − ∂x∂y g(x, y*)·v*,   ∂yy g(x, y*)·v* = ∂y f(x, y*)
//! ```
//!
//! Generators (bilevel-data) implement [`BilevelProblem`]; algorithms (bilevel-solvers) consume
//! it. Complexity is counted in oracle calls, as the papers count it: wrap a problem in
//! [`Counted`] to get exact, machine-independent counts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Which samples an oracle averages over: all of them, or a mini-batch of sample indices
/// (indices into the upper-level samples for f, the lower-level samples for g).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch<'a> {
    /// Every sample.
    Full,
    /// The samples at these indices (repeats allowed: sampling with replacement).
    Rows(&'a [usize]),
}

impl Batch<'_> {
    /// Number of samples this batch covers, given the full count `n`.
    pub fn len(&self, n: usize) -> usize {
        match self {
            Batch::Full => n,
            Batch::Rows(r) => r.len(),
        }
    }
    /// Whether this batch covers no sample, given the full count `n`.
    pub fn is_empty(&self, n: usize) -> bool {
        self.len(n) == 0
    }
}

/// The batch of each step of an inner gradient loop
/// ([`BilevelProblem::inner_gradient_steps`]): the same batch for every step (the deterministic
/// loop with [`Batch::Full`]), or a fresh mini-batch per step, as AmIGO's Alg. 2 (Arbel & Mairal)
/// and stocBiO's Alg. 2 (Ji, Yang & Liang) draw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepBatches<'a> {
    /// `steps` steps, all on `batch`.
    Same {
        /// The batch of every step.
        batch: Batch<'a>,
        /// The number of steps.
        steps: usize,
    },
    /// `rows.len() / size` steps; step t on `rows[t·size .. (t+1)·size]` (a remainder shorter
    /// than `size` is not used; `size == 0` means no step).
    Chunks {
        /// The sample indices of all steps, back to back.
        rows: &'a [usize],
        /// The batch size of one step.
        size: usize,
    },
}

impl<'a> StepBatches<'a> {
    /// `steps` full-batch steps: the deterministic inner loop.
    pub fn full(steps: usize) -> Self {
        StepBatches::Same { batch: Batch::Full, steps }
    }
    /// The number of steps.
    pub fn steps(&self) -> usize {
        match *self {
            StepBatches::Same { steps, .. } => steps,
            StepBatches::Chunks { rows, size } => rows.len().checked_div(size).unwrap_or(0),
        }
    }
    /// The batch of step `t` (`t < steps()`).
    pub fn batch(&self, t: usize) -> Batch<'a> {
        match *self {
            StepBatches::Same { batch, .. } => batch,
            StepBatches::Chunks { rows, size } => Batch::Rows(&rows[t * size..(t + 1) * size]),
        }
    }
}

/// The oracles of a bilevel problem. All outputs are overwritten, never accumulated.
///
/// **Error policy** (one for every problem and every algorithm): oracles are infallible.
/// - Preconditions: `x.len() == dim_x()`, `y.len() == dim_y()`, vectors in y-space have length
///   `dim_y()`, outputs the length of the space they live in, and batch indices are
///   `< n_samples_f()` (f) or `< n_samples_g()` (g). They are checked where they are
///   established — sizes when an algorithm is initialised on a problem, batch indices where a
///   batch is built (the samplers) — never inside an oracle. Violating one is a bug of the
///   caller and may panic (as slice indexing does); it is never reachable from user input.
/// - Invalid data (a non-finite feature, a singular matrix, a bad preset) is refused with a
///   typed [`KernelError`](crate::KernelError) when the problem is built or loaded.
/// - Numerical failure during a run (an iterate or an oracle output going non-finite because a
///   step is too large) is detected once per outer step by the driver, which stops the run with
///   a typed error and keeps the trace so far. Oracles do not scan their outputs for NaN.
///
/// Oracles do not allocate.
pub trait BilevelProblem: Sync {
    /// Length of x (the outer variable).
    fn dim_x(&self) -> usize;
    /// Length of y (the inner variable).
    fn dim_y(&self) -> usize;
    /// Number of samples of the upper-level objective f (1 for a deterministic problem).
    fn n_samples_f(&self) -> usize {
        1
    }
    /// Number of samples of the lower-level objective g (1 for a deterministic problem).
    fn n_samples_g(&self) -> usize {
        1
    }

    /// Upper-level value f(x, y).
    fn f(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64;
    /// Lower-level value g(x, y).
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64;
    /// ∂x f(x, y), length dim_x.
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// ∂y f(x, y), length dim_y.
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// ∂y g(x, y), length dim_y.
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// The Hessian-vector product ∂yy g(x, y)·v, length dim_y.
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// The cross product ∂x∂y g(x, y)·v (v in y-space), length dim_x.
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]);

    /// The inner loop y ← y − α ∂y g(x, y; batch_t), one step per batch of `batches`. The
    /// default calls [`grad_y_g`](Self::grad_y_g) each step; problems override it to hoist the
    /// work that depends on x only (the quadratic computes B x once, not once per step).
    /// `work` has length dim_y. Counts as `batches.steps()` lower-level gradient calls.
    fn inner_gradient_steps(&self, x: &[f64], y: &mut [f64], alpha: f64, batches: StepBatches<'_>, work: &mut [f64]) {
        for t in 0..batches.steps() {
            self.grad_y_g(x, y, batches.batch(t), work);
            crate::ops::axpy(-alpha, work, y);
        }
    }

    /// Exact references, when the problem knows them in closed form.
    fn exact(&self) -> Option<&dyn ExactReference> {
        None
    }

    /// The constants step-size rules need, as far as the problem knows them without an
    /// eigen-solve (a generator that prescribes its spectrum knows them exactly). Unknown ones
    /// are `None`; `bilevel_solvers::constants` estimates or asks for them.
    fn constants(&self) -> ProblemConstants {
        ProblemConstants::default()
    }

    /// The lower-level constants at `x`, for a problem whose µ_g and L_g depend on x (a
    /// regularizer exp(λ), an embedding): bounds that hold at this x for every y, cheap to
    /// evaluate (no oracle call, not counted). Algorithms rescale their lower-level steps by
    /// them along the run, so a step set at x_0 stays stable where the curvature grows.
    /// `None` (the default): the constants do not depend on x, [`constants`](Self::constants)
    /// holds everywhere.
    fn constants_at(&self, x: &[f64]) -> Option<ProblemConstants> {
        let _ = x;
        None
    }

    /// Runs `calls` with oracle calls that read samples already drawn and counted in this
    /// iteration: ∂x f after ∂y f on the same batch at the same point, a product on the batch
    /// of another at the same point, or the same sample at a second point (SUSTAIN's replay).
    /// The papers count such a sample once (paper 002: Gc(F) = K·D_f; paper 004 App. A: "two
    /// gradients for each sample accessed"). Calls still count as calls; only [`Counted`]
    /// skips their samples (`calls` captures the problem it calls). Default: runs `calls`.
    fn replay(&self, calls: &mut dyn FnMut()) {
        calls()
    }

    /// What the problem can measure at (x, y) for a trace besides the exact references
    /// (validation loss, test accuracy, ...). Evaluated outside the counted and timed work.
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        None
    }
}

/// The constants of a bilevel problem that step sizes and theorems use. `None`: not known to
/// the problem (estimate it, or let the user set it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProblemConstants {
    /// µ_g: the strong-convexity modulus of g in y, a lower bound on λ_min(∂yy g) over the
    /// region the algorithms visit (exact for a quadratic).
    pub mu_g: Option<f64>,
    /// L_g: the smoothness of g in y, an upper bound on λ_max(∂yy g).
    pub l_g: Option<f64>,
    /// L_L: the smoothness of the outer objective L(x) = f(x, y*(x)), λ_max(∇²L).
    pub l_outer: Option<f64>,
    /// µ_L: the strong-convexity modulus of L, where L is strongly convex.
    pub mu_outer: Option<f64>,
    /// For a finite sum g = (1/n) Σ g_i: max_i λ_max(∂yy g_i), the per-sample smoothness the
    /// stochastic theorems bound their steps by (above L_g in general).
    pub l_g_sample: Option<f64>,
    /// For a finite sum f = (1/n) Σ f_i: a bound on max_i λ_max(∇²L_i), L_i(x) = f_i(x, y*(x))
    /// (y* the full lower level's solution): the per-sample smoothness of the outer objective,
    /// the L_max of Gower et al. 2019's expected smoothness for a mini-batch outer estimate.
    pub l_outer_sample: Option<f64>,
    /// For a finite sum: min_i λ_min(∂yy g_i), the per-sample strong convexity the stochastic
    /// theorems assume (paper 002 Assumption 1: every G(x, ·; ζ) µ-strongly convex); 0 when a
    /// sample's Hessian is singular (rank-one samples), so no such theorem applies.
    pub mu_g_sample: Option<f64>,
    /// sup ‖∂x∂y g‖ over every (x, y), per sample for a finite sum: paper 000's L'_g, papers
    /// 003/004's C_gxy (for a quadratic g, ‖B_g‖₂).
    pub cross_bound: Option<f64>,
    /// sup ‖∂y f‖ over every (x, y), per sample for a finite sum: paper 000's B, paper 004's
    /// C_fy, and paper 002's M in the reading its proofs use (they bound only ‖∇y f‖; notes
    /// §7.2.1). `None` where it is unbounded (a quadratic f in y).
    pub grad_y_f_bound: Option<f64>,
    /// L_f: the smoothness of f jointly in (x, y), per sample for a finite sum (it bounds the
    /// Lipschitz constants of ∂x f and ∂y f, paper 004's L_fx and L_fy).
    pub l_f: Option<f64>,
    /// The Lipschitz constants of ∂x∂y g and of ∂yy g in (x, y) (paper 002's τ and ρ, paper
    /// 000's M_g, paper 004's L_gxy and L_gyy): 0 for a quadratic g.
    pub cross_lipschitz: Option<f64>,
    /// See [`cross_lipschitz`](Self::cross_lipschitz): ρ.
    pub hess_lipschitz: Option<f64>,
}

/// Quantities a problem can report at (x, y) for a trace (e.g. validation loss and accuracy of
/// a data problem). Never used by algorithms; evaluated on the uncounted problem.
pub trait ProblemMetrics: Sync {
    /// The metric names, in the order [`evaluate`](Self::evaluate) writes them (CSV headers).
    fn names(&self) -> &[&'static str];
    /// Writes one value per name into `out` (`out.len() == names().len()`).
    fn evaluate(&self, x: &[f64], y: &[f64], out: &mut [f64]);
}

/// Closed-form quantities a problem may know (used to measure errors, never by algorithms).
pub trait ExactReference: Sync {
    /// y*(x).
    fn y_star(&self, x: &[f64], out: &mut [f64]);
    /// v*(x) = [∂yy g(x, y*)]⁻¹ ∂y f(x, y*).
    fn v_star(&self, x: &[f64], out: &mut [f64]);
    /// L(x) = f(x, y*(x)).
    fn value(&self, x: &[f64]) -> f64;
    /// ∇L(x).
    fn hypergradient(&self, x: &[f64], out: &mut [f64]);
    /// (x*, L*) = argmin / min of L, when known.
    fn minimum(&self) -> Option<(&[f64], f64)> {
        None
    }
}

/// Counts of oracle calls, and of the samples they touched (a full-batch call on n samples
/// touches n). The papers' complexities count calls; sample counts measure stochastic work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OracleCounts {
    /// Values of f.
    pub f: u64,
    /// Values of g.
    pub g: u64,
    /// ∂x f.
    pub grad_x_f: u64,
    /// ∂y f.
    pub grad_y_f: u64,
    /// ∂y g.
    pub grad_y_g: u64,
    /// Hessian-vector products ∂yy g·v.
    pub hvp: u64,
    /// Cross products ∂x∂y g·v (JVPs in paper 002's words).
    pub cross: u64,
    /// Samples of f touched.
    pub samples_f: u64,
    /// Samples of g touched.
    pub samples_g: u64,
}

/// How the gradients of f are counted: the papers differ, and a complexity claim is checked
/// in its own paper's convention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountingConvention {
    /// Arbel & Mairal (paper 000, eq. (8)): a (∂x f, ∂y f) pair at one point is one call.
    #[default]
    PairedGradF,
    /// Ji, Yang & Liang (paper 002, Table 1 "Gc(f)"): ∂x f and ∂y f are counted separately.
    SeparateGradF,
}

impl OracleCounts {
    /// Upper-level gradient calls under `convention`.
    pub fn grad_f(&self, convention: CountingConvention) -> u64 {
        match convention {
            CountingConvention::PairedGradF => self.grad_x_f.max(self.grad_y_f),
            CountingConvention::SeparateGradF => self.grad_x_f + self.grad_y_f,
        }
    }

    /// Total oracle calls: gradients of f (under `convention`) + ∂y g + HVPs + cross products,
    /// what paper 000's eq. (8) sums.
    pub fn total(&self, convention: CountingConvention) -> u64 {
        self.grad_f(convention) + self.grad_y_g + self.hvp + self.cross
    }

    /// `self − start`, field by field (the counts of a run that started at `start`).
    pub fn since(&self, start: &OracleCounts) -> OracleCounts {
        let s = start;
        OracleCounts {
            f: self.f - s.f,
            g: self.g - s.g,
            grad_x_f: self.grad_x_f - s.grad_x_f,
            grad_y_f: self.grad_y_f - s.grad_y_f,
            grad_y_g: self.grad_y_g - s.grad_y_g,
            hvp: self.hvp - s.hvp,
            cross: self.cross - s.cross,
            samples_f: self.samples_f - s.samples_f,
            samples_g: self.samples_g - s.samples_g,
        }
    }
}

#[derive(Default)]
struct Counters {
    f: AtomicU64,
    g: AtomicU64,
    grad_x_f: AtomicU64,
    grad_y_f: AtomicU64,
    grad_y_g: AtomicU64,
    hvp: AtomicU64,
    cross: AtomicU64,
    samples_f: AtomicU64,
    samples_g: AtomicU64,
    /// Inside [`BilevelProblem::replay`]: calls count, their samples do not.
    replaying: std::sync::atomic::AtomicBool,
}

impl Counters {
    fn snapshot(&self) -> OracleCounts {
        OracleCounts {
            f: self.f.load(Relaxed),
            g: self.g.load(Relaxed),
            grad_x_f: self.grad_x_f.load(Relaxed),
            grad_y_f: self.grad_y_f.load(Relaxed),
            grad_y_g: self.grad_y_g.load(Relaxed),
            hvp: self.hvp.load(Relaxed),
            cross: self.cross.load(Relaxed),
            samples_f: self.samples_f.load(Relaxed),
            samples_g: self.samples_g.load(Relaxed),
        }
    }
    fn reset(&self) {
        let c = self;
        for a in [&c.f, &c.g, &c.grad_x_f, &c.grad_y_f, &c.grad_y_g, &c.hvp, &c.cross, &c.samples_f, &c.samples_g] {
            a.store(0, Relaxed);
        }
    }
}

/// A problem whose every oracle call is counted (atomics: usable from parallel code): a
/// [`BilevelProblem`], or a [`FixedPointProblem`] (its calls counted in the fields of their
/// gradient-map meaning: see `counted_fixed_point.rs`).
pub struct Counted<P> {
    inner: P,
    c: Counters,
}

impl<P> Counted<P> {
    /// Wraps `inner` with all counts at zero.
    pub fn new(inner: P) -> Self {
        Self { inner, c: Counters::default() }
    }
    /// The wrapped problem (calls to it are not counted).
    pub fn inner(&self) -> &P {
        &self.inner
    }
    /// Unwraps the problem.
    pub fn into_inner(self) -> P {
        self.inner
    }
    /// The counts so far.
    pub fn counts(&self) -> OracleCounts {
        self.c.snapshot()
    }
    /// Sets every count to zero.
    pub fn reset(&self) {
        self.c.reset()
    }
    /// `calls` with sample counting off (the calls still count): [`BilevelProblem::replay`].
    fn replaying(&self, calls: &mut dyn FnMut()) {
        let was = self.c.replaying.swap(true, Relaxed);
        calls();
        self.c.replaying.store(was, Relaxed);
    }
    /// Adds `n` calls to `calls` and their samples (`total` for a full batch) to the upper or
    /// lower sample count.
    fn tick_samples(&self, calls: &AtomicU64, n: u64, upper: bool, batch: Batch<'_>, total: usize) {
        calls.fetch_add(n, Relaxed);
        if self.c.replaying.load(Relaxed) {
            return;
        }
        let samples = if upper { &self.c.samples_f } else { &self.c.samples_g };
        samples.fetch_add(n * batch.len(total) as u64, Relaxed);
    }
}

impl<P: BilevelProblem> Counted<P> {
    fn tick(&self, calls: &AtomicU64, n: u64, upper: bool, batch: Batch<'_>) {
        let total = if upper { self.inner.n_samples_f() } else { self.inner.n_samples_g() };
        self.tick_samples(calls, n, upper, batch, total)
    }
}

impl<P: BilevelProblem> BilevelProblem for Counted<P> {
    fn dim_x(&self) -> usize {
        self.inner.dim_x()
    }
    fn dim_y(&self) -> usize {
        self.inner.dim_y()
    }
    fn n_samples_f(&self) -> usize {
        self.inner.n_samples_f()
    }
    fn n_samples_g(&self) -> usize {
        self.inner.n_samples_g()
    }
    fn f(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        self.tick(&self.c.f, 1, true, batch);
        self.inner.f(x, y, batch)
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        self.tick(&self.c.g, 1, false, batch);
        self.inner.g(x, y, batch)
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.grad_x_f, 1, true, batch);
        self.inner.grad_x_f(x, y, batch, out)
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.grad_y_f, 1, true, batch);
        self.inner.grad_y_f(x, y, batch, out)
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.grad_y_g, 1, false, batch);
        self.inner.grad_y_g(x, y, batch, out)
    }
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.hvp, 1, false, batch);
        self.inner.hvp(x, y, v, batch, out)
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.tick(&self.c.cross, 1, false, batch);
        self.inner.cross(x, y, v, batch, out)
    }
    fn inner_gradient_steps(&self, x: &[f64], y: &mut [f64], alpha: f64, batches: StepBatches<'_>, work: &mut [f64]) {
        for t in 0..batches.steps() {
            self.tick(&self.c.grad_y_g, 1, false, batches.batch(t));
        }
        self.inner.inner_gradient_steps(x, y, alpha, batches, work)
    }
    fn exact(&self) -> Option<&dyn ExactReference> {
        self.inner.exact()
    }
    fn constants(&self) -> ProblemConstants {
        self.inner.constants()
    }
    fn constants_at(&self, x: &[f64]) -> Option<ProblemConstants> {
        self.inner.constants_at(x)
    }
    fn replay(&self, calls: &mut dyn FnMut()) {
        self.replaying(calls)
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        self.inner.metrics()
    }
}

/// Implements every oracle of [`BilevelProblem`] (dimensions, sample counts, f, g, their
/// derivatives and the inner loop) by calling the same method on `self.$inner`: for a problem
/// that wraps another and adds only its own references, constants or metrics. Use it inside
/// the `impl BilevelProblem` block, then write the methods that differ:
///
/// ```
/// use bilevel_kernels::{models::QuadraticBilevel, BilevelProblem, ExactReference};
/// struct Mine { inner: QuadraticBilevel }
/// impl BilevelProblem for Mine {
///     bilevel_kernels::forward_oracles!(inner);
///     fn exact(&self) -> Option<&dyn ExactReference> {
///         self.inner.exact()
///     }
/// }
/// ```
#[macro_export]
macro_rules! forward_oracles {
    ($($inner:tt)+) => {
        fn dim_x(&self) -> usize {
            self.$($inner)+.dim_x()
        }
        fn dim_y(&self) -> usize {
            self.$($inner)+.dim_y()
        }
        fn n_samples_f(&self) -> usize {
            self.$($inner)+.n_samples_f()
        }
        fn n_samples_g(&self) -> usize {
            self.$($inner)+.n_samples_g()
        }
        $crate::forward_derivatives!($($inner)+);
    };
}

/// The part of [`forward_oracles!`] after the sizes: f, g, their derivatives and the inner
/// loop, for a wrapper that states its own dimensions or sample counts (a test's biased
/// sampler, a sub-sampled problem).
#[macro_export]
macro_rules! forward_derivatives {
    ($($inner:tt)+) => {
        fn f(&self, x: &[f64], y: &[f64], batch: $crate::Batch<'_>) -> f64 {
            self.$($inner)+.f(x, y, batch)
        }
        fn g(&self, x: &[f64], y: &[f64], batch: $crate::Batch<'_>) -> f64 {
            self.$($inner)+.g(x, y, batch)
        }
        fn grad_x_f(&self, x: &[f64], y: &[f64], batch: $crate::Batch<'_>, out: &mut [f64]) {
            self.$($inner)+.grad_x_f(x, y, batch, out)
        }
        fn grad_y_f(&self, x: &[f64], y: &[f64], batch: $crate::Batch<'_>, out: &mut [f64]) {
            self.$($inner)+.grad_y_f(x, y, batch, out)
        }
        fn grad_y_g(&self, x: &[f64], y: &[f64], batch: $crate::Batch<'_>, out: &mut [f64]) {
            self.$($inner)+.grad_y_g(x, y, batch, out)
        }
        fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: $crate::Batch<'_>, out: &mut [f64]) {
            self.$($inner)+.hvp(x, y, v, batch, out)
        }
        fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: $crate::Batch<'_>, out: &mut [f64]) {
            self.$($inner)+.cross(x, y, v, batch, out)
        }
        fn inner_gradient_steps(
            &self,
            x: &[f64],
            y: &mut [f64],
            alpha: f64,
            batches: $crate::StepBatches<'_>,
            work: &mut [f64],
        ) {
            self.$($inner)+.inner_gradient_steps(x, y, alpha, batches, work)
        }
    };
}

/// `&&P → &P` for the forwarding macro.
trait DerefProblem<P: ?Sized> {
    fn deref_problem(&self) -> &P;
}

impl<P: ?Sized> DerefProblem<P> for &P {
    fn deref_problem(&self) -> &P {
        self
    }
}

/// A borrowed problem is a problem (a search runs many short runs on one problem).
impl<P: BilevelProblem + ?Sized> BilevelProblem for &P {
    crate::forward_oracles!(deref_problem());
    fn exact(&self) -> Option<&dyn ExactReference> {
        (**self).exact()
    }
    fn constants(&self) -> ProblemConstants {
        (**self).constants()
    }
    fn constants_at(&self, x: &[f64]) -> Option<ProblemConstants> {
        (**self).constants_at(x)
    }
    fn replay(&self, calls: &mut dyn FnMut()) {
        (**self).replay(calls)
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        (**self).metrics()
    }
}

/// A boxed problem is a problem (the catalogue returns `Box<dyn BilevelProblem + Send>`).
impl<P: BilevelProblem + ?Sized> BilevelProblem for Box<P> {
    crate::forward_oracles!(as_ref());
    fn exact(&self) -> Option<&dyn ExactReference> {
        (**self).exact()
    }
    fn constants(&self) -> ProblemConstants {
        (**self).constants()
    }
    fn constants_at(&self, x: &[f64]) -> Option<ProblemConstants> {
        (**self).constants_at(x)
    }
    fn replay(&self, calls: &mut dyn FnMut()) {
        (**self).replay(calls)
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        (**self).metrics()
    }
}

/// A bilevel problem whose lower level is a fixed point `w = Φ(w, λ)` of a contraction, one
/// state of [`dim_state`](Self::dim_state) values per sample (Grazzi, Pontil & Salzo, *Bilevel
/// Optimization with a Lower-level Contraction*, eq. (1)–(3)):
///
/// ```text
/// min_λ  E(w(λ), λ),   w(λ) = Φ(w(λ), λ)
/// ∇f(λ) = ∇λE + ∂λΦᵀ v,   (I − ∂wΦᵀ) v = ∇wE
/// ```
///
/// States of a batch are `len × dim_state` row-major, row p belonging to sample `batch[p]`
/// (all samples in order for `Batch::Full`). Oracles overwrite their outputs; sizes are the
/// caller's precondition (checked once by the algorithms); an oracle that cannot compute (a
/// batch index out of range) writes NaN rather than a plausible number.
pub trait FixedPointProblem: Sync {
    /// Length of λ.
    fn dim_lambda(&self) -> usize;
    /// Length of one sample's state w_i.
    fn dim_state(&self) -> usize;
    /// Number of samples (states w_i).
    fn n_samples(&self) -> usize;
    /// `out = Φ(w, λ)` on the batch.
    fn map(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// `out = ∂wΦ(w, λ)·v` (state-sized).
    fn jvp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// `out = ∂wΦ(w, λ)ᵀ·v` (state-sized).
    fn vjp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// `out = ∂λΦ(w, λ)ᵀ·v` (λ-sized; a sum over the batch's rows).
    fn vjp_lambda(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// The upper objective E(w, λ) on the batch.
    fn upper(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>) -> f64;
    /// `out = ∇wE(w, λ)` (state-sized).
    fn upper_grad_w(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]);
    /// `out = ∇λE(w, λ)` (λ-sized).
    fn upper_grad_lambda(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]);

    /// What the problem can measure at (λ, w) for a trace (training loss, accuracy, ...), `w`
    /// the states the algorithm holds (all samples' for a deterministic run; an algorithm that
    /// runs on batches may pass only the last batch's: see its doc). Evaluated outside the
    /// counted and timed work.
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        None
    }

    /// The problem's constraint set Λ on λ, described for reports (`None`: Λ = R^m, and
    /// [`project`](Self::project) does nothing).
    fn constraint_set(&self) -> Option<&str> {
        None
    }

    /// P_Λ: projects λ onto the problem's constraint set in place (the projection of paper 001's
    /// Algorithm 2, eq. (20)). Not an oracle (not counted); it may fail, with a typed error (a
    /// wrong length, a decomposition that does not converge). A non-finite λ is left
    /// non-finite, for the algorithm's non-finite check. Default: Λ = R^m, nothing to do.
    fn project(&self, lambda: &mut [f64]) -> crate::Result<()> {
        let _ = lambda;
        Ok(())
    }

    /// Runs `calls` with oracle calls that read samples already counted (∇λE after ∇wE on the
    /// same examples at the same point: paper 001 counts them once); as
    /// [`BilevelProblem::replay`].
    fn replay(&self, calls: &mut dyn FnMut()) {
        calls()
    }
}

/// A boxed fixed-point problem is one (the catalogue returns `Box<dyn FixedPointProblem + Send>`).
impl<P: FixedPointProblem + ?Sized> FixedPointProblem for Box<P> {
    fn dim_lambda(&self) -> usize {
        (**self).dim_lambda()
    }
    fn dim_state(&self) -> usize {
        (**self).dim_state()
    }
    fn n_samples(&self) -> usize {
        (**self).n_samples()
    }
    fn map(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        (**self).map(lambda, w, batch, out)
    }
    fn jvp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        (**self).jvp_w(lambda, w, v, batch, out)
    }
    fn vjp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        (**self).vjp_w(lambda, w, v, batch, out)
    }
    fn vjp_lambda(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        (**self).vjp_lambda(lambda, w, v, batch, out)
    }
    fn upper(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>) -> f64 {
        (**self).upper(lambda, w, batch)
    }
    fn upper_grad_w(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        (**self).upper_grad_w(lambda, w, batch, out)
    }
    fn upper_grad_lambda(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        (**self).upper_grad_lambda(lambda, w, batch, out)
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        (**self).metrics()
    }
    fn constraint_set(&self) -> Option<&str> {
        (**self).constraint_set()
    }
    fn project(&self, lambda: &mut [f64]) -> crate::Result<()> {
        (**self).project(lambda)
    }
    fn replay(&self, calls: &mut dyn FnMut()) {
        (**self).replay(calls)
    }
}

mod counted_fixed_point;
mod gradient_map;
mod hessian;
pub use gradient_map::GradientMap;
pub use hessian::HessianOp;
