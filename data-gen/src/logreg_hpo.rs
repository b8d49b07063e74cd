//! Logistic-regression hyper-parameter optimization as bilevel problems: x = λ (the
//! hyper-parameters), y = θ (the model weights),
//!
//! ```text
//! f(λ, θ) = (1/|B_val|) Σ_{i∈B_val} ℓ(θ; a_i, b_i)                  (validation loss, no regularizer)
//! g(λ, θ) = (1/|B_tr|)  Σ_{i∈B_tr}  w_i(λ) ℓ(θ; a_i, b_i) + R(λ, θ)  (training loss + regularizer)
//! ```
//!
//! with f's samples the validation set and g's the training set (`Batch::Rows` indexes them).
//! The derivatives are the kernels' (`bilevel_kernels::models::{logistic, multinomial}`), whose
//! module docs give every formula. Three forms, each with a seeded generator:
//!
//! | generator | model | R(λ, θ) | x ∈ | data |
//! |---|---|---|---|---|
//! | `logreg_text` ([`text_problem`]) | multinomial, Θ ∈ R^{d×K} | (1/(K·d)) Σ_j exp(λ_j)‖Θ[j,·]‖² | R^d | [`crate::text`] |
//! | `logreg_binary` ([`binary_problem`]) | binary, θ ∈ R^d | ½·scale·Σ_j exp(λ_j) θ_j² (scale = 1) | R^d | [`BinaryConfig`] |
//! | `logreg_per_class` ([`per_class_problem`]) | multinomial | ½ Σ_c exp(λ_c)‖Θ[·,c]‖² | R^K | [`PerClassConfig`] |
//!
//! - Text, per feature: Arbel & Mairal, "Amortized implicit differentiation for stochastic
//!   bilevel optimization" (ICLR 2022) App. F.2 and Ji, Yang & Liang, "Bilevel Optimization:
//!   Convergence Analysis and Enhanced Design" (ICML 2021) App. A eq. (12) on 20 Newsgroups; the
//!   constant 1/(K·d) is the kernels' [`MultiHyper::per_feature_paper`] (stocBiO's code uses
//!   1/(2Kd); see there).
//! - Binary, per feature: benchopt's benchmark_bilevel IJCNN1 problem (`datasets/ijcnn1.py`:
//!   logistic loss + ½ Σ_j exp(λ_j) θ_j², outer loss on the `ijcnn1_test` split), the kernels'
//!   [`BinHyper::per_feature_benchopt`].
//! - Multinomial, per class: benchopt's covtype problem (54 features, 7 classes, 64/16/20 split,
//!   standardized features), the kernels' [`MultiHyper::per_class_benchopt`].
//!
//! Neither real data set is bundled: the generators draw synthetic data of the same shape (a
//! random linear teacher, see [`BinaryConfig`], [`PerClassConfig`]; the text model in
//! [`crate::text`]). Real data can be used through [`MultinomialHpo::new`] / [`BinaryHpo::new`].
//!
//! # Oracles
//! ∂x f = 0 (f does not depend on λ). ∂θ f, ∂θ g, the HVP and the per-sample cross product are
//! one fused sweep over the batch rows each (the kernels' `point` / `point_with_grad`); the
//! per-feature and per-class cross products `∂λ∂θ g·v` have closed forms in θ and v that do not
//! depend on the batch, so they are computed without touching the data (O(dim θ)).
//!
//! **Concurrency.** The oracles do not allocate: the kernels' workspaces are sized at
//! construction (for batches of up to max(n_train, n_val) positions; see
//! `with_batch_capacity`) and kept inside the problem behind a `Mutex`, so concurrent oracle
//! calls on one problem **serialize** (each call still runs the kernels' own deterministic
//! parallel sweeps). Use one problem per thread for independent parallel runs.
//!
//! **Errors.** The trait's oracles cannot return errors. A call that violates the trait's
//! preconditions (lengths, batch indices, an empty batch, a batch longer than the capacity) or
//! meets non-finite input or an overflow writes NaN to its output (values: returns NaN), never
//! a silently wrong number; the `try_*` methods return the typed [`KernelError`] instead.
//!
//! # References
//! No closed form is known, so [`BilevelProblem::exact`] is `None`. [`reference_at`] computes
//! a high-accuracy y*(x) by Newton's method with CG inner solves on the full-batch HVP (the
//! kernels' [`Cg`](bilevel_kernels::linsolve::Cg)), then v*(x) by CG, L(x) and ∇L(x) = ∂x f − ∂x∂y g·v*; it works for any
//! [`BilevelProblem`] whose g is strongly convex in y.

use crate::dataset::{Array, Dataset, GeneratorInfo};
use crate::text::{self, csr_arrays, label_array, TextConfig};
use bilevel_kernels::linop::FnOp;
use bilevel_kernels::linsolve::{Cg, Stopping};
use bilevel_kernels::models::logistic::{Hyper as BinHyper, LogisticModel, LogisticWorkspace};
use bilevel_kernels::models::multinomial::{Hyper as MultiHyper, MultinomialLogistic, MultinomialWorkspace};
use bilevel_kernels::models::{DenseRows, Design};
use bilevel_kernels::{ops, Batch, BilevelProblem, CsrMatrix, KernelError, Result};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::{Mutex, MutexGuard};

