//! Data hyper-cleaning: learn one weight σ(x_i) per training sample so that a classifier
//! trained on noisy labels does well on clean validation data.
//!
//! ```text
//! min_x  f(x, y) = (1/|D_val|) Σ_{i∈D_val} CE(yᵀa_i, c_i)                         (clean labels)
//! g(x, y) = (1/|D_tr|) Σ_{i∈D_tr} σ(x_i) CE(yᵀa_i, c̃_i) + c‖y‖²,  c = 0.001         (noisy labels)
//! ```
//!
//! with y = Θ ∈ R^{d×K} a linear multinomial classifier (no bias), CE the cross-entropy and σ
//! the sigmoid: Ji, Yang & Liang, "Bilevel Optimization: Convergence Analysis and Enhanced
//! Design" (ICML 2021) §4.2(b)/App. A (MNIST, 20,000 / 5,000 / 10,000, C_r = 0.001) and
//! Khanduri et al., "A Near-Optimal Algorithm for Stochastic Bilevel Optimization via
//! Double-Momentum" (SUSTAIN, NeurIPS 2021) eq. (3) (c = 0.001). The oracles are
//! [`MultinomialHpo`]'s with the kernels' `Hyper::SampleWeights { ridge: c }`; the per-sample
//! ∂x and cross products are zero outside the batch.
//!
//! # Data (synthetic, MNIST-shaped)
//! K class means `μ_c = separation · u_c` with u_c uniform random unit vectors in R^d (nearly
//! orthogonal for d = 784, so the means are ≈ separation·√2 apart), samples
//! `a_i = feature_scale · (μ_{c_i} + ε_i)`, ε_i ~ N(0, I_d), classes uniform. The defaults
//! (separation 3.5, feature_scale 0.35) give E‖a‖² ≈ 0.35²·(784 + 12) ≈ 98, the squared norm
//! of an MNIST image with pixels in [0, 1], and a linear Bayes accuracy of roughly 95% (MNIST's
//! linear classifiers reach about 92%). Dense design; split by position (train, validation,
//! test).
//!
//! # Corruption
//! Each training label is, independently with probability p (`corruption`), replaced by a
//! class drawn uniformly from the **other** K − 1 classes; validation and test labels stay
//! clean. Ji et al. write "replaced by a random class" (a uniform redraw over all K classes,
//! which leaves the label unchanged with probability 1/K); we exclude the true class so that
//! "corrupted" means "wrong label" and [`HyperCleaning::corrupted_detection`] measures what it
//! says. Default p = 0.3, SUSTAIN's main-text value (Ji et al. do not state theirs in the text;
//! their code defaults to 0.1; benchopt uses 0.5 to 0.9).
//!
//! Presets: `"tiny"` (tests: 40/30/20 samples, 8 features, 3 classes) and `"mnist"` (the
//! default: 20,000 / 5,000 / 10,000, 784 features, 10 classes; the dense design takes
//! 35,000·784·8 B ≈ 220 MB).

use crate::dataset::{parameters_of, Array, Dataset, GeneratorInfo};
use crate::logreg_hpo::{check_classes, check_range, check_sizes, Evaluation, MultinomialHpo, Split};
use crate::text::label_array;
use bilevel_kernels::models::multinomial::Hyper;
use bilevel_kernels::models::{DenseRows, Design};
use bilevel_kernels::{ops, BilevelProblem, ProblemConstants, ProblemMetrics, Result};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "hyperclean",
    summary: "data hyper-cleaning: per-sample weights sigma(x_i) on noisy labels, multinomial logistic, MNIST shape",
    presets: &["tiny", "mnist"],
};

/// Parameters of the hyper-cleaning generator (see the module doc). `Default` = `"mnist"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HyperCleanConfig {
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
    /// Probability p that a training label is replaced by a wrong class.
    pub corruption: f64,
    /// The inner ridge constant c of c‖y‖².
    pub ridge: f64,
    /// Distance of each class mean from the origin, in noise standard deviations.
    pub separation: f64,
    /// Overall scale of the features.
    pub feature_scale: f64,
}

impl Default for HyperCleanConfig {
    fn default() -> Self {
        Self {
            n_train: 20_000,
            n_val: 5_000,
            n_test: 10_000,
            n_features: 784,
            n_classes: 10,
            corruption: 0.3,
            ridge: 1e-3,
            separation: 3.5,
            feature_scale: 0.35,
        }
    }
}

impl HyperCleanConfig {
    /// `"tiny"` (tests) or `"mnist"` (= `Default`).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self { n_train: 40, n_val: 30, n_test: 20, n_features: 8, n_classes: 3, ..Self::default() }),
            "mnist" => Ok(Self::default()),
            _ => Err(INFO.unknown_preset(name)),
        }
    }
    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        check_sizes(self.n_train, self.n_val, self.n_features)?;
        check_classes(self.n_classes)?;
        check_range("corruption", self.corruption, 0.0, 1.0)?;
        check_range("ridge", self.ridge, f64::MIN_POSITIVE, 1e12)?;
        check_range("separation", self.separation, 0.0, 1e6)?;
        check_range("feature_scale", self.feature_scale, f64::MIN_POSITIVE, 1e6)
    }
}

