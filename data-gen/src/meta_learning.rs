//! Few-shot meta-learning with a shared linear representation (the "hyper-representation"
//! problems of Grazzi, Pontil & Salzo, *Bilevel Optimization with a Lower-level Contraction*,
//! §7.2, and Ji, Yang & Liang, *Provably Faster Algorithms for Bilevel Optimization*, §5), in
//! the linear form where everything is exact:
//!
//! ```text
//! tasks t = 1..T share an embedding E ∈ R^{p×k} (the outer variable x = E, row-major);
//! each task has a head w_t ∈ R^k (the inner variable y = (w_1, …, w_T)), support data
//! (X_t ∈ R^{n_s×p}, y_t) and query data (X'_t ∈ R^{n_q×p}, y'_t). With z_i = Eᵀx_i, r_i = z_iᵀw_t − y_i:
//! g(E, w) = (1/|B|) Σ_{t∈B} [ (1/(2n_s)) Σ_{i∈support(t)} r_i² + (µ/2)‖w_t‖² ]   (ridge: µ-strongly convex in w)
//! f(E, w) = (1/|B|) Σ_{t∈B}   (1/(2n_q)) Σ_{i∈query(t)} r_i²
//! ∂w_t g = (1/|B|)[(1/n_s) Σ r_i z_i + µ w_t]           ∂E g = (1/|B|) Σ_t (1/n_s) Σ r_i x_i w_tᵀ
//! (∂ww g·v)_t = (1/|B|)[(1/n_s) Σ (z_iᵀv_t) z_i + µ v_t]   (block-diagonal over tasks)
//! ∂E∂w g·v = (1/|B|) Σ_t (1/n_s) Σ x_i (r_i v_t + (z_iᵀv_t) w_t)ᵀ
//! ```
//!
//! Mini-batches are sets of tasks (`Batch::Rows` holds task indices; f and g share them).
//! Heads of tasks outside the batch get zero gradient. Exact references (per task, a k×k
//! solve): w_t*(E) = (Z_tᵀZ_t/n_s + µI)⁻¹ Z_tᵀy_t/n_s, v*, L(E) and ∇L(E).
//!
//! # Generation (seeded `Xoshiro256PlusPlus`, in this order)
//! E* ∈ R^{p×k} with orthonormal columns (Haar), heads w_t* ~ N(0, I_k), inputs x ~ N(0, I_p),
//! targets y = x·E* w_t* + σ·ε with ε ~ N(0, 1): the tasks share the k-dimensional subspace
//! spanned by E*, which the outer problem has to find.
//!
//! The derivatives are the kernels' (`bilevel_kernels::models::embedding_ridge`, one task's
//! loss). Oracles run task by task, sequentially, in task order (deterministic; a k ≤
//! [`MAX_K`] stack buffer per row, no allocation). Batch indices are the caller's precondition
//! (an index ≥ n_tasks panics, as slice indexing does). Per-task parallelism is left for later:
//! the tasks of the presets are small (a few hundred flops each).
//!
//! Error policy (the kernels' `BilevelProblem` doc): nothing here panics on the values of a
//! point. The oracles are sums of products, so a non-finite or overflowing E or w gives
//! non-finite outputs; the exact references solve a k×k Cholesky per task, and where it fails
//! (E non-finite, or so large that H_t overflows) the task's head is NaN, so y*, v*, L and ∇L
//! are NaN and the driver stops the run with a typed error (e.g. `amigo-gd` on the tiny preset
//! with 2000 iterations stops as Diverged; tests/catalog.rs calls every oracle at NaN, ±inf and
//! ±1e300).

use crate::dataset::{Array, Dataset, GeneratorInfo};
use crate::random_matrix::{gaussian_mat, haar_orthonormal};
use bilevel_kernels::models::embedding_ridge::EmbeddedRidge;
use bilevel_kernels::{Batch, BilevelProblem, ExactReference, KernelError, ProblemConstants, ProblemMetrics, Result};
use faer::linalg::solvers::Solve;
use faer::{Mat, MatMut, MatRef};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Map, Value};

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "meta_learning",
    summary: "few-shot meta-learning: shared linear embedding E (outer), per-task ridge heads (inner), exact",
    presets: &["tiny", "small", "default"],
};

/// Largest embedding dimension k (the per-row scratch lives on the stack).
pub const MAX_K: usize = bilevel_kernels::models::embedding_ridge::MAX_EMBED;

