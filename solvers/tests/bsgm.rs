//! SID against the exact hypergradient (quadratic, through the gradient map) and against a
//! finite difference (equilibrium model); BSGM reaches 1e-6 with Thm 17's schedule; projections.

use bilevel_data::equilibrium;
use bilevel_data::quadratic::{generate, Config};
use bilevel_kernels::models::equilibrium::FixedPointParams;
use bilevel_kernels::GradientMap;
use bilevel_kernels::{Batch, BilevelProblem, Counted, FixedPointProblem};
use bilevel_solvers::{exact_hypergradient, run, Bsgm, Projection, Sid, StopReason, StopRule};
use std::ops::ControlFlow;

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    (num / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
}

#[test]
fn sid_converges_to_the_exact_hypergradient_through_the_gradient_map() {
    for kappa in [10.0, 1e4] {
        let p =
            generate(&Config { dim_x: 30, dim_y: 20, kappa_g: kappa, ..Config::preset("tiny").unwrap() }, 3).unwrap();
        let x = p.x0(1);
        let mut want = vec![0.0; p.dim_x()];
        exact_hypergradient(&p, &x, &mut want).unwrap();
        let map = GradientMap { problem: &p, eta: 1.0 / p.measured_g().l };
        let mut sid = Sid::new(p.dim_y(), p.dim_x());
        let mut errors = Vec::new();
        for t in [5, (kappa * (1e13f64).ln()).ceil() as usize] {
            let mut got = vec![0.0; p.dim_x()];
            sid.hypergradient(&map, &x, t, t, &mut got).unwrap();
            errors.push(rel_err(&got, &want));
        }
        assert!(errors[1] < 1e-10 && errors[0] > errors[1], "κ={kappa}: {errors:?}");
    }
}

#[test]
fn sid_on_the_equilibrium_model_matches_a_finite_difference() {
    let p = equilibrium::generate(&equilibrium::Config::preset("tiny").unwrap(), 4).unwrap();
    let lambda = p.lambda0().to_vec();
    let mut sid = Sid::new(p.n_samples() * p.dim_state(), p.dim_lambda());
    let mut g = vec![0.0; p.dim_lambda()];
    sid.hypergradient(&p, &lambda, 200, 200, &mut g).unwrap();
    let value = |l: &[f64]| {
        let mut w = vec![0.0; p.n_samples() * p.dim_state()];
        p.solve_states(l, Batch::Full, &mut w, FixedPointParams { tol: 1e-15, max_iter: 10_000 }).unwrap();
        p.upper(l, &w, Batch::Full)
    };
    for k in [0, 7, p.dim_lambda() - 1, p.dim_lambda() / 2] {
        let eps = 1e-6;
        let (mut a, mut b) = (lambda.clone(), lambda.clone());
        a[k] += eps;
        b[k] -= eps;
        let want = (value(&a) - value(&b)) / (2.0 * eps);
        assert!((g[k] - want).abs() <= 1e-6 * want.abs().max(1e-3), "λ[{k}]: {} vs {want}", g[k]);
    }
}

