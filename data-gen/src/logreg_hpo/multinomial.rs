//! [`MultinomialHpo`]: multinomial logistic-regression HPO (the `logreg_text`,
//! `logreg_per_class` and `hyperclean` problems), its oracles, metrics and export.

use super::bounds::{exp_range, DesignBounds};
use super::splits::Splits;
use super::{invalid, lock, logistic_hpo_problem, Evaluation, Split};
use bilevel_kernels::models::multinomial::{Hyper as MultiHyper, MultinomialLogistic, MultinomialWorkspace};
use bilevel_kernels::models::Design;
use bilevel_kernels::{ops, Batch, KernelError, ProblemConstants, Result};
use std::sync::Mutex;

/// Multinomial logistic-regression HPO: inner model on the training set with a hyper-parameter
/// form ([`MultiHyper::PerFeature`], [`MultiHyper::PerClass`] or [`MultiHyper::SampleWeights`]),
/// outer plain cross-entropy on the validation set, an optional held-out test set.
/// y = Θ ∈ R^{d×K}, row-major (row j = the K class weights of feature j).
pub struct MultinomialHpo {
    splits: Splits<MultinomialLogistic>,
    /// One workspace for both models (same d and K; the calls serialize anyway). For 20
    /// Newsgroups its block accumulators are 4·d·K values (≈ 65 MB), so one, not two.
    ws: Mutex<MultinomialWorkspace>,
    /// The training design's bounds ([`DesignBounds`]), for the λ-dependent forms (per feature,
    /// per class) whose constants are reported at x; `None` for per-sample weights.
    bounds: Option<DesignBounds>,
}

impl std::fmt::Debug for MultinomialHpo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.splits
            .debug_struct(f, "MultinomialHpo")
            .field("n_classes", &self.n_classes())
            .field("hyper", &self.splits.inner.hyper())
            .finish()
    }
}

