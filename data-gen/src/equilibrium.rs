//! The equilibrium-model problem of Grazzi, Pontil & Salzo, *Bilevel Optimization with a
//! Lower-level Contraction: Optimal Sample Complexity without Warm-start* (JMLR), §7.1 eq. (24):
//!
//! ```text
//! min_λ  E(w(λ), λ) = (1/|B|) Σ_{i∈B} CE(θ w_i + b, c_i)
//! s.t.   w_i = tanh(A w_i + B u_i + a)        for every sample i      (‖A‖₂ ≤ 0.5: a contraction)
//! λ = (θ ∈ R^{K×h}, b ∈ R^K, A ∈ R^{h×h}, B ∈ R^{h×p}, a ∈ R^h)
//! ```
//!
//! **λ as one flat vector**: θ row-major, then b, then the map's parameters in the kernels'
//! layout (A row-major, B row-major, a: `bilevel_kernels::models::equilibrium`). Φ does not
//! depend on (θ, b) and E does not depend on (A, B, a), so each λ-derivative is zero on the
//! other part.
//!
//! Upper derivatives, with s_p = softmax(θ w_p + b) and e_c the one-hot label:
//! `∇_{w_p}E = (1/|B|) θᵀ(s_p − e_c)`, `∇_θE = (1/|B|) Σ_p (s_p − e_c) w_pᵀ`,
//! `∇_bE = (1/|B|) Σ_p (s_p − e_c)`. The map's derivatives are the kernels' `EquilibriumPoint`.
//!
//! # Data and initialization (seeded `Xoshiro256PlusPlus`, in this order)
//! MNIST-shaped synthetic inputs: K class means `3.5·m_c` (m_c uniform unit vectors in R^p),
//! inputs `u_i = 0.35·(mean_{c_i} + ε_i)`, ε ~ N(0, I_p), classes uniform (the hyper-cleaning
//! generator's law). Initial λ as in the paper: θ, A, B, a entrywise N(0, 0.01²), b = 0, states
//! w_0 = 0. With h = 200 the initial ‖A‖₂ ≈ 0.01·2√h ≈ 0.28 < 0.5. Then the held-out **test
//! split** ([`Config::n_test`] examples, same class means and law), drawn last from the same
//! stream so that the training examples and λ_0 of a seed are those of the generator before the
//! split existed. The problem (its oracles, `n_samples`, `Batch::Full`) is the training set
//! only; the test split is read by the metrics alone.
//!
//! # Metrics ([`ProblemMetrics`], evaluated by the driver outside the counted, timed work)
//! In this order: `train_loss`, `train_accuracy` (at the 20-step states, [`METRIC_STEPS`]),
//! `grad_mapping` = ‖G_α(λ)‖ with `G_α(λ) = (λ − P_Λ(λ − α∇f(λ)))/α` (paper 001 Def. 11, the
//! measure §7.1 plots; α = [`EquilibriumProblem::grad_mapping_step`], default
//! [`GRAD_MAPPING_STEP`] = 1, §7.1's "computed according to (11) with α = 1", whatever step the
//! run uses), `grad_norm_exact` = ‖∇f(λ)‖, `test_loss` and `test_accuracy` (on the test split).
//! ∇f is the exact hypergradient of the full training objective
//! ([`EquilibriumProblem::exact_hypergradient`]): states and adjoint solved to [`EXACT_TOL`]
//! rather than §7.1's 20 steps. See [`ProblemMetrics::evaluate`] below for the NaN policy.
//!
//! # The constraint set Λ (paper 001 §7.1)
//! `Λ = {‖θ‖_∞ ≤ 1} × R^K × {‖A‖₂ ≤ 0.5} × R^{h×p} × R^h`, projected onto by
//! [`FixedPointProblem::project`]. **Reading taken**: the paper's ‖θ‖_∞ is ambiguous (the
//! entrywise max or the induced ∞-norm, max row sum); we take the entrywise max, so P_Λ clamps
//! every θ entry to [−1, 1] ([`THETA_BOX`]). ‖A‖₂ is the spectral norm (the paper's notation,
//! and what makes each map a 0.5-contraction): P_Λ clips A's singular values at [`A_RADIUS`]
//! (kernels' [`SpectralProjector`], an SVD with preallocated scratch, O(h³), once per outer
//! step). The two blocks are independent, so the product of the two projections is the
//! Euclidean projection onto Λ.
//!
//! The oracles share one kernels workspace behind a `Mutex` (sized for the full data at
//! construction): concurrent calls on one problem serialize; no call allocates.

