//! A tour of the kernels on seeded problems, printing what a user would check first: the speed
//! of the one-triangle HVP against faer's general product, the iterations of CG, gradient
//! descent and Neumann against their classical bounds, and an AID hypergradient against the
//! exact one with its oracle counts.
//!
//!     cargo run --release --example kernels_demo

use bilevel_data::random_matrix;
use bilevel_kernels::linop::{DenseGeneral, DenseSym, Operator};
use bilevel_kernels::linsolve::{Cg, Neumann, Richardson, Stopping};
use bilevel_kernels::models::QuadraticBilevel;
use bilevel_kernels::{ops, BilevelProblem, Counted, StepBatches};
use bilevel_solvers::{AdjointSolver, Aid, AidConfig};
use faer::{Mat, Par};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::Instant;

type DynError = Box<dyn std::error::Error>;

/// Q diag(λ) Qᵀ with Q Haar on O(d) and λ log-spaced in [1/κ, 1] (`bilevel_data::random_matrix`).
fn spd_with_spectrum(d: usize, kappa: f64, rng: &mut Xoshiro256PlusPlus) -> Result<Mat<f64>, DynError> {
    Ok(random_matrix::spd_with_spectrum(d, 1.0 / kappa, 1.0, random_matrix::Spacing::Log, rng)?)
}

/// Median wall time of `reps` runs of `f`, in microseconds.
fn median_us(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    ops::norm2(&diff) / ops::norm2(b).max(f64::MIN_POSITIVE)
}

fn main() -> Result<(), DynError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    println!("bilevel kernels demo (seed 0, {} rayon threads)\n", rayon::current_num_threads());

    println!("1. Dense symmetric HVP: one triangle (bilevel) vs faer's general matrix-vector product");
    println!("   {:>6} {:>14} {:>14} {:>8}", "d", "triangle µs", "faer gemv µs", "speedup");
    for d in [1000, 2000, 4000] {
        let a = spd_with_spectrum(d.min(1000), 10.0, &mut rng)?;
        // Timing needs only a symmetric matrix of the right size: tile the 1000² one.
        let a = Mat::from_fn(d, d, |i, j| a[(i % 1000, j % 1000)]);
        let v: Vec<f64> = (0..d).map(|i| (i as f64).sin()).collect();
        let mut out = vec![0.0; d];
        let sym = DenseSym::new(a.clone())?;
        let gen = DenseGeneral::new(a, Par::rayon(0))?;
        let ts = median_us(21, || sym.apply(&v, &mut out));
        let tg = median_us(21, || gen.apply(&v, &mut out));
        println!("   {d:>6} {ts:>14.1} {tg:>14.1} {:>7.2}x", tg / ts);
    }

    println!("\n2. Linear solvers on H = Q diag(λ) Qᵀ, λ log-spaced in [1/κ, 1], d = 500, b random, x0 = 0:");
    println!("   run for exactly the classical bound's number of steps for ε = 1e-8, then the H-norm error");
    println!("   {:>8} {:>8} {:>28} {:>12} {:>10}", "solver", "κ", "bound", "steps", "‖e‖_H/‖x*‖_H");
    let d = 500;
    let eps = 1e-8_f64;
    for kappa in [1e2, 1e3, 1e4, 1e6] {
        let h = spd_with_spectrum(d, kappa, &mut rng)?;
        let b: Vec<f64> = (0..d).map(|_| rng.random::<f64>() - 0.5).collect();
        let op = DenseSym::new(h)?;
        let mut exact = vec![0.0; d];
        Cg::new(d, Stopping::default().with_rel_tol(1e-15).with_max_iters(100_000)).solve(&op, &b, &mut exact)?;
        let h_norm = |e: &[f64]| {
            let mut he = vec![0.0; e.len()];
            op.apply(e, &mut he);
            ops::dot(e, &he).sqrt()
        };
        let h_err = |x: &[f64]| {
            let e: Vec<f64> = x.iter().zip(&exact).map(|(a, b)| a - b).collect();
            h_norm(&e) / h_norm(&exact)
        };
        let bound = (0.5 * kappa.sqrt() * (2.0 / eps).ln()).ceil() as usize;
        let mut x = vec![0.0; d];
        let rep = Cg::new(d, Stopping::fixed_steps(bound)).solve(&op, &b, &mut x)?;
        println!(
            "   {:>8} {kappa:>8.0e} {:>28} {:>12} {:>10.2e}",
            "CG",
            format!("⌈½√κ ln(2/ε)⌉ = {bound}"),
            rep.iterations,
            h_err(&x)
        );
        if kappa <= 1e3 {
            let kbound = (kappa * (1.0 / eps).ln()).ceil() as usize;
            let mut z = vec![0.0; d];
            let rep = Richardson::new(d, 1.0, Stopping::fixed_steps(kbound)).solve(&op, &b, &mut z)?;
            let label = format!("⌈κ ln(1/ε)⌉ = {kbound}");
            println!("   {:>8} {kappa:>8.0e} {label:>28} {:>12} {:>10.2e}", "GD", rep.iterations, h_err(&z));
            let mut v = vec![0.0; d];
            let rep = Neumann::new(d, 1.0, Stopping::fixed_steps(kbound)).solve(&op, &b, &mut v)?;
            println!("   {:>8} {kappa:>8.0e} {label:>28} {:>12} {:>10.2e}", "Neumann", rep.iterations, h_err(&v));
        }
    }

    println!("\n3. AID hypergradient on the quadratic of AmIGO App. F.1 (d_x = 400, d_y = 200, κ_g = 1e3)");
    let (dx, dy) = (400, 200);
    let a_f = spd_with_spectrum(dx, 10.0, &mut rng)?;
    let a_g = spd_with_spectrum(dy, 1e3, &mut rng)?;
    let b_g = Mat::from_fn(dy, dx, |_, _| (rng.random::<f64>() - 0.5) / (dx as f64).sqrt());
    let c_f: Vec<f64> = (0..dy).map(|_| rng.random::<f64>() - 0.5).collect();
    let problem = Counted::new(QuadraticBilevel::amigo_f1(a_f, c_f, a_g, b_g)?);
    let x: Vec<f64> = (0..dx).map(|_| rng.random::<f64>() - 0.5).collect();
    let exact = problem.exact().ok_or("the quadratic knows its references")?;
    let mut want = vec![0.0; dx];
    exact.hypergradient(&x, &mut want);
    println!("   {:>10} {:>10} {:>14} {:>6} {:>6} {:>6}", "inner GD", "CG steps", "rel. error", "grad", "hvp", "cross");
    for (t, n) in [(10, 10), (100, 30), (2000, 60), (8000, 150)] {
        problem.reset();
        let (mut y, mut work) = (vec![0.0; dy], vec![0.0; dy]);
        problem.inner_gradient_steps(&x, &mut y, 1.0, StepBatches::full(t), &mut work);
        let config = AidConfig { solver: AdjointSolver::Cg, steps: n, warm_start: false };
        let mut g = vec![0.0; dx];
        Aid::new(config, dx, dy)?.estimate(&problem, &x, &y, &mut g)?;
        let c = problem.counts();
        println!("   {t:>10} {n:>10} {:>14.3e} {:>6} {:>6} {:>6}", rel_err(&g, &want), c.grad_y_g, c.hvp, c.cross);
    }
    println!("\nBenchmarks: cargo bench -p bilevel-bench (docs/kernels.md has the measured tables).");
    Ok(())
}
