//! The finite-sum quadratic of benchopt's `benchmark_bilevel` (`datasets/simulated.py`,
//! `benchmark_utils/gen_matrices.py`; notes/prior-art.md §1.4), with samples stored as their
//! rank-one factors, and optionally every sample of g strongly convex.
//!
//! ```text
//! q_i(x, y) = ½ (h_iᵀy)² + ½ s‖y‖² + ½ (p_iᵀx)² + (w_iᵀy)(u_iᵀx) + c_iᵀy + d_iᵀx
//! g = (1/n_g) Σ_{i<n_g} q_i^g,   f = (1/n_f) Σ_{i<n_f} q_i^f,    over a batch B: (1/|B|) Σ_{i∈B}
//! ∂y q_i = h_i(h_iᵀy) + s y + w_i(u_iᵀx) + c_i,   ∂x q_i = p_i(p_iᵀx) + u_i(w_iᵀy) + d_i
//! ∂yy q_i·v = h_i(h_iᵀv) + s v,   ∂x∂y q_i·v = u_i(w_iᵀv)
//! ```
//!
//! i.e. benchopt's q_i(z, x) = ½zᵀA_i z + ½xᵀB_i x + xᵀC_i z + a_iᵀz + b_iᵀx with z = y,
//! A_i = h_i h_iᵀ + sI, B_i = p_i p_iᵀ, C_i = u_i w_iᵀ. The shift s ([`Config::sample_mu`]) is
//! set by [`Config::sample_hessian`] and only in g (f's samples have s = 0):
//!
//! - [`SampleHessian::RankOne`], s = 0: benchopt's instance, every matrix rank one. A sample
//!   Hessian is singular (d_y > 1), and so is every mini-batch Hessian of fewer than d_y
//!   samples: no per-sample strong convexity (the stochastic papers' assumption, e.g. paper 002's
//!   Assumption 1, does not hold), and CG on a small batch may break down. Presets `benchopt`,
//!   `benchopt-best` (comparability with benchopt).
//! - [`SampleHessian::StronglyConvex`], s = µ: every sample's lower-level Hessian
//!   h_i h_iᵀ + µI has its spectrum in [µ, ‖h_i‖² + µ], so every mini-batch Hessian is
//!   µ-strongly convex. The rank-one parts are whitened to average A_g − µI instead of A_g
//!   (spectrum λ_y − µ, one zero eigenvalue; below), so the mean problem, and with it every
//!   exact reference, is the one prescribed, as with s = 0. Presets `tiny`, `small`.
//!
//! A mini-batch HVP reads |B|·d_y numbers, not |B|·d_y² ([`Layout::RankOne`]; the s·v term is
//! added once per batch inside the same pass); [`Layout::Dense`] stores the per-sample matrices
//! as benchopt does (n·(d_y² + d_x² + d_x d_y) numbers, A_i = h_i h_iᵀ + sI), for like-for-like
//! comparisons.
//!
//! # Construction (each level; g first, then f; seeded `Xoshiro256PlusPlus`)
//!
//! benchopt draws a_i = A ξ_i with ξ_i ~ N(0, I), so E[a_i a_iᵀ] = A² has the prescribed
//! spectrum only in expectation. We replace the Gaussian ξ_i by *whitened* ones: with W an
//! n×d Haar matrix with orthonormal columns ([`haar_orthonormal`]), ξ_i = √n·W[i, :]ᵀ, so
//! (1/n) Σ ξ_i ξ_iᵀ = WᵀW = I exactly, and every mean below is exact (to rounding):
//!
//! - inner Hessian: h_i = Q_y diag(√(λ_y − s)) ξ_i, λ_y = [`spectrum`](µ, L_yy, d_y) (log-spaced
//!   by default), Q_y Haar on O(d_y): (1/n) Σ h_i h_iᵀ = Q_y diag(λ_y − s) Q_yᵀ, and the mean
//!   Hessian (1/n) Σ (h_i h_iᵀ + sI) = Q_y diag(λ_y) Q_yᵀ whatever s (f: s = 0); the draws are
//!   the same for both forms, so one seed gives the same mean problem in both (to rounding);
//! - outer Hessian: p_i likewise with λ_x = [0, spectrum(µ, L_xx, d_x − 1)] (singular, as
//!   benchopt's `r_[0, logspace(...)]`);
//! - cross: ξ_i ∈ R^{d_y} whitened, u_i = U_c D ξ_i (D = d_x×d_y, diagonal σ =
//!   spectrum(µ, L_xy, min(d_x, d_y)), as benchopt: logspace from µ to L_cross), w_i = V_c ξ_i,
//!   U_c, V_c Haar: (1/n) Σ w_i u_iᵀ = V_c Dᵀ U_cᵀ, singular values σ;
//! - linear terms c_i ~ N(0, I_{d_y}), d_i ~ N(0, I_{d_x}) (benchopt: N(0, 1) vectors).
//!
//! Draw order per level: Q_y, W_y, Q_x, W_x, U_c, V_c, W_c, c, d. Gaussian matrices are filled
//! column by column; the faer calls that build the samples and their means are sequential, so
//! the data are bitwise reproducible whatever the thread count (the Cholesky of the mean A_g in
//! the rejection test and in the references uses faer's global parallelism).
//! Whitening needs n ≥ max(d_x, d_y) samples per level (checked).
//!
//! Like benchopt (its rejection loop, up to 20 tries), the whole draw is repeated, continuing
//! the random stream, until the Hessian of the value function L(x) = f(x, y*(x)),
//! H_L = P_f + MᵀA_f M + B_fᵀM + MᵀB_f with M = −A_g⁻¹B_g (mean matrices, B in yᵀB x
//! orientation), has λ_min ≥ 1e-12; [`StochasticQuadratic::tries`] says how many draws it took.
//!
//! Deviations from benchopt, with reasons: whitened ξ (exact means, so the spectrum the
//! algorithms see is the one asked for); Haar bases instead of the orthogonal factor of the SVD
//! of one Gaussian vector (benchopt's U is a reflection fixing all but one direction);
//! mini-batches are arbitrary index sets ([`Batch::Rows`]) instead of contiguous slices; f is the
//! full-batch mean everywhere (benchopt's reported `func` is a one-sample value, §1.4).
//!
//! Full-batch oracles ([`Batch::Full`]) and the exact references use the mean matrices (a
//! [`QuadraticBilevel`] of the means, computed from the stored factors): one product with a
//! d×d matrix instead of n rank-one updates. A mini-batch oracle costs O(|B|·(d_x + d_y)) with
//! the rank-one layout, O(|B|·(d_x + d_y)²) with the dense one; it is sequential (mini-batches
//! are small) and does not allocate. An empty batch gives 0 (value and gradients).