use crate::dataset::{Array, Dataset, GeneratorInfo};
use bilevel_kernels::models::equilibrium::{
    EquilibriumMap, EquilibriumWorkspace, FixedPointInfo, FixedPointParams, SpectralProjector,
};
use bilevel_kernels::models::{DenseRows, Design};
use bilevel_kernels::{Batch, FixedPointProblem, KernelError, ProblemMetrics, Result};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Map, Value};
use std::sync::Mutex;

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "equilibrium",
    summary: "equilibrium model w = tanh(Aw + Bu + a) with a linear read-out (paper 001 §7.1), fixed-point lower level",
    presets: &["tiny", "small", "mnist"],
};

/// Most classes of the read-out (its logits live on the stack: no allocation per call).
pub const MAX_CLASSES: usize = 256;

/// The box of Λ on θ: every entry in [−THETA_BOX, THETA_BOX] (paper 001 §7.1's ‖θ‖_∞ ≤ 1, read
/// entrywise: see the module doc).
pub const THETA_BOX: f64 = 1.0;
/// The spectral-norm radius of Λ on A (paper 001 §7.1's ‖A‖₂ ≤ 0.5).
pub const A_RADIUS: f64 = 0.5;
/// The default step α of the `grad_mapping` metric ‖G_α(λ)‖: paper 001 §7.1 ("the proximal
/// gradient map is computed according to (11) with α = 1"; the run's own outer step there is
/// 0.5). The metric uses it whatever step the run takes; change it with
/// [`EquilibriumProblem::with_grad_mapping_step`].
pub const GRAD_MAPPING_STEP: f64 = 1.0;
/// Tolerance of the metrics' exact solves: each example's fixed point until its step
/// `‖Φ(w) − w‖_∞ ≤ EXACT_TOL` (|w| < 1 entrywise, so this is relative to the states' scale; on Λ,
/// q ≤ 0.5, the error is then below the step), the adjoint until
/// `‖v_{t+1} − v_t‖₂ ≤ EXACT_TOL·‖v_{t+1}‖₂`.
pub const EXACT_TOL: f64 = 1e-12;
/// Most iterations of each exact solve. On Λ (q ≤ 0.5) about 45 reach [`EXACT_TOL`]; the cap
/// leaves room for contractions up to q ≈ 0.97 outside Λ (a run without projection).
pub const EXACT_MAX_ITER: usize = 1000;
/// [`FixedPointProblem::constraint_set`]'s description.
pub const CONSTRAINT_SET: &str =
    "theta entrywise in [-1, 1] (the paper's |theta|_inf <= 1, read entrywise) x R^K x {|A|_2 <= 0.5} x R^(h x p) x R^h";

/// Parameters of the generator. `Default` = `"mnist"` (the paper's sizes).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Config {
    /// Number of training samples (the problem's `n_samples`).
    pub n_samples: usize,
    /// Number of held-out test samples, drawn after the training set and λ_0 (0: no test split,
    /// the test metrics are NaN).
    pub n_test: usize,
    /// Input dimension p.
    pub input_dim: usize,
    /// Hidden (state) dimension h.
    pub hidden: usize,
    /// Number of classes K.
    pub n_classes: usize,
    /// Standard deviation of the initial θ, A, B, a entries (paper: 0.01).
    pub init_std: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self { n_samples: 60_000, n_test: 10_000, input_dim: 784, hidden: 200, n_classes: 10, init_std: 0.01 }
    }
}

