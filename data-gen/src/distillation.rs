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
//! The lower-level constants depend on x (the points' scale and e^λ): `constants_at` bounds
//! them at x, full batch and per class (see its doc); `constants` knows none.
//! The derivatives are the kernels' (`bilevel_kernels::models::softmax_linear`: the classifier
//! as a function of its weights and of the point, and the per-feature regularizer). Oracles run
//! sequentially over points with stack buffers of K ≤ [`MAX_CLASSES`] logits: no allocation.
//! Batch indices are the caller's precondition (an index out of range panics, as slice
//! indexing does).

use crate::dataset::{Array, Dataset, GeneratorInfo};
use crate::logreg_hpo::bounds::{dense_gram_bound, exp_range, DesignBounds};
use bilevel_kernels::models::design::batch_rows;
use bilevel_kernels::models::softmax_linear::{FeatureRidge, SoftmaxLinear};
use bilevel_kernels::{Batch, BilevelProblem, KernelError, ProblemConstants, ProblemMetrics, Result};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Map, Value};

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "distillation",
    summary: "dataset distillation (AmIGO F.3): one learned synthetic point per class + per-feature regularization",
    presets: &["tiny", "small", "mnist"],
};

/// Most classes (logits live on the stack).
pub const MAX_CLASSES: usize = bilevel_kernels::models::softmax_linear::MAX_CLASSES;

/// Parameters of the generator. `Default` = `"mnist"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Config {
    /// Real training samples (f's data).
    pub n_samples: usize,
    /// Number of features d.
    pub n_features: usize,
    /// Number of classes K.
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
            _ => Err(INFO.unknown_preset(name)),
        }
    }

    /// Checks every parameter.
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

impl Distillation {
    /// The generator's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The starting outer point: synthetic points N(0, 1), λ = 0.
    pub fn x0(&self) -> &[f64] {
        &self.x0
    }
    fn model(&self) -> SoftmaxLinear {
        SoftmaxLinear { d: self.config.n_features, k: self.config.n_classes }
    }
    /// The regularizer (1/(K·d)) Σ_j exp(λ_j)‖W[j,·]‖².
    fn ridge(&self) -> FeatureRidge {
        let (d, k) = (self.config.n_features, self.config.n_classes);
        FeatureRidge { k, c: 1.0 / (k * d) as f64 }
    }
    /// (synthetic points, λ) of x.
    fn split<'a>(&self, x: &'a [f64]) -> (&'a [f64], &'a [f64]) {
        x.split_at(self.config.n_classes * self.config.n_features)
    }
    /// Real sample i (f's data).
    fn real(&self, i: usize) -> &[f64] {
        let d = self.config.n_features;
        &self.data[i * d..(i + 1) * d]
    }
    /// The synthetic point of class c.
    fn point<'a>(&self, points: &'a [f64], c: usize) -> &'a [f64] {
        let d = self.config.n_features;
        &points[c * d..(c + 1) * d]
    }
}