/// Catalogue entry: multinomial per-feature HPO on the text data (20 Newsgroups form).
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "logreg_text",
    summary: "multinomial logistic regression, one L2 hyper-parameter per feature, sparse text data (20 Newsgroups)",
    presets: &["tiny", "small", "20news"],
};

/// Catalogue entry: binary per-feature HPO (benchopt's IJCNN1 form).
pub const INFO_BINARY: GeneratorInfo = GeneratorInfo {
    name: "logreg_binary",
    summary: "binary logistic regression, one L2 hyper-parameter per feature (benchopt IJCNN1 form)",
    presets: &["tiny", "ijcnn1"],
};

/// Catalogue entry: multinomial per-class HPO (benchopt's covtype form).
pub const INFO_PER_CLASS: GeneratorInfo = GeneratorInfo {
    name: "logreg_per_class",
    summary: "multinomial logistic regression, one L2 hyper-parameter per class (benchopt covtype form)",
    presets: &["tiny", "covtype"],
};

/// The three generators of this module.
pub const GENERATORS: [GeneratorInfo; 3] = [INFO, INFO_BINARY, INFO_PER_CLASS];

/// Which split of the data a metric is computed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
    Test,
}

/// Unregularized mean loss and accuracy of a model on one split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean (unweighted, unregularized) log-loss / cross-entropy.
    pub loss: f64,
    /// Fraction of samples whose predicted class is the label.
    pub accuracy: f64,
}

/// One N(0, 1) draw.
#[inline]
pub(crate) fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    StandardNormal.sample(rng)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another oracle call cannot leave the scratch in a state that matters: every
    // call overwrites what it reads.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn nan_on_err(r: Result<()>, out: &mut [f64]) {
    if r.is_err() {
        out.fill(f64::NAN);
    }
}

fn invalid(name: &'static str, reason: String) -> KernelError {
    KernelError::InvalidParameter { name, reason }
}

/// Checks that a count is positive.
pub(crate) fn check_count(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(invalid(name, "must be at least 1".into()));
    }
    Ok(())
}

/// Checks that a real parameter is finite and in `[lo, hi]`.
pub(crate) fn check_range(name: &'static str, value: f64, lo: f64, hi: f64) -> Result<()> {
    if !(value.is_finite() && value >= lo && value <= hi) {
        return Err(invalid(name, format!("must be in [{lo}, {hi}], got {value}")));
    }
    Ok(())
}

/// The arrays of a design: a dense `[n, d]` array named `prefix`, or its CSR trio.
pub(crate) fn design_arrays(prefix: &str, x: &Design) -> Vec<Array> {
    match x {
        Design::Dense(m) => vec![Array::f64(prefix, vec![m.nrows(), m.ncols()], m.data().to_vec())],
        Design::Sparse(s) => csr_arrays(prefix, s),
    }
}

/// Generator name and parameters, for [`Dataset`].
#[derive(Clone, Debug, Default)]
struct Description {
    generator: &'static str,
    parameters: serde_json::Map<String, serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Multinomial

/// Multinomial logistic-regression HPO: inner model on the training set with a hyper-parameter
/// form ([`MultiHyper::PerFeature`], [`MultiHyper::PerClass`] or [`MultiHyper::SampleWeights`]),
/// outer plain cross-entropy on the validation set, an optional held-out test set.
/// y = Θ ∈ R^{d×K}, row-major (row j = the K class weights of feature j).
pub struct MultinomialHpo {
    inner: MultinomialLogistic,
    outer: MultinomialLogistic,
    test: Option<(Design, Vec<usize>)>,
    /// One workspace for both models (same d and K; the calls serialize anyway). For 20
    /// Newsgroups its block accumulators are 4·d·K values (≈ 65 MB), so one, not two.
    ws: Mutex<MultinomialWorkspace>,
    description: Description,
}

impl std::fmt::Debug for MultinomialHpo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultinomialHpo")
            .field("generator", &self.description.generator)
            .field("n_train", &self.inner.n_samples())
            .field("n_val", &self.outer.n_samples())
            .field("n_features", &self.inner.n_features())
            .field("n_classes", &self.inner.n_classes())
            .field("hyper", &self.inner.hyper())
            .finish()
    }
}