impl Config {
    /// `"tiny"` (12 training + 3 test samples, p = 5, h = 4, 3 classes; init 0.2 so the tests
    /// see curvature), `"small"` (1000 + 250, 784, 50, 10), `"mnist"` (60,000 + 10,000, 784,
    /// 200, 10: MNIST's train and test sizes). Tiny and small hold out 20% of the generated
    /// examples; the training sizes are those of the presets before the test split.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self { n_samples: 12, n_test: 3, input_dim: 5, hidden: 4, n_classes: 3, init_std: 0.2 }),
            "small" => Ok(Self { n_samples: 1000, n_test: 250, hidden: 50, ..Self::default() }),
            "mnist" => Ok(Self::default()),
            _ => Err(INFO.unknown_preset(name)),
        }
    }

    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("n_samples", self.n_samples), ("input_dim", self.input_dim), ("hidden", self.hidden)] {
            if v == 0 {
                return Err(KernelError::InvalidParameter { name, reason: "must be >= 1".into() });
            }
        }
        if !(2..=MAX_CLASSES).contains(&self.n_classes) {
            return Err(KernelError::InvalidParameter {
                name: "n_classes",
                reason: format!("must be in 2..={MAX_CLASSES}, got {}", self.n_classes),
            });
        }
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            return Err(KernelError::InvalidParameter {
                name: "init_std",
                reason: format!("must be finite and >= 0, got {:?}", self.init_std),
            });
        }
        Ok(())
    }
}

/// The generated equilibrium-model problem.
pub struct EquilibriumProblem {
    config: Config,
    seed: u64,
    map: EquilibriumMap,
    labels: Vec<usize>,
    lambda0: Vec<f64>,
    ws: Mutex<EquilibriumWorkspace>,
    projector: Mutex<SpectralProjector>,
    test: Option<TestSplit>,
    grad_mapping_step: f64,
}

/// The held-out examples: their map (inputs) and labels, and a workspace sized for all of them.
struct TestSplit {
    map: EquilibriumMap,
    labels: Vec<usize>,
    ws: Mutex<EquilibriumWorkspace>,
}

/// What [`EquilibriumProblem::exact_hypergradient`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExactHypergradient {
    /// The training fixed-point solve (every example met [`EXACT_TOL`]).
    pub fixed_point: FixedPointInfo,
    /// Iterations of the adjoint v ← ∂wΦᵀv + ∇wE.
    pub adjoint_iterations: usize,
    /// Its last relative step ‖v_{t+1} − v_t‖₂ / ‖v_{t+1}‖₂ (0 when ∇wE = 0).
    pub adjoint_residual: f64,
}

/// Generates the problem (see the module doc).
pub fn generate(config: &Config, seed: u64) -> Result<EquilibriumProblem> {
    config.validate()?;
    let (n, p, h, k) = (config.n_samples, config.input_dim, config.hidden, config.n_classes);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let normal = |rng: &mut Xoshiro256PlusPlus| -> f64 { StandardNormal.sample(rng) };
    let means: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            let m: Vec<f64> = (0..p).map(|_| normal(&mut rng)).collect();
            let norm = m.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
            m.into_iter().map(|v| 3.5 * v / norm).collect()
        })
        .collect();
    let mut labels = Vec::with_capacity(n);
    let mut u = Vec::with_capacity(n * p);
    for _ in 0..n {
        let c = rng.random_range(0..k);
        labels.push(c);
        for mean in &means[c] {
            u.push(0.35 * (mean + normal(&mut rng)));
        }
    }
    let map = EquilibriumMap::new(Design::Dense(DenseRows::new(n, p, u)?), h)?;
    let dim_lambda = k * h + k + map.dim_lambda();
    let mut lambda0: Vec<f64> = (0..dim_lambda).map(|_| config.init_std * normal(&mut rng)).collect();
    lambda0[k * h..k * h + k].fill(0.0);
    // The test split last: the training examples and λ_0 do not depend on it.
    let test = if config.n_test == 0 {
        None
    } else {
        let n_test = config.n_test;
        let mut labels = Vec::with_capacity(n_test);
        let mut u = Vec::with_capacity(n_test * p);
        for _ in 0..n_test {
            let c = rng.random_range(0..k);
            labels.push(c);
            for mean in &means[c] {
                u.push(0.35 * (mean + normal(&mut rng)));
            }
        }
        let map = EquilibriumMap::new(Design::Dense(DenseRows::new(n_test, p, u)?), h)?;
        let ws = Mutex::new(map.workspace(n_test));
        Some(TestSplit { map, labels, ws })
    };
    let ws = Mutex::new(map.workspace(n));
    let projector = Mutex::new(SpectralProjector::new(h)?);
    Ok(EquilibriumProblem {
        config: config.clone(),
        seed,
        map,
        labels,
        lambda0,
        ws,
        projector,
        test,
        grad_mapping_step: GRAD_MAPPING_STEP,
    })
}

