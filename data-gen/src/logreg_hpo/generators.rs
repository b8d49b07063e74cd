//! The three seeded generators of logistic HPO problems and their configs: `logreg_text`
//! ([`text_problem`]), `logreg_per_class` ([`per_class_problem`], [`PerClassConfig`]) and
//! `logreg_binary` ([`binary_problem`], [`BinaryConfig`]).

use super::{
    check_classes, check_range, check_sizes, invalid, normal, BinaryHpo, MultinomialHpo, INFO, INFO_BINARY,
    INFO_PER_CLASS,
};
use crate::dataset::parameters_of;
use crate::text::{self, TextConfig};
use bilevel_kernels::models::multinomial::Hyper as MultiHyper;
use bilevel_kernels::models::{DenseRows, Design};
use bilevel_kernels::{ops, CsrMatrix, Result};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The `logreg_text` problem: the text data of `config` ([`crate::text::generate`]) with the
/// papers' per-feature regularizer (1/(K·d)) Σ_j exp(λ_j)‖Θ[j,·]‖²
/// ([`MultiHyper::per_feature_paper`]). x ∈ R^d, y ∈ R^{d·K}.
pub fn text_problem(config: &TextConfig, seed: u64) -> Result<MultinomialHpo> {
    let data = text::generate(config, seed)?;
    let (d, k) = (config.n_features, config.n_classes);
    let hyper = MultiHyper::per_feature_paper(d, k);
    let sparse = |s: text::SparseSplit| (Design::Sparse(s.x), s.labels);
    let mut parameters = parameters_of(config, Some(seed));
    if let MultiHyper::PerFeature { scale } = hyper {
        parameters.insert("reg_scale".into(), scale.into());
    }
    Ok(MultinomialHpo::new(sparse(data.train), sparse(data.val), Some(sparse(data.test)), k, hyper)?
        .with_description(INFO.name, parameters))
}

/// Parameters of the `logreg_per_class` generator (benchopt's covtype shape). Data: features
/// x ~ N(0, I_d) (standardized, as benchopt standardizes covtype), a random linear teacher
/// W* ∈ R^{d×K} with i.i.d. N(0, signal²/d) entries, and labels drawn from
/// softmax(W*ᵀx) (so the logits have standard deviation ≈ `signal` and the Bayes accuracy is
/// below 1). Dense design; split by position. `Default` = `"covtype"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PerClassConfig {
    /// Training samples (the lower-level data).
    pub n_train: usize,
    /// Validation samples (the upper-level data).
    pub n_val: usize,
    /// Held-out test samples (0: no test split).
    pub n_test: usize,
    /// Number of features d.
    pub n_features: usize,
    /// Number of classes K.
    pub n_classes: usize,
    /// Standard deviation of the teacher's logits.
    pub signal: f64,
    /// The regularizer's constant: `scale·Σ_c exp(λ_c)‖Θ[·,c]‖²` (benchopt: ½).
    pub reg_scale: f64,
}

impl Default for PerClassConfig {
    /// covtype: 581,012 samples split 64/16/20 (371,847 / 92,962 / 116,203), 54 features,
    /// 7 classes. The dense design takes 581,012·54·8 B ≈ 251 MB.
    fn default() -> Self {
        Self {
            n_train: 371_847,
            n_val: 92_962,
            n_test: 116_203,
            n_features: 54,
            n_classes: 7,
            signal: 3.0,
            reg_scale: 0.5,
        }
    }
}

impl PerClassConfig {
    /// `"tiny"` (tests) or `"covtype"` (= `Default`).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self { n_train: 40, n_val: 30, n_test: 20, n_features: 5, n_classes: 3, ..Self::default() }),
            "covtype" => Ok(Self::default()),
            _ => Err(INFO_PER_CLASS.unknown_preset(name)),
        }
    }
    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        check_sizes(self.n_train, self.n_val, self.n_features)?;
        check_classes(self.n_classes)?;
        check_range("signal", self.signal, 0.0, 1e3)?;
        check_range("reg_scale", self.reg_scale, f64::MIN_POSITIVE, 1e12)
    }
}

