//! One criterion benchmark per row of the NumPy/SciPy/JAX comparison (bench/peers/,
//! docs/performance.md), on the same instances as `bench/peers/run.sh` (generated here with
//! the same generators and seeds instead of loaded), so that a regression of a compared
//! computation shows in `cargo bench` without Python:
//!
//! - goal 1: one AID-CG hypergradient on the AmIGO F.1 quadratic (d_x = 2000, d_y = 1000,
//!   κ_g = 1e3; T = 10 inner steps from y = 0 with B_g x hoisted, N = 10 and N = 100 CG steps);
//! - goal 2: one AmIGO-CG step (T = N = 10, warm-started y and v, α = β = γ = 1, the
//!   experiments rule with the prescribed L_g = L_L = 1) on the same instance;
//! - goal 3: the binary and the multinomial (K = 20) logistic HVPs on the `text` 20news
//!   preset's training split, full batch, at a seeded point;
//! - goal 4: one stocBiO iteration (batch 64, T = Q = 10) on benchopt's stochastic quadratic
//!   (d_y = 100, d_x = 10, n = 1024 per level), dense and rank-one per-sample storage.
//!
//! Throughput is the byte floor of the row (the same formulas as bench/peers/compare.py), so
//! criterion's bytes/s is the "Rust GB/s" column of the table. Set-up is never timed.
use bilevel_data::quadratic::{generate, Config};
use bilevel_data::stochastic_quadratic::{self as sq, Layout};
use bilevel_data::text::{self, TextConfig};
use bilevel_kernels::models::multinomial::{self, MultinomialLogistic};
use bilevel_kernels::models::{Design, Hyper, LogisticModel};
use bilevel_kernels::{Batch, BilevelProblem, StepBatches};
use bilevel_solvers::{
    AdjointSolver, Aid, AidBilevel, AidBilevelConfig, AidConfig, AidVariant, Algorithm, BatchSizes, StepSizes,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

fn group<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g
}

/// One triangle of a symmetric d×d matrix, in bytes.
fn tri(d: usize) -> u64 {
    (d * (d + 1) / 2 * 8) as u64
}

fn quadratic(c: &mut Criterion) {
    let config = Config { kappa_g: 1e3, ..Config::preset("paper").unwrap() };
    let p = generate(&config, 0).unwrap();
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let x = p.x0(0);
    let (t, step) = (10, 1.0 / config.l_g);
    let mut g = group(c, "peers_goal1_hypergradient");
    for n in [10, 100] {
        let mut aid = Aid::new(AidConfig { solver: AdjointSolver::Cg, steps: n, warm_start: false }, dx, dy).unwrap();
        let (mut y, mut work, mut out) = (vec![0.0; dy], vec![0.0; dy], vec![0.0; dx]);
        // T + N products with A_g, B_g twice (B_g x, B_gᵀv), one triangle of A_f.
        g.throughput(Throughput::Bytes((t + n) as u64 * tri(dy) + 2 * (dx * dy * 8) as u64 + tri(dx)));
        g.bench_function(BenchmarkId::new("aid_cg", format!("T{t}_N{n}")), |b| {
            b.iter(|| {
                y.fill(0.0);
                p.inner_gradient_steps(&x, &mut y, step, StepBatches::full(t), &mut work);
                aid.estimate(&p, &x, &y, &mut out).unwrap();
            })
        });
    }
    g.finish();
    let steps = StepSizes { inner: step, adjoint: step, outer: 1.0 };
    let mut alg = AidBilevel::new("amigo-cg", AidBilevelConfig::variant(AidVariant::AmigoCg, 10, 10, steps)).unwrap();
    alg.init(&p, &x, &vec![0.0; dy]).unwrap();
    for _ in 0..5 {
        alg.step(&p).unwrap();
    }
    let mut g = group(c, "peers_goal2_amigo_cg");
    // T + N + 1 products with A_g (the warm start's initial residual), B_g twice, A_f.
    g.throughput(Throughput::Bytes(21 * tri(dy) + 2 * (dx * dy * 8) as u64 + tri(dx)));
    g.bench_function(BenchmarkId::new("step", "kappa1e3"), |b| b.iter(|| alg.step(&p).unwrap()));
    g.finish();
}