/// A generated hyper-cleaning problem: x ∈ R^{n_train} (one weight logit per training
/// sample), y ∈ R^{d·K}. Implements [`BilevelProblem`] (delegating to [`MultinomialHpo`]; see
/// its notes on the mutex-held workspace and the error policy; constants and metrics of its
/// own) and [`Dataset`].
#[derive(Debug)]
pub struct HyperCleaning {
    problem: MultinomialHpo,
    constants: ProblemConstants,
    metric_names: Vec<&'static str>,
    clean_labels: Vec<usize>,
    corrupted: Vec<bool>,
}

impl HyperCleaning {
    /// The underlying multinomial problem (training labels = the corrupted ones).
    pub fn problem(&self) -> &MultinomialHpo {
        &self.problem
    }
    /// The true labels of the training samples.
    pub fn clean_labels(&self) -> &[usize] {
        &self.clean_labels
    }
    /// Whether each training label was corrupted.
    pub fn corrupted(&self) -> &[bool] {
        &self.corrupted
    }
    /// Number of corrupted training labels.
    pub fn n_corrupted(&self) -> usize {
        self.corrupted.iter().filter(|&&c| c).count()
    }
    /// The quality metric: the fraction of corrupted samples whose learned weight σ(x_i) is
    /// below 0.5 (i.e. x_i < 0). 1.0 when no sample is corrupted (nothing to detect).
    /// Precondition: `x.len() == n_train`; otherwise NaN.
    pub fn corrupted_detection(&self, x: &[f64]) -> f64 {
        self.flagged_fraction(x, true)
    }
    /// The complementary false-alarm rate: the fraction of clean samples with σ(x_i) < 0.5.
    /// 0.0 when every sample is corrupted. Precondition: `x.len() == n_train`; otherwise NaN.
    pub fn clean_rejection(&self, x: &[f64]) -> f64 {
        self.flagged_fraction(x, false)
    }
    fn flagged_fraction(&self, x: &[f64], corrupted: bool) -> f64 {
        if x.len() != self.corrupted.len() {
            return f64::NAN;
        }
        let (mut total, mut flagged) = (0usize, 0usize);
        for (&xi, &c) in x.iter().zip(&self.corrupted) {
            if c == corrupted {
                total += 1;
                // σ(x_i) < 0.5 ⟺ x_i < 0 (a NaN weight is not counted as flagged).
                flagged += usize::from(xi < 0.0);
            }
        }
        match total {
            0 if corrupted => 1.0,
            0 => 0.0,
            _ => flagged as f64 / total as f64,
        }
    }
    /// Unregularized loss and accuracy of Θ = `y` on a split; `Split::Train` scores against the
    /// **corrupted** training labels (use [`train_clean_accuracy`](Self::train_clean_accuracy)
    /// for the true ones).
    pub fn evaluate(&self, split: Split, y: &[f64]) -> Result<Evaluation> {
        self.problem.evaluate(split, y)
    }
    /// Loss and accuracy of Θ = `y` on the training inputs with their true labels.
    pub fn train_clean_accuracy(&self, y: &[f64]) -> Result<Evaluation> {
        let m = self.problem.inner_model();
        crate::logreg_hpo::multinomial_evaluation(m.design(), &self.clean_labels, m.n_classes(), y)
    }
}

/// Generates the hyper-cleaning problem of `config` with `seed` (see the module doc).
pub fn generate(config: &HyperCleanConfig, seed: u64) -> Result<HyperCleaning> {
    config.validate()?;
    let (d, k) = (config.n_features, config.n_classes);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut means = vec![0.0; k * d];
    for mu in means.chunks_exact_mut(d) {
        loop {
            mu.iter_mut().for_each(|v| *v = StandardNormal.sample(&mut rng));
            let norm = ops::norm2(mu);
            if norm > 0.0 {
                mu.iter_mut().for_each(|v| *v *= config.separation / norm);
                break;
            }
        }
    }
    let s = config.feature_scale;
    let mut draw = |n: usize| -> Result<(Design, Vec<usize>)> {
        let mut x = vec![0.0; n * d];
        let mut labels = Vec::with_capacity(n);
        for row in x.chunks_exact_mut(d) {
            let c = rng.random_range(0..k);
            labels.push(c);
            for (v, mu) in row.iter_mut().zip(&means[c * d..(c + 1) * d]) {
                let e: f64 = StandardNormal.sample(&mut rng);
                *v = s * (mu + e);
            }
        }
        Ok((Design::Dense(DenseRows::new(n, d, x)?), labels))
    };
    let train = draw(config.n_train)?;
    let val = draw(config.n_val)?;
    let test = if config.n_test > 0 { Some(draw(config.n_test)?) } else { None };
    let problem = from_splits((train, val, test, k), config.corruption, config.ridge, &mut rng)?;
    Ok(HyperCleaning {
        problem: problem.problem.with_description(INFO.name, parameters_of(config, Some(seed))),
        ..problem
    })
}

