//! Helpers shared by the finite-difference tests of the generators.
#![allow(dead_code)]

use bilevel_data::Dataset;
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// n entries uniform in [-½, ½).
pub fn rand_vec(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    (0..n).map(|_| rng.random::<f64>() - 0.5).collect()
}

/// Central difference of `h` at `z` along `dir`.
pub fn fd(h: impl Fn(&[f64]) -> f64, z: &[f64], dir: &[f64]) -> f64 {
    let eps = 1e-6;
    let shifted = |s: f64| z.iter().zip(dir).map(|(a, b)| a + s * b).collect::<Vec<_>>();
    (h(&shifted(eps)) - h(&shifted(-eps))) / (2.0 * eps)
}

/// ⟨a, b⟩.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Seeding: `generate(seed)` twice gives the same arrays, `generate(seed + 1)` other ones.
/// Returns the first.
pub fn assert_seeded<D: Dataset>(generate: impl Fn(u64) -> D, seed: u64) -> D {
    let (a, b, other) = (generate(seed), generate(seed), generate(seed + 1));
    assert!(a.arrays() == b.arrays(), "{}: the same seed gave different data", a.generator());
    assert!(a.arrays() != other.arrays(), "{}: seeds {seed} and {} gave the same data", a.generator(), seed + 1);
    a
}

/// |a − b| ≤ 1e-6·max(|b|, 1e-2).
pub fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-2), "{a} vs {b}");
}
