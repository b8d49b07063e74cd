//! Instruction counts of the inner-loop kernels under callgrind (repeatable on a busy machine).
//! Needs valgrind and the runner of the crate's version: `cargo install iai-callgrind-runner
//! --version 0.16.1` (its `bin/` on PATH, or `IAI_CALLGRIND_RUNNER=/path/to/iai-callgrind-runner`),
//! then `cargo bench -p bilevel-bench --bench instructions`. Valgrind hides AVX-512, so these
//! count the AVX2 path. Set-up (the `#[bench]` argument expressions) is not counted.
//!
//! Group `kernels`: the fused CG update, a dot product, the one-triangle symmetric matvec.
//! Group `oracles`, every one on its sequential path: callgrind's `--toggle-collect` on the
//! benchmark function counts only the thread that runs it, so work handed to rayon's workers
//! (`DenseSym` above `PAR_MIN_DIM` = 800, the logistic model above `par_min_nnz`) would be
//! missed, not slowed down. The counts are the total work of the product, whatever the threads:
//! - `dense_hvp`: one HVP of a dense symmetric matrix reading its lower triangle only
//!   (`linop::sym_lower_matvec`, the kernel of `DenseSym`'s blocks) at d = 1000;
//! - `sparse_logistic_hvp`: one fused HVP of a binary logistic model with per-feature weights
//!   at a point computed in set-up (10⁴ rows × 10⁴ features, 20 non-zeros per row;
//!   `with_par_min_nnz(usize::MAX)`);
//! - `cg_1_iter`, `cg_2_iters`: CG on that dense operator (d = 1000, as a `FnOp`) from x = 0
//!   with 1 and 2 iterations:
//!   their difference is one CG iteration (one HVP, the fused update, the dot products);
//! - `neumann_1_term`, `neumann_2_terms`: the same for the Neumann series (one HVP and the
//!   fused Neumann update per term);
//! - `amigo_cg_step`: one outer iteration of AmIGO-CG (T = N = 10, experiments' steps) on the F.1
//!   quadratic (`small` preset: d_x = 200, d_y = 100), after `init`.
use bilevel_bench::{random_csr, vector};
use bilevel_data::catalog::{build, BuildOptions, Built};
use bilevel_kernels::linop::FnOp;
use bilevel_kernels::linsolve::{Cg, Neumann, Stopping};
use bilevel_kernels::models::logistic::Point;
use bilevel_kernels::models::{Design, Hyper, LogisticModel};
use bilevel_kernels::{linop, ops, Batch};
use bilevel_solvers::algorithms::{self, Algorithm, Settings};
use bilevel_solvers::{constants, Context, Overrides, StepRule};
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

/// A symmetric positive-definite d × d matrix (diagonally dominant), a right-hand side and an
/// output buffer. Cheap to build under valgrind (no factorization).
fn dense(d: usize) -> (faer::Mat<f64>, Vec<f64>, Vec<f64>) {
    let a = faer::Mat::from_fn(d, d, |i, j| {
        let off = ((i.min(j) * 3 + i.max(j)) % 7) as f64 / 7.0;
        if i == j {
            off + d as f64
        } else {
            off
        }
    });
    (a, vector(d, 1), vec![0.0; d])
}

type Dense = (faer::Mat<f64>, Vec<f64>, Vec<f64>);

#[library_benchmark]
#[bench::d1000(dense(1000))]
fn dense_hvp((a, v, mut out): Dense) -> Dense {
    linop::sym_lower_matvec(a.as_ref(), &v, &mut out);
    (a, v, black_box(out))
}

/// A logistic model's point at a random θ (the model and its workspace leaked, so the point
/// can leave the set-up), and v, out.
fn logistic_point(n: usize, d: usize, per_row: usize) -> (Point<'static>, Vec<f64>, Vec<f64>) {
    let x = random_csr(n, d, per_row, 1);
    let labels: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { 1.0 } else { -1.0 }).collect();
    let model = LogisticModel::new(Design::Sparse(x), labels, Hyper::per_feature_benchopt()).unwrap();
    let model: &'static LogisticModel = Box::leak(Box::new(model.with_par_min_nnz(usize::MAX)));
    let ws = Box::leak(Box::new(model.workspace()));
    let theta: &'static [f64] = Box::leak(vector(d, 2).into_boxed_slice());
    let lambda: &'static [f64] = Box::leak(vec![0.0; d].into_boxed_slice());
    let pt = model.point(theta, lambda, Batch::Full, ws).unwrap();
    (pt, vector(d, 3), vec![0.0; d])
}

