//! Few-shot meta-learning oracles at the default preset (200 tasks, p = 100, k = 5, 10 support
//! and 15 query rows per task): the HVP (per-head outputs), ∂E f and the cross product (sums
//! over tasks), on batches of 8 to 200 tasks, run sequentially (`par_min_work = usize::MAX`,
//! called directly: `seq`) and with the per-task blocks forced parallel (`par_min_work = 0`)
//! inside 1- and 2-thread pools (`par_1t`, `par_2t`; the time includes `install`, i.e. handing
//! the call to the pool, which a call from outside rayon's global pool also pays).
//! The same on the small preset's full batch (20 tasks, p = 20, k = 3). The sequential/parallel
//! crossover sets `meta_learning::PAR_MIN_WORK` (docs/generators.md).
use bilevel_data::meta_learning::{generate, Config};
use bilevel_kernels::{Batch, BilevelProblem};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("meta_learning");
    g.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let p = generate(&Config::default(), 1).unwrap();
    let (x, y) = (p.x0(2), bilevel_bench::vector(p.dim_y(), 3));
    let v = bilevel_bench::vector(p.dim_y(), 4);
    let (mut ox, mut oy) = (vec![0.0; p.dim_x()], vec![0.0; p.dim_y()]);
    let rows: Vec<usize> = (0..200).map(|i| (i * 37) % 200).collect();
    let pools: Vec<_> =
        [1, 2].map(|n| (n, rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap())).into_iter().collect();
    for tasks in [8, 16, 32, 64, 200] {
        let batch = if tasks == 200 { Batch::Full } else { Batch::Rows(&rows[..tasks]) };
        let variants = [("seq", p.clone().with_par_min_work(usize::MAX)), ("par", p.clone().with_par_min_work(0))];
        for (name, q) in &variants {
            for (threads, pool) in &pools {
                if *name == "seq" && *threads == 2 {
                    continue;
                }
                let id = |oracle: &str| {
                    let variant = if *name == "seq" { "seq".to_string() } else { format!("par_{threads}t") };
                    BenchmarkId::new(format!("{oracle}_{variant}"), tasks)
                };
                let run = |f: &mut (dyn FnMut() + Send)| if *name == "seq" { f() } else { pool.install(f) };
                g.bench_function(id("hvp"), |b| b.iter(|| run(&mut || q.hvp(&x, &y, &v, batch, &mut oy))));
                g.bench_function(id("grad_x_f"), |b| b.iter(|| run(&mut || q.grad_x_f(&x, &y, batch, &mut ox))));
                g.bench_function(id("cross"), |b| b.iter(|| run(&mut || q.cross(&x, &y, &v, batch, &mut ox))));
            }
        }
    }
    g.finish();
    // The small preset (20 tasks, p = 20, k = 3): 2·10³ multiply-adds per task, where rayon's
    // wake-up is of the order of the whole pass.
    let mut g = c.benchmark_group("meta_learning_small");
    g.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let p = generate(&Config::preset("small").unwrap(), 1).unwrap();
    let (x, y, v) = (p.x0(2), bilevel_bench::vector(p.dim_y(), 3), bilevel_bench::vector(p.dim_y(), 4));
    let (mut ox, mut oy) = (vec![0.0; p.dim_x()], vec![0.0; p.dim_y()]);
    for (name, q) in [("seq", p.clone().with_par_min_work(usize::MAX)), ("par", p.clone().with_par_min_work(0))] {
        for (threads, pool) in &pools {
            if name == "seq" && *threads == 2 {
                continue;
            }
            let id = |oracle: &str| {
                let variant = if name == "seq" { "seq".to_string() } else { format!("par_{threads}t") };
                BenchmarkId::new(format!("{oracle}_{variant}"), 20)
            };
            let run = |f: &mut (dyn FnMut() + Send)| if name == "seq" { f() } else { pool.install(f) };
            g.bench_function(id("hvp"), |b| b.iter(|| run(&mut || q.hvp(&x, &y, &v, Batch::Full, &mut oy))));
            g.bench_function(id("cross"), |b| b.iter(|| run(&mut || q.cross(&x, &y, &v, Batch::Full, &mut ox))));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
