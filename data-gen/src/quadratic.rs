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
//! Since L's Hessian is A_f, L_L = λ_max(A_f), µ_L = λ_min(A_f) and κ_L = cond(A_f);
//! L_g = λ_max(A_g), κ_g = cond(A_g). [`BilevelProblem::constants`] returns the prescribed
//! values (µ_g = L_g/κ_g, L_g, µ_L = L/κ_L, L_L = L: exact to rounding, no eigen-solve); a
//! loaded quadratic does not know them (`None`). [`QuadraticProblem::measured_g`] and
//! [`measured_f`](QuadraticProblem::measured_f) measure the spectra of the built matrices by a
//! dense eigen-decomposition, on first request only (the export's parameters ask for them).

use crate::dataset::{Array, ArrayData, Dataset, GeneratorInfo};
pub use crate::random_matrix::{
    gaussian_mat, haar_orthonormal, spectrum, symmetric_eigenvalues, symmetrize, with_spectrum, Measured, Spacing,
};
use bilevel_kernels::error::{KernelError, Result};
use bilevel_kernels::models::QuadraticBilevel;
use bilevel_kernels::problem::{BilevelProblem, ExactReference, ProblemConstants};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "quadratic",
    summary: "AmIGO App. F.1 quadratic: f = ½xᵀA_f x + yᵀC_f, g = ½yᵀA_g y + yᵀB_g x, prescribed spectra",
    presets: &["tiny", "small", "paper"],
};

/// Largest condition number accepted (the paper sweeps κ_g up to 1e7; beyond 1e12 an f64
/// Cholesky of A_g no longer gives meaningful "exact" references).
pub const MAX_KAPPA: f64 = 1e12;

/// The law of the cross matrix B_g (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossLaw {
    /// B_g = A_g G, G_ij ~ N(0, 1/d_x): y*(x) = −G x independent of κ_g (AmIGO code).
    #[default]
    HessianTimesGaussian,
    /// B_g_ij ~ N(0, 1/d_x), independent of A_g.
    Gaussian,
}

impl CrossLaw {
    /// The name used in configs and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            CrossLaw::HessianTimesGaussian => "hessian_times_gaussian",
            CrossLaw::Gaussian => "gaussian",
        }
    }
}

/// Generator settings. `Default` is the paper's: d_x = 2000, d_y = 1000, L = L_g = 1, κ_L = 10,
/// κ_g = 10 (the paper sweeps κ_g ∈ {10^i, i = 0..7}), log-spaced eigenvalues.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Config {
    /// Outer dimension d_x.
    pub dim_x: usize,
    /// Inner dimension d_y.
    pub dim_y: usize,
    /// Requested cond(A_g) ≥ 1.
    pub kappa_g: f64,
    /// Requested cond(A_f) = κ_L ≥ 1.
    pub kappa_f: f64,
    /// Requested λ_max(A_g) = L_g > 0.
    pub l_g: f64,
    /// Requested λ_max(A_f) = L > 0.
    pub l_f: f64,
    /// How the eigenvalues are spread.
    pub spacing: Spacing,
    /// The law of B_g.
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
            _ => return Err(INFO.unknown_preset(name)),
        };
        Ok(Self { dim_x, dim_y, ..Self::default() })
    }

    /// Bytes of the dense f64 matrices [`generate`] and the exact references hold at their peak,
    /// an upper bound: 8·(6 d_x² + 4 d_y² + 3 d_x d_y) — d_x²: Q_f, A_f, the two temporaries of
    /// Q diag(λ) Qᵀ, H_L = A_f with its symmetrized copy and Cholesky factor (the same storage
    /// later serves the eigen-decomposition that measures A_f); d_y²: Q_g, A_g, the Cholesky
    /// factor of A_g, a temporary; d_x d_y: G, B_g, M = −A_g⁻¹B_g. Saturates instead of
    /// overflowing.
    pub fn memory_bytes(&self) -> u128 {
        let (dx, dy) = (self.dim_x, self.dim_y);
        bytes_of(&[(6, &[dx, dx]), (4, &[dy, dy]), (3, &[dx, dy])])
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
}