impl BilevelProblem for Distillation {
    fn dim_x(&self) -> usize {
        let (d, k) = (self.config.n_features, self.config.n_classes);
        k * d + d
    }
    fn dim_y(&self) -> usize {
        self.config.n_features * self.config.n_classes
    }
    fn n_samples_f(&self) -> usize {
        self.config.n_samples
    }
    fn n_samples_g(&self) -> usize {
        self.config.n_classes
    }
    fn f(&self, _x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        let (m, n) = (self.model(), self.config.n_samples);
        let s = 1.0 / batch.len(n) as f64;
        batch_rows(batch, n).map(|i| s * m.loss(y, self.real(i), self.labels[i])).sum()
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        let (m, k) = (self.model(), self.config.n_classes);
        let ((points, lambda), s) = (self.split(x), 1.0 / batch.len(k) as f64);
        let loss: f64 = batch_rows(batch, k).map(|c| s * m.loss(y, self.point(points, c), c)).sum();
        loss + self.ridge().value(lambda, y)
    }
    fn grad_x_f(&self, _x: &[f64], _y: &[f64], _batch: Batch<'_>, out: &mut [f64]) {
        out.fill(0.0);
    }
    fn grad_y_f(&self, _x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (m, n) = (self.model(), self.config.n_samples);
        let s = 1.0 / batch.len(n) as f64;
        out.fill(0.0);
        batch_rows(batch, n).for_each(|i| {
            m.add_grad_w(y, self.real(i), self.labels[i], s, out);
        });
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (m, k) = (self.model(), self.config.n_classes);
        let ((points, lambda), s) = (self.split(x), 1.0 / batch.len(k) as f64);
        out.fill(0.0);
        batch_rows(batch, k).for_each(|c| {
            m.add_grad_w(y, self.point(points, c), c, s, out);
        });
        self.ridge().add_hvp(lambda, y, out);
    }
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (m, k) = (self.model(), self.config.n_classes);
        let ((points, lambda), s) = (self.split(x), 1.0 / batch.len(k) as f64);
        out.fill(0.0);
        batch_rows(batch, k).for_each(|c| m.add_hvp_w(y, self.point(points, c), v, s, out));
        self.ridge().add_hvp(lambda, v, out);
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let (m, k, d) = (self.model(), self.config.n_classes, self.config.n_features);
        let ((points, lambda), s) = (self.split(x), 1.0 / batch.len(k) as f64);
        let (out_points, out_lambda) = out.split_at_mut(k * d);
        out_points.fill(0.0);
        batch_rows(batch, k)
            .for_each(|c| m.add_cross_point(y, self.point(points, c), c, v, s, &mut out_points[c * d..(c + 1) * d]));
        self.ridge().cross_lambda(lambda, y, v, out_lambda);
    }
    /// Bounds at x = (synthetic points X ∈ R^{K×d}, λ). Every batch adds the regularizer
    /// once, with the diagonal Hessian (2/(K·d))·e^{λ_j} on row j of W; a point's
    /// cross-entropy Hessian is (x_c x_cᵀ) ⊗ H_c with 0 ⪯ H_c = diag(s) − ssᵀ ⪯ ½I (Popoviciu,
    /// as [`crate::hyperclean`]), for every W. So with G ≥ λ_max(XᵀX) (a K×K Gram eigen-solve
    /// raised by its rounding bound: O(K·dim x), `logreg_hpo/bounds.rs`):
    /// - full batch (the mean over the K classes): µ_g = (2/(K·d))·min_j e^{λ_j},
    ///   L_g = G/(2K) + (2/(K·d))·max_j e^{λ_j};
    /// - one class c (CE_c + R): µ_g,sample = (2/(K·d))·min e^λ,
    ///   L_g,sample = max_c ‖x_c‖²/2 + (2/(K·d))·max e^λ.
    ///
    /// At W = 0 (s uniform) the data part's λ_max is λ_max(XᵀX)/K²: the bound is loose by at
    /// most K/2 there. Both grow with the points' scale and with λ; `constants` knows none.
    fn constants_at(&self, x: &[f64]) -> Option<ProblemConstants> {
        let (d, k) = (self.config.n_features, self.config.n_classes);
        let (points, lambda) = self.split(x);
        let max_row_sq = points.chunks_exact(d).map(|r| r.iter().map(|v| v * v).sum::<f64>()).fold(0.0, f64::max);
        let bounds = DesignBounds { n: k, gram: dense_gram_bound(points, k, d), max_row_sq };
        let (lo, hi) = exp_range(lambda);
        let c = 2.0 * self.ridge().c;
        Some(bounds.constants(0.5, c * lo, c * hi))
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        Some(self)
    }
}

impl ProblemMetrics for Distillation {
    /// On the real data f is measured on: `val_loss` (= f on the full batch) and
    /// `val_accuracy` (the arg-max class of Wᵀξ against the label).
    fn names(&self) -> &[&'static str] {
        &["val_loss", "val_accuracy"]
    }
    fn evaluate(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        let (m, n) = (self.model(), self.config.n_samples);
        let mut s = [0.0; MAX_CLASSES];
        let s = &mut s[..m.k];
        let correct = (0..n)
            .filter(|&i| {
                m.probabilities(y, self.real(i), s);
                let best =
                    s.iter().enumerate().fold((0, f64::NEG_INFINITY), |a, (c, &p)| if p > a.1 { (c, p) } else { a });
                best.0 == self.labels[i] && best.1.is_finite()
            })
            .count();
        out[0] = self.f(x, y, Batch::Full);
        out[1] = if y.iter().all(|v| v.is_finite()) { correct as f64 / n as f64 } else { f64::NAN };
    }
}

impl Dataset for Distillation {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    fn parameters(&self) -> Map<String, Value> {
        let mut m = crate::dataset::parameters_of(&self.config, Some(self.seed));
        m.insert("x_layout".into(), "synthetic points (K x d, row-major), then lambda (d)".into());
        m.insert("y_layout".into(), "W (d x K, row-major)".into());
        m
    }
    fn arrays(&self) -> Vec<Array> {
        let d = self.config.n_features;
        vec![
            Array::f64("X", vec![self.config.n_samples, d], self.data.clone()),
            Array::i64("labels", vec![self.labels.len()], self.labels.iter().map(|&c| c as i64).collect()),
            Array::f64("x0", vec![self.x0.len()], self.x0.clone()),
        ]
    }
}
