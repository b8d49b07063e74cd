//! The deterministic quadratic bilevel problem of Arbel & Mairal, *Amortized Implicit
//! Differentiation for Stochastic Bilevel Optimization* (AmIGO, ICLR 2022), §5.1 / App. F.1:
//!
//! ```text
//! f(x, y) = ½ xᵀA_f x + yᵀC_f,        g(x, y) = ½ yᵀA_g y + yᵀB_g x
//! y*(x) = −A_g⁻¹B_g x,   z* = −A_g⁻¹C_f,   L(x) = ½ xᵀA_f x − C_fᵀA_g⁻¹B_g x
//! ∇L(x) = A_f x + B_gᵀz*,   x* = −A_f⁻¹B_gᵀz*,   L* = ½ B_gᵀz*·x*
//! ```
//!
//! x ∈ R^{d_x}, y ∈ R^{d_y}; defaults d_x = 2000, d_y = 1000 (the paper's). The exact
//! quantities come from the kernels' [`QuadraticBilevel::amigo_f1`] (one dense Cholesky of A_g).
//!
//! # Generation law (seeded by `Xoshiro256PlusPlus::seed_from_u64(seed)`, draws in this order)
//!
//! The paper gives no recipe (notes/paper-000_001.md §5.1 "ambiguous"); we choose:
//!
//! 1. A_g = Q_g diag(λ_g) Q_gᵀ with Q_g Haar-distributed on O(d_y) ([`haar_orthonormal`]: faer
//!    QR of a standard Gaussian matrix, columns multiplied by sign(R_jj), Mezzadri 2007) and
//!    λ_g = [`spectrum`]`(L_g/κ_g, L_g, d_y, spacing)`: eigenvalues in [1/κ_g, 1] for L_g = 1.
//! 2. A_f = Q_f diag(λ_f) Q_fᵀ the same way, λ_f in [L/κ_L, L] = [0.1, 1] by default.
//! 3. B_g ([`CrossLaw`]): by default B_g = A_g G with G_ij ~ N(0, 1/d_x), following the AmIGO
//!    code's toy problem (`examples/toy/models.py`: B = AᵀU, U Gaussian). Then y*(x) = −G x and
//!    x* = A_f⁻¹GᵀC_f do not depend on κ_g, so a κ_g sweep compares the same outer problem.
//!    The 1/d_x variance (the code uses 1) makes E‖G x‖² = (d_y/d_x)‖x‖². `CrossLaw::Gaussian`
//!    draws B_g_ij ~ N(0, 1/d_x) independently of A_g instead.
//! 4. C_f_i ~ N(0, 1/d_y) (the code uses N(0, 1)): E‖C_f‖² = 1.
//!
//! Gaussian matrices are filled column by column. Every faer call of the generation runs with
//! `Par::Seq`, so the same seed gives the same data bits whatever the thread count (the
//! Cholesky factorizations behind the exact references are the kernels', with faer's global
//! parallelism). Cost O(d_x³ + d_y³) once
//! (QR, products, and the eigen-decompositions that measure the spectra).
//!
//! Since L's Hessian is A_f, L = λ_max(A_f), µ = λ_min(A_f) and κ_L = cond(A_f); L_g = λ_max(A_g),
//! κ_g = cond(A_g). The problem reports them as measured ([`Measured`], eigenvalues of the
//! built matrices), not as requested.

use crate::dataset::{Array, ArrayData, Dataset, GeneratorInfo};
use bilevel_kernels::error::{KernelError, Result};
use bilevel_kernels::models::QuadraticBilevel;
use bilevel_kernels::problem::{Batch, BilevelProblem, ExactReference};
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::householder::{
    apply_block_householder_sequence_on_the_left_in_place_scratch,
    apply_block_householder_sequence_on_the_left_in_place_with_conj,
};
use faer::linalg::matmul::matmul;
use faer::linalg::qr::no_pivoting::factor::{qr_in_place, qr_in_place_scratch, recommended_block_size};
use faer::{Accum, Conj, Mat, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Map, Value};

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "quadratic",
    summary: "AmIGO App. F.1 quadratic: f = ½xᵀA_f x + yᵀC_f, g = ½yᵀA_g y + yᵀB_g x, prescribed spectra",
    presets: &["tiny", "small", "paper"],
};

