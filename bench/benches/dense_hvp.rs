//! Dense symmetric HVP: one triangle (DenseSym) against faer's general matrix-vector product.
//! Throughput is the bytes of the matrix each product must read: d(d+1)/2·8 for one triangle,
//! d²·8 for the general product, so the GB/s column compares effective bandwidth.
use bilevel_kernels::linop::{sym_lower_matvec, DenseGeneral, DenseSym, Operator};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faer::{Mat, Par};

fn sym(d: usize) -> Mat<f64> {
    Mat::from_fn(d, d, |i, j| {
        let (a, b) = (i.min(j) as f64, i.max(j) as f64);
        ((a * 0.37 + b * 0.11).sin() + if i == j { d as f64 } else { 0.0 }) / d as f64
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dense_hvp");
    for d in [500, 1000, 2000, 4000] {
        let a = sym(d);
        let v: Vec<f64> = (0..d).map(|i| (i as f64).cos()).collect();
        let mut out = vec![0.0; d];
        let one_triangle = DenseSym::new(a.clone()).expect("symmetric");
        let general_seq = DenseGeneral::new(a.clone(), Par::Seq).expect("finite");
        let general_par = DenseGeneral::new(a, Par::rayon(0)).expect("finite");
        g.throughput(Throughput::Bytes((d * (d + 1) / 2 * 8) as u64));
        g.bench_with_input(BenchmarkId::new("sym_lower_seq", d), &d, |b, _| {
            b.iter(|| sym_lower_matvec(one_triangle.matrix(), &v, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("sym_lower_par", d), &d, |b, _| {
            b.iter(|| one_triangle.apply(&v, &mut out))
        });
        g.throughput(Throughput::Bytes((d * d * 8) as u64));
        g.bench_with_input(BenchmarkId::new("faer_gemv_seq", d), &d, |b, _| b.iter(|| general_seq.apply(&v, &mut out)));
        g.bench_with_input(BenchmarkId::new("faer_gemv_par", d), &d, |b, _| b.iter(|| general_par.apply(&v, &mut out)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
