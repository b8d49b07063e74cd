//! `bilevel`: bilevel optimization in Rust. This facade re-exports the workspace crates; the
//! command line lives in the binary (src/main.rs and its modules).
pub use bilevel_data as data;
pub use bilevel_kernels as kernels;
pub use bilevel_solvers as solvers;
