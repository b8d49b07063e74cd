//! One hypergradient estimate of every estimator: AID with CG, GD (Richardson), the fixed-point
//! iteration and a truncated Neumann series (N = 10 adjoint steps, cold start), ITD (T = 10
//! inner steps differentiated in reverse), SID on the gradient map (t = k = 10), the
//! randomized-truncation estimator of BSA/TTSA/SUSTAIN (horizon 10; its depth k is drawn once,
//! outside the timed loop, and is in the bench id) and, where the problem has a closed form,
//! the exact hypergradient. Steps β = α = η = 1/L_g.
//!
//! - d_y = 10³: the F.1 quadratic (data-gen `quadratic`, `paper` preset: d_x = 2000,
//!   d_y = 1000; dense A_g, B_g; generated once, O(d³), outside the timed loop);
//! - d_y = 10⁴: a dense 10⁴ × 10⁴ A_g would be 800 MB, too big for the bench machine, so this
//!   size runs a sparse binary logistic HPO problem instead (data-gen `logreg_binary` with
//!   10⁴ features, 2000 training and 1000 validation rows, density 1%: ≈ 100 non-zeros per
//!   row; d_x = d_y = 10⁴). It has no closed-form hypergradient: no `exact` there (the
//!   reference is a Newton solve, not an estimator).
//!
//! Throughput: `Elements` = the oracle calls of one estimate (∂x f/∂y f pairs, ∂y g, HVPs,
//! cross products: `OracleCounts::total` in paper 000's convention), counted once on the
//! problem's `Counted` wrapper, so criterion's elem/s is oracle calls per second. The timed
//! loop runs on the same `Counted` problem (a few relaxed atomic adds per call).
use bilevel_data::logreg_hpo::{binary_problem, BinaryConfig};
use bilevel_data::quadratic::{generate, Config};
use bilevel_kernels::{BilevelProblem, Counted, CountingConvention, GradientMap};
use bilevel_solvers::estimators::truncated::TruncatedHypergradient;
use bilevel_solvers::estimators::{exact_hypergradient, AdjointSolver, Aid, AidConfig, Itd, Sid};
use bilevel_solvers::{constants, BatchSizes, Constant, Overrides};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

/// Adjoint steps N, ITD's T, SID's t and k, the truncation horizon.
const STEPS: usize = 10;

/// Every estimator on `p` at (x, y); `label` is the bench parameter (d_y and the problem).
fn estimators<P: BilevelProblem>(c: &mut Criterion, p: &Counted<P>, label: &str, has_exact: bool) {
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let x = bilevel_bench::vector(dx, 11);
    let y = bilevel_bench::vector(dy, 12);
    let k = constants::resolve(p.inner(), &x, &y, &[Constant::LG], &Overrides::default()).unwrap();
    let l_g = k.l_g().unwrap();
    let step = 1.0 / l_g;
    let mut out = vec![0.0; dx];
    let mut g = c.benchmark_group("estimator");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    // Runs `f` once on the counted problem to set the throughput, then times it.
    let bench = |g: &mut criterion::BenchmarkGroup<'_, _>, name: &str, f: &mut dyn FnMut()| {
        p.reset();
        f();
        g.throughput(Throughput::Elements(p.counts().total(CountingConvention::PairedGradF)));
        g.bench_function(BenchmarkId::new(name, label), |b| b.iter(&mut *f));
    };
    let solvers = [
        ("aid_cg", AdjointSolver::Cg),
        ("aid_gd", AdjointSolver::Gd { step }),
        ("aid_fp", AdjointSolver::FixedPoint { step }),
        ("aid_neumann", AdjointSolver::Neumann { step }),
    ];
    for (name, solver) in solvers {
        let mut aid = Aid::new(AidConfig { solver, steps: STEPS, warm_start: false }, dx, dy).unwrap();
        bench(&mut g, name, &mut || {
            aid.estimate(p, &x, &y, &mut out).unwrap();
        });
    }
    let mut itd = Itd::new(STEPS, step, dx, dy).unwrap();
    let mut yt = y.clone();
    bench(&mut g, "itd", &mut || {
        yt.copy_from_slice(&y);
        itd.estimate(p, &x, &mut yt, &mut out).unwrap();
    });
    let map = GradientMap { problem: p, eta: step };
    let mut sid = Sid::new(dy, dx);
    bench(&mut g, "sid", &mut || sid.hypergradient(&map, &x, STEPS, STEPS, &mut out).unwrap());
    let mut trunc = TruncatedHypergradient::new(p, l_g, STEPS, &BatchSizes::full(), 5).unwrap();
    let depth = trunc.draw().unwrap();
    bench(&mut g, &format!("truncated_k{depth}"), &mut || trunc.evaluate(p, &x, &y, &mut out).unwrap());
    if has_exact {
        // The closed form (∇L = A_f x + B_gᵀz* on the quadratic), no oracle call: throughput = evaluations.
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("exact", label), |b| {
            b.iter(|| exact_hypergradient(p, &x, &mut out).unwrap())
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    let q = Counted::new(generate(&Config::preset("paper").unwrap(), 1).unwrap());
    estimators(c, &q, "dy1000_quadratic", true);
    drop(q);
    let config = BinaryConfig {
        n_train: 2_000,
        n_val: 1_000,
        n_test: 0,
        n_features: 10_000,
        n_informative: 100,
        density: 0.01,
        ..BinaryConfig::default()
    };
    let l = Counted::new(binary_problem(&config, 1).unwrap());
    estimators(c, &l, "dy10000_logreg_sparse", false);
}

criterion_group!(benches, bench);
criterion_main!(benches);