/// Largest condition number accepted (the paper sweeps κ_g up to 1e7; beyond 1e12 an f64
/// Cholesky of A_g no longer gives meaningful "exact" references).
pub const MAX_KAPPA: f64 = 1e12;

/// How eigenvalues are spread between µ = L/κ and L.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spacing {
    /// λ_k = µ^{1−t_k} L^{t_k}, t_k = k/(d−1): geometric, uniform in log scale (the default).
    #[default]
    Log,
    /// λ_k = µ + t_k (L − µ): uniform.
    Linear,
}

impl Spacing {
    pub fn name(self) -> &'static str {
        match self {
            Spacing::Log => "log",
            Spacing::Linear => "linear",
        }
    }
    /// Parses `"log"` or `"linear"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "log" => Ok(Spacing::Log),
            "linear" => Ok(Spacing::Linear),
            _ => Err(KernelError::InvalidParameter {
                name: "spacing",
                reason: format!("unknown spacing `{s}` (expected `log` or `linear`)"),
            }),
        }
    }
}

/// The law of the cross matrix B_g (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrossLaw {
    /// B_g = A_g G, G_ij ~ N(0, 1/d_x): y*(x) = −G x independent of κ_g (AmIGO code).
    #[default]
    HessianTimesGaussian,
    /// B_g_ij ~ N(0, 1/d_x), independent of A_g.
    Gaussian,
}

impl CrossLaw {
    pub fn name(self) -> &'static str {
        match self {
            CrossLaw::HessianTimesGaussian => "hessian_times_gaussian",
            CrossLaw::Gaussian => "gaussian",
        }
    }
}

/// Generator settings. `Default` is the paper's: d_x = 2000, d_y = 1000, L = L_g = 1, κ_L = 10,
/// κ_g = 10 (the paper sweeps κ_g ∈ {10^i, i = 0..7}), log-spaced eigenvalues.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub dim_x: usize,
    pub dim_y: usize,
    /// Requested cond(A_g) ≥ 1.
    pub kappa_g: f64,
    /// Requested cond(A_f) = κ_L ≥ 1.
    pub kappa_f: f64,
    /// Requested λ_max(A_g) = L_g > 0.
    pub l_g: f64,
    /// Requested λ_max(A_f) = L > 0.
    pub l_f: f64,
    pub spacing: Spacing,
    pub cross: CrossLaw,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dim_x: 2000,
            dim_y: 1000,
            kappa_g: 10.0,
            kappa_f: 10.0,
            l_g: 1.0,
            l_f: 1.0,
            spacing: Spacing::Log,
            cross: CrossLaw::HessianTimesGaussian,
        }
    }
}

impl Config {
    /// Named sizes: `"tiny"` (d_x = 20, d_y = 10), `"small"` (200, 100), `"paper"` (2000, 1000);
    /// the other fields at their defaults.
    pub fn preset(name: &str) -> Result<Self> {
        let (dim_x, dim_y) = match name {
            "tiny" => (20, 10),
            "small" => (200, 100),
            "paper" => (2000, 1000),
            _ => {
                return Err(KernelError::InvalidParameter {
                    name: "preset",
                    reason: format!("unknown preset `{name}` for `quadratic` (expected one of {:?})", INFO.presets),
                })
            }
        };
        Ok(Self { dim_x, dim_y, ..Self::default() })
    }

