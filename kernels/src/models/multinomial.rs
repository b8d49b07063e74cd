//! Multinomial (softmax) logistic regression over a [`Design`], with the hyper-parameter forms
//! of the papers' experiments, and every derivative a hypergradient method needs.
//!
//! Model: K classes, inner variable Θ ∈ R^{d×K} stored **row-major** as a flat slice of length
//! d·K (row j = the K class weights of feature j), logits `z_i = Θᵀ x_i = Σ_j x_ij Θ[j, ·]`, so a
//! sparse row reads only its contiguous K-blocks. Loss of sample i:
//! `CE_i(Θ) = log Σ_c exp(z_ic) − z_{i,y_i}` (evaluated as a stable log-sum-exp).
//! Over a batch B (positions p, sample `i = B[p]`, repetitions counted):
//!
//! | [`Hyper`] | λ ∈ | objective |
//! |---|---|---|
//! | `Plain` | R^0 | (1/\|B\|) Σ_p CE_i — the validation objective f |
//! | `PerFeature { scale }` | R^d | (1/\|B\|) Σ_p CE_i + scale · Σ_j exp(λ_j) ‖Θ[j,·]‖² |
//! | `PerClass { scale }` | R^K | (1/\|B\|) Σ_p CE_i + scale · Σ_c exp(λ_c) ‖Θ[·,c]‖² |
//! | `SampleWeights { ridge }` | R^n | (1/\|B\|) Σ_p σ(λ_i) CE_i + ridge · ‖Θ‖² |
//!
//! Constants (see [`Hyper`]): per-feature follows Arbel & Mairal, "Amortized implicit
//! differentiation for stochastic bilevel optimization" (ICLR 2022) §5.2/App. F.2 and Ji, Yang &
//! Liang, "Bilevel Optimization: Convergence Analysis and Enhanced Design" (ICML 2021) App. A
//! (20 Newsgroups): scale = 1/(K·d); per-class follows benchopt's covtype problem (scale = 1/2);
//! per-sample weights follow the data hyper-cleaning problem of Ji et al. (ridge = 0.001).
//!
//! Derivatives, with `s_i = softmax(z_i)` and `H_i u = s_i ⊙ u − s_i (s_iᵀu)`:
//! - `∂Θ = Σ_p w_p x_i ⊗ (s_i − e_{y_i}) + 2·R ⊙ Θ`, with `w_p = σ(λ_i)/|B|` or `1/|B|` and R the
//!   entrywise regularisation coefficient (scale·e^{λ_j}, scale·e^{λ_c}, ridge or 0);
//! - HVP `∂ΘΘ·V = Σ_p w_p x_i ⊗ H_i (Vᵀx_i) + 2·R ⊙ V`;
//! - `∂λ`: per-feature `scale·e^{λ_j}‖Θ[j,·]‖²`, per-class `scale·e^{λ_c}‖Θ[·,c]‖²`, per-sample
//!   `σ'(λ_i) CE_i / |B|` summed over the positions of i;
//! - cross `∂λ∂Θ·V = ∇λ⟨∂Θ, V⟩`: per-feature `2·scale·e^{λ_j}⟨Θ[j,·], V[j,·]⟩`, per-class
//!   `2·scale·e^{λ_c}⟨Θ[·,c], V[·,c]⟩`, per-sample `σ'(λ_i)⟨s_i − e_{y_i}, Vᵀx_i⟩/|B|` summed over
//!   the positions of i. Entries of samples outside the batch are **zero** (written, not skipped).
//!
//! Usage: [`MultinomialLogistic::point`] runs one sweep over the batch rows (logits, softmax,
//! losses, value; [`point_with_grad`](MultinomialLogistic::point_with_grad) also scatters ∂Θ in
//! the same sweep) and caches the probabilities in a [`MultinomialWorkspace`]; the returned
//! [`MultinomialPoint`] then gives ∂Θ, ∂λ, HVPs and cross products without recomputing them.
//! Each HVP reads every batch row once (gather `Vᵀx_i`, then scatter, while the row is in cache).
//! Cost: a sweep is O(nnz(B)·K), plus O(d·K) for the dense regularisation term.
//!
//! Parallelism: batch positions are cut into a fixed number of blocks (from the sizes only, see
//! [`MultinomialWorkspace::blocks`]), each block scatters into its own accumulator, and the
//! accumulators are summed in block order: 1 or N threads give the same bits. Below
//! [`PAR_MIN_WORK`] multiply-adds a sweep runs sequentially with one block.

