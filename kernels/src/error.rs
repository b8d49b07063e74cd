//! Typed errors of the kernels: every fallible entry point returns [`KernelError`].

use std::fmt;

/// What went wrong, with enough context to find the offending input.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum KernelError {
    /// Two sizes that must agree do not.
    DimensionMismatch {
        /// Which argument (e.g. `"rhs"`, `"x0"`).
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// An input holds NaN or ±∞.
    NonFinite {
        what: &'static str,
        /// Position of the first non-finite entry.
        index: usize,
    },
    /// A parameter is outside its valid range (a step size, a tolerance, a batch size...).
    InvalidParameter { name: &'static str, reason: String },
    /// Malformed input data (a CSR structure, an index out of range...).
    InvalidData { what: &'static str, reason: String },
    /// A matrix that must be symmetric is not.
    NotSymmetric {
        row: usize,
        col: usize,
        /// |A_ij − A_ji| seen.
        asymmetry: f64,
    },
    /// CG met a direction p with pᵀHp ≤ 0: the operator is not positive definite.
    NotPositiveDefinite { iteration: usize, curvature: f64 },
    /// An iteration blew up (its residual grew past the divergence threshold or became non-finite).
    Diverged { iteration: usize, residual: f64 },
    /// A Krylov method broke down (a zero inner product it divides by).
    Breakdown { iteration: usize, reason: &'static str },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DimensionMismatch { what, expected, got } => {
                write!(f, "dimension mismatch for `{what}`: expected {expected}, got {got}")
            }
            Self::NonFinite { what, index } => {
                write!(f, "`{what}` has a non-finite value (NaN or infinity) at index {index}")
            }
            Self::InvalidParameter { name, reason } => write!(f, "invalid parameter `{name}`: {reason}"),
            Self::InvalidData { what, reason } => write!(f, "invalid {what}: {reason}"),
            Self::NotSymmetric { row, col, asymmetry } => {
                write!(f, "matrix is not symmetric: |A[{row},{col}] - A[{col},{row}]| = {asymmetry:e}")
            }
            Self::NotPositiveDefinite { iteration, curvature } => {
                write!(f, "operator is not positive definite: CG found pᵀHp = {curvature:e} at iteration {iteration}")
            }
            Self::Diverged { iteration, residual } => {
                write!(f, "iteration diverged at step {iteration} (residual norm {residual:e})")
            }
            Self::Breakdown { iteration, reason } => {
                write!(f, "solver breakdown at iteration {iteration}: {reason}")
            }
        }
    }
}

impl std::error::Error for KernelError {}

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
        Err(KernelError::InvalidParameter { name, reason: format!("must be finite and > 0, got {value}") })
    }
}
