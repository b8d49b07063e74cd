//! `bilevel-solvers`: hypergradient estimators, the deterministic algorithms of the papers, and
//! one driver with a trace, built on `bilevel-kernels`.
//!
//! - [`hypergrad`]: AID with CG / GD / fixed point / Neumann (warm-started or not), ITD in
//!   reverse mode, and the exact reference;
//! - [`algorithms`]: the AID-type algorithm (AID-BiO, AmIGO-GD/CG, AID-GD/CG/CG-WS/FP/N as
//!   configurations) and ITD-BiO;
//! - [`bsgm`]: SID and BSGM for contraction lower levels (and any problem via its gradient map);
//! - [`driver`]: budgets, targets, trace rows with exact oracle counts and exact metrics, CSV.

pub mod algorithms;
pub mod bsgm;
pub mod driver;
pub mod hypergrad;

pub use algorithms::{AidBilevel, AidBilevelConfig, AidVariant, Algorithm, ItdBilevel, StepSizes};
pub use bsgm::{Bsgm, GradientMap, Projection, Sid};
pub use driver::{run, StopReason, StopRule, Trace, TraceRow};
pub use hypergrad::{exact_hypergradient, AdjointSolver, Aid, AidConfig, EstimateReport, Itd};
