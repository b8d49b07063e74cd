//! Sound bounds on the curvature of the data problems' lower levels, from their data alone:
//! an upper bound on λ_max(XᵀX) = ‖X‖₂² of a fixed design, computed once when a problem is
//! built, and the constants the logistic problems assemble from it at a point x
//! ([`DesignBounds::constants`]). Used by the logistic HPO problems, meta-learning and
//! distillation (their `constants_at`).
//!
//! # λ_max(XᵀX), soundly
//! Every route returns an **upper** bound (never an estimate that may fall below), and the
//! smallest of those it runs:
//! - ‖X‖_F² = tr(XᵀX) ≥ λ_max(XᵀX) (always; O(nnz));
//! - a dense eigen-solve of the Gram matrix in the smaller dimension m = min(n, d) (XᵀX or
//!   XXᵀ, which share their nonzero eigenvalues), when m ≤ [`GRAM_MAX_DIM`] and the product
//!   costs at most [`GRAM_MAX_FLOPS`] multiply-adds (a sparse design is densified for it when it
//!   has at most [`DENSIFY_MAX`] entries). The computed top eigenvalue is raised by
//!   4·(n + m + 16)·ε·‖X‖_F², above the rounding of the product (|ΔG| ≤ γ_n |X|ᵀ|X|
//!   entrywise, so ‖ΔG‖₂ ≤ n·ε·‖X‖_F² to first order) and the backward error of the symmetric
//!   eigen-solver (O(m·ε·‖G‖₂));
//! - otherwise (a wide sparse design such as 20 Newsgroups), the Collatz–Wielandt bound of the
//!   nonnegative matrix B = |X|ᵀ|X|: for every v > 0, ρ(B) ≤ max_j (Bv)_j / v_j, and
//!   ‖X‖₂² = ρ(XᵀX) ≤ ρ(|X|ᵀ|X|) (entrywise |XᵀX| ≤ |X|ᵀ|X|, Perron–Frobenius monotonicity).
//!   The v are the iterates of a power iteration on B from 1 (kept positive), so the bound
//!   decreases towards ρ(B); [`CW_ITERATIONS`] products, 2·nnz each. For a nonnegative design
//!   (tf-idf) ρ(|X|ᵀ|X|) = ‖X‖₂², so the bound converges to the exact value; for mixed signs
//!   it can be loose, and ‖X‖_F² caps it.
//!
//! Power iteration or Lanczos alone would not do: their Ritz values approach λ_max from
//! **below**, so a step size set from them may exceed 2/L.

use bilevel_kernels::models::Design;
use bilevel_kernels::ProblemConstants;
use faer::{Mat, MatRef};

/// Largest Gram dimension min(n, d) that is eigen-solved densely.
pub const GRAM_MAX_DIM: usize = 1024;
/// Most multiply-adds (n·d·min(n, d)) spent forming the Gram matrix.
pub const GRAM_MAX_FLOPS: f64 = 2e10;
/// Most entries (n·d) of a sparse design densified for the Gram route.
pub const DENSIFY_MAX: usize = 1 << 23;
/// Power-iteration steps of the Collatz–Wielandt route.
pub const CW_ITERATIONS: usize = 50;

/// An upper bound on λ_max(XᵀX) for the dense row-major n × d matrix `rows` (see the module
/// doc for the routes). Non-finite entries give a non-finite result (NaN or +∞), never a
/// finite one.
pub fn dense_gram_bound(rows: &[f64], n: usize, d: usize) -> f64 {
    debug_assert_eq!(rows.len(), n * d);
    let fro: f64 = rows.iter().map(|v| v * v).sum();
    if !fro.is_finite() || fro == 0.0 {
        return fro;
    }
    let m = n.min(d);
    if m <= GRAM_MAX_DIM && (n as f64) * (d as f64) * (m as f64) <= GRAM_MAX_FLOPS {
        // The column-major d × n view of the row-major rows is Xᵀ.
        let a = MatRef::from_column_major_slice(rows, d, n);
        let g: Mat<f64> = if d <= n { a * a.transpose() } else { a.transpose() * a };
        if let Ok(e) = crate::random_matrix::symmetric_eigenvalues(g.as_ref()) {
            let top = e.last().copied().unwrap_or(0.0).max(0.0);
            let margin = 4.0 * (n + m + 16) as f64 * f64::EPSILON * fro;
            return fro.min(top + margin);
        }
        return fro;
    }
    fro.min(collatz_wielandt(n, d, |i| RowRef::Dense(&rows[i * d..(i + 1) * d])))
}

