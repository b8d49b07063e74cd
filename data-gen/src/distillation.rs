//! Dataset distillation (Arbel & Mairal, *Amortized Implicit Differentiation for Stochastic
//! Bilevel Optimization*, §5.3 / App. F.3): learn one synthetic example per class, plus a
//! per-feature regularizer, such that a linear classifier trained on the synthetic examples
//! alone does well on the real data.
//!
//! ```text
//! outer x = (X ∈ R^{K×d} one synthetic point x_c per class, row-major;  λ ∈ R^d)
//! inner y = W ∈ R^{d×K} (row j = feature j's K class weights), logits z = Wᵀξ, s = softmax(z)
//! g(x, W) = (1/|B|) Σ_{c∈B} CE(Wᵀx_c, c) + (1/(K·d)) Σ_j exp(λ_j)‖W[j,·]‖²      (B ⊆ classes)
//! f(x, W) = (1/|B|) Σ_{i∈B} CE(Wᵀξ_i, c_i)                                      (B ⊆ real data)
//! ```
//!
//! Derivatives, with r_c = s_c − e_c and H_c u = s_c⊙u − s_c(s_cᵀu) (the softmax Hessian):
//!
//! ```text
//! ∂W g = (1/|B|) Σ_c x_c r_cᵀ + (2/(K·d)) diag(e^λ) W
//! ∂WW g·V = (1/|B|) Σ_c x_c (H_c Vᵀx_c)ᵀ + (2/(K·d)) diag(e^λ) V
//! ∂x∂W g·V:  ∂x_c = (1/|B|) (V r_c + W H_c Vᵀx_c)      (x_c enters through z_c = Wᵀx_c)
//!            ∂λ_j = (2/(K·d)) e^{λ_j} ⟨W[j,·], V[j,·]⟩
//! ∂W f = (1/|B|) Σ_i ξ_i r_iᵀ,   ∂x f = 0
//! ```
//!
//! The x_c-block of the cross product is the derivative of ⟨∂W g, V⟩ = (1/|B|) Σ_c x_cᵀ V r_c + …
//! with respect to x_c: V r_c from the explicit x_c, plus (∂r_c/∂x_c)ᵀVᵀx_c = W H_c Vᵀx_c.
//!
//! The regularizer constant 1/(K·d) is the paper's (F.3 and the kernels' per-feature form).
//! Real data: MNIST-shaped synthetic images (class means + noise, the hyper-cleaning law);
//! initial synthetic points: N(0, 1) entries, λ = 0. No exact references (g is strictly but not
//! uniformly convex in W for λ fixed: the regularizer makes it strongly convex).
//! Oracles run sequentially over points with stack buffers of K ≤ [`MAX_CLASSES`] logits: no
//! allocation.

use crate::dataset::{Array, Dataset, GeneratorInfo};
use bilevel_kernels::{Batch, BilevelProblem, KernelError, Result};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Map, Value};

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "distillation",
    summary: "dataset distillation (AmIGO F.3): one learned synthetic point per class + per-feature regularization",
    presets: &["tiny", "small", "mnist"],
};

/// Most classes (logits live on the stack).
pub const MAX_CLASSES: usize = 256;

/// Parameters of the generator. `Default` = `"mnist"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Real training samples (f's data).
    pub n_samples: usize,
    pub n_features: usize,
    pub n_classes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { n_samples: 60_000, n_features: 784, n_classes: 10 }
    }
}

impl Config {
    /// `"tiny"` (30 samples, 6 features, 3 classes), `"small"` (2000, 784, 10), `"mnist"`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self { n_samples: 30, n_features: 6, n_classes: 3 }),
            "small" => Ok(Self { n_samples: 2000, ..Self::default() }),
            "mnist" => Ok(Self::default()),
            _ => Err(KernelError::InvalidParameter {
                name: "preset",
                reason: format!("unknown preset `{name}` for distillation (tiny, small, mnist)"),
            }),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.n_samples == 0 || self.n_features == 0 {
            return Err(KernelError::InvalidParameter { name: "n_samples", reason: "sizes must be >= 1".into() });
        }
        if !(2..=MAX_CLASSES).contains(&self.n_classes) {
            return Err(KernelError::InvalidParameter {
                name: "n_classes",
                reason: format!("must be in 2..={MAX_CLASSES}, got {}", self.n_classes),
            });
        }
        Ok(())
    }
}

/// The generated distillation problem.
#[derive(Clone, Debug)]
pub struct Distillation {
    config: Config,
    seed: u64,
    /// Real data, row-major n × d, and labels.
    data: Vec<f64>,
    labels: Vec<usize>,
    x0: Vec<f64>,
}