/// Parameters of the generator. `Default` = the `"default"` preset.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Config {
    /// Number of tasks T.
    pub n_tasks: usize,
    /// Input dimension p.
    pub dim_input: usize,
    /// Embedding dimension k (≤ [`MAX_K`]).
    pub dim_embed: usize,
    /// Support (training) samples per task.
    pub n_support: usize,
    /// Query (validation) samples per task.
    pub n_query: usize,
    /// Ridge µ of the heads (the strong-convexity constant of g per task, times 1/|B|).
    pub ridge: f64,
    /// Standard deviation σ of the target noise.
    pub noise: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self { n_tasks: 200, dim_input: 100, dim_embed: 5, n_support: 10, n_query: 15, ridge: 0.1, noise: 0.1 }
    }
}

impl Config {
    /// `"tiny"` (4 tasks, p = 6, k = 2), `"small"` (20 tasks, p = 20, k = 3), `"default"`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self { n_tasks: 4, dim_input: 6, dim_embed: 2, n_support: 5, n_query: 4, ..Self::default() }),
            "small" => Ok(Self { n_tasks: 20, dim_input: 20, dim_embed: 3, ..Self::default() }),
            "default" => Ok(Self::default()),
            _ => Err(INFO.unknown_preset(name)),
        }
    }

    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, reason: String| Err(KernelError::InvalidParameter { name, reason });
        for (name, v) in [
            ("n_tasks", self.n_tasks),
            ("dim_input", self.dim_input),
            ("dim_embed", self.dim_embed),
            ("n_support", self.n_support),
            ("n_query", self.n_query),
        ] {
            if v == 0 {
                return bad(name, "must be >= 1".into());
            }
        }
        if self.dim_embed > self.dim_input.min(MAX_K) {
            return bad("dim_embed", format!("must be <= min(dim_input, {MAX_K}), got {}", self.dim_embed));
        }
        if !(self.ridge.is_finite() && self.ridge > 0.0) {
            return bad("ridge", format!("must be finite and > 0 (strong convexity), got {}", self.ridge));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad("noise", format!("must be finite and >= 0, got {}", self.noise));
        }
        Ok(())
    }
}

/// One set of samples of every task, rows grouped by task: task t owns rows `t·n..(t+1)·n`.
#[derive(Clone, Debug, PartialEq)]
struct TaskData {
    n: usize,
    /// Row-major (T·n) × p.
    x: Vec<f64>,
    y: Vec<f64>,
}

/// The generated meta-learning problem.
#[derive(Clone, Debug)]
pub struct MetaLearning {
    config: Config,
    seed: u64,
    support: TaskData,
    query: TaskData,
    e_star: Mat<f64>,
    w_star: Vec<f64>,
}

