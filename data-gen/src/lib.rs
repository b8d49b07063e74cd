//! `bilevel-data`: seeded problem generators with their exact references, dataset readers and
//! writers, and export of any generated problem to `.npy` files plus a JSON manifest.
//!
//! Every generator is a function of a config struct (with `Default` and named presets) and a
//! seed (rand_xoshiro's `Xoshiro256PlusPlus`): the same config and seed give the same problem,
//! bit for bit. Generated problems implement `bilevel_kernels::BilevelProblem` (or, for
//! fixed-point lower levels, the fixed-point oracle trait) and [`Dataset`] for export.

#![warn(missing_docs)]

pub mod catalog;
pub mod dataset;
pub mod distillation;
pub mod equilibrium;
pub mod export;
pub mod from_file;
pub mod hyperclean;
pub mod libsvm;
pub mod logreg_hpo;
pub mod meta_learning;
pub mod npy;
pub mod quadratic;
pub mod random_matrix;
pub mod stochastic_quadratic;
pub mod text;

pub use dataset::{Array, ArrayData, Dataset, GeneratorInfo};
