//! Cost of one CG iteration against one HVP, and our CG against faer's `conjugate_gradient`,
//! on dense symmetric operators (one-triangle HVP). Each solve runs exactly ITERS iterations
//! (tolerance 0), so time/ITERS is the per-iteration cost.
use bilevel_bench::{spd, vector};
use bilevel_kernels::linop::{DenseSym, FaerOp, Operator};
use bilevel_kernels::linsolve::{Cg, Stopping};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::conjugate_gradient::{conjugate_gradient, conjugate_gradient_scratch, CgParams as FaerCgParams};
use faer::matrix_free::IdentityPrecond;
use faer::{Mat, Par};

const ITERS: usize = 20;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cg");
    for d in [500, 1000, 2000, 4000] {
        let op = DenseSym::new(spd(d, 1e6, 1)).unwrap();
        let b = vector(d, 2);
        let mut hv = vec![0.0; d];
        g.bench_with_input(BenchmarkId::new("hvp_x20", d), &d, |bch, _| {
            bch.iter(|| (0..ITERS).for_each(|_| op.apply(&b, &mut hv)))
        });
        let mut cg = Cg::new(d, Stopping::fixed_steps(ITERS));
        let mut x = vec![0.0; d];
        g.bench_with_input(BenchmarkId::new("ours_20_iters", d), &d, |bch, _| {
            bch.iter(|| {
                x.fill(0.0);
                cg.solve(&op, &b, &mut x).unwrap()
            })
        });
        let fop = FaerOp(&op);
        let pre = IdentityPrecond { dim: d };
        let mut mem = MemBuffer::new(conjugate_gradient_scratch(pre, &fop, 1, Par::Seq));
        let rhs = Mat::from_fn(d, 1, |i, _| b[i]);
        let mut xf = Mat::<f64>::zeros(d, 1);
        let fparams = FaerCgParams { abs_tolerance: 0.0, rel_tolerance: 0.0, max_iters: ITERS, ..Default::default() };
        g.bench_with_input(BenchmarkId::new("faer_20_iters", d), &d, |bch, _| {
            bch.iter(|| {
                xf.fill(0.0);
                let _ = conjugate_gradient(
                    xf.as_mut(),
                    pre,
                    &fop,
                    rhs.as_ref(),
                    fparams,
                    |_| {},
                    Par::Seq,
                    MemStack::new(&mut mem),
                );
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