/// Σ coefficient · (bytes of a product of sizes), saturating.
pub(crate) fn bytes_of(terms: &[(u128, &[usize])]) -> u128 {
    terms
        .iter()
        .fold(0u128, |acc, &(k, sizes)| acc.saturating_add(k.saturating_mul(bilevel_kernels::memory::f64_bytes(sizes))))
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
            reason: format!("condition number must be in [1, {MAX_KAPPA:e}], got {kappa:?}"),
        });
    }
    Ok(())
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
    /// Drawn by [`generate`].
    Generated {
        /// The generator's settings.
        config: Config,
        /// The seed.
        seed: u64,
    },
    /// Loaded by [`QuadraticProblem::from_arrays`], with the parameters given then.
    Loaded {
        /// The parameters given to [`QuadraticProblem::from_arrays`].
        parameters: Map<String, Value>,
    },
}

/// The AmIGO App. F.1 quadratic with its data, exact references (delegated to
/// [`QuadraticBilevel`]) and measured spectra of A_f and A_g.
#[derive(Debug)]
pub struct QuadraticProblem {
    source: Source,
    bilevel: QuadraticBilevel,
    /// The prescribed constants (generated), or none known (loaded).
    constants: ProblemConstants,
    measured_f: OnceLock<Measured>,
    measured_g: OnceLock<Measured>,
}