/// Generates the problem (see the module doc).
pub fn generate(config: &Config, seed: u64) -> Result<MetaLearning> {
    config.validate()?;
    let (t, p, k) = (config.n_tasks, config.dim_input, config.dim_embed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let e_star = haar_orthonormal(p, k, &mut rng)?;
    let w_star: Vec<f64> = (0..t * k).map(|_| StandardNormal.sample(&mut rng)).collect();
    let draw = |n: usize, rng: &mut Xoshiro256PlusPlus| {
        let x = gaussian_mat(t * n, p, rng);
        let mut xs = Vec::with_capacity(t * n * p);
        let mut ys = Vec::with_capacity(t * n);
        for row in 0..t * n {
            let task = row / n;
            xs.extend((0..p).map(|j| x[(row, j)]));
            let target: f64 =
                (0..k).map(|l| (0..p).map(|j| x[(row, j)] * e_star[(j, l)]).sum::<f64>() * w_star[task * k + l]).sum();
            let eps: f64 = StandardNormal.sample(rng);
            ys.push(target + config.noise * eps);
        }
        TaskData { n, x: xs, y: ys }
    };
    let support = draw(config.n_support, &mut rng);
    let query = draw(config.n_query, &mut rng);
    Ok(MetaLearning { config: config.clone(), seed, support, query, e_star, w_star })
}

/// The standard deviation 1/√p of the starting embedding's entries.
pub fn x0_scale(config: &Config) -> f64 {
    1.0 / (config.dim_input as f64).sqrt()
}

/// The tasks of a batch (all of them for `Batch::Full`), in order.
fn tasks(batch: Batch<'_>, n_tasks: usize) -> impl Iterator<Item = usize> + '_ {
    let (full, rows) = match batch {
        Batch::Full => (0..n_tasks, &[][..]),
        Batch::Rows(r) => (0..0, r),
    };
    full.chain(rows.iter().copied())
}

impl MetaLearning {
    /// The generator's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The ground-truth embedding E* (p×k, orthonormal columns).
    pub fn e_star(&self) -> &Mat<f64> {
        &self.e_star
    }
    /// A seeded starting embedding: entries N(0, 1/p), the quadratics' law
    /// ([`gaussian_x0`](crate::quadratic::gaussian_x0)) scaled by [`x0_scale`].
    pub fn x0(&self, seed: u64) -> Vec<f64> {
        let s = x0_scale(&self.config);
        crate::quadratic::gaussian_x0(self.dim_x(), seed).into_iter().map(|v| s * v).collect()
    }

    fn k(&self) -> usize {
        self.config.dim_embed
    }

    /// Task t's rows of `data` as the kernels' ridge model (ridge µ for g, 0 for f).
    fn task<'a>(&self, data: &'a TaskData, t: usize, ridge: f64) -> EmbeddedRidge<'a> {
        let (n, p) = (data.n, self.config.dim_input);
        EmbeddedRidge { x: &data.x[t * n * p..(t + 1) * n * p], y: &data.y[t * n..(t + 1) * n], p, k: self.k(), ridge }
    }
    fn support(&self, t: usize) -> EmbeddedRidge<'_> {
        self.task(&self.support, t, self.config.ridge)
    }
    fn query(&self, t: usize) -> EmbeddedRidge<'_> {
        self.task(&self.query, t, 0.0)
    }
    /// 1/|B| over tasks.
    fn scale(&self, batch: Batch<'_>) -> f64 {
        1.0 / batch.len(self.config.n_tasks) as f64
    }
    /// Head t of a per-task vector.
    fn head<'v>(&self, v: &'v [f64], t: usize) -> &'v [f64] {
        &v[t * self.k()..(t + 1) * self.k()]
    }

    /// Per task, w_t = H_t⁻¹ (rhs_t) with H_t = Z_tᵀZ_t/n_s + µI scaled by `h_scale`, where
    /// rhs_t = Z_tᵀy_t/n_s (`rhs = None`) or `rhs[t]`. A k×k Cholesky per task; if it fails
    /// (E non-finite: H_t is positive definite for every finite E since µ > 0), the task's head
    /// is NaN — the error policy's numerical-failure path, never a panic.
    fn solve_heads(&self, e: &[f64], h_scale: f64, rhs: Option<&[f64]>, out: &mut [f64]) {
        let k = self.k();
        let (mut h, mut b) = ([0.0; MAX_K * MAX_K], [0.0; MAX_K]);
        let (h, b) = (&mut h[..k * k], &mut b[..k]);
        for t in 0..self.config.n_tasks {
            self.support(t).normal_equations(e, h, b);
            h.iter_mut().for_each(|v| *v *= h_scale);
            if let Some(rhs) = rhs {
                b.copy_from_slice(self.head(rhs, t));
            }
            let o = &mut out[t * k..(t + 1) * k];
            match MatRef::from_column_major_slice(h, k, k).llt(faer::Side::Lower) {
                Ok(llt) => {
                    o.copy_from_slice(b);
                    llt.solve_in_place(MatMut::from_column_major_slice_mut(o, k, 1));
                }
                Err(_) => o.fill(f64::NAN),
            }
        }
    }
}