/// Draws `n` dense rows x ~ N(0, I_d) (row-major) with labels from softmax(W*ᵀx).
fn teacher_multiclass(rng: &mut Xoshiro256PlusPlus, n: usize, w: &[f64], d: usize, k: usize) -> (Vec<f64>, Vec<usize>) {
    let mut x = vec![0.0; n * d];
    let mut labels = Vec::with_capacity(n);
    let mut z = vec![0.0; k];
    for row in x.chunks_exact_mut(d) {
        row.iter_mut().for_each(|v| *v = normal(rng));
        z.fill(0.0);
        for (xj, wj) in row.iter().zip(w.chunks_exact(k)) {
            z.iter_mut().zip(wj).for_each(|(z, w)| *z += xj * w);
        }
        let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        z.iter_mut().for_each(|v| *v = (*v - m).exp());
        let u = rng.random::<f64>() * z.iter().sum::<f64>();
        let (mut acc, mut c) = (0.0, k - 1);
        for (j, p) in z.iter().enumerate() {
            acc += p;
            if u < acc {
                c = j;
                break;
            }
        }
        labels.push(c);
    }
    (x, labels)
}

/// The `logreg_per_class` problem (see [`PerClassConfig`]): x ∈ R^K, y ∈ R^{d·K}.
pub fn per_class_problem(config: &PerClassConfig, seed: u64) -> Result<MultinomialHpo> {
    config.validate()?;
    let (d, k) = (config.n_features, config.n_classes);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let sd = config.signal / (d as f64).sqrt();
    let w: Vec<f64> = (0..d * k).map(|_| sd * normal(&mut rng)).collect();
    let mut split = |n: usize| -> Result<(Design, Vec<usize>)> {
        let (x, labels) = teacher_multiclass(&mut rng, n, &w, d, k);
        Ok((Design::Dense(DenseRows::new(n, d, x)?), labels))
    };
    let train = split(config.n_train)?;
    let val = split(config.n_val)?;
    let test = if config.n_test > 0 { Some(split(config.n_test)?) } else { None };
    let hyper = MultiHyper::PerClass { scale: config.reg_scale };
    Ok(MultinomialHpo::new(train, val, test, k, hyper)?
        .with_description(INFO_PER_CLASS.name, parameters_of(config, Some(seed))))
}

/// Parameters of the `logreg_binary` generator (benchopt's IJCNN1 shape). Data: a random
/// linear teacher w* supported on `n_informative` random features (i.i.d. N(0, 1) entries
/// rescaled to ‖w*‖ = `signal`), features x_j ~ N(0, 1) — each stored with probability
/// `density` and then scaled by 1/√density so E(x_j²) = 1 (density 1: a dense design, else
/// CSR) — and labels b = +1 with probability σ(w*ᵀx), else −1 (logistic label noise; the
/// features outside the support are pure noise, which per-feature regularization should
/// learn to suppress). Split by position. `Default` = `"ijcnn1"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BinaryConfig {
    /// Training samples (the lower-level data).
    pub n_train: usize,
    /// Validation samples (the upper-level data).
    pub n_val: usize,
    /// Held-out test samples (0: no test split).
    pub n_test: usize,
    /// Number of features d.
    pub n_features: usize,
    /// Features the teacher uses (≤ n_features).
    pub n_informative: usize,
    /// Fraction of stored entries (1.0: dense).
    pub density: f64,
    /// ‖w*‖: the standard deviation of the teacher's margin.
    pub signal: f64,
    /// The regularizer's constant: `½·scale·Σ_j exp(λ_j)θ_j²` (benchopt: 1).
    pub reg_scale: f64,
}