/// An upper bound on λ_max(XᵀX) of a design (dense or CSR): [`dense_gram_bound`] for a dense
/// design or a sparse one with at most [`DENSIFY_MAX`] entries; otherwise
/// min(‖X‖_F², the Collatz–Wielandt bound of |X|ᵀ|X|).
pub fn gram_bound(x: &Design) -> f64 {
    let (n, d) = (x.nrows(), x.ncols());
    match x {
        Design::Dense(m) => dense_gram_bound(m.data(), n, d),
        Design::Sparse(s) if n.saturating_mul(d) <= DENSIFY_MAX => {
            let mut dense = vec![0.0; n * d];
            for (i, row) in dense.chunks_exact_mut(d.max(1)).enumerate().take(n) {
                let (cols, vals) = s.row(i);
                cols.iter().zip(vals).for_each(|(&j, &v)| row[j as usize] = v);
            }
            dense_gram_bound(&dense, n, d)
        }
        Design::Sparse(s) => {
            let fro: f64 = s.values().iter().map(|v| v * v).sum();
            if !fro.is_finite() || fro == 0.0 {
                return fro;
            }
            fro.min(collatz_wielandt(n, d, |i| {
                let (cols, vals) = s.row(i);
                RowRef::Sparse(cols, vals)
            }))
        }
    }
}

/// One row of a design, for the Collatz–Wielandt products.
enum RowRef<'a> {
    Dense(&'a [f64]),
    Sparse(&'a [u32], &'a [f64]),
}

impl RowRef<'_> {
    /// Σ_j |x_j| v_j.
    fn abs_dot(&self, v: &[f64]) -> f64 {
        match self {
            RowRef::Dense(r) => r.iter().zip(v).map(|(a, b)| a.abs() * b).sum(),
            RowRef::Sparse(c, r) => c.iter().zip(*r).map(|(&j, a)| a.abs() * v[j as usize]).sum(),
        }
    }
    /// out_j += alpha·|x_j|.
    fn abs_axpy(&self, alpha: f64, out: &mut [f64]) {
        match self {
            RowRef::Dense(r) => out.iter_mut().zip(*r).for_each(|(o, a)| *o += alpha * a.abs()),
            RowRef::Sparse(c, r) => c.iter().zip(*r).for_each(|(&j, a)| out[j as usize] += alpha * a.abs()),
        }
    }
}

/// min over [`CW_ITERATIONS`] power-iteration vectors v > 0 of max_j (|X|ᵀ|X| v)_j / v_j, raised
/// by the rounding of the nonnegative sums (relative 2·(n + d)·ε): an upper bound on
/// ρ(|X|ᵀ|X|) ≥ ‖X‖₂².
fn collatz_wielandt<'a>(n: usize, d: usize, row: impl Fn(usize) -> RowRef<'a>) -> f64 {
    let (mut v, mut w, mut u) = (vec![1.0; d], vec![0.0; d], vec![0.0; n]);
    let mut best = f64::INFINITY;
    for _ in 0..CW_ITERATIONS {
        u.iter_mut().enumerate().for_each(|(i, ui)| *ui = row(i).abs_dot(&v));
        w.fill(0.0);
        u.iter().enumerate().for_each(|(i, &ui)| row(i).abs_axpy(ui, &mut w));
        let ratio = w.iter().zip(&v).map(|(w, v)| w / v).fold(0.0, f64::max);
        best = best.min(ratio);
        let top = w.iter().copied().fold(0.0, f64::max);
        if !(top > 0.0 && top.is_finite()) {
            break;
        }
        // The next v: w normalized, floored so that every entry stays positive.
        v.iter_mut().zip(&w).for_each(|(v, w)| *v = (w / top).max(1e-12));
    }
    best * (1.0 + 2.0 * (n + d) as f64 * f64::EPSILON)
}

/// (min_j exp(λ_j), max_j exp(λ_j)); NaN for both when some λ_j is NaN, (1, 1) when λ is empty.
pub fn exp_range(lambda: &[f64]) -> (f64, f64) {
    if lambda.is_empty() {
        return (1.0, 1.0);
    }
    if lambda.iter().any(|v| v.is_nan()) {
        return (f64::NAN, f64::NAN);
    }
    let (lo, hi) = lambda.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    (lo.exp(), hi.exp())
}

