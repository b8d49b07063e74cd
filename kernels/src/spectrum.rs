//! Extreme eigenvalues of a symmetric operator: the constants µ and L that the papers' step
//! sizes are written in.
//!
//! - [`largest_eigenvalue`]: L = λ_max by Lanczos with full reorthogonalisation (the top of a
//!   spectrum converges in a few dozen products even at κ = 1e7), or from the dense matrix for
//!   small operators;
//! - [`extreme_eigenvalues`]: (λ_min, λ_max) from the dense matrix up to [`DENSE_MAX_DIM`]; above
//!   it λ_min comes from faer's Krylov–Schur on `L·I − H`, which converges slowly for large κ and
//!   then fails with [`KernelError::Breakdown`] naming the constant. Callers that can avoid λ_min
//!   (a step size 1/L needs only λ_max) should; `bilevel_solvers::constants` does.

use crate::error::{KernelError, Result};
use crate::linop::{FaerOp, Operator, SymmetricOperator};
use crate::ops;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::eigen::{partial_self_adjoint_eigen, partial_self_adjoint_eigen_scratch, PartialEigenParams};
use faer::{Col, Mat, Par};

/// `H − shift·I` as an operator (shifting turns the smallest eigenvalue into the largest
/// in magnitude).
struct Shifted<'a, O: ?Sized> {
    op: &'a O,
    shift: f64,
}
impl<O: Operator + ?Sized> Operator for Shifted<'_, O> {
    fn dim(&self) -> usize {
        self.op.dim()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.op.apply(v, out);
        crate::ops::axpy(-self.shift, v, out);
    }
}
impl<O: Operator + ?Sized> SymmetricOperator for Shifted<'_, O> {}

/// Up to this dimension the spectrum is computed from the materialized dense matrix (n
/// operator applications and one dense symmetric eigendecomposition; at n = 1000 on a dense
/// Hessian this takes about 1 s on the 2-core reference machine, see docs/kernels.md).
pub const DENSE_MAX_DIM: usize = 1000;

/// Most Lanczos steps [`largest_eigenvalue`] takes (its basis is stored for the
/// reorthogonalisation, so it is also capped at 512 MiB).
pub const LANCZOS_MAX_STEPS: usize = 300;

fn check_dim(n: usize) -> Result<()> {
    if n == 0 {
        return Err(KernelError::InvalidParameter { name: "operator", reason: "dimension 0 has no spectrum".into() });
    }
    Ok(())
}

/// The sorted eigenvalues of the materialized operator.
fn dense_eigenvalues(op: &(impl SymmetricOperator + ?Sized)) -> Result<Vec<f64>> {
    let m = crate::linop::to_dense(&op);
    let m = Mat::from_fn(m.nrows(), m.ncols(), |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let eig = m
        .self_adjoint_eigenvalues(faer::Side::Lower)
        .map_err(|_| KernelError::Breakdown { iteration: 0, reason: "dense eigen-decomposition did not converge" })?;
    if let Some(i) = eig.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::NonFinite { what: "eigenvalue of the operator", index: i });
    }
    Ok(eig)
}

/// A fixed, dense start vector: deterministic, and not orthogonal to any eigenvector in practice.
fn start_vector(n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|i| 1.0 + ((i * 7919) % 101) as f64 / 101.0).collect();
    ops::scale(1.0 / ops::norm2(&v), &mut v);
    v
}

