//! Extreme eigenvalues of a symmetric operator through faer's matrix-free Krylov–Schur solver
//! (`partial_self_adjoint_eigen`, run on our operators via [`FaerOp`]): the constants µ and L
//! that the papers' step sizes are written in.

use crate::error::{KernelError, Result};
use crate::linop::{FaerOp, Operator, SymmetricOperator};
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

/// Up to this dimension the spectrum is computed from the materialized dense matrix.
pub const DENSE_MAX_DIM: usize = 256;

/// The eigenvalue of largest magnitude, to relative accuracy `tol`.
fn dominant(op: &(impl SymmetricOperator + ?Sized), tol: f64) -> Result<f64> {
    let n = op.dim();
    if n == 0 {
        return Err(KernelError::InvalidParameter { name: "operator", reason: "dimension 0 has no spectrum".into() });
    }
    if n <= DENSE_MAX_DIM {
        // faer's Krylov–Schur needs a subspace smaller than n; small operators are cheaper dense.
        let m = crate::linop::to_dense(&op);
        let eig = m.self_adjoint_eigenvalues(faer::Side::Lower).map_err(|_| KernelError::Breakdown {
            iteration: 0,
            reason: "dense eigen-decomposition did not converge",
        })?;
        let (lo, hi) = (eig[0], eig[n - 1]);
        return Ok(if hi.abs() >= lo.abs() { hi } else { lo });
    }
    let a = FaerOp(op);
    let params = PartialEigenParams { max_restarts: 1000, ..Default::default() };
    let mut mem = MemBuffer::new(partial_self_adjoint_eigen_scratch(&a, 1, Par::Seq, params));
    let mut vecs = Mat::<f64>::zeros(n, 1);
    let mut vals = [0.0];
    // A fixed, dense start vector: deterministic, and not orthogonal to any eigenvector in practice.
    let v0 = Col::<f64>::from_fn(n, |i| 1.0 + ((i * 7919) % 101) as f64 / 101.0);
    let v0 = &v0 * (1.0 / v0.norm_l2());
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
        return Err(KernelError::Breakdown { iteration: 0, reason: "partial eigen-solver did not converge" });
    }
    Ok(vals[0])
}

/// `(λ_min, λ_max)` of a symmetric positive semi-definite operator: L = λ_max is the dominant
/// eigenvalue; λ_min is found as L − (dominant eigenvalue of L·I − H).
pub fn extreme_eigenvalues(op: &(impl SymmetricOperator + ?Sized), tol: f64) -> Result<(f64, f64)> {
    let l = dominant(op, tol)?;
    if l <= 0.0 {
        return Err(KernelError::NotPositiveDefinite { iteration: 0, curvature: l });
    }
    let top = dominant(&Shifted { op, shift: l }, tol)?; // = λ_min − L ≤ 0
    Ok((l + top, l))
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
        for n in [40, 1000] {
            // n = 1000 goes through faer's Krylov–Schur, n = 40 through the dense path.
            let d = Diagonal::new((1..=n).map(|i| i as f64 * 0.5).collect()).unwrap();
            let (lo, hi) = extreme_eigenvalues(&d, 1e-12).unwrap();
            let top = n as f64 * 0.5;
            assert!((lo - 0.5).abs() < 1e-8 * top && (hi - top).abs() < 1e-8 * top, "{lo} {hi}");
        }
        let neg = Diagonal::new(vec![-1.0, -2.0, -3.0]).unwrap();
        assert!(matches!(extreme_eigenvalues(&neg, 1e-12), Err(KernelError::NotPositiveDefinite { .. })));
    }
}