impl EquilibriumProblem {
    /// The generator's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The paper's initial λ (θ, A, B, a ~ N(0, init_std²), b = 0).
    pub fn lambda0(&self) -> &[f64] {
        &self.lambda0
    }
    /// The class of every sample.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }
    /// The class of every test sample (empty without a test split).
    pub fn test_labels(&self) -> &[usize] {
        self.test.as_ref().map_or(&[][..], |t| t.labels.as_slice())
    }
    /// The test inputs u_i (samples as rows), if there is a test split.
    pub fn test_inputs(&self) -> Option<&Design> {
        self.test.as_ref().map(|t| t.map.inputs())
    }
    /// The step α of the `grad_mapping` metric (default [`GRAD_MAPPING_STEP`]).
    pub fn grad_mapping_step(&self) -> f64 {
        self.grad_mapping_step
    }
    /// Sets the step α of the `grad_mapping` metric (e.g. 0.5, §7.1's outer step). Errors unless
    /// α is finite and > 0.
    pub fn with_grad_mapping_step(mut self, alpha: f64) -> Result<Self> {
        bilevel_kernels::error::check_positive("grad_mapping_step", alpha)?;
        self.grad_mapping_step = alpha;
        Ok(self)
    }
    /// Length of the read-out part (θ, b) at the front of λ.
    fn readout_len(&self) -> usize {
        self.config.n_classes * (self.config.hidden + 1)
    }
    fn map_part<'l>(&self, lambda: &'l [f64]) -> &'l [f64] {
        &lambda[self.readout_len()..]
    }

    /// Solves the batch's fixed points w = Φ(w, λ) from the given start (the kernels' solver,
    /// which checks the contraction first).
    pub fn solve_states(
        &self,
        lambda: &[f64],
        batch: Batch<'_>,
        w: &mut [f64],
        params: FixedPointParams,
    ) -> Result<FixedPointInfo> {
        let mut ws = self.ws.lock().unwrap_or_else(|e| e.into_inner());
        self.map.fixed_point(self.map_part(lambda), batch, w, params, &mut ws)
    }

    /// Runs `f` on the kernels' point (Φ and D cached) at (w, λ). On any error, from building the
    /// point (a length that is not the problem's, a non-finite λ, a batch index out of range or
    /// a batch beyond the workspace's capacity) or from `f`, it fills `out` with NaN and reports
    /// nothing else: the `FixedPointProblem` policy (an oracle that cannot compute writes NaN
    /// rather than a plausible number; the algorithm's non-finite check then stops the run).
    /// So a caller's precondition violation (wrong sizes, a bad index) also comes out as NaN
    /// here, not as a panic; the message of the underlying error is lost.
    fn with_point(
        &self,
        lambda: &[f64],
        w: &[f64],
        batch: Batch<'_>,
        out: &mut [f64],
        f: impl FnOnce(&mut bilevel_kernels::models::equilibrium::EquilibriumPoint<'_>, &mut [f64]) -> Result<()>,
    ) {
        let mut ws = self.ws.lock().unwrap_or_else(|e| e.into_inner());
        // A batch drawn with replacement may be longer than the training set (each position
        // with its own state): the workspace grows once to fit it.
        let len = batch.len(self.labels.len());
        if len > ws.capacity() {
            *ws = self.map.workspace(len);
        }
        let result = self.map.point(self.map_part(lambda), w, batch, &mut ws).and_then(|mut pt| f(&mut pt, out));
        if result.is_err() {
            out.fill(f64::NAN);
        }
    }

    /// Visits each batch position p with (label, state row w_p, softmax s_p − e_c written into
    /// `r`), for the upper objective. Returns the summed cross-entropy.
    fn readout(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, visit: impl FnMut(usize, &[f64], &[f64])) -> f64 {
        self.readout_on(&self.labels, lambda, w, batch, visit)
    }

    /// [`readout`](Self::readout) on the examples whose classes are `labels` (the training or
    /// the test split).
    fn readout_on(
        &self,
        labels: &[usize],
        lambda: &[f64],
        w: &[f64],
        batch: Batch<'_>,
        mut visit: impl FnMut(usize, &[f64], &[f64]),
    ) -> f64 {
        let (h, k) = (self.config.hidden, self.config.n_classes);
        let (theta, b) = (&lambda[..k * h], &lambda[k * h..k * h + k]);
        let mut r = [0.0; MAX_CLASSES];
        let r = &mut r[..k];
        let mut total = 0.0;
        for (pos, i) in bilevel_kernels::models::design::batch_rows(batch, labels.len()).enumerate() {
            let wp = &w[pos * h..(pos + 1) * h];
            for c in 0..k {
                r[c] = b[c] + theta[c * h..(c + 1) * h].iter().zip(wp).map(|(t, w)| t * w).sum::<f64>();
            }
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + r.iter().map(|z| (z - m).exp()).sum::<f64>().ln();
            let label = labels[i];
            total += lse - r[label];
            for (c, rc) in r.iter_mut().enumerate() {
                *rc = (*rc - lse).exp() - if c == label { 1.0 } else { 0.0 };
            }
            visit(pos, wp, r);
        }
        total
    }

    /// (mean cross-entropy, accuracy) of the read-out at the states `w` (one row per example of
    /// `labels`); the accuracy counts the arg-max class of θw_i + b against the label, and is NaN
    /// with the loss.
    fn loss_and_accuracy(&self, labels: &[usize], lambda: &[f64], w: &[f64]) -> (f64, f64) {
        let n = labels.len();
        let mut correct = 0usize;
        let loss = self.readout_on(labels, lambda, w, Batch::Full, |pos, _, r| {
            // r = softmax − e_label: the label's entry is its probability − 1.
            let label = labels[pos];
            let p = |c: usize| r[c] + if c == label { 1.0 } else { 0.0 };
            let best = (0..r.len()).fold(0, |b, c| if p(c) > p(b) { c } else { b });
            correct += usize::from(best == label && p(best).is_finite());
        }) / n as f64;
        (loss, if loss.is_finite() { correct as f64 / n as f64 } else { f64::NAN })
    }

    /// The exact hypergradient ∇f(λ) of the full training objective f(λ) = E(w(λ), λ) into `out`
    /// (length dim λ): the fixed points w(λ) of every training example from w = 0, then the
    /// adjoint `(I − ∂wΦᵀ)v = ∇wE` by the iteration v ← ∂wΦᵀv + ∇wE from v = 0, both to
    /// [`EXACT_TOL`] within [`EXACT_MAX_ITER`] iterations, then `∇f = ∇λE + ∂λΦᵀv`; all on
    /// `Batch::Full` with the problem's own oracle code (uncounted: call it on the problem, not
    /// on a `Counted` wrapper, to keep it out of a run's counts). Allocates four n·h vectors.
    /// Errors: a wrong length or non-finite λ, A refused by the kernels' contraction check
    /// (‖A‖₂ ≥ 1), or [`KernelError::Diverged`] when either solve misses the tolerance (a map
    /// that does not contract enough outside Λ).
    pub fn exact_hypergradient(&self, lambda: &[f64], out: &mut [f64]) -> Result<ExactHypergradient> {
        let nh = self.labels.len() * self.config.hidden;
        let mut bufs = [vec![0.0; nh], vec![0.0; nh], vec![0.0; nh], vec![0.0; nh]];
        let [w, g, v, t] = &mut bufs;
        self.exact_hypergradient_with(lambda, w, [g, v, t], out)
    }

    /// [`exact_hypergradient`](Self::exact_hypergradient) with the caller's buffers (each n·h);
    /// `w` is the starting state of the fixed-point solve (zeros, or a warm start) and holds
    /// w(λ) on return.
    fn exact_hypergradient_with(
        &self,
        lambda: &[f64],
        w: &mut [f64],
        [g, v, t]: [&mut [f64]; 3],
        out: &mut [f64],
    ) -> Result<ExactHypergradient> {
        bilevel_kernels::check_len("lambda", self.dim_lambda(), lambda.len())?;
        bilevel_kernels::check_len("out", self.dim_lambda(), out.len())?;
        let params = FixedPointParams { tol: EXACT_TOL, max_iter: EXACT_MAX_ITER };
        let fixed_point = self.solve_states(lambda, Batch::Full, w, params)?;
        if !fixed_point.converged {
            return Err(KernelError::Diverged { iteration: fixed_point.iterations, residual: fixed_point.residual });
        }
        let w = &*w;
        FixedPointProblem::upper_grad_w(self, lambda, w, Batch::Full, g);
        // ∇λE: the read-out part; its map part is zero (E does not depend on A, B, a), and
        // ∂λΦᵀv is zero on the read-out part, so ∂λΦᵀv is written over the map part below.
        FixedPointProblem::upper_grad_lambda(self, lambda, w, Batch::Full, out);
        bilevel_kernels::check_finite("upper gradient", g)?;
        let mut ws = self.ws.lock().unwrap_or_else(|e| e.into_inner());
        let mut pt = self.map.point(self.map_part(lambda), w, Batch::Full, &mut ws)?;
        let (mut v, mut t) = (v, t);
        v.copy_from_slice(g); // one step from v = 0
        let (mut iterations, mut residual) = (1usize, f64::INFINITY);
        while iterations < EXACT_MAX_ITER {
            pt.vjp_w(v, t)?;
            let (mut diff, mut norm) = (0.0f64, 0.0f64);
            for ((tk, gk), vk) in t.iter_mut().zip(&*g).zip(&*v) {
                *tk += gk;
                diff += (*tk - vk) * (*tk - vk);
                norm += *tk * *tk;
            }
            std::mem::swap(&mut v, &mut t);
            iterations += 1;
            residual = if norm > 0.0 { (diff / norm).sqrt() } else { 0.0 };
            if !residual.is_finite() || residual <= EXACT_TOL {
                break;
            }
        }
        if residual.is_nan() || residual > EXACT_TOL {
            return Err(KernelError::Diverged { iteration: iterations, residual });
        }
        let r = self.readout_len();
        pt.vjp_lambda(v, &mut out[r..])?;
        Ok(ExactHypergradient { fixed_point, adjoint_iterations: iterations, adjoint_residual: residual })
    }

    /// The proximal gradient mapping `G_α(λ) = (λ − P_Λ(λ − α·grad))/α` (paper 001 Def. 11)
    /// into `out`, with P_Λ the problem's [`project`](FixedPointProblem::project) and `grad`
    /// ∇f(λ) (e.g. from [`exact_hypergradient`](Self::exact_hypergradient)). Errors: wrong
    /// lengths, α not finite and > 0, the projection's errors.
    pub fn gradient_mapping(&self, lambda: &[f64], grad: &[f64], alpha: f64, out: &mut [f64]) -> Result<()> {
        let m = self.dim_lambda();
        bilevel_kernels::check_len("lambda", m, lambda.len())?;
        bilevel_kernels::check_len("grad", m, grad.len())?;
        bilevel_kernels::check_len("out", m, out.len())?;
        bilevel_kernels::error::check_positive("alpha", alpha)?;
        out.iter_mut().zip(lambda.iter().zip(grad)).for_each(|(o, (l, g))| *o = l - alpha * g);
        self.project(out)?;
        out.iter_mut().zip(lambda).for_each(|(o, l)| *o = (l - *o) / alpha);
        Ok(())
    }

    /// (test loss, test accuracy) at λ: each test example's fixed point from w = 0 to
    /// [`EXACT_TOL`] (into `w`, n_test·h), then the read-out. NaN without a test split, or when
    /// the solve errors or misses the tolerance.
    fn test_metrics(&self, lambda: &[f64], w: &mut [f64]) -> (f64, f64) {
        let Some(test) = &self.test else { return (f64::NAN, f64::NAN) };
        w.fill(0.0);
        let params = FixedPointParams { tol: EXACT_TOL, max_iter: EXACT_MAX_ITER };
        let solved = {
            let mut ws = test.ws.lock().unwrap_or_else(|e| e.into_inner());
            test.map.fixed_point(self.map_part(lambda), Batch::Full, w, params, &mut ws)
        };
        match solved {
            Ok(info) if info.converged => self.loss_and_accuracy(&test.labels, lambda, w),
            _ => (f64::NAN, f64::NAN),
        }
    }

    fn batch_ok(&self, batch: Batch<'_>) -> bool {
        match batch {
            Batch::Full => true,
            Batch::Rows(r) => !r.is_empty() && r.iter().all(|&i| i < self.labels.len()),
        }
    }
}