/// λ_max of a symmetric operator to relative accuracy `tol` (the Ritz residual bound r =
/// `β_j·|s_j|`, sharpened to r²/gap: `min(r, r²/gap) ≤ tol·|θ|`). Dense up to
/// [`DENSE_MAX_DIM`], Lanczos above.
pub fn largest_eigenvalue(op: &(impl SymmetricOperator + ?Sized), tol: f64) -> Result<f64> {
    let n = op.dim();
    check_dim(n)?;
    if n <= DENSE_MAX_DIM {
        return Ok(*dense_eigenvalues(op)?.last().expect("n >= 1"));
    }
    let max_steps = LANCZOS_MAX_STEPS.min(n).min(((1usize << 26) / n).max(20));
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(max_steps);
    let (mut alpha, mut beta) = (Vec::with_capacity(max_steps), Vec::with_capacity(max_steps));
    let mut q = start_vector(n);
    let mut w = vec![0.0; n];
    let mut theta = f64::NAN;
    for j in 0..max_steps {
        crate::interrupt::check()?;
        op.apply(&q, &mut w);
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::NonFinite { what: "operator output in Lanczos", index: i });
        }
        alpha.push(ops::dot(&q, &w));
        basis.push(std::mem::take(&mut q));
        // Full reorthogonalisation, twice (Kahan's "twice is enough").
        for _ in 0..2 {
            for b in &basis {
                let c = ops::dot(b, &w);
                ops::axpy(-c, b, &mut w);
            }
        }
        let b_j = ops::norm2(&w);
        beta.push(b_j);
        let m = j + 1;
        if m % 5 == 0 || m == max_steps || b_j <= f64::EPSILON * alpha[0].abs() {
            let t = Mat::from_fn(m, m, |r, c| match r.abs_diff(c) {
                0 => alpha[r],
                1 => beta[r.min(c)],
                _ => 0.0,
            });
            let eig = t.self_adjoint_eigen(faer::Side::Lower).map_err(|_| KernelError::Breakdown {
                iteration: j,
                reason: "Lanczos tridiagonal eigen-solve failed",
            })?;
            let ritz = eig.S().column_vector();
            theta = ritz[m - 1];
            // The residual r = β_j|s_j| bounds the error of θ by r, and by r²/gap once the
            // next Ritz value is a gap below (Kato–Temple).
            let r = b_j * eig.U()[(m - 1, m - 1)].abs();
            let gap = if m > 1 { theta - ritz[m - 2] } else { 0.0 };
            let error = if gap > 0.0 { r.min(r * r / gap) } else { r };
            if error <= tol * theta.abs() || b_j <= f64::EPSILON * theta.abs() {
                return Ok(theta);
            }
        }
        q = std::mem::take(&mut w);
        ops::scale(1.0 / b_j, &mut q);
        w = vec![0.0; n];
    }
    Err(KernelError::Breakdown {
        iteration: max_steps,
        reason: if theta.is_finite() {
            "Lanczos did not reach the tolerance for the largest eigenvalue"
        } else {
            "Lanczos produced no estimate of the largest eigenvalue"
        },
    })
}

/// The eigenvalue of largest magnitude by faer's Krylov–Schur, to relative accuracy `tol`.
fn dominant_krylov_schur(op: &(impl SymmetricOperator + ?Sized), tol: f64) -> Result<f64> {
    let n = op.dim();
    let a = FaerOp(op);
    let params = PartialEigenParams { max_restarts: 1000, ..Default::default() };
    let mut mem = MemBuffer::new(partial_self_adjoint_eigen_scratch(&a, 1, Par::Seq, params));
    let mut vecs = Mat::<f64>::zeros(n, 1);
    let mut vals = [0.0];
    let start = start_vector(n);
    let v0 = Col::<f64>::from_fn(n, |i| start[i]);
    let info = partial_self_adjoint_eigen(
        vecs.as_mut(),
        &mut vals,
        &a,
        v0.as_ref(),
        tol,
        Par::Seq,
        MemStack::new(&mut mem),
        params,
    );
    if info.n_converged_eigen == 0 || !vals[0].is_finite() {
        return Err(KernelError::Breakdown {
            iteration: 0,
            reason: "the smallest eigenvalue (µ) did not converge in the partial eigen-solver: set it by hand",
        });
    }
    Ok(vals[0])
}

/// The spectral radius max |λ| of a symmetric operator (definite or not): the smoothness
/// constant of a function whose Hessian it is. Dense up to [`DENSE_MAX_DIM`]; above it the
/// larger of λ_max(H) and λ_max(−H) by Lanczos.
pub fn spectral_radius(op: &(impl SymmetricOperator + ?Sized), tol: f64) -> Result<f64> {
    let n = op.dim();
    check_dim(n)?;
    if n <= DENSE_MAX_DIM {
        let eig = dense_eigenvalues(op)?;
        return Ok(eig[0].abs().max(eig[n - 1].abs()));
    }
    let top = largest_eigenvalue(op, tol)?;
    let bottom = largest_eigenvalue(&Negated(op), tol)?;
    Ok(top.abs().max(bottom.abs()))
}

/// −H.
struct Negated<'a, O: ?Sized>(&'a O);

