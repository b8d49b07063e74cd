//! [`BinaryHpo`]: binary logistic-regression HPO with one hyper-parameter per feature (the
//! `logreg_binary` problem), its oracles, metrics and export.

use super::bounds::{exp_range, DesignBounds};
use super::splits::Splits;
use super::{lock, logistic_hpo_problem, Evaluation, Split};
use bilevel_kernels::models::logistic::{Hyper as BinHyper, LogisticModel, LogisticWorkspace};
use bilevel_kernels::models::Design;
use bilevel_kernels::{Batch, KernelError, ProblemConstants, Result};
use std::sync::Mutex;

/// Binary logistic-regression HPO with one hyper-parameter per feature: inner
/// [`BinHyper::PerFeature`] on the training set, outer plain log-loss on the validation set.
/// y = θ ∈ R^d, x = λ ∈ R^d, labels ±1.
pub struct BinaryHpo {
    splits: Splits<LogisticModel>,
    /// (inner, outer) workspaces: tiny (BLOCKS·d + 5·capacity values each).
    ws: Mutex<(LogisticWorkspace, LogisticWorkspace)>,
    /// The training design's bounds ([`DesignBounds`]).
    bounds: DesignBounds,
}

impl std::fmt::Debug for BinaryHpo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.splits.debug_struct(f, "BinaryHpo").finish()
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
        let splits = Splits::new(
            train,
            val,
            test,
            |i, b| (b != 1.0 && b != -1.0).then(|| format!("label {i} is {b}, expected -1 or +1")),
            |x, labels| LogisticModel::new(x, labels, BinHyper::PerFeature { scale }),
            |x, labels| LogisticModel::new(x, labels, BinHyper::None),
        )?;
        let ws = Mutex::new(workspaces(&splits, splits.capacity()));
        let bounds = DesignBounds::of(splits.inner.design());
        Ok(Self { splits, ws, bounds })
    }

    /// The lower-level constants at x = λ (`BilevelProblem::constants_at`). A sample's log-loss
    /// Hessian is σ(z)σ(−z)·a_i a_iᵀ with σ(z)σ(−z) ≤ ¼ (equality at z = 0), and the
    /// regularizer ½·scale·Σ_j exp(λ_j) θ_j² has the diagonal Hessian scale·exp(λ_j), so:
    /// - full batch: 0 ⪯ data part ⪯ XᵀX/(4n): µ_g = scale·min_j e^{λ_j},
    ///   L_g = G/(4n) + scale·max_j e^{λ_j} with G ≥ λ_max(XᵀX) computed once
    ///   (`bounds.rs`);
    /// - one sample (ℓ_i + R, the regularizer is added once per batch): µ = scale·min e^λ,
    ///   L = max_i ‖a_i‖²/4 + scale·max e^λ.
    ///
    /// At θ = 0 every σ(z)σ(−z) is ¼: the data part of the bound is attained there (up to the
    /// slack of G, none on the dense-Gram route). O(dim λ), no data pass.
    pub fn lower_constants_at(&self, x: &[f64]) -> Option<ProblemConstants> {
        let scale = self.reg_scale();
        let (lo, hi) = exp_range(x);
        Some(self.bounds.constants(0.25, scale * lo, scale * hi))
    }

    /// Resizes the workspaces for batches of up to `capacity` positions (default
    /// max(n_train, n_val)).
    pub fn with_batch_capacity(self, capacity: usize) -> Self {
        *lock(&self.ws) = workspaces(&self.splits, capacity);
        self
    }

    /// The regularizer's constant.
    pub fn reg_scale(&self) -> f64 {
        match self.splits.inner.hyper() {
            BinHyper::PerFeature { scale } => scale,
            _ => f64::NAN,
        }
    }

    /// The workspaces, grown first if `batch` is larger than their capacity (a batch drawn with
    /// replacement may exceed the samples: one allocation, then they fit).
    fn ws_for(&self, batch: Batch<'_>) -> std::sync::MutexGuard<'_, (LogisticWorkspace, LogisticWorkspace)> {
        let mut ws = lock(&self.ws);
        if let Batch::Rows(rows) = batch {
            if rows.len() > ws.0.capacity().min(ws.1.capacity()) {
                *ws = workspaces(&self.splits, rows.len().next_power_of_two());
            }
        }
        ws
    }

    // The kernels' sweeps behind the oracles (see `logistic_hpo_problem!` for the error policy).
    fn value_f(&self, y: &[f64], batch: Batch<'_>) -> Result<f64> {
        Ok(self.splits.outer.point(y, &[], batch, &mut self.ws_for(batch).1)?.value())
    }
    fn value_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> Result<f64> {
        Ok(self.splits.inner.point(y, x, batch, &mut self.ws_for(batch).0)?.value())
    }
    fn grad_f(&self, y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.splits.outer.point_with_grad(y, &[], batch, &mut self.ws_for(batch).1, out).map(|_| ())
    }
    fn grad_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.splits.inner.point_with_grad(y, x, batch, &mut self.ws_for(batch).0, out).map(|_| ())
    }
    fn hvp_g(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) -> Result<()> {
        self.splits.inner.point(y, x, batch, &mut self.ws_for(batch).0)?.hvp(v, out)
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
        let (x, labels) = self.splits.get(split)?;
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

logistic_hpo_problem!(BinaryHpo, model: LogisticModel, dim_x: |p| p.splits.inner.dim(), dim_y: |p| p.splits.inner.dim());

/// The (inner, outer) workspaces for batches of up to `capacity` positions.
fn workspaces(splits: &Splits<LogisticModel>, capacity: usize) -> (LogisticWorkspace, LogisticWorkspace) {
    (
        LogisticWorkspace::with_capacity(&splits.inner, capacity),
        LogisticWorkspace::with_capacity(&splits.outer, capacity),
    )
}