use super::blocked::{add_block_sums, for_each_block, Unit};
use super::design::{batch_row, Design};
use super::logistic::sigmoid;
use crate::error::{check_finite, check_len, check_positive, KernelError, Result};
use crate::par;
use crate::problem::Batch;
use crate::sparse::CsrMatrix;
use rayon::prelude::*;

/// A sweep parallelizes over blocks of rows from this many multiply-adds (|B|·nnz/row·K) on:
/// below it, spawning tasks and summing accumulators costs more than it saves.
pub const PAR_MIN_WORK: usize = 1 << 16;

/// One chunk of rows of the gathered HVP: its index, h (written), probabilities, weights.
type RowChunk<'a> = (usize, (&'a mut [f64], (&'a [f64], &'a [f64])));

/// Most accumulation blocks a workspace uses (the parallel width of a scatter).
pub const MAX_BLOCKS: usize = 8;

/// Budget, in f64 values, for the per-block accumulators (64 MiB): for very wide models
/// (20 Newsgroups: d·K ≈ 2.6·10⁶) fewer blocks are used rather than more memory.
pub const ACC_BUDGET: usize = 1 << 23;

/// How the outer variable λ enters the inner objective (see the module table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hyper {
    /// No hyper-parameter (λ has length 0): the plain mean cross-entropy, e.g. a validation loss.
    Plain,
    /// `scale · Σ_j exp(λ_j)‖Θ[j,·]‖²`, λ ∈ R^d: one L2 weight per feature.
    PerFeature {
        /// The constant in front of the sum.
        scale: f64,
    },
    /// `scale · Σ_c exp(λ_c)‖Θ[·,c]‖²`, λ ∈ R^K: one L2 weight per class.
    PerClass {
        /// The constant in front of the sum.
        scale: f64,
    },
    /// Loss weights σ(λ_i) per training sample plus `ridge · ‖Θ‖²`, λ ∈ R^n (data hyper-cleaning).
    SampleWeights {
        /// The ridge constant c of `c‖Θ‖²`.
        ridge: f64,
    },
}

impl Hyper {
    /// The papers' per-feature regulariser, scale = 1/(K·d): Arbel & Mairal (2022) App. F.2
    /// (`(1/(pd)) Σ exp(x_i)‖y_{·,i}‖²`, p = classes) and Ji et al. (2021) App. A eq. (12)
    /// (`1/(cp)`) agree. Their code (stocBiO's `l2reg_on_twentynews.py`) uses
    /// `0.5·mean(exp(λ_j) W²)`, i.e. 1/(2Kd): pass `PerFeature { scale }` to reproduce it.
    pub fn per_feature_paper(n_features: usize, n_classes: usize) -> Self {
        Hyper::PerFeature { scale: 1.0 / (n_features * n_classes).max(1) as f64 }
    }
    /// benchopt's covtype problem (`MultiLogRegOracle`, `reg='exp'`): `½ Σ_c exp(λ_c)‖Θ[·,c]‖²`,
    /// the factor its JAX oracle, gradient, HVP and cross product agree on. (Its NumPy `value`
    /// multiplies by ½ twice; we do not copy that slip.)
    pub fn per_class_benchopt() -> Self {
        Hyper::PerClass { scale: 0.5 }
    }
    /// Data hyper-cleaning, Ji et al. (2021) App. A (MNIST): ridge C_r = 0.001.
    pub fn sample_weights_paper() -> Self {
        Hyper::SampleWeights { ridge: 1e-3 }
    }
}

/// Multinomial logistic regression on fixed data: design X (n × d, samples as rows), labels in
/// `0..K`, and a [`Hyper`] form. Immutable and `Sync`; all scratch lives in a
/// [`MultinomialWorkspace`].
#[derive(Clone, Debug)]
pub struct MultinomialLogistic {
    x: Design,
    /// Xᵀ as CSR (X's CSC form) for a sparse X: the full-batch HVP's transposed product
    /// gathers from it instead of scattering into per-block accumulators.
    xt: Option<CsrMatrix>,
    labels: Vec<usize>,
    n_classes: usize,
    hyper: Hyper,
}