impl<O: SymmetricOperator + ?Sized> crate::linop::Operator for Negated<'_, O> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn apply(&self, x: &[f64], out: &mut [f64]) {
        self.0.apply(x, out);
        ops::scale(-1.0, out);
    }
}

impl<O: SymmetricOperator + ?Sized> SymmetricOperator for Negated<'_, O> {}

/// `(λ_min, λ_max)` of a symmetric positive semi-definite operator: from the dense matrix up to
/// [`DENSE_MAX_DIM`]; above it L by [`largest_eigenvalue`] and λ_min = L − (dominant eigenvalue
/// of L·I − H) by Krylov–Schur (slow, and possibly failing, for large κ).
pub fn extreme_eigenvalues(op: &(impl SymmetricOperator + ?Sized), tol: f64) -> Result<(f64, f64)> {
    let n = op.dim();
    check_dim(n)?;
    let (lo, hi) = if n <= DENSE_MAX_DIM {
        let eig = dense_eigenvalues(op)?;
        (eig[0], eig[n - 1])
    } else {
        let l = largest_eigenvalue(op, tol)?;
        if l <= 0.0 {
            return Err(KernelError::NotPositiveDefinite { iteration: 0, curvature: l });
        }
        (l + dominant_krylov_schur(&Shifted { op, shift: l }, tol)?, l)
    };
    if hi <= 0.0 {
        return Err(KernelError::NotPositiveDefinite { iteration: 0, curvature: hi });
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linop::{DenseSym, Diagonal};

    #[test]
    fn extreme_eigenvalues_match_a_dense_eigendecomposition() {
        let d = 60;
        let b = Mat::from_fn(d, d, |i, j| (((i * 13 + j * 7) % 23) as f64 - 11.0) / 23.0);
        let a = &b * b.transpose() + Mat::<f64>::identity(d, d) * 0.05;
        let a = Mat::from_fn(d, d, |i, j| 0.5 * (a[(i, j)] + a[(j, i)]));
        let eig = a.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
        let (lo, hi) = extreme_eigenvalues(&DenseSym::new(a).unwrap(), 1e-12).unwrap();
        assert!((hi - eig[d - 1]).abs() <= 1e-8 * eig[d - 1], "{hi} vs {}", eig[d - 1]);
        assert!((lo - eig[0]).abs() <= 1e-8 * eig[d - 1], "{lo} vs {}", eig[0]);
    }

    #[test]
    fn diagonal_spectrum_and_indefinite_input() {
        for n in [40, 3000] {
            // n = 3000 goes through Lanczos and Krylov–Schur, n = 40 through the dense path.
            let d = Diagonal::new((1..=n).map(|i| i as f64 * 0.5).collect()).unwrap();
            let (lo, hi) = extreme_eigenvalues(&d, 1e-10).unwrap();
            let top = n as f64 * 0.5;
            assert!((lo - 0.5).abs() < 1e-8 * top && (hi - top).abs() < 1e-8 * top, "{lo} {hi}");
        }
        let neg = Diagonal::new(vec![-1.0, -2.0, -3.0]).unwrap();
        assert!(matches!(extreme_eigenvalues(&neg, 1e-12), Err(KernelError::NotPositiveDefinite { .. })));
    }

    #[test]
    fn the_spectral_radius_sees_a_negative_end() {
        for n in [40, 3000] {
            // Eigenvalues −3 … 1: the radius is 3, λ_max only 1.
            let vals: Vec<f64> = (0..n).map(|i| -3.0 + 4.0 * i as f64 / (n - 1) as f64).collect();
            let r = spectral_radius(&Diagonal::new(vals).unwrap(), 1e-10).unwrap();
            assert!((r - 3.0).abs() < 1e-7, "n = {n}: {r}");
        }
    }

    #[test]
    fn lanczos_finds_the_top_of_an_ill_conditioned_spectrum() {
        // κ = 1e7 with log-spaced eigenvalues, as the F.1 sweeps use.
        let n = 4000;
        let vals: Vec<f64> = (0..n).map(|i| 10f64.powf(-7.0 * (1.0 - i as f64 / (n - 1) as f64))).collect();
        let d = Diagonal::new(vals).unwrap();
        let l = largest_eigenvalue(&d, 1e-10).unwrap();
        assert!((l - 1.0).abs() <= 1e-8, "{l}");
    }
}
