//! [`BinaryHpo`]: binary logistic-regression HPO with one hyper-parameter per feature (the
//! `logreg_binary` problem), its oracles, metrics and export.

use super::{design_arrays, invalid, lock, logistic_hpo_problem, Description, Evaluation, Split};
use crate::dataset::{Array, Dataset};
use bilevel_kernels::models::logistic::{Hyper as BinHyper, LogisticModel, LogisticWorkspace};
use bilevel_kernels::models::Design;
use bilevel_kernels::{Batch, KernelError, Result};
use std::sync::Mutex;

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

    // The kernels' sweeps behind the oracles (see `logistic_hpo_problem!` for the error policy).
    fn value_f(&self, y: &[f64], batch: Batch<'_>) -> Result<f64> {
        Ok(self.outer.point(y, &[], batch, &mut lock(&self.ws).1)?.value())
    }
    fn value_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> Result<f64> {
        Ok(self.inner.point(y, x, batch, &mut lock(&self.ws).0)?.value())
    }
    fn grad_f(&self, y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.outer.point_with_grad(y, &[], batch, &mut lock(&self.ws).1, out).map(|_| ())
    }
    fn grad_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.inner.point_with_grad(y, x, batch, &mut lock(&self.ws).0, out).map(|_| ())
    }
    fn hvp_g(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.inner.point(y, x, batch, &mut lock(&self.ws).0)?.hvp(v, out)
    }
    /// ∂λ∂θ g · v = scale·e^{λ_j} θ_j v_j: independent of the batch, no data sweep (an overflow
    /// of e^λ gives ∞ for the driver to see).
    fn cross_g(&self, x: &[f64], y: &[f64], v: &[f64], _batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        let scale = self.reg_scale();
        for (((o, l), t), v) in out.iter_mut().zip(x).zip(y).zip(v) {
            *o = scale * l.exp() * t * v;
        }
        Ok(())
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

logistic_hpo_problem!(BinaryHpo, dim_x: |p| p.inner.dim(), dim_y: |p| p.inner.dim());

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
