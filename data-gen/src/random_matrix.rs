//! Random matrices with prescribed spectra, shared by the generators, the benches and the demo:
//! Gaussian matrices, Haar-distributed orthonormal columns (Mezzadri 2007), spectra spaced
//! between µ and L, Q diag(λ) Qᵀ, and the dense eigen-decomposition that measures a spectrum.
//!
//! Every faer call here runs with `Par::Seq`, so the same seed gives the same bits whatever the
//! thread count. Gaussian matrices are filled column by column from the caller's stream.

use bilevel_kernels::error::{KernelError, Result};
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
use rand::Rng;
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

/// How eigenvalues are spread between µ = L/κ and L.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    /// λ_k = µ^{1−t_k} L^{t_k}, t_k = k/(d−1): geometric, uniform in log scale (the default).
    #[default]
    Log,
    /// λ_k = µ + t_k (L − µ): uniform.
    Linear,
}

impl Spacing {
    /// The name used in configs and the manifest.
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
/// (+∞ when µ ≤ 0). Serializes as `{mu, l, kappa}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Measured {
    #[serde(skip)]
    /// All eigenvalues, ascending.
    pub eigenvalues: Vec<f64>,
    /// µ = λ_min.
    pub mu: f64,
    /// L = λ_max.
    pub l: f64,
    /// κ = L/µ (+∞ when µ ≤ 0).
    pub kappa: f64,
}

impl Measured {
    /// Measures the spectrum of a symmetric matrix. Errors: an empty (0 × 0) matrix, a
    /// non-square one, an eigen-solver that does not converge.
    pub fn of(a: MatRef<'_, f64>) -> Result<Self> {
        if a.nrows() == 0 {
            return Err(KernelError::InvalidParameter {
                name: "matrix",
                reason: "a 0 × 0 matrix has no spectrum to measure".into(),
            });
        }
        let eigenvalues = symmetric_eigenvalues(a)?;
        let (mu, l) = (eigenvalues[0], eigenvalues[eigenvalues.len() - 1]);
        let kappa = if mu > 0.0 { l / mu } else { f64::INFINITY };
        Ok(Self { eigenvalues, mu, l, kappa })
    }
    /// [`of`](Self::of), or NaN everywhere if the eigen-solver does not converge.
    pub fn of_or_nan(a: MatRef<'_, f64>) -> Self {
        Self::of(a).unwrap_or_else(|_| Self {
            eigenvalues: vec![f64::NAN; a.nrows()],
            mu: f64::NAN,
            l: f64::NAN,
            kappa: f64::NAN,
        })
    }
}

/// A `d × d` symmetric positive-definite matrix Q diag(λ) Qᵀ with Q Haar on O(d) and
/// λ = [`spectrum`]`(mu, l, d, spacing)`: its eigenvalues are exactly (to rounding) the
/// prescribed ones. Errors: d = 0. O(d³), sequential.
pub fn spd_with_spectrum(
    d: usize,
    mu: f64,
    l: f64,
    spacing: Spacing,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Mat<f64>> {
    let q = haar_orthonormal(d, d, rng)?;
    Ok(with_spectrum(q.as_ref(), &spectrum(mu, l, d, spacing)))
}