impl FixedPointProblem for EquilibriumProblem {
    fn dim_lambda(&self) -> usize {
        self.readout_len() + self.map.dim_lambda()
    }
    fn dim_state(&self) -> usize {
        self.config.hidden
    }
    fn n_samples(&self) -> usize {
        self.labels.len()
    }
    fn map(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        if self.map.map(self.map_part(lambda), w, batch, out).is_err() {
            out.fill(f64::NAN);
        }
    }
    fn jvp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.with_point(lambda, w, batch, out, |pt, out| pt.jvp_w(v, out));
    }
    fn vjp_w(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.with_point(lambda, w, batch, out, |pt, out| pt.vjp_w(v, out));
    }
    fn vjp_lambda(&self, lambda: &[f64], w: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let r = self.readout_len();
        self.with_point(lambda, w, batch, out, |pt, out| {
            out[..r].fill(0.0);
            pt.vjp_lambda(v, &mut out[r..])
        });
    }
    fn upper(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>) -> f64 {
        if !self.batch_ok(batch) {
            return f64::NAN;
        }
        self.readout(lambda, w, batch, |_, _, _| {}) / batch.len(self.labels.len()) as f64
    }
    fn upper_grad_w(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        if !self.batch_ok(batch) {
            return out.fill(f64::NAN);
        }
        let (h, k) = (self.config.hidden, self.config.n_classes);
        let s = 1.0 / batch.len(self.labels.len()) as f64;
        let theta = &lambda[..k * h];
        out.fill(0.0);
        self.readout(lambda, w, batch, |pos, _, r| {
            let row = &mut out[pos * h..(pos + 1) * h];
            for (c, rc) in r.iter().enumerate() {
                row.iter_mut().zip(&theta[c * h..(c + 1) * h]).for_each(|(o, t)| *o += s * rc * t);
            }
        });
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        Some(self)
    }
    fn constraint_set(&self) -> Option<&str> {
        Some(CONSTRAINT_SET)
    }
    /// P_Λ of the module doc: θ clamped entrywise to [−1, 1], A's singular values clipped at 0.5,
    /// b, B and a unchanged. NaN entries stay NaN.
    fn project(&self, lambda: &mut [f64]) -> Result<()> {
        bilevel_kernels::check_len("lambda", self.dim_lambda(), lambda.len())?;
        let (h, k) = (self.config.hidden, self.config.n_classes);
        lambda[..k * h].iter_mut().for_each(|t| *t = t.clamp(-THETA_BOX, THETA_BOX));
        let r = self.readout_len();
        let mut projector = self.projector.lock().unwrap_or_else(|e| e.into_inner());
        projector.project(&mut lambda[r..r + h * h], A_RADIUS)?;
        Ok(())
    }
    fn upper_grad_lambda(&self, lambda: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        if !self.batch_ok(batch) {
            return out.fill(f64::NAN);
        }
        let (h, k) = (self.config.hidden, self.config.n_classes);
        let s = 1.0 / batch.len(self.labels.len()) as f64;
        out.fill(0.0);
        let (readout, _) = out.split_at_mut(k * h + k);
        let (g_theta, g_b) = readout.split_at_mut(k * h);
        self.readout(lambda, w, batch, |_, wp, r| {
            for (c, rc) in r.iter().enumerate() {
                g_b[c] += s * rc;
                g_theta[c * h..(c + 1) * h].iter_mut().zip(wp).for_each(|(g, w)| *g += s * rc * w);
            }
        });
    }
}

