//! Binary logistic regression over a [`Design`] (dense or CSR), with the hyper-parameter forms
//! of the papers, and its derivatives in the inner variable θ ∈ R^d and the hyper-parameter λ.
//!
//! With labels b_i ∈ {−1, +1}, margins z_i = x_iᵀθ, the per-sample loss
//! ℓ_i = log(1 + exp(−b_i z_i)) and a batch B of rows (repeats count as often as they appear):
//!
//! | [`Hyper`] | objective | λ |
//! |---|---|---|
//! | `None` | (1/\|B\|) Σ_B ℓ_i (the validation objective f) | none |
//! | `PerFeature { scale }` | (1/\|B\|) Σ_B ℓ_i + ½·scale·Σ_j exp(λ_j) θ_j² | R^d |
//! | `PerSample { ridge }` | (1/\|B\|) Σ_B σ(λ_i) ℓ_i + ridge·‖θ‖² | R^n |
//!
//! Per-feature: Arbel & Mairal (AmIGO, ICLR 2022) App. F.2 and Ji, Yang & Liang (stocBiO) §4.2
//! write the regularizer (1/(p d)) Σ_j exp(λ_j) θ_j², which for p = 1 class is `scale = 2/d`
//! ([`Hyper::per_feature_paper`]); benchopt's IJCNN1 problem (benchmark_bilevel
//! `datasets/ijcnn1.py`) uses ½ Σ_j exp(λ_j) θ_j², i.e. `scale = 1`
//! ([`Hyper::per_feature_benchopt`]). Both are the same family; `scale` only shifts λ by
//! log(scale), so it is a parameter, not a hard-coded constant.
//! Per-sample: data hyper-cleaning of Ji et al. (stocBiO) §4.2(b) and Khanduri et al.
//! (SUSTAIN) eq. (3), with ridge c = 0.001 ([`Hyper::hyper_cleaning`]; benchopt's MNIST
//! cleaning uses 0.2).
//!
//! Derivatives, with ℓ'_i = −b_i σ(−b_i z_i), D_i = w_i σ(b_i z_i) σ(−b_i z_i), w_i the sample
//! weight (σ(λ_i) or 1) and R the regularizer:
//! ∂θ = (1/|B|) Σ w_i ℓ'_i x_i + ∇R,  ∂θθ·v = (1/|B|) Σ D_i (x_iᵀv) x_i + ∇²R·v,
//! ∂λ and the cross product ∂λ∂θ·v (a vector of λ's size) are given per form on [`Point`].
//!
//! Passes over the data: [`LogisticModel::point`] reads each batch row once to compute the
//! margins and stores per batch position ℓ_i, ℓ'_i, D_i and w_i in the [`LogisticWorkspace`];
//! [`LogisticModel::point_with_grad`] does the same sweep and also scatters the gradient, so
//! value and gradient cost one read of the rows. Each HVP reads each row once (s_i = x_iᵀv,
//! then out += D_i s_i x_i while the row is in cache), never two separate sparse products.
//! The log-loss uses e = exp(−|m|) only (no overflow for |z| = 1e3).
//!
//! Parallelism: when the batch holds at least [`LogisticModel::par_min_nnz`] stored entries
//! (default [`PAR_MIN_NNZ`]) and at least [`BLOCKS`]·d, the batch positions are cut into
//! [`BLOCKS`] fixed blocks ([`row_blocks`](crate::par::row_blocks)), each accumulating into its own buffer, summed
//! in block order: the same bits with any number of threads. Below, one sequential pass.

use crate::error::{check_finite, check_len, KernelError, Result};
use crate::models::blocked::{for_each_block, RowsAndAccumulator};
use crate::models::design::{batch_row, Design};
use crate::ops;
use crate::par::Split;
use crate::problem::Batch;
use std::ops::Range;

/// Fixed number of row blocks of the parallel passes (independent of the thread count).
pub const BLOCKS: usize = 16;
/// Default batch size, in stored entries, from which the passes run in parallel.
pub const PAR_MIN_NNZ: usize = 100_000;

