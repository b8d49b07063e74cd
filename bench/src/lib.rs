//! Benchmark support shared by the criterion benches and the complexity harness: seeded
//! synthetic inputs of controlled size; the complexity claims of the papers as data
//! ([`claims`]), the log-log slope fit with its verdict ([`fit`]), the harness behind
//! `bilevel scaling` ([`scaling`]), and an oracle-call [`recorder`] for replaying stochastic
//! runs elsewhere.

pub mod claims;
pub mod fit;
pub mod recorder;
pub mod scaling;

use bilevel_data::random_matrix;
use bilevel_kernels::CsrMatrix;
use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A random sparse matrix with `per_row` distinct columns per row (uniform), values in (0, 1].
pub fn random_csr(nrows: usize, ncols: usize, per_row: usize, seed: u64) -> CsrMatrix {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let per_row = per_row.min(ncols);
    let mut indptr = Vec::with_capacity(nrows + 1);
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    indptr.push(0);
    let mut row: Vec<u32> = Vec::with_capacity(per_row);
    for _ in 0..nrows {
        row.clear();
        while row.len() < per_row {
            let c = rng.random_range(0..ncols as u32);
            if !row.contains(&c) {
                row.push(c);
            }
        }
        row.sort_unstable();
        indices.extend_from_slice(&row);
        values.extend((0..per_row).map(|_| 1.0 - rng.random::<f64>()));
        indptr.push(indices.len());
    }
    CsrMatrix::new(nrows, ncols, indptr, indices, values).expect("valid by construction")
}

/// A seeded symmetric positive-definite matrix with eigenvalues log-spaced in [1/κ, 1] exactly
/// (Q diag(λ) Qᵀ, Q Haar: `bilevel_data::random_matrix::spd_with_spectrum`).
pub fn spd(d: usize, kappa: f64, seed: u64) -> Mat<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    random_matrix::spd_with_spectrum(d, 1.0 / kappa, 1.0, random_matrix::Spacing::Log, &mut rng)
        .expect("d >= 1 in every bench")
}

/// A seeded vector with entries uniform in [-1, 1).
pub fn vector(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| 2.0 * rng.random::<f64>() - 1.0).collect()
}