impl MultinomialHpo {
    /// From data: training (design, labels), validation (design, labels), an optional test
    /// split, K classes and the inner hyper-parameter form. Errors: mismatched feature counts,
    /// labels out of range or of the wrong length, [`MultiHyper::Plain`] (no hyper-parameter),
    /// invalid constants. [`Dataset`] reports an empty generator name and no parameters until
    /// [`with_description`](Self::with_description) sets them.
    pub fn new(
        train: (Design, Vec<usize>),
        val: (Design, Vec<usize>),
        test: Option<(Design, Vec<usize>)>,
        n_classes: usize,
        hyper: MultiHyper,
    ) -> Result<Self> {
        if matches!(hyper, MultiHyper::Plain) {
            return Err(invalid("hyper", "the inner problem needs a hyper-parameter (not Plain)".into()));
        }
        let d = train.0.ncols();
        bilevel_kernels::error::check_len("validation features", d, val.0.ncols())?;
        if let Some((x, labels)) = &test {
            bilevel_kernels::error::check_len("test features", d, x.ncols())?;
            bilevel_kernels::error::check_len("test labels", x.nrows(), labels.len())?;
            if let Some(i) = labels.iter().position(|&c| c >= n_classes) {
                return Err(KernelError::InvalidData {
                    what: "test labels",
                    reason: format!("label {} of sample {i} is not below n_classes = {n_classes}", labels[i]),
                });
            }
        }
        let inner = MultinomialLogistic::new(train.0, train.1, n_classes, hyper)?;
        let outer = MultinomialLogistic::new(val.0, val.1, n_classes, MultiHyper::Plain)?;
        let capacity = inner.n_samples().max(outer.n_samples());
        let ws = Mutex::new(inner.workspace(capacity));
        Ok(Self { inner, outer, test, ws, description: Description::default() })
    }

    /// Sets the generator name and parameters reported by [`Dataset`].
    pub fn with_description(
        mut self,
        generator: &'static str,
        parameters: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        self.description = Description { generator, parameters };
        self
    }

    /// Resizes the workspace for batches of up to `capacity` positions (repeats count); the
    /// default is max(n_train, n_val). Allocates once, here.
    pub fn with_batch_capacity(self, capacity: usize) -> Self {
        *lock(&self.ws) = self.inner.workspace(capacity);
        self
    }

    /// The inner (training) model.
    pub fn inner_model(&self) -> &MultinomialLogistic {
        &self.inner
    }
    /// The outer (validation) model.
    pub fn outer_model(&self) -> &MultinomialLogistic {
        &self.outer
    }
    /// The test split, if any.
    pub fn test_split(&self) -> Option<(&Design, &[usize])> {
        self.test.as_ref().map(|(x, l)| (x, l.as_slice()))
    }
    /// d.
    pub fn n_features(&self) -> usize {
        self.inner.n_features()
    }
    /// K.
    pub fn n_classes(&self) -> usize {
        self.inner.n_classes()
    }

    /// f(λ, Θ) on `batch` of validation rows.
    pub fn try_f(&self, _x: &[f64], y: &[f64], batch: Batch<'_>) -> Result<f64> {
        let mut ws = lock(&self.ws);
        Ok(self.outer.point(y, &[], batch, &mut ws)?.value())
    }
    /// g(λ, Θ) on `batch` of training rows.
    pub fn try_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> Result<f64> {
        let mut ws = lock(&self.ws);
        Ok(self.inner.point(y, x, batch, &mut ws)?.value())
    }
    /// ∂Θ f.
    pub fn try_grad_y_f(&self, _x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let mut ws = lock(&self.ws);
        self.outer.point_with_grad(y, &[], batch, &mut ws, out).map(|_| ())
    }
    /// ∂Θ g.
    pub fn try_grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let mut ws = lock(&self.ws);
        self.inner.point_with_grad(y, x, batch, &mut ws, out).map(|_| ())
    }
    /// ∂ΘΘ g · v.
    pub fn try_hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let mut ws = lock(&self.ws);
        self.inner.point(y, x, batch, &mut ws)?.hvp(v, out)
    }
    /// ∂λ∂Θ g · v. Per feature: `2·scale·e^{λ_j}⟨Θ[j,·], V[j,·]⟩`; per class:
    /// `2·scale·e^{λ_c}⟨Θ[·,c], V[·,c]⟩` — both independent of the batch and computed without a
    /// data sweep; per-sample weights: the kernels' one-sweep cross product.
    pub fn try_cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        use bilevel_kernels::error::{check_finite, check_len};
        let (dx, dy, k) = (self.inner.dim_lambda(), self.inner.dim_theta(), self.n_classes());
        match self.inner.hyper() {
            MultiHyper::PerFeature { scale } | MultiHyper::PerClass { scale } => {
                check_len("lambda", dx, x.len())?;
                check_len("theta", dy, y.len())?;
                check_len("v", dy, v.len())?;
                check_len("cross out", dx, out.len())?;
                check_finite("lambda", x)?;
                check_finite("theta", y)?;
                check_finite("v", v)?;
                let rows = y.chunks_exact(k).zip(v.chunks_exact(k));
                if matches!(self.inner.hyper(), MultiHyper::PerFeature { .. }) {
                    for ((o, (t, v)), l) in out.iter_mut().zip(rows).zip(x) {
                        *o = 2.0 * scale * l.exp() * ops::dot_seq(t, v);
                    }
                } else {
                    out.fill(0.0);
                    for (t, v) in rows {
                        out.iter_mut().zip(t).zip(v).for_each(|((o, t), v)| *o += t * v);
                    }
                    out.iter_mut().zip(x).for_each(|(o, l)| *o *= 2.0 * scale * l.exp());
                }
                match out.iter().position(|o| !o.is_finite()) {
                    Some(index) => Err(KernelError::NonFinite { what: "cross product (exp(lambda) overflow)", index }),
                    None => Ok(()),
                }
            }
            _ => {
                let mut ws = lock(&self.ws);
                self.inner.point(y, x, batch, &mut ws)?.cross(v, out)
            }
        }
    }

    /// Unregularized mean cross-entropy and accuracy of Θ = `y` on a split (allocates a K-vector;
    /// a metric, not an oracle). Errors: wrong length or non-finite Θ, no test split.
    pub fn evaluate(&self, split: Split, y: &[f64]) -> Result<Evaluation> {
        let (x, labels) = match split {
            Split::Train => (self.inner.design(), self.inner.labels()),
            Split::Validation => (self.outer.design(), self.outer.labels()),
            Split::Test => match &self.test {
                Some((x, l)) => (x, l.as_slice()),
                None => return Err(invalid("split", "this problem has no test split".into())),
            },
        };
        multinomial_evaluation(x, labels, self.n_classes(), y)
    }
}