impl MultinomialLogistic {
    /// Validates `labels.len() == n`, every label `< n_classes`, `n_classes ≥ 2`, and the hyper
    /// constants (scale finite and > 0; ridge finite and ≥ 0). The design is finite by construction.
    pub fn new(x: Design, labels: Vec<usize>, n_classes: usize, hyper: Hyper) -> Result<Self> {
        check_len("labels", x.nrows(), labels.len())?;
        if n_classes < 2 {
            return Err(KernelError::InvalidParameter {
                name: "n_classes",
                reason: format!("need at least 2 classes, got {n_classes}"),
            });
        }
        if let Some(i) = labels.iter().position(|&y| y >= n_classes) {
            return Err(KernelError::InvalidData {
                what: "labels",
                reason: format!("label {} of sample {i} is not below n_classes = {n_classes}", labels[i]),
            });
        }
        match hyper {
            Hyper::Plain => {}
            Hyper::PerFeature { scale } | Hyper::PerClass { scale } => check_positive("scale", scale)?,
            Hyper::SampleWeights { ridge } => {
                if !(ridge.is_finite() && ridge >= 0.0) {
                    return Err(KernelError::InvalidParameter {
                        name: "ridge",
                        reason: format!("must be finite and >= 0, got {ridge}"),
                    });
                }
            }
        }
        let xt = match &x {
            Design::Sparse(csr) => Some(csr.transpose()),
            Design::Dense(_) => None,
        };
        Ok(Self { x, xt, labels, n_classes, hyper })
    }
    /// The design X (samples as rows).
    pub fn design(&self) -> &Design {
        &self.x
    }
    /// Class label of each sample, in `0..K`.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }
    /// The hyper-parameter form.
    pub fn hyper(&self) -> Hyper {
        self.hyper
    }
    /// n.
    pub fn n_samples(&self) -> usize {
        self.x.nrows()
    }
    /// d.
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }
    /// K.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }
    /// Length of Θ: d·K.
    pub fn dim_theta(&self) -> usize {
        self.n_features() * self.n_classes
    }
    /// Length of λ: 0, d, K or n by [`Hyper`].
    pub fn dim_lambda(&self) -> usize {
        match self.hyper {
            Hyper::Plain => 0,
            Hyper::PerFeature { .. } => self.n_features(),
            Hyper::PerClass { .. } => self.n_classes,
            Hyper::SampleWeights { .. } => self.n_samples(),
        }
    }
    /// A workspace for batches of at most `capacity` positions (use `n_samples()` for full batches).
    pub fn workspace(&self, capacity: usize) -> MultinomialWorkspace {
        MultinomialWorkspace::new(self.n_features(), self.n_classes, capacity)
    }

    /// Evaluates the model at (Θ, λ) on `batch` in one sweep: logits, softmax probabilities,
    /// losses and the objective value, cached in `ws` for the derivative calls of the returned
    /// point. Errors: wrong lengths of Θ or λ, non-finite Θ or λ, batch indices out of range, an
    /// empty batch, a batch longer than the workspace capacity, a workspace of another model
    /// size, or a non-finite value (overflowing logits or exp(λ)).
    pub fn point<'a>(
        &'a self,
        theta: &'a [f64],
        lambda: &'a [f64],
        batch: Batch<'a>,
        ws: &'a mut MultinomialWorkspace,
    ) -> Result<MultinomialPoint<'a>> {
        self.prepare(theta, lambda, batch, ws, None)
    }

    /// [`point`](Self::point) that also writes ∂Θ (length d·K) into `grad_theta` from the same
    /// sweep over the batch rows (the fused value-and-gradient pass).
    pub fn point_with_grad<'a>(
        &'a self,
        theta: &'a [f64],
        lambda: &'a [f64],
        batch: Batch<'a>,
        ws: &'a mut MultinomialWorkspace,
        grad_theta: &mut [f64],
    ) -> Result<MultinomialPoint<'a>> {
        check_len("grad_theta", self.dim_theta(), grad_theta.len())?;
        self.prepare(theta, lambda, batch, ws, Some(grad_theta))
    }

    fn prepare<'a>(
        &'a self,
        theta: &'a [f64],
        lambda: &'a [f64],
        batch: Batch<'a>,
        ws: &'a mut MultinomialWorkspace,
        grad: Option<&mut [f64]>,
    ) -> Result<MultinomialPoint<'a>> {
        let (d, k) = (self.n_features(), self.n_classes);
        check_len("theta", self.dim_theta(), theta.len())?;
        check_len("lambda", self.dim_lambda(), lambda.len())?;
        check_len("workspace features", d, ws.n_features)?;
        check_len("workspace classes", k, ws.n_classes)?;
        check_finite("theta", theta)?;
        check_finite("lambda", lambda)?;
        self.x.check_batch(batch)?;
        let len = batch.len(self.n_samples());
        if len == 0 {
            return Err(KernelError::InvalidData { what: "batch", reason: "empty batch".into() });
        }
        if len > ws.capacity {
            return Err(KernelError::InvalidParameter {
                name: "batch",
                reason: format!("{len} positions exceed the workspace capacity {}", ws.capacity),
            });
        }
        let reg_value = self.cache_reg(theta, lambda, ws)?;

        let (parallel, blocks) = self.schedule(len, ws);
        let inv_b = 1.0 / len as f64;
        let (x, labels, hyper) = (&self.x, &self.labels[..], self.hyper);
        let MultinomialWorkspace { probs, losses, weights, dweights, block_scratch, acc, .. } = ws;
        let rows = [
            (&mut probs[..len * k], Unit::PerRow(k)),
            (&mut losses[..len], Unit::PerRow(1)),
            (&mut weights[..len], Unit::PerRow(1)),
            (&mut dweights[..len], Unit::PerRow(1)),
        ];
        let forward = |rows: std::ops::Range<usize>, [s, l, w, dw]: [&mut [f64]; 4]| {
            for (local, p) in rows.clone().enumerate() {
                let i = batch_row(batch, p);
                let s = &mut s[local * k..(local + 1) * k];
                l[local] = softmax_row(x, i, labels[i], theta, s);
                (w[local], dw[local]) = match hyper {
                    Hyper::SampleWeights { .. } => {
                        let sg = sigmoid(lambda[i]);
                        (sg * inv_b, sg * (1.0 - sg) * inv_b)
                    }
                    _ => (inv_b, 0.0),
                };
            }
        };
        match grad {
            None => for_each_block(len, blocks, parallel, rows, &|_, r, bufs| forward(r, bufs)),
            Some(out) => {
                let [a, b, c, e] = rows;
                let target: &mut [f64] = if blocks == 1 { &mut *out } else { &mut acc[..blocks * d * k] };
                let bufs = [
                    a,
                    b,
                    c,
                    e,
                    (&mut block_scratch[..blocks * 2 * k], Unit::PerBlock(2 * k)),
                    (target, Unit::PerBlock(d * k)),
                ];
                for_each_block(len, blocks, parallel, bufs, &|_, r, [s, l, w, dw, g, acc]| {
                    forward(r.clone(), [&mut *s, &mut *l, &mut *w, &mut *dw]);
                    acc.fill(0.0);
                    scatter_grad_rows(self, batch, r, s, w, &mut g[..k], acc);
                });
                if blocks > 1 {
                    out.fill(0.0);
                    add_block_sums(&acc[..blocks * d * k], blocks, out);
                }
                self.add_reg_term(&ws.reg_coef, theta, out);
            }
        }
        let data: f64 = ws.weights[..len].iter().zip(&ws.losses[..len]).map(|(w, l)| w * l).sum();
        let value = data + reg_value;
        if !value.is_finite() {
            return Err(KernelError::NonFinite { what: "multinomial objective (logits overflow)", index: 0 });
        }
        Ok(MultinomialPoint { model: self, theta, lambda, batch, ws, len, parallel, blocks, value })
    }

    /// Parallel or not, and the number of blocks, from the sizes only (never the thread count).
    fn schedule(&self, len: usize, ws: &MultinomialWorkspace) -> (bool, usize) {
        let work = len.saturating_mul(self.x.mean_row_nnz()).saturating_mul(self.n_classes);
        if ws.blocks > 1 && work >= PAR_MIN_WORK {
            (true, ws.blocks)
        } else {
            (false, 1)
        }
    }

    /// Caches the regularisation coefficients R (scale·e^λ per feature or class) and returns the
    /// regulariser's value.
    fn cache_reg(&self, theta: &[f64], lambda: &[f64], ws: &mut MultinomialWorkspace) -> Result<f64> {
        let k = self.n_classes;
        let coef = &mut ws.reg_coef;
        match self.hyper {
            Hyper::Plain => Ok(0.0),
            Hyper::SampleWeights { ridge } => Ok(ridge * theta.iter().map(|t| t * t).sum::<f64>()),
            Hyper::PerFeature { scale } | Hyper::PerClass { scale } => {
                for (c, l) in coef.iter_mut().zip(lambda) {
                    *c = scale * l.exp();
                }
                if let Some(index) = coef[..lambda.len()].iter().position(|c| !c.is_finite()) {
                    return Err(KernelError::NonFinite { what: "scale·exp(lambda)", index });
                }
                let per_feature = matches!(self.hyper, Hyper::PerFeature { .. });
                let mut total = 0.0;
                for (j, row) in theta.chunks_exact(k).enumerate() {
                    total += if per_feature {
                        coef[j] * row.iter().map(|t| t * t).sum::<f64>()
                    } else {
                        row.iter().zip(&coef[..k]).map(|(t, c)| c * t * t).sum::<f64>()
                    };
                }
                Ok(total)
            }
        }
    }

    /// `out += 2·R ⊙ m` (the regulariser's gradient for m = Θ, its HVP for m = V), elementwise and
    /// so deterministic under any split.
    fn add_reg_term(&self, reg_coef: &[f64], m: &[f64], out: &mut [f64]) {
        let k = self.n_classes;
        let hyper = self.hyper;
        let rows_per_chunk = (par::LEAF / k).max(1);
        let leaf = |(chunk, (o, m)): (usize, (&mut [f64], &[f64]))| {
            let j0 = chunk * rows_per_chunk;
            for (jj, (o, m)) in o.chunks_exact_mut(k).zip(m.chunks_exact(k)).enumerate() {
                match hyper {
                    Hyper::Plain => {}
                    Hyper::SampleWeights { ridge } => ops_axpy(2.0 * ridge, m, o),
                    Hyper::PerFeature { .. } => ops_axpy(2.0 * reg_coef[j0 + jj], m, o),
                    Hyper::PerClass { .. } => {
                        o.iter_mut().zip(m).zip(&reg_coef[..k]).for_each(|((o, m), c)| *o += 2.0 * c * m)
                    }
                }
            }
        };
        if matches!(hyper, Hyper::Plain) {
            return;
        }
        let chunk = rows_per_chunk * k;
        if out.len() >= par::PAR_MIN_LEN {
            out.par_chunks_mut(chunk).zip(m.par_chunks(chunk)).enumerate().for_each(leaf);
        } else {
            out.chunks_mut(chunk).zip(m.chunks(chunk)).enumerate().for_each(leaf);
        }
    }
}