#[library_benchmark]
#[bench::n10000_d10000_nnz20(logistic_point(10_000, 10_000, 20))]
fn sparse_logistic_hvp(
    (mut pt, v, mut out): (Point<'static>, Vec<f64>, Vec<f64>),
) -> (Point<'static>, Vec<f64>, Vec<f64>) {
    pt.hvp(&v, &mut out).unwrap();
    (pt, v, black_box(out))
}

fn cg_setup(d: usize, iters: usize) -> (Cg, Dense) {
    (Cg::new(d, Stopping::fixed_steps(iters)), dense(d))
}

#[library_benchmark]
#[bench::cg_1_iter(cg_setup(1000, 1))]
#[bench::cg_2_iters(cg_setup(1000, 2))]
fn cg((mut cg, (a, b, mut x)): (Cg, Dense)) -> (Cg, Dense) {
    let op = FnOp::symmetric(a.nrows(), |v: &[f64], out: &mut [f64]| linop::sym_lower_matvec(a.as_ref(), v, out));
    black_box(cg.solve(&op, &b, &mut x).unwrap());
    (cg, (a, b, x))
}

fn neumann_setup(d: usize, terms: usize) -> (Neumann, Dense) {
    // η = 1/(2d) < 1/λ_max (the diagonal dominates: λ_max ≤ 2d).
    (Neumann::new(d, 0.5 / d as f64, Stopping::fixed_steps(terms)), dense(d))
}

#[library_benchmark]
#[bench::neumann_1_term(neumann_setup(1000, 1))]
#[bench::neumann_2_terms(neumann_setup(1000, 2))]
fn neumann((mut n, (a, b, mut v)): (Neumann, Dense)) -> (Neumann, Dense) {
    let op = FnOp::symmetric(a.nrows(), |v: &[f64], out: &mut [f64]| linop::sym_lower_matvec(a.as_ref(), v, out));
    black_box(n.solve(&op, &b, &mut v).unwrap());
    (n, (a, b, v))
}

/// `name` on the F.1 quadratic of `preset`, built and initialised as the solvers' tests do.
fn initialised(name: &str, preset: &str) -> (Built, Box<dyn Algorithm>) {
    let built =
        build("quadratic", &BuildOptions { preset: Some(preset.into()), seed: 1, ..Default::default() }).unwrap();
    let (x0, y0) = (built.x0(1), built.y0());
    let p = built.problem().as_bilevel().unwrap();
    let settings = Settings::default();
    let need = algorithms::needs(name, StepRule::Default, &settings).unwrap();
    let c = constants::resolve(p, &x0, &y0, &need, &Overrides::default()).unwrap();
    let mut alg = algorithms::build(
        name,
        StepRule::Default,
        &Context { problem: p, family: "", constants: &c, x0: &x0 },
        &settings,
    )
    .map(|b| b.algorithm)
    .unwrap();
    alg.init(p, &x0, &y0).unwrap();
    (built, alg)
}

#[library_benchmark]
#[bench::small(initialised("amigo-cg", "small"))]
fn amigo_cg_step((built, mut alg): (Built, Box<dyn Algorithm>)) -> (Built, Box<dyn Algorithm>) {
    alg.step(built.problem().as_bilevel().unwrap()).unwrap();
    (built, alg)
}

library_benchmark_group!(name = kernels; benchmarks = cg_update, dot, sym_lower_matvec);
library_benchmark_group!(
    name = oracles;
    benchmarks = dense_hvp, sparse_logistic_hvp, cg, neumann, amigo_cg_step
);
main!(library_benchmark_groups = kernels, oracles);