/// Mean cross-entropy and accuracy of Θ (row-major d × K) on (x, labels).
pub(crate) fn multinomial_evaluation(x: &Design, labels: &[usize], k: usize, theta: &[f64]) -> Result<Evaluation> {
    bilevel_kernels::error::check_len("theta", x.ncols() * k, theta.len())?;
    bilevel_kernels::error::check_finite("theta", theta)?;
    let n = x.nrows();
    if n == 0 {
        return Err(KernelError::InvalidData { what: "split", reason: "no samples".into() });
    }
    let mut z = vec![0.0; k];
    let (mut loss, mut correct) = (0.0, 0usize);
    for (i, &c) in labels.iter().enumerate() {
        x.row_gemv_t(i, theta, &mut z);
        let (arg, m) = z.iter().enumerate().fold((0, f64::NEG_INFINITY), |a, (j, &v)| if v > a.1 { (j, v) } else { a });
        loss += m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - z[c];
        correct += usize::from(arg == c);
    }
    Ok(Evaluation { loss: loss / n as f64, accuracy: correct as f64 / n as f64 })
}

/// `BilevelProblem` for a problem with checked `try_*` oracles: the trait's oracles cannot
/// return an error, so a violated precondition writes NaN (the `try_*` methods give the typed
/// error). f does not depend on λ, so ∂x f = 0.
macro_rules! bilevel_problem_via_try {
    ($ty:ty, dim_x: |$sx:ident| $dim_x:expr, dim_y: |$sy:ident| $dim_y:expr) => {
        impl BilevelProblem for $ty {
            fn dim_x(&self) -> usize {
                let $sx = self;
                $dim_x
            }
            fn dim_y(&self) -> usize {
                let $sy = self;
                $dim_y
            }
            fn n_samples_f(&self) -> usize {
                self.outer.n_samples()
            }
            fn n_samples_g(&self) -> usize {
                self.inner.n_samples()
            }
            fn f(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
                self.try_f(x, y, batch).unwrap_or(f64::NAN)
            }
            fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
                self.try_g(x, y, batch).unwrap_or(f64::NAN)
            }
            fn grad_x_f(&self, _x: &[f64], _y: &[f64], _batch: Batch<'_>, out: &mut [f64]) {
                out.fill(0.0);
            }
            fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
                nan_on_err(self.try_grad_y_f(x, y, batch, out), out)
            }
            fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
                nan_on_err(self.try_grad_y_g(x, y, batch, out), out)
            }
            fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
                nan_on_err(self.try_hvp(x, y, v, batch, out), out)
            }
            fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
                nan_on_err(self.try_cross(x, y, v, batch, out), out)
            }
        }
    };
}

bilevel_problem_via_try!(MultinomialHpo, dim_x: |p| p.inner.dim_lambda(), dim_y: |p| p.inner.dim_theta());

impl MultinomialHpo {
    /// The data arrays shared by every multinomial generator: `X_{train,val,test}` (dense
    /// `[n, d]` or CSR `_indptr/_indices/_data`) and `y_{train,val,test}`.
    pub(crate) fn data_arrays(&self) -> Vec<Array> {
        let mut out = design_arrays("X_train", self.inner.design());
        out.push(label_array("y_train", self.inner.labels()));
        out.extend(design_arrays("X_val", self.outer.design()));
        out.push(label_array("y_val", self.outer.labels()));
        if let Some((x, labels)) = &self.test {
            out.extend(design_arrays("X_test", x));
            out.push(label_array("y_test", labels));
        }
        out
    }
}

impl Dataset for MultinomialHpo {
    fn generator(&self) -> &'static str {
        self.description.generator
    }
    fn parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        self.description.parameters.clone()
    }
    fn arrays(&self) -> Vec<Array> {
        self.data_arrays()
    }
}