/// The steps of the fixed-point iteration the train metrics (`train_loss`, `train_accuracy`)
/// solve the states with, from w = 0 on all training samples (paper 001 §7.1: "the LL and LS are run for 20 steps on all training examples").
pub const METRIC_STEPS: usize = 20;

impl ProblemMetrics for EquilibriumProblem {
    /// At λ (the algorithm's states are not used, so every algorithm is measured alike):
    /// `train_loss` (E on all training samples) and `train_accuracy` (the arg-max class of
    /// θw_i + b against the label) at the states w_20(λ) of [`METRIC_STEPS`] map steps from 0
    /// (§7.1 runs its LL and LS for 20 steps; its measures are ‖G_α‖ and the accuracies);
    /// `grad_mapping` = ‖G_α(λ)‖₂ (α = [`grad_mapping_step`], default 1) and `grad_norm_exact` =
    /// ‖∇f(λ)‖₂ with the exact hypergradient of [`exact_hypergradient`] (its fixed-point solve
    /// warm-started at w_20, the same solution to [`EXACT_TOL`]); `test_loss` and
    /// `test_accuracy` on the test split, each test example's fixed point solved from 0 to
    /// [`EXACT_TOL`].
    ///
    /// [`grad_mapping_step`]: EquilibriumProblem::grad_mapping_step
    /// [`exact_hypergradient`]: EquilibriumProblem::exact_hypergradient
    fn names(&self) -> &[&'static str] {
        &["train_loss", "train_accuracy", "grad_mapping", "grad_norm_exact", "test_loss", "test_accuracy"]
    }
    /// NaN policy: `grad_mapping` and `grad_norm_exact` are NaN when the exact solves fail (λ not
    /// finite, ‖A‖₂ ≥ 1, or a state or adjoint iteration that misses [`EXACT_TOL`] within
    /// [`EXACT_MAX_ITER`] steps: only possible outside Λ, e.g. under `--no-projection`); outside
    /// Λ but contracting enough they are computed (G_α then also measures the distance to Λ).
    /// The test metrics are NaN without a test split or when its solve fails. Allocates, like the
    /// 20-step train metrics always did: four training-state vectors (n·h), two λ-sized vectors
    /// and the test states (n_test·h); outside the timed work.
    fn evaluate(&self, lambda: &[f64], _states: &[f64], out: &mut [f64]) {
        let (n, h, m) = (self.labels.len(), self.config.hidden, self.dim_lambda());
        let (mut w, mut next) = (vec![0.0; n * h], vec![0.0; n * h]);
        for _ in 0..METRIC_STEPS {
            FixedPointProblem::map(self, lambda, &w, Batch::Full, &mut next);
            std::mem::swap(&mut w, &mut next);
        }
        (out[0], out[1]) = self.loss_and_accuracy(&self.labels, lambda, &w);
        // The exact hypergradient, warm-started at w_20 (when finite: a NaN state is refused).
        if !w.iter().all(|x| x.is_finite()) {
            w.fill(0.0);
        }
        let (mut v, mut t) = (vec![0.0; n * h], vec![0.0; n * h]);
        let (mut grad, mut gmap) = (vec![0.0; m], vec![0.0; m]);
        let norm = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt();
        (out[2], out[3]) = match self.exact_hypergradient_with(lambda, &mut w, [&mut next, &mut v, &mut t], &mut grad) {
            Ok(_) => match self.gradient_mapping(lambda, &grad, self.grad_mapping_step, &mut gmap) {
                Ok(()) => (norm(&gmap), norm(&grad)),
                Err(_) => (f64::NAN, norm(&grad)),
            },
            Err(_) => (f64::NAN, f64::NAN),
        };
        let mut w_test = vec![0.0; self.test_labels().len() * h];
        (out[4], out[5]) = self.test_metrics(lambda, &mut w_test);
    }
}