/// The hyper-parameter form (see the module doc for the exact objectives).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hyper {
    /// Plain mean log-loss; λ is empty.
    None,
    /// ½·scale·Σ_j exp(λ_j) θ_j², λ ∈ R^d.
    PerFeature {
        /// The constant in front of the sum.
        scale: f64,
    },
    /// Sample weights σ(λ_i) and ridge·‖θ‖², λ ∈ R^n.
    PerSample {
        /// The ridge constant.
        ridge: f64,
    },
}

impl Hyper {
    /// benchopt's IJCNN1 regularizer ½ Σ_j exp(λ_j) θ_j² (scale = 1).
    pub fn per_feature_benchopt() -> Self {
        Hyper::PerFeature { scale: 1.0 }
    }
    /// The papers' (1/d) Σ_j exp(λ_j) θ_j² (AmIGO F.2, stocBiO §4.2 with one class): scale = 2/d.
    pub fn per_feature_paper(d: usize) -> Self {
        Hyper::PerFeature { scale: 2.0 / d.max(1) as f64 }
    }
    /// Data hyper-cleaning with the papers' ridge c = 0.001 (stocBiO, SUSTAIN).
    pub fn hyper_cleaning() -> Self {
        Hyper::PerSample { ridge: 1e-3 }
    }
}

/// Rows per group of the sparse HVP (dots of the group, then its updates).
const HVP_GROUP: usize = 64;
/// Up to this many features v and out stay in L1/L2 and the HVP goes row by row (groups of 1).
pub const HVP_ROW_WISE_MAX_DIM: usize = 1 << 15;
/// Above this many features the sparse HVP makes two passes over X (see `Point::hvp`).
pub const HVP_FUSED_MAX_DIM: usize = 1 << 18;

/// Binary logistic regression data (design + ±1 labels) with a hyper-parameter form.
#[derive(Clone, Debug)]
pub struct LogisticModel {
    design: Design,
    labels: Vec<f64>,
    hyper: Hyper,
    par_min_nnz: usize,
}

impl LogisticModel {
    /// Validates labels (one per row, each exactly −1 or +1) and the hyper-parameter constants
    /// (`scale` finite > 0, `ridge` finite ≥ 0).
    pub fn new(design: Design, labels: Vec<f64>, hyper: Hyper) -> Result<Self> {
        check_len("labels", design.nrows(), labels.len())?;
        if let Some(i) = labels.iter().position(|&b| b != 1.0 && b != -1.0) {
            return Err(KernelError::InvalidData {
                what: "labels",
                reason: format!("label {i} is {}, expected -1 or +1", labels[i]),
            });
        }
        match hyper {
            Hyper::None => {}
            Hyper::PerFeature { scale } => crate::error::check_positive("scale", scale)?,
            Hyper::PerSample { ridge } => {
                if !(ridge.is_finite() && ridge >= 0.0) {
                    return Err(KernelError::InvalidParameter {
                        name: "ridge",
                        reason: format!("must be finite and >= 0, got {ridge}"),
                    });
                }
            }
        }
        Ok(Self { design, labels, hyper, par_min_nnz: PAR_MIN_NNZ })
    }
    /// Sets the batch size (stored entries) from which passes run in parallel.
    pub fn with_par_min_nnz(mut self, nnz: usize) -> Self {
        self.par_min_nnz = nnz;
        self
    }
    /// The batch size (stored entries) from which passes run in parallel.
    pub fn par_min_nnz(&self) -> usize {
        self.par_min_nnz
    }
    /// The samples.
    pub fn design(&self) -> &Design {
        &self.design
    }
    /// The ±1 labels.
    pub fn labels(&self) -> &[f64] {
        &self.labels
    }
    /// The hyper-parameter form.
    pub fn hyper(&self) -> Hyper {
        self.hyper
    }
    /// Number of samples n.
    pub fn n_samples(&self) -> usize {
        self.design.nrows()
    }
    /// Dimension d of θ.
    pub fn dim(&self) -> usize {
        self.design.ncols()
    }
    /// Dimension of λ: 0, d or n.
    pub fn dim_lambda(&self) -> usize {
        match self.hyper {
            Hyper::None => 0,
            Hyper::PerFeature { .. } => self.dim(),
            Hyper::PerSample { .. } => self.n_samples(),
        }
    }
    /// A workspace for batches of up to n positions.
    pub fn workspace(&self) -> LogisticWorkspace {
        LogisticWorkspace::with_capacity(self, self.n_samples())
    }