/// Labelled data: (training, validation, optional test) as (design, class labels), and K.
pub type Splits = ((Design, Vec<usize>), (Design, Vec<usize>), Option<(Design, Vec<usize>)>, usize);

/// Hyper-cleaning on given data (clean training labels, validation and test splits, K classes):
/// each training label is replaced by a uniform wrong class with probability `corruption`
/// (draws from `rng`), the inner ridge is `ridge`. The generator and [`crate::from_file`] use it.
pub fn from_splits(data: Splits, corruption: f64, ridge: f64, rng: &mut Xoshiro256PlusPlus) -> Result<HyperCleaning> {
    let (train, val, test, k) = data;
    check_classes(k)?;
    check_range("corruption", corruption, 0.0, 1.0)?;
    check_range("ridge", ridge, f64::MIN_POSITIVE, 1e12)?;
    let (train_x, clean_labels) = train;
    let mut noisy = clean_labels.clone();
    let mut corrupted = vec![false; clean_labels.len()];
    for (label, flag) in noisy.iter_mut().zip(corrupted.iter_mut()) {
        if rng.random_bool(corruption) {
            // A uniform class among the K − 1 others.
            let r = rng.random_range(0..k - 1);
            *label = if r >= *label { r + 1 } else { r };
            *flag = true;
        }
    }
    let hyper = Hyper::SampleWeights { ridge };
    let problem = MultinomialHpo::new((train_x, noisy), val, test, k, hyper)?;
    let two_c = 2.0 * ridge;
    let constants =
        crate::logreg_hpo::bounds::DesignBounds::of(problem.inner_model().design()).constants(0.5, two_c, two_c);
    let mut metric_names = problem.metrics().expect("MultinomialHpo has metrics").names().to_vec();
    metric_names.extend(["train_clean_accuracy", "corrupted_detection", "clean_rejection"]);
    Ok(HyperCleaning { problem, constants, metric_names, clean_labels, corrupted })
}

impl BilevelProblem for HyperCleaning {
    bilevel_kernels::forward_oracles!(problem);
    /// Bounds that hold for every x (σ(x_i) ∈ (0, 1)), so `constants_at` is `None`. The
    /// per-sample cross-entropy Hessian is (a_i a_iᵀ) ⊗ (diag(s) − ssᵀ), and
    /// λ_max(diag(s) − ssᵀ) ≤ ½ (a variance of a unit vector's entries, Popoviciu), so
    /// ∂yy g ⪯ (1/(2n)) XᵀΣX ⊗ I + 2c I with Σ = diag(σ(x_i)) ⪯ I: L_g ≤ G/(2n) + 2c with G
    /// an upper bound on λ_max(XᵀX) computed once (`DesignBounds`:
    /// the smallest of ‖X‖_F², a dense Gram eigen-solve and a Collatz–Wielandt bound; the
    /// weights need σ ≤ 1). One sample's g_i is
    /// σ(x_i)·CE_i + c‖y‖² (the ridge is added once per batch), with Hessian between 2c·I
    /// (the loss part is positive semi-definite, σ > 0) and (‖a_i‖²/2 + 2c)·I: µ_g,sample = 2c
    /// (attained: the loss part has rank < d·K) and L_g,sample = max_i ‖a_i‖²/2 + 2c; the full
    /// batch likewise has µ_g ≥ 2c. The outer constants are not known.
    fn constants(&self) -> ProblemConstants {
        self.constants
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        Some(self)
    }
}

impl ProblemMetrics for HyperCleaning {
    /// `val_loss` (= f on the full batch), `val_accuracy`, `test_loss`, `test_accuracy` (with a
    /// test split), `train_clean_accuracy` (Θ against the true training labels),
    /// `corrupted_detection` and `clean_rejection` (of the weights x).
    fn names(&self) -> &[&'static str] {
        &self.metric_names
    }
    fn evaluate(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        let n = out.len() - 3;
        self.problem.metrics().expect("MultinomialHpo has metrics").evaluate(x, y, &mut out[..n]);
        out[n] = self.train_clean_accuracy(y).map_or(f64::NAN, |e| e.accuracy);
        out[n + 1] = self.corrupted_detection(x);
        out[n + 2] = self.clean_rejection(x);
    }
}

impl Dataset for HyperCleaning {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    fn parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut p = self.problem.parameters();
        p.insert("n_corrupted".into(), self.n_corrupted().into());
        p
    }
    /// `X_{train,val,test}` (dense), `y_train` (corrupted), `y_train_clean`, `corrupted` (0/1),
    /// `y_val`, `y_test`.
    fn arrays(&self) -> Vec<Array> {
        let mut out = self.problem.arrays();
        out.push(label_array("y_train_clean", &self.clean_labels));
        out.push(Array::i64(
            "corrupted",
            vec![self.corrupted.len()],
            self.corrupted.iter().map(|&c| c as i64).collect(),
        ));
        out
    }
}
