//! Typed errors of the kernels: every fallible entry point returns [`KernelError`].

/// What went wrong, with enough context to find the offending input.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// Two sizes that must agree do not.
    #[error("dimension mismatch for `{what}`: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Which argument (e.g. `"rhs"`, `"x0"`).
        what: &'static str,
        /// The size it must have.
        expected: usize,
        /// The size it has.
        got: usize,
    },
    /// An input holds NaN or ±∞.
    #[error("`{what}` has a non-finite value (NaN or infinity) at index {index}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Position of the first non-finite entry.
        index: usize,
    },
    /// A parameter is outside its valid range (a step size, a tolerance, a batch size...).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What its valid range is, and the value given.
        reason: String,
    },
    /// Malformed input data (a CSR structure, an index out of range...).
    #[error("invalid {what}: {reason}")]
    InvalidData {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A matrix that must be symmetric is not.
    #[error("matrix is not symmetric: |A[{row},{col}] - A[{col},{row}]| = {asymmetry:e}")]
    NotSymmetric {
        /// Row of the first asymmetric entry found.
        row: usize,
        /// Its column.
        col: usize,
        /// |A_ij − A_ji| seen.
        asymmetry: f64,
    },
    /// CG met a direction p with pᵀHp ≤ 0: the operator is not positive definite.
    #[error("operator is not positive definite: CG found pᵀHp = {curvature:e} at iteration {iteration}")]
    NotPositiveDefinite {
        /// The iteration (0: the Jacobi preconditioner's diagonal).
        iteration: usize,
        /// The non-positive pᵀHp (or diagonal entry) seen.
        curvature: f64,
    },
    /// An iteration blew up (its residual grew past the divergence threshold or became non-finite).
    #[error("iteration diverged at step {iteration} (residual norm {residual:e})")]
    Diverged {
        /// The step at which it was seen.
        iteration: usize,
        /// The residual norm seen.
        residual: f64,
    },
    /// What the sizes given imply does not fit in this machine's memory (checked before
    /// allocating it).
    #[error("{what} needs {} but {} are available", crate::memory::format_bytes(*.needed), crate::memory::format_bytes(*.available as u128))]
    TooLarge {
        /// What would be allocated, with the sizes that set it.
        what: String,
        /// Bytes it needs (saturated at u128::MAX where the sizes overflow).
        needed: u128,
        /// Bytes available (MemAvailable).
        available: u64,
    },
    /// A Krylov method broke down (a zero inner product it divides by).
    #[error("solver breakdown at iteration {iteration}: {reason}")]
    Breakdown {
        /// The iteration at which it broke down.
        iteration: usize,
        /// Why.
        reason: &'static str,
    },
    /// A loop stopped early because the caller's watch asked it to ([`crate::interrupt`]).
    #[error("interrupted: {cause}")]
    Interrupted {
        /// The flag or the deadline.
        cause: crate::interrupt::Cause,
    },
}

/// Result alias of the kernels.
pub type Result<T> = std::result::Result<T, KernelError>;

/// `Ok` if `got == expected`, else [`KernelError::DimensionMismatch`].
pub fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(KernelError::DimensionMismatch { what, expected, got })
    }
}

/// `Ok` if every entry is finite, else [`KernelError::NonFinite`] at the first bad entry.
pub fn check_finite(what: &'static str, v: &[f64]) -> Result<()> {
    if crate::ops::all_finite(v) {
        return Ok(());
    }
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(KernelError::NonFinite { what, index }),
    }
}

/// `Ok` if `value` is finite and strictly positive, else [`KernelError::InvalidParameter`].
pub fn check_positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(KernelError::InvalidParameter { name, reason: format!("must be finite and > 0, got {value:?}") })
    }
}

#[cfg(test)]
mod tests {
    use super::KernelError;

    /// The messages are part of the interface (the CLI prints them): pinned here.
    #[test]
    fn messages_are_stable() {
        let cases = [
            (
                KernelError::DimensionMismatch { what: "rhs", expected: 3, got: 2 },
                "dimension mismatch for `rhs`: expected 3, got 2",
            ),
            (
                KernelError::NonFinite { what: "x0", index: 1 },
                "`x0` has a non-finite value (NaN or infinity) at index 1",
            ),
            (
                KernelError::InvalidParameter { name: "step", reason: "must be > 0".into() },
                "invalid parameter `step`: must be > 0",
            ),
            (KernelError::InvalidData { what: "CSR matrix", reason: "bad".into() }, "invalid CSR matrix: bad"),
            (
                KernelError::NotSymmetric { row: 1, col: 0, asymmetry: 0.5 },
                "matrix is not symmetric: |A[1,0] - A[0,1]| = 5e-1",
            ),
            (
                KernelError::NotPositiveDefinite { iteration: 2, curvature: -1.0 },
                "operator is not positive definite: CG found pᵀHp = -1e0 at iteration 2",
            ),
            (
                KernelError::Diverged { iteration: 4, residual: 1e13 },
                "iteration diverged at step 4 (residual norm 1e13)",
            ),
            (KernelError::Breakdown { iteration: 1, reason: "zero" }, "solver breakdown at iteration 1: zero"),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
        let boxed: Box<dyn std::error::Error> = Box::new(KernelError::Breakdown { iteration: 0, reason: "x" });
        assert!(boxed.source().is_none());
    }
}