    /// Computes the point (θ, λ, batch): one read of each batch row. Checks every size, that θ
    /// and λ are finite, that exp(λ) does not overflow, and the batch (non-empty, indices in
    /// range, no longer than the workspace's capacity).
    pub fn point<'a>(
        &'a self,
        theta: &'a [f64],
        lambda: &'a [f64],
        batch: Batch<'a>,
        ws: &'a mut LogisticWorkspace,
    ) -> Result<Point<'a>> {
        let mut pt = self.prepare(theta, lambda, batch, ws)?;
        pt.sweep(None);
        Ok(pt)
    }

    /// [`point`](Self::point) fused with the gradient: the same single read of the rows also
    /// writes `grad = ∂θ` (length d). Returns the point and the value.
    pub fn point_with_grad<'a>(
        &'a self,
        theta: &'a [f64],
        lambda: &'a [f64],
        batch: Batch<'a>,
        ws: &'a mut LogisticWorkspace,
        grad: &mut [f64],
    ) -> Result<(Point<'a>, f64)> {
        check_len("gradient", self.dim(), grad.len())?;
        let mut pt = self.prepare(theta, lambda, batch, ws)?;
        pt.sweep(Some(grad));
        pt.add_reg_grad(grad);
        let value = pt.value();
        Ok((pt, value))
    }

    fn prepare<'a>(
        &'a self,
        theta: &'a [f64],
        lambda: &'a [f64],
        batch: Batch<'a>,
        ws: &'a mut LogisticWorkspace,
    ) -> Result<Point<'a>> {
        let (n, d) = (self.n_samples(), self.dim());
        check_len("theta", d, theta.len())?;
        check_len("lambda", self.dim_lambda(), lambda.len())?;
        check_len("workspace dimension", d, ws.d)?;
        check_finite("theta", theta)?;
        check_finite("lambda", lambda)?;
        self.design.check_batch(batch)?;
        let len = batch.len(n);
        if len == 0 {
            return Err(KernelError::InvalidParameter { name: "batch", reason: "empty batch".into() });
        }
        if len > ws.capacity() {
            return Err(KernelError::InvalidParameter {
                name: "batch",
                reason: format!("{len} positions exceed the workspace capacity {}", ws.capacity()),
            });
        }
        if let Hyper::PerFeature { scale } = self.hyper {
            for (e, &l) in ws.exp_lambda.iter_mut().zip(lambda) {
                *e = l.exp();
                if !(scale * *e).is_finite() {
                    return Err(KernelError::InvalidParameter {
                        name: "lambda",
                        reason: format!("exp({l}) overflows"),
                    });
                }
            }
        }
        let est_nnz = match batch {
            Batch::Full => self.design.nnz(),
            Batch::Rows(_) => (self.design.nnz() as f64 * len as f64 / n as f64) as usize,
        };
        let parallel = d > 0 && est_nnz >= self.par_min_nnz && est_nnz >= BLOCKS * d && len >= BLOCKS;
        Ok(Point { model: self, ws, theta, lambda, batch, len, inv_len: 1.0 / len as f64, parallel, data_sum: 0.0 })
    }
}

/// Buffers of the logistic passes, sized once from the data (no allocation in the hot calls).
#[derive(Clone, Debug)]
pub struct LogisticWorkspace {
    d: usize,
    /// Per batch position: ℓ_i, ℓ'_i, D_i, w_i and a scratch value (x_iᵀv of the cross product).
    loss: Vec<f64>,
    dloss: Vec<f64>,
    curv: Vec<f64>,
    weight: Vec<f64>,
    tmp: Vec<f64>,
    /// exp(λ_j) for the per-feature form (length d, else empty).
    exp_lambda: Vec<f64>,
    /// BLOCKS buffers of length d for the parallel reductions.
    blocks: Vec<f64>,
}

