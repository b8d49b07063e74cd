//! `bilevel-kernels`: the numeric foundation of `bilevel`.
//!
//! - [`ops`]: vector primitives and fused solver updates (pulp SIMD, deterministic rayon);
//! - [`linop`]: square linear operators (dense one-triangle symmetric, CSR, diagonal, closures)
//!   and the adapter to faer's matrix-free solvers;
//! - [`sparse`]: the CSR matrix;
//! - [`models`]: analytic derivatives of the model families of the papers;
//! - [`linsolve`]: linear-system solvers for the adjoint (CG, Richardson, Neumann, ...);
//! - [`problem`]: the bilevel oracle trait and the oracle-counting wrapper;
//! - [`par`]: the deterministic parallel reduction scheme;
//! - [`memory`]: checks made before allocating what user-given sizes imply.

#![warn(missing_docs)]

pub mod error;
pub mod interrupt;
pub mod linop;
pub mod linsolve;
pub mod memory;
pub mod models;
pub mod ops;
pub mod par;
pub mod problem;
pub mod sparse;
pub mod spectrum;

pub use error::{check_finite, check_len, KernelError, Result};
pub use linop::{Operator, SymmetricOperator};
pub use linsolve::SolveReport;
pub use problem::{
    Batch, BilevelProblem, Counted, CountingConvention, ExactReference, FixedPointProblem, GradientMap, HessianOp,
    OracleCounts, ProblemConstants, ProblemMetrics, StepBatches,
};
pub use sparse::CsrMatrix;
