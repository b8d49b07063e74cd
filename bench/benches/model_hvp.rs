//! Model-family HVPs and hoisting.
//!
//! - sparse logistic HVP (200k rows, 50 non-zeros each, d features) Xᵀ D X v: the fused row-wise pass (s_i = x_iᵀv; out += D_i s_i x_i,
//!   each row read once) against two separate sparse products (s = Xv, then Xᵀ(D s)), which is
//!   what `X.T @ (D * (X @ v))` does in scipy; throughput = the bytes of X (12 per non-zero);
//! - quadratic inner gradient steps: `inner_gradient_steps` computes B x once per call, against
//!   the per-step loop that recomputes it each step.
use bilevel_bench::{random_csr, spd, vector};
use bilevel_kernels::models::{Design, Hyper, LogisticModel, QuadraticBilevel};
use bilevel_kernels::{Batch, BilevelProblem, StepBatches};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faer::Mat;

fn logistic(c: &mut Criterion) {
    let mut g = c.benchmark_group("logistic_hvp");
    g.sample_size(10);
    // 200k rows × 50 non-zeros: X is 120 MB, far out of the 32 MiB L3, as a real corpus is.
    let (n, per_row) = (200_000, 50);
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for d in [1_000, 10_000, 100_000, 1_000_000] {
        let x = random_csr(n, d, per_row, 1);
        let labels: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { 1.0 } else { -1.0 }).collect();
        let theta = vector(d, 2);
        let v = vector(d, 3);
        let lambda = vec![0.0; d];
        let mut out = vec![0.0; d];
        g.throughput(Throughput::Bytes((x.nnz() * 12) as u64));
        let model =
            LogisticModel::new(Design::Sparse(x.clone()), labels.clone(), Hyper::per_feature_benchopt()).unwrap();
        let mut ws = model.workspace();
        let mut pt = model.point(&theta, &lambda, Batch::Full, &mut ws).unwrap();
        // The same curvature D_i as the fused kernel, for the two-product baseline.
        let curv: Vec<f64> = (0..n)
            .map(|i| {
                let z = labels[i] * x.row_dot(i, &theta);
                let s = 1.0 / (1.0 + (-z).exp());
                s * (1.0 - s) / n as f64
            })
            .collect();
        let mut s = vec![0.0; n];
        let mut two_products = |out: &mut [f64]| {
            x.matvec(&v, &mut s);
            s.iter_mut().zip(&curv).for_each(|(s, c)| *s *= c);
            x.transpose_matvec(&s, out);
        };
        g.bench_with_input(BenchmarkId::new("fused_1thread", d), &d, |b, _| {
            b.iter(|| one_thread.install(|| pt.hvp(&v, &mut out).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("two_products_1thread", d), &d, |b, _| {
            b.iter(|| one_thread.install(|| two_products(&mut out)))
        });
        g.bench_with_input(BenchmarkId::new("fused", d), &d, |b, _| b.iter(|| pt.hvp(&v, &mut out).unwrap()));
        g.bench_with_input(BenchmarkId::new("two_products", d), &d, |b, _| b.iter(|| two_products(&mut out)));
    }
    g.finish();
}

fn quadratic_hoisting(c: &mut Criterion) {
    let mut g = c.benchmark_group("quadratic_inner_steps");
    for (dx, dy) in [(200, 100), (2000, 1000)] {
        let problem = QuadraticBilevel::amigo_f1(
            spd(dx, 10.0, 1),
            vector(dy, 2),
            spd(dy, 100.0, 3),
            Mat::from_fn(dy, dx, |i, j| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.5),
        )
        .unwrap();
        let x = vector(dx, 4);
        let y0 = vector(dy, 5);
        let (mut y, mut work) = (y0.clone(), vec![0.0; dy]);
        let steps = 10;
        let id = format!("{dx}x{dy}");
        g.bench_with_input(BenchmarkId::new("hoisted", &id), &id, |b, _| {
            b.iter(|| {
                y.copy_from_slice(&y0);
                problem.inner_gradient_steps(&x, &mut y, 0.5, StepBatches::full(steps), &mut work)
            })
        });
        g.bench_with_input(BenchmarkId::new("per_step", &id), &id, |b, _| {
            b.iter(|| {
                y.copy_from_slice(&y0);
                for _ in 0..steps {
                    problem.grad_y_g(&x, &y, Batch::Full, &mut work);
                    bilevel_kernels::ops::axpy(-0.5, &work, &mut y);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, logistic, quadratic_hoisting);
criterion_main!(benches);