/// The `logreg_text` problem: the text data of `config` ([`crate::text::generate`]) with the
/// papers' per-feature regularizer (1/(K·d)) Σ_j exp(λ_j)‖Θ[j,·]‖²
/// ([`MultiHyper::per_feature_paper`]). x ∈ R^d, y ∈ R^{d·K}.
pub fn text_problem(config: &TextConfig, seed: u64) -> Result<MultinomialHpo> {
    let data = text::generate(config, seed)?;
    let (d, k) = (config.n_features, config.n_classes);
    let hyper = MultiHyper::per_feature_paper(d, k);
    let sparse = |s: text::SparseSplit| (Design::Sparse(s.x), s.labels);
    let mut parameters = config.to_json();
    parameters.insert("seed".into(), seed.into());
    if let MultiHyper::PerFeature { scale } = hyper {
        parameters.insert("reg_scale".into(), scale.into());
    }
    Ok(MultinomialHpo::new(sparse(data.train), sparse(data.val), Some(sparse(data.test)), k, hyper)?
        .with_description(INFO.name, parameters))
}

// ---------------------------------------------------------------------------------------------
// Per-class (covtype form)

/// Parameters of the `logreg_per_class` generator (benchopt's covtype shape). Data: features
/// x ~ N(0, I_d) (standardized, as benchopt standardizes covtype), a random linear teacher
/// W* ∈ R^{d×K} with i.i.d. N(0, signal²/d) entries, and labels drawn from
/// softmax(W*ᵀx) (so the logits have standard deviation ≈ `signal` and the Bayes accuracy is
/// below 1). Dense design; split by position. `Default` = `"covtype"`.
#[derive(Clone, Debug, PartialEq)]
pub struct PerClassConfig {
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
    pub n_features: usize,
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
            _ => Err(invalid(
                "preset",
                format!("unknown per-class preset `{name}` (known: {})", INFO_PER_CLASS.presets.join(", ")),
            )),
        }
    }
    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        check_count("n_train", self.n_train)?;
        check_count("n_val", self.n_val)?;
        check_count("n_features", self.n_features)?;
        if self.n_classes < 2 {
            return Err(invalid("n_classes", format!("need at least 2 classes, got {}", self.n_classes)));
        }
        check_range("signal", self.signal, 0.0, 1e3)?;
        check_range("reg_scale", self.reg_scale, f64::MIN_POSITIVE, 1e12)
    }
    fn to_json(&self, seed: u64) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({
            "n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test,
            "n_features": self.n_features, "n_classes": self.n_classes,
            "signal": self.signal, "reg_scale": self.reg_scale, "seed": seed,
        });
        v.as_object().cloned().unwrap_or_default()
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
    Ok(MultinomialHpo::new(train, val, test, k, hyper)?.with_description(INFO_PER_CLASS.name, config.to_json(seed)))
}

// ---------------------------------------------------------------------------------------------
// Binary (IJCNN1 form)

/// Parameters of the `logreg_binary` generator (benchopt's IJCNN1 shape). Data: a random
/// linear teacher w* supported on `n_informative` random features (i.i.d. N(0, 1) entries
/// rescaled to ‖w*‖ = `signal`), features x_j ~ N(0, 1) — each stored with probability
/// `density` and then scaled by 1/√density so E(x_j²) = 1 (density 1: a dense design, else
/// CSR) — and labels b = +1 with probability σ(w*ᵀx), else −1 (logistic label noise; the
/// features outside the support are pure noise, which per-feature regularization should
/// learn to suppress). Split by position. `Default` = `"ijcnn1"`.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryConfig {
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
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
            _ => Err(invalid(
                "preset",
                format!("unknown binary preset `{name}` (known: {})", INFO_BINARY.presets.join(", ")),
            )),
        }
    }
    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        check_count("n_train", self.n_train)?;
        check_count("n_val", self.n_val)?;
        check_count("n_features", self.n_features)?;
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
    fn to_json(&self, seed: u64) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({
            "n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test,
            "n_features": self.n_features, "n_informative": self.n_informative,
            "density": self.density, "signal": self.signal, "reg_scale": self.reg_scale, "seed": seed,
        });
        v.as_object().cloned().unwrap_or_default()
    }
}

/// Binary logistic-regression HPO with one hyper-parameter per feature: inner
/// [`BinHyper::PerFeature`] on the training set, outer plain log-loss on the validation set.
/// y = θ ∈ R^d, x = λ ∈ R^d, labels ±1.
pub struct BinaryHpo {
    inner: LogisticModel,
    outer: LogisticModel,
    test: Option<(Design, Vec<f64>)>,
    /// (inner, outer) workspaces: tiny (BLOCKS·d + 5·capacity values each).
    ws: Mutex<(LogisticWorkspace, LogisticWorkspace)>,
    description: Description,
}

impl std::fmt::Debug for BinaryHpo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryHpo")
            .field("generator", &self.description.generator)
            .field("n_train", &self.inner.n_samples())
            .field("n_val", &self.outer.n_samples())
            .field("n_features", &self.inner.dim())
            .finish()
    }
}

