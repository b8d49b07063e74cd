//! `bilevel-solvers`: hypergradient estimators (and, to come, the algorithms of the papers and
//! their driver), built on `bilevel-kernels`.
//!
//! - [`hypergrad`]: AID with CG / GD / fixed point / Neumann (warm-started or not), ITD in
//!   reverse mode, and the exact reference.

pub mod hypergrad;

pub use hypergrad::{exact_hypergradient, AdjointSolver, Aid, AidConfig, EstimateReport, Itd};