impl LogisticWorkspace {
    /// A workspace for batches of up to `capacity` positions (repeats count).
    pub fn with_capacity(model: &LogisticModel, capacity: usize) -> Self {
        let d = model.dim();
        let per_feature = matches!(model.hyper, Hyper::PerFeature { .. });
        Self {
            d,
            loss: vec![0.0; capacity],
            dloss: vec![0.0; capacity],
            curv: vec![0.0; capacity],
            weight: vec![0.0; capacity],
            tmp: vec![0.0; capacity],
            exp_lambda: vec![0.0; if per_feature { d } else { 0 }],
            blocks: vec![0.0; BLOCKS * d],
        }
    }
    /// Largest batch (in positions) this workspace holds.
    pub fn capacity(&self) -> usize {
        self.loss.len()
    }
}

/// `σ(t) = 1/(1+e^{−t})` without overflow.
#[inline]
pub fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// `σ'(t) = σ(t)σ(−t) = e/(1+e)²` with e = exp(−|t|): no cancellation, no overflow.
#[inline]
pub fn sigmoid_prime(t: f64) -> f64 {
    let e = (-t.abs()).exp();
    e / ((1.0 + e) * (1.0 + e))
}

/// The model at one (θ, λ, batch), with the per-position quantities computed; borrows the
/// workspace. Every method checks its argument lengths and returns [`KernelError`] on mismatch.
pub struct Point<'a> {
    model: &'a LogisticModel,
    ws: &'a mut LogisticWorkspace,
    theta: &'a [f64],
    lambda: &'a [f64],
    batch: Batch<'a>,
    len: usize,
    inv_len: f64,
    parallel: bool,
    /// Σ_B w_i ℓ_i.
    data_sum: f64,
}

impl std::fmt::Debug for Point<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Point").field("len", &self.len).field("parallel", &self.parallel).finish()
    }
}