use crate::dataset::{Array, Dataset, GeneratorInfo};
use crate::quadratic::{check_dim, gaussian_x0};
use crate::random_matrix::{gaussian_mat, haar_orthonormal, spectrum, symmetrize, Measured, Spacing};
use bilevel_kernels::error::{check_positive, KernelError, Result};
use bilevel_kernels::models::{DenseRows, QuadraticBilevel, QuadraticForm};
use bilevel_kernels::problem::{Batch, BilevelProblem, ExactReference, ProblemConstants, StepBatches};
use bilevel_kernels::{linop, ops};
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatRef, Par, Side};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "stochastic_quadratic",
    summary: "benchopt's finite-sum quadratic, exact log-spaced means, mini-batches; sample Hessians h_i h_iᵀ + µI \
              (tiny, small: every sample µ-strongly convex) or rank-one h_i h_iᵀ (benchopt, benchopt-best)",
    presets: &["tiny", "small", "benchopt", "benchopt-best"],
};

/// Draws tried before giving up on a value function that is not strongly convex (benchopt: 20).
pub const MAX_TRIES: usize = 20;
/// Smallest eigenvalue of the value-function Hessian accepted (benchopt's threshold).
pub const MIN_VALUE_EIGENVALUE: f64 = 1e-12;

/// How the per-sample matrices are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Rank-one factors h_i, p_i, u_i, w_i (d numbers per sample and term).
    #[default]
    RankOne,
    /// benchopt's dense per-sample matrices A_i (d_y×d_y), B_i (d_x×d_x), C_i (d_y×d_x).
    Dense,
}

impl Layout {
    /// The name used in configs and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Layout::RankOne => "rank_one",
            Layout::Dense => "dense",
        }
    }
}

/// The form of every sample's lower-level Hessian ∂yy g_i (module doc). The mean Hessian is the
/// prescribed one (spectrum [µ, L_yy]) in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleHessian {
    /// A_i = h_i h_iᵀ, as benchopt: rank one, singular for d_y > 1 (per-sample µ = 0).
    #[default]
    RankOne,
    /// A_i = h_i h_iᵀ + µI, µ the prescribed smallest eigenvalue of the mean: every sample
    /// µ-strongly convex, the rank-one parts averaging to A_g − µI.
    StronglyConvex,
}

impl SampleHessian {
    /// The name used in configs and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            SampleHessian::RankOne => "rank_one",
            SampleHessian::StronglyConvex => "strongly_convex",
        }
    }
}

/// Largest eigenvalues of one level's mean matrices (benchopt's `L_inner`, `L_outer`,
/// `L_cross` of one `gen_matrices` call).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LevelScales {
    /// λ_max of the mean y-Hessian (1/n) Σ h_i h_iᵀ.
    pub l_yy: f64,
    /// λ_max of the mean x-Hessian (1/n) Σ p_i p_iᵀ.
    pub l_xx: f64,
    /// The last singular value of the mean cross matrix (the first is µ).
    pub l_xy: f64,
}

impl Default for LevelScales {
    /// benchopt's defaults: L_inner = L_outer = 1, L_cross = 0.1.
    fn default() -> Self {
        Self { l_yy: 1.0, l_xx: 1.0, l_xy: 0.1 }
    }
}

/// Generator settings. `Default` is benchopt's `simulated` dataset: d_x = d_y = 100,
/// n_f = n_g = 1024, µ = 0.1 (κ = 10), L's = 1, L_cross = 0.1, log-spaced, rank-one sample
/// Hessians, rank-one layout.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Outer dimension (benchopt `dim_outer`).
    pub dim_x: usize,
    /// Inner dimension (benchopt `dim_inner`).
    pub dim_y: usize,
    /// Samples of f (benchopt `n_samples_outer`), at least max(d_x, d_y).
    pub n_samples_f: usize,
    /// Samples of g (benchopt `n_samples_inner`), at least max(d_x, d_y).
    pub n_samples_g: usize,
    /// Smallest eigenvalue of every mean Hessian (benchopt `mu_inner`, used for both levels);
    /// κ_g = l_yy of g / µ.
    pub mu: f64,
    /// Scales of g's mean matrices.
    pub g: LevelScales,
    /// Scales of f's mean matrices.
    pub f: LevelScales,
    /// How the eigenvalues are spread.
    pub spacing: Spacing,
    /// How the per-sample matrices are stored.
    pub layout: Layout,
    /// The form of every sample's lower-level Hessian: rank one h_i h_iᵀ (benchopt; the
    /// default, and what a manifest without the field means) or h_i h_iᵀ + µI (every sample
    /// µ-strongly convex; the shift follows µ, so [`with_kappa`](Self::with_kappa) keeps it
    /// equal to the new µ). The mean problem is the same in both. See [`sample_mu`](Self::sample_mu).
    #[serde(default)]
    pub sample_hessian: SampleHessian,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dim_x: 100,
            dim_y: 100,
            n_samples_f: 1024,
            n_samples_g: 1024,
            mu: 0.1,
            g: LevelScales::default(),
            f: LevelScales::default(),
            spacing: Spacing::Log,
            layout: Layout::RankOne,
            sample_hessian: SampleHessian::RankOne,
        }
    }
}

impl Config {
    /// `"tiny"` (d_x = 4, d_y = 8, n_f = 16, n_g = 32), `"small"` (10, 50, 256, 1024), both with
    /// µ-strongly convex samples ([`SampleHessian::StronglyConvex`]); `"benchopt"` (the default),
    /// `"benchopt-best"` (benchopt's `config/quadratics_021424_best_params.yml`: d_x = 10,
    /// d_y = 100, n_f = 1024, n_g = 32768), both rank-one like benchopt.
    pub fn preset(name: &str) -> Result<Self> {
        use SampleHessian::{RankOne, StronglyConvex};
        let (dim_x, dim_y, n_samples_f, n_samples_g, sample_hessian) = match name {
            "tiny" => (4, 8, 16, 32, StronglyConvex),
            "small" => (10, 50, 256, 1024, StronglyConvex),
            "benchopt" => (100, 100, 1024, 1024, RankOne),
            "benchopt-best" => (10, 100, 1024, 32768, RankOne),
            _ => return Err(INFO.unknown_preset(name)),
        };
        Ok(Self { dim_x, dim_y, n_samples_f, n_samples_g, sample_hessian, ..Self::default() })
    }