#[test]
fn bsgm_reaches_relative_error_1e_minus_6_with_the_theorem_17_schedule() {
    let p = Counted::new(
        generate(&Config { dim_x: 30, dim_y: 20, kappa_g: 10.0, ..Config::preset("tiny").unwrap() }, 5).unwrap(),
    );
    let (l_g, mu_g, l_f) = (p.inner().measured_g().l, p.inner().measured_g().mu, p.inner().measured_f().l);
    let eta = 1.0 / l_g;
    let q = 1.0 - eta * mu_g;
    let c3 = 2.0 / (1.0 / q).ln();
    let x0 = p.inner().x0(2);
    let mut bsgm = Bsgm::new(1.0 / l_f, eta, c3, Projection::None).unwrap();
    assert_eq!((bsgm.inner_steps(0), bsgm.inner_steps(1)), (1, (c3 * 2f64.ln()).ceil() as usize));
    let stop = StopRule { target_rel_error: Some(1e-6), ..StopRule::iterations(5000) };
    let y0 = vec![0.0; p.dim_y()];
    let trace = run(&mut bsgm, &p, &x0, &y0, &stop, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(trace.stop, StopReason::Target, "{:?}", trace.last());
    // Counts of step s: t_s ∂y g, t_s HVPs, one cross product, one ∂x f and one ∂y f.
    let total_t: u64 = (0..trace.last().iteration).map(|s| bsgm.inner_steps(s) as u64).sum();
    let c = trace.last().counts;
    let k = trace.last().iteration as u64;
    assert_eq!((c.grad_y_g, c.hvp, c.cross, c.grad_x_f, c.grad_y_f), (total_t, total_t, k, k, k));
    // The theory rule takes Thm 17's c₃ = 1/log(1/q) and refuses a smaller one.
    let known = bilevel_kernels::ProblemConstants {
        mu_g: Some(mu_g),
        l_g: Some(l_g),
        l_outer: Some(l_f),
        ..Default::default()
    };
    let c = bilevel_solvers::Constants::new(known);
    let bound = bilevel_solvers::algorithms::bsgm::c3_bound(&c).unwrap();
    assert!((bound - 1.0 / (1.0 / q).ln()).abs() < 1e-12 * bound);
    let theory = bilevel_solvers::StepRule::Theory;
    use bilevel_solvers::algorithms::bsgm;
    assert_eq!(bsgm::c3(theory, &c, None).unwrap(), bound);
    assert!(bsgm::c3(theory, &c, Some(0.5 * bound)).is_err());
    assert!(bsgm::c3(bilevel_solvers::StepRule::Experiments, &c, Some(0.5 * bound)).is_ok());
}

#[test]
fn projections() {
    let mut x = vec![3.0, -4.0, 0.5];
    Projection::Box { lo: -1.0, hi: 1.0 }.apply(&mut x).unwrap();
    assert_eq!(x, vec![1.0, -1.0, 0.5]);
    let mut x = vec![3.0, 4.0];
    Projection::Ball { radius: 1.0 }.apply(&mut x).unwrap();
    assert!((x[0] - 0.6).abs() < 1e-15 && (x[1] - 0.8).abs() < 1e-15);
    let mut x = vec![9.0, 3.0, 4.0, 0.1, 0.1];
    Projection::RowBalls { offset: 1, rows: 2, cols: 2, radius: 1.0 }.apply(&mut x).unwrap();
    assert_eq!(x[0], 9.0);
    assert!((x[1] - 0.6).abs() < 1e-15 && (x[2] - 0.8).abs() < 1e-15 && x[3] == 0.1 && x[4] == 0.1);
    assert!(Projection::Box { lo: 1.0, hi: 0.0 }.apply(&mut x).is_err());
    assert!(Projection::RowBalls { offset: 4, rows: 2, cols: 2, radius: 1.0 }.apply(&mut x).is_err());
    assert!(Bsgm::new(0.0, 1.0, 1.0, Projection::None).is_err());
    // Radii must be positive: a negative one would flip signs, a zero one divide by zero.
    for r in [0.0, -1.0, f64::NAN] {
        assert!(Bsgm::new(1.0, 1.0, 1.0, Projection::Ball { radius: r }).is_err());
        assert!(Projection::RowBalls { offset: 0, rows: 1, cols: 1, radius: r }.apply(&mut [1.0]).is_err());
    }
    // BSGM keeps its iterate in the ball.
    let p = generate(&Config::preset("tiny").unwrap(), 1).unwrap();
    let mut b = Bsgm::new(1.0, 1.0, 3.0, Projection::Ball { radius: 0.01 }).unwrap();
    use bilevel_solvers::Algorithm;
    b.init(&p, &p.x0(0), &vec![0.0; p.dim_y()]).unwrap();
    for _ in 0..5 {
        b.step(&p).unwrap();
        assert!(b.iterates().x.iter().map(|v| v * v).sum::<f64>().sqrt() <= 0.01 + 1e-15);
    }
}

#[test]
fn bsgm_on_the_equilibrium_model_lowers_the_training_loss_with_exact_counts() {
    use bilevel_kernels::Counted;
    use bilevel_solvers::run_fixed_point;
    let p = Counted::new(equilibrium::generate(&equilibrium::Config::preset("tiny").unwrap(), 4).unwrap());
    let (n, h) = (p.n_samples(), p.dim_state());
    // Paper 001 §7.1's α = 0.5; c₃ = 1/log 2 (q ≤ ‖A‖ ≤ 0.5 on Λ).
    let mut bsgm = Bsgm::new(0.5, 1.0, 1.0 / 2f64.ln(), Projection::None).unwrap();
    let iters = 30;
    let w0 = vec![0.0; n * h];
    let trace = run_fixed_point(&mut bsgm, &p, p.inner().lambda0(), &w0, &StopRule::iterations(iters), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((trace.stop, trace.rows.len()), (StopReason::MaxIters, iters + 1), "{:?}", trace.failure);
    assert_eq!(
        trace.metric_names,
        ["train_loss", "train_accuracy", "grad_mapping", "grad_norm_exact", "test_loss", "test_accuracy"]
    );
    let (first, last) = (&trace.rows[0], trace.last());
    eprintln!("train_loss {:?} -> {:?}; counts {:?}", first.metrics, last.metrics, last.counts);
    assert!(last.metrics[0] < 0.9 * first.metrics[0], "{:?} -> {:?}", first.metrics, last.metrics);
    assert!(last.metrics[1] >= first.metrics[1]);
    // The upper objective falls along the way, not just at the end.
    let losses: Vec<f64> = trace.rows.iter().map(|r| r.metrics[0]).collect();
    assert!(losses[5] < losses[0] && losses[iters] < losses[5], "{losses:?}");
    // Step s: t_s maps, k_s = t_s VJPs in w, one VJP in λ, one (∇wE, ∇λE) pair (the pair's
    // examples counted once); all full batches.
    for (s, row) in trace.rows.iter().enumerate() {
        let t: u64 = (0..s).map(|i| bsgm.inner_steps(i) as u64).sum();
        let k = s as u64;
        let c = row.counts;
        assert_eq!((c.grad_y_g, c.hvp, c.cross, c.grad_x_f, c.grad_y_f, c.f, c.g), (t, t, k, k, k, 0, 0), "row {s}");
        assert_eq!((c.samples_g, c.samples_f), (n as u64 * (2 * t + k), n as u64 * k), "row {s}");
    }
    // The fixed-point form is deterministic only; a wrong-sized start is a typed error.
    use bilevel_solvers::FixedPointAlgorithm;
    assert!(bsgm.init_fixed_point(&p, &[0.0; 3], &w0).is_err());
    let st = bilevel_solvers::algorithms::bsgm::Stochastic {
        batches: bilevel_solvers::BatchSizes::full(),
        seed: 0,
        q: 0.5,
        horizon: None,
        sigma2: 0.0,
        min_steps: 0,
    };
    let mut stochastic = Bsgm::new(0.5, 1.0, 1.0, Projection::None).unwrap().stochastic(st).unwrap();
    assert!(stochastic.init_fixed_point(&p, p.inner().lambda0(), &w0).is_err());
}

#[test]
fn bsgm_on_a_gradient_map_is_bsgm_on_the_bilevel_problem() {
    use bilevel_kernels::Counted;
    use bilevel_solvers::{run_fixed_point, Algorithm};
    let config = Config { dim_x: 30, dim_y: 20, kappa_g: 10.0, ..Config::preset("tiny").unwrap() };
    let p = generate(&config, 5).unwrap();
    let (l_g, mu_g, l_f) = (p.measured_g().l, p.measured_g().mu, p.measured_f().l);
    let eta = 1.0 / l_g;
    let c3 = 2.0 / (1.0 / (1.0 - eta * mu_g)).ln();
    let (x0, y0) = (p.x0(2), vec![0.0; p.dim_y()]);
    let stop = StopRule::iterations(40);
    let mut direct = Bsgm::new(1.0 / l_f, eta, c3, Projection::Ball { radius: 3.0 }).unwrap();
    let counted = Counted::new(generate(&config, 5).unwrap());
    let a = run(&mut direct, &counted, &x0, &y0, &stop, |_| ControlFlow::Continue(())).unwrap();
    let mut mapped = Bsgm::new(1.0 / l_f, 123.0, c3, Projection::Ball { radius: 3.0 }).unwrap();
    let map = Counted::new(GradientMap { problem: &p, eta });
    let b = run_fixed_point(&mut mapped, &map, &x0, &y0, &stop, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(direct.iterates(), mapped.iterates(), "bit for bit");
    assert_eq!(a.rows.len(), b.rows.len());
    for (ra, rb) in a.rows.iter().zip(&b.rows) {
        assert_eq!(ra.counts, rb.counts, "row {}", ra.iteration);
    }
}

#[test]
fn a_fixed_point_run_whose_iterate_turns_non_finite_stops_as_diverged() {
    use bilevel_kernels::Counted;
    use bilevel_solvers::run_fixed_point;
    let p = Counted::new(equilibrium::generate(&equilibrium::Config::preset("tiny").unwrap(), 4).unwrap());
    let w0 = vec![0.0; p.n_samples() * p.dim_state()];
    let stop = StopRule::iterations(200);
    // A non-finite λ_0 makes every oracle write NaN: the first step's iterate is not finite.
    let mut bad = p.inner().lambda0().to_vec();
    bad[0] = f64::NAN;
    let mut bsgm = Bsgm::new(0.5, 1.0, 1.0, Projection::None).unwrap();
    let trace = run_fixed_point(&mut bsgm, &p, &bad, &w0, &stop, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!((trace.stop, trace.rows.len()), (StopReason::Diverged, 1), "{:?}", trace.failure);
    assert!(trace.failure.as_deref().is_some_and(|f| f.contains("outer iterate")), "{:?}", trace.failure);
}

#[test]
fn a_schedule_that_asks_for_astronomically_many_steps_fails_instead_of_hanging() {
    use bilevel_solvers::algorithms::bsgm::{Bsgm, Projection, MAX_SCHEDULE_STEPS};
    use bilevel_solvers::{run, StopReason, StopRule};
    let p = bilevel_kernels::Counted::new(
        bilevel_data::quadratic::generate(&bilevel_data::quadratic::Config::preset("tiny").unwrap(), 1).unwrap(),
    );
    let (x0, y0) = (p.inner().x0(1), vec![0.0; bilevel_kernels::BilevelProblem::dim_y(&p)]);
    let mut b = Bsgm::new(0.1, 0.5, 1e308, Projection::None).unwrap();
    assert!(b.inner_steps(1) > MAX_SCHEDULE_STEPS);
    let t = run(&mut b, &p, &x0, &y0, &StopRule::iterations(5), |_| std::ops::ControlFlow::Continue(())).unwrap();
    // s = 0 takes max(1, ⌈c₃ log 1⌉) = 1 step; s = 1 would take ⌈c₃ log 2⌉.
    assert_eq!((t.stop, t.rows.len()), (StopReason::Failed, 2));
    assert!(t.failure.as_deref().is_some_and(|f| f.contains("c3")), "{:?}", t.failure);
}