/// Generates the problem of the module doc from `config` and `seed`. Errors: an invalid
/// config ([`Config::validate`]), and [`KernelError::TooLarge`] before anything is allocated
/// when the matrices ([`Config::memory_bytes`]) do not fit in the memory available.
pub fn generate(config: &Config, seed: u64) -> Result<QuadraticProblem> {
    config.validate()?;
    let (dx, dy) = (config.dim_x, config.dim_y);
    bilevel_kernels::memory::check_fits(
        || {
            format!(
                "the quadratic at d_x = {dx}, d_y = {dy} (dense A_f, A_g, B_g, their Haar factors, Cholesky \
                 factors and workspaces: 6 d_x² + 4 d_y² + 3 d_x d_y f64; choose smaller --dx/--dy or a smaller \
                 preset)"
            )
        },
        config.memory_bytes(),
    )?;
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

/// ‖M‖₂: √λ_max(MᵀM) (or MMᵀ, the smaller side), dense up to the spectrum module's size,
/// Lanczos above (relative accuracy 1e-10).
fn spectral_norm(m: faer::MatRef<'_, f64>) -> Result<f64> {
    use bilevel_kernels::linop::FnOp;
    let (r, c) = (m.nrows(), m.ncols());
    let wide = c > r;
    let n = if wide { r } else { c };
    if n == 0 {
        return Ok(0.0);
    }
    let op = FnOp::symmetric(n, |v: &[f64], out: &mut [f64]| {
        let v = faer::ColRef::from_slice(v);
        let w = if wide { m * (m.transpose() * v) } else { m.transpose() * (m * v) };
        out.iter_mut().zip(w.iter()).for_each(|(o, x)| *o = *x);
    });
    Ok(bilevel_kernels::spectrum::largest_eigenvalue(&op, 1e-10)?.max(0.0).sqrt())
}

impl QuadraticProblem {
    fn build(source: Source, a_f: Mat<f64>, c_f: Vec<f64>, a_g: Mat<f64>, b_g: Mat<f64>) -> Result<Self> {
        bilevel_kernels::linop::check_symmetric(a_f.as_ref()).map_err(|e| named("A_f", e))?;
        bilevel_kernels::linop::check_symmetric(a_g.as_ref()).map_err(|e| named("A_g", e))?;
        let constants = match &source {
            Source::Generated { config: c, .. } => {
                let (mu_g, l_g) = (Some(c.l_g / c.kappa_g), Some(c.l_g));
                // One sample: the per-sample constants are the problem's.
                ProblemConstants {
                    mu_g,
                    l_g,
                    l_outer: Some(c.l_f),
                    mu_outer: Some(c.l_f / c.kappa_f),
                    l_g_sample: l_g,
                    mu_g_sample: mu_g,
                    ..ProblemConstants::default()
                }
            }
            Source::Loaded { .. } => ProblemConstants::default(),
        };
        // What the theorems need beyond the spectra, exact for every F.1 instance (generated or
        // loaded): f = ½xᵀA_f x + yᵀC_f has ∂y f = C_f (constant) and is λ_max(A_f)-smooth in
        // (x, y); g = ½yᵀA_g y + yᵀB_g x has ∂x∂y g = B_gᵀ and constant second derivatives.
        let constants = ProblemConstants {
            cross_bound: Some(spectral_norm(b_g.as_ref())?),
            grad_y_f_bound: Some(c_f.iter().map(|v| v * v).sum::<f64>().sqrt()),
            l_f: Some(match constants.l_outer.filter(|_| matches!(source, Source::Generated { .. })) {
                Some(l) => l,
                None => spectral_norm(a_f.as_ref())?,
            }),
            cross_lipschitz: Some(0.0),
            hess_lipschitz: Some(0.0),
            ..constants
        };
        let (measured_f, measured_g) = (OnceLock::new(), OnceLock::new());
        if let Source::Loaded { .. } = source {
            // g strongly convex and L strongly convex (H_L = A_f), both as well conditioned as
            // the generators allow.
            for (name, m, cell) in [("A_f", &a_f, &measured_f), ("A_g", &a_g, &measured_g)] {
                if let Some(measured) = check_hessian(name, m.as_ref())? {
                    let _ = cell.set(measured);
                }
            }
        }
        let bilevel = QuadraticBilevel::amigo_f1(a_f, c_f, a_g, b_g)?;
        // x* and L* now (the kernels cache them): a failed factorization of H_L = A_f, or an
        // x* that overflows, is an error here rather than a NaN L* (or a panic) later.
        if bilevel.minimum().is_none() {
            return Err(KernelError::InvalidData {
                what: "quadratic problem",
                reason: "the outer value function L has no finite minimizer: its Hessian H_L = A_f could not be \
                         factored, or x* = −A_f⁻¹B_gᵀz* (z* = −A_g⁻¹C_f) is not finite, so L* would be NaN; \
                         check the scales of `A_f`, `B_g` and `C_f`"
                    .into(),
            });
        }
        Ok(Self { source, bilevel, constants, measured_f, measured_g })
    }

    /// Loads a quadratic given as the arrays `A_f` `[d_x, d_x]`, `C_f` `[d_y]` (or `[d_y, 1]`),
    /// `A_g` `[d_y, d_y]`, `B_g` `[d_y, d_x]` (row-major; other arrays, e.g. `x_star`, are ignored
    /// and recomputed). Errors, each a [`KernelError::InvalidData`] naming the array: a missing
    /// array, a wrong shape, an empty one (d_x = 0 or d_y = 0), non-finite values, a
    /// non-symmetric Hessian (with the asymmetry), a Hessian A_f or A_g that is not positive
    /// definite or whose condition number exceeds [`LOADED_MAX_KAPPA`] (with the measured λ_min,
    /// λ_max and κ), and an outer minimum x*, L* that is not finite (H_L = A_f not factored, or
    /// an overflow). The spectra are measured by a dense symmetric eigen-decomposition up to
    /// [`DENSE_MAX_DIM`](bilevel_kernels::spectrum::DENSE_MAX_DIM) = 1000 rows; above, by a
    /// Cholesky (its failure proves the matrix is not positive definite) and Lanczos estimates of
    /// λ_max(A) and 1/λ_max(A⁻¹); should a Lanczos estimate not converge, κ is not checked and
    /// the Cholesky alone admits the matrix. Cost: O(d³) per Hessian, once.
    pub fn from_arrays(parameters: Map<String, Value>, arrays: &[Array]) -> Result<Self> {
        let empty = |name: &str, shape: &[usize]| KernelError::InvalidData {
            what: "quadratic problem",
            reason: format!("`{name}` is empty (shape {shape:?}): a quadratic needs d_x ≥ 1 and d_y ≥ 1"),
        };
        let a_f_arr = find(arrays, "A_f")?;
        let a_f = matrix(a_f_arr, "A_f", None, None)?;
        let dx = a_f.nrows();
        if a_f.ncols() != dx {
            return Err(KernelError::InvalidData {
                what: "quadratic problem",
                reason: format!("`A_f` must be square, got shape [{dx}, {}]", a_f.ncols()),
            });
        }
        if dx == 0 {
            return Err(empty("A_f", &a_f_arr.shape));
        }
        let a_g_arr = find(arrays, "A_g")?;
        let dy = a_g_arr.shape.first().copied().unwrap_or(0);
        let a_g = matrix(a_g_arr, "A_g", Some(dy), Some(dy))?;
        if dy == 0 {
            return Err(empty("A_g", &a_g_arr.shape));
        }
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

    /// Loads a problem directory read by [`load_dir`](crate::export::load_dir) (what `--problem-dir`
    /// runs): its manifest's `generator` must be this generator's (`quadratic`; a hand-written
    /// directory says so too), then [`from_arrays`](Self::from_arrays) on its parameters and
    /// arrays. Errors: [`KernelError::InvalidData`] naming both generators for a directory
    /// exported by another one, and every error of [`from_arrays`](Self::from_arrays).
    pub fn from_loaded(loaded: &crate::export::LoadedDataset) -> Result<Self> {
        if loaded.generator != INFO.name {
            return Err(KernelError::InvalidData {
                what: "problem directory",
                reason: format!(
                    "its manifest.json says generator `{}`, but only `{}` problems can be loaded (export one \
                     with the `{}` generator, or write `\"generator\": \"{}\"` in a hand-made manifest)",
                    loaded.generator, INFO.name, INFO.name, INFO.name
                ),
            });
        }
        Self::from_arrays(loaded.parameters.clone(), &loaded.arrays)
    }

    /// Where the problem came from.
    pub fn source(&self) -> &Source {
        &self.source
    }
    /// The kernels' problem (data and closed forms).
    pub fn bilevel(&self) -> &QuadraticBilevel {
        &self.bilevel
    }
    /// Spectrum of A_f as measured (a dense eigen-decomposition, once, on first request): µ, L
    /// and κ_L of the outer value function L.
    pub fn measured_f(&self) -> &Measured {
        self.measured_f.get_or_init(|| Measured::of_or_nan(self.a_f()))
    }
    /// Spectrum of A_g as measured (once, on first request): µ_g, L_g and κ_g.
    pub fn measured_g(&self) -> &Measured {
        self.measured_g.get_or_init(|| Measured::of_or_nan(self.a_g()))
    }
    /// A_f (d_x × d_x).
    pub fn a_f(&self) -> MatRef<'_, f64> {
        self.bilevel.upper().p().expect("F.1 has A_f").matrix()
    }
    /// C_f (d_y).
    pub fn c_f(&self) -> &[f64] {
        self.bilevel.upper().c().expect("F.1 has C_f")
    }
    /// A_g (d_y × d_y).
    pub fn a_g(&self) -> MatRef<'_, f64> {
        self.bilevel.lower().a().expect("F.1 has A_g").matrix()
    }
    /// B_g (d_y × d_x).
    pub fn b_g(&self) -> MatRef<'_, f64> {
        self.bilevel.lower().b().expect("F.1 has B_g")
    }
    /// The seeded initial point (law: [`gaussian_x0`]).
    pub fn x0(&self, seed: u64) -> Vec<f64> {
        gaussian_x0(self.dim_x(), seed)
    }
    /// (x*, L*): computed and checked finite at construction.
    pub fn minimum(&self) -> (&[f64], f64) {
        self.bilevel.minimum().expect("checked finite at construction")
    }
}