impl Point<'_> {
    /// Number of batch positions |B|.
    pub fn batch_len(&self) -> usize {
        self.len
    }
    /// Whether this point's passes run on the fixed parallel blocks.
    pub fn is_parallel(&self) -> bool {
        self.parallel
    }

    /// Runs `kernel` over all positions: one call into `out` (zeroed first) sequentially, or the
    /// fixed blocks into the workspace buffers, then `out` = their sum in block order.
    /// `out = None` for passes without a d-vector result.
    fn pass<P: Split>(
        parallel: bool,
        len: usize,
        d: usize,
        blocks: &mut [f64],
        parts: P,
        out: Option<&mut [f64]>,
        kernel: &(impl Fn(Range<usize>, P, &mut [f64]) -> f64 + Sync),
    ) -> f64 {
        let d = if out.is_some() { d } else { 0 };
        if !parallel {
            return match out {
                Some(out) => {
                    out.fill(0.0);
                    kernel(0..len, parts, out)
                }
                None => kernel(0..len, parts, &mut []),
            };
        }
        let bufs = &mut blocks[..BLOCKS * d];
        let blocked = RowsAndAccumulator { rows: parts, acc: &mut *bufs, stride: d };
        let sum = for_each_block(len, BLOCKS, true, blocked, &|_, r, (p, acc): (P, &mut [f64])| {
            acc.fill(0.0);
            kernel(r, p, acc)
        });
        if let Some(out) = out {
            out.copy_from_slice(&bufs[..d]);
            for buf in bufs.chunks_exact(d).skip(1) {
                ops::axpy(1.0, buf, out);
            }
        }
        sum
    }

    /// The margins sweep: per position ℓ_i, ℓ'_i, D_i, w_i; with `grad`, also the data part of
    /// ∂θ scattered from the same read of the row.
    fn sweep(&mut self, grad: Option<&mut [f64]>) {
        let (model, batch, theta, lambda, inv_len) = (self.model, self.batch, self.theta, self.lambda, self.inv_len);
        let per_sample = matches!(model.hyper, Hyper::PerSample { .. });
        let with_grad = grad.is_some();
        let ws = &mut *self.ws;
        let parts =
            (&mut ws.loss[..self.len], &mut ws.dloss[..self.len], &mut ws.curv[..self.len], &mut ws.weight[..self.len]);
        let kernel = |r: Range<usize>,
                      (loss, dloss, curv, weight): (&mut [f64], &mut [f64], &mut [f64], &mut [f64]),
                      buf: &mut [f64]| {
            let mut sum = 0.0;
            for (t, k) in r.enumerate() {
                let i = batch_row(batch, k);
                let b = model.labels[i];
                let m = b * model.design.row_dot(i, theta);
                let e = (-m.abs()).exp();
                let sig_neg = if m >= 0.0 { e / (1.0 + e) } else { 1.0 / (1.0 + e) };
                let w = if per_sample { sigmoid(lambda[i]) } else { 1.0 };
                loss[t] = (-m).max(0.0) + e.ln_1p();
                dloss[t] = -b * sig_neg;
                curv[t] = w * (e / ((1.0 + e) * (1.0 + e)));
                weight[t] = w;
                sum += w * loss[t];
                if with_grad {
                    model.design.row_axpy(i, w * dloss[t] * inv_len, buf);
                }
            }
            sum
        };
        self.data_sum = Self::pass(self.parallel, self.len, ws.d, &mut ws.blocks, parts, grad, &kernel);
    }

    /// Adds ∇R(θ) to `out`.
    fn add_reg_grad(&self, out: &mut [f64]) {
        match self.model.hyper {
            Hyper::None => {}
            Hyper::PerFeature { scale } => {
                for ((o, e), t) in out.iter_mut().zip(&self.ws.exp_lambda).zip(self.theta) {
                    *o += scale * e * t;
                }
            }
            Hyper::PerSample { ridge } => ops::axpy(2.0 * ridge, self.theta, out),
        }
    }

    /// The objective value (data term and regularizer).
    pub fn value(&self) -> f64 {
        let reg = match self.model.hyper {
            Hyper::None => 0.0,
            Hyper::PerFeature { scale } => {
                0.5 * scale * self.ws.exp_lambda.iter().zip(self.theta).map(|(e, t)| e * t * t).sum::<f64>()
            }
            Hyper::PerSample { ridge } => ridge * ops::norm_sq(self.theta),
        };
        self.inv_len * self.data_sum + reg
    }

    /// `out = ∂θ` (length d): one more read of the batch rows (use
    /// [`LogisticModel::point_with_grad`] to get it with the margins in one read).
    pub fn grad_theta(&mut self, out: &mut [f64]) -> Result<()> {
        check_len("gradient", self.model.dim(), out.len())?;
        let (model, batch, inv_len) = (self.model, self.batch, self.inv_len);
        let ws = &mut *self.ws;
        let parts = (&ws.dloss[..self.len], &ws.weight[..self.len]);
        let kernel = |r: Range<usize>, (dloss, weight): (&[f64], &[f64]), buf: &mut [f64]| {
            for (t, k) in r.enumerate() {
                model.design.row_axpy(batch_row(batch, k), weight[t] * dloss[t] * inv_len, buf);
            }
            0.0
        };
        Self::pass(self.parallel, self.len, ws.d, &mut ws.blocks, parts, Some(&mut *out), &kernel);
        self.add_reg_grad(out);
        Ok(())
    }

    /// `out = ∂θθ · v` (length d): (1/|B|) Σ D_i (x_iᵀv) x_i + ∇²R v, each row read once.
    pub fn hvp(&mut self, v: &[f64], out: &mut [f64]) -> Result<()> {
        let d = self.model.dim();
        check_len("v", d, v.len())?;
        check_len("hvp output", d, out.len())?;
        let (model, batch, inv_len) = (self.model, self.batch, self.inv_len);
        let ws = &mut *self.ws;
        // Rows go by groups: the dots of a group first (gathers from v, into `tmp`), then its
        // updates (scatters into out). Each row comes from memory once (the second touch hits
        // L1/L2) as long as a group is small; for very wide models the group is the whole
        // range, i.e. two passes over X, because interleaved gathers and scatters over two
        // vectors larger than the TLB reach cost more than the second read of X
        // (docs/kernels.md has the measurements).
        let group_len = if d <= HVP_ROW_WISE_MAX_DIM {
            1
        } else if d <= HVP_FUSED_MAX_DIM {
            HVP_GROUP
        } else {
            usize::MAX
        };
        let kernel = |r: Range<usize>, (curv, s): (&[f64], &mut [f64]), buf: &mut [f64]| {
            let start = r.start;
            for gs in r.clone().step_by(group_len.min(r.len().max(1))) {
                let group = gs..gs.saturating_add(group_len).min(r.end);
                for k in group.clone() {
                    s[k - start] = model.design.row_dot(batch_row(batch, k), v);
                }
                for k in group {
                    let t = k - start;
                    model.design.row_axpy(batch_row(batch, k), curv[t] * s[t] * inv_len, buf);
                }
            }
            0.0
        };
        let parts = (&ws.curv[..self.len], &mut ws.tmp[..self.len]);
        Self::pass(self.parallel, self.len, d, &mut ws.blocks, parts, Some(&mut *out), &kernel);
        match model.hyper {
            Hyper::None => {}
            Hyper::PerFeature { scale } => {
                for ((o, e), vj) in out.iter_mut().zip(&ws.exp_lambda).zip(v) {
                    *o += scale * e * vj;
                }
            }
            Hyper::PerSample { ridge } => ops::axpy(2.0 * ridge, v, out),
        }
        Ok(())
    }

    /// `out = ∂λ` (length dim_lambda).
    /// - per-feature: ½·scale·exp(λ_j) θ_j² (no data pass);
    /// - per-sample: (1/|B|) σ'(λ_i) ℓ_i summed over the positions of row i in the batch;
    ///   rows outside the batch get 0 (the whole vector is overwritten);
    /// - none: λ is empty.
    pub fn grad_lambda(&self, out: &mut [f64]) -> Result<()> {
        check_len("lambda gradient", self.model.dim_lambda(), out.len())?;
        match self.model.hyper {
            Hyper::None => {}
            Hyper::PerFeature { scale } => {
                for ((o, e), t) in out.iter_mut().zip(&self.ws.exp_lambda).zip(self.theta) {
                    *o = 0.5 * scale * e * t * t;
                }
            }
            Hyper::PerSample { .. } => {
                out.fill(0.0);
                for k in 0..self.len {
                    let i = batch_row(self.batch, k);
                    out[i] += self.inv_len * sigmoid_prime(self.lambda[i]) * self.ws.loss[k];
                }
            }
        }
        Ok(())
    }

    /// `out = ∂λ∂θ · v` (v in θ-space, out in λ-space), i.e. ∂λ of ⟨∂θ, v⟩.
    /// - per-feature: scale·exp(λ_j) θ_j v_j (no data pass);
    /// - per-sample: (1/|B|) σ'(λ_i) ℓ'_i (x_iᵀv) summed over the positions of row i; rows
    ///   outside the batch get 0. One read of the batch rows (the dots run in parallel, the
    ///   scatter into λ-space is sequential: a row may repeat);
    /// - none: λ is empty.
    pub fn cross(&mut self, v: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("v", self.model.dim(), v.len())?;
        check_len("cross output", self.model.dim_lambda(), out.len())?;
        match self.model.hyper {
            Hyper::None => {}
            Hyper::PerFeature { scale } => {
                for (((o, e), t), vj) in out.iter_mut().zip(&self.ws.exp_lambda).zip(self.theta).zip(v) {
                    *o = scale * e * t * vj;
                }
            }
            Hyper::PerSample { .. } => {
                let (model, batch) = (self.model, self.batch);
                let ws = &mut *self.ws;
                let kernel = |r: Range<usize>, s: &mut [f64], _: &mut [f64]| {
                    for (t, k) in r.enumerate() {
                        s[t] = model.design.row_dot(batch_row(batch, k), v);
                    }
                    0.0
                };
                Self::pass(self.parallel, self.len, ws.d, &mut ws.blocks, &mut ws.tmp[..self.len], None, &kernel);
                out.fill(0.0);
                for k in 0..self.len {
                    let i = batch_row(batch, k);
                    out[i] += self.inv_len * sigmoid_prime(self.lambda[i]) * ws.dloss[k] * ws.tmp[k];
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_forms_are_stable() {
        for t in [-1e3, -30.0, -1.0, 0.0, 1.0, 30.0, 1e3] {
            let (s, sp) = (sigmoid(t), sigmoid_prime(t));
            assert!(s.is_finite() && (0.0..=1.0).contains(&s));
            assert!(sp.is_finite() && sp >= 0.0);
            assert!((sigmoid(t) + sigmoid(-t) - 1.0).abs() < 1e-15);
            assert!((sp - sigmoid(t) * sigmoid(-t)).abs() < 1e-15);
        }
    }
}
