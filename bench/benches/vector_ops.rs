//! Vector primitives against the STREAM triad (a = b + s·c) measured in the same run.
//! Throughput is in bytes moved (reads + writes), so criterion prints GB/s directly.
use bilevel_kernels::ops;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

// 1e7 is the out-of-cache size on the CI machine (L3 = 32 MiB holds three 1e6 vectors).
const SIZES: [usize; 5] = [1_000, 10_000, 100_000, 1_000_000, 10_000_000];

fn data(n: usize, k: u64) -> Vec<f64> {
    (0..n).map(|i| ((i as u64 * 2654435761 + k) % 1000) as f64 / 1000.0 - 0.5).collect()
}

/// The fused CG update written as a plain scalar loop (what a straightforward port does).
fn cg_update_plain(alpha: f64, p: &[f64], hp: &[f64], x: &mut [f64], r: &mut [f64]) -> f64 {
    let mut rr = 0.0;
    for i in 0..p.len() {
        x[i] += alpha * p[i];
        r[i] -= alpha * hp[i];
        rr += r[i] * r[i];
    }
    rr
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("vector");
    for n in SIZES {
        let bytes = |streams: usize| Throughput::Bytes((streams * n * 8) as u64);
        let (b, cc) = (data(n, 1), data(n, 2));
        let (mut x, mut r) = (data(n, 3), data(n, 4));
        let mut a = vec![0.0; n];

        g.throughput(bytes(3));
        g.bench_with_input(BenchmarkId::new("triad", n), &n, |bch, _| bch.iter(|| ops::triad(&mut a, &b, 1e-9, &cc)));
        g.throughput(bytes(2));
        g.bench_with_input(BenchmarkId::new("dot", n), &n, |bch, _| bch.iter(|| black_box(ops::dot(&b, &cc))));
        g.bench_with_input(BenchmarkId::new("dot_plain", n), &n, |bch, _| {
            bch.iter(|| black_box(b.iter().zip(&cc).map(|(x, y)| x * y).sum::<f64>()))
        });
        g.throughput(bytes(3));
        g.bench_with_input(BenchmarkId::new("axpy", n), &n, |bch, _| bch.iter(|| ops::axpy(1e-9, &b, &mut x)));
        // cg_update reads p, hp, x, r and writes x, r: 6 streams.
        g.throughput(bytes(6));
        g.bench_with_input(BenchmarkId::new("cg_update", n), &n, |bch, _| {
            bch.iter(|| black_box(ops::cg_update(1e-9, &b, &cc, &mut x, &mut r)))
        });
        g.bench_with_input(BenchmarkId::new("cg_update_plain", n), &n, |bch, _| {
            bch.iter(|| black_box(cg_update_plain(1e-9, &b, &cc, &mut x, &mut r)))
        });
        // richardson reads hz, b, z and writes z: 4 streams; neumann reads hr, r, acc, writes r, acc: 5.
        g.throughput(bytes(4));
        g.bench_with_input(BenchmarkId::new("richardson_update", n), &n, |bch, _| {
            bch.iter(|| black_box(ops::richardson_update(1e-9, &b, &cc, &mut x)))
        });
        g.throughput(bytes(5));
        g.bench_with_input(BenchmarkId::new("neumann_update", n), &n, |bch, _| {
            bch.iter(|| black_box(ops::neumann_update(1e-9, &b, &mut r, &mut x)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