    /// Checks sizes ≥ 1, 1 ≤ κ ≤ [`MAX_KAPPA`], L > 0 finite.
    pub fn validate(&self) -> Result<()> {
        check_dim("dim_x", self.dim_x)?;
        check_dim("dim_y", self.dim_y)?;
        check_kappa("kappa_g", self.kappa_g)?;
        check_kappa("kappa_f", self.kappa_f)?;
        bilevel_kernels::error::check_positive("l_g", self.l_g)?;
        bilevel_kernels::error::check_positive("l_f", self.l_f)
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("dim_x".into(), json!(self.dim_x));
        m.insert("dim_y".into(), json!(self.dim_y));
        m.insert("kappa_g".into(), json!(self.kappa_g));
        m.insert("kappa_f".into(), json!(self.kappa_f));
        m.insert("l_g".into(), json!(self.l_g));
        m.insert("l_f".into(), json!(self.l_f));
        m.insert("spacing".into(), json!(self.spacing.name()));
        m.insert("cross".into(), json!(self.cross.name()));
        m
    }
}

pub(crate) fn check_dim(name: &'static str, d: usize) -> Result<()> {
    if d == 0 {
        return Err(KernelError::InvalidParameter { name, reason: "must be at least 1".into() });
    }
    Ok(())
}

pub(crate) fn check_kappa(name: &'static str, kappa: f64) -> Result<()> {
    if !(kappa.is_finite() && (1.0..=MAX_KAPPA).contains(&kappa)) {
        return Err(KernelError::InvalidParameter {
            name,
            reason: format!("condition number must be in [1, {MAX_KAPPA:e}], got {kappa}"),
        });
    }
    Ok(())
}

/// d eigenvalues from `mu` to `l` (ascending) by `spacing`; the end points are exactly `mu`
/// and `l` (d = 1 gives `[l]`). Precondition: 0 ≤ mu ≤ l (mu > 0 for [`Spacing::Log`]).
pub fn spectrum(mu: f64, l: f64, d: usize, spacing: Spacing) -> Vec<f64> {
    if d == 1 {
        return vec![l];
    }
    (0..d)
        .map(|k| {
            let t = k as f64 / (d - 1) as f64;
            match k {
                0 => mu,
                _ if k == d - 1 => l,
                _ => match spacing {
                    Spacing::Log => (mu.ln() + t * (l.ln() - mu.ln())).exp(),
                    Spacing::Linear => mu + t * (l - mu),
                },
            }
        })
        .collect()
}

/// An `nrows × ncols` matrix of i.i.d. N(0, 1) entries, filled column by column.
pub fn gaussian_mat(nrows: usize, ncols: usize, rng: &mut Xoshiro256PlusPlus) -> Mat<f64> {
    let mut m = Mat::zeros(nrows, ncols);
    for j in 0..ncols {
        for i in 0..nrows {
            m[(i, j)] = rng.sample(StandardNormal);
        }
    }
    m
}