    /// The shift s of every sample's lower-level Hessian h_i h_iᵀ + sI: µ with
    /// [`SampleHessian::StronglyConvex`], 0 with [`SampleHessian::RankOne`]. It is the per-sample
    /// strong-convexity constant (`mu_g_sample` of the problem's constants).
    pub fn sample_mu(&self) -> f64 {
        match self.sample_hessian {
            SampleHessian::RankOne => 0.0,
            SampleHessian::StronglyConvex => self.mu,
        }
    }

    /// Sets µ = g.l_yy / κ: the condition number κ_g of the mean lower-level Hessian (the one
    /// place κ becomes µ). Errors: κ outside [1, [`MAX_KAPPA`](crate::quadratic::MAX_KAPPA)].
    pub fn with_kappa(mut self, kappa: f64) -> Result<Self> {
        crate::quadratic::check_kappa("kappa", kappa)?;
        self.mu = self.g.l_yy / kappa;
        Ok(self)
    }

    /// Bytes [`generate`] holds at its peak, an upper bound (saturating): per level with n
    /// samples, 8 n (d_x + d_y) f64 for the draw, its stored copy and the whitening factors, plus
    /// with [`Layout::Dense`] the per-sample matrices n (d_y² + d_x² + d_x d_y); and for the mean
    /// matrices, H_L, its eigen-decomposition and the references' Cholesky factors and
    /// minimizer, 8 d_x² + 3 d_y² + 5 d_x d_y.
    pub fn memory_bytes(&self) -> u128 {
        let (dx, dy) = (self.dim_x, self.dim_y);
        let mut total = crate::quadratic::bytes_of(&[(8, &[dx, dx]), (3, &[dy, dy]), (5, &[dx, dy])]);
        for n in [self.n_samples_f, self.n_samples_g] {
            total = total.saturating_add(crate::quadratic::bytes_of(&[(8, &[n, dx]), (8, &[n, dy])]));
            if self.layout == Layout::Dense {
                let dense = crate::quadratic::bytes_of(&[(1, &[n, dy, dy]), (1, &[n, dx, dx]), (1, &[n, dx, dy])]);
                total = total.saturating_add(dense);
            }
        }
        total
    }

    /// Checks sizes, n ≥ max(d_x, d_y), and that µ and every L are finite and > 0.
    pub fn validate(&self) -> Result<()> {
        check_dim("dim_x", self.dim_x)?;
        check_dim("dim_y", self.dim_y)?;
        let d = self.dim_x.max(self.dim_y);
        for (name, level, n) in [("n_samples_f", "f", self.n_samples_f), ("n_samples_g", "g", self.n_samples_g)] {
            if n < d {
                // Not a flag: the presets set the sample counts, so say what each one gives.
                let presets: Vec<String> = INFO
                    .presets
                    .iter()
                    .filter_map(|p| Self::preset(p).ok().map(|c| format!("`{p}` {}/{}", c.n_samples_f, c.n_samples_g)))
                    .collect();
                return Err(KernelError::InvalidParameter {
                    name,
                    reason: format!(
                        "{n} samples of {level} cannot have an exact mean spectrum at d_x = {}, d_y = {}: they need at \
                         least max(d_x, d_y) = {d}. The sample counts are set by the preset (samples of f/g: {}): \
                         choose a preset with enough samples, or smaller --dx/--dy",
                        self.dim_x,
                        self.dim_y,
                        presets.join(", ")
                    ),
                });
            }
        }
        check_positive("mu", self.mu)?;
        for (name, v) in [
            ("g.l_yy", self.g.l_yy),
            ("g.l_xx", self.g.l_xx),
            ("g.l_xy", self.g.l_xy),
            ("f.l_yy", self.f.l_yy),
            ("f.l_xx", self.f.l_xx),
            ("f.l_xy", self.f.l_xy),
        ] {
            check_positive(name, v)?;
        }
        if self.g.l_yy < self.mu {
            return Err(KernelError::InvalidParameter {
                name: "g.l_yy",
                reason: format!("must be >= mu = {:?} (kappa_g = l_yy / mu >= 1), got {:?}", self.mu, self.g.l_yy),
            });
        }
        Ok(())
    }
}

/// The per-sample second-order data of one level.
#[derive(Clone, Debug)]
enum Samples {
    RankOne {
        /// h_i (n×d_y), p_i (n×d_x), u_i (n×d_x), w_i (n×d_y).
        h: DenseRows,
        p: DenseRows,
        u: DenseRows,
        w: DenseRows,
    },
    Dense {
        /// A_i = h_i h_iᵀ + sI (s = the level's `shift`), row-major d_y×d_y blocks;
        /// P_i = p_i p_iᵀ (d_x×d_x); B_i = w_i u_iᵀ (d_y×d_x, the yᵀB_i x orientation).
        a: Vec<f64>,
        p: Vec<f64>,
        b: Vec<f64>,
    },
}

/// Which variable a level's derivative is taken in (or lands in).
#[derive(Clone, Copy)]
enum Var {
    X,
    Y,
}

/// One level (f or g): n samples q_i (module doc).
#[derive(Clone)]
struct Level {
    n: usize,
    dx: usize,
    dy: usize,
    samples: Samples,
    /// s of ∂yy q_i = h_i h_iᵀ + sI ([`Config::sample_mu`] for g, 0 for f). The rank-one layout
    /// adds it in its kernels; the dense layout has it in its stored A_i.
    shift: f64,
    /// c_i (n×d_y) and d_i (n×d_x).
    lin_y: DenseRows,
    lin_x: DenseRows,
}

/// Row r of the i-th row-major `rows × cols` block of `m`.
#[inline]
fn block_row(m: &[f64], i: usize, rows: usize, cols: usize, r: usize) -> &[f64] {
    let o = (i * rows + r) * cols;
    &m[o..o + cols]
}