fn ops_axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    crate::ops::axpy_seq(alpha, x, y)
}

/// Writes `s = softmax(Θᵀx_i)` into `s` (length K) and returns `CE = lse(z) − z_y`, with the
/// max shifted out before exponentiating (no overflow for any finite logits).
#[inline]
fn softmax_row(x: &Design, i: usize, y: usize, theta: &[f64], s: &mut [f64]) -> f64 {
    x.row_gemv_t(i, theta, s);
    let zy = s[y];
    let m = s.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for v in s.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    s.iter_mut().for_each(|v| *v *= inv);
    sum.ln() + (m - zy)
}

/// `acc += Σ_{p ∈ rows} w_p x_i ⊗ (s_p − e_{y_i})`, with `s`, `w` the block's slices.
fn scatter_grad_rows(
    model: &MultinomialLogistic,
    batch: Batch<'_>,
    rows: std::ops::Range<usize>,
    s: &[f64],
    w: &[f64],
    g: &mut [f64],
    acc: &mut [f64],
) {
    let (x, labels) = (&model.x, &model.labels);
    let k = g.len();
    for (local, p) in rows.enumerate() {
        let i = batch_row(batch, p);
        let wp = w[local];
        g.iter_mut().zip(&s[local * k..(local + 1) * k]).for_each(|(g, s)| *g = wp * s);
        g[labels[i]] -= wp;
        x.row_outer_axpy(i, g, acc);
    }
}