impl MultinomialHpo {
    /// From data: training (design, labels), validation (design, labels), an optional test
    /// split, K classes and the inner hyper-parameter form. Errors: mismatched feature counts,
    /// labels out of range or of the wrong length, [`MultiHyper::Plain`] (no hyper-parameter),
    /// invalid constants. [`Dataset`](crate::Dataset) reports an empty generator name and no
    /// parameters until [`with_description`](Self::with_description) sets them.
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
        let splits = Splits::new(
            train,
            val,
            test,
            |i, c| (c >= n_classes).then(|| format!("label {c} of sample {i} is not below n_classes = {n_classes}")),
            |x, labels| MultinomialLogistic::new(x, labels, n_classes, hyper),
            |x, labels| MultinomialLogistic::new(x, labels, n_classes, MultiHyper::Plain),
        )?;
        let ws = Mutex::new(splits.inner.workspace(splits.capacity()));
        let bounds = matches!(hyper, MultiHyper::PerFeature { .. } | MultiHyper::PerClass { .. })
            .then(|| DesignBounds::of(splits.inner.design()));
        Ok(Self { splits, ws, bounds })
    }

    /// The lower-level constants at x = λ (`BilevelProblem::constants_at`), for the per-feature
    /// and per-class forms. A sample's cross-entropy Hessian is (a_i a_iᵀ) ⊗ (diag(s) − ssᵀ)
    /// with λ_max(diag(s) − ssᵀ) ≤ ½ (for a unit u, uᵀ(diag(s) − ssᵀ)u is the variance of u's
    /// entries under s, at most (max u − min u)²/4 ≤ ½ by Popoviciu), so with B the batch:
    /// - full batch: 0 ⪯ (1/n) Σ_i (a_i a_iᵀ) ⊗ H_i ⪯ ½·(XᵀX/n) ⊗ I, and the regularizer
    ///   scale·Σ exp(λ_j)‖Θ_j‖² (rows j, or columns c per class) has the diagonal Hessian
    ///   2·scale·exp(λ_j): µ_g = 2·scale·min_j e^{λ_j}, L_g = G/(2n) + 2·scale·max_j e^{λ_j}
    ///   with G ≥ λ_max(XᵀX) computed once (`bounds.rs`);
    /// - one sample (CE_i + R, the regularizer is added once per batch): µ = 2·scale·min e^λ,
    ///   L = max_i ‖a_i‖²/2 + 2·scale·max e^λ.
    ///
    /// At Θ = 0 (s uniform, H_i = I/K − 11ᵀ/K²) the data part is (XᵀX/n) ⊗ H_0 with λ_max
    /// λ_max(XᵀX)/(nK): the bound is loose by at most K/2 there (tight where the
    /// regularizer dominates). O(dim λ), no data pass. `None` for per-sample weights (their
    /// bounds do not depend on x; [`crate::hyperclean`] reports them).
    pub fn lower_constants_at(&self, x: &[f64]) -> Option<ProblemConstants> {
        let (MultiHyper::PerFeature { scale } | MultiHyper::PerClass { scale }) = self.splits.inner.hyper() else {
            return None;
        };
        let (lo, hi) = exp_range(x);
        Some(self.bounds?.constants(0.5, 2.0 * scale * lo, 2.0 * scale * hi))
    }

    /// Resizes the workspace for batches of up to `capacity` positions (repeats count); the
    /// default is max(n_train, n_val). Allocates once, here.
    pub fn with_batch_capacity(self, capacity: usize) -> Self {
        *lock(&self.ws) = self.splits.inner.workspace(capacity);
        self
    }

    /// The test split, if any.
    pub fn test_split(&self) -> Option<(&Design, &[usize])> {
        self.splits.test.as_ref().map(|(x, l)| (x, l.as_slice()))
    }
    /// d.
    pub fn n_features(&self) -> usize {
        self.splits.inner.n_features()
    }
    /// K.
    pub fn n_classes(&self) -> usize {
        self.splits.inner.n_classes()
    }

    /// The workspace, grown first if `batch` is larger than its capacity (a batch drawn with
    /// replacement may exceed the samples: one allocation, then the workspace fits).
    fn ws_for(&self, batch: Batch<'_>) -> std::sync::MutexGuard<'_, MultinomialWorkspace> {
        let mut ws = lock(&self.ws);
        if let Batch::Rows(rows) = batch {
            if rows.len() > ws.capacity() {
                *ws = self.splits.inner.workspace(rows.len().next_power_of_two());
            }
        }
        ws
    }

    // The kernels' sweeps behind the oracles (see `logistic_hpo_problem!` for the error policy).
    fn value_f(&self, y: &[f64], batch: Batch<'_>) -> Result<f64> {
        Ok(self.splits.outer.point(y, &[], batch, &mut self.ws_for(batch))?.value())
    }
    fn value_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> Result<f64> {
        Ok(self.splits.inner.point(y, x, batch, &mut self.ws_for(batch))?.value())
    }
    fn grad_f(&self, y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.splits.outer.point_with_grad(y, &[], batch, &mut self.ws_for(batch), out).map(|_| ())
    }
    fn grad_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.splits.inner.point_with_grad(y, x, batch, &mut self.ws_for(batch), out).map(|_| ())
    }
    fn hvp_g(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.splits.inner.point(y, x, batch, &mut self.ws_for(batch))?.hvp(v, out)
    }
    /// ∂λ∂Θ g · v. Per feature: `2·scale·e^{λ_j}⟨Θ[j,·], V[j,·]⟩`; per class:
    /// `2·scale·e^{λ_c}⟨Θ[·,c], V[·,c]⟩` — both independent of the batch and computed without a
    /// data sweep (an overflow of e^λ gives ∞ for the driver to see); per-sample weights: the
    /// kernels' one-sweep cross product.
    fn cross_g(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let k = self.n_classes();
        match self.splits.inner.hyper() {
            MultiHyper::PerFeature { scale } => {
                for ((o, (t, v)), l) in out.iter_mut().zip(y.chunks_exact(k).zip(v.chunks_exact(k))).zip(x) {
                    *o = 2.0 * scale * l.exp() * ops::dot_seq(t, v);
                }
                Ok(())
            }
            MultiHyper::PerClass { scale } => {
                out.fill(0.0);
                for (t, v) in y.chunks_exact(k).zip(v.chunks_exact(k)) {
                    out.iter_mut().zip(t).zip(v).for_each(|((o, t), v)| *o += t * v);
                }
                out.iter_mut().zip(x).for_each(|(o, l)| *o *= 2.0 * scale * l.exp());
                Ok(())
            }
            _ => self.splits.inner.point(y, x, batch, &mut self.ws_for(batch))?.cross(v, out),
        }
    }

    /// Unregularized mean cross-entropy and accuracy of Θ = `y` on a split (allocates a K-vector;
    /// a metric, not an oracle). Errors: wrong length or non-finite Θ, no test split.
    pub fn evaluate(&self, split: Split, y: &[f64]) -> Result<Evaluation> {
        let (x, labels) = self.splits.get(split)?;
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

logistic_hpo_problem!(
    MultinomialHpo,
    model: MultinomialLogistic,
    dim_x: |p| p.splits.inner.dim_lambda(),
    dim_y: |p| p.splits.inner.dim_theta()
);
