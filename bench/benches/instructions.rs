//! Instruction counts of the inner-loop kernels under callgrind (repeatable on a busy machine).
//! Needs the runner: `cargo install iai-callgrind-runner --version 0.16.1`, then
//! `cargo bench -p bilevel-bench --bench instructions`. Valgrind hides AVX-512, so these count
//! the AVX2 path.
use bilevel_kernels::{linop, ops};
use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use std::hint::black_box;

fn vectors(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let v = |k: usize| (0..n).map(|i| ((i * 31 + k) % 17) as f64 - 8.0).collect::<Vec<_>>();
    (v(1), v(2), v(3), v(4))
}

#[library_benchmark]
#[bench::n10000(vectors(10_000))]
fn cg_update((p, hp, mut x, mut r): (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)) -> f64 {
    black_box(ops::cg_update(1e-3, &p, &hp, &mut x, &mut r))
}

#[library_benchmark]
#[bench::n10000(vectors(10_000))]
fn dot((a, b, _, _): (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)) -> f64 {
    black_box(ops::dot(&a, &b))
}

fn sym(d: usize) -> (faer::Mat<f64>, Vec<f64>, Vec<f64>) {
    let a = faer::Mat::from_fn(d, d, |i, j| ((i.min(j) * 3 + i.max(j)) % 7) as f64);
    (a, vec![1.0; d], vec![0.0; d])
}

#[library_benchmark]
#[bench::d500(sym(500))]
fn sym_lower_matvec((a, v, mut out): (faer::Mat<f64>, Vec<f64>, Vec<f64>)) -> Vec<f64> {
    linop::sym_lower_matvec(a.as_ref(), &v, &mut out);
    black_box(out)
}

library_benchmark_group!(name = kernels; benchmarks = cg_update, dot, sym_lower_matvec);
main!(library_benchmark_groups = kernels);