/// Scratch for [`MultinomialLogistic`] calls, sized once: per-position probabilities, losses and
/// weights for up to `capacity` batch positions, and per-block accumulators.
#[derive(Clone, Debug)]
pub struct MultinomialWorkspace {
    n_features: usize,
    n_classes: usize,
    capacity: usize,
    blocks: usize,
    probs: Vec<f64>,
    losses: Vec<f64>,
    weights: Vec<f64>,
    dweights: Vec<f64>,
    pos_values: Vec<f64>,
    reg_coef: Vec<f64>,
    block_scratch: Vec<f64>,
    acc: Vec<f64>,
    hrows: Vec<f64>,
}

impl MultinomialWorkspace {
    /// Scratch for a d-feature, K-class model and batches of at most `capacity` positions.
    /// Memory: capacity·(2K + 5) + max(d, K) + blocks·(d·K + 2K) values, with `blocks` =
    /// min([`MAX_BLOCKS`], [`ACC_BUDGET`]/(d·K)) (accumulators only when blocks > 1).
    pub fn new(n_features: usize, n_classes: usize, capacity: usize) -> Self {
        let dk = (n_features * n_classes).max(1);
        let blocks = (ACC_BUDGET / dk).clamp(1, MAX_BLOCKS);
        Self {
            n_features,
            n_classes,
            capacity,
            blocks,
            probs: vec![0.0; capacity * n_classes],
            hrows: vec![0.0; capacity * n_classes],
            losses: vec![0.0; capacity],
            weights: vec![0.0; capacity],
            dweights: vec![0.0; capacity],
            pos_values: vec![0.0; capacity],
            reg_coef: vec![0.0; n_features.max(n_classes)],
            block_scratch: vec![0.0; blocks * 2 * n_classes],
            acc: if blocks > 1 { vec![0.0; blocks * n_features * n_classes] } else { Vec::new() },
        }
    }
    /// Most batch positions a point can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Number of accumulation blocks of a parallel sweep (fixed by the sizes, not the threads).
    pub fn blocks(&self) -> usize {
        self.blocks
    }
}