/// Generates the problem (see the module doc).
pub fn generate(config: &Config, seed: u64) -> Result<Distillation> {
    config.validate()?;
    let (n, d, k) = (config.n_samples, config.n_features, config.n_classes);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let normal = |rng: &mut Xoshiro256PlusPlus| -> f64 { StandardNormal.sample(rng) };
    let means: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            let m: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
            let norm = m.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
            m.into_iter().map(|v| 3.5 * v / norm).collect()
        })
        .collect();
    let (mut data, mut labels) = (Vec::with_capacity(n * d), Vec::with_capacity(n));
    for _ in 0..n {
        let c = rng.random_range(0..k);
        labels.push(c);
        data.extend(means[c].iter().map(|m| 0.35 * (m + normal(&mut rng))));
    }
    let mut x0: Vec<f64> = (0..k * d).map(|_| normal(&mut rng)).collect();
    x0.extend(std::iter::repeat_n(0.0, d));
    Ok(Distillation { config: config.clone(), seed, data, labels, x0 })
}

/// Indices of a batch over `n` items.
fn items(batch: Batch<'_>, n: usize) -> impl Iterator<Item = usize> + '_ {
    let (full, rows) = match batch {
        Batch::Full => (0..n, &[][..]),
        Batch::Rows(r) => (0..0, r),
    };
    full.chain(rows.iter().copied())
}

impl Distillation {
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The starting outer point: synthetic points N(0, 1), λ = 0.
    pub fn x0(&self) -> &[f64] {
        &self.x0
    }
    fn dk(&self) -> (usize, usize) {
        (self.config.n_features, self.config.n_classes)
    }
    /// Regularizer weight 1/(K·d).
    fn reg(&self) -> f64 {
        let (d, k) = self.dk();
        1.0 / (k * d) as f64
    }

    /// Softmax of z = Wᵀξ into `s` (length K); returns the log-sum-exp.
    fn softmax(&self, w: &[f64], xi: &[f64], s: &mut [f64]) -> f64 {
        let k = self.config.n_classes;
        s.fill(0.0);
        for (j, &xj) in xi.iter().enumerate() {
            s.iter_mut().zip(&w[j * k..(j + 1) * k]).for_each(|(z, wj)| *z += xj * wj);
        }
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + s.iter().map(|z| (z - m).exp()).sum::<f64>().ln();
        s.iter_mut().for_each(|z| *z = (*z - lse).exp());
        lse
    }

    fn batch_ok(&self, batch: Batch<'_>, n: usize) -> bool {
        match batch {
            Batch::Full => true,
            Batch::Rows(r) => !r.is_empty() && r.iter().all(|&i| i < n),
        }
    }

    /// (1/|B|) Σ CE over points `point(i)` with labels `label(i)`; optional ∂W into `grad`.
    fn loss(
        &self,
        w: &[f64],
        batch: Batch<'_>,
        n: usize,
        point: impl Fn(usize) -> (usize, usize),
        source: &[f64],
        mut grad: Option<&mut [f64]>,
    ) -> f64 {
        let (d, k) = self.dk();
        let scale = 1.0 / batch.len(n) as f64;
        let mut s = [0.0; MAX_CLASSES];
        let s = &mut s[..k];
        let mut total = 0.0;
        for i in items(batch, n) {
            let (row, label) = point(i);
            let xi = &source[row * d..(row + 1) * d];
            let lse = self.softmax(w, xi, s);
            let z_label: f64 = xi.iter().enumerate().map(|(j, x)| x * w[j * k + label]).sum();
            total += lse - z_label;
            if let Some(g) = grad.as_deref_mut() {
                s[label] -= 1.0;
                for (j, &xj) in xi.iter().enumerate() {
                    g[j * k..(j + 1) * k].iter_mut().zip(s.iter()).for_each(|(g, r)| *g += scale * xj * r);
                }
            }
        }
        total * scale
    }
}

impl BilevelProblem for Distillation {
    fn dim_x(&self) -> usize {
        let (d, k) = self.dk();
        k * d + d
    }
    fn dim_y(&self) -> usize {
        let (d, k) = self.dk();
        d * k
    }
    fn n_samples_f(&self) -> usize {
        self.config.n_samples
    }
    fn n_samples_g(&self) -> usize {
        self.config.n_classes
    }
    fn f(&self, _x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        let n = self.config.n_samples;
        if !self.batch_ok(batch, n) {
            return f64::NAN;
        }
        self.loss(y, batch, n, |i| (i, self.labels[i]), &self.data, None)
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        let (d, k) = self.dk();
        if !self.batch_ok(batch, k) {
            return f64::NAN;
        }
        let lambda = &x[k * d..];
        let reg: f64 =
            (0..d).map(|j| lambda[j].exp() * y[j * k..(j + 1) * k].iter().map(|w| w * w).sum::<f64>()).sum::<f64>();
        self.loss(y, batch, k, |c| (c, c), &x[..k * d], None) + self.reg() * reg
    }
    fn grad_x_f(&self, _x: &[f64], _y: &[f64], _batch: Batch<'_>, out: &mut [f64]) {
        out.fill(0.0);
    }
    fn grad_y_f(&self, _x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let n = self.config.n_samples;
        if !self.batch_ok(batch, n) {
            return out.fill(f64::NAN);
        }
        out.fill(0.0);
        self.loss(y, batch, n, |i| (i, self.labels[i]), &self.data, Some(out));
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (d, k) = self.dk();
        if !self.batch_ok(batch, k) {
            return out.fill(f64::NAN);
        }
        out.fill(0.0);
        self.loss(y, batch, k, |c| (c, c), &x[..k * d], Some(out));
        let lambda = &x[k * d..];
        for j in 0..d {
            let a = 2.0 * self.reg() * lambda[j].exp();
            out[j * k..(j + 1) * k].iter_mut().zip(&y[j * k..(j + 1) * k]).for_each(|(o, w)| *o += a * w);
        }
    }
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (d, k) = self.dk();
        if !self.batch_ok(batch, k) {
            return out.fill(f64::NAN);
        }
        let scale = 1.0 / batch.len(k) as f64;
        out.fill(0.0);
        let (mut s, mut u) = ([0.0; MAX_CLASSES], [0.0; MAX_CLASSES]);
        let (s, u) = (&mut s[..k], &mut u[..k]);
        for c in items(batch, k) {
            let xc = &x[c * d..(c + 1) * d];
            self.softmax(y, xc, s);
            // u = H_c (Vᵀ x_c)
            u.fill(0.0);
            for (j, &xj) in xc.iter().enumerate() {
                u.iter_mut().zip(&v[j * k..(j + 1) * k]).for_each(|(u, vj)| *u += xj * vj);
            }
            let su: f64 = s.iter().zip(u.iter()).map(|(a, b)| a * b).sum();
            u.iter_mut().zip(s.iter()).for_each(|(u, s)| *u = s * (*u - su));
            for (j, &xj) in xc.iter().enumerate() {
                out[j * k..(j + 1) * k].iter_mut().zip(u.iter()).for_each(|(o, u)| *o += scale * xj * u);
            }
        }
        let lambda = &x[k * d..];
        for j in 0..d {
            let a = 2.0 * self.reg() * lambda[j].exp();
            out[j * k..(j + 1) * k].iter_mut().zip(&v[j * k..(j + 1) * k]).for_each(|(o, v)| *o += a * v);
        }
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (d, k) = self.dk();
        if !self.batch_ok(batch, k) {
            return out.fill(f64::NAN);
        }
        let scale = 1.0 / batch.len(k) as f64;
        out.fill(0.0);
        let (mut s, mut u) = ([0.0; MAX_CLASSES], [0.0; MAX_CLASSES]);
        let (s, u) = (&mut s[..k], &mut u[..k]);
        for c in items(batch, k) {
            let xc = &x[c * d..(c + 1) * d];
            self.softmax(y, xc, s);
            u.fill(0.0);
            for (j, &xj) in xc.iter().enumerate() {
                u.iter_mut().zip(&v[j * k..(j + 1) * k]).for_each(|(u, vj)| *u += xj * vj);
            }
            let su: f64 = s.iter().zip(u.iter()).map(|(a, b)| a * b).sum();
            u.iter_mut().zip(s.iter()).for_each(|(u, s)| *u = s * (*u - su)); // H_c Vᵀx_c
            s[c] -= 1.0; // r_c
            let oc = &mut out[c * d..(c + 1) * d];
            for j in 0..d {
                let (vj, wj) = (&v[j * k..(j + 1) * k], &y[j * k..(j + 1) * k]);
                let vr: f64 = vj.iter().zip(s.iter()).map(|(a, b)| a * b).sum();
                let wu: f64 = wj.iter().zip(u.iter()).map(|(a, b)| a * b).sum();
                oc[j] += scale * (vr + wu);
            }
        }
        let lambda = &x[k * d..];
        for j in 0..d {
            let wv: f64 = y[j * k..(j + 1) * k].iter().zip(&v[j * k..(j + 1) * k]).map(|(a, b)| a * b).sum();
            out[k * d + j] = 2.0 * self.reg() * lambda[j].exp() * wv;
        }
    }
}

impl Dataset for Distillation {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    fn parameters(&self) -> Map<String, Value> {
        let c = &self.config;
        json!({
            "n_samples": c.n_samples, "n_features": c.n_features, "n_classes": c.n_classes, "seed": self.seed,
            "x_layout": "synthetic points (K x d, row-major), then lambda (d)",
            "y_layout": "W (d x K, row-major)",
        })
        .as_object()
        .expect("an object")
        .clone()
    }
    fn arrays(&self) -> Vec<Array> {
        let (d, _) = self.dk();
        vec![
            Array::f64("X", vec![self.config.n_samples, d], self.data.clone()),
            Array::i64("labels", vec![self.labels.len()], self.labels.iter().map(|&c| c as i64).collect()),
            Array::f64("x0", vec![self.x0.len()], self.x0.clone()),
        ]
    }
}
