//! `bilevel`: bilevel optimization in Rust. This facade re-exports the workspace crates.
pub use bilevel_data as data;
pub use bilevel_kernels as kernels;
pub use bilevel_solvers as solvers;
pub mod cli;
pub mod demo;
pub mod hypergrad_cmd;
pub mod problem_args;
pub mod solve_cmd;
