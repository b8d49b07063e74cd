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
//! Oracles run task by task, sequentially, in task order (deterministic; a k ≤ [`MAX_K`]
//! stack buffer per row, no allocation). Per-task parallelism is left for later: the tasks of
//! the presets are small (a few hundred flops each).

use crate::dataset::{Array, Dataset, GeneratorInfo};
use crate::quadratic::{gaussian_mat, haar_orthonormal};
use bilevel_kernels::{Batch, BilevelProblem, ExactReference, KernelError, Result};
use faer::linalg::solvers::Solve;
use faer::Mat;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Map, Value};

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "meta_learning",
    summary: "few-shot meta-learning: shared linear embedding E (outer), per-task ridge heads (inner), exact",
    presets: &["tiny", "small", "default"],
};

/// Largest embedding dimension k (the per-row scratch lives on the stack).
pub const MAX_K: usize = 64;

/// Parameters of the generator. `Default` = the `"default"` preset.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub n_tasks: usize,
    /// Input dimension p.
    pub dim_input: usize,
    /// Embedding dimension k (≤ [`MAX_K`]).
    pub dim_embed: usize,
    pub n_support: usize,
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
            _ => Err(KernelError::InvalidParameter {
                name: "preset",
                reason: format!("unknown preset `{name}` for meta_learning (tiny, small, default)"),
            }),
        }
    }

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

    fn to_json(&self) -> Map<String, Value> {
        let v = json!({
            "n_tasks": self.n_tasks, "dim_input": self.dim_input, "dim_embed": self.dim_embed,
            "n_support": self.n_support, "n_query": self.n_query, "ridge": self.ridge, "noise": self.noise,
        });
        v.as_object().expect("an object").clone()
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

/// The tasks of a batch (all of them for `Batch::Full`), in order.
fn tasks(batch: Batch<'_>, n_tasks: usize) -> impl Iterator<Item = usize> + '_ {
    let (full, rows) = match batch {
        Batch::Full => (0..n_tasks, &[][..]),
        Batch::Rows(r) => (0..0, r),
    };
    full.chain(rows.iter().copied())
}

impl MetaLearning {
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The ground-truth embedding E* (p×k, orthonormal columns).
    pub fn e_star(&self) -> &Mat<f64> {
        &self.e_star
    }
    /// A seeded starting embedding: entries N(0, 1/p) (a different stream from the data's).
    pub fn x0(&self, seed: u64) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        rng.jump();
        let s = 1.0 / (self.config.dim_input as f64).sqrt();
        (0..self.dim_x()).map(|_| s * Distribution::<f64>::sample(&StandardNormal, &mut rng)).collect()
    }

    fn k(&self) -> usize {
        self.config.dim_embed
    }
    fn p(&self) -> usize {
        self.config.dim_input
    }

    /// Visits every row of task `t` in `data` with (x_i, z_i = Eᵀx_i, y_i).
    fn rows(&self, data: &TaskData, e: &[f64], t: usize, mut visit: impl FnMut(&[f64], &[f64], f64)) {
        let (p, k) = (self.p(), self.k());
        let mut z = [0.0; MAX_K];
        for i in t * data.n..(t + 1) * data.n {
            let xi = &data.x[i * p..(i + 1) * p];
            let z = &mut z[..k];
            z.fill(0.0);
            for (j, &xij) in xi.iter().enumerate() {
                z.iter_mut().zip(&e[j * k..(j + 1) * k]).for_each(|(zl, el)| *zl += xij * el);
            }
            visit(xi, z, data.y[i]);
        }
    }

    /// Loss (1/|B|) Σ_t (1/(2n)) Σ r², plus the ridge for g.
    fn value(&self, data: &TaskData, ridge: f64, e: &[f64], w: &[f64], batch: Batch<'_>) -> f64 {
        let k = self.k();
        let nb = batch.len(self.config.n_tasks) as f64;
        let mut total = 0.0;
        for t in tasks(batch, self.config.n_tasks) {
            let wt = &w[t * k..(t + 1) * k];
            let mut sq = 0.0;
            self.rows(data, e, t, |_, z, y| {
                let r = dot(z, wt) - y;
                sq += r * r;
            });
            total += sq / (2.0 * data.n as f64) + 0.5 * ridge * dot(wt, wt);
        }
        total / nb
    }

    /// ∂w of the loss (+ ridge): heads outside the batch get 0; repeated tasks add up.
    fn grad_w(&self, data: &TaskData, ridge: f64, e: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let k = self.k();
        let s = 1.0 / batch.len(self.config.n_tasks) as f64;
        out.fill(0.0);
        for t in tasks(batch, self.config.n_tasks) {
            let wt = &w[t * k..(t + 1) * k];
            let c = s / data.n as f64;
            let mut g = [0.0; MAX_K];
            self.rows(data, e, t, |_, z, y| {
                let r = dot(z, wt) - y;
                g[..k].iter_mut().zip(z).for_each(|(g, z)| *g += c * r * z);
            });
            for l in 0..k {
                out[t * k + l] += g[l] + s * ridge * wt[l];
            }
        }
    }

    /// ∂E of the loss: (1/|B|) Σ_t (1/n) Σ r_i x_i w_tᵀ.
    fn grad_e(&self, data: &TaskData, e: &[f64], w: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let k = self.k();
        let s = 1.0 / batch.len(self.config.n_tasks) as f64;
        out.fill(0.0);
        for t in tasks(batch, self.config.n_tasks) {
            let wt = &w[t * k..(t + 1) * k];
            let c = s / data.n as f64;
            self.rows(data, e, t, |x, z, y| {
                let r = c * (dot(z, wt) - y);
                outer_add(out, x, r, wt, k);
            });
        }
    }

    fn check_batch(&self, batch: Batch<'_>) -> bool {
        match batch {
            Batch::Full => true,
            Batch::Rows(r) => !r.is_empty() && r.iter().all(|&t| t < self.config.n_tasks),
        }
    }

    /// Per-task Hessian H_t = Z_tᵀZ_t/n_s + µI (k×k) at E.
    fn task_hessian(&self, e: &[f64], t: usize) -> Mat<f64> {
        let k = self.k();
        let mut h = Mat::<f64>::identity(k, k) * self.config.ridge;
        let c = 1.0 / self.support.n as f64;
        self.rows(&self.support, e, t, |_, z, _| {
            for a in 0..k {
                for b in 0..k {
                    h[(a, b)] += c * z[a] * z[b];
                }
            }
        });
        h
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// out (p×k, row-major) += coeff · x uᵀ.
fn outer_add(out: &mut [f64], x: &[f64], coeff: f64, u: &[f64], k: usize) {
    for (j, &xj) in x.iter().enumerate() {
        let a = coeff * xj;
        out[j * k..(j + 1) * k].iter_mut().zip(u).for_each(|(o, ul)| *o += a * ul);
    }
}

/// NaN everywhere: the trait's oracles cannot return an error, and a batch naming a task that
/// does not exist must not pass silently.
fn poison(out: &mut [f64]) {
    out.fill(f64::NAN);
}

impl BilevelProblem for MetaLearning {
    fn dim_x(&self) -> usize {
        self.p() * self.k()
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
        if !self.check_batch(batch) {
            return f64::NAN;
        }
        self.value(&self.query, 0.0, x, y, batch)
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        if !self.check_batch(batch) {
            return f64::NAN;
        }
        self.value(&self.support, self.config.ridge, x, y, batch)
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        if !self.check_batch(batch) {
            return poison(out);
        }
        self.grad_e(&self.query, x, y, batch, out)
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        if !self.check_batch(batch) {
            return poison(out);
        }
        self.grad_w(&self.query, 0.0, x, y, batch, out)
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        if !self.check_batch(batch) {
            return poison(out);
        }
        self.grad_w(&self.support, self.config.ridge, x, y, batch, out)
    }
    fn hvp(&self, x: &[f64], _y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        if !self.check_batch(batch) {
            return poison(out);
        }
        let k = self.k();
        let data = &self.support;
        let s = 1.0 / batch.len(self.config.n_tasks) as f64;
        out.fill(0.0);
        for t in tasks(batch, self.config.n_tasks) {
            let vt = &v[t * k..(t + 1) * k];
            let c = s / data.n as f64;
            let mut h = [0.0; MAX_K];
            self.rows(data, x, t, |_, z, _| {
                let zv = dot(z, vt);
                h[..k].iter_mut().zip(z).for_each(|(h, z)| *h += c * zv * z);
            });
            for l in 0..k {
                out[t * k + l] += h[l] + s * self.config.ridge * vt[l];
            }
        }
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        if !self.check_batch(batch) {
            return poison(out);
        }
        let k = self.k();
        let data = &self.support;
        let s = 1.0 / batch.len(self.config.n_tasks) as f64;
        out.fill(0.0);
        for t in tasks(batch, self.config.n_tasks) {
            let (wt, vt) = (&y[t * k..(t + 1) * k], &v[t * k..(t + 1) * k]);
            let c = s / data.n as f64;
            let mut u = [0.0; MAX_K];
            self.rows(data, x, t, |xi, z, yi| {
                let (r, zv) = (dot(z, wt) - yi, dot(z, vt));
                for l in 0..k {
                    u[l] = r * vt[l] + zv * wt[l];
                }
                outer_add(out, xi, c, &u[..k], k);
            });
        }
    }
    fn exact(&self) -> Option<&dyn ExactReference> {
        Some(self)
    }
}

impl ExactReference for MetaLearning {
    /// Per task w_t* = H_t⁻¹ Z_tᵀy_t/n_s.
    fn y_star(&self, x: &[f64], out: &mut [f64]) {
        let k = self.k();
        let c = 1.0 / self.support.n as f64;
        for t in 0..self.config.n_tasks {
            let h = self.task_hessian(x, t);
            let mut rhs = Mat::<f64>::zeros(k, 1);
            self.rows(&self.support, x, t, |_, z, y| (0..k).for_each(|l| rhs[(l, 0)] += c * y * z[l]));
            let w = h.llt(faer::Side::Lower).expect("ridge > 0 makes H_t positive definite").solve(&rhs);
            (0..k).for_each(|l| out[t * k + l] = w[(l, 0)]);
        }
    }
    /// v* = [∂ww g]⁻¹ ∂w f at (E, w*): per task (H_t/T)⁻¹ (∂w_t f).
    fn v_star(&self, x: &[f64], out: &mut [f64]) {
        let (k, n_t) = (self.k(), self.config.n_tasks);
        let mut w = vec![0.0; self.dim_y()];
        self.y_star(x, &mut w);
        let mut q = vec![0.0; self.dim_y()];
        self.grad_y_f(x, &w, Batch::Full, &mut q);
        for t in 0..n_t {
            let h = self.task_hessian(x, t) * (1.0 / n_t as f64);
            let rhs = Mat::from_fn(k, 1, |l, _| q[t * k + l]);
            let v = h.llt(faer::Side::Lower).expect("positive definite").solve(&rhs);
            (0..k).for_each(|l| out[t * k + l] = v[(l, 0)]);
        }
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
        let mut m = self.config.to_json();
        m.insert("seed".into(), json!(self.seed));
        m
    }
    fn arrays(&self) -> Vec<Array> {
        let (t, p, k) = (self.config.n_tasks, self.p(), self.k());
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