impl BilevelProblem for MetaLearning {
    fn dim_x(&self) -> usize {
        self.config.dim_input * self.k()
    }
    fn dim_y(&self) -> usize {
        self.config.n_tasks * self.k()
    }
    fn n_samples_f(&self) -> usize {
        self.config.n_tasks
    }
    fn n_samples_g(&self) -> usize {
        self.config.n_tasks
    }
    fn f(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        let s = self.scale(batch);
        tasks(batch, self.config.n_tasks).map(|t| s * self.query(t).value(x, self.head(y, t))).sum()
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        let s = self.scale(batch);
        tasks(batch, self.config.n_tasks).map(|t| s * self.support(t).value(x, self.head(y, t))).sum()
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let s = self.scale(batch);
        out.fill(0.0);
        tasks(batch, self.config.n_tasks).for_each(|t| self.query(t).grad_e(x, self.head(y, t), s, out));
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (s, k) = (self.scale(batch), self.k());
        out.fill(0.0);
        for t in tasks(batch, self.config.n_tasks) {
            self.query(t).grad_w(x, self.head(y, t), s, &mut out[t * k..(t + 1) * k]);
        }
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (s, k) = (self.scale(batch), self.k());
        out.fill(0.0);
        for t in tasks(batch, self.config.n_tasks) {
            self.support(t).grad_w(x, self.head(y, t), s, &mut out[t * k..(t + 1) * k]);
        }
    }
    fn hvp(&self, x: &[f64], _y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (s, k) = (self.scale(batch), self.k());
        out.fill(0.0);
        for t in tasks(batch, self.config.n_tasks) {
            self.support(t).hvp_w(x, self.head(v, t), s, &mut out[t * k..(t + 1) * k]);
        }
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let s = self.scale(batch);
        out.fill(0.0);
        for t in tasks(batch, self.config.n_tasks) {
            self.support(t).cross_ew(x, self.head(y, t), self.head(v, t), s, out);
        }
    }
    fn exact(&self) -> Option<&dyn ExactReference> {
        Some(self)
    }
    /// µ_g ≥ µ/T (full batch: the ridge of each head, times 1/T; the data part is positive
    /// semi-definite). L_g and the outer constants grow with ‖E‖: not known.
    fn constants(&self) -> ProblemConstants {
        ProblemConstants { mu_g: Some(self.config.ridge / self.config.n_tasks as f64), ..Default::default() }
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        Some(self)
    }
}

impl ProblemMetrics for MetaLearning {
    /// `val_loss`: the query loss f(E, w) on every task; `val_loss_at_optimum`: L(E) = f(E, w*(E)),
    /// the query loss of the heads fitted exactly to E.
    fn names(&self) -> &[&'static str] {
        &["val_loss", "val_loss_at_optimum"]
    }
    fn evaluate(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        out[0] = self.f(x, y, Batch::Full);
        out[1] = ExactReference::value(self, x);
    }
}

impl ExactReference for MetaLearning {
    /// Per task w_t* = H_t⁻¹ Z_tᵀy_t/n_s.
    fn y_star(&self, x: &[f64], out: &mut [f64]) {
        self.solve_heads(x, 1.0, None, out);
    }
    /// v* = [∂ww g]⁻¹ ∂w f at (E, w*): per task (H_t/T)⁻¹ (∂w_t f).
    fn v_star(&self, x: &[f64], out: &mut [f64]) {
        let mut w = vec![0.0; self.dim_y()];
        self.y_star(x, &mut w);
        let mut q = vec![0.0; self.dim_y()];
        self.grad_y_f(x, &w, Batch::Full, &mut q);
        self.solve_heads(x, 1.0 / self.config.n_tasks as f64, Some(&q), out);
    }
    fn value(&self, x: &[f64]) -> f64 {
        let mut w = vec![0.0; self.dim_y()];
        self.y_star(x, &mut w);
        self.f(x, &w, Batch::Full)
    }
    /// ∇L(E) = ∂E f(E, w*) − ∂E∂w g(E, w*)·v*.
    fn hypergradient(&self, x: &[f64], out: &mut [f64]) {
        let mut w = vec![0.0; self.dim_y()];
        self.y_star(x, &mut w);
        let mut v = vec![0.0; self.dim_y()];
        self.v_star(x, &mut v);
        let mut cross = vec![0.0; self.dim_x()];
        self.grad_x_f(x, &w, Batch::Full, out);
        self.cross(x, &w, &v, Batch::Full, &mut cross);
        out.iter_mut().zip(&cross).for_each(|(o, c)| *o -= c);
    }
}

impl Dataset for MetaLearning {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    fn parameters(&self) -> Map<String, Value> {
        crate::dataset::parameters_of(&self.config, Some(self.seed))
    }
    fn arrays(&self) -> Vec<Array> {
        let (t, p, k) = (self.config.n_tasks, self.config.dim_input, self.k());
        let (s, q) = (&self.support, &self.query);
        vec![
            Array::from_mat("E_star", self.e_star.as_ref()),
            Array::f64("W_star", vec![t, k], self.w_star.clone()),
            Array::f64("X_support", vec![t * s.n, p], s.x.clone()),
            Array::f64("y_support", vec![t * s.n], s.y.clone()),
            Array::f64("X_query", vec![t * q.n, p], q.x.clone()),
            Array::f64("y_query", vec![t * q.n], q.y.clone()),
        ]
    }
}
