//! Benchmark support shared by the criterion benches and the complexity harness.