impl Dataset for EquilibriumProblem {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    fn parameters(&self) -> Map<String, Value> {
        let mut m = crate::dataset::parameters_of(&self.config, Some(self.seed));
        m.insert("lambda_layout".into(), "theta (K x h, row-major), b (K), A (h x h), B (h x p), a (h)".into());
        m
    }
    fn arrays(&self) -> Vec<Array> {
        let u = dense_rows(self.map.inputs());
        let mut arrays = vec![
            Array::f64("U", vec![self.labels.len(), self.config.input_dim], u),
            Array::i64("labels", vec![self.labels.len()], self.labels.iter().map(|&c| c as i64).collect()),
            Array::f64("lambda0", vec![self.lambda0.len()], self.lambda0.clone()),
        ];
        if let Some(test) = &self.test {
            let n_test = test.labels.len();
            arrays.push(Array::f64("U_test", vec![n_test, self.config.input_dim], dense_rows(test.map.inputs())));
            arrays.push(Array::i64("labels_test", vec![n_test], test.labels.iter().map(|&c| c as i64).collect()));
        }
        arrays
    }
}

/// The inputs as a row-major n × p array.
fn dense_rows(design: &Design) -> Vec<f64> {
    match design {
        Design::Dense(d) => d.data().to_vec(),
        Design::Sparse(s) => {
            let m = s.to_dense();
            let m = &m;
            (0..m.nrows()).flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)])).collect()
        }
    }
}
