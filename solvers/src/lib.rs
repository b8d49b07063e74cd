//! `bilevel-solvers`: hypergradient estimators, the papers' algorithms, the constants their
//! step sizes need, and one driver with a trace, built on `bilevel-kernels`.
//!
//! - [`estimators`]: AID (CG / GD / fixed point / Neumann, warm-started or not), ITD in reverse
//!   mode, SID, and the exact hypergradient;
//! - [`algorithms`]: one file per algorithm (AmIGO and paper 000's baselines, AID-BiO, ITD-BiO,
//!   BSGM), each with its theorem's and its experiments' step sizes;
//! - [`constants`]: µ_g, L_g, L_L from the problem, the user, or an estimate, with typed errors;
//! - [`reference`](mod@reference): a Newton reference hypergradient for problems without a closed form;
//! - [`sampling`]: mini-batch streams (with replacement, shuffled epochs), independent and seeded;
//! - [`driver`] and [`trace`]: budgets, targets, exact oracle counts, metrics, CSV and JSON.
#![warn(missing_docs)]

pub mod algorithms;
pub mod constants;
pub mod driver;
pub mod estimators;
pub mod params;
pub mod reference;
pub mod sampling;
pub mod search;
pub mod trace;

pub use algorithms::aid::{AidBilevel, AidBilevelConfig, AidVariant};
pub use algorithms::bsgm::{Bsgm, Projection};
pub use algorithms::itd_bio::ItdBilevel;
pub use algorithms::{Algorithm, Built, Context, FixedPointAlgorithm, Iterates, Output, Settings, StepRule, StepSizes};
pub use constants::{Constant, Constants, Overrides};
pub use driver::{run, run_fixed_point, StopReason, StopRule};
pub use estimators::{exact_hypergradient, AdjointSolver, Aid, AidConfig, EstimateReport, Itd, Sid};
pub use params::{Param, Params, Source};
pub use sampling::{BatchSizes, BatchStream, Sampling};
pub use trace::{CsvRows, OutputPoint, Trace, TraceRow};