/// An `nrows × ncols` matrix (ncols ≤ nrows) with orthonormal columns, Haar-distributed: the
/// thin Q of a QR of a standard Gaussian matrix with column j multiplied by sign(R_jj)
/// (F. Mezzadri, *How to generate random matrices from the classical compact groups*, 2007;
/// without the sign fix, Q is not Haar). Sequential faer QR (`Par::Seq`): deterministic bits.
pub fn haar_orthonormal(nrows: usize, ncols: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Mat<f64>> {
    if ncols > nrows || ncols == 0 {
        return Err(KernelError::InvalidParameter {
            name: "ncols",
            reason: format!("orthonormal columns need 1 <= ncols <= nrows, got {ncols} > {nrows}"),
        });
    }
    let mut a = gaussian_mat(nrows, ncols, rng);
    let bs = recommended_block_size::<f64>(nrows, ncols);
    let mut coeff = Mat::<f64>::zeros(bs, ncols);
    let req = qr_in_place_scratch::<f64>(nrows, ncols, bs, Par::Seq, Default::default())
        .or(apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(nrows, bs, ncols));
    let mut mem = MemBuffer::new(req);
    qr_in_place(a.as_mut(), coeff.as_mut(), Par::Seq, MemStack::new(&mut mem), Default::default());
    let signs: Vec<f64> = (0..ncols).map(|j| if a[(j, j)] < 0.0 { -1.0 } else { 1.0 }).collect();
    // Householder basis: unit lower trapezoid (the R part above the diagonal cleared).
    for j in 0..ncols {
        for i in 0..j {
            a[(i, j)] = 0.0;
        }
        a[(j, j)] = 1.0;
    }
    let mut q = Mat::<f64>::identity(nrows, ncols);
    apply_block_householder_sequence_on_the_left_in_place_with_conj(
        a.as_ref(),
        coeff.as_ref(),
        Conj::No,
        q.as_mut(),
        Par::Seq,
        MemStack::new(&mut mem),
    );
    for (j, s) in signs.into_iter().enumerate() {
        if s < 0.0 {
            for i in 0..nrows {
                q[(i, j)] = -q[(i, j)];
            }
        }
    }
    Ok(q)
}

/// Q diag(λ) Qᵀ for a square orthogonal Q, symmetrized exactly ((M + Mᵀ)/2), sequential.
pub fn with_spectrum(q: MatRef<'_, f64>, lambda: &[f64]) -> Mat<f64> {
    let n = q.nrows();
    let ql = Mat::from_fn(n, lambda.len(), |i, j| q[(i, j)] * lambda[j]);
    let mut m = Mat::zeros(n, n);
    matmul(m.as_mut(), Accum::Replace, ql.as_ref(), q.transpose(), 1.0, Par::Seq);
    symmetrize(&m)
}

/// (M + Mᵀ)/2: exactly symmetric.
pub fn symmetrize(m: &Mat<f64>) -> Mat<f64> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| 0.5 * (m[(i, j)] + m[(j, i)]))
}

/// Eigenvalues (ascending) of a symmetric matrix, read from its lower triangle; sequential faer
/// eigen-solver, O(n³).
pub fn symmetric_eigenvalues(a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    let n = a.nrows();
    bilevel_kernels::error::check_len("matrix columns", n, a.ncols())?;
    let mut s = Diag::<f64>::zeros(n);
    let mut mem =
        MemBuffer::new(self_adjoint_evd_scratch::<f64>(n, ComputeEigenvectors::No, Par::Seq, Default::default()));
    self_adjoint_evd(a, s.as_mut(), None, Par::Seq, MemStack::new(&mut mem), Default::default())
        .map_err(|_| KernelError::Breakdown { iteration: 0, reason: "dense eigen-decomposition did not converge" })?;
    let mut v: Vec<f64> = s.column_vector().iter().copied().collect();
    v.sort_by(f64::total_cmp);
    Ok(v)
}

/// A spectrum as measured: all eigenvalues (ascending), µ = λ_min, L = λ_max, κ = L/µ
/// (+∞ when µ ≤ 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub eigenvalues: Vec<f64>,
    pub mu: f64,
    pub l: f64,
    pub kappa: f64,
}

impl Measured {
    /// Measures the spectrum of a symmetric matrix.
    pub fn of(a: MatRef<'_, f64>) -> Result<Self> {
        let eigenvalues = symmetric_eigenvalues(a)?;
        let (mu, l) = (eigenvalues[0], eigenvalues[eigenvalues.len() - 1]);
        let kappa = if mu > 0.0 { l / mu } else { f64::INFINITY };
        Ok(Self { eigenvalues, mu, l, kappa })
    }
    fn to_json(&self) -> Value {
        json!({ "mu": self.mu, "l": self.l, "kappa": self.kappa })
    }
}

/// The seeded initial point shared by the quadratic generators (used by the CLI):
/// x0 ~ N(0, I_dim), drawn from `Xoshiro256PlusPlus::seed_from_u64(seed)` advanced by one
/// `jump()` (2^128 steps), so it never reuses the draws that generated a problem with the
/// same seed.
pub fn gaussian_x0(dim: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    rng.jump();
    (0..dim).map(|_| rng.sample(StandardNormal)).collect()
}