/// The model evaluated at (Θ, λ, batch): the softmax probabilities are cached, so derivative
/// calls cost one sweep (HVP, per-sample cross, ∂Θ) or none (∂λ, per-feature/per-class cross).
pub struct MultinomialPoint<'a> {
    model: &'a MultinomialLogistic,
    theta: &'a [f64],
    lambda: &'a [f64],
    batch: Batch<'a>,
    ws: &'a mut MultinomialWorkspace,
    len: usize,
    parallel: bool,
    blocks: usize,
    value: f64,
}

impl MultinomialPoint<'_> {
    /// The objective value at this point.
    pub fn value(&self) -> f64 {
        self.value
    }
    /// Softmax probabilities, one K-row per batch position (`len × K`, row-major).
    pub fn probabilities(&self) -> &[f64] {
        &self.ws.probs[..self.len * self.model.n_classes]
    }
    /// Cross-entropy of each batch position (unweighted).
    pub fn losses(&self) -> &[f64] {
        &self.ws.losses[..self.len]
    }

    /// ∂Θ (length d·K) from the cached probabilities: one scatter sweep over the batch rows.
    pub fn grad_theta(&mut self, out: &mut [f64]) -> Result<()> {
        let m = self.model;
        let (d, k) = (m.n_features(), m.n_classes);
        check_len("grad_theta", d * k, out.len())?;
        let batch = self.batch;
        self.scatter_sweep(out, &|r, s, w, g, acc| scatter_grad_rows(m, batch, r, s, w, &mut g[..k], acc));
        m.add_reg_term(&self.ws.reg_coef, self.theta, out);
        Ok(())
    }

    /// One blocked sweep over the batch rows that scatters into a d·K vector: `body(rows,
    /// probabilities, weights, 2K scratch, accumulator)` per block (the accumulator zeroed first),
    /// the block sums written to `out` (overwritten).
    fn scatter_sweep<F>(&mut self, out: &mut [f64], body: &F)
    where
        F: Fn(std::ops::Range<usize>, &mut [f64], &mut [f64], &mut [f64], &mut [f64]) + Sync,
    {
        let (d, k) = (self.model.n_features(), self.model.n_classes);
        let (len, blocks) = (self.len, self.blocks);
        let ws = &mut *self.ws;
        let target: &mut [f64] = if blocks == 1 { &mut *out } else { &mut ws.acc[..blocks * d * k] };
        let bufs = [
            (&mut ws.probs[..len * k], Unit::PerRow(k)),
            (&mut ws.weights[..len], Unit::PerRow(1)),
            (&mut ws.block_scratch[..blocks * 2 * k], Unit::PerBlock(2 * k)),
            (target, Unit::PerBlock(d * k)),
        ];
        for_each_block(len, blocks, self.parallel, bufs, &|_, r, [s, w, scratch, acc]| {
            acc.fill(0.0);
            body(r, s, w, scratch, acc)
        });
        if blocks > 1 {
            out.fill(0.0);
            add_block_sums(&ws.acc[..blocks * d * k], blocks, out);
        }
    }

    /// ∂λ (length [`dim_lambda`](MultinomialLogistic::dim_lambda)). For per-sample weights, only
    /// the samples of the batch get a non-zero entry (`σ'(λ_i)·CE_i/|B|` summed over their
    /// positions); all other entries are set to zero. No sweep over X.
    pub fn grad_lambda(&self, out: &mut [f64]) -> Result<()> {
        let m = self.model;
        let k = m.n_classes;
        check_len("grad_lambda", m.dim_lambda(), out.len())?;
        let ws = &*self.ws;
        match m.hyper {
            Hyper::Plain => {}
            Hyper::PerFeature { .. } => {
                for ((o, row), c) in out.iter_mut().zip(self.theta.chunks_exact(k)).zip(&ws.reg_coef) {
                    *o = c * row.iter().map(|t| t * t).sum::<f64>();
                }
            }
            Hyper::PerClass { .. } => {
                out.fill(0.0);
                for row in self.theta.chunks_exact(k) {
                    out.iter_mut().zip(row).for_each(|(o, t)| *o += t * t);
                }
                out.iter_mut().zip(&ws.reg_coef[..k]).for_each(|(o, c)| *o *= c);
            }
            Hyper::SampleWeights { .. } => {
                out.fill(0.0);
                for p in 0..self.len {
                    out[batch_row(self.batch, p)] += ws.dweights[p] * ws.losses[p];
                }
            }
        }
        Ok(())
    }

    /// The Hessian-vector product ∂ΘΘ·V (V and out of length d·K): per batch row,
    /// `u = Vᵀx_i`, `h = w_p (s ⊙ u − s (sᵀu))`, `out += x_i ⊗ h`, plus the regulariser's `2R ⊙ V`.
    /// One sweep, each row read once (gather and scatter back to back). Errors on wrong lengths
    /// or non-finite V.
    pub fn hvp(&mut self, v: &[f64], out: &mut [f64]) -> Result<()> {
        let m = self.model;
        let (d, k) = (m.n_features(), m.n_classes);
        check_len("v", d * k, v.len())?;
        check_len("hvp out", d * k, out.len())?;
        check_finite("v", v)?;
        let (batch, x) = (self.batch, &m.x);
        if let (Batch::Full, Some(xt)) = (batch, m.xt.as_ref()) {
            self.hvp_gather(xt, v, out);
            m.add_reg_term(&self.ws.reg_coef, v, out);
            return Ok(());
        }
        self.scatter_sweep(out, &|r, s, w, scratch, acc| {
            let (u, h) = scratch.split_at_mut(k);
            for (local, p) in r.enumerate() {
                let i = batch_row(batch, p);
                let s = &s[local * k..(local + 1) * k];
                x.row_gemv_t(i, v, u);
                let su = crate::ops::dot_seq(s, u);
                let wp = w[local];
                h.iter_mut().zip(s).zip(&*u).for_each(|((h, s), u)| *h = wp * s * (u - su));
                x.row_outer_axpy(i, h, acc);
            }
        });
        m.add_reg_term(&self.ws.reg_coef, v, out);
        Ok(())
    }

    /// The full-batch HVP of a sparse design without accumulators: h_i = w_i H_i(Vᵀx_i) for
    /// every row (rows independent), then out[j, ·] = Σ_{i ∋ j} x_ij h_i from Xᵀ's rows (each
    /// output row by one task, its column in ascending i: the same bits with 1 or N threads).
    /// Bytes: X twice (CSR and CSC), V, the n×K rows h and out once — against X, V and
    /// `blocks` accumulators of d·K zeroed, scattered into and summed for the scatter sweep.
    fn hvp_gather(&mut self, xt: &CsrMatrix, v: &[f64], out: &mut [f64]) {
        let (m, k, len) = (self.model, self.model.n_classes, self.len);
        let ws = &mut *self.ws;
        let x = &m.x;
        let rows_leaf = (par::LEAF / (k * 8)).max(1);
        let row = |(chunk, (h, (s, w))): RowChunk<'_>| {
            for (local, ((h, s), &wp)) in h.chunks_exact_mut(k).zip(s.chunks_exact(k)).zip(w).enumerate() {
                x.row_gemv_t(chunk * rows_leaf + local, v, h);
                let su = crate::ops::dot_seq(s, h);
                h.iter_mut().zip(s).for_each(|(h, s)| *h = wp * s * (*h - su));
            }
        };
        let (h, s, w) = (&mut ws.hrows[..len * k], &ws.probs[..len * k], &ws.weights[..len]);
        if self.parallel {
            h.par_chunks_mut(rows_leaf * k)
                .zip(s.par_chunks(rows_leaf * k).zip(w.par_chunks(rows_leaf)))
                .enumerate()
                .for_each(row);
        } else {
            h.chunks_mut(rows_leaf * k).zip(s.chunks(rows_leaf * k).zip(w.chunks(rows_leaf))).enumerate().for_each(row);
        }
        let h = &ws.hrows[..len * k];
        let feat_leaf = (par::LEAF / (k * 8)).max(1);
        let column = |(chunk, o): (usize, &mut [f64])| {
            crate::ops::arch().dispatch(GatherRows { xt, first: chunk * feat_leaf, k, h, out: o });
        };
        if self.parallel {
            out.par_chunks_mut(feat_leaf * k).enumerate().for_each(column);
        } else {
            out.chunks_mut(feat_leaf * k).enumerate().for_each(column);
        }
    }
}