impl BinaryHpo {
    /// From data with ±1 labels and the regularizer constant (½·scale·Σ exp(λ_j)θ_j²).
    /// Errors: mismatched feature counts, labels not ±1, invalid scale.
    pub fn new(
        train: (Design, Vec<f64>),
        val: (Design, Vec<f64>),
        test: Option<(Design, Vec<f64>)>,
        scale: f64,
    ) -> Result<Self> {
        let d = train.0.ncols();
        bilevel_kernels::error::check_len("validation features", d, val.0.ncols())?;
        let inner = LogisticModel::new(train.0, train.1, BinHyper::PerFeature { scale })?;
        let outer = LogisticModel::new(val.0, val.1, BinHyper::None)?;
        if let Some((x, labels)) = &test {
            bilevel_kernels::error::check_len("test features", d, x.ncols())?;
            bilevel_kernels::error::check_len("test labels", x.nrows(), labels.len())?;
            if let Some(i) = labels.iter().position(|&b| b != 1.0 && b != -1.0) {
                return Err(KernelError::InvalidData {
                    what: "test labels",
                    reason: format!("label {i} is {}, expected -1 or +1", labels[i]),
                });
            }
        }
        let capacity = inner.n_samples().max(outer.n_samples());
        let ws = Mutex::new((
            LogisticWorkspace::with_capacity(&inner, capacity),
            LogisticWorkspace::with_capacity(&outer, capacity),
        ));
        Ok(Self { inner, outer, test, ws, description: Description::default() })
    }

    /// Sets the generator name and parameters reported by [`Dataset`].
    pub fn with_description(
        mut self,
        generator: &'static str,
        parameters: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        self.description = Description { generator, parameters };
        self
    }

    /// Resizes the workspaces for batches of up to `capacity` positions (default
    /// max(n_train, n_val)).
    pub fn with_batch_capacity(self, capacity: usize) -> Self {
        *lock(&self.ws) = (
            LogisticWorkspace::with_capacity(&self.inner, capacity),
            LogisticWorkspace::with_capacity(&self.outer, capacity),
        );
        self
    }

    /// The inner (training) model.
    pub fn inner_model(&self) -> &LogisticModel {
        &self.inner
    }
    /// The outer (validation) model.
    pub fn outer_model(&self) -> &LogisticModel {
        &self.outer
    }
    /// The regularizer's constant.
    pub fn reg_scale(&self) -> f64 {
        match self.inner.hyper() {
            BinHyper::PerFeature { scale } => scale,
            _ => f64::NAN,
        }
    }

    /// f(λ, θ).
    pub fn try_f(&self, _x: &[f64], y: &[f64], batch: Batch<'_>) -> Result<f64> {
        let mut ws = lock(&self.ws);
        Ok(self.outer.point(y, &[], batch, &mut ws.1)?.value())
    }
    /// g(λ, θ).
    pub fn try_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> Result<f64> {
        let mut ws = lock(&self.ws);
        Ok(self.inner.point(y, x, batch, &mut ws.0)?.value())
    }
    /// ∂θ f.
    pub fn try_grad_y_f(&self, _x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let mut ws = lock(&self.ws);
        self.outer.point_with_grad(y, &[], batch, &mut ws.1, out).map(|_| ())
    }
    /// ∂θ g.
    pub fn try_grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let mut ws = lock(&self.ws);
        self.inner.point_with_grad(y, x, batch, &mut ws.0, out).map(|_| ())
    }
    /// ∂θθ g · v.
    pub fn try_hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let mut ws = lock(&self.ws);
        self.inner.point(y, x, batch, &mut ws.0)?.hvp(v, out)
    }
    /// ∂λ∂θ g · v = scale·e^{λ_j} θ_j v_j: independent of the batch, no data sweep.
    pub fn try_cross(&self, x: &[f64], y: &[f64], v: &[f64], _batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        use bilevel_kernels::error::{check_finite, check_len};
        let d = self.inner.dim();
        for (what, len) in [("lambda", x.len()), ("theta", y.len()), ("v", v.len()), ("cross out", out.len())] {
            check_len(what, d, len)?;
        }
        check_finite("lambda", x)?;
        check_finite("theta", y)?;
        check_finite("v", v)?;
        let scale = self.reg_scale();
        for (((o, l), t), v) in out.iter_mut().zip(x).zip(y).zip(v) {
            *o = scale * l.exp() * t * v;
        }
        match out.iter().position(|o| !o.is_finite()) {
            Some(index) => Err(KernelError::NonFinite { what: "cross product (exp(lambda) overflow)", index }),
            None => Ok(()),
        }
    }

    /// Unregularized mean log-loss and accuracy (sign of the margin; a zero margin counts as
    /// +1) of θ = `y` on a split. Errors: wrong length or non-finite θ, no test split.
    pub fn evaluate(&self, split: Split, y: &[f64]) -> Result<Evaluation> {
        let (x, labels) = match split {
            Split::Train => (self.inner.design(), self.inner.labels()),
            Split::Validation => (self.outer.design(), self.outer.labels()),
            Split::Test => match &self.test {
                Some((x, l)) => (x, l.as_slice()),
                None => return Err(invalid("split", "this problem has no test split".into())),
            },
        };
        bilevel_kernels::error::check_len("theta", x.ncols(), y.len())?;
        bilevel_kernels::error::check_finite("theta", y)?;
        if labels.is_empty() {
            return Err(KernelError::InvalidData { what: "split", reason: "no samples".into() });
        }
        let (mut loss, mut correct) = (0.0, 0usize);
        for (i, &b) in labels.iter().enumerate() {
            let z = x.row_dot(i, y);
            let m = b * z;
            loss += (-m).max(0.0) + (-m.abs()).exp().ln_1p();
            correct += usize::from((z >= 0.0) == (b > 0.0));
        }
        let n = labels.len() as f64;
        Ok(Evaluation { loss: loss / n, accuracy: correct as f64 / n })
    }
}