/// Where a [`QuadraticProblem`] came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Generated {
        config: Config,
        seed: u64,
    },
    /// Loaded by [`QuadraticProblem::from_arrays`], with the parameters given then.
    Loaded {
        parameters: Map<String, Value>,
    },
}

/// The AmIGO App. F.1 quadratic with its data, exact references (delegated to
/// [`QuadraticBilevel`]) and measured spectra of A_f and A_g.
#[derive(Debug)]
pub struct QuadraticProblem {
    source: Source,
    bilevel: QuadraticBilevel,
    measured_f: Measured,
    measured_g: Measured,
}

/// Generates the problem of the module doc from `config` and `seed`.
pub fn generate(config: &Config, seed: u64) -> Result<QuadraticProblem> {
    config.validate()?;
    let (dx, dy) = (config.dim_x, config.dim_y);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let q_g = haar_orthonormal(dy, dy, &mut rng)?;
    let a_g = with_spectrum(q_g.as_ref(), &spectrum(config.l_g / config.kappa_g, config.l_g, dy, config.spacing));
    let q_f = haar_orthonormal(dx, dx, &mut rng)?;
    let a_f = with_spectrum(q_f.as_ref(), &spectrum(config.l_f / config.kappa_f, config.l_f, dx, config.spacing));
    let s = 1.0 / (dx as f64).sqrt();
    let g = gaussian_mat(dy, dx, &mut rng) * faer::Scale(s);
    let b_g = match config.cross {
        CrossLaw::Gaussian => g,
        CrossLaw::HessianTimesGaussian => {
            let mut b = Mat::zeros(dy, dx);
            matmul(b.as_mut(), Accum::Replace, a_g.as_ref(), g.as_ref(), 1.0, Par::Seq);
            b
        }
    };
    let s = 1.0 / (dy as f64).sqrt();
    let c_f: Vec<f64> = (0..dy).map(|_| s * rng.sample::<f64, _>(StandardNormal)).collect();
    QuadraticProblem::build(Source::Generated { config: config.clone(), seed }, a_f, c_f, a_g, b_g)
}

/// Looks up a named f64 array (I64 arrays are converted) or says which one is missing.
fn find<'a>(arrays: &'a [Array], name: &'static str) -> Result<&'a Array> {
    arrays.iter().find(|a| a.name == name).ok_or_else(|| KernelError::InvalidData {
        what: "quadratic problem",
        reason: format!("missing array `{name}` (a quadratic needs A_f, C_f, A_g and B_g)"),
    })
}

fn values(a: &Array) -> Vec<f64> {
    match &a.data {
        ArrayData::F64(v) => v.clone(),
        ArrayData::I64(v) => v.iter().map(|&x| x as f64).collect(),
    }
}

fn matrix(a: &Array, name: &'static str, rows: Option<usize>, cols: Option<usize>) -> Result<Mat<f64>> {
    let bad = |why: String| KernelError::InvalidData { what: "quadratic problem", reason: format!("`{name}` {why}") };
    let [r, c] = a.shape[..] else {
        return Err(bad(format!("must be a 2-d array, got shape {:?}", a.shape)));
    };
    if rows.is_some_and(|n| n != r) || cols.is_some_and(|n| n != c) {
        return Err(bad(format!(
            "has shape {:?}, expected [{}, {}]",
            a.shape,
            rows.map_or("_".to_string(), |n| n.to_string()),
            cols.map_or("_".to_string(), |n| n.to_string())
        )));
    }
    let v = values(a);
    if v.len() != r * c {
        return Err(bad(format!("holds {} values for shape {:?}", v.len(), a.shape)));
    }
    Ok(Mat::from_fn(r, c, |i, j| v[i * c + j]))
}

