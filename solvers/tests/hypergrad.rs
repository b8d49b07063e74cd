//! Every estimator converges to the exact hypergradient on the AmIGO F.1 quadratic as its steps
//! grow (κ_g = 10 and 1e4), ITD equals a finite difference of x ↦ f(x, y_T(x)), warm starts
//! help, and bad configurations are typed errors.

use bilevel_data::quadratic::{generate, Config, QuadraticProblem};
use bilevel_kernels::{Batch, BilevelProblem, Counted};
use bilevel_solvers::{exact_hypergradient, AdjointSolver, Aid, AidConfig, Itd};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn problem(kappa: f64) -> QuadraticProblem {
    generate(&Config { dim_x: 30, dim_y: 20, kappa_g: kappa, ..Config::preset("tiny").unwrap() }, 7).unwrap()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// Adjoint steps for relative error ~1e-13: the κ·ln(1/ε) bound for GD/FP/Neumann; CG on
/// d_y = 20 is exact in 20 steps in exact arithmetic, 60 leave a margin for rounding at κ = 1e4.
fn steps_for(solver: AdjointSolver, kappa: f64) -> usize {
    match solver {
        AdjointSolver::Cg => 60,
        _ => (kappa * (1e13f64).ln()).ceil() as usize,
    }
}

#[test]
fn aid_estimators_converge_to_the_exact_hypergradient() {
    for kappa in [10.0, 1e4] {
        let p = problem(kappa);
        let x = p.x0(1);
        let exact = p.exact().unwrap();
        let (mut y, mut want) = (vec![0.0; p.dim_y()], vec![0.0; p.dim_x()]);
        exact.y_star(&x, &mut y);
        exact_hypergradient(&p, &x, &mut want).unwrap();
        let l = p.measured_g().l;
        for solver in [
            AdjointSolver::Cg,
            AdjointSolver::Gd { step: 1.0 / l },
            AdjointSolver::FixedPoint { step: 1.0 / l },
            AdjointSolver::Neumann { step: 1.0 / l },
        ] {
            let mut errors = Vec::new();
            for steps in [2, 10, steps_for(solver, kappa)] {
                let mut aid = Aid::new(AidConfig { solver, steps, warm_start: false }, p.dim_x(), p.dim_y()).unwrap();
                let mut got = vec![0.0; p.dim_x()];
                aid.estimate(&p, &x, &y, &mut got).unwrap();
                errors.push(rel_err(&got, &want));
            }
            assert!(errors[2] < 1e-10, "{solver:?} κ={kappa}: {errors:?}");
            assert!(errors[2] < errors[0], "{solver:?} κ={kappa}: error must fall with steps {errors:?}");
        }
    }
}

#[test]
fn aid_costs_are_the_documented_oracle_counts() {
    let p = Counted::new(problem(10.0));
    let x = p.inner().x0(2);
    let y = vec![0.1; p.dim_y()];
    let mut out = vec![0.0; p.dim_x()];
    let step = 1.0 / p.inner().measured_g().l;
    // (solver, warm start, expected HVPs per estimate with N = 7 steps). CG warm-started needs
    // its initial residual b − Hv₀ (N + 1) once v₀ ≠ 0, i.e. from the second estimate on;
    // from 0 it needs none (N), as the papers count.
    for (solver, warm, hvps) in [
        (AdjointSolver::Cg, false, [7, 7]),
        (AdjointSolver::Cg, true, [7, 8]),
        (AdjointSolver::Gd { step }, false, [7, 7]),
        (AdjointSolver::Gd { step }, true, [7, 7]),
        (AdjointSolver::FixedPoint { step }, false, [7, 7]),
        (AdjointSolver::Neumann { step }, false, [7, 7]),
    ] {
        let cfg = AidConfig { solver, steps: 7, warm_start: warm };
        let mut aid = Aid::new(cfg, p.dim_x(), p.dim_y()).unwrap();
        for want in hvps {
            p.reset();
            aid.estimate(&p, &x, &y, &mut out).unwrap();
            let c = p.counts();
            assert_eq!((c.grad_y_f, c.grad_x_f, c.hvp, c.cross), (1, 1, want, 1), "{solver:?} warm {warm}");
        }
    }
    // ITD: T ∂y g, T cross products, T − 1 HVPs (the HVP at t = 0 is not needed), one ∂x f, ∂y f.
    let mut itd = Itd::new(9, step, p.dim_x(), p.dim_y()).unwrap();
    p.reset();
    itd.estimate(&p, &x, &mut y.clone(), &mut out).unwrap();
    let c = p.counts();
    assert_eq!((c.grad_y_g, c.cross, c.hvp, c.grad_x_f, c.grad_y_f), (9, 9, 8, 1, 1));
}

#[test]
fn warm_start_reaches_a_better_accuracy_with_the_same_steps() {
    // Along a slowly moving x (as in an outer loop), the warm-started adjoint starts near v*.
    let p = problem(1e4);
    let exact = p.exact().unwrap();
    let x0 = p.x0(3);
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let step = 1.0 / p.measured_g().l;
    let cfg = |warm_start| AidConfig { solver: AdjointSolver::Gd { step }, steps: 300, warm_start };
    let (mut warm, mut cold) = (Aid::new(cfg(true), dx, dy).unwrap(), Aid::new(cfg(false), dx, dy).unwrap());
    let (mut e_warm, mut e_cold) = (0.0, 0.0);
    for k in 0..20 {
        let x: Vec<f64> = x0.iter().map(|v| v * (1.0 + 0.001 * k as f64)).collect();
        let (mut y, mut want) = (vec![0.0; dy], vec![0.0; dx]);
        exact.y_star(&x, &mut y);
        exact.hypergradient(&x, &mut want);
        let (mut gw, mut gc) = (vec![0.0; dx], vec![0.0; dx]);
        warm.estimate(&p, &x, &y, &mut gw).unwrap();
        cold.estimate(&p, &x, &y, &mut gc).unwrap();
        (e_warm, e_cold) = (rel_err(&gw, &want), rel_err(&gc, &want));
    }
    assert!(e_warm < 0.5 * e_cold, "warm {e_warm:e} vs cold {e_cold:e}");
}

#[test]
fn itd_is_the_derivative_of_the_unrolled_objective() {
    let p = problem(100.0);
    let x = p.x0(4);
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let (steps, alpha) = (15, 1.0 / p.measured_g().l);
    let y0: Vec<f64> = (0..dy).map(|i| (i as f64 * 0.3).sin()).collect();
    let mut itd = Itd::new(steps, alpha, dx, dy).unwrap();
    let (mut y, mut g) = (y0.clone(), vec![0.0; dx]);
    itd.estimate(&p, &x, &mut y, &mut g).unwrap();
    let unrolled = |x: &[f64]| {
        let (mut y, mut gy) = (y0.clone(), vec![0.0; dy]);
        for _ in 0..steps {
            p.grad_y_g(x, &y, Batch::Full, &mut gy);
            y.iter_mut().zip(&gy).for_each(|(y, g)| *y -= alpha * g);
        }
        p.f(x, &y, Batch::Full)
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    for _ in 0..3 {
        let d: Vec<f64> = (0..dx).map(|_| rng.random::<f64>() - 0.5).collect();
        let eps = 1e-6;
        let plus: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a + eps * b).collect();
        let minus: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a - eps * b).collect();
        let want = (unrolled(&plus) - unrolled(&minus)) / (2.0 * eps);
        let got: f64 = g.iter().zip(&d).map(|(a, b)| a * b).sum();
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1e-3), "{got} vs {want}");
    }
    // With enough steps ITD tends to the exact hypergradient, for κ_g = 10 and 1e4.
    for kappa in [10.0, 1e4] {
        let p = problem(kappa);
        let x = p.x0(4);
        let alpha = 1.0 / p.measured_g().l;
        let mut itd = Itd::new(steps_for(AdjointSolver::Gd { step: alpha }, kappa), alpha, dx, dy).unwrap();
        let (mut y, mut g, mut want) = (vec![0.0; dy], vec![0.0; dx], vec![0.0; dx]);
        itd.estimate(&p, &x, &mut y, &mut g).unwrap();
        exact_hypergradient(&p, &x, &mut want).unwrap();
        assert!(rel_err(&g, &want) < 1e-10, "κ={kappa}: {}", rel_err(&g, &want));
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let p = problem(10.0);
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let cfg = |solver, steps| AidConfig { solver, steps, warm_start: false };
    assert!(Aid::new(cfg(AdjointSolver::Cg, 0), dx, dy).is_err());
    assert!(Aid::new(cfg(AdjointSolver::Gd { step: -1.0 }, 5), dx, dy).is_err());
    assert!(Itd::new(0, 0.1, dx, dy).is_err());
    assert!(Itd::new(3, f64::NAN, dx, dy).is_err());
    // A trajectory that cannot be stored is refused before allocating (T·d_y overflows or is huge).
    assert!(Itd::new(usize::MAX / 2, 0.1, dx, dy).is_err());
    assert!(Itd::new(100_000_000_000, 0.1, dx, dy).is_err());
    assert!(Aid::new(AidConfig { solver: AdjointSolver::Neumann { step: 0.1 }, steps: 5, warm_start: true }, dx, dy)
        .is_err());
    let mut aid = Aid::new(cfg(AdjointSolver::Cg, 5), dx, dy).unwrap();
    let mut out = vec![0.0; dx];
    assert!(aid.estimate(&p, &vec![0.0; dx + 1], &vec![0.0; dy], &mut out).is_err());
    assert!(exact_hypergradient(&p, &vec![0.0; dx], &mut vec![0.0; dx - 1]).is_err());
    // GD with a step far above 2/L diverges and says so.
    let mut bad = Aid::new(cfg(AdjointSolver::Gd { step: 50.0 }, 2000), dx, dy).unwrap();
    assert!(bad.estimate(&p, &p.x0(0), &vec![0.0; dy], &mut out).is_err());
}