/// What the lower-level bounds of a generalized linear model need from its training design,
/// computed once when the problem is built: n, an upper bound on λ_max(XᵀX)
/// ([`gram_bound`]) and max_i ‖a_i‖².
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DesignBounds {
    /// Number of samples n.
    pub n: usize,
    /// An upper bound on λ_max(XᵀX).
    pub gram: f64,
    /// max_i ‖a_i‖² (the exact per-sample λ_max(a_i a_iᵀ)).
    pub max_row_sq: f64,
}

impl DesignBounds {
    /// The bounds of design `x` (the Gram route of [`gram_bound`] and one pass for the rows).
    pub fn of(x: &Design) -> Self {
        let max_row_sq = super::row_sq_norms(x).into_iter().fold(0.0, f64::max);
        Self { n: x.nrows(), gram: gram_bound(x), max_row_sq }
    }

    /// The lower-level constants of g = (1/|B|) Σ_{i∈B} ℓ_i(a_iᵀ·) + R with a loss whose
    /// per-sample Hessian is ⪯ `curvature`·a_i a_iᵀ (⊗ I for a multinomial model) and a
    /// regularizer R added once per batch with Hessian a diagonal with entries in
    /// [`reg_min`, `reg_max`]:
    /// - full batch: 0 ⪯ data part ⪯ curvature·XᵀX/n, so µ_g = reg_min and
    ///   L_g = curvature·gram/n + reg_max (λ_max of a sum ≤ the sum of the λ_max);
    /// - one sample (a batch of one: ℓ_i + R): 0 ⪯ data part ⪯ curvature·‖a_i‖², so
    ///   µ_g,sample = reg_min and L_g,sample = curvature·max_i ‖a_i‖² + reg_max.
    pub fn constants(&self, curvature: f64, reg_min: f64, reg_max: f64) -> ProblemConstants {
        ProblemConstants {
            mu_g: Some(reg_min),
            l_g: Some(curvature * self.gram / self.n.max(1) as f64 + reg_max),
            l_g_sample: Some(curvature * self.max_row_sq + reg_max),
            mu_g_sample: Some(reg_min),
            ..ProblemConstants::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bilevel_kernels::models::DenseRows;
    use bilevel_kernels::CsrMatrix;

    fn lmax(rows: &[f64], n: usize, d: usize) -> f64 {
        let a = MatRef::from_column_major_slice(rows, d, n);
        let g: Mat<f64> = a * a.transpose();
        *crate::random_matrix::symmetric_eigenvalues(g.as_ref()).unwrap().last().unwrap()
    }

    fn rows(n: usize, d: usize, positive: bool) -> Vec<f64> {
        (0..n * d)
            .map(|i| {
                let v = ((i * 7919 + 13) % 101) as f64 / 50.0 - 1.0;
                if positive {
                    v.abs()
                } else {
                    v
                }
            })
            .collect()
    }

    #[test]
    fn the_gram_route_is_tight_and_above() {
        for (n, d) in [(30, 7), (7, 30), (1, 5), (5, 1)] {
            let x = rows(n, d, false);
            let (b, e) = (dense_gram_bound(&x, n, d), lmax(&x, n, d));
            // (`e` has its own rounding: for rank one the bound is ‖X‖_F², exact, and `e` may
            // exceed it in the last bit.)
            assert!(b >= e * (1.0 - 1e-14) && b <= e * (1.0 + 1e-10), "{n}x{d}: {b} vs {e}");
        }
    }

    #[test]
    fn the_collatz_wielandt_route_is_above_and_exact_for_nonnegative_data() {
        for positive in [true, false] {
            let (n, d) = (40, 12);
            let x = rows(n, d, positive);
            let e = lmax(&x, n, d);
            let cw = collatz_wielandt(n, d, |i| RowRef::Dense(&x[i * d..(i + 1) * d]));
            assert!(cw >= e, "{cw} vs {e}");
            if positive {
                assert!(cw <= e * (1.0 + 1e-6), "{cw} vs {e}");
            }
        }
    }

    #[test]
    fn a_sparse_design_gets_the_bound_of_its_dense_form() {
        let (n, d) = (9, 5);
        let x = rows(n, d, false);
        let dense = Design::Dense(DenseRows::new(n, d, x.clone()).unwrap());
        let csr = CsrMatrix::from_dense(MatRef::from_row_major_slice(&x, n, d)).unwrap();
        let (a, b) = (gram_bound(&dense), gram_bound(&Design::Sparse(csr)));
        assert!((a - b).abs() <= 1e-12 * a, "{a} vs {b}");
        assert!(dense_gram_bound(&[f64::NAN, 1.0], 1, 2).is_nan());
    }
}