/// Largest condition number a loaded A_f or A_g may have: [`MAX_KAPPA`] with a factor 2 of room
/// for rounding (a generated κ = [`MAX_KAPPA`] matrix, exported and loaded back, measures κ a
/// little above the cap: 1.0000036e12 for the tiny preset's A_g, seed 3; the rounding of λ_min
/// grows with d·ε·λ_max).
pub const LOADED_MAX_KAPPA: f64 = 2.0 * MAX_KAPPA;

/// Four significant digits, for the measured figures in messages.
fn fig(v: f64) -> String {
    format!("{v:.3e}")
}

/// Checks that the loaded Hessian `name` is positive definite with κ ≤ [`LOADED_MAX_KAPPA`],
/// the generators' cap: otherwise the exact references (y*, x*, L*), computed by Cholesky in
/// f64, mean nothing. Up to [`DENSE_MAX_DIM`](bilevel_kernels::spectrum::DENSE_MAX_DIM) the
/// spectrum comes from a dense symmetric eigen-decomposition (returned, so `measured_*` need not
/// redo it). Above it: a Cholesky (a failure proves the matrix is not positive definite), then
/// λ_max by Lanczos on A and λ_min = 1/λ_max(A⁻¹) by Lanczos on A⁻¹ through the Cholesky factor
/// (a lower bound on κ at worst). If either Lanczos run fails to converge (not seen on the
/// spectra the generators make), the matrix is accepted on the strength of its Cholesky alone:
/// κ is then not checked.
fn check_hessian(name: &'static str, m: MatRef<'_, f64>) -> Result<Option<Measured>> {
    use bilevel_kernels::linop::{sym_lower_matvec, FnOp};
    use bilevel_kernels::spectrum::{largest_eigenvalue, DENSE_MAX_DIM};
    use faer::linalg::solvers::Solve;
    let n = m.nrows();
    let bad = |reason: String| KernelError::InvalidData { what: "quadratic problem", reason };
    let refuse = |mu: f64, l: f64, how: &str| {
        if mu.is_nan() || mu <= 0.0 {
            return Err(bad(format!(
                "`{name}` is not positive definite: measured λ_min = {}, λ_max = {} ({how}); a quadratic needs \
                 `{name}` symmetric positive definite",
                fig(mu),
                fig(l)
            )));
        }
        let kappa = l / mu;
        if kappa > LOADED_MAX_KAPPA {
            return Err(bad(format!(
                "`{name}` is too ill-conditioned: measured λ_min = {}, λ_max = {}, κ = {} > {} ({how}; the \
                 generators' cap is {MAX_KAPPA:e}): the exact references would not mean anything in f64; make \
                 `{name}` better conditioned",
                fig(mu),
                fig(l),
                fig(kappa),
                fig(LOADED_MAX_KAPPA)
            )));
        }
        Ok(())
    };
    if n <= DENSE_MAX_DIM {
        let measured = Measured::of(m)
            .map_err(|e| bad(format!("`{name}`: the dense eigen-decomposition that checks it failed ({e})")))?;
        refuse(measured.mu, measured.l, "dense eigen-decomposition")?;
        return Ok(Some(measured));
    }
    let llt = m.llt(faer::Side::Lower).map_err(|_| {
        bad(format!(
            "`{name}` is not positive definite (Cholesky failed; at size {n} > {DENSE_MAX_DIM} its \
             eigenvalues were not computed)"
        ))
    })?;
    let a = FnOp::symmetric(n, |v: &[f64], out: &mut [f64]| sym_lower_matvec(m, v, out));
    let inverse = FnOp::symmetric(n, |v: &[f64], out: &mut [f64]| {
        out.copy_from_slice(v);
        llt.solve_in_place(faer::MatMut::from_column_major_slice_mut(out, n, 1));
    });
    if let (Ok(l), Ok(inv)) = (largest_eigenvalue(&a, 1e-6), largest_eigenvalue(&inverse, 1e-6)) {
        refuse(1.0 / inv, l, "Cholesky, and Lanczos on it and on its inverse")?;
    }
    Ok(None)
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
    bilevel_kernels::forward_oracles!(bilevel);
    fn exact(&self) -> Option<&dyn ExactReference> {
        Some(&self.bilevel)
    }
    fn constants(&self) -> ProblemConstants {
        self.constants
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
            Source::Generated { config, seed } => crate::dataset::parameters_of(config, Some(*seed)),
            Source::Loaded { parameters } => parameters.clone(),
        };
        m.insert("measured_f".into(), json!(self.measured_f()));
        m.insert("measured_g".into(), json!(self.measured_g()));
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