impl QuadraticProblem {
    fn build(source: Source, a_f: Mat<f64>, c_f: Vec<f64>, a_g: Mat<f64>, b_g: Mat<f64>) -> Result<Self> {
        bilevel_kernels::linop::check_symmetric(a_f.as_ref()).map_err(|e| named("A_f", e))?;
        bilevel_kernels::linop::check_symmetric(a_g.as_ref()).map_err(|e| named("A_g", e))?;
        let measured_f = Measured::of(a_f.as_ref())?;
        let measured_g = Measured::of(a_g.as_ref())?;
        for (name, m) in [("A_f", &measured_f), ("A_g", &measured_g)] {
            if m.mu <= 0.0 {
                return Err(KernelError::InvalidData {
                    what: "quadratic problem",
                    reason: format!("`{name}` is not positive definite: smallest eigenvalue {:e}", m.mu),
                });
            }
        }
        let bilevel = QuadraticBilevel::amigo_f1(a_f, c_f, a_g, b_g)?;
        Ok(Self { source, bilevel, measured_f, measured_g })
    }

    /// Loads a quadratic given as the arrays `A_f` `[d_x, d_x]`, `C_f` `[d_y]` (or `[d_y, 1]`),
    /// `A_g` `[d_y, d_y]`, `B_g` `[d_y, d_x]` (row-major; other arrays, e.g. `x_star`, are ignored
    /// and recomputed). Errors: a missing array or a wrong shape ([`KernelError::InvalidData`]),
    /// non-finite values, a non-symmetric Hessian ([`KernelError::InvalidData`] naming it, with
    /// the asymmetry), a Hessian that is not positive definite.
    pub fn from_arrays(parameters: Map<String, Value>, arrays: &[Array]) -> Result<Self> {
        let a_f = matrix(find(arrays, "A_f")?, "A_f", None, None)?;
        let dx = a_f.nrows();
        if a_f.ncols() != dx {
            return Err(KernelError::InvalidData {
                what: "quadratic problem",
                reason: format!("`A_f` must be square, got shape [{dx}, {}]", a_f.ncols()),
            });
        }
        let a_g_arr = find(arrays, "A_g")?;
        let dy = a_g_arr.shape.first().copied().unwrap_or(0);
        let a_g = matrix(a_g_arr, "A_g", Some(dy), Some(dy))?;
        let b_g = matrix(find(arrays, "B_g")?, "B_g", Some(dy), Some(dx))?;
        let c_arr = find(arrays, "C_f")?;
        if !(c_arr.shape == [dy] || c_arr.shape == [dy, 1]) {
            return Err(KernelError::InvalidData {
                what: "quadratic problem",
                reason: format!("`C_f` has shape {:?}, expected [{dy}]", c_arr.shape),
            });
        }
        let c_f = values(c_arr);
        if c_f.len() != dy {
            return Err(KernelError::InvalidData {
                what: "quadratic problem",
                reason: format!("`C_f` holds {} values, expected {dy}", c_f.len()),
            });
        }
        for (name, m) in [("A_f", &a_f), ("A_g", &a_g), ("B_g", &b_g)] {
            let (r, c) = (m.nrows(), m.ncols());
            if let Some((i, j)) =
                (0..r).flat_map(|i| (0..c).map(move |j| (i, j))).find(|&(i, j)| !m[(i, j)].is_finite())
            {
                return Err(KernelError::InvalidData {
                    what: "quadratic problem",
                    reason: format!("`{name}` has a non-finite value at [{i}, {j}]"),
                });
            }
        }
        bilevel_kernels::error::check_finite("C_f", &c_f)?;
        Self::build(Source::Loaded { parameters }, a_f, c_f, a_g, b_g)
    }