fn logistic(c: &mut Criterion) {
    let data = text::generate(&TextConfig::preset("20news").unwrap(), 0).unwrap();
    let (x, labels) = (data.train.x, data.train.labels);
    let (n, d, k, nnz) = (x.nrows(), x.ncols(), data.config.n_classes, x.nnz());
    let x_bytes = (nnz * 12 + (n + 1) * 8) as u64;
    let mut g = group(c, "peers_goal3_logistic_hvp");
    let signs: Vec<f64> = labels.iter().map(|&c| if c % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let binary = LogisticModel::new(Design::Sparse(x.clone()), signs, Hyper::None).unwrap();
    let (theta, v) = (bilevel_bench::vector(d, 11), bilevel_bench::vector(d, 12));
    let mut ws = binary.workspace();
    let mut out = vec![0.0; d];
    let mut point = binary.point(&theta, &[], Batch::Full, &mut ws).unwrap();
    g.throughput(Throughput::Bytes(x_bytes + (2 * d * 8 + n * 8) as u64));
    g.bench_function(BenchmarkId::new("binary", "20news"), |b| b.iter(|| point.hvp(&v, &mut out).unwrap()));
    let multi = MultinomialLogistic::new(Design::Sparse(x), labels, k, multinomial::Hyper::Plain).unwrap();
    let (theta, v) = (bilevel_bench::vector(d * k, 21), bilevel_bench::vector(d * k, 22));
    let mut ws = multi.workspace(n);
    let mut out = vec![0.0; d * k];
    let mut point = multi.point(&theta, &[], Batch::Full, &mut ws).unwrap();
    g.throughput(Throughput::Bytes(x_bytes + (2 * d * k * 8 + n * k * 8) as u64));
    g.bench_function(BenchmarkId::new("multinomial", "20news_K20"), |b| b.iter(|| point.hvp(&v, &mut out).unwrap()));
    g.finish();
}

fn stocbio(c: &mut Criterion) {
    let mut g = group(c, "peers_goal4_stocbio");
    for layout in [Layout::Dense, Layout::RankOne] {
        let config = sq::Config { dim_x: 10, layout, ..sq::Config::preset("benchopt").unwrap() };
        let p = sq::generate(&config, 0).unwrap();
        let (dx, dy, b) = (p.dim_x(), p.dim_y(), 64);
        let k = p.constants();
        let (l_s, mu, l_outer) = (k.l_g_sample.unwrap(), k.mu_g.unwrap(), k.l_outer.unwrap());
        // Theorem 3's steps on the per-sample smoothness, as the `peers stocbio` run.
        let steps = StepSizes { inner: 2.0 / (l_s + mu), adjoint: 1.0 / l_s, outer: 1.0 / (4.0 * l_outer) };
        let alg_config =
            AidBilevelConfig::variant(AidVariant::AidNeumann, 10, 10, steps).with_batches(BatchSizes::all(b), 0);
        let mut alg = AidBilevel::new("stocbio", alg_config).unwrap();
        alg.init(&p, &p.x0(0), &vec![0.0; dy]).unwrap();
        let (t, q) = (10, 10);
        let per_sample = match layout {
            Layout::Dense => {
                let (ty, tx, cr) = (dy * (dy + 1) / 2, dx * (dx + 1) / 2, dx * dy);
                t * (ty + cr + dy) + (ty + 2 * cr + tx + dy + dx) + q * ty + cr
            }
            Layout::RankOne => t * (3 * dy + dx) + (3 * dy + 3 * dx) + q * dy + (dy + dx),
        };
        g.throughput(Throughput::Bytes((per_sample * b * 8) as u64));
        g.bench_function(BenchmarkId::new("iteration", layout.name()), |bch| bch.iter(|| alg.step(&p).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, quadratic, logistic, stocbio);
criterion_main!(benches);