impl Default for BinaryConfig {
    /// ijcnn1: 22 features, 49,990 training samples (the `ijcnn1` split) and 91,701 validation
    /// samples (benchopt evaluates f on `ijcnn1_test`), no test split; dense.
    fn default() -> Self {
        Self {
            n_train: 49_990,
            n_val: 91_701,
            n_test: 0,
            n_features: 22,
            n_informative: 12,
            density: 1.0,
            signal: 3.0,
            reg_scale: 1.0,
        }
    }
}

impl BinaryConfig {
    /// `"tiny"` (tests: 6 sparse features) or `"ijcnn1"` (= `Default`).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self {
                n_train: 40,
                n_val: 30,
                n_test: 20,
                n_features: 6,
                n_informative: 4,
                density: 0.7,
                ..Self::default()
            }),
            "ijcnn1" => Ok(Self::default()),
            _ => Err(INFO_BINARY.unknown_preset(name)),
        }
    }
    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        check_sizes(self.n_train, self.n_val, self.n_features)?;
        if self.n_features > u32::MAX as usize {
            return Err(invalid("n_features", "exceeds the CSR index range".into()));
        }
        if self.n_informative == 0 || self.n_informative > self.n_features {
            return Err(invalid(
                "n_informative",
                format!("must be in 1..={}, got {}", self.n_features, self.n_informative),
            ));
        }
        check_range("density", self.density, f64::MIN_POSITIVE, 1.0)?;
        check_range("signal", self.signal, 0.0, 1e3)?;
        check_range("reg_scale", self.reg_scale, f64::MIN_POSITIVE, 1e12)
    }
}

/// Draws `n` rows and ±1 labels from the binary teacher (see [`BinaryConfig`]).
fn teacher_binary(rng: &mut Xoshiro256PlusPlus, n: usize, w: &[f64], density: f64) -> Result<(Design, Vec<f64>)> {
    let d = w.len();
    let mut labels = Vec::with_capacity(n);
    let label = |rng: &mut Xoshiro256PlusPlus, margin: f64| {
        if rng.random::<f64>() < bilevel_kernels::models::logistic::sigmoid(margin) {
            1.0
        } else {
            -1.0
        }
    };
    if density >= 1.0 {
        let mut x = vec![0.0; n * d];
        for row in x.chunks_exact_mut(d) {
            row.iter_mut().for_each(|v| *v = normal(rng));
            let margin = ops::dot_seq(row, w);
            labels.push(label(rng, margin));
        }
        return Ok((Design::Dense(DenseRows::new(n, d, x)?), labels));
    }
    let inv_sqrt = 1.0 / density.sqrt();
    let mut indptr = vec![0usize];
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut margin = 0.0;
        for (j, wj) in w.iter().enumerate() {
            if rng.random_bool(density) {
                let v: f64 = inv_sqrt * normal(rng);
                indices.push(j as u32);
                values.push(v);
                margin += v * wj;
            }
        }
        indptr.push(indices.len());
        labels.push(label(rng, margin));
    }
    Ok((Design::Sparse(CsrMatrix::new(n, d, indptr, indices, values)?), labels))
}

/// The `logreg_binary` problem (see [`BinaryConfig`]): x, y ∈ R^d.
pub fn binary_problem(config: &BinaryConfig, seed: u64) -> Result<BinaryHpo> {
    config.validate()?;
    let d = config.n_features;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let support = index::sample(&mut rng, d, config.n_informative);
    let mut w = vec![0.0; d];
    for j in support.iter() {
        w[j] = normal(&mut rng);
    }
    let norm = ops::norm2(&w);
    if norm > 0.0 {
        w.iter_mut().for_each(|v| *v *= config.signal / norm);
    }
    let train = teacher_binary(&mut rng, config.n_train, &w, config.density)?;
    let val = teacher_binary(&mut rng, config.n_val, &w, config.density)?;
    let test =
        if config.n_test > 0 { Some(teacher_binary(&mut rng, config.n_test, &w, config.density)?) } else { None };
    Ok(BinaryHpo::new(train, val, test, config.reg_scale)?
        .with_description(INFO_BINARY.name, parameters_of(config, Some(seed))))
}