    pub fn source(&self) -> &Source {
        &self.source
    }
    /// The kernels' problem (data and closed forms).
    pub fn bilevel(&self) -> &QuadraticBilevel {
        &self.bilevel
    }
    /// Spectrum of A_f as measured: µ, L and κ_L of the outer value function L.
    pub fn measured_f(&self) -> &Measured {
        &self.measured_f
    }
    /// Spectrum of A_g as measured: µ_g, L_g and κ_g.
    pub fn measured_g(&self) -> &Measured {
        &self.measured_g
    }
    pub fn a_f(&self) -> MatRef<'_, f64> {
        self.bilevel.upper().p().expect("F.1 has A_f").matrix()
    }
    pub fn c_f(&self) -> &[f64] {
        self.bilevel.upper().c().expect("F.1 has C_f")
    }
    pub fn a_g(&self) -> MatRef<'_, f64> {
        self.bilevel.lower().a().expect("F.1 has A_g").matrix()
    }
    pub fn b_g(&self) -> MatRef<'_, f64> {
        self.bilevel.lower().b().expect("F.1 has B_g")
    }
    /// The seeded initial point (law: [`gaussian_x0`]).
    pub fn x0(&self, seed: u64) -> Vec<f64> {
        gaussian_x0(self.dim_x(), seed)
    }
    /// (x*, L*): A_f is positive definite (checked at construction), so it exists.
    pub fn minimum(&self) -> (&[f64], f64) {
        self.bilevel.minimum().expect("A_f is positive definite, so L has a minimizer")
    }
}

/// Names the matrix in a symmetry/finiteness error.
fn named(name: &'static str, e: KernelError) -> KernelError {
    match e {
        KernelError::NotSymmetric { row, col, asymmetry } => KernelError::InvalidData {
            what: "quadratic problem",
            reason: format!("`{name}` is not symmetric: |{name}[{row},{col}] - {name}[{col},{row}]| = {asymmetry:e}"),
        },
        other => other,
    }
}

impl BilevelProblem for QuadraticProblem {
    fn dim_x(&self) -> usize {
        self.bilevel.dim_x()
    }
    fn dim_y(&self) -> usize {
        self.bilevel.dim_y()
    }
    fn f(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        self.bilevel.f(x, y, batch)
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        self.bilevel.g(x, y, batch)
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.bilevel.grad_x_f(x, y, batch, out)
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.bilevel.grad_y_f(x, y, batch, out)
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.bilevel.grad_y_g(x, y, batch, out)
    }
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.bilevel.hvp(x, y, v, batch, out)
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        self.bilevel.cross(x, y, v, batch, out)
    }
    fn inner_gradient_steps(
        &self,
        x: &[f64],
        y: &mut [f64],
        alpha: f64,
        steps: usize,
        batch: Batch<'_>,
        work: &mut [f64],
    ) {
        self.bilevel.inner_gradient_steps(x, y, alpha, steps, batch, work)
    }
    fn exact(&self) -> Option<&dyn ExactReference> {
        Some(&self.bilevel)
    }
}

impl Dataset for QuadraticProblem {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    /// The config and seed (or the parameters given to [`QuadraticProblem::from_arrays`]),
    /// plus the measured spectra `measured_f`/`measured_g` ({mu, l, kappa}) and `l_star`.
    fn parameters(&self) -> Map<String, Value> {
        let mut m = match &self.source {
            Source::Generated { config, seed } => {
                let mut m = config.to_json();
                m.insert("seed".into(), json!(seed));
                m
            }
            Source::Loaded { parameters } => parameters.clone(),
        };
        m.insert("measured_f".into(), self.measured_f.to_json());
        m.insert("measured_g".into(), self.measured_g.to_json());
        m.insert("l_star".into(), json!(self.minimum().1));
        m
    }
    /// `A_f` `[d_x, d_x]`, `C_f` `[d_y]`, `A_g` `[d_y, d_y]`, `B_g` `[d_y, d_x]`, `x_star` `[d_x]`,
    /// `L_star` `[1]`.
    fn arrays(&self) -> Vec<Array> {
        let (x_star, l_star) = self.minimum();
        vec![
            Array::from_mat("A_f", self.a_f()),
            Array::f64("C_f", vec![self.dim_y()], self.c_f().to_vec()),
            Array::from_mat("A_g", self.a_g()),
            Array::from_mat("B_g", self.b_g()),
            Array::f64("x_star", vec![self.dim_x()], x_star.to_vec()),
            Array::f64("L_star", vec![1], vec![l_star]),
        ]
    }
}