/// The mean over the batch `rows` of the per-sample vectors that `add_sample(i, ahead, out)`
/// adds into `out`; zeros for an empty batch. `prefetch(i)` runs [`PREFETCH_AHEAD`] samples
/// ahead of `add_sample`, which is told that sample (`ahead`) to prefetch what it reads
/// itself, so their data arrive while this one is computed.
fn batch_mean(
    rows: &[usize],
    out: &mut [f64],
    prefetch: impl Fn(usize),
    mut add_sample: impl FnMut(usize, Option<usize>, &mut [f64]),
) {
    out.fill(0.0);
    for &i in rows.iter().take(PREFETCH_AHEAD) {
        prefetch(i);
    }
    for (k, &i) in rows.iter().enumerate() {
        let ahead = rows.get(k + PREFETCH_AHEAD).copied();
        if let Some(next) = ahead {
            prefetch(next);
        }
        add_sample(i, ahead, out);
    }
    ops::scale(inv_len(rows.len()), out);
}

/// One rank-one term (a_i·v) b_i of a sample's derivative: the factors a (dotted with v) and b.
type RankOneTerm<'a> = (&'a DenseRows, &'a [f64], &'a DenseRows);

/// The batch mean of s·z + Σ_terms (a_i·v) b_i (+ lin_i) over `rows`, with `shift` = (s, z)
/// (the sI part of h_i h_iᵀ + sI, the same for every sample: started at |B|·s·z, not added per
/// sample), in the order of the per-sample code (each term, then lin) under one SIMD dispatch:
/// per-sample dispatches cost as much as the arithmetic of these d-length rows.
fn rank_one_mean(
    rows: &[usize],
    shift: Option<(f64, &[f64])>,
    terms: [Option<RankOneTerm<'_>>; 2],
    lin: Option<&DenseRows>,
    out: &mut [f64],
) {
    out.fill(0.0);
    // An empty batch stays 0 (no shift either).
    let shift = shift.filter(|&(s, _)| s != 0.0 && !rows.is_empty()).map(|(s, z)| (s * rows.len() as f64, z));
    ops::arch().dispatch(RankOneSum { rows, shift, terms, lin, out: &mut *out });
    ops::scale(inv_len(rows.len()), out);
}

struct RankOneSum<'a> {
    rows: &'a [usize],
    /// (|B|·s, z): the batch's sum of the s·z terms.
    shift: Option<(f64, &'a [f64])>,
    terms: [Option<RankOneTerm<'a>>; 2],
    lin: Option<&'a DenseRows>,
    out: &'a mut [f64],
}

impl ops::WithSimd for RankOneSum<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: ops::Simd>(self, simd: S) {
        if let Some((c, z)) = self.shift {
            ops::axpy_simd(simd, c, z, self.out);
        }
        for &i in self.rows {
            for (a, v, b) in self.terms.iter().flatten() {
                let c = ops::dot_simd(simd, a.row(i), v);
                ops::axpy_simd(simd, c, b.row(i), self.out);
            }
            if let Some(lin) = self.lin {
                ops::axpy_simd(simd, 1.0, lin.row(i), self.out);
            }
        }
    }
}

/// Adds the symmetric sample matrix i of the stacked d×d matrices `m` times `v` to `out`
/// (d = `out.len()`), reading one triangle (half the bytes of its rows) and prefetching sample
/// `ahead`'s triangle column by column as it goes (spread over the product: 6–12% faster per
/// stocBiO iteration than prefetching it all before).
fn dense_hess_add(m: &[f64], i: usize, ahead: Option<usize>, v: &[f64], out: &mut [f64]) {
    let d = out.len();
    let block = MatRef::from_column_major_slice(&m[i * d * d..(i + 1) * d * d], d, d);
    match ahead {
        Some(a) => linop::sym_lower_matvec_add_prefetching(block, v, out, &m[a * d * d..(a + 1) * d * d]),
        None => linop::sym_lower_matvec_add(block, v, out),
    }
}

/// Adds sample i's cross term of the stacked d_y×d_x matrices `b` to `out`: B_i v into the
/// y-space for `Var::Y` (v ∈ R^{d_x}), B_iᵀ v into the x-space for `Var::X` (v ∈ R^{d_y}).
fn dense_cross_add(b: &[f64], var: Var, i: usize, v: &[f64], out: &mut [f64]) {
    let n = v.len() * out.len();
    let bi = &b[i * n..(i + 1) * n];
    match var {
        Var::Y => ops::rows_matvec_add(bi, v, out),
        Var::X => ops::rows_matvec_t_add(bi, v, out),
    }
}

/// Prefetches sample i's cross matrix (of n values) of the stacked `b`. The dense blocks are
/// read in short runs at random offsets, which the hardware prefetcher does not anticipate (a
/// fresh batch ran 3.5× slower than a cached one without prefetching; the Hessians are
/// prefetched by their own kernel, see [`dense_hess_add`]).
fn prefetch_cross(b: &[f64], n: usize, i: usize) {
    ops::prefetch(&b[i * n..(i + 1) * n]);
}

/// How many samples ahead of the one being added [`batch_mean`] prefetches.
const PREFETCH_AHEAD: usize = 2;

/// 1/|B|, and 0 for an empty batch (so an empty mean is 0, not NaN).
fn inv_len(len: usize) -> f64 {
    if len == 0 {
        0.0
    } else {
        1.0 / len as f64
    }
}

impl Level {
    fn value(&self, x: &[f64], y: &[f64], rows: &[usize]) -> f64 {
        let (dx, dy) = (self.dx, self.dy);
        // ½ s‖y‖², the same for every sample (in the dense layout's A_i already).
        let shifted = match self.samples {
            Samples::RankOne { .. } if self.shift != 0.0 && !rows.is_empty() => 0.5 * self.shift * ops::dot_seq(y, y),
            _ => 0.0,
        };
        let mut s = 0.0;
        for &i in rows {
            s += match &self.samples {
                Samples::RankOne { h, p, u, w } => {
                    let (hy, px) = (ops::dot_seq(h.row(i), y), ops::dot_seq(p.row(i), x));
                    0.5 * hy * hy + 0.5 * px * px + ops::dot_seq(w.row(i), y) * ops::dot_seq(u.row(i), x)
                }
                Samples::Dense { a, p, b } => {
                    let ay: f64 = (0..dy).map(|r| y[r] * ops::dot_seq(block_row(a, i, dy, dy, r), y)).sum();
                    let px: f64 = (0..dx).map(|r| x[r] * ops::dot_seq(block_row(p, i, dx, dx, r), x)).sum();
                    let bx: f64 = (0..dy).map(|r| y[r] * ops::dot_seq(block_row(b, i, dy, dx, r), x)).sum();
                    0.5 * ay + 0.5 * px + bx
                }
            };
            s += ops::dot_seq(self.lin_y.row(i), y) + ops::dot_seq(self.lin_x.row(i), x);
        }
        s * inv_len(rows.len()) + shifted
    }

    fn grad_y(&self, x: &[f64], y: &[f64], rows: &[usize], out: &mut [f64]) {
        self.grad(Var::Y, x, y, rows, out)
    }

    fn grad_x(&self, x: &[f64], y: &[f64], rows: &[usize], out: &mut [f64]) {
        self.grad(Var::X, x, y, rows, out)
    }

    /// The mean gradient in `var`: per sample ∂var∂var q_i · var (with s·y in y) + the cross term
    /// in the other variable + the linear coefficient (c_i or d_i).
    fn grad(&self, var: Var, x: &[f64], y: &[f64], rows: &[usize], out: &mut [f64]) {
        let (own, other, lin) = match var {
            Var::Y => (y, x, &self.lin_y),
            Var::X => (x, y, &self.lin_x),
        };
        match &self.samples {
            Samples::RankOne { h, p, u, w } => {
                let (hess, cross, shift) = match var {
                    Var::Y => ((h, own, h), (u, other, w), Some((self.shift, own))),
                    Var::X => ((p, own, p), (w, other, u), None),
                };
                rank_one_mean(rows, shift, [Some(hess), Some(cross)], Some(lin), out)
            }
            Samples::Dense { a, p, b } => {
                let hess = match var {
                    Var::Y => a,
                    Var::X => p,
                };
                batch_mean(
                    rows,
                    out,
                    |i| prefetch_cross(b, own.len() * other.len(), i),
                    |i, ahead, out| {
                        dense_hess_add(hess, i, ahead, own, out);
                        dense_cross_add(b, var, i, other, out);
                        ops::axpy_seq(1.0, lin.row(i), out);
                    },
                )
            }
        }
    }

    fn hvp(&self, v: &[f64], rows: &[usize], out: &mut [f64]) {
        match &self.samples {
            Samples::RankOne { h, .. } => {
                rank_one_mean(rows, Some((self.shift, v)), [Some((h, v, h)), None], None, out)
            }
            Samples::Dense { a, .. } => {
                batch_mean(rows, out, |_| (), |i, ahead, out| dense_hess_add(a, i, ahead, v, out))
            }
        }
    }

    fn cross(&self, v: &[f64], rows: &[usize], out: &mut [f64]) {
        match &self.samples {
            Samples::RankOne { u, w, .. } => rank_one_mean(rows, None, [Some((w, v, u)), None], None, out),
            Samples::Dense { b, .. } => {
                let n = v.len() * out.len();
                batch_mean(rows, out, |i| prefetch_cross(b, n, i), |i, _, out| dense_cross_add(b, Var::X, i, v, out))
            }
        }
    }

    /// The level's arrays, names prefixed by `g_` or `f_` (see [`Dataset::arrays`]).
    fn arrays(&self, prefix: &str, out: &mut Vec<Array>) {
        let (n, dx, dy) = (self.n, self.dx, self.dy);
        let name = |s: &str| format!("{prefix}_{s}");
        let rows = |s: &str, m: &DenseRows| Array::f64(&name(s), vec![m.nrows(), m.ncols()], m.data().to_vec());
        match &self.samples {
            Samples::RankOne { h, p, u, w } => {
                out.push(rows("hess_y_factors", h));
                out.push(rows("hess_x_factors", p));
                out.push(rows("cross_x_factors", u));
                out.push(rows("cross_y_factors", w));
            }
            Samples::Dense { a, p, b } => {
                out.push(Array::f64(&name("hess_y"), vec![n, dy, dy], a.clone()));
                out.push(Array::f64(&name("hess_x"), vec![n, dx, dx], p.clone()));
                out.push(Array::f64(&name("cross"), vec![n, dy, dx], b.clone()));
            }
        }
        out.push(rows("lin_y", &self.lin_y));
        out.push(rows("lin_x", &self.lin_x));
    }
}

/// One level's draw, as faer matrices (n rows): the factors, and `shift` = s of the sample
/// y-Hessians h_i h_iᵀ + sI.
struct Draw {
    shift: f64,
    h: Mat<f64>,
    p: Mat<f64>,
    u: Mat<f64>,
    w: Mat<f64>,
    c: Mat<f64>,
    d: Mat<f64>,
}

/// √n·W·diag(√λ)·Qᵀ with W (n×d) Haar orthonormal columns and Q Haar on O(d): rows
/// φ_i = Q diag(√λ) ξ_i, ξ_i = √n W[i, :]ᵀ, so (1/n) Σ φ_i φ_iᵀ = Q diag(λ) Qᵀ.
fn factors(n: usize, lambda: &[f64], rng: &mut Xoshiro256PlusPlus) -> Result<Mat<f64>> {
    let d = lambda.len();
    let q = haar_orthonormal(d, d, rng)?;
    let w = haar_orthonormal(n, d, rng)?;
    let qs = Mat::from_fn(d, d, |i, j| q[(i, j)] * lambda[j].sqrt());
    let mut out = Mat::zeros(n, d);
    matmul(out.as_mut(), Accum::Replace, w.as_ref(), qs.transpose(), (n as f64).sqrt(), Par::Seq);
    Ok(out)
}

/// One level: `shift` = s ≤ µ of the y-Hessians h_i h_iᵀ + sI, whose rank-one parts are
/// whitened to the spectrum λ_y − s so that the mean y-Hessian has the spectrum λ_y.
#[allow(clippy::too_many_arguments)]
fn draw_level(
    n: usize,
    dx: usize,
    dy: usize,
    mu: f64,
    shift: f64,
    s: &LevelScales,
    spacing: Spacing,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Draw> {
    // λ_y ≥ µ ≥ shift: the max only guards the sign of an exact zero.
    let lambda_y: Vec<f64> = spectrum(mu, s.l_yy, dy, spacing).into_iter().map(|l| (l - shift).max(0.0)).collect();
    let h = factors(n, &lambda_y, rng)?;
    let mut lambda_x = vec![0.0];
    lambda_x.extend(spectrum(mu, s.l_xx, dx - 1, spacing));
    let p = factors(n, &lambda_x, rng)?;
    let uc = haar_orthonormal(dx, dx, rng)?;
    let vc = haar_orthonormal(dy, dy, rng)?;
    let sigma = spectrum(mu, s.l_xy, dx.min(dy), spacing);
    let xi = haar_orthonormal(n, dy, rng)? * faer::Scale((n as f64).sqrt());
    // u_i = U_c D ξ_i: rows Ξ Dᵀ U_cᵀ, (Ξ Dᵀ)[:, j] = σ_j Ξ[:, j] for j < min(d_x, d_y), else 0.
    let xd = Mat::from_fn(n, dx, |i, j| if j < sigma.len() { sigma[j] * xi[(i, j)] } else { 0.0 });
    let mut u = Mat::zeros(n, dx);
    matmul(u.as_mut(), Accum::Replace, xd.as_ref(), uc.transpose(), 1.0, Par::Seq);
    let mut w = Mat::zeros(n, dy);
    matmul(w.as_mut(), Accum::Replace, xi.as_ref(), vc.transpose(), 1.0, Par::Seq);
    let c = gaussian_mat(n, dy, rng);
    let d = gaussian_mat(n, dx, rng);
    Ok(Draw { shift, h, p, u, w, c, d })
}

/// (1/n) XᵀY, sequential.
fn mean_product(x: MatRef<'_, f64>, y: MatRef<'_, f64>) -> Mat<f64> {
    let mut m = Mat::zeros(x.ncols(), y.ncols());
    matmul(m.as_mut(), Accum::Replace, x.transpose(), y, 1.0 / x.nrows() as f64, Par::Seq);
    m
}

fn column_means(m: &Mat<f64>) -> Vec<f64> {
    let n = m.nrows() as f64;
    (0..m.ncols()).map(|j| (0..m.nrows()).map(|i| m[(i, j)]).sum::<f64>() / n).collect()
}

fn rows_of(m: &Mat<f64>) -> Result<DenseRows> {
    DenseRows::from_faer(m.as_ref())
}

/// The mean matrices of a draw: (A, P, B, c, d) of ½yᵀAy + ½xᵀPx + yᵀBx + cᵀy + dᵀx.
struct Means {
    a: Mat<f64>,
    p: Mat<f64>,
    b: Mat<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
}

impl Draw {
    /// The means; A = (1/n) Σ h_i h_iᵀ + sI.
    fn means(&self) -> Means {
        let mut a = symmetrize(&mean_product(self.h.as_ref(), self.h.as_ref()));
        for j in 0..a.ncols() {
            a[(j, j)] += self.shift;
        }
        Means {
            a,
            p: symmetrize(&mean_product(self.p.as_ref(), self.p.as_ref())),
            b: mean_product(self.w.as_ref(), self.u.as_ref()),
            c: column_means(&self.c),
            d: column_means(&self.d),
        }
    }

    fn into_level(self, layout: Layout) -> Result<Level> {
        let (n, dx, dy) = (self.h.nrows(), self.p.ncols(), self.h.ncols());
        let samples = match layout {
            Layout::RankOne => Samples::RankOne {
                h: rows_of(&self.h)?,
                p: rows_of(&self.p)?,
                u: rows_of(&self.u)?,
                w: rows_of(&self.w)?,
            },
            Layout::Dense => {
                // l_i r_iᵀ + diag·I (diag only for square blocks).
                let outer = |l: &Mat<f64>, r: &Mat<f64>, diag: f64| -> Vec<f64> {
                    let (nl, nr) = (l.ncols(), r.ncols());
                    let mut v = Vec::with_capacity(n * nl * nr);
                    for i in 0..n {
                        for a in 0..nl {
                            v.extend((0..nr).map(|b| l[(i, a)] * r[(i, b)] + if a == b { diag } else { 0.0 }));
                        }
                    }
                    v
                };
                Samples::Dense {
                    a: outer(&self.h, &self.h, self.shift),
                    p: outer(&self.p, &self.p, 0.0),
                    b: outer(&self.w, &self.u, 0.0),
                }
            }
        };
        Ok(Level { n, dx, dy, samples, shift: self.shift, lin_y: rows_of(&self.c)?, lin_x: rows_of(&self.d)? })
    }
}

/// H_L = P_f + MᵀA_f M + B_fᵀM + MᵀB_f, M = −A_g⁻¹B_g (None if A_g is not positive definite).
fn value_hessian(g: &Means, f: &Means) -> Option<Mat<f64>> {
    let llt = g.a.llt(Side::Lower).ok()?;
    let mut m = -&g.b;
    llt.solve_in_place(m.as_mut());
    let (dy, dx) = (m.nrows(), m.ncols());
    let mut am = Mat::zeros(dy, dx);
    matmul(am.as_mut(), Accum::Replace, f.a.as_ref(), m.as_ref(), 1.0, Par::Seq);
    let mut h = f.p.clone();
    matmul(h.as_mut(), Accum::Add, m.transpose(), am.as_ref(), 1.0, Par::Seq);
    let mut bm = Mat::zeros(dx, dx);
    matmul(bm.as_mut(), Accum::Replace, f.b.transpose(), m.as_ref(), 1.0, Par::Seq);
    h += &bm + bm.transpose();
    Some(symmetrize(&h))
}

/// A bound on max_i λ_max(∇²L_i) over f's samples, L_i(x) = q_i^f(x, y*(x)), y* = Mx + m₀ with
/// M = −A_g⁻¹B_g (the mean lower level): ∇²L_i = p_i p_iᵀ + (Mᵀh_i)(Mᵀh_i)ᵀ + u_i(Mᵀw_i)ᵀ +
/// (Mᵀw_i)u_iᵀ, so λ_max ≤ ‖p_i‖² + ‖Mᵀh_i‖² + 2‖u_i‖‖Mᵀw_i‖ (rank-one terms, triangle
/// inequality). None if A_g is not positive definite.
fn outer_sample_bound(g: &Means, f: &Draw) -> Option<f64> {
    let llt = g.a.llt(Side::Lower).ok()?;
    let mut m = -&g.b;
    llt.solve_in_place(m.as_mut());
    let (n, dx) = (f.h.nrows(), m.ncols());
    let (mut hm, mut wm) = (Mat::zeros(n, dx), Mat::zeros(n, dx));
    matmul(hm.as_mut(), Accum::Replace, f.h.as_ref(), m.as_ref(), 1.0, Par::Seq);
    matmul(wm.as_mut(), Accum::Replace, f.w.as_ref(), m.as_ref(), 1.0, Par::Seq);
    let sq = |a: &Mat<f64>, i: usize| (0..a.ncols()).map(|j| a[(i, j)] * a[(i, j)]).sum::<f64>();
    (0..n).map(|i| sq(&f.p, i) + sq(&hm, i) + 2.0 * (sq(&f.u, i) * sq(&wm, i)).sqrt()).reduce(f64::max)
}

/// The finite-sum quadratic (module doc): samples of f and g, their exact means and
/// references, and the measured spectra.
#[derive(Debug)]
pub struct StochasticQuadratic {
    config: Config,
    seed: u64,
    tries: usize,
    f: Level,
    g: Level,
    /// The mean problem: full-batch oracles and exact references.
    reference: QuadraticBilevel,
    /// max_i ‖h_i‖² + s of g's samples: max_i λ_max(∂yy g_i) (h_i h_iᵀ + sI).
    l_g_sample: f64,
    /// A bound on the per-sample outer smoothness ([`outer_sample_bound`]).
    l_outer_sample: f64,
    measured_g: OnceLock<Measured>,
    measured_f: OnceLock<Measured>,
    measured_value: Measured,
}

impl std::fmt::Debug for Level {
    fn fmt(&self, fm: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layout = match self.samples {
            Samples::RankOne { .. } => "rank-one",
            Samples::Dense { .. } => "dense",
        };
        write!(fm, "Level {{ n: {}, dx: {}, dy: {}, layout: {layout} }}", self.n, self.dx, self.dy)
    }
}

fn form(dx: usize, dy: usize, m: Means) -> Result<QuadraticForm> {
    QuadraticForm::new(dx, dy).with_a(m.a)?.with_p(m.p)?.with_b(m.b)?.with_c(m.c)?.with_d(m.d)
}

/// Generates the problem of the module doc. Errors: an invalid config ([`Config::validate`]),
/// [`KernelError::TooLarge`] before anything is allocated when [`Config::memory_bytes`] does not
/// fit in the memory available, and a rejection loop that finds no strongly convex L.
pub fn generate(config: &Config, seed: u64) -> Result<StochasticQuadratic> {
    config.validate()?;
    let (dx, dy) = (config.dim_x, config.dim_y);
    bilevel_kernels::memory::check_fits(
        || {
            let layout = match config.layout {
                Layout::RankOne => "rank-one samples",
                Layout::Dense => "dense per-sample matrices",
            };
            format!(
                "the stochastic quadratic at d_x = {dx}, d_y = {dy}, n_f = {}, n_g = {} ({layout}, mean matrices and \
                 references; choose smaller --dx/--dy or a smaller preset)",
                config.n_samples_f, config.n_samples_g
            )
        },
        config.memory_bytes(),
    )?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut last_min = f64::NAN;
    for tries in 1..=MAX_TRIES {
        let (mu, spacing) = (config.mu, config.spacing);
        let dg = draw_level(config.n_samples_g, dx, dy, mu, config.sample_mu(), &config.g, spacing, &mut rng)?;
        let df = draw_level(config.n_samples_f, dx, dy, mu, 0.0, &config.f, spacing, &mut rng)?;
        let (mg, mf) = (dg.means(), df.means());
        let Some(h) = value_hessian(&mg, &mf) else { continue };
        let measured_value = Measured::of(h.as_ref())?;
        last_min = measured_value.mu;
        if measured_value.mu < MIN_VALUE_EIGENVALUE {
            continue;
        }
        let h = dg.h.as_ref();
        let l_g_sample =
            (0..h.nrows()).map(|i| (0..h.ncols()).map(|j| h[(i, j)] * h[(i, j)]).sum::<f64>()).fold(0.0, f64::max)
                + dg.shift;
        let l_outer_sample = outer_sample_bound(&mg, &df).unwrap_or(f64::INFINITY).max(measured_value.l);
        let reference = QuadraticBilevel::new(form(dx, dy, mf)?, form(dx, dy, mg)?)?;
        return Ok(StochasticQuadratic {
            config: config.clone(),
            seed,
            tries,
            f: df.into_level(config.layout)?,
            g: dg.into_level(config.layout)?,
            reference,
            l_g_sample,
            l_outer_sample,
            measured_g: OnceLock::new(),
            measured_f: OnceLock::new(),
            measured_value,
        });
    }
    Err(KernelError::InvalidParameter {
        name: "config",
        reason: format!(
            "no draw in {MAX_TRIES} gave a strongly convex value function (last smallest eigenvalue of its Hessian: {last_min:e}); \
             lower the cross scales l_xy or raise f.l_xx (fields of the generator's Config, not flags: from the \
             command line, try another --seed or preset)"
        ),
    })
}

impl StochasticQuadratic {
    /// The generator's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The seed it was generated with.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// How many draws the rejection loop took (1 = the first).
    pub fn tries(&self) -> usize {
        self.tries
    }
    /// The mean problem (full-batch oracles, exact references, mean matrices via its forms).
    pub fn reference(&self) -> &QuadraticBilevel {
        &self.reference
    }
    /// Measured spectrum of the mean lower-level Hessian ∂yy g = (1/n_g) Σ h_i h_iᵀ + sI (κ_g).
    /// (A dense eigen-decomposition, once, on first request.)
    pub fn measured_g(&self) -> &Measured {
        self.measured_g.get_or_init(|| Measured::of_or_nan(self.reference.lower().a().expect("g has A").matrix()))
    }
    /// Measured spectrum of the mean ∂yy f.
    /// (Once, on first request.)
    pub fn measured_f(&self) -> &Measured {
        self.measured_f.get_or_init(|| Measured::of_or_nan(self.reference.upper().a().expect("f has A").matrix()))
    }
    /// Measured spectrum of the value function's Hessian H_L (µ and L of the outer problem).
    pub fn measured_value(&self) -> &Measured {
        &self.measured_value
    }
    /// The seeded initial point (law: [`gaussian_x0`]).
    pub fn x0(&self, seed: u64) -> Vec<f64> {
        gaussian_x0(self.config.dim_x, seed)
    }
}

impl BilevelProblem for StochasticQuadratic {
    fn dim_x(&self) -> usize {
        self.config.dim_x
    }
    fn dim_y(&self) -> usize {
        self.config.dim_y
    }
    fn n_samples_f(&self) -> usize {
        self.config.n_samples_f
    }
    fn n_samples_g(&self) -> usize {
        self.config.n_samples_g
    }
    fn f(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        match batch {
            Batch::Full => self.reference.f(x, y, batch),
            Batch::Rows(r) => self.f.value(x, y, r),
        }
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        match batch {
            Batch::Full => self.reference.g(x, y, batch),
            Batch::Rows(r) => self.g.value(x, y, r),
        }
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        match batch {
            Batch::Full => self.reference.grad_x_f(x, y, batch, out),
            Batch::Rows(r) => self.f.grad_x(x, y, r, out),
        }
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        match batch {
            Batch::Full => self.reference.grad_y_f(x, y, batch, out),
            Batch::Rows(r) => self.f.grad_y(x, y, r, out),
        }
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        match batch {
            Batch::Full => self.reference.grad_y_g(x, y, batch, out),
            Batch::Rows(r) => self.g.grad_y(x, y, r, out),
        }
    }
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        match batch {
            Batch::Full => self.reference.hvp(x, y, v, batch, out),
            Batch::Rows(r) => self.g.hvp(v, r, out),
        }
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        match batch {
            Batch::Full => self.reference.cross(x, y, v, batch, out),
            Batch::Rows(r) => self.g.cross(v, r, out),
        }
    }
    /// Full batch every step: the mean problem's hoisted loop (B x + c once). Mini-batches: one
    /// mini-batch gradient per step, on that step's batch.
    fn inner_gradient_steps(&self, x: &[f64], y: &mut [f64], alpha: f64, batches: StepBatches<'_>, work: &mut [f64]) {
        if let StepBatches::Same { batch: Batch::Full, .. } = batches {
            return self.reference.inner_gradient_steps(x, y, alpha, batches, work);
        }
        for t in 0..batches.steps() {
            self.grad_y_g(x, y, batches.batch(t), work);
            ops::axpy(-alpha, work, y);
        }
    }
    fn exact(&self) -> Option<&dyn ExactReference> {
        Some(&self.reference)
    }
    /// µ_g = µ and L_g = g.l_yy as prescribed (the whitened means are exact to rounding, in
    /// both sample forms); `l_g_sample` = max_i ‖h_i‖² + s and `mu_g_sample` = s, the extreme
    /// eigenvalues of the sample Hessians h_i h_iᵀ + sI (exact; s = [`Config::sample_mu`]: µ
    /// for [`SampleHessian::StronglyConvex`], 0 for the rank-one form, whose sample Hessians
    /// are singular); µ_L and L_L from the eigen-decomposition of H_L that the rejection test
    /// ran anyway.
    fn constants(&self) -> ProblemConstants {
        ProblemConstants {
            mu_g: Some(self.config.mu),
            l_g: Some(self.config.g.l_yy),
            l_outer: Some(self.measured_value.l),
            mu_outer: Some(self.measured_value.mu),
            l_g_sample: Some(self.l_g_sample),
            l_outer_sample: Some(self.l_outer_sample),
            // λ_min(h_i h_iᵀ + sI) = s (d_y > 1): 0 for singular rank-one samples.
            mu_g_sample: Some(self.g.shift),
            // g quadratic: its second derivatives are constant. ∂y f of a sample is affine in y
            // (unbounded), and the per-sample cross terms are not bounded here: None.
            cross_lipschitz: Some(0.0),
            hess_lipschitz: Some(0.0),
            ..ProblemConstants::default()
        }
    }
}

impl Dataset for StochasticQuadratic {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    /// The config (with `sample_hessian`) and seed, `sample_mu` (s of the sample y-Hessians
    /// h_i h_iᵀ + sI of g, see [`Config::sample_mu`]), `tries`, the measured spectra
    /// `measured_g`, `measured_f` (mean y-Hessians) and `measured_value` (H_L), each
    /// {mu, l, kappa}, and `l_star`.
    fn parameters(&self) -> Map<String, Value> {
        let mut m = crate::dataset::parameters_of(&self.config, Some(self.seed));
        m.insert("sample_mu".into(), json!(self.config.sample_mu()));
        m.insert("tries".into(), json!(self.tries));
        m.insert("measured_g".into(), json!(self.measured_g()));
        m.insert("measured_f".into(), json!(self.measured_f()));
        m.insert("measured_value".into(), json!(self.measured_value));
        if let Some((_, l)) = self.reference.minimum() {
            m.insert("l_star".into(), json!(l));
        }
        m
    }
    /// Per level (`g_`, `f_` prefixes), rank-one layout: `hess_y_factors` `[n, d_y]` (h_i; the
    /// sample y-Hessian is h_i h_iᵀ + sI with s the parameter `sample_mu` for g, 0 for f),
    /// `hess_x_factors` `[n, d_x]` (p_i), `cross_x_factors` `[n, d_x]` (u_i), `cross_y_factors`
    /// `[n, d_y]` (w_i); dense layout: `hess_y` `[n, d_y, d_y]` (h_i h_iᵀ + sI), `hess_x`
    /// `[n, d_x, d_x]`, `cross` `[n, d_y, d_x]` (B_i of yᵀB_i x); both: `lin_y` `[n, d_y]` (c_i),
    /// `lin_x` `[n, d_x]` (d_i). Then `x_star` `[d_x]` and `L_star` `[1]`.
    fn arrays(&self) -> Vec<Array> {
        let mut out = Vec::new();
        self.g.arrays("g", &mut out);
        self.f.arrays("f", &mut out);
        if let Some((x, l)) = self.reference.minimum() {
            out.push(Array::f64("x_star", vec![x.len()], x.to_vec()));
            out.push(Array::f64("L_star", vec![1], vec![l]));
        }
        out
    }
}