bilevel_problem_via_try!(BinaryHpo, dim_x: |p| p.inner.dim(), dim_y: |p| p.inner.dim());

impl Dataset for BinaryHpo {
    fn generator(&self) -> &'static str {
        self.description.generator
    }
    fn parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        self.description.parameters.clone()
    }
    /// `X_{train,val,test}` (dense or CSR) and `y_{train,val,test}` (±1 as f64).
    fn arrays(&self) -> Vec<Array> {
        let labels = |name: &str, l: &[f64]| Array::f64(name, vec![l.len()], l.to_vec());
        let mut out = design_arrays("X_train", self.inner.design());
        out.push(labels("y_train", self.inner.labels()));
        out.extend(design_arrays("X_val", self.outer.design()));
        out.push(labels("y_val", self.outer.labels()));
        if let Some((x, l)) = &self.test {
            out.extend(design_arrays("X_test", x));
            out.push(labels("y_test", l));
        }
        out
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
    Ok(BinaryHpo::new(train, val, test, config.reg_scale)?.with_description(INFO_BINARY.name, config.to_json(seed)))
}

// ---------------------------------------------------------------------------------------------
// High-accuracy references

/// Parameters of [`newton_y_star`] / [`reference_at`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewtonParams {
    /// Stop when ‖∂y g(x, y)‖ ≤ `grad_tol` (full batch). Default 1e-10.
    pub grad_tol: f64,
    /// Most Newton steps. Default 100.
    pub max_iters: usize,
    /// Most CG iterations per Newton step and for v*. Default 10,000.
    pub max_cg_iters: usize,
    /// Relative residual of the CG solve for v*. Default 1e-12.
    pub v_rel_tol: f64,
}

impl Default for NewtonParams {
    fn default() -> Self {
        Self { grad_tol: 1e-10, max_iters: 100, max_cg_iters: 10_000, v_rel_tol: 1e-12 }
    }
}

impl NewtonParams {
    /// Sets [`grad_tol`](Self::grad_tol).
    pub fn with_grad_tol(mut self, grad_tol: f64) -> Self {
        self.grad_tol = grad_tol;
        self
    }
    /// Sets [`max_iters`](Self::max_iters).
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.max_iters = max_iters;
        self
    }
}

/// What [`newton_y_star`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct NewtonReport {
    /// Newton steps taken.
    pub iterations: usize,
    /// CG iterations (HVPs) over all steps.
    pub cg_iterations: usize,
    /// ‖∂y g(x, y)‖ at the returned y.
    pub grad_norm: f64,
    /// Whether `grad_norm ≤ grad_tol`.
    pub converged: bool,
}