/// Rows `first..` of Xᵀ (as many as `out` holds K-blocks) times h: `out[j, ·] = Σ_i x_ij h_i`,
/// one SIMD dispatch for the whole chunk (most of Xᵀ's rows, the rare words, hold one or two
/// entries: a dispatch per row cost as much as the gathers).
struct GatherRows<'a> {
    xt: &'a CsrMatrix,
    first: usize,
    k: usize,
    h: &'a [f64],
    out: &'a mut [f64],
}

impl crate::ops::WithSimd for GatherRows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: crate::ops::Simd>(self, simd: S) {
        for (local, o) in self.out.chunks_exact_mut(self.k).enumerate() {
            let (rows, vals) = self.xt.row(self.first + local);
            crate::ops::gather_simd(simd, rows, vals, self.h, o);
        }
    }
}

impl MultinomialPoint<'_> {
    /// The cross product ∂λ∂Θ·V = ∇λ⟨∂Θ, V⟩ (V of length d·K, out of length dim λ).
    /// Per-feature and per-class: closed forms in Θ and V, no sweep over X. Per-sample weights:
    /// one sweep; entries of samples outside the batch are set to zero. Errors on wrong lengths
    /// or non-finite V.
    pub fn cross(&mut self, v: &[f64], out: &mut [f64]) -> Result<()> {
        let m = self.model;
        let (d, k) = (m.n_features(), m.n_classes);
        check_len("v", d * k, v.len())?;
        check_len("cross out", m.dim_lambda(), out.len())?;
        check_finite("v", v)?;
        let ws = &mut *self.ws;
        match m.hyper {
            Hyper::Plain => {}
            Hyper::PerFeature { .. } => {
                let rows = self.theta.chunks_exact(k).zip(v.chunks_exact(k));
                for ((o, (t, v)), c) in out.iter_mut().zip(rows).zip(&ws.reg_coef) {
                    *o = 2.0 * c * crate::ops::dot_seq(t, v);
                }
            }
            Hyper::PerClass { .. } => {
                out.fill(0.0);
                for (t, v) in self.theta.chunks_exact(k).zip(v.chunks_exact(k)) {
                    out.iter_mut().zip(t).zip(v).for_each(|((o, t), v)| *o += t * v);
                }
                out.iter_mut().zip(&ws.reg_coef[..k]).for_each(|(o, c)| *o *= 2.0 * c);
            }
            Hyper::SampleWeights { .. } => {
                let (len, blocks, batch) = (self.len, self.blocks, self.batch);
                let (x, labels) = (&m.x, &m.labels[..]);
                let bufs = [
                    (&mut ws.probs[..len * k], Unit::PerRow(k)),
                    (&mut ws.dweights[..len], Unit::PerRow(1)),
                    (&mut ws.pos_values[..len], Unit::PerRow(1)),
                    (&mut ws.block_scratch[..blocks * 2 * k], Unit::PerBlock(2 * k)),
                ];
                for_each_block(len, blocks, self.parallel, bufs, &|_, r, [s, dw, val, scratch]| {
                    let u = &mut scratch[..k];
                    for (local, p) in r.enumerate() {
                        let i = batch_row(batch, p);
                        x.row_gemv_t(i, v, u);
                        let su = crate::ops::dot_seq(&s[local * k..(local + 1) * k], u);
                        val[local] = dw[local] * (su - u[labels[i]]);
                    }
                });
                out.fill(0.0);
                for p in 0..len {
                    out[batch_row(batch, p)] += ws.pos_values[p];
                }
            }
        }
        Ok(())
    }

    /// λ this point was evaluated at.
    pub fn lambda(&self) -> &[f64] {
        self.lambda
    }
    /// Θ this point was evaluated at.
    pub fn theta(&self) -> &[f64] {
        self.theta
    }
}