/// Minimizes y ↦ g(x, y) (full batch) from the warm start in `y` by inexact Newton: each step
/// solves ∂yy g·d = ∂y g by CG (the kernels' [`Cg`](bilevel_kernels::linsolve::Cg), relative tolerance
/// min(0.1, ‖∂y g‖), the usual forcing term for superlinear convergence) and backtracks
/// (Armijo, c = 1e-4). Near the optimum, where g's decrease falls below its rounding, a step
/// is also accepted when g does not grow beyond rounding and the gradient norm decreases.
/// Allocates (a reference computation, not an oracle). Errors: CG failures (a non-positive
/// curvature, divergence), non-finite values, wrong lengths.
pub fn newton_y_star<P: BilevelProblem + ?Sized>(
    p: &P,
    x: &[f64],
    y: &mut [f64],
    params: &NewtonParams,
) -> Result<NewtonReport> {
    use bilevel_kernels::error::{check_finite, check_len};
    let dy = p.dim_y();
    check_len("x", p.dim_x(), x.len())?;
    check_len("y", dy, y.len())?;
    check_finite("x", x)?;
    check_finite("y", y)?;
    let (mut grad, mut step, mut trial, mut trial_grad) = (vec![0.0; dy], vec![0.0; dy], vec![0.0; dy], vec![0.0; dy]);
    let nonfinite = |what| KernelError::NonFinite { what, index: 0 };
    let mut value = p.g(x, y, Batch::Full);
    p.grad_y_g(x, y, Batch::Full, &mut grad);
    let mut grad_norm = ops::norm2(&grad);
    if !(value.is_finite() && grad_norm.is_finite()) {
        return Err(nonfinite("g or its gradient at the warm start"));
    }
    let mut report =
        NewtonReport { iterations: 0, cg_iterations: 0, grad_norm, converged: grad_norm <= params.grad_tol };
    while !report.converged && report.iterations < params.max_iters {
        let yy: &[f64] = y;
        let hess = FnOp::symmetric(dy, |v: &[f64], out: &mut [f64]| p.hvp(x, yy, v, Batch::Full, out));
        step.fill(0.0);
        let mut cg =
            Cg::new(dy, Stopping::default().with_rel_tol(grad_norm.min(0.1)).with_max_iters(params.max_cg_iters));
        report.cg_iterations += cg.solve(&hess, &grad, &mut step)?.iterations;
        let slope = ops::dot(&grad, &step); // g decreases along −step at rate `slope` > 0
        let mut t = 1.0;
        loop {
            trial.copy_from_slice(y);
            ops::axpy(-t, &step, &mut trial);
            let trial_value = p.g(x, &trial, Batch::Full);
            p.grad_y_g(x, &trial, Batch::Full, &mut trial_grad);
            let trial_norm = ops::norm2(&trial_grad);
            let armijo = trial_value <= value - 1e-4 * t * slope;
            let flat = trial_value <= value + 1e-14 * value.abs().max(1.0) && trial_norm < grad_norm;
            if trial_value.is_finite() && trial_norm.is_finite() && (armijo || flat) {
                y.copy_from_slice(&trial);
                grad.copy_from_slice(&trial_grad);
                (value, grad_norm) = (trial_value, trial_norm);
                break;
            }
            t *= 0.5;
            if t < 1e-12 {
                report.grad_norm = grad_norm;
                return Ok(report); // no further progress possible in floating point
            }
        }
        report.iterations += 1;
        report.grad_norm = grad_norm;
        report.converged = grad_norm <= params.grad_tol;
    }
    Ok(report)
}

/// A high-accuracy reference at one x: y*(x), v*(x), L(x) and ∇L(x).
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub y_star: Vec<f64>,
    /// v* = [∂yy g(x, y*)]⁻¹ ∂y f(x, y*).
    pub v_star: Vec<f64>,
    /// L(x) = f(x, y*) on the full validation set.
    pub value: f64,
    /// ∇L(x) = ∂x f − ∂x∂y g · v*.
    pub hypergradient: Vec<f64>,
    /// How the Newton solve for y* went.
    pub newton: NewtonReport,
    /// CG iterations of the v* solve.
    pub v_cg_iterations: usize,
}

/// Computes [`Reference`] at x from the warm start `y0` (zeros if `None`), all oracles on the
/// full batch: y* by [`newton_y_star`], v* by CG to `v_rel_tol`, then L and ∇L. Errors: those of
/// the solves, and a Newton solve that did not reach `grad_tol` (`Diverged`, with the
/// gradient norm reached as the residual).
pub fn reference_at<P: BilevelProblem + ?Sized>(
    p: &P,
    x: &[f64],
    y0: Option<&[f64]>,
    params: &NewtonParams,
) -> Result<Reference> {
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let mut y = match y0 {
        Some(y0) => {
            bilevel_kernels::error::check_len("y0", dy, y0.len())?;
            y0.to_vec()
        }
        None => vec![0.0; dy],
    };
    let newton = newton_y_star(p, x, &mut y, params)?;
    if !newton.converged {
        return Err(KernelError::Diverged { iteration: newton.iterations, residual: newton.grad_norm });
    }
    let mut b = vec![0.0; dy];
    p.grad_y_f(x, &y, Batch::Full, &mut b);
    let mut v = vec![0.0; dy];
    let yy: &[f64] = &y;
    let hess = FnOp::symmetric(dy, |u: &[f64], out: &mut [f64]| p.hvp(x, yy, u, Batch::Full, out));
    let mut cg = Cg::new(dy, Stopping::default().with_rel_tol(params.v_rel_tol).with_max_iters(params.max_cg_iters));
    let v_cg_iterations = cg.solve(&hess, &b, &mut v)?.iterations;
    let mut hypergradient = vec![0.0; dx];
    let mut cross = vec![0.0; dx];
    p.grad_x_f(x, &y, Batch::Full, &mut hypergradient);
    p.cross(x, &y, &v, Batch::Full, &mut cross);
    ops::axpy(-1.0, &cross, &mut hypergradient);
    let value = p.f(x, &y, Batch::Full);
    if !value.is_finite() || hypergradient.iter().any(|g| !g.is_finite()) {
        return Err(KernelError::NonFinite { what: "reference value or hypergradient", index: 0 });
    }
    Ok(Reference { y_star: y, v_star: v, value, hypergradient, newton, v_cg_iterations })
}
